// The service's JWT signing key (ES256): JWT-SVIDs for Vault and other relying parties,
// published with the previous key (kept through a rotation) in /.well-known/jwks.json.
import { createPublicKey, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";

export interface JwtKey {
  kid: string;
  privateKey: KeyObject;
}

export const JWT_ALG = "ES256";

export class JwtIssuer {
  private readonly jwksBody: string;

  constructor(
    private readonly current: JwtKey,
    previous?: JwtKey,
  ) {
    const keys = [current, ...(previous ? [previous] : [])].map((k) => ({
      ...createPublicKey(k.privateKey).export({ format: "jwk" }),
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
