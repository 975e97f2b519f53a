// The proof of a GitHub Actions job: an OIDC ID token minted on demand by the runner's
// token service (ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN, present only when the workflow grants
// `id-token: write`), a fresh one for every attempt. The Action, the CLI and the runner
// hooks all ask the endpoint directly, the way @actions/core's getIDToken does: GET
// ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD with "Authorization: Bearer
// ACTIONS_ID_TOKEN_REQUEST_TOKEN", answered with {"value": "<jwt>"}. getIDToken itself
// prints workflow commands to stdout (the CLI's result channel) and retries on its own
// schedule, outside the join's deadline.

import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { HttpsProxyAgent } from "https-proxy-agent";
import { decodeJwt } from "jose";
import { getProxyForUrl } from "proxy-from-env";

/** The job may not request an OIDC token: fail before any network call, with the fix. */
export class NoOidcPermissionError extends Error {
  override name = "NoOidcPermissionError";
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

export function actionsOidcAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.ACTIONS_ID_TOKEN_REQUEST_URL && env.ACTIONS_ID_TOKEN_REQUEST_TOKEN);
}

const TIMEOUT_MS = 10_000;

function retryable(message: string): Error {
  // The token service failing is transient: the join loop retries it.
  return Object.assign(new Error(`requesting the GitHub ID token failed: ${message}`), { retryable: true });
}

export function fetchGitHubIdToken(audience: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const url = new URL(env.ACTIONS_ID_TOKEN_REQUEST_URL!);
  url.searchParams.set("audience", audience);
  const options: RequestOptions = {
    method: "GET",
    headers: {
      authorization: `Bearer ${env.ACTIONS_ID_TOKEN_REQUEST_TOKEN}`,
      accept: "application/json",
      "user-agent": "idbot-client",
    },
    timeout: TIMEOUT_MS,
  };
  const proxy = url.protocol === "https:" ? getProxyForUrl(url.href) : "";
  if (proxy) options.agent = new HttpsProxyAgent(proxy);
  return new Promise((resolve, reject) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(url, options, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
        if (body.length > 64 * 1024) req.destroy(new Error("answer too large"));
      });
      res.on("end", () => {
        if (res.statusCode !== 200) {
          reject(retryable(`HTTP ${res.statusCode} ${body.slice(0, 200)}`));
          return;
        }
        try {
          const value = (JSON.parse(body) as { value?: unknown }).value;
          if (typeof value !== "string" || value === "") throw new Error("no value");
          resolve(value);
        } catch {
          reject(retryable("the token service's answer holds no token"));
        }
      });
      res.on("error", (e) => reject(retryable(e.message)));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on("error", (e) => reject(retryable((e as NodeJS.ErrnoException).code ?? e.message)));
    req.end();
  });
}

/** Fails fast, before any network call, when the job has no OIDC permission. */
export function actionsIdTokenSource(
  audience: string,
  env: NodeJS.ProcessEnv = process.env,
): () => Promise<string> {
  if (!actionsOidcAvailable(env)) throw new NoOidcPermissionError();
  return () => fetchGitHubIdToken(audience, env);
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
