// One join, start to finish: find the join token, attest the proof with its join method,
// derive the bot's grants, sign certificates for the keys the client sent, and commit the
// bot instance, replay key and audit events in one store transaction. Certificates are
// returned only after that commit, so a replayed token never yields a certificate.
import { createPublicKey, randomUUID } from "node:crypto";
import type { JoinRequestParsed, JoinResponse } from "../protocol/join.ts";
import { parsePublicKeyLine } from "../protocol/ssh.ts";
import type { Audit } from "./audit.ts";
import type { Authorities } from "./ca/authorities.ts";
import { denied, JoinError } from "./joinmethods/errors.ts";
import { type Attestation, attestGitHub } from "./joinmethods/github.ts";
import type { JwksCache } from "./joinmethods/jwt.ts";
import { effectiveTtl, grantsFor } from "./policy/policy.ts";
import type { ResourceSet, TokenResource } from "./policy/resources.ts";
import type { AuditEvent, Store } from "./store/store.ts";

/** Certificates start a minute in the past to tolerate clock skew on the target. */
const BACKDATE_SECONDS = 60;

export interface JoinContext {
  store: Store;
  authorities: Authorities;
  resources: () => ResourceSet;
  audit: Audit;
  jwks: JwksCache;
  publicUrl: string;
  now?: () => Date;
}

export interface JoinMeta {
  remoteAddr?: string;
}

async function attest(token: TokenResource, req: JoinRequestParsed, ctx: JoinContext, now: Date): Promise<Attestation> {
  const spec = token.spec;
  switch (spec.join_method) {
    case "github":
      return attestGitHub(token.metadata.name, spec.github, req.id_token, {
        defaultAudience: ctx.publicUrl,
        jwks: ctx.jwks,
        now,
      });
  }
}

export async function handleJoin(req: JoinRequestParsed, meta: JoinMeta, ctx: JoinContext): Promise<JoinResponse> {
  const now = ctx.now?.() ?? new Date();
  const base = { time: now.toISOString(), tokenName: req.token, joinMethod: req.join_method, remoteAddr: meta.remoteAddr };
  try {
    return await joinUnaudited(req, ctx, now, base);
  } catch (e) {
    const err =
      e instanceof JoinError ? e : new JoinError("internal", "the service failed to process the join", undefined, String(e));
    await ctx.audit.record([{ ...base, type: "join.failure", reason: err.detail ? `${err.message}: ${err.detail}` : err.message }]);
    throw err;
  }
}

async function joinUnaudited(
  req: JoinRequestParsed,
  ctx: JoinContext,
  now: Date,
  base: Omit<AuditEvent, "type">,
): Promise<JoinResponse> {
  const set = ctx.resources();
  const token = set.tokens.get(req.token);
  if (!token) {
    throw denied(`join token "${req.token}" does not exist`, 'Check the "token" input against the service\'s token resources.');
  }
  if (token.spec.join_method !== req.join_method) {
    throw denied(
      `join token "${req.token}" uses join method "${token.spec.join_method}", not "${req.join_method}"`,
      `Join with join_method "${token.spec.join_method}".`,
    );
  }
  const sshKey = checkSshKey(req.public_keys.ssh);
  const tlsKey = checkTlsKey(req.public_keys.tls);

  const attestation = await attest(token, req, ctx, now);
  const grants = grantsFor(set, token.spec.bot_name);
  const wantsSsh = req.outputs.includes("ssh") || req.outputs.includes("identity");
  if (wantsSsh && grants.logins.length === 0) {
    throw denied(
      `bot "${grants.botName}" has no SSH logins`,
      `Add "logins: [...]" to one of the roles of bot "${grants.botName}" (${grants.roles.map((r) => r.metadata.name).join(", ")}).`,
    );
  }
  const { ttl, capped } = effectiveTtl(req.ttl, grants);
  const nowS = Math.floor(now.getTime() / 1000);
  const validAfter = nowS - BACKDATE_SECONDS;
  const validBefore = nowS + ttl;
  const expiresAt = new Date(validBefore * 1000);
  const instanceId = randomUUID();

  const events: AuditEvent[] = [];
  const keyId = `bot=${grants.botName},${attestation.subject},instance=${instanceId}`;
  const sshCert = ctx.authorities.sshUser.sign({
    publicKey: sshKey,
    certType: "user",
    keyId,
    principals: grants.logins,
    validAfter,
    validBefore,
  });
  events.push({ ...base, type: "cert.issued", botName: grants.botName, instanceId, data: { kind: "ssh_user", key_id: keyId, principals: grants.logins, expires_at: expiresAt.toISOString() } });
  const tls = ctx.authorities.tls.issue({
    publicKey: tlsKey,
    commonName: grants.botName,
    notBefore: new Date(validAfter * 1000),
    notAfter: expiresAt,
    extKeyUsage: ["clientAuth"],
  });
  events.push({ ...base, type: "cert.issued", botName: grants.botName, instanceId, data: { kind: "tls_client", serial: tls.serialHex, subject: `CN=${grants.botName}`, expires_at: expiresAt.toISOString() } });
  events.unshift({ ...base, type: "join.success", botName: grants.botName, instanceId, data: { claims: attestation.claims, ttl_seconds: ttl } });

  const result = await ctx.store.commitJoin({
    replay: { issuer: attestation.issuer, jti: attestation.jti, expiresAt: attestation.expiresAt + 120 },
    instance: {
      id: instanceId,
      botName: grants.botName,
      tokenName: req.token,
      joinMethod: req.join_method,
      claims: attestation.claims,
      createdAt: now.toISOString(),
      expiresAt: expiresAt.toISOString(),
      generation: 1,
    },
    events,
  });
  if (!result.ok) {
    throw denied(
      "this ID token was already used for a join (replay refused)",
      "Request a fresh ID token for every join; a token is accepted once.",
    );
  }
  ctx.audit.logged(events);
  return {
    bot_name: grants.botName,
    bot_instance_id: instanceId,
    expires_at: expiresAt.toISOString(),
    ttl_seconds: ttl,
    ttl_capped: capped,
    ssh: {
      certificate: sshCert,
      principals: grants.logins,
      user_ca: ctx.authorities.sshUserCaLine,
      host_ca: ctx.authorities.sshHostCaLine,
    },
    tls: { certificate: tls.pem, ca: ctx.authorities.tlsCaPem },
  };
}

function checkSshKey(line: string): string {
  try {
    const k = parsePublicKeyLine(line);
    if (k.type !== "ssh-ed25519" && !k.type.startsWith("ecdsa-sha2-")) {
      throw new Error(`key type ${k.type} is not accepted; send an Ed25519 or ECDSA key`);
    }
    return line;
  } catch (e) {
    throw new JoinError("bad_request", `public_keys.ssh: ${(e as Error).message}`);
  }
}

function checkTlsKey(pem: string) {
  try {
    const key = createPublicKey(pem);
    const t = key.asymmetricKeyType;
    if (t !== "ec" && t !== "ed25519") throw new Error(`key type ${t} is not accepted; send an ECDSA P-256 key`);
    return key;
  } catch (e) {
    throw new JoinError("bad_request", `public_keys.tls: ${(e as Error).message}`);
  }
}
