// The `oidc` join method: any OIDC issuer whose tokens identify a workload (Kubernetes
// projected service account tokens, CircleCI, Buildkite, ...). Keys come from discovery,
// an explicit jwks_uri, or static_jwks; allow rules name arbitrary claims (dotted paths
// reach nested claims) with exact values or `*`/`?` globs.
import { z } from "zod";
import { keyUrlSchema, staticJwks, verifyIdToken } from "./jwt.ts";
import type { ClaimJoinMethod } from "./method.ts";
import { evaluateRules, type Rule } from "./rules.ts";

const ruleValue = z.union([z.string().min(1).max(512), z.number(), z.boolean()]).transform(String);

export const OidcTokenSpecSchema = z.strictObject({
  issuer: keyUrlSchema("issuer"),
  audience: z.string().min(1),
  /** Skips discovery when the issuer publishes keys elsewhere. */
  jwks_uri: keyUrlSchema("jwks_uri").optional(),
  static_jwks: staticJwks.optional(),
  allow: z
    .array(
      z.record(z.string().min(1).max(256), ruleValue).refine((r) => Object.keys(r).length > 0, {
        message:
          "an allow rule needs at least one claim; an empty rule would admit every token of the issuer",
      }),
    )
    .min(1, "an oidc token needs at least one allow rule"),
});
export type OidcTokenSpec = z.output<typeof OidcTokenSpecSchema>;

/** Claims never kept: they bind the token to a session, not to the workload. */
const DROPPED = new Set(["nonce", "at_hash", "c_hash", "sid", "auth_time"]);

export const oidcMethod: ClaimJoinMethod<OidcTokenSpec> = {
  issuer: (spec) => spec.issuer,
  async check(spec, idToken, ctx) {
    const keys = spec.static_jwks
      ? ctx.jwks.forStatic(spec.static_jwks)
      : spec.jwks_uri
        ? ctx.jwks.forUrl(spec.jwks_uri)
        : ctx.jwks.forDiscovery(spec.issuer);
    const claims = await verifyIdToken(idToken, {
      issuer: spec.issuer,
      audience: spec.audience,
      keys,
      now: ctx.now,
      requiredClaims: ["jti", "sub"],
    });
    // Every field is a glob: a value without `*` or `?` matches exactly.
    const verdicts = evaluateRules(spec.allow as Rule[], claims, "all");
    return { claims, verdicts, allowed: verdicts.some((v) => v.ok) };
  },
  rules: (spec) => spec.allow as Rule[],
  globFields: "all",
  keep: (c) => Object.fromEntries(Object.entries(c).filter(([k]) => !DROPPED.has(k))),
  subject: (c) => `sub=${String(c.sub).slice(0, 200)}`,
  shownClaims: ["iss", "sub", "aud"],
};
