// Wire types of the join protocol (/v1/...), shared by client and server. The server
// validates every request with these schemas; the client validates every response.
import { z } from "zod";

export const PROTOCOL_VERSION = "v1";

export const JOIN_METHODS = ["github"] as const;
export type JoinMethodName = (typeof JOIN_METHODS)[number];

/** Output types a join can ask for. `identity` = SSH key+cert and TLS client cert. */
export const OUTPUT_TYPES = ["identity", "ssh"] as const;
export type OutputType = (typeof OUTPUT_TYPES)[number];

/** Maximum certificate lifetime the protocol allows at all (roles may cap lower). */
export const MAX_TTL_SECONDS = 24 * 3600;
export const DEFAULT_TTL_SECONDS = 3600;

const pem = (label: string) =>
  z
    .string()
    .max(8192)
    .refine((s) => s.includes(`-----BEGIN ${label}-----`), { message: `expected a PEM ${label}` });

export const JoinRequestSchema = z.strictObject({
  token: z.string().min(1).max(256),
  join_method: z.enum(JOIN_METHODS),
  id_token: z.string().min(1).max(16384),
  public_keys: z.strictObject({
    /** OpenSSH public key line (ssh-ed25519 ...). */
    ssh: z.string().min(1).max(4096),
    /** SPKI PEM of the TLS key (ECDSA P-256). */
    tls: pem("PUBLIC KEY"),
  }),
  outputs: z.array(z.enum(OUTPUT_TYPES)).min(1).max(16).default(["identity", "ssh"]),
  /** Requested certificate lifetime in seconds; capped by the roles' max_ttl. */
  ttl: z.number().int().positive().max(MAX_TTL_SECONDS).optional(),
});
export type JoinRequest = z.input<typeof JoinRequestSchema>;
export type JoinRequestParsed = z.output<typeof JoinRequestSchema>;

export const JoinResponseSchema = z.object({
  bot_name: z.string(),
  bot_instance_id: z.string(),
  /** RFC 3339 expiry shared by every certificate of this join. */
  expires_at: z.string(),
  ttl_seconds: z.number(),
  /** True when the requested TTL was above what the roles allow. */
  ttl_capped: z.boolean(),
  ssh: z
    .object({
      certificate: z.string(),
      principals: z.array(z.string()),
      user_ca: z.string(),
      host_ca: z.string(),
    })
    .optional(),
  tls: z.object({
    certificate: z.string(),
    ca: z.string(),
  }),
});
export type JoinResponse = z.infer<typeof JoinResponseSchema>;

export const ERROR_CODES = [
  "bad_request",
  "denied",
  "not_found",
  "payload_too_large",
  "rate_limited",
  "unavailable",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    hint: z.string().optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
