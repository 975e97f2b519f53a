// Signatures and signature checks on libuv's thread pool (node:crypto's callback form).
// A join costs ~130 µs of OpenSSL (RS256 verify, Ed25519 and P-256 signatures); done
// synchronously that is a quarter of the event loop's time per join, while the pool runs
// it on the other core and the loop goes on parsing, validating and writing.
import { type KeyLike, type SignKeyObjectInput, sign, type VerifyKeyObjectInput, verify } from "node:crypto";

export function signOnPool(
  algorithm: string | null,
  data: Buffer,
  key: KeyLike | SignKeyObjectInput,
): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    sign(algorithm, data, key, (err, signature) => (err ? reject(err) : resolve(signature))),
  );
}

export function verifyOnPool(
  algorithm: string | null,
  data: Buffer,
  key: KeyLike | VerifyKeyObjectInput,
  signature: Buffer,
): Promise<boolean> {
  return new Promise((resolve, reject) =>
    verify(algorithm, data, key, signature, (err, ok) => (err ? reject(err) : resolve(ok))),
  );
}
