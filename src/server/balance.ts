// Keeps `serve --workers` threads holding about the same number of keep-alive connections.
// The kernel hands a new connection to whichever thread calls accept first, so a burst of
// connections (a load balancer opening its upstream pool, a load test) can land mostly on
// one thread and stay there for as long as the clients keep them alive. That thread's
// requests then queue behind two or three times their share while another core idles:
// measured here at c=64, 54 connections on one thread and 10 on the other gave a p99 of
// 55-73 ms where an even split gives half that.
//
// A busy thread holding more than its share answers a request with `Connection: close`
// (RFC 9112 §9.6); the client opens a new connection, which goes to a thread waiting in
// accept, more likely a less busy one. Not always: when several threads wait, the kernel
// wakes the one that started listening last first, and it takes every connection
// pending. So a thread sheds one connection per SHED_INTERVAL_MS at most, which bounds
// the cost when the new connection comes back to it (a reconnect, with TLS a handshake)
// and still evens out a pile of 64 in about a second. Each thread counts its own
// connections in one cell of memory the threads share; nobody waits on anybody.
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** Over its share by more than this many connections before a thread sheds any: a split
 *  of 33/31 is not worth a reconnect. */
const SLACK = 1;
/** Only a thread with at least this many requests in flight sheds: one that keeps up
 *  answers at once whatever it holds, and with nothing to do it may well win the race to
 *  accept the new connection too, so shedding would only cost a reconnect. */
const BUSY = 4;
const SHED_INTERVAL_MS = 50;

export class ConnectionBalance {
  /** [threads serving, connections of thread 0, of thread 1, ...] */
  private readonly cells: Int32Array;
  /** This thread's connections already answered with `Connection: close`, not yet gone. */
  private closing = 0;
  private inFlight = 0;
  private readonly marked = new WeakSet<object>();
  private lastShed = Number.NEGATIVE_INFINITY;

  /** `buffer`: from ConnectionBalance.buffer(threads), shared by every thread; `index`:
   *  this thread's cell (0 = the main thread). */
  constructor(
    buffer: SharedArrayBuffer,
    private readonly index: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.cells = new Int32Array(buffer);
  }

  static buffer(threads: number): SharedArrayBuffer {
    return new SharedArrayBuffer(4 * (1 + threads));
  }

  /** This thread accepts connections from now on. Shares are of the threads serving: a
   *  thread that has not started (or could not share the socket) has none. */
  serving(): void {
    Atomics.add(this.cells, 0, 1);
  }

  /** This thread stops accepting (it is closing). */
  stopped(): void {
    Atomics.sub(this.cells, 0, 1);
  }

  /** Counts a connection this thread accepted until it closes. */
  track(socket: Socket): void {
    Atomics.add(this.cells, 1 + this.index, 1);
    socket.once("close", () => Atomics.sub(this.cells, 1 + this.index, 1));
  }

  /** A request starts on `connection` (the TLS socket under HTTPS). True when its answer
   *  should close the connection: this thread is busy and holds more than its share. Each
   *  connection is shed once, one every SHED_INTERVAL_MS at most. */
  shouldClose(connection: Socket, answer: ServerResponse): boolean {
    this.inFlight++;
    // Once, on whichever comes first: an answer queued behind another on a pipelined
    // connection never emits "close" when the connection goes.
    const done = () => {
      answer.off("close", done);
      connection.off("close", done);
      this.inFlight--;
    };
    answer.once("close", done);
    connection.once("close", done);
    if (this.inFlight < BUSY || this.marked.has(connection)) return false;
    const threads = Atomics.load(this.cells, 0);
    if (threads < 2) return false;
    let total = 0;
    for (let i = 1; i < this.cells.length; i++) total += Atomics.load(this.cells, i);
    const mine = Atomics.load(this.cells, 1 + this.index) - this.closing;
    if (mine <= Math.ceil(total / threads) + SLACK) return false;
    const now = this.now();
    if (now - this.lastShed < SHED_INTERVAL_MS) return false;
    this.lastShed = now;
    this.marked.add(connection);
    this.closing++;
    connection.once("close", () => this.closing--);
    return true;
  }
}
