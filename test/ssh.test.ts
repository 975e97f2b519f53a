import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  ed25519PrivateKeyOpenSSH,
  ed25519PublicKeyBlob,
  ed25519PublicKeyLine,
  parseCertificateLine,
  parsePublicKeyLine,
  publicKeyLine,
  SshReader,
  SshWriter,
  sshFingerprint,
  verifyCertificateSignature,
} from "../src/protocol/ssh.ts";
import { SshCertificateAuthority, type SshCertSpec } from "../src/server/ca/ssh.ts";

const run = promisify(execFile);
const SSH_KEYGEN = "/usr/bin/ssh-keygen";

async function keygen(...args: string[]): Promise<string> {
  const { stdout } = await run(SSH_KEYGEN, args, { env: { ...process.env, TZ: "UTC" } });
  return stdout;
}

/** ssh-keygen -L prints times in local time as YYYY-MM-DDTHH:MM:SS; we run it with TZ=UTC. */
function isoSeconds(unix: number): string {
  return new Date(unix * 1000).toISOString().slice(0, 19);
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(os.tmpdir(), "idbot-ssh-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, content: string, mode = 0o644): string {
  const p = join(dir, name);
  writeFileSync(p, content, { mode });
  return p;
}

const now = Math.floor(Date.now() / 1000);

describe("SshWriter / SshReader", () => {
  test("round trip", () => {
    const b = new SshWriter()
      .string("héllo")
      .uint32(0xdeadbeef)
      .uint64(0xffffffffffffffffn)
      .string(Buffer.from([1, 2]))
      .raw(Buffer.from([9]))
      .toBuffer();
    const r = new SshReader(b);
    assert.equal(r.stringUtf8(), "héllo");
    assert.equal(r.uint32(), 0xdeadbeef);
    assert.equal(r.uint64(), 0xffffffffffffffffn);
    assert.deepEqual(r.string(), Buffer.from([1, 2]));
    assert.equal(r.done, false);
    assert.deepEqual(r.rest(), Buffer.from([9]));
    assert.equal(r.done, true);
  });

  test("truncated input throws", () => {
    const b = new SshWriter().string("abcdef").toBuffer().subarray(0, 6);
    assert.throws(() => new SshReader(b).string(), /truncated/);
    assert.throws(() => new SshReader(Buffer.alloc(3)).uint32(), /truncated/);
  });
});

describe("Ed25519 keys", () => {
  test("our private key file is accepted by ssh-keygen and yields our public key line", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const text = ed25519PrivateKeyOpenSSH(privateKey, "ci@idbot");
    assert.match(text, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    assert.match(text, /\n-----END OPENSSH PRIVATE KEY-----\n$/);
    for (const l of text.split("\n").slice(1, -2)) assert.ok(l.length <= 70);
    const p = file("key", text, 0o600);
    assert.equal(statSync(p).mode & 0o777, 0o600);
    const expected = ed25519PublicKeyLine(publicKey, "ci@idbot");
    assert.equal(ed25519PublicKeyLine(privateKey, "ci@idbot"), expected);
    assert.equal((await keygen("-y", "-f", p)).trim(), expected);

    // The private half works too: ssh-keygen signs with it, and the signature checks out.
    const msg = file("msg", "hello\n");
    await keygen("-Y", "sign", "-f", p, "-n", "idbot-test", msg);
    const { stdout } = await run("/bin/sh", [
      "-c",
      `${SSH_KEYGEN} -Y check-novalidate -n idbot-test -s "$1.sig" < "$1"`,
      "sh",
      msg,
    ]);
    assert.match(stdout, /Good "idbot-test" signature/);
  });

  test("fingerprint matches ssh-keygen -l", async () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    const line = ed25519PublicKeyLine(publicKey, "fp");
    const p = file("fp.pub", `${line}\n`);
    const out = await keygen("-l", "-f", p);
    assert.equal(out.split(" ")[1], sshFingerprint(ed25519PublicKeyBlob(publicKey)));
  });

  test("fingerprints of ssh-keygen keys of every type", async () => {
    for (const [t, bits] of [
      ["ecdsa", "384"],
      ["rsa", "2048"],
    ] as const) {
      const p = join(dir, `fp-${t}`);
      await keygen("-q", "-t", t, "-b", bits, "-N", "", "-C", "c", "-f", p);
      const { blob } = parsePublicKeyLine(readFileSync(`${p}.pub`, "utf8"));
      assert.equal((await keygen("-l", "-f", `${p}.pub`)).split(" ")[1], sshFingerprint(blob));
    }
  });
});

