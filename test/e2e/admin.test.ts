// The remote admin API against the bundled service: admin tokens made on the service host,
// `idbot admin ... --server URL` printing what the local commands print, 401 without a
// known admin token, every change audited with its actor, admin tokens never over HTTP.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { boundKeypairSigningInput } from "../../src/protocol/join.ts";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";
import { IDBOT, type Service, startService, writeTemp } from "../helpers/service.ts";
import { createTestTlsCA } from "../helpers/testca.ts";

const RESOURCES = `
kind: role
version: v1
metadata: { name: edge }
spec: { logins: [edge] }
---
kind: bot
version: v1
metadata: { name: edge }
spec: { roles: [edge] }
`;

// biome-ignore lint/suspicious/noExplicitAny: JSON answers, read field by field in assertions
type Json = Record<string, any>;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the bundled CLI without IDBOT_ADMIN_TOKEN from the caller's environment. */
function idbot(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const { IDBOT_ADMIN_TOKEN: _t, ...base } = process.env;
  return new Promise((resolve) => {
    execFile(process.execPath, [IDBOT, ...args], { env: { ...base, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
const lastLine = (s: string) => s.trim().split("\n").pop()!;

let svc: Service;
let adminToken: string;
let adminId: string;
const remote = () => ["--server", svc.url, "--admin-token", adminToken];
const local = () => ["--data-dir", svc.dataDir];

before(async () => {
  svc = await startService({ resources: RESOURCES });
  const add = await idbot(["admin", "admin-tokens", "add", ...local(), "--name", "ci-admin"]);
  assert.equal(add.code, 0, add.stderr);
  adminToken = lastLine(add.stdout);
  adminId = /admin token (adm-[0-9a-f]{8})/.exec(add.stderr)![1]!;
});
after(async () => {
  await svc?.stop();
});

function sessionKeys() {
  const ssh = generateKeyPairSync("ed25519");
  const tls = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    ssh: ed25519PublicKeyLine(ssh.publicKey, "s"),
    tls: tls.publicKey.export({ format: "pem", type: "spki" }).toString(),
  };
}

async function post(path: string, body: unknown) {
  const res = await fetch(`${svc.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

async function adminFetch(path: string, init: { method?: string; token?: string; body?: unknown } = {}) {
  const res = await fetch(`${svc.url}/v1/admin/${path}`, {
    method: init.method ?? "GET",
    headers: {
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Json };
}

describe("admin tokens on the service host", () => {
  test("add prints the token once; ls shows id, name and creation, never the secret", async () => {
    assert.match(adminToken, /^idbot_admin_[A-Za-z0-9_-]{43}$/);
    const ls = await idbot(["admin", "admin-tokens", "ls", ...local()]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, new RegExp(`^ID\\s+NAME\\s+CREATED\\n${adminId}\\s+ci-admin\\s+\\d{4}-`, "m"));
    assert.doesNotMatch(ls.stdout + ls.stderr, new RegExp(adminToken));
    const json = JSON.parse(
      (await idbot(["admin", "admin-tokens", "ls", ...local(), "--format", "json"])).stdout,
    );
    assert.deepEqual(Object.keys(json[0]).sort(), ["created_at", "id", "name"]);
    const dup = await idbot(["admin", "admin-tokens", "add", ...local(), "--name", "ci-admin"]);
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /an admin token named "ci-admin" exists/);
  });

  test("admin tokens cannot be managed over HTTP", async () => {
    const cli = await idbot(["admin", "admin-tokens", "ls", ...remote()]);
    assert.equal(cli.code, 2);
    assert.match(cli.stderr, /admin tokens are managed only on the service host, never over HTTP/);
    for (const [method, body] of [
      ["GET", undefined],
      ["POST", { name: "x" }],
      ["DELETE", undefined],
    ] as const) {
      const r = await adminFetch(method === "DELETE" ? `admin-tokens/${adminId}` : "admin-tokens", {
        method,
        token: adminToken,
        ...(body ? { body } : {}),
      });
      assert.equal(r.status, 403, `${method}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.error.message, /admin tokens cannot be managed over HTTP/);
    }
    // Nor through the resource commands.
    const show = await idbot(["admin", "tokens", "show", adminId, ...remote()]);
    assert.equal(show.code, 2);
    assert.match(show.stderr, /no one-time secret, bound-keypair state or applied token named/);
    const file = writeTemp(
      "a.yaml",
      `kind: admin_token\nversion: v1\nmetadata: { name: ${adminId} }\nspec: { hash: x }\n`,
    );
    const applied = await idbot(["admin", "apply", ...remote(), "-f", file]);
    assert.equal(applied.code, 2, applied.stderr);
  });
});

describe("without a known admin token", () => {
  test("the CLI refuses with a clear message; the service answers 401", async () => {
    const none = await idbot(["admin", "tokens", "ls", "--server", svc.url]);
    assert.equal(none.code, 2);
    assert.match(
      none.stderr,
      /--server needs an admin token: set IDBOT_ADMIN_TOKEN \(or pass --admin-token TOKEN\)/,
    );
    const wrong = await idbot(["admin", "tokens", "ls", "--server", svc.url], {
      IDBOT_ADMIN_TOKEN: "idbot_admin_not-a-real-token",
    });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /the admin token is not known to this service/);
    assert.match(wrong.stderr, /hint: Create an admin token on the service host/);

    const anon = await adminFetch("tokens");
    assert.equal(anon.status, 401);
    assert.equal(anon.body.error.code, "unauthorized");
    assert.match(anon.body.error.message, /needs an admin token: send it as Authorization: Bearer/);
    assert.match(anon.headers.get("www-authenticate") ?? "", /^Bearer/);
    const bad = await adminFetch("tokens", { method: "POST", token: "guess", body: { bot: "edge" } });
    assert.equal(bad.status, 401);
    assert.match(bad.body.error.message, /not known to this service/);
    assert.equal(
      (await adminFetch("audit", { token: `${adminToken}x` })).status,
      401,
      "a prefix is not enough",
    );
    const both = await idbot(["admin", "tokens", "ls", ...local(), "--server", svc.url]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /give one of --data-dir, --database or --server/);
    const plain = await idbot([
      "admin",
      "tokens",
      "ls",
      "--server",
      "http://idbot.example.com",
      "--admin-token",
      "x",
    ]);
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /refusing plain HTTP/);
  });

  test("a removed admin token is refused at once", async () => {
    const add = await idbot(["admin", "admin-tokens", "add", ...local(), "--name", "short-lived"]);
    const token = lastLine(add.stdout);
    const id = /admin token (adm-[0-9a-f]{8})/.exec(add.stderr)![1]!;
    assert.equal((await adminFetch("tokens", { token })).status, 200);
    const rm = await idbot(["admin", "admin-tokens", "rm", id, ...local()]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await adminFetch("tokens", { token })).status, 401);
    const again = await idbot(["admin", "admin-tokens", "rm", id, ...local()]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /no admin token with ID/);
  });
});

