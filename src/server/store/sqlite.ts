// The embedded store: one SQLite file (WAL) in the data directory. better-sqlite3 is
// loaded lazily so the bundled CLI runs join/status/cleanup without the native module.
import { closeSync, constants, lstatSync, mkdirSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import type {
  AuditEvent,
  BotInstanceRecord,
  BoundJoin,
  BoundKeypairState,
  CAKeyRecord,
  CAName,
  ChallengeRecord,
  CommitFailure,
  CommitResult,
  JoinTokenRecord,
  RenewResult,
  ReplayKey,
  Store,
  StoredResource,
} from "./store.ts";
import { REQUIRED_CAS } from "./store.ts";

const MIGRATIONS: string[] = [
  `CREATE TABLE cas (name TEXT PRIMARY KEY, private_key_pem TEXT NOT NULL, public_material TEXT NOT NULL, created_at TEXT NOT NULL);
   CREATE TABLE replay (issuer TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (issuer, jti)) WITHOUT ROWID;
   CREATE INDEX replay_expiry ON replay (expires_at);
   CREATE TABLE bot_instances (id TEXT PRIMARY KEY, bot_name TEXT NOT NULL, token_name TEXT NOT NULL, join_method TEXT NOT NULL,
     claims TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, generation INTEGER NOT NULL);
   CREATE INDEX bot_instances_bot ON bot_instances (bot_name, created_at);
   CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, type TEXT NOT NULL, bot_name TEXT, token_name TEXT,
     instance_id TEXT, join_method TEXT, remote_addr TEXT, reason TEXT, data TEXT);
   CREATE INDEX audit_time ON audit (time);`,
  `ALTER TABLE bot_instances ADD COLUMN locked_reason TEXT;
   ALTER TABLE bot_instances ADD COLUMN authentications TEXT NOT NULL DEFAULT '[]';
   ALTER TABLE bot_instances ADD COLUMN heartbeats TEXT NOT NULL DEFAULT '[]';
   CREATE TABLE join_tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, bot_name TEXT NOT NULL, created_at TEXT NOT NULL,
     expires_at TEXT NOT NULL, used_at TEXT, used_by_instance TEXT);
   CREATE TABLE bound_keypairs (token_name TEXT PRIMARY KEY, public_key TEXT, bound_at TEXT, join_state_hash TEXT,
     recovery_count INTEGER NOT NULL DEFAULT 0, instance_id TEXT, locked_reason TEXT);
   CREATE TABLE challenges (id TEXT PRIMARY KEY, token_name TEXT NOT NULL, nonce TEXT NOT NULL, expires_at TEXT NOT NULL);
   CREATE TABLE resources (kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (kind, name));
   CREATE TABLE resources_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
   INSERT INTO resources_version (id, version) VALUES (1, 0);`,
];

/** Keeps the newest `max` entries of a JSON array column. */
function pushCapped<T>(json: string | null | undefined, item: T, max = 10): string {
  const list = (json ? (JSON.parse(json) as T[]) : []).concat(item);
  return JSON.stringify(list.slice(-max));
}

/** Thrown inside a transaction to roll it back with a commit failure. */
class Refusal extends Error {
  constructor(
    readonly reason: CommitFailure,
    readonly detail?: string,
  ) {
    super(reason);
  }
}

export class StoreError extends Error {
  override name = "StoreError";
}

/** Opens (creating if needed) `dataDir/idbot.db`. The directory is created 0700 and the
 *  database file 0600 before SQLite touches it; SQLite gives its -wal/-shm files the same mode. */
export function openSqliteStore(dataDir: string): SqliteStore {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new StoreError(`cannot create data directory ${dataDir}: ${(e as NodeJS.ErrnoException).code}`);
  }
  const st = lstatSync(dataDir);
  if (!st.isDirectory())
    throw new StoreError(`data directory ${dataDir} is not a directory (or is a symlink)`);
  const file = join(dataDir, "idbot.db");
  try {
    closeSync(openSync(file, constants.O_CREAT | constants.O_RDWR | (constants.O_NOFOLLOW ?? 0), 0o600));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new StoreError(
      `cannot open ${file} for writing (${code})${code === "EROFS" || code === "EACCES" ? ": the data directory must be writable by the service" : code === "ENOSPC" ? ": the disk is full" : ""}`,
    );
  }
  const require = createRequire(import.meta.url);
  let Database: typeof BetterSqlite3;
  try {
    Database = require("better-sqlite3") as typeof BetterSqlite3;
  } catch (e) {
    throw new StoreError(
      `the embedded store needs the better-sqlite3 module (npm install -g idbot installs it): ${(e as Error).message}`,
    );
  }
  return new SqliteStore(new Database(file, { timeout: 5000 }));
}