describe("SshCertificateAuthority", () => {
  test("rejects non-Ed25519 CA keys", () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    assert.throws(() => new SshCertificateAuthority(privateKey), /Ed25519 private key/);
    const { publicKey } = generateKeyPairSync("ed25519");
    assert.throws(() => new SshCertificateAuthority(publicKey), /Ed25519 private key/);
  });

  test("user certificate for our key: ssh-keygen -L and our parser agree", async () => {
    const { authority } = SshCertificateAuthority.generate();
    const { privateKey } = generateKeyPairSync("ed25519");
    file("ukey", ed25519PrivateKeyOpenSSH(privateKey, "job"), 0o600);
    const subjectLine = ed25519PublicKeyLine(privateKey, "job");
    file("ukey.pub", `${subjectLine}\n`);
    const spec: SshCertSpec = {
      publicKey: subjectLine,
      certType: "user",
      keyId: "gha:org/repo:run-42",
      principals: ["deploy", "alice"],
      validAfter: now - 60,
      validBefore: now + 3600,
      serial: 1234567890123n,
      criticalOptions: { "source-address": "10.0.0.0/8,192.168.1.1", "force-command": "/bin/true" },
    };
    const cert = await authority.sign(spec);
    assert.match(cert, /^ssh-ed25519-cert-v01@openssh\.com AAAA\S+ gha:org\/repo:run-42$/);
    const certPath = file("ukey-cert.pub", `${cert}\n`);

    const out = await keygen("-L", "-f", certPath);
    assert.match(out, /Type: ssh-ed25519-cert-v01@openssh\.com user certificate/);
    assert.match(out, /Key ID: "gha:org\/repo:run-42"/);
    assert.match(out, /Serial: 1234567890123\n/);
    assert.match(out, new RegExp(`Valid: from ${isoSeconds(now - 60)} to ${isoSeconds(now + 3600)}`));
    assert.match(out, /Principals: \n\s+deploy\n\s+alice\n/);
    assert.match(
      out,
      /Critical Options: \n\s+force-command \/bin\/true\n\s+source-address 10\.0\.0\.0\/8,192\.168\.1\.1\n/,
    );
    assert.match(
      out,
      /Extensions: \n\s+permit-X11-forwarding\n\s+permit-agent-forwarding\n\s+permit-port-forwarding\n\s+permit-pty\n\s+permit-user-rc\n/,
    );
    assert.ok(
      out.includes(`Signing CA: ED25519 ${sshFingerprint(authority.publicKeyBlob)} (using ssh-ed25519)`),
    );
    assert.ok(
      out.includes(`Public key: ED25519-CERT ${sshFingerprint(parsePublicKeyLine(subjectLine).blob)}`),
    );

    const info = parseCertificateLine(cert);
    assert.equal(info.certType, "user");
    assert.equal(info.keyType, "ssh-ed25519");
    assert.equal(info.nonce.length, 32);
    assert.deepEqual(info.publicKeyBlob, parsePublicKeyLine(subjectLine).blob);
    assert.equal(info.serial, 1234567890123n);
    assert.equal(info.keyId, "gha:org/repo:run-42");
    assert.deepEqual(info.principals, ["deploy", "alice"]);
    assert.equal(info.validAfter, now - 60);
    assert.equal(info.validBefore, now + 3600);
    assert.deepEqual(info.criticalOptions, {
      "force-command": "/bin/true",
      "source-address": "10.0.0.0/8,192.168.1.1",
    });
    assert.deepEqual(info.extensions, [
      "permit-X11-forwarding",
      "permit-agent-forwarding",
      "permit-port-forwarding",
      "permit-pty",
      "permit-user-rc",
    ]);
    assert.deepEqual(info.signatureKey, authority.publicKeyBlob);
    assert.equal(info.signatureKeyLine, authority.publicKeyLine());

    assert.equal(verifyCertificateSignature(cert), true);
    const [t, b64, c] = cert.split(" ");
    const blob = Buffer.from(b64!, "base64");
    blob[40]! ^= 0x01; // inside the nonce
    assert.equal(verifyCertificateSignature(`${t} ${blob.toString("base64")} ${c}`), false);
    blob[40]! ^= 0x01;
    blob[blob.length - 1]! ^= 0x80; // inside the signature
    assert.equal(verifyCertificateSignature(`${t} ${blob.toString("base64")} ${c}`), false);
  });

  test("default serial is random 63-bit; forever validity; explicit extensions sorted", async () => {
    const { authority } = SshCertificateAuthority.generate();
    const { publicKey } = generateKeyPairSync("ed25519");
    const cert = await authority.sign({
      publicKey: ed25519PublicKeyLine(publicKey),
      certType: "user",
      keyId: "k",
      principals: ["root"],
      validAfter: 0,
      validBefore: Number.POSITIVE_INFINITY,
      extensions: ["permit-pty", "permit-agent-forwarding"],
    });
    const info = parseCertificateLine(cert);
    assert.ok(info.serial < 2n ** 63n);
    assert.equal(info.validBefore, Number.MAX_SAFE_INTEGER);
    assert.deepEqual(info.extensions, ["permit-agent-forwarding", "permit-pty"]);
    const out = await keygen("-L", "-f", file("forever-cert.pub", `${cert}\n`));
    assert.match(out, /Valid: forever/);
  });

  for (const [t, bits, keyType] of [
    ["ed25519", "256", "ssh-ed25519"],
    ["ecdsa", "256", "ecdsa-sha2-nistp256"],
    ["ecdsa", "384", "ecdsa-sha2-nistp384"],
    ["ecdsa", "521", "ecdsa-sha2-nistp521"],
    ["rsa", "2048", "ssh-rsa"],
  ] as const) {
    test(`host certificate for an ssh-keygen ${keyType} key`, async () => {
      const { authority } = SshCertificateAuthority.generate();
      const p = join(dir, `host-${t}-${bits}`);
      await keygen("-q", "-t", t, "-b", bits, "-N", "", "-C", "host", "-f", p);
      const pubLine = readFileSync(`${p}.pub`, "utf8").trim();
      const cert = await authority.sign({
        publicKey: pubLine,
        certType: "host",
        keyId: "host-1",
        principals: ["web-1.example.com", "10.1.2.3"],
        validAfter: now,
        validBefore: now + 600,
      });
      assert.ok(cert.startsWith(`${keyType}-cert-v01@openssh.com `));
      const out = await keygen("-L", "-f", file(`host-${t}-${bits}-cert.pub`, `${cert}\n`));
      assert.match(out, new RegExp(`Type: ${keyType}-cert-v01@openssh\\.com host certificate`));
      assert.match(out, /Principals: \n\s+web-1\.example\.com\n\s+10\.1\.2\.3\n/);
      assert.match(out, /Critical Options: \(none\)/);
      assert.match(out, /Extensions: \(none\)/);
      const fp = (await keygen("-l", "-f", `${p}.pub`)).split(" ")[1]!;
      assert.ok(out.includes(`Public key: ${t === "ed25519" ? "ED25519" : t.toUpperCase()}-CERT ${fp}`));

      const info = parseCertificateLine(cert);
      assert.equal(info.certType, "host");
      assert.equal(info.keyType, keyType);
      assert.deepEqual(info.publicKeyBlob, parsePublicKeyLine(pubLine).blob);
      assert.equal(sshFingerprint(info.publicKeyBlob), fp);
      assert.equal(verifyCertificateSignature(cert), true);
    });
  }

  test("rejects bad specs with a message naming the problem", async () => {
    const { authority } = SshCertificateAuthority.generate();
    const { publicKey } = generateKeyPairSync("ed25519");
    const good: SshCertSpec = {
      publicKey: ed25519PublicKeyLine(publicKey),
      certType: "user",
      keyId: "id",
      principals: ["u"],
      validAfter: now,
      validBefore: now + 60,
    };
    await assert.doesNotReject(authority.sign(good));
    const bad = (patch: Partial<SshCertSpec>, re: RegExp) =>
      assert.rejects(authority.sign({ ...good, ...patch }), re);
    await bad({ principals: [] }, /principals is empty/);
    await bad({ principals: ["a,b"] }, /principal "a,b" contains whitespace, a comma/);
    await bad({ principals: ["a b"] }, /principal "a b" contains whitespace/);
    await bad({ principals: ["a\nb"] }, /principal .* control/);
    await bad({ principals: [""] }, /principal is empty/);
    await bad({ validBefore: now }, /validBefore .* must be after validAfter/);
    await bad({ validBefore: now - 1 }, /validBefore .* must be after validAfter/);
    await bad({ validAfter: 1.5 }, /validAfter must be whole unix seconds/);
    await bad({ keyId: "a\nb" }, /keyId contains control characters/);
    await bad({ keyId: "" }, /keyId is empty/);
    await bad({ serial: -1n }, /serial/);
    await bad(
      { certType: "host", criticalOptions: { "force-command": "x" } },
      /only defined for user certificates/,
    );
    await bad({ extensions: ["permit-pty", "permit-pty"] }, /extension 'permit-pty' given twice/);
    await bad({ publicKey: "ssh-dss AAAAB3NzaC1kc3M= x" }, /unsupported key type 'ssh-dss'/);
    await bad({ publicKey: "ssh-ed25519 AAAA!!!! x" }, /malformed base64/);
    await bad({ publicKey: await authority.sign(good) }, /already a certificate/);
  });
});

