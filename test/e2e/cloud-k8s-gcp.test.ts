// The kubernetes and gcp join methods end to end: the bundled `idbot join` reads a pod's
// projected token from a file or asks a (stand-in) GCE metadata server, and the bundled
// `idbot serve` checks it against a stand-in Kubernetes API server (discovery, JWKS,
// TokenReview over HTTPS with a test CA) or Google-style JWKS, all on loopback.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { parseCertificateLine } from "../../src/protocol/ssh.ts";
import { type FakeGcp, startFakeGcp } from "../helpers/fake-gcp.ts";
import { API_AUDIENCE, type FakeKubernetes, startFakeKubernetes } from "../helpers/fake-k8s.ts";
import { IDBOT, type Service, startService } from "../helpers/service.ts";
import { createTestTlsCA, type TestTlsCA } from "../helpers/testca.ts";

const execFileP = promisify(execFile);
const OTHER_AUD = "https://other.example.com";

let dir: string;
let ca: TestTlsCA;
let k8s: FakeKubernetes;
let gcp: FakeGcp;
let service: Service;
let decoy: Server;
const decoyRequests: Array<{ method: string; path: string; body: string }> = [];
let seq = 0;

const indent = (pem: string, n: number) =>
  pem
    .trim()
    .split("\n")
    .join(`\n${" ".repeat(n)}`);

function resources(o: {
  reviewerFile: string;
  badReviewerFile: string;
  otherCaPem: string;
  decoyUrl: string;
}) {
  const apiServer = (url: string, caPem: string, tokenFile: string) => `
    api_server:
      url: ${url}
      token_file: ${tokenFile}
      ca: |
        ${indent(caPem, 8)}`;
  const inCluster = (name: string, api: string) => `
---
kind: token
version: v1
metadata: { name: ${name} }
spec:
  join_method: kubernetes
  bot_name: pod
  kubernetes:
    type: in_cluster${api}
    allow:
      - { service_account: "ci:builder", pod_name: "builder-*" }
`;
  return `
kind: role
version: v1
metadata: { name: pod }
spec: { logins: ["{{ join.kubernetes.service_account }}", "pod-{{ join.kubernetes.pod_name }}"] }
---
kind: role
version: v1
metadata: { name: gce }
spec: { logins: ["{{ join.gcp.instance_name }}", "{{ join.gcp.project_id }}"] }
---
kind: role
version: v1
metadata: { name: run }
spec: { logins: ["{{ join.gcp.service_account }}"] }
---
kind: bot
version: v1
metadata: { name: pod }
spec: { roles: [pod] }
---
kind: bot
version: v1
metadata: { name: gce }
spec: { roles: [gce] }
---
kind: bot
version: v1
metadata: { name: run }
spec: { roles: [run] }
---
kind: token
version: v1
metadata: { name: k8s-jwks }
spec:
  join_method: kubernetes
  bot_name: pod
  kubernetes:
    type: static_jwks
    issuer: "${k8s.issuer}"
    static_jwks: '${JSON.stringify(k8s.publicJwks())}'
    allow:
      - { service_account: "ci:builder*", pod_name: "builder-*", node_name: "node-?" }
---
kind: token
version: v1
metadata: { name: k8s-oidc }
spec:
  join_method: kubernetes
  bot_name: pod
  kubernetes:
    type: oidc
    issuer: "${k8s.issuer}"
    allow:
      - { service_account: "ci:*" }
${inCluster("k8s-cluster", apiServer(k8s.url, ca.caPem, o.reviewerFile))}
${inCluster("k8s-bad-reviewer", apiServer(k8s.url, ca.caPem, o.badReviewerFile))}
${inCluster("k8s-wrong-ca", apiServer(k8s.url, o.otherCaPem, o.reviewerFile))}
${inCluster("k8s-redirect", apiServer(o.decoyUrl, ca.caPem, o.reviewerFile))}
---
kind: token
version: v1
metadata: { name: gcp-vm }
spec:
  join_method: gcp
  bot_name: gce
  gcp:
    jwks_uri: ${gcp.jwksUri}
    allow:
      - project_ids: [acme-prod, acme-ci]
        locations: [us-central1, europe-west4-b]
        service_accounts: [${gcp.instance.serviceAccountEmail}]
        instance_names: ["runner-*"]
---
kind: token
version: v1
metadata: { name: gcp-run }
spec:
  join_method: gcp
  bot_name: run
  gcp:
    static_jwks: '${JSON.stringify(gcp.publicJwks())}'
    allow:
      - service_accounts: deployer@acme-prod.iam.gserviceaccount.com
`;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "idbot-cloud-"));
  ca = await createTestTlsCA(join(dir, "ca"));
  const otherCa = await createTestTlsCA(join(dir, "ca2"));
  const tls = { tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile };
  k8s = await startFakeKubernetes({
    ...tls,
    defaults: { namespace: "ci", serviceAccount: "builder", pod: "builder-7d9f8c6b5-x2k4q", node: "node-1" },
  });
  gcp = await startFakeGcp(tls);
  // An API server that sends every request on elsewhere: a TokenReview must not follow.
  decoy = createServer({ cert: ca.serverCert, key: ca.serverKey }, (req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      decoyRequests.push({ method: req.method ?? "", path: req.url ?? "", body });
      res.writeHead(307, { location: `${k8s.url}${req.url}` });
      res.end();
    });
  });
  await new Promise<void>((r) => decoy.listen(0, "127.0.0.1", r));
  const reviewerFile = join(dir, "reviewer-token");
  const badReviewerFile = join(dir, "bad-reviewer-token");
  writeFileSync(reviewerFile, `${k8s.reviewerToken}\n`);
  writeFileSync(badReviewerFile, "not-the-service-account-token\n");
  service = await startService({
    resources: resources({
      reviewerFile,
      badReviewerFile,
      otherCaPem: otherCa.caPem,
      decoyUrl: `https://127.0.0.1:${(decoy.address() as AddressInfo).port}`,
    }),
    env: { NODE_EXTRA_CA_CERTS: ca.caFile },
  });
});

