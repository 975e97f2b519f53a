// `npm run bench`: join throughput and latency of one `idbot serve` (embedded SQLite), its
// memory, the crypto floor of a join, and the Action main step's wall time. Everything runs
// on 127.0.0.1; the figures are printed (a table, then one `BENCH_JSON {...}` line), never
// asserted: the exit code only says whether the bench itself crashed.
//
// Rows are data (LEVELS below): a later row with other `outputs`, or a second service on
// PostgreSQL, is one more entry with its own target.

import { mkdtempSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type FakeGitHub, startFakeGitHub } from "../test/helpers/fake-github.ts";
import { type Service, startService } from "../test/helpers/service.ts";
import { createTestTlsCA } from "../test/helpers/testca.ts";
import { type StepTiming, timeMainStep, timeNodeStartup } from "./action.ts";
import { type CryptoFloor, measureCryptoFloor } from "./crypto.ts";
import { measurePlatformFloor, type PlatformFloor } from "./floor.ts";
import { type JoinBody, type LoadResult, runLoad } from "./load.ts";
import { type ProcMemory, procCpuMs, procMemory } from "./proc.ts";
import { runReplicaBench } from "./replicas.ts";
import { BENCH_SERVE_ARGS, benchResources, clientPublicKeys } from "./setup.ts";
import { createIssuer, mintTokens, TokenPool } from "./tokens.ts";

// ---------------------------------------------------------------------------------------
// Settings (env overrides for quick experiments; defaults keep the whole bench under ~2 min)

const num = (name: string, fallback: number) => {
  const v = process.env[name];
  return v !== undefined && v !== "" && Number.isFinite(Number(v)) ? Number(v) : fallback;
};
const DURATION_MS = num("BENCH_DURATION_MS", 5000);
const WARMUP_MS = num("BENCH_WARMUP_MS", 1000);
/** Upper bound on the tokens ready for one level (RSA-2048 signing: ~1,100 tokens/s with 2 workers here). */
const MAX_TOKENS = num("BENCH_MAX_TOKENS", 40_000);
const ACTION_RUNS = num("BENCH_ACTION_RUNS", 10);
/** Tokens ready before a level = fastest rate seen so far x this x (warm-up + duration). */
const TOKEN_MARGIN = 2.5;

interface Level {
  name: string;
  concurrency: number;
  outputs: string[];
  params?: Record<string, unknown>;
}
/** Every output at once: SSH, TLS, kubeconfig, database, X.509-SVID and JWT-SVID. */
const ALL_OUTPUTS: Pick<Level, "outputs" | "params"> = {
  outputs: ["identity", "ssh", "kubernetes", "database", "spiffe-x509", "jwt"],
  params: {
    kubernetes: { cluster: "bench" },
    database: { service: "bench-db", user: "bench" },
    jwt: { audiences: ["vault"] },
  },
};
const LEVELS: Level[] = [
  { name: "c=1", concurrency: 1, outputs: ["identity", "ssh"] },
  { name: "c=16", concurrency: 16, outputs: ["identity", "ssh"] },
  { name: "c=64", concurrency: 64, outputs: ["identity", "ssh"] },
  { name: "all outputs c=16", concurrency: 16, ...ALL_OUTPUTS },
];

/** What `serve --workers auto` starts on this box: threads beside the main one. */
const WORKERS = Math.min(availableParallelism(), 16) - 1;

const TARGET = { joinsPerS: 2000, p99MsAt64: 25, rssMb: 150, mainStepMs: 300 };

// ---------------------------------------------------------------------------------------

interface LevelRow extends LoadResult {
  name: string;
  outputs: string[];
  /** CPU the service process used per completed join (all phases of the level, warm-up included). */
  serviceCpuUsPerJoin: number;
  /** The service's CPU use over the level, in cores (1.0 = one core saturated). */
  serviceCores: number;
  /** CPU the bench process (load generator) used per join. */
  clientCpuUsPerJoin: number;
}

