// The admin operations, one implementation for both ways in: `idbot admin --data-dir`/
// `--database` on the service host (actor "local:<os user>") and the /v1/admin/ HTTP routes
// (actor "admin-token:<id> (<name>)"). Every change appends an audit event naming its actor.
//
// Admin tokens live in the stored-resources table as kind "admin_token" (name = id, body =
// { name, hash, created_at }), stored as SHA-256 only. They are managed on the service host
// alone (admin-tokens add/ls/rm): no HTTP route creates, lists or removes them.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { userInfo } from "node:os";
import { parseAllDocuments } from "yaml";
import { z } from "zod";
import {
  type AdminApi,
  AdminApiError,
  type AdminSignHost,
  type AdminTokenEdit,
  type AdminTokenList,
} from "../protocol/admin.ts";
import { parseDuration } from "../protocol/duration.ts";
import type { ErrorBody } from "../protocol/join.ts";
import { Authorities, createAuthorityRecord } from "./ca/authorities.ts";
import type { RouteContext } from "./http.ts";
import { hashSecret, newJoinSecret } from "./joinmethods/token.ts";
import { closeAfterAnswer } from "./linger.ts";
import { parseResources, parseStoredResource } from "./policy/resources.ts";
import type { AuditEvent, Store, StoredResource } from "./store/store.ts";

export const ADMIN_TOKEN_KIND = "admin_token";

/** Host certificates live at most a year. */
const MAX_HOST_CERT_SECONDS = 8760 * 3600;

const bad = (message: string, hint?: string) => new AdminApiError(400, "bad_request", message, hint);
const notFound = (message: string, hint?: string) => new AdminApiError(404, "not_found", message, hint);

function duration(text: string, what: string): number {
  try {
    return parseDuration(text);
  } catch (e) {
    throw bad(`${what}: ${(e as Error).message}`);
  }
}

/** "local:<os user>", the actor of admin changes made on the service host. */
export function localActor(): string {
  let user: string | undefined;
  try {
    user = userInfo().username;
  } catch {
    user = process.env.USER ?? process.env.USERNAME;
  }
  return `local:${user || `uid-${process.getuid?.() ?? "unknown"}`}`;
}

export interface AdminCaller {
  /** Who makes the changes: "local:alice" or "admin-token:adm-1a2b3c4d (bootstrap)". */
  actor: string;
  /** Source address of a remote caller, recorded in its audit events. */
  remoteAddr?: string;
  /** Where audit events go (the service logs and stores them); default: the store. */
  record?: (events: AuditEvent[]) => Promise<void>;
  /** The running service's CAs; default: loaded from the store. */
  authorities?: () => Authorities;
  /** A running service reloads its signing keys after a rotation. */
  reloadAuthorities?: () => Promise<void>;
}

