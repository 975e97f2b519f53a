// SSH certificate authority: signs OpenSSH user and host certificates (PROTOCOL.certkeys)
// with an Ed25519 CA key, using node:crypto only.
import { generateKeyPairSync, type KeyObject, randomBytes, sign } from "node:crypto";
import {
  certTypeFor,
  ed25519PublicKeyBlob,
  parsePublicKeyLine,
  publicKeyLine,
  SSH_CERT_FOREVER,
  SSH_CERT_TYPE_HOST,
  SSH_CERT_TYPE_USER,
  SshWriter,
} from "../../protocol/ssh.ts";

export interface SshCertSpec {
  /** OpenSSH public key line of the subject (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa). */
  publicKey: string;
  certType: "user" | "host";
  keyId: string;
  /** Must be non-empty; each a non-empty string with no whitespace, comma or control chars. */
  principals: string[];
  /** Unix seconds. */
  validAfter: number;
  /** Unix seconds; Infinity (or anything >= Number.MAX_SAFE_INTEGER) means "forever". */
  validBefore: number;
  /** Default: random 63-bit. */
  serial?: bigint;
  /** User certificates only (e.g. source-address, force-command). "" encodes a flag option. */
  criticalOptions?: Record<string, string>;
  /** Flag extensions. Default for user certs: the usual permit-* set; for host certs: none. */
  extensions?: string[];
}

export const DEFAULT_USER_EXTENSIONS: readonly string[] = [
  "permit-X11-forwarding",
  "permit-agent-forwarding",
  "permit-port-forwarding",
  "permit-pty",
  "permit-user-rc",
];

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we reject
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we reject
const BAD_PRINCIPAL_RE = /[\s,\u0000-\u001f\u007f-\u009f]/u;
const CERT_SUFFIX = "-cert-v01@openssh.com";

function byName(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

function secondsField(n: number, name: string): bigint {
  if (n === Number.POSITIVE_INFINITY || n >= Number.MAX_SAFE_INTEGER) return SSH_CERT_FOREVER;
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`ssh certificate: ${name} must be whole unix seconds >= 0, got ${n}`);
  return BigInt(n);
}

/** string(name) string(data) pairs sorted by name; data is a nested string, or empty for flags. */
function encodeOptions(entries: [string, string][], what: string): Buffer {
  entries.sort((a, b) => byName(a[0], b[0]));
  const w = new SshWriter();
  let prev: string | undefined;
  for (const [name, value] of entries) {
    if (name === "" || CONTROL_RE.test(name) || /\s/.test(name)) {
      throw new Error(`ssh certificate: invalid ${what} name ${JSON.stringify(name)}`);
    }
    if (name === prev) throw new Error(`ssh certificate: ${what} '${name}' given twice`);
    if (CONTROL_RE.test(value)) {
      throw new Error(`ssh certificate: ${what} '${name}' value contains control characters`);
    }
    prev = name;
    w.string(name);
    if (value === "") w.string("");
    else w.string(new SshWriter().string(value).toBuffer());
  }
  return w.toBuffer();
}

const DEFAULT_USER_EXTENSIONS_BLOB = encodeOptions(
  DEFAULT_USER_EXTENSIONS.map((e) => [e, ""]),
  "extension",
);
const EMPTY = Buffer.alloc(0);

// One OpenSSL RAND_bytes call per 4 KiB instead of two per certificate (nonce and serial):
// each call costs a few µs, which is measurable next to a ~50 µs Ed25519 signature.
// Slices are views into a pool that is replaced, never refilled, so they stay valid.
let randomPool = EMPTY;
let randomPos = 0;
function random(n: number): Buffer {
  if (randomPos + n > randomPool.length) {
    randomPool = randomBytes(4096);
    randomPos = 0;
  }
  const out = randomPool.subarray(randomPos, randomPos + n);
  randomPos += n;
  return out;
}

export class SshCertificateAuthority {
  readonly publicKeyBlob: Buffer;
  private readonly privateKey: KeyObject;
  /** string(reserved "") string(CA blob): the constant tail of every to-be-signed body. */
  private readonly tail: Buffer;

  constructor(privateKey: KeyObject) {
    if (privateKey.type !== "private" || privateKey.asymmetricKeyType !== "ed25519") {
      throw new Error(
        `SSH CA: the CA key must be an Ed25519 private key, got ${privateKey.asymmetricKeyType ?? "unknown"} ${privateKey.type} key`,
      );
    }
    this.privateKey = privateKey;
    this.publicKeyBlob = ed25519PublicKeyBlob(privateKey);
    this.tail = new SshWriter().string("").string(this.publicKeyBlob).toBuffer();
  }

