// Machine joins against the bundled service, speaking the v1 protocol directly (the CLI
// and daemon tests cover the client): one-time join secrets, bound keypairs with join
// state and recovery limits, renewal with generation counters, and operator commands.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, type KeyObject, sign, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { boundKeypairSigningInput, renewSigningInput } from "../../src/protocol/join.ts";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";
import { IDBOT, type Service, startService } from "../helpers/service.ts";

const execFileP = promisify(execFile);
const REG_SECRET = "register-me-once-0123456789";

function resources(): string {
  return `
kind: role
version: v1
metadata: { name: edge }
spec:
  logins: [edge]
  host_principals: ["{{ join.bound_keypair.token_name }}.edge.example.com"]
---
kind: bot
version: v1
metadata: { name: edge }
spec: { roles: [edge] }
---
kind: token
version: v1
metadata: { name: edge-secret }
spec:
  join_method: bound_keypair
  bot_name: edge
  bound_keypair:
    onboarding: { registration_secret: "${REG_SECRET}" }
    recovery: { mode: standard, limit: 2 }
---
kind: token
version: v1
metadata: { name: edge-relaxed }
spec:
  join_method: bound_keypair
  bot_name: edge
  bound_keypair:
    onboarding: { registration_secret: "${REG_SECRET}" }
    recovery: { mode: relaxed }
`;
}

let svc: Service;
const idbot = (...args: string[]) => execFileP(process.execPath, [IDBOT, ...args]);

before(async () => {
  svc = await startService({ resources: resources() });
});
after(async () => {
  await svc?.stop();
});

function sessionKeys() {
  const ssh = generateKeyPairSync("ed25519");
  const tls = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    tlsPrivate: tls.privateKey,
    public_keys: {
      ssh: ed25519PublicKeyLine(ssh.publicKey, "s"),
      tls: tls.publicKey.export({ format: "pem", type: "spki" }).toString(),
    },
  };
}

// Test answers are read field by field; a loose type keeps the assertions short.
// biome-ignore lint/suspicious/noExplicitAny: JSON bodies of many shapes
type Json = Record<string, any>;

async function post(path: string, body: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${svc.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

/** A machine's bound keypair and the join state it keeps in its storage directory. */
class Machine {
  key = generateKeyPairSync("ed25519");
  joinState: string | undefined;
  get publicLine() {
    return ed25519PublicKeyLine(this.key.publicKey, "bound");
  }
  async join(
    token: string,
    extra: { registration_secret?: string; outputs?: string[]; ssh_host?: unknown } = {},
  ) {
    const ch = await post("/v1/join/challenge", { token, join_method: "bound_keypair" });
    assert.equal(ch.status, 200, JSON.stringify(ch.body));
    const keys = sessionKeys();
    const signature = sign(
      null,
      boundKeypairSigningInput(token, ch.body.challenge_id, ch.body.nonce, keys.public_keys),
      this.key.privateKey,
    ).toString("base64");
    const r = await post("/v1/join", {
      token,
      join_method: "bound_keypair",
      public_keys: keys.public_keys,
      ...(extra.outputs ? { outputs: extra.outputs } : {}),
      ...(extra.ssh_host ? { ssh_host: extra.ssh_host } : {}),
      bound_keypair: {
        public_key: this.publicLine,
        challenge_id: ch.body.challenge_id,
        signature,
        ...(extra.registration_secret ? { registration_secret: extra.registration_secret } : {}),
        ...(this.joinState ? { join_state: this.joinState } : {}),
      },
    });
    if (r.status === 200) this.joinState = r.body.join_state;
    return { ...r, keys };
  }
}

async function renew(instanceId: string, generation: number, certificate: string, tlsPrivate: KeyObject) {
  const keys = sessionKeys();
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = sign(
    "sha256",
    renewSigningInput(instanceId, generation, timestamp, keys.public_keys),
    tlsPrivate,
  ).toString("base64");
  const r = await post("/v1/renew", {
    bot_instance_id: instanceId,
    generation,
    certificate,
    timestamp,
    signature,
    public_keys: keys.public_keys,
    heartbeat: { hostname: "edge-1", version: "test" },
  });
  return { ...r, keys };
}

describe("one-time join secrets", () => {
  test("a secret works exactly once, even when 20 joins race for it", async () => {
    const add = await idbot(
      "admin",
      "tokens",
      "add",
      "--data-dir",
      svc.dataDir,
      "--bot",
      "edge",
      "--ttl",
      "15m",
    );
    const secret = add.stdout.trim().split("\n").pop()!;
    assert.match(secret, /^idbot_join_[A-Za-z0-9_-]{32}$/);
    assert.doesNotMatch(add.stderr, new RegExp(secret), "the secret is printed once, on stdout");
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        post("/v1/join", { token: secret, join_method: "token", public_keys: sessionKeys().public_keys }),
      ),
    );
    assert.equal(results.filter((r) => r.status === 200).length, 1, "exactly one join succeeds");
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 403);
      assert.match(r.body.error.message, /already used/);
    }
    const ls = await idbot("admin", "tokens", "ls", "--data-dir", svc.dataDir);
    assert.match(ls.stdout, /tok-[0-9a-f]{8}\s+one-time\s+edge\s+used /);
    assert.doesNotMatch(ls.stdout, new RegExp(secret), "ls never shows the secret");
  });

  test("an expired or unknown secret is refused", async () => {
    const add = await idbot(
      "admin",
      "tokens",
      "add",
      "--data-dir",
      svc.dataDir,
      "--bot",
      "edge",
      "--ttl",
      "1s",
    );
    const secret = add.stdout.trim().split("\n").pop()!;
    await new Promise((r) => setTimeout(r, 1500));
    const expired = await post("/v1/join", {
      token: secret,
      join_method: "token",
      public_keys: sessionKeys().public_keys,
    });
    assert.equal(expired.status, 403);
    assert.match(expired.body.error.message, /expired/);
    const unknown = await post("/v1/join", {
      token: "not-a-secret-at-all",
      join_method: "token",
      public_keys: sessionKeys().public_keys,
    });
    assert.equal(unknown.status, 403);
    assert.match(unknown.body.error.message, /not known/);
  });
});

