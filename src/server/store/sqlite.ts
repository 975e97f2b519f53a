// The embedded store: one SQLite file (WAL) in the data directory. better-sqlite3 is
// loaded lazily so the bundled CLI runs join/status/cleanup without the native module.

import { closeSync, constants, lstatSync, mkdirSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type BetterSqlite3 from "better-sqlite3";
import {
  auditValues,
  instanceValues,
  pushCapped,
  renewEvents,
  renewStep,
  rowToAudit,
  rowToBound,
  rowToCA,
  rowToInstance,
  rowToJoinToken,
} from "./rows.ts";
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
  Store,
  StoredResource,
} from "./store.ts";
import { REQUIRED_CAS } from "./store.ts";
import type { ThreadLock } from "./threadlock.ts";

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

type JoinCommit = Parameters<Store["commitJoin"]>[0];

interface QueuedJoin {
  join: JoinCommit;
  resolve: (r: CommitResult) => void;
  reject: (e: unknown) => void;
}

/** At most this many joins share one transaction. */
const MAX_GROUP = 128;

// Checkpoints off the request path (SqliteOptions.checkpointer, off by default). SQLite's
// automatic checkpoint runs inside the COMMIT that crosses wal_autocheckpoint (1000 pages:
// every ~150 joins here) and stalls the event loop for its copying and fsyncs, 5-15 ms.
// With the option, once joins flow, a worker thread with its own
// connection checkpoints instead (PASSIVE: it never blocks the writer, and the writer never
// waits for it). A WAL only restarts from its beginning when a write starts with every frame
// checkpointed, which a steady stream of joins never allows a concurrent checkpointer; so
// when the WAL passes WAL_RESTART_FRAMES, the store asks for one more pass (to shrink what
// is left), then holds join commits (queued, not blocked: the event loop keeps running)
// during a last, short pass, and the next commit restarts the WAL. Durability is unchanged:
// same journal and synchronous settings, same fsyncs, results only after their COMMIT.
/** WAL size (pages) at which the store arranges a WAL restart. */
const WAL_RESTART_FRAMES = 4096;
/** wal_autocheckpoint while the worker runs: a backstop should it fall behind. */
const WAL_BACKSTOP_FRAMES = 12_000;
/** SQLite's default, restored if the worker fails. */
const WAL_DEFAULT_FRAMES = 1000;
const CHECKPOINT_INTERVAL_MS = 50;
const CHECKPOINT_IDLE_INTERVAL_MS = 1000;
/** Join commits are never held longer than this, whatever the worker does. */
const MAX_HOLD_MS = 50;
/** A pass asked for that has not been answered by then is given up on. */
const MAX_PREP_MS = 2000;

/** The checkpointer (CommonJS, run with eval: the bundle has no separate worker file). It
 *  reports the WAL size after each pass that found the WAL changed, and after each pass
 *  asked for with "pass". */
