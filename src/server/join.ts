// One join, start to finish: find the join token, attest the proof with its join method,
// derive the bot's grants, sign certificates for the keys the client sent, and commit the
// bot instance, replay key and audit events in one store transaction. Certificates are
// returned only after that commit, so a replayed token never yields a certificate.
import { createPublicKey, randomUUID } from "node:crypto";
import type { JoinRequestParsed, JoinResponse, OutputType } from "../protocol/join.ts";
import { parsePublicKeyLine } from "../protocol/ssh.ts";
import type { Audit } from "./audit.ts";
import type { Authorities } from "./ca/authorities.ts";
import { denied, JoinError } from "./joinmethods/errors.ts";
import { methodOf } from "./joinmethods/index.ts";
import type { JwksCache } from "./joinmethods/jwt.ts";
import { attestWith } from "./joinmethods/method.ts";
import {
  authorizeDatabase,
  authorizeJwtAudiences,
  authorizeKubernetes,
  authorizeSpiffe,
  effectiveTtl,
  grantsFor,
  sshLogins,
} from "./policy/policy.ts";
import type { ResourceSet } from "./policy/resources.ts";
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
  /** SPIFFE trust domain (default: the public URL's host). */
  trustDomain: string;
  now?: () => Date;
}

export interface JoinMeta {
  remoteAddr?: string;
}

