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
  /** Certificate generation: 1 at join, +1 per renewal. An older one presented = a copy. */
  generation: number;
  /** Why the instance was locked (copied identity); locked instances cannot renew. */
  lockedReason?: string;
  /** The last 10 authentications (joins, renewals) and heartbeats, newest last. */
  authentications?: Array<{
    time: string;
    kind: string;
    remoteAddr?: string;
    generation: number;
    /** Renewals: SHA-256 of the new public keys (renewKeysHash), to recognise a retry. */
    keys?: string;
  }>;
  heartbeats?: Array<{ time: string; hostname?: string; version?: string; uptimeSeconds?: number }>;
}

/** A one-time join secret (`idbot admin tokens add`), stored as its SHA-256. */
export interface JoinTokenRecord {
  /** Public id shown by `tokens ls`; never the secret. */
  id: string;
  hash: string;
  botName: string;
  createdAt: string;
  expiresAt: string;
  usedAt?: string;
  usedByInstance?: string;
}

/** Server-side state of a bound_keypair join token. */
export interface BoundKeypairState {
  tokenName: string;
  /** OpenSSH public key line of the bound key. */
  publicKey?: string;
  boundAt?: string;
  /** Hash of the join state the bot must present at its next join. */
  joinStateHash?: string;
  recoveryCount: number;
  instanceId?: string;
  lockedReason?: string;
}

export interface ChallengeRecord {
  id: string;
  tokenName: string;
  nonce: string;
  expiresAt: string;
}

/** Preconditions and updates of a bound-keypair join, applied atomically with it. */
export interface BoundJoin {
  tokenName: string;
  challengeId: string;
  /** Key that answered the challenge. */
  publicKey: string;
  /** Key allowed when nothing is bound yet (onboarding.initial_public_key), or undefined
   *  when registering with the registration secret (already checked by the caller). */
  initialPublicKey?: string;
  registering: boolean;
  presentedJoinStateHash?: string;
  newJoinStateHash: string;
  /** null = no limit (relaxed, insecure). */
  recoveryLimit: number | null;
  checkJoinState: boolean;
  /** Key to bind from now on (rotation); default publicKey. */
  nextPublicKey?: string;
}

export interface StoredResource {
  kind: string;
  name: string;
  /** The resource as JSON (validated by the caller). */
  body: string;
  updatedAt: string;
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

export type CommitFailure =
  | "replayed"
  | "token_unknown"
  | "token_used"
  | "token_expired"
  | "challenge_used"
  | "not_registered"
  | "key_mismatch"
  | "already_registered"
  | "join_state_mismatch"
  | "recovery_limit"
  | "locked";
export type CommitResult = { ok: true } | { ok: false; reason: CommitFailure; detail?: string };

export type RenewResult =
  | { ok: true; generation: number; instance: BotInstanceRecord; repeated?: boolean }
  | { ok: false; reason: "unknown" | "locked" | "stale_generation"; instance?: BotInstanceRecord };

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
    /** SHA-256 of a one-time join secret, consumed exactly once. */
    joinTokenHash?: string;
    bound?: BoundJoin;
    instance: BotInstanceRecord;
    events: AuditEvent[];
  }): Promise<CommitResult>;
  /** Moves an instance to the next certificate generation if `presented` is current; a
   *  retry of the renewal that made the current generation gets it again (renewStep);
   *  any other older generation locks the instance (the identity was copied). Audits
   *  either way. */
  renewInstance(r: {
    id: string;
    presented: number;
    /** renewKeysHash() of the public keys the renewal certifies. */
    keysHash: string;
    now: string;
    expiresAt: string;
    remoteAddr?: string;
    heartbeat?: NonNullable<BotInstanceRecord["heartbeats"]>[number];
    events: AuditEvent[];
  }): Promise<RenewResult>;

  createJoinToken(t: JoinTokenRecord): Promise<void>;
  getJoinTokenByHash(hash: string): Promise<JoinTokenRecord | undefined>;
  listJoinTokens(): Promise<JoinTokenRecord[]>;
  deleteJoinToken(id: string): Promise<boolean>;

  createChallenge(c: ChallengeRecord): Promise<void>;
  getChallenge(id: string): Promise<ChallengeRecord | undefined>;
  getBoundKeypair(tokenName: string): Promise<BoundKeypairState | undefined>;
  listBoundKeypairs(): Promise<BoundKeypairState[]>;
  /** Operator actions on a bound-keypair token: unlock it, or forget its bound key. */
  updateBoundKeypair(tokenName: string, change: { unlock?: boolean; reset?: boolean }): Promise<boolean>;

  /** Resources applied with `idbot admin apply` (merged over the resource files). */
  putResource(r: StoredResource): Promise<void>;
  deleteResource(kind: string, name: string): Promise<boolean>;
  listResources(): Promise<StoredResource[]>;
  /** Changes whenever stored resources change, so replicas can poll cheaply. */
  resourcesVersion(): Promise<number>;
  appendAudit(events: AuditEvent[]): Promise<void>;
  listAudit(opts?: { sinceIso?: string; limit?: number; type?: string }): Promise<AuditEvent[]>;
  getBotInstance(id: string): Promise<BotInstanceRecord | undefined>;
  listBotInstances(botName?: string): Promise<BotInstanceRecord[]>;
  /** Forgets replay keys whose tokens have expired. */
  pruneReplayKeys(nowSeconds: number): Promise<number>;
  healthy(): Promise<boolean>;
  close(): Promise<void>;
}

/** Whether an error means the store cannot be reached or written right now (database
 *  down or restarting, connection lost, disk full or read-only): a 503 the client may
 *  retry elsewhere, not a 500. */
export function isStoreOutage(e: unknown): boolean {
  const code = String((e as { code?: unknown })?.code ?? "");
  const message = e instanceof Error ? e.message : String(e);
  return (
    /^(08|53|57P)/.test(code) || // PostgreSQL: connection exception, insufficient resources, shutdown
    /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND)$/.test(code) ||
    /^SQLITE_(FULL|IOERR|BUSY|READONLY|CANTOPEN|LOCKED)/.test(code) ||
    /Connection terminated|connection timeout|Client has encountered a connection error|database system is (shutting down|starting up)/i.test(
      message,
    )
  );
}
