// The storage interface every store implements (SQLite embedded, PostgreSQL scale-out).
// Single-use and replay checks live in the database (unique keys inside transactions),
// never in process memory, so they hold across restarts and replicas.

/** The service's signing keys. `jwt_previous` exists after a JWT key rotation, so tokens
 *  signed before it keep verifying against the published JWKS until they expire. */
export type CAName = "tls" | "ssh_user" | "ssh_host" | "spiffe" | "jwt" | "jwt_previous";
/** Created on first start (and added to older stores) when missing. */
export const REQUIRED_CAS: readonly CAName[] = ["tls", "ssh_user", "ssh_host", "spiffe", "jwt"];

export interface CAKeyRecord {
  name: CAName;
  /** PKCS#8 PEM of the CA's private key. */
  privateKeyPem: string;
  /** X.509 certificate PEM (TLS CA) or OpenSSH public key line (SSH CAs) or JWK id (JWT). */
  publicMaterial: string;
  createdAt: string;
}

export interface BotInstanceRecord {
  id: string;
  botName: string;
  tokenName: string;
  joinMethod: string;
  /** Non-secret claims the join method attested. */
  claims: Record<string, unknown>;
  createdAt: string;
  expiresAt: string;
  generation: number;
}

export interface AuditEvent {
  /** e.g. join.success, join.failure, cert.issued */
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

export interface ReplayKey {
  issuer: string;
  jti: string;
  /** Unix seconds after which the token can no longer verify, so the key can be pruned. */
  expiresAt: number;
}

export type CommitResult = { ok: true } | { ok: false; reason: "replayed" };

export interface Store {
  readonly kind: "sqlite" | "postgres";
  /** Returns the stored CAs, creating each missing required one with `create`, atomically. */
  loadOrCreateCAs(create: (name: CAName) => CAKeyRecord): Promise<CAKeyRecord[]>;
  /** Replaces CA `name` with `next`, keeping the old one as `<name>_previous`. */
  rotateCA(name: "jwt", next: CAKeyRecord): Promise<void>;
  /** Records a successful join in one transaction: consumes the replay key (refusing a
   *  second use), creates the bot instance and appends the audit events. */
  commitJoin(join: {
    replay?: ReplayKey;
    instance: BotInstanceRecord;
    events: AuditEvent[];
  }): Promise<CommitResult>;
  appendAudit(events: AuditEvent[]): Promise<void>;
  listAudit(opts?: { sinceIso?: string; limit?: number; type?: string }): Promise<AuditEvent[]>;
  getBotInstance(id: string): Promise<BotInstanceRecord | undefined>;
  listBotInstances(botName?: string): Promise<BotInstanceRecord[]>;
  /** Forgets replay keys whose tokens have expired. */
  pruneReplayKeys(nowSeconds: number): Promise<number>;
  healthy(): Promise<boolean>;
  close(): Promise<void>;
}
