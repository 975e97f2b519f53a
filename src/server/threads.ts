// One service process on several cores. The main thread owns the store (SQLite allows one
// writer, and group commit wants every join in one queue) and the process-wide state:
// rate limits, the auth-failure alert, the sum of the metrics. N worker threads each run
// the whole HTTP service (TLS, parsing, ID-token checks, certificates) and call the main
// thread for the rest (store/remote.ts). Threads share the process's file descriptors, so
// the first worker binds the listening socket and the others accept on its descriptor:
// the kernel hands a new connection to a thread waiting in accept, i.e. an idle one.
import { availableParallelism } from "node:os";
import { MessageChannel, type MessagePort, parentPort, Worker, workerData } from "node:worker_threads";
import { Authorities, createAuthorityRecord } from "./ca/authorities.ts";
import { jsonLogger } from "./log.ts";
import { Metrics, type MetricsSnapshot } from "./metrics.ts";
import { loadResources } from "./policy/resources.ts";
import { RateLimiter } from "./ratelimit.ts";
import {
  checkListen,
  openServiceStore,
  type RunningService,
  type ServeOptions,
  startService,
} from "./service.ts";
import { callsTo, remoteStore, serveCalls } from "./store/remote.ts";
import type { CAName, Store } from "./store/store.ts";

/** Marks a thread started by startThreadedService; src/cli/idbot.ts checks it too. */
export const WORKER_ROLE = "idbot-http-worker";

/** `--workers auto`: one HTTP thread per core; none (all in one thread) on one core. */
export function defaultWorkers(): number {
  const cores = availableParallelism();
  // Windows has no descriptor to share between the threads' event loops.
  return cores > 1 && process.platform !== "win32" ? Math.min(cores, 16) : 0;
}

type WorkerOptions = Omit<ServeOptions, "logger" | "shared">;
interface WorkerData {
  role: typeof WORKER_ROLE;
  opts: WorkerOptions;
  storeKind: Store["kind"];
  port: MessagePort;
}
/** Main thread -> worker, on the worker's parentPort. */
type Command = { id: number; op: "reload" | "reload-authorities" | "close" | "metrics" };
/** Worker -> main thread, on parentPort. */
type Report =
  | { op: "ready"; url: string; publicUrl: string; listenFd?: number }
  | { op: "failed"; message: string }
  | { op: "done"; id: number; error?: string; metrics?: MetricsSnapshot };

function isServiceWorker(): boolean {
  return (workerData as Partial<WorkerData> | null)?.role === WORKER_ROLE;
}

/** The worker thread's side: one full HTTP service sharing the main thread's state. */
async function runServiceWorker(): Promise<void> {
  const data = workerData as WorkerData;
  const parent = parentPort!;
  const report = (r: Report) => parent.postMessage(r);
  const main = callsTo(data.port);
  const logger = jsonLogger(main.stderr as unknown as NodeJS.WritableStream);
  let svc: RunningService;
  try {
    svc = await startService({
      ...data.opts,
      logger,
      shared: {
        store: remoteStore(data.storeKind, main),
        // A limit that is off costs no call.
        limits: {
          address:
            data.opts.rateLimit === 0
              ? new RateLimiter(0)
              : { take: (key) => main.call("limit", ["address", key]) as Promise<number> },
          token:
            data.opts.tokenRateLimit === 0
              ? new RateLimiter(0)
              : { take: (key) => main.call("limit", ["token", key]) as Promise<number> },
        },
        renderMetrics: () => main.call("metrics") as Promise<string>,
        authFailure: (now) => void main.call("authFailure", [now]),
        authoritiesRotated: async () => {
          await main.call("authoritiesRotated");
        },
      },
    });
  } catch (e) {
    report({ op: "failed", message: (e as Error).message });
    return;
  }
  parent.on("message", async (c: Command) => {
    try {
      if (c.op === "metrics") return report({ op: "done", id: c.id, metrics: svc.metrics.snapshot() });
      if (c.op === "reload") await svc.reload();
      else if (c.op === "reload-authorities") await svc.reloadAuthorities();
      else {
        await svc.close();
        // The last log lines (aborted requests) go out before the main thread is told.
        logger.flush();
        main.flush();
      }
      report({ op: "done", id: c.id });
    } catch (e) {
      report({ op: "done", id: c.id, error: (e as Error).message });
    }
    if (c.op === "close") {
      data.port.close();
      parent.close();
    }
  });
  report({ op: "ready", url: svc.url, publicUrl: svc.publicUrl, listenFd: svc.listenFd });
}

