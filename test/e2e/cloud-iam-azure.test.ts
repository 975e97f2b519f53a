// The iam (AWS) and azure join methods against the bundled service and CLI, with AWS STS,
// EC2 IMDSv2, Azure IMDS and Entra ID stand-ins on loopback (test/helpers/fake-sts.ts,
// fake-azure.ts). The service trusts the stand-ins' test CA through NODE_EXTRA_CA_CERTS; the
// token resources point the STS allow-list, the Entra issuer and the attestation trust at
// them. Nothing in the product knows it is under test.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { imdsNonce } from "../../src/client/sources/azure.ts";
import { type AwsCredentials, signGetCallerIdentity } from "../../src/client/sources/iam.ts";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";
import { builtInAttestationTrust, chainOf } from "../../src/server/joinmethods/azure.ts";
import {
  type AttestationChain,
  createAttestationChain,
  type FakeAzure,
  startFakeAzure,
} from "../helpers/fake-azure.ts";
import {
  type AwsIdentity,
  type FakeImds,
  type FakeSts,
  startFakeImds,
  startFakeSts,
} from "../helpers/fake-sts.ts";
import { IDBOT, type Service, startService } from "../helpers/service.ts";
import { createTestTlsCA } from "../helpers/testca.ts";

const ACCOUNT = "123456789012";
const SUBSCRIPTION = "5d6f3c0a-8a51-4c2e-9f0e-2b9a1c7d4e11";
const OTHER_SUBSCRIPTION = "0b7e9a52-1f3d-4c8a-a6e2-7d5c3b9f1a20";

const identity = (name: string, account: string, arn: string, session = true): AwsIdentity => ({
  accessKeyId: `ASIA${name.toUpperCase().padEnd(16, "X")}`,
  secretAccessKey: `secret-${name}-wJalrXUtnFEMI/K7MDENG/bPxRfiCY`,
  sessionToken: session ? `IQoJb3JpZ2luX2VjE${name}//////////wEaCXVzLWVhc3QtMSJHMEUCIQ` : undefined,
  account,
  arn,
  userId: `AROA3XFRBF535PLBIFPI4:${name}`,
});
const alice = identity(
  "alice",
  ACCOUNT,
  `arn:aws:sts::${ACCOUNT}:assumed-role/automation-role/i-0a1b2c3d4e5f`,
);
const otherAccount = identity(
  "mallory",
  "210987654321",
  "arn:aws:sts::210987654321:assumed-role/automation-role/x",
);
const otherRole = identity("bob", ACCOUNT, `arn:aws:sts::${ACCOUNT}:assumed-role/admin-role/x`);
const creds = (i: AwsIdentity): AwsCredentials => ({
  accessKeyId: i.accessKeyId,
  secretAccessKey: i.secretAccessKey,
  sessionToken: i.sessionToken,
});

let sts: FakeSts;
let rogue: FakeSts;
let imds: FakeImds;
let azure: FakeAzure;
let trusted: AttestationChain;
let untrusted: AttestationChain;
let service: Service;
let aud: string;

