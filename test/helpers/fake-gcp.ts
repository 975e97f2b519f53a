// Stand-ins for Google Cloud on loopback, for the gcp join method, following the real
// protocols byte for byte where idbot touches them:
//
// - Google's signing keys, over HTTPS (test CA), as https://www.googleapis.com/oauth2/v3/certs
//   serves them: GET /oauth2/v3/certs →
//     {"keys":[{"alg":"RS256","kty":"RSA","n":..,"kid":KID,"use":"sig","e":"AQAB"}, ...]}
//   two RSA-2048 keys with 40-hex-digit kids, "cache-control: public, max-age=..." as Google
//   sends; tokens are signed with the first.
// - The Compute Engine metadata server, plain HTTP on 127.0.0.1:
//   GET /computeMetadata/v1/instance/service-accounts/{default|EMAIL}/identity?audience=AUD[&format=full]
//   answered only with the request header "Metadata-Flavor: Google" (else 403 "Missing
//   required header"), refused with X-Forwarded-For (403, the metadata server's SSRF
//   guard), 400 without a non-empty audience, 404 for an unknown account; the answer is
//   the bare JWT with "Metadata-Flavor: Google" and "Content-Type: application/text".
//   The token: header {"alg":"RS256","kid":KID,"typ":"JWT"}, payload
//     {"aud":AUD,"azp":SA_ID,"email":SA_EMAIL,"email_verified":true,"exp":iat+3600,
//      "google":{"compute_engine":{"instance_creation_timestamp":..,"instance_id":"..",
//        "instance_name":..,"project_id":..,"project_number":..,"zone":..}},
//      "iat":..,"iss":"https://accounts.google.com","sub":SA_ID}
//   with `google` only for format=full on a VM (a Cloud Run service's token has none).
// Every metadata request is recorded.
import { createHash, generateKeyPairSync, type KeyObject, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingHttpHeaders } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { type JWK, SignJWT } from "jose";

export const GOOGLE_ISSUER = "https://accounts.google.com";
export const IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity";

export interface GcpInstance {
  projectId: string;
  projectNumber: number;
  zone: string;
  instanceName: string;
  instanceId: string;
  serviceAccountEmail: string;
  serviceAccountId: string;
  /** "vm" (Compute Engine, GKE node) or "cloud_run" (no compute_engine claims). */
  platform: "vm" | "cloud_run";
}

export interface GcpMintOptions {
  audience: string;
  full?: boolean;
  instance?: Partial<GcpInstance>;
  issuedAt?: number;
  expiresIn?: number;
  issuer?: string;
  /** Signed with another key under Google's kid (a forgery). */
  forged?: boolean;
}

export interface FakeGcp {
  /** https://HOST/oauth2/v3/certs */
  jwksUri: string;
  /** http://127.0.0.1:PORT (the metadata server's base) */
  metadataUrl: string;
  instance: GcpInstance;
  publicJwks(): { keys: JWK[] };
  mint(opts: GcpMintOptions): Promise<string>;
  /** Makes the metadata server answer with this token (or mint again with undefined). */
  serve(token: string | undefined): void;
  /** Makes the metadata server mint with these options (expired, forged, ...). */
  mintWith(opts: Omit<GcpMintOptions, "audience"> | undefined): void;
  metadataRequests: Array<{ path: string; query: Record<string, string>; headers: IncomingHttpHeaders }>;
  jwksRequests: number;
  close(): Promise<void>;
}

interface Key {
  kid: string;
  privateKey: KeyObject;
  jwk: JWK;
}

function googleKey(): Key {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const kid = createHash("sha1").update(randomBytes(16)).digest("hex");
  const { n, e } = publicKey.export({ format: "jwk" }) as { n: string; e: string };
  return { kid, privateKey, jwk: { alg: "RS256", kty: "RSA", n, kid, use: "sig", e } };
}

