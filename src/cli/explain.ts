import { readFileSync } from "node:fs";
import * as jose from "jose";
import { CliError, EXIT, parseCommand, required } from "./args.ts";

const USAGE = `
Usage: idbot explain --resources FILE_OR_DIR --token NAME --id-token FILE|- [--at TIME] [--public-url URL]

Evaluates a CI ID token against a join token resource, offline: checks the signature
(static_jwks, or keys fetched from the issuer), the time window and every allow rule,
and prints each rule with each field matched or not, and the token's non-secret claims.

Exit status: 0 allowed, 1 denied, 2 bad input.

Options:
  --resources PATH   the service's resources (file or directory)
  --token NAME       the join token resource to evaluate against
  --id-token FILE    file holding the ID token, or - for standard input
  --at TIME          evaluate expiry at TIME (RFC 3339 or Unix seconds) instead of now
  --public-url URL   the service's public URL, the audience when the token sets none

Example:
  idbot explain --resources /etc/idbot --token github-deploy --id-token token.jwt --at 2026-11-23T14:05:00Z
`;

/** Strict RFC 3339 (with a zone) or Unix seconds; Date's lenient parser would accept
 *  "2026-02-30" as March 2 and quietly evaluate the wrong moment. */
export function parseAt(text: string): Date {
  if (/^\d{1,12}$/.test(text)) return new Date(Number(text) * 1000);
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  const bad = () =>
    new CliError(
      `--at "${text}" is not an RFC 3339 time or Unix seconds (for example 2026-11-23T14:05:00Z or 1795442700)`,
    );
  if (!m) throw bad();
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth || h > 23 || mi > 59 || s > 60) throw bad();
  return new Date(text);
}

export async function explainCommand(argv: string[]): Promise<number> {
  const args = parseCommand(
    argv,
    {
      resources: { type: "string" },
      token: { type: "string" },
      "id-token": { type: "string" },
      at: { type: "string" },
      "public-url": { type: "string" },
    },
    USAGE,
  );
  if (!args) return 0;
  const v = args.values;
  const resourcesPath = required(v.resources, "--resources");
  const tokenName = required(v.token, "--token");
  const idTokenFile = required(v["id-token"], "--id-token");
  const now = v.at ? parseAt(v.at) : new Date();

  const { loadResources } = await import("../server/policy/resources.ts");
  const { methodOf } = await import("../server/joinmethods/index.ts");
  const { JwksCache } = await import("../server/joinmethods/jwt.ts");
  const { JoinError } = await import("../server/joinmethods/errors.ts");
  const { evaluateRules } = await import("../server/joinmethods/rules.ts");

  let set: ReturnType<typeof loadResources>;
  try {
    set = loadResources(resourcesPath);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  const token = set.tokens.get(tokenName);
  if (!token) {
    throw new CliError(
      `join token "${tokenName}" is not declared in ${resourcesPath} (declared: ${[...set.tokens.keys()].join(", ") || "none"})`,
    );
  }
  if (token.spec.join_method === "iam" || token.spec.join_method === "azure") {
    throw new CliError(
      `join token "${tokenName}" uses join method ${token.spec.join_method}, whose proof is a signed request or document checked live against the platform, not an ID token: explain evaluates the JWT methods (github, gitlab, oidc, kubernetes, gcp)`,
    );
  }
  let idToken: string;
  try {
    idToken = readFileSync(idTokenFile === "-" ? 0 : idTokenFile, "utf8").trim();
  } catch (e) {
    throw new CliError(
      `cannot read the ID token from ${idTokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  let claims: Record<string, unknown>;
  let header: jose.ProtectedHeaderParameters;
  try {
    claims = jose.decodeJwt(idToken);
    header = jose.decodeProtectedHeader(idToken);
  } catch {
    throw new CliError(`${idTokenFile} does not hold a JWT (header.payload.signature)`);
  }
  const out: string[] = [];
  const claimMethod = methodOf(token);
  if (!claimMethod) {
    throw new CliError(
      `join token "${tokenName}" uses join method ${token.spec.join_method}, which proves a key, not ID token claims: there is nothing to explain`,
    );
  }
  const { method, spec } = claimMethod;
  const configured = spec as { audience?: string; static_jwks?: string };
  const audience = configured.audience ?? v["public-url"]?.replace(/\/+$/, "");
  out.push(`Join token "${tokenName}" (join method ${token.spec.join_method}, bot ${token.spec.bot_name})`);
  out.push(`  issuer   ${method.issuer(spec)}${configured.static_jwks ? " (static_jwks)" : ""}`);
  out.push(`  audience ${audience ?? "(the service's public URL; pass --public-url to check it)"}`);
  out.push(`  checked at ${now.toISOString()}${v.at ? " (--at)" : ""}`);
  out.push("");
  out.push(`ID token: alg ${String(header.alg)}, kid ${String(header.kid ?? "-")}`);
  const shown = token.spec.join_method === "oidc" ? Object.keys(claims) : method.shownClaims;
  for (const k of [...shown.filter((c) => !["iat", "nbf", "exp", "jti"].includes(c)), "iat", "nbf", "exp"]) {
    if (claims[k] === undefined) continue;
    const val = ["iat", "nbf", "exp"].includes(k)
      ? `${claims[k]} (${new Date(Number(claims[k]) * 1000).toISOString()})`
      : JSON.stringify(claims[k]);
    out.push(`  ${k.padEnd(20)} ${val}`);
  }
  out.push("");

  let verified = true;
  let verdicts: import("../server/joinmethods/rules.ts").RuleVerdict[];
  try {
    const check = await method.check(spec, idToken, {
      defaultAudience: audience,
      jwks: new JwksCache(),
      now,
    });
    verdicts = check.verdicts;
    out.push("Signature and time window: valid");
  } catch (e) {
    if (!(e instanceof JoinError)) throw e;
    verified = false;
    out.push(`Signature and time window: REJECTED: ${e.message}${e.detail ? ` (${e.detail})` : ""}`);
    verdicts = evaluateRules(method.rules(spec), claims, method.globFields);
  }
  out.push("");
  out.push(`Allow rules (${verdicts.length}; any matching rule admits the job):`);
  for (const r of verdicts) {
    out.push(`  rule ${r.index + 1}: ${r.ok ? "MATCH" : "no match"}`);
    for (const f of r.fields) {
      out.push(
        `    ${f.ok ? "✓" : "✗"} ${f.field.padEnd(20)} want ${JSON.stringify(f.want)}, got ${f.got === undefined ? "(absent)" : JSON.stringify(f.got)}`,
      );
    }
  }
  const matched = verdicts.find((r) => r.ok);
  const allowed = verified && matched !== undefined;
  out.push("");
  out.push(
    allowed
      ? `Result: ALLOWED by rule ${matched!.index + 1}: a join would be admitted as bot "${token.spec.bot_name}" (if this token's jti was not used before)`
      : `Result: DENIED${verified ? ": no allow rule matches" : ""}`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
  return allowed ? EXIT.ok : EXIT.denied;
}
