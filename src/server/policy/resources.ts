// The operator's YAML resources (role, bot, token): schemas, loading with file:line in
// every error, and cross-references checked before anything is applied.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Document, isMap, isScalar, LineCounter, parseAllDocuments } from "yaml";
import { z } from "zod";
import { parseDuration } from "../../protocol/duration.ts";
import { MAX_TTL_SECONDS } from "../../protocol/join.ts";
import { type FieldProblem, fieldProblems, formatPath } from "../../protocol/validation.ts";
import { AzureTokenSpecSchema } from "../joinmethods/azure.ts";
import { BoundKeypairSpecSchema } from "../joinmethods/boundkeypair.ts";
import { GcpTokenSpecSchema } from "../joinmethods/gcp.ts";
import { GitHubTokenSpecSchema } from "../joinmethods/github.ts";
import { GitLabTokenSpecSchema } from "../joinmethods/gitlab.ts";
import { IamTokenSpecSchema } from "../joinmethods/iam.ts";
import { KubernetesTokenSpecSchema } from "../joinmethods/kubernetes.ts";
import { OidcTokenSpecSchema } from "../joinmethods/oidc.ts";
import { templateSyntaxError } from "./templates.ts";

const name = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9._-]*$/, "names use letters, digits, '.', '_' and '-'");

const metadata = z.strictObject({
  name,
  description: z.string().max(1024).optional(),
  labels: z.record(z.string(), z.string()).optional(),
});

const duration = z.string().transform((s, ctx) => {
  try {
    return parseDuration(s);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

/** A string that may hold {{ join.<method>.<claim> }} templates, checked at load. */
const template = z
  .string()
  .min(1)
  .max(512)
  .superRefine((v, ctx) => {
    const err = templateSyntaxError(v);
    if (err) ctx.addIssue({ code: "custom", message: err });
  });
const list = <T extends z.ZodType>(item: T) => z.array(item).max(256).default([]);
/** A resource name or "*" (any). */
const nameOrWildcard = z.union([name, z.literal("*")]);

const pemCertificate = z.string().refine((s) => s.includes("-----BEGIN CERTIFICATE-----"), {
  message: "expected a PEM certificate (-----BEGIN CERTIFICATE-----)",
});

export const RoleSpecSchema = z.strictObject({
  /** SSH principals; may use {{ join.<method>.<claim> }} templates. */
  logins: list(template),
  kubernetes_clusters: list(nameOrWildcard),
  kubernetes_users: list(template),
  kubernetes_groups: list(template),
  databases: list(nameOrWildcard),
  db_users: list(z.string().min(1).max(63)),
  db_names: list(z.string().min(1).max(63)),
  spiffe: list(
    z.strictObject({
      path: template,
      dns_sans: list(z.string().min(1).max(253)),
      ip_sans: list(z.union([z.ipv4(), z.ipv6()])),
    }),
  ),
  jwt_audiences: list(z.string().min(1).max(512)),
  /** Principals of SSH host certificates (ssh_host output); templates allowed. */
  host_principals: list(template),
  max_ttl: duration.refine((s) => s <= MAX_TTL_SECONDS, { message: "max_ttl may not exceed 24h" }).optional(),
});

export const KubeClusterSpecSchema = z.strictObject({
  server: z.url({
    protocol: /^https$/,
    error: "server must be an https:// URL of the Kubernetes API server",
  }),
  /** CA that signed the API server's certificate (kubeconfig certificate-authority-data). */
  ca: pemCertificate,
  tls_server_name: z.string().min(1).max(253).optional(),
});

export const DatabaseSpecSchema = z.strictObject({
  protocol: z.literal("postgres"),
  host: z.string().min(1).max(253),
  port: z.number().int().min(1).max(65535).default(5432),
  /** CA that signed the database server's certificate (sslrootcert). */
  ca: pemCertificate,
});

export const BotSpecSchema = z.strictObject({
  roles: z.array(name).min(1),
});

export const TokenSpecSchema = z.discriminatedUnion("join_method", [
  z.strictObject({ join_method: z.literal("github"), bot_name: name, github: GitHubTokenSpecSchema }),
  z.strictObject({ join_method: z.literal("gitlab"), bot_name: name, gitlab: GitLabTokenSpecSchema }),
  z.strictObject({ join_method: z.literal("oidc"), bot_name: name, oidc: OidcTokenSpecSchema }),
  z.strictObject({
    join_method: z.literal("bound_keypair"),
    bot_name: name,
    bound_keypair: BoundKeypairSpecSchema,
  }),
  z.strictObject({
    join_method: z.literal("kubernetes"),
    bot_name: name,
    kubernetes: KubernetesTokenSpecSchema,
  }),
  z.strictObject({ join_method: z.literal("gcp"), bot_name: name, gcp: GcpTokenSpecSchema }),
  z.strictObject({ join_method: z.literal("iam"), bot_name: name, iam: IamTokenSpecSchema }),
  z.strictObject({ join_method: z.literal("azure"), bot_name: name, azure: AzureTokenSpecSchema }),
]);

const header = { version: z.literal("v1"), metadata };
export const ResourceSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("role"), ...header, spec: RoleSpecSchema }),
  z.strictObject({ kind: z.literal("bot"), ...header, spec: BotSpecSchema }),
  z.strictObject({ kind: z.literal("token"), ...header, spec: TokenSpecSchema }),
  z.strictObject({ kind: z.literal("kube_cluster"), ...header, spec: KubeClusterSpecSchema }),
  z.strictObject({ kind: z.literal("database"), ...header, spec: DatabaseSpecSchema }),
]);
export type Resource = z.output<typeof ResourceSchema>;
export type RoleResource = Extract<Resource, { kind: "role" }>;
export type BotResource = Extract<Resource, { kind: "bot" }>;
export type TokenResource = Extract<Resource, { kind: "token" }>;
export type KubeClusterResource = Extract<Resource, { kind: "kube_cluster" }>;
export type DatabaseResource = Extract<Resource, { kind: "database" }>;
export const RESOURCE_KINDS = ["role", "bot", "token", "kube_cluster", "database"] as const;

