// A stand-in OIDC issuer on loopback that follows the real protocol: HTTPS with a test CA,
// a discovery document naming the issuer and jwks_uri, a JWKS, RS256 tokens. Used for
// GitLab (issuer https://HOST, keys at /oauth/discovery/keys, as gitlab.com serves them)
// and for generic OIDC issuers (Kubernetes, CircleCI, Buildkite, ...).
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

export interface FakeOidcIssuer {
  host: string;
  issuer: string;
  jwksUrl: string;
  publicJwks(): { keys: JWK[] };
  mint(opts?: {
    claims?: Record<string, unknown>;
    audience?: string;
    issuer?: string;
    expiresIn?: number;
    issuedAt?: number;
    kid?: string;
  }): Promise<string>;
  rotate(): Promise<string>;
  requests: { discovery: number; jwks: number };
  close(): Promise<void>;
}

interface Key {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function newKey(): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const kid = randomUUID();
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } };
}

export async function startFakeOidcIssuer(opts: {
  tlsCertFile: string;
  tlsKeyFile: string;
  /** Path of the JWKS on the issuer's host; GitLab: /oauth/discovery/keys. */
  jwksPath: string;
  /** Path under the host that is the issuer (default: none, the issuer is https://HOST). */
  issuerPath?: string;
  defaultClaims: (issuer: string) => Record<string, unknown>;
}): Promise<FakeOidcIssuer> {
  const keys: Key[] = [await newKey()];
  const requests = { discovery: 0, jwks: 0 };
  let issuer = "";
  const server = createServer(
    { cert: await readFile(opts.tlsCertFile), key: await readFile(opts.tlsKeyFile) },
    (req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      const json = (v: unknown) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(v));
      };
      if (path === `${opts.issuerPath ?? ""}/.well-known/openid-configuration`) {
        requests.discovery++;
        return json({
          issuer,
          jwks_uri: `https://${host}${opts.jwksPath}`,
          response_types_supported: ["id_token"],
          subject_types_supported: ["public"],
          id_token_signing_alg_values_supported: ["RS256"],
        });
      }
      if (path === opts.jwksPath) {
        requests.jwks++;
        return json({ keys: keys.map((k) => k.jwk) });
      }
      res.writeHead(404);
      res.end();
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer = `https://${host}${opts.issuerPath ?? ""}`;
  return {
    host,
    issuer,
    jwksUrl: `https://${host}${opts.jwksPath}`,
    requests,
    publicJwks: () => ({ keys: keys.map((k) => k.jwk) }),
    async mint(m = {}) {
      const key = keys[keys.length - 1]!;
      const iat = m.issuedAt ?? Math.floor(Date.now() / 1000);
      return new SignJWT({ ...opts.defaultClaims(issuer), ...m.claims })
        .setProtectedHeader({ alg: "RS256", kid: m.kid ?? key.kid, typ: "JWT" })
        .setIssuer(m.issuer ?? issuer)
        .setAudience(m.audience ?? "https://idbot.example.com")
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + (m.expiresIn ?? 300))
        .setJti(randomUUID())
        .sign(key.privateKey);
    },
    async rotate() {
      const k = await newKey();
      keys.push(k);
      return k.kid;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** The claims of a GitLab CI job's ID token (GitLab 16/17), for project acme/app on main. */
export function gitlabClaims(
  issuer: string,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const c: Record<string, unknown> = {
    namespace_id: "72",
    namespace_path: "acme",
    project_id: "4242",
    project_path: "acme/app",
    user_id: "17",
    user_login: "alice",
    user_email: "alice@example.com",
    user_access_level: "maintainer",
    pipeline_id: "981",
    pipeline_source: "push",
    job_id: "12345",
    ref: "main",
    ref_type: "branch",
    ref_path: "refs/heads/main",
    ref_protected: "true",
    runner_id: 3,
    runner_environment: "self-hosted",
    sha: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    project_visibility: "private",
    ci_config_ref_uri: `${issuer.replace(/^https:\/\//, "")}/acme/app//.gitlab-ci.yml@refs/heads/main`,
    ci_config_sha: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    ...overrides,
  };
  c.sub ??= `project_path:${c.project_path}:ref_type:${c.ref_type}:ref:${c.ref}`;
  return c;
}