/** The admin operations on `store`, made by `caller`. */
export function storeAdmin(store: Store, caller: AdminCaller): AdminApi {
  const emit = async (events: AuditEvent[]) => {
    const stamped = events.map((e) => ({
      ...e,
      ...(caller.remoteAddr ? { remoteAddr: caller.remoteAddr } : {}),
      data: { ...e.data, actor: caller.actor },
    }));
    if (caller.record) await caller.record(stamped);
    else await store.appendAudit(stamped);
  };
  const loadAuthorities = async () =>
    caller.authorities?.() ??
    new Authorities(await store.loadOrCreateCAs((name) => createAuthorityRecord(name, "idbot")));
  const appliedToken = async (name: string) =>
    (await store.listResources()).find((r) => r.kind === "token" && r.name === name);

  return {
    async addJoinSecret({ bot, ttl }) {
      if (!bot) throw bad("bot: a bot name is required");
      const seconds = duration(ttl, "ttl");
      const { secret, id } = newJoinSecret();
      const now = new Date();
      const expiresAt = new Date(now.getTime() + seconds * 1000).toISOString();
      await store.createJoinToken({
        id,
        hash: hashSecret(secret),
        botName: bot,
        createdAt: now.toISOString(),
        expiresAt,
      });
      await emit([
        {
          type: "token.created",
          time: now.toISOString(),
          botName: bot,
          tokenName: id,
          data: { expires_at: expiresAt },
        },
      ]);
      return { id, bot, expires_at: expiresAt, secret };
    },

    async listTokens(): Promise<AdminTokenList> {
      const tokens = await store.listJoinTokens();
      const bound = await store.listBoundKeypairs();
      return {
        join_secrets: tokens.map(({ hash: _h, ...t }) => t),
        bound_keypairs: bound.map(({ joinStateHash: _j, ...b }) => b),
      };
    },

    async showToken(name) {
      const t = (await store.listJoinTokens()).find((x) => x.id === name);
      const b = await store.getBoundKeypair(name);
      const applied = await appliedToken(name);
      if (!t && !b && !applied)
        throw notFound(`no one-time secret, bound-keypair state or applied token named "${name}"`);
      const { hash: _h, ...shown } = t ?? ({} as Record<string, unknown>);
      const body = applied ? (JSON.parse(applied.body) as Record<string, unknown>) : undefined;
      const spec = body?.spec as
        | { bound_keypair?: { onboarding?: { registration_secret?: string } } }
        | undefined;
      const reg = spec?.bound_keypair?.onboarding?.registration_secret;
      const value = {
        ...(t ? { join_secret: shown } : {}),
        ...(b
          ? {
              bound_keypair: {
                ...b,
                joinStateHash: undefined,
                registration: b.publicKey
                  ? "registered (the registration secret is spent)"
                  : "not registered yet",
              },
            }
          : reg
            ? { bound_keypair: { registration: "not registered yet", registration_secret: reg } }
            : {}),
        ...(body ? { applied: body } : {}),
      };
      // A spent registration secret is not shown again.
      return JSON.parse(
        JSON.stringify(value, (k, val) => (k === "registration_secret" && b?.publicKey ? undefined : val)),
      ) as Record<string, unknown>;
    },

    async deleteJoinSecret(id) {
      if (!(await store.deleteJoinToken(id))) throw notFound(`no one-time secret with ID "${id}"`);
      await emit([{ type: "token.deleted", time: new Date().toISOString(), tokenName: id }]);
      return { deleted: id };
    },

    async editToken(name, change: AdminTokenEdit) {
      const changes: string[] = [];
      if (change.unlock || change.reset) {
        if (!(await store.updateBoundKeypair(name, { unlock: change.unlock, reset: change.reset }))) {
          throw notFound(`token "${name}" has no bound-keypair state (it never joined)`);
        }
        changes.push(change.reset ? "reset (the bound key is forgotten)" : "unlocked");
      }
      if (change.recovery_limit !== undefined) {
        const limit = change.recovery_limit;
        if (!Number.isInteger(limit) || limit < 1)
          throw bad("the recovery limit must be a whole number >= 1");
        const applied = await appliedToken(name);
        if (!applied) {
          throw notFound(
            `token "${name}" is not an applied resource. If it is declared in a resources file, set spec.bound_keypair.recovery.limit: ${limit} there and send SIGHUP to the service, or apply the token with: idbot admin apply -f token.yaml`,
          );
        }
        const body = JSON.parse(applied.body) as {
          spec: { bound_keypair?: { recovery?: { limit?: number; mode?: string } } };
        };
        if (!body.spec.bound_keypair) throw bad(`token "${name}" is not a bound_keypair token`);
        body.spec.bound_keypair.recovery = {
          mode: body.spec.bound_keypair.recovery?.mode ?? "standard",
          limit,
        };
        try {
          parseStoredResource(JSON.stringify(body), `token/${name}`);
        } catch (e) {
          throw bad((e as Error).message);
        }
        await store.putResource({
          kind: "token",
          name,
          body: JSON.stringify(body),
          updatedAt: new Date().toISOString(),
        });
        changes.push(`recovery limit ${limit}`);
      }
      if (changes.length === 0) throw bad("tokens edit: give --recovery-limit N, --unlock or --reset");
      await emit([
        { type: "token.edited", time: new Date().toISOString(), tokenName: name, data: { changes } },
      ]);
      return { changes };
    },

    listBotInstances: (bot) => store.listBotInstances(bot || undefined),

    async showBotInstance(ref) {
      const id = ref.includes("/") ? ref.slice(ref.lastIndexOf("/") + 1) : ref;
      const i = id ? await store.getBotInstance(id) : undefined;
      if (!i || (ref.includes("/") && !ref.startsWith(`${i.botName}/`)))
        throw notFound(`no bot instance ${ref}`);
      return i;
    },

    async apply(yaml, file) {
      let resources: ReturnType<typeof parseResources>["resources"];
      try {
        resources = parseResources(yaml, file).resources;
      } catch (e) {
        throw bad((e as Error).message);
      }
      if (resources.length === 0) throw bad(`${file} declares no resources`);
      const now = new Date().toISOString();
      const applied: string[] = [];
      for (const r of resources) {
        // Stored as the YAML parsed to JSON (defaults not filled in), re-validated on load.
        await store.putResource({
          kind: r.kind,
          name: r.metadata.name,
          body: JSON.stringify(rawOf(yaml, r.kind, r.metadata.name)),
          updatedAt: now,
        });
        applied.push(`${r.kind}/${r.metadata.name}`);
      }
      await emit([{ type: "resources.applied", time: now, data: { resources: applied } }]);
      return { applied };
    },

    async listAudit({ since, type }) {
      const seconds = duration(since, "since");
      return store.listAudit({
        sinceIso: new Date(Date.now() - seconds * 1000).toISOString(),
        type: type || undefined,
        limit: 100_000,
      });
    },

    async signHost(req: AdminSignHost) {
      const principals = req.principals.map((p) => p.trim()).filter(Boolean);
      if (principals.length === 0) throw bad("principals: give at least one host name");
      const ttl = duration(req.ttl, "ttl");
      if (ttl > MAX_HOST_CERT_SECONDS) throw bad("ttl may not exceed 8760h (one year)");
      if (req.public_key.includes("PRIVATE KEY"))
        throw bad("that is a private key; give the host's public key (the .pub file)");
      const auth = await loadAuthorities();
      const now = Math.floor(Date.now() / 1000);
      let certificate: string;
      try {
        certificate = await auth.sshHost.sign({
          publicKey: req.public_key.trim(),
          certType: "host",
          keyId: `host=${principals[0]}`,
          principals,
          validAfter: now - 300,
          validBefore: now + ttl,
        });
      } catch (e) {
        throw bad(`${req.key_file ?? "public_key"}: ${(e as Error).message}`);
      }
      await emit([
        {
          type: "cert.issued",
          time: new Date().toISOString(),
          data: { kind: "ssh_host", principals, ...(req.key_file ? { key_file: req.key_file } : {}) },
        },
      ]);
      return { certificate, valid_until: new Date((now + ttl) * 1000).toISOString() };
    },

    async rotateJwt() {
      const before = new Authorities(
        await store.loadOrCreateCAs((name) => createAuthorityRecord(name, "idbot")),
      );
      const next = createAuthorityRecord("jwt", "idbot");
      await store.rotateCA("jwt", next);
      await emit([
        {
          type: "ca.rotated",
          time: new Date().toISOString(),
          data: { ca: "jwt", previous_kid: before.jwt.kid, kid: next.publicMaterial },
        },
      ]);
      let reloaded = false;
      if (caller.reloadAuthorities) {
        await caller.reloadAuthorities();
        reloaded = true;
      }
      return { kid: next.publicMaterial, previous_kid: before.jwt.kid, reloaded };
    },
  };
}