/** Starts the service on `workers` HTTP threads (at least 1) over one store. */
export async function startThreadedService(
  opts: ServeOptions & { workers: number },
): Promise<RunningService> {
  const { workers: count, logger: given, ...workerOpts } = opts;
  const logger = given ?? jsonLogger();
  // What startService checks first, before anything is created.
  const { hostLabel } = checkListen(opts);
  loadResources(opts.resourcesPath);
  const store = await openServiceStore(opts, logger);
  const create = (name: CAName) => createAuthorityRecord(name, opts.publicUrl ?? hostLabel);

  const threads: Worker[] = [];
  let closing = false;
  let nextId = 0;
  const pending = new Map<number, (r: Extract<Report, { op: "done" }>) => void>();
  /** Sends `op` to every thread; resolves with their answers, rejects with the first error. */
  const broadcast = async (op: Command["op"]) => {
    const answers = await Promise.all(
      threads.map(
        (w) =>
          new Promise<Extract<Report, { op: "done" }>>((resolve) => {
            const id = nextId++;
            // A thread that has closed (shutting down) answers no more: its exit does.
            const gone = () => {
              pending.delete(id);
              resolve({ op: "done", id, error: "a service thread has stopped" });
            };
            pending.set(id, (r) => {
              w.off("exit", gone);
              resolve(r);
            });
            w.once("exit", gone);
            w.postMessage({ id, op } satisfies Command);
          }),
      ),
    );
    const failed = answers.find((a) => a.error);
    if (failed) throw new Error(failed.error);
    return answers;
  };
  // A thread that dies takes its share of connections with it: stop the whole process, so
  // its supervisor restarts it whole, rather than serve on with fewer threads.
  const fatal = (msg: string) => {
    logger.log("error", msg);
    logger.flush?.();
    process.exit(1);
  };

  // Process-wide state the workers call for.
  const limits = {
    address: new RateLimiter(opts.rateLimit ?? 500),
    token: new RateLimiter(opts.tokenRateLimit ?? 1000),
  };
  const alerts = new Metrics(logger);
  // The main thread's copy of the signing keys (RunningService.authorities).
  let authorities: Authorities | undefined;
  const handlers = {
    loadOrCreateCAs: () => store.loadOrCreateCAs(create),
    limit: (which: unknown, key: unknown) => limits[which as "address" | "token"].take(String(key)),
    authFailure: (now: unknown) => alerts.failureSeen(Number(now)),
    authoritiesRotated: async () => {
      await broadcast("reload-authorities");
      authorities = new Authorities(await store.loadOrCreateCAs(create));
    },
    metrics: async () => {
      const sum = new Metrics(logger);
      for (const a of await broadcast("metrics")) sum.merge(a.metrics!);
      return sum.render();
    },
  };

  const spawn = (o: WorkerOptions) =>
    new Promise<Extract<Report, { op: "ready" }>>((resolve, reject) => {
      const channel = new MessageChannel();
      serveCalls(channel.port1, store, handlers, (text) => process.stderr.write(text));
      const worker = new Worker(new URL(import.meta.url), {
        workerData: {
          role: WORKER_ROLE,
          opts: o,
          storeKind: store.kind,
          port: channel.port2,
        } satisfies WorkerData,
        transferList: [channel.port2],
      });
      threads.push(worker);
      worker.on("message", (r: Report) => {
        if (r.op === "ready") resolve(r);
        else if (r.op === "failed") reject(new Error(r.message));
        else {
          pending.get(r.id)?.(r);
          pending.delete(r.id);
        }
      });
      worker.on("error", (e) => {
        reject(e);
        if (!closing) fatal(`a service thread failed: ${e.message}`);
      });
      worker.on("exit", (code) => {
        channel.port1.close();
        if (!closing) fatal(`a service thread exited (code ${code})`);
      });
    });

  const stopThreads = async () => {
    closing = true;
    await Promise.all(threads.map((w) => w.terminate()));
  };
  try {
    await store.loadOrCreateCAs(create);
    const first = await spawn(workerOpts);
    const { url, publicUrl, listenFd } = first;
    if (listenFd === undefined && count > 1) {
      logger.log(
        "warn",
        "the listening socket cannot be shared on this platform: serving on one HTTP thread",
        {
          workers: count,
        },
      );
    } else {
      await Promise.all(
        Array.from({ length: count - 1 }, () => spawn({ ...workerOpts, publicUrl, listenFd })),
      );
    }
    authorities = new Authorities(await store.loadOrCreateCAs(create));
    logger.log("info", "idbot service started", {
      url,
      public_url: publicUrl,
      store: store.kind,
      workers: threads.length,
      data_dir: opts.dataDir,
      database: opts.database ? "postgres" : undefined,
    });
    const reloadAuthorities = async () => {
      await broadcast("reload-authorities");
      authorities = new Authorities(await store.loadOrCreateCAs(create));
    };
    // Replay keys are pruned here, once for the process.
    const prune = setInterval(
      () => void store.pruneReplayKeys(Math.floor(Date.now() / 1000)).catch(() => {}),
      600_000,
    );
    prune.unref();
    return {
      url,
      publicUrl,
      store,
      get authorities() {
        return authorities!;
      },
      listenFd,
      // The main thread's own: the alert window (the counters live in the workers).
      metrics: alerts,
      async reload() {
        await broadcast("reload");
        authorities = new Authorities(await store.loadOrCreateCAs(create));
      },
      reloadAuthorities,
      async close() {
        clearInterval(prune);
        closing = true;
        await broadcast("close").catch(() => {});
        await stopThreads();
        await store.close();
      },
    };
  } catch (e) {
    await stopThreads();
    await store.close();
    throw e;
  }
}

if (isServiceWorker()) void runServiceWorker();