  static generate(): { privateKey: KeyObject; authority: SshCertificateAuthority } {
    const { privateKey } = generateKeyPairSync("ed25519");
    return { privateKey, authority: new SshCertificateAuthority(privateKey) };
  }

  /** "ssh-ed25519 AAAA... comment" for authorized_keys (cert-authority) / known_hosts (@cert-authority). */
  publicKeyLine(comment?: string): string {
    return publicKeyLine(this.publicKeyBlob, comment);
  }

  /** Signs a certificate; returns "<keytype>-cert-v01@openssh.com <base64> <keyId>".
   *  Async, as every CA's signing is, so a CA key held by a KMS or HSM can slot in. */
  async sign(spec: SshCertSpec): Promise<string> {
    const { type: keyType, blob: subject } = parsePublicKeyLine(spec.publicKey);
    if (keyType.endsWith(CERT_SUFFIX)) {
      throw new Error(
        `ssh certificate: publicKey is already a certificate (${keyType}); pass the plain public key`,
      );
    }

    let certType: number;
    if (spec.certType === "user") certType = SSH_CERT_TYPE_USER;
    else if (spec.certType === "host") certType = SSH_CERT_TYPE_HOST;
    else
      throw new Error(
        `ssh certificate: certType must be "user" or "host", got ${JSON.stringify(spec.certType)}`,
      );

    if (typeof spec.keyId !== "string" || spec.keyId === "")
      throw new Error("ssh certificate: keyId is empty");
    if (CONTROL_RE.test(spec.keyId)) {
      throw new Error("ssh certificate: keyId contains control characters or newlines");
    }

    if (!Array.isArray(spec.principals) || spec.principals.length === 0) {
      throw new Error("ssh certificate: principals is empty (at least one principal is required)");
    }
    const principals = new SshWriter();
    for (const p of spec.principals) {
      if (typeof p !== "string" || p === "") throw new Error("ssh certificate: a principal is empty");
      if (BAD_PRINCIPAL_RE.test(p)) {
        throw new Error(
          `ssh certificate: principal ${JSON.stringify(p)} contains whitespace, a comma or control characters`,
        );
      }
      principals.string(p);
    }

    const validAfter = secondsField(spec.validAfter, "validAfter");
    const validBefore = secondsField(spec.validBefore, "validBefore");
    if (validBefore <= validAfter) {
      throw new Error(
        `ssh certificate: validBefore (${spec.validBefore}) must be after validAfter (${spec.validAfter})`,
      );
    }

    let serial: bigint;
    if (spec.serial === undefined) {
      serial = random(8).readBigUInt64BE(0) & 0x7fffffffffffffffn;
    } else {
      if (typeof spec.serial !== "bigint" || spec.serial < 0n || spec.serial > 0xffffffffffffffffn) {
        throw new Error(`ssh certificate: serial must be a bigint in 0..2^64-1, got ${String(spec.serial)}`);
      }
      serial = spec.serial;
    }

    const critical = spec.criticalOptions ? Object.entries(spec.criticalOptions) : [];
    if (critical.length > 0 && certType === SSH_CERT_TYPE_HOST) {
      throw new Error("ssh certificate: critical options are only defined for user certificates");
    }
    const criticalBlob = critical.length > 0 ? encodeOptions(critical, "critical option") : EMPTY;

    let extensionsBlob: Buffer;
    if (spec.extensions === undefined) {
      extensionsBlob = certType === SSH_CERT_TYPE_USER ? DEFAULT_USER_EXTENSIONS_BLOB : EMPTY;
    } else {
      extensionsBlob = encodeOptions(
        spec.extensions.map((e) => [e, ""]),
        "extension",
      );
    }

    // The subject's key fields are the blob after its type string, for every key type.
    const keyFields = subject.subarray(4 + subject.readUInt32BE(0));
    const certKeyType = certTypeFor(keyType);
    const body = new SshWriter()
      .string(certKeyType)
      .string(random(32))
      .raw(keyFields)
      .uint64(serial)
      .uint32(certType)
      .string(spec.keyId)
      .string(principals.toBuffer())
      .uint64(validAfter)
      .uint64(validBefore)
      .string(criticalBlob)
      .string(extensionsBlob)
      .raw(this.tail)
      .toBuffer();
    const sig = sign(null, body, this.privateKey);
    const cert = new SshWriter()
      .raw(body)
      .string(new SshWriter().string("ssh-ed25519").string(sig).toBuffer())
      .toBuffer();
    return `${certKeyType} ${cert.toString("base64")} ${spec.keyId}`;
  }
}
