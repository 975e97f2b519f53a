// Closed-loop load generator: `concurrency` virtual clients, each sending its next join as
// soon as the previous one answered, over keep-alive node:http sockets (lighter than fetch).
// Every request carries a fresh pre-minted ID token; the run stops at its deadline or when
// the token pool runs dry, whichever comes first.
import { Agent, request } from "node:http";
import type { TokenPool } from "./tokens.ts";

export interface JoinBody {
  token: string;
  sshPublicKey: string;
  tlsPublicPem: string;
  outputs: string[];
  /** Per-output parameters (kubernetes, database, jwt, spiffe) sent with every join. */
  params?: Record<string, unknown>;
}

export interface LoadOptions {
  /** Service base URL, http://127.0.0.1:PORT */
  url: string;
  concurrency: number;
  /** Timed part. */
  durationMs: number;
  /** Untimed part at the same concurrency first (JIT, sockets, SQLite pages). */
  warmupMs: number;
  tokens: TokenPool;
  body: JoinBody;
  /** Per-request timeout; a timed-out request counts as an error. */
  timeoutMs?: number;
}

export interface LoadResult {
  concurrency: number;
  completed: number;
  errors: number;
  /** First few distinct error descriptions. */
  errorSamples: string[];
  elapsedS: number;
  joinsPerS: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** True when the token pool ran dry before the deadline (the run was shorter). */
  ranOutOfTokens: boolean;
  /** Every successful join's latency, sorted (to merge runs that went on side by side). */
  latenciesMs: Float64Array;
}

interface Outcome {
  ok: boolean;
  error?: string;
}

/** Splits a join body around the id_token so each request is one string concatenation. */
function bodyTemplate(b: JoinBody): [string, string] {
  const marker = "\u0000ID_TOKEN\u0000";
  const json = JSON.stringify({
    token: b.token,
    join_method: "github",
    id_token: marker,
    public_keys: { ssh: b.sshPublicKey, tls: b.tlsPublicPem },
    outputs: b.outputs,
    ...b.params,
  });
  const quoted = JSON.stringify(marker).slice(1, -1);
  const i = json.indexOf(quoted);
  return [json.slice(0, i), json.slice(i + quoted.length)];
}

function sendJoin(agent: Agent, url: URL, payload: string, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Outcome) => {
      if (!done) {
        done = true;
        resolve(o);
      }
    };
    const req = request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: "POST",
        path: "/v1/join",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
        timeout: timeoutMs,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status === 200) {
          res.on("data", () => {});
          res.on("end", () => finish({ ok: true }));
        } else {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            if (text.length < 400) text += d;
          });
          res.on("end", () => finish({ ok: false, error: `HTTP ${status}: ${text.slice(0, 300)}` }));
        }
        res.on("error", (e) => finish({ ok: false, error: `response: ${e.message}` }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", (e) => finish({ ok: false, error: `request: ${e.message}` }));
    req.end(payload);
  });
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const url = new URL(o.url);
  const agent = new Agent({ keepAlive: true, maxSockets: o.concurrency, maxFreeSockets: o.concurrency });
  const [pre, post] = bodyTemplate(o.body);
  const timeoutMs = o.timeoutMs ?? 10_000;

  const latencies: number[] = [];
  const errorSamples = new Set<string>();
  let errors = 0;
  let ranOut = false;

  const phase = async (ms: number, record: boolean): Promise<number> => {
    const started = process.hrtime.bigint();
    const deadline = started + BigInt(Math.round(ms * 1e6));
    const client = async () => {
      for (;;) {
        if (process.hrtime.bigint() >= deadline) return;
        const token = o.tokens.take();
        if (token === undefined) {
          ranOut = true;
          return;
        }
        const t0 = process.hrtime.bigint();
        const r = await sendJoin(agent, url, pre + token + post, timeoutMs);
        const dt = Number(process.hrtime.bigint() - t0) / 1e6;
        if (!record) continue;
        if (r.ok) latencies.push(dt);
        else {
          errors++;
          if (errorSamples.size < 5) errorSamples.add(r.error ?? "?");
        }
      }
    };
    await Promise.all(Array.from({ length: o.concurrency }, client));
    return Number(process.hrtime.bigint() - started) / 1e9;
  };

  try {
    if (o.warmupMs > 0) await phase(o.warmupMs, false);
    ranOut = false;
    const elapsedS = await phase(o.durationMs, true);
    const sorted = Float64Array.from(latencies).sort();
    return {
      concurrency: o.concurrency,
      completed: latencies.length,
      errors,
      errorSamples: [...errorSamples],
      elapsedS,
      joinsPerS: latencies.length / elapsedS,
      p50Ms: percentile(sorted, 50),
      p90Ms: percentile(sorted, 90),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
      ranOutOfTokens: ranOut,
      latenciesMs: sorted,
    };
  } finally {
    agent.destroy();
  }
}
