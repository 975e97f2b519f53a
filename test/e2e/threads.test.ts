// `idbot serve --workers 1`: one process, two HTTP threads (the main one and a worker),
// each on its own connection to the one SQLite file. What must stay process-wide
// whichever thread a connection lands on: the metrics page (sums every thread), the rate
// limits and the auth-failure alert (counted once, on the main thread), a SIGHUP reload
// and a JWT key rotation (reach every thread before they answer), and the store (a
// replayed token is refused whichever thread saw it first). Requests go out concurrently, each on its own connection, so both threads
// serve (a busy thread is not waiting in accept); the per-thread request counter shows it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { after, before, describe, test } from "node:test";
import { httpCall, postJoin, testPublicKeys } from "../helpers/http.ts";
import { IDBOT, launchServe } from "../helpers/service.ts";
import { githubResources, githubToken, startWorld, type World } from "../helpers/world.ts";

const KEYS = testPublicKeys("threads@idbot");

function idbot(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { IDBOT_ADMIN_TOKEN: _t, ...env } = process.env;
  return new Promise((resolve) => {
    execFile(process.execPath, [IDBOT, ...args], { env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** `name{labels} value` samples of one family, from the Prometheus text page. */
function samples(page: string, name: string): Array<{ labels: string; value: number }> {
  const out: Array<{ labels: string; value: number }> = [];
  for (const line of page.split("\n")) {
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m && m[1] === name) out.push({ labels: m[2] ?? "", value: Number(m[3]) });
  }
  return out;
}

/** Fresh connections, all at once (node:http opens one socket per concurrent request). */
const concurrently = <T>(n: number, f: (i: number) => Promise<T>) =>
  Promise.all(Array.from({ length: n }, (_, i) => f(i)));

/** A request on `agent`'s one kept-alive connection, so always on the same thread. */
function onConnection(agent: Agent, url: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      url,
      {
        agent,
        method: data === undefined ? "GET" : "POST",
        headers: data === undefined ? {} : { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (c) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

/** Which thread serves `agent`'s connection: the one whose request count moves between
 *  two /metrics reads on it. */
async function threadOf(agent: Agent, url: string): Promise<string> {
  const count = (page: string) =>
    new Map(samples(page, "idbot_http_requests_total").map((s) => [s.labels, s.value]));
  const a = count((await onConnection(agent, `${url}/metrics`)).text);
  const b = count((await onConnection(agent, `${url}/metrics`)).text);
  const moved = [...b].filter(([k, v]) => v - (a.get(k) ?? 0) === 1).map(([k]) => k);
  assert.equal(moved.length, 1, "exactly one thread served the second read");
  return moved[0]!;
}

/** Two kept-alive connections that landed on different threads. */
async function connectionsOnTwoThreads(url: string): Promise<[Agent, Agent]> {
  const agents: Agent[] = [];
  try {
    for (let i = 0; i < 40; i++) {
      const held = await Promise.all(
        Array.from({ length: 4 }, () => new Agent({ keepAlive: true, maxSockets: 1 })).map(async (agent) => {
          // Open all four connections at once, then ask each which thread it is on.
          await onConnection(agent, `${url}/healthz`);
          return agent;
        }),
      );
      agents.push(...held);
      const threads = new Map<string, Agent>();
      for (const agent of held) threads.set(await threadOf(agent, url), agent);
      if (threads.size >= 2) {
        const [a, b] = [...threads.values()] as [Agent, Agent];
        for (const other of agents) if (other !== a && other !== b) other.destroy();
        return [a, b];
      }
    }
  } catch (e) {
    for (const agent of agents) agent.destroy();
    throw e;
  }
  throw new Error("no two connections landed on different threads in 40 tries");
}

let world: World;
/** Bot instances in the service's store, as `idbot admin bot-instances ls` lists them. */
async function instanceCount(): Promise<number> {
  const r = await idbot([
    "admin",
    "bot-instances",
    "ls",
    "--data-dir",
    world.service.dataDir,
    "--format",
    "json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as unknown[]).length;
}
/** `idbot serve` flags for another service beside the world's, on the same resources. */
const serveArgs = (name: string, ...flags: string[]) => [
  "--data-dir",
  `${world.dir}/${name}`,
  "--listen",
  "127.0.0.1:0",
  "--resources",
  world.service.resourcesFile,
  ...flags,
];
const joinBody = async (token = "github-deploy", claims?: Record<string, unknown>) => ({
  token,
  join_method: "github",
  id_token: await world.github.mint({ audience: world.service.url, ...(claims ? { claims } : {}) }),
  public_keys: KEYS,
  outputs: ["identity", "ssh"],
});

before(async () => {
  world = await startWorld({
    serviceArgs: ["--workers", "1", "--rate-limit", "0"],
    resources: (host) => githubResources(host, githubToken(host, "github-other")),
  });
});
after(async () => {
  await world?.close();
});

describe("idbot serve --workers 1", () => {
  test("joins spread over both threads, and every /metrics read adds all threads up", async () => {
    const url = world.service.url;
    const bodies = await concurrently(16, () => joinBody());
    const joins = await concurrently(16, (i) => postJoin(url, bodies[i]));
    for (const j of joins) assert.equal(j.status, 200, j.text);
    const pages = await concurrently(6, () => httpCall(`${url}/metrics`));
    for (const page of pages) {
      assert.equal(page.status, 200);
      const success = samples(page.text, "idbot_joins_total").find((s) => s.labels === 'result="success"');
      assert.equal(success?.value, 16, "every thread's joins, whichever thread answered");
      const ssh = samples(page.text, "idbot_certificates_issued_total").find(
        (s) => s.labels === 'type="ssh"',
      );
      assert.equal(ssh?.value, 16);
      const count = samples(page.text, "idbot_request_duration_seconds_count").find(
        (s) => s.labels === 'route="/v1/join"',
      );
      assert.equal(count?.value, 16, "histograms add up too");
    }
    const byThread = samples(pages[0]!.text, "idbot_http_requests_total").filter((s) => s.value > 0);
    assert.equal(byThread.length, 2, `requests served by both threads: ${JSON.stringify(byThread)}`);
  });

  test("six failed joins, three on each thread, raise the auth-failure alert once", async () => {
    const url = world.service.url;
    const [a, b] = await connectionsOnTwoThreads(url);
    const before = world.service.logs();
    try {
      for (let i = 0; i < 3; i++) {
        for (const agent of [a, b]) {
          const denied = await onConnection(
            agent,
            `${url}/v1/join`,
            await joinBody("github-deploy", { repository: "evil/app" }),
          );
          assert.equal(denied.status, 403, denied.text);
        }
      }
    } finally {
      a.destroy();
      b.destroy();
    }
    let alerts = 0;
    for (let i = 0; i < 50 && alerts === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      alerts =
        world.service.logs().slice(before.length).split("more than 5 authentication failures").length - 1;
    }
    assert.equal(alerts, 1, "one process-wide window, not one per thread");
  });

  test("one ID token sent to both threads at once is accepted once: the threads' store connections share the replay check", async () => {
    const url = world.service.url;
    const [a, b] = await connectionsOnTwoThreads(url);
    try {
      for (let round = 0; round < 5; round++) {
        const body = await joinBody();
        const answers = await Promise.all([a, b].map((agent) => onConnection(agent, `${url}/v1/join`, body)));
        assert.deepEqual(
          answers.map((x) => x.status).sort(),
          [200, 403],
          answers.map((x) => x.text).join("\n"),
        );
        assert.match(answers.find((x) => x.status === 403)!.text, /already used/);
      }
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  test("a burst of joins on both threads all commit: every one is in the store", async () => {
    const url = world.service.url;
    const before = await instanceCount();
    const bodies = await concurrently(48, () => joinBody());
    const joins = await concurrently(48, (i) => postJoin(url, bodies[i]));
    for (const j of joins) assert.equal(j.status, 200, j.text);
    const ids = new Set(joins.map((j) => j.json.bot_instance_id as string));
    assert.equal(ids.size, 48);
    assert.equal(await instanceCount(), before + 48);
  });

  test("a pool of 32 keep-alive connections joining at once: every join succeeds, a connection shed to even the threads out is reopened by the client", async () => {
    const url = world.service.url;
    const agent = new Agent({ keepAlive: true, maxSockets: 32 });
    try {
      for (let round = 0; round < 4; round++) {
        const bodies = await concurrently(32, () => joinBody());
        const answers = await concurrently(32, (i) => onConnection(agent, `${url}/v1/join`, bodies[i]));
        for (const a of answers) assert.equal(a.status, 200, a.text);
      }
    } finally {
      agent.destroy();
    }
    const page = await httpCall(`${url}/metrics`);
    // Whether any was shed depends on where the kernel put the 32; the counter is there.
    assert.match(page.text, /^# TYPE idbot_http_connections_shed_total counter$/m);
  });

  test("SIGHUP reloads the resources in every thread", async () => {
    const url = world.service.url;
    const resources = githubResources(world.github.host).replace("acme/tools", "acme/reloaded");
    writeFileSync(world.service.resourcesFile, resources);
    world.service.proc.kill("SIGHUP");
    const deadline = Date.now() + 10_000;
    for (;;) {
      const bodies = await concurrently(8, () => joinBody("github-other"));
      const answers = await concurrently(8, (i) => postJoin(url, bodies[i]));
      // The reloaded file no longer declares github-other: no thread may still accept it.
      if (answers.every((a) => a.status === 403)) {
        for (const a of answers)
          assert.match(a.json.error.message, /join token "github-other" does not exist/);
        break;
      }
      assert.ok(Date.now() < deadline, `a thread kept the old resources: ${answers.map((a) => a.status)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  test("rotate-jwt over HTTP: every thread publishes and signs with the new key before the command returns", async () => {
    const add = await idbot([
      "admin",
      "admin-tokens",
      "add",
      "--data-dir",
      world.service.dataDir,
      "--name",
      "t",
    ]);
    assert.equal(add.code, 0, add.stderr);
    const token = add.stdout.trim().split("\n").pop()!;
    const rotated = await idbot([
      "admin",
      "rotate-jwt",
      "--server",
      world.service.url,
      "--admin-token",
      token,
    ]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const kid = rotated.stdout.trim().split("\n").pop()!;
    const pages = await concurrently(12, () => httpCall(`${world.service.url}/.well-known/jwks.json`));
    for (const p of pages) {
      assert.ok(
        (p.json.keys as Array<{ kid: string }>).some((k) => k.kid === kid),
        `a thread still publishes the old keys only: ${p.text}`,
      );
    }
  });
});

describe("rate limits span the threads", () => {
  test("--rate-limit 1: a burst from one address gets at most the burst of 2 (+1 refilled) through, whichever thread serves it", async () => {
    const svc = await launchServe(serveArgs("limited", "--workers", "1", "--rate-limit", "1"));
    try {
      // Not JSON: 400 when let through, 429 when limited. Per-thread buckets would let 4 through.
      const answers = await concurrently(8, () =>
        httpCall(`${svc.url}/v1/join`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{",
        }),
      );
      const through = answers.filter((a) => a.status === 400).length;
      const limited = answers.filter((a) => a.status === 429);
      assert.equal(through + limited.length, 8, answers.map((a) => a.status).join(","));
      assert.ok(through >= 2 && through <= 3, `${through} let through`);
      for (const l of limited) assert.match(String(l.headers["retry-after"]), /^\d+$/);
      const metrics = await httpCall(`${svc.url}/metrics`);
      assert.equal(
        samples(metrics.text, "idbot_rate_limited_total").find((s) => s.labels === 'limit="address"')?.value,
        limited.length,
      );
    } finally {
      await svc.stop();
    }
  });
});

describe("--workers", () => {
  test("a bad value is refused with the accepted forms", async () => {
    const r = await idbot(["serve", ...serveArgs("x", "--workers", "two")]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /--workers "two" is not a number of threads: give 0 \(everything on one thread\), 1 to 64, or auto/,
    );
  });

  test("--listen [::1]:0 with two threads: every thread derives the same trust domain from the IPv6 URL", async () => {
    const svc = await launchServe([
      "--data-dir",
      `${world.dir}/ipv6`,
      "--listen",
      "[::1]:0",
      "--resources",
      world.service.resourcesFile,
      "--workers",
      "1",
    ]);
    try {
      assert.match(svc.url, /^http:\/\/\[::1\]:\d+$/);
      const answers = await concurrently(6, () => httpCall(`${svc.url}/healthz`));
      for (const a of answers) assert.equal(a.status, 200, a.text);
    } finally {
      await svc.stop();
    }
  });

  test("--workers 0 serves everything on the main thread", async () => {
    const svc = await launchServe(serveArgs("single", "--workers", "0"));
    try {
      const health = await httpCall(`${svc.url}/healthz`);
      assert.equal(health.status, 200);
      const metrics = await httpCall(`${svc.url}/metrics`);
      const byThread = samples(metrics.text, "idbot_http_requests_total");
      assert.deepEqual(byThread, [{ labels: 'thread="0"', value: 2 }]);
    } finally {
      await svc.stop();
    }
  });
});
