// The bundled Action (dist/main.js, dist/post.js) run the way the runner runs it, against
// the bundled `idbot serve`, a GitHub-protocol OIDC issuer on loopback and a real sshd.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { type ActionRun, runActionStep } from "../helpers/runner.ts";
import { IDBOT, MAIN, POST } from "../helpers/service.ts";
import { type Sshd, startSshdForIdbot } from "../helpers/sshd.ts";
import { githubResources, startWorld, type World } from "../helpers/world.ts";

const execFileP = promisify(execFile);
const LOGIN = "idbot-deploy";

const extraResources = `
---
kind: role
version: v1
metadata: { name: elsewhere }
spec: { logins: [someone-else] }
---
kind: bot
version: v1
metadata: { name: other }
spec: { roles: [elsewhere] }
---
kind: token
version: v1
metadata: { name: github-other }
spec:
  join_method: github
  bot_name: other
  github:
    enterprise_server_host: "HOST"
    allow: [{ repository: acme/app }]
`;

let world: World;
let sshd: Sshd | undefined;
let sshSkip: string | undefined;

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

async function runMain(
  inputs: Record<string, string>,
  env: Record<string, string | undefined> = {},
  runnerTemp = tempDir("idbot-rt-"),
) {
  const run = await runActionStep(MAIN, {
    inputs: { server: world.service.url, token: "github-deploy", ...inputs },
    env: {
      ...world.env,
      ACTIONS_ID_TOKEN_REQUEST_URL: world.github.idTokenRequestUrl,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: world.github.idTokenRequestToken,
      ...env,
    },
    runnerTemp,
  });
  return { run, runnerTemp };
}

function failure(run: ActionRun): string {
  return run.annotations
    .filter((a) => a.level === "error")
    .map((a) => a.message)
    .join("\n");
}

before(async () => {
  world = await startWorld({
    resources: (host) => githubResources(host, extraResources.replace("HOST", host)),
  });
  const s = await startSshdForIdbot({
    idbot: IDBOT,
    dataDir: world.service.dataDir,
    serviceUrl: world.service.url,
    login: LOGIN,
  });
  if ("skip" in s) sshSkip = s.skip;
  else sshd = s;
});

after(async () => {
  await sshd?.stop();
  await world?.close();
});

