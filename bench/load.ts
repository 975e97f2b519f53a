// Closed-loop load generator: `concurrency` virtual clients, each on its own keep-alive TCP
// connection, sending its next join as soon as the previous one answered. Every request
// carries a fresh pre-minted ID token; the run stops at its deadline or when the token pool
// runs dry, whichever comes first.
//
// The client speaks HTTP/1.1 over node:net itself, like wrk or h2load, instead of going
// through node:http: it shares this box's two cores with the service it measures, and
// node:http's client cost about 200 µs of CPU per join here (~25 µs this way), a fifth of
// what the service itself spends. Responses are read just far enough to be counted: status
// line, Content-Length, body.
import { connect, type Socket } from "node:net";
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

/** One keep-alive connection; one request in flight at a time. */
class Connection {
  #socket: Socket | undefined;
  #connecting: Promise<Socket> | undefined;
  #buf: Buffer | undefined;
  #pending: ((o: Outcome) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly timeoutMs: number,
  ) {}

  async send(request: string): Promise<Outcome> {
    let socket: Socket;
    try {
      socket = this.#socket ?? (await this.#connect());
    } catch (e) {
      return { ok: false, error: `connect: ${(e as Error).message}` };
    }
    return new Promise<Outcome>((resolve) => {
      this.#pending = resolve;
      this.#timer = setTimeout(() => this.#fail(`timeout after ${this.timeoutMs} ms`), this.timeoutMs);
      socket.write(request);
    });
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  #connect(): Promise<Socket> {
    this.#connecting ??= new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: this.host, port: this.port, noDelay: true });
      // A socket that is gone fails the request in flight, if any; the next one reconnects.
      const gone = (error: string) => {
        if (this.#connecting) {
          this.#connecting = undefined;
          reject(new Error(error));
        }
        if (this.#socket === s) this.#fail(error);
      };
      s.once("connect", () => {
        this.#socket = s;
        this.#connecting = undefined;
        resolve(s);
      });
      s.on("data", (d: Buffer) => this.#onData(d));
      s.on("error", (e) => gone(`socket: ${e.message}`));
      s.on("close", () => gone("the service closed the connection"));
    });
    return this.#connecting;
  }

  #onData(d: Buffer): void {
    const buf = this.#buf ? Buffer.concat([this.#buf, d]) : d;
    const headEnd = buf.indexOf("\r\n\r\n");
    if (headEnd < 0) {
      this.#buf = buf;
      return;
    }
    const head = buf.toString("latin1", 0, headEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) {
      this.#fail(`response without Content-Length: ${head.slice(0, 200)}`);
      return;
    }
    const total = headEnd + 4 + Number(length[1]);
    if (buf.length < total) {
      this.#buf = buf;
      return;
    }
    this.#buf = buf.length > total ? buf.subarray(total) : undefined;
    // The service sheds a connection this way (serve --workers evens out its threads'
    // connections): the next request goes on a new one, as any HTTP/1.1 client does.
    if (/\r\nconnection: *close/i.test(head)) this.close();
    const status = Number(head.slice(9, 12));
    this.#settle(
      status === 200
        ? { ok: true }
        : {
            ok: false,
            error: `HTTP ${status}: ${buf.toString("utf8", headEnd + 4, Math.min(total, headEnd + 304))}`,
          },
    );
  }

  #fail(error: string): void {
    this.#buf = undefined;
    this.close();
    this.#settle({ ok: false, error });
  }

  #settle(o: Outcome): void {
    clearTimeout(this.#timer);
    const resolve = this.#pending;
    this.#pending = undefined;
    resolve?.(o);
  }
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const url = new URL(o.url);
  const [pre, post] = bodyTemplate(o.body);
  const connections = Array.from(
    { length: o.concurrency },
    () => new Connection(url.hostname, Number(url.port), o.timeoutMs ?? 10_000),
  );
  const head = `POST /v1/join HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: `;

  const latencies: number[] = [];
  const errorSamples = new Set<string>();
  let errors = 0;
  let ranOut = false;

  const phase = async (ms: number, record: boolean): Promise<number> => {
    const started = process.hrtime.bigint();
    const deadline = started + BigInt(Math.round(ms * 1e6));
    const client = async (conn: Connection) => {
      for (;;) {
        if (process.hrtime.bigint() >= deadline) return;
        const token = o.tokens.take();
        if (token === undefined) {
          ranOut = true;
          return;
        }
        const t0 = process.hrtime.bigint();
        const body = pre + token + post;
        const r = await conn.send(`${head}${Buffer.byteLength(body)}\r\n\r\n${body}`);
        const dt = Number(process.hrtime.bigint() - t0) / 1e6;
        if (!record) continue;
        if (r.ok) latencies.push(dt);
        else {
          errors++;
          if (errorSamples.size < 5) errorSamples.add(r.error ?? "?");
        }
      }
    };
    await Promise.all(connections.map(client));
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
    for (const c of connections) c.close();
  }
}