export async function handleJoin(
  req: JoinRequestParsed,
  meta: JoinMeta,
  ctx: JoinContext,
): Promise<JoinResponse> {
  const now = ctx.now?.() ?? new Date();
  const base = {
    time: now.toISOString(),
    tokenName: req.token,
    joinMethod: req.join_method,
    remoteAddr: meta.remoteAddr,
  };
  try {
    return await joinUnaudited(req, ctx, now, base);
  } catch (e) {
    const err =
      e instanceof JoinError
        ? e
        : new JoinError("internal", "the service failed to process the join", undefined, String(e));
    await ctx.audit.record([
      { ...base, type: "join.failure", reason: err.detail ? `${err.message}: ${err.detail}` : err.message },
    ]);
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
    throw denied(
      `join token "${req.token}" does not exist`,
      'Check the "token" input against the service\'s token resources.',
    );
  }
  if (token.spec.join_method !== req.join_method) {
    throw denied(
      `join token "${req.token}" uses join method "${token.spec.join_method}", not "${req.join_method}"`,
      `Join with join_method "${token.spec.join_method}".`,
    );
  }
  const sshKey = checkSshKey(req.public_keys.ssh);
  const tlsKey = checkTlsKey(req.public_keys.tls);

  const { method, spec } = methodOf(token);
  const attestation = await attestWith(method, req.token, spec, req.id_token, {
    defaultAudience: ctx.publicUrl,
    jwks: ctx.jwks,
    now,
  });
  const grants = grantsFor(set, token.spec.bot_name);
  const botName = grants.botName;
  const tctx = { joinMethod: req.join_method, claims: attestation.claims };
  const wants = (o: OutputType) => req.outputs.includes(o);

  // Every grant is resolved (and every template expanded) before anything is signed, so a
  // denial never leaves a certificate behind.
  const logins = sshLogins(grants, tctx);
  if (wants("ssh") && logins.length === 0) {
    throw denied(
      `bot "${botName}" has no SSH logins`,
      `Add "logins: [...]" to one of the roles of bot "${botName}" (${grants.roles.map((r) => r.metadata.name).join(", ")}).`,
    );
  }
  const kube = wants("kubernetes")
    ? authorizeKubernetes(grants, set, req.kubernetes!.cluster, tctx)
    : undefined;
  const db = wants("database") ? authorizeDatabase(grants, set, req.database!) : undefined;
  const spiffe =
    wants("spiffe-x509") || wants("jwt") ? authorizeSpiffe(grants, req.spiffe?.path, tctx) : undefined;
  const jwtAudiences = wants("jwt") ? authorizeJwtAudiences(grants, req.jwt!.audiences) : undefined;

  const { ttl, capped } = effectiveTtl(req.ttl, grants);
  const nowS = Math.floor(now.getTime() / 1000);
  const validAfter = nowS - BACKDATE_SECONDS;
  const validBefore = nowS + ttl;
  const notBefore = new Date(validAfter * 1000);
  const expiresAt = new Date(validBefore * 1000);
  const expiresIso = expiresAt.toISOString();
  const instanceId = randomUUID();
  const events: AuditEvent[] = [];
  const issued = (kind: string, data: Record<string, unknown>) =>
    events.push({
      ...base,
      type: "cert.issued",
      botName,
      instanceId,
      data: { kind, ...data, expires_at: expiresIso },
    });
  const x509 = (
    issuer: typeof ctx.authorities.tls,
    opts: {
      commonName: string;
      organizations?: string[];
      uris?: string[];
      dnsNames?: string[];
      ipAddresses?: string[];
    },
  ) =>
    issuer.issue({ publicKey: tlsKey, notBefore, notAfter: expiresAt, extKeyUsage: ["clientAuth"], ...opts });

  const response: JoinResponse = {
    bot_name: botName,
    bot_instance_id: instanceId,
    expires_at: expiresIso,
    ttl_seconds: ttl,
    ttl_capped: capped,
    tls: { certificate: "", ca: ctx.authorities.tlsCaPem },
  };
  if (logins.length > 0) {
    const keyId = `bot=${botName},${attestation.subject},instance=${instanceId}`;
    response.ssh = {
      certificate: ctx.authorities.sshUser.sign({
        publicKey: sshKey,
        certType: "user",
        keyId,
        principals: logins,
        validAfter,
        validBefore,
      }),
      principals: logins,
      user_ca: ctx.authorities.sshUserCaLine,
      host_ca: ctx.authorities.sshHostCaLine,
    };
    issued("ssh_user", { key_id: keyId, principals: logins });
  }
  const tls = x509(ctx.authorities.tls, { commonName: botName });
  response.tls.certificate = tls.pem;
  issued("tls_client", { serial: tls.serialHex, subject: `CN=${botName}` });
  if (kube) {
    const cert = x509(ctx.authorities.tls, { commonName: kube.user, organizations: kube.groups });
    response.kubernetes = {
      cluster: kube.cluster.metadata.name,
      server: kube.cluster.spec.server,
      ca: kube.cluster.spec.ca,
      ...(kube.cluster.spec.tls_server_name ? { tls_server_name: kube.cluster.spec.tls_server_name } : {}),
      certificate: cert.pem,
      user: kube.user,
      groups: kube.groups,
    };
    issued("kubernetes", {
      serial: cert.serialHex,
      cluster: kube.cluster.metadata.name,
      user: kube.user,
      groups: kube.groups,
    });
  }
  if (db) {
    const cert = x509(ctx.authorities.tls, { commonName: db.user });
    const spec = db.database.spec;
    response.database = {
      service: db.database.metadata.name,
      protocol: spec.protocol,
      host: spec.host,
      port: spec.port,
      ca: spec.ca,
      certificate: cert.pem,
      user: db.user,
      name: db.name,
    };
    issued("database", { serial: cert.serialHex, database: db.database.metadata.name, user: db.user });
  }
  const spiffeId = spiffe ? `spiffe://${ctx.trustDomain}${spiffe.path}` : undefined;
  if (spiffe && wants("spiffe-x509")) {
    const cert = x509(ctx.authorities.spiffe, {
      commonName: botName,
      uris: [spiffeId!],
      dnsNames: spiffe.dnsSans,
      ipAddresses: spiffe.ipSans,
    });
    response.spiffe = {
      spiffe_id: spiffeId!,
      certificate: cert.pem,
      bundle: ctx.authorities.spiffe.caCertPem,
    };
    issued("spiffe_x509", { serial: cert.serialHex, spiffe_id: spiffeId });
  }
  if (jwtAudiences) {
    const token = await ctx.authorities.jwt.sign(
      {
        ...jwtClaims(attestation.claims),
        bot_name: botName,
        bot_instance_id: instanceId,
        join_method: req.join_method,
      },
      {
        issuer: ctx.publicUrl,
        subject: spiffeId!,
        audience: jwtAudiences,
        issuedAt: nowS,
        expiresAt: validBefore,
        jti: randomUUID(),
      },
    );
    response.jwt = { token, spiffe_id: spiffeId!, audiences: jwtAudiences };
    issued("jwt_svid", { spiffe_id: spiffeId, audiences: jwtAudiences, kid: ctx.authorities.jwt.kid });
  }
  events.unshift({
    ...base,
    type: "join.success",
    botName,
    instanceId,
    data: { claims: attestation.claims, ttl_seconds: ttl, outputs: req.outputs },
  });

  const result = await ctx.store.commitJoin({
    replay: { issuer: attestation.issuer, jti: attestation.jti, expiresAt: attestation.expiresAt + 120 },
    instance: {
      id: instanceId,
      botName,
      tokenName: req.token,
      joinMethod: req.join_method,
      claims: attestation.claims,
      createdAt: now.toISOString(),
      expiresAt: expiresIso,
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
  return response;
}

/** Claims a relying party (Vault bound_claims) may bind on; the platform's iss/aud/sub
 *  and token ids are replaced by idbot's own. */
function jwtClaims(claims: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(claims))
    if (!["iss", "aud", "sub", "jti", "exp", "iat", "nbf"].includes(k)) out[k] = v;
  return out;
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
    if (t !== "ec" && t !== "ed25519")
      throw new Error(`key type ${t} is not accepted; send an ECDSA P-256 key`);
    return key;
  } catch (e) {
    throw new JoinError("bad_request", `public_keys.tls: ${(e as Error).message}`);
  }
}
