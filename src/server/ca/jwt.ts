// The service's JWT signing key (ES256): JWT-SVIDs for Vault and other relying parties,
// published with the previous key (kept through a rotation) in /.well-known/jwks.json.
import { createPublicKey, type KeyObject, sign } from "node:crypto";
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
    // A compact JWS signed by node:crypto: jose's SignJWT signs through WebCrypto, ~150 µs
    // per token here against ~45 µs (the CPU profile of a join with every output). The
    // claims keep SignJWT's order and overrides; tests verify the tokens with PyJWT and jose.
    const header = b64url({ alg: JWT_ALG, kid: this.current.kid, typ: "JWT" });
    const payload = b64url({
      ...claims,
      iss: opts.issuer,
      sub: opts.subject,
      aud: opts.audience.length === 1 ? opts.audience[0]! : opts.audience,
      iat: opts.issuedAt,
      exp: opts.expiresAt,
      jti: opts.jti,
    });
    const input = `${header}.${payload}`;
    const sig = sign("sha256", Buffer.from(input), {
      key: this.current.privateKey,
      dsaEncoding: "ieee-p1363",
    });
    return `${input}.${sig.toString("base64url")}`;
  }
}

const b64url = (json: unknown) => Buffer.from(JSON.stringify(json)).toString("base64url");

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
