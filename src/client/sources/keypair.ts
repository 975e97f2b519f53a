// The proof of a machine with a bound keypair (seed 003): an Ed25519 key generated once in
// the bot's storage directory (0600, never leaves it), which answers a fresh server
// challenge at every join, and the join state the last join returned.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { boundKeypairSigningInput, ChallengeResponseSchema, type JoinRequest } from "../../protocol/join.ts";
import { ed25519PublicKeyLine } from "../../protocol/ssh.ts";
import { writeFileAtomic } from "../files.ts";
import { JoinFailure } from "../join.ts";
import type { Transport } from "../transport.ts";

const KEY_FILE = "bound_key.pem";
const STATE_FILE = "join_state";

export interface BoundKey {
  privateKey: KeyObject;
  publicLine: string;
}

/** Loads the storage directory's bound key, generating it (0600) on first use. */
export async function loadOrCreateBoundKey(storageDir: string): Promise<{ key: BoundKey; created: boolean }> {
  await mkdir(storageDir, { recursive: true, mode: 0o700 });
  const file = join(storageDir, KEY_FILE);
  let pem: string | undefined;
  try {
    pem = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  let created = false;
  if (pem === undefined) {
    pem = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    await writeFileAtomic(file, pem, 0o600);
    created = true;
  }
  const privateKey = createPrivateKey(pem);
  return {
    key: { privateKey, publicLine: ed25519PublicKeyLine(createPublicKey(privateKey), "idbot-bound-key") },
    created,
  };
}

export async function readJoinState(storageDir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(storageDir, STATE_FILE), "utf8")).trim() || undefined;
  } catch {
    return undefined;
  }
}

export async function writeJoinState(storageDir: string, state: string): Promise<void> {
  await writeFileAtomic(join(storageDir, STATE_FILE), state, 0o600);
}

/** Fetches a challenge and signs it, binding the answer to this attempt's session keys. */
export function boundKeypairProof(opts: {
  server: string;
  token: string;
  transport: Transport;
  storageDir: string;
  registrationSecret?: string;
  timeoutMs: number;
}): (publicKeys: { ssh: string; tls: string }) => Promise<Pick<JoinRequest, "bound_keypair">> {
  return async (publicKeys) => {
    const { key } = await loadOrCreateBoundKey(opts.storageDir);
    const res = await opts.transport.postJson(
      `${opts.server}/v1/join/challenge`,
      { token: opts.token, join_method: "bound_keypair" },
      { timeoutMs: opts.timeoutMs },
    );
    if (res.status !== 200) {
      let message = `HTTP ${res.status}`;
      try {
        message = (JSON.parse(res.body) as { error: { message: string } }).error.message;
      } catch {}
      if (res.status >= 500 || res.status === 429)
        throw Object.assign(new Error(`challenge: ${message}`), { retryable: true });
      throw new JoinFailure("denied", `the service refused a challenge: ${message}`);
    }
    const ch = ChallengeResponseSchema.parse(JSON.parse(res.body));
    const signature = sign(
      null,
      boundKeypairSigningInput(opts.token, ch.challenge_id, ch.nonce, publicKeys),
      key.privateKey,
    );
    const joinState = await readJoinState(opts.storageDir);
    return {
      bound_keypair: {
        public_key: key.publicLine,
        challenge_id: ch.challenge_id,
        signature: signature.toString("base64"),
        ...(joinState ? { join_state: joinState } : { registration_secret: opts.registrationSecret }),
      },
    };
  };
}
