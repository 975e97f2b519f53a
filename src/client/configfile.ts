// `idbot join -c idbot.yaml`: a config file in the shape of tbot's (`version: v2`,
// `onboarding`, `auth_server`, `outputs` with destinations), turned into the same named
// inputs as the Action's, so flags and IDBOT_* variables can override any of it. Unknown
// fields are errors naming the field and its line.
//
// tbot output type           → idbot output (parameters)
//   identity                 → identity
//   ssh_client (or ssh)      → ssh (+ identity)
//   kubernetes               → kubernetes (kubernetes_cluster)
//   database                 → database (service, username, database; without service,
//                              `database` names the service, as in the seed's example)
//   spiffe-svid              → spiffe-x509 (svid.path), + jwt when jwts: [{ audience }]
//   workload-identity-x509   → spiffe-x509 (spiffe_path)   (also: spiffe-x509)
//   workload-identity-jwt    → jwt (audiences, spiffe_path) (also: jwt)
//
// idbot writes one join into one directory (identity/, kubernetes/, database/, spiffe/),
// so every output's destination must name the same directory (or none, then --out or a
// fresh temporary directory is used).
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { parseDuration } from "../protocol/duration.ts";
import type { OutputType } from "../protocol/join.ts";
import { type FieldPath, type FieldProblem, fieldProblems, formatPath } from "../protocol/validation.ts";
import { CLI_JOIN_METHODS } from "./config.ts";

export class ConfigFileError extends Error {
  override name = "ConfigFileError";
}

const text = z.string().trim().min(1);
/** A duration: "90s", "1h30m", or a number of seconds. */
const duration = z.union([text, z.number().int().positive()]).transform(String);
const stringList = z.union([text, z.array(text).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]));

const destination = z.strictObject({
  type: z.literal("directory", { error: 'only destination type "directory" is supported' }),
  path: text,
});
const base = { destination: destination.optional() };

const OutputSchema = z.discriminatedUnion(
  "type",
  [
    z.strictObject({ type: z.literal("identity"), ...base }),
    z.strictObject({ type: z.enum(["ssh_client", "ssh"]), ...base }),
    z.strictObject({ type: z.literal("kubernetes"), ...base, kubernetes_cluster: text }),
    z
      .strictObject({
        type: z.literal("database"),
        ...base,
        service: text.optional(),
        username: text.optional(),
        database: text.optional(),
      })
      .refine((o) => o.service !== undefined || o.database !== undefined, {
        message: "the database output needs service (the database resource's name)",
        path: ["service"],
      }),
    z.strictObject({
      type: z.literal("spiffe-svid"),
      ...base,
      svid: z.strictObject({ path: text }).optional(),
      jwts: z
        .array(z.strictObject({ audience: text }))
        .min(1)
        .optional(),
    }),
    z.strictObject({
      type: z.enum(["workload-identity-x509", "spiffe-x509"]),
      ...base,
      spiffe_path: text.optional(),
    }),
    z.strictObject({ type: z.literal("ssh_host"), ...base, host_key: text }),
    z.strictObject({
      type: z.enum(["workload-identity-jwt", "jwt"]),
      ...base,
      audiences: stringList,
      spiffe_path: text.optional(),
    }),
  ],
  {
    error: (issue) =>
      issue.code === "invalid_union"
        ? `unknown output type (known: identity, ssh_client, kubernetes, database, spiffe-svid, workload-identity-x509, workload-identity-jwt)`
        : undefined,
  },
);
type FileOutput = z.output<typeof OutputSchema>;

export const ConfigFileSchema = z
  .strictObject({
    version: z.literal("v2", { error: 'version must be "v2" (the tbot v2 configuration shape)' }),
    onboarding: z.strictObject({
      join_method: z.enum(CLI_JOIN_METHODS),
      token: text,
      /** idbot: the variable holding the ID token (gitlab, oidc). */
      id_token_env: text.optional(),
      /** idbot: the audience of the GitHub ID token (default: the server URL). */
      audience: text.optional(),
      /** bound_keypair: the one-time registration secret of the first join. */
      bound_keypair: z.strictObject({ registration_secret: text.optional() }).optional(),
    }),
    server: text.optional(),
    auth_server: text.optional(),
    proxy_server: text.optional(),
    outputs: z.array(OutputSchema).max(16).default([]),
    certificate_ttl: duration.optional(),
    ssh_hosts: stringList.optional(),
    retries: z
      .union([z.number().int().min(0), text])
      .transform(String)
      .optional(),
    attempt_timeout: duration.optional(),
    deadline: duration.optional(),
    ca: text.optional(),
    /** tbot's one-shot mode: idbot join always runs once. */
    /** true: join once and exit (`idbot start` then behaves like `idbot join`). */
    oneshot: z.boolean().optional(),
    /** Where a bound keypair (and its join state) lives. */
    storage: z
      .strictObject({
        type: z.literal("directory", { error: 'storage type must be "directory"' }),
        path: text,
      })
      .optional(),
    /** The daemon (`idbot start`): renew every renewal_interval (default 2/3 of the TTL),
     *  retry every retry_interval up to max_retries, then rejoin; run on_renew after each. */
    renewal_interval: duration.optional(),
    retry_interval: duration.optional(),
    max_retries: z.number().int().min(0).max(1000).optional(),
    on_renew: text.optional(),
  })
  .superRefine((c, ctx) => {
    const given = (["server", "auth_server", "proxy_server"] as const).filter((k) => c[k] !== undefined);
    if (given.length > 1) {
      ctx.addIssue({
        code: "custom",
        path: [given[1]!],
        message: `give the service address once (${given.join(" and ")} are both set)`,
      });
    }
  });

