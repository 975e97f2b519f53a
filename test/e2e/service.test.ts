// The bundled `idbot serve` driven over HTTP the way a joining job (or an attacker) talks
// to it: real process, real SQLite store, the fake GitHub issuer over HTTPS, and openssl /
// ssh-keygen checking every certificate it hands out.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { type HttpResult, httpCall, postJoin, testPublicKeys } from "../helpers/http.ts";
import { IDBOT, type Service, startService } from "../helpers/service.ts";
import { githubResources, githubToken, startWorld, type World } from "../helpers/world.ts";

const execFileP = promisify(execFile);

// ---------------------------------------------------------------------------------------
// helpers

function tempDir(prefix = "idbot-svc-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

const PUBLIC_KEYS = testPublicKeys("test@idbot");

function joinBody(idToken: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    token: "github-deploy",
    join_method: "github",
    id_token: idToken,
    public_keys: PUBLIC_KEYS,
    ...extra,
  };
}

/** Rows that show something was issued: bot instances and cert.issued audit events. */
function issuedCounts(dataDir: string): { instances: number; certs: number } {
  const db = new Database(join(dataDir, "idbot.db"), { readonly: true, fileMustExist: true });
  try {
    const instances = (db.prepare("SELECT count(*) AS n FROM bot_instances").get() as { n: number }).n;
    const certs = (
      db.prepare("SELECT count(*) AS n FROM audit WHERE type = 'cert.issued'").get() as { n: number }
    ).n;
    return { instances, certs };
  } finally {
    db.close();
  }
}

/** A refused join: the status, a message naming the problem, and no certificate in the body. */
function assertRefused(res: HttpResult, status: number | number[], message: RegExp): void {
  const statuses = Array.isArray(status) ? status : [status];
  assert.ok(
    statuses.includes(res.status),
    `status ${res.status} (want ${statuses.join(" or ")}): ${res.text}`,
  );
  assert.equal(typeof res.json?.error?.message, "string", `an error body: ${res.text}`);
  assert.match(res.json.error.message, message);
  assert.equal(typeof res.json.error.code, "string");
  assert.equal(res.json.ssh, undefined, "no SSH certificate in a refusal");
  assert.equal(res.json.tls, undefined, "no TLS certificate in a refusal");
  assert.doesNotMatch(res.text, /BEGIN CERTIFICATE|-cert-v01@openssh\.com/, "nothing was issued");
}

