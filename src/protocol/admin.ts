// The admin API's shapes, shared by the service (server/admin.ts, local and HTTP) and the
// remote client (client/admin.ts), so `idbot admin` prints the same thing either way.

/** One-time join secret as listed (never the secret, never its hash). */
export interface AdminJoinSecret {
  id: string;
  botName: string;
  createdAt: string;
  expiresAt: string;
  usedAt?: string;
  usedByInstance?: string;
}

export interface AdminBoundKeypair {
  tokenName: string;
  publicKey?: string;
  boundAt?: string;
  recoveryCount: number;
  instanceId?: string;
  lockedReason?: string;
}

export interface AdminTokenList {
  join_secrets: AdminJoinSecret[];
  bound_keypairs: AdminBoundKeypair[];
}

export interface AdminJoinSecretCreated {
  id: string;
  bot: string;
  expires_at: string;
  /** Shown once. */
  secret: string;
}

export interface AdminBotInstance {
  id: string;
  botName: string;
  tokenName: string;
  joinMethod: string;
  claims: Record<string, unknown>;
  createdAt: string;
  expiresAt: string;
  generation: number;
  lockedReason?: string;
  authentications?: unknown[];
  heartbeats?: unknown[];
}

export interface AdminAuditEvent {
  type: string;
  time: string;
  botName?: string;
  tokenName?: string;
  instanceId?: string;
  joinMethod?: string;
  remoteAddr?: string;
  reason?: string;
  data?: Record<string, unknown>;
}

export interface AdminTokenEdit {
  recovery_limit?: number;
  unlock?: boolean;
  reset?: boolean;
}

export interface AdminSignHost {
  /** OpenSSH public key line of the host. */
  public_key: string;
  principals: string[];
  /** Duration text, e.g. 720h. */
  ttl: string;
  /** Where the key came from, for the audit trail. */
  key_file?: string;
}

/** The operations `idbot admin` runs, on a store (local) or over HTTP (remote). */
export interface AdminApi {
  addJoinSecret(req: { bot: string; ttl: string }): Promise<AdminJoinSecretCreated>;
  listTokens(): Promise<AdminTokenList>;
  showToken(name: string): Promise<Record<string, unknown>>;
  deleteJoinSecret(id: string): Promise<{ deleted: string }>;
  editToken(name: string, change: AdminTokenEdit): Promise<{ changes: string[] }>;
  listBotInstances(bot?: string): Promise<AdminBotInstance[]>;
  showBotInstance(ref: string): Promise<AdminBotInstance>;
  apply(yaml: string, file: string): Promise<{ applied: string[] }>;
  listAudit(q: { since: string; type?: string }): Promise<AdminAuditEvent[]>;
  signHost(req: AdminSignHost): Promise<{ certificate: string; valid_until: string }>;
  rotateJwt(): Promise<{ kid: string; previous_kid: string; reloaded: boolean }>;
}

/** An admin operation refused: HTTP status, error code, message and hint, as the wire's
 *  `{ error: { code, message, hint } }`. */
export class AdminApiError extends Error {
  override name = "AdminApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Admin tokens are sent as `Authorization: Bearer <token>`; env fallback for the CLI. */
export const ADMIN_TOKEN_ENV = "IDBOT_ADMIN_TOKEN";
