// The `gitlab` join method: a GitLab CI `id_tokens:` JWT from gitlab.com or a
// self-managed instance, checked against the join token's allow rules (globs on sub,
// project_path, namespace_path and ref).
import { z } from "zod";
import { staticJwks, verifyIdToken } from "./jwt.ts";
import { type ClaimJoinMethod, pick } from "./method.ts";
import { evaluateRules, type Rule } from "./rules.ts";

export const GITLAB_RULE_FIELDS = [
  "sub",
  "project_path",
  "namespace_path",
  "project_id",
  "namespace_id",
  "pipeline_source",
  "environment",
  "environment_protected",
  "ref",
  "ref_type",
  "ref_protected",
  "user_login",
  "ci_config_ref_uri",
] as const;
export const GITLAB_GLOB_FIELDS: ReadonlySet<string> = new Set([
  "sub",
  "project_path",
  "namespace_path",
  "ref",
]);

// YAML turns `project_id: 42` and `ref_protected: true` into a number and a boolean;
// GitLab's claims are strings.
const ruleValue = z.union([z.string().min(1).max(512), z.number(), z.boolean()]).transform(String);

export const GitLabRuleSchema = z
  .strictObject(
    Object.fromEntries(GITLAB_RULE_FIELDS.map((f) => [f, ruleValue.optional()])) as {
      [K in (typeof GITLAB_RULE_FIELDS)[number]]: z.ZodOptional<typeof ruleValue>;
    },
  )
  .refine((r) => Object.values(r).some((v) => v !== undefined), {
    message: `an allow rule needs at least one field (${GITLAB_RULE_FIELDS.join(", ")}); an empty rule would admit every project on the instance`,
  });

export const GitLabTokenSpecSchema = z.strictObject({
  /** Self-managed instance host (issuer https://DOMAIN); default gitlab.com. */
  domain: z
    .string()
    .regex(/^[a-zA-Z0-9.-]+(:\d+)?$/, "domain is a host name (and optional port), without https://")
    .optional(),
  /** Required: the `aud` set under `id_tokens:` in .gitlab-ci.yml. */
  audience: z.string().min(1),
  static_jwks: staticJwks.optional(),
  allow: z.array(GitLabRuleSchema).min(1, "a gitlab token needs at least one allow rule"),
});
export type GitLabTokenSpec = z.output<typeof GitLabTokenSpecSchema>;

const KEPT_CLAIMS = new Set<string>([
  ...GITLAB_RULE_FIELDS,
  "iss",
  "aud",
  "project_visibility",
  "pipeline_id",
  "job_id",
  "user_id",
  "sha",
  "ci_config_sha",
  "runner_id",
  "runner_environment",
  "deployment_tier",
]);

export const gitlabIssuer = (spec: GitLabTokenSpec) => `https://${spec.domain ?? "gitlab.com"}`;

export const gitlabMethod: ClaimJoinMethod<GitLabTokenSpec> = {
  issuer: gitlabIssuer,
  async check(spec, idToken, ctx) {
    const issuer = gitlabIssuer(spec);
    const keys = spec.static_jwks
      ? ctx.jwks.forStatic(spec.static_jwks)
      : ctx.jwks.forUrl(`${issuer}/oauth/discovery/keys`);
    const claims = await verifyIdToken(idToken, {
      issuer,
      audience: spec.audience,
      keys,
      now: ctx.now,
      requiredClaims: ["jti", "sub", "project_path"],
    });
    const verdicts = evaluateRules(spec.allow as Rule[], claims, GITLAB_GLOB_FIELDS);
    return { claims, verdicts, allowed: verdicts.some((v) => v.ok) };
  },
  rules: (spec) => spec.allow as Rule[],
  globFields: GITLAB_GLOB_FIELDS,
  keep: (c) => pick(c, KEPT_CLAIMS),
  subject: (c) =>
    `project=${String(c.project_path)},pipeline_id=${String(c.pipeline_id ?? "")},job_id=${String(c.job_id ?? "")}`,
  shownClaims: [
    "iss",
    "sub",
    "aud",
    ...GITLAB_RULE_FIELDS.filter((f) => f !== "sub"),
    "pipeline_id",
    "job_id",
  ],
};