/** Runs `fn` and checks that it issued nothing in the store at `dataDir`. */
async function issuesNothing(dataDir: string, fn: () => Promise<void>): Promise<void> {
  const before = issuedCounts(dataDir);
  await fn();
  assert.deepEqual(issuedCounts(dataDir), before, "no bot instance and no certificate were recorded");
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function logLines(service: Service): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of service.logs().split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  }
  return out;
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the bundled CLI to completion (for start-up refusals). */
function runIdbot(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [IDBOT, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d) => {
      stdout += d;
      // A server that started when it should not have: stop it so the test fails cleanly.
      if (/listening on/.test(stdout)) proc.kill("SIGTERM");
    });
    proc.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`idbot ${args.join(" ")} did not exit in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      // Let the pipes drain.
      setImmediate(() => resolve({ code, stdout, stderr }));
    });
  });
}

async function writeFileTemp(name: string, contents: string): Promise<string> {
  const p = join(tempDir("idbot-f-"), name);
  writeFileSync(p, contents);
  return p;
}

// ---------------------------------------------------------------------------------------

let world: World;
const mint = (opts: Parameters<World["github"]["mint"]>[0] = {}) =>
  world.github.mint({ audience: world.service.url, ...opts });

before(async () => {
  world = await startWorld();
});

after(async () => {
  await world?.close();
});

describe("a valid join", () => {
  test("returns an SSH certificate for [idbot-deploy] that ssh-keygen parses and a TLS certificate openssl verifies", async () => {
    const dir = tempDir();
    const started = Date.now();
    const res = await postJoin(world.service.url, joinBody(await mint()));
    assert.equal(res.status, 200, res.text);
    const body = res.json;
    assert.equal(body.bot_name, "deploy");
    assert.match(body.bot_instance_id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(body.ttl_seconds, 3600, "the default TTL is 1h");
    assert.equal(body.ttl_capped, false);
    const expires = Date.parse(body.expires_at);
    assert.ok(
      Math.abs(expires - (started + 3600_000)) < 10_000,
      `expires_at ${body.expires_at} is about 1h away`,
    );
    assert.deepEqual(body.ssh.principals, ["idbot-deploy"]);

    writeFileSync(join(dir, "key-cert.pub"), `${body.ssh.certificate}\n`);
    const cert = await execFileP("ssh-keygen", ["-L", "-f", join(dir, "key-cert.pub")]);
    assert.match(cert.stdout, /Type: ssh-ed25519-cert-v01@openssh\.com user certificate/);
    assert.match(cert.stdout, /Principals: \n\s+idbot-deploy\n\s+Critical Options/);
    assert.match(cert.stdout, /Key ID: "bot=deploy,repository=acme\/app,/);
    // The certificate is for the key we sent and signed by the CA the response names.
    writeFileSync(join(dir, "key.pub"), `${PUBLIC_KEYS.ssh}\n`);
    writeFileSync(join(dir, "user_ca.pub"), `${body.ssh.user_ca}\n`);
    const keyFp = (await execFileP("ssh-keygen", ["-l", "-f", join(dir, "key.pub")])).stdout.split(" ")[1]!;
    const caFp = (await execFileP("ssh-keygen", ["-l", "-f", join(dir, "user_ca.pub")])).stdout.split(
      " ",
    )[1]!;
    assert.match(cert.stdout, new RegExp(`Public key: ED25519-CERT ${keyFp.replace(/[+/]/g, "\\$&")}`));
    assert.match(cert.stdout, new RegExp(`Signing CA: ED25519 ${caFp.replace(/[+/]/g, "\\$&")}`));

    const caRes = await httpCall(`${world.service.url}/v1/ca/tls`);
    assert.equal(caRes.status, 200);
    assert.equal(caRes.text, body.tls.ca, "the join returns the CA that /v1/ca/tls serves");
    writeFileSync(join(dir, "ca.pem"), caRes.text);
    writeFileSync(join(dir, "tls.pem"), body.tls.certificate);
    const v = await execFileP("openssl", [
      "verify",
      "-CAfile",
      join(dir, "ca.pem"),
      "-purpose",
      "sslclient",
      join(dir, "tls.pem"),
    ]);
    assert.match(v.stdout, /tls\.pem: OK/);
    const x = new X509Certificate(body.tls.certificate);
    assert.equal(
      x.publicKey.export({ type: "spki", format: "pem" }).toString(),
      PUBLIC_KEYS.tls,
      "certifies our key",
    );
    assert.match(x.subject, /CN=deploy/);
  });

  test("a requested ttl of 3h is capped at the role's max_ttl of 2h and says so", async () => {
    const started = Date.now();
    const res = await postJoin(world.service.url, joinBody(await mint(), { ttl: 3 * 3600 }));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.ttl_seconds, 7200);
    assert.equal(res.json.ttl_capped, true);
    const expires = Date.parse(res.json.expires_at);
    assert.ok(
      Math.abs(expires - (started + 7200_000)) < 10_000,
      `expires_at ${res.json.expires_at} is about 2h away`,
    );
    const notAfter = Date.parse(new X509Certificate(res.json.tls.certificate).validTo);
    assert.ok(Math.abs(notAfter - expires) <= 1000, "the TLS certificate ends at expires_at");
  });

  test("a requested ttl below the cap is honoured", async () => {
    const res = await postJoin(world.service.url, joinBody(await mint(), { ttl: 1800 }));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.ttl_seconds, 1800);
    assert.equal(res.json.ttl_capped, false);
  });

  test("an ES256 token signed by a key in the issuer's JWKS is accepted", async () => {
    const res = await postJoin(world.service.url, joinBody(await mint({ alg: "ES256" })));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.bot_name, "deploy");
  });
});

describe("the token's time window", () => {
  test("a token that expired 2 minutes ago (beyond the 60 s leeway) is refused as expired", async () => {
    const token = await mint({ issuedAt: "-7m", expiresIn: 300 });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, joinBody(token)), 403, /expired/);
    });
  });

  test("a token that expired 30 s ago is still accepted within the leeway", async () => {
    const res = await postJoin(
      world.service.url,
      joinBody(await mint({ issuedAt: "-330s", expiresIn: 300 })),
    );
    assert.equal(res.status, 200, res.text);
  });

  test("a token whose nbf is 5 minutes in the future is refused", async () => {
    const token = await mint({ notBefore: "+5m" });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, joinBody(token)), 403, /not valid yet|nbf/);
    });
  });

  test("a token whose iat is 5 minutes in the future is refused", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await mint({ issuedAt: "+5m", notBefore: now, expiresIn: 300 });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, joinBody(token)), 403, /issue time|iat/);
    });
  });
});

describe("replay", () => {
  test("the same ID token used twice is refused the second time as already used", async () => {
    const token = await mint();
    const first = await postJoin(world.service.url, joinBody(token));
    assert.equal(first.status, 200, first.text);
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, joinBody(token)), 403, /already used/);
    });
  });

  test("a used ID token stays refused after the service restarts on the same data dir", async () => {
    const publicUrl = "https://idbot.replay.test";
    const resources = githubResources(world.github.host);
    const args = ["--public-url", publicUrl];
    let svc = await startService({ resources, env: world.env, args });
    try {
      const token = await world.github.mint({ audience: publicUrl });
      const first = await postJoin(svc.url, joinBody(token));
      assert.equal(first.status, 200, first.text);
      assert.equal(await svc.stop(), 0);
      svc = await startService({ resources, env: world.env, args, dataDir: svc.dataDir });
      await issuesNothing(svc.dataDir, async () => {
        assertRefused(await postJoin(svc.url, joinBody(token)), 403, /already used/);
      });
      // A fresh token still works after the restart: the refusal is about replay only.
      const fresh = await postJoin(svc.url, joinBody(await world.github.mint({ audience: publicUrl })));
      assert.equal(fresh.status, 200, fresh.text);
    } finally {
      await svc.stop();
    }
  });
});

describe("signature, algorithm and issuer", () => {
  test("a tampered payload is refused for its signature", async () => {
    const token = world.github.tamper(await mint());
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, joinBody(token)), 403, /signature/);
    });
  });

  test('an unsigned token (alg "none") is refused naming the algorithm', async () => {
    const token = world.github.mintNone({ aud: world.service.url });
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, joinBody(token));
      assertRefused(res, 403, /algorithm "none" is not allowed/);
    });
  });

  test("an HS256 token keyed with the issuer's RSA public key is refused (algorithm confusion)", async () => {
    const token = await world.github.mintHS256WithPublicKey({ aud: world.service.url });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(
        await postJoin(world.service.url, joinBody(token)),
        403,
        /algorithm "HS256" is not allowed/,
      );
    });
  });

  test("a token from another issuer is refused naming the issuer", async () => {
    const token = await mint({ issuer: "https://evil.example.com/_services/token" });
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, joinBody(token));
      assertRefused(res, 403, /issuer "https:\/\/evil\.example\.com\/_services\/token" is not/);
      assert.ok(res.json.error.message.includes(world.github.issuer), "names the expected issuer");
    });
  });

  test("a token with a wrong audience is refused naming the audience", async () => {
    const token = await mint({ audience: "https://someone-else.example.com" });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(
        await postJoin(world.service.url, joinBody(token)),
        403,
        /audience "https:\/\/someone-else/,
      );
    });
  });

  test("a token with a 10 KB kid is refused without harming the service", async () => {
    const token = await mint({ kid: "k".repeat(10_000) });
    assert.ok(token.length < 16_384, `the token (${token.length} chars) fits the request's id_token limit`);
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, joinBody(token)), [400, 403], /kid/);
    });
    assert.equal(world.service.proc.exitCode, null, "the service is still running");
    const health = await httpCall(`${world.service.url}/healthz`);
    assert.equal(health.status, 200);
    const next = await postJoin(world.service.url, joinBody(await mint()));
    assert.equal(next.status, 200, next.text);
  });
});