/** The document of `text` declaring kind/name, as plain JSON. */
function rawOf(text: string, kind: string, name: string): unknown {
  for (const d of parseAllDocuments(text)) {
    const v = d.toJS() as { kind?: string; metadata?: { name?: string } } | null;
    if (v?.kind === kind && v.metadata?.name === name) return v;
  }
  throw new Error(`internal: ${kind}/${name} not found again in the resources`);
}

// ---------------------------------------------------------------------------------------
// Admin tokens (local only).

export interface AdminTokenInfo {
  id: string;
  name: string;
  created_at: string;
}

interface AdminTokenBody {
  name: string;
  hash: string;
  created_at: string;
}

const ADMIN_TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

function adminTokenOf(r: StoredResource): (AdminTokenInfo & { hash: string }) | undefined {
  if (r.kind !== ADMIN_TOKEN_KIND) return undefined;
  try {
    const b = JSON.parse(r.body) as AdminTokenBody;
    if (typeof b.hash !== "string" || typeof b.name !== "string") return undefined;
    return { id: r.name, name: b.name, created_at: b.created_at, hash: b.hash };
  } catch {
    return undefined;
  }
}

async function adminTokenEntries(store: Store) {
  return (await store.listResources())
    .map(adminTokenOf)
    .filter((t): t is AdminTokenInfo & { hash: string } => t !== undefined);
}