async function runLevel(
  svc: Service,
  level: Level,
  pool: TokenPool,
  body: Omit<JoinBody, "outputs">,
): Promise<LevelRow> {
  const pid = svc.proc.pid!;
  const cpu0 = procCpuMs(pid);
  const me0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const before = pool.remaining;
  const r = await runLoad({
    url: svc.url,
    concurrency: level.concurrency,
    durationMs: DURATION_MS,
    warmupMs: WARMUP_MS,
    tokens: pool,
    body: { ...body, outputs: level.outputs, params: level.params },
  });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const used = before - pool.remaining;
  const svcMs = procCpuMs(pid) - cpu0;
  const me = process.cpuUsage(me0);
  return {
    ...r,
    name: level.name,
    outputs: level.outputs,
    serviceCpuUsPerJoin: (svcMs * 1000) / used,
    serviceCores: svcMs / 1000 / wallS,
    clientCpuUsPerJoin: (me.user + me.system) / used,
  };
}

// ---------------------------------------------------------------------------------------
// Output

const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");
const mark = (ok: boolean) => (ok ? "PASS" : "MISS");

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

function report(r: {
  levels: LevelRow[];
  idleMemory: ProcMemory;
  memory: ProcMemory;
  crypto: CryptoFloor;
  mainStep: StepTiming;
  nodeStartup: StepTiming;
  minted: number;
  mintS: number;
  loadBefore: number;
  loadAfter: number;
  /** The same c=64 level against `serve --workers 0` (everything on one thread). */
  oneThread?: { row: LevelRow; idleMemory: ProcMemory; memory: ProcMemory };
  /** The c=64 level against bench/floor-server.mjs on the same threads. */
  platform?: PlatformFloor;
}): void {
  const peak = Math.max(...r.levels.map((l) => l.joinsPerS));
  const at64 = r.levels.find((l) => l.concurrency === 64);
  const ratio = peak / r.crypto.floorJoinsPerS;
  const out: string[] = [];
  out.push("");
  out.push(
    `idbot serve (embedded SQLite), one process, --workers auto (${WORKERS + 1} HTTP threads: the main one and ${WORKERS} more), POST /v1/join, ${DURATION_MS / 1000} s per level after ${WARMUP_MS / 1000} s warm-up`,
  );
  out.push(
    table(
      [
        "level",
        "joins/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "ok",
        "errors",
        "svc cores",
        "svc µs/join",
        "client µs/join",
      ],
      r.levels.map((l) => [
        `${l.name}${l.ranOutOfTokens ? " (tokens ran out)" : ""}`,
        f0(l.joinsPerS),
        f2(l.p50Ms),
        f2(l.p90Ms),
        f2(l.p99Ms),
        f2(l.maxMs),
        f0(l.completed),
        f0(l.errors),
        f2(l.serviceCores),
        f0(l.serviceCpuUsPerJoin),
        f0(l.clientCpuUsPerJoin),
      ]),
    ),
  );
  for (const l of r.levels) for (const e of l.errorSamples) out.push(`  ${l.name} error: ${e}`);
  out.push(
    "  svc cores: the service's CPU over the level (1.00 = one core busy; below 1 at c=64 = waiting, e.g. on SQLite I/O);",
  );
  out.push("  svc/client µs/join: CPU of the service / of this load generator per join, warm-up included.");
  const one = r.oneThread;
  if (one) {
    out.push("");
    out.push("the same service on one thread (serve --workers 0), c=64, for comparison");
    out.push(
      table(
        ["level", "joins/s", "p50 ms", "p99 ms", "errors", "svc cores", "svc µs/join", "RSS MB (idle)"],
        [
          [
            one.row.name,
            f0(one.row.joinsPerS),
            f2(one.row.p50Ms),
            f2(one.row.p99Ms),
            f0(one.row.errors),
            f2(one.row.serviceCores),
            f0(one.row.serviceCpuUsPerJoin),
            `${f1(one.memory.rssMb)} (${f1(one.idleMemory.rssMb)})`,
          ],
        ],
      ),
    );
  }
  const pf = r.platform;
  if (pf) {
    out.push("");
    out.push(
      `platform floor, c=${pf.concurrency}: node:http on the same ${pf.threads} threads doing only the join's JSON and three crypto operations, a ${f0(pf.responseBytes)}-byte answer; no policy, store, audit or log (bench/floor-server.mjs)`,
    );
    out.push(
      table(
        ["server", "joins/s", "p50 ms", "p90 ms", "p99 ms", "errors", "RSS MB"],
        [
          [
            "platform floor",
            f0(pf.joinsPerS),
            f2(pf.p50Ms),
            f2(pf.p90Ms),
            f2(pf.p99Ms),
            f0(pf.errors),
            f1(pf.rssMb),
          ],
        ],
      ),
    );
    for (const e of pf.errorSamples) out.push(`  platform floor error: ${e}`);
    out.push(
      "  with 64 requests always in flight, latency is 64 / throughput on average, and event-loop batching puts p99 at ~2-2.5x that.",
    );
  }
  out.push("");
  const c = r.crypto;
  const k = c.contended;
  out.push(
    "crypto floor of one join (this process, median µs; 'contended' = other vCPU kept busy, as during the runs)",
  );
  out.push(
    table(
      ["operation", "idle", "contended"],
      [
        [
          "RS256 ID token signature (node:crypto.verify, as the service)",
          f1(c.rs256VerifyUs),
          f1(k.rs256VerifyUs),
        ],
        ["ECDSA P-256 sign, 300 B (X.509 leaf)", f1(c.p256SignUs), f1(k.p256SignUs)],
        ["Ed25519 sign, 300 B (SSH certificate)", f1(c.ed25519SignUs), f1(k.ed25519SignUs)],
        ["sum", f1(c.sumUs), f1(k.sumUs)],
        ["=> floor, joins/s per core", f0(c.floorJoinsPerS), f0(k.floorJoinsPerS)],
        [`measured peak ${f0(peak)} joins/s ÷ floor`, f2(ratio), f2(peak / k.floorJoinsPerS)],
        [
          "  reference: the whole token with jose jwtVerify (WebCrypto, async)",
          f1(c.rs256JoseVerifyUs),
          f1(k.rs256JoseVerifyUs),
        ],
      ],
    ),
  );
  out.push("");
  out.push("targets (informational)");
  out.push(
    table(
      ["figure", "measured", "target", ""],
      [
        ["peak joins/s, one process", f0(peak), `>= ${f0(TARGET.joinsPerS)}`, mark(peak >= TARGET.joinsPerS)],
        [
          "p99 at c=64 (ms)",
          f2(at64?.p99Ms ?? Number.NaN),
          `< ${TARGET.p99MsAt64}`,
          mark((at64?.p99Ms ?? Number.POSITIVE_INFINITY) < TARGET.p99MsAt64),
        ],
        [
          `service RSS after runs (MB; idle ${f1(r.idleMemory.rssMb)}, peak HWM ${f1(r.memory.hwmMb)})`,
          f1(r.memory.rssMb),
          `< ${TARGET.rssMb}`,
          mark(r.memory.rssMb < TARGET.rssMb),
        ],
        [
          `Action main step, median of ${r.mainStep.runs} (ms; min ${r.mainStep.minMs}, max ${r.mainStep.maxMs})`,
          f0(r.mainStep.medianMs),
          `< ${TARGET.mainStepMs}`,
          mark(r.mainStep.medianMs < TARGET.mainStepMs),
        ],
        [
          `  for reference: node -e 0, median of ${r.nodeStartup.runs} (ms)`,
          f0(r.nodeStartup.medianMs),
          "",
          "",
        ],
      ],
    ),
  );
  out.push(
    `(${cpus().length} CPUs; 1-min load average ${f2(r.loadBefore)} before, ${f2(r.loadAfter)} after: anything else running on the box skews every figure)`,
  );
  out.push(`(${f0(r.minted)} ID tokens pre-minted in ${f1(r.mintS)} s, RS256, 2 worker threads)`);
  out.push("");
  console.log(out.join("\n"));

  const json = {
    levels: r.levels.map((l) => ({
      name: l.name,
      concurrency: l.concurrency,
      outputs: l.outputs,
      joins_per_s: Math.round(l.joinsPerS),
      p50_ms: +l.p50Ms.toFixed(3),
      p90_ms: +l.p90Ms.toFixed(3),
      p99_ms: +l.p99Ms.toFixed(3),
      max_ms: +l.maxMs.toFixed(3),
      completed: l.completed,
      errors: l.errors,
      elapsed_s: +l.elapsedS.toFixed(3),
      ran_out_of_tokens: l.ranOutOfTokens,
      service_cores: +l.serviceCores.toFixed(3),
      service_cpu_us_per_join: Math.round(l.serviceCpuUsPerJoin),
      client_cpu_us_per_join: Math.round(l.clientCpuUsPerJoin),
    })),
    workers: WORKERS,
    platform_floor: r.platform
      ? {
          threads: r.platform.threads,
          joins_per_s: Math.round(r.platform.joinsPerS),
          p50_ms: +r.platform.p50Ms.toFixed(3),
          p99_ms: +r.platform.p99Ms.toFixed(3),
          errors: r.platform.errors,
          rss_mb: +r.platform.rssMb.toFixed(1),
          response_bytes: r.platform.responseBytes,
        }
      : null,
    one_thread: r.oneThread
      ? {
          joins_per_s: Math.round(r.oneThread.row.joinsPerS),
          p50_ms: +r.oneThread.row.p50Ms.toFixed(3),
          p99_ms: +r.oneThread.row.p99Ms.toFixed(3),
          errors: r.oneThread.row.errors,
          service_cpu_us_per_join: Math.round(r.oneThread.row.serviceCpuUsPerJoin),
          rss_mb: +r.oneThread.memory.rssMb.toFixed(1),
          idle_rss_mb: +r.oneThread.idleMemory.rssMb.toFixed(1),
        }
      : null,
    memory: {
      idle_rss_mb: +r.idleMemory.rssMb.toFixed(1),
      rss_mb: +r.memory.rssMb.toFixed(1),
      hwm_mb: +r.memory.hwmMb.toFixed(1),
    },
    crypto: {
      rs256_verify_us: +r.crypto.rs256VerifyUs.toFixed(1),
      p256_sign_us: +r.crypto.p256SignUs.toFixed(1),
      ed25519_sign_us: +r.crypto.ed25519SignUs.toFixed(1),
      sum_us: +r.crypto.sumUs.toFixed(1),
      floor_joins_per_s: Math.round(r.crypto.floorJoinsPerS),
      peak_over_floor: +ratio.toFixed(3),
      rs256_jose_verify_us: +r.crypto.rs256JoseVerifyUs.toFixed(1),
      contended: {
        rs256_verify_us: +r.crypto.contended.rs256VerifyUs.toFixed(1),
        p256_sign_us: +r.crypto.contended.p256SignUs.toFixed(1),
        ed25519_sign_us: +r.crypto.contended.ed25519SignUs.toFixed(1),
        sum_us: +r.crypto.contended.sumUs.toFixed(1),
        floor_joins_per_s: Math.round(r.crypto.contended.floorJoinsPerS),
        peak_over_floor: +(peak / r.crypto.contended.floorJoinsPerS).toFixed(3),
        rs256_jose_verify_us: +r.crypto.contended.rs256JoseVerifyUs.toFixed(1),
      },
    },
    main_step_ms: {
      median: r.mainStep.medianMs,
      min: r.mainStep.minMs,
      max: r.mainStep.maxMs,
      runs: r.mainStep.runs,
    },
    node_startup_ms: { median: r.nodeStartup.medianMs, min: r.nodeStartup.minMs, max: r.nodeStartup.maxMs },
    box: {
      cpus: cpus().length,
      loadavg_before: +r.loadBefore.toFixed(2),
      loadavg_after: +r.loadAfter.toFixed(2),
    },
    targets: {
      joins_per_s: { target: TARGET.joinsPerS, measured: Math.round(peak), pass: peak >= TARGET.joinsPerS },
      p99_ms_at_64: {
        target: TARGET.p99MsAt64,
        measured: at64 ? +at64.p99Ms.toFixed(3) : null,
        pass: (at64?.p99Ms ?? Infinity) < TARGET.p99MsAt64,
      },
      rss_mb: {
        target: TARGET.rssMb,
        measured: +r.memory.rssMb.toFixed(1),
        pass: r.memory.rssMb < TARGET.rssMb,
      },
      main_step_ms: {
        target: TARGET.mainStepMs,
        measured: r.mainStep.medianMs,
        pass: r.mainStep.medianMs < TARGET.mainStepMs,
      },
    },
  };
  console.log(`BENCH_JSON ${JSON.stringify(json)}`);
}

