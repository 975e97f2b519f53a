// A lean X.509 issuer: a few DER helpers, fixed certificate templates, and node:crypto for
// the P-256 signature. A general ASN.1 library costs ~60x the signature itself per leaf and
// this runs on every join, so everything constant (version, algorithm, issuer Name, policy
// extensions, AKI) is encoded once per issuer and issue() only encodes what varies.
//
// Profile (RFC 5280): v3, ecdsa-with-SHA256, UTF8String names, UTCTime before 2050 and
// GeneralizedTime from 2050, positive minimal serials, SKI = SHA-1 of the subjectPublicKey
// bits (method 1 of §4.2.1.2), AKI = the CA's SKI.
import * as nodeCrypto from "node:crypto";
import {
  createHash,
  createPublicKey,
  ECDH,
  KeyObject,
  randomFillSync,
  type SignKeyObjectInput,
  sign,
  X509Certificate,
} from "node:crypto";
import { isIP } from "node:net";
import { ED25519_SPKI_PREFIX } from "../../protocol/ssh.ts";

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
// DER: single-byte tags and definite lengths below 16 MiB are all certificates need.

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
const ctxCons = (n: number) => 0xa0 | n; // [n] constructed (EXPLICIT)

function headerSize(len: number): number {
  return len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : 5;
}

/** One TLV whose contents are `parts` concatenated, written straight into its own buffer. */
function tlv(tag: number, ...parts: Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(headerSize(len) + len);
  out[0] = tag;
  let off = 2;
  if (len < 0x80) out[1] = len;
  else {
    const n = headerSize(len) - 2;
    out[1] = 0x80 | n;
    for (let i = n, v = len; i >= 1; i--, v >>>= 8) out[1 + i] = v & 0xff;
    off += n;
  }
  for (const p of parts) off += p.copy(out, off);
  return out;
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split(".").map(Number);
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const base128 = [arc & 0x7f]; // big-endian base 128, high bit set on all but the last
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v & 0x7f));
    bytes.push(...base128);
  }
  return tlv(TAG.OID, Buffer.from(bytes));
}

const ZERO_BYTE = Buffer.from([0]);
const TRUE = Buffer.from([TAG.BOOLEAN, 1, 0xff]);

/** BIT STRING of whole bytes (keys, signatures): a leading "0 unused bits" octet. */
function bitString(bytes: Buffer): Buffer {
  return tlv(TAG.BIT_STRING, ZERO_BYTE, bytes);
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
function extension(id: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical
    ? tlv(TAG.SEQUENCE, id, TRUE, tlv(TAG.OCTET_STRING, value))
    : tlv(TAG.SEQUENCE, id, tlv(TAG.OCTET_STRING, value));
}

interface Tlv {
  tag: number;
  /** offset of the tag byte */
  start: number;
  /** offset of the first content byte */
  body: number;
  /** offset just past the contents */
  end: number;
}

/** Reads one header at `off` within [off, limit): definite, minimally encoded length only. */
function readTlv(buf: Buffer, off: number, limit: number, tag?: number): Tlv {
  if (off + 2 > limit) throw new Error("DER: truncated");
  const t = buf[off]!;
  if (tag !== undefined && t !== tag) throw new Error(`DER: expected tag 0x${tag.toString(16)} at ${off}`);
  let len = buf[off + 1]!;
  let body = off + 2;
  if (len >= 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || body + n > limit || buf[body] === 0) throw new Error("DER: bad length");
    len = 0;
    for (const end = body + n; body < end; body++) len = len * 256 + buf[body]!;
    if (len < 0x80) throw new Error("DER: non-minimal length");
  }
  if (body + len > limit) throw new Error("DER: truncated");
  return { tag: t, start: off, body, end: body + len };
}

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
// Templates: every constant part of a certificate, encoded once.

const VERSION_3 = Buffer.from([ctxCons(0), 3, TAG.INTEGER, 1, 2]);
const SIG_ALG = tlv(TAG.SEQUENCE, OID.ecdsaWithSHA256); // parameters absent (RFC 5758)

// KeyUsage bits count from the MSB and DER drops trailing zero bits, hence "unused bits".
const KU_DIGITAL_SIGNATURE = Buffer.from([TAG.BIT_STRING, 2, 7, 0x80]);
const KU_DIGITAL_SIGNATURE_KEY_ENCIPHERMENT = Buffer.from([TAG.BIT_STRING, 2, 5, 0xa0]);
const KU_CA = Buffer.from([TAG.BIT_STRING, 2, 1, 0x86]); // digitalSignature, keyCertSign, cRLSign

