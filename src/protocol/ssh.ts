// OpenSSH wire formats with node:crypto only: RFC 4251 encoding, public key lines,
// unencrypted openssh-key-v1 private key files (PROTOCOL.key) and certificates
// (PROTOCOL.certkeys). Shared by client and server; imports nothing from the project.
import {
  createHash,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
  randomBytes,
} from "node:crypto";

// ---------------------------------------------------------------------------
// RFC 4251 encoding

/** Builds an RFC 4251 byte string. Collects the parts and concatenates them once. */
export class SshWriter {
  private readonly parts: Buffer[] = [];
  private length = 0;

  /** string: uint32 length followed by the bytes (a JS string is encoded as UTF-8). */
  string(b: Buffer | string): this {
    const buf = typeof b === "string" ? Buffer.from(b, "utf8") : b;
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE(buf.length, 0);
    this.parts.push(head, buf);
    this.length += 4 + buf.length;
    return this;
  }

  uint32(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
      throw new RangeError(`ssh: uint32 out of range: ${n}`);
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n, 0);
    this.parts.push(b);
    this.length += 4;
    return this;
  }

  uint64(n: bigint): this {
    if (n < 0n || n > 0xffffffffffffffffn) throw new RangeError(`ssh: uint64 out of range: ${n}`);
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(n, 0);
    this.parts.push(b);
    this.length += 8;
    return this;
  }

  /** Bytes appended as they are, without a length prefix. */
  raw(b: Buffer): this {
    this.parts.push(b);
    this.length += b.length;
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

/** Reads an RFC 4251 byte string. Returned Buffers are views into the input, not copies. */
export class SshReader {
  private pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what = "ssh data",
  ) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** Current read offset in bytes. */
  get offset(): number {
    return this.pos;
  }

  private need(n: number, field: string): void {
    if (this.buf.length - this.pos < n) {
      throw new Error(`${this.what}: truncated while reading ${field} at offset ${this.pos}`);
    }
  }

  string(): Buffer {
    this.need(4, "string length");
    const len = this.buf.readUInt32BE(this.pos);
    this.need(4 + len, `string of ${len} bytes`);
    const out = this.buf.subarray(this.pos + 4, this.pos + 4 + len);
    this.pos += 4 + len;
    return out;
  }

  stringUtf8(): string {
    const b = this.string();
    const s = b.toString("utf8");
    if (!Buffer.from(s, "utf8").equals(b)) throw new Error(`${this.what}: string is not valid UTF-8`);
    return s;
  }

  uint32(): number {
    this.need(4, "uint32");
    const n = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return n;
  }

  uint64(): bigint {
    this.need(8, "uint64");
    const n = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return n;
  }

  /** Everything not read yet. */
  rest(): Buffer {
    const out = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return out;
  }
}

// ---------------------------------------------------------------------------
// Key types

const CERT_SUFFIX = "-cert-v01@openssh.com";

/** Plain key types we accept, with the number of key fields after the type string. */
const KEY_FIELDS: Record<string, number> = {
  "ssh-ed25519": 1, // string pk
  "ecdsa-sha2-nistp256": 2, // string curve, string Q
  "ecdsa-sha2-nistp384": 2,
  "ecdsa-sha2-nistp521": 2,
  "ssh-rsa": 2, // mpint e, mpint n
};

const SUPPORTED_HINT = "use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa";

/** The plain key types this module supports. */
export const SSH_KEY_TYPES: readonly string[] = Object.keys(KEY_FIELDS);

/** "ssh-ed25519" → "ssh-ed25519-cert-v01@openssh.com". */
export function certTypeFor(keyType: string): string {
  return keyType + CERT_SUFFIX;
}

function isSupportedType(type: string): boolean {
  const plain = type.endsWith(CERT_SUFFIX) ? type.slice(0, -CERT_SUFFIX.length) : type;
  return Object.hasOwn(KEY_FIELDS, plain);
}

/**
 * Reads and checks the key fields of a plain key of `type` (the part of the blob after
 * the type string, or after the nonce in a certificate). Returns the raw field bytes.
 */
