// A lean X.509 issuer: a few DER helpers, fixed certificate templates, and node:crypto for
// the P-256 signature. A general ASN.1 library costs ~60x the signature itself per leaf, and
// this runs on every join, so everything constant (version, algorithm, issuer Name, policy
// extensions, AKI) is encoded once per issuer and each issue() only encodes what varies.
//
// Profile (RFC 5280): v3, ecdsa-with-SHA256, UTF8String names, UTCTime before 2050 and
// GeneralizedTime from 2050, positive minimal serials, SKI = SHA-1 of the subjectPublicKey
// bits (method 1 of §4.2.1.2), AKI = the CA's SKI.
import * as nodeCrypto from "node:crypto";
import {
  createHash,
  createPublicKey,
  type KeyObject,
  randomFillSync,
  sign,
  type SignKeyObjectInput,
  X509Certificate,
} from "node:crypto";
import { isIP } from "node:net";

// ---------------------------------------------------------------------------------------
// Errors

/** Bad caller input; `field` names the offending option, e.g. "uris[1]". */
export class CertificateInputError extends Error {
  override readonly name = "CertificateInputError";
  readonly field: string;
  constructor(field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.field = field;
  }
}

// ---------------------------------------------------------------------------------------
// DER encoding. Only what certificates need: single-byte tags, definite lengths < 16 MiB.

const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;
const ctx = (n: number) => 0x80 | n; // [n] IMPLICIT, primitive
const ctxCons = (n: number) => 0xa0 | n; // [n] EXPLICIT / constructed

function headerSize(len: number): number {
  return len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : 5;
}

function writeHeader(out: Buffer, tag: number, len: number): number {
  out[0] = tag;
  if (len < 0x80) {
    out[1] = len;
    return 2;
  }
  const n = headerSize(len) - 2;
  out[1] = 0x80 | n;
  for (let i = n; i >= 1; i--, len >>>= 8) out[1 + i] = len & 0xff;
  return 2 + n;
}

/** One TLV whose contents are the concatenation of `parts` (one allocation, no temp arrays). */
function tlv(tag: number, ...parts: Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(headerSize(len) + len);
  let off = writeHeader(out, tag, len);
  for (const p of parts) off += p.copy(out, off);
  return out;
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split(".").map(Number);
  const bytes: number[] = [];
  const push = (v: number) => {
    const tmp = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) tmp.unshift(0x80 | (v & 0x7f));
    bytes.push(...tmp);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(TAG.OID, Buffer.from(bytes));
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
function extension(id: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical
    ? tlv(TAG.SEQUENCE, id, TRUE, tlv(TAG.OCTET_STRING, value))
    : tlv(TAG.SEQUENCE, id, tlv(TAG.OCTET_STRING, value));
}

/** BIT STRING holding whole bytes (signatures, keys): leading "0 unused bits" octet. */
function bitString(bytes: Buffer): Buffer {
  return tlv(TAG.BIT_STRING, ZERO_BYTE, bytes);
}

const ZERO_BYTE = Buffer.from([0]);
const TRUE = Buffer.from([TAG.BOOLEAN, 1, 0xff]);

const OID = {
  commonName: oid("2.5.4.3"),
  organizationName: oid("2.5.4.10"),
  subjectKeyIdentifier: oid("2.5.29.14"),
  keyUsage: oid("2.5.29.15"),
  subjectAltName: oid("2.5.29.17"),
  basicConstraints: oid("2.5.29.19"),
  authorityKeyIdentifier: oid("2.5.29.35"),
  extKeyUsage: oid("2.5.29.37"),
  serverAuth: oid("1.3.6.1.5.5.7.3.1"),
  clientAuth: oid("1.3.6.1.5.5.7.3.2"),
  ecdsaWithSHA256: oid("1.2.840.10045.4.3.2"),
};

// ---------------------------------------------------------------------------------------
// DER reading: just enough to walk the CA certificate and an SPKI.

interface Tlv {
  tag: number;
  /** offset of the tag byte */
  start: number;
  /** offset of the first content byte */
  body: number;
  /** offset just past the contents */
  end: number;
}

function readTlv(buf: Buffer, off: number, limit = buf.length): Tlv {
  if (off + 2 > limit) throw new Error("DER: truncated header");
  const tag = buf[off]!;
  let len = buf[off + 1]!;
  let body = off + 2;
  if (len >= 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || body + n > limit) throw new Error("DER: unsupported length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body++]!;
  }
  if (body + len > limit) throw new Error("DER: truncated value");
  return { tag, start: off, body, end: body + len };
}

/** The subjectPublicKey BIT STRING contents (without the unused-bits octet) of an SPKI. */
function spkiKeyBits(spki: Buffer): Buffer {
  const outer = readTlv(spki, 0);
  const alg = readTlv(spki, outer.body, outer.end);
  const bits = readTlv(spki, alg.end, outer.end);
  if (outer.tag !== TAG.SEQUENCE || alg.tag !== TAG.SEQUENCE || bits.tag !== TAG.BIT_STRING) {
    throw new Error("DER: not a SubjectPublicKeyInfo");
  }
  return spki.subarray(bits.body + 1, bits.end);
}

// ---------------------------------------------------------------------------------------
// Field encoders

/** Unpaired surrogates (which UTF-8 would silently turn into U+FFFD), C0/C1 controls,
 * invisible format characters (bidi overrides, zero-width) and line/paragraph separators:
 * none belong in a name that ends up in logs, RBAC rules and audit trails. */
const BAD_NAME_CHARS = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

/** X.520 ub-common-name / ub-organization-name: 64 characters. */
function checkName(field: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0) throw new CertificateInputError(field, "must be a non-empty string");
  if (value.length > 64) {
    let chars = 0;
    for (const _ of value) chars++;
    if (chars > 64) throw new CertificateInputError(field, `must be at most 64 characters (got ${chars})`);
  }
  if (BAD_NAME_CHARS.test(value)) throw new CertificateInputError(field, "contains control or invisible characters");
  if (value.trim() !== value) throw new CertificateInputError(field, "has leading or trailing whitespace");
  return value;
}

