// The `kubernetes` join method: a projected service account token, minted by the kubelet
// for the audience of this service. Three ways to check it, as operators of Teleport and
// Vault expect:
//   static_jwks  the cluster's keys given inline (`kubectl get --raw /openid/v1/jwks`), for
//                clusters the service cannot reach;
//   oidc         the cluster issuer's OIDC discovery (/.well-known/openid-configuration,
//                then its jwks_uri), for issuers published on the network (EKS, GKE, AKS,
//                or an API server serving discovery to anonymous callers);
//   in_cluster   a TokenReview against the API server, with the service's own service
//                account token (RBAC: system:auth-delegator). The API server also checks
//                that the pod and service account the token is bound to still exist.
// Allow rules name the service account as "NAMESPACE:NAME" (globs) and may pin the pod
// and node the token is bound to.
//
// Replay: a token is accepted once. Its key is its `jti` (Kubernetes 1.29+ puts one in
// every projected token), else "sha256:" + SHA-256 of the signed part of the JWT
// (header.payload, which holds exp and iat). Not the whole token string: a JWT's signature
// can be re-encoded (base64url leaves spare bits in its last character, and ECDSA
// signatures are malleable) into another string that still verifies, which would give a
// replayed token a fresh key. The signed part cannot change without breaking the
// signature, so one issued token has exactly one key. The key is kept until exp + 2 min.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent, request as httpsRequest } from "node:https";
import * as jose from "jose";
import { z } from "zod";
import { denied, JoinError } from "./errors.ts";
import { CLOCK_LEEWAY_SECONDS, keyUrlSchema, staticJwks, verifyIdToken } from "./jwt.ts";
import type { CheckContext, ClaimJoinMethod } from "./method.ts";
import { evaluateRules, type Rule } from "./rules.ts";

/** Where a pod finds its own service account token, the API server's CA and address. */
export const IN_CLUSTER_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token";
export const IN_CLUSTER_CA_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
export const IN_CLUSTER_API_SERVER = "https://kubernetes.default.svc";

export const TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews";
const REVIEW_TIMEOUT_MS = 5000;
const MAX_REVIEW_BYTES = 1024 * 1024;

const SA_USERNAME = /^system:serviceaccount:([^:]+):([^:]+)$/;

const glob = z.string().min(1).max(512);

export const KUBERNETES_RULE_FIELDS = ["service_account", "pod_name", "pod_uid", "node_name"] as const;

export const KubernetesRuleSchema = z.strictObject({
  /** "NAMESPACE:NAME", `*`/`?` globs in either part ("ci:builder-*", "*:*"). */
  service_account: z
    .string()
    .max(512)
    .regex(
      /^[^:\s]+:[^:\s]+$/,
      'service_account is "NAMESPACE:NAME" (globs allowed, e.g. "ci:builder-*"; "*:*" admits every service account)',
    ),
  /** The pod the token is bound to (globs: a Deployment's pods are NAME-<hash>-<id>). */
  pod_name: glob.optional(),
  pod_uid: glob.optional(),
  /** The node the pod runs on (Kubernetes 1.30+ binds tokens to it). */
  node_name: glob.optional(),
});

const https = (what: string) =>
  z.string().refine(
    (s) => {
      try {
        return new URL(s).protocol === "https:";
      } catch {
        return false;
      }
    },
    { message: `${what} must be an https:// URL` },
  );

export const KubernetesApiServerSchema = z
  .strictObject({
    /** Default https://kubernetes.default.svc (the service runs in the cluster). */
    url: https("api_server.url").optional(),
    /** PEM of the CA that signed the API server's certificate; the only CA trusted. */
    ca: z
      .string()
      .refine((s) => s.includes("-----BEGIN CERTIFICATE-----"), {
        message: "expected a PEM certificate (-----BEGIN CERTIFICATE-----)",
      })
      .optional(),
    /** The CA as a file; default the pod's service account ca.crt. */
    ca_file: z.string().min(1).optional(),
    /** The service's own service account token (re-read for every review: the kubelet
     *  rotates it); default the pod's service account token. */
    token_file: z.string().min(1).optional(),
  })
  .refine((a) => !(a.ca && a.ca_file), { message: "set api_server.ca or api_server.ca_file, not both" });

const common = {
  /** Default: the service's public URL. */
  audience: z.string().min(1).optional(),
  allow: z
    .array(KubernetesRuleSchema)
    .min(1, "a kubernetes token needs at least one allow rule (service_account: NAMESPACE:NAME)"),
};

