// The proof of a Google Cloud VM (or GKE node, Cloud Run service): an ID token from the
// metadata server, GET
//   http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=AUD&format=full
// with "Metadata-Flavor: Google", fetched fresh for every attempt. format=full makes the
// token name the project, zone and instance. $IDBOT_GCP_METADATA_URL replaces the
// endpoint (a base URL like http://169.254.169.254 gets the path above; a full URL picks
// another service account); it must be plain http to the metadata host or to loopback:
// the metadata server is link-local and speaks no TLS, and nothing else may be asked.
// No proxy, no redirects, and the answer must carry "Metadata-Flavor: Google".
import { request } from "node:http";
import { isLoopbackHost } from "../../protocol/net.ts";
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";
import { IdTokenError } from "./env.ts";

export const GCP_METADATA_IDENTITY_URL =
  "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity";
const IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity";
const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata.google.internal.", "169.254.169.254"]);
const MAX_ANSWER = 64 * 1024;

function metadataUrl(raw: string | undefined): URL {
  const value = raw?.trim() || GCP_METADATA_IDENTITY_URL;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new IdTokenError("malformed", `IDBOT_GCP_METADATA_URL "${value}" is not a URL`);
  }
  if (url.protocol !== "http:" || !(METADATA_HOSTS.has(url.hostname) || isLoopbackHost(url.hostname))) {
    throw new IdTokenError(
      "malformed",
      `IDBOT_GCP_METADATA_URL "${value}" is not the metadata server: only http://metadata.google.internal, http://169.254.169.254 or a loopback address are asked for an identity token`,
    );
  }
  if (url.pathname === "/" || url.pathname === "") url.pathname = IDENTITY_PATH;
  url.search = "";
  url.hash = "";
  return url;
}

const retryable = (message: string): Error =>
  Object.assign(new Error(`requesting the GCP identity token failed: ${message}`), { retryable: true });

export function gcpProofSource(opts: CloudSourceOptions): ProofSource {
  const base = metadataUrl(opts.env.IDBOT_GCP_METADATA_URL);
  const timeoutMs = Math.min(opts.timeoutMs, 10_000);
  return () => {
    const url = new URL(base);
    url.searchParams.set("audience", opts.audience);
    url.searchParams.set("format", "full");
    return new Promise<string>((resolve, reject) => {
      const req = request(
        url,
        {
          method: "GET",
          // A fresh connection: never a proxy from the environment.
          agent: false,
          headers: { "Metadata-Flavor": "Google", "user-agent": "idbot-client" },
          timeout: timeoutMs,
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            body += d;
            if (body.length > MAX_ANSWER) req.destroy(new Error("the answer is too large"));
          });
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            if (status >= 500 || status === 429) return reject(retryable(`HTTP ${status}`));
            if (res.headers["metadata-flavor"] !== "Google") {
              return reject(
                new IdTokenError(
                  "malformed",
                  `${url.host} answered without "Metadata-Flavor: Google": it is not a GCE metadata server`,
                ),
              );
            }
            if (status === 404) {
              return reject(
                new IdTokenError(
                  "missing",
                  `the metadata server has no identity for ${url.pathname.split("/").at(-2)} (HTTP 404)`,
                  "Attach a service account to the VM (or name an existing one in IDBOT_GCP_METADATA_URL).",
                ),
              );
            }
            if (status !== 200) {
              return reject(
                new IdTokenError(
                  "missing",
                  `the metadata server refused the identity token (HTTP ${status}: ${body.trim().slice(0, 200)})`,
                ),
              );
            }
            const token = body.trim();
            if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) {
              return reject(new IdTokenError("malformed", "the metadata server's answer is not a JWT"));
            }
            resolve(token);
          });
          res.on("error", (e) => reject(retryable(e.message)));
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", (e) => {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOTFOUND") {
          reject(
            new IdTokenError(
              "missing",
              `${url.hostname} does not resolve: this is not a Google Cloud VM, GKE node or Cloud Run service`,
              "The gcp join method runs on Google Cloud; elsewhere use another join method.",
            ),
          );
        } else {
          reject(retryable(code ?? e.message));
        }
      });
      req.end();
    });
  };
}
