// A throwaway PostgreSQL (15 preferred) for the store tests, reached as the superuser over
// its unix socket (trust), with a fresh database per test. Built on postgres.ts, which also
// decides the CI rule: without PostgreSQL this throws under CI=true and skips otherwise.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { ensurePostgres, startPostgres } from "./postgres.ts";
import { createTestTlsCA } from "./testca.ts";

const execFileP = promisify(execFile);

export interface TestPostgres {
  port: number;
  socketDir: string;
  /** Connection URL of database `db` through the unix socket, as the superuser. */
  url(db: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Runs one query on database `db` with its own connection. */
  sql<R extends pg.QueryResultRow = Record<string, unknown>>(
    db: string,
    text: string,
    values?: unknown[],
  ): Promise<R[]>;
  /** Stops the server (`pg_ctl stop -m fast`) keeping its data, to simulate an outage. */
  pause(): Promise<void>;
  /** Starts it again after pause(), same port and socket. */
  resume(): Promise<void>;
  logs(): string;
  stop(): Promise<void>;
}

export async function startTestPostgres(): Promise<TestPostgres | { skip: string }> {
  const found = await ensurePostgres();
  if ("skip" in found) return found;
  const certDir = await mkdtemp(join(tmpdir(), "idbot-pg-tls-"));
  try {
    const tls = await createTestTlsCA(certDir);
    const server = await startPostgres({
      serverCertFile: tls.serverCertFile,
      serverKeyFile: tls.serverKeyFile,
      clientCaPem: tls.caPem,
    });
    const pgCtl = async (args: string[]) => {
      try {
        await execFileP(
          "runuser",
          ["-u", "postgres", "--", join(found.bin, "pg_ctl"), "-D", server.dataDir, ...args],
          {
            timeout: 60_000,
          },
        );
      } catch (err) {
        const e = err as Error & { stderr?: string };
        throw new Error(`pg_ctl ${args.at(-1)} failed: ${e.stderr ?? e.message}\n${server.logs()}`);
      }
    };
    const logFile = join(dirname(server.dataDir), "postgres.log");
    const pause = () => pgCtl(["-m", "fast", "-w", "-t", "30", "stop"]);
    const resume = () => pgCtl(["-l", logFile, "-w", "-t", "30", "start"]);
    // Two "replicas" of 10 connections each plus the tests' own: more than the 20 the
    // base helper allows.
    await server.psqlAdmin("ALTER SYSTEM SET max_connections = 100");
    await pause();
    await resume();

    const url = (db: string) =>
      `postgresql://postgres@/${encodeURIComponent(db)}?host=${encodeURIComponent(server.socketDir)}&port=${server.port}`;
    return {
      port: server.port,
      socketDir: server.socketDir,
      url,
      async createDatabase(name) {
        if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad test database name ${name}`);
        await server.psqlAdmin(`CREATE DATABASE ${name}`);
        return url(name);
      },
      async sql(db, text, values = []) {
        const client = new pg.Client({ connectionString: url(db) });
        client.on("error", () => {});
        await client.connect();
        try {
          return (await client.query(text, values)).rows;
        } finally {
          await client.end().catch(() => {});
        }
      },
      pause,
      resume,
      logs: () => server.logs(),
      async stop() {
        await server.stop();
        await rm(certDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(certDir, { recursive: true, force: true });
    throw err;
  }
}
