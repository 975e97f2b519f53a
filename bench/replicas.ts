// Scale-out figures: two `idbot serve --database` replicas on one PostgreSQL, the load split
// evenly across them, against one `idbot serve --data-dir` (embedded SQLite) process under the
// same load in the same run. Everything on 127.0.0.1. Printed as a table, PASS/MISS against
// informational targets, and one `BENCH_REPLICAS_JSON {...}` line; never asserted.
//
//   node --import tsx bench/replicas.ts            (alone)
//   import { runReplicaBench } from "./replicas.ts" (from bench/run.ts)
//
// Every process runs on one thread (--workers 0): the rows compare processes, two against
// one, on the same cores; what threads do for one process is bench/run.ts's table.
//
// Each ID token is used once per store: the PostgreSQL pair and the SQLite process keep
// separate replay tables, so one minted batch serves both runs of a level.
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { startTestPostgres, type TestPostgres } from "../test/helpers/pgserver.ts";
import { type Replica, startReplica } from "../test/helpers/replicas.ts";
import { type Service, startService } from "../test/helpers/service.ts";
import { type JoinBody, type LoadResult, percentile, runLoad } from "./load.ts";
import { type ProcMemory, procCpuMs, procMemory } from "./proc.ts";
import { BENCH_SERVE_ARGS, benchResources, clientPublicKeys } from "./setup.ts";
import { createIssuer, type Issuer, mintTokens, TokenPool } from "./tokens.ts";

const PUBLIC_URL = "https://idbot.bench.test";
const DB = "bench_replicas";
export const REPLICA_TARGET = { p99MsAt64: 100, rssMb: 150 } as const;

export interface ReplicaBenchOptions {
  /** Concurrency levels, each run against the replica pair and then against SQLite (default [16, 64]). */
  levels?: number[];
  /** Timed part of each run (default BENCH_DURATION_MS or 5000). */
  durationMs?: number;
  /** Untimed part first, at the same concurrency (default BENCH_WARMUP_MS or 1000). */
  warmupMs?: number;
  /** Upper bound on the tokens minted for one level (default BENCH_MAX_TOKENS or 40000). */
  maxTokens?: number;
  /** PostgreSQL's synchronous_commit (default "off": fsync stays on; commits are flushed by
   *  the WAL writer within 200 ms, the durability of SQLite's WAL with synchronous=NORMAL). */
  synchronousCommit?: "on" | "off";
  /** Print the table and the BENCH_REPLICAS_JSON line (default true). */
  print?: boolean;
  /** Progress lines (default: stderr). */
  log?: (msg: string) => void;
}

export type Memory = ProcMemory;

export interface RunFigures {
  joinsPerS: number;
  /** For the pair: over every join of both replicas, as a client behind a load balancer sees it. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  completed: number;
  errors: number;
  errorSamples: string[];
  ranOutOfTokens: boolean;
  /** CPU of each service process over the run (warm-up included), in cores. */
  serviceCores: number[];
  /** CPU of the PostgreSQL server over the run, in cores (NaN for SQLite). */
  postgresCores: number;
}

export interface ReplicaLevel {
  concurrency: number;
  replicas: RunFigures & { perReplica: LoadResult[] };
  sqlite: RunFigures;
}

export interface ReplicaBenchResult {
  skipped?: string;
  levels: ReplicaLevel[];
  memory: { replicas: Memory[]; sqlite: Memory };
  settings: { durationMs: number; warmupMs: number; synchronousCommit: string; cpus: number };
  minted: number;
  mintS: number;
  loadBefore: number;
  loadAfter: number;
  targets: Record<string, { target: string; measured: number; pass: boolean }>;
}

const envNum = (name: string, fallback: number) => {
  const v = process.env[name];
  return v !== undefined && v !== "" && Number.isFinite(Number(v)) ? Number(v) : fallback;
};

/** CPU (ms) of a PostgreSQL server: the postmaster (with its reaped children) and every live
 *  child (backends, WAL writer, checkpointer). The postmaster's pid is the first line of the
 *  socket's lock file. */
