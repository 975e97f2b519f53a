// The `bound_keypair` join method (seed 003): the bot holds an Ed25519 keypair in its
// storage directory; every join answers a fresh, single-use challenge signed with it.
// A join state that changes on every join exposes a keypair copied to a second machine,
// and a recovery counter bounds how often the keypair may rejoin.
import { createHash, createPublicKey, randomBytes, randomUUID, timingSafeEqual, verify } from "node:crypto";
import { z } from "zod";
import {
  boundKeypairSigningInput,
  type ChallengeResponse,
  type JoinRequestParsed,
} from "../../protocol/join.ts";
import { parsePublicKeyLine } from "../../protocol/ssh.ts";
import type { BoundJoin, Store } from "../store/store.ts";
import { denied, JoinError } from "./errors.ts";

export const CHALLENGE_TTL_SECONDS = 60;

const sshEd25519 = z.string().refine((s) => /^ssh-ed25519 [A-Za-z0-9+/=]+( .*)?$/.test(s.trim()), {
  message: "an OpenSSH ssh-ed25519 public key line",
});

export const BoundKeypairSpecSchema = z.strictObject({
  onboarding: z
    .strictObject({
      /** A one-time secret the bot presents with its first join to register its key. */
      registration_secret: z
        .string()
        .min(16, "registration_secret must be at least 16 characters")
        .optional(),
      /** Or: the bot's public key, registered in advance (`idbot keypair` prints it). */
      initial_public_key: sshEd25519.optional(),
    })
    .refine((o) => (o.registration_secret === undefined) !== (o.initial_public_key === undefined), {
      message: "set exactly one of onboarding.registration_secret and onboarding.initial_public_key",
    }),
  recovery: z
    .strictObject({
      /** standard: limit and join state enforced; relaxed: join state only; insecure: neither. */
      mode: z.enum(["standard", "relaxed", "insecure"]).default("standard"),
      /** Joins allowed with this keypair, the first one included. */
      limit: z.number().int().min(1).max(1_000_000).default(1),
    })
    .default({ mode: "standard", limit: 1 }),
  /** Keys bound before this time are asked to rotate at their next join (RFC 3339). */
  rotate_after: z.iso.datetime({ offset: true }).optional(),
});
export type BoundKeypairSpec = z.output<typeof BoundKeypairSpecSchema>;

