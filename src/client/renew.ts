// Renewing an identity a join wrote: the current TLS certificate names the bot instance
// and its generation; a signature by the current TLS key over the new session keys proves
// possession. The service answers with the next generation, written in place.
import { createPrivateKey, sign, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { parseInstanceUri, renewSigningInput } from "../protocol/join.ts";

export class RenewError extends Error {
  override name = "RenewError";
}

export interface CurrentIdentity {
  instanceId: string;
  generation: number;
  certificatePem: string;
  notAfter: Date;
}

export async function readCurrentIdentity(dir: string): Promise<CurrentIdentity & { keyPem: string }> {
  let certificatePem: string;
  let keyPem: string;
  try {
    certificatePem = await readFile(join(dir, "identity", "tlscert"), "utf8");
    keyPem = await readFile(join(dir, "identity", "tlskey"), "utf8");
  } catch (e) {
    throw new RenewError(
      `${dir} holds no identity to renew (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  const cert = new X509Certificate(certificatePem);
  const ids = (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => parseInstanceUri(s.slice(4)))
    .filter((x) => x !== undefined);
  if (ids.length === 0) throw new RenewError(`${dir}/identity/tlscert names no bot instance; join again`);
  return { ...ids[0]!, certificatePem, keyPem, notAfter: new Date(cert.validTo) };
}

const startedAt = Date.now();
const VERSION = typeof IDBOT_VERSION === "string" ? IDBOT_VERSION : "dev";
declare const IDBOT_VERSION: string | undefined;

/** The proof of a renewal attempt (fresh timestamp and signature each time). */
export async function renewProof(
  dir: string,
): Promise<(attempt: number, publicKeys: { ssh: string; tls: string }) => Promise<Record<string, unknown>>> {
  const cur = await readCurrentIdentity(dir);
  if (cur.notAfter <= new Date())
    throw new RenewError(`the identity in ${dir} expired at ${cur.notAfter.toISOString()}; join again`);
  const key = createPrivateKey(cur.keyPem);
  return async (_attempt, publicKeys) => {
    const timestamp = Math.floor(Date.now() / 1000);
    const data = renewSigningInput(cur.instanceId, cur.generation, timestamp, publicKeys);
    const signature = key.asymmetricKeyType === "ed25519" ? sign(null, data, key) : sign("sha256", data, key);
    return {
      bot_instance_id: cur.instanceId,
      generation: cur.generation,
      certificate: cur.certificatePem,
      timestamp,
      signature: signature.toString("base64"),
      heartbeat: {
        hostname: hostname(),
        version: VERSION,
        uptime_seconds: Math.floor((Date.now() - startedAt) / 1000),
      },
    };
  };
}
