// The join path's fast paths, checked for the same answers as the slow ones they replace:
// the TLS key PEM decoded without OpenSSL, ID token signatures verified with node:crypto
// instead of WebCrypto (against jose.jwtVerify itself), JWT-SVIDs signed with node:crypto
// (checked by jose), buffered log lines, and SQLite
// group commit (one transaction per event-loop turn, one SAVEPOINT per join).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  createECDH,
  createHash,
  createHmac,
  generateKeyPairSync,
  type KeyObject,
  randomUUID,
  sign,
  X509Certificate,
} from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import * as jose from "jose";
import { JwtIssuer } from "../src/server/ca/jwt.ts";
import {
  CertificateInputError,
  createSelfSignedCA,
  SubjectPublicKey,
  spkiFromPem,
  X509Issuer,
} from "../src/server/ca/x509.ts";
import { checkTlsKey } from "../src/server/issue.ts";
import { JoinError } from "../src/server/joinmethods/errors.ts";
import { verifyIdToken } from "../src/server/joinmethods/jwt.ts";
import { jsonLogger } from "../src/server/log.ts";
import { openSqliteStore, type SqliteOptions, type SqliteStore } from "../src/server/store/sqlite.ts";
import type { AuditEvent, BotInstanceRecord, BoundJoin } from "../src/server/store/store.ts";

const ROOT = resolve(import.meta.dirname, "..");
const spkiDer = (k: KeyObject) => k.export({ type: "spki", format: "der" });
const spkiPem = (k: KeyObject) => k.export({ type: "spki", format: "pem" }).toString();
const p256 = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
const pemOf = (der: Buffer) =>
  `-----BEGIN PUBLIC KEY-----\n${der
    .toString("base64")
    .match(/.{1,64}/g)!
    .join("\n")}\n-----END PUBLIC KEY-----\n`;

// ---------------------------------------------------------------------------------------

