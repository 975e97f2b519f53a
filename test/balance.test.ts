// ConnectionBalance: which answers of a `serve --workers` thread close their connection.
// Sockets and responses are stand-ins that only emit "close": the policy reads nothing
// else. The clock is the test's.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { describe, test } from "node:test";
import { ConnectionBalance } from "../src/server/balance.ts";

const socket = () => new EventEmitter() as unknown as Socket;
const answer = () => new EventEmitter() as unknown as ServerResponse;
/** What node:net / node:http emit when a connection or an answer is done. */
const closed = (x: Socket | ServerResponse) => {
  (x as unknown as EventEmitter).emit("close");
};

/** Threads sharing one buffer and one clock, each serving and holding `held[i]` connections. */
function threads(held: number[]) {
  const clock = { ms: 0 };
  const buffer = ConnectionBalance.buffer(held.length);
  const all = held.map((n, i) => {
    const balance = new ConnectionBalance(buffer, i, () => clock.ms);
    balance.serving();
    const sockets = Array.from({ length: n }, socket);
    for (const s of sockets) balance.track(s);
    return { balance, sockets };
  });
  return { clock, all };
}

/** One request on every connection of `t` at once (none answered yet), `stepMs` apart:
 *  the connections shed. */
function burst(t: { balance: ConnectionBalance; sockets: Socket[] }, clock: { ms: number }, stepMs = 0) {
  const answers = t.sockets.map(answer);
  const shed = t.sockets.filter((s, i) => {
    clock.ms += stepMs;
    return t.balance.shouldClose(s, answers[i]!);
  });
  return { shed, finish: () => answers.forEach(closed) };
}

describe("ConnectionBalance", () => {
  test("a busy thread holding 20 of 24 connections sheds down to its share plus one, once each", () => {
    const { clock, all } = threads([20, 4]);
    const [a, b] = all;
    const first = burst(a!, clock, 50);
    // share = ceil(24 / 2) = 12; with one of slack the thread keeps 13 and sheds 7.
    assert.equal(first.shed.length, 7);
    first.finish();
    // The shed connections have not closed yet: none is shed twice, and no other
    // connection is shed in their place.
    assert.equal(burst(a!, clock, 50).shed.length, 0);
    // They close; their clients reconnect to the other thread.
    for (const s of first.shed) closed(s);
    for (let i = 0; i < 7; i++) b!.balance.track(socket());
    assert.equal(burst(a!, clock, 50).shed.length, 0, "13 of 24 is within the slack");
    assert.equal(burst(b!, clock, 50).shed.length, 0, "11 of 24 is under the share");
  });

  test("one connection per 50 ms at most: a burst of requests within a few ms sheds one", () => {
    const { clock, all } = threads([20, 4]);
    const [a] = all;
    assert.equal(burst(a!, clock, 1).shed.length, 1, "20 requests 1 ms apart");
    clock.ms += 50;
    assert.equal(burst(a!, clock, 0).shed.length, 1, "the next one, 50 ms later");
  });

  test("a thread that keeps up (fewer than 4 requests in flight) sheds nothing, however uneven the split", () => {
    const { clock, all } = threads([20, 0]);
    const [a] = all;
    for (const s of a!.sockets) {
      clock.ms += 50;
      const r = answer();
      assert.equal(a!.balance.shouldClose(s, r), false);
      closed(r);
    }
  });

  test("requests whose answers never close (pipelined, then the connection went) stop counting with their connection", () => {
    const { clock, all } = threads([20, 0]);
    const [a] = all;
    // Three pipelined requests on each of three connections; the connections go, the
    // answers queued behind the first never emit "close".
    for (const s of a!.sockets.slice(0, 3)) {
      for (let i = 0; i < 3; i++) a!.balance.shouldClose(s, answer());
      closed(s);
    }
    // Not busy: one request at a time sheds nothing, however uneven the split.
    for (const s of a!.sockets.slice(3)) {
      clock.ms += 50;
      const r = answer();
      assert.equal(a!.balance.shouldClose(s, r), false);
      closed(r);
    }
  });

  test("a thread serving alone (the others not started, or no socket to share) sheds nothing", () => {
    const clock = { ms: 0 };
    const alone = new ConnectionBalance(ConnectionBalance.buffer(2), 0, () => clock.ms);
    alone.serving();
    const sockets = Array.from({ length: 10 }, socket);
    for (const s of sockets) alone.track(s);
    assert.equal(burst({ balance: alone, sockets }, clock, 50).shed.length, 0);
  });

  test("an even split sheds nothing; closed connections stop counting", () => {
    const { clock, all } = threads([8, 8]);
    const [a, b] = all;
    const first = [burst(a!, clock, 50), burst(b!, clock, 50)];
    assert.deepEqual(
      first.map((r) => r.shed.length),
      [0, 0],
    );
    for (const r of first) r.finish();
    // b's clients leave: a now holds all 8, is busy, and sheds down to ceil(8 / 2) + 1.
    for (const s of b!.sockets) closed(s);
    assert.equal(burst(a!, clock, 50).shed.length, 3);
  });
});
