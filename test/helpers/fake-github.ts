// A stand-in for GitHub's Actions OIDC token issuer that speaks the real protocol.
//
// Shape follows GitHub Enterprise Server: issuer https://HOST/_services/token, discovery at
// .../_services/token/.well-known/openid-configuration and JWKS at .../_services/token/.well-known/jwks,
// served over HTTPS on 127.0.0.1 with a test CA. The ID-token endpoint answers the request that
// @actions/core's getIDToken() makes (GET ACTIONS_ID_TOKEN_REQUEST_URL[&audience=...] with
// "Authorization: Bearer ACTIONS_ID_TOKEN_REQUEST_TOKEN") with {"count":N,"value":"<jwt>"}, the body
// GitHub returns and oidc-utils reads `.value` from.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { CryptoKey, JWK, JWTHeaderParameters } from "jose";
import { base64url, exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";

export type TimeInput = number | string;

export interface MintOptions {
  /** Claim overrides on top of claims() (a key set to undefined removes that claim). */
  claims?: Record<string, unknown>;
  /** `aud`; default https://github.com/<repository_owner>. */
  audience?: string | string[];
  /** `iss`; default the fake's issuer. */
  issuer?: string;
  /** Seconds from iat to exp (default 300; negative makes an expired token). */
  expiresIn?: number;
  /** `nbf`: a number is absolute epoch seconds, a string a jose-style offset from now ("+10m", "-30s"). */
  notBefore?: TimeInput;
  /** `iat`: as notBefore. */
  issuedAt?: TimeInput;
  /** Header kid. If it names a known key of the chosen alg, that key signs; otherwise the current key signs under this kid. */
  kid?: string;
  alg?: "RS256" | "ES256";
  /** Extra / overriding protected-header fields (not `alg`). */
  header?: Record<string, unknown>;
}

export interface FakeGitHub {
  /** "127.0.0.1:PORT" (use as enterprise_server_host). */
  host: string;
  /** https://127.0.0.1:PORT/_services/token */
  issuer: string;
  jwksUrl: string;
  discoveryUrl: string;
  /** Value for ACTIONS_ID_TOKEN_REQUEST_URL (already carries ?api-version=2.0). */
  idTokenRequestUrl: string;
  /** Value for ACTIONS_ID_TOKEN_REQUEST_TOKEN. */
  idTokenRequestToken: string;
  /** The JWKS as served (current + retained RS256 keys, and the ES256 key). */
  publicJwks(): { keys: JWK[] };
  /** Kid of the current RS256 signing key. */
  currentKid(): string;
  /** A full GitHub claim set (no aud/iat/nbf/exp/jti); setClaims() overrides, then these overrides. */
  claims(overrides?: Record<string, unknown>): Record<string, unknown>;
  mint(opts?: MintOptions): Promise<string>;
  /** alg "none", empty signature. */
  mintNone(claims?: Record<string, unknown>): string;
  /** HS256 signed with the current RSA public key's SPKI PEM as the HMAC secret, header kid = that key's kid. */
  mintHS256WithPublicKey(claims?: Record<string, unknown>): Promise<string>;
  /** Rewrites the payload's `repository` (and `sub`) to evil/app, keeping header and signature bytes. */
  tamper(token: string): string;
  /** A new RS256 key becomes current; returns its kid. Old keys stay in the JWKS until dropOldKeys(). */
  rotate(): Promise<string>;
  dropOldKeys(): void;
  /** The next n ID-token requests answer `status` (default 503). */
  failNext(n: number, status?: number): void;
  /** The next n JWKS requests answer `status` (default 503). */
  failJwksNext(n: number, status?: number): void;
  /**
   * idToken: every hit on the ID-token endpoint (refused ones included); jwks / discovery: hits on those;
   * audiences: the `aud` of every token the ID-token endpoint issued, in order.
   */
  requests: { idToken: number; jwks: number; discovery: number; audiences: string[] };
  /** Claim overrides used by the ID-token endpoint, mint() and claims() from now on (replaces earlier ones). */
  setClaims(overrides: Record<string, unknown>): void;
  close(): Promise<void>;
}

interface SigningKey {
  kid: string;
  alg: "RS256" | "ES256";
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  x5t: string;
  spkiPem: string;
}

const SHA = "3f786850e387550fdab836ed7e6dc881de23001b";

async function newKey(alg: "RS256" | "ES256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const spkiPem = await exportSPKI(publicKey);
  const der = Buffer.from(spkiPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  // GitHub's x5t is the SHA-1 thumbprint of the key's certificate; we have no certificate, so
  // the SPKI's SHA-1 stands in for it (same shape: 20 bytes, base64url).
  const x5t = base64url.encode(createHash("sha1").update(der).digest());
  const kid = randomUUID();
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  if (alg === "RS256") jwk.x5t = x5t;
  return { kid, alg, privateKey, publicKey, jwk, x5t, spkiPem };
}

function now(): number {
  return Math.floor(Date.now() / 1000);
}

const UNIT: Record<string, number> = {
  s: 1,
  sec: 1,
  secs: 1,
  second: 1,
  seconds: 1,
  m: 60,
  min: 60,
  mins: 60,
  minute: 60,
  minutes: 60,
  h: 3600,
  hr: 3600,
  hrs: 3600,
  hour: 3600,
  hours: 3600,
  d: 86400,
  day: 86400,
  days: 86400,
};

function resolveTime(t: TimeInput, base: number): number {
  if (typeof t === "number") return t;
  const m = /^\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*([a-z]+)?\s*$/i.exec(t);
  if (!m) throw new Error(`fake-github: bad time offset ${JSON.stringify(t)}`);
  const unit = (m[3] ?? "s").toLowerCase();
  const mult = UNIT[unit];
  if (mult === undefined) throw new Error(`fake-github: bad time unit in ${JSON.stringify(t)}`);
  const secs = Math.round(Number(m[2]) * mult);
  return m[1] === "-" ? base - secs : base + secs;
}

function applyOverrides(target: Record<string, unknown>, overrides: Record<string, unknown> | undefined) {
  if (!overrides) return;
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete target[k];
    else target[k] = v;
  }
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** GitHub's claim set for a job, with the dependent claims (owner, sub, refs) derived from the inputs. */
function githubClaims(issuer: string, o: Record<string, unknown>): Record<string, unknown> {
  const has = (k: string) => Object.hasOwn(o, k);
  const repository = str(o.repository) ?? "acme/app";
  const owner = has("repository_owner") ? o.repository_owner : repository.split("/")[0];
  const ref = str(o.ref) ?? "refs/heads/main";
  const eventName = str(o.event_name) ?? "push";
  const environment = str(o.environment);
  const workflowFile = ".github/workflows/deploy.yml";
  const workflowRef = `${repository}/${workflowFile}@${ref}`;
  let sub: string;
  if (environment) sub = `repo:${repository}:environment:${environment}`;
  else if (eventName === "pull_request") sub = `repo:${repository}:pull_request`;
  else sub = `repo:${repository}:ref:${ref}`;
  const c: Record<string, unknown> = {
    sub,
    ref,
    sha: SHA,
    repository,
    repository_owner: owner,
    repository_owner_id: "1342004",
    repository_id: "892349901",
    repository_visibility: "private",
    actor: "octocat",
    actor_id: "583231",
    workflow: "deploy",
    workflow_ref: workflowRef,
    workflow_sha: SHA,
    job_workflow_ref: workflowRef,
    job_workflow_sha: SHA,
    head_ref: "",
    base_ref: "",
    event_name: eventName,
    ref_type: ref.startsWith("refs/tags/") ? "tag" : "branch",
    ref_protected: "false",
    run_id: "12345678901",
    run_number: "42",
    run_attempt: "1",
    runner_environment: "github-hosted",
    iss: issuer,
  };
  if (environment) c.environment = environment;
  applyOverrides(c, o);
  return c;
}

function b64json(v: unknown): string {
  return base64url.encode(JSON.stringify(v));
}

function send(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

export async function startFakeGitHub(opts: {
  tlsCertFile: string;
  tlsKeyFile: string;
}): Promise<FakeGitHub> {
  const [cert, key] = await Promise.all([readFile(opts.tlsCertFile), readFile(opts.tlsKeyFile)]);
  let current = await newKey("RS256");
  let rsaKeys: SigningKey[] = [current];
  const ecKey = await newKey("ES256");
  let claimOverrides: Record<string, unknown> = {};
  let failIdToken = { n: 0, status: 503 };
  let failJwks = { n: 0, status: 503 };
  const idTokenRequestToken = randomBytes(24).toString("base64url");
  const planId = randomUUID();
  const jobId = randomUUID();
  const idTokenPath = `/_apis/distributedtask/hubs/Actions/plans/${planId}/jobs/${jobId}/idtoken`;
  const requests = { idToken: 0, jwks: 0, discovery: 0, audiences: [] as string[] };

  // Filled in once the server listens.
  let host = "";
  let issuer = "";

  const publicJwks = () => ({ keys: [...rsaKeys.map((k) => ({ ...k.jwk })), { ...ecKey.jwk }] });

  const claims = (overrides?: Record<string, unknown>) => {
    // Spread keeps explicit undefined values, which delete the claim.
    const merged: Record<string, unknown> = { ...claimOverrides, ...(overrides ?? {}) };
    const inputs = Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined));
    const c = githubClaims(issuer, inputs);
    for (const [k, v] of Object.entries(merged)) if (v === undefined) delete c[k];
    return c;
  };

  const defaultAudience = (c: Record<string, unknown>) => `https://github.com/${String(c.repository_owner)}`;

  const payloadFor = (o: MintOptions): Record<string, unknown> => {
    const c = claims(o.claims);
    const t = now();
    const iat = o.issuedAt !== undefined ? resolveTime(o.issuedAt, t) : t;
    const nbf = o.notBefore !== undefined ? resolveTime(o.notBefore, t) : iat;
    const exp = iat + (o.expiresIn ?? 300);
    const p: Record<string, unknown> = {
      jti: randomUUID(),
      aud: o.audience ?? defaultAudience(c),
      ...c,
      nbf,
      exp,
      iat,
    };
    // Explicit claim overrides of the registered time/id claims win.
    for (const k of ["jti", "aud", "iat", "nbf", "exp"]) {
      if (o.claims && Object.hasOwn(o.claims, k)) {
        if (o.claims[k] === undefined) delete p[k];
        else p[k] = o.claims[k];
      }
    }
    if (o.issuer !== undefined) p.iss = o.issuer;
    return p;
  };

  const mint = async (o: MintOptions = {}): Promise<string> => {
    const alg = o.alg ?? "RS256";
    const pool = alg === "RS256" ? rsaKeys : [ecKey];
    const signer =
      (o.kid !== undefined ? pool.find((k) => k.kid === o.kid) : undefined) ??
      (alg === "RS256" ? current : ecKey);
    const header: Record<string, unknown> = { alg, kid: o.kid ?? signer.kid, typ: "JWT", x5t: signer.x5t };
    if (o.header) {
      for (const [k, v] of Object.entries(o.header)) {
        if (k === "alg") throw new Error("fake-github: use opts.alg, not header.alg");
        if (v === undefined) delete header[k];
        else header[k] = v;
      }
    }
    return new SignJWT(payloadFor(o))
      .setProtectedHeader(header as JWTHeaderParameters)
      .sign(signer.privateKey);
  };

  const mintNone = (c?: Record<string, unknown>): string =>
    `${b64json({ alg: "none", typ: "JWT" })}.${b64json(payloadFor({ claims: c }))}.`;

  const mintHS256WithPublicKey = async (c?: Record<string, unknown>): Promise<string> => {
    const secret = new TextEncoder().encode(current.spkiPem);
    return new SignJWT(payloadFor({ claims: c }))
      .setProtectedHeader({ alg: "HS256", kid: current.kid, typ: "JWT" })
      .sign(secret);
  };

  const tamper = (token: string): string => {
    const parts = token.split(".");
    if (parts.length !== 3) throw new Error("fake-github: tamper() needs a compact JWS");
    const payload = JSON.parse(new TextDecoder().decode(base64url.decode(parts[1]!))) as Record<
      string,
      unknown
    >;
    const repo = typeof payload.repository === "string" ? payload.repository : "acme/app";
    payload.repository = repo === "evil/app" ? "evil/app2" : "evil/app";
    if (typeof payload.sub === "string")
      payload.sub = payload.sub.split(repo).join(String(payload.repository));
    return `${parts[0]}.${b64json(payload)}.${parts[2]}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", `https://${host}`);
    const path = url.pathname.replace(/\/+$/, "");
    if (path === "/_services/token/.well-known/openid-configuration") {
      requests.discovery++;
      if (req.method !== "GET" && req.method !== "HEAD")
        return send(res, 405, { message: "Method Not Allowed" });
      return send(res, 200, {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks`,
        subject_types_supported: ["public", "pairwise"],
        response_types_supported: ["id_token"],
        claims_supported: [
          "sub",
          "aud",
          "exp",
          "iat",
          "iss",
          "jti",
          "nbf",
          "ref",
          "sha",
          "repository",
          "repository_id",
          "repository_owner",
          "repository_owner_id",
          "enterprise",
          "enterprise_id",
          "run_id",
          "run_number",
          "run_attempt",
          "actor",
          "actor_id",
          "workflow",
          "workflow_ref",
          "workflow_sha",
          "head_ref",
          "base_ref",
          "event_name",
          "ref_type",
          "ref_protected",
          "environment",
          "environment_node_id",
          "job_workflow_ref",
          "job_workflow_sha",
          "repository_visibility",
          "runner_environment",
          "issuer_scope",
        ],
        id_token_signing_alg_values_supported: ["RS256"],
        scopes_supported: ["openid"],
      });
    }
    if (path === "/_services/token/.well-known/jwks") {
      requests.jwks++;
      if (failJwks.n > 0) {
        failJwks.n--;
        return send(res, failJwks.status, { message: `fake-github: injected ${failJwks.status}` });
      }
      if (req.method !== "GET" && req.method !== "HEAD")
        return send(res, 405, { message: "Method Not Allowed" });
      return send(res, 200, publicJwks());
    }
    if (path === idTokenPath) {
      requests.idToken++;
      if (req.method !== "GET") return send(res, 405, { message: "Method Not Allowed" });
      const auth = req.headers.authorization ?? "";
      if (auth !== `Bearer ${idTokenRequestToken}`) {
        return send(res, 401, { message: "Unauthorized: bad or missing ACTIONS_ID_TOKEN_REQUEST_TOKEN" });
      }
      if (failIdToken.n > 0) {
        failIdToken.n--;
        return send(res, failIdToken.status, { message: `fake-github: injected ${failIdToken.status}` });
      }
      const c = claims();
      const audience = url.searchParams.get("audience") || defaultAudience(c);
      const value = await mint({ audience });
      requests.audiences.push(audience);
      return send(res, 200, { count: value.length, value });
    }
    return send(res, 404, { message: "Not Found" });
  };

  const server: Server = createServer({ cert, key }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { message: String(err) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  host = `127.0.0.1:${port}`;
  issuer = `https://${host}/_services/token`;

  return {
    host,
    issuer,
    jwksUrl: `${issuer}/.well-known/jwks`,
    discoveryUrl: `${issuer}/.well-known/openid-configuration`,
    idTokenRequestUrl: `https://${host}${idTokenPath}?api-version=2.0`,
    idTokenRequestToken,
    publicJwks,
    currentKid: () => current.kid,
    claims,
    mint,
    mintNone,
    mintHS256WithPublicKey,
    tamper,
    async rotate() {
      current = await newKey("RS256");
      rsaKeys = [current, ...rsaKeys];
      return current.kid;
    },
    dropOldKeys() {
      rsaKeys = [current];
    },
    failNext(n: number, status = 503) {
      failIdToken = { n, status };
    },
    failJwksNext(n: number, status = 503) {
      failJwks = { n, status };
    },
    requests,
    setClaims(overrides: Record<string, unknown>) {
      claimOverrides = { ...overrides };
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
