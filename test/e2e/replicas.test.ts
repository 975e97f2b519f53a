// Two `idbot serve --database` replicas on one PostgreSQL database: every single-use check
// (one-time secrets, GitHub ID token jti, bound-keypair challenges, renewal generations)
// holds across them, applied resources reach both, the client fails over from a dead
// replica, and the admin commands read the shared store.
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { boundKeypairSigningInput, renewSigningInput } from "../../src/protocol/join.ts";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";
import { type FakeGitHub, startFakeGitHub } from "../helpers/fake-github.ts";
import { startTestPostgres, type TestPostgres } from "../helpers/pgserver.ts";
import {
  type Answer,
  getJson,
  postJson,
  type Replica,
  runIdbot,
  type SessionKeys,
  sessionKeys,
  startReplica,
  waitFor,
} from "../helpers/replicas.ts";
import { createTestTlsCA } from "../helpers/testca.ts";
import { githubResources } from "../helpers/world.ts";

const PUBLIC_URL = "https://idbot.replicas.test";
const REG_SECRET = "register-me-once-0123456789";
const DB = "replicas";

const extraResources = `---
kind: role
version: v1
metadata: { name: edge }
spec: { logins: [edge] }
---
kind: bot
version: v1
metadata: { name: edge }
spec: { roles: [edge] }
---
kind: token
version: v1
metadata: { name: edge-bound }
spec:
  join_method: bound_keypair
  bot_name: edge
  bound_keypair:
    onboarding: { registration_secret: "${REG_SECRET}" }
    recovery: { mode: standard, limit: 5 }
`;

let pg: TestPostgres | undefined;
let skip: string | undefined;
let github: FakeGitHub | undefined;
let database = "";
let a: Replica;
let b: Replica;
let env: Record<string, string> = {};

before(async () => {
  const started = await startTestPostgres();
  if ("skip" in started) {
    skip = started.skip;
    return;
  }
  pg = started;
  database = await pg.createDatabase(DB);
  const dir = mkdtempSync(join(tmpdir(), "idbot-replicas-"));
  const ca = await createTestTlsCA(join(dir, "ca"));
  github = await startFakeGitHub({ tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile });
  env = { NODE_EXTRA_CA_CERTS: ca.caFile };
  const resources = githubResources(github.host, extraResources);
  // Both replicas share one public URL: the audience of the GitHub tokens they accept.
  const pair = await Promise.all(
    [0, 1].map(() => startReplica({ database, resources, publicUrl: PUBLIC_URL, env })),
  );
  a = pair[0]!;
  b = pair[1]!;
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await github?.close();
  await pg?.stop();
});

const sql = <R extends Record<string, unknown>>(text: string, values: unknown[] = []) =>
  pg!.sql<R>(DB, text, values);

const ghJoin = (idToken: string, token = "github-deploy") => ({
  token,
  join_method: "github",
  id_token: idToken,
  public_keys: sessionKeys().public_keys,
});

const secretJoin = (secret: string) => ({
  token: secret,
  join_method: "token",
  public_keys: sessionKeys().public_keys,
});

async function addSecret(bot = "edge"): Promise<string> {
  const r = await runIdbot(["admin", "tokens", "add", "--database", database, "--bot", bot]);
  assert.equal(r.code, 0, r.stderr);
  const secret = r.stdout.trim().split("\n").pop()!;
  assert.match(secret, /^idbot_join_[A-Za-z0-9_-]{32}$/);
  return secret;
}

const show = (r: Answer) => JSON.stringify({ status: r.status, body: r.body, error: r.error });

