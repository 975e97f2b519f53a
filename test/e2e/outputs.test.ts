// Every output of the Action checked by the client a user would point at it: kubectl
// against an mTLS API stand-in, psql against a real PostgreSQL 15 with cert auth, openssl
// and a Node mTLS server for the X.509-SVID, PyJWT fetching the JWKS for the JWT-SVID.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from "node:tls";
import { promisify } from "node:util";
import { ensurePyJwt, verifyWithPyJwt } from "../helpers/jwtverify.ts";
import { ensureKubectl, type KubeApiStandIn, kubectl, startKubeApiStandIn } from "../helpers/kube.ts";
import { ensurePostgres, type Postgres, startPostgres } from "../helpers/postgres.ts";
import { type ActionRun, runActionStep } from "../helpers/runner.ts";
import { IDBOT, MAIN } from "../helpers/service.ts";
import { startWorld, type World } from "../helpers/world.ts";

const execFileP = promisify(execFile);
const TRUST_DOMAIN = "idbot.test";

function resources(host: string, kubeUrl: string, kubeCa: string, pgPort: number, pgCa: string): string {
  const indent = (pem: string) => pem.trim().split("\n").join("\n    ");
  return `
kind: role
version: v1
metadata: { name: ci }
spec:
  logins: ["{{ join.github.repository_owner }}-ci"]
  kubernetes_clusters: [prod]
  kubernetes_users: ["gh:{{ join.github.repository }}"]
  kubernetes_groups: [ci-deployers, "repo:{{ join.github.repository }}"]
  databases: [app-db]
  db_users: [ci]
  db_names: [app]
  spiffe:
    - path: "/ci/{{ join.github.repository }}"
      dns_sans: [ci.example.com]
  jwt_audiences: [vault]
  max_ttl: 2h
---
kind: role
version: v1
metadata: { name: templated-env }
spec: { logins: ["deploy-{{ join.github.environment }}"] }
---
kind: role
version: v1
metadata: { name: templated-workflow }
spec: { logins: ["{{ join.github.workflow }}"], kubernetes_clusters: [prod], kubernetes_groups: [g] }
---
kind: bot
version: v1
metadata: { name: ci }
spec: { roles: [ci] }
---
kind: bot
version: v1
metadata: { name: needs-env }
spec: { roles: [templated-env] }
---
kind: bot
version: v1
metadata: { name: bad-principal }
spec: { roles: [templated-workflow] }
---
kind: kube_cluster
version: v1
metadata: { name: prod }
spec:
  server: ${kubeUrl}
  ca: |
    ${indent(kubeCa)}
---
kind: kube_cluster
version: v1
metadata: { name: staging }
spec:
  server: https://127.0.0.1:1
  ca: |
    ${indent(kubeCa)}
---
kind: database
version: v1
metadata: { name: app-db }
spec:
  protocol: postgres
  host: 127.0.0.1
  port: ${pgPort}
  ca: |
    ${indent(pgCa)}
---
kind: database
version: v1
metadata: { name: other-db }
spec:
  protocol: postgres
  host: 127.0.0.1
  port: ${pgPort}
  ca: |
    ${indent(pgCa)}
${["ci", "needs-env", "bad-principal"]
  .map(
    (bot) => `---
kind: token
version: v1
metadata: { name: gh-${bot} }
spec:
  join_method: github
  bot_name: ${bot}
  github:
    enterprise_server_host: "${host}"
    allow: [{ repository: acme/app }]`,
  )
  .join("\n")}
`;
}

let world: World;
let kube: KubeApiStandIn | undefined;
let pg: Postgres | undefined;
let tlsCa: string;
let skipKube: string | undefined;
let skipPg: string | undefined;
let skipPy: string | undefined;

async function get(path: string): Promise<string> {
  const res = await fetch(`${world.service.url}${path}`);
  return res.text();
}