describe("TLS public key: PEM decoded without OpenSSL", () => {
  const key = p256();
  const pem = spkiPem(key);

  test("spkiFromPem gives the SPKI DER, with LF or CRLF lines", () => {
    assert.deepEqual(spkiFromPem(pem), spkiDer(key));
    assert.deepEqual(spkiFromPem(pem.replace(/\n/g, "\r\n")), spkiDer(key));
    assert.deepEqual(spkiFromPem(`  \n${pem}\n\n`), spkiDer(key));
  });

  test("spkiFromPem refuses anything but one canonical BEGIN PUBLIC KEY block", () => {
    const body = pem.split("\n")[1]!;
    const bad: Array<[string, unknown]> = [
      ["not a string", 42],
      ["empty", ""],
      ["no body", "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"],
      ["two keys", pem + pem],
      ["text before", `hello\n${pem}`],
      ["another label", pem.replace(/PUBLIC KEY/g, "RSA PUBLIC KEY")],
      ["a certificate label", pem.replace(/PUBLIC KEY/g, "CERTIFICATE")],
      ["non-base64 character", pem.replace(body, `${body.slice(0, 10)}*${body.slice(11)}`)],
      ["padding inside", pem.replace(body, `${body.slice(0, 8)}=${body.slice(9)}`)],
      ["length not a multiple of 4", pem.replace(body, body.slice(0, -1))],
      ["too long", `-----BEGIN PUBLIC KEY-----\n${"A".repeat(5000)}\n-----END PUBLIC KEY-----\n`],
    ];
    for (const [what, input] of bad) {
      assert.throws(
        () => spkiFromPem(input),
        (e: unknown) => e instanceof CertificateInputError && e.field === "publicKey",
        what,
      );
    }
  });

  test("SubjectPublicKey.from names the key type and refuses bad keys", () => {
    assert.equal(SubjectPublicKey.from(pem).type, "P-256");
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey;
    assert.equal(SubjectPublicKey.from(spkiPem(p384)).type, "P-384");
    const ed = generateKeyPairSync("ed25519").publicKey;
    assert.equal(SubjectPublicKey.from(spkiDer(ed)).type, "ed25519");
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
    assert.equal(SubjectPublicKey.from(rsa).type, "rsa");

    const offCurve = Buffer.from(spkiDer(key));
    offCurve[offCurve.length - 1]! ^= 1;
    assert.throws(() => SubjectPublicKey.from(pemOf(offCurve)), /P-256 point is not on the curve/);
    assert.throws(() => SubjectPublicKey.from(pemOf(compressedP256(key))), /not in canonical SPKI DER/);
  });

  test("certificates issued for a SubjectPublicKey carry that key, even if the source buffer changes", async () => {
    const issuer = testIssuer();
    const der = Buffer.from(spkiDer(key));
    const checked = SubjectPublicKey.from(der);
    der.fill(0);
    for (let i = 0; i < 2; i++) {
      const cert = await issuer.issue({ ...LEAF, publicKey: checked });
      assert.deepEqual(spkiDer(new X509Certificate(cert.pem).publicKey), spkiDer(key));
    }
    assert.deepEqual(checked.spki(), spkiDer(key));
    // Only instances made by from() are trusted as checked.
    const forged = Object.create(SubjectPublicKey.prototype) as SubjectPublicKey;
    await assert.rejects(issuer.issue({ ...LEAF, publicKey: forged }), CertificateInputError);
  });

  test("checkTlsKey accepts ECDSA and Ed25519 and names public_keys.tls when refusing", () => {
    assert.equal(checkTlsKey(pem).type, "P-256");
    assert.equal(checkTlsKey(spkiPem(generateKeyPairSync("ed25519").publicKey)).type, "ed25519");
    // What the fast decoder refuses but OpenSSL reads is still accepted, as before.
    const compressed = checkTlsKey(pemOf(compressedP256(key)));
    assert.equal(compressed.type, "P-256");
    assert.deepEqual(compressed.spki(), spkiDer(key));
    assert.equal(checkTlsKey(`a comment line\n${pem}`).type, "P-256");

    const refused = (input: string, message: RegExp) =>
      assert.throws(
        () => checkTlsKey(input),
        (e: unknown) =>
          e instanceof JoinError &&
          e.code === "bad_request" &&
          /^public_keys\.tls: /.test(e.message) &&
          message.test(e.message),
      );
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
    refused(spkiPem(rsa), /key type rsa is not accepted; send an ECDSA P-256 key/);
    refused(spkiPem(generateKeyPairSync("x25519").publicKey), /key type x25519 is not accepted/);
    refused(
      spkiPem(generateKeyPairSync("ec", { namedCurve: "secp256k1" }).publicKey),
      /EC curve secp256k1 is not supported/,
    );
    refused("-----BEGIN PUBLIC KEY-----\nnot base64!!\n-----END PUBLIC KEY-----\n", /./);
    const offCurve = Buffer.from(spkiDer(key));
    offCurve[offCurve.length - 1]! ^= 1;
    refused(pemOf(offCurve), /./);
  });
});

/** The SPKI of `key` with its point compressed (valid, but not the encoding we accept). */
function compressedP256(key: KeyObject): Buffer {
  const jwk = key.export({ format: "jwk" });
  const point = Buffer.concat([
    Buffer.from([4]),
    Buffer.from(jwk.x!, "base64url"),
    Buffer.from(jwk.y!, "base64url"),
  ]);
  const c = createECDH("prime256v1").constructor as unknown as {
    convertKey(k: Buffer, curve: string, i?: undefined, o?: undefined, f?: string): Buffer;
  };
  const compressed = c.convertKey(point, "prime256v1", undefined, undefined, "compressed");
  return Buffer.concat([
    Buffer.from("3039301306072a8648ce3d020106082a8648ce3d030107032200", "hex"),
    compressed,
  ]);
}