/** RelativeDistinguishedName with a single UTF8String attribute. */
function rdn(type: Buffer, value: string): Buffer {
  return tlv(TAG.SET, tlv(TAG.SEQUENCE, type, tlv(TAG.UTF8_STRING, Buffer.from(value, "utf8"))));
}

/** Name: O RDNs then CN, the order Go and OpenSSL use (RFC 2253 shows it reversed). */
function encodeName(commonName: string, organizations: readonly string[] | undefined, field = "organizations") {
  const rdns: Buffer[] = [];
  if (organizations) {
    for (let i = 0; i < organizations.length; i++) {
      rdns.push(rdn(OID.organizationName, checkName(`${field}[${i}]`, organizations[i])));
    }
  }
  rdns.push(rdn(OID.commonName, checkName("commonName", commonName)));
  return tlv(TAG.SEQUENCE, ...rdns);
}

function checkDate(field: string, d: unknown): number {
  if (!(d instanceof Date) || !Number.isFinite(d.getTime())) throw new CertificateInputError(field, "must be a valid Date");
  const y = d.getUTCFullYear();
  if (y < 1 || y > 9999) throw new CertificateInputError(field, "year must be between 1 and 9999");
  // Certificates carry whole seconds; truncate so the result reports what was encoded.
  return Math.floor(d.getTime() / 1000) * 1000;
}

function checkValidity(notBefore: unknown, notAfter: unknown): [number, number] {
  const nb = checkDate("notBefore", notBefore);
  const na = checkDate("notAfter", notAfter);
  if (na <= nb) throw new CertificateInputError("notAfter", "must be later than notBefore (at 1 s precision)");
  return [nb, na];
}

/** RFC 5280 §4.1.2.5: UTCTime YYMMDDHHMMSSZ for 1950–2049, GeneralizedTime otherwise. */
function encodeTime(ms: number): Buffer {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const generalized = y < 1950 || y >= 2050;
  const n = generalized ? 15 : 13;
  const out = Buffer.allocUnsafe(2 + n);
  out[0] = generalized ? TAG.GENERALIZED_TIME : TAG.UTC_TIME;
  out[1] = n;
  let o = 2;
  if (generalized) o = twoDigits(out, o, Math.floor(y / 100));
  o = twoDigits(out, o, y % 100);
  o = twoDigits(out, o, d.getUTCMonth() + 1);
  o = twoDigits(out, o, d.getUTCDate());
  o = twoDigits(out, o, d.getUTCHours());
  o = twoDigits(out, o, d.getUTCMinutes());
  o = twoDigits(out, o, d.getUTCSeconds());
  out[o] = 0x5a; // 'Z'
  return out;
}

