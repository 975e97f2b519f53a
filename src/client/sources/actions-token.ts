// The GitHub Actions ID token for the CLI and the runner hooks, requested from the
// runner's token service directly. The Action uses @actions/core's getIDToken, which
// prints workflow commands (::debug::, ::add-mask::) to stdout: that is the CLI's result
// channel, so the CLI asks the same endpoint itself. Same protocol: GET
// ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD with "Authorization: Bearer
// ACTIONS_ID_TOKEN_REQUEST_TOKEN", answered with {"value": "<jwt>"}.
// This module does not import github.ts: that would pull @actions/core and its HTTP stack
// (undici, ~0.8 MB) into dist/idbot.js.
import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { HttpsProxyAgent } from "https-proxy-agent";
import { getProxyForUrl } from "proxy-from-env";

/** The job may not request an OIDC token (same message as the Action's MissingOidcError). */
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
    "id-token: write for security reasons: run the join only on trusted events.",
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