describe("issuer key rotation", () => {
  let rw: World;
  before(async () => {
    rw = await startWorld();
  });
  after(async () => {
    await rw?.close();
  });
  const rmint = (opts: Parameters<World["github"]["mint"]>[0] = {}) =>
    rw.github.mint({ audience: rw.service.url, ...opts });

  test("after the issuer rotates, a token signed with the new kid is accepted (JWKS refetched)", async () => {
    // The service fetches and caches the current key set.
    const first = await postJoin(rw.service.url, joinBody(await rmint()));
    assert.equal(first.status, 200, first.text);
    const fetchesBefore = rw.github.requests.jwks;
    assert.ok(fetchesBefore >= 1, "the service fetched the JWKS");
    const newKid = await rw.github.rotate();
    // The service refetches for an unknown kid at most once a second (its cooldown).
    await new Promise((r) => setTimeout(r, 1100));
    const token = await rmint();
    assert.equal(JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()).kid, newKid);
    const res = await postJoin(rw.service.url, joinBody(token));
    assert.equal(res.status, 200, `a token under the rotated key is accepted: ${res.text}`);
    assert.ok(rw.github.requests.jwks > fetchesBefore, "the JWKS was fetched again for the unknown kid");
  });

  test('after the old keys are dropped, a token with an unknown kid is refused with "no key ... matches"', async () => {
    await rw.github.rotate();
    rw.github.dropOldKeys();
    const token = await rmint({ kid: "no-such-kid-0001" });
    await issuesNothing(rw.service.dataDir, async () => {
      assertRefused(await postJoin(rw.service.url, joinBody(token)), 403, /no key .*matches/);
    });
  });
});

