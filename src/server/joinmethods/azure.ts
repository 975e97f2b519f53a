// The `azure` join method: an Azure VM proves where it runs with two documents from its
// instance metadata service (IMDS), both fetched for this very join:
//  - the attested data document: PKCS#7 SignedData (signed by Microsoft with a certificate
//    for metadata.azure.com) over JSON naming the VM (vmId, subscriptionId, timeStamp) and
//    the nonce it was asked for. The nonce is derived from a single-use server challenge
//    (POST /v1/join/challenge, 60 s), so a document cannot be replayed; the challenge's
//    nonce is the replay key, which makes the challenge single-use across replicas.
//  - a managed identity access token (a JWT from Entra ID) for this service's audience,
//    verified against the tenant's keys; its resource id (xms_az_rid, else xms_mirid)
//    must lie in the attested subscription and names the resource group.
// node:crypto has no PKCS#7 API: a small DER reader below extracts the signer certificate,
// the signed content and the signer info; the RSA/ECDSA signature is checked over the
// signed attributes (whose messageDigest must match the content) or the content itself,
// and the signer certificate is chain-verified with X509Certificate.checkIssued/verify:
// by default up to the roots Azure uses (DigiCert Global Root G2/G3/CA, Microsoft RSA/ECC
// Root 2017, from Node's bundled Mozilla store) through Microsoft's published intermediates
// shipped below; a token resource can replace the trust with `attestation_cas` (PEM).
import { createHash, verify as verifySignature, X509Certificate } from "node:crypto";
import { rootCertificates } from "node:tls";
import * as jose from "jose";
import { z } from "zod";
import { denied, JoinError } from "./errors.ts";
import { checkKeyUrl, verifyIdToken } from "./jwt.ts";
import { type ClaimJoinMethod, pick } from "./method.ts";
import { type FieldVerdict, globMatch, type Rule, type RuleVerdict } from "./rules.ts";

/** Subject names Microsoft signs attested documents with (public and sovereign clouds). */
const ATTESTATION_SIGNER = /^(?:[a-z0-9-]+\.)*metadata\.(?:azure\.(?:com|us|cn)|microsoftazure\.de)$/i;
/** The roots of Azure's TLS chains, taken from Node's bundled root store by name. */
const AZURE_ROOT_NAMES = new Set([
  "DigiCert Global Root G2",
  "DigiCert Global Root G3",
  "DigiCert Global Root CA",
  "Microsoft RSA Root Certificate Authority 2017",
  "Microsoft ECC Root Certificate Authority 2017",
]);
/** Clock skew tolerated on the document's creation time. */
const LEEWAY_SECONDS = 5 * 60;
const MAX_CHAIN = 5;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The nonce IMDS is asked to sign: 32 hex digits of SHA-256(challenge nonce), since IMDS
 *  takes at most 32 alphanumeric characters and a challenge nonce is base64url. */
export function imdsNonce(challengeNonce: string): string {
  return createHash("sha256").update(challengeNonce, "utf8").digest("hex").slice(0, 32);
}

// ---------------------------------------------------------------------------------------
// A minimal DER reader: definite lengths, single-byte tags (all PKCS#7/X.509 needs here).

class Der {
  constructor(
    readonly buf: Buffer,
    readonly tag: number,
    readonly start: number,
    readonly headerLength: number,
    readonly end: number,
  ) {}
  get value(): Buffer {
    return this.buf.subarray(this.start + this.headerLength, this.end);
  }
  /** The whole element, header included. */
  get bytes(): Buffer {
    return this.buf.subarray(this.start, this.end);
  }
  children(): Der[] {
    if ((this.tag & 0x20) === 0)
      throw new Pkcs7Error(`DER element 0x${this.tag.toString(16)} is not constructed`);
    const out: Der[] = [];
    for (let pos = this.start + this.headerLength; pos < this.end; ) {
      const d = readDer(this.buf, pos, this.end);
      out.push(d);
      pos = d.end;
    }
    return out;
  }
}

class Pkcs7Error extends Error {}

function readDer(buf: Buffer, pos: number, limit: number): Der {
  if (pos + 2 > limit) throw new Pkcs7Error("truncated DER");
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new Pkcs7Error("multi-byte DER tags are not supported");
  let length = buf[pos + 1]!;
  let header = 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0) throw new Pkcs7Error("indefinite lengths (BER) are not DER");
    if (n > 4 || pos + 2 + n > limit) throw new Pkcs7Error("bad DER length");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[pos + 2 + i]!;
    header = 2 + n;
  }
  const end = pos + header + length;
  if (end > limit) throw new Pkcs7Error("truncated DER");
  return new Der(buf, tag, pos, header, end);
}

function expect(d: Der | undefined, tag: number, what: string): Der {
  if (!d || d.tag !== tag)
    throw new Pkcs7Error(
      `${what}: expected tag 0x${tag.toString(16)}, got ${d ? `0x${d.tag.toString(16)}` : "nothing"}`,
    );
  return d;
}

function oidOf(d: Der | undefined, what: string): string {
  const v = expect(d, 0x06, what).value;
  const parts: number[] = [];
  let n = 0;
  for (const b of v) {
    n = n * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      parts.push(n);
      n = 0;
    }
  }
  const first = parts[0] ?? 0;
  const x = first < 40 ? 0 : first < 80 ? 1 : 2;
  return [x, first - 40 * x, ...parts.slice(1)].join(".");
}

const OID = {
  signedData: "1.2.840.113549.1.7.2",
  data: "1.2.840.113549.1.7.1",
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
} as const;
const DIGESTS: Record<string, string> = {
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};
/** Signature algorithms: the hash they imply, or "" for rsaEncryption (the digest algorithm's). */
const SIGNATURES: Record<string, string> = {
  "1.2.840.113549.1.1.1": "",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
};

/** issuer Name and serialNumber of a certificate, as DER, to match a SignerInfo's sid. */
function issuerAndSerial(cert: X509Certificate): { issuer: Buffer; serial: Buffer } {
  const tbs = expect(readDer(cert.raw, 0, cert.raw.length).children()[0], 0x30, "TBSCertificate").children();
  const i = tbs[0]?.tag === 0xa0 ? 1 : 0;
  return {
    serial: expect(tbs[i], 0x02, "serialNumber").value,
    issuer: expect(tbs[i + 2], 0x30, "issuer").bytes,
  };
}

export interface SignedContent {
  content: Buffer;
  signer: X509Certificate;
  /** Every certificate the SignedData carries (the signer's and any intermediates). */
  certificates: X509Certificate[];
}

/** Parses a PKCS#7/CMS SignedData (DER) with one signer and verifies its signature with the
 *  signer certificate it carries. The certificate itself is NOT trusted here: see chainOf. */