function pgCpuMs(pg: TestPostgres): number {
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(join(pg.socketDir, `.s.PGSQL.${pg.port}.lock`), "utf8").split("\n")[0]);
  } catch {
    return Number.NaN;
  }
  const ticks = (pid: number, withChildren: boolean) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return {
        ppid: Number(f[1]),
        t: Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0),
      };
    } catch {
      return undefined;
    }
  };
  let total = ticks(postmaster, true)?.t ?? Number.NaN;
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const c = ticks(Number(name), false);
    if (c && c.ppid === postmaster) total += c.t;
  }
  return total * 10;
}

/** Keeps only a bounded tail of a service's stderr (three JSON log lines per join). */
function tailOf(proc: { stderr: NodeJS.ReadableStream | null }): () => string {
  let tail = "";
  proc.stderr?.removeAllListeners("data");
  proc.stderr?.on("data", (d: Buffer) => {
    tail = (tail + d.toString("utf8")).slice(-8000);
  });
  return () => tail;
}

/** Runs `concurrency` clients split evenly over `urls`, all drawing from one token pool. */
async function splitLoad(
  urls: string[],
  pids: number[],
  concurrency: number,
  pool: TokenPool,
  body: JoinBody,
  durationMs: number,
  warmupMs: number,
  pg?: TestPostgres,
): Promise<RunFigures & { perReplica: LoadResult[] }> {
  const cpu0 = pids.map(procCpuMs);
  const pg0 = pg ? pgCpuMs(pg) : Number.NaN;
  const t0 = process.hrtime.bigint();
  const per = urls.map(
    (_, i) => Math.floor(concurrency / urls.length) + (i < concurrency % urls.length ? 1 : 0),
  );
  const results = await Promise.all(
    urls.map((url, i) => runLoad({ url, concurrency: per[i]!, durationMs, warmupMs, tokens: pool, body })),
  );
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const elapsedS = Math.max(...results.map((r) => r.elapsedS));
  const completed = results.reduce((n, r) => n + r.completed, 0);
  const all = new Float64Array(completed);
  let at = 0;
  for (const r of results) {
    all.set(r.latenciesMs, at);
    at += r.latenciesMs.length;
  }
  all.sort();
  return {
    joinsPerS: completed / elapsedS,
    p50Ms: percentile(all, 50),
    p99Ms: percentile(all, 99),
    maxMs: Math.max(...results.map((r) => r.maxMs)),
    completed,
    errors: results.reduce((n, r) => n + r.errors, 0),
    errorSamples: [...new Set(results.flatMap((r) => r.errorSamples))].slice(0, 5),
    ranOutOfTokens: results.some((r) => r.ranOutOfTokens),
    serviceCores: pids.map((pid, i) => (procCpuMs(pid) - cpu0[i]!) / 1000 / wallS),
    postgresCores: pg ? (pgCpuMs(pg) - pg0) / 1000 / wallS : Number.NaN,
    perReplica: results,
  };
}