// basicConstraints CA:FALSE is the empty SEQUENCE (cA DEFAULT FALSE is omitted in DER).
const NOT_A_CA = extension(OID.basicConstraints, true, tlv(TAG.SEQUENCE));
const LEAF_FIXED_EXTS = Buffer.concat([NOT_A_CA, extension(OID.keyUsage, true, KU_DIGITAL_SIGNATURE)]);
// keyEncipherment only serves TLS 1.2 RSA key transport, so only RSA keys get it.
const LEAF_FIXED_EXTS_RSA = Buffer.concat([
  NOT_A_CA,
  extension(OID.keyUsage, true, KU_DIGITAL_SIGNATURE_KEY_ENCIPHERMENT),
]);

export type ExtKeyUsage = "clientAuth" | "serverAuth";
/** Indexed by (serverAuth ? 1 : 0) | (clientAuth ? 2 : 0). */
const EKU_EXTS: readonly (Buffer | undefined)[] = [
  undefined,
  extension(OID.extKeyUsage, false, tlv(TAG.SEQUENCE, OID.serverAuth)),
  extension(OID.extKeyUsage, false, tlv(TAG.SEQUENCE, OID.clientAuth)),
  extension(OID.extKeyUsage, false, tlv(TAG.SEQUENCE, OID.serverAuth, OID.clientAuth)),
];

function skiExtension(keyId: Buffer): Buffer {
  return extension(OID.subjectKeyIdentifier, false, tlv(TAG.OCTET_STRING, keyId));
}

/** AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING } */
function akiExtension(keyId: Buffer): Buffer {
  return extension(OID.authorityKeyIdentifier, false, tlv(TAG.SEQUENCE, tlv(ctx(0), keyId)));
}

// ---------------------------------------------------------------------------------------
// Names, times, serials, SANs

/** Unpaired surrogates (UTF-8 would silently turn them into U+FFFD), C0/C1 controls,
 * invisible format characters (bidi overrides, zero-width) and line/paragraph separators:
 * none belong in names that end up in RBAC rules, logs and audit trails. */
const BAD_NAME_CHARS = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

/** X.520 ub-common-name and ub-organization-name are both 64 characters. */
function checkName(field: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0)
    throw new CertificateInputError(field, "must be a non-empty string");
  if (value.length > 64) {
    let chars = 0;
    for (const _ of value) chars++;
    if (chars > 64) throw new CertificateInputError(field, `must be at most 64 characters (got ${chars})`);
  }
  if (BAD_NAME_CHARS.test(value))
    throw new CertificateInputError(field, "contains control or invisible characters");
  if (value.trim() !== value) throw new CertificateInputError(field, "has leading or trailing whitespace");
  return value;
}

/** RelativeDistinguishedName holding one UTF8String attribute. */
function rdn(type: Buffer, value: string): Buffer {
  return tlv(TAG.SET, tlv(TAG.SEQUENCE, type, tlv(TAG.UTF8_STRING, Buffer.from(value, "utf8"))));
}

/** Name: the O RDNs, then CN (the order Go and OpenSSL use; RFC 2253 prints it reversed). */
function encodeName(
  commonName: unknown,
  organizations: readonly unknown[] | undefined,
  orgField: string,
): Buffer {
  const cn = rdn(OID.commonName, checkName("commonName", commonName));
  if (!organizations || organizations.length === 0) return tlv(TAG.SEQUENCE, cn);
  const rdns: Buffer[] = [];
  for (let i = 0; i < organizations.length; i++) {
    rdns.push(rdn(OID.organizationName, checkName(`${orgField}[${i}]`, organizations[i])));
  }
  rdns.push(cn);
  return tlv(TAG.SEQUENCE, ...rdns);
}

function checkDate(field: string, d: unknown): number {
  if (!(d instanceof Date) || !Number.isFinite(d.getTime()))
    throw new CertificateInputError(field, "must be a valid Date");
  const y = d.getUTCFullYear();
  if (y < 1 || y > 9999) throw new CertificateInputError(field, "year must be between 1 and 9999");
  // Certificates carry whole seconds; truncate so callers are told what was encoded.
  return Math.floor(d.getTime() / 1000) * 1000;
}

/** RFC 5280 §4.1.2.5: UTCTime YYMMDDHHMMSSZ for 1950-2049, GeneralizedTime otherwise. */
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

