// The bundled CLI (dist/idbot.js) run as a user types it: `idbot join` against the real
// service with the fake GitHub issuer, configured by flags, IDBOT_* variables and a
// tbot-style config file; ssh into a real sshd with what it wrote; --refresh in place;
// status, certs and cleanup; the Action putting `idbot` on PATH.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from "jose";
import { parseCertificateLine } from "../../src/protocol/ssh.ts";
import { runActionStep } from "../helpers/runner.ts";
import { IDBOT, MAIN, POST } from "../helpers/service.ts";
import { type Sshd, startSshdForIdbot } from "../helpers/sshd.ts";
import { createTestTlsCA } from "../helpers/testca.ts";
import { githubResources, startWorld, type World } from "../helpers/world.ts";

const execFileP = promisify(execFile);
const LOGIN = "idbot-deploy";

let world: World;
let sshd: Sshd | undefined;
let sshSkip: string | undefined;

const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

const GITLAB_AUDIENCE = "https://idbot.test";
let gitlabKey: CryptoKey;
let gitlabJwks: string;

/** A token as GitLab's `id_tokens:` mints it (issuer https://gitlab.example.com). */
function gitlabToken(claims: Record<string, unknown> = {}): Promise<string> {
  const c = {
    namespace_id: "7",
    namespace_path: "acme",
    project_id: "42",
    project_path: "acme/app",
    user_login: "octocat",
    pipeline_id: "1001",
    pipeline_source: "push",
    job_id: "5005",
    ref: "main",
    ref_type: "branch",
    ref_protected: "true",
    ...claims,
  };
  return new SignJWT({ ...c, sub: `project_path:${c.project_path}:ref_type:${c.ref_type}:ref:${c.ref}` })
    .setProtectedHeader({ alg: "RS256", kid: "gl-1", typ: "JWT" })
    .setIssuer("https://gitlab.example.com")
    .setAudience(GITLAB_AUDIENCE)
    .setIssuedAt()
    .setNotBefore("-5s")
    .setExpirationTime("1h")
    .setJti(randomUUID())
    .sign(gitlabKey);
}

