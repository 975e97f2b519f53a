// POST /v1/renew: a bot proves it holds its current identity (the TLS certificate idbot
// issued, and a signature by its key over the request) and gets the next generation of
// certificates. Presenting an older generation means the identity was copied: the
// instance is locked and every later renewal is refused. The one exception is a retry of
// the renewal that made the current generation, with the same new keys (its answer was
// lost): it gets that generation again (store/rows.ts renewStep).
import { verify, X509Certificate } from "node:crypto";
import {
  type JoinResponse,
  parseInstanceUri,
  type RenewRequestParsed,
  renewSigningInput,
} from "../protocol/join.ts";
import { issueCredentials } from "./issue.ts";
import { audited, type JoinContext, type JoinMeta } from "./join.ts";
import { denied, JoinError } from "./joinmethods/errors.ts";
import { grantsFor } from "./policy/policy.ts";
import { renewEvents, renewKeysHash } from "./store/rows.ts";

const CLOCK_SKEW_SECONDS = 60;

function checkIdentity(req: RenewRequestParsed, ctx: JoinContext, now: Date): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(req.certificate);
  } catch {
    throw new JoinError("bad_request", "certificate: not a PEM X.509 certificate");
  }
  const ca = new X509Certificate(ctx.authorities.tlsCaPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw denied(
      "the certificate was not issued by this service's TLS CA",
      "Join again with the join method.",
    );
  }
  if (new Date(cert.validTo) <= now) {
    throw denied(
      `the certificate expired at ${new Date(cert.validTo).toISOString()}`,
      "Renew before expiry; join again with the join method now.",
    );
  }
  const uris = (cert.subjectAltName ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
  const ids = uris.map(parseInstanceUri).filter((x) => x !== undefined);
  if (!ids.some((x) => x.instanceId === req.bot_instance_id && x.generation === req.generation)) {
    throw denied("the certificate does not name this bot instance and generation");
  }
  const nowS = Math.floor(now.getTime() / 1000);
  if (Math.abs(nowS - req.timestamp) > CLOCK_SKEW_SECONDS) {
    throw denied(
      "the renewal's timestamp is more than a minute off the service's clock",
      "Check the machine's clock.",
    );
  }
  const key = cert.publicKey;
  const data = renewSigningInput(req.bot_instance_id, req.generation, req.timestamp, req.public_keys);
  const sig = Buffer.from(req.signature, "base64");
  const ok =
    key.asymmetricKeyType === "ed25519" ? verify(null, data, key, sig) : verify("sha256", data, key, sig);
  if (!ok) throw denied("the renewal signature does not verify with the certificate's key");
}

export async function handleRenew(
  req: RenewRequestParsed,
  meta: JoinMeta,
  ctx: JoinContext,
): Promise<JoinResponse> {
  const now = ctx.now?.() ?? new Date();
  const base = { time: now.toISOString(), instanceId: req.bot_instance_id, remoteAddr: meta.remoteAddr };
  return audited(ctx, base, "renew.failure", async () => {
    checkIdentity(req, ctx, now);
    const instance = await ctx.store.getBotInstance(req.bot_instance_id);
    if (!instance)
      throw denied("this bot instance is unknown to the service", "Join again with the join method.");
    if (instance.lockedReason)
      throw denied(
        `this bot instance is locked: ${instance.lockedReason}`,
        "An operator must investigate; join again once resolved.",
      );
    const set = ctx.resources();
    if (!set.bots.has(instance.botName)) throw denied(`bot "${instance.botName}" is no longer declared`);
    const grants = grantsFor(set, instance.botName);
    const generation = req.generation + 1;
    const b = {
      ...base,
      botName: instance.botName,
      tokenName: instance.tokenName,
      joinMethod: instance.joinMethod,
    };
    const issued = await issueCredentials(
      ctx,
      set,
      {
        grants,
        instanceId: instance.id,
        generation,
        template: { joinMethod: instance.joinMethod, claims: instance.claims },
        description: `renewal=${generation}`,
      },
      req,
      now,
      b,
    );
    const events = [{ ...b, type: "renew.success", data: { generation } }, ...issued.events];
    const r = await ctx.store.renewInstance({
      id: instance.id,
      presented: req.generation,
      keysHash: renewKeysHash(req.public_keys),
      now: now.toISOString(),
      expiresAt: issued.expiresAt,
      remoteAddr: meta.remoteAddr,
      heartbeat: req.heartbeat
        ? {
            time: now.toISOString(),
            hostname: req.heartbeat.hostname,
            version: req.heartbeat.version,
            uptimeSeconds: req.heartbeat.uptime_seconds,
          }
        : undefined,
      events,
    });
    if (!r.ok) {
      if (r.reason === "stale_generation") {
        ctx.audit.logged([{ ...b, type: "instance.locked", reason: r.instance?.lockedReason }]);
        throw denied(
          `certificate generation ${req.generation} is older than the instance's current one: the identity was copied; the bot instance is now locked`,
          "An operator must investigate; the machine must join again with its join method.",
        );
      }
      throw denied(r.reason === "locked" ? "this bot instance is locked" : "this bot instance is unknown");
    }
    ctx.audit.logged(r.repeated ? renewEvents({ kind: "repeat", generation }, events) : events);
    return issued.response;
  });
}