describe("bound keypair joining", () => {
  test("registration, rejoin with join state, a copied keypair locks, the limit refuses, the operator raises it", async () => {
    // Apply the token so `tokens edit` can raise its limit later.
    const dir = mkdtempSync(join(tmpdir(), "idbot-bk-"));
    writeFileSync(
      join(dir, "t.yaml"),
      `kind: token\nversion: v1\nmetadata: { name: edge-applied }\nspec:\n  join_method: bound_keypair\n  bot_name: edge\n  bound_keypair:\n    onboarding: { registration_secret: "${REG_SECRET}" }\n    recovery: { mode: standard, limit: 2 }\n`,
    );
    await idbot("admin", "apply", "--data-dir", svc.dataDir, "-f", join(dir, "t.yaml"));
    await new Promise((r) => setTimeout(r, 2500)); // the service polls applied resources every 2 s

    const m = new Machine();
    const noSecret = await m.join("edge-applied");
    assert.equal(noSecret.status, 403);
    assert.match(noSecret.body.error.message, /needs the registration secret/);
    const first = await m.join("edge-applied", { registration_secret: REG_SECRET });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.ok(first.body.join_state);
    const again = await m.join("edge-applied", { registration_secret: REG_SECRET });
    assert.equal(again.status, 403, "the registration secret works once");

    // Second join (recovery 2 of 2) with the current join state.
    const second = await m.join("edge-applied");
    assert.equal(second.status, 200, JSON.stringify(second.body));
    // Limit reached.
    const third = await m.join("edge-applied");
    assert.equal(third.status, 403);
    assert.match(third.body.error.message, /recovery limit of join token "edge-applied" \(2\) is reached/);
    assert.match(third.body.error.hint, /tokens edit edge-applied --recovery-limit 3/);
    await idbot(
      "admin",
      "tokens",
      "edit",
      "edge-applied",
      "--data-dir",
      svc.dataDir,
      "--recovery-limit",
      "5",
    );
    await new Promise((r) => setTimeout(r, 2500));
    const recovered = await m.join("edge-applied");
    assert.equal(
      recovered.status,
      200,
      `the same machine recovers with no change: ${JSON.stringify(recovered.body)}`,
    );

    // A copy of the keypair on a second machine, with the join state it had at copy time.
    const copy = new Machine();
    copy.key = m.key;
    copy.joinState = first.body.join_state;
    const stolen = await copy.join("edge-applied");
    assert.equal(stolen.status, 403);
    assert.match(stolen.body.error.message, /used from a second machine/);
    // Now locked for the original too.
    const locked = await m.join("edge-applied");
    assert.equal(locked.status, 403);
    assert.match(locked.body.error.message, /locked/);
    const show = await idbot("admin", "tokens", "show", "edge-applied", "--data-dir", svc.dataDir);
    assert.match(show.stdout, /"lockedReason": "join state mismatch/);
    assert.match(show.stdout, /"publicKey": "ssh-ed25519 /);
    await idbot("admin", "tokens", "edit", "edge-applied", "--data-dir", svc.dataDir, "--unlock");
    assert.equal((await m.join("edge-applied")).status, 200, "unlocked by the operator");
  });

  test("relaxed mode has no limit but still detects a copy", async () => {
    const m = new Machine();
    assert.equal((await m.join("edge-relaxed", { registration_secret: REG_SECRET })).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await m.join("edge-relaxed")).status, 200);
    const copy = new Machine();
    copy.key = m.key;
    assert.equal((await copy.join("edge-relaxed")).status, 403);
  });

  test("a replayed challenge answer and a wrong key are refused", async () => {
    const m = new Machine();
    const ch = await post("/v1/join/challenge", { token: "edge-secret", join_method: "bound_keypair" });
    const keys = sessionKeys();
    const body = {
      token: "edge-secret",
      join_method: "bound_keypair",
      public_keys: keys.public_keys,
      bound_keypair: {
        public_key: m.publicLine,
        challenge_id: ch.body.challenge_id,
        signature: sign(
          null,
          boundKeypairSigningInput("edge-secret", ch.body.challenge_id, ch.body.nonce, keys.public_keys),
          m.key.privateKey,
        ).toString("base64"),
        registration_secret: REG_SECRET,
      },
    };
    assert.equal((await post("/v1/join", body)).status, 200);
    const replay = await post("/v1/join", body);
    assert.equal(replay.status, 403);
    assert.match(replay.body.error.message, /challenge is unknown or was already answered/);
    const other = new Machine();
    const wrong = await other.join("edge-secret");
    assert.equal(wrong.status, 403);
    assert.match(wrong.body.error.message, /not the one bound/);
    // A signature over other session keys than the ones sent does not verify.
    const ch2 = await post("/v1/join/challenge", { token: "edge-secret", join_method: "bound_keypair" });
    const mitm = await post("/v1/join", {
      ...body,
      public_keys: sessionKeys().public_keys,
      bound_keypair: {
        ...body.bound_keypair,
        challenge_id: ch2.body.challenge_id,
        registration_secret: undefined,
        signature: sign(
          null,
          boundKeypairSigningInput("edge-secret", ch2.body.challenge_id, ch2.body.nonce, keys.public_keys),
          m.key.privateKey,
        ).toString("base64"),
      },
    });
    assert.equal(mitm.status, 403);
    assert.match(mitm.body.error.message, /signature does not verify/);
  });
});

describe("renewal and bot instances", () => {
  test("renewals advance the generation; an older generation locks the instance", async () => {
    const add = await idbot("admin", "tokens", "add", "--data-dir", svc.dataDir, "--bot", "edge");
    const secret = add.stdout.trim().split("\n").pop()!;
    const j = { keys: sessionKeys() };
    const joined = await post("/v1/join", {
      token: secret,
      join_method: "token",
      public_keys: j.keys.public_keys,
    });
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    assert.equal(joined.body.generation, 1);
    const id = joined.body.bot_instance_id as string;
    const r1 = await renew(id, 1, joined.body.tls.certificate, j.keys.tlsPrivate);
    assert.equal(r1.status, 200, JSON.stringify(r1.body));
    assert.equal(r1.body.generation, 2);
    assert.equal(r1.body.bot_instance_id, id);
    const r2 = await renew(id, 2, r1.body.tls.certificate, r1.keys.tlsPrivate);
    assert.equal(r2.status, 200);
    assert.equal(r2.body.generation, 3);
    // The generation-1 identity, copied before the renewals, tries to renew.
    const copied = await renew(id, 1, joined.body.tls.certificate, j.keys.tlsPrivate);
    assert.equal(copied.status, 403);
    assert.match(copied.body.error.message, /identity was copied; the bot instance is now locked/);
    const after = await renew(id, 3, r2.body.tls.certificate, r2.keys.tlsPrivate);
    assert.equal(after.status, 403, "a locked instance cannot renew");
    const show = await idbot("admin", "bot-instances", "show", `edge/${id}`, "--data-dir", svc.dataDir);
    const inst = JSON.parse(show.stdout);
    assert.equal(inst.generation, 3);
    assert.match(inst.lockedReason, /generation 1 presented, current is 3/);
    assert.equal(inst.authentications.length, 3);
    assert.equal(inst.heartbeats[0].hostname, "edge-1");
    const ls = await idbot("admin", "bot-instances", "ls", "--data-dir", svc.dataDir, "edge");
    assert.match(ls.stdout, new RegExp(`edge/${id}\\s+token\\s+3\\s+.*LOCKED`));
    const audit = await idbot(
      "admin",
      "audit",
      "ls",
      "--data-dir",
      svc.dataDir,
      "--type",
      "instance.locked",
      "--format",
      "json",
    );
    assert.ok(
      audit.stdout
        .trim()
        .split("\n")
        .some((l) => JSON.parse(l).instanceId === id),
    );
  });

  test("a renewal whose answer is lost after the commit: the CLI's retry gets the same generation, nothing locks", async (t) => {
    // A TCP proxy in front of the service that, once armed, lets one renewal through and
    // then cuts the connection when the service's answer comes back: the renewal is
    // committed, the machine never hears of it.
    let armed = false;
    let dropped = 0;
    const proxy = createServer((client) => {
      const upstream = connect(Number(new URL(svc.url).port), "127.0.0.1");
      let lossy = false;
      client.on("data", (d: Buffer) => {
        if (armed && d.includes("POST /v1/renew ")) {
          armed = false;
          lossy = true;
        }
        upstream.write(d);
      });
      upstream.on("data", (d: Buffer) => {
        if (!lossy) return void client.write(d);
        dropped++;
        client.destroy();
        upstream.destroy();
      });
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    t.after(() => proxy.close());
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    const add = await idbot("admin", "tokens", "add", "--data-dir", svc.dataDir, "--bot", "edge");
    const secret = add.stdout.trim().split("\n").pop()!;
    const out = join(mkdtempSync(join(tmpdir(), "idbot-lost-")), "machine");
    const cli = (...args: string[]) =>
      execFileP(process.execPath, [IDBOT, "join", "--format", "json", ...args]).then((r) =>
        JSON.parse(r.stdout),
      );
    const joined = await cli("--server", proxyUrl, "--join-method", "token", "--token", secret, "--out", out);
    const id = joined.bot_instance_id as string;
    // The TLS certificate names the generation: URI:urn:idbot:instance:<id>:<generation>.
    const generationOnDisk = () =>
      new X509Certificate(readFileSync(join(out, "identity", "tlscert"))).subjectAltName?.match(
        /:(\d+)$/,
      )?.[1];
    assert.equal(generationOnDisk(), "1");

    armed = true;
    const renewed = await cli("--refresh", out);
    assert.equal(dropped, 1, "the first answer was cut off");
    assert.equal(renewed.bot_instance_id, id);
    assert.equal(generationOnDisk(), "2", "the retry's answer is generation 2, as the lost one was");
    const show = async () =>
      JSON.parse(
        (await idbot("admin", "bot-instances", "show", `edge/${id}`, "--data-dir", svc.dataDir)).stdout,
      );
    let inst = await show();
    assert.equal(inst.generation, 2);
    assert.equal(inst.lockedReason, undefined, "a lost answer does not lock the machine out");
    assert.deepEqual(
      inst.authentications.map((a: Json) => a.kind),
      ["join", "renew", "renew_retry"],
    );
    const audit = await idbot(
      "admin",
      "audit",
      "ls",
      "--data-dir",
      svc.dataDir,
      "--type",
      "renew.retry",
      "--format",
      "json",
    );
    assert.ok(
      audit.stdout
        .trim()
        .split("\n")
        .some((l) => JSON.parse(l).instanceId === id),
    );

    // The machine goes on from there.
    await cli("--refresh", out);
    assert.equal(generationOnDisk(), "3");
    inst = await show();
    assert.equal(inst.generation, 3);
    assert.equal(inst.lockedReason, undefined);
  });

  test("a renewal signed by another key is refused, and the failed attempt does not lock", async () => {
    const add = await idbot("admin", "tokens", "add", "--data-dir", svc.dataDir, "--bot", "edge");
    const secret = add.stdout.trim().split("\n").pop()!;
    const keys = sessionKeys();
    const joined = await post("/v1/join", {
      token: secret,
      join_method: "token",
      public_keys: keys.public_keys,
    });
    const id = joined.body.bot_instance_id as string;
    const wrongKey = await renew(
      id,
      1,
      joined.body.tls.certificate,
      generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
    );
    assert.equal(wrongKey.status, 403);
    assert.match(wrongKey.body.error.message, /signature does not verify/);
    const good = await renew(id, 1, joined.body.tls.certificate, keys.tlsPrivate);
    assert.equal(good.status, 200, "a failed attempt does not lock");
  });
});
