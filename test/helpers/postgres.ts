// A real PostgreSQL server on 127.0.0.1 whose only TCP authentication is client certificates
// (pg_hba `hostssl ... cert`), verified against idbot's TLS CA (ssl_ca_file). PostgreSQL refuses
// to run as root, so initdb, pg_ctl and the postmaster run as the `postgres` system user.
import { execFile } from "node:child_process";
import { constants, readFileSync } from "node:fs";
import { access, chmod, chown, copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

import { aptInstall, cannotInstall } from "./debian.ts";

const execFileP = promisify(execFile);
const PREFERRED = "15";
const OS_USER = "postgres";

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeout?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    const r = await execFileP(cmd, args, {
      env: opts.env ?? process.env,
      maxBuffer: 64 << 20,
      timeout: opts.timeout ?? 120_000,
    });
    return { stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string; code?: number | string };
    const detail = `${e.stderr ?? ""}${e.stdout ?? ""}`.trim() || e.message;
    throw new Error(`${cmd} ${args.join(" ")} failed (${e.code}): ${detail}`);
  }
}

/** The newest-preferred PostgreSQL bin directory: 15 when present, else the highest version. */
async function findBin(): Promise<string | undefined> {
  const ok = async (bin: string) =>
    (await exists(join(bin, "initdb"), constants.X_OK)) &&
    (await exists(join(bin, "pg_ctl"), constants.X_OK)) &&
    (await exists(join(bin, "postgres"), constants.X_OK));
  const preferred = `/usr/lib/postgresql/${PREFERRED}/bin`;
  if (await ok(preferred)) return preferred;
  let versions: string[] = [];
  try {
    versions = (await readdir("/usr/lib/postgresql")).filter((v) => /^\d+$/.test(v));
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = `/usr/lib/postgresql/${v}/bin`;
    if (await ok(bin)) return bin;
  }
  return undefined;
}

async function hasPsql(): Promise<boolean> {
  return (await exists("/usr/bin/psql", constants.X_OK)) || (await exists("/usr/local/bin/psql"));
}

async function hasUser(name: string): Promise<boolean> {
  try {
    await run("id", ["-u", name]);
    return true;
  } catch {
    return false;
  }
}

let ensured: Promise<{ bin: string } | { skip: string }> | undefined;

async function install(): Promise<{ bin: string } | { skip: string }> {
  const found = await findBin();
  if (found && (await hasPsql()) && (await hasUser(OS_USER))) return { bin: found };
  let reason = await cannotInstall("PostgreSQL", `postgresql-${PREFERRED}`);
  if (!reason) {
    try {
      await aptInstall([`postgresql-${PREFERRED}`], ["postgresql"]);
    } catch (err) {
      reason = `installing PostgreSQL failed: ${(err as Error).message}`;
    }
    const bin = await findBin();
    if (bin && (await hasPsql()) && (await hasUser(OS_USER))) return { bin };
    reason ??= "PostgreSQL was installed but initdb/pg_ctl/postgres, psql or the postgres user is missing";
  }
  if (process.env.CI === "true") throw new Error(`PostgreSQL is required under CI: ${reason}`);
  return { skip: reason };
}

/**
 * Makes sure a PostgreSQL server (15 preferred), psql and the `postgres` system user exist,
 * installing Debian's postgresql-15 (or postgresql) when root.
 * When impossible: throws under CI=true, otherwise returns { skip }.
 */
export function ensurePostgres(): Promise<{ bin: string } | { skip: string }> {
  ensured ??= install().catch((err: unknown) => {
    ensured = undefined;
    throw err;
  });
  return ensured;
}

