// Wire types of the join protocol (/v1/...), shared by client and server. The server
// validates every request with these schemas; the client validates every response.
import { z } from "zod";

export const PROTOCOL_VERSION = "v1";

export const JOIN_METHODS = [
  "github",
  "gitlab",
  "oidc",
  "token",
  "bound_keypair",
  "kubernetes",
  "gcp",
  "iam",
  "azure",
] as const;
/** Methods whose proof travels in `id_token`: a platform-signed JWT (github, gitlab, oidc,
 *  kubernetes, gcp), or for iam the presigned sts:GetCallerIdentity request and for azure
 *  the attested document with its access token, each as JSON. */
export const ID_TOKEN_METHODS: readonly JoinMethodName[] = [
  "github",
  "gitlab",
  "oidc",
  "kubernetes",
  "gcp",
  "iam",
  "azure",
];
export type JoinMethodName = (typeof JOIN_METHODS)[number];

/** Output types a join can ask for. `identity` = SSH key+cert and TLS client cert. */
export const OUTPUT_TYPES = [
  "identity",
  "ssh",
  "kubernetes",
  "database",
  "spiffe-x509",
  "jwt",
  "ssh_host",
] as const;
export type OutputType = (typeof OUTPUT_TYPES)[number];

/** Maximum certificate lifetime the protocol allows at all (roles may cap lower). */
export const MAX_TTL_SECONDS = 24 * 3600;
export const DEFAULT_TTL_SECONDS = 3600;

const pem = (label: string) =>
  z
    .string()
    .max(8192)
    .refine((s) => s.includes(`-----BEGIN ${label}-----`), { message: `expected a PEM ${label}` });

/** What certificates to issue, shared by joins and renewals. */
const issuance = {
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
  /** The machine's SSH host public key (OpenSSH line), for the ssh_host output. */
  ssh_host: z.strictObject({ public_key: z.string().min(1).max(16384) }).optional(),
};

interface IssuanceFields {
  outputs: OutputType[];
  kubernetes?: unknown;
  database?: unknown;
  jwt?: unknown;
  ssh_host?: unknown;
}

// Each output that needs parameters must carry them, named as the client sends them.
function requireOutputParams(r: IssuanceFields, ctx: z.RefinementCtx): void {
  const need: Array<[OutputType, keyof IssuanceFields, string]> = [
    ["kubernetes", "kubernetes", "the kubernetes output needs kubernetes.cluster"],
    ["database", "database", "the database output needs database.service and database.user"],
    ["jwt", "jwt", "the jwt output needs jwt.audiences"],
    ["ssh_host", "ssh_host", "the ssh_host output needs ssh_host.public_key"],
  ];
  for (const [output, field, message] of need) {
    if (r.outputs.includes(output) && r[field] === undefined)
      ctx.addIssue({ code: "custom", path: [field], message });
  }
}

export const JoinRequestSchema = z
  .strictObject({
    /** Join token resource name, or for join_method "token" the one-time secret. */
    token: z.string().min(1).max(256),
    join_method: z.enum(JOIN_METHODS),
    /** The platform-signed ID token (github, gitlab, oidc). */
    id_token: z.string().min(1).max(16384).optional(),
    /** The answer to a /v1/join/challenge (bound_keypair). */
    bound_keypair: z
      .strictObject({
        /** OpenSSH line of the bound Ed25519 key that signed. */
        public_key: z.string().min(1).max(1024),
        challenge_id: z.string().min(1).max(64),
        /** base64 Ed25519 signature over boundKeypairSigningInput(). */
        signature: z.string().min(1).max(256),
        /** First join only, when the token onboards with a registration secret. */
        registration_secret: z.string().min(1).max(256).optional(),
        /** What the previous join returned; absent on the first join. */
        join_state: z.string().min(1).max(256).optional(),
        /** Key rotation: bind this key from now on. */
        next_public_key: z.string().min(1).max(1024).optional(),
      })
      .optional(),
    ...issuance,
  })
  .superRefine((r, ctx) => {
    requireOutputParams(r, ctx);
    if (ID_TOKEN_METHODS.includes(r.join_method) && r.id_token === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["id_token"],
        message: `join method ${r.join_method} needs id_token`,
      });
    }
    if (r.join_method === "bound_keypair" && r.bound_keypair === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["bound_keypair"],
        message: "join method bound_keypair needs the challenge answer",
      });
    }
  });