describe("parsePublicKeyLine", () => {
  test("parses and rejects", () => {
    const { publicKey } = generateKeyPairSync("ed25519");
    const blob = ed25519PublicKeyBlob(publicKey);
    assert.equal(blob.length, 51);
    const parsed = parsePublicKeyLine(`  ${publicKeyLine(blob, "a comment with spaces")}\n`);
    assert.equal(parsed.type, "ssh-ed25519");
    assert.deepEqual(parsed.blob, blob);
    assert.equal(parsed.comment, "a comment with spaces");
    assert.equal(parsePublicKeyLine(publicKeyLine(blob)).comment, undefined);

    assert.throws(
      () => parsePublicKeyLine("ssh-dss AAAAB3NzaC1kc3M="),
      /public key line: unsupported key type 'ssh-dss' \(use ssh-ed25519, ecdsa-sha2-nistp256\/384\/521 or ssh-rsa\)/,
    );
    assert.throws(() => parsePublicKeyLine(""), /empty/);
    assert.throws(() => parsePublicKeyLine("ssh-ed25519"), /expected '<type> <base64> \[comment\]'/);
    assert.throws(() => parsePublicKeyLine("ssh-ed25519 AAA*AAAA"), /malformed base64/);
    assert.throws(() => parsePublicKeyLine("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"), /malformed base64/);
    assert.throws(
      () => parsePublicKeyLine(`ssh-rsa ${blob.toString("base64")}`),
      /type word 'ssh-rsa' does not match the key type 'ssh-ed25519'/,
    );
    assert.throws(
      () => parsePublicKeyLine(`ssh-ed25519 ${blob.subarray(0, 40).toString("base64")}`),
      /truncated/,
    );
    assert.throws(
      () => parsePublicKeyLine(`ssh-ed25519 ${Buffer.concat([blob, Buffer.from([0])]).toString("base64")}`),
      /trailing bytes/,
    );
    assert.throws(() => parseCertificateLine(publicKeyLine(blob)), /plain key, not a certificate/);
  });
});