function extraResources(caPem: string): string {
  const indent = (pem: string) => pem.trim().split("\n").join("\n    ");
  return `
---
kind: role
version: v1
metadata: { name: everything }
spec:
  logins: [idbot-deploy]
  kubernetes_clusters: [prod]
  kubernetes_groups: [ci-deployers, "repo:{{ join.github.repository }}"]
  databases: [app-db]
  db_users: [ci]
  spiffe: [{ path: "/ci/{{ join.github.repository }}" }]
  jwt_audiences: [vault]
  max_ttl: 2h
---
kind: bot
version: v1
metadata: { name: all }
spec: { roles: [everything] }
---
kind: token
version: v1
metadata: { name: github-all }
spec:
  join_method: github
  bot_name: all
  github:
    enterprise_server_host: "HOST"
    allow: [{ repository: acme/app }]
---
kind: token
version: v1
metadata: { name: gitlab-deploy }
spec:
  join_method: gitlab
  bot_name: deploy
  gitlab:
    domain: gitlab.example.com
    audience: ${GITLAB_AUDIENCE}
    static_jwks: '${gitlabJwks}'
    allow: [{ project_path: "acme/*", ref: main }]
---
kind: kube_cluster
version: v1
metadata: { name: prod }
spec:
  server: https://127.0.0.1:1
  ca: |
    ${indent(caPem)}
---
kind: database
version: v1
metadata: { name: app-db }
spec:
  protocol: postgres
  host: 127.0.0.1
  port: 5432
  ca: |
    ${indent(caPem)}
`;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a CI job shell: nothing of the outer runner, the test CA trusted. */
function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      v === undefined ||
      /^(GITHUB_|ACTIONS_|RUNNER_|IDBOT_|GITLAB_|CI_)/.test(k) ||
      k === "NODE_TEST_CONTEXT"
    )
      continue;
    env[k] = v;
  }
  Object.assign(env, world.env, {
    ACTIONS_ID_TOKEN_REQUEST_URL: world.github.idTokenRequestUrl,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: world.github.idTokenRequestToken,
  });
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function idbot(
  args: string[],
  opts: { env?: Record<string, string | undefined>; script?: string; cwd?: string } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [opts.script ?? IDBOT, ...args], {
      env: baseEnv(opts.env),
      cwd: opts.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface JoinJson {
  dir: string;
  refreshed: boolean;
  bot_name: string;
  bot_instance_id: string;
  expires_at: string;
  outputs: Record<string, string>;
  env: Record<string, string>;
  files: string[];
}

async function joinJson(args: string[], env: Record<string, string | undefined> = {}): Promise<JoinJson> {
  const r = await idbot(["join", "--format", "json", ...args], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as JoinJson;
}

const server = () => world.service.url;

before(async () => {
  // The kube_cluster and database resources name a CA; any real one will do.
  const { caPem } = await createTestTlsCA(tempDir("idbot-ca-"));
  const pair = await generateKeyPair("RS256");
  gitlabKey = pair.privateKey;
  gitlabJwks = JSON.stringify({
    keys: [{ ...(await exportJWK(pair.publicKey)), kid: "gl-1", alg: "RS256", use: "sig" }],
  });
  world = await startWorld({
    resources: (host) => githubResources(host, extraResources(caPem).replace("HOST", host)),
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

describe("idbot join", () => {
  test("from flags: writes the identity, ssh logs in, status/certs describe it, cleanup removes only its files", async (t) => {
    const out = join(tempDir("idbot-cli-"), "creds");
    const j = await joinJson([
      "--server",
      server(),
      "--token",
      "github-deploy",
      "--out",
      out,
      "--certificate-ttl",
      "30m",
    ]);
    assert.equal(j.dir, realpathSync(out));
    assert.equal(j.bot_name, "deploy");
    assert.match(j.bot_instance_id, /^[0-9a-f-]{36}$/);
    const ttl = Date.parse(j.expires_at) - Date.now();
    assert.ok(ttl > 28 * 60_000 && ttl <= 30 * 60_000, `expires in ~30m, got ${ttl} ms`);
    assert.equal(j.outputs["ssh-config"], join(j.dir, "identity", "ssh_config"));
    assert.equal(j.env.IDBOT_IDENTITY_DIR, join(j.dir, "identity"));
    assert.equal(statSync(j.dir).mode & 0o777, 0o700);
    for (const name of ["key", "key-cert.pub", "tlscert", "tlskey", "ssh_config", "known_hosts"]) {
      assert.equal(statSync(join(j.dir, "identity", name)).mode & 0o777, 0o600, name);
    }
    const manifest = JSON.parse(readFileSync(join(j.dir, ".idbot-manifest.json"), "utf8")) as {
      files: string[];
    };
    assert.ok(manifest.files.includes(".idbot-join.json"), "the join record is listed in the manifest");
    const record = JSON.parse(readFileSync(join(j.dir, ".idbot-join.json"), "utf8"));
    assert.equal(record.settings.server, server());
    assert.equal(record.settings["join-method"], "github");
    assert.doesNotMatch(readFileSync(join(j.dir, ".idbot-join.json"), "utf8"), /eyJ/, "no token recorded");

    await t.test("ssh -F ssh_config logs into the real sshd", { skip: sshSkip }, async () => {
      const r = await execFileP("ssh", [
        "-F",
        j.outputs["ssh-config"]!,
        "-p",
        String(sshd!.port),
        `${LOGIN}@127.0.0.1`,
        "echo",
        "cli-ok",
        "$(whoami)",
      ]);
      assert.equal(r.stdout.trim(), `cli-ok ${LOGIN}`);
    });

    const status = await idbot(["status", j.dir]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`Bot\\s+deploy \\(instance ${j.bot_instance_id}\\)`));
    assert.match(status.stdout, /principals\s+idbot-deploy\n/);
    assert.match(status.stdout, /key id\s+bot=deploy,repository=acme\/app/);
    assert.match(status.stdout, /subject\s+CN=deploy\n/);
    assert.doesNotMatch(status.stderr, /WARNING/);
    const sj = JSON.parse((await idbot(["status", j.dir, "--format", "json"])).stdout);
    assert.deepEqual(sj.ssh.principals, [LOGIN]);
    assert.equal(sj.warning, null);
    assert.equal(sj.expired, false);
    // Past 80% of the lifetime: a warning on stderr and in JSON, exit status 0.
    const late = new Date(Date.parse(j.expires_at) - 4 * 60_000).toISOString();
    const warned = await idbot(["status", j.dir, "--at", late, "--format", "json"]);
    assert.equal(warned.code, 0);
    assert.match(
      warned.stderr,
      /WARNING: .*past 80% of their lifetime: 4m of 31m left \(identity\/key-cert\.pub/,
    );
    assert.match(JSON.parse(warned.stdout).warning, /past 80%/);

    const certs = await idbot(["certs", j.dir, "--format", "json"]);
    assert.equal(certs.code, 0, certs.stderr);
    const list = JSON.parse(certs.stdout).certificates as Array<Record<string, string>>;
    const tls = list.find((c) => c.file === "identity/tlscert")!;
    assert.equal(tls.subject, "CN=deploy");
    const serial = (
      await execFileP("openssl", ["x509", "-noout", "-serial", "-in", join(j.dir, "identity/tlscert")])
    ).stdout
      .trim()
      .replace(/^serial=/, "");
    assert.equal(tls.serial?.toUpperCase(), serial.toUpperCase());
    const fp = (
      await execFileP("openssl", [
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        join(j.dir, "identity/tlscert"),
      ])
    ).stdout
      .trim()
      .replace(/^.*Fingerprint=/, "");
    assert.equal(tls.fingerprint, fp);
    const ssh = list.find((c) => c.file === "identity/key-cert.pub")!;
    assert.equal(ssh.role, "SSH user certificate");
    assert.deepEqual(ssh.names, [LOGIN]);
    assert.ok(list.some((c) => c.file === "identity/tls-ca.pem"));
    const certsText = await idbot(["certs", j.dir]);
    assert.match(
      certsText.stdout,
      /identity\/tlscert: TLS client certificate\n {2}serial {7}\S+\n {2}subject {6}CN=deploy/,
    );

    // cleanup removes what the manifest lists and keeps what the user added.
    writeFileSync(join(j.dir, "notes.txt"), "mine");
    const c = await idbot(["cleanup", j.dir, "--format", "json"]);
    assert.equal(c.code, 0, c.stderr);
    assert.deepEqual(readdirSync(j.dir), ["notes.txt"]);
    assert.deepEqual(JSON.parse(c.stdout).kept, ["notes.txt"]);
    const again = await idbot(["cleanup", join(j.dir, "nothing-here")]);
    assert.equal(again.code, 0, "a missing directory is nothing to clean up");
    const byManifest = await joinJson([
      "--server",
      server(),
      "--token",
      "github-deploy",
      "--outputs",
      "identity",
    ]);
    const viaManifest = await idbot([
      "cleanup",
      "--all-from-manifest",
      join(byManifest.dir, ".idbot-manifest.json"),
    ]);
    assert.equal(viaManifest.code, 0, viaManifest.stderr);
    assert.equal(existsSync(byManifest.dir), false);
    const foreign = await idbot(["cleanup", j.dir]);
    assert.equal(foreign.code, 2, "a directory without a manifest is refused");
    assert.ok(existsSync(join(j.dir, "notes.txt")));
  });

  test("every output: status shows the Kubernetes user and groups, database user, SPIFFE ID and JWT audience", async () => {
    const j = await joinJson([
      "--server",
      server(),
      "--token",
      "github-all",
      "--outputs",
      "identity,ssh,kubernetes,database,spiffe-x509,jwt",
      "--kubernetes-cluster",
      "prod",
      "--database",
      "app-db",
      "--database-user",
      "ci",
      "--jwt-audience",
      "vault",
    ]);
    assert.ok(j.dir.startsWith(realpathSync(tmpdir())), "without --out: a fresh directory in the temp dir");
    assert.equal(j.env.KUBECONFIG, join(j.dir, "kubernetes", "kubeconfig.yaml"));
    const s = JSON.parse((await idbot(["status", j.dir, "--format", "json"])).stdout);
    assert.equal(s.kubernetes.cluster, "prod");
    assert.deepEqual(s.kubernetes.groups.sort(), ["ci-deployers", "repo:acme/app"]);
    assert.equal(s.database.user, "ci");
    assert.match(s.spiffe.spiffe_id, /^spiffe:\/\/.+\/ci\/acme\/app$/);
    assert.deepEqual(s.jwt.audiences, ["vault"]);
    assert.equal(s.jwt.subject, s.spiffe.spiffe_id);
    const text = (await idbot(["status", j.dir])).stdout;
    assert.match(text, /groups\s+ci-deployers, repo:acme\/app|groups\s+repo:acme\/app, ci-deployers/);
    assert.match(text, /audience\s+vault/);
    const certs = JSON.parse((await idbot(["certs", j.dir, "--format", "json"])).stdout)
      .certificates as Array<{
      file: string;
    }>;
    for (const f of [
      "kubernetes/kubeconfig.yaml#client-certificate-data",
      "database/tls.crt",
      "spiffe/svid.pem",
      "spiffe/svid_bundle.pem",
    ]) {
      assert.ok(
        certs.some((c) => c.file === f),
        f,
      );
    }
    assert.equal((await idbot(["cleanup", j.dir])).code, 0);
    assert.equal(existsSync(j.dir), false);
  });

  test("--refresh replaces the certificates atomically in place; the Action's post step still cleans up", async () => {
    const runnerTemp = tempDir("idbot-rt-");
    const first = await joinJson(
      ["--server", server(), "--token", "github-deploy", "--outputs", "identity,ssh"],
      {
        RUNNER_TEMP: runnerTemp,
      },
    );
    assert.ok(first.dir.startsWith(realpathSync(runnerTemp)), "the fresh directory is under RUNNER_TEMP");
    const certFile = join(first.dir, "identity", "key-cert.pub");
    const oldCert = readFileSync(certFile, "utf8");
    const oldTls = readFileSync(join(first.dir, "identity", "tlscert"), "utf8");
    const manifestFile = join(first.dir, ".idbot-manifest.json");
    const manifestBefore = readFileSync(manifestFile, "utf8");
    const ino = statSync(certFile).ino;

    // No other flag: the settings recorded by the first join are used.
    const second = await joinJson(["--refresh", first.dir]);
    assert.equal(second.refreshed, true);
    assert.equal(second.dir, first.dir);
    assert.deepEqual([...second.files].sort(), [...first.files].sort(), "the same paths");
    assert.notEqual(second.bot_instance_id, first.bot_instance_id);
    const newCert = readFileSync(certFile, "utf8");
    assert.notEqual(
      parseCertificateLine(newCert.trim()).serial,
      parseCertificateLine(oldCert.trim()).serial,
      "a new SSH certificate serial",
    );
    assert.notEqual(statSync(certFile).ino, ino, "replaced by rename, not rewritten in place");
    assert.equal(readFileSync(manifestFile, "utf8"), manifestBefore, "the manifest is unchanged");
    const everything = readdirSync(first.dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => readFileSync(join(e.parentPath, e.name), "utf8"))
      .join("\n");
    assert.ok(!everything.includes(oldCert.trim()), "the old SSH certificate is gone");
    assert.ok(!everything.includes(oldTls.trim()), "the old TLS certificate is gone");
    assert.ok(
      !readdirSync(join(first.dir, "identity")).some((n) => n.includes(".tmp-")),
      "no temp files left",
    );
    const record = JSON.parse(readFileSync(join(first.dir, ".idbot-join.json"), "utf8"));
    assert.equal(record.joined.bot_instance_id, second.bot_instance_id);

    // A refresh cannot change which files the directory holds.
    const changed = await idbot(["join", "--refresh", first.dir, "--outputs", "identity"]);
    assert.equal(changed.code, 2, changed.stderr);
    assert.match(changed.stderr, /would change which files it holds \(no identity\/known_hosts/);
    assert.equal(readFileSync(manifestFile, "utf8"), manifestBefore);

    const post = await runActionStep(POST, { state: { "identity-dir": first.dir }, runnerTemp });
    assert.equal(post.code, 0, post.stderr);
    assert.equal(existsSync(first.dir), false, "post removed the refreshed directory");
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("IDBOT_* variables and a config file configure the join: flags beat variables, variables beat the file", async () => {
    const dir = tempDir("idbot-cfg-");
    const config = join(dir, "idbot.yaml");
    writeFileSync(
      config,
      `# tbot-style configuration
version: v2
onboarding:
  join_method: github
  token: no-such-token
auth_server: ${server()}
certificate_ttl: 20m
outputs:
  - type: identity
    destination:
      type: directory
      path: ./from-file
  - type: ssh_client
    destination:
      type: directory
      path: ./from-file
`,
    );
    // The file alone: its token is used (and refused).
    const fileOnly = await idbot(["join", "-c", config]);
    assert.equal(fileOnly.code, 1, fileOnly.stderr);
    assert.match(fileOnly.stderr, /join token "no-such-token" does not exist/);
    assert.equal(existsSync(join(dir, "from-file")), false, "nothing written on a denial");

    // Variables beat the file (token, ttl); the file's destination is the directory.
    const envOverFile = await joinJson(["-c", config], {
      IDBOT_TOKEN: "github-deploy",
      IDBOT_CERTIFICATE_TTL: "15m",
    });
    assert.equal(envOverFile.dir, realpathSync(join(dir, "from-file")));
    assert.ok(existsSync(join(envOverFile.dir, "identity", "ssh_config")), "ssh_client → ssh output");
    const ttl15 = Date.parse(envOverFile.expires_at) - Date.now();
    assert.ok(ttl15 > 14 * 60_000 && ttl15 <= 15 * 60_000, `15m from IDBOT_CERTIFICATE_TTL, got ${ttl15}`);

    // Flags beat variables (ttl) and the file's destination (--out).
    const flagged = await joinJson(
      ["-c", config, "--certificate-ttl", "10m", "--out", join(dir, "from-flag")],
      {
        IDBOT_TOKEN: "github-deploy",
        IDBOT_CERTIFICATE_TTL: "15m",
      },
    );
    assert.equal(flagged.dir, realpathSync(join(dir, "from-flag")));
    const ttl10 = Date.parse(flagged.expires_at) - Date.now();
    assert.ok(ttl10 > 9 * 60_000 && ttl10 <= 10 * 60_000, `10m from the flag, got ${ttl10}`);

    // Variables alone, no file.
    const envOnly = await joinJson([], {
      IDBOT_SERVER: server(),
      IDBOT_TOKEN: "github-deploy",
      IDBOT_OUTPUTS: "identity",
      IDBOT_OUT: join(dir, "from-env"),
    });
    assert.equal(envOnly.dir, realpathSync(join(dir, "from-env")));
    assert.equal(envOnly.outputs["ssh-config"], undefined, "IDBOT_OUTPUTS=identity: no ssh_config");

    // A bad value names where it came from.
    const badFileValue = join(dir, "bad-ttl.yaml");
    writeFileSync(
      badFileValue,
      readFileSync(config, "utf8").replace("certificate_ttl: 20m", "certificate_ttl: 99h"),
    );
    const r1 = await idbot(["join", "-c", badFileValue], { env: { IDBOT_TOKEN: "github-deploy" } });
    assert.equal(r1.code, 2);
    assert.match(r1.stderr, /certificate_ttl \(.*bad-ttl\.yaml:7\): must be between 1s and 24h/);
    const r2 = await idbot(["join", "-c", config], { env: { IDBOT_RETRIES: "many" } });
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /IDBOT_RETRIES: "many" is not a number of retries/);
    const unknownField = join(dir, "unknown.yaml");
    writeFileSync(
      unknownField,
      readFileSync(config, "utf8").replace(
        "      path: ./from-file\n",
        "      path: ./x\n      mode: 0700\n",
      ),
    );
    const r3 = await idbot(["join", "-c", unknownField]);
    assert.equal(r3.code, 2);
    assert.match(r3.stderr, /unknown\.yaml:13: unknown field "outputs\[0\]\.destination\.mode"/);
  });

  test("exit codes: 1 denied, 2 bad input, 3 unreachable; nothing is written", async () => {
    const parent = tempDir("idbot-codes-");
    const out = join(parent, "out");
    world.github.setClaims({ repository: "acme/other" });
    try {
      const denied = await idbot(["join", "--server", server(), "--token", "github-deploy", "--out", out]);
      assert.equal(denied.code, 1, denied.stderr);
      assert.match(denied.stderr, /refused the join: no allow rule of join token "github-deploy" matches/);
      assert.match(denied.stderr, /"repository":"acme\/other"/, "the job's own claims are shown");
      assert.equal(denied.stdout, "");
    } finally {
      world.github.setClaims({});
    }
    const unknownFlag = await idbot(["join", "--server", server(), "--tokn", "x"]);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /Unknown option '--tokn'/);
    const noToken = await idbot(["join", "--server", server()]);
    assert.equal(noToken.code, 2);
    assert.match(
      noToken.stderr,
      /--token \(IDBOT_TOKEN\): is required, for example:\s+idbot join --token github-deploy/,
    );
    const badTtl = await idbot(["join", "--server", server(), "--token", "t", "--certificate-ttl", "99h"]);
    assert.equal(badTtl.code, 2);
    assert.match(badTtl.stderr, /--certificate-ttl: must be between 1s and 24h/);
    const insecure = await idbot(["join", "--server", "http://idbot.example.com", "--token", "t"]);
    assert.equal(insecure.code, 2);
    assert.match(insecure.stderr, /refusing plain HTTP/);
    const noOidc = await idbot(
      ["join", "--server", server(), "--token", "github-deploy", "--join-method", "github"],
      {
        env: { ACTIONS_ID_TOKEN_REQUEST_URL: undefined, ACTIONS_ID_TOKEN_REQUEST_TOKEN: undefined },
      },
    );
    assert.equal(noOidc.code, 2);
    assert.match(noOidc.stderr, /id-token: write/);
    // --out must be new or empty, checked before the ID token is spent.
    mkdirSync(join(parent, "full"));
    writeFileSync(join(parent, "full", "keep.txt"), "x");
    const before = world.github.requests.idToken;
    const full = await idbot([
      "join",
      "--server",
      server(),
      "--token",
      "github-deploy",
      "--out",
      join(parent, "full"),
    ]);
    assert.equal(full.code, 2);
    assert.match(full.stderr, /is not empty \(keep\.txt\)/);
    assert.equal(world.github.requests.idToken, before);
    assert.deepEqual(readdirSync(join(parent, "full")), ["keep.txt"]);

    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const started = Date.now();
    const unreachable = await idbot([
      "join",
      "--server",
      `http://127.0.0.1:${port}`,
      "--token",
      "github-deploy",
      "--deadline",
      "2s",
      "--retries",
      "20",
      "--out",
      out,
    ]);
    assert.equal(unreachable.code, 3, unreachable.stderr);
    assert.match(unreachable.stderr, /ECONNREFUSED/);
    assert.ok(Date.now() - started < 6000);
    assert.equal(existsSync(out), false, "no directory created on any failure");
  });

  test("gitlab/oidc: the ID token comes from a variable; a missing or expired one fails at once with exit 2", async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const expired = `${b64({ alg: "RS256" })}.${b64({ iss: "https://gitlab.example.com", exp: Math.floor(Date.now() / 1000) - 60 })}.c2ln`;
    const args = ["join", "--join-method", "gitlab", "--server", server(), "--token", "gitlab-deploy"];
    const missing = await idbot(args);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /reads the job's ID token from \$IDBOT_ID_TOKEN, which is not set/);
    assert.match(missing.stderr, /id_tokens:\n\s+IDBOT_ID_TOKEN:\n\s+aud:/);
    const old = await idbot([...args, "--id-token-env", "MY_TOKEN"], { env: { MY_TOKEN: expired } });
    assert.equal(old.code, 2);
    assert.match(old.stderr, /the ID token in \$MY_TOKEN expired at .* \(6\d s ago\)/);
    assert.match(old.stderr, /re-run the job, or move the join earlier/);
    const inGitlab = await idbot(["join", "--server", server(), "--token", "x"], {
      env: { GITLAB_CI: "true", ACTIONS_ID_TOKEN_REQUEST_URL: undefined },
    });
    assert.match(inGitlab.stderr, /the gitlab join method reads/, "gitlab is the default in GitLab CI");
  });

  test("gitlab: joins with the id_tokens token; a refresh needs a second token (GitLab tokens are single-use)", async () => {
    const out = join(tempDir("idbot-gl-"), ".idbot");
    const env = {
      ACTIONS_ID_TOKEN_REQUEST_URL: undefined,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: undefined,
      GITLAB_CI: "true",
    };
    const token = await gitlabToken();
    const j = await joinJson(["--server", server(), "--token", "gitlab-deploy", "--out", out], {
      ...env,
      IDBOT_ID_TOKEN: token,
    });
    assert.equal(j.bot_name, "deploy");
    const s = JSON.parse((await idbot(["status", out, "--format", "json"])).stdout);
    assert.equal(s.join_method, "gitlab");
    assert.match(s.ssh.key_id, /project=acme\/app,pipeline_id=1001,job_id=5005/);
    // The same token again is a replay: refused. A second id_tokens entry works.
    const replay = await idbot(["join", "--refresh", out], { env: { ...env, IDBOT_ID_TOKEN: token } });
    assert.equal(replay.code, 1, replay.stderr);
    assert.match(replay.stderr, /already used/);
    const refreshed = await joinJson(["--refresh", out, "--id-token-env", "IDBOT_REFRESH_TOKEN"], {
      ...env,
      IDBOT_REFRESH_TOKEN: await gitlabToken(),
    });
    assert.equal(refreshed.dir, realpathSync(out));
    const other = await idbot(["join", "--server", server(), "--token", "gitlab-deploy"], {
      env: {
        ...env,
        IDBOT_ID_TOKEN: await gitlabToken({ project_path: "evil/app", namespace_path: "evil" }),
      },
    });
    assert.equal(other.code, 1);
    assert.match(
      other.stderr,
      /"project_path":"evil\/app"/,
      "the job's GitLab claims are shown with a denial",
    );
    assert.equal((await idbot(["cleanup", out])).code, 0);
  });

  test("join and status run from a copy of dist/idbot.js alone in an empty directory", async () => {
    const dir = tempDir("idbot-copy-");
    const script = join(dir, "idbot.js");
    copyFileSync(IDBOT, script);
    const out = join(dir, "out");
    const r = await idbot(["join", "--server", server(), "--token", "github-deploy", "--out", out], {
      script,
      cwd: dir,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), realpathSync(out));
    const s = await idbot(["status", out], { script, cwd: dir });
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /principals\s+idbot-deploy/);
    assert.equal((await idbot(["cleanup", out], { script, cwd: dir })).code, 0);
    assert.deepEqual(readdirSync(dir), ["idbot.js"]);
  });

  test("--help of every command exits 0 and shows an example", async () => {
    for (const cmd of [
      [],
      ["join"],
      ["status"],
      ["certs"],
      ["cleanup"],
      ["hook"],
      ["serve"],
      ["explain"],
      ["admin", "sign-host"],
    ]) {
      const r = await idbot([...cmd, "--help"]);
      assert.equal(r.code, 0, `${cmd.join(" ")}: ${r.stderr}`);
      if (cmd.length > 0) assert.match(r.stdout, /Example/, cmd.join(" "));
    }
    const r = await idbot(["status", "--bogus", "x"]);
    assert.equal(r.code, 2);
  });
});

describe("the Action puts idbot on PATH", () => {
  test("a later step finds an executable idbot in the added PATH entry", async () => {
    const runnerTemp = tempDir("idbot-rt-");
    const run = await runActionStep(MAIN, {
      inputs: { server: server(), token: "github-deploy" },
      env: {
        ...world.env,
        ACTIONS_ID_TOKEN_REQUEST_URL: world.github.idTokenRequestUrl,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN: world.github.idTokenRequestToken,
      },
      runnerTemp,
    });
    assert.equal(run.code, 0, run.stdout);
    assert.equal(run.path.length, 1, "one PATH entry");
    const bin = join(run.path[0]!, "idbot");
    assert.ok(statSync(bin).mode & 0o100, "executable");
    assert.ok(run.path[0]!.startsWith(join(run.workDir, "_tool", "idbot")), "in RUNNER_TOOL_CACHE");
    const v = await execFileP(bin, ["version"], { env: { PATH: "/usr/bin:/bin" } });
    assert.equal(
      v.stdout.trim(),
      JSON.parse(readFileSync(join(import.meta.dirname, "../../package.json"), "utf8")).version,
    );
    const dir = run.env.IDBOT_DIR!;
    assert.equal(dir, run.state["identity-dir"], "IDBOT_DIR is exported for later steps");
    const s = await execFileP(bin, ["status", dir]);
    assert.match(s.stdout, /principals\s+idbot-deploy/);
    // A later step refreshes the Action's credentials in place with the settings it recorded.
    const certFile = join(run.outputs["identity-dir"]!, "key-cert.pub");
    const before = parseCertificateLine(readFileSync(certFile, "utf8").trim()).serial;
    const refreshed = await execFileP(bin, ["join", "--refresh", dir], { env: baseEnv() });
    assert.equal(refreshed.stdout.trim(), dir);
    assert.notEqual(parseCertificateLine(readFileSync(certFile, "utf8").trim()).serial, before);
    const post = await runActionStep(POST, { state: run.state, runnerTemp, workDir: run.workDir });
    assert.equal(post.code, 0);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });
});