async function reloadResources(text: string): Promise<void> {
  const before = (world.service.logs().match(/resources reloaded/g) ?? []).length;
  writeFileSync(world.service.resourcesFile, text);
  world.service.proc.kill("SIGHUP");
  for (let i = 0; i < 100; i++) {
    if ((world.service.logs().match(/resources reloaded/g) ?? []).length > before) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the service did not reload:\n${world.service.logs()}`);
}

async function runMain(inputs: Record<string, string>, env: Record<string, string> = {}) {
  const runnerTemp = mkdtempSync(join(tmpdir(), "idbot-rt-"));
  const run = await runActionStep(MAIN, {
    inputs: { server: world.service.url, token: "gh-ci", ...inputs },
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

const failure = (run: ActionRun) =>
  run.annotations
    .filter((a) => a.level === "error")
    .map((a) => a.message)
    .join("\n");

before(async () => {
  world = await startWorld({ serviceArgs: ["--trust-domain", TRUST_DOMAIN] });
  tlsCa = await get("/v1/ca/tls");
  const k = await ensureKubectl();
  if ("skip" in k) skipKube = k.skip;
  else kube = await startKubeApiStandIn({ tls: world.ca, clientCaPem: tlsCa });
  const p = await ensurePostgres();
  if ("skip" in p) skipPg = p.skip;
  else {
    pg = await startPostgres({
      serverCertFile: world.ca.serverCertFile,
      serverKeyFile: world.ca.serverKeyFile,
      clientCaPem: tlsCa,
      roles: ["ci", "other"],
      databases: [{ name: "app", owner: "ci" }],
    });
  }
  const py = await ensurePyJwt();
  if ("skip" in py) skipPy = py.skip;
  await reloadResources(
    resources(
      world.github.host,
      kube?.url ?? "https://127.0.0.1:1",
      world.ca.caPem,
      pg?.port ?? 5432,
      world.ca.caPem,
    ),
  );
});

after(async () => {
  await kube?.close();
  await pg?.stop();
  await world?.close();
});

describe("kubernetes output", () => {
  test("kubectl reaches the API server as the templated user and groups", { skip: skipKube }, async () => {
    const { run } = await runMain({ outputs: "identity,ssh,kubernetes", "kubernetes-cluster": "prod" });
    assert.equal(run.code, 0, failure(run) + run.stderr);
    const kubeconfig = run.outputs.kubeconfig!;
    assert.equal(
      kubeconfig,
      join(run.outputs["identity-dir"]!, "..", "kubernetes", "kubeconfig.yaml").replace(
        /\/identity\/\.\./,
        "",
      ),
    );
    assert.equal(run.env.KUBECONFIG, kubeconfig);
    assert.equal(statSync(kubeconfig).mode & 0o777, 0o600);
    const r = await kubectl(["version", "-o", "json"], kubeconfig);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      (JSON.parse(r.stdout) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion,
      "v1.30.0",
    );
    const seen = kube!.requests.find((q) => q.path === "/version");
    assert.equal(seen?.user, "gh:acme/app");
    assert.deepEqual(seen?.groups.filter((g) => !g.startsWith("system:")).sort(), [
      "ci-deployers",
      "repo:acme/app",
    ]);
    // The client key embedded in the kubeconfig is masked in the log.
    const keyData = /client-key-data: "([^"]+)"/.exec(readFileSync(kubeconfig, "utf8"))![1]!;
    assert.ok(run.masks.includes(keyData));
  });

  test("a cluster the roles do not grant is refused and no kubeconfig is written", async () => {
    const { run, runnerTemp } = await runMain({ outputs: "kubernetes", "kubernetes-cluster": "staging" });
    assert.equal(run.code, 1);
    assert.match(failure(run), /Kubernetes cluster "staging" is not granted to bot "ci"/);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });

  test("the kubernetes output without kubernetes-cluster names the missing input", async () => {
    const { run, runnerTemp } = await runMain({ outputs: "kubernetes" });
    assert.equal(run.code, 1);
    assert.match(failure(run), /input "kubernetes-cluster": is required by the kubernetes output/);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });
});

describe("database output", () => {
  test("psql connects with database-url as the database user", { skip: skipPg }, async () => {
    const { run } = await runMain({
      outputs: "database",
      database: "app-db",
      "database-user": "ci",
      "database-name": "app",
    });
    assert.equal(run.code, 0, failure(run));
    const url = run.outputs["database-url"]!;
    assert.match(url, /^postgresql:\/\/ci@127\.0\.0\.1:\d+\/app\?sslmode=verify-full&sslcert=/);
    for (const k of ["database-cert", "database-key", "database-ca"])
      assert.ok(existsSync(run.outputs[k]!), k);
    const subj = await execFileP("openssl", [
      "x509",
      "-noout",
      "-subject",
      "-nameopt",
      "RFC2253",
      "-in",
      run.outputs["database-cert"]!,
    ]);
    assert.equal(subj.stdout.trim(), "subject=CN=ci");
    const r = await execFileP("psql", [url, "-XAtc", "select current_user"]);
    assert.equal(r.stdout.trim(), "ci");
    // The same certificate cannot log in as another role.
    await assert.rejects(
      execFileP("psql", [url.replace("postgresql://ci@", "postgresql://other@"), "-XAtc", "select 1"]),
      (e: Error & { stderr?: string }) =>
        /certificate authentication failed for user "other"/.test(e.stderr ?? ""),
    );
  });

  test("an ungranted database, user or database name is refused, naming it", async () => {
    for (const [inputs, msg] of [
      [{ database: "other-db", "database-user": "ci" }, /database "other-db" is not granted/],
      [{ database: "app-db", "database-user": "postgres" }, /database user "postgres" is not granted/],
      [
        { database: "app-db", "database-user": "ci", "database-name": "postgres" },
        /database name "postgres" is not granted/,
      ],
    ] as const) {
      const { run, runnerTemp } = await runMain({ outputs: "database", ...inputs });
      assert.equal(run.code, 1);
      assert.match(failure(run), msg);
      assert.deepEqual(readdirSync(runnerTemp), []);
    }
  });
});

describe("spiffe-x509 output", () => {
  test("openssl verifies the SVID against the bundle and an mTLS server reads the SPIFFE ID", async () => {
    const { run } = await runMain({ outputs: "spiffe-x509" });
    assert.equal(run.code, 0, failure(run));
    const dir = run.outputs["spiffe-dir"]!;
    const svid = join(dir, "svid.pem");
    const v = await execFileP("openssl", ["verify", "-CAfile", join(dir, "svid_bundle.pem"), svid]);
    assert.match(v.stdout, /: OK/);
    const text = (await execFileP("openssl", ["x509", "-noout", "-ext", "subjectAltName", "-in", svid]))
      .stdout;
    assert.match(text, new RegExp(`URI:spiffe://${TRUST_DOMAIN}/ci/acme/app`));
    assert.match(text, /DNS:ci\.example\.com/);
    assert.equal(statSync(join(dir, "svid_key.pem")).mode & 0o777, 0o600);

    const server = createTlsServer({
      cert: world.ca.serverCert,
      key: world.ca.serverKey,
      requestCert: true,
      rejectUnauthorized: true,
      ca: readFileSync(join(dir, "svid_bundle.pem"), "utf8"),
    });
    const seen = new Promise<string>((resolve) =>
      server.on("secureConnection", (s: TLSSocket) => {
        resolve(s.getPeerCertificate().subjectaltname ?? "");
        s.end();
      }),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const sock = tlsConnect({
      host: "127.0.0.1",
      port: (server.address() as AddressInfo).port,
      ca: world.ca.caPem,
      cert: readFileSync(svid, "utf8"),
      key: readFileSync(join(dir, "svid_key.pem"), "utf8"),
    });
    sock.on("error", () => {});
    const san = await seen;
    sock.destroy();
    server.close();
    assert.match(san, new RegExp(`URI:spiffe://${TRUST_DOMAIN}/ci/acme/app`));
  });

  test("a SPIFFE path the roles do not grant is refused", async () => {
    const { run, runnerTemp } = await runMain({ outputs: "spiffe-x509", "spiffe-path": "/ci/acme/other" });
    assert.equal(run.code, 1);
    assert.match(failure(run), /SPIFFE path "\/ci\/acme\/other" is not granted to bot "ci"/);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });
});

