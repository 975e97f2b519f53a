// The renewal loop of `idbot start`: join (or pick up the identity already on disk), renew
// at 2/3 of the TTL (or every renewal_interval), retry every retry_interval up to
// max_retries, then fall back to joining again with the join method, and keep trying
// until the service answers. Every write is atomic (the join code replaces files by
// rename), so readers never see half a file.

export type JoinMode = "join" | "renew" | "rejoin";

export interface Issued {
  /** Certificate lifetime as issued, in seconds. */
  ttlSeconds: number;
  generation: number;
}

export interface DaemonOptions {
  /** join: first join into an empty place; renew: renew what is on disk; rejoin: join
   *  again with the join method, replacing what is on disk. */
  acquire: (mode: JoinMode) => Promise<Issued>;
  /** The mode of the first acquisition (renew when a valid identity is already on disk). */
  firstMode: JoinMode;
  renewalIntervalMs?: number;
  retryIntervalMs: number;
  maxRetries: number;
  oneshot: boolean;
  onRenew?: () => Promise<void>;
  log: (level: "info" | "warn" | "error", msg: string) => void;
  signal: AbortSignal;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

export async function runDaemon(o: DaemonOptions): Promise<void> {
  const sleep = o.sleep ?? abortableSleep;
  const attempt = async (mode: JoinMode): Promise<Issued | undefined> => {
    try {
      const issued = await o.acquire(mode);
      o.log(
        "info",
        `${mode === "join" ? "joined" : mode === "renew" ? "renewed" : "joined again"}: generation ${issued.generation}, valid ${issued.ttlSeconds} s`,
      );
      return issued;
    } catch (e) {
      o.log("warn", `${mode} failed: ${(e as Error).message}`);
      return undefined;
    }
  };
  /** Joins with the join method until it works (or the daemon stops). */
  const joinUntilDone = async (mode: JoinMode): Promise<Issued | undefined> => {
    for (;;) {
      const issued = await attempt(mode);
      if (issued || o.signal.aborted) return issued;
      await sleep(o.retryIntervalMs, o.signal);
      if (o.signal.aborted) return undefined;
    }
  };

  let current: Issued | undefined;
  if (o.firstMode === "renew") current = await attempt("renew");
  current ??= await joinUntilDone(o.firstMode === "join" ? "join" : "rejoin");
  if (!current || o.oneshot) return;

  while (!o.signal.aborted) {
    const wait = o.renewalIntervalMs ?? Math.max(1000, Math.floor((current.ttlSeconds * 1000 * 2) / 3));
    await sleep(wait, o.signal);
    if (o.signal.aborted) return;
    let renewed: Issued | undefined;
    for (let i = 0; i <= o.maxRetries && !renewed && !o.signal.aborted; i++) {
      if (i > 0) await sleep(o.retryIntervalMs, o.signal);
      if (o.signal.aborted) return;
      renewed = await attempt("renew");
    }
    if (!renewed) {
      o.log("warn", `renewal failed ${o.maxRetries + 1} times; joining again with the join method`);
      renewed = await joinUntilDone("rejoin");
    }
    if (!renewed) return;
    current = renewed;
    if (o.onRenew) {
      try {
        await o.onRenew();
      } catch (e) {
        o.log("warn", `on_renew failed: ${(e as Error).message}`);
      }
    }
  }
}