function readKeyFields(r: SshReader, type: string, what: string): Buffer[] {
  const n = KEY_FIELDS[type];
  if (n === undefined) throw new Error(`${what}: unsupported key type '${type}' (${SUPPORTED_HINT})`);
  const fields: Buffer[] = [];
  for (let i = 0; i < n; i++) fields.push(r.string());
  if (type === "ssh-ed25519") {
    if (fields[0]!.length !== 32)
      throw new Error(`${what}: ssh-ed25519 key is ${fields[0]!.length} bytes, not 32`);
  } else if (type.startsWith("ecdsa-sha2-")) {
    const curve = fields[0]!.toString("latin1");
    if (curve !== type.slice("ecdsa-sha2-".length)) {
      throw new Error(`${what}: ${type} key names curve '${curve}'`);
    }
    if (fields[1]![0] !== 0x04) throw new Error(`${what}: ${type} point is not uncompressed`);
  } else if (type === "ssh-rsa") {
    if (fields[0]!.length === 0 || fields[1]!.length === 0)
      throw new Error(`${what}: ssh-rsa key has empty e or n`);
  }
  return fields;
}

// ---------------------------------------------------------------------------
// Public keys

// The raw Ed25519 key bytes come from the DER encodings (fixed 12- and 16-byte prefixes
// before the 32 key bytes), never from export({ format: "jwk" }). Node's JWK export holds
// the key's mutex while it allocates on the JS heap; a garbage collection there can run
// the destructor of the generateKeyPairSync job that made the key, which takes the same
// mutex: the main thread deadlocks (seen as an Action main step that hung with no output;
// `node --gc-global` hangs a loop of generateKeyPairSync("ed25519") + JWK export within
// seconds). The DER export takes no such lock (~0.1-0.2 ms more per call, once per join).
export const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

function afterPrefix(der: Buffer, prefix: Buffer, what: string): Buffer {
  if (der.length !== prefix.length + 32 || !der.subarray(0, prefix.length).equals(prefix)) {
    throw new Error(`ssh: unexpected Ed25519 ${what} encoding`);
  }
  return der.subarray(prefix.length);
}

/** The 32-byte Ed25519 public key of a public or private KeyObject. */
function ed25519RawPublic(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return afterPrefix(pub.export({ format: "der", type: "spki" }), ED25519_SPKI_PREFIX, "SPKI");
}

/** The SSH public key blob (string "ssh-ed25519", string pk) of an Ed25519 public or private KeyObject. */
export function ed25519PublicKeyBlob(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== "ed25519") {
    throw new Error(`ssh: expected an Ed25519 key, got ${key.asymmetricKeyType ?? key.type}`);
  }
  return new SshWriter().string("ssh-ed25519").string(ed25519RawPublic(key)).toBuffer();
}

/** The key type named at the start of a blob, without checking the rest. */
function blobType(blob: Buffer): string {
  return new SshReader(blob, "ssh key blob").stringUtf8();
}

/** "<type> <base64>[ comment]". */
export function publicKeyLine(blob: Buffer, comment?: string): string {
  const line = `${blobType(blob)} ${blob.toString("base64")}`;
  return comment ? `${line} ${comment}` : line;
}

export function ed25519PublicKeyLine(key: KeyObject, comment?: string): string {
  return publicKeyLine(ed25519PublicKeyBlob(key), comment);
}

const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Parses an OpenSSH public key line ("type base64 [comment]"), plain or certificate.
 * Checks the base64, that the type inside the blob matches the type word, and for plain
 * keys the key fields. Certificates are only checked for their type here; use
 * parseCertificateLine for the rest.
 */
