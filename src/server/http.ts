// Routes only: parse and validate the request, call the handler, write JSON or text.

import { randomUUID, X509Certificate } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import {
  ChallengeRequestSchema,
  type ErrorBody,
  JoinRequestSchema,
  RenewRequestSchema,
} from "../protocol/join.ts";
import { describeProblems, fieldProblems } from "../protocol/validation.ts";
import { handleAdmin } from "./admin.ts";
import type { ConnectionBalance } from "./balance.ts";
import { openIdConfiguration } from "./ca/jwt.ts";
import { handleChallenge, handleJoin, type JoinContext } from "./join.ts";
import { JoinError } from "./joinmethods/errors.ts";
import { closeAfterAnswer, isLingering } from "./linger.ts";
import type { Metrics } from "./metrics.ts";
import type { Limiter } from "./ratelimit.ts";
import { handleRenew } from "./renew.ts";

/** Requests larger than this are refused before any parsing. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface RouteContext extends JoinContext {
  logger: import("./log.ts").Logger;
  metrics: Metrics;
  /** The metrics page; a worker thread's adds up every thread's metrics. */
  renderMetrics: () => Promise<string>;
  limits: { address: Limiter; token: Limiter };
  /** serve --workers: sheds a connection from a thread holding more than its share. */
  balance?: ConnectionBalance;
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  type: string,
  extra?: Record<string, string>,
): void {
  res.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...extra,
  });
  res.end(body);
}

const sendJson = (res: ServerResponse, status: number, value: unknown) =>
  send(res, status, JSON.stringify(value), "application/json");

function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  hint?: string,
  headers?: Record<string, string>,
): void {
  const body: ErrorBody = { error: { code, message, ...(hint ? { hint } : {}) } };
  send(res, status, JSON.stringify(body), "application/json", headers);
}

/** The client closed the connection before its request body was complete. */
class ClientAbort extends Error {
  constructor(cause: Error) {
    super(`the client closed the connection: ${cause.message}`, { cause });
  }
}

function readBody(req: IncomingMessage): Promise<Buffer | "too_large"> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers["content-length"] ?? 0) > MAX_BODY_BYTES) {
      resolve("too_large");
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
      else if (size - c.length <= MAX_BODY_BYTES) resolve("too_large"); // stop buffering, answer at once
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", (e) => reject(new ClientAbort(e)));
  });
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

type Outcome = { status: number; body?: unknown };