describe("remote administration", () => {
  test("a join secret made over HTTP works once; tokens and bot-instances print what the local commands print", async () => {
    const add = await idbot(["admin", "tokens", "add", ...remote(), "--bot", "edge", "--ttl", "10m"]);
    assert.equal(add.code, 0, add.stderr);
    const secret = lastLine(add.stdout);
    assert.match(secret, /^idbot_join_[A-Za-z0-9_-]{32}$/);
    assert.match(add.stderr, /one-time join secret tok-[0-9a-f]{8} for bot "edge"/);
    const joined = await post("/v1/join", {
      token: secret,
      join_method: "token",
      public_keys: sessionKeys(),
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    const id = joined.body.bot_instance_id as string;

    const ls = await idbot(["admin", "tokens", "ls", ...remote()]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /tok-[0-9a-f]{8}\s+one-time\s+edge\s+used /);
    assert.doesNotMatch(ls.stdout, new RegExp(secret));
    for (const args of [
      ["tokens", "ls", "--format", "json"],
      ["bot-instances", "ls", "edge"],
      ["bot-instances", "ls", "--format", "json"],
      ["bot-instances", "show", `edge/${id}`],
    ]) {
      const r = await idbot(["admin", ...args, ...remote()]);
      const l = await idbot(["admin", ...args, ...local()]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, l.stdout, `admin ${args.join(" ")}: remote and local print the same`);
    }
    const show = JSON.parse(
      (await idbot(["admin", "bot-instances", "show", `edge/${id}`, ...remote()])).stdout,
    );
    assert.equal(show.id, id);
    const missing = await idbot(["admin", "bot-instances", "show", "edge/nope", ...remote()]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no bot instance edge\/nope/);

    const rmAdd = await idbot(["admin", "tokens", "add", ...remote(), "--bot", "edge"]);
    const rmId = /(tok-[0-9a-f]{8})/.exec(rmAdd.stderr)![1]!;
    const rm = await idbot(["admin", "tokens", "rm", rmId, ...remote()]);
    assert.equal(rm.code, 0, rm.stderr);
    const refused = await post("/v1/join", {
      token: lastLine(rmAdd.stdout),
      join_method: "token",
      public_keys: sessionKeys(),
    });
    assert.equal(refused.status, 403);
  });

  test("apply --server stores a token the service honours within seconds; tokens edit --server changes it", async () => {
    const key = generateKeyPairSync("ed25519");
    const keyLine = ed25519PublicKeyLine(key.publicKey, "edge-2");
    const file = writeTemp(
      "token.yaml",
      `kind: token\nversion: v1\nmetadata: { name: edge-applied }\nspec:\n  join_method: bound_keypair\n  bot_name: edge\n  bound_keypair:\n    onboarding: { initial_public_key: "${keyLine}" }\n    recovery: { mode: standard, limit: 1 }\n`,
    );
    const applied = await idbot(["admin", "apply", ...remote(), "-f", file]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stderr, /applied token\/edge-applied/);
    const join = async () => {
      const ch = await post("/v1/join/challenge", { token: "edge-applied", join_method: "bound_keypair" });
      if (ch.status !== 200) return ch;
      const keys = sessionKeys();
      return post("/v1/join", {
        token: "edge-applied",
        join_method: "bound_keypair",
        public_keys: keys,
        bound_keypair: {
          public_key: keyLine,
          challenge_id: ch.body.challenge_id,
          signature: sign(
            null,
            boundKeypairSigningInput("edge-applied", ch.body.challenge_id, ch.body.nonce, keys),
            key.privateKey,
          ).toString("base64"),
        },
      });
    };
    const deadline = Date.now() + 6000;
    let r = await join();
    while (r.status !== 200 && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 250));
      r = await join();
    }
    assert.equal(r.status, 200, `the applied token is honoured: ${JSON.stringify(r.body)}`);
    const bad = writeTemp(
      "bad.yaml",
      "kind: token\nversion: v1\nmetadata: { name: x }\nspec: { bogus: 1 }\n",
    );
    const refused = await idbot(["admin", "apply", ...remote(), "-f", bad]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /bad\.yaml:\d+: /, "the error names the file and line, as locally");

    const edit = await idbot([
      "admin",
      "tokens",
      "edit",
      "edge-applied",
      ...remote(),
      "--recovery-limit",
      "3",
    ]);
    assert.equal(edit.code, 0, edit.stderr);
    assert.match(edit.stderr, /recovery limit 3/);
    const shown = JSON.parse((await idbot(["admin", "tokens", "show", "edge-applied", ...remote()])).stdout);
    assert.equal(shown.applied.spec.bound_keypair.recovery.limit, 3);
  });

  test("sign-host and rotate-jwt over HTTP", async () => {
    const hostKey = writeTemp(
      "ssh_host_ed25519_key.pub",
      `${ed25519PublicKeyLine(generateKeyPairSync("ed25519").publicKey, "host")}\n`,
    );
    const signed = await idbot([
      "admin",
      "sign-host",
      ...remote(),
      "--host-key",
      hostKey,
      "--principals",
      "web01,web01.example.com",
    ]);
    assert.equal(signed.code, 0, signed.stderr);
    const certFile = lastLine(signed.stdout);
    assert.equal(certFile, hostKey.replace(/\.pub$/, "-cert.pub"));
    assert.match(readFileSync(certFile, "utf8"), /^ssh-ed25519-cert-v01@openssh\.com /);

    const rotated = await idbot(["admin", "rotate-jwt", ...remote()]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const kid = lastLine(rotated.stdout);
    const jwks = (await (await fetch(`${svc.url}/.well-known/jwks.json`)).json()) as {
      keys: { kid: string }[];
    };
    assert.ok(
      jwks.keys.some((k) => k.kid === kid),
      "the answering service publishes the new key at once",
    );
  });

  test("every change is audited with its actor; admin tokens appear in no output or log", async () => {
    const localAdd = await idbot(["admin", "tokens", "add", ...local(), "--bot", "edge"]);
    assert.equal(localAdd.code, 0, localAdd.stderr);
    const audit = await idbot(["admin", "audit", "ls", ...remote(), "--format", "json"]);
    assert.equal(audit.code, 0, audit.stderr);
    const events = audit.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; remoteAddr?: string; data?: { actor?: string } });
    const remoteActor = `admin-token:${adminId} (ci-admin)`;
    for (const type of [
      "token.created",
      "token.deleted",
      "resources.applied",
      "token.edited",
      "cert.issued",
      "ca.rotated",
    ]) {
      const e = events.find((x) => x.type === type && x.data?.actor === remoteActor);
      assert.ok(e, `a remote ${type} event names ${remoteActor}`);
      assert.match(e.remoteAddr ?? "", /127\.0\.0\.1/);
    }
    const localActor = events.filter(
      (e) => e.type === "token.created" && /^local:.+/.test(e.data?.actor ?? ""),
    );
    assert.ok(localActor.length >= 1, "a local change names local:<user>");
    assert.ok(
      events.some((e) => e.type === "admin_token.created" && /^local:/.test(e.data?.actor ?? "")),
      "admin token changes are audited too",
    );
    const text = await idbot(["admin", "audit", "ls", ...remote(), "--type", "token.created"]);
    assert.match(text.stdout, new RegExp(`by admin-token:${adminId} \\(ci-admin\\)`));
    const localText = await idbot(["admin", "audit", "ls", ...local(), "--type", "token.created"]);
    assert.equal(text.stdout, localText.stdout, "remote and local audit listings match");

    assert.doesNotMatch(audit.stdout, new RegExp(adminToken));
    assert.doesNotMatch(svc.logs(), new RegExp(adminToken), "the admin token is never logged");
    assert.doesNotMatch(
      svc.logs(),
      /applied resources could not be loaded/,
      "admin tokens are not resources",
    );
    assert.match(svc.logs(), /admin request refused/);
  });
});