describe("certificates made by ssh-keygen -s", () => {
  for (const [t, bits] of [
    ["ed25519", "256"],
    ["ecdsa", "256"],
    ["ecdsa", "384"],
    ["ecdsa", "521"],
    ["rsa", "2048"],
  ] as const) {
    test(`parse and verify a certificate signed by an ssh-keygen ${t}-${bits} CA`, async () => {
      const ca = join(dir, `ca-${t}-${bits}`);
      const key = join(dir, `subj-${t}-${bits}`);
      await keygen("-q", "-t", t, "-b", bits, "-N", "", "-C", "ca", "-f", ca);
      await keygen("-q", "-t", "ed25519", "-N", "", "-C", "subj", "-f", key);
      const t0 = Math.floor(Date.now() / 1000);
      await keygen("-q", "-s", ca, "-I", "id", "-n", "a,b", "-V", "+1h", "-z", "77", `${key}.pub`);
      const t1 = Math.floor(Date.now() / 1000);
      const cert = readFileSync(`${key}-cert.pub`, "utf8").trim();
      const info = parseCertificateLine(cert);
      assert.equal(info.certType, "user");
      assert.equal(info.keyType, "ssh-ed25519");
      assert.equal(info.keyId, "id");
      assert.equal(info.serial, 77n);
      assert.deepEqual(info.principals, ["a", "b"]);
      // -V +1h: ssh-keygen backdates the start by a minute and rounds it down to a whole minute
      assert.ok(
        info.validAfter >= t0 - 120 && info.validAfter <= t1,
        `validAfter ${info.validAfter} (now ${t0})`,
      );
      assert.ok(
        info.validBefore >= t0 + 3600 - 120 && info.validBefore <= t1 + 3600,
        `validBefore ${info.validBefore} (now ${t0})`,
      );
      assert.deepEqual(info.criticalOptions, {});
      assert.deepEqual(info.extensions, [
        "permit-X11-forwarding",
        "permit-agent-forwarding",
        "permit-port-forwarding",
        "permit-pty",
        "permit-user-rc",
      ]);
      assert.deepEqual(info.publicKeyBlob, parsePublicKeyLine(readFileSync(`${key}.pub`, "utf8")).blob);
      const caLine = readFileSync(`${ca}.pub`, "utf8").trim();
      assert.deepEqual(info.signatureKey, parsePublicKeyLine(caLine).blob);
      assert.equal(info.signatureKeyLine, caLine.split(" ").slice(0, 2).join(" "));
      assert.equal(verifyCertificateSignature(cert), true);
    });
  }

  test("ssh-keygen -s accepts our private key file as a CA, with critical options", async () => {
    const { privateKey } = generateKeyPairSync("ed25519");
    const ca = file("ourca", ed25519PrivateKeyOpenSSH(privateKey, "ourca"), 0o600);
    const key = join(dir, "subj-ourca");
    await keygen("-q", "-t", "ecdsa", "-N", "", "-f", key);
    await keygen("-q", "-s", ca, "-I", "x y", "-n", "p", "-h", "-V", "20200101000000:forever", `${key}.pub`);
    const cert = readFileSync(`${key}-cert.pub`, "utf8").trim();
    const info = parseCertificateLine(cert);
    assert.equal(info.certType, "host");
    assert.equal(info.keyId, "x y");
    assert.equal(info.validBefore, Number.MAX_SAFE_INTEGER);
    assert.deepEqual(info.signatureKey, ed25519PublicKeyBlob(privateKey));
    assert.equal(verifyCertificateSignature(cert), true);

    await keygen(
      "-q",
      "-s",
      ca,
      "-I",
      "u",
      "-n",
      "p",
      "-O",
      "clear",
      "-O",
      "force-command=/bin/echo hi",
      "-O",
      "verify-required",
      "-O",
      "permit-pty",
      "-V",
      "+5m",
      `${key}.pub`,
    );
    const u = parseCertificateLine(readFileSync(`${key}-cert.pub`, "utf8"));
    assert.deepEqual(u.criticalOptions, { "force-command": "/bin/echo hi", "verify-required": "" });
    assert.deepEqual(u.extensions, ["permit-pty"]);
  });
});

