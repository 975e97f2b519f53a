// One service process on several cores: the main thread owns the store (SQLite allows one
// writer; group commit wants every join in one queue) and N worker threads each run the
// whole HTTP service (TLS, parsing, ID-token checks, certificates) on one shared listening
// socket, calling the store through remoteStore. Worker threads share the process's file
// descriptors, so the first worker binds and the others accept on its descriptor; the
// kernel hands each new connection to whichever thread accepts first, i.e. an idle one.
import { MessageChannel, type MessagePort, parentPort, Worker, workerData } from "node:worker_threads";
import { Authorities, createAuthorityRecord } from "./ca/authorities.ts";
import { jsonLogger } from "./log.ts";
import { loadResources } from "./policy/resources.ts";
import {
  checkListen,
  openServiceStore,
  type RunningService,
  type ServeOptions,
  startService,
} from "./service.ts";
import { remoteStore, serveStore } from "./store/remote.ts";
import type { CAName, Store } from "./store/store.ts";

/** Marks a thread started by startThreadedService (the bundle's entry checks it). */
export const WORKER_ROLE = "idbot-http-worker";

type WorkerOptions = Omit<ServeOptions, "logger" | "store">;
interface WorkerData {
  role: typeof WORKER_ROLE;
  opts: WorkerOptions;
  storeKind: Store["kind"];
  storePort: MessagePort;
}
/** Main thread -> worker. */
type Command = { id: number; op: "reload" | "close" | "reload-authorities" };
/** Worker -> main thread. */
type Report =
  | { op: "ready"; url: string; publicUrl: string; listenFd?: number }
  | { op: "failed"; message: string }
  | { op: "done"; id: number; error?: string }
  | { op: "authorities-rotated" };

export function isServiceWorker(): boolean {
  return (workerData as Partial<WorkerData> | null)?.role === WORKER_ROLE;
}

/** The worker thread's side: one full HTTP service over the main thread's store. */
export async function runServiceWorker(): Promise<void> {
  const data = workerData as WorkerData;
  const port = parentPort!;
  const post = (r: Report) => port.postMessage(r);
  let svc: RunningService;
  try {
    const remote = remoteStore(data.storeKind, data.storePort);
    svc = await startService({
      ...data.opts,
      store: remote.store,
      logger: jsonLogger(remote.stderr as NodeJS.WritableStream),
      // A rotation through this worker's admin API reaches every thread.
      onAuthoritiesRotated: () => post({ op: "authorities-rotated" }),
    });
  } catch (e) {
    post({ op: "failed", message: (e as Error).message });
    return;
  }
  port.on("message", async (c: Command) => {
    try {
      if (c.op === "reload") await svc.reload();
      else if (c.op === "reload-authorities") await svc.reloadAuthorities();
      else await svc.close();
      post({ op: "done", id: c.id });
    } catch (e) {
      post({ op: "done", id: c.id, error: (e as Error).message });
    }
    if (c.op === "close") {
      data.storePort.close();
      port.close();
    }
  });
  post({ op: "ready", url: svc.url, publicUrl: svc.publicUrl, listenFd: svc.listenFd });
}

export async function startThreadedService(
  opts: ServeOptions & { workers: number },
): Promise<RunningService> {
  const { workers: count, logger: given, ...rest } = opts;
  const logger = given ?? jsonLogger();
  // As startService does, before anything is created.
  const { hostLabel } = checkListen(opts);
  loadResources(opts.resourcesPath);
  const store = await openServiceStore(opts, logger);
  const create = (name: CAName) => createAuthorityRecord(name, opts.publicUrl ?? hostLabel);
  await store.loadOrCreateCAs(create);
  const threads: Array<{ worker: Worker; reports: Report[] }> = [];
  let nextId = 0;
  const pending = new Map<number, { left: number; errors: string[]; done: () => void }>();
  const broadcast = (op: Command["op"]) =>
    new Promise<void>((resolve, reject) => {
      const id = nextId++;
      const errors: string[] = [];
      pending.set(id, {
        left: threads.length,
        errors,
        done: () => (errors.length ? reject(new Error(errors[0])) : resolve()),
      });
      for (const t of threads) t.worker.postMessage({ id, op } satisfies Command);
    });
  let closing = false;
  const spawn = (workerOpts: WorkerOptions) =>
    new Promise<{ worker: Worker; ready: Extract<Report, { op: "ready" }> }>((resolve, reject) => {
      const channel = new MessageChannel();
      serveStore(store, channel.port1, create, (text) => process.stderr.write(text));
      const worker = new Worker(new URL(import.meta.url), {
        workerData: {
          role: WORKER_ROLE,
          opts: workerOpts,
          storeKind: store.kind,
          storePort: channel.port2,
        } satisfies WorkerData,
        transferList: [channel.port2],
      });
      worker.on("message", (r: Report) => {
        if (r.op === "ready") resolve({ worker, ready: r });
        else if (r.op === "failed") reject(new Error(r.message));
        else if (r.op === "authorities-rotated") void broadcast("reload-authorities").catch(() => {});
        else if (r.op === "done") {
          const p = pending.get(r.id);
          if (!p) return;
          if (r.error) p.errors.push(r.error);
          if (--p.left === 0) {
            pending.delete(r.id);
            p.done();
          }
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
  // A thread that dies takes its share of connections with it: stop the whole process, so
  // its supervisor restarts it whole, rather than serve on with fewer threads.
  const fatal = (msg: string) => {
    logger?.log("error", msg);
    logger?.flush?.();
    process.exit(1);
  };
  try {
    const first = await spawn(rest);
    threads.push({ worker: first.worker, reports: [] });
    const { url, publicUrl, listenFd } = first.ready;
    if (listenFd !== undefined) {
      const others = await Promise.all(
        Array.from({ length: count - 1 }, () => spawn({ ...rest, publicUrl, listenFd })),
      );
      for (const o of others) threads.push({ worker: o.worker, reports: [] });
    }
    let authorities = new Authorities(await store.loadOrCreateCAs(create));
    return {
      url,
      publicUrl,
      store,
      get authorities() {
        return authorities;
      },
      listenFd,
      async reload() {
        await broadcast("reload");
        authorities = new Authorities(await store.loadOrCreateCAs(create));
        return undefined as never;
      },
      async reloadAuthorities() {
        await broadcast("reload-authorities");
        authorities = new Authorities(await store.loadOrCreateCAs(create));
      },
      async close() {
        closing = true;
        await broadcast("close").catch(() => {});
        await Promise.all(threads.map((t) => t.worker.terminate()));
        await store.close();
      },
    };
  } catch (e) {
    closing = true;
    await Promise.all(threads.map((t) => t.worker.terminate()));
    await store.close();
    throw e;
  }
}

if (isServiceWorker()) void runServiceWorker();