function twoDigits(out: Buffer, o: number, v: number): number {
  out[o] = 0x30 + Math.floor(v / 10);
  out[o + 1] = 0x30 + (v % 10);
  return o + 2;
}

/** Serial as a positive, minimal DER INTEGER. `magnitude` is unsigned big-endian. */
function encodeSerial(magnitude: Buffer): { der: Buffer; hex: string } {
  let i = 0;
  while (i < magnitude.length && magnitude[i] === 0) i++;
  if (i === magnitude.length) throw new CertificateInputError("serial", "must be a positive number");
  const m = magnitude.subarray(i);
  // A set high bit would read as negative: prefix 0x00. RFC 5280 caps the INTEGER at 20 octets.
  const pad = m[0]! >= 0x80;
  if (m.length + (pad ? 1 : 0) > 20) throw new CertificateInputError("serial", "must fit in 20 DER octets");
  const der = pad ? tlv(TAG.INTEGER, ZERO_BYTE, m) : tlv(TAG.INTEGER, m);
  // Same form as X509Certificate#serialNumber and `openssl x509 -serial`.
  return { der, hex: m.toString("hex").toUpperCase() };
}

const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/** LDH hostnames only: no wildcards, underscores, trailing dot or IDN U-labels. */
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
/** IA5String holds ASCII; a URI SAN has no business containing spaces or controls. */
const URI_CHARS = /^[\x21-\x7e]+$/;

