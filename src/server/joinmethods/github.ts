// The `github` join method: a GitHub Actions OIDC token (github.com, GHES or an
// enterprise-specific issuer) checked against the join token's allow rules.
import { z } from "zod";
import { staticJwks, verifyIdToken } from "./jwt.ts";
import { type ClaimJoinMethod, pick } from "./method.ts";
import { evaluateRules, type Rule } from "./rules.ts";

export const GITHUB_ISSUER = "https://token.actions.githubusercontent.com";

export const GITHUB_RULE_FIELDS = [
  "sub",
  "repository",
  "repository_id",
  "repository_owner",
  "repository_owner_id",
  "workflow",
  "job_workflow_ref",
  "environment",
  "actor",
  "ref",
  "ref_type",
  "event_name",
  "runner_environment",
  "enterprise",
] as const;

// YAML turns `repository_id: 123` into a number; GitHub's claims are strings.
const ruleValue = z.union([z.string().min(1).max(512), z.number()]).transform(String);

export const GitHubRuleSchema = z
  .strictObject(
    Object.fromEntries(GITHUB_RULE_FIELDS.map((f) => [f, ruleValue.optional()])) as {
      [K in (typeof GITHUB_RULE_FIELDS)[number]]: z.ZodOptional<typeof ruleValue>;
    },
  )
  .refine((r) => Object.values(r).some((v) => v !== undefined), {
    message: `an allow rule needs at least one field (${GITHUB_RULE_FIELDS.join(", ")}); an empty rule would admit every GitHub repository`,
  });

export const GitHubTokenSpecSchema = z
  .strictObject({
    audience: z.string().min(1).optional(),
    enterprise_server_host: z
      .string()
      .regex(
        /^[a-zA-Z0-9.-]+(:\d+)?$/,
        "enterprise_server_host is a host name (and optional port), without https://",
      )
      .optional(),
    enterprise_slug: z
      .string()
      .regex(/^[a-zA-Z0-9-]+$/, "enterprise_slug is the enterprise's URL slug")
      .optional(),
    static_jwks: staticJwks.optional(),
    allow: z.array(GitHubRuleSchema).min(1, "a github token needs at least one allow rule"),
  })
  .refine((s) => !(s.enterprise_server_host && s.enterprise_slug), {
    message: "set enterprise_server_host (GHES) or enterprise_slug (github.com enterprise), not both",
  });
export type GitHubTokenSpec = z.output<typeof GitHubTokenSpecSchema>;

export function githubIssuer(spec: GitHubTokenSpec): string {
  if (spec.enterprise_server_host) return `https://${spec.enterprise_server_host}/_services/token`;
  if (spec.enterprise_slug) return `${GITHUB_ISSUER}/${spec.enterprise_slug}`;
  return GITHUB_ISSUER;
}

const KEPT_CLAIMS = new Set<string>([
  ...GITHUB_RULE_FIELDS,
  "iss",
  "aud",
  "sha",
  "run_id",
  "run_number",
  "run_attempt",
  "workflow_ref",
  "repository_visibility",
  "actor_id",
  "head_ref",
  "base_ref",
]);

export const githubMethod: ClaimJoinMethod<GitHubTokenSpec> = {
  issuer: githubIssuer,
  async check(spec, idToken, ctx) {
    const issuer = githubIssuer(spec);
    const keys = spec.static_jwks
      ? ctx.jwks.forStatic(spec.static_jwks)
      : ctx.jwks.forUrl(`${issuer}/.well-known/jwks`);
    const claims = await verifyIdToken(idToken, {
      issuer,
      audience: spec.audience ?? ctx.defaultAudience,
      keys,
      now: ctx.now,
      requiredClaims: ["jti", "sub", "repository"],
    });
    const verdicts = evaluateRules(spec.allow as Rule[], claims);
    return { claims, verdicts, allowed: verdicts.some((v) => v.ok) };
  },
  rules: (spec) => spec.allow as Rule[],
  globFields: new Set(),
  keep: (c) => pick(c, KEPT_CLAIMS),
  subject: (c) =>
    `repository=${String(c.repository)},run_id=${String(c.run_id ?? "")},run_attempt=${String(c.run_attempt ?? "")}`,
  shownClaims: [
    "iss",
    "sub",
    "aud",
    ...GITHUB_RULE_FIELDS.filter((f) => f !== "sub"),
    "run_id",
    "run_attempt",
  ],
};
