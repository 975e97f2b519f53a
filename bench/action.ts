// Wall time of the Action's main step (dist/main.js) run the way the runner runs it:
// fetch the ID token from the fake GitHub issuer (HTTPS, test CA), generate keys, join the
// running service over loopback, write the identity files. Compared with a bare `node -e 0`.
import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { FakeGitHub } from "../test/helpers/fake-github.ts";
import { runActionStep } from "../test/helpers/runner.ts";
import { MAIN } from "../test/helpers/service.ts";

export interface StepTiming {
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
}

function summarize(ms: number[]): StepTiming {
  const s = [...ms].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const medianMs = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { runs: s.length, medianMs, minMs: s[0]!, maxMs: s[s.length - 1]! };
}

export async function timeMainStep(opts: {
  serviceUrl: string;
  tokenName: string;
  github: FakeGitHub;
  caFile: string;
  workDir: string;
  runs: number;
}): Promise<StepTiming> {
  const runnerTemp = join(opts.workDir, "runner-temp");
  await mkdir(runnerTemp, { recursive: true });
  const once = async (i: number) => {
    const run = await runActionStep(MAIN, {
      inputs: { server: opts.serviceUrl, token: opts.tokenName },
      env: {
        NODE_EXTRA_CA_CERTS: opts.caFile,
        ACTIONS_ID_TOKEN_REQUEST_URL: opts.github.idTokenRequestUrl,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN: opts.github.idTokenRequestToken,
      },
      runnerTemp,
      workDir: join(opts.workDir, `step-${i}`),
      timeoutMs: 30_000,
    });
    if (run.code !== 0) {
      throw new Error(
        `main step failed (exit ${run.code}):\n${run.stdout.slice(-3000)}\n${run.stderr.slice(-3000)}`,
      );
    }
    return run.durationMs;
  };
  await once(-1); // warm-up: page cache, the service's first JWKS fetch from the issuer
  const ms: number[] = [];
  for (let i = 0; i < opts.runs; i++) ms.push(await once(i));
  return summarize(ms);
}

/** `node -e 0`, spawned and awaited the same way: the floor any Node step pays. */
export async function timeNodeStartup(runs: number): Promise<StepTiming> {
  const once = () =>
    new Promise<number>((resolve, reject) => {
      const started = Date.now();
      const child = spawn(process.execPath, ["-e", "0"], { stdio: ["ignore", "pipe", "pipe"] });
      child.once("error", reject);
      child.once("close", (code) => {
        if (code !== 0) reject(new Error(`node -e 0 exited with ${code}`));
        else resolve(Date.now() - started);
      });
    });
  await once();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) ms.push(await once());
  return summarize(ms);
}
