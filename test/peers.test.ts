// Checks the real peers the end-to-end tests lean on: kubectl against the mTLS API server
// stand-in, PostgreSQL with client-certificate auth, and PyJWT as a second JWT verifier.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { exportJWK, type JWK, SignJWT } from "jose";
import { ensurePyJwt, verifyWithPyJwt } from "./helpers/jwtverify.ts";
import { ensureKubectl, kubectl, startKubeApiStandIn } from "./helpers/kube.ts";
import { ensurePostgres, startPostgres } from "./helpers/postgres.ts";
import { createTestTlsCA, type TestTlsCA } from "./helpers/testca.ts";

const execFileP = promisify(execFile);

async function tempDir(t: { after(fn: () => Promise<void>): void }, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Issues a P-256 client certificate (clientAuth) from the CA that createTestTlsCA(caDir) made,
 * standing in for a certificate idbot's TLS CA issues. `subject` is an openssl -subj string.
 */
async function issueClientCert(
  dir: string,
  caDir: string,
  name: string,
  subject: string,
): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  const certFile = join(dir, `${name}.pem`);
  const extFile = join(dir, `${name}.ext`);
  await execFileP("openssl", [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    keyFile,
  ]);
  await chmod(keyFile, 0o600);
  await execFileP("openssl", ["req", "-new", "-key", keyFile, "-subj", subject, "-out", csrFile]);
  await writeFile(
    extFile,
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
  );
  await execFileP("openssl", [
    "x509",
    "-req",
    "-in",
    csrFile,
    "-CA",
    join(caDir, "ca.pem"),
    "-CAkey",
    join(caDir, "ca.key"),
    "-set_serial",
    `0x${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`,
    "-days",
    "1",
    "-sha256",
    "-extfile",
    extFile,
    "-out",
    certFile,
  ]);
  return { certFile, keyFile };
}

async function writeKubeconfig(
  file: string,
  server: string,
  serverCaPem: string,
  cert: { certFile: string; keyFile: string },
): Promise<void> {
  const b64 = async (f: string) => (await readFile(f)).toString("base64");
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "standin",
        cluster: { server, "certificate-authority-data": Buffer.from(serverCaPem).toString("base64") },
      },
    ],
    users: [
      {
        name: "ci",
        user: {
          "client-certificate-data": await b64(cert.certFile),
          "client-key-data": await b64(cert.keyFile),
        },
      },
    ],
    contexts: [{ name: "standin", context: { cluster: "standin", user: "ci", namespace: "default" } }],
    "current-context": "standin",
  };
  await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 });
}

interface KubeWorld {
  dir: string;
  serverTls: TestTlsCA;
  clientCaDir: string;
  clientCa: TestTlsCA;
}

async function kubeWorld(t: { after(fn: () => Promise<void>): void }): Promise<KubeWorld> {
  const dir = await tempDir(t, "idbot-peers-kube-");
  const serverTls = await createTestTlsCA(join(dir, "server-ca"));
  const clientCaDir = join(dir, "client-ca");
  const clientCa = await createTestTlsCA(clientCaDir);
  return { dir, serverTls, clientCaDir, clientCa };
}

test("kubectl authenticates to the API server stand-in with an x509 client certificate", async (t) => {
  const found = await ensureKubectl();
  if ("skip" in found) return t.skip(found.skip);
  const w = await kubeWorld(t);
  const api = await startKubeApiStandIn({ tls: w.serverTls, clientCaPem: w.clientCa.caPem });
  t.after(() => api.close());
  const cert = await issueClientCert(
    w.dir,
    w.clientCaDir,
    "ci",
    "/O=ci-deployers/O=idbot:repo:acme\\/app/CN=ci-bot",
  );
  const kubeconfig = join(w.dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, api.url, api.caPem, cert);

  const v = await kubectl(["version", "-o", "json"], kubeconfig);
  assert.equal(v.code, 0, v.stderr);
  const version = JSON.parse(v.stdout) as { serverVersion?: { gitVersion?: string } };
  assert.equal(version.serverVersion?.gitVersion, "v1.30.0");
  const seen = api.requests.filter((r) => r.path === "/version");
  assert.ok(seen.length >= 1, JSON.stringify(api.requests));
  for (const r of seen) {
    assert.equal(r.method, "GET");
    assert.equal(r.user, "ci-bot");
    assert.deepEqual(r.groups, ["ci-deployers", "idbot:repo:acme/app"]);
  }

  api.requests.length = 0;
  const pods = await kubectl(["get", "pods"], kubeconfig);
  assert.equal(pods.code, 0, pods.stderr);
  assert.match(`${pods.stdout}${pods.stderr}`, /No resources found in default namespace/);
  assert.ok(
    api.requests.some(
      (r) => r.method === "GET" && r.path === "/api/v1/namespaces/default/pods" && r.user === "ci-bot",
    ),
    JSON.stringify(api.requests),
  );

  // `kubectl auth whoami` (GA in 1.28) posts a SelfSubjectReview; older kubectls lack the command.
  const who = await kubectl(["auth", "whoami", "-o", "json"], kubeconfig);
  if (who.code !== 0 && /unknown command|unknown flag|invalid choice/i.test(who.stderr)) {
    t.diagnostic(`kubectl auth whoami unsupported: ${who.stderr.trim()}`);
  } else {
    assert.equal(who.code, 0, who.stderr);
    const review = JSON.parse(who.stdout) as { status: { userInfo: { username: string; groups: string[] } } };
    assert.equal(review.status.userInfo.username, "ci-bot");
    assert.deepEqual(review.status.userInfo.groups, [
      "ci-deployers",
      "idbot:repo:acme/app",
      "system:authenticated",
    ]);
    assert.ok(
      api.requests.some(
        (r) => r.method === "POST" && r.path === "/apis/authentication.k8s.io/v1/selfsubjectreviews",
      ),
    );
  }
});