export async function runReplicaBench(opts: ReplicaBenchOptions = {}): Promise<ReplicaBenchResult> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`bench replicas: ${m}\n`));
  const levels = opts.levels ?? [16, 64];
  const durationMs = opts.durationMs ?? envNum("BENCH_DURATION_MS", 5000);
  const warmupMs = opts.warmupMs ?? envNum("BENCH_WARMUP_MS", 1000);
  const maxTokens = opts.maxTokens ?? envNum("BENCH_MAX_TOKENS", 40_000);
  const synchronousCommit = opts.synchronousCommit ?? "off";
  const loadBefore = loadavg()[0]!;
  const empty = (skipped: string): ReplicaBenchResult => ({
    skipped,
    levels: [],
    memory: { replicas: [], sqlite: { rssMb: Number.NaN, hwmMb: Number.NaN } },
    settings: { durationMs, warmupMs, synchronousCommit, cpus: cpus().length },
    minted: 0,
    mintS: 0,
    loadBefore,
    loadAfter: loadavg()[0]!,
    targets: {},
  });

  const started = await startTestPostgres();
  if ("skip" in started) {
    log(`skipped: ${started.skip}`);
    const r = empty(started.skip);
    if (opts.print !== false) printReplicaReport(r);
    return r;
  }
  const pg: TestPostgres = started;
  const work = await mkdtemp(join(tmpdir(), "idbot-bench-replicas-"));
  const replicas: Replica[] = [];
  let sqlite: Service | undefined;
  try {
    // The test server runs with fsync off; a benchmark of a shared store should pay for it.
    await pg.sql("postgres", "ALTER SYSTEM SET fsync = on");
    await pg.sql("postgres", `ALTER SYSTEM SET synchronous_commit = ${synchronousCommit}`);
    await pg.sql("postgres", "SELECT pg_reload_conf()");
    const database = await pg.createDatabase(DB);
    const issuer: Issuer = createIssuer();
    const resources = benchResources(issuer);
    log("starting two replicas on PostgreSQL and one SQLite process");
    const args = [...BENCH_SERVE_ARGS, "--workers", "0"];
    const [r1, r2, s] = await Promise.all([
      startReplica({ database, resources, publicUrl: PUBLIC_URL, args }),
      startReplica({ database, resources, publicUrl: PUBLIC_URL, args }),
      startService({
        resources,
        dataDir: join(work, "sqlite"),
        args: ["--public-url", PUBLIC_URL, ...args],
      }),
    ]);
    replicas.push(r1, r2);
    sqlite = s;
    const tails = [...replicas.map((r) => tailOf(r.proc)), tailOf(s.proc)];
    const replicaPids = replicas.map((r) => r.proc.pid!);
    const sqlitePid = s.proc.pid!;

    const keys = clientPublicKeys();
    const body: JoinBody = {
      token: "bench",
      sshPublicKey: keys.ssh,
      tlsPublicPem: keys.tls,
      outputs: ["identity", "ssh"],
    };
    let minted = 0;
    let mintS = 0;
    const mint = async (count: number): Promise<string[]> => {
      const t0 = process.hrtime.bigint();
      const tokens = await mintTokens(issuer, { count, audience: PUBLIC_URL });
      mintS += Number(process.hrtime.bigint() - t0) / 1e9;
      minted += count;
      return tokens;
    };

    // Calibration (also the warm-up of every process): a short c=16 run on each side gives
    // the first rate estimate; each level then mints for the fastest rate seen, with a margin.
    const calibTokens = await mint(3000);
    const calibPair = await splitLoad(
      replicas.map((r) => r.url),
      replicaPids,
      16,
      new TokenPool([...calibTokens]),
      body,
      1000,
      500,
    );
    const calibSqlite = await splitLoad(
      [s.url],
      [sqlitePid],
      16,
      new TokenPool(calibTokens),
      body,
      1000,
      500,
    );
    if (calibPair.completed === 0 || calibSqlite.completed === 0) {
      throw new Error(
        `calibration failed: ${[...calibPair.errorSamples, ...calibSqlite.errorSamples].join("; ")}\n${tails.map((t) => t()).join("\n")}`,
      );
    }
    let rate = Math.max(calibPair.joinsPerS, calibSqlite.joinsPerS);
    log(
      `calibration at c=16: pair ${Math.round(calibPair.joinsPerS)} joins/s, SQLite ${Math.round(calibSqlite.joinsPerS)} joins/s`,
    );

    const rows: ReplicaLevel[] = [];
    for (const c of levels) {
      // The short calibration runs cold: the warm pair has done twice its rate, hence 2.5x.
      const want = Math.min(maxTokens, Math.ceil((rate * 2.5 * (durationMs + warmupMs)) / 1000));
      const tokens = await mint(want);
      log(`c=${c}: pair (${want} tokens)`);
      const pair = await splitLoad(
        replicas.map((r) => r.url),
        replicaPids,
        c,
        new TokenPool([...tokens]),
        body,
        durationMs,
        warmupMs,
        pg,
      );
      log(`c=${c}: SQLite`);
      const single = await splitLoad(
        [s.url],
        [sqlitePid],
        c,
        new TokenPool(tokens),
        body,
        durationMs,
        warmupMs,
      );
      const { perReplica: _p, ...sqliteFigures } = single;
      rows.push({ concurrency: c, replicas: pair, sqlite: sqliteFigures });
      for (const x of [pair.joinsPerS, single.joinsPerS]) if (Number.isFinite(x)) rate = Math.max(rate, x);
    }

    const memory = { replicas: replicaPids.map(procMemory), sqlite: procMemory(sqlitePid) };
    const result: ReplicaBenchResult = {
      levels: rows,
      memory,
      settings: { durationMs, warmupMs, synchronousCommit, cpus: cpus().length },
      minted,
      mintS,
      loadBefore,
      loadAfter: loadavg()[0]!,
      targets: targetsOf(rows, memory),
    };
    if (opts.print !== false) printReplicaReport(result);
    return result;
  } finally {
    await Promise.all([...replicas.map((r) => r.stop()), sqlite?.stop()]);
    await pg.stop();
    await rm(work, { recursive: true, force: true });
  }
}