export const KubernetesTokenSpecSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("static_jwks"),
    /** The cluster's service account issuer (`iss` of its tokens). */
    issuer: z.string().min(1).max(1024),
    static_jwks: staticJwks,
    ...common,
  }),
  z.strictObject({
    type: z.literal("oidc"),
    issuer: keyUrlSchema("issuer"),
    /** Skips discovery when the keys are published elsewhere. */
    jwks_uri: keyUrlSchema("jwks_uri").optional(),
    ...common,
  }),
  z.strictObject({
    type: z.literal("in_cluster"),
    api_server: KubernetesApiServerSchema.optional(),
    ...common,
  }),
]);
export type KubernetesTokenSpec = z.output<typeof KubernetesTokenSpecSchema>;
type ApiServer = z.output<typeof KubernetesApiServerSchema>;

/** The replay key of a JWT without a jti: SHA-256 of its signed part (see the top). */
export function signedPartKey(token: string): string {
  const parts = token.split(".");
  return `sha256:${createHash("sha256").update(`${parts[0]}.${parts[1]}`).digest("hex")}`;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** What the pod's token says about itself, under `kubernetes.io`. */
function boundClaims(payload: Record<string, unknown>) {
  const k = obj(payload["kubernetes.io"]);
  return {
    namespace: str(k.namespace),
    service_account_name: str(obj(k.serviceaccount).name),
    service_account_uid: str(obj(k.serviceaccount).uid),
    pod_name: str(obj(k.pod).name),
    pod_uid: str(obj(k.pod).uid),
    node_name: str(obj(k.node).name),
    node_uid: str(obj(k.node).uid),
  };
}

function serviceAccountOf(username: unknown): { namespace: string; name: string } {
  const m = typeof username === "string" ? SA_USERNAME.exec(username) : null;
  if (!m) {
    throw denied(
      `the token is not a Kubernetes service account token (subject ${JSON.stringify(String(username ?? "")).slice(0, 120)})`,
      "Send a projected service account token (a serviceAccountToken volume with the service's audience).",
    );
  }
  return { namespace: m[1]!, name: m[2]! };
}

/** The claims rules and templates see, from a verified payload (or one the API server
 *  authenticated) and, for in_cluster, the TokenReview's user info. */
function normalize(
  token: string,
  payload: Record<string, unknown>,
  issuer: string,
  review?: { extra: Record<string, string | undefined>; uid?: string },
): Record<string, unknown> {
  const sa = serviceAccountOf(payload.sub);
  const b = boundClaims(payload);
  if (
    (b.namespace && b.namespace !== sa.namespace) ||
    (b.service_account_name && b.service_account_name !== sa.name)
  )
    throw denied("the token's kubernetes.io claims name another service account than its subject");
  const e = review?.extra ?? {};
  const claims: Record<string, unknown> = {
    iss: issuer,
    sub: payload.sub,
    aud: payload.aud,
    exp: payload.exp,
    iat: payload.iat,
    jti: str(payload.jti) ?? signedPartKey(token),
    service_account: `${sa.namespace}:${sa.name}`,
    namespace: sa.namespace,
    service_account_name: sa.name,
    service_account_uid: review?.uid ?? b.service_account_uid,
    pod_name: e["authentication.kubernetes.io/pod-name"] ?? b.pod_name,
    pod_uid: e["authentication.kubernetes.io/pod-uid"] ?? b.pod_uid,
    node_name: e["authentication.kubernetes.io/node-name"] ?? b.node_name,
    node_uid: e["authentication.kubernetes.io/node-uid"] ?? b.node_uid,
  };
  for (const k of Object.keys(claims)) if (claims[k] === undefined) delete claims[k];
  return claims;
}

/** Reads a file the operator named; failing is the service's problem, not the job's. */
function operatorFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new JoinError(
      "unavailable",
      "the service cannot review Kubernetes tokens right now",
      "Retry later; the operator should check the join token's api_server settings.",
      `reading ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/** One TLS agent per API server CA: connections are reused, and only that CA is trusted
 *  (a `ca` option replaces the system roots and NODE_EXTRA_CA_CERTS). */
const agents = new Map<string, Agent>();
function agentFor(ca: string): Agent {
  let a = agents.get(ca);
  if (!a) {
    a = new Agent({ ca, keepAlive: true, maxSockets: 16, rejectUnauthorized: true });
    agents.set(ca, a);
  }
  return a;
}

const reviewUnavailable = (detail: string, hint?: string) =>
  new JoinError(
    "unavailable",
    "the service could not review the token with the Kubernetes API server",
    "Retry later; the operator should check the join token's api_server settings and the service's RBAC (system:auth-delegator).",
    detail + (hint ? ` (${hint})` : ""),
  );

/**
 * POST a TokenReview to the configured API server, and nowhere else: https only, the
 * server's certificate checked against the configured CA alone, no proxy, no redirects.
 */
export function tokenReview(
  api: ApiServer | undefined,
  token: string,
  audience: string | undefined,
): Promise<TokenReviewStatus> {
  const base = (api?.url ?? IN_CLUSTER_API_SERVER).replace(/\/+$/, "");
  const url = new URL(`${base}${TOKEN_REVIEW_PATH}`);
  if (url.protocol !== "https:") return Promise.reject(reviewUnavailable(`${base} is not https`));
  const ca = api?.ca ?? operatorFile(api?.ca_file ?? IN_CLUSTER_CA_FILE, "the API server CA");
  const bearer = operatorFile(api?.token_file ?? IN_CLUSTER_TOKEN_FILE, "the service's token").trim();
  const body = JSON.stringify({
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenReview",
    spec: { token, ...(audience !== undefined ? { audiences: [audience] } : {}) },
  });
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: "POST",
        agent: agentFor(ca),
        headers: {
          authorization: `Bearer ${bearer}`,
          "content-type": "application/json",
          accept: "application/json",
          "content-length": Buffer.byteLength(body),
          "user-agent": "idbot",
        },
        timeout: REVIEW_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (d: Buffer) => {
          size += d.length;
          if (size > MAX_REVIEW_BYTES) req.destroy(new Error("the TokenReview answer is too large"));
          else chunks.push(d);
        });
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString("utf8");
          if (status === 401 || status === 403) {
            return reject(
              reviewUnavailable(
                `the API server answered HTTP ${status} to the TokenReview`,
                status === 401
                  ? "the service's own token (token_file) was not accepted"
                  : "the service's service account may not create tokenreviews: bind it to the ClusterRole system:auth-delegator",
              ),
            );
          }
          if (status !== 200 && status !== 201) {
            return reject(
              reviewUnavailable(
                `the API server answered HTTP ${status} to the TokenReview`,
                status >= 300 && status < 400
                  ? "redirects are not followed: the token goes to api_server.url only"
                  : undefined,
              ),
            );
          }
          try {
            const doc = JSON.parse(text) as { kind?: unknown; status?: unknown };
            if (doc.kind !== "TokenReview") throw new Error("not a TokenReview");
            resolve(obj(doc.status) as TokenReviewStatus);
          } catch {
            reject(reviewUnavailable("the API server's answer is not a TokenReview"));
          }
        });
        res.on("error", (e) => reject(reviewUnavailable(e.message)));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${REVIEW_TIMEOUT_MS} ms`)));
    req.on("error", (e) =>
      reject(reviewUnavailable(`${base}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)),
    );
    req.end(body);
  });
}

const first = (v: unknown): string | undefined => (Array.isArray(v) ? str(v[0]) : undefined);

async function checkInCluster(
  spec: Extract<KubernetesTokenSpec, { type: "in_cluster" }>,
  token: string,
  ctx: CheckContext,
): Promise<Record<string, unknown>> {
  // Sanity checks before the token leaves: a JWT, not expired, for this audience.
  let payload: Record<string, unknown>;
  try {
    payload = jose.decodeJwt(token) as Record<string, unknown>;
  } catch {
    throw denied("the token is not a well-formed JWT", "Send the pod's projected service account token.");
  }
  const audience = spec.audience ?? ctx.defaultAudience;
  const nowS = Math.floor((ctx.now ?? new Date()).getTime() / 1000);
  if (typeof payload.exp !== "number")
    throw denied(
      "the token has no expiry: it is a legacy service account token, not a projected one",
      "Mount a serviceAccountToken projected volume with the service's audience.",
    );
  if (payload.exp + CLOCK_LEEWAY_SECONDS <= nowS)
    throw denied(
      `the token expired at ${new Date(payload.exp * 1000).toISOString()}`,
      "The kubelet renews a projected token at 80% of its lifetime: read the file again for each join.",
    );
  const tokenAud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (audience !== undefined && !tokenAud.includes(audience)) {
    throw denied(
      `the token's audience ${JSON.stringify(payload.aud)} is not "${audience}"`,
      `Project the token with audience "${audience}" (serviceAccountToken.audience), or set the join token's audience to match.`,
    );
  }
  serviceAccountOf(payload.sub);

  const status = await tokenReview(spec.api_server, token, audience);
  if (status.authenticated !== true) {
    throw denied(
      `the Kubernetes API server did not authenticate the token${status.error ? ` (${String(status.error).slice(0, 300)})` : ""}`,
      "The token may be expired, or its pod or service account deleted.",
    );
  }
  // An audience-unaware authenticator answers without audiences: then the token is valid
  // for the API server only, not for us.
  if (audience !== undefined && !(status.audiences ?? []).includes(audience))
    throw denied(`the API server did not confirm the token's audience "${audience}"`);
  const user = obj(status.user);
  const sa = serviceAccountOf(user.username);
  const groups = Array.isArray(user.groups) ? user.groups : [];
  if (
    !groups.includes("system:serviceaccounts") ||
    !groups.includes(`system:serviceaccounts:${sa.namespace}`)
  )
    throw denied("the API server did not authenticate the token as a service account");
  if (payload.sub !== user.username)
    throw denied("the API server authenticated the token as another user than its subject");
  const extra = obj(user.extra);
  const issuer = str(payload.iss) ?? `kubernetes:${spec.api_server?.url ?? IN_CLUSTER_API_SERVER}`;
  return normalize(token, payload, issuer, {
    uid: str(user.uid),
    extra: {
      "authentication.kubernetes.io/pod-name": first(extra["authentication.kubernetes.io/pod-name"]),
      "authentication.kubernetes.io/pod-uid": first(extra["authentication.kubernetes.io/pod-uid"]),
      "authentication.kubernetes.io/node-name": first(extra["authentication.kubernetes.io/node-name"]),
      "authentication.kubernetes.io/node-uid": first(extra["authentication.kubernetes.io/node-uid"]),
    },
  });
}

