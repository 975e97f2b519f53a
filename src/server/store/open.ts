// Chooses the store from the service's options: the embedded SQLite file in a data
// directory, or a shared PostgreSQL database for several replicas. Both drivers (and the
// store modules) are loaded only when chosen.
import { readFileSync } from "node:fs";
import type { Store } from "./store.ts";
import type { ThreadLock } from "./threadlock.ts";

export class OpenStoreError extends Error {
  override name = "OpenStoreError";
}

const MIN_PASSPHRASE = 16;

/** True for a URL `openStore` hands to the PostgreSQL store. */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value);
}

/**
 * The passphrase that encrypts the CA keys in a shared store: IDBOT_CA_PASSPHRASE, or the
 * contents of the file IDBOT_CA_PASSPHRASE_FILE names (a secret mount; one trailing newline
 * is ignored). At least 16 characters.
 */
export function readCaPassphrase(env: NodeJS.ProcessEnv = process.env): string {
  const direct = env.IDBOT_CA_PASSPHRASE;
  const file = env.IDBOT_CA_PASSPHRASE_FILE;
  let passphrase: string;
  let source: string;
  if (direct && file) {
    throw new OpenStoreError("set only one of IDBOT_CA_PASSPHRASE and IDBOT_CA_PASSPHRASE_FILE, not both");
  }
  if (file) {
    try {
      passphrase = readFileSync(file, "utf8").replace(/\r?\n$/, "");
    } catch (e) {
      throw new OpenStoreError(
        `cannot read IDBOT_CA_PASSPHRASE_FILE ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    source = `the file IDBOT_CA_PASSPHRASE_FILE names (${file})`;
  } else if (direct) {
    passphrase = direct;
    source = "IDBOT_CA_PASSPHRASE";
  } else {
    throw new OpenStoreError(
      "a PostgreSQL store keeps the CA private keys encrypted: set IDBOT_CA_PASSPHRASE, or IDBOT_CA_PASSPHRASE_FILE to a file holding it (at least 16 characters, the same on every replica)",
    );
  }
  if ([...passphrase].length < MIN_PASSPHRASE) {
    throw new OpenStoreError(
      `the CA passphrase from ${source} is ${[...passphrase].length} characters long: use at least ${MIN_PASSPHRASE}`,
    );
  }
  return passphrase;
}

/**
 * Opens the store: PostgreSQL when `database` is a postgres:// or postgresql:// URL (it
 * takes precedence over `dataDir`), else SQLite in `dataDir`. The PostgreSQL store needs
 * the CA passphrase (see readCaPassphrase) from `env` (default process.env).
 */
export async function openStore(opts: {
  dataDir?: string;
  database?: string;
  env?: NodeJS.ProcessEnv;
  /** Reports dropped idle PostgreSQL connections (recovered from automatically). */
  onConnectionError?: (err: Error) => void;
  /** The threads of one process that open the same SQLite file share this lock. */
  sqliteWriteLock?: ThreadLock;
  /** How many threads of this process open a store: on PostgreSQL they share one
   *  replica's connections, so the database sees as many per process as before. */
  threads?: number;
}): Promise<Store> {
  if (opts.database !== undefined) {
    if (!isPostgresUrl(opts.database)) {
      throw new OpenStoreError(
        "--database must be a postgres:// or postgresql:// URL (e.g. postgresql://idbot@db.example.com/idbot?sslmode=verify-full); for the embedded store give --data-dir instead",
      );
    }
    const caPassphrase = readCaPassphrase(opts.env ?? process.env);
    const { openPostgresStore, POOL_PER_REPLICA } = await import("./postgres.ts");
    return openPostgresStore(opts.database, {
      caPassphrase,
      ...(opts.threads && opts.threads > 1
        ? { maxConnections: Math.max(2, Math.ceil(POOL_PER_REPLICA / opts.threads)) }
        : {}),
      ...(opts.onConnectionError ? { onConnectionError: opts.onConnectionError } : {}),
    });
  }
  if (opts.dataDir !== undefined) {
    const { openSqliteStore } = await import("./sqlite.ts");
    return openSqliteStore(opts.dataDir, opts.sqliteWriteLock ? { writeLock: opts.sqliteWriteLock } : {});
  }
  throw new OpenStoreError(
    "no store given: pass --data-dir DIR (embedded SQLite) or --database URL (PostgreSQL)",
  );
}