describe("the Action's main and post steps", () => {
  test("joins, writes the identity, ssh logs into a real sshd, openssl verifies, post removes everything", async (t) => {
    const { run, runnerTemp } = await runMain({ "certificate-ttl": "30m" });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const dir = run.state["identity-dir"]!;
    assert.ok(dir.startsWith(runnerTemp), "the identity lives under RUNNER_TEMP");
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const id = run.outputs["identity-dir"]!;
    for (const name of [
      "key",
      "key.pub",
      "key-cert.pub",
      "tlscert",
      "tlskey",
      "tls-ca.pem",
      "ssh-user-ca.pub",
      "known_hosts",
      "ssh_config",
    ]) {
      const st = lstatSync(join(id, name));
      assert.ok(st.isFile(), name);
      assert.equal(st.mode & 0o777, 0o600, `${name} is 0600`);
    }
    assert.equal(run.outputs["ssh-config"], join(id, "ssh_config"));
    assert.equal(run.outputs["known-hosts"], join(id, "known_hosts"));
    assert.equal(run.outputs["tls-cert"], join(id, "tlscert"));
    assert.equal(run.outputs["tls-key"], join(id, "tlskey"));
    assert.equal(run.outputs["tls-ca"], join(id, "tls-ca.pem"));
    assert.match(run.outputs["bot-instance-id"]!, /^[0-9a-f-]{36}$/);
    const ttl = Date.parse(run.outputs["expires-at"]!) - Date.now();
    assert.ok(ttl > 28 * 60_000 && ttl <= 30 * 60_000, `expires in ~30m, got ${ttl} ms`);
    assert.equal(run.env.IDBOT_IDENTITY_DIR, id);
    // Secrets are masked; the non-secret claims are logged for the operator.
    assert.ok(run.masks.length >= 3, "ID token and private key lines are masked");
    const keyBody = readFileSync(join(id, "key"), "utf8").split("\n")[1]!;
    assert.ok(run.masks.includes(keyBody));
    assert.ok(!run.stdout.includes(keyBody.slice(0, 20)) || run.stdout.includes(`::add-mask::${keyBody}`));
    assert.match(run.stdout, /"repository":"acme\/app"/);
    assert.match(run.stdout, /"runner_environment":"github-hosted"/);

    const cert = await execFileP("ssh-keygen", ["-L", "-f", join(id, "key-cert.pub")]);
    assert.match(cert.stdout, /user certificate/);
    assert.match(cert.stdout, new RegExp(`\\n\\s+${LOGIN}\\n`));
    assert.match(cert.stdout, /Key ID: "bot=deploy,repository=acme\/app,run_id=/);

    const v = await execFileP("openssl", [
      "verify",
      "-CAfile",
      join(id, "tls-ca.pem"),
      "-purpose",
      "sslclient",
      join(id, "tlscert"),
    ]);
    assert.match(v.stdout, /: OK/);
    const subj = await execFileP("openssl", [
      "x509",
      "-noout",
      "-subject",
      "-nameopt",
      "RFC2253",
      "-in",
      join(id, "tlscert"),
    ]);
    assert.equal(subj.stdout.trim(), "subject=CN=deploy");

    await t.test("ssh -F ssh_config logs into the real sshd", { skip: sshSkip }, async () => {
      const r = await execFileP("ssh", [
        "-F",
        run.outputs["ssh-config"]!,
        "-p",
        String(sshd!.port),
        `${LOGIN}@127.0.0.1`,
        "echo",
        "idbot-ok",
        "$(whoami)",
      ]);
      assert.equal(r.stdout.trim(), `idbot-ok ${LOGIN}`);
    });

    const post = await runActionStep(POST, { state: run.state, runnerTemp, env: world.env });
    assert.equal(post.code, 0, post.stderr);
    assert.equal(existsSync(dir), false, "post removed the directory");
    assert.deepEqual(readdirSync(runnerTemp), [], "nothing main wrote remains");
  });

  test("a certificate for another principal is refused by sshd", { skip: sshSkip }, async () => {
    const { run } = await runMain({ token: "github-other" });
    assert.equal(run.code, 0, run.stdout);
    await assert.rejects(
      execFileP("ssh", [
        "-F",
        run.outputs["ssh-config"]!,
        "-p",
        String(sshd!.port),
        `${LOGIN}@127.0.0.1`,
        "true",
      ]),
      (e: Error & { stderr?: string }) => /Permission denied/.test(e.stderr ?? ""),
    );
  });

  test("two uses in one job keep separate directories and separate cleanup", async () => {
    const runnerTemp = tempDir("idbot-rt-");
    const a = (await runMain({}, {}, runnerTemp)).run;
    const b = (await runMain({ token: "github-other" }, {}, runnerTemp)).run;
    assert.equal(a.code, 0);
    assert.equal(b.code, 0);
    assert.notEqual(a.state["identity-dir"], b.state["identity-dir"]);
    await runActionStep(POST, { state: a.state, runnerTemp });
    assert.equal(existsSync(a.state["identity-dir"]!), false);
    assert.ok(existsSync(join(b.outputs["identity-dir"]!, "key")), "the other use's files are untouched");
    await runActionStep(POST, { state: b.state, runnerTemp });
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("cleanup: false and IDBOT_SKIP_CLEANUP=true leave the files", async () => {
    const { run, runnerTemp } = await runMain({ cleanup: "false" });
    await runActionStep(POST, { state: run.state, runnerTemp });
    assert.ok(existsSync(run.state["identity-dir"]!));
    const second = await runMain({});
    const post = await runActionStep(POST, {
      state: second.run.state,
      runnerTemp: second.runnerTemp,
      env: { IDBOT_SKIP_CLEANUP: "true" },
    });
    assert.equal(post.code, 0);
    assert.ok(existsSync(second.run.state["identity-dir"]!));
  });

  test("post tolerates files already deleted and never fails the job", async () => {
    const { run, runnerTemp } = await runMain({});
    const { rmSync } = await import("node:fs");
    rmSync(join(run.outputs["identity-dir"]!, "key"));
    const post = await runActionStep(POST, { state: run.state, runnerTemp });
    assert.equal(post.code, 0);
    assert.deepEqual(readdirSync(runnerTemp), []);
    const nothing = await runActionStep(POST, { state: {}, runnerTemp });
    assert.equal(nothing.code, 0);
  });

  test("ssh-hosts narrows the Host patterns of ssh_config and known_hosts", async () => {
    const { run } = await runMain({ "ssh-hosts": "*.example.com, 10.0.0.*" });
    assert.equal(run.code, 0);
    assert.match(readFileSync(run.outputs["ssh-config"]!, "utf8"), /^Host \*\.example\.com 10\.0\.0\.\*$/m);
    assert.match(
      readFileSync(run.outputs["known-hosts"]!, "utf8"),
      /^@cert-authority \*\.example\.com,10\.0\.0\.\* ssh-ed25519 /,
    );
  });

  test("warns when the Action is referenced by a branch", async () => {
    const { run } = await runMain({}, { GITHUB_ACTION_REF: "main" });
    assert.ok(run.annotations.some((a) => a.level === "warning" && /branch/.test(a.message)));
    const pinned = await runMain({}, { GITHUB_ACTION_REF: "v1.2.0" });
    assert.ok(!pinned.run.annotations.some((a) => a.level === "warning"));
  });
});

describe("the Action refuses bad input with a clear error and writes nothing", () => {
  test("missing id-token permission fails at once, without retries", async () => {
    const before = world.github.requests.idToken;
    const { run, runnerTemp } = await runMain(
      { retries: "5" },
      { ACTIONS_ID_TOKEN_REQUEST_URL: undefined, ACTIONS_ID_TOKEN_REQUEST_TOKEN: undefined },
    );
    assert.equal(run.code, 1);
    const msg = failure(run);
    assert.match(msg, /id-token: write/);
    assert.match(msg, /fork/i);
    assert.match(msg, /Dependabot/);
    assert.equal(world.github.requests.idToken, before);
    assert.ok(run.durationMs < 5000);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("a wrong audience is denied with the audience named", async () => {
    const { run, runnerTemp } = await runMain({ audience: "https://not-idbot.example.com" });
    assert.equal(run.code, 1);
    assert.match(
      failure(run),
      /refused the join: the ID token's audience "https:\/\/not-idbot.example.com" is not/,
    );
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("a job from another repository is denied naming the fields that differ", async () => {
    world.github.setClaims({ repository: "acme/other" });
    try {
      const { run, runnerTemp } = await runMain({});
      assert.equal(run.code, 1);
      const msg = failure(run);
      assert.match(
        msg,
        /no allow rule of join token "github-deploy" matches this job \(rule 1 differs in repository; rule 2 differs in repository, environment\)/,
      );
      assert.doesNotMatch(msg, /acme\/tools/, "the operator's expected values are not shown to the job");
      assert.match(run.stdout, /"repository":"acme\/other"/, "the job's own claims are logged");
      assert.deepEqual(readdirSync(runnerTemp), []);
    } finally {
      world.github.setClaims({});
    }
  });

  test("an unknown join token is named", async () => {
    const { run, runnerTemp } = await runMain({ token: "no-such-token" });
    assert.equal(run.code, 1);
    assert.match(failure(run), /join token "no-such-token" does not exist/);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("plain http to a non-loopback service is refused before any request", async () => {
    const { run, runnerTemp } = await runMain({ server: "http://idbot.example.com" });
    assert.equal(run.code, 1);
    assert.match(failure(run), /refusing plain HTTP to idbot.example.com/);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("an unreachable service fails within the deadline", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const { run, runnerTemp } = await runMain({
      server: `http://127.0.0.1:${port}`,
      retries: "20",
      deadline: "3s",
    });
    assert.equal(run.code, 1);
    assert.match(failure(run), /deadline passed|failed after/);
    assert.match(failure(run), /ECONNREFUSED/);
    assert.ok(run.durationMs < 8000, `took ${run.durationMs} ms`);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("a service answering 503 twice is retried with a fresh ID token each time", async () => {
    let calls = 0;
    const tokens: string[] = [];
    const target = new URL(world.service.url);
    const proxy = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => {
        body += d;
      });
      req.on("end", () => {
        calls++;
        tokens.push((JSON.parse(body) as { id_token: string }).id_token);
        if (calls <= 2) {
          res.writeHead(503, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { code: "unavailable", message: "try later" } }));
          return;
        }
        const fwd = request(
          { host: target.hostname, port: target.port, path: req.url, method: "POST", headers: req.headers },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        fwd.end(body);
      });
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    try {
      const port = (proxy.address() as AddressInfo).port;
      const { run } = await runMain({ server: `http://127.0.0.1:${port}`, audience: world.service.url });
      assert.equal(run.code, 0, run.stdout);
      assert.equal(calls, 3);
      assert.equal(new Set(tokens).size, 3, "a fresh ID token per attempt");
      assert.match(run.stdout, /join attempt 1 failed \(HTTP 503 try later\)/);
    } finally {
      proxy.close();
    }
  });
});
