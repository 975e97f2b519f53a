// A join refused for a reason the job may see (`message`, `hint`) plus, for the
// operator's log and audit only, the full detail (which rule fields held which values).
import type { ErrorCode } from "../../protocol/join.ts";

export class JoinError extends Error {
  override name = "JoinError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
    /** Operator-only detail; never sent to the job. */
    readonly detail?: string,
    readonly status = code === "denied"
      ? 403
      : code === "not_found"
        ? 404
        : code === "unavailable"
          ? 503
          : code === "rate_limited"
            ? 429
            : code === "internal"
              ? 500
              : 400,
  ) {
    super(message);
  }
}

export const denied = (message: string, hint?: string, detail?: string) =>
  new JoinError("denied", message, hint, detail);
