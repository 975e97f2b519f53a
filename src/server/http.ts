// Routes only: parse and validate the request, call the handler, write JSON or text.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import {
  ChallengeRequestSchema,
  type ErrorBody,
  JoinRequestSchema,
  RenewRequestSchema,
} from "../protocol/join.ts";
import { describeProblems, fieldProblems } from "../protocol/validation.ts";
import { openIdConfiguration } from "./ca/jwt.ts";
import { handleChallenge, handleJoin, type JoinContext } from "./join.ts";
import { JoinError } from "./joinmethods/errors.ts";
import { handleRenew } from "./renew.ts";

/** Requests larger than this are refused before any parsing. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface RouteContext extends JoinContext {
  logger: import("./log.ts").Logger;
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

function sendError(res: ServerResponse, status: number, code: string, message: string, hint?: string): void {
  const body: ErrorBody = { error: { code, message, ...(hint ? { hint } : {}) } };
  sendJson(res, status, body);
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
    req.on("error", reject);
  });
}

export function createHandler(ctx: RouteContext) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0];
    try {
      if (req.method === "GET" || req.method === "HEAD") {
        switch (path) {
          case "/healthz": {
            const ok = await ctx.store.healthy();
            return sendJson(res, ok ? 200 : 503, { status: ok ? "ok" : "unhealthy", store: ctx.store.kind });
          }
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
      } else if (req.method === "POST") {
        switch (path) {
          case "/v1/join":
            return await post(req, res, JoinRequestSchema, (body) =>
              handleJoin(body, { remoteAddr: req.socket.remoteAddress }, ctx),
            );
          case "/v1/join/challenge":
            return await post(req, res, ChallengeRequestSchema, (body) =>
              handleChallenge(body.token, { remoteAddr: req.socket.remoteAddress }, ctx),
            );
          case "/v1/renew":
            return await post(req, res, RenewRequestSchema, (body) =>
              handleRenew(body, { remoteAddr: req.socket.remoteAddress }, ctx),
            );
        }
      }
      return sendError(res, 404, "not_found", `no route ${req.method} ${path}`);
    } catch (e) {
      ctx.logger.log("error", "request failed", { path, error: String(e) });
      if (!res.headersSent) sendError(res, 500, "internal", "internal error");
    }
  };
}

/** Reads, parses and validates a JSON body, then answers with the handler's result or
 *  its JoinError (status, code, message, hint). */
async function post<S extends z.ZodType>(
  req: IncomingMessage,
  res: ServerResponse,
  schema: S,
  handle: (body: z.output<S>) => Promise<unknown>,
): Promise<void> {
  if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
    return sendError(res, 415, "bad_request", "send the request as application/json");
  }
  const raw = await readBody(req);
  if (raw === "too_large") {
    // Answer before reading the rest, then close the connection instead of draining it.
    res.setHeader("connection", "close");
    res.on("finish", () => req.socket.destroySoon());
    return sendError(
      res,
      413,
      "payload_too_large",
      `the request body is larger than ${MAX_BODY_BYTES} bytes`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(raw.toString("utf8"));
  } catch {
    return sendError(res, 400, "bad_request", "the request body is not valid JSON");
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    return sendError(
      res,
      400,
      "bad_request",
      `invalid request: ${describeProblems(fieldProblems(parsed.error))}`,
    );
  }
  try {
    sendJson(res, 200, await handle(parsed.data));
  } catch (e) {
    if (e instanceof JoinError) return sendError(res, e.status, e.code, e.message, e.hint);
    throw e;
  }
}
