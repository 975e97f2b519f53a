// The platform floor (bench/floor-server.mjs): the same load, at the same concurrency and on
// the same number of threads, against a node:http server that does only the join's parsing
// and three crypto operations. What it reaches is the most any Node service doing a join
// on this box can reach; what it misses, no change inside idbot can meet.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type JoinBody, type LoadResult, runLoad } from "./load.ts";
import { procMemory } from "./proc.ts";
import type { Issuer, TokenPool } from "./tokens.ts";

export interface PlatformFloor extends LoadResult {
  threads: number;
  responseBytes: number;
  rssMb: number;
}

const SERVER = fileURLToPath(new URL("./floor-server.mjs", import.meta.url));

export async function measurePlatformFloor(o: {
  issuer: Issuer;
  /** Threads beside the main one, as `serve --workers`. */
  workers: number;
  /** The size of a real join answer, so the floor writes as many bytes. */
  responseBytes: number;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  tokens: TokenPool;
  body: JoinBody;
}): Promise<PlatformFloor> {
  const proc = spawn(process.execPath, [SERVER], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      FLOOR_JWKS: o.issuer.jwksJson,
      FLOOR_WORKERS: String(o.workers),
      FLOOR_RESPONSE_BYTES: String(o.responseBytes),
    },
  });
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString("utf8")).slice(-4000);
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      proc.stdout!.on("data", (d: Buffer) => {
        out += d.toString("utf8");
        const m = /listening on (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      proc.once("exit", (code) => reject(new Error(`the floor server exited (${code}): ${stderr}`)));
    });
    const r = await runLoad({
      url,
      concurrency: o.concurrency,
      durationMs: o.durationMs,
      warmupMs: o.warmupMs,
      tokens: o.tokens,
      body: o.body,
    });
    const { rssMb } = procMemory(proc.pid!);
    return { ...r, threads: 1 + o.workers, responseBytes: o.responseBytes, rssMb };
  } finally {
    proc.kill();
    await new Promise((r) => (proc.exitCode === null ? proc.once("exit", r) : r(undefined)));
  }
}