/** Validity ::= SEQUENCE { notBefore, notAfter }; returns notAfter as encoded. */
function encodeValidity(notBefore: unknown, notAfter: unknown): { der: Buffer; notAfter: number } {
  const nb = checkDate("notBefore", notBefore);
  const na = checkDate("notAfter", notAfter);
  if (na <= nb)
    throw new CertificateInputError("notAfter", "must be later than notBefore (at 1 s precision)");
  return { der: tlv(TAG.SEQUENCE, encodeTime(nb), encodeTime(na)), notAfter: na };
}

// randomBytes(16) costs a few µs (one RNG request per call) and filling 4 KiB costs about
// the same, so default serials are cut from a pool, as crypto.randomUUID() does.
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

/** `magnitude` (unsigned big-endian) as a positive, minimal INTEGER of at most 20 octets. */
function encodeSerial(magnitude: unknown): { der: Buffer; hex: string } {
  if (!Buffer.isBuffer(magnitude)) throw new CertificateInputError("serial", "must be a Buffer");
  let i = 0;
  while (i < magnitude.length && magnitude[i] === 0) i++;
  if (i === magnitude.length) throw new CertificateInputError("serial", "must be a positive number");
  const m = magnitude.subarray(i);
  // A set top bit would read as negative, so it costs a leading 0x00 octet.
  if (m.length + (m[0]! >= 0x80 ? 1 : 0) > 20)
    throw new CertificateInputError("serial", "must fit in 20 DER octets (RFC 5280)");
  // Uppercase without leading zero bytes, as X509Certificate#serialNumber prints it.
  return { der: positiveInteger(m), hex: m.toString("hex").toUpperCase() };
}

/** An unsigned big-endian magnitude without leading zeros as a DER INTEGER. */
function positiveInteger(m: Buffer): Buffer {
  return m[0]! >= 0x80 ? tlv(TAG.INTEGER, ZERO_BYTE, m) : tlv(TAG.INTEGER, m);
}

const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/** LDH hostnames only: no wildcards, underscores, trailing dot or Unicode U-labels. */
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
/** IA5String is ASCII, and a URI has no business holding spaces or controls. */
const URI_CHARS = /^[\x21-\x7e]{1,2048}$/;

function encodeIp(field: string, text: unknown): Buffer {
  const version = typeof text === "string" && !text.includes("%") ? isIP(text) : 0; // no zone IDs
  if (version === 4) return Buffer.from((text as string).split(".").map(Number));
  if (version !== 6)
    throw new CertificateInputError(field, `not an IPv4 or IPv6 address: ${JSON.stringify(text)}`);
  // isIP has checked the syntax; only "::" expansion and a dotted IPv4 tail remain.
  const [head = "", tail] = (text as string).split("::");
  const headWords = ipv6Words(head);
  const tailWords = tail === undefined ? [] : ipv6Words(tail);
  const out = Buffer.alloc(16); // zeroed: the "::" gap
  for (const [i, w] of headWords.entries()) out.writeUInt16BE(w, 2 * i);
  for (const [i, w] of tailWords.entries()) out.writeUInt16BE(w, 16 - 2 * (tailWords.length - i));
  return out;
}

function ipv6Words(groups: string): number[] {
  const words: number[] = [];
  if (groups === "") return words;
  for (const g of groups.split(":")) {
    if (g.includes(".")) {
      const [a = 0, b = 0, c = 0, d = 0] = g.split(".").map(Number);
      words.push((a << 8) | b, (c << 8) | d);
    } else words.push(Number.parseInt(g, 16));
  }
  return words;
}

function encodeSan(opts: LeafOptions): Buffer | undefined {
  const { dnsNames, uris, ipAddresses } = opts;
  const names: Buffer[] = [];
  if (dnsNames) {
    for (let i = 0; i < dnsNames.length; i++) {
      const name = dnsNames[i];
      if (typeof name !== "string" || name.length > 253 || !HOSTNAME.test(name) || isIP(name) !== 0) {
        throw new CertificateInputError(
          `dnsNames[${i}]`,
          `not a valid DNS hostname: ${JSON.stringify(name)}`,
        );
      }
      names.push(tlv(ctx(2), Buffer.from(name, "latin1")));
    }
  }
  if (uris) {
    for (let i = 0; i < uris.length; i++) {
      const uri = uris[i];
      if (typeof uri !== "string" || !URI_CHARS.test(uri) || !URL.canParse(uri)) {
        throw new CertificateInputError(
          `uris[${i}]`,
          `not a valid absolute ASCII URI: ${JSON.stringify(uri)}`,
        );
      }
      names.push(tlv(ctx(6), Buffer.from(uri, "latin1")));
    }
  }
  if (ipAddresses) {
    for (let i = 0; i < ipAddresses.length; i++) {
      names.push(tlv(ctx(7), encodeIp(`ipAddresses[${i}]`, ipAddresses[i])));
    }
  }
  if (names.length === 0) return undefined;
  // Non-critical because the subject is never empty (RFC 5280 §4.2.1.6).
  return extension(OID.subjectAltName, false, tlv(TAG.SEQUENCE, ...names));
}

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