const LEAF = {
  commonName: "bot",
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 3600_000),
  extKeyUsage: ["clientAuth" as const],
};

function testIssuer(): X509Issuer {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const ca = createSelfSignedCA({
    key: privateKey,
    commonName: "test CA",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86400_000),
  });
  return new X509Issuer(privateKey, ca);
}

// ---------------------------------------------------------------------------------------

describe("ID token verification with node:crypto, against jose.jwtVerify", () => {
  const ISS = "https://issuer.example";
  const AUD = "https://idbot.example";
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rsa1024 = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const jwk = (k: KeyObject, kid: string, alg: string) => ({
    ...k.export({ format: "jwk" }),
    kid,
    alg,
    use: "sig",
  });
  const keys = jose.createLocalJWKSet({
    keys: [
      jwk(rsa.publicKey, "rsa", "RS256"),
      jwk(ec.publicKey, "ec", "ES256"),
      jwk(rsa1024.publicKey, "short", "RS256"),
    ],
  } as jose.JSONWebKeySet);
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const nowS = () => Math.floor(Date.now() / 1000);
  const claims = (over: Record<string, unknown> = {}) => {
    const c: Record<string, unknown> = {
      iss: ISS,
      aud: AUD,
      sub: "repo:acme/app:ref:refs/heads/main",
      jti: randomUUID(),
      iat: nowS(),
      exp: nowS() + 300,
      ...over,
    };
    for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
    return c;
  };
  type Signer = (input: string) => Buffer;
  const rs256: Signer = (input) => sign("sha256", Buffer.from(input), rsa.privateKey);
  const es256: Signer = (input) =>
    sign("sha256", Buffer.from(input), { key: ec.privateKey, dsaEncoding: "ieee-p1363" });
  const token = (header: Record<string, unknown>, body: Record<string, unknown>, signer: Signer = rs256) => {
    const input = `${b64(header)}.${b64(body)}`;
    return `${input}.${signer(input).toString("base64url")}`;
  };
  const RS = { alg: "RS256", kid: "rsa", typ: "JWT" };
  const ES = { alg: "ES256", kid: "ec", typ: "JWT" };

  /** `audience: null` = none (as `idbot explain` verifies). */
  const ours = async (t: string, audience: string | null = AUD) => {
    try {
      return {
        ok: true as const,
        payload: await verifyIdToken(t, { issuer: ISS, audience: audience ?? undefined, keys }),
      };
    } catch (e) {
      assert.ok(e instanceof JoinError, `not a JoinError: ${String(e)}`);
      return { ok: false as const, error: e };
    }
  };
  const theirs = (t: string, audience: string | null = AUD) =>
    jose
      .jwtVerify(t, keys, {
        algorithms: ["RS256", "ES256"],
        issuer: ISS,
        audience: audience ?? undefined,
        clockTolerance: 60,
        requiredClaims: ["exp", "iat"],
      })
      .then(
        () => true,
        () => false,
      );

  // [what, token, accepted?, message when refused, does jose agree?]
  const cases: Array<[string, () => string, boolean, RegExp?, boolean?]> = [
    ["RS256", () => token(RS, claims()), true],
    ["ES256", () => token(ES, claims(), es256), true],
    ["aud as an array", () => token(RS, claims({ aud: ["other", AUD] })), true],
    ["expired within the leeway", () => token(RS, claims({ exp: nowS() - 30 })), true],
    [
      "tampered payload",
      () => swapPayload(token(RS, claims()), claims({ sub: "evil" })),
      false,
      /signature is invalid/,
    ],
    ["tampered signature", () => flipSignature(token(RS, claims())), false, /signature is invalid/],
    [
      "tampered ES256 signature",
      () => flipSignature(token(ES, claims(), es256)),
      false,
      /signature is invalid/,
    ],
    [
      "empty signature",
      () => `${token(RS, claims()).split(".").slice(0, 2).join(".")}.`,
      false,
      /signature is invalid/,
    ],
    [
      "ES256 with a DER signature",
      () => token(ES, claims(), (i) => sign("sha256", Buffer.from(i), ec.privateKey)),
      false,
      /signature is invalid/,
    ],
    [
      "RS256 signed by another key",
      () =>
        token(RS, claims(), (i) =>
          sign("sha256", Buffer.from(i), generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey),
        ),
      false,
      /signature is invalid/,
    ],
    ["wrong audience", () => token(RS, claims({ aud: "https://other" })), false, /audience/],
    ["wrong issuer", () => token(RS, claims({ iss: "https://other" })), false, /issuer/],
    ["expired", () => token(RS, claims({ exp: nowS() - 120 })), false, /expired at/],
    ["not yet valid", () => token(RS, claims({ nbf: nowS() + 120 })), false, /not valid yet/],
    ["no exp", () => token(RS, claims({ exp: undefined })), false, /"exp" claim is missing/],
    // (mapJoseError words every iat claim failure as "in the future", as before)
    ["no iat", () => token(RS, claims({ iat: undefined })), false, /issue time \(iat\)/],
    ["exp not a number", () => token(RS, claims({ exp: "soon" })), false, /"exp" claim/],
    [
      "payload not an object",
      () => token(RS, [1, 2] as unknown as Record<string, unknown>),
      false,
      /invalid/,
    ],
    ["alg none", () => `${b64({ alg: "none" })}.${b64(claims())}.`, false, /"none" is not allowed/],
    [
      "HS256 keyed with the public key",
      () => token({ alg: "HS256", kid: "rsa" }, claims(), (i) => hmac(spkiPem(rsa.publicKey), i)),
      false,
      /"HS256" is not allowed/,
    ],
    [
      "ES256 header on an RSA kid",
      () => token({ alg: "ES256", kid: "rsa" }, claims(), es256),
      false,
      /no key of the issuer/,
    ],
    [
      "RS256 header on an EC kid",
      () => token({ alg: "RS256", kid: "ec" }, claims()),
      false,
      /no key of the issuer/,
    ],
    ["unknown kid", () => token({ ...RS, kid: "nope" }, claims()), false, /no key of the issuer/],
    [
      "kid over 256 characters",
      () => token({ ...RS, kid: "k".repeat(300) }, claims()),
      false,
      /kid header is too long/,
    ],
    ["five segments", () => `${token(RS, claims())}.x.y`, false, /invalid/],
    ["four segments", () => `${token(RS, claims())}.x`, false, /not a well-formed JWT/],
    ["a non-base64url payload", () => insertIntoPayload(token(RS, claims()), "!"), false, /invalid/],
    // Stricter than jose, on purpose:
    ["crit b64", () => token({ ...RS, crit: ["b64"], b64: true }, claims()), false, /"crit" header/, false],
    ["crit exp", () => token({ ...RS, crit: ["exp"], exp: 1 }, claims()), false, /"crit" header/],
    [
      "iat in the future",
      () => token(RS, claims({ iat: nowS() + 120 })),
      false,
      /iat\) is in the future/,
      false,
    ],
    [
      "an RSA key under 2048 bits",
      () =>
        token({ ...RS, kid: "short" }, claims(), (i) => sign("sha256", Buffer.from(i), rsa1024.privateKey)),
      false,
      /not a usable RS256 verification key/,
    ],
  ];

  for (const [what, make, accepted, message, joseAgrees = true] of cases) {
    test(`${accepted ? "accepts" : "refuses"}: ${what}`, async () => {
      const t = make();
      const r = await ours(t);
      if (accepted) {
        assert.ok(r.ok, r.ok ? "" : r.error.message);
        assert.equal(r.payload.iss, ISS);
      } else {
        assert.ok(!r.ok, "accepted");
        assert.equal(r.error.code, "denied", r.error.message);
        if (message) assert.match(r.error.message, message);
      }
      if (joseAgrees) assert.equal(await theirs(t), accepted, "jose.jwtVerify disagrees");
    });
  }

  test("without an audience (idbot explain), any aud is accepted, as with jose", async () => {
    const t = token(RS, claims({ aud: "https://other" }));
    assert.ok((await ours(t, null)).ok);
    assert.equal(await theirs(t, null), true);
  });

  test("the same key verifies many tokens (the converted KeyObject is reused)", async () => {
    for (let i = 0; i < 20; i++)
      assert.ok((await ours(token(i % 2 ? RS : ES, claims(), i % 2 ? rs256 : es256))).ok);
  });

  const hmac = (secret: string, input: string) => createHmac("sha256", secret).update(input).digest();
});

