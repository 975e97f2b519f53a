// The scale-out store: N service replicas share one PostgreSQL database. Same interface and
// semantics as the embedded SQLite store; every single-use and replay check is decided by
// the database (primary keys, conditional UPDATE/DELETE with a row count, SELECT ... FOR
// UPDATE), never by process memory, so it holds across replicas. The CA private keys are
// stored encrypted (crypto.ts) under IDBOT_CA_PASSPHRASE. `pg` is loaded lazily so the
// bundled CLI runs join/status/cleanup without it.

import { createRequire } from "node:module";
import type Pg from "pg";
import type { Pool, PoolClient, QueryResultRow } from "pg";
import { decryptSecret, encryptSecret } from "./crypto.ts";
import {
  auditValues,
  instanceValues,
  pushCapped,
  renewEvents,
  renewStep,
  rowToAudit,
  rowToBound,
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
  ReplayKey,
  Store,
  StoredResource,
} from "./store.ts";
import { REQUIRED_CAS } from "./store.ts";

/** Held (session-level) while migrations run, so replicas starting together apply each once. */
const MIGRATION_LOCK = "7236837756449337345"; // "idbot-mg" as a bigint
const HEALTH_TIMEOUT_MS = 2000;
const UNIQUE_VIOLATION = "23505";
export const WRONG_PASSPHRASE = "IDBOT_CA_PASSPHRASE does not decrypt the stored CA keys";

// Times are ISO-8601 strings compared and sorted as text, as in SQLite: COLLATE "C" keeps
// that byte order whatever the database's default collation is.
const MIGRATIONS: string[] = [
  `CREATE TABLE cas (name TEXT PRIMARY KEY, private_key_pem TEXT NOT NULL, public_material TEXT NOT NULL,
     created_at TEXT NOT NULL);
   CREATE TABLE replay (issuer TEXT NOT NULL, jti TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (issuer, jti));
   CREATE INDEX replay_expiry ON replay (expires_at);
   CREATE TABLE bot_instances (id TEXT PRIMARY KEY, bot_name TEXT NOT NULL, token_name TEXT NOT NULL,
     join_method TEXT NOT NULL, claims TEXT NOT NULL, created_at TEXT COLLATE "C" NOT NULL,
     expires_at TEXT COLLATE "C" NOT NULL, generation INTEGER NOT NULL, locked_reason TEXT,
     authentications TEXT NOT NULL DEFAULT '[]', heartbeats TEXT NOT NULL DEFAULT '[]');
   CREATE INDEX bot_instances_bot ON bot_instances (bot_name, created_at);
   CREATE TABLE audit (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time TEXT COLLATE "C" NOT NULL,
     type TEXT NOT NULL, bot_name TEXT, token_name TEXT, instance_id TEXT, join_method TEXT, remote_addr TEXT,
     reason TEXT, data TEXT);
   CREATE INDEX audit_time ON audit (time);
   CREATE TABLE join_tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, bot_name TEXT NOT NULL,
     created_at TEXT COLLATE "C" NOT NULL, expires_at TEXT COLLATE "C" NOT NULL, used_at TEXT, used_by_instance TEXT);
   CREATE TABLE bound_keypairs (token_name TEXT COLLATE "C" PRIMARY KEY, public_key TEXT, bound_at TEXT,
     join_state_hash TEXT, recovery_count INTEGER NOT NULL DEFAULT 0, instance_id TEXT, locked_reason TEXT);
   CREATE TABLE challenges (id TEXT PRIMARY KEY, token_name TEXT NOT NULL, nonce TEXT NOT NULL,
     expires_at TEXT COLLATE "C" NOT NULL);
   CREATE TABLE resources (kind TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, body TEXT NOT NULL,
     updated_at TEXT NOT NULL, PRIMARY KEY (kind, name));
   CREATE TABLE resources_version (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
   INSERT INTO resources_version (id, version) VALUES (1, 0);`,
];

/** Thrown inside a transaction to roll it back with a commit failure. */
class Refusal extends Error {
  constructor(
    readonly reason: CommitFailure,
    readonly detail?: string,
    /** A lock to persist after the refused transaction rolls back (copied keypair). */
    readonly lock?: { tokenName: string; reason: string; instanceId?: string },
  ) {
    super(reason);
  }
}

export class PostgresStoreError extends Error {
  override name = "PostgresStoreError";
}