export async function createChallenge(
  store: Store,
  tokenName: string,
  now: Date,
): Promise<ChallengeResponse> {
  const c = {
    id: randomUUID(),
    tokenName,
    nonce: randomBytes(32).toString("base64url"),
    expiresAt: new Date(now.getTime() + CHALLENGE_TTL_SECONDS * 1000).toISOString(),
  };
  await store.createChallenge(c);
  return { challenge_id: c.id, nonce: c.nonce, expires_at: c.expiresAt };
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

function ed25519Key(line: string) {
  const k = parsePublicKeyLine(line);
  if (k.type !== "ssh-ed25519") throw new Error("the bound key must be ssh-ed25519");
  // blob = string("ssh-ed25519") string(32-byte key)
  const raw = k.blob.subarray(k.blob.length - 32);
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
}

const secretsEqual = (a: string, b: string) => {
  const x = createHash("sha256").update(a).digest();
  const y = createHash("sha256").update(b).digest();
  return timingSafeEqual(x, y);
};

/** Verifies the challenge answer and returns what the store must check and update
 *  atomically with the join, plus the join state to hand back to the bot. */
export async function attestBoundKeypair(
  store: Store,
  tokenName: string,
  spec: BoundKeypairSpec,
  req: JoinRequestParsed,
  now: Date,
): Promise<{ bound: BoundJoin; joinState: string; rotate: boolean }> {
  const a = req.bound_keypair!;
  const challenge = await store.getChallenge(a.challenge_id);
  if (!challenge || challenge.tokenName !== tokenName) {
    throw denied(
      "the challenge is unknown or was already answered",
      "Request a new challenge (POST /v1/join/challenge) for every join.",
    );
  }
  if (challenge.expiresAt <= now.toISOString()) {
    throw denied(
      `the challenge expired at ${challenge.expiresAt} (challenges live ${CHALLENGE_TTL_SECONDS} s)`,
      "Answer a fresh challenge at once.",
    );
  }
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = ed25519Key(a.public_key);
  } catch (e) {
    throw new JoinError("bad_request", `bound_keypair.public_key: ${(e as Error).message}`);
  }
  const signed = boundKeypairSigningInput(tokenName, challenge.id, challenge.nonce, req.public_keys);
  if (!verify(null, signed, key, Buffer.from(a.signature, "base64"))) {
    throw denied("the challenge signature does not verify with the presented bound key");
  }
  const state = await store.getBoundKeypair(tokenName);
  const registering = !state?.publicKey && spec.onboarding.registration_secret !== undefined;
  if (registering) {
    if (
      a.registration_secret === undefined ||
      !secretsEqual(a.registration_secret, spec.onboarding.registration_secret!)
    ) {
      throw denied(
        a.registration_secret === undefined
          ? "this bound_keypair token needs the registration secret on the first join"
          : "the registration secret is wrong",
        "Give the secret from the token's onboarding.registration_secret (it works once).",
      );
    }
  } else if (a.registration_secret !== undefined && state?.publicKey) {
    throw denied("a keypair is already registered for this token; the registration secret works once");
  }
  const normalize = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(" ");
  const joinState = randomBytes(32).toString("base64url");
  const mode = spec.recovery.mode;
  const rotate =
    spec.rotate_after !== undefined && state?.boundAt !== undefined && state.boundAt < spec.rotate_after;
  if (a.next_public_key !== undefined) {
    try {
      ed25519Key(a.next_public_key);
    } catch (e) {
      throw new JoinError("bad_request", `bound_keypair.next_public_key: ${(e as Error).message}`);
    }
  }
  return {
    joinState,
    rotate: rotate && a.next_public_key === undefined,
    bound: {
      tokenName,
      challengeId: challenge.id,
      publicKey: normalize(a.public_key),
      initialPublicKey: spec.onboarding.initial_public_key
        ? normalize(spec.onboarding.initial_public_key)
        : undefined,
      registering,
      presentedJoinStateHash: a.join_state ? sha256(a.join_state) : undefined,
      newJoinStateHash: sha256(joinState),
      recoveryLimit: mode === "standard" ? spec.recovery.limit : null,
      checkJoinState: mode !== "insecure",
      nextPublicKey: a.next_public_key ? normalize(a.next_public_key) : undefined,
    },
  };
}

/** What a refused bound-keypair commit means, for the bot and its operator. */
export function boundRefusal(
  tokenName: string,
  reason: string,
  detail: string | undefined,
  spec: BoundKeypairSpec,
): JoinError {
  switch (reason) {
    case "join_state_mismatch":
      return denied(
        "this bound keypair was used from a second machine (join state mismatch); the bot instance and the token are locked",
        `An operator must investigate, then unlock with: idbot admin tokens edit ${tokenName} --unlock`,
        detail,
      );
    case "recovery_limit":
      return denied(
        `the recovery limit of join token "${tokenName}" (${spec.recovery.limit}) is reached`,
        `An operator can raise it: idbot admin tokens edit ${tokenName} --recovery-limit ${spec.recovery.limit + 1} (no change on this machine is needed)`,
        detail,
      );
    case "locked":
      return denied(
        `join token "${tokenName}" is locked: ${detail ?? ""}`,
        `Unlock with: idbot admin tokens edit ${tokenName} --unlock`,
      );
    case "key_mismatch":
      return denied(`the presented key is not the one bound to join token "${tokenName}"`);
    case "not_registered":
      return denied(`no keypair is registered for join token "${tokenName}"`);
    case "already_registered":
      return denied(
        `a keypair is already registered for join token "${tokenName}"; the registration secret works once`,
      );
    case "challenge_used":
      return denied("the challenge was already answered", "Request a new challenge for every join.");
    default:
      return denied(`the join was refused (${reason})`);
  }
}