function encodeIp(field: string, text: unknown): Buffer {
  const version = typeof text === "string" && !text.includes("%") ? isIP(text) : 0; // no zone IDs
  if (version === 4) return Buffer.from((text as string).split(".").map(Number));
  if (version !== 6) throw new CertificateInputError(field, `not an IPv4 or IPv6 address: ${JSON.stringify(text)}`);
  // isIP has validated the syntax, so this only has to place the groups.
  const words: number[] = [];
  const groups = (s: string) => {
    const w: number[] = [];
    if (s === "") return w;
    for (const g of s.split(":")) {
      if (g.includes(".")) {
        const [a, b, c, d] = g.split(".").map(Number) as [number, number, number, number];
        w.push((a << 8) | b, (c << 8) | d);
      } else w.push(Number.parseInt(g, 16));
    }
    return w;
  };
  const gap = (text as string).indexOf("::");
  if (gap < 0) words.push(...groups(text as string));
  else {
    const head = groups((text as string).slice(0, gap));
    const tail = groups((text as string).slice(gap + 2));
    words.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  const out = Buffer.allocUnsafe(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(words[i]!, i * 2);
  return out;
}

function encodeSan(opts: LeafOptions): Buffer | undefined {
  const names: Buffer[] = [];
  const { uris, dnsNames, ipAddresses } = opts;
  if (dnsNames) {
    for (let i = 0; i < dnsNames.length; i++) {
      const name = dnsNames[i];
      if (typeof name !== "string" || name.length > 253 || !HOSTNAME.test(name) || isIP(name) !== 0) {
        throw new CertificateInputError(`dnsNames[${i}]`, `not a valid DNS hostname: ${JSON.stringify(name)}`);
      }
      names.push(tlv(ctx(2), Buffer.from(name, "latin1")));
    }
  }
  if (uris) {
    for (let i = 0; i < uris.length; i++) {
      const uri = uris[i];
      let ok = typeof uri === "string" && uri.length <= 2048 && URI_CHARS.test(uri);
      if (ok) {
        try {
          new URL(uri as string);
        } catch {
          ok = false;
        }
      }
      if (!ok) throw new CertificateInputError(`uris[${i}]`, `not a valid absolute ASCII URI: ${JSON.stringify(uri)}`);
      names.push(tlv(ctx(6), Buffer.from(uri as string, "latin1")));
    }
  }
  if (ipAddresses) {
    for (let i = 0; i < ipAddresses.length; i++) {
      names.push(tlv(ctx(7), encodeIp(`ipAddresses[${i}]`, ipAddresses[i])));
    }
  }
  if (names.length === 0) return undefined;
  // Non-critical: the subject is never empty (RFC 5280 §4.2.1.6).
  return extension(OID.subjectAltName, false, tlv(TAG.SEQUENCE, ...names));
}

// Subject public keys. OpenSSL 3's generic decoder/encoder (createPublicKey on DER/PEM,
// KeyObject#export to SPKI) costs 150-250 µs per call here, several times the signature, so
// the hot path never uses it: SPKI DER is checked against the exact encodings of the four
// accepted key types (which also proves it is canonical DER, so it can be copied verbatim),
// EC points are checked to be on the curve, and KeyObjects are turned into SPKI through
// their JWK export (a few µs). Only error messages for unsupported keys go through OpenSSL.

interface SubjectKey {
  spki: Buffer;
  /** subjectPublicKey BIT STRING contents, hashed for the SKI */
  bits: Buffer;
  rsa: boolean;
}

const hex = (s: string) => Buffer.from(s, "hex");

interface Curve {
  name: string;
  /** SPKI bytes up to and including the 0x04 "uncompressed point" octet */
  prefix: Buffer;
  size: number;
  p: bigint;
  b: bigint;
}
// Short Weierstrass curves with a = -3 (FIPS 186-4 D.1.2). Both have cofactor 1, so "on the
// curve" (plus the encoding excluding infinity) is full public-key validation.
const P256: Curve = {
  name: "P-256",
  prefix: hex("3059301306072a8648ce3d020106082a8648ce3d03010703420004"),
  size: 32,
  p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
  b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
};
const P384: Curve = {
  name: "P-384",
  prefix: hex("3076301006072a8648ce3d020106052b8104002203620004"),
  size: 48,
  p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
  b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
};
const ED25519_PREFIX = hex("302a300506032b6570032100");
const RSA_ALG = hex("300d06092a864886f70d0101010500"); // rsaEncryption, NULL parameters

const startsWith = (buf: Buffer, prefix: Buffer) =>
  buf.length >= prefix.length && buf.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
const toBigInt = (b: Buffer) => BigInt(`0x${b.toString("hex")}`);

function onCurve(c: Curve, point: Buffer): boolean {
  const x = toBigInt(point.subarray(0, c.size));
  const y = toBigInt(point.subarray(c.size));
  if (x >= c.p || y >= c.p) return false;
  // y^2 == x^3 - 3x + b (mod p)
  return (y * y) % c.p === ((((x * x) % c.p) + c.p - 3n) * x + c.b) % c.p;
}

/** Strict DER header (definite, minimal length) inside [off, limit); returns content bounds. */
function readStrict(buf: Buffer, off: number, limit: number, tag: number): Tlv | undefined {
  if (off + 2 > limit || buf[off] !== tag) return undefined;
  const first = buf[off + 1]!;
  if (first < 0x80) return off + 2 + first <= limit ? { tag, start: off, body: off + 2, end: off + 2 + first } : undefined;
  const n = first & 0x7f;
  if (n === 0 || n > 3 || off + 2 + n > limit || buf[off + 2] === 0) return undefined;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i]!;
  if (len < 0x80) return undefined; // should have used the short form
  const body = off + 2 + n;
  return body + len <= limit ? { tag, start: off, body, end: body + len } : undefined;
}

/** A positive, minimally encoded INTEGER's magnitude, or undefined. */
function unsignedInteger(buf: Buffer, t: Tlv): Buffer | undefined {
  const len = t.end - t.body;
  if (len === 0 || buf[t.body]! >= 0x80) return undefined;
  if (buf[t.body] === 0) return len > 1 && buf[t.body + 1]! >= 0x80 ? buf.subarray(t.body + 1, t.end) : undefined;
  return buf.subarray(t.body, t.end);
}

// Go's crypto/rsa refuses exponents above 2^31-1; larger keys than 8192 bits are abuse.
function checkRsa(spki: Buffer): SubjectKey {
  const bad = (why: string): never => {
    throw new CertificateInputError("publicKey", why);
  };
  const outer = readStrict(spki, 0, spki.length, TAG.SEQUENCE);
  if (!outer || outer.end !== spki.length) return bad("malformed RSA SubjectPublicKeyInfo");
  const bitStr = readStrict(spki, outer.body + RSA_ALG.length, outer.end, TAG.BIT_STRING);
  if (!bitStr || bitStr.end !== outer.end || spki[bitStr.body] !== 0) return bad("malformed RSA SubjectPublicKeyInfo");
  const seq = readStrict(spki, bitStr.body + 1, bitStr.end, TAG.SEQUENCE);
  const nTlv = seq && readStrict(spki, seq.body, seq.end, TAG.INTEGER);
  const eTlv = nTlv && readStrict(spki, nTlv.end, seq.end, TAG.INTEGER);
  const n = nTlv && unsignedInteger(spki, nTlv);
  const e = eTlv && unsignedInteger(spki, eTlv);
  if (!seq || seq.end !== bitStr.end || !eTlv || eTlv.end !== seq.end || !n || !e) {
    return bad("malformed RSA public key");
  }
  const bits = n.length * 8 - Math.clz32(n[0]!) + 24;
  if (bits < 2048 || bits > 8192) bad(`RSA key must be 2048-8192 bits (got ${bits})`);
  if ((n[n.length - 1]! & 1) === 0) bad("RSA modulus is even");
  const exp = e.length <= 4 ? e.readUIntBE(0, e.length) : Number.POSITIVE_INFINITY;
  if (exp < 3 || exp > 0x7fffffff || (exp & 1) === 0) bad("RSA public exponent must be odd, >= 3 and < 2^31");
  return { spki, bits: spki.subarray(bitStr.body + 1, bitStr.end), rsa: true };
}

/** Validate SPKI DER; the returned `spki` is the input itself (proven canonical). */
function checkSpki(spki: Buffer): SubjectKey {
  for (const c of [P256, P384]) {
    if (spki.length === c.prefix.length + 2 * c.size && startsWith(spki, c.prefix)) {
      if (!onCurve(c, spki.subarray(c.prefix.length))) {
        throw new CertificateInputError("publicKey", `${c.name} point is not on the curve`);
      }
      return { spki, bits: spki.subarray(c.prefix.length - 1), rsa: false };
    }
  }
  if (spki.length === ED25519_PREFIX.length + 32 && startsWith(spki, ED25519_PREFIX)) {
    return { spki, bits: spki.subarray(ED25519_PREFIX.length), rsa: false };
  }
  const outer = readStrict(spki, 0, spki.length, TAG.SEQUENCE);
  if (outer && startsWith(spki.subarray(outer.body), RSA_ALG)) return checkRsa(spki);
  // Not one of ours: let OpenSSL say what it is (slow, but only on the error path).
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: "der", type: "spki" });
  } catch {
    throw new CertificateInputError("publicKey", "not a valid DER SubjectPublicKeyInfo");
  }
  throw unsupportedKey(key, true);
}