describe("jwt output", () => {
  test("PyJWT verifies the JWT-SVID against the service's JWKS; another audience is refused", {
    skip: skipPy,
  }, async () => {
    const { run } = await runMain({ outputs: "jwt", "jwt-audience": "vault" });
    assert.equal(run.code, 0, failure(run));
    const file = run.outputs["jwt-svid-file"]!;
    const token = readFileSync(file, "utf8");
    assert.ok(run.masks.includes(token), "the JWT is masked");
    const jwksUrl = `${world.service.url}/.well-known/jwks.json`;
    const ok = await verifyWithPyJwt({ token, jwksUrl, audience: "vault", issuer: world.service.url });
    assert.ok(ok.ok, ok.ok ? "" : ok.error);
    assert.equal(ok.claims.sub, `spiffe://${TRUST_DOMAIN}/ci/acme/app`);
    assert.equal(ok.claims.bot_name, "ci");
    assert.equal(ok.claims.join_method, "github");
    assert.equal(ok.claims.repository, "acme/app");
    const wrong = await verifyWithPyJwt({ token, jwksUrl, audience: "not-vault", issuer: world.service.url });
    assert.equal(wrong.ok, false);
    assert.match(wrong.ok ? "" : wrong.error, /InvalidAudienceError/);
    const discovery = JSON.parse(await get("/.well-known/openid-configuration")) as Record<string, unknown>;
    assert.equal(discovery.issuer, world.service.url);
    assert.equal(discovery.jwks_uri, jwksUrl);
  });

  test("after a key rotation both keys are published and an older JWT still verifies", {
    skip: skipPy,
  }, async () => {
    const first = (await runMain({ outputs: "jwt", "jwt-audience": "vault" })).run;
    const oldToken = readFileSync(first.outputs["jwt-svid-file"]!, "utf8");
    await execFileP(process.execPath, [IDBOT, "admin", "rotate-jwt", "--data-dir", world.service.dataDir]);
    await reloadResources(readFileSync(world.service.resourcesFile, "utf8"));
    const jwks = JSON.parse(await get("/.well-known/jwks.json")) as { keys: Array<{ kid: string }> };
    assert.equal(jwks.keys.length, 2);
    const jwksUrl = `${world.service.url}/.well-known/jwks.json`;
    const old = await verifyWithPyJwt({
      token: oldToken,
      jwksUrl,
      audience: "vault",
      issuer: world.service.url,
    });
    assert.ok(old.ok, old.ok ? "" : old.error);
    const second = (await runMain({ outputs: "jwt", "jwt-audience": "vault" })).run;
    const newToken = readFileSync(second.outputs["jwt-svid-file"]!, "utf8");
    const kid = (t: string) =>
      (JSON.parse(Buffer.from(t.split(".")[0]!, "base64url").toString()) as { kid: string }).kid;
    assert.notEqual(kid(newToken), kid(oldToken));
    assert.equal(jwks.keys[0]!.kid, kid(newToken));
    const fresh = await verifyWithPyJwt({
      token: newToken,
      jwksUrl,
      audience: "vault",
      issuer: world.service.url,
    });
    assert.ok(fresh.ok, fresh.ok ? "" : fresh.error);
  });

  test("an audience the roles do not grant is refused", async () => {
    const { run, runnerTemp } = await runMain({ outputs: "jwt", "jwt-audience": "https://evil.example.com" });
    assert.equal(run.code, 1);
    assert.match(failure(run), /JWT audience "https:\/\/evil.example.com" is not granted to bot "ci"/);
    assert.deepEqual(readdirSync(runnerTemp), []);
  });
});

