// The lean X.509 issuer, checked against the real openssl CLI, Node's X509Certificate and a
// live mutual-TLS handshake.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as tls from "node:tls";
import {
  CertificateInputError,
  createSelfSignedCA,
  type IssuedCertificate,
  type LeafOptions,
  X509Issuer,
} from "../src/server/ca/x509.ts";

const OPENSSL = "/usr/bin/openssl";
const HOUR = 3600_000;

let dir: string;
let fileNo = 0;
function tmpFile(contents: string): string {
  const path = join(dir, `f${fileNo++}.pem`);
  writeFileSync(path, contents);
  return path;
}

function openssl(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(OPENSSL, args, { encoding: "utf8" });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

function opensslOk(args: string[]): string {
  const r = openssl(args);
  assert.ok(r.ok, `openssl ${args.join(" ")} failed:\n${r.out}`);
  return r.out;
}

function text(pem: string): string {
  return opensslOk(["x509", "-noout", "-text", "-in", tmpFile(pem)]);
}

function verify(caPem: string, leafPem: string, purpose?: "sslclient" | "sslserver") {
  const args = ["verify", "-x509_strict", "-CAfile", tmpFile(caPem)];
  if (purpose) args.push("-purpose", purpose);
  return openssl([...args, tmpFile(leafPem)]);
}

/** Children of a constructed DER value, each as [tag, contents, whole TLV]. */
function children(der: Buffer): Array<{ tag: number; body: Buffer; raw: Buffer }> {
  const out: Array<{ tag: number; body: Buffer; raw: Buffer }> = [];
  for (let off = 0; off < der.length; ) {
    const tag = der[off]!;
    let len = der[off + 1]!;
    let body = off + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = der.readUIntBE(body, n);
      body += n;
    }
    out.push({ tag, body: der.subarray(body, body + len), raw: der.subarray(off, body + len) });
    off = body + len;
  }
  return out;
}

/** tbsCertificate fields: version, serial, signature, issuer, validity, subject, spki, [3]. */
function tbsFields(der: Buffer) {
  const cert = children(der)[0]!;
  const tbs = children(cert.body)[0]!;
  return children(tbs.body);
}

function keyPair(kind: "p256" | "p384" | "ed25519" | "rsa2048") {
  switch (kind) {
    case "p256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" });
    case "p384":
      return generateKeyPairSync("ec", { namedCurve: "P-384" });
    case "ed25519":
      return generateKeyPairSync("ed25519");
    case "rsa2048":
      return generateKeyPairSync("rsa", { modulusLength: 2048 });
  }
}

const spkiDer = (k: KeyObject) => k.export({ type: "spki", format: "der" });
const spkiPem = (k: KeyObject) => k.export({ type: "spki", format: "pem" }) as string;

let caKey: KeyObject;
let caPem: string;
let ca: X509Certificate;
let issuer: X509Issuer;
let p256: ReturnType<typeof keyPair>;