// ---------------------------------------------------------------------------------------
// Subject public keys
//
// OpenSSL 3's generic decoders and encoders (createPublicKey on DER/PEM, KeyObject#export
// to SPKI) cost 150-250 µs a call, several times the signature, so the hot path avoids
// them: SPKI DER must match the exact encoding of one of the accepted key types (which also
// proves it canonical, so it is copied as given), EC points must lie on their curve, and
// KeyObjects become SPKI through their JWK export (a few µs). Only the error message for an
// unsupported key asks OpenSSL what it is.

/** The key types a leaf may certify. */
export type SubjectKeyType = "P-256" | "P-384" | "ed25519" | "rsa";

interface SubjectKey {
  spki: Buffer;
  /** subjectPublicKey BIT STRING contents (what the SKI hashes) */
  bits: Buffer;
  rsa: boolean;
  type: SubjectKeyType;
}

interface Curve {
  name: "P-256" | "P-384";
  /** SPKI bytes up to and including the 0x04 "uncompressed point" octet */
  prefix: Buffer;
  size: number;
  p: bigint;
  b: bigint;
}
// y^2 = x^3 - 3x + b over GF(p) (FIPS 186-4 D.1.2). Both curves have cofactor 1, so a point
// on the curve (the uncompressed encoding cannot express infinity) is a valid public key.
/** SPKI DER of a P-256 key up to its uncompressed point's x and y (32 bytes each). */
export const P256_SPKI_PREFIX = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex");
const P256: Curve = {
  name: "P-256",
  prefix: P256_SPKI_PREFIX,
  size: 32,
  p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
  b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
};
const P384: Curve = {
  name: "P-384",
  prefix: Buffer.from("3076301006072a8648ce3d020106052b8104002203620004", "hex"),
  size: 48,
  p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
  b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
};
const CURVES = [P256, P384];
const RSA_ALG = Buffer.from("300d06092a864886f70d0101010500", "hex"); // rsaEncryption, NULL

const startsWith = (buf: Buffer, prefix: Buffer) =>
  buf.length >= prefix.length && buf.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
const toBigInt = (b: Buffer) => BigInt(`0x${b.toString("hex")}`);

function onCurve(c: Curve, point: Buffer): boolean {
  const x = toBigInt(point.subarray(0, c.size));
  const y = toBigInt(point.subarray(c.size));
  if (x >= c.p || y >= c.p) return false;
  return (y * y) % c.p === ((((x * x) % c.p) + c.p - 3n) * x + c.b) % c.p;
}

/** The magnitude of a positive, minimally encoded INTEGER. */
function readPositiveInteger(buf: Buffer, t: Tlv): Buffer {
  const v = buf.subarray(t.body, t.end);
  if (v.length === 0 || v[0]! >= 0x80 || (v[0] === 0 && (v.length === 1 || v[1]! < 0x80))) {
    throw new Error("DER: not a positive minimal INTEGER");
  }
  return v[0] === 0 ? v.subarray(1) : v;
}

/** RSAPublicKey inside rsaEncryption SPKI. 8192 bits bounds verifiers' work; Go's crypto/rsa
 * rejects exponents above 2^31-1. */