export class ResourceError extends Error {
  override name = "ResourceError";
}

export interface ResourceSet {
  roles: Map<string, RoleResource>;
  bots: Map<string, BotResource>;
  tokens: Map<string, TokenResource>;
  kubeClusters: Map<string, KubeClusterResource>;
  databases: Map<string, DatabaseResource>;
  /** Where each resource came from, "file:line", for messages. */
  origin: Map<Resource, string>;
}

/** Line (1-based) of the node at `path`, or of its key for an unknown field. */
function lineOf(doc: Document, lc: LineCounter, problem: FieldProblem): number | undefined {
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const seg of problem.path) {
    if (!isMap(node) && !(node && typeof node === "object" && "items" in node)) break;
    const items = (node as { items: unknown[] }).items;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg);
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value;
    } else if (typeof seg === "number") {
      keyNode = undefined;
      node = items[seg];
    } else break;
  }
  const target = (problem.unknownField !== undefined ? keyNode : node) ?? keyNode ?? node;
  const range = (target as { range?: [number, number, number] } | undefined)?.range;
  return range ? lc.linePos(range[0]).line : undefined;
}

/** Parses one YAML text (one or more `---` documents) into validated resources. */
export function parseResources(
  text: string,
  file: string,
): { resources: Resource[]; origin: Map<Resource, string> } {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const resources: Resource[] = [];
  const origin = new Map<Resource, string>();
  const errors: string[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    for (const err of doc.errors) {
      const line = err.linePos?.[0]?.line ?? (err.pos ? lc.linePos(err.pos[0]).line : "?");
      errors.push(`${file}:${line}: YAML syntax error: ${err.message.split("\n")[0]}`);
    }
    // An empty document (a trailing "---", or only comments) declares nothing.
    if (
      doc.errors.length > 0 ||
      doc.contents === null ||
      (isScalar(doc.contents) && doc.contents.value === null)
    )
      continue;
    const docLine = doc.contents.range ? lc.linePos(doc.contents.range[0]).line : 1;
    const parsed = ResourceSchema.safeParse(doc.toJS({ maxAliasCount: 50 }));
    if (!parsed.success) {
      for (const p of fieldProblems(parsed.error)) {
        const line = lineOf(doc, lc, p) ?? docLine;
        const what =
          p.unknownField !== undefined
            ? `unknown field "${formatPath(p.path)}"`
            : `${formatPath(p.path)}: ${p.message}`;
        errors.push(`${file}:${line}: ${what}`);
      }
      continue;
    }
    resources.push(parsed.data);
    origin.set(parsed.data, `${file}:${docLine}`);
  }
  if (errors.length > 0) throw new ResourceError(errors.join("\n"));
  return { resources, origin };
}