describe("two replicas on one PostgreSQL database", () => {
  test("a replica's start-up peak memory (VmHWM) stays under 150 MB", async (t) => {
    if (skip) return t.skip(skip);
    // Decrypting the five CA keys runs scrypt (32 MB each): in parallel that peaked at ~200 MB.
    for (const r of [a, b]) {
      const status = readFileSync(`/proc/${r.proc.pid}/status`, "utf8");
      const hwmMb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
      assert.ok(hwmMb < 150, `replica peak RSS ${hwmMb.toFixed(1)} MB`);
    }
  });

  test("a one-time secret raced by 20 joins across both replicas works exactly once", async (t) => {
    if (skip) return t.skip(skip);
    const secret = await addSecret();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => postJson(i % 2 ? b.url : a.url, "/v1/join", secretJoin(secret))),
    );
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, `exactly one join succeeds: ${results.map((r) => r.status).join(",")}`);
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 403, show(r));
      assert.match(r.body.error.message, /already used/);
    }
    const id = ok[0]!.body.bot_instance_id as string;
    const rows = await sql<{ used_by_instance: string | null }>(
      "SELECT used_by_instance FROM join_tokens WHERE used_at IS NOT NULL AND used_by_instance = $1",
      [id],
    );
    assert.equal(rows.length, 1, "the secret is marked used by the one instance that joined");
    const [inst] = await sql<{ n: string }>("SELECT count(*) AS n FROM bot_instances WHERE id = $1", [id]);
    assert.equal(Number(inst!.n), 1);
  });

  test("a GitHub ID token accepted by one replica is refused as a replay by the other, even when raced", async (t) => {
    if (skip) return t.skip(skip);
    const token = await github!.mint({ audience: PUBLIC_URL });
    const first = await postJson(a.url, "/v1/join", ghJoin(token));
    assert.equal(first.status, 200, show(first));
    const replay = await postJson(b.url, "/v1/join", ghJoin(token));
    assert.equal(replay.status, 403, show(replay));
    assert.match(replay.body.error.message, /already used/);

    // The same fresh token sent 10 times at once, alternating replicas: one certificate.
    const raced = await github!.mint({ audience: PUBLIC_URL });
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => postJson(i % 2 ? a.url : b.url, "/v1/join", ghJoin(raced))),
    );
    assert.equal(results.filter((r) => r.status === 200).length, 1, results.map((r) => r.status).join(","));
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 403, show(r));
      assert.match(r.body.error.message, /already used/);
    }
  });

  test("a bound-keypair challenge from replica A is answered on replica B, and only once", async (t) => {
    if (skip) return t.skip(skip);
    const bound = generateBoundKey();
    const ch = await postJson(a.url, "/v1/join/challenge", {
      token: "edge-bound",
      join_method: "bound_keypair",
    });
    assert.equal(ch.status, 200, show(ch));
    const keys = sessionKeys();
    const body = {
      token: "edge-bound",
      join_method: "bound_keypair",
      public_keys: keys.public_keys,
      bound_keypair: {
        public_key: bound.line,
        challenge_id: ch.body.challenge_id,
        signature: sign(
          null,
          boundKeypairSigningInput("edge-bound", ch.body.challenge_id, ch.body.nonce, keys.public_keys),
          bound.privateKey,
        ).toString("base64"),
        registration_secret: REG_SECRET,
      },
    };
    const onB = await postJson(b.url, "/v1/join", body);
    assert.equal(onB.status, 200, show(onB));
    assert.ok(onB.body.join_state, "the first join returns a join state");
    for (const url of [a.url, b.url]) {
      const again = await postJson(url, "/v1/join", body);
      assert.equal(again.status, 403, show(again));
      assert.match(again.body.error.message, /challenge is unknown or was already answered/);
    }
  });

  test("a renewal on replica A, then a stale-generation renewal on replica B, locks the instance", async (t) => {
    if (skip) return t.skip(skip);
    const secret = await addSecret();
    const keys = sessionKeys();
    const joined = await postJson(a.url, "/v1/join", {
      ...secretJoin(secret),
      public_keys: keys.public_keys,
    });
    assert.equal(joined.status, 200, show(joined));
    const id = joined.body.bot_instance_id as string;
    const r1 = await renew(a.url, id, 1, joined.body.tls.certificate, keys);
    assert.equal(r1.status, 200, show(r1));
    assert.equal(r1.body.generation, 2);
    const stale = await renew(b.url, id, 1, joined.body.tls.certificate, keys);
    assert.equal(stale.status, 403, show(stale));
    assert.match(stale.body.error.message, /identity was copied; the bot instance is now locked/);
    const current = await renew(b.url, id, 2, r1.body.tls.certificate, r1.keys);
    assert.equal(current.status, 403, "a locked instance cannot renew on either replica");
    const [row] = await sql<{ generation: number; locked_reason: string | null }>(
      "SELECT generation, locked_reason FROM bot_instances WHERE id = $1",
      [id],
    );
    assert.equal(row!.generation, 2);
    assert.match(row!.locked_reason ?? "", /generation 1 presented, current is 2/);
  });

  test("a token applied with `idbot admin apply --database` works on both replicas within seconds", async (t) => {
    if (skip) return t.skip(skip);
    const file = join(mkdtempSync(join(tmpdir(), "idbot-apply-")), "token.yaml");
    writeFileSync(
      file,
      `kind: token\nversion: v1\nmetadata: { name: github-applied }\nspec:\n  join_method: github\n  bot_name: deploy\n  github:\n    enterprise_server_host: "${github!.host}"\n    allow: [{ repository: acme/applied }]\n`,
    );
    const claims = { repository: "acme/applied" };
    for (const r of [a, b]) {
      const before = await postJson(
        r.url,
        "/v1/join",
        ghJoin(await github!.mint({ audience: PUBLIC_URL, claims }), "github-applied"),
      );
      assert.equal(before.status, 403, show(before));
      assert.match(before.body.error.message, /join token "github-applied" does not exist/);
    }
    const applied = await runIdbot(["admin", "apply", "--database", database, "-f", file]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stderr, /applied token\/github-applied/);
    // Each replica polls the store every 2 s; both are tried side by side, for at most 10 s.
    const t0 = Date.now();
    await Promise.all(
      [a, b].map(async (r) => {
        let last: Answer | undefined;
        const ok = await waitFor(
          async () => {
            const tok = await github!.mint({ audience: PUBLIC_URL, claims });
            last = await postJson(r.url, "/v1/join", ghJoin(tok, "github-applied"));
            return last.status === 200;
          },
          10_000,
          250,
        );
        assert.ok(ok, `replica ${r.url} did not pick up the applied token in 10 s: ${show(last!)}`);
        t.diagnostic(`${r.url} honours the applied token after ${Date.now() - t0} ms`);
      }),
    );
  });

  test("the CLI given --server DEAD,LIVE joins through the live replica when the first is down", async (t) => {
    if (skip) return t.skip(skip);
    // A third replica, killed: its URL now refuses connections, as a crashed replica's does.
    const dead = await startReplica({
      database,
      resources: githubResources(github!.host, extraResources),
      publicUrl: PUBLIC_URL,
      env,
    });
    const deadUrl = dead.url;
    await dead.stop("SIGKILL");
    const secret = await addSecret();
    const out = join(mkdtempSync(join(tmpdir(), "idbot-failover-")), "out");
    const r = await runIdbot(
      [
        "join",
        "--server",
        `${deadUrl},${b.url}`,
        "--join-method",
        "token",
        "--token",
        secret,
        "--out",
        out,
        "--format",
        "json",
        "--deadline",
        "20s",
      ],
      { env },
    );
    assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
    const result = JSON.parse(r.stdout) as { dir: string; bot_instance_id: string };
    assert.equal(result.dir, out);
    assert.match(r.stderr, /join attempt 1 failed \(.*\); retrying/, "the failed first attempt is reported");
    const [row] = await sql<{ n: string }>("SELECT count(*) AS n FROM bot_instances WHERE id = $1", [
      result.bot_instance_id,
    ]);
    assert.equal(Number(row!.n), 1);
    // Both replicas down: a clean "unreachable" exit, not a hang.
    const none = await runIdbot(
      [
        "join",
        "--server",
        `${deadUrl},${deadUrl}`,
        "--join-method",
        "token",
        "--token",
        await addSecret(),
        "--out",
        join(out, "..", "none"),
        "--retries",
        "2",
        "--deadline",
        "10s",
      ],
      { env },
    );
    assert.equal(none.code, 3, none.stderr);
  });

  test("one replica's --workers threads share its 10 PostgreSQL connections: four threads under a burst hold at most 4 × 3", async (t) => {
    if (skip) return t.skip(skip);
    const db = "pool_share";
    const r = await startReplica({
      database: await pg!.createDatabase(db),
      resources: githubResources(github!.host),
      env,
      args: ["--workers", "3"],
    });
    try {
      const started = /"msg":"idbot service started".*"threads":4/;
      assert.ok(await waitFor(async () => started.test(r.logs()), 10_000), r.logs());
      // Each /healthz is a query on a pooled connection: 64 at once, five times over,
      // would grow four pools of 10 to 40 connections.
      for (let round = 0; round < 5; round++) {
        const answers = await Promise.all(Array.from({ length: 64 }, () => getJson(r.url, "/healthz")));
        for (const a of answers) assert.equal(a.status, 200, show(a));
      }
      const [row] = await pg!.sql<{ n: string }>(
        db,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'idbot'",
        [db],
      );
      const n = Number(row!.n);
      assert.ok(n <= 12, `${n} connections: more than 4 threads × max(2, ceil(10 / 4))`);
      assert.ok(n >= 4, `${n} connections: every thread opens its own`);
    } finally {
      await r.stop();
    }
  });

  test("`admin tokens ls` and `admin bot-instances ls` read the shared database", async (t) => {
    if (skip) return t.skip(skip);
    const secret = await addSecret();
    const joined = await postJson(b.url, "/v1/join", secretJoin(secret));
    assert.equal(joined.status, 200, show(joined));
    const id = joined.body.bot_instance_id as string;

    const admin = (...args: string[]) => runIdbot(["admin", ...args, "--database", database]);
    // The five listings at once: each is a process of its own.
    const [ls, lsJson, inst, instJson, deploy] = await Promise.all([
      admin("tokens", "ls"),
      admin("tokens", "ls", "--format", "json"),
      admin("bot-instances", "ls"),
      admin("bot-instances", "ls", "--format", "json"),
      admin("bot-instances", "ls", "deploy"),
    ]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^ID\/NAME\s+KIND\s+BOT\/INSTANCE\s+STATUS/);
    assert.match(ls.stdout, /tok-[0-9a-f]{8}\s+one-time\s+edge\s+used /);
    assert.match(ls.stdout, /edge-bound\s+bound_keypair\s+\S+\s+bound, 1 joins/);
    assert.doesNotMatch(ls.stdout, new RegExp(secret), "ls never shows a secret");
    const tokens = JSON.parse(lsJson.stdout) as {
      join_secrets: { usedByInstance?: string; hash?: string }[];
    };
    assert.ok(tokens.join_secrets.some((s) => s.usedByInstance === id));
    assert.ok(
      tokens.join_secrets.every((s) => s.hash === undefined),
      "no hashes either",
    );
    const [count] = await sql<{ n: string }>("SELECT count(*) AS n FROM join_tokens");
    assert.equal(tokens.join_secrets.length, Number(count!.n));

    assert.equal(inst.code, 0, inst.stderr);
    assert.match(inst.stdout, new RegExp(`edge/${id}\\s+token\\s+1\\s+\\S+\\s+\\S+\\s+ok`));
    assert.match(inst.stdout, /LOCKED/, "the instance locked by the stale renewal is listed as such");
    const list = JSON.parse(instJson.stdout) as { id: string }[];
    const [rows] = await sql<{ n: string }>("SELECT count(*) AS n FROM bot_instances");
    assert.equal(list.length, Number(rows!.n));
    assert.equal(deploy.code, 0, deploy.stderr);
    assert.match(deploy.stdout, /deploy\/\S+\s+github\s+1/);
    assert.doesNotMatch(deploy.stdout, /edge\//);
  });
});

function generateBoundKey() {
  const key = generateKeyPairSync("ed25519");
  return { privateKey: key.privateKey, line: ed25519PublicKeyLine(key.publicKey, "bound") };
}

async function renew(
  url: string,
  instanceId: string,
  generation: number,
  certificate: string,
  current: SessionKeys,
): Promise<Answer & { keys: SessionKeys }> {
  const keys = sessionKeys();
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = sign(
    "sha256",
    renewSigningInput(instanceId, generation, timestamp, keys.public_keys),
    current.tlsPrivate,
  ).toString("base64");
  const r = await postJson(url, "/v1/renew", {
    bot_instance_id: instanceId,
    generation,
    certificate,
    timestamp,
    signature,
    public_keys: keys.public_keys,
    heartbeat: { hostname: "edge-1", version: "test" },
  });
  return { ...r, keys };
}