function unsupportedKey(key: KeyObject, parsed = false): CertificateInputError {
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  let why = `${type} keys are not supported (use EC P-256/P-384, Ed25519 or RSA >= 2048 bits)`;
  if (type === "ec" && curve !== "prime256v1" && curve !== "secp384r1") {
    why = `EC curve ${curve ?? "(explicit parameters)"} is not supported (use P-256 or P-384)`;
  } else if (type === "ec" && parsed) {
    why = "EC keys must use a named curve and an uncompressed point";
  } else if (type === "rsa-pss") {
    why = "RSA-PSS keys are not supported (use an rsaEncryption key)";
  }
  return new CertificateInputError("publicKey", why);
}

/** A few µs via JWK, against ~200 µs for export({ type: "spki" }). */
function spkiFromKeyObject(key: KeyObject): Buffer {
  const type = key.asymmetricKeyType;
  if (type === "ec") {
    const jwk = key.export({ format: "jwk" });
    const c = jwk.crv === "P-256" ? P256 : jwk.crv === "P-384" ? P384 : undefined;
    if (!c || !jwk.x || !jwk.y) throw unsupportedKey(key);
    const out = Buffer.alloc(c.prefix.length + 2 * c.size); // zeroed: x and y are left-padded
    c.prefix.copy(out);
    const x = Buffer.from(jwk.x, "base64url");
    const y = Buffer.from(jwk.y, "base64url");
    x.copy(out, c.prefix.length + c.size - x.length);
    y.copy(out, out.length - y.length);
    return out;
  }
  if (type === "ed25519") {
    const jwk = key.export({ format: "jwk" });
    return Buffer.concat([ED25519_PREFIX, Buffer.from(jwk.x ?? "", "base64url")]);
  }
  if (type === "rsa") {
    const jwk = key.export({ format: "jwk" });
    const int = (b64u: string | undefined) => {
      const m = Buffer.from(b64u ?? "", "base64url");
      return m.length > 0 && m[0]! >= 0x80 ? tlv(TAG.INTEGER, ZERO_BYTE, m) : tlv(TAG.INTEGER, m);
    };
    return tlv(TAG.SEQUENCE, RSA_ALG, bitString(tlv(TAG.SEQUENCE, int(jwk.n), int(jwk.e))));
  }
  throw unsupportedKey(key);
}