/** Creates an admin token; the token is returned once and only its SHA-256 is stored. */
export async function addAdminToken(
  store: Store,
  actor: string,
  name: string,
): Promise<AdminTokenInfo & { token: string }> {
  if (!ADMIN_TOKEN_NAME.test(name)) {
    throw bad(
      `admin token name "${name}" must be 1-64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit`,
    );
  }
  const existing = (await adminTokenEntries(store)).find((t) => t.name === name);
  if (existing) {
    throw bad(
      `an admin token named "${name}" exists (${existing.id})`,
      `Remove it first (idbot admin admin-tokens rm ${existing.id}) or choose another name.`,
    );
  }
  const id = `adm-${randomBytes(4).toString("hex")}`;
  const token = `idbot_admin_${randomBytes(32).toString("base64url")}`;
  const created_at = new Date().toISOString();
  const body: AdminTokenBody = { name, hash: hashSecret(token), created_at };
  await store.putResource({
    kind: ADMIN_TOKEN_KIND,
    name: id,
    body: JSON.stringify(body),
    updatedAt: created_at,
  });
  await store.appendAudit([{ type: "admin_token.created", time: created_at, data: { id, name, actor } }]);
  return { id, name, created_at, token };
}

export async function listAdminTokens(store: Store): Promise<AdminTokenInfo[]> {
  return (await adminTokenEntries(store)).map(({ hash: _h, ...t }) => t);
}

export async function removeAdminToken(store: Store, actor: string, id: string): Promise<AdminTokenInfo> {
  const t = (await adminTokenEntries(store)).find((x) => x.id === id);
  if (!t || !(await store.deleteResource(ADMIN_TOKEN_KIND, id)))
    throw notFound(`no admin token with ID "${id}"`, "List them with: idbot admin admin-tokens ls");
  await store.appendAudit([
    { type: "admin_token.deleted", time: new Date().toISOString(), data: { id, name: t.name, actor } },
  ]);
  return { id: t.id, name: t.name, created_at: t.created_at };
}

/** The admin token whose hash matches `presented` (compared in constant time), if any. */
export async function authenticateAdminToken(
  store: Store,
  presented: string,
): Promise<AdminTokenInfo | undefined> {
  const want = createHash("sha256").update(presented).digest();
  let found: AdminTokenInfo | undefined;
  for (const t of await adminTokenEntries(store)) {
    const have = Buffer.from(t.hash, "hex");
    if (have.length === want.length && timingSafeEqual(have, want) && !found)
      found = { id: t.id, name: t.name, created_at: t.created_at };
  }
  return found;
}

// ---------------------------------------------------------------------------------------
// HTTP: /v1/admin/...

/** Admin requests may carry a resources file; they are read only once authenticated. */
const MAX_ADMIN_BODY_BYTES = 1024 * 1024;

/** The route context, plus what only the service can do for an admin request. */
export type AdminRouteContext = RouteContext & { reloadAuthorities?: () => Promise<void> };

const TokensAdd = z.strictObject({ bot: z.string().min(1).max(256), ttl: z.string().max(64).default("15m") });
const TokenEdit = z.strictObject({
  recovery_limit: z.number().int().min(1).optional(),
  unlock: z.boolean().optional(),
  reset: z.boolean().optional(),
});
const Apply = z.strictObject({ yaml: z.string(), file: z.string().max(1024).default("request") });
const SignHost = z.strictObject({
  public_key: z
    .string()
    .min(1)
    .max(16 * 1024),
  principals: z.array(z.string().min(1).max(256)).min(1).max(256),
  ttl: z.string().max(64).default("720h"),
  key_file: z.string().max(1024).optional(),
});
const Empty = z.strictObject({});

function answer(res: ServerResponse, status: number, value: unknown, headers?: Record<string, string>): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(body);
}

function answerError(res: ServerResponse, e: AdminApiError, headers?: Record<string, string>): void {
  const body: ErrorBody = {
    error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) },
  };
  answer(res, e.status, body, headers);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tooLarge = () =>
      new AdminApiError(
        413,
        "payload_too_large",
        `the request body is larger than ${MAX_ADMIN_BODY_BYTES} bytes`,
      );
    if (Number(req.headers["content-length"] ?? 0) > MAX_ADMIN_BODY_BYTES) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_ADMIN_BODY_BYTES) chunks.push(c);
      else reject(tooLarge());
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

async function jsonBody<S extends z.ZodType>(req: IncomingMessage, schema: S): Promise<z.output<S>> {
  if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
    throw new AdminApiError(415, "bad_request", "send the request as application/json");
  }
  const raw = await readBody(req);
  let value: unknown;
  try {
    value = raw.length === 0 ? {} : JSON.parse(raw.toString("utf8"));
  } catch {
    throw bad("the request body is not valid JSON");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw bad(
      `invalid request: ${parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")}`,
    );
  }
  return parsed.data;
}

