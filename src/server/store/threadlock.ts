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
/** A holder that has not let go after this long is taken to be gone (a thread terminated
 *  in the middle of a commit, which no finally survives): the waiter goes ahead as the
 *  holder. A commit takes milliseconds; should the holder be alive after all, two threads
 *  commit at once and SQLite's own locking sorts them out. */
const TAKEOVER_MS = 5000;

export class ThreadLock {
  private readonly cell: Int32Array;

  /** `buffer`: another thread's ThreadLock.buffer, to share its lock; default: a new one. */
  constructor(
    buffer: SharedArrayBuffer = new SharedArrayBuffer(4),
    private readonly takeoverMs = TAKEOVER_MS,
  ) {
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

  /** Resolves once this thread holds the lock (or has taken it over, see TAKEOVER_MS);
   *  never blocks the event loop. */
  async acquire(): Promise<void> {
    if (this.tryAcquire()) return;
    // Atomics.waitAsync alone does not keep the event loop alive (nodejs/node#61941): a
    // thread closing its store would exit instead of waiting for its turn.
    const alive = setInterval(() => {}, RECHECK_MS);
    try {
      const deadline = performance.now() + this.takeoverMs;
      while (!this.tryAcquire()) {
        const left = deadline - performance.now();
        if (left <= 0) return; // still HELD, by a holder taken to be gone: now ours
        const w = waitAsync(this.cell, 0, HELD, Math.min(RECHECK_MS, left));
        if (w.async) await w.value;
      }
    } finally {
      clearInterval(alive);
    }
  }

  release(): void {
    Atomics.store(this.cell, 0, FREE);
    Atomics.notify(this.cell, 0, 1);
  }
}