const PUBLIC_KEY_PEM = /^\s*-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----\s*$/;

function checkPublicKey(input: unknown): SubjectKey {
  if (Buffer.isBuffer(input)) return checkSpki(input);
  if (typeof input === "string") {
    const m = PUBLIC_KEY_PEM.exec(input);
    if (!m) throw new CertificateInputError("publicKey", "PEM must be a single SubjectPublicKeyInfo (BEGIN PUBLIC KEY)");
    return checkSpki(Buffer.from(m[1]!, "base64"));
  }
  if (input && typeof input === "object" && "asymmetricKeyType" in input) {
    const key = input as KeyObject;
    if (key.type !== "public") throw new CertificateInputError("publicKey", `expected a public key, got a ${key.type} key`);
    return checkSpki(spkiFromKeyObject(key));
  }
  throw new CertificateInputError("publicKey", "must be a KeyObject, SPKI DER Buffer or SPKI PEM string");
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. One-shot crypto.hash()
 * (Node >= 20.12) is ~3x cheaper than a Hash object; fall back to the latter before that. */
const keyIdentifier: (keyBits: Buffer) => Buffer =
  typeof nodeCrypto.hash === "function"
    ? (keyBits) => nodeCrypto.hash("sha1", keyBits, "buffer")
    : (keyBits) => createHash("sha1").update(keyBits).digest();

// randomBytes(16) costs a few µs per call (one RNG request each); filling 4 KiB costs the
// same, so serials are cut from a pool (as crypto.randomUUID does). Serials are public.
const serialPool = Buffer.allocUnsafe(4096);
let serialPoolOffset = serialPool.length;
function randomSerial(): Buffer {
  if (serialPoolOffset === serialPool.length) {
    randomFillSync(serialPool);
    serialPoolOffset = 0;
  }
  serialPoolOffset += 16;
  return serialPool.subarray(serialPoolOffset - 16, serialPoolOffset);
}

function toPem(der: Buffer): string {
  const b64 = der.toString("base64");
  let pem = "-----BEGIN CERTIFICATE-----\n";
  for (let i = 0; i < b64.length; i += 64) pem += `${b64.slice(i, i + 64)}\n`;
  return `${pem}-----END CERTIFICATE-----\n`;
}

// ---------------------------------------------------------------------------------------
// Templates

const VERSION_3 = Buffer.from([ctxCons(0), 3, TAG.INTEGER, 1, 2]);
const SIG_ALG = tlv(TAG.SEQUENCE, OID.ecdsaWithSHA256); // parameters absent (RFC 5758)

// KeyUsage bits are numbered from the MSB; DER drops trailing zero bits, hence the
// "unused bits" counts.
const KU_DIGITAL_SIGNATURE = Buffer.from([TAG.BIT_STRING, 2, 7, 0x80]);
const KU_DIGITAL_SIGNATURE_KEY_ENCIPHERMENT = Buffer.from([TAG.BIT_STRING, 2, 5, 0xa0]);
const KU_CA = Buffer.from([TAG.BIT_STRING, 2, 1, 0x86]); // digitalSignature, keyCertSign, cRLSign

const LEAF_FIXED_EXTS = {
  // basicConstraints CA:FALSE is the empty SEQUENCE (cA DEFAULT FALSE is omitted in DER).
  nonRsa: Buffer.concat([
    extension(OID.basicConstraints, true, tlv(TAG.SEQUENCE)),
    extension(OID.keyUsage, true, KU_DIGITAL_SIGNATURE),
  ]),
  // keyEncipherment only matters for TLS 1.2 RSA key transport, so only RSA keys get it.
  rsa: Buffer.concat([
    extension(OID.basicConstraints, true, tlv(TAG.SEQUENCE)),
    extension(OID.keyUsage, true, KU_DIGITAL_SIGNATURE_KEY_ENCIPHERMENT),
  ]),
};

export type ExtKeyUsage = "clientAuth" | "serverAuth";
/** Indexed by (serverAuth ? 1 : 0) | (clientAuth ? 2 : 0). */
const EKU_EXTS: readonly (Buffer | undefined)[] = [
  undefined,
  extension(OID.extKeyUsage, false, tlv(TAG.SEQUENCE, OID.serverAuth)),
  extension(OID.extKeyUsage, false, tlv(TAG.SEQUENCE, OID.clientAuth)),
  extension(OID.extKeyUsage, false, tlv(TAG.SEQUENCE, OID.serverAuth, OID.clientAuth)),
];

function ekuExtension(usages: unknown): Buffer {
  let mask = 0;
  if (Array.isArray(usages)) {
    for (const u of usages) {
      if (u === "serverAuth") mask |= 1;
      else if (u === "clientAuth") mask |= 2;
      else throw new CertificateInputError("extKeyUsage", `unknown usage ${JSON.stringify(u)}`);
    }
  }
  const ext = EKU_EXTS[mask];
  if (!ext) throw new CertificateInputError("extKeyUsage", 'must list "clientAuth" and/or "serverAuth"');
  return ext;
}

function skiExtension(keyId: Buffer): Buffer {
  return extension(OID.subjectKeyIdentifier, false, tlv(TAG.OCTET_STRING, keyId));
}

/** AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING } */
function akiExtension(keyId: Buffer): Buffer {
  return extension(OID.authorityKeyIdentifier, false, tlv(TAG.SEQUENCE, tlv(ctx(0), keyId)));
}

function checkCaKey(key: unknown, field: string): KeyObject {
  const k = key as KeyObject | undefined;
  if (
    !k ||
    typeof k !== "object" ||
    k.type !== "private" ||
    k.asymmetricKeyType !== "ec" ||
    k.asymmetricKeyDetails?.namedCurve !== "prime256v1"
  ) {
    throw new CertificateInputError(field, "must be a P-256 private KeyObject (certificates are signed ecdsa-with-SHA256)");
  }
  return k;
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING } */
function signCertificate(tbs: Buffer, signKey: SignKeyObjectInput): Buffer {
  return tlv(TAG.SEQUENCE, tbs, SIG_ALG, bitString(sign("sha256", tbs, signKey)));
}

// ---------------------------------------------------------------------------------------
// Public API

export interface CaCertOptions {
  /** P-256 private key. */
  key: KeyObject;
  commonName: string;
  organization?: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * A self-signed CA certificate (PEM). basicConstraints is CA:TRUE with pathLenConstraint 0:
 * this CA only ever signs leaves, so verifiers should refuse any intermediate it (or a thief
 * of its key) might sign. keyUsage adds digitalSignature to keyCertSign/cRLSign so the same
 * key may sign OCSP responses.
 */
export function createSelfSignedCA(opts: CaCertOptions): string {
  const key = checkCaKey(opts.key, "key");
  const [nb, na] = checkValidity(opts.notBefore, opts.notAfter);
  const name = encodeName(opts.commonName, opts.organization === undefined ? undefined : [opts.organization], "organization");
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  const keyId = keyIdentifier(spkiKeyBits(spki));
  const caConstraints = tlv(TAG.SEQUENCE, TRUE, tlv(TAG.INTEGER, ZERO_BYTE)); // CA:TRUE, pathlen:0
  const tbs = tlv(
    TAG.SEQUENCE,
    VERSION_3,
    encodeSerial(randomSerial()).der,
    SIG_ALG,
    name,
    tlv(TAG.SEQUENCE, encodeTime(nb), encodeTime(na)),
    name,
    spki,
    tlv(
      ctxCons(3),
      tlv(
        TAG.SEQUENCE,
        extension(OID.basicConstraints, true, caConstraints),
        extension(OID.keyUsage, true, KU_CA),
        skiExtension(keyId),
        akiExtension(keyId),
      ),
    ),
  );
  return toPem(signCertificate(tbs, { key, dsaEncoding: "der" }));
}

export interface LeafOptions {
  /** EC P-256/P-384, Ed25519 or RSA 2048–8192: a public KeyObject, SPKI DER or SPKI PEM. */
  publicKey: KeyObject | Buffer | string;
  commonName: string;
  /** Each becomes its own O RDN (Kubernetes reads every O as a group). */
  organizations?: string[];
  /** URI SANs, e.g. SPIFFE IDs. */
  uris?: string[];
  dnsNames?: string[];
  /** IPv4 or IPv6 text; encoded as 4 or 16 bytes. */
  ipAddresses?: string[];
  notBefore: Date;
  notAfter: Date;
  extKeyUsage: ExtKeyUsage[];
  /** Unsigned big-endian; default 16 random bytes. Encoded positive and minimal. */
  serial?: Buffer;
}

export interface IssuedCertificate {
  pem: string;
  der: Buffer;
  /** Uppercase hex without leading zeros, as X509Certificate#serialNumber prints it. */
  serialHex: string;
  /** As encoded (whole seconds). */
  notAfter: Date;
}

export class X509Issuer {
  readonly caCertPem: string;
  readonly #signKey: SignKeyObjectInput;
  /** version, (serial goes here), signature algorithm, issuer Name */
  readonly #algAndIssuer: Buffer;
  readonly #aki: Buffer;

  constructor(caKey: KeyObject, caCertPem: string) {
    const key = checkCaKey(caKey, "caKey");
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(caCertPem);
    } catch (err) {
      throw new CertificateInputError("caCertPem", `cannot parse: ${(err as Error).message}`);
    }
    if (!cert.ca) throw new CertificateInputError("caCertPem", "is not a CA certificate (basicConstraints CA:TRUE)");
    const caSpki = cert.publicKey.export({ type: "spki", format: "der" });
    if (!createPublicKey(key).export({ type: "spki", format: "der" }).equals(caSpki)) {
      throw new CertificateInputError("caKey", "does not match the CA certificate's public key");
    }

    // Walk tbsCertificate for the subject Name (copied verbatim so that each leaf's issuer
    // equals it byte for byte) and the CA's SKI.
    const der = cert.raw;
    const certSeq = readTlv(der, 0);
    const tbs = readTlv(der, certSeq.body, certSeq.end);
    const fields: Tlv[] = [];
    for (let off = tbs.body; off < tbs.end; ) {
      const t = readTlv(der, off, tbs.end);
      fields.push(t);
      off = t.end;
    }
    // version is optional (v1): subject is the 5th field after it.
    const base = fields[0]?.tag === ctxCons(0) ? 1 : 0;
    const subject = fields[base + 4];
    if (!subject || subject.tag !== TAG.SEQUENCE) throw new CertificateInputError("caCertPem", "malformed tbsCertificate");
    let caKeyId: Buffer | undefined;
    const exts = fields.find((f) => f.tag === ctxCons(3));
    if (exts) {
      const seq = readTlv(der, exts.body, exts.end);
      for (let off = seq.body; off < seq.end; ) {
        const ext = readTlv(der, off, seq.end);
        off = ext.end;
        const id = readTlv(der, ext.body, ext.end);
        if (!der.subarray(id.start, id.end).equals(OID.subjectKeyIdentifier)) continue;
        let value = readTlv(der, id.end, ext.end);
        if (value.tag === TAG.BOOLEAN) value = readTlv(der, value.end, ext.end);
        const keyId = readTlv(der, value.body, value.end); // OCTET STRING inside extnValue
        caKeyId = Buffer.from(der.subarray(keyId.body, keyId.end));
      }
    }
    // Without an SKI in the CA, use the same method-1 hash it would have had.
    caKeyId ??= keyIdentifier(spkiKeyBits(caSpki));

    this.caCertPem = caCertPem;
    this.#signKey = { key, dsaEncoding: "der" };
    this.#algAndIssuer = Buffer.concat([SIG_ALG, der.subarray(subject.start, subject.end)]);
    this.#aki = akiExtension(caKeyId);
  }

  issue(opts: LeafOptions): IssuedCertificate {
    // Validate everything before any work that costs more than a regex.
    const [nb, na] = checkValidity(opts.notBefore, opts.notAfter);
    const eku = ekuExtension(opts.extKeyUsage);
    const subject = encodeName(opts.commonName, opts.organizations);
    const san = encodeSan(opts);
    const serial = encodeSerial(opts.serial ?? randomSerial());
    const { spki, bits, rsa } = checkPublicKey(opts.publicKey);

    const fixed = rsa ? LEAF_FIXED_EXTS.rsa : LEAF_FIXED_EXTS.nonRsa;
    const ski = skiExtension(keyIdentifier(bits));
    const extensions = san
      ? tlv(TAG.SEQUENCE, fixed, eku, san, this.#aki, ski)
      : tlv(TAG.SEQUENCE, fixed, eku, this.#aki, ski);
    const tbs = tlv(
      TAG.SEQUENCE,
      VERSION_3,
      serial.der,
      this.#algAndIssuer,
      tlv(TAG.SEQUENCE, encodeTime(nb), encodeTime(na)),
      subject,
      spki,
      tlv(ctxCons(3), extensions),
    );
    const der = signCertificate(tbs, this.#signKey);
    return { pem: toPem(der), der, serialHex: serial.hex, notAfter: new Date(na) };
  }
}