type Row = Record<string, unknown>;

/** A join proven by a platform's ID token: a replay key, the instance and its events. */
interface ClaimJoin {
  replay: ReplayKey;
  instance: BotInstanceRecord;
  events: AuditEvent[];
}

/** At most this many joins per group statement (arrays of ~13 x this many elements). */
const MAX_CLAIM_GROUP = 64;
/** Group statements one replica has out at once (see flushClaimJoins). */
const MAX_CLAIM_GROUPS_IN_FLIGHT = 2;

/**
 * A group of claim-based joins in one statement. Replay keys are inserted in key order
 * (so two groups racing on the same keys lock them in the same order and cannot
 * deadlock), a key already taken is skipped by ON CONFLICT, and only the joins whose key
 * went in get their instance and audit rows. The ids of those joins come back.
 */
const GROUP_CLAIM_JOIN_SQL = `WITH j AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
      $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12::text[])
      AS j(issuer, jti, replay_expires_at, id, bot_name, token_name, join_method, claims,
        created_at, expires_at, generation, authentications)
  ), r AS (
    INSERT INTO replay (issuer, jti, expires_at)
      SELECT issuer, jti, replay_expires_at FROM j ORDER BY issuer, jti
      ON CONFLICT (issuer, jti) DO NOTHING RETURNING issuer, jti
  ), ok AS (
    SELECT j.* FROM j JOIN r ON r.issuer = j.issuer AND r.jti = j.jti
  ), i AS (
    INSERT INTO bot_instances (id, bot_name, token_name, join_method, claims, created_at,
        expires_at, generation, authentications)
      SELECT id, bot_name, token_name, join_method, claims, created_at, expires_at, generation,
        authentications FROM ok
  ), a AS (
    INSERT INTO audit (time, type, bot_name, token_name, instance_id, join_method, remote_addr, reason, data)
      SELECT e.time, e.type, e.bot_name, e.token_name, e.instance_id, e.join_method, e.remote_addr,
        e.reason, e.data
      FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
        $19::text[], $20::text[], $21::text[], $22::text[]) WITH ORDINALITY
        AS e(join_id, time, type, bot_name, token_name, instance_id, join_method, remote_addr, reason, data, ord)
      WHERE e.join_id IN (SELECT id FROM ok)
      ORDER BY e.ord
  )
  SELECT id FROM ok`;

/** The 22 column arrays of GROUP_CLAIM_JOIN_SQL. */
function groupClaimValues(joins: ClaimJoin[]): unknown[][] {
  const cols: unknown[][] = Array.from({ length: 22 }, () => []);
  const push = (values: unknown[], offset: number) => {
    for (let n = 0; n < values.length; n++) cols[offset + n]!.push(values[n]);
  };
  for (const { replay, instance: i, events } of joins) {
    push([replay.issuer, replay.jti, replay.expiresAt, ...instanceValues(i)], 0);
    for (const e of events) push([i.id, ...auditValues(e)], 12);
  }
  return cols;
}

/** Joins with more audit events than this (none today) use an unnamed statement. */
const MAX_NAMED_EVENTS = 16;

/** `INSERT INTO audit ... VALUES (...), ...` for `events`, its placeholders numbered from
 *  `offset + 1`, with their values. */
function auditInsert(events: AuditEvent[], offset: number): { text: string; values: unknown[] } {
  const COLS = 9;
  const values: unknown[] = [];
  const tuples = events.map((e, k) => {
    values.push(...auditValues(e));
    return `(${Array.from({ length: COLS }, (_, n) => `$${offset + k * COLS + n + 1}`).join(", ")})`;
  });
  return {
    text: `INSERT INTO audit (time, type, bot_name, token_name, instance_id, join_method, remote_addr, reason, data) VALUES ${tuples.join(", ")}`,
    values,
  };
}

/** The URL without its password, for messages. */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    const host = u.searchParams.get("host");
    u.search = host ? `?host=${host}` : "";
    return u.toString();
  } catch {
    return "the PostgreSQL URL";
  }
}

/** Connections one replica (one `idbot serve` process) opens at most. */
export const POOL_PER_REPLICA = 10;