const CHECKPOINTER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.module);
const db = new Database(workerData.file, { fileMustExist: true, timeout: 0 });
let timer;
let last = -1;
const pass = (reply) => {
  clearTimeout(timer);
  const [r] = db.pragma("wal_checkpoint(PASSIVE)");
  const changed = r.log !== last;
  last = r.log;
  if (changed || reply) parentPort.postMessage({ log: r.log, checkpointed: r.checkpointed, reply });
  timer = setTimeout(pass, changed ? workerData.intervalMs : workerData.idleIntervalMs, false);
};
parentPort.on("message", (m) => {
  if (m === "pass") pass(true);
  if (m !== "close") return;
  clearTimeout(timer);
  db.close();
  parentPort.close();
});
parentPort.postMessage({ ready: true });
timer = setTimeout(pass, workerData.intervalMs, false);
`;

type CheckpointerMessage = { ready: true } | { log: number; checkpointed: number; reply: boolean };

/** Thrown inside a transaction to roll it back with a commit failure. */
class Refusal extends Error {
  constructor(
    readonly reason: CommitFailure,
    readonly detail?: string,
  ) {
    super(reason);
  }
}

export interface SqliteOptions {
  /** Checkpoint the WAL from a worker thread once joins flow, instead of SQLite's automatic
   *  checkpoints inside the COMMIT that crosses 1000 pages (see CHECKPOINTER_SOURCE). Off by
   *  default: measured here it takes 5-15 ms stalls off the event loop (store alone: -25-40%
   *  wall time per join, p99 per turn 35 -> 25 ms at 32 joins per turn; the whole service:
   *  +1-12% joins/s, p99 at c=64 -10 ms) but a worker's Node environment costs ~10 MB RSS. */
  checkpointer?: boolean;
  /** Shared with the other threads of a threaded service that open the same file: join
   *  commits take it first (see threadlock.ts). */
  writeLock?: ThreadLock;
}

export class StoreError extends Error {
  override name = "StoreError";
}

/** Opens (creating if needed) `dataDir/idbot.db`. The directory is created 0700 and the
 *  database file 0600 before SQLite touches it; SQLite gives its -wal/-shm files the same mode. */
export function openSqliteStore(dataDir: string, options: SqliteOptions = {}): SqliteStore {
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
  return new SqliteStore(new Database(file, { timeout: 5000 }), options);
}

export class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  private stmts;

  constructor(
    private db: BetterSqlite3.Database,
    options: SqliteOptions = {},
  ) {
    if (options.checkpointer !== true) this.checkpointer = null;
    this.writeLock = options.writeLock;
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
      getJoinToken: db.prepare("SELECT * FROM join_tokens WHERE hash = ?"),
      useJoinToken: db.prepare(
        "UPDATE join_tokens SET used_at = ?, used_by_instance = ? WHERE hash = ? AND used_at IS NULL",
      ),
      deleteChallenge: db.prepare("DELETE FROM challenges WHERE id = ? AND token_name = ?"),
      getBound: db.prepare("SELECT * FROM bound_keypairs WHERE token_name = ?"),
      upsertBound: db.prepare(
        `INSERT INTO bound_keypairs (token_name, public_key, bound_at, join_state_hash, recovery_count, instance_id)
         VALUES (?, ?, ?, ?, 1, ?)
         ON CONFLICT (token_name) DO UPDATE SET public_key = excluded.public_key,
           bound_at = CASE WHEN bound_keypairs.public_key = excluded.public_key THEN bound_keypairs.bound_at ELSE excluded.bound_at END,
           join_state_hash = excluded.join_state_hash, recovery_count = bound_keypairs.recovery_count + 1,
           instance_id = excluded.instance_id`,
      ),
      lockBoundKeypair: db.prepare("UPDATE bound_keypairs SET locked_reason = ? WHERE token_name = ?"),
      lockInstance: db.prepare("UPDATE bot_instances SET locked_reason = ? WHERE id = ?"),
    };
    // Transaction functions are made once: db.transaction() builds four wrappers per call.
    this.joinTx = db.transaction((j: JoinCommit) => this.applyJoin(j));
    this.groupTx = db.transaction((joins: JoinCommit[]) => joins.map((j) => this.applyJoinInGroup(j)));
    this.lockTx = db.transaction((tokenName: string, reason: string, instanceId?: string) => {
      this.stmts.lockBoundKeypair.run(reason, tokenName);
      if (instanceId) this.stmts.lockInstance.run(reason, instanceId);
    });
  }

  private joinTx: BetterSqlite3.Transaction<(j: JoinCommit) => void>;
  private groupTx: BetterSqlite3.Transaction<(joins: JoinCommit[]) => CommitResult[]>;
  private lockTx: BetterSqlite3.Transaction<(tokenName: string, reason: string, instanceId?: string) => void>;

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
      this.stmts.insertAudit.run(...auditValues(e));
    }
  }

  /**
   * Group commit: the joins that reach commitJoin within one event-loop turn are written
   * in one IMMEDIATE transaction, each inside its own SAVEPOINT, so a refused or replayed
   * join rolls back alone and gets its own result, exactly as if it had run by itself in
   * arrival order. Every promise settles only after the transaction holding its join has
   * committed (durability as before: WAL, synchronous=NORMAL). A single queued join, and
   * any group whose transaction fails as a whole, run one join per transaction as before.
   */
  async commitJoin(j: JoinCommit): Promise<CommitResult> {
    return new Promise<CommitResult>((resolve, reject) => {
      this.queue.push({ join: j, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flushJoins);
      }
    });
  }

  private queue: QueuedJoin[] = [];
  private flushScheduled = false;
  private readonly writeLock: ThreadLock | undefined;

  /** Runs the queued joins' group commit, once this thread holds the write lock (when
   *  threads share the file). Until then flushScheduled stays set: joins that arrive
   *  meanwhile queue up and go in the same group. */
  private readonly flushJoins = (): void => {
    const lock = this.writeLock;
    if (!lock) this.commitQueued();
    else if (lock.tryAcquire()) this.commitQueuedAndRelease(lock);
    else void lock.acquire().then(() => this.commitQueuedAndRelease(lock));
  };

  private commitQueuedAndRelease(lock: ThreadLock): void {
    try {
      this.commitQueued();
    } finally {
      lock.release();
    }
  }

  private commitQueued(): void {
    this.flushScheduled = false;
    if (this.walPhase === "hold") return; // released by releaseHold()
    if (this.checkpointer === undefined && this.queue.length > 0 && this.db.open) this.startCheckpointer();
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_GROUP);
      if (!this.db.open) {
        for (const q of batch) q.reject(new StoreError("the embedded store is closed"));
        continue;
      }
      let results: CommitResult[] | undefined;
      if (batch.length > 1) {
        try {
          results = this.groupTx.immediate(batch.map((q) => q.join));
        } catch {
          // The transaction as a whole failed (nothing of it was committed): run each
          // join on its own, so every one gets the result or error it would have had.
          results = undefined;
        }
      }
      if (results) {
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
        continue;
      }
      for (const q of batch) {
        let r: CommitResult;
        try {
          r = this.commitOne(q.join);
        } catch (e) {
          q.reject(e);
          continue;
        }
        q.resolve(r);
      }
    }
  }

  /** The checkpointer worker: undefined until joins flow, null when off for good. */
  private checkpointer: Worker | null | undefined;

  private startCheckpointer(): void {
    this.checkpointer = null;
    const file = this.db.name;
    if (this.db.memory || !file || this.db.pragma("journal_mode", { simple: true }) !== "wal") return;
    let worker: Worker;
    try {
      worker = new Worker(CHECKPOINTER_SOURCE, {
        eval: true,
        workerData: {
          module: createRequire(import.meta.url).resolve("better-sqlite3"),
          file,
          intervalMs: CHECKPOINT_INTERVAL_MS,
          idleIntervalMs: CHECKPOINT_IDLE_INTERVAL_MS,
        },
        resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
      });
    } catch {
      return;
    }
    worker.unref();
    worker.on("message", (m: CheckpointerMessage) => this.onCheckpointer(m));
    // Whatever went wrong, SQLite's own checkpoints take over again.
    const fail = () => {
      if (this.checkpointer !== worker) return;
      this.checkpointer = null;
      this.releaseHold();
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${WAL_DEFAULT_FRAMES}`);
      void worker.terminate();
    };
    worker.on("error", fail);
    worker.on("exit", fail);
    this.checkpointer = worker;
  }

  /** Where the store is in arranging a WAL restart (see WAL_RESTART_FRAMES). */
  private walPhase: "idle" | "prep" | "hold" = "idle";
  /** Ends the current phase should the worker not answer (MAX_PREP_MS, MAX_HOLD_MS). */
  private phaseTimer: NodeJS.Timeout | undefined;

  private onCheckpointer(m: CheckpointerMessage): void {
    if (!this.db.open || !this.checkpointer) return;
    if ("ready" in m) {
      this.db.pragma(`wal_autocheckpoint = ${WAL_BACKSTOP_FRAMES}`);
      return;
    }
    if (m.reply && this.walPhase === "prep") {
      // What is left is what was written during that pass: hold commits for the last one.
      this.enterPhase("hold", MAX_HOLD_MS);
      this.checkpointer.postMessage("pass");
    } else if (m.reply && this.walPhase === "hold") {
      this.releaseHold(); // every frame is checkpointed: the next commit restarts the WAL
    } else if (this.walPhase === "idle" && m.log >= WAL_RESTART_FRAMES) {
      this.enterPhase("prep", MAX_PREP_MS);
      this.checkpointer.postMessage("pass");
    }
  }

  private enterPhase(phase: "prep" | "hold", maxMs: number): void {
    clearTimeout(this.phaseTimer);
    this.walPhase = phase;
    this.phaseTimer = setTimeout(this.releaseHold, maxMs);
    this.phaseTimer.unref();
  }

  /** Back to idle; commits held meanwhile are flushed. */
  private readonly releaseHold = (): void => {
    clearTimeout(this.phaseTimer);
    this.phaseTimer = undefined;
    const held = this.walPhase === "hold";
    this.walPhase = "idle";
    if (held && this.queue.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushJoins);
    }
  };

  private async stopCheckpointer(): Promise<void> {
    const worker = this.checkpointer;
    this.checkpointer = null;
    this.releaseHold();
    if (!worker) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => void worker.terminate(), 2000);
      worker.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      worker.postMessage("close");
    });
  }

  /** One join in its own transaction. */
  private commitOne(j: JoinCommit): CommitResult {
    this.pendingLock = undefined;
    try {
      this.joinTx.immediate(j);
      return { ok: true };
    } catch (e) {
      const refused = this.refusal(e);
      if (refused) return refused;
      throw e;
    }
  }

  /** One join inside a group transaction: its SAVEPOINT is rolled back on refusal. Any
   *  other error aborts the whole group (the caller then runs each join on its own). */
  private applyJoinInGroup(j: JoinCommit): CommitResult {
    this.pendingLock = undefined;
    // A join that only adds rows (an ID token's: replay key, instance, events) can be
    // refused by its first insert alone, before it wrote anything: no savepoint needed,
    // which is a third of the store's time per join. Any later error aborts the group.
    if (!j.joinTokenHash && !j.bound) {
      if (j.replay) {
        try {
          this.stmts.insertReplay.run(j.replay.issuer, j.replay.jti, j.replay.expiresAt);
        } catch (e) {
          const refused = this.db.inTransaction ? this.refusal(e) : undefined;
          if (refused) return refused;
          throw e;
        }
      }
      this.applyJoinAfterReplay(j);
      return { ok: true };
    }
    try {
      this.joinTx(j); // nested: SAVEPOINT ... RELEASE, or ROLLBACK TO on throw
      return { ok: true };
    } catch (e) {
      if (!this.db.inTransaction) throw e;
      const refused = this.refusal(e);
      if (refused) return refused;
      throw e;
    }
  }

  /** The result for a refused join, after persisting its lock (a copied keypair locks the
   *  token's bound state and its instance, and that must stick even though the join is
   *  refused: written after the join's own changes were rolled back). Undefined for any
   *  other error. */
  private refusal(e: unknown): CommitResult | undefined {
    if (e instanceof Refusal) {
      const lock = this.takeLock();
      if (lock) this.lockBound(lock.tokenName, lock.reason, lock.instanceId);
      return { ok: false, reason: e.reason, ...(e.detail ? { detail: e.detail } : {}) };
    }
    if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY")
      return { ok: false, reason: "replayed" };
    return undefined;
  }

  private applyJoin(j: JoinCommit): void {
    if (j.replay) this.stmts.insertReplay.run(j.replay.issuer, j.replay.jti, j.replay.expiresAt);
    this.applyJoinAfterReplay(j);
  }

  private applyJoinAfterReplay(j: JoinCommit): void {
    const i = j.instance;
    if (j.joinTokenHash) this.consumeJoinToken(j.joinTokenHash, i);
    if (j.bound) this.applyBoundJoin(j.bound, i);
    this.stmts.insertInstance.run(...instanceValues(i));
    this.insertEvents(j.events);
  }

  private consumeJoinToken(hash: string, i: BotInstanceRecord): void {
    const row = this.stmts.getJoinToken.get(hash) as Record<string, string | null> | undefined;
    if (!row) throw new Refusal("token_unknown");
    if (row.used_at) throw new Refusal("token_used");
    if (row.expires_at! <= i.createdAt) throw new Refusal("token_expired");
    // The conditional update is what makes the token single-use under concurrency.
    const r = this.stmts.useJoinToken.run(i.createdAt, i.id, hash);
    if (r.changes !== 1) throw new Refusal("token_used");
  }

  /** A lock to persist after the refused transaction rolls back (copied keypair). */
  private pendingLock: { tokenName: string; reason: string; instanceId?: string } | undefined;

  private applyBoundJoin(b: BoundJoin, i: BotInstanceRecord): void {
    const gone = this.stmts.deleteChallenge.run(b.challengeId, b.tokenName);
    if (gone.changes !== 1) throw new Refusal("challenge_used");
    const st = this.stmts.getBound.get(b.tokenName) as Record<string, string | number | null> | undefined;
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
    this.stmts.upsertBound.run(
      b.tokenName,
      b.nextPublicKey ?? b.publicKey,
      i.createdAt,
      b.newJoinStateHash,
      i.id,
    );
  }

  private takeLock() {
    const lock = this.pendingLock;
    this.pendingLock = undefined;
    return lock;
  }

  private lockBound(tokenName: string, reason: string, instanceId?: string): void {
    this.lockTx.immediate(tokenName, reason, instanceId);
  }

  async renewInstance(r: Parameters<Store["renewInstance"]>[0]): Promise<RenewResult> {
    return this.db
      .transaction((): RenewResult => {
        const row = this.stmts.getInstance.get(r.id) as Record<string, unknown> | undefined;
        if (!row) return { ok: false, reason: "unknown" };
        const inst = rowToInstance(row);
        if (inst.lockedReason) return { ok: false, reason: "locked", instance: inst };
        const step = renewStep(inst, r.presented, r.keysHash);
        if (step.kind === "lock") {
          const reason = step.reason;
          this.db.prepare("UPDATE bot_instances SET locked_reason = ? WHERE id = ?").run(reason, r.id);
          this.insertEvents(renewEvents(step, r.events));
          return { ok: false, reason: "stale_generation", instance: { ...inst, lockedReason: reason } };
        }
        const generation = step.generation;
        this.db
          .prepare(
            "UPDATE bot_instances SET generation = ?, expires_at = ?, authentications = ?, heartbeats = ? WHERE id = ?",
          )
          .run(
            generation,
            r.expiresAt,
            pushCapped(row.authentications as string, {
              time: r.now,
              kind: step.kind === "repeat" ? "renew_retry" : "renew",
              remoteAddr: r.remoteAddr,
              generation,
              keys: r.keysHash,
            }),
            r.heartbeat ? pushCapped(row.heartbeats as string, r.heartbeat) : (row.heartbeats as string),
            r.id,
          );
        this.insertEvents(renewEvents(step, r.events));
        return {
          ok: true,
          generation,
          instance: { ...inst, generation, expiresAt: r.expiresAt },
          repeated: step.kind === "repeat",
        };
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
    return rows.reverse().map(rowToAudit);
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
    if (this.checkpointer === undefined) this.checkpointer = null; // none from now on
    this.releaseHold();
    await this.commitNow();
    // The worker's connection closes first, so the main one is the last and, as before,
    // checkpoints the WAL and removes it.
    await this.stopCheckpointer();
    await this.commitNow();
    this.db.close();
  }

  /** Commits what is queued before the connection closes (after the other threads'
   *  commits in progress, when they share the file). */
  private async commitNow(): Promise<void> {
    if (!this.db.open || this.queue.length === 0) return;
    const lock = this.writeLock;
    if (!lock) {
      this.commitQueued();
      return;
    }
    await lock.acquire();
    this.commitQueuedAndRelease(lock);
  }
}