after(async () => {
  await service?.stop();
  await k8s?.close();
  await gcp?.close();
  decoy?.closeAllConnections();
  await new Promise((r) => decoy?.close(r));
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `idbot join` as a job runs it: the environment of this test without its IDBOT_* settings. */
function idbotJoin(
  token: string,
  method: string,
  env: Record<string, string>,
  args: string[] = [],
): Promise<Run> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(IDBOT_|GITHUB_|ACTIONS_|GITLAB_|CI_)/.test(k) && k !== "NODE_TEST_CONTEXT")
      clean[k] = v;
  }
  const out = join(dir, `out-${++seq}`);
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        IDBOT,
        "join",
        "--server",
        service.url,
        "--token",
        token,
        "--join-method",
        method,
        "--out",
        out,
        "--format",
        "json",
        "--retries",
        "0",
        ...args,
      ],
      { env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
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

function principalsOf(r: Run): string[] {
  assert.equal(r.code, 0, r.stderr);
  const { dir: out } = JSON.parse(r.stdout) as { dir: string };
  return parseCertificateLine(readFileSync(join(out, "identity", "key-cert.pub"), "utf8").trim()).principals;
}

function denied(r: Run, message: RegExp, code = 1): void {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  assert.match(r.stderr, message);
}

/** The same JWT with its signature's last base64url character re-encoded: the spare bits
 *  differ, the decoded signature is the same, so it still verifies. */
function reencoded(token: string): string {
  const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const last = abc.indexOf(token.at(-1)!);
  const variant = token.slice(0, -1) + abc[last ^ 1];
  const sig = (t: string) => Buffer.from(t.split(".")[2]!, "base64url");
  assert.notEqual(variant, token);
  assert.ok(sig(variant).equals(sig(token)), "same signature bytes");
  return variant;
}

// ---------------------------------------------------------------- kubernetes

/** Writes a pod's projected token where the job's IDBOT_KUBERNETES_TOKEN_FILE points. */
function tokenFile(token: string): Record<string, string> {
  const file = join(dir, `sa-token-${++seq}`);
  writeFileSync(file, token);
  return { IDBOT_KUBERNETES_TOKEN_FILE: file };
}

const aud = () => service.url;

describe("kubernetes join method, static_jwks and oidc", () => {
  test("a pod's projected token joins; the templates fill the SSH principals", async () => {
    const r = await idbotJoin("k8s-jwks", "kubernetes", tokenFile(await k8s.mint({ audience: aud() })));
    assert.deepEqual(principalsOf(r), ["ci:builder", "pod-builder-7d9f8c6b5-x2k4q"]);
    const viaDiscovery = await idbotJoin(
      "k8s-oidc",
      "kubernetes",
      tokenFile(await k8s.mint({ audience: aud() })),
    );
    assert.deepEqual(principalsOf(viaDiscovery), ["ci:builder", "pod-builder-7d9f8c6b5-x2k4q"]);
    assert.ok(k8s.requests.some((q) => q.path === "/.well-known/openid-configuration"));
    assert.ok(k8s.requests.some((q) => q.path === "/openid/v1/jwks"));
  });

  test("each allow field is enforced: service account (glob), pod, node", async () => {
    const cases: Array<[Parameters<FakeKubernetes["mint"]>[0], string]> = [
      [{ serviceAccount: "deployer", pod: "builder-1" }, "service_account"],
      [{ namespace: "prod", pod: "builder-1" }, "service_account"],
      [{ pod: "runner-5f7c9-abcde" }, "pod_name"],
      [{ node: "node-12" }, "node_name"],
      [{ withoutNode: true }, "node_name"],
    ];
    for (const [claims, field] of cases) {
      const r = await idbotJoin(
        "k8s-jwks",
        "kubernetes",
        tokenFile(await k8s.mint({ audience: aud(), ...claims })),
      );
      denied(r, new RegExp(`rule 1 differs in ${field}\\)`));
    }
    const glob = await idbotJoin(
      "k8s-jwks",
      "kubernetes",
      tokenFile(await k8s.mint({ audience: aud(), serviceAccount: "builder-arm64", pod: "builder-arm64-1" })),
    );
    assert.deepEqual(principalsOf(glob), ["ci:builder-arm64", "pod-builder-arm64-1"]);
  });

  test("expired, forged and wrong-audience tokens are refused", async () => {
    const now = Math.floor(Date.now() / 1000);
    denied(
      await idbotJoin(
        "k8s-jwks",
        "kubernetes",
        tokenFile(await k8s.mint({ audience: aud(), issuedAt: now - 4000, expiresIn: 3600 })),
      ),
      /expired/,
    );
    denied(
      await idbotJoin("k8s-oidc", "kubernetes", tokenFile(await k8s.mint({ audience: aud(), forged: true }))),
      /signature is invalid/,
    );
    // The job asks for another audience: the token is for it, the service wants its own URL.
    denied(
      await idbotJoin("k8s-jwks", "kubernetes", tokenFile(await k8s.mint({ audience: OTHER_AUD })), [
        "--audience",
        OTHER_AUD,
      ]),
      /audience \["https:\/\/other\.example\.com"\] is not/,
    );
  });

  test("the client never sends a token for another audience (the pod's API server token)", async () => {
    const before = service.logs().length;
    const r = await idbotJoin("k8s-jwks", "kubernetes", tokenFile(await k8s.mint()));
    denied(r, /is for \["https:\/\/kubernetes\.default\.svc\.cluster\.local"\].*idbot does not send it/, 2);
    assert.ok(r.stderr.includes(API_AUDIENCE));
    assert.match(r.stderr, /serviceAccountToken:/, "the hint shows the projected volume");
    assert.doesNotMatch(service.logs().slice(before), /join/, "nothing reached the service");
    const missing = await idbotJoin("k8s-jwks", "kubernetes", {
      IDBOT_KUBERNETES_TOKEN_FILE: join(dir, "no-such-file"),
    });
    denied(missing, /no-such-file \(IDBOT_KUBERNETES_TOKEN_FILE\) does not exist/, 2);
  });

  test("a token is accepted once: by jti, or without jti by its signed part, however re-encoded", async () => {
    const token = await k8s.mint({ audience: aud() });
    assert.equal((await idbotJoin("k8s-jwks", "kubernetes", tokenFile(token))).code, 0);
    denied(await idbotJoin("k8s-jwks", "kubernetes", tokenFile(token)), /already used/);
    const old = await k8s.mint({ audience: aud(), withoutJti: true });
    assert.equal((await idbotJoin("k8s-oidc", "kubernetes", tokenFile(old))).code, 0);
    denied(await idbotJoin("k8s-jwks", "kubernetes", tokenFile(old)), /already used/);
    denied(await idbotJoin("k8s-oidc", "kubernetes", tokenFile(reencoded(old))), /already used/);
  });

  test("idbot explain shows the rules against a token's claims", async () => {
    const file = join(dir, "explain.jwt");
    writeFileSync(file, await k8s.mint({ audience: aud(), forged: true, pod: "runner-1" }));
    const r = await execFileP(process.execPath, [
      IDBOT,
      "explain",
      "--resources",
      service.resourcesFile,
      "--token",
      "k8s-jwks",
      "--id-token",
      file,
      "--public-url",
      aud(),
    ]).catch((e: Run) => e);
    assert.match(r.stdout, /REJECTED: the ID token's signature is invalid/);
    assert.match(r.stdout, /✓ sub\s+want "system:serviceaccount:ci:builder\*"/);
    assert.match(r.stdout, /✗ kubernetes\.io\.pod\.name\s+want "builder-\*", got "runner-1"/);
  });
});

describe("kubernetes join method, in_cluster (TokenReview)", () => {
  test("the API server reviews the token, with the service's own bearer token", async () => {
    const token = await k8s.mint({ audience: aud() });
    const r = await idbotJoin("k8s-cluster", "kubernetes", tokenFile(token));
    assert.deepEqual(principalsOf(r), ["ci:builder", "pod-builder-7d9f8c6b5-x2k4q"]);
    const review = k8s.reviews.at(-1)!;
    assert.deepEqual(review, { token, audiences: [aud()], authenticated: true });
    const req = k8s.requests.findLast((q) => q.method === "POST")!;
    assert.equal(req.path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert.equal(req.headers.authorization, `Bearer ${k8s.reviewerToken}`);
    assert.equal(req.headers["content-type"], "application/json");
    assert.deepEqual(JSON.parse(req.body), {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenReview",
      spec: { token, audiences: [aud()] },
    });
  });

  test("TokenReview says unauthenticated (pod deleted, forged token): denied", async () => {
    const gone = await k8s.mint({ audience: aud(), pod: "builder-gone" });
    k8s.deletePod("builder-gone");
    denied(
      await idbotJoin("k8s-cluster", "kubernetes", tokenFile(gone)),
      /API server did not authenticate the token \(\[invalid bearer token, pods "builder-gone" not found\]\)/,
    );
    denied(
      await idbotJoin(
        "k8s-cluster",
        "kubernetes",
        tokenFile(await k8s.mint({ audience: aud(), forged: true })),
      ),
      /did not authenticate the token .*cryptographic/,
    );
    assert.equal(k8s.reviews.at(-1)!.authenticated, false);
  });

  test("rules, expiry, audience and replay apply; a doomed token is not sent for review", async () => {
    const reviews = k8s.reviews.length;
    denied(
      await idbotJoin(
        "k8s-cluster",
        "kubernetes",
        tokenFile(await k8s.mint({ audience: aud(), serviceAccount: "builder-arm64" })),
      ),
      /rule 1 differs in service_account\)/,
    );
    assert.equal(k8s.reviews.length, reviews + 1);
    const now = Math.floor(Date.now() / 1000);
    denied(
      await idbotJoin(
        "k8s-cluster",
        "kubernetes",
        tokenFile(await k8s.mint({ audience: aud(), issuedAt: now - 4000, expiresIn: 3600 })),
      ),
      /expired/,
    );
    denied(
      await idbotJoin("k8s-cluster", "kubernetes", tokenFile(await k8s.mint({ audience: OTHER_AUD })), [
        "--audience",
        OTHER_AUD,
      ]),
      /audience/,
    );
    assert.equal(k8s.reviews.length, reviews + 1, "expired and foreign tokens are refused before any review");
    const token = await k8s.mint({ audience: aud(), withoutJti: true });
    assert.equal((await idbotJoin("k8s-cluster", "kubernetes", tokenFile(token))).code, 0);
    denied(await idbotJoin("k8s-cluster", "kubernetes", tokenFile(reencoded(token))), /already used/);
  });

  test("the token goes to the configured API server only: CA checked, no redirects; a refused reviewer is the operator's problem", async () => {
    const reviews = k8s.reviews.length;
    const wrongCa = await idbotJoin(
      "k8s-wrong-ca",
      "kubernetes",
      tokenFile(await k8s.mint({ audience: aud() })),
    );
    denied(wrongCa, /could not review the token with the Kubernetes API server/, 3);
    const redirected = await idbotJoin(
      "k8s-redirect",
      "kubernetes",
      tokenFile(await k8s.mint({ audience: aud() })),
    );
    denied(redirected, /could not review the token/, 3);
    assert.equal(decoyRequests.length, 1, "one review sent to the configured server");
    assert.equal(decoyRequests[0]!.path, "/apis/authentication.k8s.io/v1/tokenreviews");
    assert.equal(k8s.reviews.length, reviews, "nothing reached the redirect target or the wrong-CA server");
    const refused = await idbotJoin(
      "k8s-bad-reviewer",
      "kubernetes",
      tokenFile(await k8s.mint({ audience: aud() })),
    );
    denied(refused, /could not review the token/, 3);
    assert.doesNotMatch(refused.stderr, /401|token_file/, "operator detail stays in the service log");
    assert.match(service.logs(), /HTTP 401 to the TokenReview/);
    assert.match(service.logs(), /CERT|certificate|self.signed|verify/i);
  });

  test("the fake API server saw job tokens only inside TokenReviews", () => {
    for (const q of k8s.requests) {
      if (q.path === "/apis/authentication.k8s.io/v1/tokenreviews") continue;
      assert.equal(q.method, "GET");
      assert.equal(q.body, "");
      assert.equal(q.headers.authorization, undefined);
    }
  });
});

// ---------------------------------------------------------------- gcp

const metadataEnv = () => ({ IDBOT_GCP_METADATA_URL: gcp.metadataUrl });

describe("gcp join method", () => {
  test("a VM joins with its instance identity token; the templates fill the principals", async () => {
    const r = await idbotJoin("gcp-vm", "gcp", metadataEnv());
    assert.deepEqual(principalsOf(r), ["runner-1", "acme-prod"]);
    const q = gcp.metadataRequests.at(-1)!;
    assert.equal(q.path, "/computeMetadata/v1/instance/service-accounts/default/identity");
    assert.deepEqual(q.query, { audience: aud(), format: "full" });
    assert.equal(q.headers["metadata-flavor"], "Google");
    assert.ok(gcp.jwksRequests >= 1, "Google's keys fetched from jwks_uri");
  });

  test("a Cloud Run service joins by its service account", async () => {
    gcp.mintWith({
      instance: { platform: "cloud_run", serviceAccountEmail: "deployer@acme-prod.iam.gserviceaccount.com" },
    });
    try {
      const r = await idbotJoin("gcp-run", "gcp", metadataEnv());
      assert.deepEqual(principalsOf(r), ["deployer@acme-prod.iam.gserviceaccount.com"]);
      denied(
        await idbotJoin("gcp-vm", "gcp", metadataEnv()),
        /rule 1 differs in project_ids, locations, service_accounts, instance_names\)/,
      );
    } finally {
      gcp.mintWith(undefined);
    }
  });

  test("each allow field is enforced: project, location, service account, instance name", async () => {
    const cases: Array<[Parameters<FakeGcp["mintWith"]>[0], string]> = [
      [{ instance: { projectId: "acme-evil" } }, "project_ids"],
      [{ instance: { zone: "europe-west1-b" } }, "locations"],
      [{ instance: { serviceAccountEmail: "other@acme-prod.iam.gserviceaccount.com" } }, "service_accounts"],
      [{ instance: { instanceName: "builder-1" } }, "instance_names"],
    ];
    try {
      for (const [opts, field] of cases) {
        gcp.mintWith(opts);
        denied(await idbotJoin("gcp-vm", "gcp", metadataEnv()), new RegExp(`rule 1 differs in ${field}\\)`));
      }
      gcp.mintWith({ instance: { zone: "europe-west4-b", projectId: "acme-ci", instanceName: "runner-eu" } });
      assert.deepEqual(principalsOf(await idbotJoin("gcp-vm", "gcp", metadataEnv())), [
        "runner-eu",
        "acme-ci",
      ]);
      gcp.mintWith(undefined);
      const other = await idbotJoin("gcp-run", "gcp", metadataEnv());
      denied(other, /rule 1 differs in service_accounts\)/);
    } finally {
      gcp.mintWith(undefined);
    }
  });

  test("expired, forged and wrong-audience tokens are refused", async () => {
    try {
      gcp.mintWith({ issuedAt: Math.floor(Date.now() / 1000) - 7200 });
      denied(await idbotJoin("gcp-vm", "gcp", metadataEnv()), /expired/);
      gcp.mintWith({ forged: true });
      denied(await idbotJoin("gcp-vm", "gcp", metadataEnv()), /signature is invalid/);
      gcp.mintWith({ issuer: "accounts.google.com" });
      denied(await idbotJoin("gcp-vm", "gcp", metadataEnv()), /issuer "accounts\.google\.com" is not/);
    } finally {
      gcp.mintWith(undefined);
    }
    const r = await idbotJoin("gcp-vm", "gcp", metadataEnv(), ["--audience", OTHER_AUD]);
    assert.equal(gcp.metadataRequests.at(-1)!.query.audience, OTHER_AUD);
    denied(r, /audience "https:\/\/other\.example\.com" is not/);
  });

  test("a token is accepted once (no jti: the SHA-256 of its signed part), however re-encoded", async () => {
    const token = await gcp.mint({ audience: aud() });
    try {
      gcp.serve(token);
      assert.equal((await idbotJoin("gcp-vm", "gcp", metadataEnv())).code, 0);
      denied(await idbotJoin("gcp-vm", "gcp", metadataEnv()), /already used/);
      gcp.serve(reencoded(token));
      denied(await idbotJoin("gcp-vm", "gcp", metadataEnv()), /already used/);
    } finally {
      gcp.serve(undefined);
    }
  });

  test("the client asks only the metadata server, and only it answers", async () => {
    const asked = gcp.metadataRequests.length;
    const r = await idbotJoin("gcp-vm", "gcp", { IDBOT_GCP_METADATA_URL: "http://metadata.example.com" });
    denied(r, /is not the metadata server/, 2);
    denied(
      await idbotJoin("gcp-vm", "gcp", { IDBOT_GCP_METADATA_URL: `${service.url}/computeMetadata` }),
      /without "Metadata-Flavor: Google": it is not a GCE metadata server/,
      2,
    );
    assert.equal(gcp.metadataRequests.length, asked);
    // The stand-in, like the real one, answers only with the Metadata-Flavor header.
    const bare = await fetch(
      `${gcp.metadataUrl}/computeMetadata/v1/instance/service-accounts/default/identity?audience=x`,
    );
    assert.equal(bare.status, 403);
    assert.equal(gcp.metadataRequests.length, asked + 1);
  });
});