describe("templates, TTL caps and the job summary", () => {
  test("a template whose claim is missing denies the join, naming the template; nothing is issued", async () => {
    const { run, runnerTemp } = await runMain({ token: "gh-needs-env" });
    assert.equal(run.code, 1);
    assert.match(
      failure(run),
      /role template templated-env\.logins\[0\] "deploy-\{\{ join\.github\.environment \}\}" needs the claim "environment"/,
    );
    assert.deepEqual(readdirSync(runnerTemp), []);
    world.github.setClaims({ environment: "production" });
    try {
      const ok = await runMain({ token: "gh-needs-env" });
      assert.equal(ok.run.code, 0, failure(ok.run));
      const cert = await execFileP("ssh-keygen", [
        "-L",
        "-f",
        join(ok.run.outputs["identity-dir"]!, "key-cert.pub"),
      ]);
      assert.match(cert.stdout, /\n\s+deploy-production\n/);
    } finally {
      world.github.setClaims({});
    }
  });

  test("a template producing an invalid principal denies the join before any certificate is signed", async () => {
    world.github.setClaims({ workflow: "Deploy to prod" });
    try {
      const { run, runnerTemp } = await runMain({
        token: "gh-bad-principal",
        outputs: "identity,ssh,kubernetes",
        "kubernetes-cluster": "prod",
      });
      assert.equal(run.code, 1);
      assert.match(
        failure(run),
        /role template templated-workflow\.logins\[0\] "\{\{ join\.github\.workflow \}\}" produced "Deploy to prod", which is not an SSH principal/,
      );
      assert.deepEqual(readdirSync(runnerTemp), []);
      const Database = (await import("better-sqlite3")).default;
      const db = new Database(join(world.service.dataDir, "idbot.db"), { readonly: true });
      const issued = db
        .prepare("SELECT count(*) AS n FROM audit WHERE type = 'cert.issued' AND bot_name = 'bad-principal'")
        .get() as { n: number };
      db.close();
      assert.equal(issued.n, 0, "no certificate was issued, not even the ones whose templates were fine");
    } finally {
      world.github.setClaims({});
    }
  });

  test("a TTL above the roles' max_ttl is capped, with a notice", async () => {
    const { run } = await runMain({ "certificate-ttl": "5h" });
    assert.equal(run.code, 0);
    const left = Date.parse(run.outputs["expires-at"]!) - Date.now();
    assert.ok(left > 115 * 60_000 && left <= 120 * 60_000, `capped to 2h, got ${left} ms`);
    assert.ok(run.annotations.some((a) => a.level === "notice" && /max_ttl/.test(a.message)));
  });

  test("the job summary lists what was issued and holds no secret", async () => {
    const { run } = await runMain({ outputs: "identity,ssh,spiffe-x509,jwt", "jwt-audience": "vault" });
    assert.equal(run.code, 0, failure(run));
    const s = run.summary;
    for (const row of [
      "SSH user certificate",
      "TLS client certificate",
      "SPIFFE X.509-SVID",
      "JWT-SVID (aud vault)",
    ]) {
      assert.ok(s.includes(row), `summary has ${row}`);
    }
    assert.ok(s.includes("acme-ci"));
    assert.ok(s.includes(`spiffe://${TRUST_DOMAIN}/ci/acme/app`));
    assert.ok(s.includes(run.outputs["expires-at"]!));
    const token = readFileSync(run.outputs["jwt-svid-file"]!, "utf8");
    assert.ok(!s.includes(token) && !s.includes(token.split(".")[1]!));
    assert.doesNotMatch(s, /PRIVATE KEY|BEGIN CERTIFICATE/);
  });
});