export interface PostgresStoreOptions {
  /** Encrypts the CA private keys at rest; every replica needs the same one. */
  caPassphrase: string;
  /** Pool size per replica (default POOL_PER_REPLICA). */
  maxConnections?: number;
  /** Errors of idle pooled connections (the database restarted, a connection was killed).
   *  They are recovered from by reconnecting; this only reports them. */
  onConnectionError?: (err: Error) => void;
}

/** Connects, applies migrations under an advisory lock and checks that the passphrase
 *  decrypts the stored CA keys (if any). */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions): Promise<PostgresStore> {
  if (!opts.caPassphrase) throw new PostgresStoreError("the PostgreSQL store needs IDBOT_CA_PASSPHRASE");
  const require = createRequire(import.meta.url);
  let pg: typeof Pg;
  try {
    pg = require("pg") as typeof Pg;
  } catch (e) {
    throw new PostgresStoreError(
      `the PostgreSQL store needs the pg module (npm install -g idbot installs it): ${(e as Error).message}`,
    );
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.maxConnections ?? POOL_PER_REPLICA,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: "idbot",
  });
  // An idle connection that drops (database restart, pg_terminate_backend) emits 'error' on
  // the pool; unhandled, that would end the process. The pool discards the connection and
  // opens a fresh one on the next query, so the service recovers by itself.
  pool.on("error", (err) => opts.onConnectionError?.(err));
  const store = new PostgresStore(pool, opts.caPassphrase);
  try {
    await store.migrate();
    await store.checkPassphrase();
  } catch (e) {
    await pool.end().catch(() => {});
    if (e instanceof PostgresStoreError) throw e;
    throw new PostgresStoreError(
      `cannot open the PostgreSQL store at ${describeUrl(url)}: ${(e as Error).message}`,
    );
  }
  return store;
}

export class PostgresStore implements Store {
  readonly kind = "postgres" as const;

  constructor(
    private pool: Pool,
    private passphrase: string,
  ) {}

  /** Runs `fn` on one pooled connection. A checked-out connection has no 'error' listener
   *  of the pool's, so one is attached here; a connection that errored, or that `fn` marks
   *  as broken (a failed ROLLBACK or unlock), is discarded instead of reused. */
  private async withClient<T>(fn: (c: PoolClient, broken: (e: Error) => void) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (err: Error) => {
      broken ??= err;
    };
    c.on("error", onError);
    try {
      return await fn(c, onError);
    } finally {
      c.off("error", onError);
      c.release(broken);
    }
  }