export interface DaemonSettings {
  oneshot: boolean;
  renewalIntervalSeconds?: number;
  retryIntervalSeconds?: number;
  maxRetries?: number;
  onRenew?: string;
}

export interface FileConfig {
  file: string;
  daemon: DaemonSettings;
  /** Input name (as in action.yml) → value. */
  values: Record<string, string>;
  /** Input name → "FILE:LINE (field)" for messages. */
  labels: Record<string, string>;
  /** The directory every output's destination names, when they name one. */
  out?: { path: string; label: string };
  /** Set when the outputs name different destinations: a message to raise unless --out overrides. */
  outConflict?: string;
  /** Accepted tbot fields that idbot does not use. */
  warnings: string[];
}

/** Line (1-based) of the node at `path`, or of its key for an unknown field. */
function lineOf(doc: Document, lc: LineCounter, path: FieldPath, keyOfLast = false): number | undefined {
  let node: unknown = doc.contents;
  let keyNode: unknown;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg);
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === "number") {
      keyNode = undefined;
      node = node.items[seg];
    } else break;
  }
  const target = (keyOfLast ? keyNode : node) ?? keyNode ?? node;
  const range = (target as { range?: [number, number, number] } | undefined)?.range;
  return range ? lc.linePos(range[0]).line : undefined;
}

/** "auth_server: idbot.example.com:443" (tbot's host:port) → "https://idbot.example.com:443". */
function serviceUrl(v: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `https://${v}`;
}