describe("over HTTPS", () => {
  test("--ca trusts a private CA; without it the TLS failure says so", async () => {
    const ca = await createTestTlsCA(mkdtempSync(join(tmpdir(), "idbot-admin-ca-")));
    const tls = await startService({
      resources: RESOURCES,
      args: ["--tls-cert", ca.serverCertFile, "--tls-key", ca.serverKeyFile],
    });
    try {
      assert.match(tls.url, /^https:/);
      const add = await idbot([
        "admin",
        "admin-tokens",
        "add",
        "--data-dir",
        tls.dataDir,
        "--name",
        "bootstrap",
      ]);
      const env = { IDBOT_ADMIN_TOKEN: lastLine(add.stdout) };
      const ok = await idbot(["admin", "tokens", "ls", "--server", tls.url, "--ca", ca.caFile], env);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^ID\/NAME\s+KIND/);
      const untrusted = await idbot(["admin", "tokens", "ls", "--server", tls.url], env);
      assert.equal(untrusted.code, 3);
      assert.match(untrusted.stderr, /TLS verification of .* failed .*pass it with --ca/);
    } finally {
      await tls.stop();
    }
  });
});

describe("rate limit", () => {
  test("admin routes are subject to the per-address limit", async () => {
    const limited = await startService({ resources: RESOURCES, args: ["--rate-limit", "1"] });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${limited.url}/v1/admin/tokens`);
        statuses.push(res.status);
        await res.body?.cancel();
      }
      assert.ok(statuses.includes(401), statuses.join(","));
      assert.ok(statuses.includes(429), statuses.join(","));
    } finally {
      await limited.stop();
    }
  });
});