export function parsePublicKeyLine(line: string): { type: string; blob: Buffer; comment?: string } {
  const what = "public key line";
  const trimmed = line.trim();
  if (trimmed === "") throw new Error(`${what}: empty`);
  if (/[\r\n]/.test(trimmed)) throw new Error(`${what}: contains a line break (pass one key per line)`);
  const m = /^(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(trimmed);
  if (!m) throw new Error(`${what}: expected '<type> <base64> [comment]'`);
  const type = m[1]!;
  const b64 = m[2]!;
  const comment = m[3]?.trim();
  if (!isSupportedType(type)) {
    throw new Error(`${what}: unsupported key type '${type}' (${SUPPORTED_HINT})`);
  }
  if (b64.length % 4 !== 0 || !BASE64_RE.test(b64)) throw new Error(`${what}: malformed base64 key data`);
  const blob = Buffer.from(b64, "base64");
  if (blob.toString("base64") !== b64) throw new Error(`${what}: malformed base64 key data`);
  const r = new SshReader(blob, what);
  let inner: string;
  try {
    inner = r.stringUtf8();
  } catch {
    throw new Error(`${what}: key data does not start with a key type`);
  }
  if (inner !== type) {
    throw new Error(
      `${what}: type word '${type}' does not match the key type '${inner}' inside the key data`,
    );
  }
  if (!type.endsWith(CERT_SUFFIX)) {
    readKeyFields(r, type, what);
    if (!r.done) throw new Error(`${what}: ${r.rest().length} trailing bytes after the ${type} key`);
  }
  return comment ? { type, blob, comment } : { type, blob };
}

/** "SHA256:<base64 without padding>", as `ssh-keygen -l` prints. */
export function sshFingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

// ---------------------------------------------------------------------------
// Private keys (PROTOCOL.key)

function wrap(s: string, width: number): string {
  const lines: string[] = [];
  for (let i = 0; i < s.length; i += width) lines.push(s.slice(i, i + width));
  return lines.join("\n");
}

/**
 * An unencrypted openssh-key-v1 private key file for an Ed25519 private KeyObject, as
 * `ssh-keygen -t ed25519 -N ''` writes it. Write it with mode 0600.
 */
export function ed25519PrivateKeyOpenSSH(privateKey: KeyObject, comment = ""): string {
  if (privateKey.type !== "private" || privateKey.asymmetricKeyType !== "ed25519") {
    throw new Error(
      `ssh: an OpenSSH private key file needs an Ed25519 private key, got ${privateKey.asymmetricKeyType ?? "?"} ${privateKey.type}`,
    );
  }
  const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });
  const seed = Buffer.from(afterPrefix(pkcs8, ED25519_PKCS8_PREFIX, "PKCS#8"));
  pkcs8.fill(0);
  const pk = ed25519RawPublic(privateKey);
  const pubBlob = new SshWriter().string("ssh-ed25519").string(pk).toBuffer();

  const check = randomBytes(4).readUInt32BE(0);
  const priv = new SshWriter()
    .uint32(check)
    .uint32(check)
    .string("ssh-ed25519")
    .string(pk)
    .string(Buffer.concat([seed, pk]))
    .string(comment);
  const unpadded = priv.toBuffer();
  const padLen = (8 - (unpadded.length % 8)) % 8;
  const pad = Buffer.alloc(padLen);
  for (let i = 0; i < padLen; i++) pad[i] = i + 1;
  const privSection = Buffer.concat([unpadded, pad]);

  const file = new SshWriter()
    .raw(Buffer.from("openssh-key-v1\0", "latin1"))
    .string("none")
    .string("none")
    .string("")
    .uint32(1)
    .string(pubBlob)
    .string(privSection)
    .toBuffer();
  seed.fill(0);
  unpadded.fill(0);
  privSection.fill(0);
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrap(file.toString("base64"), 70)}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

// ---------------------------------------------------------------------------
// Certificates (PROTOCOL.certkeys)

export const SSH_CERT_TYPE_USER = 1;
export const SSH_CERT_TYPE_HOST = 2;
/** validBefore of a certificate that never expires. */
export const SSH_CERT_FOREVER = 0xffffffffffffffffn;

