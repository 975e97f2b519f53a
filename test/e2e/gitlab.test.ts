// The gitlab and oidc join methods against the bundled service: a GitLab-protocol issuer
// (https://HOST, keys at /oauth/discovery/keys) and a generic OIDC issuer found through
// discovery (shaped like a Kubernetes service account issuer), both on loopback.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";
import { type FakeOidcIssuer, gitlabClaims, startFakeOidcIssuer } from "../helpers/fake-oidc.ts";
import { IDBOT, type Service, startService } from "../helpers/service.ts";
import { createTestTlsCA, type TestTlsCA } from "../helpers/testca.ts";

const execFileP = promisify(execFile);
const AUD = "https://idbot.example.com";

let ca: TestTlsCA;
let gitlab: FakeOidcIssuer;
let k8s: FakeOidcIssuer;
let service: Service;
let resourcesText: string;

function resources(): string {
  return `
kind: role
version: v1
metadata: { name: gl }
spec: { logins: ["gl-{{ join.gitlab.namespace_path }}"] }
---
kind: role
version: v1
metadata: { name: pod }
spec: { logins: ["{{ join.oidc.kubernetes.io.serviceaccount.name }}"] }
---
kind: bot
version: v1
metadata: { name: gl }
spec: { roles: [gl] }
---
kind: bot
version: v1
metadata: { name: pod }
spec: { roles: [pod] }
---
kind: token
version: v1
metadata: { name: gitlab-deploy }
spec:
  join_method: gitlab
  bot_name: gl
  gitlab:
    domain: "${gitlab.host}"
    audience: ${AUD}
    allow:
      - { project_path: "acme/*", ref: "main", ref_type: branch }
      - { namespace_path: platform, ref_protected: true }
---
kind: token
version: v1
metadata: { name: gitlab-static }
spec:
  join_method: gitlab
  bot_name: gl
  gitlab:
    domain: "${gitlab.host}"
    audience: ${AUD}
    static_jwks: '${JSON.stringify(gitlab.publicJwks())}'
    allow:
      - sub: "project_path:acme/app:ref_type:branch:ref:release-?.*"
---
kind: token
version: v1
metadata: { name: k8s-ci }
spec:
  join_method: oidc
  bot_name: pod
  oidc:
    issuer: "${k8s.issuer}"
    audience: ${AUD}
    allow:
      - { sub: "system:serviceaccount:ci:*", kubernetes.io.namespace: ci }
`;
}

function k8sClaims(issuer: string): Record<string, unknown> {
  return {
    sub: "system:serviceaccount:ci:builder",
    "kubernetes.io": {
      namespace: "ci",
      serviceaccount: { name: "builder", uid: "0d5a0e0c-4c55-4a55-9c5b-2ad7a5d8c0c1" },
      pod: { name: "builder-7f9c", uid: "f1d2" },
    },
    iss: issuer,
  };
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), "idbot-gl-"));
  ca = await createTestTlsCA(join(dir, "ca"));
  const tls = { tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile };
  gitlab = await startFakeOidcIssuer({
    ...tls,
    jwksPath: "/oauth/discovery/keys",
    defaultClaims: (iss) => gitlabClaims(iss),
  });
  k8s = await startFakeOidcIssuer({ ...tls, jwksPath: "/openid/v1/jwks", defaultClaims: k8sClaims });
  resourcesText = resources();
  service = await startService({ resources: resourcesText, env: { NODE_EXTRA_CA_CERTS: ca.caFile } });
});

after(async () => {
  await service?.stop();
  await gitlab?.close();
  await k8s?.close();
});

const keys = {
  ssh: ed25519PublicKeyLine(generateKeyPairSync("ed25519").publicKey, "t"),
  tls: generateKeyPairSync("ec", { namedCurve: "P-256" })
    .publicKey.export({ format: "pem", type: "spki" })
    .toString(),
};

interface JoinAnswer {
  ssh: { principals: string[] };
  error: { message: string };
}

async function joinWith(token: string, idToken: string, method = "gitlab") {
  const res = await fetch(`${service.url}/v1/join`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token, join_method: method, id_token: idToken, public_keys: keys }),
  });
  return { status: res.status, body: (await res.json()) as JoinAnswer };
}

const mintGl = (claims: Record<string, unknown> = {}, extra: Parameters<FakeOidcIssuer["mint"]>[0] = {}) =>
  gitlab.mint({ audience: AUD, claims: gitlabClaims(gitlab.issuer, claims), ...extra });