const unauthorized = (message: string) =>
  new AdminApiError(
    401,
    "unauthorized",
    message,
    "Create an admin token on the service host with: idbot admin admin-tokens add --data-dir DIR --name NAME (or --database URL); pass it with --admin-token or IDBOT_ADMIN_TOKEN.",
  );

/** Answers one /v1/admin/ request: rate limit, admin token, route. */
export async function handleAdmin(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  ctx: AdminRouteContext,
  meta: { remoteAddr?: string; requestId: string },
): Promise<void> {
  const wait = await ctx.limits.address.take(meta.remoteAddr ?? "unknown");
  if (wait > 0) {
    ctx.metrics.rateLimited.inc({ limit: "address" });
    return answerError(
      res,
      new AdminApiError(429, "rate_limited", "too many requests from this address", `Retry after ${wait} s.`),
      { "retry-after": String(wait) },
    );
  }
  const refuse = (e: AdminApiError) => {
    ctx.metrics.authFailure("admin");
    ctx.logger.log("warn", "admin request refused", {
      path,
      method: req.method,
      remote_addr: meta.remoteAddr,
      request_id: meta.requestId,
      reason: e.message,
    });
    answerError(res, e, { "www-authenticate": 'Bearer realm="idbot-admin"' });
  };
  const auth = req.headers.authorization;
  const m = typeof auth === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(auth) : null;
  if (!m) {
    return refuse(
      unauthorized("the admin API needs an admin token: send it as Authorization: Bearer <token>"),
    );
  }
  const who = await authenticateAdminToken(ctx.store, m[1]!);
  if (!who) return refuse(unauthorized("the admin token is not known to this service (wrong, or removed)"));

  const api = storeAdmin(ctx.store, {
    actor: `admin-token:${who.id} (${who.name})`,
    ...(meta.remoteAddr ? { remoteAddr: meta.remoteAddr } : {}),
    record: (events) => ctx.audit.record(events),
    authorities: () => ctx.authorities,
    ...(ctx.reloadAuthorities ? { reloadAuthorities: ctx.reloadAuthorities } : {}),
  });
  try {
    const result = await route(req, path, api);
    answer(res, 200, result);
  } catch (e) {
    if (e instanceof AdminApiError) {
      if (e.status === 413) {
        closeAfterAnswer(req, res);
      }
      return answerError(res, e);
    }
    throw e;
  }
}

async function route(req: IncomingMessage, path: string, api: AdminApi): Promise<unknown> {
  const url = new URL(req.url ?? "/", "http://admin.invalid");
  let parts: string[];
  try {
    parts = path.slice("/v1/admin/".length).split("/").map(decodeURIComponent);
  } catch {
    throw bad("the path is not valid percent-encoding");
  }
  const method = req.method ?? "GET";
  const [group, arg, action] = parts;
  const q = (k: string) => url.searchParams.get(k) ?? undefined;
  const noRoute = () => notFound(`no admin route ${method} ${path}`);
  switch (group) {
    case "tokens":
      if (arg === undefined || arg === "") {
        if (method === "GET") return api.listTokens();
        if (method === "POST") return api.addJoinSecret(await jsonBody(req, TokensAdd));
      } else if (action === undefined) {
        if (method === "GET") return api.showToken(arg);
        if (method === "DELETE") return api.deleteJoinSecret(arg);
      } else if (action === "edit" && parts.length === 3 && method === "POST") {
        return api.editToken(arg, await jsonBody(req, TokenEdit));
      }
      throw noRoute();
    case "bot-instances":
      if (method !== "GET" || parts.length > 2) throw noRoute();
      return arg ? api.showBotInstance(arg) : api.listBotInstances(q("bot"));
    case "apply":
      if (method !== "POST" || parts.length > 1) throw noRoute();
      {
        const body = await jsonBody(req, Apply);
        return api.apply(body.yaml, body.file);
      }
    case "audit":
      if (method !== "GET" || parts.length > 1) throw noRoute();
      return api.listAudit({ since: q("since") ?? "24h", type: q("type") });
    case "sign-host":
      if (method !== "POST" || parts.length > 1) throw noRoute();
      return api.signHost(await jsonBody(req, SignHost));
    case "rotate-jwt":
      if (method !== "POST" || parts.length > 1) throw noRoute();
      await jsonBody(req, Empty);
      return api.rotateJwt();
    case "admin-tokens":
      throw new AdminApiError(
        403,
        "denied",
        "admin tokens cannot be managed over HTTP",
        "On the service host run: idbot admin admin-tokens add|ls|rm --data-dir DIR (or --database URL).",
      );
    default:
      throw noRoute();
  }
}