function resources(): string {
  return `
kind: role
version: v1
metadata: { name: aws }
spec: { logins: ["aws-{{ join.iam.aws_account }}"] }
---
kind: role
version: v1
metadata: { name: az }
spec: { logins: ["az-{{ join.azure.resource_group }}"] }
---
kind: bot
version: v1
metadata: { name: aws }
spec: { roles: [aws] }
---
kind: bot
version: v1
metadata: { name: az }
spec: { roles: [az] }
---
kind: token
version: v1
metadata: { name: aws-ci }
spec:
  join_method: iam
  bot_name: aws
  iam:
    sts_endpoints: ["${sts.host}"]
    allow:
      - aws_account: "${ACCOUNT}"
        aws_arn: "arn:aws:sts::${ACCOUNT}:assumed-role/automation-role/*"
---
kind: token
version: v1
metadata: { name: aws-default-endpoints }
spec:
  join_method: iam
  bot_name: aws
  iam:
    allow: [{ aws_account: "${ACCOUNT}" }]
---
kind: token
version: v1
metadata: { name: azure-ci }
spec:
  join_method: azure
  bot_name: az
  azure:
    tenant_id: ${azure.tenantId}
    issuer: ${azure.entra.issuer}
    attestation_cas: |
${trusted.rootPem.trim().replace(/^/gm, "      ")}
    allow:
      - subscription: "${SUBSCRIPTION}"
        resource_groups: ["ci-*", prod]
---
kind: token
version: v1
metadata: { name: azure-builtin-trust }
spec:
  join_method: azure
  bot_name: az
  azure:
    tenant_id: ${azure.tenantId}
    issuer: ${azure.entra.issuer}
    allow: [{ subscription: "${SUBSCRIPTION}" }]
`;
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), "idbot-cloud-"));
  const [ca, t, u] = await Promise.all([
    createTestTlsCA(join(dir, "ca")),
    createAttestationChain(join(dir, "trusted")),
    createAttestationChain(join(dir, "untrusted")),
  ]);
  trusted = t;
  untrusted = u;
  const tls = { tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile };
  [sts, rogue, imds, azure] = await Promise.all([
    startFakeSts({ ...tls, identities: [alice, otherAccount, otherRole] }),
    startFakeSts({ ...tls, identities: [alice] }),
    startFakeImds({ role: "automation-role", identity: alice }),
    startFakeAzure({
      ...tls,
      chain: trusted,
      vm: {
        subscriptionId: SUBSCRIPTION,
        resourceGroup: "ci-runners",
        vmName: "runner-7",
        vmId: "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
        principalId: "9f2d1c3b-5a4e-4f6d-8c7b-1a2b3c4d5e6f",
        clientId: "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
      },
    }),
  ]);
  service = await startService({ resources: resources(), env: { NODE_EXTRA_CA_CERTS: ca.caFile } });
  aud = service.url;
});

after(async () => {
  await service?.stop();
  await Promise.all([sts?.close(), rogue?.close(), imds?.close(), azure?.close()]);
});

const keys = {
  ssh: ed25519PublicKeyLine(generateKeyPairSync("ed25519").publicKey, "t"),
  tls: generateKeyPairSync("ec", { namedCurve: "P-256" })
    .publicKey.export({ format: "pem", type: "spki" })
    .toString(),
};

interface Answer {
  status: number;
  body: { ssh?: { principals: string[] }; error?: { code: string; message: string } };
}

async function joinWith(token: string, method: "iam" | "azure", proof: string): Promise<Answer> {
  const res = await fetch(`${service.url}/v1/join`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token, join_method: method, id_token: proof, public_keys: keys }),
  });
  return { status: res.status, body: (await res.json()) as Answer["body"] };
}

function deniedWith(r: Answer, pattern: RegExp): void {
  assert.equal(r.status, 403, JSON.stringify(r.body));
  assert.match(r.body.error!.message, pattern);
}

