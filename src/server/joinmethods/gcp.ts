// The `gcp` join method: a Google-signed ID token. On a Compute Engine VM (or GKE node) it
// is the instance identity token the metadata server mints for the service's audience
// with format=full, which names the project, zone and instance; elsewhere (Cloud Run, or
// generateIdToken with includeEmail) a service account's ID token, which names the
// account only. Both are RS256 JWTs from https://accounts.google.com, checked against
// Google's JWKS.
//
// Allow rules (Teleport's shape): project_ids, locations, service_accounts,
// instance_names, each a list; a rule admits a token when every field it sets has an
// entry that matches. Project IDs and service account emails match exactly (a glob could
// admit a project anyone can create); locations and instance names take `*`/`?` globs,
// and a location without a zone letter is a region ("us-central1" admits its zones).
//
// Replay: Google ID tokens carry no jti. Their key is "sha256:" + SHA-256 of the signed
// part (header.payload). That is safe: only Google can produce a signed part that
// verifies, it holds iat and exp (one-second resolution) and the audience, so a second
// join with the same key presents the very statement Google made once. The whole token
// string would not do: its signature can be re-encoded (spare base64url bits) into
// another string that still verifies. Kept until exp + 2 min (Google's tokens last 1 h).
import { createHash } from "node:crypto";
import { z } from "zod";
import { keyUrlSchema, staticJwks, verifyIdToken } from "./jwt.ts";
import type { ClaimJoinMethod } from "./method.ts";
import { type FieldVerdict, globMatch, type Rule, type RuleVerdict } from "./rules.ts";

export const GOOGLE_ISSUER = "https://accounts.google.com";
export const GOOGLE_JWKS_URI = "https://www.googleapis.com/oauth2/v3/certs";

/** A list of values; a single value is a list of one. */
const values = (field: string, opts: { exact: boolean; re?: RegExp; what?: string }) =>
  z
    .union([z.string(), z.array(z.string()).min(1).max(64)])
    .transform((v) => (Array.isArray(v) ? v : [v]))
    .pipe(
      z.array(
        z
          .string()
          .min(1)
          .max(256)
          .refine((s) => !opts.exact || !/[*?]/.test(s), {
            message: `${field} are matched exactly: no * or ? (a glob could admit a project anyone can create)`,
            abort: true,
          })
          .refine((s) => !opts.re || opts.re.test(s), { message: `${field}: expected ${opts.what}` }),
      ),
    );

export const GCP_RULE_FIELDS = ["project_ids", "locations", "service_accounts", "instance_names"] as const;

export const GcpRuleSchema = z
  .strictObject({
    project_ids: values("project_ids", {
      exact: true,
      re: /^[a-z][a-z0-9.:-]*$/,
      what: "GCP project IDs",
    }).optional(),
    /** Zones ("us-central1-a") or regions ("us-central1"), globs allowed. */
    locations: values("locations", { exact: false }).optional(),
    service_accounts: values("service_accounts", {
      exact: true,
      re: /^[^@\s]+@[^@\s]+$/,
      what: "service account emails",
    }).optional(),
    /** Instance names, globs allowed (a managed instance group names its VMs BASE-xxxx). */
    instance_names: values("instance_names", { exact: false }).optional(),
  })
  .refine((r) => r.project_ids !== undefined || r.service_accounts !== undefined, {
    message:
      "an allow rule needs project_ids or service_accounts: without either, it would admit VMs of every Google Cloud project",
  });

export const GcpTokenSpecSchema = z.strictObject({
  /** Default: the service's public URL. */
  audience: z.string().min(1).optional(),
  /** Default https://accounts.google.com. */
  issuer: z.string().min(1).max(1024).optional(),
  /** Default https://www.googleapis.com/oauth2/v3/certs. */
  jwks_uri: keyUrlSchema("jwks_uri").optional(),
  /** Google's keys given inline instead of fetched (they rotate: mind the update). */
  static_jwks: staticJwks.optional(),
  allow: z.array(GcpRuleSchema).min(1, "a gcp token needs at least one allow rule"),
});
export type GcpTokenSpec = z.output<typeof GcpTokenSpecSchema>;
type GcpRule = z.output<typeof GcpRuleSchema>;

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
const text = (v: unknown): string | undefined =>
  typeof v === "number" ? String(v) : typeof v === "string" && v !== "" ? v : undefined;
const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

function signedPartKey(token: string): string {
  const parts = token.split(".");
  return `sha256:${createHash("sha256").update(`${parts[0]}.${parts[1]}`).digest("hex")}`;
}

/** "us-central1-a" → "us-central1" (a region is two dash-separated parts, a zone adds one). */
const regionOf = (zone: string) => zone.split("-").slice(0, 2).join("-");

