// One service process on several cores. Every thread runs the whole HTTP service (TLS,
// parsing, ID-token checks, certificates) on its own store connection: the main thread
// and N worker threads. On one SQLite file their join commits take turns on a lock in
// shared memory (store/threadlock.ts); PostgreSQL sees them as it sees replicas. The
// process-wide state stays on the main thread, which the workers call (threadcalls.ts):
// rate limits, the auth-failure alert, the sum of the metrics, a key rotation's reach.
// Threads share the process's file descriptors, so the workers accept on the main
// thread's listening socket: the kernel hands a new connection to a thread waiting in
// accept, i.e. an idle one.
//
// Why no thread that only owns the store: measured here, such a thread cost 150-200 µs of
// CPU per join (the calls and their copies on both sides) and one more V8 heap (~30 MB
// idle, 60-70 MB under load), and bought nothing SQLite does not already guarantee.
import { availableParallelism } from "node:os";
import { MessageChannel, type MessagePort, parentPort, Worker, workerData } from "node:worker_threads";
import { ConnectionBalance } from "./balance.ts";
import { jsonLogger, type Logger } from "./log.ts";
import { Metrics, type MetricsSnapshot } from "./metrics.ts";
import { type Limiter, RateLimiter } from "./ratelimit.ts";
import { type RunningService, type ServeOptions, type SharedState, startService } from "./service.ts";
import { ThreadLock } from "./store/threadlock.ts";
import { type Caller, callsTo, serveCalls } from "./threadcalls.ts";

/** Marks a thread started by startThreadedService; src/cli/idbot.ts checks it too. */
export const WORKER_ROLE = "idbot-http-worker";

/** `--workers auto`: one more HTTP thread per core beyond the first; none on one core. */
export function defaultWorkers(): number {
  const cores = availableParallelism();
  // Windows has no descriptor to share between the threads' event loops.
  return process.platform === "win32" ? 0 : Math.min(cores, 16) - 1;
}

type WorkerOptions = Omit<ServeOptions, "logger" | "shared">;
interface WorkerData {
  role: typeof WORKER_ROLE;
  opts: WorkerOptions;
  sqliteWriteLock: SharedArrayBuffer;
  connections: SharedArrayBuffer;
  /** This thread's place among the HTTP threads (0: the main thread). */
  index: number;
  /** HTTP threads in the process, the main one included. */
  threads: number;
  port: MessagePort;
}
/** Main thread -> worker, on the worker's parentPort. */
type Command = { id: number; op: "reload" | "reload-authorities" | "close" | "metrics" };
/** Worker -> main thread, on parentPort. */
type Report =
  | { op: "ready" }
  | { op: "failed"; message: string }
  | { op: "done"; id: number; error?: string; metrics?: MetricsSnapshot };

function isServiceWorker(): boolean {
  return (workerData as Partial<WorkerData> | null)?.role === WORKER_ROLE;
}

/** A rate limit the main thread keeps; one that is off costs no call. */
function remoteLimiter(main: Caller, which: "address" | "token", perSecond: number | undefined): Limiter {
  if (perSecond === 0) return new RateLimiter(0);
  return { take: (key) => main.call("limit", [which, key]) as Promise<number> };
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
        sqliteWriteLock: new ThreadLock(data.sqliteWriteLock),
        balance: new ConnectionBalance(data.connections, data.index),
        main: false,
        threads: data.threads,
        limits: {
          address: remoteLimiter(main, "address", data.opts.rateLimit),
          token: remoteLimiter(main, "token", data.opts.tokenRateLimit),
        },
        renderMetrics: () => main.call("metrics") as Promise<string>,
        authFailure: (now) => void main.call("authFailure", [now]),
        authoritiesRotated: async () => {
          await main.call("authoritiesRotated");
        },
      },
    });
  } catch (e) {
    logger.flush();
    main.flush();
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
  report({ op: "ready" });
}

/** The worker threads, as the main thread sees them. */
class WorkerThreads {
  private readonly threads: Worker[] = [];
  /** Started and not exited: the ones that answer commands. A worker that failed to start
   *  never answers; close() terminates it. */
  private readonly serving = new Set<Worker>();
  private readonly pending = new Map<number, (r: Extract<Report, { op: "done" }>) => void>();
  private nextId = 0;
  private closing = false;

  constructor(private readonly logger: Logger) {}

  get count(): number {
    return this.serving.size;
  }