describe("allow rules", () => {
  const EXPECTED_VALUES = ["acme/app", "refs/heads/main", "acme/tools", "production"];

  test("a job from another repository is refused naming the differing fields, not the expected values", async () => {
    const token = await mint({ claims: { repository: "acme/other" } });
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, joinBody(token));
      assertRefused(res, 403, /rule 1 differs in repository; rule 2 differs in repository, environment/);
      for (const v of EXPECTED_VALUES)
        assert.ok(!res.text.includes(v), `the response does not reveal "${v}"`);
    });
    await waitFor("the operator's log line", () =>
      logLines(world.service).some((l) =>
        String((l.audit as { reason?: string } | undefined)?.reason).includes("acme/other"),
      ),
    );
    const line = logLines(world.service).find((l) =>
      String((l.audit as { reason?: string } | undefined)?.reason).includes('got "acme/other"'),
    );
    assert.ok(line, "the operator's log names the job's repository");
    const reason = String((line.audit as { reason: string }).reason);
    assert.match(reason, /rule 1: repository want "acme\/app" got "acme\/other", ref ok/);
    assert.match(
      reason,
      /rule 2: repository want "acme\/tools" got "acme\/other", environment want "production" got null/,
    );
  });

  test("a job on another ref is refused naming ref, and the operator's log has want/got", async () => {
    const token = await mint({ claims: { ref: "refs/heads/feature-x" } });
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, joinBody(token));
      assertRefused(res, 403, /rule 1 differs in ref;/);
      for (const v of EXPECTED_VALUES)
        assert.ok(!res.text.includes(v), `the response does not reveal "${v}"`);
    });
    await waitFor("the operator's log line", () => world.service.logs().includes("refs/heads/feature-x"));
    const line = logLines(world.service).find((l) =>
      String((l.audit as { reason?: string } | undefined)?.reason).includes("refs/heads/feature-x"),
    );
    assert.ok(line, "the operator's log names the job's ref");
    assert.match(
      String((line.audit as { reason: string }).reason),
      /ref want "refs\/heads\/main" got "refs\/heads\/feature-x"/,
    );
  });

  test("an unknown join token is refused naming it", async () => {
    const token = await mint();
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, joinBody(token, { token: "no-such-token" }));
      assertRefused(res, [403, 404], /join token "no-such-token" does not exist/);
    });
  });

  test("an unknown join_method is a bad request naming the field", async () => {
    const token = await mint();
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, joinBody(token, { join_method: "carrier-pigeon" }));
      assertRefused(res, 400, /join_method/);
      assert.equal(res.json.error.code, "bad_request");
    });
  });

  test("a join method other than the token's is refused naming both", async () => {
    const token = await mint();
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, joinBody(token, { join_method: "gitlab" }));
      assertRefused(res, 403, /join token "github-deploy" uses join method "github", not "gitlab"/);
    });
  });
});

