// The proof of a GitHub Actions job: an OIDC ID token minted on demand by the runner's
// token service (ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN, present only when the workflow grants
// `id-token: write`). A fresh token can be minted for every attempt.
import { getIDToken } from "@actions/core";
import { decodeJwt } from "jose";

export class MissingOidcError extends Error {
  override name = "MissingOidcError";
  readonly hint = [
    "Grant the job permission to request an OIDC token. In the workflow (or the job):",
    "",
    "  permissions:",
    "    id-token: write",
    "    contents: read",
    "",
    "Workflows triggered by pull requests from forks, and Dependabot runs, never get",
    "id-token: write for security reasons: run the join only on trusted events",
    "(e.g. `if: github.event.pull_request.head.repo.full_name == github.repository`).",
  ].join("\n");
  constructor() {
    super(
      "this job cannot request a GitHub OIDC token: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set",
    );
  }
}

export function githubOidcAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.ACTIONS_ID_TOKEN_REQUEST_URL && env.ACTIONS_ID_TOKEN_REQUEST_TOKEN);
}

/** Fails fast, before any network call, when the job has no OIDC permission. */
export function githubIdTokenSource(
  audience: string,
  env: NodeJS.ProcessEnv = process.env,
): () => Promise<string> {
  if (!githubOidcAvailable(env)) throw new MissingOidcError();
  return async () => {
    try {
      return await getIDToken(audience);
    } catch (e) {
      // The token service failing is transient: let the join loop retry it.
      throw Object.assign(new Error(`requesting the GitHub ID token failed: ${(e as Error).message}`), {
        retryable: true,
      });
    }
  };
}

/** Claims that identify the run and grant nothing: safe to log so a denied job can be fixed. */
export const LOGGED_CLAIMS = [
  "iss",
  "sub",
  "aud",
  "repository",
  "ref",
  "job_workflow_ref",
  "runner_environment",
] as const;

export function loggableClaims(idToken: string): Record<string, unknown> {
  try {
    const c = decodeJwt(idToken) as Record<string, unknown>;
    return Object.fromEntries(LOGGED_CLAIMS.filter((k) => c[k] !== undefined).map((k) => [k, c[k]]));
  } catch {
    return {};
  }
}

/** A branch ref can move under the workflow; tags and full SHAs are what pins an Action. */
export function actionRefWarning(
  ref: string | undefined,
  repository: string | undefined,
): string | undefined {
  if (!ref) return undefined; // a local action (uses: ./)
  if (/^[0-9a-f]{40}$/i.test(ref)) return undefined;
  if (/^v?\d+(\.\d+){0,2}([-+][\w.-]+)?$/.test(ref)) return undefined;
  return `${repository ?? "this action"} is referenced by "${ref}", which looks like a branch: a branch can change under your workflow. Pin a release tag or a full commit SHA, e.g. "uses: ${repository ?? "acme/idbot"}@v1".`;
}