function leafOptions(over: Partial<LeafOptions> = {}): LeafOptions {
  const now = Date.now();
  return {
    publicKey: p256.publicKey,
    commonName: "job-1",
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + HOUR),
    extKeyUsage: ["clientAuth"],
    ...over,
  };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "idbot-x509-"));
  caKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const now = Date.now();
  caPem = createSelfSignedCA({
    key: caKey,
    commonName: "idbot test CA",
    organization: "idbot",
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 24 * HOUR),
  });
  ca = new X509Certificate(caPem);
  issuer = new X509Issuer(caKey, caPem);
  p256 = keyPair("p256");
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe("createSelfSignedCA", () => {
  test("is a self-signed v3 CA with pathlen 0, CA key usages and SKI == AKI", async () => {
    assert.equal(ca.ca, true);
    assert.ok(ca.checkIssued(ca));
    assert.ok(ca.verify(ca.publicKey));
    assert.equal(ca.subject, "O=idbot\nCN=idbot test CA");
    assert.match(opensslOk(["verify", "-x509_strict", "-CAfile", tmpFile(caPem), tmpFile(caPem)]), /: OK/);

    const t = text(caPem);
    assert.match(t, /Version: 3 \(0x2\)/);
    assert.match(t, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(t, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    assert.match(t, /X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(t)?.[1];
    const aki = /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/.exec(t)?.[1];
    assert.ok(ski);
    assert.equal(aki, ski);
    // Method 1: SHA-1 of the 65-byte uncompressed point (the BIT STRING contents).
    const point = spkiDer(createPublicKey(caKey)).subarray(-65);
    assert.equal(ski.replaceAll(":", ""), createHash("sha1").update(point).digest("hex").toUpperCase());
  });

  test("rejects a non-P-256 key and a bad validity", async () => {
    const now = Date.now();
    const opts = { commonName: "x", notBefore: new Date(now), notAfter: new Date(now + HOUR) };
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    assert.throws(() => createSelfSignedCA({ ...opts, key: p384 }), fieldError("key"));
    assert.throws(
      () => createSelfSignedCA({ ...opts, key: caKey, notAfter: new Date(now) }),
      fieldError("notAfter"),
    );
  });
});

describe("X509Issuer.issue", () => {
  const keyKinds = ["p256", "p384", "ed25519", "rsa2048"] as const;
  const bitStringBytes = { p256: 65, p384: 97, ed25519: 32, rsa2048: 270 };

  for (const kind of keyKinds) {
    test(`${kind} key (KeyObject, DER and PEM): verifies with openssl and Node`, async () => {
      const pair = kind === "p256" ? p256 : keyPair(kind);
      const inputs: LeafOptions["publicKey"][] = [
        pair.publicKey,
        spkiDer(pair.publicKey),
        spkiPem(pair.publicKey),
      ];
      for (const publicKey of inputs) {
        const leaf = await issuer.issue(
          leafOptions({ publicKey, commonName: `${kind}-job`, uris: ["spiffe://idbot/ci/a"] }),
        );
        const r = verify(caPem, leaf.pem, "sslclient");
        assert.ok(r.ok, r.out);
        assert.match(r.out, /: OK/);

        const x = new X509Certificate(leaf.pem);
        assert.ok(x.checkIssued(ca));
        assert.ok(x.verify(ca.publicKey));
        assert.deepEqual(spkiDer(x.publicKey), spkiDer(pair.publicKey), "SPKI carried unchanged");
        assert.deepEqual(Buffer.from(x.raw), leaf.der);
        assert.equal(x.serialNumber, leaf.serialHex);

        const t = text(leaf.pem);
        assert.match(t, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
        const usage = kind === "rsa2048" ? "Digital Signature, Key Encipherment" : "Digital Signature";
        assert.match(t, new RegExp(`X509v3 Key Usage: critical\\s+${usage}\\n`));
        assert.match(t, /X509v3 Extended Key Usage: \s*\n\s*TLS Web Client Authentication\n/);
        const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(t)?.[1] ?? "";
        const bits = spkiDer(pair.publicKey).subarray(-bitStringBytes[kind]);
        assert.equal(ski.replaceAll(":", ""), createHash("sha1").update(bits).digest("hex").toUpperCase());
        const caSki = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(text(caPem))?.[1];
        assert.match(t, new RegExp(`Authority Key Identifier:\\s*\\n\\s*(keyid:)?${caSki}`));
      }
    });
  }

  test("issuer Name is the CA subject byte for byte; fixed fields are as specified", async () => {
    const leaf = await issuer.issue(leafOptions());
    const [version, serial, alg, issuerName] = tbsFields(leaf.der);
    const caSubject = tbsFields(Buffer.from(ca.raw))[5]!;
    assert.deepEqual(issuerName!.raw, caSubject.raw);
    assert.equal(version!.raw.toString("hex"), "a003020102");
    assert.equal(alg!.raw.toString("hex"), "300a06082a8648ce3d040302");
    assert.equal(serial!.tag, 0x02);
    const sigAlg = children(children(leaf.der)[0]!.body)[1]!;
    assert.deepEqual(sigAlg.raw, alg!.raw);
  });

  test("serverAuth leaf with DNS and IP SANs passes -purpose sslserver; clientAuth-only does not", async () => {
    const server = await issuer.issue(
      leafOptions({
        commonName: "localhost",
        dnsNames: ["localhost", "api.internal.example"],
        ipAddresses: ["127.0.0.1", "2001:db8::1", "::ffff:10.1.2.3", "::"],
        extKeyUsage: ["serverAuth"],
      }),
    );
    assert.ok(verify(caPem, server.pem, "sslserver").ok);
    assert.equal(
      verify(caPem, server.pem, "sslclient").ok,
      false,
      "serverAuth-only leaf must not be a client",
    );
    const client = await issuer.issue(leafOptions());
    assert.equal(
      verify(caPem, client.pem, "sslserver").ok,
      false,
      "clientAuth-only leaf must not be a server",
    );

    const x = new X509Certificate(server.pem);
    assert.equal(
      x.subjectAltName,
      "DNS:localhost, DNS:api.internal.example, IP Address:127.0.0.1, IP Address:2001:DB8:0:0:0:0:0:1, " +
        "IP Address:0:0:0:0:0:FFFF:A01:203, IP Address:0:0:0:0:0:0:0:0",
    );
    assert.equal(x.checkHost("api.internal.example"), "api.internal.example");
    assert.equal(x.checkIP("2001:db8:0::1"), "2001:db8:0::1");
    assert.equal(x.checkIP("127.0.0.1"), "127.0.0.1");
    assert.equal(x.checkIP("10.1.2.3"), undefined, "IPv4-mapped text is kept as 16 bytes");
  });

  test("openssl shows CN, every O, every SAN, CA:FALSE and both EKUs; RFC 2253 subject exact", async () => {
    const leaf = await issuer.issue(
      leafOptions({
        commonName: "repo:acme/api:ref:refs/heads/main",
        organizations: ["system:authenticated", "team-a", "Acme, Inc."],
        uris: ["spiffe://idbot.example/ci/github/acme/api", "urn:idbot:job:42"],
        dnsNames: ["build-42.ci.example"],
        ipAddresses: ["10.0.0.7", "fd00::7"],
        extKeyUsage: ["clientAuth", "serverAuth", "clientAuth"],
      }),
    );
    const t = text(leaf.pem);
    assert.match(
      t,
      /Subject: O = system:authenticated, O = team-a, O = "Acme, Inc.", CN = repo:acme\/api:ref:refs\/heads\/main/,
    );
    assert.match(t, /Issuer: O = idbot, CN = idbot test CA/);
    assert.match(t, /CA:FALSE/);
    assert.match(t, /TLS Web Server Authentication, TLS Web Client Authentication/);
    for (const san of [
      "URI:spiffe://idbot.example/ci/github/acme/api",
      "URI:urn:idbot:job:42",
      "DNS:build-42.ci.example",
      "IP Address:10.0.0.7",
      "IP Address:FD00:0:0:0:0:0:0:7",
    ]) {
      assert.ok(t.includes(san), `missing ${san} in\n${t}`);
    }
    assert.match(t, /X509v3 Subject Alternative Name: \n/, "SAN is not critical");
    const subject = opensslOk([
      "x509",
      "-noout",
      "-subject",
      "-nameopt",
      "RFC2253",
      "-in",
      tmpFile(leaf.pem),
    ]);
    assert.equal(
      subject.trim(),
      "subject=CN=repo:acme/api:ref:refs/heads/main,O=Acme\\, Inc.,O=team-a,O=system:authenticated",
    );
    assert.ok(verify(caPem, leaf.pem, "sslclient").ok);
    assert.ok(verify(caPem, leaf.pem, "sslserver").ok);
  });

  test("UTF-8 names round-trip as UTF8String", async () => {
    const leaf = await issuer.issue(
      leafOptions({ commonName: "jöb-ünïcode-✓", organizations: ["Zürich 🚀"] }),
    );
    const x = new X509Certificate(leaf.pem);
    assert.equal(x.subject, "O=Zürich 🚀\nCN=jöb-ünïcode-✓");
    const asn1 = opensslOk(["asn1parse", "-in", tmpFile(leaf.pem)]);
    assert.ok((asn1.match(/UTF8STRING/g) ?? []).length >= 4, asn1); // CA O + CN, leaf O + CN
    assert.doesNotMatch(asn1, /PRINTABLESTRING/);
  });

  test("dates from 2050 are GeneralizedTime, earlier UTCTime; ms are truncated", async () => {
    const cases: Array<[string, string, number, string]> = [
      ["2049-12-31T23:59:59.999Z", "UTCTIME", 0x17, "491231235959Z"],
      ["2050-01-01T00:00:00.000Z", "GENERALIZEDTIME", 0x18, "20500101000000Z"],
      ["2051-06-15T12:34:56.000Z", "GENERALIZEDTIME", 0x18, "20510615123456Z"],
    ];
    for (const [iso, kind, tag, encoded] of cases) {
      const leaf = await issuer.issue(leafOptions({ notAfter: new Date(iso) }));
      assert.equal(leaf.notAfter.toISOString(), `${iso.slice(0, 19)}.000Z`);
      const validity = children(tbsFields(leaf.der)[4]!.body);
      assert.equal(validity[0]!.tag, 0x17);
      assert.equal(validity[1]!.tag, tag);
      assert.equal(validity[1]!.body.toString("latin1"), encoded);
      assert.match(opensslOk(["asn1parse", "-in", tmpFile(leaf.pem)]), new RegExp(`${kind} +:${encoded}`));
      const end = opensslOk(["x509", "-noout", "-enddate", "-in", tmpFile(leaf.pem)]).trim();
      assert.equal(
        new Date(end.replace("notAfter=", "")).getTime(),
        new Date(`${iso.slice(0, 19)}Z`).getTime(),
      );
      assert.equal(new Date(new X509Certificate(leaf.pem).validTo).getTime(), leaf.notAfter.getTime());
      assert.ok(verify(caPem, leaf.pem, "sslclient").ok);
    }
    const old = await issuer.issue(leafOptions({ notBefore: new Date("1949-06-01T00:00:00Z") }));
    const validity = children(tbsFields(old.der)[4]!.body);
    assert.equal(validity[0]!.tag, 0x18);
    assert.equal(validity[0]!.body.toString("latin1"), "19490601000000Z");
  });

  test("serials are positive minimal INTEGERs", async () => {
    const integer = (leaf: IssuedCertificate) => tbsFields(leaf.der)[1]!.body;
    const highBit = await issuer.issue(
      leafOptions({ serial: Buffer.from("80112233445566778899aabbccddeeff", "hex") }),
    );
    assert.equal(integer(highBit).toString("hex"), "0080112233445566778899aabbccddeeff");
    assert.equal(highBit.serialHex, "80112233445566778899AABBCCDDEEFF");
    assert.equal(new X509Certificate(highBit.pem).serialNumber, highBit.serialHex);
    const serialOut = opensslOk(["x509", "-noout", "-serial", "-in", tmpFile(highBit.pem)]);
    assert.equal(serialOut.trim(), `serial=${highBit.serialHex}`);

    const leadingZeros = await issuer.issue(leafOptions({ serial: Buffer.from([0, 0, 0x12, 0x34]) }));
    assert.equal(integer(leadingZeros).toString("hex"), "1234");
    assert.equal(leadingZeros.serialHex, "1234");
    const zeroThenLow = await issuer.issue(leafOptions({ serial: Buffer.from([0, 0x7f]) }));
    assert.equal(integer(zeroThenLow).toString("hex"), "7f");
    const max = await issuer.issue(leafOptions({ serial: Buffer.alloc(20, 0x7f) }));
    assert.equal(integer(max).length, 20);
    assert.ok(verify(caPem, max.pem).ok);

    await assert.rejects(issuer.issue(leafOptions({ serial: Buffer.alloc(4) })), fieldError("serial"));
    await assert.rejects(issuer.issue(leafOptions({ serial: Buffer.alloc(0) })), fieldError("serial"));
    await assert.rejects(issuer.issue(leafOptions({ serial: Buffer.alloc(20, 0x80) })), fieldError("serial"));

    const seen = new Set<string>();
    let padded = 0;
    for (let i = 0; i < 300; i++) {
      const leaf = await issuer.issue(leafOptions());
      const v = integer(leaf);
      assert.ok(v[0]! < 0x80, "positive");
      assert.ok(!(v[0] === 0 && v[1]! < 0x80), "minimal");
      assert.ok(v.length <= 17);
      if (v[0] === 0) padded++;
      seen.add(leaf.serialHex);
    }
    assert.equal(seen.size, 300);
    assert.ok(padded > 0, "high-bit serials occur and are padded");
  });

  test("mutual TLS between a serverAuth leaf and a clientAuth leaf", async () => {
    const serverKey = keyPair("p256");
    const clientKey = keyPair("p256");
    const server = await issuer.issue(
      leafOptions({
        publicKey: serverKey.publicKey,
        commonName: "localhost",
        dnsNames: ["localhost"],
        ipAddresses: ["127.0.0.1"],
        extKeyUsage: ["serverAuth"],
      }),
    );
    const spiffe = "spiffe://idbot.example/ci/github/acme/api";
    const client = await issuer.issue(
      leafOptions({
        publicKey: clientKey.publicKey,
        commonName: "acme/api",
        uris: [spiffe],
        organizations: ["ci"],
      }),
    );
    const pem = (k: KeyObject) => k.export({ type: "pkcs8", format: "pem" }) as string;

    const seen: Array<{ authorized: boolean; cn: unknown; san: unknown }> = [];
    const srv = tls.createServer(
      {
        key: pem(serverKey.privateKey),
        cert: server.pem,
        ca: [caPem],
        requestCert: true,
        rejectUnauthorized: true,
      },
      (socket) => {
        const peer = socket.getPeerCertificate();
        seen.push({ authorized: socket.authorized, cn: peer.subject.CN, san: peer.subjectaltname });
        socket.end("hello");
      },
    );
    srv.listen(0, "127.0.0.1");
    await once(srv, "listening");
    const { port } = srv.address() as AddressInfo;
    try {
      // Once against the IP SAN, once against the DNS SAN.
      for (const servername of [undefined, "localhost"]) {
        const socket = tls.connect({
          host: "127.0.0.1",
          port,
          ...(servername ? { servername } : {}),
          ca: [caPem],
          key: pem(clientKey.privateKey),
          cert: client.pem,
        });
        await once(socket, "secureConnect");
        assert.equal(socket.authorized, true, String(socket.authorizationError));
        assert.equal(socket.getPeerCertificate().subject.CN, "localhost");
        let data = "";
        socket.setEncoding("utf8");
        socket.on("data", (d: string) => {
          data += d;
        });
        await once(socket, "end");
        socket.destroy();
        assert.equal(data, "hello");
      }
    } finally {
      srv.close();
    }
    assert.deepEqual(seen, [
      { authorized: true, cn: "acme/api", san: `URI:${spiffe}` },
      { authorized: true, cn: "acme/api", san: `URI:${spiffe}` },
    ]);
  });
});

function fieldError(field: string) {
  return (err: unknown) => {
    assert.ok(err instanceof CertificateInputError, `expected CertificateInputError, got ${String(err)}`);
    assert.equal(err.field, field, err.message);
    assert.ok(err.message.startsWith(`${field}: `), err.message);
    return true;
  };
}

describe("input validation", () => {
  const now = Date.now();
  const cases: Array<[string, Partial<LeafOptions>, string]> = [
    ["empty CN", { commonName: "" }, "commonName"],
    ["65-character CN", { commonName: "x".repeat(65) }, "commonName"],
    ["CN with a newline", { commonName: "a\nb" }, "commonName"],
    ["CN with a bidi override", { commonName: "abc\u202Egpj.exe" }, "commonName"],
    ["CN with a lone surrogate", { commonName: "a\uD800b" }, "commonName"],
    ["CN with trailing space", { commonName: "job " }, "commonName"],
    ["empty O", { organizations: ["ok", ""] }, "organizations[1]"],
    ["URI with a space", { uris: ["spiffe://x/a b"] }, "uris[0]"],
    ["relative URI", { uris: ["ok:x", "relative/path"] }, "uris[1]"],
    ["non-ASCII URI", { uris: ["spiffe://x/é"] }, "uris[0]"],
    ["wildcard DNS name", { dnsNames: ["*.example.com"] }, "dnsNames[0]"],
    ["DNS label with leading hyphen", { dnsNames: ["-a.example.com"] }, "dnsNames[0]"],
    ["empty DNS label", { dnsNames: ["a..example.com"] }, "dnsNames[0]"],
    ["IP as DNS name", { dnsNames: ["10.0.0.1"] }, "dnsNames[0]"],
    ["IPv4 octet > 255", { ipAddresses: ["256.1.1.1"] }, "ipAddresses[0]"],
    ["short IPv4", { ipAddresses: ["1.2.3"] }, "ipAddresses[0]"],
    ["IPv4 with leading zero", { ipAddresses: ["010.0.0.1"] }, "ipAddresses[0]"],
    ["IPv6 with zone", { ipAddresses: ["::1", "fe80::1%eth0"] }, "ipAddresses[1]"],
    ["bad IPv6", { ipAddresses: ["2001:db8:::1"] }, "ipAddresses[0]"],
    ["notAfter == notBefore", { notBefore: new Date(now), notAfter: new Date(now) }, "notAfter"],
    ["notAfter < notBefore", { notBefore: new Date(now), notAfter: new Date(now - 1000) }, "notAfter"],
    ["invalid notBefore", { notBefore: new Date(Number.NaN) }, "notBefore"],
    ["no EKU", { extKeyUsage: [] }, "extKeyUsage"],
    ["unknown EKU", { extKeyUsage: ["codeSigning" as "clientAuth"] }, "extKeyUsage"],
  ];
  for (const [name, over, field] of cases) {
    test(`rejects ${name} (${field})`, async () => {
      await assert.rejects(issuer.issue(leafOptions(over)), fieldError(field));
    });
  }

  test("sub-second windows collapse to the same second and are rejected", async () => {
    const t0 = Math.floor(now / 1000) * 1000;
    const over = { notBefore: new Date(t0 + 100), notAfter: new Date(t0 + 900) };
    await assert.rejects(issuer.issue(leafOptions(over)), fieldError("notAfter"));
  });

  const p256Spki = () => spkiDer(p256.publicKey);
  const keyCases: Array<[string, () => LeafOptions["publicKey"], RegExp]> = [
    [
      "DSA",
      () => generateKeyPairSync("dsa", { modulusLength: 2048, divisorLength: 256 }).publicKey,
      /dsa keys/,
    ],
    ["P-521", () => generateKeyPairSync("ec", { namedCurve: "P-521" }).publicKey, /secp521r1/],
    [
      "secp256k1 (DER)",
      () => spkiDer(generateKeyPairSync("ec", { namedCurve: "secp256k1" }).publicKey),
      /secp256k1/,
    ],
    ["Ed448", () => generateKeyPairSync("ed448").publicKey, /ed448/],
    ["X25519 (PEM)", () => spkiPem(generateKeyPairSync("x25519").publicKey), /x25519/],
    [
      "RSA 1024",
      () => generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey,
      /2048-8192 bits \(got 1024\)/,
    ],
    [
      "RSA 1024 (DER)",
      () => spkiDer(generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey),
      /got 1024/,
    ],
    ["RSA-PSS", () => generateKeyPairSync("rsa-pss", { modulusLength: 2048 }).publicKey, /RSA-PSS/],
    ["a private KeyObject", () => p256.privateKey, /private key/],
    ["a secret KeyObject", () => createSecretKey(randomBytes(32)), /secret key/],
    [
      "a private key PEM",
      () => p256.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
      /PUBLIC KEY/,
    ],
    ["garbage DER", () => randomBytes(64), /not a valid DER/],
    [
      "SPKI with a trailing byte",
      () => Buffer.concat([p256Spki(), Buffer.from([0])]),
      /canonical|not a valid/,
    ],
    [
      "an off-curve P-256 point",
      () => {
        const der = p256Spki();
        der[der.length - 1]! ^= 1;
        return der;
      },
      /not on the curve/,
    ],
    [
      "a compressed P-256 point",
      () => {
        const der = p256Spki();
        const y = der.subarray(-32);
        const prefix = Buffer.from("3039301306072a8648ce3d020106082a8648ce3d030107032200", "hex");
        return Buffer.concat([prefix, Buffer.from([2 | (y[31]! & 1)]), der.subarray(-64, -32)]);
      },
      /canonical SPKI DER/,
    ],
  ];
  for (const [name, make, message] of keyCases) {
    test(`rejects ${name} as publicKey`, async () => {
      const publicKey = make();
      await assert.rejects(issuer.issue(leafOptions({ publicKey })), (err: unknown) => {
        fieldError("publicKey")(err);
        assert.match((err as Error).message, message);
        return true;
      });
    });
  }

  test("X509Issuer refuses a non-P-256 CA key, a mismatched key and a non-CA certificate", async () => {
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    assert.throws(() => new X509Issuer(p384, caPem), fieldError("caKey"));
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    assert.throws(() => new X509Issuer(other, caPem), fieldError("caKey"));
    const leaf = await issuer.issue(leafOptions());
    assert.throws(() => new X509Issuer(caKey, leaf.pem), fieldError("caCertPem"));
    assert.throws(() => new X509Issuer(caKey, "not a cert"), fieldError("caCertPem"));
  });

  test("an OpenSSL-made CA works too (issuer bytes and AKI taken from its certificate)", async () => {
    const keyFile = join(dir, "ossl-ca.key");
    opensslOk(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyFile]);
    const certFile = join(dir, "ossl-ca.pem");
    opensslOk([
      "req",
      "-x509",
      "-new",
      "-key",
      keyFile,
      "-sha256",
      "-days",
      "1",
      "-subj",
      "/C=DE/ST=Berlin/O=Other Org/CN=OpenSSL CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign",
      "-addext",
      "subjectKeyIdentifier=hash",
      "-out",
      certFile,
    ]);
    const osslPem = opensslOk(["x509", "-in", certFile]);
    const keyPem = opensslOk(["pkey", "-in", keyFile]);
    const other = new X509Issuer(createPrivateKey(keyPem), osslPem);
    const leaf = await other.issue(leafOptions());
    assert.ok(verify(osslPem, leaf.pem, "sslclient").ok);
    const osslCa = new X509Certificate(osslPem);
    assert.deepEqual(tbsFields(leaf.der)[3]!.raw, tbsFields(Buffer.from(osslCa.raw))[5]!.raw);
  });
});
