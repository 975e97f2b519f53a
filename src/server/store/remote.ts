// Calls across a thread boundary. The main thread of a threaded service owns the store
// and the process-wide state (rate limits, metrics, the auth-failure alert); its HTTP
// worker threads call it through one MessagePort each (serveCalls / callsTo), and see
// the store as a Store (remoteStore). Arguments and results are plain data, so
// structured clone carries them; an error keeps its name, message and code, which
// isStoreOutage and the callers look at.
//
// Messages go out as one array per event-loop turn: a worker under load makes many calls
// (and log lines) per turn, and each postMessage costs both threads a wake-up and a
// dispatch (~45 µs of a worker's time per join when sent one by one).
import type { MessagePort } from "node:worker_threads";
import type { Store } from "./store.ts";

type Method = Exclude<keyof Store, "kind" | "close">;
const STORE_METHODS: readonly Method[] = [
  "loadOrCreateCAs",
  "rotateCA",
  "commitJoin",
  "renewInstance",
  "createJoinToken",
  "getJoinTokenByHash",
  "listJoinTokens",
  "deleteJoinToken",
  "createChallenge",
  "getChallenge",
  "getBoundKeypair",
  "listBoundKeypairs",
  "updateBoundKeypair",
  "putResource",
  "deleteResource",
  "listResources",
  "resourcesVersion",
  "appendAudit",
  "listAudit",
  "getBotInstance",
  "listBotInstances",
  "pruneReplayKeys",
  "healthy",
];

/** Worker -> main thread: a call, or log text to write to the process's stderr. */
type Up = { id: number; method: string; args: unknown[] } | { log: string };
/** Main thread -> worker. */
type Down =
  | { id: number; value: unknown }
  | { id: number; error: { name: string; message: string; code?: unknown } };

export type Handlers = Record<string, (...args: unknown[]) => Promise<unknown> | unknown>;

/** Posts what is sent during one event-loop turn as one message; `flush` posts it now. */
function batched<T>(port: MessagePort): { send: (m: T) => void; flush: () => void } {
  let queue: T[] = [];
  const flush = () => {
    if (queue.length === 0) return;
    const out = queue;
    queue = [];
    port.postMessage(out);
  };
  return {
    send: (m) => {
      if (queue.push(m) === 1) setImmediate(flush);
    },
    flush,
  };
}

/** Main thread: answers the calls arriving on `port` with `handlers` (and `store` for
 *  its methods; loadOrCreateCAs gets the main thread's own `create`), and hands log text
 *  to `log`. */
export function serveCalls(
  port: MessagePort,
  store: Store,
  handlers: Handlers,
  log: (text: string) => void,
): void {
  const { send } = batched<Down>(port);
  const storeMethods: ReadonlySet<string> = new Set(STORE_METHODS);
  port.on("message", (batch: Up[]) => {
    for (const m of batch) {
      if ("log" in m) {
        log(m.log);
        continue;
      }
      const id = m.id;
      let run: Promise<unknown>;
      try {
        const own = handlers[m.method];
        if (own) run = Promise.resolve(own(...m.args));
        else if (storeMethods.has(m.method))
          run = (store[m.method as Method] as (...a: unknown[]) => Promise<unknown>)(...m.args);
        else throw new Error(`no such call: ${m.method}`);
      } catch (e) {
        run = Promise.reject(e);
      }
      run.then(
        (value) => send({ id, value }),
        (e: Error & { code?: unknown }) =>
          send({ id, error: { name: e?.name ?? "Error", message: e?.message ?? String(e), code: e?.code } }),
      );
    }
  });
}

export interface Caller {
  call(method: string, args?: unknown[]): Promise<unknown>;
  /** A stream-like sink whose text the main thread writes to stderr. */
  stderr: { write(text: string): boolean };
  /** Posts what this turn has queued now (before the port closes). */
  flush(): void;
}

/** Worker thread: the calling end of `port`. */
export function callsTo(port: MessagePort): Caller {
  let next = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const { send, flush } = batched<Up>(port);
  port.on("message", (batch: Down[]) => {
    for (const reply of batch) {
      const w = waiting.get(reply.id);
      if (!w) continue;
      waiting.delete(reply.id);
      if ("error" in reply) {
        const e = Object.assign(new Error(reply.error.message), { code: reply.error.code });
        e.name = reply.error.name;
        w.reject(e);
      } else w.resolve(reply.value);
    }
  });
  return {
    call: (method, args = []) =>
      new Promise<unknown>((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, reject });
        send({ id, method, args });
      }),
    stderr: {
      write(text: string) {
        send({ log: text });
        return true;
      },
    },
    flush,
  };
}

/** The Store a worker thread uses: every call runs on the main thread. */
export function remoteStore(kind: Store["kind"], caller: Caller): Store {
  const store: Record<string, unknown> = {
    kind,
    // The store's owner closes it; a worker only stops asking.
    close: async () => {},
  };
  for (const method of STORE_METHODS) {
    // loadOrCreateCAs' argument is a function: the main thread uses its own.
    store[method] = (...args: unknown[]) => caller.call(method, method === "loadOrCreateCAs" ? [] : args);
  }
  return store as unknown as Store;
}
