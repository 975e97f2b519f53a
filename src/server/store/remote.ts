// The store across a thread boundary: the thread that opened the store answers calls
// posted by the HTTP worker threads (serveStore), which see it as a Store (remoteStore).
// Every Store method takes and returns plain data, so structured clone carries it; an
// error keeps its name, message and code, which isStoreOutage and the callers look at.
//
// Messages go out as one array per event-loop turn: a worker under load makes many calls
// (and log lines) per turn, and each postMessage costs both threads a wake-up and a
// dispatch (~45 µs of a worker's time per join when sent one by one).
import type { MessagePort } from "node:worker_threads";
import type { CAKeyRecord, CAName, Store } from "./store.ts";

type Method = Exclude<keyof Store, "kind" | "close">;
const METHODS: readonly Method[] = [
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

/** Worker -> store thread: a call, or log text to write to the process's stderr. */
type Up = { id: number; method: Method; args: unknown[] } | { log: string };
/** Store thread -> worker. */
type Down =
  | { id: number; value: unknown }
  | { id: number; error: { name: string; message: string; code?: unknown } };

/** Posts what is sent during one event-loop turn as one message. */
function batched<T>(port: MessagePort): (m: T) => void {
  let queue: T[] = [];
  const flush = () => {
    const out = queue;
    queue = [];
    port.postMessage(out);
  };
  return (m) => {
    if (queue.push(m) === 1) setImmediate(flush);
  };
}

/** Answers the calls arriving on `port` with `store` (`create` makes a missing CA) and
 *  hands the log text to `log`. */
export function serveStore(
  store: Store,
  port: MessagePort,
  create: (name: CAName) => CAKeyRecord,
  log: (text: string) => void,
): void {
  const send = batched<Down>(port);
  port.on("message", (batch: Up[]) => {
    for (const m of batch) {
      if ("log" in m) {
        log(m.log);
        continue;
      }
      const id = m.id;
      const run =
        m.method === "loadOrCreateCAs"
          ? store.loadOrCreateCAs(create)
          : (store[m.method] as (...a: unknown[]) => Promise<unknown>)(...m.args);
      run.then(
        (value) => send({ id, value }),
        (e: Error & { code?: unknown }) =>
          send({ id, error: { name: e?.name ?? "Error", message: e?.message ?? String(e), code: e?.code } }),
      );
    }
  });
}

/** A Store whose calls run on the thread holding the other end of `port`, and a stream
 *  whose text that thread writes to stderr (for the worker's log lines). */
export function remoteStore(
  kind: Store["kind"],
  port: MessagePort,
): { store: Store; stderr: { write(text: string): boolean } } {
  let next = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const send = batched<Up>(port);
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
  const store: Record<string, unknown> = {
    kind,
    // The store's owner closes it; a worker only stops asking.
    close: async () => {},
  };
  for (const method of METHODS) {
    store[method] = (...args: unknown[]) =>
      new Promise<unknown>((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, reject });
        // loadOrCreateCAs' argument is a function: the store thread has its own.
        send({ id, method, args: method === "loadOrCreateCAs" ? [] : args });
      });
  }
  return {
    store: store as unknown as Store,
    stderr: {
      write(text: string) {
        send({ log: text });
        return true;
      },
    },
  };
}