export function verifySignedData(der: Buffer): SignedContent {
  const top = readDer(der, 0, der.length);
  if (top.end !== der.length) throw new Pkcs7Error("trailing bytes after the SignedData");
  const ci = expect(top, 0x30, "ContentInfo").children();
  if (oidOf(ci[0], "contentType") !== OID.signedData) throw new Pkcs7Error("not a PKCS#7 SignedData");
  const sd = expect(expect(ci[1], 0xa0, "content").children()[0], 0x30, "SignedData").children();
  let i = 0;
  expect(sd[i++], 0x02, "version");
  expect(sd[i++], 0x31, "digestAlgorithms");
  const encap = expect(sd[i++], 0x30, "encapContentInfo").children();
  const eContentType = oidOf(encap[0], "eContentType");
  if (eContentType !== OID.data) throw new Pkcs7Error("the signed content is not id-data");
  const wrapped = expect(encap[1], 0xa0, "eContent (a detached signature carries no document)").children()[0];
  let content: Buffer;
  if (wrapped?.tag === 0x04) content = wrapped.value;
  else if (wrapped?.tag === 0x24)
    content = Buffer.concat(wrapped.children().map((c) => expect(c, 0x04, "eContent segment").value));
  else throw new Pkcs7Error("eContent is not an OCTET STRING");
  const certificates: X509Certificate[] = [];
  if (sd[i]?.tag === 0xa0) {
    for (const c of sd[i++]!.children()) {
      if (c.tag !== 0x30) continue; // other certificate formats (attribute certificates) are ignored
      certificates.push(new X509Certificate(c.bytes));
    }
  }
  if (sd[i]?.tag === 0xa1) i++; // crls
  const signerInfos = expect(sd[i++], 0x31, "signerInfos").children();
  if (signerInfos.length !== 1) throw new Pkcs7Error(`expected one signer, found ${signerInfos.length}`);
  const si = expect(signerInfos[0], 0x30, "SignerInfo").children();
  let j = 0;
  expect(si[j++], 0x02, "SignerInfo version");
  const sid = expect(si[j++], 0x30, "sid (only issuerAndSerialNumber is supported)").children();
  const sidIssuer = expect(sid[0], 0x30, "sid issuer").bytes;
  const sidSerial = expect(sid[1], 0x02, "sid serialNumber").value;
  const digestAlg = oidOf(expect(si[j++], 0x30, "digestAlgorithm").children()[0], "digestAlgorithm");
  const digest = DIGESTS[digestAlg];
  if (!digest) throw new Pkcs7Error(`digest algorithm ${digestAlg} is not allowed (SHA-256/384/512 only)`);
  const signedAttrs = si[j]?.tag === 0xa0 ? si[j++] : undefined;
  const sigAlg = oidOf(expect(si[j++], 0x30, "signatureAlgorithm").children()[0], "signatureAlgorithm");
  const sigHash = SIGNATURES[sigAlg];
  if (sigHash === undefined) throw new Pkcs7Error(`signature algorithm ${sigAlg} is not supported`);
  const signature = expect(si[j++], 0x04, "signature").value;

  const signer = certificates.find((c) => {
    const id = issuerAndSerial(c);
    return id.issuer.equals(sidIssuer) && id.serial.equals(sidSerial);
  });
  if (!signer) throw new Pkcs7Error("the SignedData does not carry its signer's certificate");

  let signedBytes: Buffer;
  if (signedAttrs) {
    let contentTypeOk = false;
    let messageDigest: Buffer | undefined;
    for (const attr of signedAttrs.children()) {
      const [type, values] = expect(attr, 0x30, "Attribute").children();
      const oid = oidOf(type, "attribute type");
      const vals = expect(values, 0x31, "attribute values").children();
      if (oid === OID.contentType)
        contentTypeOk = vals.length === 1 && oidOf(vals[0], "contentType") === eContentType;
      if (oid === OID.messageDigest) {
        if (messageDigest !== undefined || vals.length !== 1) throw new Pkcs7Error("several message digests");
        messageDigest = expect(vals[0], 0x04, "messageDigest").value;
      }
    }
    if (!contentTypeOk) throw new Pkcs7Error("the signed attributes lack a matching content type");
    if (!messageDigest || !createHash(digest).update(content).digest().equals(messageDigest))
      throw new Pkcs7Error("the content does not match the signed message digest (tampered)");
    // The signature covers the attributes DER-encoded as a SET, not as the [0] IMPLICIT tag.
    signedBytes = Buffer.from(signedAttrs.bytes);
    signedBytes[0] = 0x31;
  } else {
    signedBytes = content;
  }
  let ok = false;
  try {
    ok = verifySignature(sigHash || digest, signedBytes, signer.publicKey, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new Pkcs7Error("the signature does not verify with the signer certificate");
  return { content, signer, certificates };
}

// ---------------------------------------------------------------------------------------
// Trust: a path from the signer certificate to an anchor.

function validAt(c: X509Certificate, now: Date): boolean {
  return Date.parse(c.validFrom) <= now.getTime() && now.getTime() <= Date.parse(c.validTo);
}

function issuedBy(c: X509Certificate, issuer: X509Certificate): boolean {
  return issuer.ca && c.checkIssued(issuer) && c.verify(issuer.publicKey);
}

/** A chain from `leaf` to one of `anchors` (any anchor, root or intermediate, ends it),
 *  through CA certificates of `pool`, each valid at `now`; undefined when none exists. */
export function chainOf(
  leaf: X509Certificate,
  pool: X509Certificate[],
  anchors: X509Certificate[],
  now: Date,
): X509Certificate[] | undefined {
  const anchorPrints = new Set(anchors.map((a) => a.fingerprint256));
  const walk = (cur: X509Certificate, path: X509Certificate[]): X509Certificate[] | undefined => {
    if (path.length > MAX_CHAIN) return undefined;
    for (const a of anchors) if (validAt(a, now) && issuedBy(cur, a)) return [...path, a];
    for (const c of pool) {
      if (path.some((p) => p.fingerprint256 === c.fingerprint256) || !validAt(c, now) || !issuedBy(cur, c))
        continue;
      if (anchorPrints.has(c.fingerprint256)) return [...path, c];
      const found = walk(c, [...path, c]);
      if (found) return found;
    }
    return undefined;
  };
  return walk(leaf, [leaf]);
}

function parsePemBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

const pemBundle = z.string().refine(
  (s) => {
    try {
      return parsePemBundle(s).length > 0;
    } catch {
      return false;
    }
  },
  { message: "attestation_cas must hold PEM certificates (-----BEGIN CERTIFICATE-----)" },
);

let builtIn: { anchors: X509Certificate[]; intermediates: X509Certificate[] } | undefined;
const configured = new Map<string, X509Certificate[]>();

/** The built-in trust: Azure's roots from Node's store and Microsoft's intermediates. */
export function builtInAttestationTrust(): { anchors: X509Certificate[]; intermediates: X509Certificate[] } {
  builtIn ??= {
    anchors: rootCertificates
      .map((p) => new X509Certificate(p))
      .filter((c) => AZURE_ROOT_NAMES.has(commonNames(c.subject)[0] ?? "")),
    intermediates: parsePemBundle(MICROSOFT_INTERMEDIATES),
  };
  return builtIn;
}

function trustFor(spec: AzureTokenSpec): { anchors: X509Certificate[]; intermediates: X509Certificate[] } {
  if (spec.attestation_cas !== undefined) {
    let anchors = configured.get(spec.attestation_cas);
    if (!anchors) {
      anchors = parsePemBundle(spec.attestation_cas);
      configured.set(spec.attestation_cas, anchors);
    }
    return { anchors, intermediates: [] };
  }
  return builtInAttestationTrust();
}

function commonNames(dn: string): string[] {
  return dn
    .split("\n")
    .filter((l) => l.startsWith("CN="))
    .map((l) => l.slice(3));
}

// ---------------------------------------------------------------------------------------
// The token resource and the method.

const ruleValue = z.string().min(1).max(256);

export const AzureRuleSchema = z
  .strictObject({
    /** The subscription id (a GUID); `*`/`?` globs allowed. */
    subscription: ruleValue.optional(),
    /** Resource groups, any of which admits (globs, compared case-insensitively). */
    resource_groups: z
      .union([ruleValue, z.array(ruleValue).min(1).max(64)])
      .transform((v) => (Array.isArray(v) ? v : [v]))
      .optional(),
  })
  .refine((r) => r.subscription !== undefined || r.resource_groups !== undefined, {
    message:
      "an azure allow rule needs subscription or resource_groups; an empty rule would admit every Azure VM",
  });

export const AzureTokenSpecSchema = z.strictObject({
  /** The Entra ID tenant (directory) id whose managed identities may join. */
  tenant_id: z.string().regex(GUID, "tenant_id is the Entra ID tenant id (a GUID)"),
  /** The access tokens' issuer, found through OIDC discovery (default
   *  https://login.microsoftonline.com/TENANT/v2.0, also accepting the v1 issuer
   *  https://sts.windows.net/TENANT/); set it for sovereign clouds. */
  issuer: z
    .string()
    .refine(
      (s) => {
        try {
          checkKeyUrl(s, "issuer");
          return true;
        } catch {
          return false;
        }
      },
      { message: "issuer must be an https:// URL (http:// only on loopback)" },
    )
    .optional(),
  /** The access token's audience, the resource the VM asks IMDS for (default: the
   *  service's public URL); in Azure, an application ID URI registered in the tenant. */
  audience: z.string().min(1).optional(),
  /** PEM certificates the attested document's signer must chain to, replacing the built-in
   *  trust (Azure's roots and Microsoft's intermediates). Every listed certificate is an anchor. */
  attestation_cas: pemBundle.optional(),
  allow: z.array(AzureRuleSchema).min(1, "an azure token needs at least one allow rule"),
});
export type AzureTokenSpec = z.output<typeof AzureTokenSpecSchema>;

const ProofSchema = z.strictObject({
  challenge_id: z.string().min(1).max(128),
  /** The attested document: base64 PKCS#7 SignedData, as IMDS returns it in `signature`. */
  document: z.string().min(1).max(12_000),
  access_token: z.string().min(1).max(8192),
});

const DocumentSchema = z.looseObject({
  nonce: z.string(),
  vmId: z.string(),
  subscriptionId: z.string(),
  timeStamp: z.looseObject({ createdOn: z.string(), expiresOn: z.string() }),
});

/** IMDS time stamps: "MM/DD/YY HH:MM:SS -0000". */
function imdsTime(s: string): Date | undefined {
  const m = /^(\d{2})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(s.trim());
  if (!m) return undefined;
  const n = m.slice(1).map(Number);
  const offset = (m[7] === "-" ? -1 : 1) * (n[7]! * 60 + n[8]!) * 60_000;
  return new Date(Date.UTC(2000 + n[2]!, n[0]! - 1, n[1]!, n[3]!, n[4]!, n[5]!) - offset);
}

const bad = (message: string) =>
  new JoinError("bad_request", message, "Join with idbot join --join-method azure on the VM.");

function issuersOf(spec: AzureTokenSpec): { discovery: string; accepted: string[] } {
  if (spec.issuer) return { discovery: spec.issuer, accepted: [spec.issuer] };
  const v2 = `https://login.microsoftonline.com/${spec.tenant_id}/v2.0`;
  return { discovery: v2, accepted: [v2, `https://sts.windows.net/${spec.tenant_id}/`] };
}

/** /subscriptions/SUB/resourceGroups/RG/providers/... */
function resourceParts(id: string): { subscription: string; resourceGroup: string } | undefined {
  const m = /^\/subscriptions\/([^/]+)\/resourcegroups\/([^/]+)\/providers\/.+$/i.exec(id);
  return m ? { subscription: m[1]!, resourceGroup: m[2]! } : undefined;
}

function evaluate(spec: AzureTokenSpec, claims: Record<string, unknown>): RuleVerdict[] {
  const subscription = String(claims.subscription).toLowerCase();
  const group = String(claims.resource_group).toLowerCase();
  return spec.allow.map((rule, index) => {
    const fields: FieldVerdict[] = [];
    if (rule.subscription !== undefined)
      fields.push({
        field: "subscription",
        want: rule.subscription,
        got: String(claims.subscription),
        ok: globMatch(rule.subscription.toLowerCase(), subscription),
      });
    if (rule.resource_groups !== undefined)
      fields.push({
        field: "resource_groups",
        want: rule.resource_groups.join(", "),
        got: String(claims.resource_group),
        ok: rule.resource_groups.some((g) => globMatch(g.toLowerCase(), group)),
      });
    return { index, ok: fields.length > 0 && fields.every((f) => f.ok), fields };
  });
}

async function verifyDocument(spec: AzureTokenSpec, document: string, now: Date) {
  const der = Buffer.from(document, "base64");
  let signed: SignedContent;
  try {
    signed = verifySignedData(der);
  } catch (e) {
    // Pkcs7Error, or a certificate node:crypto cannot parse.
    if (e instanceof Error) throw denied(`the attested document is not validly signed: ${e.message}`);
    throw e;
  }
  const names = commonNames(signed.signer.subject);
  if (!names.some((n) => ATTESTATION_SIGNER.test(n)))
    throw denied(
      `the attested document is signed by ${JSON.stringify(names[0] ?? signed.signer.subject)}, not metadata.azure.com`,
    );
  if (!validAt(signed.signer, now))
    throw denied(
      `the attested document's signing certificate is not valid now (${signed.signer.validFrom} to ${signed.signer.validTo})`,
    );
  const trust = trustFor(spec);
  const pool = [...signed.certificates.filter((c) => c !== signed.signer), ...trust.intermediates];
  if (!chainOf(signed.signer, pool, trust.anchors, now)) {
    throw denied(
      `the attested document's signing certificate (issued by ${JSON.stringify(commonNames(signed.signer.issuer)[0] ?? signed.signer.issuer)}) does not chain to a trusted CA`,
      "The document was not signed by Azure; an operator whose Azure chain changed can list the CAs in the token's attestation_cas.",
    );
  }
  let doc: z.infer<typeof DocumentSchema>;
  try {
    doc = DocumentSchema.parse(JSON.parse(signed.content.toString("utf8").replace(/^\uFEFF/, "")));
  } catch {
    throw denied(
      "the attested document's content is not the expected JSON (nonce, vmId, subscriptionId, timeStamp)",
    );
  }
  return doc;
}

const KEPT_CLAIMS = new Set([
  "subscription",
  "resource_group",
  "vm_id",
  "resource_id",
  "tenant_id",
  "principal_id",
  "client_id",
]);

export const azureMethod: ClaimJoinMethod<AzureTokenSpec> = {
  issuer: (spec) => issuersOf(spec).discovery,
  async check(spec, proofString, ctx) {
    const now = ctx.now ?? new Date();
    let raw: unknown;
    try {
      raw = JSON.parse(proofString);
    } catch {
      throw bad("the azure proof is not JSON {challenge_id, document, access_token}");
    }
    const parsed = ProofSchema.safeParse(raw);
    if (!parsed.success)
      throw bad(
        `the azure proof is not {challenge_id, document, access_token}: ${parsed.error.issues[0]?.message ?? "invalid"}`,
      );
    const p = parsed.data;
    if (!ctx.store || !ctx.tokenName)
      throw new JoinError(
        "bad_request",
        "an azure proof can only be checked by the service that issued its challenge",
      );

    // The challenge: issued by this service for this token, unexpired. Its single use is
    // enforced by the replay table (the nonce is the replay key), across replicas.
    const challenge = await ctx.store.getChallenge(p.challenge_id);
    if (!challenge || challenge.tokenName !== ctx.tokenName)
      throw denied(
        "the challenge is unknown, or was issued for another join token",
        "Request a challenge (POST /v1/join/challenge, join_method azure) for every join.",
      );
    if (challenge.expiresAt <= now.toISOString())
      throw denied(
        `the challenge expired at ${challenge.expiresAt} (challenges live 60 s)`,
        "Answer a fresh challenge at once.",
      );

    const doc = await verifyDocument(spec, p.document, now);
    if (doc.nonce !== imdsNonce(challenge.nonce))
      throw denied(
        "the attested document was made for another challenge (nonce mismatch)",
        "Fetch the document with the challenge's nonce.",
      );
    const created = imdsTime(doc.timeStamp.createdOn);
    const expires = imdsTime(doc.timeStamp.expiresOn);
    if (!created || !expires) throw denied("the attested document's timeStamp is not in IMDS's format");
    if (expires.getTime() <= now.getTime())
      throw denied(
        `the attested document expired at ${expires.toISOString()}`,
        "Fetch a fresh document for every join.",
      );
    if (created.getTime() > now.getTime() + LEEWAY_SECONDS * 1000)
      throw denied(
        `the attested document was created in the future (${created.toISOString()})`,
        "Check the clocks.",
      );
    if (!GUID.test(doc.subscriptionId)) throw denied("the attested document's subscriptionId is not a GUID");

    // The managed identity token: the tenant's, for this service, in the attested subscription.
    const { discovery, accepted } = issuersOf(spec);
    let iss: unknown;
    try {
      iss = jose.decodeJwt(p.access_token).iss;
    } catch {
      throw denied("the access token is not a well-formed JWT");
    }
    if (typeof iss !== "string" || !accepted.includes(iss))
      throw denied(
        `the access token's issuer ${JSON.stringify(iss)} is not the tenant's (${accepted.join(" or ")})`,
        "Use the managed identity of a VM in the token's tenant.",
      );
    const token = await verifyIdToken(p.access_token, {
      issuer: iss,
      audience: spec.audience ?? ctx.defaultAudience,
      keys: ctx.jwks.forDiscovery(discovery),
      now,
      requiredClaims: ["tid", "xms_mirid"],
    });
    if (String(token.tid).toLowerCase() !== spec.tenant_id.toLowerCase())
      throw denied(`the access token is from tenant ${JSON.stringify(token.tid)}, not ${spec.tenant_id}`);
    // xms_az_rid names the VM when a user-assigned identity is used; xms_mirid the identity.
    const resourceId = String(typeof token.xms_az_rid === "string" ? token.xms_az_rid : token.xms_mirid);
    const where = resourceParts(resourceId);
    if (!where)
      throw denied(
        `the access token's resource id ${JSON.stringify(resourceId.slice(0, 300))} is not an Azure resource id`,
      );
    if (where.subscription.toLowerCase() !== doc.subscriptionId.toLowerCase())
      throw denied(
        `the managed identity (subscription ${where.subscription}) is not in the attested VM's subscription (${doc.subscriptionId})`,
      );

    const claims: Record<string, unknown> = {
      subscription: doc.subscriptionId.toLowerCase(),
      resource_group: where.resourceGroup,
      vm_id: doc.vmId,
      resource_id: resourceId,
      tenant_id: String(token.tid),
      ...(typeof token.oid === "string" ? { principal_id: token.oid } : {}),
      ...(typeof token.appid === "string" ? { client_id: token.appid } : {}),
      iss: "azure-challenge",
      jti: challenge.nonce,
      iat: Math.floor(now.getTime() / 1000),
      exp: Math.floor(Date.parse(challenge.expiresAt) / 1000),
    };
    const verdicts = evaluate(spec, claims);
    return { claims, verdicts, allowed: verdicts.some((v) => v.ok) };
  },
  // For explain's unverified fallback: one plain rule per listed resource group.
  rules: (spec) =>
    spec.allow.flatMap((r): Rule[] =>
      (r.resource_groups ?? [undefined]).map((g) => ({ subscription: r.subscription, resource_group: g })),
    ),
  globFields: "all",
  keep: (c) => pick(c, KEPT_CLAIMS),
  subject: (c) =>
    `subscription=${String(c.subscription)},resource_group=${String(c.resource_group)},vm_id=${String(c.vm_id)}`,
  shownClaims: ["subscription", "resource_group", "vm_id", "resource_id", "tenant_id"],
};

// ---------------------------------------------------------------------------------------
// Microsoft's intermediates for Azure TLS (https://learn.microsoft.com/azure/security/
// fundamentals/azure-ca-details): "Microsoft TLS RSA Root G2" (issued by DigiCert Global
// Root G2) and the "Microsoft TLS G2 RSA CA OCSP 02 ... 16" CAs it issues, valid to 2029.
// They only help build a path: trust comes from the roots above (Azure PKCS#7 documents
// usually carry only the signer's certificate). The e2e test checks each one still verifies
// against Node's bundled DigiCert Global Root G2. Microsoft rotates intermediates without
// notice: when a document's chain fails after a rotation, list the new CA in attestation_cas.
const MICROSOFT_INTERMEDIATES = `
-----BEGIN CERTIFICATE-----
MIIFiTCCBHGgAwIBAgIQCwxrLEZpF7BHc8ZH1K/AyDANBgkqhkiG9w0BAQwFADBh
MQswCQYDVQQGEwJVUzEVMBMGA1UEChMMRGlnaUNlcnQgSW5jMRkwFwYDVQQLExB3
d3cuZGlnaWNlcnQuY29tMSAwHgYDVQQDExdEaWdpQ2VydCBHbG9iYWwgUm9vdCBH
MjAeFw0yNTA1MjEwMDAwMDBaFw0yOTA2MTkyMzU5NTlaMFExCzAJBgNVBAYTAlVT
MR4wHAYDVQQKExVNaWNyb3NvZnQgQ29ycG9yYXRpb24xIjAgBgNVBAMTGU1pY3Jv
c29mdCBUTFMgUlNBIFJvb3QgRzIwggIiMA0GCSqGSIb3DQEBAQUAA4ICDwAwggIK
AoICAQDf6oufR+EoEHGvQdYZ25JX3mur5i7erTpgg7cTmKxbuTILe+ufcidrXUCr
vhgGk7IN0hLtuHT1fy/qqBeU9jMWV4reIHwh3bfarN5OZLBazUt18+8CZE3tUtqj
jwTokfjX+z8Z/U5FOV7oKcPW8mevswCUwY3h8EoYmDn6wAmEM0EFAwWr9HXhU6Uh
klxETOZgV6SQApfH1diTBDJK7YVR7dbFuqA/Noovb0w5qARpIoQ7dRT32T60qdAH
QTiBfkZIHegZ5nC4oKoY3XK/fn21bE4ZcBGEBBOB1GL9nGvxHN3/7Kfg5seNMUu/
8mszzNGMtv6xG6NKqF8OfzF2OD8HR2wBqKylFNqCsF8fbLyJGsASKst7lx8oLjEW
ilNMdWb5fQHWwmCqZY8xnnLLzJst5UQZk1erbo7C2S5lsHIt56HDoX5JHVln1gnU
GBJtwJVFeMnxYGrk9u4GJDtzSloRwj6XYcB47u8TpzDiSjgt7lgXEyC3NirfCzK0
wjixkd0SsEW2fMCxHWKhnd1xEhWWAZ0KCfWx3bPZ4DhCNPZptsOvFnP+1EP4Q+RY
+U+z8+zWPZQ6QDgVqwyG0GTOGmPohJRVCVq2BLbRPpoVx2QRgNAbgg5N/0WesmUH
JR/bmsjG7NZbhVAEnxzLXSCCZ5554t/o8uhvxCByMIblnXUnNQIDAQABo4IBSzCC
AUcwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQU3pGGSLehMVkx8UtfB6nciHna
qHYwHwYDVR0jBBgwFoAUTiJUIBiV5uNu5g/6+rkS7QYXjzkwDgYDVR0PAQH/BAQD
AgGGMBMGA1UdJQQMMAoGCCsGAQUFBwMBMHYGCCsGAQUFBwEBBGowaDAkBggrBgEF
BQcwAYYYaHR0cDovL29jc3AuZGlnaWNlcnQuY29tMEAGCCsGAQUFBzAChjRodHRw
Oi8vY2FjZXJ0cy5kaWdpY2VydC5jb20vRGlnaUNlcnRHbG9iYWxSb290RzIuY3J0
MEIGA1UdHwQ7MDkwN6A1oDOGMWh0dHA6Ly9jcmwzLmRpZ2ljZXJ0LmNvbS9EaWdp
Q2VydEdsb2JhbFJvb3RHMi5jcmwwEwYDVR0gBAwwCjAIBgZngQwBAgIwDQYJKoZI
hvcNAQEMBQADggEBAAu8tCs3dMVLpzYCNsav4RPMipqXG/zjRIzuVADl5EEaRvAL
djT/mVViNaqtipwMWmLMQ8DL6kodvWsdr7EZJWac93luWyWAJIGFx3ktNV9CCXjt
n+Jl1cQgUIIQj2o67RiOSImrpgn44YD8BnUWJyVaj7g6cGwYR/Bj9FMO2RU1IPOR
PRMBoOL6JAhFVnfRZ6kxQtBX/xomvsVD2FepY/+v8zrY9ntLEKKXoc9mvmdnCfm1
TOerGSu/Ij193sb372M4LN1WxPkJUtrf44hv1W1r9whBL44+hjGf8XxK9dZhpEZG
KO9XurBvktjSdyXte6YpzjtyeRHU4KdUbTUrpHo=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAAAxJZKFvRCA7IgAAAAAADDANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgwMTIw
MDMwMFoXDTI5MDYwMzIwMDMwMFowVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAwMjCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBALFf
yY9swhGdLUa31wstRz9z5Kg7nDbxaCBFQF5wYUrMSZceyBaSsy13mG08dhwgisMv
DGOfv69rBwYah+MKkNaUAN7gHXT1xc44NZMg+QhaZqjbsyA0nUOFRRIIF3ClrguD
qttEyOtoR1WahF3ZqRjCUoahH2JAZa7U81468pFe21rbtaROBWKY7N0Voa+FJ8ZL
rDKswmimzMnSfTdrxhCQBXkivGPm2X7ZwxCMknFtfeJ2FD0Ki8sjYBC4GBl2xOKh
dtoBzYO9Ae3YGK9XQu4Nha6pkhh5ywEzxk6CbETWKfTPxlF+4ZFi+Iyo6tr5QKBY
yHhumjrUQOdQGMmZHupCPme+dwWLnBsIthM85cE8p4yir0mhkUVlMZgDwPUhu8QP
3x4DFqW+OHlq2puE5aOXX4d3ypb/u1H47yEkwuK1fDl7ROViyRaIHNsTIuz4trEc
AFVOPpZ63AwFHI3jXiMALVv/4lWAQYU2lTD1mZO3buY0RbwzlYZzCimVwZdX1dbu
n8F0w8WgYj530r1tEONpi36oUbDYSsNBvqhP2mrDWCUWHFk8rQ113LE/VRzRdguI
56IxJQN7UUxZKzf+lSRUQqu6J1874QcvdqDAy8t2kR6dpuf9SkDi1I+hPbqGRJ1p
2Bkji1+hg+VlV4tN1nykYypkQ1RHhS8EsKrBL0o/AgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFLgvM6Z8UU9/
Hy3VyBVCOKSyDo8vMBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBACGusqgM8zXYTiHTNvrDXqobFI9g
GF1dNgkZIizyNNI8EMiG/fq7bhDwbokxZH2xDIfoNgtGI8r88DX8dQV3aUm07IKW
lu/qV9VJO8gF5/GyxHrgxCvW/IXBoJNnHGLyCWH6rJjuwG3cGIPYplNMUfRnyGCk
SYR1qcRW0Dx5OTh/JlrXAy7/UJIBU9COSAlKv1APr49CYz4iYl25la+tEonWkVE2
qZHrnRuCxyOR7mYlQWKIzdkQVnChmsvzjEjgkW3qv4dHGvanfUeKlou+t0tm4MB7
rm2wmTV4ydACIEzKDnV40wNz7JFHAgJ6KtGDk8KfhIk1Nn2iRPxzo34EIBWL9uuU
E6C3le07w3Z1LoABEJ2vYMKPFVUwG7v4A1+Y5QQtGrGs9NrpHA6QGOkOypPIyHp/
hoZ2Gp3WkyN5UXNDKJIGmE/clGQt86/K3MqZ9RiwwnHYM0+IO/KTinNTSbW+ZhMg
Fxki/Ug55kLA33b4T+cT6HUXWr5yM9iLAW3oyxTIhld1nD5esMt70bNF7WgLW0AA
txkxhDYDmKQ3oyHrrGPZWLz4N7wxHCZbyHbDgjCyiPYujpqsQ6fxthalQtkV6ycu
GLP2sZhSv89myfSgfHkwtcr7bRL0my0R94CXneQhqcXG3undRwlgikU9gfiuTaZG
h8VmoQHGVMiqVtXE
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAAAsT5WZ9SptVgAAAAAAACzANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgwMTIw
MDI1OVoXDTI5MDYwMzIwMDI1OVowVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAwNDCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAJw6
JAhaGJLyntVgzeLm+4BH20SuK91tEHAhFUUpqtLH3ObEQrGgjVLgT1w5VQY2TRfB
WGY04oVSn+Kk/sbewsI7hr/KrYcpBusdSR1fgdu3pKxWGtYSh/1fQEnioAxqhMZO
b98kuJqVdFpZf63pPBMVeEDM7NrviDZKkN7qYweUw4NqGq6Y5vFkgFopZwToVvQh
psVGjcjdAqu8BvBsR3gjuziwu/tNcbDfIsN/Gn75napBKtHeaN2VdCU4ZskWEcVZ
PSqxaLmTO2boPOH8p/8sa1DgwLnIcXOTsXe/7apNDgpV2xOccuBprYFM2iP5Bss/
7UKKhowN0gwVJdCGaOt4VqouXAizTTOATu41PC/Den3BZnJgaJD06/YI7BPXiZJf
XFL0h5V4sTbhs0JTbjo3NwfIc3Ueu11uZ8mafMtK88bN8E71hvsUNRlGPZeGcmTd
Qzbv1FeCACIMozrts2VwZfmCpbq40urAaIo1N6BA9f4CiWaoMPiUR2JXR7J7m4zH
lbzrmvbGjESJ2xbmHv3nifyBNTUw6i99iWRSs0YZNOM7V08KGCAx78X9ubEn9pdZ
NfsKwkTW0LLtVU0dV0h1EtfymGAWnsQGnNSufi5lx1PkIiUYMGNqkFfFlLT35U1M
DVTHH6k9TQpGCWLQIyJR4443TMX0AUCZBYLTorBTAgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFFQMvOwY933x
A+KEvjRkRGfPdR9lMBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBAHxIccK2wEWrdA/GP0ni/A/Wdf3N
UNHgS7Oz0aiZX/5dNQ1sC93QrWFgGIk44vC3NdK1IToMDliZOHzU190CTdTc9e6Q
43tnk6is1BtQu8VP5tPxtR7w/5m8IzOwyKimJ9bRW+1vFN5LBxoMUP0O377rT7KY
EMsiKuYd10unrhXRATYJC4ZDT07nxX5co2uDLkk+lIiZi1LTlj9xmCQvN4L6bHTy
vNsGIbu4UGdwJBW2CyKP97kn5AN8hJW3ZgSpklXCvRHHIQpyf2XAYKZQSen2I0gg
Oo6SJqgXjJivFKc9zkytwI6MPETxf/sT+RTXezM9EF5k5yc9DEzicddmzq73TrZk
ulQrt/0D15hnmDeyCmMg5bD72KSNOi5CIpoi9CZVgzAVx6JCs7/QNsU2UqdzZ3pz
blSsvOmJ2KXrH22sJ1DEyOvUHFQpTbu23qvXx/EfFGS6f0cxZe95fRTE8BnkgHbn
OygAm0RvJFf1B9yOWrQAWJdWsQv6CHVx3htTyO698KsiTL1rul2KRFk8JGuqvOl9
i19KTdeMVLCrdpuAKE1FdGUQYCH5jnlf2pL7F4QA28SuglmBPCd3nlb3B8i9vj2R
xZeK5pwPWRZYSGx9pBYy7RbJLaeW9eT9xc9lpN3XAOjJDvSdsqQCgMwb8CjrsDF3
NJ7DzNfImza7xSXi
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAAA3vac0tciNzVgAAAAAADTANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgwMTIw
MDMwMVoXDTI5MDYwMzIwMDMwMVowVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAwNjCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAMA6
3O0lAmKs1KFQsHRLSvpoHnItA3OBYhuwcRTjN+/jZp2gCThyItWRknozQ1z2e3ku
VknTIZzBVzgMAbMC5vGd1WNYEatYL2jU+9MtrLUKJyVpCEkGFavOSHJh/7y0wNJd
MdGceI32eNhzOjJjg7BuvwRreP7wop6GJOQ0qMX/aFwgk63E9AbzyEwqaBMR3GjJ
eTvmzs6k6TgXpT0nxP6mtVkK6bL+AmR5pm+6SKwr0dFJszzpn18qFsep36B1IaPD
jf9/vnjnCplS96Yni2wPSLmEAgSnIw677sQKlwjcWZw9Hsr/h3KUn3EewxdQItrq
5Ss1hYNd/ILa7oGzwkf6Z0KyK2UvYxjWTNzdun3nvfXhqWOKUqde1S3nIh46tCQz
m3jlEKKQd/YBBziZfHABUYrs2X859cEihTJENpRXJcwOnr5/fz78ZntgsCGpzepk
inb9QoxGwiU4fhAEZ1sjPnILE64/6mbRfH79nkl1runTkuDJfRMUGtWtKUI+8Rkr
Ji5x7sACp2nPYY/d631rda0pmRzmSbqPuma5thB96714U3d28epdz8Pu6xudP31c
YX0WF6UGuxocZtUZtrbzoQ9m0dBtdC3tD/pnbO6Kk1oJ1AlwKjLNWhj77HkauWon
Ah1b6vznIL614ukB0lg3xXOjNcwxaUqKa5te1Ea9AgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFAxda81KNAFg
NDQkAeA/UAWD66hFMBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBAMN7IRVg4E0mXAS3hbmC1eXyI7Vc
ZEHqZawlEK8DD8wM8pQnws+95Pd7kRhqie7pyibPRXbGtdHtScqOkE7bbjmrGKe+
GdG6wLUP8TD02NaPmho9pqumBRz2PoXwyNztvgooOywDxDXAxtGVV0vKc7tPYCbb
3KAHZJkJM6Kuee9DWVwEmhsiXryZjsGwBD7fEoXcC8BOtwekpZiu9SWM5ETTFRyr
tIUgy2S2IYSI6yxgska7/NTJuc6yjfs71c6QO8KJ+Bz1yoepefpVuZ4t269mej8k
jE1ri+3tKa4iNlCBVpLk9moe0Jtir267WQk46CjJd5VuUw79Q+rkupbTM0hoIIdA
GUeWhPBooyuE6CP6vpmyhGQooYCeUk3CGG8zkv+yhGjyoM/sCu54OfqxoMukmeut
eMn9FRVD5FyltEZ5FZ2p7p+aGqjsg5poy5fLyl4qfAEDhKdM7ZLqy6D4Is6POqof
fdRfQ+r3VVvXI9dHr4o49zMQVgUUV/la+kOWk+WqNZrh+aONK09gs2fReMK8xExF
ntTP6qV5mbRsgKxea/w+jLWTYyHLdPOsA1OaifWGVBNIzlaH5wrWhyoRwRKb+1I0
2sBzhfNVJf8gDI/lxJEpPTgIjMTm97Q+KW8C1QMprzVbUWVisUMp0Azxm+ZE4PoM
KWDfAOw0TwsQ6jyn
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAABHxAKfrBeuhAAAAAAAAETANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgxNDIz
MDM0MFoXDTI5MDYwMzIzMDM0MFowVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAwODCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAOdW
tSZphPC6ib4yyTEHy9WgBJ0sdgI+X31mtN8N9QouoqaVVKURKVPbfJnmmZMuD/n4
hedo1DDxuO5qc1bEfF1hWbiltLwGE+cttQqPyzgu4KYhnj8buvoj4kVElrXgc+9n
qTJ5LeHIdeMCGKMbAgmjVlNrw8mq5PX1n3iWg9dZIcBe/wDsEcG7h+MFxsrZ4Ebu
sNZuxBGjo8O2xIkJi76spN1iTDG4jhrTOQU7viUCzVAWAPnV0/AQbRXCtgz0hozA
46d0+vdh99UDO3MAaqtHU60TQzFovz3HJJ6eGVRh11oIT4JFchuYPZcAF8JfiF6W
PaW8ihg4lXRGbijiy+OnT9Cs26Mga6PyfyiIW3MQ5MKwN9zL5q1J0gZjhTqd8h+5
+/QlptCMhuoVkc/UGsvVOVtlKbdn5cp5QK3xVN40z+o+Yh5Qh2RHizK1aXFkU6E7
K6yGLtIevJCaQjAoTrGj4JnphmqU7k4Fx1MwxV/gpvkJh3bml5SUck+F6QHZc44K
lTFgJB4a94tTD7LbbysFNXtnBFlD9/rOJB9lj1wL2yzPRe7kcgUay0Is+ZAa22bK
7y0JhD7sN8K+DqmU/Q8NliECD65IDH0MzPyhleKes5zDL1TC79p7NGoMZk/uKlcL
VKETn1u878Zjj5YwFLyiQT76L4zI887/da70Q2cBAgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFA+yMoDtf4qc
AIQ45tjX9nCFd+16MBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBALH1cTiVRvY627z2zjtZPaftzKA5
tsGFiJF2d9OJZv6EHbZzPq9z5lcSX9YgzWfHecgBO1xNCfP/tmgt4gGWC31L42Hm
AwjXsYB6kZsumOjCEsaVff4o+6dvsVUwjrEmC3Bd3Szmyl5++1ZVIV53mxSLxBOJ
QvpYuwzdC/r7+JO/mB8OmkUPzpXM0MSWtElZE/e6gpcNBnI/y2EU00OhsB+zzQ0H
Kc0Dzk/Qc+P3B1A/xD5ER97Tj14NUz+KfMIIiY5QK6QnoqcrXHdXcXbGCUFixztD
rcVFsc4nazkf8I8QXba4hBm6xetE/7/KIoV0bLEjiP0GtHOEh/u3OSUaVUerdsog
rFnTLeBDyQ6GuTDOl8m/01f8ZRDDnayFpjT8JxfxeKhCXGW/avXsEr3orIzGr720
WtESmCwsBdPcXwCo6kqzkMNfDk/MGEffOR8w0tHK4IjBYIB2Whh82HX412gslYYc
GfzRoQCQ++/ZZuEeog+c0mWCb59zaAm1772pxD7C0DRtUrCp/lrFWMmga9561S7G
8duFJgbXoOQhfKVE8mrfesrsr5S5hKIVABr1Mgi7XeJePfcEV4qv5+ZHcW8sdFrB
o00ACacNAf4Ys3p/x756lhnDffgY8WA9vST4dIn9WPfBLxE8odWUOUASpReiKbB6
y/9qbWptUU9CiA3R
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAAA8zIGU37kKuTwAAAAAADzANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgwMTIw
MDMwM1oXDTI5MDYwMzIwMDMwM1owVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAxMDCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAPAM
T1tf/EIctM4/9QcrpoN+yZ15z/bprKV3wzep+vcH9S2Y+BFm60IqDtLRBhn2dxNf
hOzWUZNsIeMOhab/0uz9JIK9BPnvjePhxd110ASaThQ2GfstEqMVwPNvakTVcWzx
S5gbeTD3nBe/fTIJOVs2jKAIu0AslinufL0O+OxtzsFOdsFYLk4ymsd8y8e/t133
NVR4zLGHugXFNQFwBMPoXfixtN9HzUxmmuhn1J4eoCEfM0cFO0QIz2uIUlkyePVB
jiUu0AINAc929y005GedaLGAtk1SsyCXK6VTjHeVtXOAzYj/2pc24+dvMqB18bu/
+jxlqzYRv3b9R/9sh2C+DOXqlvULojcnANHnAjAB1YABwpDO77Pr03hgvgo/+2zG
wtGrJxcXCYR5kUKOdmg3EZvOx3Ypv9Vc4nwNX2dS/W05+lEt37KIA/FhIKr4tLKf
0/oosLWn44O6+kQ7d9yiLCvo4lOImvsMIN6ie06AkHEbfJfU2/w9msGh3urnrkzl
rq92rIfNZLyiNBrTZsNrYXyb9eZZefuADhZrwPEp9O2dl446xCmTBzT/4r+tmlkl
m4YdQ37LbpX1juCpi1eATgvmYH3ASdUEvCDKBNJc6j+MSX8dubpgbde0ZLNcNOo4
8/nB+KkLfrr10fx6G3/bCGV9w5cF7K8vx94M+rI/AgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFNBMg9GOcS49
NLH/m3ksjnTU4ngGMBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBADUZyumodeHYyv0lwTtS4eeeK5Ti
9DrST9oGIlIaARjjorq3txwkMnUNZ0R9nUqCS/rjROlG9gBFCcJS6Wcll8e3i1p3
fEAelOO8jG04KbwnfRISPcvL5MRG4qUBwBDRIPoOA+RD2yaHJazIoLMEal7wQz8P
e/XOI8O3yb773pt9k7OHPt/G2z3J9KxxANKkZYE2WZ8cNuWJ0XqZSntVS8LVjNB5
AXmVDzlDi7MKe5LVWhAYdukdDW8yMfS90RbxqKNn8g6acAzjlq8D9G29FHlqNsPx
tnO7xgvVJkaIVEVwqswfPYtv4+QXpoEA+32DWIDi8jw7oxhiEzZn/0/i5W9qZ+bo
WmQ6oEWdPxcMZofwgSc0ILA1JGQodkN6dJjiK4AJCrywuQdHKSgufeB3QaSMNni6
Mx1WjtkQNYlZgwBpzrd4ve2vgj/OyIkymFkIXeEBlljEZRl9JoWdEJbllcURzoJv
FwZxFQ8svzcyUhVotJWOU12X7ePbEz7BMbF5k3N9cjsbTE8GSRWEc/MdWlEspNRY
4Bm/NUgpYJmr6ntCA76cPRn3R1sLrIJXqg29/yJgMN8sT1fTJdXa/Y4GUU4FNXiY
OKMnMW8xmqmqTaw6RGhgcGj0U2vNsi2uJhiH34xXtfhSwVbnwLFNXwpVaxQrVPs9
qca9YAf4sPRL4+6r
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAABB9WYYP1k1yQwAAAAAAEDANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgxNDIz
MDMzOVoXDTI5MDYwMzIzMDMzOVowVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAxMjCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAKHG
TgBCMs4LbHALHnm618HNCEhlXTLmoRK/un/49LlfpuKidaPMdQ0mNb4pl6iWKnUo
TTRCk638rRcUAemUhpTO9pdPfzX/uaaseB6h88hlBVGQV5UyrE7hGeH3zCMXBVjZ
ghGwt4DKvgO/a3YO43xMupzkFJfx1SddBW4oR160OYgr6FLRELEboaASwYsuoYl8
wLo0O1SqBxz++ZNEfsspAamx3so6+XLVtpeMME/mOYdwebrBrtzS4nmE/9qknWFT
SLo//8NRd7PQ49pzLGf6CyVCiRZIvG7y2+jesPhICU+s9vJ3qBr2go1jU1h5Rpvv
TPHQGsmNTWpepQKcfBfK5rt8YzF9NHBaaLIAcCe90bIYKENMutS5Z6BVn69ZYyMi
3DklCE3V7uozYYkIei5zoI2NIfdjGQaXaEImqA12cwknJfqkWhA1bErK6n4Gx0Y+
MqIgIE0wpRBuwrk46ncEAX4NKiRQd1XOpUwKfI/O/I7kdVjrq+Ghd86HJtuSqwUF
WgV3JbUArAqZtgC5LjFoIjf2lCGzuD2uDBSKM9d8dLhcJRWeJDy7pheaQxsDQcxz
cPz0XOdW5KgdZIrkSWjRChpWY5LcCo5O9SEqvJCtmeIo4TUzW5CTxYG6fkEgSSA0
wiciw/x8SE7YVqxKybryGpZ3y3WxGd2mxktUEhufAgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFDGlpYlD78es
MRU+SHrjBsbp7bwqMBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBAIvpSERgLgnzdc+XVB99zGCGNpur
hIXJ2S+lopZDMMP/lqi4uwX3RSlmjGNKCwfHmMy3KjTMMPqiurxuX3vP6Yx7h3g0
p0+1m7F3PYBgCibUcMJfwtZbKu/Oot19mHsAsHu01BDZTlPbowPpVD8qNtpsiDl4
PjOe9/EW5M/HbrKrZg0ZvLm8ezsePgP0CezXoa2SQSlLssUOWUn6iKxdi0d65jXv
FPYRfOSmWKcQ/SBGWeUjsSuctga3DNzExktOHySKjskO3JTYo/hm7hnMdxLeVGHI
poenawCSZH4kxZCkO8SXrqV4gvh88CHlZ12mBvNw2kskEGYTgRdfpfGLudwxdvV+
AOGu60olNg8VosFWJMcZYPFTAFoZTwdBSprBnt93sBUGXDPwWQNxpSvO50DR+r/u
sdY3/zfFSfQUC5X2/BOuwSUgDdJ2lf/ettl/+TGAVVmNR7PfuwHl5obG3LR964JV
jPLmFw8Vc4CU8YuUStyGwQxse9CPrp9YpcPsztiJB2ugB6/FhxM7UDYfpvdr2nxh
spxBAlg9L1a/mJjzgS0l4kRnmq0zxIMRrMchgi/a7GfwhYq2meVkNd5ectf7SdM5
O9HIQ5cE3PcHH62mEZW2Y+A09CQ9FQoK1bxf67CbYfFcEy6htrbirmjXVoThyo1P
XoXm1+8l+n5NKWWC
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAABJ+c5NH51vhoQAAAAAAEjANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgxNDIz
MDM0MVoXDTI5MDYwMzIzMDM0MVowVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAxNDCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBALQ0
O5HV7D0M0P5XR9tDj3H/ASlro7t5dRQHJwq8g9plX9RsHSqmsqA28+gFlKjEMc5F
8cJCovAXh51G1mCU+jzzcH/UWEOIEXj5WrEVjigNT3MwnxkWE981eGAxmkFwBiDF
DsnQkRxgHGA3B8RxfsaFcMM5NSm+/EjQ3TaYXFbjn2smJMp9WbdMixVHbS3vNNyQ
0UtnWVBzBTLwrUSaT+e0qC8oUilP2MShMGJ91UZmzvLeYoUfDGHcXIWkFCqkCch4
6S28IlWc1wagx/uzq+zt1nalPrb54BLUcX07iHXnGOtrJ5sp72g0VrQoWFefhajG
BL9+zQvF+Tzi8isM6WKTe80PC7jmTi/2ze59IkFSnDw2pD36KucFrx0WwwK923MZ
oet9r0JsO6IBBfKWS1BHMfbwsV4MJtnvQaFOdNl/TLfTlgOUFrlggPnLRsFx5hno
UEH3jnhzZcKwrENaEDyijneNs7qrqUf4lJdZe3bV1LoguppP4N0WLu5Jh1TjceLa
6pM9wsGaN4XMxdeyxQHa+W1eLBrjFKSIEUukA97x77XGd3XSRxQnq6F4Y5K98Cqn
aGDWZWZ0IptnXSS5FkK7A9qXVRjnC5waqwWISwi/wliIEJq4Y/Vf7sN3NgrvfYPg
HC39Qo5Fbs/MpwXe+FgPyjUPWpWkE7VL1GX0KucpAgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFFJo9PoSVuP2
2EKvMAtAuDkj9fcrMBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBAFAy7Y42/cuUwX522YzqhW3Cks15
m7hqbu3yszkCcAcdOZjPLxXWHp8oPm98u27+yoXreavUQ0bZlMzWsAcw7g6kCjWm
BVh78k1uKxQzlFrHznpMlsEtbgIzuatjCtP70NO2/pe64JzWNRuADvTM/RSKeEnG
WpU3U09YZzc/qEcvzfsLtqN88GX8/may9tDctPDI8Kkx8jdQYLG9bM+Gnm5b0RQH
Ja65N7W50zo16Jjy3jv1zxm+UOvjt27atgcm+EmocqAzUtws7dxdnrdaBmgqndMC
Jg1tNrQ5UxJfXhCgoVurdC/UYMSCxkPMZ0PI1D7yvmJAFzfUTDXGZw+l3V9JwEOg
u+0/a/QcEVDdXLM4cFM+KvmM6NBGFX+ktBvk8IIq8gld7IdTGohZQ9EmpBa32ZT4
XKU6Atst09IFJYmlr/6X/FaNDeM22Kh7TSlTdjuDA8ybygSVwPjpgKFWho4gAQrX
BhGwff3pRgb2RGDS/Fw91FgLW3NePKcLC6a7u7reXhc/NIBPWoovCE+imo9p9Oem
VTHFF0qvux5MQ78kbeZrxv7x+EU5OK56+jIGpWZFfsdB5La4cwgEkVL7vYfoaRET
T85pMUZup9ZRlYcuqDSfH2r5cokDcwCKjarG8YrjKiQ9i3hLzRs2sQEG3wjf2lrb
B99kBMBp4Ylf6v3t
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIHuDCCBaCgAwIBAgITMwAAAA5Ck48l3FGpmwAAAAAADjANBgkqhkiG9w0BAQwF
ADBRMQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9u
MSIwIAYDVQQDExlNaWNyb3NvZnQgVExTIFJTQSBSb290IEcyMB4XDTI1MDgwMTIw
MDMwMloXDTI5MDYwMzIwMDMwMlowVzELMAkGA1UEBhMCVVMxHjAcBgNVBAoTFU1p
Y3Jvc29mdCBDb3Jwb3JhdGlvbjEoMCYGA1UEAxMfTWljcm9zb2Z0IFRMUyBHMiBS
U0EgQ0EgT0NTUCAxNjCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAJNy
X7D8oHoR3W/OE5vzT0QuP+ym4r+vL8gHmczj1YdNWzOn5VlHxR2Ue+hTR6PxfOQi
pbhH/gAeXr1wd5YE1XZX/IOzeVFX9CQUTXlJmrfcR5L2PKY1KtG2b18b1mC+0YKi
bzeF5WokVOeIh/A+1wBe2ufVNOMOr+HU+HdaVdRnE/dBSF9PLGB1KAGos1pwhcdY
hQbfoUwroVfZqWy6HIa6AfbQFBoF+Isx5ZXyMTfVEaKYnT/vci9REEBe4uMbQpYG
N2gF5Pq41VRdHuGU2vJRo+Q+e77DrqVBQhY9kdqQvQitSirIRRgwLlD3yqZHw+8D
z0o9fmx8sqe5RhonEpqZEkyiK1ql5aO7ocrOcu9HY7C+c0lHzsKp1US0QY3zRzfM
bAdjHNiWguQ/bnZTZJ3c+MIzrovLWxR0QC0ICE+g8gOUz4LH4jOIUKkf0sF6UCwh
xs3AYjG2/tEC5lOksVJ5lu5lWTnR26I0owa+IWrima4tKugtCDqQWojn8AGp69AE
xCFpDz3Jpn7xvzlygpCXOEy27yV+YfL/DL71ve19R3VW+PbzqOFtgzLIUV/9JpKB
38iUFDKAlq6mCd5M12QokTJaJ5JpZIRKoR68xBG7FVUd0IynFmcgR0RaZ2wYugHe
lDzagm1XcVRDbPLKvM27gBdVztl7jC2dUE/27+iHAgMBAAGjggKBMIICfTAOBgNV
HQ8BAf8EBAMCAYYwEAYJKwYBBAGCNxUBBAMCAQAwHQYDVR0OBBYEFAY58FbR7ZDI
NqOgD5T+YpSn5vw3MBMGA1UdIAQMMAowCAYGZ4EMAQICMBMGA1UdJQQMMAoGCCsG
AQUFBwMBMBkGCSsGAQQBgjcUAgQMHgoAUwB1AGIAQwBBMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHwYDVR0jBBgwFoAU3pGGSLehMVkx8UtfB6nciHnaqHYwgasGA1UdHwSB
ozCBoDCBnaCBmqCBl4ZJaHR0cDovL3d3dy5taWNyb3NvZnQuY29tL3BraW9wcy9j
cmwvTWljcm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyLmNybIZKaHR0cDov
L2NybDIubWljcm9zb2Z0LmNvbS9wa2lvcHMvY3JsL01pY3Jvc29mdCUyMFRMUyUy
MFJTQSUyMFJvb3QlMjBHMi5jcmwwggEQBggrBgEFBQcBAQSCAQIwgf8wYwYIKwYB
BQUHMAKGV2h0dHA6Ly93d3cubWljcm9zb2Z0LmNvbS9wa2lvcHMvY2VydHMvTWlj
cm9zb2Z0JTIwVExTJTIwUlNBJTIwUm9vdCUyMEcyJTIwLSUyMHhzaWduLmNydDBp
BggrBgEFBQcwAoZdaHR0cDovL2NhaXNzdWVycy5taWNyb3NvZnQuY29tL3BraW9w
cy9jZXJ0cy9NaWNyb3NvZnQlMjBUTFMlMjBSU0ElMjBSb290JTIwRzIlMjAtJTIw
eHNpZ24uY3J0MC0GCCsGAQUFBzABhiFodHRwOi8vb25lb2NzcC5taWNyb3NvZnQu
Y29tL29jc3AwDQYJKoZIhvcNAQEMBQADggIBAIGGI1JWs93TO6gypc7n3H7V5Qim
hS8nVFE3Y3ZNdG7utJvyrxAgO1d7q52kBgwLZ1M8lcluTDmrfCIZu+vs+UyNmZ6J
h+kAJgGwmTKPCqTihbJ/h10jiSoW4JftFu5QMljZdJ14UlLrQTwwfYGxrd0QVnqz
r4S8Q/rP/2DTBQSQj/uLauKBaVKoPQL10IxIkcuIj83C0aMqPUDZWjXgy8dBEej8
tMKgBlK3O5nN5ZkXAPkXjI1FIZRL03QD8besLM+Vb4tlcvb2k8XdQpEv0RK8bjeY
66I+Q2anOq0kQI6oiJ4c/QFEoFLVcJiCTY86hZmTSw1i4Tsnxhwy5N7UtK7SGJ3m
JAJwhdwy3lrMPgShw2yzLlbbODGYqwa7BzpDPQEtEHVdbK78Qv03TWH/w6KQGv2I
FtqjVibfJnsQEgjms0mr6hRODs4G0LIfBqDs4JC2o5AnDc/N2/CDhnVdfHbMrvbc
2fqNxx/4TQevSBliM5pN5s3nQR166CCTmavh92N49ykEb3Q+iHY6hBkI76e/Db4b
daeq7IdaXEMYURG5kj3kn70K4SY3cUCHoRNdkQQzNXB7OIW5jgG65HL9F1uSh9B7
KmJjEVz9Kzh/Kx9y3KEmb4eRyi4tc9CtEkFY3CmW0gbpBXhwmzEGHQ6T08YoSoiR
DpR9auXiVitH82FI
-----END CERTIFICATE-----
`;