// ---------------------------------------------------------------------------------------

/** The size of one real join answer (identity and ssh), for the platform floor to match. */
async function joinAnswerBytes(url: string, token: string, body: Omit<JoinBody, "outputs">): Promise<number> {
  const res = await fetch(`${url}/v1/join`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      token: body.token,
      join_method: "github",
      id_token: token,
      public_keys: { ssh: body.sshPublicKey, tls: body.tlsPublicPem },
      outputs: ["identity", "ssh"],
    }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`a join for the answer size failed: ${res.status} ${text}`);
  return Buffer.byteLength(text);
}

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const work = await mkdtemp(join(tmpdir(), "idbot-bench-"));
  let github: FakeGitHub | undefined;
  let svc: Service | undefined;
  let serviceTail = "";
  try {
    log("setting up: test CA, fake GitHub issuer, ID token issuer key");
    const ca = await createTestTlsCA(join(work, "ca"));
    github = await startFakeGitHub({ tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile });
    const issuer = createIssuer();

    svc = await startService({
      resources: benchResources(issuer, github.host),
      env: { NODE_EXTRA_CA_CERTS: ca.caFile },
      // Every join comes from 127.0.0.1 with one join token: the per-address and per-token
      // rate limits would measure themselves, not the join path.
      args: BENCH_SERVE_ARGS,
    });
    // The helper keeps the whole stderr (three JSON log lines per join); keep a bounded tail instead.
    svc.proc.stderr!.removeAllListeners("data");
    svc.proc.stderr!.on("data", (d: Buffer) => {
      serviceTail = (serviceTail + d.toString("utf8")).slice(-8000);
    });
    const pid = svc.proc.pid!;
    log(`service ${svc.url} (pid ${pid})`);

    const keys = clientPublicKeys();
    const body = { token: "bench", sshPublicKey: keys.ssh, tlsPublicPem: keys.tls };
    const idleMemory = procMemory(pid);

    // Tokens are minted outside the timed runs: a short c=16 calibration run (which also
    // warms the service up) gives the first rate estimate, each level then tops the pool up
    // for the fastest rate seen so far, with a margin. A level that still runs dry stops
    // early and is flagged.
    let minted = 0;
    let mintS = 0;
    const topUp = async (count: number) => {
      const want = Math.min(MAX_TOKENS, count) - pool.remaining;
      if (want <= 0) return;
      const t0 = process.hrtime.bigint();
      pool.add(await mintTokens(issuer, { count: want, audience: svc!.url }));
      mintS += Number(process.hrtime.bigint() - t0) / 1e9;
      minted += want;
    };
    const pool = new TokenPool([]);
    await topUp(3000);
    const calib = await runLoad({
      url: svc.url,
      concurrency: 16,
      durationMs: 1000,
      warmupMs: 500,
      tokens: pool,
      body: { ...body, outputs: ["identity", "ssh"] },
    });
    if (calib.completed === 0)
      throw new Error(`calibration run failed: ${calib.errorSamples.join("; ")}\n${serviceTail}`);
    log(`calibration: ${Math.round(calib.joinsPerS)} joins/s at c=16`);
    const responseBytes = await joinAnswerBytes(svc.url, pool.take()!, body);
    // After the calibration: the service's threads are started and warm, so they do not
    // compete with the measurement (the floor runs in this process, on a quiet box).
    log("crypto floor");
    const crypto = await measureCryptoFloor(issuer, svc.url);
    let rate = calib.joinsPerS;
    const perLevelS = (DURATION_MS + WARMUP_MS) / 1000;

    const levels: LevelRow[] = [];
    for (const level of LEVELS) {
      await topUp(Math.ceil(rate * TOKEN_MARGIN * perLevelS));
      log(`load ${level.name} (${pool.remaining} tokens ready)`);
      const row = await runLevel(svc, level, pool, body);
      levels.push(row);
      if (Number.isFinite(row.joinsPerS)) rate = Math.max(rate, row.joinsPerS);
    }
    const memory = procMemory(pid);

    // Let the service's threads finish what the load left them (JIT, GC) before timing
    // single processes on the same cores.
    await new Promise((r) => setTimeout(r, 3000));
    log(`Action main step x${ACTION_RUNS}`);
    const mainStep = await timeMainStep({
      serviceUrl: svc.url,
      tokenName: "bench-action",
      github,
      caFile: ca.caFile,
      workDir: join(work, "action"),
      runs: ACTION_RUNS,
    });
    const nodeStartup = await timeNodeStartup(ACTION_RUNS);

    // The same c=64 level on one thread (BENCH_ONE_THREAD=0 skips): what the threads buy,
    // and what they cost in memory.
    let oneThread: Parameters<typeof report>[0]["oneThread"];
    if (process.env.BENCH_ONE_THREAD !== "0") {
      await svc.stop();
      await rm(dirname(svc.dataDir), { recursive: true, force: true });
      svc = await startService({
        resources: benchResources(issuer, github.host),
        env: { NODE_EXTRA_CA_CERTS: ca.caFile },
        args: [...BENCH_SERVE_ARGS, "--workers", "0"],
      });
      svc.proc.stderr!.removeAllListeners("data");
      svc.proc.stderr!.on("data", () => {});
      log(`one-thread service ${svc.url} (pid ${svc.proc.pid})`);
      const idle = procMemory(svc.proc.pid!);
      // Tokens name their audience: the pool left over was minted for the first service.
      pool.clear();
      await topUp(Math.ceil(rate * 0.8 * TOKEN_MARGIN * perLevelS));
      const level = LEVELS.find((l) => l.concurrency === 64)!;
      log(`load ${level.name}, one thread (${pool.remaining} tokens ready)`);
      const row = await runLevel(svc, level, pool, body);
      oneThread = { row, idleMemory: idle, memory: procMemory(svc.proc.pid!) };
    }

    // The platform floor at c=64 on the same threads (BENCH_PLATFORM_FLOOR=0 skips). It
    // checks no replay, so a few hundred tokens go round instead of tens of thousands.
    let platform: PlatformFloor | undefined;
    if (process.env.BENCH_PLATFORM_FLOOR !== "0") {
      await svc.stop();
      await rm(dirname(svc.dataDir), { recursive: true, force: true });
      svc = undefined;
      const few = await mintTokens(issuer, { count: 500, audience: "https://floor.invalid" });
      const cycled = new TokenPool(Array.from({ length: MAX_TOKENS * 4 }, (_, i) => few[i % few.length]!));
      log(`platform floor, c=64, ${WORKERS + 1} threads`);
      platform = await measurePlatformFloor({
        issuer,
        workers: WORKERS,
        responseBytes,
        concurrency: 64,
        durationMs: DURATION_MS,
        warmupMs: WARMUP_MS,
        tokens: cycled,
        body: { ...body, outputs: ["identity", "ssh"] },
      });
    }

    report({
      levels,
      idleMemory,
      memory,
      crypto,
      mainStep,
      nodeStartup,
      minted,
      mintS,
      loadBefore,
      loadAfter: loadavg()[0]!,
      oneThread,
      platform,
    });
  } catch (e) {
    if (serviceTail) log(`service stderr (tail):\n${serviceTail}`);
    throw e;
  } finally {
    if (svc) {
      await svc.stop();
      await rm(dirname(svc.dataDir), { recursive: true, force: true });
    }
    await github?.close();
    await rm(work, { recursive: true, force: true });
  }
}

async function all(): Promise<void> {
  // Every temporary directory of the run (services, replicas, the Action's runner) goes
  // under one, removed at the end.
  const root = mkdtempSync(join(tmpdir(), "idbot-bench-"));
  process.env.TMPDIR = root;
  try {
    await main();
    // Two replicas on PostgreSQL against one SQLite process, in the same run (BENCH_REPLICAS=0 skips).
    if (process.env.BENCH_REPLICAS !== "0") {
      await runReplicaBench(); // prints its table and BENCH_REPLICAS_JSON
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

all().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
