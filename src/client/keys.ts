// Keys are generated where they are used and never leave this machine: only the public
// halves go into the join request.
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { ed25519PrivateKeyOpenSSH, ed25519PublicKeyLine } from "../protocol/ssh.ts";

export interface ClientKeys {
  /** OpenSSH public key line of the Ed25519 SSH key. */
  sshPublic: string;
  /** openssh-key-v1 private key file contents. */
  sshPrivateFile: string;
  /** SPKI PEM of the ECDSA P-256 TLS key. */
  tlsPublicPem: string;
  /** PKCS#8 PEM of the TLS key. */
  tlsPrivatePem: string;
}

export function generateClientKeys(comment = "idbot"): ClientKeys {
  const ssh = generateKeyPairSync("ed25519");
  const tls = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    sshPublic: ed25519PublicKeyLine(ssh.publicKey, comment),
    sshPrivateFile: ed25519PrivateKeyOpenSSH(ssh.privateKey as KeyObject, comment),
    tlsPublicPem: tls.publicKey.export({ format: "pem", type: "spki" }).toString(),
    tlsPrivatePem: tls.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
  };
}

/** Lines worth masking in CI logs: the base64 body of each private key. */
export function privateKeyLines(keys: ClientKeys): string[] {
  return [keys.sshPrivateFile, keys.tlsPrivatePem]
    .flatMap((pem) => pem.split("\n"))
    .filter((l) => l.length > 0 && !l.startsWith("-----"));
}