test("the API server stand-in refuses client certificates from an untrusted CA, and no certificate", async (t) => {
  const found = await ensureKubectl();
  if ("skip" in found) return t.skip(found.skip);
  const w = await kubeWorld(t);
  const api = await startKubeApiStandIn({ tls: w.serverTls, clientCaPem: w.clientCa.caPem });
  t.after(() => api.close());
  // Same subject shape and even the same CA name ("idbot test CA"), but a different CA key.
  const rogueDir = join(w.dir, "rogue-ca");
  await createTestTlsCA(rogueDir);
  const rogue = await issueClientCert(w.dir, rogueDir, "rogue", "/O=system:masters/CN=intruder");
  const kubeconfig = join(w.dir, "kubeconfig-rogue");
  await writeKubeconfig(kubeconfig, api.url, api.caPem, rogue);

  // Like kube-apiserver: the x509 authenticator rejects the chain, so 401 and no identity.
  const v = await kubectl(["get", "pods"], kubeconfig);
  assert.notEqual(v.code, 0, v.stdout);
  assert.match(v.stderr, /You must be logged in to the server|Unauthorized/);
  assert.ok(api.requests.length > 0);
  for (const r of api.requests) {
    assert.equal(r.user, undefined);
    assert.deepEqual(r.groups, []);
  }
  assert.ok(!api.requests.some((r) => r.path === "/api/v1/namespaces/default/pods"));

  // No client certificate at all: 401 too (anonymous auth off).
  const get = (url: string, cert?: { certFile: string; keyFile: string }) =>
    new Promise<{ status?: number; body?: string; error?: Error }>((resolve) => {
      void (async () => {
        const tlsOpts = cert
          ? { cert: await readFile(cert.certFile), key: await readFile(cert.keyFile) }
          : {};
        const req = request(url, { ca: api.caPem, timeout: 5000, ...tlsOpts }, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            body += d;
          });
          res.on("end", () => resolve({ status: res.statusCode, body }));
        });
        req.on("error", (error) => resolve({ error }));
        req.end();
      })();
    });
  const anon = await get(`${api.url}/version`);
  assert.equal(anon.status, 401, anon.error?.message);
  assert.equal((JSON.parse(anon.body ?? "{}") as { reason?: string }).reason, "Unauthorized");

  // rejectAtHandshake: the same certificate never gets an HTTP answer.
  const strict = await startKubeApiStandIn({
    tls: w.serverTls,
    clientCaPem: w.clientCa.caPem,
    rejectAtHandshake: true,
  });
  t.after(() => strict.close());
  const refused = await get(`${strict.url}/version`, rogue);
  assert.ok(refused.error, `expected a TLS failure, got HTTP ${refused.status}`);
  const good = await issueClientCert(w.dir, w.clientCaDir, "good", "/CN=ci-bot");
  const accepted = await get(`${strict.url}/version`, good);
  assert.equal(accepted.status, 200, accepted.error?.message);
  assert.deepEqual(
    strict.requests.map((r) => r.user),
    ["ci-bot"],
  );
});