/** The rules against the raw claims of an unverified token (explain): the service account
 *  is the subject, the bound objects live under `kubernetes.io`. */
const RAW_PATHS: Record<string, string> = {
  pod_name: "kubernetes.io.pod.name",
  pod_uid: "kubernetes.io.pod.uid",
  node_name: "kubernetes.io.node.name",
};

const KEPT = new Set([
  "iss",
  "sub",
  "aud",
  "jti",
  "service_account",
  "namespace",
  "service_account_name",
  "service_account_uid",
  "pod_name",
  "pod_uid",
  "node_name",
  "node_uid",
]);

export const kubernetesMethod: ClaimJoinMethod<KubernetesTokenSpec> = {
  issuer: (spec) =>
    spec.type === "in_cluster"
      ? `TokenReview at ${(spec.api_server?.url ?? IN_CLUSTER_API_SERVER).replace(/\/+$/, "")}`
      : spec.issuer,
  async check(spec, idToken, ctx) {
    let claims: Record<string, unknown>;
    if (spec.type === "in_cluster") {
      claims = await checkInCluster(spec, idToken, ctx);
    } else {
      const keys =
        spec.type === "static_jwks"
          ? ctx.jwks.forStatic(spec.static_jwks)
          : spec.jwks_uri
            ? ctx.jwks.forUrl(spec.jwks_uri)
            : ctx.jwks.forDiscovery(spec.issuer);
      const payload = await verifyIdToken(idToken, {
        issuer: spec.issuer,
        audience: spec.audience ?? ctx.defaultAudience,
        keys,
        now: ctx.now,
        requiredClaims: ["sub"],
      });
      claims = normalize(idToken, payload as Record<string, unknown>, spec.issuer);
    }
    // Every field is a glob; a value without `*` or `?` matches exactly.
    const verdicts = evaluateRules(spec.allow as Rule[], claims, "all");
    return { claims, verdicts, allowed: verdicts.some((v) => v.ok) };
  },
  rules: (spec) =>
    spec.allow.map((r) => {
      const out: Rule = { sub: `system:serviceaccount:${r.service_account}` };
      for (const f of ["pod_name", "pod_uid", "node_name"] as const) out[RAW_PATHS[f]!] = r[f];
      return out;
    }),
  globFields: "all",
  keep: (c) => Object.fromEntries(Object.entries(c).filter(([k]) => KEPT.has(k))),
  subject: (c) =>
    `service_account=${String(c.service_account)}${c.pod_name ? `,pod=${String(c.pod_name)}` : ""}`,
  shownClaims: ["iss", "sub", "aud", "kubernetes.io"],
};