describe("resource checks at load", () => {
  const header =
    "kind: role\nversion: v1\nmetadata: { name: r }\nspec: {}\n---\nkind: bot\nversion: v1\nmetadata: { name: b }\nspec: { roles: [r] }\n---\nkind: token\nversion: v1\nmetadata: { name: t }\nspec:\n  bot_name: b\n";
  async function load(spec: string): Promise<Run> {
    const file = join(mkdtempSync(join(tmpdir(), "idbot-cloudr-")), "r.yaml");
    writeFileSync(file, header + spec);
    const args = [IDBOT, "serve", "--data-dir", join(dir, `d-${++seq}`), "--listen", "127.0.0.1:0"];
    return execFileP(process.execPath, [...args, "--resources", file]).then(
      (r) => ({ code: 0, ...r }),
      (e: Run) => e,
    );
  }

  test("a service account rule is NAMESPACE:NAME; a gcp rule names projects or service accounts, without globs", async () => {
    const k = await load(
      "  join_method: kubernetes\n  kubernetes:\n    type: oidc\n    issuer: https://k8s.example.com\n    allow: [{ service_account: ci-builder }]\n",
    );
    assert.equal(k.code, 2);
    assert.match(
      k.stderr,
      /r\.yaml:\d+: spec\.kubernetes\.allow\[0\]\.service_account: service_account is "NAMESPACE:NAME"/,
    );
    const g = await load(
      '  join_method: gcp\n  gcp:\n    allow: [{ locations: ["us-*"] }, { project_ids: ["acme-*"] }]\n',
    );
    assert.equal(g.code, 2);
    assert.match(g.stderr, /spec\.gcp\.allow\[0\]: an allow rule needs project_ids or service_accounts/);
    assert.match(g.stderr, /spec\.gcp\.allow\[1\]\.project_ids\[0\]: project_ids are matched exactly/);
  });
});