test("PostgreSQL accepts a client certificate whose CN is the role, with verify-full on 127.0.0.1", async (t) => {
  const found = await ensurePostgres();
  if ("skip" in found) return t.skip(found.skip);
  const dir = await tempDir(t, "idbot-peers-pg-");
  const serverTls = await createTestTlsCA(join(dir, "server-ca"));
  const clientCaDir = join(dir, "client-ca");
  const clientCa = await createTestTlsCA(clientCaDir);
  const pg = await startPostgres({
    serverCertFile: serverTls.serverCertFile,
    serverKeyFile: serverTls.serverKeyFile,
    clientCaPem: clientCa.caPem,
    roles: ["ci"],
    databases: [{ name: "app", owner: "ci" }],
  });
  t.after(() => pg.stop());
  assert.equal(await pg.psqlAdmin("select rolname from pg_roles where rolname = 'ci'"), "ci\n");

  const cert = await issueClientCert(dir, clientCaDir, "ci", "/CN=ci");
  const url = (user: string, host = "127.0.0.1", client = cert) =>
    `postgresql://${user}@${host}:${pg.port}/app?sslmode=verify-full` +
    `&sslcert=${encodeURIComponent(client.certFile)}&sslkey=${encodeURIComponent(client.keyFile)}` +
    `&sslrootcert=${encodeURIComponent(serverTls.caFile)}`;
  const psql = async (conn: string) => {
    try {
      const r = await execFileP("psql", ["-X", conn, "-Atc", "select current_user"], { timeout: 20_000 });
      return { code: 0, stdout: String(r.stdout), stderr: String(r.stderr) };
    } catch (err) {
      const e = err as Error & { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? 1, stdout: String(e.stdout ?? ""), stderr: String(e.stderr ?? e.message) };
    }
  };

  const ok = await psql(url("ci"));
  assert.equal(ok.code, 0, `${ok.stderr}\n${pg.logs()}`);
  assert.equal(ok.stdout, "ci\n");

  const viaName = await psql(url("ci", "localhost"));
  assert.equal(viaName.stdout, "ci\n", viaName.stderr);

  const wrongUser = await psql(url("postgres"));
  assert.notEqual(wrongUser.code, 0);
  assert.match(wrongUser.stderr, /certificate authentication failed for user "postgres"/);

  // A certificate from another CA is refused during the handshake.
  const rogueDir = join(dir, "rogue-ca");
  await createTestTlsCA(rogueDir);
  const rogue = await issueClientCert(dir, rogueDir, "rogue", "/CN=ci");
  const refused = await psql(url("ci", "127.0.0.1", rogue));
  assert.notEqual(refused.code, 0, refused.stdout);
  assert.doesNotMatch(refused.stdout, /ci/);

  // libpq refuses a private key file readable by group/world when it belongs to the current user.
  await chmod(cert.keyFile, 0o644);
  const loose = await psql(url("ci"));
  assert.notEqual(loose.code, 0);
  assert.match(loose.stderr, /has group or world access/);
});

test("PyJWT verifies an ES256 token against a JWKS served over http", async (t) => {
  const found = await ensurePyJwt();
  if ("skip" in found) return t.skip(found.skip);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  const server = createServer((req, res) => {
    if (req.url === "/jwks") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [jwk] }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const addr = server.address();
  const jwksUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/jwks`;
  const issuer = "https://idbot.test";
  const audience = "deploy";
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: { aud?: string; iss?: string; iat?: number; exp?: number }) =>
    new SignJWT({ repo: "acme/app" })
      .setProtectedHeader({ alg: "ES256", kid: "k1", typ: "JWT" })
      .setSubject("repo:acme/app")
      .setIssuer(claims.iss ?? issuer)
      .setAudience(claims.aud ?? audience)
      .setIssuedAt(claims.iat ?? now)
      .setExpirationTime(claims.exp ?? now + 300)
      .sign(privateKey);

  const good = await verifyWithPyJwt({ token: await sign({}), jwksUrl, audience, issuer });
  assert.ok(good.ok, good.ok ? "" : good.error);
  assert.equal(good.claims.sub, "repo:acme/app");
  assert.equal(good.claims.repo, "acme/app");
  assert.equal(good.claims.iss, issuer);

  const wrongAud = await verifyWithPyJwt({ token: await sign({ aud: "other" }), jwksUrl, audience, issuer });
  assert.equal(wrongAud.ok, false);
  assert.match(wrongAud.ok ? "" : wrongAud.error, /^InvalidAudienceError/);

  const wrongIss = await verifyWithPyJwt({
    token: await sign({ iss: "https://evil.test" }),
    jwksUrl,
    audience,
    issuer,
  });
  assert.equal(wrongIss.ok, false);
  assert.match(wrongIss.ok ? "" : wrongIss.error, /^InvalidIssuerError/);

  const expired = await verifyWithPyJwt({
    token: await sign({ iat: now - 600, exp: now - 300 }),
    jwksUrl,
    audience,
    issuer,
  });
  assert.equal(expired.ok, false);
  assert.match(expired.ok ? "" : expired.error, /^ExpiredSignatureError/);

  // A token signed by another key under the same kid fails the signature check.
  const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const forged = await new SignJWT({})
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(other);
  const bad = await verifyWithPyJwt({ token: forged, jwksUrl, audience, issuer });
  assert.equal(bad.ok, false);
  assert.match(bad.ok ? "" : bad.error, /^InvalidSignatureError/);
});
