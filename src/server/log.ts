// Structured JSON log lines on stderr. Never pass secrets (ID tokens, keys) here.
//
// Lines are buffered and written with one stream.write per event-loop turn (a join logs
// three lines, and each synchronous write to a pipe costs ~60 µs): the buffer is flushed
// from setImmediate, when it grows past BUFFER_LIMIT, by flush(), and at process exit.
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
  /** Writes out any buffered lines now. */
  flush?(): void;
}

/** A buffer this large is written at once instead of at the end of the turn. */
const BUFFER_LIMIT = 256 * 1024;

/** Loggers holding unwritten lines; the 'exit' listener writes them out. */
const unflushed = new Set<() => void>();
let exitHookInstalled = false;
function flushAllOnExit(): void {
  for (const flush of [...unflushed]) flush();
}

export function jsonLogger(
  stream: NodeJS.WritableStream = process.stderr,
  minLevel: LogLevel = "info",
): Logger & { flush(): void } {
  const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  let pending = "";
  let scheduled = false;
  const flush = () => {
    unflushed.delete(flush);
    if (pending === "") return;
    const out = pending;
    pending = "";
    stream.write(out);
  };
  const onImmediate = () => {
    scheduled = false;
    flush();
  };
  return {
    log(level, msg, fields) {
      if (order[level] < order[minLevel]) return;
      pending += `${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`;
      if (pending.length >= BUFFER_LIMIT) {
        flush();
        return;
      }
      unflushed.add(flush);
      if (!exitHookInstalled) {
        exitHookInstalled = true;
        // stderr and stdout are synchronous for files and pipes on Linux, so this write lands.
        process.on("exit", flushAllOnExit);
      }
      if (!scheduled) {
        scheduled = true;
        setImmediate(onImmediate);
      }
    },
    flush,
  };
}

export const silentLogger: Logger = { log() {} };