function checkRsa(spki: Buffer): SubjectKey {
  let bits: Buffer;
  let n: Buffer;
  let e: Buffer;
  try {
    const outer = readTlv(spki, 0, spki.length, TAG.SEQUENCE);
    const bitStr = readTlv(spki, outer.body + RSA_ALG.length, outer.end, TAG.BIT_STRING);
    const seq = readTlv(spki, bitStr.body + 1, bitStr.end, TAG.SEQUENCE);
    const nTlv = readTlv(spki, seq.body, seq.end, TAG.INTEGER);
    const eTlv = readTlv(spki, nTlv.end, seq.end, TAG.INTEGER);
    if (outer.end !== spki.length || bitStr.end !== outer.end || spki[bitStr.body] !== 0)
      throw new Error("DER: layout");
    if (seq.end !== bitStr.end || eTlv.end !== seq.end) throw new Error("DER: layout");
    bits = spki.subarray(bitStr.body + 1, bitStr.end);
    n = readPositiveInteger(spki, nTlv);
    e = readPositiveInteger(spki, eTlv);
  } catch {
    throw new CertificateInputError("publicKey", "malformed RSA SubjectPublicKeyInfo");
  }
  const modulusBits = n.length * 8 - (Math.clz32(n[0]!) - 24);
  if (modulusBits < 2048 || modulusBits > 8192) {
    throw new CertificateInputError("publicKey", `RSA key must be 2048-8192 bits (got ${modulusBits})`);
  }
  const exp = e.length <= 4 ? e.readUIntBE(0, e.length) : Number.POSITIVE_INFINITY;
  if ((n[n.length - 1]! & 1) === 0 || exp < 3 || exp > 0x7fffffff || exp % 2 === 0) {
    throw new CertificateInputError(
      "publicKey",
      "RSA modulus must be odd and the exponent odd, >= 3 and < 2^31",
    );
  }
  return { spki, bits, rsa: true, type: "rsa" };
}

/** `fromKeyObject`: OpenSSL already checked the point when the KeyObject was made. */
function checkSpki(spki: Buffer, fromKeyObject = false): SubjectKey {
  for (const c of CURVES) {
    if (spki.length === c.prefix.length + 2 * c.size && startsWith(spki, c.prefix)) {
      if (!fromKeyObject && !onCurve(c, spki.subarray(c.prefix.length))) {
        throw new CertificateInputError("publicKey", `${c.name} point is not on the curve`);
      }
      return { spki, bits: spki.subarray(c.prefix.length - 1), rsa: false, type: c.name };
    }
  }
  if (spki.length === ED25519_SPKI_PREFIX.length + 32 && startsWith(spki, ED25519_SPKI_PREFIX)) {
    return { spki, bits: spki.subarray(ED25519_SPKI_PREFIX.length), rsa: false, type: "ed25519" };
  }
  let algorithmAt = -1;
  try {
    algorithmAt = readTlv(spki, 0, spki.length, TAG.SEQUENCE).body;
  } catch {}
  if (algorithmAt > 0 && startsWith(spki.subarray(algorithmAt), RSA_ALG)) return checkRsa(spki);
  // Not a shape we accept: let OpenSSL say what it is (slow, but only on this error path).
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: "der", type: "spki" });
  } catch {
    throw new CertificateInputError("publicKey", "not a valid DER SubjectPublicKeyInfo");
  }
  throw unsupportedKey(key, true);
}

function unsupportedKey(key: KeyObject, fromDer = false): CertificateInputError {
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  let why = `${type} keys are not supported (use EC P-256/P-384, Ed25519 or RSA >= 2048 bits)`;
  if (type === "ec" && curve !== "prime256v1" && curve !== "secp384r1") {
    why = `EC curve ${curve ?? "with explicit parameters"} is not supported (use P-256 or P-384)`;
  } else if (type === "rsa-pss") {
    why = "RSA-PSS keys are not supported (use an rsaEncryption RSA key)";
  } else if (fromDer && (type === "ec" || type === "ed25519" || type === "rsa")) {
    // OpenSSL parsed it but it is not the one canonical encoding checkSpki accepts.
    why = `${type} key is not in canonical SPKI DER (compressed EC point, RSA parameters other than NULL, or trailing bytes?)`;
  }
  return new CertificateInputError("publicKey", why);
}

/** SPKI DER of a public KeyObject. Not by way of JWK, though that is faster: Node's JWK
 *  export can deadlock on a freshly generated key (see ed25519RawPublic in protocol/ssh.ts).
 *  Only KeyObject inputs come here (CA set-up, the OpenSSL fallback), not the usual PEM. */
function spkiFromKeyObject(key: KeyObject): Buffer {
  const t = key.asymmetricKeyType;
  if (t !== "ec" && t !== "ed25519" && t !== "rsa") throw unsupportedKey(key);
  const der = key.export({ type: "spki", format: "der" });
  if (t !== "ec") return der;
  // OpenSSL keeps a compressed point compressed; certificates carry the uncompressed form.
  const curveName = key.asymmetricKeyDetails?.namedCurve;
  const c = curveName === "prime256v1" ? P256 : curveName === "secp384r1" ? P384 : undefined;
  if (!c) throw unsupportedKey(key);
  if (der.length === c.prefix.length + 2 * c.size && startsWith(der, c.prefix)) return der;
  const point = der.subarray(der.length - (1 + c.size));
  if (point[0] !== 2 && point[0] !== 3) throw unsupportedKey(key);
  const full = ECDH.convertKey(point, curveName!, undefined, undefined, "uncompressed") as Buffer;
  return Buffer.concat([c.prefix, full.subarray(1)]);
}

