// `node --import tsx bench/profile.ts [concurrency] [seconds]`: runs `idbot serve` under
// --cpu-prof, drives joins at one concurrency, and prints the top self-time and inclusive
// functions of the service (µs per join). A diagnostic for when the bench misses its targets.
// BENCH_IDBOT=/path/to/idbot.js profiles another build (e.g. a patched bundle outside the
// repo; give it NODE_PATH=$PWD/node_modules so it finds better-sqlite3).

import { spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IDBOT } from "../test/helpers/service.ts";
import { runLoad } from "./load.ts";
import { BENCH_SERVE_ARGS, benchResources, clientPublicKeys } from "./setup.ts";
import { createIssuer, mintTokens, TokenPool } from "./tokens.ts";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(cf: CallFrame): string {
  const file = cf.url.replace(/^file:\/\//, "").replace(/^.*\/(node_modules\/|dist\/|bench\/)/, "$1");
  return `${cf.functionName || "(anonymous)"} ${file ? `${file}:${cf.lineNumber + 1}` : ""}`.trim();
}

export function analyse(
  profile: CpuProfile,
  joins: number,
  top = Number(process.env.PROFILE_TOP ?? 25),
): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const callers = new Map<string, Map<string, number>>();
  const incl = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    let id: number | undefined = profile.samples[i]!;
    const node = byId.get(id)!;
    const selfKey = label(node.callFrame);
    self.set(selfKey, (self.get(selfKey) ?? 0) + dt);
    // The first caller outside node: internals says which of our functions paid for it.
    let up = parent.get(id);
    while (up !== undefined && byId.get(up)!.callFrame.url.startsWith("node:")) up = parent.get(up);
    const by = up === undefined ? "-" : label(byId.get(up)!.callFrame);
    const m = callers.get(selfKey) ?? new Map<string, number>();
    m.set(by, (m.get(by) ?? 0) + dt);
    callers.set(selfKey, m);
    const seen = new Set<string>();
    while (id !== undefined) {
      const key = label(byId.get(id)!.callFrame);
      if (!seen.has(key)) {
        seen.add(key);
        incl.set(key, (incl.get(key) ?? 0) + dt);
      }
      id = parent.get(id);
    }
  }
  const row = (k: string, us: number) =>
    `${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / joins).toFixed(1).padStart(7)} µs/join  ${k}`;
  const fmt = (m: Map<string, number>, withCallers = false) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => {
        if (!withCallers) return row(k, us);
        const by = [...(callers.get(k) ?? new Map<string, number>()).entries()]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 2)
          .map(([c, cus]) => `\n${" ".repeat(24)}<- ${(cus / joins).toFixed(1)} µs ${c}`)
          .join("");
        return row(k, us) + by;
      })
      .join("\n");
  return `profile: ${(total / 1e6).toFixed(2)} s sampled, ${joins} joins, ${(total / joins).toFixed(0)} µs/join\n\ntop self time (with the first non-node: caller)\n${fmt(self, true)}\n\ntop inclusive time\n${fmt(incl)}`;
}

/** Like test/helpers/service.ts startService, with --cpu-prof (not allowed in NODE_OPTIONS). */
async function startProfiledService(work: string, resources: string, listen: string, extraArgs: string[]) {
  const resourcesFile = join(work, "resources.yaml");
  writeFileSync(resourcesFile, resources);
  const proc = spawn(
    process.execPath,
    [
      "--cpu-prof",
      `--cpu-prof-dir=${work}`,
      process.env.BENCH_IDBOT || IDBOT,
      "serve",
      "--data-dir",
      join(work, "data"),
      "--listen",
      listen,
      "--resources",
      resourcesFile,
      ...BENCH_SERVE_ARGS,
      ...extraArgs,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let tail = "";
  proc.stderr.on("data", (d: Buffer) => {
    tail = (tail + d.toString("utf8")).slice(-4000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`idbot serve did not start in 15 s:\n${tail}`)), 15_000);
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString("utf8");
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`idbot serve exited with ${code}:\n${tail}`));
    });
  });
  return {
    url,
    stop: () =>
      new Promise<number | null>((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once("exit", (code) => resolve(code));
        proc.kill("SIGTERM");
      }),
  };
}

/** A port that was free a moment ago (the service binds it after the tokens are minted). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function main(): Promise<void> {
  const concurrency = Number(process.argv[2] ?? 16);
  const seconds = Number(process.argv[3] ?? 5);
  const extraArgs = process.argv.slice(4);
  const work = await mkdtemp(join(tmpdir(), "idbot-prof-"));
  let svc: Awaited<ReturnType<typeof startProfiledService>> | undefined;
  try {
    const issuer = createIssuer();
    // Mint first (the audience is fixed up-front), so the profile is mostly the load.
    const port = await freePort();
    const tokens = await mintTokens(issuer, {
      count: Math.min(40_000, 1500 * (seconds + 1)),
      audience: `http://127.0.0.1:${port}`,
    });
    const pool = new TokenPool(tokens);
    svc = await startProfiledService(work, benchResources(issuer), `127.0.0.1:${port}`, extraArgs);
    const keys = clientPublicKeys();
    const r = await runLoad({
      url: svc.url,
      concurrency,
      durationMs: seconds * 1000,
      warmupMs: 1000,
      tokens: pool,
      body: { token: "bench", sshPublicKey: keys.ssh, tlsPublicPem: keys.tls, outputs: ["identity", "ssh"] },
    });
    console.log(
      `c=${concurrency}: ${Math.round(r.joinsPerS)} joins/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, errors ${r.errors}`,
    );
    await svc.stop(); // --cpu-prof writes the profile at exit
    // One profile per thread (--workers N: the main thread's and each HTTP worker's).
    const files = readdirSync(work).filter((f) => f.endsWith(".cpuprofile"));
    if (files.length === 0) throw new Error("the service wrote no .cpuprofile");
    // The profile covers start-up and warm-up too; per-join figures divide by every join served.
    const served = tokens.length - pool.remaining;
    for (const file of files) {
      const profile = JSON.parse(readFileSync(join(work, file), "utf8")) as CpuProfile;
      if (files.length > 1) console.log(`\n=== ${file}`);
      console.log(analyse(profile, served));
    }
  } finally {
    await svc?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // `bench/profile.ts analyse FILE.cpuprofile JOINS`: the same tables for any profile (e.g. the
  // load generator's own, from `node --cpu-prof --import tsx bench/profile.ts`).
  const run =
    process.argv[2] === "analyse"
      ? async () =>
          console.log(
            analyse(
              JSON.parse(readFileSync(process.argv[3]!, "utf8")) as CpuProfile,
              Number(process.argv[4] ?? 1),
            ),
          )
      : main;
  run().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
