// The embedded store: one SQLite file (WAL) in the data directory. better-sqlite3 is
// loaded lazily so the bundled CLI runs join/status/cleanup without the native module.
import { closeSync, constants, lstatSync, mkdirSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import type {
  AuditEvent,
  BotInstanceRecord,
  CAKeyRecord,
  CAName,
  CommitResult,
  ReplayKey,
  Store,
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
];

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
        "INSERT INTO bot_instances (id, bot_name, token_name, join_method, claims, created_at, expires_at, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    instance: BotInstanceRecord;
    events: AuditEvent[];
  }): Promise<CommitResult> {
    try {
      this.db
        .transaction(() => {
          if (j.replay) this.stmts.insertReplay.run(j.replay.issuer, j.replay.jti, j.replay.expiresAt);
          const i = j.instance;
          this.stmts.insertInstance.run(
            i.id,
            i.botName,
            i.tokenName,
            i.joinMethod,
            JSON.stringify(i.claims),
            i.createdAt,
            i.expiresAt,
            i.generation,
          );
          this.insertEvents(j.events);
        })
        .immediate();
      return { ok: true };
    } catch (e) {
      if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_PRIMARYKEY")
        return { ok: false, reason: "replayed" };
      throw e;
    }
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
  };
}
