// Encryption at rest for the CA private keys a shared store (PostgreSQL) holds: a database
// dump or a replica's backup alone must not give away the signing keys.
//
// Format: `v1$<salt>$<iv>$<tag>$<ciphertext>`, each part base64url. The key is
// scrypt(passphrase, salt; N=2^15, r=8, p=1) → 32 bytes, with a random 16-byte salt per
// value; the cipher is AES-256-GCM with a random 12-byte IV and a 16-byte tag, so a wrong
// passphrase or a changed byte is detected rather than decrypting to garbage.
import { createCipheriv, createDecipheriv, createHash, randomBytes, scrypt } from "node:crypto";

const VERSION = "v1";
const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const KEY_LEN = 32;
const SALT_LEN = 16;
const IV_LEN = 12;
const TAG_LEN = 16;

export class SecretDecryptError extends Error {
  override name = "SecretDecryptError";
}

// Derived keys by (passphrase digest, salt): a value is decrypted with one scrypt run per
// process, not per load. Bounded, oldest dropped first.
const CACHE_MAX = 64;
const keyCache = new Map<string, Buffer>();

function deriveKey(passphrase: string, salt: Buffer): Promise<Buffer> {
  const id = `${createHash("sha256").update(passphrase, "utf8").digest("base64url")}$${salt.toString("base64url")}`;
  const hit = keyCache.get(id);
  if (hit) return Promise.resolve(hit);
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, KEY_LEN, SCRYPT, (err, key) => {
      if (err) return reject(err);
      if (keyCache.size >= CACHE_MAX) keyCache.delete(keyCache.keys().next().value!);
      keyCache.set(id, key);
      resolve(key);
    });
  });
}

/** Encrypts `plaintext` under `passphrase`; the result is a printable, versioned string. */
export async function encryptSecret(plaintext: string, passphrase: string): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const iv = randomBytes(IV_LEN);
  const key = await deriveKey(passphrase, salt);
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_LEN });
  const ct = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [VERSION, salt, iv, tag, ct]
    .map((p) => (typeof p === "string" ? p : p.toString("base64url")))
    .join("$");
}

/** True when `value` looks like the output of encryptSecret (not a clear-text key). */
export function isEncryptedSecret(value: string): boolean {
  return value.startsWith(`${VERSION}$`);
}

/** Decrypts a value made by encryptSecret. Throws SecretDecryptError when the passphrase is
 *  wrong or the value was altered, and when it is not in a known format. */
export async function decryptSecret(blob: string, passphrase: string): Promise<string> {
  const parts = blob.split("$");
  if (parts.length !== 5 || parts[0] !== VERSION) {
    throw new SecretDecryptError(
      `not an encrypted value of a known version (expected ${VERSION}$salt$iv$tag$ciphertext)`,
    );
  }
  const [salt, iv, tag, ct] = parts.slice(1).map((p) => Buffer.from(p, "base64url")) as [
    Buffer,
    Buffer,
    Buffer,
    Buffer,
  ];
  if (salt.length !== SALT_LEN || iv.length !== IV_LEN || tag.length !== TAG_LEN) {
    throw new SecretDecryptError("malformed encrypted value (salt, IV or tag has the wrong length)");
  }
  const key = await deriveKey(passphrase, salt);
  const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_LEN });
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ct), decipher.final()]).toString("utf8");
  } catch {
    throw new SecretDecryptError("the passphrase does not decrypt this value (or the value was altered)");
  }
}