describe("malformed requests", () => {
  test("invalid JSON is a 400", async () => {
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, '{"token": "github-deploy",'), 400, /not valid JSON/);
    });
  });

  test("a missing public_keys.tls is a 400 naming public_keys.tls", async () => {
    const body = joinBody(await mint(), { public_keys: { ssh: PUBLIC_KEYS.ssh } });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, body), 400, /public_keys\.tls/);
    });
  });

  test("a ttl of the wrong type is a 400 naming ttl", async () => {
    const body = joinBody(await mint(), { ttl: "3600" });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, body), 400, /\bttl\b/);
    });
  });

  test("an unknown field is a 400 naming it", async () => {
    const body = joinBody(await mint(), { frobnicate: true });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, body), 400, /unknown field "frobnicate"/);
    });
  });

  test("a body over 64 KiB is a 413 before any parsing", async () => {
    // Not JSON at all: a 413 (not a 400) shows the size was checked first.
    const body = `{${"x".repeat(70 * 1024)}`;
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, body), 413, /larger than 65536 bytes/);
    });
  });

  test("a chunked body over 64 KiB (no content-length) is a 413 as well", async () => {
    const body = `{${"x".repeat(70 * 1024)}`;
    await issuesNothing(world.service.dataDir, async () => {
      const res = await postJoin(world.service.url, body, { chunked: true });
      assertRefused(res, 413, /larger than 65536 bytes/);
    });
    assert.equal((await httpCall(`${world.service.url}/healthz`)).status, 200);
  });

  test("content-type text/plain is a 415", async () => {
    const body = JSON.stringify(joinBody(await mint()));
    await issuesNothing(world.service.dataDir, async () => {
      const res = await httpCall(`${world.service.url}/v1/join`, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body,
      });
      assertRefused(res, 415, /application\/json/);
    });
  });

  test("a bad SSH public key line is a 400 naming public_keys.ssh", async () => {
    const body = joinBody(await mint(), {
      public_keys: { ssh: "ssh-ed25519 not-base64!!", tls: PUBLIC_KEYS.tls },
    });
    await issuesNothing(world.service.dataDir, async () => {
      assertRefused(await postJoin(world.service.url, body), 400, /public_keys\.ssh/);
    });
  });
});

