// Raw HTTP(S) calls to a running service, for the e2e tests that speak the wire protocol
// themselves (well-formed or hostile), and a key pair to put in their join requests.
import { generateKeyPairSync } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies are inspected field by field
  json: any;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the body in chunks without a content-length (Transfer-Encoding: chunked). */
  chunked?: boolean;
  /** CA bundle (PEM) for an https:// URL. */
  ca?: string;
  timeoutMs?: number;
}

export function httpCall(url: string, opts: RequestOptions = {}): Promise<HttpResult> {
  const doRequest = new URL(url).protocol === "https:" ? httpsRequest : httpRequest;
  const headers: Record<string, string | number> = { ...(opts.headers ?? {}) };
  if (opts.body !== undefined && !opts.chunked) headers["content-length"] = Buffer.byteLength(opts.body);
  const timeout = opts.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const req = doRequest(url, { method: opts.method ?? "GET", headers, ca: opts.ca, timeout }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`request to ${url} timed out`)));
    // The service may answer (413) and close before the whole body is sent: the answer
    // counts, a write error after it does not.
    req.on("error", reject);
    if (opts.body !== undefined) {
      const buf = Buffer.from(opts.body);
      const step = opts.chunked ? 8192 : 64 * 1024;
      for (let i = 0; i < buf.length; i += step) req.write(buf.subarray(i, i + step));
    }
    req.end();
  });
}

export function postJoin(
  baseUrl: string,
  body: unknown,
  opts: Omit<RequestOptions, "body" | "method"> = {},
): Promise<HttpResult> {
  return httpCall(`${baseUrl}/v1/join`, {
    ...opts,
    method: "POST",
    headers: { "content-type": "application/json", ...(opts.headers ?? {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The public halves of a fresh Ed25519 SSH key and P-256 TLS key, as a join sends them. */
export function testPublicKeys(comment: string): { ssh: string; tls: string } {
  const sshKey = generateKeyPairSync("ed25519");
  const tlsKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    ssh: ed25519PublicKeyLine(sshKey.publicKey, comment),
    tls: tlsKey.publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}
