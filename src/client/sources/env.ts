// The proof of a GitLab CI job (or any OIDC platform that hands the job a token): an ID
// token in an environment variable, e.g. from GitLab's `id_tokens:`. GitLab mints these
// once, when the job starts, and a job cannot ask for another: every attempt reuses the
// token while it is valid, and once it has expired the join fails at once with a message
// saying so (retrying could not help).
import { decodeJwt } from "jose";

export type IdTokenProblem = "missing" | "malformed" | "expired";

/** The ID token cannot be used; never retried. */
export class IdTokenError extends Error {
  override name = "IdTokenError";
  constructor(
    readonly problem: IdTokenProblem,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export interface EnvIdTokenOptions {
  /** Name of the variable holding the token (default IDBOT_ID_TOKEN). */
  variable: string;
  /** gitlab or oidc: only changes the hints. */
  method: "gitlab" | "oidc";
  env?: NodeJS.ProcessEnv;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
}

function gitlabSnippet(variable: string): string {
  return [
    "In .gitlab-ci.yml, have GitLab mint the token for the job:",
    "",
    "  id_tokens:",
    `    ${variable}:`,
    "      aud: https://idbot.example.com   # the idbot server URL (the token resource's audience)",
  ].join("\n");
}

/** Seconds since the epoch at which the token expires, or undefined when it sets no exp. */
export function tokenExpiry(token: string): number | undefined {
  const exp = decodeJwt(token).exp;
  return typeof exp === "number" ? exp : undefined;
}

/**
 * Reads the token now (so a missing or unreadable token fails before any network call) and
 * returns the per-attempt getter, which re-checks the expiry before every attempt.
 */
export function envIdTokenSource(opts: EnvIdTokenOptions): (attempt: number) => Promise<string> {
  const env = opts.env ?? process.env;
  const now = opts.now ?? Date.now;
  const variable = opts.variable;
  const token = env[variable]?.trim();
  if (!token) {
    throw new IdTokenError(
      "missing",
      `the ${opts.method} join method reads the job's ID token from $${variable}, which is not set`,
      opts.method === "gitlab"
        ? gitlabSnippet(variable)
        : `Put the platform's OIDC ID token into ${variable}, or name the variable with --id-token-env.`,
    );
  }
  let exp: number | undefined;
  try {
    exp = tokenExpiry(token);
  } catch {
    throw new IdTokenError(
      "malformed",
      `$${variable} does not hold a JWT (header.payload.signature); it must be the ID token itself`,
      opts.method === "gitlab" ? gitlabSnippet(variable) : undefined,
    );
  }
  const check = () => {
    if (exp === undefined) return;
    const left = exp - Math.floor(now() / 1000);
    if (left > 0) return;
    throw new IdTokenError(
      "expired",
      `the ID token in $${variable} expired at ${new Date(exp * 1000).toISOString()} (${-left} s ago)`,
      opts.method === "gitlab"
        ? "GitLab mints the tokens of `id_tokens:` once, when the job starts, and a job cannot request a new one: re-run the job, or move the join earlier in the job (before_script). A token lasts as long as the job's timeout."
        : "The platform's ID token is short-lived: hand the job a fresh one, or join sooner after it is minted.",
    );
  };
  check();
  return async () => {
    check();
    return token;
  };
}