describe("audit trail in the embedded store", () => {
  let svc: Service;
  before(async () => {
    svc = await startService({ resources: githubResources(world.github.host), env: world.env });
  });
  after(async () => {
    await svc?.stop();
  });

  test("a success and a failure are recorded; a replayed join creates no second bot instance", async () => {
    const token = await world.github.mint({ audience: svc.url });
    const ok = await postJoin(svc.url, joinBody(token));
    assert.equal(ok.status, 200, ok.text);
    const bad = await postJoin(
      svc.url,
      joinBody(await world.github.mint({ audience: svc.url, claims: { repository: "acme/other" } })),
    );
    assert.equal(bad.status, 403);

    const db = new Database(join(svc.dataDir, "idbot.db"), { readonly: true, fileMustExist: true });
    try {
      type Row = {
        type: string;
        reason: string | null;
        instance_id: string | null;
        bot_name: string | null;
        data: string | null;
      };
      const rows = () =>
        db.prepare("SELECT type, reason, instance_id, bot_name, data FROM audit ORDER BY seq").all() as Row[];
      let audit = rows();
      const ofType = (t: string) => audit.filter((r) => r.type === t);
      assert.equal(ofType("join.success").length, 1);
      assert.equal(ofType("cert.issued").length, 2, "one SSH and one TLS certificate");
      assert.deepEqual(
        ofType("cert.issued")
          .map((r) => JSON.parse(r.data!).kind)
          .sort(),
        ["ssh_user", "tls_client"],
      );
      assert.equal(ofType("join.failure").length, 1);
      assert.match(ofType("join.failure")[0]!.reason ?? "", /repository want "acme\/app" got "acme\/other"/);
      const success = ofType("join.success")[0]!;
      assert.equal(success.instance_id, ok.json.bot_instance_id);
      assert.equal(success.bot_name, "deploy");

      type Inst = { id: string; bot_name: string; token_name: string; claims: string; generation: number };
      const instances = () => db.prepare("SELECT * FROM bot_instances").all() as Inst[];
      assert.equal(instances().length, 1);
      const inst = instances()[0]!;
      assert.equal(inst.id, ok.json.bot_instance_id);
      assert.equal(inst.bot_name, "deploy");
      assert.equal(inst.token_name, "github-deploy");
      assert.equal(inst.generation, 1);
      const claims = JSON.parse(inst.claims) as Record<string, unknown>;
      assert.equal(claims.repository, "acme/app");
      assert.equal(claims.ref, "refs/heads/main");
      assert.equal(claims.jti, undefined, "only the kept claims are stored");

      // Replay: refused, recorded as a failure, and no second instance or certificate.
      const again = await postJoin(svc.url, joinBody(token));
      assertRefused(again, 403, /already used/);
      audit = rows();
      assert.equal(instances().length, 1);
      assert.equal(ofType("cert.issued").length, 2);
      assert.equal(ofType("join.failure").length, 2);
      assert.match(ofType("join.failure")[1]!.reason ?? "", /already used/);
    } finally {
      db.close();
    }
  });
});