function swapPayload(t: string, body: Record<string, unknown>): string {
  const [h, , s] = t.split(".");
  return `${h}.${Buffer.from(JSON.stringify(body)).toString("base64url")}.${s}`;
}

function flipSignature(t: string): string {
  const [h, p, s] = t.split(".") as [string, string, string];
  const sig = Buffer.from(s, "base64url");
  sig[10]! ^= 0x40;
  return `${h}.${p}.${sig.toString("base64url")}`;
}

function insertIntoPayload(t: string, ch: string): string {
  const [h, p, s] = t.split(".") as [string, string, string];
  return `${h}.${p.slice(0, 5)}${ch}${p.slice(5)}.${s}`;
}

// ---------------------------------------------------------------------------------------

class Sink extends Writable {
  chunks: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(chunk.toString("utf8"));
    cb();
  }
}
const nextTurn = () => new Promise((r) => setImmediate(r));

describe("JWT-SVIDs signed with node:crypto, checked by jose", () => {
  const key = (kid: string) => ({
    kid,
    privateKey: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
  });
  const opts = (audience: string[]) => ({
    issuer: "https://idbot.example.com",
    subject: "spiffe://example.com/bot/deploy",
    audience,
    issuedAt: 1_800_000_000,
    expiresAt: 1_800_000_600,
    jti: "0f6a3c2e-1111-4222-8333-944445555666",
  });
  const at = new Date(1_800_000_100_000);

  test("jose.jwtVerify accepts them through the JWKS: ES256, kid, typ and every claim", async () => {
    const issuer = new JwtIssuer(key("k1"));
    const token = await issuer.sign({ bot_name: "deploy", join_method: "github" }, opts(["vault"]));
    const jwks = jose.createLocalJWKSet(JSON.parse(issuer.jwks()));
    const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
      issuer: "https://idbot.example.com",
      audience: "vault",
      algorithms: ["ES256"],
      currentDate: at,
    });
    assert.deepEqual(protectedHeader, { alg: "ES256", kid: "k1", typ: "JWT" });
    // SignJWT's shape: the caller's claims first, then the registered ones; one audience is a string.
    assert.deepEqual(payload, {
      bot_name: "deploy",
      join_method: "github",
      iss: "https://idbot.example.com",
      sub: "spiffe://example.com/bot/deploy",
      aud: "vault",
      iat: 1_800_000_000,
      exp: 1_800_000_600,
      jti: "0f6a3c2e-1111-4222-8333-944445555666",
    });
    assert.equal(token.split(".")[2]!.length, 86, "a 64-byte IEEE P1363 signature, not DER");
  });

  test("several audiences are an array; registered claims override the caller's", async () => {
    const issuer = new JwtIssuer(key("k2"), key("k1"));
    const token = await issuer.sign(
      { iss: "forged", aud: "forged", extra: [1, 2] },
      opts(["vault", "consul"]),
    );
    const jwks = jose.createLocalJWKSet(JSON.parse(issuer.jwks()));
    for (const audience of ["vault", "consul"]) {
      const { payload } = await jose.jwtVerify(token, jwks, { audience, currentDate: at });
      assert.equal(payload.iss, "https://idbot.example.com");
      assert.deepEqual(payload.aud, ["vault", "consul"]);
      assert.deepEqual(payload.extra, [1, 2]);
    }
    // Signed by the current key only: the previous one in the JWKS does not verify it.
    const previousOnly = jose.createLocalJWKSet({ keys: JSON.parse(issuer.jwks()).keys.slice(1) });
    await assert.rejects(jose.jwtVerify(token, previousOnly, { currentDate: at }));
  });
});