export interface SshCertificateInfo {
  certType: "user" | "host";
  /** Plain key type of the certified key, e.g. "ssh-ed25519". */
  keyType: string;
  nonce: Buffer;
  /** The plain (non-certificate) public key blob of the certified key. */
  publicKeyBlob: Buffer;
  serial: bigint;
  keyId: string;
  principals: string[];
  /** Unix seconds. */
  validAfter: number;
  /** Unix seconds; a certificate valid forever (0xffffffffffffffff) gives Number.MAX_SAFE_INTEGER. */
  validBefore: number;
  criticalOptions: Record<string, string>;
  /** Extension names; values of extensions that carry data are not returned. */
  extensions: string[];
  /** Public key blob of the CA that signed the certificate. */
  signatureKey: Buffer;
  signatureKeyLine: string;
}

interface ParsedCert extends SshCertificateInfo {
  /** Bytes the signature covers: the blob up to the signature string. */
  signed: Buffer;
  /** The signature blob (string algorithm, string signature data...). */
  signature: Buffer;
}

function toSeconds(n: bigint): number {
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
}

/** Reads a name/data option list. Values are the nested string inside data; "" for flags. */
function readOptions(buf: Buffer, what: string): Map<string, string> {
  const r = new SshReader(buf, what);
  const out = new Map<string, string>();
  while (!r.done) {
    const name = r.stringUtf8();
    const data = r.string();
    let value = "";
    if (data.length > 0) {
      const d = new SshReader(data, `${what} '${name}'`);
      value = d.stringUtf8();
      if (!d.done) value = data.toString("utf8"); // not a nested string: keep the raw bytes
    }
    if (out.has(name)) throw new Error(`${what}: '${name}' appears twice`);
    out.set(name, value);
  }
  return out;
}

function parseCertBlob(blob: Buffer): ParsedCert {
  const what = "ssh certificate";
  const r = new SshReader(blob, what);
  const type = r.stringUtf8();
  if (!type.endsWith(CERT_SUFFIX)) throw new Error(`${what}: '${type}' is not a certificate type`);
  const keyType = type.slice(0, -CERT_SUFFIX.length);
  const nonce = r.string();
  const fieldsStart = r.offset;
  readKeyFields(r, keyType, what);
  const keyFields = blob.subarray(fieldsStart, r.offset);
  const serial = r.uint64();
  const ct = r.uint32();
  if (ct !== SSH_CERT_TYPE_USER && ct !== SSH_CERT_TYPE_HOST)
    throw new Error(`${what}: unknown certificate type ${ct}`);
  const keyId = r.stringUtf8();
  const pr = new SshReader(r.string(), `${what} principals`);
  const principals: string[] = [];
  while (!pr.done) principals.push(pr.stringUtf8());
  const validAfter = r.uint64();
  const validBefore = r.uint64();
  const criticalOptions = Object.fromEntries(readOptions(r.string(), `${what} critical options`));
  const extensions = [...readOptions(r.string(), `${what} extensions`).keys()];
  r.string(); // reserved
  const signatureKey = r.string();
  const signedEnd = r.offset;
  const signature = r.string();
  if (!r.done) throw new Error(`${what}: trailing bytes after the signature`);
  const sigKeyType = blobType(signatureKey);
  if (!Object.hasOwn(KEY_FIELDS, sigKeyType)) {
    throw new Error(`${what}: unsupported CA key type '${sigKeyType}' (${SUPPORTED_HINT})`);
  }
  return {
    certType: ct === SSH_CERT_TYPE_USER ? "user" : "host",
    keyType,
    nonce,
    publicKeyBlob: new SshWriter().string(keyType).raw(keyFields).toBuffer(),
    serial,
    keyId,
    principals,
    validAfter: toSeconds(validAfter),
    validBefore: toSeconds(validBefore),
    criticalOptions,
    extensions,
    signatureKey,
    signatureKeyLine: publicKeyLine(signatureKey),
    signed: blob.subarray(0, signedEnd),
    signature,
  };
}

function certBlobFromLine(line: string): Buffer {
  const { type, blob } = parsePublicKeyLine(line);
  if (!type.endsWith(CERT_SUFFIX))
    throw new Error(`ssh certificate: '${type}' is a plain key, not a certificate`);
  return blob;
}

/**
 * Parses an OpenSSH certificate line ("<type>-cert-v01@openssh.com base64 [comment]").
 * Checks the structure only: the CA signature is NOT verified (see verifyCertificateSignature),
 * and neither the validity window nor the principals are checked against anything.
 */