describe("gitlab join method", () => {
  test("a job of a matching project joins; the template fills the login", async () => {
    const r = await joinWith("gitlab-deploy", await mintGl());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.ssh.principals, ["gl-acme"]);
    assert.ok(gitlab.requests.jwks >= 1, "keys fetched from /oauth/discovery/keys");
  });

  test("globs on project_path and ref, and a boolean rule value", async () => {
    assert.equal((await joinWith("gitlab-deploy", await mintGl({ project_path: "acme/tools" }))).status, 200);
    assert.equal(
      (
        await joinWith(
          "gitlab-deploy",
          await mintGl({
            project_path: "platform/x",
            namespace_path: "platform",
            ref_protected: "true",
            ref: "dev",
          }),
        )
      ).status,
      200,
    );
    const other = await joinWith(
      "gitlab-deploy",
      await mintGl({ project_path: "evil/app", namespace_path: "evil" }),
    );
    assert.equal(other.status, 403);
    assert.match(
      other.body.error.message,
      /rule 1 differs in project_path; rule 2 differs in namespace_path/,
    );
    const branch = await joinWith(
      "gitlab-deploy",
      await mintGl({ ref: "feature/x", ref_protected: "false" }),
    );
    assert.equal(branch.status, 403);
    assert.match(branch.body.error.message, /rule 1 differs in ref/);
  });

  test("static_jwks with a glob on sub; nothing fetched", async () => {
    const before = gitlab.requests.jwks;
    const ok = await joinWith("gitlab-static", await mintGl({ ref: "release-1.4", sub: undefined }));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const no = await joinWith("gitlab-static", await mintGl({ ref: "release-12", sub: undefined }));
    assert.equal(no.status, 403, "? matches exactly one character");
    assert.equal(gitlab.requests.jwks, before);
  });

  test("a token from another instance (issuer) is refused", async () => {
    const r = await joinWith("gitlab-deploy", await mintGl({}, { issuer: "https://gitlab.com" }));
    assert.equal(r.status, 403);
    assert.match(r.body.error.message, /issuer "https:\/\/gitlab.com" is not "https:\/\/127\.0\.0\.1:\d+"/);
  });

  test("wrong audience, expired and replayed tokens are refused", async () => {
    const wrongAud = await joinWith(
      "gitlab-deploy",
      await mintGl({}, { audience: "https://other.example.com" }),
    );
    assert.equal(wrongAud.status, 403);
    assert.match(wrongAud.body.error.message, /audience/);
    const expired = await joinWith(
      "gitlab-deploy",
      await mintGl({}, { issuedAt: Math.floor(Date.now() / 1000) - 900, expiresIn: 300 }),
    );
    assert.equal(expired.status, 403);
    assert.match(expired.body.error.message, /expired/);
    const token = await mintGl();
    assert.equal((await joinWith("gitlab-deploy", token)).status, 200);
    const replay = await joinWith("gitlab-deploy", token);
    assert.equal(replay.status, 403);
    assert.match(replay.body.error.message, /already used/);
  });

  test("idbot explain evaluates a GitLab token", async () => {
    const dir = mkdtempSync(join(tmpdir(), "idbot-glx-"));
    writeFileSync(join(dir, "r.yaml"), resourcesText);
    writeFileSync(join(dir, "t.jwt"), await mintGl({ project_path: "acme/web" }));
    const r = await execFileP(
      process.execPath,
      [
        IDBOT,
        "explain",
        "--resources",
        join(dir, "r.yaml"),
        "--token",
        "gitlab-deploy",
        "--id-token",
        join(dir, "t.jwt"),
      ],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: ca.caFile } },
    );
    assert.match(r.stdout, /rule 1: MATCH/);
    assert.match(r.stdout, /✓ project_path\s+want "acme\/\*", got "acme\/web"/);
    assert.match(r.stdout, /Result: ALLOWED by rule 1/);
  });

  test("a gitlab token without an audience is refused at load, naming the field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "idbot-glr-"));
    const file = join(dir, "r.yaml");
    writeFileSync(
      file,
      "kind: role\nversion: v1\nmetadata: { name: r }\nspec: {}\n---\nkind: bot\nversion: v1\nmetadata: { name: b }\nspec: { roles: [r] }\n---\nkind: token\nversion: v1\nmetadata: { name: t }\nspec:\n  join_method: gitlab\n  bot_name: b\n  gitlab:\n    allow: [{ project_path: acme/app }]\n",
    );
    const r = await execFileP(process.execPath, [
      IDBOT,
      "serve",
      "--data-dir",
      join(dir, "d"),
      "--listen",
      "127.0.0.1:0",
      "--resources",
      file,
    ]).catch((e: { code: number; stderr: string }) => e);
    assert.equal((r as { code: number }).code, 2);
    assert.match((r as { stderr: string }).stderr, /r\.yaml:\d+: spec\.gitlab\.audience: /);
  });
});

describe("oidc join method", () => {
  test("a Kubernetes-style service account token joins through discovery; nested claims in rules and templates", async () => {
    const r = await joinWith("k8s-ci", await k8s.mint({ audience: AUD }), "oidc");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.ssh.principals, ["builder"]);
    assert.ok(k8s.requests.discovery >= 1 && k8s.requests.jwks >= 1);
  });

  test("a token of another namespace or service account is refused", async () => {
    const r = await joinWith(
      "k8s-ci",
      await k8s.mint({
        audience: AUD,
        claims: { sub: "system:serviceaccount:prod:builder", "kubernetes.io": { namespace: "prod" } },
      }),
      "oidc",
    );
    assert.equal(r.status, 403);
    assert.match(r.body.error.message, /rule 1 differs in sub, kubernetes\.io\.namespace/);
  });
});
