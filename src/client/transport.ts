// How the client talks HTTP: behind an interface so tests can swap it. The node
// implementation pins the service CA when given, honours HTTPS_PROXY/NO_PROXY, and
// refuses plain HTTP to anything but loopback.
import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import { HttpsProxyAgent } from "https-proxy-agent";
import { getProxyForUrl } from "proxy-from-env";
import { isLoopbackHost } from "../protocol/net.ts";

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface Transport {
  postJson(url: string, body: unknown, opts: { timeoutMs: number }): Promise<HttpResponse>;
}

/** A network-level failure (refused, reset, timeout, TLS): worth retrying. */
export class TransportError extends Error {
  override name = "TransportError";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

export class InsecureUrlError extends Error {
  override name = "InsecureUrlError";
}

/** Only https:// URLs, or http:// to a loopback address (a local service or a test). */
export function checkServiceUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InsecureUrlError(`"${raw}" is not a URL; use the service's https:// URL`);
  }
  if (url.protocol === "https:") return url;
  if (url.protocol === "http:" && isLoopbackHost(url.hostname)) return url;
  if (url.protocol === "http:") {
    throw new InsecureUrlError(
      `refusing plain HTTP to ${url.host}: credentials would cross the network unencrypted. Use https://${url.host}${url.pathname === "/" ? "" : url.pathname} (http:// is allowed only for loopback addresses).`,
    );
  }
  throw new InsecureUrlError(`unsupported URL scheme "${url.protocol}" in ${raw}; use https://`);
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

/** Any method, extra headers (an Authorization header), a larger response cap. */
export interface HttpRequestOptions {
  method: "GET" | "POST" | "DELETE";
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs: number;
  maxResponseBytes?: number;
}

export function nodeTransport(
  opts: { caPem?: string } = {},
): Transport & { request(url: string, r: HttpRequestOptions): Promise<HttpResponse> } {
  const request = (
    rawUrl: string,
    { method, body, headers, timeoutMs, maxResponseBytes = MAX_RESPONSE_BYTES }: HttpRequestOptions,
  ): Promise<HttpResponse> => {
    const url = checkServiceUrl(rawUrl);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const options: RequestOptions = {
      method,
      headers: {
        ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
        accept: "application/json",
        "user-agent": "idbot-client",
        ...headers,
      },
      timeout: timeoutMs,
    };
    if (url.protocol === "https:") {
      if (opts.caPem) options.ca = opts.caPem;
      const proxy = getProxyForUrl(url.href);
      if (proxy) options.agent = new HttpsProxyAgent(proxy);
    }
    return new Promise<HttpResponse>((resolve, reject) => {
      const send = url.protocol === "https:" ? httpsRequest : httpRequest;
      const req = send(url, options, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > maxResponseBytes) {
            req.destroy(new TransportError("the service's response is too large"));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        res.on("error", (e) => reject(new TransportError(e.message, (e as NodeJS.ErrnoException).code)));
      });
      const timer = setTimeout(
        () => req.destroy(new TransportError(`no answer within ${timeoutMs} ms`, "ETIMEDOUT")),
        timeoutMs,
      );
      req.on("close", () => clearTimeout(timer));
      req.on("timeout", () =>
        req.destroy(new TransportError(`no answer within ${timeoutMs} ms`, "ETIMEDOUT")),
      );
      req.on("error", (e) => {
        const code = (e as NodeJS.ErrnoException).code;
        reject(
          e instanceof TransportError
            ? e
            : new TransportError(
                code && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)
                  ? `TLS verification of ${url.host} failed (${code}); if the service uses a private CA, pass it with the "ca" input`
                  : `cannot reach ${url.host}: ${code ?? e.message}`,
                code,
              ),
        );
      });
      req.end(payload);
    });
  };
  return {
    postJson: (rawUrl, body, { timeoutMs }) => request(rawUrl, { method: "POST", body, timeoutMs }),
    request,
  };
}