export function parseConfigFile(source: string, file: string, baseDir = dirname(resolve(file))): FileConfig {
  const lc = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigFileError(
      doc.errors
        .map((e) => {
          const line = e.linePos?.[0]?.line ?? (e.pos ? lc.linePos(e.pos[0]).line : "?");
          return `${file}:${line}: YAML syntax error: ${e.message.split("\n")[0]}`;
        })
        .join("\n"),
    );
  }
  const at = (path: FieldPath, keyOfLast = false) => `${file}:${lineOf(doc, lc, path, keyOfLast) ?? 1}`;
  const parsed = ConfigFileSchema.safeParse(doc.toJS({ maxAliasCount: 50 }) ?? {});
  if (!parsed.success) {
    throw new ConfigFileError(
      fieldProblems(parsed.error)
        .map((p: FieldProblem) =>
          p.unknownField !== undefined
            ? `${at(p.path, true)}: unknown field "${formatPath(p.path)}"`
            : `${at(p.path)}: ${formatPath(p.path)}: ${/received undefined$/.test(p.message) ? "is required" : p.message}`,
        )
        .join("\n"),
    );
  }
  const c = parsed.data;
  const values: Record<string, string> = {};
  const labels: Record<string, string> = {};
  const errors: string[] = [];
  const set = (input: string, value: string, path: FieldPath) => {
    const label = `${formatPath(path)} (${at(path)})`;
    if (values[input] !== undefined && values[input] !== value) {
      errors.push(
        `${at(path)}: ${formatPath(path)}: "${value}" conflicts with "${values[input]}" from ${labels[input]}: one join takes one ${input}`,
      );
      return;
    }
    values[input] = value;
    labels[input] = label;
  };

  set("token", c.onboarding.token, ["onboarding", "token"]);
  set("join-method", c.onboarding.join_method, ["onboarding", "join_method"]);
  if (c.onboarding.id_token_env)
    set("id-token-env", c.onboarding.id_token_env, ["onboarding", "id_token_env"]);
  if (c.onboarding.audience) set("audience", c.onboarding.audience, ["onboarding", "audience"]);
  if (c.onboarding.bound_keypair?.registration_secret) {
    set("registration-secret", c.onboarding.bound_keypair.registration_secret, [
      "onboarding",
      "bound_keypair",
      "registration_secret",
    ]);
  }
  if (c.storage)
    set("storage", isAbsolute(c.storage.path) ? c.storage.path : resolve(baseDir, c.storage.path), [
      "storage",
      "path",
    ]);
  for (const key of ["server", "auth_server", "proxy_server"] as const) {
    const v = c[key];
    if (v !== undefined) set("server", key === "server" ? v : serviceUrl(v), [key]);
  }
  if (c.certificate_ttl) set("certificate-ttl", c.certificate_ttl, ["certificate_ttl"]);
  if (c.ssh_hosts) set("ssh-hosts", c.ssh_hosts.join(","), ["ssh_hosts"]);
  if (c.retries !== undefined) set("retries", c.retries, ["retries"]);
  if (c.attempt_timeout) set("attempt-timeout", c.attempt_timeout, ["attempt_timeout"]);
  if (c.deadline) set("deadline", c.deadline, ["deadline"]);
  if (c.ca) {
    const pem = c.ca.includes("-----BEGIN");
    set("ca", pem || isAbsolute(c.ca) ? c.ca : resolve(baseDir, c.ca), ["ca"]);
  }

  const outputs: OutputType[] = [];
  const jwtAudiences: string[] = [];
  let jwtPath: FieldPath | undefined;
  const destinations: { path: string; at: FieldPath }[] = [];
  c.outputs.forEach((o: FileOutput, i) => {
    const p = (...rest: (string | number)[]): FieldPath => ["outputs", i, ...rest];
    if (o.destination) destinations.push({ path: o.destination.path, at: p("destination", "path") });
    switch (o.type) {
      case "identity":
        outputs.push("identity");
        break;
      case "ssh_client":
      case "ssh":
        outputs.push("ssh");
        break;
      case "kubernetes":
        outputs.push("kubernetes");
        set("kubernetes-cluster", o.kubernetes_cluster, p("kubernetes_cluster"));
        break;
      case "database":
        outputs.push("database");
        if (o.service !== undefined) {
          set("database", o.service, p("service"));
          if (o.database !== undefined) set("database-name", o.database, p("database"));
        } else {
          set("database", o.database!, p("database"));
        }
        if (o.username !== undefined) set("database-user", o.username, p("username"));
        break;
      case "spiffe-svid":
        outputs.push("spiffe-x509");
        if (o.svid) set("spiffe-path", o.svid.path, p("svid", "path"));
        if (o.jwts) {
          outputs.push("jwt");
          jwtAudiences.push(...o.jwts.map((j) => j.audience));
          jwtPath ??= p("jwts");
        }
        break;
      case "workload-identity-x509":
      case "spiffe-x509":
        outputs.push("spiffe-x509");
        if (o.spiffe_path) set("spiffe-path", o.spiffe_path, p("spiffe_path"));
        break;
      case "ssh_host":
        outputs.push("ssh_host");
        set(
          "ssh-host-key",
          isAbsolute(o.host_key) ? o.host_key : resolve(baseDir, o.host_key),
          p("host_key"),
        );
        break;
      case "workload-identity-jwt":
      case "jwt":
        outputs.push("jwt");
        jwtAudiences.push(...o.audiences);
        jwtPath ??= p("audiences");
        if (o.spiffe_path) set("spiffe-path", o.spiffe_path, p("spiffe_path"));
        break;
    }
  });
  if (outputs.length > 0) set("outputs", [...new Set(outputs)].join(","), ["outputs"]);
  if (jwtAudiences.length > 0) set("jwt-audience", [...new Set(jwtAudiences)].join(","), jwtPath!);
  if (errors.length > 0) throw new ConfigFileError(errors.join("\n"));

  const secs = (d: string | undefined) =>
    d === undefined ? undefined : /^\d+$/.test(d) ? Number(d) : parseDuration(d);
  const result: FileConfig = {
    file,
    values,
    labels,
    warnings: [],
    daemon: {
      oneshot: c.oneshot ?? false,
      renewalIntervalSeconds: secs(c.renewal_interval),
      retryIntervalSeconds: secs(c.retry_interval),
      maxRetries: c.max_retries,
      onRenew: c.on_renew,
    },
  };
  const dirs = destinations.map((d) => ({
    ...d,
    abs: isAbsolute(d.path) ? d.path : resolve(baseDir, d.path),
  }));
  const first = dirs[0];
  const other = dirs.find((d) => d.abs !== first?.abs);
  if (first && other) {
    result.outConflict = `${at(other.at)}: ${formatPath(other.at)}: "${other.path}" differs from "${first.path}" (${at(first.at)}): idbot writes one join into one directory (identity/, kubernetes/, database/, spiffe/ below it), so every output's destination must name the same directory, or give --out DIR`;
  } else if (first) {
    result.out = { path: first.abs, label: `${formatPath(first.at)} (${at(first.at)})` };
  }
  return result;
}

export function loadConfigFile(path: string): FileConfig {
  let source: string;
  try {
    source = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigFileError(
      `cannot read the config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  return parseConfigFile(source, path);
}