function yamlFilesIn(path: string): string[] {
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => join(path, f));
}

/** Loads a file or every *.yaml/*.yml in a directory, then checks cross-references. */
export function loadResources(path: string): ResourceSet {
  let files: string[];
  try {
    files = yamlFilesIn(path);
  } catch (e) {
    throw new ResourceError(
      `cannot read resources at ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const all: Resource[] = [];
  const origin = new Map<Resource, string>();
  const errors: string[] = [];
  for (const f of files) {
    try {
      const r = parseResources(readFileSync(f, "utf8"), f);
      all.push(...r.resources);
      for (const [k, v] of r.origin) origin.set(k, v);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  if (errors.length > 0) throw new ResourceError(errors.join("\n"));
  return buildResourceSet(all, origin);
}

/** Every resource of a set, in a stable order. */
export function resourcesOf(set: ResourceSet): Resource[] {
  return [
    ...set.roles.values(),
    ...set.bots.values(),
    ...set.tokens.values(),
    ...set.kubeClusters.values(),
    ...set.databases.values(),
  ];
}

/** Resources applied with `idbot admin apply` (stored as JSON), validated like files. */
export function parseStoredResource(body: string, label: string): Resource {
  const parsed = ResourceSchema.safeParse(JSON.parse(body));
  if (!parsed.success) {
    throw new ResourceError(
      `${label}: ${fieldProblems(parsed.error)
        .map((p) => `${formatPath(p.path)}: ${p.message}`)
        .join("; ")}`,
    );
  }
  return parsed.data;
}

/** Applied resources override file resources of the same kind and name. */
export function mergeResources(files: ResourceSet, applied: Resource[]): ResourceSet {
  const key = (r: Resource) => `${r.kind}/${r.metadata.name}`;
  const overridden = new Set(applied.map(key));
  const origin = new Map(files.origin);
  for (const r of applied) origin.set(r, `applied ${key(r)}`);
  return buildResourceSet([...resourcesOf(files).filter((r) => !overridden.has(key(r))), ...applied], origin);
}

export function buildResourceSet(all: Resource[], origin = new Map<Resource, string>()): ResourceSet {
  const set: ResourceSet = {
    roles: new Map(),
    bots: new Map(),
    tokens: new Map(),
    kubeClusters: new Map(),
    databases: new Map(),
    origin,
  };
  const maps: Record<Resource["kind"], Map<string, Resource>> = {
    role: set.roles,
    bot: set.bots,
    token: set.tokens,
    kube_cluster: set.kubeClusters,
    database: set.databases,
  };
  const errors: string[] = [];
  const where = (r: Resource) => origin.get(r) ?? `${r.kind}/${r.metadata.name}`;
  for (const r of all) {
    const map = maps[r.kind];
    const prev = map.get(r.metadata.name);
    if (prev)
      errors.push(`${where(r)}: ${r.kind} "${r.metadata.name}" is declared twice (first at ${where(prev)})`);
    map.set(r.metadata.name, r);
  }
  for (const bot of set.bots.values()) {
    for (const role of bot.spec.roles) {
      if (!set.roles.has(role))
        errors.push(`${where(bot)}: bot "${bot.metadata.name}" names role "${role}", which is not declared`);
    }
  }
  for (const role of set.roles.values()) {
    for (const c of role.spec.kubernetes_clusters) {
      if (c !== "*" && !set.kubeClusters.has(c)) {
        errors.push(
          `${where(role)}: role "${role.metadata.name}" names kube_cluster "${c}", which is not declared`,
        );
      }
    }
    for (const d of role.spec.databases) {
      if (d !== "*" && !set.databases.has(d)) {
        errors.push(
          `${where(role)}: role "${role.metadata.name}" names database "${d}", which is not declared`,
        );
      }
    }
  }
  for (const token of set.tokens.values()) {
    if (!set.bots.has(token.spec.bot_name)) {
      errors.push(
        `${where(token)}: token "${token.metadata.name}" names bot "${token.spec.bot_name}", which is not declared`,
      );
    }
  }
  if (errors.length > 0) throw new ResourceError(errors.join("\n"));
  return set;
}