export async function startFakeGcp(opts: {
  tlsCertFile: string;
  tlsKeyFile: string;
  instance?: Partial<GcpInstance>;
}): Promise<FakeGcp> {
  const keys = [googleKey(), googleKey()];
  const forger = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const instance: GcpInstance = {
    projectId: "acme-prod",
    projectNumber: 123456789012,
    zone: "us-central1-a",
    instanceName: "runner-1",
    instanceId: "4412075628714591234",
    serviceAccountEmail: "123456789012-compute@developer.gserviceaccount.com",
    serviceAccountId: "104927593017826354982",
    platform: "vm",
    ...opts.instance,
  };
  let fixed: string | undefined;
  let mintOptions: Omit<GcpMintOptions, "audience"> | undefined;
  const metadataRequests: FakeGcp["metadataRequests"] = [];
  let jwksRequests = 0;

  async function mint(m: GcpMintOptions): Promise<string> {
    const i = { ...instance, ...m.instance };
    const iat = m.issuedAt ?? Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {
      aud: m.audience,
      azp: i.serviceAccountId,
      email: i.serviceAccountEmail,
      email_verified: true,
      exp: iat + (m.expiresIn ?? 3600),
      ...(m.full !== false && i.platform === "vm"
        ? {
            google: {
              compute_engine: {
                instance_creation_timestamp: 1_700_000_000,
                instance_id: i.instanceId,
                instance_name: i.instanceName,
                project_id: i.projectId,
                project_number: i.projectNumber,
                zone: i.zone,
              },
            },
          }
        : {}),
      iat,
      iss: m.issuer ?? GOOGLE_ISSUER,
      sub: i.serviceAccountId,
    };
    return new SignJWT(payload)
      .setProtectedHeader({ alg: "RS256", kid: keys[0]!.kid, typ: "JWT" })
      .sign(m.forged ? forger : keys[0]!.privateKey);
  }

  const jwksServer = createHttpsServer(
    { cert: await readFile(opts.tlsCertFile), key: await readFile(opts.tlsKeyFile) },
    (req, res) => {
      if (req.method === "GET" && (req.url ?? "").split("?")[0] === "/oauth2/v3/certs") {
        jwksRequests++;
        res.writeHead(200, {
          "content-type": "application/json; charset=UTF-8",
          "cache-control": "public, max-age=21600, must-revalidate, no-transform",
        });
        res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }, null, 2));
        return;
      }
      res.writeHead(404);
      res.end();
    },
  );

  const metadataServer = createHttpServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://metadata.google.internal");
    metadataRequests.push({
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...req.headers },
    });
    const answer = (status: number, body: string, type = "text/html; charset=UTF-8") => {
      res.writeHead(status, {
        "metadata-flavor": "Google",
        "content-type": type,
        server: "Metadata Server for VM",
        "x-xss-protection": "0",
        "x-frame-options": "SAMEORIGIN",
      });
      res.end(body);
    };
    if (req.headers["x-forwarded-for"] !== undefined)
      return answer(403, "Request denied: X-Forwarded-For header is not allowed\n");
    if (req.headers["metadata-flavor"] !== "Google") {
      return answer(403, 'Missing required header "Metadata-Flavor": "Google"\n');
    }
    const m = /^\/computeMetadata\/v1\/instance\/service-accounts\/([^/]+)\/identity$/.exec(url.pathname);
    if (req.method !== "GET" || !m) return answer(404, "Not Found\n");
    if (m[1] !== "default" && m[1] !== instance.serviceAccountEmail) return answer(404, "Not Found\n");
    const audience = url.searchParams.get("audience") ?? "";
    if (audience === "") return answer(400, "non-empty audience parameter required\n");
    const full = url.searchParams.get("format") === "full";
    const reply = (token: string) => answer(200, token, "application/text");
    if (fixed) return reply(fixed);
    mint({ ...mintOptions, audience, full }).then(reply, (e) => answer(500, String(e)));
  });

  await new Promise<void>((r) => jwksServer.listen(0, "127.0.0.1", r));
  await new Promise<void>((r) => metadataServer.listen(0, "127.0.0.1", r));
  const close = (s: { close(cb: () => void): void; closeAllConnections(): void }) =>
    new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
  return {
    jwksUri: `https://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/oauth2/v3/certs`,
    metadataUrl: `http://127.0.0.1:${(metadataServer.address() as AddressInfo).port}`,
    instance,
    publicJwks: () => ({ keys: keys.map((k) => k.jwk) }),
    mint,
    serve: (t) => {
      fixed = t;
    },
    mintWith: (o) => {
      mintOptions = o;
    },
    metadataRequests,
    get jwksRequests() {
      return jwksRequests;
    },
    close: async () => {
      await close(jwksServer);
      await close(metadataServer);
    },
  };
}
