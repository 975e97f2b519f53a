// Faults under load, with real processes on loopback: a replica SIGKILLed mid-batch while
// clients fail over, PostgreSQL stopped and started under a running service, the issuer's
// JWKS endpoint failing or gone, and the embedded store on a read-only or full disk. The
// invariant checked throughout: a proof (ID token, one-time secret) yields at most one bot
// instance, and what the clients saw matches the rows in the database.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { decodeJwt } from "jose";
import { type FakeGitHub, startFakeGitHub } from "../helpers/fake-github.ts";
import { startTestPostgres, type TestPostgres } from "../helpers/pgserver.ts";
import {
  type Answer,
  type CliRun,
  createJoinSecrets,
  getJson,
  postJson,
  postWithFailover,
  type Replica,
  runIdbot,
  sessionKeys,
  startReplica,
  waitFor,
} from "../helpers/replicas.ts";
import { IDBOT, startService } from "../helpers/service.ts";
import { createTestTlsCA } from "../helpers/testca.ts";
import { githubResources } from "../helpers/world.ts";

const PUBLIC_URL = "https://idbot.faults.test";
const DB = "faults";

let pg: TestPostgres | undefined;
let skip: string | undefined;
let github: FakeGitHub | undefined;
/** A second issuer, for the JWKS outage (it ends closed). */
let jwksIssuer: FakeGitHub | undefined;
let database = "";
let resources = "";
let a: Replica;
let b: Replica;
let env: Record<string, string> = {};

function extraResources(host: string, jwksHost: string): string {
  const gh = (name: string, bot: string, h: string) => `---
kind: token
version: v1
metadata: { name: ${name} }
spec:
  join_method: github
  bot_name: ${bot}
  github:
    enterprise_server_host: "${h}"
    allow: [{ repository: acme/app }]
`;
  return `---
kind: role
version: v1
metadata: { name: edge }
spec: { logins: [edge] }
---
kind: bot
version: v1
metadata: { name: kill }
spec: { roles: [edge] }
---
kind: bot
version: v1
metadata: { name: pgout }
spec: { roles: [edge] }
${gh("gh-kill", "kill", host)}${gh("gh-pg", "pgout", host)}${gh("gh-jwks", "deploy", jwksHost)}`;
}

before(async () => {
  const started = await startTestPostgres();
  if ("skip" in started) {
    skip = started.skip;
    return;
  }
  pg = started;
  database = await pg.createDatabase(DB);
  const dir = mkdtempSync(join(tmpdir(), "idbot-faults-"));
  const ca = await createTestTlsCA(join(dir, "ca"));
  const tls = { tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile };
  [github, jwksIssuer] = await Promise.all([startFakeGitHub(tls), startFakeGitHub(tls)]);
  env = { NODE_EXTRA_CA_CERTS: ca.caFile };
  resources = githubResources(github.host, extraResources(github.host, jwksIssuer.host));
  const pair = await Promise.all(
    [0, 1].map(() => startReplica({ database, resources, publicUrl: PUBLIC_URL, env })),
  );
  a = pair[0]!;
  b = pair[1]!;
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await Promise.all([github?.close(), jwksIssuer?.close()]);
  await pg?.stop();
});

const sql = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) =>
  pg!.sql<R>(DB, text, values);
const count = async (text: string, values: unknown[] = []) =>
  Number((await sql<{ n: string }>(text, values))[0]!.n);
const show = (r: Answer | undefined) =>
  JSON.stringify(r && { status: r.status, body: r.body, error: r.error });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const jtiOf = (token: string) => String(decodeJwt(token).jti);

const ghBody = (idToken: string, token: string) => ({
  token,
  join_method: "github",
  id_token: idToken,
  public_keys: sessionKeys().public_keys,
});
const secretBody = (secret: string) => ({
  token: secret,
  join_method: "token",
  public_keys: sessionKeys().public_keys,
});

