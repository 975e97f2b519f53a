// Join commits from several threads of one process on one SQLite file (serve --workers).
// SQLite serializes writers by itself, but a connection that finds the file locked waits
// in its busy handler: it sleeps (1, 2, 5 ms ...) with its thread's event loop stopped.
// The threads instead take this lock, one Int32 in memory they share, around their group
// commits, and wait for it asynchronously (Atomics.waitAsync): a thread whose turn has
// not come keeps serving requests, and the joins that arrive meanwhile join its group.
// Correctness does not depend on it: other writes (renewals, admin changes) skip it and
// rely on SQLite's own locking.

/** Atomics.waitAsync (ES2024; Node >= 16): not in the ES2023 lib the project compiles with. */
type WaitAsync = (
  cell: Int32Array,
  index: number,
  value: number,
  timeoutMs?: number,
) => { async: false; value: "not-equal" | "timed-out" } | { async: true; value: Promise<"ok" | "timed-out"> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

const FREE = 0;
const HELD = 1;
/** A waiter looks again at least this often (a notify can only be missed if a holder died,
 *  and a thread that dies stops the process; this is a backstop, not the mechanism). */
const RECHECK_MS = 1000;

export class ThreadLock {
  private readonly cell: Int32Array;

  /** `buffer`: another thread's ThreadLock.buffer, to share its lock; default: a new one. */
  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    this.cell = new Int32Array(buffer, 0, 1);
  }

  /** What to send another thread (structured clone shares it, never copies it). */
  get buffer(): SharedArrayBuffer {
    return this.cell.buffer as SharedArrayBuffer;
  }

  /** Takes the lock if it is free. */
  tryAcquire(): boolean {
    return Atomics.compareExchange(this.cell, 0, FREE, HELD) === FREE;
  }

  /** Resolves once this thread holds the lock; never blocks the event loop. */
  async acquire(): Promise<void> {
    while (!this.tryAcquire()) {
      const w = waitAsync(this.cell, 0, HELD, RECHECK_MS);
      if (w.async) await w.value;
    }
  }

  release(): void {
    Atomics.store(this.cell, 0, FREE);
    Atomics.notify(this.cell, 0, 1);
  }
}
