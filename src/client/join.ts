// The join request with retries: network errors, 408, 429 and 5xx are retried with
// full-jitter backoff and a fresh ID token per attempt, each attempt bounded by its own
// timeout and all of them by an overall deadline. A denial is never retried.
import {
  ErrorBodySchema,
  type JoinRequest,
  type JoinResponse,
  JoinResponseSchema,
} from "../protocol/join.ts";
import { type HttpResponse, type Transport, TransportError } from "./transport.ts";

export type JoinFailureKind = "denied" | "bad_input" | "unreachable" | "protocol";

export class JoinFailure extends Error {
  override name = "JoinFailure";
  constructor(
    readonly kind: JoinFailureKind,
    message: string,
    readonly hint?: string,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  attemptTimeoutMs: number;
  deadlineMs: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface JoinCall {
  /** Replicas of the service: each retry goes to the next one (failover). */
  servers: string[];
  /** "/v1/join" (default) or "/v1/renew". */
  path?: string;
  /** The body without its proof. */
  request: Omit<JoinRequest, "id_token" | "bound_keypair" | "token" | "join_method"> &
    Record<string, unknown>;
  /** The proof of this attempt, merged into the body: a fresh ID token each time (GitLab's
   *  source reuses its one), a freshly answered challenge, a fresh renewal signature. */
  prove: (attempt: number) => Promise<Record<string, unknown>>;
  policy: RetryPolicy;
  transport: Transport;
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

function retryAfterMs(res: HttpResponse): number | undefined {
  const h = res.headers["retry-after"];
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

function errorOf(res: HttpResponse): { code: string; message: string; hint?: string } {
  try {
    const parsed = ErrorBodySchema.safeParse(JSON.parse(res.body));
    if (parsed.success) return parsed.data.error;
  } catch {
    // not JSON: a proxy or load balancer answered
  }
  return {
    code: `http_${res.status}`,
    message: `the service answered HTTP ${res.status}${res.body ? `: ${res.body.slice(0, 200)}` : ""}`,
  };
}

export async function joinWithRetries(call: JoinCall): Promise<JoinResponse> {
  const sleep = call.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const random = call.random ?? Math.random;
  const now = call.now ?? Date.now;
  const { retries, attemptTimeoutMs, deadlineMs } = call.policy;
  const base = call.policy.baseDelayMs ?? 500;
  const cap = call.policy.maxDelayMs ?? 10_000;
  const urlOf = (attempt: number) =>
    `${call.servers[attempt % call.servers.length]!.replace(/\/+$/, "")}${call.path ?? "/v1/join"}`;
  const deadline = now() + deadlineMs;
  let lastReason = "";

  for (let attempt = 0; ; attempt++) {
    const remaining = deadline - now();
    if (remaining <= 0) {
      throw new JoinFailure(
        "unreachable",
        `gave up after ${attempt} attempt${attempt === 1 ? "" : "s"}: the ${deadlineMs} ms deadline passed (last error: ${lastReason})`,
        'Check that the service is reachable from this runner; raise the "deadline" input if it is slow to answer.',
      );
    }
    let retryDelay: number | undefined;
    try {
      const proof = await call.prove(attempt);
      const res = await call.transport.postJson(
        urlOf(attempt),
        { ...call.request, ...proof },
        { timeoutMs: Math.min(attemptTimeoutMs, remaining) },
      );
      if (res.status === 200) {
        let value: unknown;
        try {
          value = JSON.parse(res.body);
        } catch {
          throw new JoinFailure(
            "protocol",
            "the service's answer is not JSON; is the server URL an idbot service?",
          );
        }
        const parsed = JoinResponseSchema.safeParse(value);
        if (!parsed.success)
          throw new JoinFailure("protocol", "the service's answer does not match the idbot v1 protocol");
        return parsed.data;
      }
      const err = errorOf(res);
      if (!RETRYABLE_STATUS.has(res.status)) {
        throw new JoinFailure(
          res.status === 403 || res.status === 404
            ? "denied"
            : res.status === 400 || res.status === 413
              ? "bad_input"
              : "protocol",
          err.message,
          err.hint,
          res.status,
          err.code,
        );
      }
      lastReason = `HTTP ${res.status} ${err.message}`;
      retryDelay = res.status === 429 ? retryAfterMs(res) : undefined;
    } catch (e) {
      if (e instanceof JoinFailure) throw e;
      if (!(e instanceof TransportError) && !(e as { retryable?: boolean }).retryable) throw e;
      lastReason = (e as Error).message;
    }
    if (attempt >= retries) {
      throw new JoinFailure(
        "unreachable",
        `the join failed after ${attempt + 1} attempt${attempt === 0 ? "" : "s"}: ${lastReason}`,
        'Check that the service is up and reachable from this runner; the "retries" input sets how often to try.',
      );
    }
    const backoff = Math.floor(random() * Math.min(cap, base * 2 ** attempt));
    const delay = Math.min(Math.max(retryDelay ?? 0, backoff), Math.max(0, deadline - now()));
    call.onRetry?.({ attempt: attempt + 1, delayMs: delay, reason: lastReason });
    await sleep(delay);
  }
}