describe("replica and database faults", () => {
  test("a replica SIGKILLed in the middle of 100 joins: clients fail over, nothing is issued twice", async (t) => {
    if (skip) return t.skip(skip);
    const t0 = Date.now();
    const lap = (what: string) => t.diagnostic(`${what} at ${Date.now() - t0} ms`);
    const [victim, secrets] = await Promise.all([
      startReplica({ database, resources, publicUrl: PUBLIC_URL, env }),
      createJoinSecrets(database, "kill", 55),
    ]);
    lap("victim started");
    const cliSecrets = secrets.slice(0, 10);
    const directSecrets = secrets.slice(10);
    const servers = [victim.url, a.url];

    interface Job {
      kind: "github" | "secret";
      answers: Answer[];
      /** Tokens sent, one per attempt (github), or the secret (every attempt). */
      proofs: string[];
    }
    const jobs: Job[] = [];
    for (let i = 0; i < 45; i++) jobs.push({ kind: "github", answers: [], proofs: [] });
    for (let i = 0; i < 45; i++) jobs.push({ kind: "secret", answers: [], proofs: [directSecrets[i]!] });

    let done = 0;
    const runJob = async (job: Job, index: number) => {
      job.answers = await postWithFailover(
        servers,
        "/v1/join",
        async () => {
          if (job.kind === "secret") return secretBody(job.proofs[0]!);
          // A fresh ID token per attempt, as the Action and the CLI do.
          const tok = await github!.mint({ audience: PUBLIC_URL });
          job.proofs.push(tok);
          return ghBody(tok, "gh-kill");
        },
        { start: index % 2, attempts: 4, delayMs: 50 },
      );
      done++;
    };
    const queue = jobs.map((job, i) => () => runJob(job, i));
    const workers = Array.from({ length: 8 }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        await next();
        await sleep(40); // paced, so the kill lands mid-batch
      }
    });
    const cliJoin = (secret: string): Promise<CliRun> =>
      runIdbot(
        [
          "join",
          "--server",
          servers.join(","),
          "--join-method",
          "token",
          "--token",
          secret,
          "--out",
          join(mkdtempSync(join(tmpdir(), "idbot-kill-")), "out"),
          "--format",
          "json",
          "--deadline",
          "30s",
        ],
        { env },
      );
    const cliRuns = cliSecrets.slice(0, 5).map(cliJoin);

    // Kill the victim once a third of the direct joins are answered.
    assert.ok(await waitFor(async () => done >= 30, 20_000, 5), `only ${done} joins done in 20 s`);
    const killedAt = done;
    lap("kill");
    await victim.stop("SIGKILL");
    assert.equal(victim.proc.signalCode, "SIGKILL");
    cliRuns.push(...cliSecrets.slice(5).map(cliJoin));
    await Promise.all(workers);
    lap("direct joins done");
    const cli = await Promise.all(cliRuns);
    lap("CLI joins done");
    t.diagnostic(`killed after ${killedAt} of 90 direct joins`);

    // Every job ended once: a 200, or (a secret whose earlier attempt died with the victim,
    // possibly after its commit) a clean "already used" refusal. Nothing else.
    let successes = 0;
    let networkFailures = 0;
    const instanceIds: string[] = [];
    for (const job of jobs) {
      const last = job.answers.at(-1)!;
      networkFailures += job.answers.filter((x) => x.status === 0).length;
      assert.equal(job.answers.filter((x) => x.status === 200).length, last.status === 200 ? 1 : 0);
      if (last.status === 200) {
        successes++;
        instanceIds.push(last.body.bot_instance_id as string);
      } else {
        assert.equal(last.status, 403, show(last));
        assert.equal(job.kind, "secret", `a github join with fresh tokens is never refused: ${show(last)}`);
        assert.match(last.body.error.message, /already used/);
        assert.ok(
          job.answers.some((x) => x.status === 0),
          "refused only after a failed attempt",
        );
      }
      for (const x of job.answers.slice(0, -1)) assert.ok(x.status === 0 || x.status >= 500, show(x));
    }
    assert.ok(networkFailures > 0, "some joins hit the killed replica");
    for (const r of cli) {
      if (r.code === 0) {
        successes++;
        instanceIds.push((JSON.parse(r.stdout) as { bot_instance_id: string }).bot_instance_id);
      } else {
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /already used/);
        assert.match(r.stderr, /join attempt 1 failed/);
      }
      if (/join attempt \d failed/.test(r.stderr)) networkFailures++;
    }
    assert.equal(new Set(instanceIds).size, instanceIds.length, "no instance id twice");

    // The database agrees: every reported instance exists; rows beyond the reported ones can
    // only be commits whose answer died with the victim.
    const rows = await sql<{ id: string; join_method: string }>(
      "SELECT id, join_method FROM bot_instances WHERE bot_name = 'kill'",
    );
    const inDb = new Set(rows.map((r) => r.id));
    for (const id of instanceIds) assert.ok(inDb.has(id), `instance ${id} answered 200 but is not stored`);
    const lost = rows.length - successes;
    t.diagnostic(`${successes} joins answered 200, ${rows.length} rows, ${networkFailures} failed attempts`);
    assert.ok(
      lost >= 0 && lost <= networkFailures,
      `${lost} unreported rows, ${networkFailures} failed attempts`,
    );

    // Secrets: each used at most once, by a stored instance; every one is spent now.
    const used = await sql<{ used_by_instance: string }>(
      "SELECT used_by_instance FROM join_tokens WHERE bot_name = 'kill' AND used_at IS NOT NULL",
    );
    assert.equal(used.length, 55, "every secret was consumed exactly once");
    assert.equal(new Set(used.map((u) => u.used_by_instance)).size, 55);
    for (const u of used) assert.ok(inDb.has(u.used_by_instance));
    assert.equal(rows.filter((r) => r.join_method === "token").length, 55);

    // ID tokens: the stored jtis are exactly the github rows, and no token joins twice.
    const jtis = jobs.flatMap((j) => (j.kind === "github" ? j.proofs.map(jtiOf) : []));
    const replayed = await count("SELECT count(*) AS n FROM replay WHERE jti = ANY($1)", [jtis]);
    assert.equal(replayed, rows.filter((r) => r.join_method === "github").length);
    const accepted = jobs.filter((j) => j.kind === "github").map((j) => j.proofs.at(-1)!);
    const again = await Promise.all([
      ...accepted.map((tok) => postJson(a.url, "/v1/join", ghBody(tok, "gh-kill"))),
      ...secrets.map((s) => postJson(a.url, "/v1/join", secretBody(s))),
    ]);
    for (const r of again) {
      assert.equal(r.status, 403, `a reused proof is refused: ${show(r)}`);
      assert.match(r.body.error.message, /already used/);
    }
    assert.equal((await getJson(a.url, "/healthz")).status, 200, "the survivor is healthy");
    lap("checked");
  });

  test("PostgreSQL stopped and started under load: 503 during the outage, recovery without a restart", async (t) => {
    if (skip) return t.skip(skip);
    const secrets = await createJoinSecrets(database, "pgout", 3);
    interface Sent {
      token: string;
      answer: Answer;
      phase: "before" | "outage" | "after";
    }
    const sent: Sent[] = [];
    let phase: Sent["phase"] = "before";
    let stop = false;
    const load = [a, b, a, b].map(async (r) => {
      while (!stop) {
        const token = await github!.mint({ audience: PUBLIC_URL });
        const at = phase;
        const answer = await postJson(r.url, "/v1/join", ghBody(token, "gh-pg"));
        sent.push({ token, answer, phase: at === "outage" || phase === "outage" ? "outage" : at });
        await sleep(25);
      }
    });
    try {
      await sleep(800);
      phase = "outage";
      await pg!.pause();
      for (const r of [a, b]) {
        const h = await getJson(r.url, "/healthz");
        assert.equal(h.status, 503, show(h));
        assert.equal(h.body.status, "unhealthy");
      }
      const during = await postJson(a.url, "/v1/join", secretBody(secrets[0]!));
      await sleep(700);
      for (const r of [a, b]) assert.equal(r.proc.exitCode, null, "the replica keeps running");
      await pg!.resume();
      phase = "after";
      assert.ok(
        await waitFor(
          async () =>
            (await getJson(a.url, "/healthz")).status === 200 &&
            (await getJson(b.url, "/healthz")).status === 200,
          15_000,
        ),
        "both replicas report healthy again by themselves",
      );
      await sleep(800);
      stop = true;
      await Promise.all(load);

      // During the outage a join is refused as unavailable (retryable), never a crash or a
      // 4xx the client would give up on.
      assert.equal(during.status, 503, `a join during the outage: ${show(during)}`);
      assert.equal(during.body.error.code, "unavailable");
      const outage = sent.filter((s) => s.phase === "outage" && s.answer.status !== 200);
      assert.ok(outage.length > 0, "the load saw the outage");
      for (const s of outage) assert.equal(s.answer.status, 503, show(s.answer));
      for (const s of sent.filter((x) => x.phase === "before"))
        assert.equal(s.answer.status, 200, show(s.answer));
      // After: both replicas join again, and the secret refused during the outage was not spent.
      const recovered = sent.filter((s) => s.phase === "after");
      assert.ok(recovered.length > 0);
      assert.ok(
        recovered.slice(-8).every((s) => s.answer.status === 200),
        "joins succeed again",
      );
      const retried = await postJson(b.url, "/v1/join", secretBody(secrets[0]!));
      assert.equal(retried.status, 200, show(retried));
    } finally {
      stop = true;
      await Promise.all(load);
    }

    // Nothing issued twice: the rows are the reported successes (a commit whose answer was
    // lost in the shutdown can only add rows for refused requests), and no jti joined twice.
    const ok = sent.filter((s) => s.answer.status === 200);
    const ids = ok.map((s) => s.answer.body.bot_instance_id as string);
    assert.equal(new Set(ids).size, ids.length);
    const rows = await count(
      "SELECT count(*) AS n FROM bot_instances WHERE bot_name = 'pgout' AND join_method = 'github'",
    );
    const failed = sent.length - ok.length;
    assert.ok(rows >= ok.length && rows - ok.length <= failed, `${rows} rows for ${ok.length} successes`);
    const jtis = sent.map((s) => jtiOf(s.token));
    assert.equal(await count("SELECT count(*) AS n FROM replay WHERE jti = ANY($1)", [jtis]), rows);
    assert.equal(
      await count("SELECT count(*) AS n FROM join_tokens WHERE bot_name = 'pgout' AND used_at IS NOT NULL"),
      1,
    );
    const replays = await Promise.all(
      ok.slice(0, 10).map((s) => postJson(b.url, "/v1/join", ghBody(s.token, "gh-pg"))),
    );
    for (const r of replays) assert.equal(r.status, 403, show(r));
  });

  test("the issuer's JWKS answering 503: cached keys keep working, an unknown kid gets a clear error", async (t) => {
    if (skip) return t.skip(skip);
    const iss = jwksIssuer!;
    const mint = (kid?: string) => iss.mint({ audience: PUBLIC_URL, ...(kid ? { kid } : {}) });
    const warm = await postJson(a.url, "/v1/join", ghBody(await mint(), "gh-jwks"));
    assert.equal(warm.status, 200, show(warm));
    iss.failJwksNext(1_000_000, 503);
    t.after(() => iss.failJwksNext(0));
    const fetches = iss.requests.jwks;
    const cached = await postJson(a.url, "/v1/join", ghBody(await mint(), "gh-jwks"));
    assert.equal(cached.status, 200, `a token under a cached kid: ${show(cached)}`);
    assert.equal(iss.requests.jwks, fetches, "no fetch for a cached kid");

    await sleep(1100); // past the refetch cooldown
    const rotated = await iss.rotate();
    const unknown = await postJson(a.url, "/v1/join", ghBody(await mint(rotated), "gh-jwks"));
    const cold = await postJson(b.url, "/v1/join", ghBody(await mint(), "gh-jwks"));
    for (const [what, r] of [
      ["a new kid, keys cannot be refetched", unknown],
      ["a replica that never fetched the keys", cold],
    ] as const) {
      const clear =
        (r.status === 503 && /could not fetch the issuer's signing keys/.test(r.body.error?.message)) ||
        (r.status === 403 && /no key of the issuer matches/.test(r.body.error?.message));
      assert.ok(clear, `${what}: expected 503 "could not fetch the issuer's signing keys": ${show(r)}`);
    }
    iss.failJwksNext(0);
    const back = await postJson(a.url, "/v1/join", ghBody(await mint(rotated), "gh-jwks"));
    assert.equal(back.status, 200, `the rotated key is fetched once the JWKS answers: ${show(back)}`);
  });

  test("the issuer unreachable: cached keys keep working, an unknown kid is a retryable 503", async (t) => {
    if (skip) return t.skip(skip);
    const iss = jwksIssuer!;
    const mint = (kid?: string) => iss.mint({ audience: PUBLIC_URL, ...(kid ? { kid } : {}) });
    const warm = await postJson(a.url, "/v1/join", ghBody(await mint(), "gh-jwks"));
    assert.equal(warm.status, 200, show(warm));
    await iss.close();
    await sleep(1100);
    const cached = await postJson(a.url, "/v1/join", ghBody(await mint(), "gh-jwks"));
    assert.equal(cached.status, 200, `a token under a cached kid: ${show(cached)}`);
    const unknown = await postJson(a.url, "/v1/join", ghBody(await mint(await iss.rotate()), "gh-jwks"));
    assert.equal(unknown.status, 503, show(unknown));
    assert.equal(unknown.body.error.code, "unavailable");
    assert.match(unknown.body.error.message, /could not fetch the issuer's signing keys/);
    assert.match(unknown.body.error.hint, /Retry later/);
  });
});