export type JoinRequest = z.input<typeof JoinRequestSchema>;
export type JoinRequestParsed = z.output<typeof JoinRequestSchema>;

export const JoinResponseSchema = z.object({
  bot_name: z.string(),
  bot_instance_id: z.string(),
  /** Certificate generation (1 at join, +1 per renewal). */
  generation: z.number(),
  /** bound_keypair: present it at the next join. */
  join_state: z.string().optional(),
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
  ssh_host: z
    .object({
      certificate: z.string(),
      principals: z.array(z.string()),
      /** The SSH user CA, for sshd's TrustedUserCAKeys. */
      user_ca: z.string(),
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
  "unauthorized",
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

/** A server challenge: bound_keypair signs it; azure binds it as the attested document's nonce. */
export const ChallengeRequestSchema = z.strictObject({
  token: z.string().min(1).max(256),
  join_method: z.enum(["bound_keypair", "azure"]),
});
export const ChallengeResponseSchema = z.object({
  challenge_id: z.string(),
  nonce: z.string(),
  expires_at: z.string(),
});
export type ChallengeResponse = z.infer<typeof ChallengeResponseSchema>;

/** What the bound key signs: the challenge, bound to the token and to the session keys
 *  of this very request, so an intercepted answer cannot be replayed with other keys. */
export function boundKeypairSigningInput(
  token: string,
  challengeId: string,
  nonce: string,
  publicKeys: { ssh: string; tls: string },
): Buffer {
  return Buffer.from(
    `idbot-bound-keypair-v1\n${token}\n${challengeId}\n${nonce}\n${publicKeys.ssh}\n${publicKeys.tls}`,
  );
}

export const RenewRequestSchema = z
  .strictObject({
    bot_instance_id: z.string().min(1).max(64),
    generation: z.number().int().positive(),
    /** The current TLS client certificate (PEM). */
    certificate: z.string().min(1).max(8192),
    /** Unix seconds; must be within a minute of the service's clock. */
    timestamp: z.number().int().positive(),
    /** base64 signature by the current TLS key over renewSigningInput(). */
    signature: z.string().min(1).max(512),
    heartbeat: z
      .strictObject({
        hostname: z.string().max(256).optional(),
        version: z.string().max(64).optional(),
        uptime_seconds: z.number().int().nonnegative().optional(),
      })
      .optional(),
    ...issuance,
  })
  .superRefine(requireOutputParams);
export type RenewRequest = z.input<typeof RenewRequestSchema>;
export type RenewRequestParsed = z.output<typeof RenewRequestSchema>;

/** What the current TLS key signs to renew: the instance, the generation it holds, the
 *  time, and the new public keys, so the request cannot be replayed with other keys. */
export function renewSigningInput(
  instanceId: string,
  generation: number,
  timestamp: number,
  publicKeys: { ssh: string; tls: string },
): Buffer {
  return Buffer.from(
    `idbot-renew-v1\n${instanceId}\n${generation}\n${timestamp}\n${publicKeys.ssh}\n${publicKeys.tls}`,
  );
}

/** URI SAN of the identity's TLS certificate naming its bot instance and generation. */
export function instanceUri(instanceId: string, generation: number): string {
  return `urn:idbot:instance:${instanceId}:${generation}`;
}
export function parseInstanceUri(uri: string): { instanceId: string; generation: number } | undefined {
  const m = /^urn:idbot:instance:([0-9a-f-]{36}):(\d+)$/.exec(uri);
  return m ? { instanceId: m[1]!, generation: Number(m[2]) } : undefined;
}