/** The CLI as a user runs it, with only the given cloud variables set. */
function idbot(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(AWS_|IDBOT_|ACTIONS_|GITHUB_|GITLAB_|CI$|NODE_TEST|NODE_OPTIONS)/.test(k))
      continue;
    base[k] = v;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [IDBOT, ...args], {
      env: { ...base, ...env },
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

async function cliJoin(token: string, method: string, env: Record<string, string>) {
  const out = join(mkdtempSync(join(tmpdir(), "idbot-cloud-out-")), "creds");
  const r = await idbot(
    [
      "join",
      "--server",
      service.url,
      "--token",
      token,
      "--join-method",
      method,
      "--out",
      out,
      "--outputs",
      "identity",
    ],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  const s = await idbot(["status", out, "--format", "json"], {});
  assert.equal(s.code, 0, s.stderr);
  return JSON.parse(s.stdout) as { join_method: string; ssh: { principals: string[]; key_id: string } };
}

const presign = (i: AwsIdentity, o: Partial<Parameters<typeof signGetCallerIdentity>[0]> = {}) =>
  JSON.stringify(
    signGetCallerIdentity({ url: sts.url, region: "us-east-1", credentials: creds(i), audience: aud, ...o }),
  );

describe("iam join method", () => {
  test("credentials from the environment: the CLI joins and the template fills the login", async () => {
    const before = sts.requests;
    const s = await cliJoin("aws-ci", "iam", {
      AWS_ACCESS_KEY_ID: alice.accessKeyId,
      AWS_SECRET_ACCESS_KEY: alice.secretAccessKey,
      AWS_SESSION_TOKEN: alice.sessionToken!,
      IDBOT_AWS_STS_ENDPOINT: sts.url,
    });
    assert.equal(s.join_method, "iam");
    assert.deepEqual(s.ssh.principals, [`aws-${ACCOUNT}`]);
    assert.match(s.ssh.key_id, /assumed-role\/automation-role\/i-0a1b2c3d4e5f/);
    assert.equal(sts.requests, before + 1, "the service asked STS once");
  });

  test("credentials of the EC2 instance role from IMDSv2: the CLI joins", async () => {
    const s = await cliJoin("aws-ci", "iam", {
      IDBOT_AWS_IMDS_URL: imds.url,
      IDBOT_AWS_STS_ENDPOINT: sts.url,
    });
    assert.deepEqual(s.ssh.principals, [`aws-${ACCOUNT}`]);
    assert.ok(imds.requests.token >= 1 && imds.requests.credentials >= 1, JSON.stringify(imds.requests));
    const noRole = await idbot(
      ["join", "--server", service.url, "--token", "aws-ci", "--join-method", "iam", "--outputs", "identity"],
      { IDBOT_AWS_IMDS_URL: "http://127.0.0.1:9" },
    );
    assert.equal(noRole.code, 2, noRole.stderr);
    assert.match(
      noRole.stderr,
      /no AWS credentials: AWS_ACCESS_KEY_ID is not set and the EC2 instance metadata service/,
    );
  });

  test("denied for each allow field: another account, an ARN outside the glob", async () => {
    deniedWith(
      await joinWith("aws-ci", "iam", presign(otherAccount)),
      /rule 1 differs in aws_account, aws_arn/,
    );
    deniedWith(await joinWith("aws-ci", "iam", presign(otherRole)), /rule 1 differs in aws_arn\)/);
  });

  test("an old presigned request is refused unsent; a replayed one is refused", async () => {
    const before = sts.requests;
    const old = presign(alice, { now: new Date(Date.now() - 16 * 60_000) });
    deniedWith(await joinWith("aws-ci", "iam", old), /the presigned request expired/);
    assert.equal(sts.requests, before);
    const once = presign(alice);
    const first = await joinWith("aws-ci", "iam", once);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    deniedWith(await joinWith("aws-ci", "iam", once), /already used/);
  });

  test("a request signed for another service's audience is refused unsent", async () => {
    const before = sts.requests;
    const r = await joinWith(
      "aws-ci",
      "iam",
      presign(alice, { audience: "https://other-idbot.example.com" }),
    );
    deniedWith(r, /is for "https:\/\/other-idbot\.example\.com", not this service/);
    assert.equal(sts.requests, before);
  });

  test("a forged signature (wrong secret key): STS answers 403 and the join is denied", async () => {
    const before = sts.requests;
    const forged = JSON.stringify(
      signGetCallerIdentity({
        url: sts.url,
        region: "us-east-1",
        credentials: { ...creds(alice), secretAccessKey: "not-alices-secret" },
        audience: aud,
      }),
    );
    deniedWith(
      await joinWith("aws-ci", "iam", forged),
      /STS refused the presigned request \(HTTP 403 SignatureDoesNotMatch/,
    );
    assert.equal(sts.requests, before + 1);
  });

  test("requests to another host, or for another action, are never forwarded", async () => {
    const before = sts.requests;
    const edit = (
      proof: string,
      f: (p: { url: string; headers: Record<string, string>; body: string; method: string }) => void,
    ) => {
      const p = JSON.parse(proof);
      f(p);
      return JSON.stringify(p);
    };
    const cases: Array<[string, string, RegExp]> = [
      ["a host not on the allow-list", presign(alice, { url: rogue.url }), /is not an allowed STS endpoint/],
      [
        "another action",
        presign(alice, {
          body: "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::123456789012:role/admin",
        }),
        /only sts:GetCallerIdentity is forwarded/,
      ],
      [
        "plain http",
        edit(presign(alice), (p) => {
          p.url = p.url.replace("https:", "http:");
        }),
        /is not https/,
      ],
      [
        "a query string",
        edit(presign(alice), (p) => {
          p.url = `${p.url}?Action=AssumeRole`;
        }),
        /no path or query/,
      ],
      [
        "a URL host other than the signed host",
        edit(presign(alice, { url: rogue.url }), (p) => {
          p.url = `${sts.url}/`;
        }),
        /signed host header .* is not the URL's host/,
      ],
      [
        "an unsigned audience header",
        edit(presign(alice), (p) => {
          p.headers.authorization = p.headers.authorization!.replace(";x-idbot-audience", "");
        }),
        /signed headers do not include x-idbot-audience/,
      ],
      [
        "an extra header",
        edit(presign(alice), (p) => {
          p.headers["x-amz-target"] = "AWSSecurityTokenServiceV20110615.AssumeRole";
        }),
        /header "x-amz-target" is not allowed/,
      ],
      [
        "GET",
        edit(presign(alice), (p) => {
          p.method = "GET";
        }),
        /method "GET" is not POST/,
      ],
    ];
    for (const [what, proof, pattern] of cases) {
      const r = await joinWith("aws-ci", "iam", proof);
      assert.equal(r.status, 403, `${what}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.error!.message, /not forwarded to STS/, what);
      assert.match(r.body.error!.message, pattern, what);
    }
    // The default allow-list names only AWS's endpoints (https on 443).
    const r = await joinWith("aws-default-endpoints", "iam", presign(alice));
    deniedWith(r, /127\.0\.0\.1:\d+ is not an allowed STS endpoint \(sts\.amazonaws\.com, sts\.REGION/);
    assert.equal(sts.requests, before, "the STS stand-in saw none of them");
    assert.equal(rogue.requests, 0, "the host off the allow-list saw nothing");
  });
});

async function challenge(token = "azure-ci"): Promise<{ challenge_id: string; nonce: string }> {
  const res = await fetch(`${service.url}/v1/join/challenge`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token, join_method: "azure" }),
  });
  assert.equal(res.status, 200);
  return (await res.json()) as { challenge_id: string; nonce: string };
}

async function azureProof(
  o: {
    token?: string;
    audience?: string;
    claims?: Record<string, unknown>;
    nonce?: string;
    document?: string;
  } = {},
) {
  const ch = await challenge(o.token ?? "azure-ci");
  const document = o.document ?? (await azure.documentFor(o.nonce ?? imdsNonce(ch.nonce)));
  const access_token = await azure.mintToken(o.audience ?? aud, o.claims);
  return { ch, proof: JSON.stringify({ challenge_id: ch.challenge_id, document, access_token }) };
}

async function withVm<T>(change: Partial<FakeAzure["vm"]>, f: () => Promise<T>): Promise<T> {
  const saved = azure.vm;
  azure.vm = { ...saved, ...change };
  try {
    return await f();
  } finally {
    azure.vm = saved;
  }
}

describe("azure join method", () => {
  test("the CLI joins from a VM: challenge, attested document, managed identity token", async () => {
    const before = { ...azure.requests };
    const s = await cliJoin("azure-ci", "azure", { IDBOT_AZURE_IMDS_URL: azure.imdsUrl });
    assert.equal(s.join_method, "azure");
    assert.deepEqual(s.ssh.principals, ["az-ci-runners"]);
    assert.match(s.ssh.key_id, new RegExp(`subscription=${SUBSCRIPTION},resource_group=ci-runners`));
    assert.equal(azure.requests.documents, before.documents + 1);
    assert.equal(azure.requests.tokens, before.tokens + 1);
  });

  test("denied for each allow field: another subscription, a resource group outside the globs", async () => {
    const sub = await withVm({ subscriptionId: OTHER_SUBSCRIPTION }, async () => (await azureProof()).proof);
    deniedWith(await joinWith("azure-ci", "azure", sub), /rule 1 differs in subscription\)/);
    const rg = await withVm({ resourceGroup: "dev" }, async () => (await azureProof()).proof);
    deniedWith(await joinWith("azure-ci", "azure", rg), /rule 1 differs in resource_groups\)/);
    const prod = await withVm({ resourceGroup: "Prod" }, async () => (await azureProof()).proof);
    assert.equal(
      (await joinWith("azure-ci", "azure", prod)).status,
      200,
      "resource groups compare case-insensitively",
    );
  });

  test("an old document and an expired challenge are refused", async () => {
    azure.documentAgeSeconds = 7 * 3600;
    try {
      deniedWith(
        await joinWith("azure-ci", "azure", (await azureProof()).proof),
        /the attested document expired at/,
      );
    } finally {
      azure.documentAgeSeconds = 0;
    }
    const { ch, proof } = await azureProof();
    const db = new Database(join(service.dataDir, "idbot.db"));
    try {
      db.pragma("busy_timeout = 5000");
      db.prepare("UPDATE challenges SET expires_at = ? WHERE id = ?").run(
        new Date(Date.now() - 1000).toISOString(),
        ch.challenge_id,
      );
    } finally {
      db.close();
    }
    deniedWith(await joinWith("azure-ci", "azure", proof), /the challenge expired at/);
  });

  test("a challenge answers once; a document for another challenge or token is refused", async () => {
    const { proof } = await azureProof();
    assert.equal((await joinWith("azure-ci", "azure", proof)).status, 200);
    deniedWith(await joinWith("azure-ci", "azure", proof), /already used/);
    deniedWith(
      await joinWith(
        "azure-ci",
        "azure",
        (await azureProof({ nonce: "0123456789abcdef0123456789abcdef" })).proof,
      ),
      /nonce mismatch/,
    );
    const otherToken = await azureProof({ token: "azure-builtin-trust" });
    deniedWith(
      await joinWith("azure-ci", "azure", otherToken.proof),
      /challenge is unknown, or was issued for another join token/,
    );
  });

  test("an access token for another audience, tenant or subscription is refused", async () => {
    deniedWith(
      await joinWith(
        "azure-ci",
        "azure",
        (await azureProof({ audience: "https://management.azure.com/" })).proof,
      ),
      /audience "https:\/\/management\.azure\.com\/" is not/,
    );
    deniedWith(
      await joinWith(
        "azure-ci",
        "azure",
        (await azureProof({ claims: { tid: "11111111-2222-4333-8444-555555555555" } })).proof,
      ),
      /from tenant "11111111-2222-4333-8444-555555555555"/,
    );
    const elsewhere = `/subscriptions/${OTHER_SUBSCRIPTION}/resourcegroups/ci-runners/providers/Microsoft.Compute/virtualMachines/x`;
    deniedWith(
      await joinWith("azure-ci", "azure", (await azureProof({ claims: { xms_mirid: elsewhere } })).proof),
      /not in the attested VM's subscription/,
    );
  });

  test("forged documents: an untrusted chain, tampered content, the built-in trust", async () => {
    azure.signer = untrusted;
    try {
      deniedWith(
        await joinWith("azure-ci", "azure", (await azureProof()).proof),
        /signing certificate \(issued by "Test Azure TLS Issuing CA"\) does not chain to a trusted CA/,
      );
    } finally {
      azure.signer = trusted;
    }
    const { ch, proof } = await azureProof();
    const p = JSON.parse(proof) as { document: string };
    const der = Buffer.from(p.document, "base64");
    const at = der.indexOf(Buffer.from(SUBSCRIPTION));
    assert.ok(at > 0);
    Buffer.from(OTHER_SUBSCRIPTION).copy(der, at);
    const tampered = JSON.stringify({ ...JSON.parse(proof), document: der.toString("base64") });
    deniedWith(await joinWith("azure-ci", "azure", tampered), /not validly signed: .*tampered/);
    assert.ok(ch.challenge_id);
    // Without attestation_cas, only Azure's own chain is trusted.
    deniedWith(
      await joinWith(
        "azure-builtin-trust",
        "azure",
        (await azureProof({ token: "azure-builtin-trust" })).proof,
      ),
      /does not chain to a trusted CA/,
    );
  });

  test("the built-in Microsoft intermediates chain to Node's bundled DigiCert Global Root G2", () => {
    const trust = builtInAttestationTrust();
    assert.ok(trust.anchors.some((a) => /CN=DigiCert Global Root G2/.test(a.subject)));
    assert.equal(trust.intermediates.length, 9);
    for (const c of trust.intermediates) {
      assert.ok(c.ca, c.subject);
      const path = chainOf(c, trust.intermediates, trust.anchors, new Date(Date.parse(c.validFrom) + 1000));
      assert.ok(path, `${c.subject} chains to a root`);
      assert.match(path.at(-1)!.subject, /CN=DigiCert Global Root G2/);
    }
    assert.ok(new X509Certificate(trusted.leafPem).checkIssued(new X509Certificate(trusted.intermediatePem)));
  });
});