// ---------------------------------------------------------------------------------------
// Embedded store (SQLite) on a disk that refuses writes. A tmpfs mount gives a read-only
// filesystem and a full one; root can mount here, elsewhere these tests skip.

function mountTmpfs(size: string): string | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: "needs root to mount a tmpfs" };
  const dir = mkdtempSync(join(tmpdir(), "idbot-mnt-"));
  try {
    execFileSyncQuiet("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
    return dir;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `cannot mount a tmpfs here: ${(e as Error).message}` };
  }
}

function execFileSyncQuiet(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
}

function hasUser(name: string): boolean {
  try {
    execFileSync("runuser", ["-u", name, "--", "true"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function unmount(dir: string): void {
  try {
    execFileSyncQuiet("umount", [dir]);
  } catch {
    execFileSyncQuiet("umount", ["-l", dir]);
  }
  rmSync(dir, { recursive: true, force: true });
}

const EDGE_RESOURCES = `kind: role
version: v1
metadata: { name: edge }
spec: { logins: [edge] }
---
kind: bot
version: v1
metadata: { name: edge }
spec: { roles: [edge] }
`;

/** `idbot serve` expected to fail at start: its exit code and stderr (killed after 15 s). */
function serveOnce(dataDir: string, resourcesFile: string, user?: string): Promise<CliRun> {
  const argv = [
    IDBOT,
    "serve",
    "--data-dir",
    dataDir,
    "--listen",
    "127.0.0.1:0",
    "--resources",
    resourcesFile,
  ];
  const [cmd, args] = user
    ? ["runuser", ["-u", user, "--", process.execPath, ...argv]]
    : [process.execPath, argv];
  return new Promise((resolve) => {
    const child = spawn(cmd as string, args as string[], { stdio: ["ignore", "pipe", "pipe"], cwd: "/" });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Writes until the filesystem refuses (ENOSPC); returns the filler's path. */
function fillDisk(dir: string): string {
  const file = join(dir, "filler");
  const fd = openSync(file, "w");
  try {
    for (const size of [1 << 20, 64 << 10, 4096, 512]) {
      const buf = Buffer.alloc(size, 1);
      try {
        for (;;) writeSync(fd, buf);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
      }
    }
  } finally {
    closeSync(fd);
  }
  return file;
}

describe("embedded store on a disk that refuses writes", () => {
  test("a read-only data directory stops the start with exit code 2 and a clear error", async (t) => {
    const mnt = mountTmpfs("8m");
    if (typeof mnt !== "string") return t.skip(mnt.skip);
    try {
      const dataDir = join(mnt, "data");
      const svc = await startService({ resources: EDGE_RESOURCES, dataDir });
      assert.equal((await getJson(svc.url, "/healthz")).status, 200);
      assert.equal(await svc.stop(), 0);
      // 1. The filesystem is read-only (as for root too).
      execFileSyncQuiet("mount", ["-o", "remount,ro", mnt]);
      const ro = await serveOnce(dataDir, svc.resourcesFile);
      assert.equal(ro.code, 2, ro.stderr);
      assert.match(
        ro.stderr,
        /cannot open \S+idbot\.db for writing \(EROFS\): the data directory must be writable by the service/,
      );
      execFileSyncQuiet("mount", ["-o", "remount,rw", mnt]);
      // 2. The service runs as an unprivileged user; the data directory and database are root's.
      if (!hasUser("nobody")) return t.diagnostic("no runuser or no user nobody: the second case is skipped");
      chmodSync(dataDir, 0o755);
      chmodSync(join(dataDir, "idbot.db"), 0o644);
      const resDir = join(mnt, "res");
      mkdirSync(resDir, { mode: 0o755 });
      writeFileSync(join(resDir, "r.yaml"), EDGE_RESOURCES, { mode: 0o644 });
      const nobody = await serveOnce(dataDir, join(resDir, "r.yaml"), "nobody");
      assert.equal(nobody.code, 2, nobody.stderr);
      assert.match(
        nobody.stderr,
        /cannot open \S+idbot\.db for writing \(EACCES\): the data directory must be writable by the service/,
      );
    } finally {
      unmount(mnt);
    }
  });

  test("a full disk: joins fail with a retryable 5xx and a clear log line; after space is freed the service recovers and the database is intact", async (t) => {
    const mnt = mountTmpfs("8m");
    if (typeof mnt !== "string") return t.skip(mnt.skip);
    try {
      const dataDir = join(mnt, "data");
      const svc = await startService({ resources: EDGE_RESOURCES, dataDir });
      let successes = 0;
      try {
        const secrets = await createJoinSecrets({ dataDir }, "edge", 6);
        const first = await postJson(svc.url, "/v1/join", secretBody(secrets[0]!));
        assert.equal(first.status, 200, show(first));
        successes++;
        const filler = fillDisk(mnt);
        for (const s of secrets.slice(1, 4)) {
          const r = await postJson(svc.url, "/v1/join", secretBody(s));
          assert.ok(
            r.status >= 500 && r.status < 600,
            `a join on a full disk is a retryable 5xx: ${show(r)}`,
          );
        }
        assert.match(svc.logs(), /database or disk is full/, "the log names the cause");
        assert.equal(svc.proc.exitCode, null, "the service keeps running");
        rmSync(filler);
        // The secrets refused meanwhile were not spent; the running service writes again.
        for (const s of secrets.slice(1, 4)) {
          let last: Answer | undefined;
          const ok = await waitFor(async () => {
            last = await postJson(svc.url, "/v1/join", secretBody(s));
            return last.status === 200;
          }, 5000);
          assert.ok(ok, `after space is freed: ${show(last)}`);
          successes++;
        }
      } finally {
        assert.equal(await svc.stop(), 0);
      }
      const db = new Database(join(dataDir, "idbot.db"), { readonly: true });
      try {
        assert.deepEqual(db.pragma("integrity_check"), [{ integrity_check: "ok" }]);
        const n = db.prepare("SELECT count(*) AS n FROM bot_instances").get() as { n: number };
        assert.equal(n.n, successes);
        const used = db.prepare("SELECT count(*) AS n FROM join_tokens WHERE used_at IS NOT NULL").get() as {
          n: number;
        };
        assert.equal(used.n, successes, "a secret refused on the full disk was not spent");
      } finally {
        db.close();
      }
      const again = await startService({ resources: EDGE_RESOURCES, dataDir });
      try {
        const [s] = await createJoinSecrets({ dataDir }, "edge", 1);
        assert.equal((await postJson(again.url, "/v1/join", secretBody(s!))).status, 200);
      } finally {
        await again.stop();
      }
      // A first start on a full disk: exit code 2 and the cause.
      const filler = fillDisk(mnt);
      const fresh = await serveOnce(join(mnt, "fresh"), again.resourcesFile);
      rmSync(filler);
      assert.equal(fresh.code, 2, fresh.stderr);
      assert.match(fresh.stderr, /disk (holding the embedded store )?is full/);
    } finally {
      unmount(mnt);
    }
  });
});
