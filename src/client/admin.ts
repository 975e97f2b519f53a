// The admin API over HTTP (`idbot admin ... --server URL`): the same operations as on the
// service host, authenticated with an admin token (Authorization: Bearer). https:// only,
// except to a loopback address; a private CA is pinned with caPem.
import {
  type AdminApi,
  AdminApiError,
  type AdminAuditEvent,
  type AdminBotInstance,
  type AdminJoinSecretCreated,
  type AdminTokenList,
} from "../protocol/admin.ts";
import { ErrorBodySchema } from "../protocol/join.ts";
import { normalizeServiceUrl } from "../protocol/net.ts";
import { checkServiceUrl, nodeTransport } from "./transport.ts";

export interface RemoteAdminOptions {
  server: string;
  token: string;
  caPem?: string;
  /** Per request; default 30 s. */
  timeoutMs?: number;
}

/** Audit listings can be long. */
const MAX_RESPONSE_BYTES = 256 * 1024 * 1024;

export function remoteAdmin(opts: RemoteAdminOptions): AdminApi {
  checkServiceUrl(opts.server);
  const base = normalizeServiceUrl(opts.server);
  const transport = nodeTransport(opts.caPem ? { caPem: opts.caPem } : {});
  const seg = encodeURIComponent;

  async function call<T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T> {
    const res = await transport.request(`${base}/v1/admin/${path}`, {
      method,
      ...(body !== undefined ? { body } : method === "POST" ? { body: {} } : {}),
      headers: { authorization: `Bearer ${opts.token}` },
      timeoutMs: opts.timeoutMs ?? 30_000,
      maxResponseBytes: MAX_RESPONSE_BYTES,
    });
    let value: unknown;
    try {
      value = JSON.parse(res.body);
    } catch {
      throw new AdminApiError(
        res.status || 502,
        "bad_response",
        `the service answered ${method} /v1/admin/${path} with HTTP ${res.status} and no JSON`,
        "Is --server the idbot service's URL (not a proxy or another service)?",
      );
    }
    if (res.status === 200) return value as T;
    const err = ErrorBodySchema.safeParse(value);
    if (err.success) {
      throw new AdminApiError(res.status, err.data.error.code, err.data.error.message, err.data.error.hint);
    }
    throw new AdminApiError(res.status, "bad_response", `the service answered with HTTP ${res.status}`);
  }

  return {
    addJoinSecret: (req) => call<AdminJoinSecretCreated>("POST", "tokens", req),
    listTokens: () => call<AdminTokenList>("GET", "tokens"),
    showToken: (name) => call<Record<string, unknown>>("GET", `tokens/${seg(name)}`),
    deleteJoinSecret: (id) => call<{ deleted: string }>("DELETE", `tokens/${seg(id)}`),
    editToken: (name, change) => call<{ changes: string[] }>("POST", `tokens/${seg(name)}/edit`, change),
    listBotInstances: (bot) =>
      call<AdminBotInstance[]>("GET", `bot-instances${bot ? `?bot=${seg(bot)}` : ""}`),
    showBotInstance: (ref) => call<AdminBotInstance>("GET", `bot-instances/${seg(ref)}`),
    apply: (yaml, file) => call<{ applied: string[] }>("POST", "apply", { yaml, file }),
    listAudit: ({ since, type }) =>
      call<AdminAuditEvent[]>(
        "GET",
        `audit?${new URLSearchParams({ since, ...(type ? { type } : {}) }).toString()}`,
      ),
    signHost: (req) => call<{ certificate: string; valid_until: string }>("POST", "sign-host", req),
    rotateJwt: () => call<{ kid: string; previous_kid: string; reloaded: boolean }>("POST", "rotate-jwt"),
  };
}