describe("buffered JSON log lines", () => {
  test("the lines of one event-loop turn go out in one write, in order, one JSON object per line", async () => {
    const sink = new Sink();
    const log = jsonLogger(sink);
    log.log("info", "one", { n: 1 });
    log.log("warn", "two", { audit: { type: "join.success" } });
    log.log("error", "three");
    assert.equal(sink.chunks.length, 0, "nothing written synchronously");
    await nextTurn();
    assert.equal(sink.chunks.length, 1);
    const lines = sink.chunks[0]!.split("\n");
    assert.equal(lines.pop(), "", "ends with a newline");
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      parsed.map((p) => [p.level, p.msg]),
      [
        ["info", "one"],
        ["warn", "two"],
        ["error", "three"],
      ],
    );
    assert.equal(parsed[0]!.n, 1);
    assert.deepEqual(parsed[1]!.audit, { type: "join.success" });
    assert.match(String(parsed[0]!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  test("later turns append in order; flush() writes at once; levels below the minimum are dropped", async () => {
    const sink = new Sink();
    const log = jsonLogger(sink, "info");
    log.log("info", "a");
    await nextTurn();
    log.log("debug", "hidden");
    log.log("info", "b");
    log.flush();
    assert.equal(sink.chunks.length, 2);
    log.log("info", "c");
    await nextTurn();
    await nextTurn();
    const msgs = sink.chunks
      .join("")
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.deepEqual(msgs, ["a", "b", "c"]);
    assert.equal(sink.chunks.length, 3);
  });

  test("a large buffer is written without waiting for the turn to end", () => {
    const sink = new Sink();
    const log = jsonLogger(sink);
    const filler = "x".repeat(1024);
    for (let i = 0; i < 400; i++) log.log("info", "big", { i, filler });
    assert.ok(sink.chunks.length >= 1);
    log.flush();
    const is = sink.chunks
      .join("")
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { i: number }).i);
    assert.deepEqual(
      is,
      Array.from({ length: 400 }, (_, i) => i),
    );
  });

  test("lines logged just before process.exit() are written", () => {
    const dir = mkdtempSync(join(tmpdir(), "idbot-log-"));
    try {
      const file = join(dir, "exit.mts");
      writeFileSync(
        file,
        `import { jsonLogger } from ${JSON.stringify(pathToFileURL(join(ROOT, "src/server/log.ts")).href)};
const log = jsonLogger();
log.log("info", "first", { k: 1 });
log.log("warn", "second");
process.exit(3);
`,
      );
      const r = spawnSync(process.execPath, ["--import", "tsx", file], { cwd: ROOT, encoding: "utf8" });
      assert.equal(r.status, 3, r.stderr);
      const msgs = r.stderr
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { msg: string }).msg);
      assert.deepEqual(msgs, ["first", "second"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------

describe("SQLite group commit", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const open = (options: SqliteOptions = {}): { store: SqliteStore; dir: string } => {
    const dir = mkdtempSync(join(tmpdir(), "idbot-group-"));
    dirs.push(dir);
    return { store: openSqliteStore(dir, options), dir };
  };
  const iso = (s = 0) => new Date(Date.now() + s * 1000).toISOString();
  const inst = (over: Partial<BotInstanceRecord> = {}): BotInstanceRecord => ({
    id: randomUUID(),
    botName: "deploy",
    tokenName: "tok",
    joinMethod: "github",
    claims: { repository: "acme/app" },
    createdAt: iso(),
    expiresAt: iso(3600),
    generation: 1,
    ...over,
  });
  const success = (i: BotInstanceRecord): AuditEvent[] => [
    { type: "join.success", time: i.createdAt, botName: i.botName, instanceId: i.id },
    { type: "cert.issued", time: i.createdAt, botName: i.botName, instanceId: i.id, data: { kind: "tls" } },
  ];
  const replay = (jti: string) => ({
    issuer: "https://issuer",
    jti,
    expiresAt: Math.floor(Date.now() / 1000) + 600,
  });
  const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

  test("joins committed in one turn each get their own result, a replay inside the group included", async () => {
    const { store } = open();
    await store.createJoinToken({
      id: "jt",
      hash: sha256("s"),
      botName: "deploy",
      createdAt: iso(),
      expiresAt: iso(60),
    });
    const i = Array.from({ length: 7 }, () => inst());
    const results = await Promise.all([
      store.commitJoin({ replay: replay("a"), instance: i[0]!, events: success(i[0]!) }),
      store.commitJoin({ replay: replay("a"), instance: i[1]!, events: success(i[1]!) }),
      store.commitJoin({ joinTokenHash: sha256("s"), instance: i[2]!, events: success(i[2]!) }),
      store.commitJoin({ joinTokenHash: sha256("s"), instance: i[3]!, events: success(i[3]!) }),
      store.commitJoin({ replay: replay("b"), instance: i[4]!, events: success(i[4]!) }),
      store.commitJoin({ joinTokenHash: sha256("unknown"), instance: i[5]!, events: success(i[5]!) }),
      // The same instance id again: a primary key conflict, reported as a replay as before.
      store.commitJoin({ replay: replay("c"), instance: { ...i[6]!, id: i[4]!.id }, events: success(i[6]!) }),
    ]);
    assert.deepEqual(results, [
      { ok: true },
      { ok: false, reason: "replayed" },
      { ok: true },
      { ok: false, reason: "token_used" },
      { ok: true },
      { ok: false, reason: "token_unknown" },
      { ok: false, reason: "replayed" },
    ]);
    const stored = new Set((await store.listBotInstances()).map((x) => x.id));
    assert.deepEqual(stored, new Set([i[0]!.id, i[2]!.id, i[4]!.id]));
    const audited = (await store.listAudit()).map((e) => e.instanceId);
    assert.deepEqual(audited, [i[0]!.id, i[0]!.id, i[2]!.id, i[2]!.id, i[4]!.id, i[4]!.id]);
    assert.equal((await store.getJoinTokenByHash(sha256("s")))?.usedByInstance, i[2]!.id);
    // A replay key refused inside the group was not consumed by it: "c" is still free.
    assert.deepEqual(await store.commitJoin({ replay: replay("c"), instance: inst(), events: [] }), {
      ok: true,
    });
    await store.close();
  });

  test("a result is only given once its join is committed (another connection sees it)", async () => {
    const { store, dir } = open();
    const i = inst();
    const r = await store.commitJoin({ replay: replay("x"), instance: i, events: success(i) });
    assert.deepEqual(r, { ok: true });
    const other = new Database(join(dir, "idbot.db"), { readonly: true });
    try {
      assert.deepEqual(other.prepare("SELECT id FROM bot_instances").all(), [{ id: i.id }]);
    } finally {
      other.close();
    }
    await store.close();
  });

  test("an unexpected error fails only its own join; the rest of the group commits", async () => {
    const { store } = open();
    const good = [inst(), inst()];
    const bad = inst({ claims: { n: 1n } as unknown as Record<string, unknown> }); // JSON.stringify throws
    const results = await Promise.allSettled([
      store.commitJoin({ replay: replay("g1"), instance: good[0]!, events: success(good[0]!) }),
      store.commitJoin({ replay: replay("bad"), instance: bad, events: success(bad) }),
      store.commitJoin({ replay: replay("g2"), instance: good[1]!, events: success(good[1]!) }),
    ]);
    assert.deepEqual(results[0], { status: "fulfilled", value: { ok: true } });
    assert.equal(results[1]!.status, "rejected");
    assert.match(String((results[1] as PromiseRejectedResult).reason), /BigInt/);
    assert.deepEqual(results[2], { status: "fulfilled", value: { ok: true } });
    assert.deepEqual(
      new Set((await store.listBotInstances()).map((x) => x.id)),
      new Set(good.map((g) => g.id)),
    );
    // Its replay key was rolled back with it.
    assert.deepEqual(await store.commitJoin({ replay: replay("bad"), instance: inst(), events: [] }), {
      ok: true,
    });
    await store.close();
  });

  test("a copied bound keypair inside a group is refused and its lock sticks; the others commit", async () => {
    const { store } = open();
    const challenge = async () => {
      const id = randomUUID();
      await store.createChallenge({ id, tokenName: "bk", nonce: randomUUID(), expiresAt: iso(60) });
      return id;
    };
    const bound = async (b: Partial<BoundJoin>): Promise<BoundJoin> => ({
      tokenName: "bk",
      challengeId: await challenge(),
      publicKey: "ssh-ed25519 AAAA-key",
      registering: false,
      newJoinStateHash: "state-2",
      recoveryLimit: null,
      checkJoinState: true,
      ...b,
    });
    const first = inst({ tokenName: "bk", joinMethod: "bound_keypair" });
    const reg = await store.commitJoin({
      bound: await bound({ registering: true, newJoinStateHash: "state-1" }),
      instance: first,
      events: [],
    });
    assert.deepEqual(reg, { ok: true });

    const copy = inst({ tokenName: "bk", joinMethod: "bound_keypair" });
    const other = inst();
    const copied = await bound({ presentedJoinStateHash: "stale" });
    const [a, b] = await Promise.all([
      store.commitJoin({ bound: copied, instance: copy, events: success(copy) }),
      store.commitJoin({ replay: replay("other"), instance: other, events: success(other) }),
    ]);
    assert.equal(a.ok, false);
    assert.equal(!a.ok && a.reason, "join_state_mismatch");
    assert.deepEqual(b, { ok: true });
    const st = await store.getBoundKeypair("bk");
    assert.match(st?.lockedReason ?? "", /join state mismatch/);
    assert.equal(st?.joinStateHash, "state-1", "the refused join changed nothing else");
    assert.match((await store.getBotInstance(first.id))?.lockedReason ?? "", /join state mismatch/);
    assert.equal(await store.getBotInstance(copy.id), undefined);
    assert.ok(await store.getBotInstance(other.id));
    assert.ok(await store.getChallenge(copied.challengeId), "the refused join's challenge is left");
    await store.close();
  });

  for (const checkpointer of [false, true])
    test(`thousands of joins in groups${checkpointer ? ", WAL checkpointed by the worker" : ""}: all stored; close leaves no WAL behind; closed store refuses`, async () => {
      const { store, dir } = open({ checkpointer });
      const n = 3000;
      for (let k = 0; k < n; k += 100) {
        const batch = Array.from({ length: 100 }, () => inst());
        const rs = await Promise.all(
          batch.map((i) => store.commitJoin({ replay: replay(i.id), instance: i, events: success(i) })),
        );
        assert.ok(rs.every((r) => r.ok));
      }
      await store.close();
      assert.equal(existsSync(join(dir, "idbot.db-wal")), false);
      await assert.rejects(store.commitJoin({ instance: inst(), events: [] }));
      const reopened = openSqliteStore(dir);
      assert.equal((await reopened.listBotInstances()).length, n);
      assert.equal((await reopened.listAudit({ limit: 10 * n })).length, 2 * n);
      await reopened.close();
    });
});