describe("health and CA endpoints", () => {
  test("GET /healthz answers 200 {status: ok}", async () => {
    const res = await httpCall(`${world.service.url}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(res.json.status, "ok");
  });

  test("GET /v1/ca/ssh-user and /v1/ca/ssh-host are single OpenSSH lines ssh-keygen accepts", async () => {
    const dir = tempDir();
    for (const which of ["ssh-user", "ssh-host"]) {
      const res = await httpCall(`${world.service.url}/v1/ca/${which}`);
      assert.equal(res.status, 200);
      assert.match(String(res.headers["content-type"]), /^text\/plain/);
      const lines = res.text.split("\n").filter(Boolean);
      assert.equal(lines.length, 1, `${which}: one line`);
      assert.match(lines[0]!, /^ssh-ed25519 AAAA[A-Za-z0-9+/=]+ \S+$/);
      const f = join(dir, `${which}.pub`);
      writeFileSync(f, res.text);
      const r = await execFileP("ssh-keygen", ["-l", "-f", f]);
      assert.match(r.stdout, /^256 SHA256:\S+ .*\(ED25519\)/);
    }
  });

  test("GET /v1/ca/tls is a PEM certificate openssl reads", async () => {
    const res = await httpCall(`${world.service.url}/v1/ca/tls`);
    assert.equal(res.status, 200);
    assert.match(res.text, /^-----BEGIN CERTIFICATE-----\n/);
    const f = join(tempDir(), "ca.pem");
    writeFileSync(f, res.text);
    await execFileP("openssl", ["x509", "-noout", "-in", f]);
    const x = new X509Certificate(res.text);
    assert.equal(x.ca, true, "a CA certificate");
  });
});

describe("serve refuses to start", () => {
  async function serveWith(resources: string, extraArgs: string[] = []) {
    const work = tempDir();
    const resourcesFile = join(work, "resources.yaml");
    writeFileSync(resourcesFile, resources);
    const dataDir = join(work, "data");
    const r = await runIdbot([
      "serve",
      "--data-dir",
      dataDir,
      "--listen",
      "127.0.0.1:0",
      "--resources",
      resourcesFile,
      ...extraArgs,
    ]);
    return { ...r, dataDir, resourcesFile };
  }

  test("plain HTTP on 0.0.0.0 without TLS: exit 2, naming loopback and --tls-cert", async () => {
    const r = await runIdbot([
      "serve",
      "--data-dir",
      join(tempDir(), "data"),
      "--listen",
      "0.0.0.0:0",
      "--resources",
      await writeFileTemp("resources.yaml", githubResources(world.github.host)),
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /loopback/);
    assert.match(r.stderr, /--tls-cert/);
    assert.doesNotMatch(r.stdout, /listening on/);
  });

  test("a resources file with an unknown field: exit 2 with resources.yaml:LINE and the field's path", async () => {
    const text = githubResources(world.github.host).replace(
      "      - repository: acme/app\n",
      "      - repo: acme/app\n",
    );
    assert.notEqual(text, githubResources(world.github.host));
    const line = text.split("\n").findIndex((l) => l.includes("- repo: acme/app")) + 1;
    const r = await serveWith(text);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`resources\\.yaml:${line}: unknown field "spec\\.github\\.allow\\[0\\]\\.repo"`),
    );
    assert.equal(existsSync(r.dataDir), false, "nothing was created before the resources were checked");
  });

  test("an allow rule with no fields: exit 2 naming the rule", async () => {
    const text = githubResources(world.github.host).replace(
      "      - repository: acme/tools\n        environment: production\n",
      "      - {}\n",
    );
    const r = await serveWith(text);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /resources\.yaml:\d+: spec\.github\.allow\[1\]: an allow rule needs at least one field/,
    );
  });

  test("bad YAML syntax: exit 2 with file:line", async () => {
    const text = "kind: role\nversion: v1\nmetadata: { name: broken\nspec:\n  logins: [a]\n";
    const r = await serveWith(text);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /resources\.yaml:[34]: YAML syntax error/);
  });

  test("a bot naming an undeclared role: exit 2 naming the role", async () => {
    const text = githubResources(world.github.host).replace(
      "spec: { roles: [deployer] }",
      "spec: { roles: [deployer, ghost] }",
    );
    const r = await serveWith(text);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /resources\.yaml:\d+: bot "deploy" names role "ghost", which is not declared/);
  });

  test("a data dir that cannot be created: exit 2 naming it", async () => {
    const work = tempDir();
    const blocker = join(work, "file");
    writeFileSync(blocker, "not a directory");
    const r = await runIdbot([
      "serve",
      "--data-dir",
      join(blocker, "data"),
      "--listen",
      "127.0.0.1:0",
      "--resources",
      await writeFileTemp("resources.yaml", githubResources(world.github.host)),
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /data directory .*file\/data/);
  });
});

describe("serve over TLS", () => {
  test("--tls-cert/--tls-key from the test CA: joins work over https on 127.0.0.1", async () => {
    const svc = await startService({
      resources: githubResources(world.github.host),
      env: world.env,
      args: ["--tls-cert", world.ca.serverCertFile, "--tls-key", world.ca.serverKeyFile],
    });
    try {
      assert.match(svc.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const health = await httpCall(`${svc.url}/healthz`, { ca: world.ca.caPem });
      assert.equal(health.status, 200);
      assert.equal(health.json.status, "ok");
      const res = await postJoin(svc.url, joinBody(await world.github.mint({ audience: svc.url })), {
        ca: world.ca.caPem,
      });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json.ssh.principals, ["idbot-deploy"]);
      // Without trusting the test CA, the client refuses the server.
      await assert.rejects(httpCall(`${svc.url}/healthz`), /self.signed|unable to verify|certificate/i);
    } finally {
      await svc.stop();
    }
  });
});

describe("serve over TLS: stopping", () => {
  test("SIGTERM while a client is connected but silent (no TLS handshake yet): every thread stops at once, not after the handshake timeout", async () => {
    const svc = await startService({
      resources: githubResources(world.github.host),
      env: world.env,
      args: ["--tls-cert", world.ca.serverCertFile, "--tls-key", world.ca.serverKeyFile, "--workers", "1"],
    });
    const { hostname, port } = new URL(svc.url);
    const silent = Array.from({ length: 4 }, () => connect({ host: hostname, port: Number(port) }));
    try {
      for (const s of silent) {
        s.on("error", () => {});
        await once(s, "connect");
      }
      const started = Date.now();
      const code = await svc.stop();
      assert.equal(code, 0, svc.logs().slice(-2000));
      // node:https gives a handshake 120 s; closeAllConnections() does not see it.
      assert.ok(Date.now() - started < 10_000, `stopped after ${Date.now() - started} ms`);
    } finally {
      for (const s of silent) s.destroy();
    }
  });
});

describe("SIGHUP reloads the resources", () => {
  let svc: Service;
  const secondToken = (name: string) => githubToken(world.github.host, name);
  before(async () => {
    svc = await startService({ resources: githubResources(world.github.host), env: world.env });
  });
  after(async () => {
    await svc?.stop();
  });

  const count = (re: RegExp) => (svc.logs().match(new RegExp(re.source, "g")) ?? []).length;

  async function hup(expect: RegExp): Promise<void> {
    const before = count(expect);
    svc.proc.kill("SIGHUP");
    await waitFor(`log ${expect}`, () => count(expect) > before);
  }

  test("a token added to the file works after SIGHUP", async () => {
    const early = await postJoin(
      svc.url,
      joinBody(await world.github.mint({ audience: svc.url }), { token: "github-second" }),
    );
    assertRefused(early, [403, 404], /join token "github-second" does not exist/);
    writeFileSync(svc.resourcesFile, githubResources(world.github.host, secondToken("github-second")));
    await hup(/"msg":"resources reloaded"/);
    const res = await postJoin(
      svc.url,
      joinBody(await world.github.mint({ audience: svc.url }), { token: "github-second" }),
    );
    assert.equal(res.status, 200, res.text);
  });

  test("an invalid file on SIGHUP is logged and the previous resources stay in force", async () => {
    writeFileSync(svc.resourcesFile, githubResources(world.github.host, secondToken("github-third")));
    await hup(/"msg":"resources reloaded"/);
    writeFileSync(
      svc.resourcesFile,
      `${githubResources(world.github.host, secondToken("github-third"))}\n    colour: blue\n`,
    );
    await hup(/resource reload failed/);
    const failure = logLines(svc)
      .filter((l) => /reload failed/.test(String(l.msg)))
      .at(-1);
    assert.ok(failure, "the failure is logged");
    assert.equal(failure.level, "error");
    assert.match(
      String(failure.error),
      /resources\.yaml:\d+: unknown field "spec\.github\.colour"|resources\.yaml:\d+:/,
    );
    assert.equal(svc.proc.exitCode, null, "the service keeps running");
    for (const token of ["github-third", "github-deploy"]) {
      const res = await postJoin(
        svc.url,
        joinBody(await world.github.mint({ audience: svc.url }), { token }),
      );
      assert.equal(res.status, 200, `${token}: ${res.text}`);
    }
  });
});