export function createHandler(ctx: RouteContext) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (isLingering(req.socket)) {
      req.socket.destroy();
      return;
    }
    const started = performance.now();
    ctx.metrics.requests.inc({ thread: ctx.metrics.thread });
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    // A caller's request id (a load balancer's) is kept when sane; else one is made.
    const given = req.headers["x-request-id"];
    const requestId = typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    res.setHeader("x-request-id", requestId);
    if (ctx.balance?.shouldClose(req.socket, res)) {
      res.setHeader("connection", "close");
      ctx.metrics.connectionsShed.inc({ thread: ctx.metrics.thread });
    }
    const meta = { remoteAddr: req.socket.remoteAddress, requestId };
    let route = "other";
    try {
      if (path.startsWith("/v1/admin/")) {
        route = "/v1/admin";
        return await handleAdmin(req, res, path, ctx, meta);
      }
      if (req.method === "GET" || req.method === "HEAD") {
        route = path;
        switch (path) {
          case "/healthz": {
            const ok = await ctx.store.healthy();
            return sendJson(res, ok ? 200 : 503, { status: ok ? "ok" : "unhealthy", store: ctx.store.kind });
          }
          case "/metrics":
            return send(res, 200, await ctx.renderMetrics(), "text/plain; version=0.0.4; charset=utf-8");
          case "/v1/ca/ssh-user":
            return send(res, 200, `${ctx.authorities.sshUserCaLine}\n`, "text/plain; charset=utf-8");
          case "/v1/ca/ssh-host":
            return send(res, 200, `${ctx.authorities.sshHostCaLine}\n`, "text/plain; charset=utf-8");
          case "/v1/ca/tls":
            return send(res, 200, ctx.authorities.tlsCaPem, "application/x-pem-file");
          case "/v1/ca/spiffe":
            return send(res, 200, ctx.authorities.spiffe.caCertPem, "application/x-pem-file");
          case "/.well-known/jwks.json":
            return send(res, 200, ctx.authorities.jwt.jwks(), "application/json");
          case "/.well-known/openid-configuration":
            return send(res, 200, openIdConfiguration(ctx.publicUrl), "application/json");
        }
        route = "other";
      } else if (
        req.method === "POST" &&
        (path === "/v1/join" || path === "/v1/join/challenge" || path === "/v1/renew")
      ) {
        route = path;
        // Per source address, before reading anything.
        const wait = await ctx.limits.address.take(meta.remoteAddr ?? "unknown");
        if (wait > 0) {
          ctx.metrics.rateLimited.inc({ limit: "address" });
          return sendError(
            res,
            429,
            "rate_limited",
            "too many requests from this address",
            `Retry after ${wait} s.`,
            {
              "retry-after": String(wait),
            },
          );
        }
        const out = await dispatch(req, res, path, meta);
        if (out) account(path, out);
        return;
      }
      return sendError(res, 404, "not_found", `no route ${req.method} ${path}`);
    } catch (e) {
      if (e instanceof ClientAbort) {
        // Nobody is left to answer, and nothing failed on our side.
        ctx.logger.log("warn", "request aborted by the client", {
          path,
          request_id: requestId,
          remote_addr: meta.remoteAddr,
          error: e.message,
        });
        return;
      }
      ctx.metrics.storeErrors.inc();
      ctx.logger.log("error", "request failed", { path, request_id: requestId, error: String(e) });
      if (!res.headersSent) sendError(res, 500, "internal", "internal error");
    } finally {
      ctx.metrics.requestSeconds.observe((performance.now() - started) / 1000, { route });
    }
  };

  /** Per join token (after parsing), then the handler. */
  async function dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    meta: { remoteAddr?: string; requestId: string },
  ): Promise<Outcome | undefined> {
    const tokenLimit = async (token: string, method?: string) => {
      // A one-time secret is limited under one shared key, never keyed by the secret.
      const wait = await ctx.limits.token.take(method === "token" ? "one-time-secrets" : `token:${token}`);
      if (wait > 0) {
        ctx.metrics.rateLimited.inc({ limit: "token" });
        throw Object.assign(
          new JoinError("rate_limited", "too many joins for this join token", `Retry after ${wait} s.`),
          {
            retryAfter: wait,
          },
        );
      }
    };
    switch (path) {
      case "/v1/join":
        return post(req, res, JoinRequestSchema, async (body) => {
          await tokenLimit(body.token, body.join_method);
          return handleJoin(body, meta, ctx);
        });
      case "/v1/join/challenge":
        return post(req, res, ChallengeRequestSchema, async (body) => {
          await tokenLimit(body.token);
          return handleChallenge(body.token, meta, ctx);
        });
      default:
        return post(req, res, RenewRequestSchema, async (body) => {
          const renewed = await handleRenew(body, meta, ctx);
          // How old the certificate it replaces was (the seed's 80%-of-TTL threshold).
          // It verified in handleRenew; a metric never fails a renewal all the same.
          try {
            const cert = new X509Certificate(body.certificate);
            ctx.metrics.renewedCertificate(
              Date.parse(cert.validFrom),
              Date.parse(cert.validTo),
              (ctx.now?.() ?? new Date()).getTime(),
            );
          } catch {}
          return renewed;
        });
    }
  }

  function account(path: string, out: Outcome): void {
    const result =
      out.status === 200
        ? "success"
        : out.status === 403
          ? "denied"
          : out.status === 429
            ? "rate_limited"
            : out.status < 500
              ? "bad_request"
              : "error";
    if (out.status === 403) ctx.metrics.authFailure(path === "/v1/renew" ? "renew" : "join");
    if (path === "/v1/renew")
      ctx.metrics.renewals.inc({ result: out.status === 200 ? "success" : "failure" });
    if (path === "/v1/join") ctx.metrics.joins.inc({ result });
    if (out.status === 200 && path !== "/v1/join/challenge") {
      const r = out.body as Record<string, unknown>;
      for (const k of ["ssh", "tls", "kubernetes", "database", "spiffe", "jwt", "ssh_host"]) {
        if (r[k] !== undefined) ctx.metrics.certificates.inc({ type: k });
      }
    }
  }
}

/** Reads, parses and validates a JSON body, then answers with the handler's result or
 *  its JoinError (status, code, message, hint). */
async function post<S extends z.ZodType>(
  req: IncomingMessage,
  res: ServerResponse,
  schema: S,
  handle: (body: z.output<S>) => Promise<unknown>,
): Promise<Outcome> {
  const fail = (
    status: number,
    code: string,
    message: string,
    hint?: string,
    headers?: Record<string, string>,
  ): Outcome => {
    sendError(res, status, code, message, hint, headers);
    return { status };
  };
  if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
    return fail(415, "bad_request", "send the request as application/json");
  }
  const raw = await readBody(req);
  if (raw === "too_large") {
    // Answer before reading the rest; the connection closes after a short linger.
    closeAfterAnswer(req, res);
    return fail(413, "payload_too_large", `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(raw.toString("utf8"));
  } catch {
    return fail(400, "bad_request", "the request body is not valid JSON");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    return fail(400, "bad_request", `invalid request: ${describeProblems(fieldProblems(parsed.error))}`);
  }
  try {
    const body = await handle(parsed.data);
    sendJson(res, 200, body);
    return { status: 200, body };
  } catch (e) {
    if (e instanceof JoinError) {
      const wait = (e as { retryAfter?: number }).retryAfter;
      return fail(e.status, e.code, e.message, e.hint, wait ? { "retry-after": String(wait) } : undefined);
    }
    throw e;
  }
}