  /** Starts one worker; resolves once it serves. */
  spawn(data: Omit<WorkerData, "role" | "port">, handlers: Parameters<typeof serveCalls>[1]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const channel = new MessageChannel();
      serveCalls(channel.port1, handlers, (text) => process.stderr.write(text));
      const worker = new Worker(new URL(import.meta.url), {
        workerData: { ...data, role: WORKER_ROLE, port: channel.port2 } satisfies WorkerData,
        transferList: [channel.port2],
      });
      this.threads.push(worker);
      worker.on("message", (r: Report) => {
        if (r.op === "ready") {
          this.serving.add(worker);
          resolve();
        } else if (r.op === "failed") reject(new Error(r.message));
        else {
          this.pending.get(r.id)?.(r);
          this.pending.delete(r.id);
        }
      });
      worker.on("error", (e) => {
        reject(e);
        if (!this.closing) this.fatal(`a service thread failed: ${e.message}`);
      });
      worker.on("exit", (code) => {
        this.serving.delete(worker);
        channel.port1.close();
        if (!this.closing) this.fatal(`a service thread exited (code ${code})`);
      });
    });
  }

  /** Sends `op` to every worker; resolves with their answers, rejects with the first error. */
  async broadcast(op: Command["op"]): Promise<Array<Extract<Report, { op: "done" }>>> {
    const answers = await Promise.all(
      [...this.serving].map(
        (w) =>
          new Promise<Extract<Report, { op: "done" }>>((resolve) => {
            const id = this.nextId++;
            // A thread that has closed (shutting down) answers no more: its exit does.
            const gone = () => {
              this.pending.delete(id);
              resolve({ op: "done", id, error: "a service thread has stopped" });
            };
            this.pending.set(id, (r) => {
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
  }

  /** Each worker closes its service and store, then stops. */
  async close(): Promise<void> {
    this.closing = true;
    await this.broadcast("close").catch(() => {});
    await Promise.all(this.threads.map((w) => w.terminate()));
  }

  // A thread that dies takes its share of connections with it: stop the whole process, so
  // its supervisor restarts it whole, rather than serve on with fewer threads.
  private fatal(msg: string): never {
    this.logger.log("error", msg);
    this.logger.flush?.();
    process.exit(1);
  }
}

/** Starts the service on the main thread and `workers` more HTTP threads (at least 1). */
export async function startThreadedService(
  opts: ServeOptions & { workers: number },
): Promise<RunningService> {
  const { workers: count, logger: given, ...workerOpts } = opts;
  const logger = given ?? jsonLogger();
  const sqliteWriteLock = new ThreadLock();
  const connections = ConnectionBalance.buffer(1 + count);
  const workers = new WorkerThreads(logger);
  // The main thread's service: its limiters and its alert window are the process's.
  let svc: RunningService | undefined;
  const limits = {
    address: new RateLimiter(opts.rateLimit ?? 500),
    token: new RateLimiter(opts.tokenRateLimit ?? 1000),
  };
  const renderMetrics = async () => {
    const sum = new Metrics(logger);
    if (svc) sum.merge(svc.metrics.snapshot());
    for (const a of await workers.broadcast("metrics")) sum.merge(a.metrics!);
    return sum.render();
  };
  const shared: SharedState = {
    sqliteWriteLock,
    balance: new ConnectionBalance(connections, 0),
    main: true,
    threads: 1 + count,
    limits,
    renderMetrics,
    // The main thread's service has already reloaded its own keys.
    authoritiesRotated: async () => {
      await workers.broadcast("reload-authorities");
    },
  };
  svc = await startService({ ...workerOpts, logger, shared });
  const main = svc;
  try {
    const handlers = {
      limit: (which: unknown, key: unknown) => limits[which as "address" | "token"].take(String(key)),
      authFailure: (now: unknown) => main.metrics.failureSeen(Number(now)),
      // A rotation through a worker: that worker has reloaded; everyone does, the main
      // thread's service included, before its answer goes out.
      authoritiesRotated: async () => {
        await main.reloadAuthorities();
        await workers.broadcast("reload-authorities");
      },
      metrics: renderMetrics,
    };
    if (main.listenFd === undefined) {
      logger.log(
        "warn",
        "the listening socket cannot be shared on this platform: serving on the main thread only",
        { workers: count },
      );
    } else {
      const data = {
        opts: { ...workerOpts, publicUrl: main.publicUrl, listenFd: main.listenFd },
        sqliteWriteLock: sqliteWriteLock.buffer,
        connections,
        threads: 1 + count,
      };
      await Promise.all(
        Array.from({ length: count }, (_, i) => workers.spawn({ ...data, index: 1 + i }, handlers)),
      );
    }
  } catch (e) {
    await workers.close();
    await main.close();
    throw e;
  }
  logger.log("info", "idbot service started", {
    url: main.url,
    public_url: main.publicUrl,
    store: main.store.kind,
    threads: 1 + workers.count,
    data_dir: opts.dataDir,
    database: opts.database ? "postgres" : undefined,
  });
  return {
    url: main.url,
    publicUrl: main.publicUrl,
    store: main.store,
    get authorities() {
      return main.authorities;
    },
    listenFd: main.listenFd,
    metrics: main.metrics,
    async reload() {
      await main.reload();
      await workers.broadcast("reload");
    },
    async reloadAuthorities() {
      await main.reloadAuthorities();
      await workers.broadcast("reload-authorities");
    },
    async close() {
      await workers.close();
      await main.close();
    },
  };
}

if (isServiceWorker()) void runServiceWorker();