const PUBLIC_KEY_PEM = /^\s*-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]{1,4096})-----END PUBLIC KEY-----\s*$/;

/**
 * The DER of a PEM holding exactly one SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), by regex
 * and base64 alone: OpenSSL's PEM decoder costs ~300 µs a call. Only the framing is checked
 * here; whatever the DER holds is checked by SubjectPublicKey.from / issue().
 */
export function spkiFromPem(pem: unknown): Buffer {
  const m = typeof pem === "string" ? PUBLIC_KEY_PEM.exec(pem) : null;
  if (!m)
    throw new CertificateInputError("publicKey", "PEM must hold one SubjectPublicKeyInfo (BEGIN PUBLIC KEY)");
  const body = m[1]!.replace(/\s+/g, "");
  // Canonical base64 only: padding at the very end, and only as much as the length needs.
  if (body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body))
    throw new CertificateInputError("publicKey", "PEM body is not valid base64");
  return Buffer.from(body, "base64");
}

function checkPublicKey(input: unknown): SubjectKey {
  if (input instanceof SubjectPublicKey) {
    const checked = checkedKeys.get(input);
    if (checked) return checked;
  }
  if (Buffer.isBuffer(input)) {
    if (input.length > 4096) throw new CertificateInputError("publicKey", "SPKI larger than 4 KiB");
    return checkSpki(input);
  }
  if (typeof input === "string") return checkSpki(spkiFromPem(input));
  if (input instanceof KeyObject) {
    if (input.type !== "public") {
      throw new CertificateInputError("publicKey", `expected a public key, got a ${input.type} key`);
    }
    return checkSpki(spkiFromKeyObject(input), true);
  }
  throw new CertificateInputError(
    "publicKey",
    "must be a KeyObject, SPKI DER Buffer, SPKI PEM string or SubjectPublicKey",
  );
}

/** Keys validated by SubjectPublicKey.from: only instances made there are trusted. */
const checkedKeys = new WeakMap<SubjectPublicKey, SubjectKey>();

/**
 * A subject public key checked once (canonical SPKI of an accepted type, EC point on its
 * curve, RSA size and exponent), so that any number of certificates can be issued for it
 * without checking it again. It holds its own copy of the DER.
 */
export class SubjectPublicKey {
  readonly type: SubjectKeyType;

  private constructor(key: SubjectKey) {
    this.type = key.type;
    checkedKeys.set(this, key);
    Object.freeze(this);
  }

  /** Throws CertificateInputError (field "publicKey") for anything issue() would refuse. */
  static from(input: KeyObject | Buffer | string): SubjectPublicKey {
    if (input instanceof SubjectPublicKey) return input;
    const k = checkPublicKey(input);
    const spki = Buffer.allocUnsafeSlow(k.spki.length);
    k.spki.copy(spki);
    const bitsAt = k.spki.length - k.bits.length;
    return new SubjectPublicKey({ ...k, spki, bits: spki.subarray(bitsAt) });
  }

  /** The SubjectPublicKeyInfo DER (a copy). */
  spki(): Buffer {
    return Buffer.from(checkedKeys.get(this)!.spki);
  }
}