// Node's JWK export of a freshly generated key holds the key's mutex while it allocates;
// a garbage collection there can destroy the keygen job, which takes the same mutex, and
// the thread deadlocks (an Action main step once hung with no output). Under --gc-global
// the old JWK-based encoders hung within 5,000 client key pairs; these use DER and must not.
test("fresh keys are encoded without Node's JWK export (no deadlock under constant GC)", async () => {
  const script = `
    const { generateClientKeys } = await import(${JSON.stringify(new URL("../src/client/keys.ts", import.meta.url).href)});
    const { SshCertificateAuthority } = await import(${JSON.stringify(new URL("../src/server/ca/ssh.ts", import.meta.url).href)});
    const { createSelfSignedCA } = await import(${JSON.stringify(new URL("../src/server/ca/x509.ts", import.meta.url).href)});
    const { generateKeyPairSync } = await import("node:crypto");
    for (let i = 0; i < 5000; i++) generateClientKeys("gc");
    for (let i = 0; i < 200; i++) {
      SshCertificateAuthority.generate();
      const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
      createSelfSignedCA({ key, commonName: "gc", notBefore: new Date(), notAfter: new Date(Date.now() + 60000) });
    }
    console.log("done");`;
  const child = spawn(
    process.execPath,
    ["--gc-global", "--import", "tsx", "--input-type=module", "-e", script],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const [code, signal] = await once(child, "exit");
  clearTimeout(timer);
  assert.equal(signal, null, `the key loop hung (killed after 60 s)\n${err}`);
  assert.equal(code, 0, err);
  assert.match(out, /done/);
});
