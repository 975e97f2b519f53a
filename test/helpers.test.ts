// Tests of the end-to-end harnesses themselves: the test CA, the fake GitHub OIDC issuer, the Action
// step runner and the real sshd.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  type FetchImplementation,
  jwtVerify,
} from "jose";
import { type FakeGitHub, startFakeGitHub } from "./helpers/fake-github.ts";
import { parseCommandFile, parseWorkflowCommands, runActionStep } from "./helpers/runner.ts";
import { ensureOpenSSHServer, ensureUser, startSshd } from "./helpers/sshd.ts";
import { createTestTlsCA, type TestTlsCA } from "./helpers/testca.ts";

const execFileP = promisify(execFile);

let dir: string;
let ca: TestTlsCA;
let gh: FakeGitHub;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "idbot-helpers-"));
  ca = await createTestTlsCA(join(dir, "tls"));
  gh = await startFakeGitHub({ tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile });
});

after(async () => {
  await gh?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function httpsGet(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", headers, ca: ca.caPem }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function fetchJwks() {
  const r = await httpsGet(gh.jwksUrl);
  assert.equal(r.status, 200);
  return JSON.parse(r.body) as { keys: Array<Record<string, unknown>> };
}

/** jose's remote JWKS over node:https with the test CA, the way a service would fetch it. */
const caFetch: FetchImplementation = async (url, options) => {
  const r = await httpsGet(url, Object.fromEntries(options.headers));
  return new Response(r.body, { status: r.status, headers: { "content-type": "application/json" } });
};

describe("testca", () => {
  test("server certificate chains to the CA and covers 127.0.0.1, ::1 and localhost", () => {
    const caCert = new X509Certificate(ca.caPem);
    const server = new X509Certificate(ca.serverCert);
    assert.ok(caCert.ca);
    assert.ok(server.checkIssued(caCert));
    assert.ok(server.verify(caCert.publicKey));
    assert.equal(server.checkIP("127.0.0.1"), "127.0.0.1");
    assert.ok(server.checkIP("::1"));
    assert.equal(server.checkHost("localhost"), "localhost");
    assert.match(server.keyUsage?.join(",") ?? "", /1\.3\.6\.1\.5\.5\.7\.3\.1/);
  });
});

describe("fake GitHub OIDC issuer", () => {
  test("discovery document has GHES shape", async () => {
    assert.equal(gh.issuer, `https://${gh.host}/_services/token`);
    const r = await httpsGet(gh.discoveryUrl);
    assert.equal(r.status, 200);
    const doc = JSON.parse(r.body) as Record<string, unknown>;
    assert.equal(doc.issuer, gh.issuer);
    assert.equal(doc.jwks_uri, `${gh.issuer}/.well-known/jwks`);
    assert.equal(doc.jwks_uri, gh.jwksUrl);
    assert.deepEqual(doc.id_token_signing_alg_values_supported, ["RS256"]);
  });

  test("minted tokens verify against the JWKS fetched over HTTPS, with GitHub's header and claims", async () => {
    const jwksBefore = gh.requests.jwks;
    const token = await gh.mint({ audience: "https://idbot.example" });
    const remote = createRemoteJWKSet(new URL(gh.jwksUrl), { [customFetch]: caFetch });
    const { payload, protectedHeader } = await jwtVerify(token, remote, {
      issuer: gh.issuer,
      audience: "https://idbot.example",
      algorithms: ["RS256"],
    });
    assert.ok(gh.requests.jwks > jwksBefore);
    assert.deepEqual(Object.keys(protectedHeader), ["alg", "kid", "typ", "x5t"]);
    assert.equal(protectedHeader.alg, "RS256");
    assert.equal(protectedHeader.typ, "JWT");
    assert.equal(protectedHeader.kid, gh.currentKid());
    assert.equal(payload.sub, "repo:acme/app:ref:refs/heads/main");
    assert.equal(payload.repository, "acme/app");
    assert.equal(payload.repository_owner, "acme");
    assert.equal(payload.ref, "refs/heads/main");
    assert.equal(payload.event_name, "push");
    assert.equal(payload.ref_type, "branch");
    assert.equal(payload.runner_environment, "github-hosted");
    assert.equal(payload.job_workflow_ref, "acme/app/.github/workflows/deploy.yml@refs/heads/main");
    assert.equal(payload.environment, undefined);
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
    assert.equal(payload.exp! - payload.iat!, 300);
    for (const claim of [
      "sha",
      "repository_owner_id",
      "repository_id",
      "repository_visibility",
      "actor",
      "actor_id",
      "workflow",
      "workflow_ref",
      "workflow_sha",
      "job_workflow_sha",
      "head_ref",
      "base_ref",
      "ref_protected",
      "run_id",
      "run_number",
      "run_attempt",
      "nbf",
    ]) {
      assert.ok(claim in payload, `missing claim ${claim}`);
    }
    // A second token has a fresh jti.
    const again = decodeJwt(await gh.mint());
    assert.notEqual(again.jti, payload.jti);
    assert.equal(again.aud, "https://github.com/acme");
  });

  test("claims() derives sub/owner and honours overrides and deletions", () => {
    const env = gh.claims({ environment: "prod" });
    assert.equal(env.sub, "repo:acme/app:environment:prod");
    assert.equal(env.environment, "prod");
    const other = gh.claims({ repository: "octo/tools", ref: "refs/tags/v1" });
    assert.equal(other.repository_owner, "octo");
    assert.equal(other.sub, "repo:octo/tools:ref:refs/tags/v1");
    assert.equal(other.ref_type, "tag");
    const pr = gh.claims({ event_name: "pull_request" });
    assert.equal(pr.sub, "repo:acme/app:pull_request");
    const missing = gh.claims({ repository_id: undefined });
    assert.ok(!("repository_id" in missing));
    assert.equal(gh.claims({ sub: "custom" }).sub, "custom");
  });

  test("bad tokens: none, HS256 with the public key, tampered, ES256, expired, not yet valid, unknown kid", async () => {
    const jwks = createLocalJWKSet((await fetchJwks()) as { keys: [] });
    const opts = { issuer: gh.issuer, audience: "https://github.com/acme", algorithms: ["RS256"] };
    const good = await gh.mint();
    await jwtVerify(good, jwks, opts);

    const none = gh.mintNone();
    assert.equal(decodeProtectedHeader(none).alg, "none");
    assert.ok(none.endsWith("."));
    await assert.rejects(jwtVerify(none, jwks, opts));

    const hs = await gh.mintHS256WithPublicKey();
    assert.equal(decodeProtectedHeader(hs).alg, "HS256");
    assert.equal(decodeProtectedHeader(hs).kid, gh.currentKid());
    await assert.rejects(jwtVerify(hs, jwks, opts));

    const tampered = gh.tamper(good);
    assert.equal(tampered.split(".")[2], good.split(".")[2]);
    assert.equal(decodeJwt(tampered).repository, "evil/app");
    await assert.rejects(jwtVerify(tampered, jwks, opts), { code: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" });

    const es = await gh.mint({ alg: "ES256" });
    await assert.rejects(jwtVerify(es, jwks, opts), { code: "ERR_JOSE_ALG_NOT_ALLOWED" });
    await jwtVerify(es, jwks, { ...opts, algorithms: ["ES256"] }); // it is validly signed, just the wrong alg

    await assert.rejects(jwtVerify(await gh.mint({ expiresIn: -60 }), jwks, opts), {
      code: "ERR_JWT_EXPIRED",
    });
    await assert.rejects(jwtVerify(await gh.mint({ notBefore: "+10m" }), jwks, opts), {
      code: "ERR_JWT_CLAIM_VALIDATION_FAILED",
    });
    await assert.rejects(
      jwtVerify(await gh.mint({ issuer: "https://token.actions.githubusercontent.com" }), jwks, opts),
    );
    await assert.rejects(jwtVerify(await gh.mint({ audience: "other" }), jwks, opts));
    await assert.rejects(jwtVerify(await gh.mint({ kid: "nope" }), jwks, opts), {
      code: "ERR_JWKS_NO_MATCHING_KEY",
    });
    const extra = decodeProtectedHeader(await gh.mint({ header: { jku: "https://evil.example/jwks" } }));
    assert.equal(extra.jku, "https://evil.example/jwks");
  });

  test("rotate() changes kid; old kid stays in the JWKS until dropOldKeys()", async () => {
    const oldKid = gh.currentKid();
    const oldToken = await gh.mint();
    const newKid = await gh.rotate();
    assert.notEqual(newKid, oldKid);
    assert.equal(gh.currentKid(), newKid);
    assert.equal(decodeProtectedHeader(await gh.mint()).kid, newKid);
    // Explicit kid of a retained key signs with that key.
    const oldSigned = await gh.mint({ kid: oldKid });

    const served = await fetchJwks();
    const kids = served.keys.map((k) => k.kid);
    assert.ok(kids.includes(oldKid) && kids.includes(newKid));
    assert.deepEqual(
      gh.publicJwks().keys.map((k) => k.kid),
      kids,
    );
    const opts = { issuer: gh.issuer, audience: "https://github.com/acme", algorithms: ["RS256"] };
    const withBoth = createLocalJWKSet(served as { keys: [] });
    await jwtVerify(oldToken, withBoth, opts);
    await jwtVerify(oldSigned, withBoth, opts);

    gh.dropOldKeys();
    const after = await fetchJwks();
    const kidsAfter = after.keys.map((k) => k.kid);
    assert.ok(!kidsAfter.includes(oldKid));
    assert.ok(kidsAfter.includes(newKid));
    await assert.rejects(jwtVerify(oldToken, createLocalJWKSet(after as { keys: [] }), opts), {
      code: "ERR_JWKS_NO_MATCHING_KEY",
    });
  });

  test("ID-token endpoint: bearer required, default and explicit audience, failNext", async () => {
    const before = gh.requests.idToken;
    const noAuth = await httpsGet(gh.idTokenRequestUrl);
    assert.equal(noAuth.status, 401);
    const wrong = await httpsGet(gh.idTokenRequestUrl, { authorization: "Bearer nope" });
    assert.equal(wrong.status, 401);

    const auth = { authorization: `Bearer ${gh.idTokenRequestToken}` };
    const def = await httpsGet(gh.idTokenRequestUrl, auth);
    assert.equal(def.status, 200);
    const body = JSON.parse(def.body) as { count: number; value: string };
    assert.equal(typeof body.count, "number");
    assert.equal(decodeJwt(body.value).aud, "https://github.com/acme");

    const aud = "https://idbot.example/join?x=1";
    const explicit = await httpsGet(`${gh.idTokenRequestUrl}&audience=${encodeURIComponent(aud)}`, auth);
    assert.equal(decodeJwt((JSON.parse(explicit.body) as { value: string }).value).aud, aud);
    assert.deepEqual(gh.requests.audiences.slice(-2), ["https://github.com/acme", aud]);

    gh.failNext(2);
    assert.equal((await httpsGet(gh.idTokenRequestUrl, auth)).status, 503);
    gh.failNext(1, 500);
    assert.equal((await httpsGet(gh.idTokenRequestUrl, auth)).status, 500);
    assert.equal((await httpsGet(gh.idTokenRequestUrl, auth)).status, 200);
    assert.equal(gh.requests.idToken - before, 7);

    gh.setClaims({ environment: "prod" });
    try {
      const envTok = await httpsGet(gh.idTokenRequestUrl, auth);
      assert.equal(
        decodeJwt((JSON.parse(envTok.body) as { value: string }).value).sub,
        "repo:acme/app:environment:prod",
      );
    } finally {
      gh.setClaims({});
    }

    gh.failJwksNext(1);
    assert.equal((await httpsGet(gh.jwksUrl)).status, 503);
    assert.equal((await httpsGet(gh.jwksUrl)).status, 200);
  });
});

describe("action step runner", () => {
  test("parseCommandFile reads heredoc blocks and name=value lines", () => {
    const text =
      "a<<ghadelimiter_1\nline1\nline2\nghadelimiter_1\nb=plain=value\n\nc<<EOF\r\n\r\nEOF\r\nempty<<X\nX\n";
    assert.deepEqual(parseCommandFile(text), { a: "line1\nline2", b: "plain=value", c: "", empty: "" });
    assert.throws(() => parseCommandFile("a<<D\nno end\n"), /delimiter/);
  });

  test("parseWorkflowCommands unescapes and honours stop-commands", () => {
    const cmds = parseWorkflowCommands(
      [
        "plain",
        "::add-mask::s%25e%0Acret",
        "::error title=T%3A1,file=a.ts,line=3::bad%0Athing",
        "::stop-commands::tok",
        "::error::ignored",
        "::tok::",
        "::warning::w",
      ].join("\n"),
    );
    assert.deepEqual(cmds, [
      { command: "add-mask", properties: {}, message: "s%e\ncret" },
      { command: "error", properties: { title: "T:1", file: "a.ts", line: "3" }, message: "bad\nthing" },
      { command: "warning", properties: {}, message: "w" },
    ]);
  });

  test("a @actions/core step: inputs, outputs, state, env, path, summary, masks, annotations, getIDToken", async () => {
    const coreUrl = import.meta.resolve("@actions/core");
    const scripts = join(dir, "scripts");
    await mkdir(scripts, { recursive: true });
    const main = join(scripts, "main.mjs");
    await writeFile(
      main,
      `import * as core from ${JSON.stringify(coreUrl)};
const token = await core.getIDToken("aud-x");
core.setOutput("token", token);
core.setOutput("multi", "a\\nb");
core.setOutput("input", core.getInput("ssh user") + "|" + core.getInput("server-url", { required: true }));
core.saveState("cleanup", "/tmp/x");
core.exportVariable("IDBOT_FOO", "bar");
core.addPath("/opt/idbot/bin");
core.setSecret("s3cr3t");
core.error("oops", { title: "T", file: "a.ts", startLine: 3 });
core.warning("careful");
await core.summary.addHeading("idbot").addRaw("issued").write();
core.info("cwd=" + process.cwd() + " home=" + process.env.HOME + " gh=" + (process.env.GITHUB_TOKEN ?? "unset"));
`,
    );
    const post = join(scripts, "post.mjs");
    await writeFile(
      post,
      `import * as core from ${JSON.stringify(coreUrl)};
core.setOutput("cleanup", core.getState("cleanup"));
`,
    );
    const runnerTemp = join(dir, "runner-temp");
    await mkdir(runnerTemp, { recursive: true });
    const workDir = join(dir, "step1");
    const before = gh.requests.idToken;
    gh.failNext(1); // @actions/http-client retries a 503
    const run = await runActionStep(main, {
      inputs: { "ssh user": "deploy", "server-url": "https://idbot.example" },
      env: {
        ACTIONS_ID_TOKEN_REQUEST_URL: gh.idTokenRequestUrl,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN: gh.idTokenRequestToken,
        NODE_EXTRA_CA_CERTS: ca.caFile,
        GITHUB_TOKEN: undefined,
      },
      runnerTemp,
      workDir,
    });
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.equal(gh.requests.idToken - before, 2);
    assert.equal(gh.requests.audiences.at(-1), "aud-x");
    const token = run.outputs.token!;
    assert.equal(decodeJwt(token).aud, "aud-x");
    const jwks = createLocalJWKSet((await fetchJwks()) as { keys: [] });
    await jwtVerify(token, jwks, { issuer: gh.issuer, audience: "aud-x" });
    assert.equal(run.outputs.multi, "a\nb");
    assert.equal(run.outputs.input, "deploy|https://idbot.example");
    assert.deepEqual(run.state, { cleanup: "/tmp/x" });
    assert.deepEqual(run.env, { IDBOT_FOO: "bar" });
    assert.deepEqual(run.path, ["/opt/idbot/bin"]);
    assert.match(run.summary, /<h1>idbot<\/h1>/);
    assert.ok(run.masks.includes(token));
    assert.ok(run.masks.includes("s3cr3t"));
    assert.deepEqual(run.annotations[0], {
      level: "error",
      message: "oops",
      properties: { title: "T", file: "a.ts", line: "3" },
    });
    assert.equal(run.annotations[1]?.level, "warning");
    assert.ok(
      run.stdout.includes(`cwd=${join(workDir, "workspace")} home=${join(workDir, "home")} gh=unset`),
    );
    assert.equal(run.home, join(workDir, "home"));
    assert.ok(run.durationMs > 0);

    const postRun = await runActionStep(post, { state: run.state, runnerTemp, workDir });
    assert.equal(postRun.code, 0, postRun.stderr);
    assert.equal(postRun.outputs.cleanup, "/tmp/x");
  });

  test("a failing step reports its exit code and annotations", async () => {
    const coreUrl = import.meta.resolve("@actions/core");
    const script = join(dir, "scripts", "fail.mjs");
    await mkdir(join(dir, "scripts"), { recursive: true });
    await writeFile(
      script,
      `import * as core from ${JSON.stringify(coreUrl)};
core.setFailed("no token: " + (process.env.ACTIONS_ID_TOKEN_REQUEST_URL ?? "unset"));
`,
    );
    const run = await runActionStep(script, {
      runnerTemp: dir,
      env: { ACTIONS_ID_TOKEN_REQUEST_URL: undefined },
    });
    assert.equal(run.code, 1);
    assert.deepEqual(
      run.annotations.map((a) => [a.level, a.message]),
      [["error", "no token: unset"]],
    );
    await rm(run.workDir, { recursive: true, force: true });
  });
});

describe("real sshd", () => {
  test("accepts a user certificate for its principal and refuses others", async (t) => {
    const ensured = await ensureOpenSSHServer();
    if ("skip" in ensured) {
      t.skip(ensured.skip);
      return;
    }
    await ensureUser("idbot-test");
    const sdir = join(dir, "sshd");
    await mkdir(sdir, { recursive: true });
    const keygen = (...args: string[]) => execFileP("ssh-keygen", ["-q", ...args]);
    const hostKey = join(sdir, "host_ed25519");
    const hostCa = join(sdir, "host_ca");
    const userCa = join(sdir, "user_ca");
    const userKey = join(sdir, "user_key");
    const otherKey = join(sdir, "other_key");
    await Promise.all(
      [hostKey, hostCa, userCa, userKey, otherKey].map((k) =>
        keygen("-t", "ed25519", "-N", "", "-C", "", "-f", k),
      ),
    );
    await keygen(
      "-s",
      hostCa,
      "-I",
      "test-host",
      "-h",
      "-n",
      "127.0.0.1,localhost",
      "-V",
      "-5m:+1h",
      `${hostKey}.pub`,
    );
    await keygen("-s", userCa, "-I", "test-user", "-n", "idbot-test", "-V", "-5m:+1h", `${userKey}.pub`);
    await keygen("-s", userCa, "-I", "test-other", "-n", "someone-else", "-V", "-5m:+1h", `${otherKey}.pub`);

    const sshd = await startSshd({
      dir: sdir,
      trustedUserCaKeysFile: `${userCa}.pub`,
      hostKeyFile: hostKey,
      hostCertFile: `${hostKey}-cert.pub`,
    });
    t.after(() => sshd.stop());
    assert.match(await readFile(sshd.configFile, "utf8"), /TrustedUserCAKeys .*user_ca\.pub/);

    const knownHosts = join(sdir, "known_hosts");
    const hostCaPub = (await readFile(`${hostCa}.pub`, "utf8")).trim();
    await writeFile(knownHosts, `@cert-authority [127.0.0.1]:${sshd.port} ${hostCaPub}\n`);

    const ssh = (key: string, strictHost: boolean) =>
      execFileP(
        "ssh",
        [
          "-F",
          "/dev/null",
          "-i",
          key,
          "-o",
          `CertificateFile=${key}-cert.pub`,
          "-o",
          "IdentitiesOnly=yes",
          "-o",
          "IdentityAgent=none",
          "-o",
          `UserKnownHostsFile=${strictHost ? knownHosts : "/dev/null"}`,
          "-o",
          `StrictHostKeyChecking=${strictHost ? "yes" : "no"}`,
          "-o",
          "BatchMode=yes",
          "-o",
          "ConnectTimeout=10",
          "-p",
          String(sshd.port),
          "idbot-test@127.0.0.1",
          "echo hello",
        ],
        { timeout: 20_000 },
      );

    const ok = await ssh(userKey, false).catch((e: Error & { stderr?: string }) => {
      throw new Error(`ssh failed: ${e.stderr}\n--- sshd ---\n${sshd.logs()}`);
    });
    assert.equal(ok.stdout.trim(), "hello");
    // The host certificate is served and verifies against @cert-authority.
    const strict = await ssh(userKey, true);
    assert.equal(strict.stdout.trim(), "hello");

    await assert.rejects(ssh(otherKey, false), (e: Error & { code?: number; stderr?: string }) => {
      assert.equal(e.code, 255);
      assert.match(e.stderr ?? "", /Permission denied/);
      return true;
    });
    // And the right certificate still works after a refusal (no per-source penalty).
    assert.equal((await ssh(userKey, false)).stdout.trim(), "hello");
    assert.match(sshd.logs(), /Accepted publickey for idbot-test/);
    assert.match(sshd.logs(), /name is not a listed principal/);
  });
});