export interface Postgres {
  host: "127.0.0.1";
  port: number;
  dataDir: string;
  /** Unix socket directory: the admin (postgres, trust) connects here. */
  socketDir: string;
  /** The server log so far. */
  logs(): string;
  /** Runs SQL as the postgres superuser over the unix socket; returns `psql -XAt` output. */
  psqlAdmin(sql: string): Promise<string>;
  /** `pg_ctl stop -m fast`, then removes every file. */
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Server certificate (PEM), e.g. the test CA's 127.0.0.1/localhost certificate. */
  serverCertFile: string;
  serverKeyFile: string;
  /** CA that client certificates must chain to (idbot's TLS CA): becomes ssl_ca_file. */
  clientCaPem: string;
  /** Roles to create with LOGIN (e.g. "ci"). */
  roles?: string[];
  databases?: Array<{ name: string; owner: string }>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** process.env without PG* variables, so the caller's libpq settings cannot leak in. */
function cleanPgEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG")) env[k] = v;
  return env;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function quoteConf(value: string): string {
  return `'${value.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run("id", ["-u", OS_USER])).stdout.trim());
  const gid = Number((await run("id", ["-g", OS_USER])).stdout.trim());
  return { uid, gid };
}

/** initdb + pg_ctl start in a fresh temp dir, then creates roles and databases. */
export async function startPostgres(opts: StartPostgresOptions): Promise<Postgres> {
  const found = await ensurePostgres();
  if ("skip" in found) throw new Error(found.skip);
  const { bin } = found;
  const { uid, gid } = await postgresIds();
  const asPg = (cmd: string, args: string[]) => run("runuser", ["-u", OS_USER, "--", cmd, ...args]);

  // /tmp is world-traversable, so the postgres user can reach a dir it owns there.
  const baseDir = await mkdtemp("/tmp/idbot-pg-");
  const dataDir = join(baseDir, "data");
  const socketDir = join(baseDir, "sock");
  const logFile = join(baseDir, "postgres.log");
  let started = false;
  const pgCtl = join(bin, "pg_ctl");

  const cleanup = async () => {
    if (started || (await exists(join(dataDir, "postmaster.pid")))) {
      await asPg(pgCtl, ["-D", dataDir, "-m", "fast", "-w", "-t", "30", "stop"]).catch(() => {});
      started = false;
    }
    await rm(baseDir, { recursive: true, force: true });
  };

  try {
    await chmod(baseDir, 0o700);
    await mkdir(socketDir, { mode: 0o700 });
    await writeFile(logFile, "");
    for (const p of [baseDir, socketDir, logFile]) await chown(p, uid, gid);

    await asPg(join(bin, "initdb"), [
      "-D",
      dataDir,
      "-U",
      "postgres",
      "--auth-local=trust",
      "--auth-host=reject",
      "--no-locale",
      "-E",
      "UTF8",
      "--no-sync",
    ]);

    // Certificate, key and client CA inside the data dir, owned by postgres; the key 0600
    // (the server refuses a key file with group or world access).
    const certFile = join(dataDir, "server.crt");
    const keyFile = join(dataDir, "server.key");
    const caFile = join(dataDir, "client-ca.crt");
    await copyFile(opts.serverCertFile, certFile);
    await copyFile(opts.serverKeyFile, keyFile);
    await writeFile(caFile, opts.clientCaPem);
    for (const [p, mode] of [
      [certFile, 0o644],
      [keyFile, 0o600],
      [caFile, 0o644],
    ] as const) {
      await chown(p, uid, gid);
      await chmod(p, mode);
    }

    const hba = join(dataDir, "pg_hba.conf");
    await writeFile(
      hba,
      [
        "# TYPE  DATABASE  USER  ADDRESS       METHOD",
        "local   all       all                 trust",
        "hostssl all       all   127.0.0.1/32  cert",
        "",
      ].join("\n"),
    );
    await chown(hba, uid, gid);

    const conf = join(dataDir, "postgresql.conf");
    const baseConf = readFileSync(conf, "utf8");
    let lastError: Error | undefined;
    for (let attempt = 1; attempt <= 5 && !started; attempt++) {
      const port = await freePort();
      await writeFile(
        conf,
        [
          baseConf,
          "# idbot test settings",
          "listen_addresses = '127.0.0.1'",
          `port = ${port}`,
          `unix_socket_directories = ${quoteConf(socketDir)}`,
          "ssl = on",
          `ssl_cert_file = ${quoteConf(certFile)}`,
          `ssl_key_file = ${quoteConf(keyFile)}`,
          `ssl_ca_file = ${quoteConf(caFile)}`,
          "fsync = off",
          "synchronous_commit = off",
          "full_page_writes = off",
          "max_connections = 20",
          "shared_buffers = 16MB",
          "log_connections = on",
          "",
        ].join("\n"),
      );
      await chown(conf, uid, gid);
      try {
        await asPg(pgCtl, ["-D", dataDir, "-l", logFile, "-w", "-t", "30", "start"]);
        started = true;
        return await finish(port);
      } catch (err) {
        lastError = err as Error;
        if (started) throw err;
        const logs = readLogs();
        if (!/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(logs)) {
          throw new Error(`${lastError.message}\n--- postgres log ---\n${logs}`);
        }
        await writeFile(logFile, "");
      }
    }
    throw new Error(`PostgreSQL could not bind a loopback port: ${lastError?.message}\n${readLogs()}`);
  } catch (err) {
    await cleanup();
    throw err;
  }

  function readLogs(): string {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  }

  async function finish(port: number): Promise<Postgres> {
    const psqlAdmin = async (sql: string): Promise<string> => {
      const r = await run(
        "psql",
        [
          "-X",
          "-q",
          "-v",
          "ON_ERROR_STOP=1",
          "-h",
          socketDir,
          "-p",
          String(port),
          "-U",
          "postgres",
          "-d",
          "postgres",
          "-At",
          "-c",
          sql,
        ],
        { env: cleanPgEnv() },
      );
      return r.stdout;
    };
    for (const role of opts.roles ?? []) await psqlAdmin(`CREATE ROLE ${quoteIdent(role)} LOGIN`);
    for (const db of opts.databases ?? []) {
      await psqlAdmin(`CREATE DATABASE ${quoteIdent(db.name)} OWNER ${quoteIdent(db.owner)}`);
    }
    return {
      host: "127.0.0.1",
      port,
      dataDir,
      socketDir,
      logs: readLogs,
      psqlAdmin,
      stop: cleanup,
    };
  }
}