  /** BEGIN ... COMMIT on one connection; any throw rolls back. */
  private tx<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    return this.withClient(async (c, broken) => {
      await c.query("BEGIN");
      try {
        const r = await fn(c);
        await c.query("COMMIT");
        return r;
      } catch (e) {
        await c.query("ROLLBACK").catch(broken);
        throw e;
      }
    });
  }

  private async rows<R extends QueryResultRow = Row>(text: string, values: unknown[] = []): Promise<R[]> {
    return (await this.pool.query<R>(text, values)).rows;
  }

  /** @internal Applies pending migrations; replicas starting together wait on the lock. */
  async migrate(): Promise<void> {
    await this.withClient(async (c, broken) => {
      await c.query("SELECT pg_advisory_lock($1::bigint)", [MIGRATION_LOCK]);
      try {
        await c.query(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        );
        const { rows } = await c.query<{ v: number }>(
          "SELECT COALESCE(MAX(version), 0)::int AS v FROM schema_migrations",
        );
        const current = rows[0]!.v;
        if (current > MIGRATIONS.length) {
          throw new PostgresStoreError(
            `the database schema is at version ${current}, newer than this idbot knows (${MIGRATIONS.length}): upgrade idbot`,
          );
        }
        for (let v = current; v < MIGRATIONS.length; v++) {
          await c.query("BEGIN");
          try {
            await c.query(MIGRATIONS[v]!);
            await c.query("INSERT INTO schema_migrations (version) VALUES ($1)", [v + 1]);
            await c.query("COMMIT");
          } catch (e) {
            await c.query("ROLLBACK").catch(broken);
            throw new PostgresStoreError(`database migration ${v + 1} failed: ${(e as Error).message}`);
          }
        }
      } finally {
        // Failing that, the connection is discarded, which releases the lock too.
        await c.query("SELECT pg_advisory_unlock($1::bigint)", [MIGRATION_LOCK]).catch(broken);
      }
    });
  }

  /** @internal Fails the start when stored CA keys exist and the passphrase does not open them. */
  async checkPassphrase(): Promise<void> {
    const [row] = await this.rows("SELECT * FROM cas ORDER BY name LIMIT 1");
    if (row) await this.decryptCA(row);
  }

  private async decryptCA(r: Row): Promise<CAKeyRecord> {
    let privateKeyPem: string;
    try {
      privateKeyPem = await decryptSecret(r.private_key_pem as string, this.passphrase);
    } catch (e) {
      throw new PostgresStoreError(
        `${WRONG_PASSPHRASE} (CA "${r.name as string}": ${(e as Error).message}); every replica needs the passphrase the keys were created with`,
      );
    }
    return {
      name: r.name as CAName,
      privateKeyPem,
      publicMaterial: r.public_material as string,
      createdAt: r.created_at as string,
    };
  }

  async loadOrCreateCAs(create: (name: CAName) => CAKeyRecord): Promise<CAKeyRecord[]> {
    const missing = (rows: Row[]) => REQUIRED_CAS.filter((n) => !rows.some((r) => r.name === n));
    let rows = await this.rows("SELECT * FROM cas");
    if (missing(rows).length > 0) {
      rows = await this.tx(async (c) => {
        // Self-conflicting lock: a second replica waits here, then finds the CAs made.
        await c.query("LOCK TABLE cas IN SHARE ROW EXCLUSIVE MODE");
        const cur = (await c.query<Row>("SELECT * FROM cas")).rows;
        const made = missing(cur).map((n) => create(n));
        // One at a time: each scrypt run holds 32 MB, and five at once (the thread pool runs
        // four) lifted a replica's peak RSS to about 200 MB at start-up.
        const sealed: string[] = [];
        for (const ca of made) sealed.push(await encryptSecret(ca.privateKeyPem, this.passphrase));
        for (const [k, ca] of made.entries()) {
          const row = {
            name: ca.name,
            private_key_pem: sealed[k]!,
            public_material: ca.publicMaterial,
            created_at: ca.createdAt,
          };
          await c.query(
            "INSERT INTO cas (name, private_key_pem, public_material, created_at) VALUES ($1, $2, $3, $4)",
            [row.name, row.private_key_pem, row.public_material, row.created_at],
          );
          cur.push(row);
        }
        return cur;
      });
    }
    // Sequentially, for the same reason as the encryption above (one scrypt run at a time).
    const cas: CAKeyRecord[] = [];
    for (const r of rows) cas.push(await this.decryptCA(r));
    return cas;
  }

  async rotateCA(name: "jwt", next: CAKeyRecord): Promise<void> {
    const sealed = await encryptSecret(next.privateKeyPem, this.passphrase);
    await this.tx(async (c) => {
      await c.query("LOCK TABLE cas IN SHARE ROW EXCLUSIVE MODE");
      const prev = `${name}_previous`;
      await c.query("DELETE FROM cas WHERE name = $1", [prev]);
      await c.query("UPDATE cas SET name = $1 WHERE name = $2", [prev, name]);
      await c.query(
        "INSERT INTO cas (name, private_key_pem, public_material, created_at) VALUES ($1, $2, $3, $4)",
        [name, sealed, next.publicMaterial, next.createdAt],
      );
    });
  }

  private async insertEvents(c: PoolClient | Pool, events: AuditEvent[]): Promise<void> {
    for (let start = 0; start < events.length; start += 500) {
      const { text, values } = auditInsert(events.slice(start, start + 500), 0);
      await c.query(text, values);
    }
  }

  /**
   * A claim-based join (an ID token: github, gitlab, oidc) in one statement, so one round
   * trip: the replay key, the instance and its audit events in data-modifying CTEs, which a
   * single statement runs atomically. A replayed jti fails the whole statement on the
   * replay table's primary key. The BEGIN/INSERT.../COMMIT form took five round trips, each
   * holding a pooled connection while the event loop got round to sending the next one:
   * under load that, not PostgreSQL, bounded a replica's throughput.
   */
  private async commitClaimJoin(
    replay: ReplayKey,
    i: BotInstanceRecord,
    events: AuditEvent[],
  ): Promise<void> {
    const values: unknown[] = [replay.issuer, replay.jti, replay.expiresAt, ...instanceValues(i)];
    const audit = events.length > 0 ? auditInsert(events, values.length) : undefined;
    await this.pool.query({
      // Named, so each connection parses and plans it once (the text depends only on the
      // number of events): that was most of PostgreSQL's CPU per join.
      ...(events.length <= MAX_NAMED_EVENTS ? { name: `idbot-join-claim-${events.length}` } : {}),
      text: `WITH r AS (INSERT INTO replay (issuer, jti, expires_at) VALUES ($1, $2, $3)),
         i AS (INSERT INTO bot_instances (id, bot_name, token_name, join_method, claims, created_at, expires_at, generation, authentications)
           VALUES ($4, $5, $6, $7, $8, $9, $10, $11, $12))
       ${audit ? audit.text : "SELECT 1"}`,
      values: audit ? values.concat(audit.values) : values,
    });
  }

  /** One claim-based join on its own (the fallback of a group that failed as a whole). */
  private async commitClaimJoinAlone(j: ClaimJoin): Promise<CommitResult> {
    try {
      await this.commitClaimJoin(j.replay, j.instance, j.events);
      return { ok: true };
    } catch (e) {
      if ((e as { code?: string }).code === UNIQUE_VIOLATION) return { ok: false, reason: "replayed" };
      throw e;
    }
  }

  private claimQueue: Array<{
    join: ClaimJoin;
    resolve: (r: CommitResult) => void;
    reject: (e: unknown) => void;
  }> = [];
  private claimFlushScheduled = false;

  /**
   * Group commit for claim-based joins: those reaching commitJoin within one event-loop
   * turn go to PostgreSQL as one statement over arrays (GROUP_CLAIM_JOIN_SQL), so a
   * replica pays one round trip, one Bind and one plan execution for a group instead of
   * one per join. A replayed jti is skipped by ON CONFLICT and reported for its join
   * alone. Should the statement fail as a whole (nothing of it was committed), each join
   * is retried on its own so every one gets the result or error it would have had.
   * At most MAX_CLAIM_GROUPS_IN_FLIGHT groups are out at once; joins arriving meanwhile
   * wait for one to finish and go together, so under load groups grow instead of the
   * statements multiplying (less CPU for the replica and for PostgreSQL).
   */
  private readonly flushClaimJoins = (): void => {
    this.claimFlushScheduled = false;
    while (this.claimQueue.length > 0 && this.claimGroupsInFlight < MAX_CLAIM_GROUPS_IN_FLIGHT) {
      // A group holds each replay key once; a second use waits for the next group, where
      // it is refused as the replay it is.
      const seen = new Set<string>();
      const group: typeof this.claimQueue = [];
      const later: typeof this.claimQueue = [];
      for (const q of this.claimQueue) {
        const key = `${q.join.replay.issuer}\u0000${q.join.replay.jti}`;
        if (group.length < MAX_CLAIM_GROUP && !seen.has(key)) {
          seen.add(key);
          group.push(q);
        } else later.push(q);
      }
      this.claimQueue = later;
      this.claimGroupsInFlight++;
      void this.commitClaimGroup(group).finally(() => {
        this.claimGroupsInFlight--;
        if (this.claimQueue.length > 0 && !this.claimFlushScheduled) {
          this.claimFlushScheduled = true;
          setImmediate(this.flushClaimJoins);
        }
      });
    }
  };

  private claimGroupsInFlight = 0;

  private async commitClaimGroup(group: typeof this.claimQueue): Promise<void> {
    if (group.length === 1) {
      const q = group[0]!;
      return this.commitClaimJoinAlone(q.join).then(q.resolve, q.reject);
    }
    let committed: Set<string>;
    try {
      const res = await this.pool.query<{ id: string }>({
        name: "idbot-join-claim-group",
        text: GROUP_CLAIM_JOIN_SQL,
        values: groupClaimValues(group.map((q) => q.join)),
      });
      committed = new Set(res.rows.map((r) => r.id));
    } catch {
      for (const q of group) this.commitClaimJoinAlone(q.join).then(q.resolve, q.reject);
      return;
    }
    for (const q of group)
      q.resolve(committed.has(q.join.instance.id) ? { ok: true } : { ok: false, reason: "replayed" });
  }

  async commitJoin(j: {
    replay?: ReplayKey;
    joinTokenHash?: string;
    bound?: BoundJoin;
    instance: BotInstanceRecord;
    events: AuditEvent[];
  }): Promise<CommitResult> {
    if (j.replay && !j.joinTokenHash && !j.bound && j.events.length <= 500) {
      const join: ClaimJoin = { replay: j.replay, instance: j.instance, events: j.events };
      return new Promise<CommitResult>((resolve, reject) => {
        this.claimQueue.push({ join, resolve, reject });
        if (!this.claimFlushScheduled) {
          this.claimFlushScheduled = true;
          setImmediate(this.flushClaimJoins);
        }
      });
    }
    try {
      await this.tx(async (c) => {
        const i = j.instance;
        if (j.replay) {
          await c.query("INSERT INTO replay (issuer, jti, expires_at) VALUES ($1, $2, $3)", [
            j.replay.issuer,
            j.replay.jti,
            j.replay.expiresAt,
          ]);
        }
        if (j.joinTokenHash) await this.consumeJoinToken(c, j.joinTokenHash, i);
        if (j.bound) await this.applyBoundJoin(c, j.bound, i);
        await c.query(
          "INSERT INTO bot_instances (id, bot_name, token_name, join_method, claims, created_at, expires_at, generation, authentications) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
          instanceValues(i),
        );
        if (j.events.length > 0) await this.insertEvents(c, j.events);
      });
      return { ok: true };
    } catch (e) {
      if (e instanceof Refusal) {
        // A copied keypair locks the token's bound state and its instance, and that must
        // stick even though this join is refused: write it in its own transaction.
        if (e.lock) await this.lockBound(e.lock.tokenName, e.lock.reason, e.lock.instanceId);
        return { ok: false, reason: e.reason, ...(e.detail ? { detail: e.detail } : {}) };
      }
      if ((e as { code?: string }).code === UNIQUE_VIOLATION) return { ok: false, reason: "replayed" };
      throw e;
    }
  }

  private async consumeJoinToken(c: PoolClient, hash: string, i: BotInstanceRecord): Promise<void> {
    const row = (await c.query<Row>("SELECT * FROM join_tokens WHERE hash = $1", [hash])).rows[0];
    if (!row) throw new Refusal("token_unknown");
    if (row.used_at) throw new Refusal("token_used");
    if ((row.expires_at as string) <= i.createdAt) throw new Refusal("token_expired");
    // The conditional update is what makes the token single-use across replicas: a
    // concurrent one waits on the row lock, then finds used_at set and changes nothing.
    const r = await c.query(
      "UPDATE join_tokens SET used_at = $1, used_by_instance = $2 WHERE hash = $3 AND used_at IS NULL",
      [i.createdAt, i.id, hash],
    );
    if (r.rowCount !== 1) throw new Refusal("token_used");
  }

  private async applyBoundJoin(c: PoolClient, b: BoundJoin, i: BotInstanceRecord): Promise<void> {
    const gone = await c.query("DELETE FROM challenges WHERE id = $1 AND token_name = $2", [
      b.challengeId,
      b.tokenName,
    ]);
    if (gone.rowCount !== 1) throw new Refusal("challenge_used");
    // Make sure a row exists to lock, so two first registrations serialize on it (the
    // placeholder rolls back with a refused join), then lock it for this transaction.
    await c.query("INSERT INTO bound_keypairs (token_name) VALUES ($1) ON CONFLICT (token_name) DO NOTHING", [
      b.tokenName,
    ]);
    const st = (
      await c.query<Row>("SELECT * FROM bound_keypairs WHERE token_name = $1 FOR UPDATE", [b.tokenName])
    ).rows[0]!;
    if (st.locked_reason) throw new Refusal("locked", String(st.locked_reason));
    const bound = (st.public_key as string | null) ?? undefined;
    if (b.registering) {
      if (bound) throw new Refusal("already_registered");
    } else if (bound) {
      if (bound !== b.publicKey) throw new Refusal("key_mismatch");
    } else if (b.initialPublicKey === undefined || b.initialPublicKey !== b.publicKey) {
      throw new Refusal(b.initialPublicKey === undefined ? "not_registered" : "key_mismatch");
    }
    const stored = (st.join_state_hash as string | null) ?? undefined;
    if (b.checkJoinState && stored !== undefined && stored !== b.presentedJoinStateHash) {
      const reason = "join state mismatch: the bound keypair was used from a second machine";
      throw new Refusal("join_state_mismatch", reason, {
        tokenName: b.tokenName,
        reason,
        instanceId: (st.instance_id as string | null) ?? undefined,
      });
    }
    const count = Number(st.recovery_count ?? 0);
    if (b.recoveryLimit !== null && count >= b.recoveryLimit) {
      throw new Refusal("recovery_limit", `${count} of ${b.recoveryLimit} joins used`);
    }
    await c.query(
      `UPDATE bound_keypairs SET public_key = $2,
         bound_at = CASE WHEN public_key IS NOT DISTINCT FROM $2 THEN bound_at ELSE $3 END,
         join_state_hash = $4, recovery_count = recovery_count + 1, instance_id = $5
       WHERE token_name = $1`,
      [b.tokenName, b.nextPublicKey ?? b.publicKey, i.createdAt, b.newJoinStateHash, i.id],
    );
  }

  private async lockBound(tokenName: string, reason: string, instanceId?: string): Promise<void> {
    await this.tx(async (c) => {
      await c.query("UPDATE bound_keypairs SET locked_reason = $1 WHERE token_name = $2", [
        reason,
        tokenName,
      ]);
      if (instanceId)
        await c.query("UPDATE bot_instances SET locked_reason = $1 WHERE id = $2", [reason, instanceId]);
    });
  }

  async renewInstance(r: Parameters<Store["renewInstance"]>[0]): Promise<RenewResult> {
    return this.tx(async (c): Promise<RenewResult> => {
      // The row lock serializes renewals of one instance across replicas: the second of two
      // presenting the same generation sees the advanced one and locks the instance (unless
      // it is the first one's retry, with the same keys: renewStep).
      const row = (await c.query<Row>("SELECT * FROM bot_instances WHERE id = $1 FOR UPDATE", [r.id]))
        .rows[0];
      if (!row) return { ok: false, reason: "unknown" };
      const inst = rowToInstance(row);
      if (inst.lockedReason) return { ok: false, reason: "locked", instance: inst };
      const step = renewStep(inst, r.presented, r.keysHash);
      if (step.kind === "lock") {
        const reason = step.reason;
        await c.query("UPDATE bot_instances SET locked_reason = $1 WHERE id = $2", [reason, r.id]);
        if (r.events.length > 0) await this.insertEvents(c, renewEvents(step, r.events));
        return { ok: false, reason: "stale_generation", instance: { ...inst, lockedReason: reason } };
      }
      const generation = step.generation;
      await c.query(
        "UPDATE bot_instances SET generation = $1, expires_at = $2, authentications = $3, heartbeats = $4 WHERE id = $5",
        [
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
        ],
      );
      if (r.events.length > 0) await this.insertEvents(c, renewEvents(step, r.events));
      return {
        ok: true,
        generation,
        instance: { ...inst, generation, expiresAt: r.expiresAt },
        repeated: step.kind === "repeat",
      };
    });
  }

  async createJoinToken(t: JoinTokenRecord): Promise<void> {
    await this.pool.query(
      "INSERT INTO join_tokens (id, hash, bot_name, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
      [t.id, t.hash, t.botName, t.createdAt, t.expiresAt],
    );
  }

  async getJoinTokenByHash(hash: string): Promise<JoinTokenRecord | undefined> {
    const [r] = await this.rows("SELECT * FROM join_tokens WHERE hash = $1", [hash]);
    return r ? rowToJoinToken(r) : undefined;
  }

  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    return (await this.rows("SELECT * FROM join_tokens ORDER BY created_at, id")).map(rowToJoinToken);
  }

  async deleteJoinToken(id: string): Promise<boolean> {
    return (await this.pool.query("DELETE FROM join_tokens WHERE id = $1", [id])).rowCount === 1;
  }

  async createChallenge(ch: ChallengeRecord): Promise<void> {
    // One round trip: prune challenges expired over an hour ago, then insert.
    await this.pool.query(
      `WITH pruned AS (DELETE FROM challenges WHERE expires_at < $5)
       INSERT INTO challenges (id, token_name, nonce, expires_at) VALUES ($1, $2, $3, $4)`,
      [ch.id, ch.tokenName, ch.nonce, ch.expiresAt, new Date(Date.now() - 3600_000).toISOString()],
    );
  }

  async getChallenge(id: string): Promise<ChallengeRecord | undefined> {
    const [r] = await this.rows("SELECT * FROM challenges WHERE id = $1", [id]);
    return r
      ? {
          id: r.id as string,
          tokenName: r.token_name as string,
          nonce: r.nonce as string,
          expiresAt: r.expires_at as string,
        }
      : undefined;
  }

  async getBoundKeypair(tokenName: string): Promise<BoundKeypairState | undefined> {
    const [r] = await this.rows("SELECT * FROM bound_keypairs WHERE token_name = $1", [tokenName]);
    return r ? rowToBound(r) : undefined;
  }

  async listBoundKeypairs(): Promise<BoundKeypairState[]> {
    return (await this.rows("SELECT * FROM bound_keypairs ORDER BY token_name")).map(rowToBound);
  }

  async updateBoundKeypair(
    tokenName: string,
    change: { unlock?: boolean; reset?: boolean },
  ): Promise<boolean> {
    return this.tx(async (c) => {
      const row = (
        await c.query<{ instance_id: string | null }>(
          "SELECT instance_id FROM bound_keypairs WHERE token_name = $1 FOR UPDATE",
          [tokenName],
        )
      ).rows[0];
      if (!row) return false;
      if (change.reset) await c.query("DELETE FROM bound_keypairs WHERE token_name = $1", [tokenName]);
      else if (change.unlock) {
        await c.query("UPDATE bound_keypairs SET locked_reason = NULL WHERE token_name = $1", [tokenName]);
        if (row.instance_id)
          await c.query("UPDATE bot_instances SET locked_reason = NULL WHERE id = $1", [row.instance_id]);
      }
      return true;
    });
  }

  async putResource(r: StoredResource): Promise<void> {
    await this.tx(async (c) => {
      await c.query(
        "INSERT INTO resources (kind, name, body, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        [r.kind, r.name, r.body, r.updatedAt],
      );
      await c.query("UPDATE resources_version SET version = version + 1 WHERE id = 1");
    });
  }

  async deleteResource(kind: string, name: string): Promise<boolean> {
    return this.tx(async (c) => {
      const n =
        (await c.query("DELETE FROM resources WHERE kind = $1 AND name = $2", [kind, name])).rowCount ?? 0;
      if (n > 0) await c.query("UPDATE resources_version SET version = version + 1 WHERE id = 1");
      return n > 0;
    });
  }

  async listResources(): Promise<StoredResource[]> {
    return (await this.rows("SELECT * FROM resources ORDER BY kind, name")).map((r) => ({
      kind: r.kind as string,
      name: r.name as string,
      body: r.body as string,
      updatedAt: r.updated_at as string,
    }));
  }

  async resourcesVersion(): Promise<number> {
    const [r] = await this.rows<{ version: string }>("SELECT version FROM resources_version WHERE id = 1");
    return Number(r!.version);
  }

  async appendAudit(events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    if (events.length <= 500) await this.insertEvents(this.pool, events);
    else await this.tx((c) => this.insertEvents(c, events));
  }

  async listAudit(opts: { sinceIso?: string; limit?: number; type?: string } = {}): Promise<AuditEvent[]> {
    const rows = await this.rows(
      "SELECT * FROM audit WHERE time >= $1 AND ($2::text IS NULL OR type = $2) ORDER BY seq DESC LIMIT $3",
      [opts.sinceIso ?? "", opts.type ?? null, opts.limit ?? 1000],
    );
    return rows.reverse().map(rowToAudit);
  }

  async getBotInstance(id: string): Promise<BotInstanceRecord | undefined> {
    const [r] = await this.rows("SELECT * FROM bot_instances WHERE id = $1", [id]);
    return r ? rowToInstance(r) : undefined;
  }

  async listBotInstances(botName?: string): Promise<BotInstanceRecord[]> {
    const rows = await this.rows(
      "SELECT * FROM bot_instances WHERE ($1::text IS NULL OR bot_name = $1) ORDER BY created_at, id",
      [botName ?? null],
    );
    return rows.map(rowToInstance);
  }

  async pruneReplayKeys(nowSeconds: number): Promise<number> {
    return (await this.pool.query("DELETE FROM replay WHERE expires_at < $1", [nowSeconds])).rowCount ?? 0;
  }

  /** `SELECT 1` within 2 s: false while PostgreSQL is down, true again once it is back. */
  async healthy(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.pool.query("SELECT 1").then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), HEALTH_TIMEOUT_MS);
          timer.unref();
        }),
      ]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
