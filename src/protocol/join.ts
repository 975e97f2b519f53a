// Wire types of the join protocol (/v1/...), shared by client and server. The server
// validates every request with these schemas; the client validates every response.
import { z } from "zod";

export const PROTOCOL_VERSION = "v1";

export const JOIN_METHODS = ["github", "gitlab", "oidc"] as const;
export type JoinMethodName = (typeof JOIN_METHODS)[number];

/** Output types a join can ask for. `identity` = SSH key+cert and TLS client cert. */
export const OUTPUT_TYPES = ["identity", "ssh", "kubernetes", "database", "spiffe-x509", "jwt"] as const;
export type OutputType = (typeof OUTPUT_TYPES)[number];

/** Maximum certificate lifetime the protocol allows at all (roles may cap lower). */
export const MAX_TTL_SECONDS = 24 * 3600;
export const DEFAULT_TTL_SECONDS = 3600;

const pem = (label: string) =>
  z
    .string()
    .max(8192)
    .refine((s) => s.includes(`-----BEGIN ${label}-----`), { message: `expected a PEM ${label}` });

export const JoinRequestSchema = z
  .strictObject({
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
    kubernetes: z.strictObject({ cluster: z.string().min(1).max(128) }).optional(),
    database: z
      .strictObject({
        service: z.string().min(1).max(128),
        user: z.string().min(1).max(63),
        name: z.string().min(1).max(63).optional(),
      })
      .optional(),
    spiffe: z.strictObject({ path: z.string().min(1).max(2048).optional() }).optional(),
    jwt: z.strictObject({ audiences: z.array(z.string().min(1).max(512)).min(1).max(16) }).optional(),
  })
  .superRefine((r, ctx) => {
    // Each output that needs parameters must carry them, named as the client sends them.
    const need: Array<[OutputType, keyof typeof r, string]> = [
      ["kubernetes", "kubernetes", "the kubernetes output needs kubernetes.cluster"],
      ["database", "database", "the database output needs database.service and database.user"],
      ["jwt", "jwt", "the jwt output needs jwt.audiences"],
    ];
    for (const [output, field, message] of need) {
      if (r.outputs.includes(output) && r[field] === undefined)
        ctx.addIssue({ code: "custom", path: [field], message });
    }
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
  kubernetes: z
    .object({
      cluster: z.string(),
      server: z.string(),
      /** CA of the API server, for certificate-authority-data. */
      ca: z.string(),
      tls_server_name: z.string().optional(),
      certificate: z.string(),
      user: z.string(),
      groups: z.array(z.string()),
    })
    .optional(),
  database: z
    .object({
      service: z.string(),
      protocol: z.string(),
      host: z.string(),
      port: z.number(),
      /** CA of the database server, for sslrootcert. */
      ca: z.string(),
      certificate: z.string(),
      user: z.string(),
      name: z.string(),
    })
    .optional(),
  spiffe: z
    .object({
      spiffe_id: z.string(),
      certificate: z.string(),
      /** The trust domain's X.509 bundle (the SPIFFE CA). */
      bundle: z.string(),
    })
    .optional(),
  jwt: z
    .object({
      token: z.string(),
      spiffe_id: z.string(),
      audiences: z.array(z.string()),
    })
    .optional(),
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