function targetsOf(
  rows: ReplicaLevel[],
  memory: ReplicaBenchResult["memory"],
): ReplicaBenchResult["targets"] {
  const peakPair = Math.max(...rows.map((l) => l.replicas.joinsPerS));
  const peakSqlite = Math.max(...rows.map((l) => l.sqlite.joinsPerS));
  const at64 = rows.find((l) => l.concurrency === 64);
  const errors = rows.reduce((n, l) => n + l.replicas.errors, 0);
  const rss = Math.max(...memory.replicas.map((m) => m.rssMb));
  return {
    pair_vs_sqlite_joins_per_s: {
      target: `>= ${Math.round(peakSqlite)} (one SQLite process)`,
      measured: Math.round(peakPair),
      pass: peakPair >= peakSqlite,
    },
    pair_p99_ms_at_64: {
      target: `< ${REPLICA_TARGET.p99MsAt64}`,
      measured: at64 ? +at64.replicas.p99Ms.toFixed(2) : Number.NaN,
      pass: (at64?.replicas.p99Ms ?? Number.POSITIVE_INFINITY) < REPLICA_TARGET.p99MsAt64,
    },
    pair_errors: { target: "0", measured: errors, pass: errors === 0 },
    rss_mb_per_replica: {
      target: `< ${REPLICA_TARGET.rssMb}`,
      measured: +rss.toFixed(1),
      pass: rss < REPLICA_TARGET.rssMb,
    },
  };
}

const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

