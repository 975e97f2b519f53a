// What every claim-based join method (github, gitlab, oidc) provides, and the one place
// that turns a method's check into an attestation or a denial.
import { denied } from "./errors.ts";
import type { JwksCache } from "./jwt.ts";
import { fullMismatchDetail, type RuleVerdict, safeMismatchSummary } from "./rules.ts";

export interface CheckContext {
  /** For methods that consume a server challenge (azure's nonce). */
  store?: import("../store/store.ts").Store;
  /** The join token's name (challenges are issued per token). */
  tokenName?: string;
  /** The service's public URL; undefined only in `idbot explain` without --public-url. */
  defaultAudience: string | undefined;
  jwks: JwksCache;
  now?: Date;
}

export interface ClaimCheck {
  claims: Record<string, unknown>;
  verdicts: RuleVerdict[];
  allowed: boolean;
}

export interface Attestation {
  /** Claims kept for templates, the bot instance record, audit and JWT-SVIDs. */
  claims: Record<string, unknown>;
  /** Replay key and the time after which it can be forgotten. */
  jti: string;
  issuer: string;
  expiresAt: number;
  /** Short description for certificate key ids and logs. */
  subject: string;
}

export interface ClaimJoinMethod<Spec> {
  issuer(spec: Spec): string;
  /** Verifies the token and evaluates every allow rule (explain shows all verdicts). */
  check(spec: Spec, idToken: string, ctx: CheckContext): Promise<ClaimCheck>;
  /** Rules as plain maps, to evaluate against unverified claims in explain. */
  rules(spec: Spec): Array<Record<string, string | undefined>>;
  globFields: ReadonlySet<string> | "all";
  /** Claims worth keeping (non-secret, identify the run). */
  keep(claims: Record<string, unknown>): Record<string, unknown>;
  subject(claims: Record<string, unknown>): string;
  /** Claims explain prints, in order. */
  shownClaims: readonly string[];
}

export async function attestWith<Spec>(
  method: ClaimJoinMethod<Spec>,
  tokenName: string,
  spec: Spec,
  idToken: string,
  ctx: CheckContext,
): Promise<Attestation> {
  const check = await method.check(spec, idToken, ctx);
  if (!check.allowed) {
    throw denied(
      `no allow rule of join token "${tokenName}" matches this job (${safeMismatchSummary(check.verdicts)})`,
      `Compare the job's claims logged above with the token's allow rules; the operator can run "idbot explain --token ${tokenName}" with this ID token.`,
      fullMismatchDetail(check.verdicts),
    );
  }
  const c = check.claims;
  return {
    claims: method.keep(c),
    jti: String(c.jti),
    issuer: String(c.iss),
    expiresAt: Number(c.exp),
    subject: method.subject(c),
  };
}

/** Picks the listed claims (top-level) that are present. */
export function pick(claims: Record<string, unknown>, keys: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(claims)) if (keys.has(k)) out[k] = claims[k];
  return out;
}
