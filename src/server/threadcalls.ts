// Calls across a thread boundary. The HTTP threads of a threaded service each keep their
// own store connection, but the process-wide state (rate limits, the auth-failure alert,
// the sum of the metrics, a key rotation's reach) lives on the main thread: the worker
// threads call it through one MessagePort each (serveCalls / callsTo). Arguments and
// results are plain data, so structured clone carries them; an error keeps its name,
// message and code.
//
// Messages go out as one array per event-loop turn: a worker under load makes many calls
// (and log lines) per turn, and each postMessage costs both threads a wake-up and a
// dispatch (~45 µs of a worker's time per join when sent one by one).
import type { MessagePort } from "node:worker_threads";

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

/** Main thread: answers the calls arriving on `port` with `handlers`, and hands log
 *  text to `log`. */
export function serveCalls(port: MessagePort, handlers: Handlers, log: (text: string) => void): void {
  const { send } = batched<Down>(port);
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
        if (!own) throw new Error(`no such call: ${m.method}`);
        run = Promise.resolve(own(...m.args));
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
