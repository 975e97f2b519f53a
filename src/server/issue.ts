// Signing what a join or a renewal asks for: every grant is resolved (and every template
// expanded) before anything is signed, so a denial never leaves a certificate behind.
import { createPublicKey, randomUUID } from "node:crypto";
import {
  instanceUri,
  type JoinResponse,
  type OutputType,
  type RenewRequestParsed,
} from "../protocol/join.ts";
import { parsePublicKeyLine } from "../protocol/ssh.ts";
import type { Authorities } from "./ca/authorities.ts";
import { CertificateInputError, SubjectPublicKey } from "./ca/x509.ts";
import { denied, JoinError } from "./joinmethods/errors.ts";
import {
  authorizeDatabase,
  authorizeJwtAudiences,
  authorizeKubernetes,
  authorizeSpiffe,
  type BotGrants,
  effectiveTtl,
  hostPrincipals,
  sshLogins,
} from "./policy/policy.ts";
import type { ResourceSet } from "./policy/resources.ts";
import type { TemplateContext } from "./policy/templates.ts";
import type { AuditEvent } from "./store/store.ts";

/** Certificates start a minute in the past to tolerate clock skew on the target. */
const BACKDATE_SECONDS = 60;

/** The issuance part of a join or renewal request. */
export type IssuanceRequest = Pick<
  RenewRequestParsed,
  "public_keys" | "outputs" | "ttl" | "kubernetes" | "database" | "spiffe" | "jwt" | "ssh_host"
>;

export interface IssueContext {
  authorities: Authorities;
  publicUrl: string;
  trustDomain: string;
}

export interface Subject {
  grants: BotGrants;
  instanceId: string;
  generation: number;
  /** Attested claims and the method that attested them (templates, JWT claims). */
  template: TemplateContext;
  /** Short description of the proof, for SSH key ids. */
  description: string;
}

export interface Issued {
  response: Omit<JoinResponse, "join_state" | "rotate_key">;
  events: AuditEvent[];
  expiresAt: string;
}

export function checkSshKey(line: string, field = "public_keys.ssh"): string {
  try {
    const k = parsePublicKeyLine(line);
    if (k.type !== "ssh-ed25519" && !k.type.startsWith("ecdsa-sha2-")) {
      throw new Error(`key type ${k.type} is not accepted; send an Ed25519 or ECDSA key`);
    }
    return line;
  } catch (e) {
    throw new JoinError("bad_request", `${field}: ${(e as Error).message}`);
  }
}

/** Parses and checks the TLS public key (SPKI PEM) once per request; every X.509 certificate
 *  of the request is then issued for the checked key. Only ECDSA (P-256, P-384) and Ed25519
 *  are accepted. The usual PEM (one canonical SPKI) is decoded without OpenSSL, whose parser
 *  costs ~300 µs a call; anything else takes the OpenSSL path, as before. */
export function checkTlsKey(pem: string): SubjectPublicKey {
  let key: SubjectPublicKey;
  try {
    key = SubjectPublicKey.from(pem);
  } catch {
    key = checkTlsKeyWithOpenSsl(pem);
  }
  if (key.type === "rsa") throw new JoinError("bad_request", `public_keys.tls: ${notAccepted("rsa")}`);
  return key;
}

const notAccepted = (type: string | undefined) => `key type ${type} is not accepted; send an ECDSA P-256 key`;

/** The slow path for PEMs the fast decoder refuses (extra text around the block, a
 *  compressed EC point, ...): what OpenSSL can read is normalized through a KeyObject,
 *  and its refusal is the message. */
function checkTlsKeyWithOpenSsl(pem: string): SubjectPublicKey {
  try {
    const k = createPublicKey(pem);
    const t = k.asymmetricKeyType;
    if (t !== "ec" && t !== "ed25519") throw new Error(notAccepted(t));
    return SubjectPublicKey.from(k);
  } catch (e) {
    const msg =
      e instanceof CertificateInputError ? e.message.slice(e.field.length + 2) : (e as Error).message;
    throw new JoinError("bad_request", `public_keys.tls: ${msg}`);
  }
}

/** Claims a relying party (Vault bound_claims) may bind on; the platform's iss/aud/sub
 *  and token ids are replaced by idbot's own. */
function jwtClaims(claims: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(claims))
    if (!["iss", "aud", "sub", "jti", "exp", "iat", "nbf"].includes(k)) out[k] = v;
  return out;
}

