// The service's JWT signing key (ES256): JWT-SVIDs for Vault and other relying parties,
// published with the previous key (kept through a rotation) in /.well-known/jwks.json.
import { createPublicKey, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { P256_SPKI_PREFIX } from "./x509.ts";

export interface JwtKey {
  kid: string;
  privateKey: KeyObject;
}

export const JWT_ALG = "ES256";

/** The public JWK of a P-256 key, read from its SPKI DER (x and y are its last 64 bytes),
 *  not export({ format: "jwk" }), which can deadlock on a freshly generated key (see
 *  ed25519RawPublic in protocol/ssh.ts). */
function p256PublicJwk(key: KeyObject): { kty: "EC"; crv: "P-256"; x: string; y: string } {
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  if (
    spki.length !== P256_SPKI_PREFIX.length + 64 ||
    !spki.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX)
  )
    throw new Error("the JWT signing key must be an ECDSA P-256 key");
  const at = P256_SPKI_PREFIX.length;
  return {
    kty: "EC",
    crv: "P-256",
    x: spki.subarray(at, at + 32).toString("base64url"),
    y: spki.subarray(at + 32).toString("base64url"),
  };
}

export class JwtIssuer {
  private readonly jwksBody: string;

  constructor(
    private readonly current: JwtKey,
    previous?: JwtKey,
  ) {
    const keys = [current, ...(previous ? [previous] : [])].map((k) => ({
      ...p256PublicJwk(k.privateKey),
      kid: k.kid,
      use: "sig",
      alg: JWT_ALG,
    }));
    this.jwksBody = JSON.stringify({ keys });
  }

  get kid(): string {
    return this.current.kid;
  }

  /** The JWKS document, both keys during a rotation. */
  jwks(): string {
    return this.jwksBody;
  }

  async sign(
    claims: Record<string, unknown>,
    opts: {
      issuer: string;
      subject: string;
      audience: string[];
      expiresAt: number;
      issuedAt: number;
      jti: string;
    },
  ): Promise<string> {
    return new SignJWT(claims)
      .setProtectedHeader({ alg: JWT_ALG, kid: this.current.kid, typ: "JWT" })
      .setIssuer(opts.issuer)
      .setSubject(opts.subject)
      .setAudience(opts.audience.length === 1 ? opts.audience[0]! : opts.audience)
      .setIssuedAt(opts.issuedAt)
      .setExpirationTime(opts.expiresAt)
      .setJti(opts.jti)
      .sign(this.current.privateKey);
  }
}

export function openIdConfiguration(publicUrl: string): string {
  return JSON.stringify({
    issuer: publicUrl,
    jwks_uri: `${publicUrl}/.well-known/jwks.json`,
    response_types_supported: ["id_token"],
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: [JWT_ALG],
    claims_supported: ["sub", "aud", "exp", "iat", "iss", "jti", "bot_name", "join_method"],
  });
}