export function printReplicaReport(r: ReplicaBenchResult): void {
  const out: string[] = [""];
  if (r.skipped) {
    out.push(`replicas on PostgreSQL: skipped (${r.skipped})`);
  } else {
    const s = r.settings;
    out.push(
      `two replicas on one PostgreSQL (load split evenly) vs one SQLite process, each on one thread (--workers 0), POST /v1/join, ${s.durationMs / 1000} s per run after ${s.warmupMs / 1000} s warm-up`,
    );
    const row = (name: string, f: RunFigures) => [
      `${name}${f.ranOutOfTokens ? " (tokens ran out)" : ""}`,
      f0(f.joinsPerS),
      f2(f.p50Ms),
      f2(f.p99Ms),
      f2(f.maxMs),
      f0(f.completed),
      f0(f.errors),
      f.serviceCores.map(f2).join(" + "),
      f2(f.postgresCores),
    ];
    out.push(
      table(
        ["run", "joins/s", "p50 ms", "p99 ms", "max ms", "ok", "errors", "svc cores", "pg cores"],
        r.levels.flatMap((l) => [
          row(`c=${l.concurrency} 2 replicas`, l.replicas),
          ...l.replicas.perReplica.map((p, i) => [
            `  replica ${i + 1} (c=${p.concurrency})`,
            f0(p.joinsPerS),
            f2(p.p50Ms),
            f2(p.p99Ms),
            f2(p.maxMs),
            f0(p.completed),
            f0(p.errors),
            "",
            "",
          ]),
          row(`c=${l.concurrency} SQLite`, l.sqlite),
        ]),
      ),
    );
    for (const l of r.levels) {
      for (const e of l.replicas.errorSamples) out.push(`  c=${l.concurrency} replicas error: ${e}`);
      for (const e of l.sqlite.errorSamples) out.push(`  c=${l.concurrency} SQLite error: ${e}`);
    }
    out.push("  pair p50/p99: over every join of both replicas (each replica's own on the lines below).");
    out.push(
      `  PostgreSQL: fsync on, synchronous_commit ${s.synchronousCommit}; "svc cores" and "pg cores": CPU over the run, warm-up included.`,
    );
    out.push("");
    out.push(
      table(
        ["process", "RSS MB", "HWM MB"],
        [
          ...r.memory.replicas.map((m, i) => [`replica ${i + 1}`, f1(m.rssMb), f1(m.hwmMb)]),
          ["SQLite process", f1(r.memory.sqlite.rssMb), f1(r.memory.sqlite.hwmMb)],
        ],
      ),
    );
    out.push("");
    out.push("targets (informational)");
    out.push(
      table(
        ["figure", "measured", "target", ""],
        Object.entries(r.targets).map(([k, t]) => [
          k,
          String(t.measured),
          t.target,
          t.pass ? "PASS" : "MISS",
        ]),
      ),
    );
    out.push(
      `(${s.cpus} CPUs shared by PostgreSQL, the services and this load generator; 1-min load average ${f2(r.loadBefore)} before, ${f2(r.loadAfter)} after; ${f0(r.minted)} ID tokens minted in ${f1(r.mintS)} s)`,
    );
  }
  out.push("");
  console.log(out.join("\n"));
  console.log(`BENCH_REPLICAS_JSON ${JSON.stringify(replicaJson(r))}`);
}

function figuresJson(f: RunFigures) {
  return {
    joins_per_s: Math.round(f.joinsPerS),
    p50_ms: +f.p50Ms.toFixed(3),
    p99_ms: +f.p99Ms.toFixed(3),
    max_ms: +f.maxMs.toFixed(3),
    completed: f.completed,
    errors: f.errors,
    ran_out_of_tokens: f.ranOutOfTokens,
    service_cores: f.serviceCores.map((c) => +c.toFixed(3)),
    postgres_cores: Number.isFinite(f.postgresCores) ? +f.postgresCores.toFixed(3) : null,
  };
}

export function replicaJson(r: ReplicaBenchResult) {
  if (r.skipped) return { skipped: r.skipped };
  return {
    levels: r.levels.map((l) => ({
      concurrency: l.concurrency,
      replicas: {
        ...figuresJson(l.replicas),
        per_replica: l.replicas.perReplica.map((p) => ({
          concurrency: p.concurrency,
          joins_per_s: Math.round(p.joinsPerS),
          p50_ms: +p.p50Ms.toFixed(3),
          p99_ms: +p.p99Ms.toFixed(3),
          errors: p.errors,
        })),
      },
      sqlite: figuresJson(l.sqlite),
    })),
    memory: {
      replicas: r.memory.replicas.map((m) => ({ rss_mb: +m.rssMb.toFixed(1), hwm_mb: +m.hwmMb.toFixed(1) })),
      sqlite: { rss_mb: +r.memory.sqlite.rssMb.toFixed(1), hwm_mb: +r.memory.sqlite.hwmMb.toFixed(1) },
    },
    settings: {
      duration_ms: r.settings.durationMs,
      warmup_ms: r.settings.warmupMs,
      synchronous_commit: r.settings.synchronousCommit,
      cpus: r.settings.cpus,
    },
    targets: r.targets,
    box: { loadavg_before: +r.loadBefore.toFixed(2), loadavg_after: +r.loadAfter.toFixed(2) },
    minted: r.minted,
    mint_s: +r.mintS.toFixed(2),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runReplicaBench().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