export async function issueCredentials(
  ctx: IssueContext,
  set: ResourceSet,
  subject: Subject,
  req: IssuanceRequest,
  now: Date,
  base: Omit<AuditEvent, "type">,
): Promise<Issued> {
  const { grants, instanceId, generation } = subject;
  const botName = grants.botName;
  const tctx = subject.template;
  const wants = (o: OutputType) => req.outputs.includes(o);
  const sshKey = checkSshKey(req.public_keys.ssh);
  const tlsKey = checkTlsKey(req.public_keys.tls);

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
  const hostKey = wants("ssh_host")
    ? checkSshKey(req.ssh_host!.public_key, "ssh_host.public_key")
    : undefined;
  const hostNames = hostKey ? hostPrincipals(grants, tctx) : undefined;

  const { ttl, capped } = effectiveTtl(req.ttl, grants);
  const nowS = Math.floor(now.getTime() / 1000);
  const validAfter = nowS - BACKDATE_SECONDS;
  const validBefore = nowS + ttl;
  const notBefore = new Date(validAfter * 1000);
  const expiresAt = new Date(validBefore * 1000);
  const expiresIso = expiresAt.toISOString();
  const events: AuditEvent[] = [];
  const issued = (kind: string, data: Record<string, unknown>) =>
    events.push({
      ...base,
      type: "cert.issued",
      botName,
      instanceId,
      data: { kind, generation, ...data, expires_at: expiresIso },
    });
  const x509 = (
    issuer: Authorities["tls"],
    opts: {
      commonName: string;
      organizations?: string[];
      uris?: string[];
      dnsNames?: string[];
      ipAddresses?: string[];
    },
  ) =>
    issuer.issue({ publicKey: tlsKey, notBefore, notAfter: expiresAt, extKeyUsage: ["clientAuth"], ...opts });

  const a = ctx.authorities;
  const sshKeyId = `bot=${botName},${subject.description},instance=${instanceId}`;
  const hostKeyId = hostNames ? `host=${hostNames[0]},bot=${botName},instance=${instanceId}` : "";
  const spiffeId = spiffe ? `spiffe://${ctx.trustDomain}${spiffe.path}` : undefined;
  const [tls, sshCert, kubeCert, dbCert, spiffeCert, jwtToken, hostCert] = await Promise.all([
    x509(a.tls, { commonName: botName, uris: [instanceUri(instanceId, generation)] }),
    logins.length > 0
      ? a.sshUser.sign({
          publicKey: sshKey,
          certType: "user",
          keyId: sshKeyId,
          principals: logins,
          validAfter,
          validBefore,
        })
      : undefined,
    kube ? x509(a.tls, { commonName: kube.user, organizations: kube.groups }) : undefined,
    db ? x509(a.tls, { commonName: db.user }) : undefined,
    spiffe && wants("spiffe-x509")
      ? x509(a.spiffe, {
          commonName: botName,
          uris: [spiffeId!],
          dnsNames: spiffe.dnsSans,
          ipAddresses: spiffe.ipSans,
        })
      : undefined,
    jwtAudiences
      ? a.jwt.sign(
          {
            ...jwtClaims(tctx.claims),
            bot_name: botName,
            bot_instance_id: instanceId,
            join_method: tctx.joinMethod,
          },
          {
            issuer: ctx.publicUrl,
            subject: spiffeId!,
            audience: jwtAudiences,
            issuedAt: nowS,
            expiresAt: validBefore,
            jti: randomUUID(),
          },
        )
      : undefined,
    hostKey && hostNames
      ? a.sshHost.sign({
          publicKey: hostKey,
          certType: "host",
          keyId: hostKeyId,
          principals: hostNames,
          validAfter,
          validBefore,
        })
      : undefined,
  ]);

  const response: Issued["response"] = {
    bot_name: botName,
    bot_instance_id: instanceId,
    generation,
    expires_at: expiresIso,
    ttl_seconds: ttl,
    ttl_capped: capped,
    tls: { certificate: tls.pem, ca: a.tlsCaPem },
  };
  issued("tls_client", { serial: tls.serialHex, subject: `CN=${botName}` });
  if (sshCert !== undefined) {
    response.ssh = {
      certificate: sshCert,
      principals: logins,
      user_ca: a.sshUserCaLine,
      host_ca: a.sshHostCaLine,
    };
    issued("ssh_user", { key_id: sshKeyId, principals: logins });
  }
  if (kube && kubeCert) {
    response.kubernetes = {
      cluster: kube.cluster.metadata.name,
      server: kube.cluster.spec.server,
      ca: kube.cluster.spec.ca,
      ...(kube.cluster.spec.tls_server_name ? { tls_server_name: kube.cluster.spec.tls_server_name } : {}),
      certificate: kubeCert.pem,
      user: kube.user,
      groups: kube.groups,
    };
    issued("kubernetes", {
      serial: kubeCert.serialHex,
      cluster: kube.cluster.metadata.name,
      user: kube.user,
      groups: kube.groups,
    });
  }
  if (db && dbCert) {
    const spec = db.database.spec;
    response.database = {
      service: db.database.metadata.name,
      protocol: spec.protocol,
      host: spec.host,
      port: spec.port,
      ca: spec.ca,
      certificate: dbCert.pem,
      user: db.user,
      name: db.name,
    };
    issued("database", { serial: dbCert.serialHex, database: db.database.metadata.name, user: db.user });
  }
  if (spiffeCert) {
    response.spiffe = { spiffe_id: spiffeId!, certificate: spiffeCert.pem, bundle: a.spiffe.caCertPem };
    issued("spiffe_x509", { serial: spiffeCert.serialHex, spiffe_id: spiffeId });
  }
  if (jwtToken !== undefined && jwtAudiences) {
    response.jwt = { token: jwtToken, spiffe_id: spiffeId!, audiences: jwtAudiences };
    issued("jwt_svid", { spiffe_id: spiffeId, audiences: jwtAudiences, kid: a.jwt.kid });
  }
  if (hostCert !== undefined && hostNames) {
    response.ssh_host = { certificate: hostCert, principals: hostNames, user_ca: a.sshUserCaLine };
    issued("ssh_host", { key_id: hostKeyId, principals: hostNames });
  }
  return { response, events, expiresAt: expiresIso };
}
