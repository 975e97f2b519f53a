// `node --import tsx bench/store.ts [joins] [group sizes]`: the embedded store alone,
// committing GitHub-shaped joins (replay key, bot instance, three audit events) as fast as
// it can, `group` joins per event-loop turn (what group commit sees at that concurrency),
// with the WAL checkpointed by the worker thread and by SQLite itself. Prints wall and CPU
// time per join, the latency of each turn's commit, and the largest WAL seen. Figures only.
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore } from "../src/server/store/sqlite.ts";
import type { AuditEvent, BotInstanceRecord, ReplayKey } from "../src/server/store/store.ts";
import { githubClaims } from "./tokens.ts";

const JOINS = Number(process.argv[2] ?? 20_000);
const GROUPS = (process.argv[3] ?? "1,8,64").split(",").map(Number);

function join_(): { replay: ReplayKey; instance: BotInstanceRecord; events: AuditEvent[] } {
  const id = randomUUID();
  const now = new Date().toISOString();
  const claims = githubClaims();
  const base = { time: now, tokenName: "bench", joinMethod: "github", remoteAddr: "127.0.0.1" };
  const issued = (data: Record<string, unknown>): AuditEvent => ({
    ...base,
    type: "cert.issued",
    botName: "bench",
    instanceId: id,
    data: { generation: 1, ...data, expires_at: now },
  });
  return {
    replay: { issuer: "https://token.actions.githubusercontent.com", jti: randomUUID(), expiresAt: 2e9 },
    instance: {
      id,
      botName: "bench",
      tokenName: "bench",
      joinMethod: "github",
      claims,
      createdAt: now,
      expiresAt: now,
      generation: 1,
    },
    events: [
      {
        ...base,
        type: "join.success",
        botName: "bench",
        instanceId: id,
        data: { claims, ttl_seconds: 3600, outputs: ["identity", "ssh"] },
      },
      issued({ kind: "tls_client", serial: "3F1C0E9A7B2D4C5E6F708192A3B4C5D6", subject: "CN=bench" }),
      issued({ kind: "ssh_user", key_id: `bot=bench,instance=${id}`, principals: ["bench"] }),
    ],
  };
}

async function run(group: number, checkpointer: boolean): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "idbot-bench-store-"));
  const store = openSqliteStore(dir, { checkpointer });
  const wal = join(dir, "idbot.db-wal");
  let maxWal = 0;
  const sampler = setInterval(() => {
    try {
      maxWal = Math.max(maxWal, statSync(wal).size);
    } catch {}
  }, 10);
  const joins = Array.from({ length: JOINS }, join_);
  const turns: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < JOINS; i += group) {
    const s = performance.now();
    await Promise.all(joins.slice(i, i + group).map((j) => store.commitJoin(j)));
    turns.push(performance.now() - s);
  }
  const wallUs = Number(process.hrtime.bigint() - t0) / 1e3;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(sampler);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  turns.sort((a, b) => a - b);
  const pct = (p: number) =>
    turns[Math.min(turns.length - 1, Math.floor((p / 100) * turns.length))]!.toFixed(2);
  return [
    `group ${String(group).padStart(3)}`,
    checkpointer ? "worker " : "sqlite ",
    `${(wallUs / JOINS).toFixed(1).padStart(6)} µs/join wall`,
    `${((cpu.user + cpu.system) / JOINS).toFixed(1).padStart(6)} µs/join CPU (this thread + the worker)`,
    `turn p50 ${pct(50)} p99 ${pct(99)} max ${pct(100)} ms`,
    `max WAL ${(maxWal / 1048576).toFixed(1)} MB`,
  ].join("  ");
}

for (const group of GROUPS) {
  for (const checkpointer of [false, true]) console.log(await run(group, checkpointer));
}