export class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  private stmts;

  constructor(private db: BetterSqlite3.Database) {
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = ON");
      this.migrate();
    } catch (e) {
      db.close();
      const msg = (e as Error).message;
      throw new StoreError(
        /readonly|SQLITE_READONLY/i.test(msg)
          ? `the embedded store is read-only (${msg}): make the data directory writable`
          : /disk.*full|SQLITE_FULL/i.test(msg)
            ? `the disk holding the embedded store is full (${msg})`
            : `cannot open the embedded store: ${msg}`,
      );
    }
    this.stmts = {
      insertReplay: db.prepare("INSERT INTO replay (issuer, jti, expires_at) VALUES (?, ?, ?)"),
      insertInstance: db.prepare(
        "INSERT INTO bot_instances (id, bot_name, token_name, join_method, claims, created_at, expires_at, generation, authentications) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      insertAudit: db.prepare(
        "INSERT INTO audit (time, type, bot_name, token_name, instance_id, join_method, remote_addr, reason, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      getInstance: db.prepare("SELECT * FROM bot_instances WHERE id = ?"),
    };
  }

  private migrate(): void {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db
        .transaction(() => {
          this.db.exec(MIGRATIONS[v]!);
          this.db.pragma(`user_version = ${v + 1}`);
        })
        .immediate();
    }
  }

  async loadOrCreateCAs(create: (name: CAName) => CAKeyRecord): Promise<CAKeyRecord[]> {
    return this.db
      .transaction(() => {
        const cas = (this.db.prepare("SELECT * FROM cas").all() as Array<Record<string, string>>).map(
          rowToCA,
        );
        const ins = this.db.prepare(
          "INSERT INTO cas (name, private_key_pem, public_material, created_at) VALUES (?, ?, ?, ?)",
        );
        for (const name of REQUIRED_CAS) {
          if (cas.some((c) => c.name === name)) continue;
          const ca = create(name);
          ins.run(ca.name, ca.privateKeyPem, ca.publicMaterial, ca.createdAt);
          cas.push(ca);
        }
        return cas;
      })
      .immediate();
  }

  async rotateCA(name: "jwt", next: CAKeyRecord): Promise<void> {
    this.db
      .transaction(() => {
        const prev = `${name}_previous`;
        this.db.prepare("DELETE FROM cas WHERE name = ?").run(prev);
        this.db.prepare("UPDATE cas SET name = ? WHERE name = ?").run(prev, name);
        this.db
          .prepare("INSERT INTO cas (name, private_key_pem, public_material, created_at) VALUES (?, ?, ?, ?)")
          .run(name, next.privateKeyPem, next.publicMaterial, next.createdAt);
      })
      .immediate();
  }

  private insertEvents(events: AuditEvent[]): void {
    for (const e of events) {
      this.stmts.insertAudit.run(
        e.time,
        e.type,
        e.botName ?? null,
        e.tokenName ?? null,
        e.instanceId ?? null,
        e.joinMethod ?? null,
        e.remoteAddr ?? null,
        e.reason ?? null,
        e.data ? JSON.stringify(e.data) : null,
      );
    }
  }

  async commitJoin(j: {
    replay?: ReplayKey;
    joinTokenHash?: string;
    bound?: BoundJoin;
    instance: BotInstanceRecord;
    events: AuditEvent[];
  }): Promise<CommitResult> {
    this.pendingLock = undefined;
    try {
      this.db
        .transaction(() => {
          const i = j.instance;
          if (j.replay) this.stmts.insertReplay.run(j.replay.issuer, j.replay.jti, j.replay.expiresAt);
          if (j.joinTokenHash) this.consumeJoinToken(j.joinTokenHash, i);
          if (j.bound) this.applyBoundJoin(j.bound, i);
          this.stmts.insertInstance.run(
            i.id,
            i.botName,
            i.tokenName,
            i.joinMethod,
            JSON.stringify(i.claims),
            i.createdAt,
            i.expiresAt,
            i.generation,
            JSON.stringify(
              i.authentications ?? [{ time: i.createdAt, kind: "join", generation: i.generation }],
            ),
          );
          this.insertEvents(j.events);
        })
        .immediate();
      return { ok: true };
    } catch (e) {
      if (e instanceof Refusal) {
        // A copied keypair locks the token's bound state and its instance, and that must
        // stick even though this join is refused: write it in its own transaction.
        const lock = this.takeLock();
        if (lock) this.lockBound(lock.tokenName, lock.reason, lock.instanceId);
        return { ok: false, reason: e.reason, ...(e.detail ? { detail: e.detail } : {}) };
      }
      if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY")
        return { ok: false, reason: "replayed" };
      throw e;
    }
  }

  private consumeJoinToken(hash: string, i: BotInstanceRecord): void {
    const row = this.db.prepare("SELECT * FROM join_tokens WHERE hash = ?").get(hash) as
      | Record<string, string | null>
      | undefined;
    if (!row) throw new Refusal("token_unknown");
    if (row.used_at) throw new Refusal("token_used");
    if (row.expires_at! <= i.createdAt) throw new Refusal("token_expired");
    // The conditional update is what makes the token single-use under concurrency.
    const r = this.db
      .prepare("UPDATE join_tokens SET used_at = ?, used_by_instance = ? WHERE hash = ? AND used_at IS NULL")
      .run(i.createdAt, i.id, hash);
    if (r.changes !== 1) throw new Refusal("token_used");
  }

  /** A lock to persist after the refused transaction rolls back (copied keypair). */
  private pendingLock: { tokenName: string; reason: string; instanceId?: string } | undefined;

  private applyBoundJoin(b: BoundJoin, i: BotInstanceRecord): void {
    const gone = this.db
      .prepare("DELETE FROM challenges WHERE id = ? AND token_name = ?")
      .run(b.challengeId, b.tokenName);
    if (gone.changes !== 1) throw new Refusal("challenge_used");
    const st = this.db.prepare("SELECT * FROM bound_keypairs WHERE token_name = ?").get(b.tokenName) as
      | Record<string, string | number | null>
      | undefined;
    if (st?.locked_reason) throw new Refusal("locked", String(st.locked_reason));
    const bound = (st?.public_key as string | null) ?? undefined;
    if (b.registering) {
      if (bound) throw new Refusal("already_registered");
    } else if (bound) {
      if (bound !== b.publicKey) throw new Refusal("key_mismatch");
    } else if (b.initialPublicKey === undefined || b.initialPublicKey !== b.publicKey) {
      throw new Refusal(b.initialPublicKey === undefined ? "not_registered" : "key_mismatch");
    }
    const stored = (st?.join_state_hash as string | null) ?? undefined;
    if (b.checkJoinState && stored !== undefined && stored !== b.presentedJoinStateHash) {
      const reason = "join state mismatch: the bound keypair was used from a second machine";
      const lock = {
        tokenName: b.tokenName,
        reason,
        instanceId: (st?.instance_id as string | null) ?? undefined,
      };
      // Thrown after returning the lock through the closure below.
      this.pendingLock = lock;
      throw new Refusal("join_state_mismatch", reason);
    }
    const count = Number(st?.recovery_count ?? 0);
    if (b.recoveryLimit !== null && count >= b.recoveryLimit) {
      throw new Refusal("recovery_limit", `${count} of ${b.recoveryLimit} joins used`);
    }
    this.db
      .prepare(
        `INSERT INTO bound_keypairs (token_name, public_key, bound_at, join_state_hash, recovery_count, instance_id)
         VALUES (?, ?, ?, ?, 1, ?)
         ON CONFLICT (token_name) DO UPDATE SET public_key = excluded.public_key,
           bound_at = CASE WHEN bound_keypairs.public_key = excluded.public_key THEN bound_keypairs.bound_at ELSE excluded.bound_at END,
           join_state_hash = excluded.join_state_hash, recovery_count = bound_keypairs.recovery_count + 1,
           instance_id = excluded.instance_id`,
      )
      .run(b.tokenName, b.nextPublicKey ?? b.publicKey, i.createdAt, b.newJoinStateHash, i.id);
  }

  private takeLock() {
    const lock = this.pendingLock;
    this.pendingLock = undefined;
    return lock;
  }

  private lockBound(tokenName: string, reason: string, instanceId?: string): void {
    this.db
      .transaction(() => {
        this.db
          .prepare("UPDATE bound_keypairs SET locked_reason = ? WHERE token_name = ?")
          .run(reason, tokenName);
        if (instanceId)
          this.db.prepare("UPDATE bot_instances SET locked_reason = ? WHERE id = ?").run(reason, instanceId);
      })
      .immediate();
  }

  async renewInstance(r: {
    id: string;
    presented: number;
    now: string;
    expiresAt: string;
    remoteAddr?: string;
    heartbeat?: NonNullable<BotInstanceRecord["heartbeats"]>[number];
    events: AuditEvent[];
  }): Promise<RenewResult> {
    return this.db
      .transaction((): RenewResult => {
        const row = this.stmts.getInstance.get(r.id) as Record<string, unknown> | undefined;
        if (!row) return { ok: false, reason: "unknown" };
        const inst = rowToInstance(row);
        if (inst.lockedReason) return { ok: false, reason: "locked", instance: inst };
        if (r.presented !== inst.generation) {
          const reason = `certificate generation ${r.presented} presented, current is ${inst.generation}: the identity was copied`;
          this.db.prepare("UPDATE bot_instances SET locked_reason = ? WHERE id = ?").run(reason, r.id);
          this.insertEvents(r.events.map((e) => ({ ...e, type: "instance.locked", reason })));
          return { ok: false, reason: "stale_generation", instance: { ...inst, lockedReason: reason } };
        }
        const generation = inst.generation + 1;
        this.db
          .prepare(
            "UPDATE bot_instances SET generation = ?, expires_at = ?, authentications = ?, heartbeats = ? WHERE id = ?",
          )
          .run(
            generation,
            r.expiresAt,
            pushCapped(row.authentications as string, {
              time: r.now,
              kind: "renew",
              remoteAddr: r.remoteAddr,
              generation,
            }),
            r.heartbeat ? pushCapped(row.heartbeats as string, r.heartbeat) : (row.heartbeats as string),
            r.id,
          );
        this.insertEvents(r.events);
        return { ok: true, generation, instance: { ...inst, generation, expiresAt: r.expiresAt } };
      })
      .immediate();
  }

  async createJoinToken(t: JoinTokenRecord): Promise<void> {
    this.db
      .prepare("INSERT INTO join_tokens (id, hash, bot_name, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
      .run(t.id, t.hash, t.botName, t.createdAt, t.expiresAt);
  }

  async getJoinTokenByHash(hash: string): Promise<JoinTokenRecord | undefined> {
    const r = this.db.prepare("SELECT * FROM join_tokens WHERE hash = ?").get(hash) as
      | Record<string, string | null>
      | undefined;
    return r ? rowToJoinToken(r) : undefined;
  }

  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    return (
      this.db.prepare("SELECT * FROM join_tokens ORDER BY created_at").all() as Array<
        Record<string, string | null>
      >
    ).map(rowToJoinToken);
  }

  async deleteJoinToken(id: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM join_tokens WHERE id = ?").run(id).changes === 1;
  }

  async createChallenge(c: ChallengeRecord): Promise<void> {
    this.db
      .prepare("DELETE FROM challenges WHERE expires_at < ?")
      .run(new Date(Date.now() - 3600_000).toISOString());
    this.db
      .prepare("INSERT INTO challenges (id, token_name, nonce, expires_at) VALUES (?, ?, ?, ?)")
      .run(c.id, c.tokenName, c.nonce, c.expiresAt);
  }

  async getChallenge(id: string): Promise<ChallengeRecord | undefined> {
    const r = this.db.prepare("SELECT * FROM challenges WHERE id = ?").get(id) as
      | Record<string, string>
      | undefined;
    return r ? { id: r.id!, tokenName: r.token_name!, nonce: r.nonce!, expiresAt: r.expires_at! } : undefined;
  }

  async getBoundKeypair(tokenName: string): Promise<BoundKeypairState | undefined> {
    const r = this.db.prepare("SELECT * FROM bound_keypairs WHERE token_name = ?").get(tokenName) as
      | Record<string, string | number | null>
      | undefined;
    return r ? rowToBound(r) : undefined;
  }

  async listBoundKeypairs(): Promise<BoundKeypairState[]> {
    return (
      this.db.prepare("SELECT * FROM bound_keypairs ORDER BY token_name").all() as Array<
        Record<string, string | number | null>
      >
    ).map(rowToBound);
  }

  async updateBoundKeypair(
    tokenName: string,
    change: { unlock?: boolean; reset?: boolean },
  ): Promise<boolean> {
    return this.db
      .transaction(() => {
        const row = this.db
          .prepare("SELECT instance_id FROM bound_keypairs WHERE token_name = ?")
          .get(tokenName) as { instance_id: string | null } | undefined;
        if (!row) return false;
        if (change.reset) this.db.prepare("DELETE FROM bound_keypairs WHERE token_name = ?").run(tokenName);
        else if (change.unlock) {
          this.db
            .prepare("UPDATE bound_keypairs SET locked_reason = NULL WHERE token_name = ?")
            .run(tokenName);
          if (row.instance_id)
            this.db
              .prepare("UPDATE bot_instances SET locked_reason = NULL WHERE id = ?")
              .run(row.instance_id);
        }
        return true;
      })
      .immediate();
  }

  async putResource(r: StoredResource): Promise<void> {
    this.db
      .transaction(() => {
        this.db
          .prepare(
            "INSERT INTO resources (kind, name, body, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
          )
          .run(r.kind, r.name, r.body, r.updatedAt);
        this.db.prepare("UPDATE resources_version SET version = version + 1 WHERE id = 1").run();
      })
      .immediate();
  }

  async deleteResource(kind: string, name: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        const n = this.db
          .prepare("DELETE FROM resources WHERE kind = ? AND name = ?")
          .run(kind, name).changes;
        if (n > 0) this.db.prepare("UPDATE resources_version SET version = version + 1 WHERE id = 1").run();
        return n > 0;
      })
      .immediate();
  }

  async listResources(): Promise<StoredResource[]> {
    return (
      this.db.prepare("SELECT * FROM resources ORDER BY kind, name").all() as Array<Record<string, string>>
    ).map((r) => ({
      kind: r.kind!,
      name: r.name!,
      body: r.body!,
      updatedAt: r.updated_at!,
    }));
  }

  async resourcesVersion(): Promise<number> {
    return (
      this.db.prepare("SELECT version FROM resources_version WHERE id = 1").get() as { version: number }
    ).version;
  }

  async appendAudit(events: AuditEvent[]): Promise<void> {
    this.db.transaction(() => this.insertEvents(events))();
  }

  async listAudit(opts: { sinceIso?: string; limit?: number; type?: string } = {}): Promise<AuditEvent[]> {
    const rows = this.db
      .prepare("SELECT * FROM audit WHERE time >= ? AND (? IS NULL OR type = ?) ORDER BY seq DESC LIMIT ?")
      .all(opts.sinceIso ?? "", opts.type ?? null, opts.type ?? null, opts.limit ?? 1000) as Array<
      Record<string, unknown>
    >;
    return rows.reverse().map((r) => ({
      type: r.type as string,
      time: r.time as string,
      botName: (r.bot_name as string | null) ?? undefined,
      tokenName: (r.token_name as string | null) ?? undefined,
      instanceId: (r.instance_id as string | null) ?? undefined,
      joinMethod: (r.join_method as string | null) ?? undefined,
      remoteAddr: (r.remote_addr as string | null) ?? undefined,
      reason: (r.reason as string | null) ?? undefined,
      data: r.data ? (JSON.parse(r.data as string) as Record<string, unknown>) : undefined,
    }));
  }

  async getBotInstance(id: string): Promise<BotInstanceRecord | undefined> {
    const r = this.stmts.getInstance.get(id) as Record<string, unknown> | undefined;
    return r ? rowToInstance(r) : undefined;
  }

  async listBotInstances(botName?: string): Promise<BotInstanceRecord[]> {
    const rows = this.db
      .prepare("SELECT * FROM bot_instances WHERE (? IS NULL OR bot_name = ?) ORDER BY created_at")
      .all(botName ?? null, botName ?? null) as Array<Record<string, unknown>>;
    return rows.map(rowToInstance);
  }

  async pruneReplayKeys(nowSeconds: number): Promise<number> {
    return this.db.prepare("DELETE FROM replay WHERE expires_at < ?").run(nowSeconds).changes;
  }

  async healthy(): Promise<boolean> {
    try {
      this.db.prepare("SELECT 1").get();
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function rowToCA(r: Record<string, string>): CAKeyRecord {
  return {
    name: r.name as CAKeyRecord["name"],
    privateKeyPem: r.private_key_pem!,
    publicMaterial: r.public_material!,
    createdAt: r.created_at!,
  };
}

function rowToInstance(r: Record<string, unknown>): BotInstanceRecord {
  return {
    id: r.id as string,
    botName: r.bot_name as string,
    tokenName: r.token_name as string,
    joinMethod: r.join_method as string,
    claims: JSON.parse(r.claims as string) as Record<string, unknown>,
    createdAt: r.created_at as string,
    expiresAt: r.expires_at as string,
    generation: r.generation as number,
    lockedReason: (r.locked_reason as string | null) ?? undefined,
    authentications: JSON.parse((r.authentications as string | undefined) ?? "[]"),
    heartbeats: JSON.parse((r.heartbeats as string | undefined) ?? "[]"),
  };
}

function rowToJoinToken(r: Record<string, string | null>): JoinTokenRecord {
  return {
    id: r.id!,
    hash: r.hash!,
    botName: r.bot_name!,
    createdAt: r.created_at!,
    expiresAt: r.expires_at!,
    usedAt: r.used_at ?? undefined,
    usedByInstance: r.used_by_instance ?? undefined,
  };
}

function rowToBound(r: Record<string, string | number | null>): BoundKeypairState {
  return {
    tokenName: r.token_name as string,
    publicKey: (r.public_key as string | null) ?? undefined,
    boundAt: (r.bound_at as string | null) ?? undefined,
    joinStateHash: (r.join_state_hash as string | null) ?? undefined,
    recoveryCount: Number(r.recovery_count ?? 0),
    instanceId: (r.instance_id as string | null) ?? undefined,
    lockedReason: (r.locked_reason as string | null) ?? undefined,
  };
}