/** The subjectPublicKey bits of any SPKI (only used off the hot path). */
function spkiKeyBits(spki: Buffer): Buffer {
  const outer = readTlv(spki, 0, spki.length, TAG.SEQUENCE);
  const alg = readTlv(spki, outer.body, outer.end, TAG.SEQUENCE);
  const bits = readTlv(spki, alg.end, outer.end, TAG.BIT_STRING);
  return spki.subarray(bits.body + 1, bits.end);
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. One-shot crypto.hash()
 * (Node >= 20.12) is about 3x cheaper than a Hash object; older Node 20 falls back. */
const keyIdentifier: (keyBits: Buffer) => Buffer =
  typeof nodeCrypto.hash === "function"
    ? (keyBits) => nodeCrypto.hash("sha1", keyBits, "buffer")
    : (keyBits) => createHash("sha1").update(keyBits).digest();

// ---------------------------------------------------------------------------------------
// Signing

function checkCaKey(key: unknown, field: string): KeyObject {
  if (
    !(key instanceof KeyObject) ||
    key.type !== "private" ||
    key.asymmetricKeyType !== "ec" ||
    key.asymmetricKeyDetails?.namedCurve !== "prime256v1"
  ) {
    throw new CertificateInputError(
      field,
      "must be a P-256 private KeyObject (certificates are signed ecdsa-with-SHA256)",
    );
  }
  return key;
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING } */
function signCertificate(tbs: Buffer, signKey: SignKeyObjectInput): Buffer {
  return assembleCertificate(tbs, sign("sha256", tbs, signKey));
}

function assembleCertificate(tbs: Buffer, signature: Buffer): Buffer {
  const cert = tlv(TAG.SEQUENCE, tbs, SIG_ALG, bitString(signature));
  // tlv() allocates from Node's shared 8 KiB pool; a caller keeping certificates around
  // should not pin a slab of scratch buffers with each, so the result gets its own memory.
  const own = Buffer.allocUnsafeSlow(cert.length);
  cert.copy(own);
  return own;
}

function toPem(der: Buffer): string {
  const b64 = der.toString("base64");
  let pem = "-----BEGIN CERTIFICATE-----\n";
  for (let i = 0; i < b64.length; i += 64) pem += `${b64.slice(i, i + 64)}\n`;
  return `${pem}-----END CERTIFICATE-----\n`;
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
 * A self-signed CA certificate, PEM. basicConstraints is CA:TRUE with pathLenConstraint 0:
 * this CA only signs leaves, so verifiers refuse any intermediate it (or a thief of its key)
 * might sign. keyUsage adds digitalSignature to keyCertSign and cRLSign so the same key may
 * sign OCSP responses. AKI repeats the SKI, which RFC 5280 allows for self-signed CAs.
 */
export function createSelfSignedCA(opts: CaCertOptions): string {
  const key = checkCaKey(opts.key, "key");
  const validity = encodeValidity(opts.notBefore, opts.notAfter);
  const org = opts.organization === undefined ? undefined : [opts.organization];
  const name = encodeName(opts.commonName, org, "organization");
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  const keyId = keyIdentifier(spkiKeyBits(spki));
  const caTrue = tlv(TAG.SEQUENCE, TRUE, tlv(TAG.INTEGER, ZERO_BYTE)); // cA TRUE, pathLen 0
  const extensions = tlv(
    TAG.SEQUENCE,
    extension(OID.basicConstraints, true, caTrue),
    extension(OID.keyUsage, true, KU_CA),
    skiExtension(keyId),
    akiExtension(keyId),
  );
  const serial = encodeSerial(randomSerial()).der;
  const tbs = tlv(
    TAG.SEQUENCE,
    VERSION_3,
    serial,
    SIG_ALG,
    name,
    validity.der,
    name,
    spki,
    tlv(ctxCons(3), extensions),
  );
  return toPem(signCertificate(tbs, { key, dsaEncoding: "der" }));
}

export interface LeafOptions {
  /** EC P-256/P-384, Ed25519 or RSA 2048-8192 bits: public KeyObject, SPKI DER or SPKI PEM,
   *  or a SubjectPublicKey checked once for several certificates. */
  publicKey: KeyObject | Buffer | string | SubjectPublicKey;
  commonName: string;
  /** Each becomes its own O RDN (Kubernetes reads every O as a group). */
  organizations?: readonly string[];
  /** URI SANs, e.g. SPIFFE IDs. */
  uris?: readonly string[];
  /** LDH hostnames; wildcards are refused. */
  dnsNames?: readonly string[];
  /** IPv4 or IPv6 text, encoded as 4 or 16 bytes. */
  ipAddresses?: readonly string[];
  notBefore: Date;
  notAfter: Date;
  extKeyUsage: readonly ExtKeyUsage[];
  /** Unsigned big-endian, at most 20 octets encoded; default 16 random bytes. */
  serial?: Buffer;
}

export interface IssuedCertificate {
  pem: string;
  der: Buffer;
  /** Uppercase hex without leading zero bytes, as X509Certificate#serialNumber prints it. */
  serialHex: string;
  /** As encoded: truncated to whole seconds. */
  notAfter: Date;
}

export class X509Issuer {
  readonly caCertPem: string;
  readonly #signKey: SignKeyObjectInput;
  /** signature AlgorithmIdentifier followed by the issuer Name, as they sit in every TBS */
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
    if (!cert.ca)
      throw new CertificateInputError("caCertPem", "is not a CA certificate (basicConstraints CA:TRUE)");
    const caSpki = cert.publicKey.export({ type: "spki", format: "der" });
    if (!createPublicKey(key).export({ type: "spki", format: "der" }).equals(caSpki)) {
      throw new CertificateInputError("caKey", "does not match the CA certificate's public key");
    }
    let subject: Buffer;
    let caKeyId: Buffer | undefined;
    try {
      ({ subject, keyId: caKeyId } = parseCaCertificate(cert.raw));
    } catch (err) {
      throw new CertificateInputError("caCertPem", `unexpected encoding: ${(err as Error).message}`);
    }
    this.caCertPem = caCertPem;
    this.#signKey = { key, dsaEncoding: "der" };
    // Issuer copied byte for byte from the CA's subject, so name chaining is exact.
    this.#algAndIssuer = Buffer.concat([SIG_ALG, subject]);
    // A CA without an SKI gets the same method-1 identifier it would have carried.
    this.#aki = akiExtension(caKeyId ?? keyIdentifier(spkiKeyBits(caSpki)));
  }

  /** Async, as every CA's signing is, so a CA key held by a KMS or HSM can slot in. */
  async issue(opts: LeafOptions): Promise<IssuedCertificate> {
    // All input is validated before the signature, the only expensive step.
    const validity = encodeValidity(opts.notBefore, opts.notAfter);
    const eku = ekuExtension(opts.extKeyUsage);
    const subject = encodeName(opts.commonName, opts.organizations, "organizations");
    const san = encodeSan(opts);
    const serial = encodeSerial(opts.serial ?? randomSerial());
    const key = checkPublicKey(opts.publicKey);

    const ski = skiExtension(keyIdentifier(key.bits));
    const fixed = key.rsa ? LEAF_FIXED_EXTS_RSA : LEAF_FIXED_EXTS;
    const extensions = san
      ? tlv(TAG.SEQUENCE, fixed, eku, san, this.#aki, ski)
      : tlv(TAG.SEQUENCE, fixed, eku, this.#aki, ski);
    const tbs = tlv(
      TAG.SEQUENCE,
      VERSION_3,
      serial.der,
      this.#algAndIssuer,
      validity.der,
      subject,
      key.spki,
      tlv(ctxCons(3), extensions),
    );
    const der = assembleCertificate(tbs, nodeCrypto.sign("sha256", tbs, this.#signKey));
    return { pem: toPem(der), der, serialHex: serial.hex, notAfter: new Date(validity.notAfter) };
  }
}

/** The subject Name bytes and SKI (if any) of a DER certificate. */
function parseCaCertificate(der: Buffer): { subject: Buffer; keyId: Buffer | undefined } {
  const certSeq = readTlv(der, 0, der.length, TAG.SEQUENCE);
  const tbs = readTlv(der, certSeq.body, certSeq.end, TAG.SEQUENCE);
  const fields: Tlv[] = [];
  for (let off = tbs.body; off < tbs.end; ) {
    const field = readTlv(der, off, tbs.end);
    fields.push(field);
    off = field.end;
  }
  // [0] version, serialNumber, signature, issuer, validity, subject, spki, ..., [3] extensions
  const subject = fields[fields[0]?.tag === ctxCons(0) ? 5 : 4];
  if (subject?.tag !== TAG.SEQUENCE) throw new Error("no subject Name");
  let keyId: Buffer | undefined;
  const exts = fields.find((f) => f.tag === ctxCons(3));
  if (exts) {
    const list = readTlv(der, exts.body, exts.end, TAG.SEQUENCE);
    for (let off = list.body; off < list.end; ) {
      const ext = readTlv(der, off, list.end, TAG.SEQUENCE);
      off = ext.end;
      const id = readTlv(der, ext.body, ext.end, TAG.OID);
      if (!der.subarray(id.start, id.end).equals(OID.subjectKeyIdentifier)) continue;
      let value = readTlv(der, id.end, ext.end);
      if (value.tag === TAG.BOOLEAN) value = readTlv(der, value.end, ext.end);
      if (value.tag !== TAG.OCTET_STRING) throw new Error("malformed extension");
      const octets = readTlv(der, value.body, value.end, TAG.OCTET_STRING);
      keyId = Buffer.from(der.subarray(octets.body, octets.end));
    }
  }
  return { subject: Buffer.from(der.subarray(subject.start, subject.end)), keyId };
}
