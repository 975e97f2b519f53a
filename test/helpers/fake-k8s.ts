// A stand-in Kubernetes API server on loopback, for the kubernetes join method. It follows
// the real protocol byte for byte where idbot touches it:
//
// - Service account issuer discovery (KEP-1393), served over HTTPS (test CA):
//   GET /.well-known/openid-configuration →
//     {"issuer":ISSUER,"jwks_uri":"https://HOST/openid/v1/jwks","response_types_supported":["id_token"],
//      "subject_types_supported":["public"],"id_token_signing_alg_values_supported":["RS256"]}
//   GET /openid/v1/jwks → {"keys":[{"use":"sig","kty":"RSA","kid":KID,"alg":"RS256","n":..,"e":"AQAB"}]}
//   with KID = base64url(SHA-256(DER SubjectPublicKeyInfo)), as kube-apiserver derives it.
// - Projected service account tokens as the kubelet receives them (TokenRequest API):
//   header {"alg":"RS256","kid":KID} (no typ), payload
//     {"aud":[AUD],"exp":..,"iat":..,"iss":ISSUER,"jti":UUID,
//      "kubernetes.io":{"namespace":NS,"node":{"name":..,"uid":..},"pod":{"name":..,"uid":..},
//                       "serviceaccount":{"name":..,"uid":..}},
//      "nbf":..,"sub":"system:serviceaccount:NS:NAME"}
//   (`jti` and the node binding since Kubernetes 1.29/1.30; `withoutJti` mints an older one).
// - TokenReview: POST /apis/authentication.k8s.io/v1/tokenreviews, the caller authenticated
//   by its Bearer token (401 Status otherwise), answered 201 with the review echoed and
//   its status: authenticated only when the signature verifies with the issuer key, the
//   token is not expired, one of spec.audiences is in its aud (an empty spec.audiences
//   means the API server's own audience), and its pod has not been deleted; user.username
//   system:serviceaccount:NS:NAME, uid the service account's, groups system:serviceaccounts,
//   system:serviceaccounts:NS, system:authenticated, extra authentication.kubernetes.io/
//   {pod-name,pod-uid,node-name,node-uid,credential-id}; status.audiences the matched one.
//   Refused reviews carry status.error like "[invalid bearer token, ...]".
// Every request is recorded (method, path, headers, body) so tests can see where a token went.
import { createHash, createVerify, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { type JWK, SignJWT } from "jose";

/** The audience kube-apiserver accepts for its own tokens (--api-audiences default). */
export const API_AUDIENCE = "https://kubernetes.default.svc.cluster.local";

export interface PodIdentity {
  namespace: string;
  serviceAccount: string;
  pod?: string;
  node?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface MintOptions extends Partial<PodIdentity> {
  audience?: string | string[];
  expiresIn?: number;
  issuedAt?: number;
  withoutJti?: boolean;
  /** Sign with another key under the issuer's kid (a forgery). */
  forged?: boolean;
  /** Leave the node binding out (clusters before 1.30). */
  withoutNode?: boolean;
}

export interface FakeKubernetes {
  host: string;
  url: string;
  issuer: string;
  publicJwks(): { keys: JWK[] };
  mint(opts?: MintOptions): Promise<string>;
  /** Deletes a pod: the API server stops authenticating tokens bound to it. */
  deletePod(name: string): void;
  /** The bearer token the TokenReview caller must present. */
  reviewerToken: string;
  requests: RecordedRequest[];
  reviews: Array<{ token: string; audiences: string[] | undefined; authenticated: boolean }>;
  close(): Promise<void>;
}

const uid = (seed: string) => {
  const h = createHash("sha256").update(seed).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
};

function keyId(pub: KeyObject): string {
  return createHash("sha256")
    .update(pub.export({ format: "der", type: "spki" }))
    .digest("base64url");
}

export async function startFakeKubernetes(opts: {
  tlsCertFile: string;
  tlsKeyFile: string;
  defaults: PodIdentity;
}): Promise<FakeKubernetes> {
  const real = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const kid = keyId(real.publicKey);
  const jwk: JWK = { use: "sig", ...(real.publicKey.export({ format: "jwk" }) as JWK), kid, alg: "RS256" };
  const reviewerToken = `reviewer-${randomUUID()}`;
  const deleted = new Set<string>();
  const requests: RecordedRequest[] = [];
  const reviews: FakeKubernetes["reviews"] = [];
  let issuer = "";
  let host = "";

  /** What kube-apiserver's service account authenticator concludes about a token. */
  function authenticate(token: string, audiences: string[] | undefined) {
    const parts = token.split(".");
    if (parts.length !== 3) return { error: "[invalid bearer token, token is not a JWT]" };
    const verifier = createVerify("RSA-SHA256");
    verifier.update(`${parts[0]}.${parts[1]}`);
    if (!verifier.verify(real.publicKey, Buffer.from(parts[2]!, "base64url")))
      return { error: "[invalid bearer token, square/go-jose: error in cryptographic primitive]" };
    const p = JSON.parse(Buffer.from(parts[1]!, "base64url").toString()) as Record<string, unknown>;
    if (p.iss !== issuer) return { error: "[invalid bearer token, token issuer not recognized]" };
    if (typeof p.exp === "number" && p.exp < Math.floor(Date.now() / 1000))
      return { error: "[invalid bearer token, service account token has expired]" };
    const tokenAud = (Array.isArray(p.aud) ? p.aud : [p.aud]) as string[];
    const wanted = audiences && audiences.length > 0 ? audiences : [API_AUDIENCE];
    const matched = wanted.filter((a) => tokenAud.includes(a));
    if (matched.length === 0)
      return {
        error: `[invalid bearer token, token audiences ${JSON.stringify(tokenAud)} is invalid for the target audiences ${JSON.stringify(wanted)}]`,
      };
    const k = p["kubernetes.io"] as {
      namespace: string;
      pod?: { name: string; uid: string };
      node?: { name: string; uid: string };
      serviceaccount: { name: string; uid: string };
    };
    if (k.pod && deleted.has(k.pod.name))
      return { error: `[invalid bearer token, pods "${k.pod.name}" not found]` };
    const extra: Record<string, string[]> = {};
    if (typeof p.jti === "string") extra["authentication.kubernetes.io/credential-id"] = [`JTI=${p.jti}`];
    if (k.node) {
      extra["authentication.kubernetes.io/node-name"] = [k.node.name];
      extra["authentication.kubernetes.io/node-uid"] = [k.node.uid];
    }
    if (k.pod) {
      extra["authentication.kubernetes.io/pod-name"] = [k.pod.name];
      extra["authentication.kubernetes.io/pod-uid"] = [k.pod.uid];
    }
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${k.namespace}:${k.serviceaccount.name}`,
        uid: k.serviceaccount.uid,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${k.namespace}`, "system:authenticated"],
        extra,
      },
      audiences: audiences && audiences.length > 0 ? matched : undefined,
    };
  }

  const server = createServer(
    { cert: await readFile(opts.tlsCertFile), key: await readFile(opts.tlsKeyFile) },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const path = (req.url ?? "/").split("?")[0]!;
        requests.push({ method: req.method ?? "", path, headers: { ...req.headers }, body });
        const json = (status: number, v: unknown) => {
          res.writeHead(status, { "content-type": "application/json", "cache-control": "no-cache, private" });
          res.end(JSON.stringify(v));
        };
        if (req.method === "GET" && path === "/.well-known/openid-configuration") {
          return json(200, {
            issuer,
            jwks_uri: `https://${host}/openid/v1/jwks`,
            response_types_supported: ["id_token"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: ["RS256"],
          });
        }
        if (req.method === "GET" && path === "/openid/v1/jwks") return json(200, { keys: [jwk] });
        if (req.method === "POST" && path === "/apis/authentication.k8s.io/v1/tokenreviews") {
          if (req.headers.authorization !== `Bearer ${reviewerToken}`) {
            return json(401, {
              kind: "Status",
              apiVersion: "v1",
              metadata: {},
              status: "Failure",
              message: "Unauthorized",
              reason: "Unauthorized",
              code: 401,
            });
          }
          const review = JSON.parse(body) as {
            apiVersion?: string;
            kind?: string;
            spec?: { token?: string; audiences?: string[] };
          };
          if (review.apiVersion !== "authentication.k8s.io/v1" || review.kind !== "TokenReview") {
            return json(400, {
              kind: "Status",
              apiVersion: "v1",
              status: "Failure",
              reason: "BadRequest",
              code: 400,
            });
          }
          const token = review.spec?.token ?? "";
          const status = authenticate(token, review.spec?.audiences);
          reviews.push({
            token,
            audiences: review.spec?.audiences,
            authenticated: status.authenticated === true,
          });
          return json(201, {
            kind: "TokenReview",
            apiVersion: "authentication.k8s.io/v1",
            metadata: { creationTimestamp: null },
            spec: review.spec,
            status: status.authenticated ? status : { user: {}, error: status.error },
          });
        }
        json(404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 });
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer = `https://${host}`;

  return {
    host,
    url: `https://${host}`,
    issuer,
    reviewerToken,
    requests,
    reviews,
    publicJwks: () => ({ keys: [jwk] }),
    deletePod: (name) => deleted.add(name),
    async mint(m = {}) {
      const id = { ...opts.defaults, ...m };
      const iat = m.issuedAt ?? Math.floor(Date.now() / 1000);
      const pod = id.pod ?? `${id.serviceAccount}-7d9f8c6b5-x2k4q`;
      const node = id.node ?? "node-1";
      // The claims in kube-apiserver's order (its JSON has them sorted by name).
      const payload: Record<string, unknown> = {
        aud: Array.isArray(m.audience) ? m.audience : [m.audience ?? API_AUDIENCE],
        exp: iat + (m.expiresIn ?? 600),
        iat,
        iss: issuer,
        ...(m.withoutJti ? {} : { jti: randomUUID() }),
        "kubernetes.io": {
          namespace: id.namespace,
          ...(m.withoutNode ? {} : { node: { name: node, uid: uid(`node/${node}`) } }),
          pod: { name: pod, uid: uid(`pod/${id.namespace}/${pod}`) },
          serviceaccount: { name: id.serviceAccount, uid: uid(`sa/${id.namespace}/${id.serviceAccount}`) },
        },
        nbf: iat,
        sub: `system:serviceaccount:${id.namespace}:${id.serviceAccount}`,
      };
      const jwt = new SignJWT(payload).setProtectedHeader({ alg: "RS256", kid });
      return jwt.sign(m.forged ? other.privateKey : real.privateKey);
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
