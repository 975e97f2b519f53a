// The `token` join method: a one-time secret made by `idbot admin tokens add`. Only its
// SHA-256 is stored; the store consumes it in the join's transaction, so it works exactly
// once however many machines race for it, and never after its expiry.
import { createHash, randomBytes } from "node:crypto";
import type { Store } from "../store/store.ts";
import { denied } from "./errors.ts";

export const hashSecret = (secret: string) => createHash("sha256").update(secret).digest("hex");

/** A fresh secret (shown once) and its public id. */
export function newJoinSecret(): { secret: string; id: string } {
  // The prefix keeps a secret from ever starting with "-" (a CLI would read it as a flag)
  // and lets secret scanners recognise a leaked one.
  return {
    secret: `idbot_join_${randomBytes(24).toString("base64url")}`,
    id: `tok-${randomBytes(4).toString("hex")}`,
  };
}

export async function lookupJoinSecret(
  store: Store,
  secret: string,
  now: Date,
): Promise<{ botName: string; hash: string; id: string }> {
  const hash = hashSecret(secret);
  const t = await store.getJoinTokenByHash(hash);
  if (!t)
    throw denied(
      "the join secret is not known to this service",
      "Ask the operator for a fresh one: idbot admin tokens add --bot NAME",
    );
  if (t.usedAt)
    throw denied("the join secret was already used (it works once)", "Ask the operator for a fresh one.");
  if (t.expiresAt <= now.toISOString())
    throw denied(`the join secret expired at ${t.expiresAt}`, "Ask the operator for a fresh one.");
  return { botName: t.botName, hash, id: t.id };
}