function normalize(token: string, p: Record<string, unknown>): Record<string, unknown> {
  const ce = obj(obj(p.google).compute_engine);
  const zone = str(ce.zone);
  const c: Record<string, unknown> = {
    iss: p.iss,
    sub: p.sub,
    aud: p.aud,
    azp: p.azp,
    exp: p.exp,
    iat: p.iat,
    jti: signedPartKey(token),
    email: p.email,
    email_verified: p.email_verified,
    // The email counts as the service account only when Google says it is verified.
    service_account: p.email_verified === true ? str(p.email) : undefined,
    project_id: str(ce.project_id),
    project_number: text(ce.project_number),
    zone,
    region: zone ? regionOf(zone) : undefined,
    instance_name: str(ce.instance_name),
    instance_id: text(ce.instance_id),
    instance_creation_timestamp: ce.instance_creation_timestamp,
  };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c;
}

const matchers: Record<
  (typeof GCP_RULE_FIELDS)[number],
  { claim: string; ok: (want: string, c: Record<string, unknown>) => boolean }
> = {
  project_ids: { claim: "project_id", ok: (w, c) => c.project_id === w },
  locations: {
    claim: "zone",
    ok: (w, c) => typeof c.zone === "string" && (globMatch(w, c.zone) || globMatch(w, regionOf(c.zone))),
  },
  service_accounts: { claim: "service_account", ok: (w, c) => c.service_account === w },
  instance_names: {
    claim: "instance_name",
    ok: (w, c) => typeof c.instance_name === "string" && globMatch(w, c.instance_name),
  },
};

function evaluate(rules: GcpRule[], c: Record<string, unknown>): RuleVerdict[] {
  return rules.map((rule, index) => {
    const fields: FieldVerdict[] = [];
    for (const f of GCP_RULE_FIELDS) {
      const want = rule[f];
      if (!want) continue;
      const m = matchers[f];
      const got = c[m.claim];
      fields.push({
        field: f,
        want: want.join(", "),
        got: got === undefined ? undefined : String(got),
        ok: want.some((w) => m.ok(w, c)),
      });
    }
    return { index, ok: fields.length > 0 && fields.every((x) => x.ok), fields };
  });
}

/** Where each rule field lives in the raw token, for explain's unverified evaluation. */
const RAW: Record<(typeof GCP_RULE_FIELDS)[number], string> = {
  project_ids: "google.compute_engine.project_id",
  locations: "google.compute_engine.zone",
  service_accounts: "email",
  instance_names: "google.compute_engine.instance_name",
};
const MAX_EXPANDED = 32;

/** Lists as plain single-valued rules (one per combination of entries) for explain; a
 *  region entry also becomes its zones' glob. Beyond MAX_EXPANDED combinations a rule is
 *  shown with its entries joined, which explain then reports as differing. */
function rawRules(rules: GcpRule[]): Rule[] {
  const out: Rule[] = [];
  for (const r of rules) {
    const lists = GCP_RULE_FIELDS.filter((f) => r[f]).map((f) => ({
      path: RAW[f],
      entries: f === "locations" ? r[f]!.flatMap((e) => (/[*?]/.test(e) ? [e] : [e, `${e}-*`])) : r[f]!,
    }));
    const count = lists.reduce((n, l) => n * l.entries.length, 1);
    if (count > MAX_EXPANDED) {
      out.push(Object.fromEntries(lists.map((l) => [l.path, l.entries.join(" | ")])));
      continue;
    }
    let rows: Rule[] = [{}];
    for (const l of lists) rows = rows.flatMap((row) => l.entries.map((e) => ({ ...row, [l.path]: e })));
    out.push(...rows);
  }
  return out;
}

const KEPT = new Set([
  "iss",
  "sub",
  "aud",
  "azp",
  "email",
  "email_verified",
  "service_account",
  "project_id",
  "project_number",
  "zone",
  "region",
  "instance_name",
  "instance_id",
  "instance_creation_timestamp",
]);

export const gcpMethod: ClaimJoinMethod<GcpTokenSpec> = {
  issuer: (spec) => spec.issuer ?? GOOGLE_ISSUER,
  async check(spec, idToken, ctx) {
    const keys = spec.static_jwks
      ? ctx.jwks.forStatic(spec.static_jwks)
      : ctx.jwks.forUrl(spec.jwks_uri ?? GOOGLE_JWKS_URI);
    const payload = await verifyIdToken(idToken, {
      issuer: spec.issuer ?? GOOGLE_ISSUER,
      audience: spec.audience ?? ctx.defaultAudience,
      keys,
      now: ctx.now,
      requiredClaims: ["sub"],
    });
    const claims = normalize(idToken, payload as Record<string, unknown>);
    const verdicts = evaluate(spec.allow, claims);
    return { claims, verdicts, allowed: verdicts.some((v) => v.ok) };
  },
  rules: (spec) => rawRules(spec.allow),
  globFields: new Set([RAW.locations, RAW.instance_names]),
  keep: (c) => Object.fromEntries(Object.entries(c).filter(([k]) => KEPT.has(k))),
  subject: (c) =>
    c.instance_name
      ? `project=${String(c.project_id)},zone=${String(c.zone)},instance=${String(c.instance_name)}`
      : `service_account=${String(c.service_account ?? c.email ?? c.sub)}`,
  shownClaims: ["iss", "sub", "aud", "azp", "email", "email_verified", "google"],
};