export function parseCertificateLine(line: string): SshCertificateInfo {
  const { signed: _signed, signature: _signature, ...info } = parseCertBlob(certBlobFromLine(line));
  return info;
}

function stripMpint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function fixedLength(b: Buffer, len: number): Buffer | null {
  const s = stripMpint(b);
  if (s.length > len) return null;
  if (s.length === len) return s;
  return Buffer.concat([Buffer.alloc(len - s.length), s]);
}

const ECDSA: Record<string, { crv: string; hash: string; size: number }> = {
  "ecdsa-sha2-nistp256": { crv: "P-256", hash: "sha256", size: 32 },
  "ecdsa-sha2-nistp384": { crv: "P-384", hash: "sha384", size: 48 },
  "ecdsa-sha2-nistp521": { crv: "P-521", hash: "sha512", size: 66 },
};

const RSA_SIG_HASH: Record<string, string> = {
  "rsa-sha2-256": "sha256",
  "rsa-sha2-512": "sha512",
  "ssh-rsa": "sha1",
};

/**
 * Verifies an SSH signature blob (string algorithm, ...) over `data` made by the key with
 * public key blob `keyBlob`. Supports Ed25519, ECDSA (P-256/384/521) and RSA keys.
 * Returns false for a bad or mismatched signature; throws on an unsupported key type.
 */
export function verifySshSignature(keyBlob: Buffer, data: Buffer, signature: Buffer): boolean {
  const kr = new SshReader(keyBlob, "ssh signature key");
  const keyType = kr.stringUtf8();
  const fields = readKeyFields(kr, keyType, "ssh signature key");
  let sr: SshReader;
  let alg: string;
  let sig: Buffer;
  try {
    sr = new SshReader(signature, "ssh signature");
    alg = sr.stringUtf8();
    sig = sr.string();
    if (!sr.done) return false;
  } catch {
    return false;
  }
  try {
    if (keyType === "ssh-ed25519") {
      if (alg !== "ssh-ed25519" || sig.length !== 64) return false;
      const key = createPublicKey({
        key: { kty: "OKP", crv: "Ed25519", x: fields[0]!.toString("base64url") },
        format: "jwk",
      });
      return cryptoVerify(null, data, key, sig);
    }
    const ec = ECDSA[keyType];
    if (ec) {
      if (alg !== keyType) return false;
      const q = fields[1]!;
      if (q.length !== 1 + 2 * ec.size) return false;
      const key = createPublicKey({
        key: {
          kty: "EC",
          crv: ec.crv,
          x: q.subarray(1, 1 + ec.size).toString("base64url"),
          y: q.subarray(1 + ec.size).toString("base64url"),
        },
        format: "jwk",
      });
      const rs = new SshReader(sig, "ecdsa signature");
      const r = fixedLength(rs.string(), ec.size);
      const s = fixedLength(rs.string(), ec.size);
      if (!r || !s || !rs.done) return false;
      return cryptoVerify(ec.hash, data, { key, dsaEncoding: "ieee-p1363" }, Buffer.concat([r, s]));
    }
    if (keyType === "ssh-rsa") {
      const hash = RSA_SIG_HASH[alg];
      if (!hash) return false;
      const key = createPublicKey({
        key: {
          kty: "RSA",
          e: stripMpint(fields[0]!).toString("base64url"),
          n: stripMpint(fields[1]!).toString("base64url"),
        },
        format: "jwk",
      });
      return cryptoVerify(hash, data, key, sig);
    }
  } catch {
    return false;
  }
  return false;
}

/**
 * Verifies the CA signature of a certificate line against the signature key embedded in
 * the certificate (Ed25519, ECDSA or RSA CAs). Says nothing about whether that CA is
 * trusted: compare parseCertificateLine(line).signatureKey with the expected CA yourself.
 */
export function verifyCertificateSignature(line: string): boolean {
  const cert = parseCertBlob(certBlobFromLine(line));
  return verifySshSignature(cert.signatureKey, cert.signed, cert.signature);
}
