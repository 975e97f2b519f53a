// Strict verification of a platform-signed OIDC token (GitHub, later GitLab and generic
// OIDC): signature against the issuer's JWKS, an alg allow-list, iss, aud, exp/nbf/iat with
// bounded leeway. Replay (jti) is checked by the store when the join commits.
import { KeyObject, verify } from "node:crypto";
import * as jose from "jose";
import { z } from "zod";
import { isLoopbackHost } from "../../protocol/net.ts";
import { denied, JoinError } from "./errors.ts";

/** A JWKS given inline in a token resource, for issuers the service cannot reach. */
export const staticJwks = z.string().refine(
  (s) => {
    try {
      const v = JSON.parse(s) as { keys?: unknown };
      return Array.isArray(v.keys) && v.keys.length > 0;
    } catch {
      return false;
    }
  },
  { message: 'static_jwks must be a JSON Web Key Set: {"keys":[...]}' },
);

/** RSA and ECDSA signatures only: never `none`, never HMAC (alg confusion). */
export const ALLOWED_ALGS = ["RS256", "ES256"] as const;
/** Clock skew tolerated on exp/nbf/iat, in seconds (at most 60 by policy). */
export const CLOCK_LEEWAY_SECONDS = 60;

export type KeySource =
  | ReturnType<typeof jose.createRemoteJWKSet>
  | ReturnType<typeof jose.createLocalJWKSet>;

/** Fetched key sets, one per JWKS URL, shared by every token that names that issuer. jose
 *  caches the keys and refetches (with a cooldown) when a token carries an unknown kid,
 *  which is how a rotated issuer key is picked up. */
export class JwksCache {
  private remote = new Map<string, KeySource>();
  private local = new Map<string, KeySource>();

  forUrl(url: string): KeySource {
    let ks = this.remote.get(url);
    if (!ks) {
      ks = jose.createRemoteJWKSet(new URL(url), {
        timeoutDuration: 5000,
        // An unknown kid refetches at most once a second: a rotated issuer key is
        // picked up at once, and random kids cannot hammer the issuer.
        cooldownDuration: 1_000,
        cacheMaxAge: 10 * 60_000,
        headers: { "user-agent": "idbot" },
      });
      this.remote.set(url, ks);
    }
    return ks;
  }

  private discovered = new Map<string, Promise<KeySource>>();

  /** Keys of an OIDC issuer found through its discovery document: the issuer it names
   *  must be the one configured, and its jwks_uri must be https (or loopback). */
  forDiscovery(issuer: string): KeySource {
    const resolve = () => {
      let p = this.discovered.get(issuer);
      if (!p) {
        p = discoverJwksUri(issuer).then((uri) => this.forUrl(uri));
        p.catch(() => this.discovered.delete(issuer));
        this.discovered.set(issuer, p);
      }
      return p;
    };
    return (async (header: jose.JWSHeaderParameters, token: jose.FlattenedJWSInput) =>
      (await resolve())(header, token)) as unknown as KeySource;
  }

  forStatic(jwksJson: string): KeySource {
    let ks = this.local.get(jwksJson);
    if (!ks) {
      ks = jose.createLocalJWKSet(JSON.parse(jwksJson) as jose.JSONWebKeySet);
      this.local.set(jwksJson, ks);
    }
    return ks;
  }
}

export function checkKeyUrl(raw: string, what: string): string {
  const u = new URL(raw);
  if (u.protocol === "https:" || (u.protocol === "http:" && isLoopbackHost(u.hostname))) return raw;
  throw new Error(`${what} ${raw} must be https:// (http:// only on loopback)`);
}

/** A resource field holding an issuer, discovery or JWKS URL (https, or http on loopback). */
export const keyUrlSchema = (what: string) =>
  z.string().refine(
    (s) => {
      try {
        checkKeyUrl(s, what);
        return true;
      } catch {
        return false;
      }
    },
    { message: `${what} must be an https:// URL (http:// only on loopback)` },
  );

async function discoverJwksUri(issuer: string): Promise<string> {
  const url = `${issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
  const res = await fetch(checkKeyUrl(url, "the discovery URL"), {
    headers: { accept: "application/json", "user-agent": "idbot" },
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`discovery at ${url} answered HTTP ${res.status}`);
  const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
  if (doc.issuer !== issuer)
    throw new Error(`discovery at ${url} names issuer ${JSON.stringify(doc.issuer)}, not ${issuer}`);
  if (typeof doc.jwks_uri !== "string") throw new Error(`discovery at ${url} has no jwks_uri`);
  return checkKeyUrl(doc.jwks_uri, "jwks_uri");
}

export interface VerifyOptions {
  issuer: string;
  /** Omitted only by `idbot explain` when the service's public URL is unknown. */
  audience: string | undefined;
  keys: KeySource;
  now?: Date;
  /** Claims that must be present besides exp/iat. */
  requiredClaims?: string[];
}

export async function verifyIdToken(token: string, opts: VerifyOptions): Promise<jose.JWTPayload> {
  let header: jose.ProtectedHeaderParameters;
  try {
    header = jose.decodeProtectedHeader(token);
  } catch {
    throw denied("the ID token is not a well-formed JWT", "Send the raw ID token issued by the CI platform.");
  }
  if (!(ALLOWED_ALGS as readonly string[]).includes(String(header.alg))) {
    throw denied(
      `the ID token's signing algorithm "${String(header.alg).slice(0, 20)}" is not allowed (allowed: ${ALLOWED_ALGS.join(", ")})`,
    );
  }
  if (typeof header.kid === "string" && header.kid.length > 256)
    throw denied("the ID token's kid header is too long");
  // No JWS extension is understood here, so a critical one is never ignored. (jose accepts
  // crit ["b64"]; no CI platform sends it, so refusing every crit is the simpler rule.)
  if (header.crit !== undefined)
    throw denied('the ID token carries a "crit" header, which idbot does not support');
  try {
    const payload = await verifyCompactJwt(token, header, header.alg as Alg, opts);
    // jose checks iat only together with maxTokenAge; a token from the future is refused here.
    const nowS = Math.floor((opts.now ?? new Date()).getTime() / 1000);
    if (typeof payload.iat === "number" && payload.iat > nowS + CLOCK_LEEWAY_SECONDS) {
      throw denied(
        "the ID token's issue time (iat) is in the future",
        "Check the clocks of the runner and the service.",
      );
    }
    return payload;
  } catch (e) {
    throw mapJoseError(e, token, opts);
  }
}

type Alg = (typeof ALLOWED_ALGS)[number];

/** base64url without padding; empty allowed (an empty signature simply fails to verify). */
const B64URL = /^[A-Za-z0-9_-]*$/;
/** `{"alg":"none"}`: the header jose.UnsecuredJWT.decode wants in front of the payload. */
const NONE_HEADER = "eyJhbGciOiJub25lIn0";

/**
 * jose.jwtVerify, with the signature checked by node:crypto instead of WebCrypto (27-60 µs
 * of OpenSSL against 165-300 µs here). jose still does everything else: the JWKS (fetching,
 * caching, refetching on an unknown kid, choosing the key by kid and alg, importing it) and
 * the claim checks (UnsecuredJWT.decode runs the same validateClaimsSet as jwtVerify, after
 * the signature is verified here). Errors are jose's own classes, so mapJoseError applies.
 * The caller has checked the alg allow-list and refused any crit header.
 */
async function verifyCompactJwt(
  token: string,
  header: jose.ProtectedHeaderParameters,
  alg: Alg,
  opts: VerifyOptions,
): Promise<jose.JWTPayload> {
  const parts = token.split(".");
  if (parts.length !== 3) throw new jose.errors.JWSInvalid("Invalid Compact JWS");
  const [protectedHeader, payload, signature] = parts as [string, string, string];
  if (!B64URL.test(protectedHeader) || !B64URL.test(payload) || !B64URL.test(signature))
    throw new jose.errors.JWSInvalid("the JWS is not base64url");
  const cryptoKey = await opts.keys(header, { protected: protectedHeader, payload, signature });
  const key = verificationKey(cryptoKey, alg);
  const sig = Buffer.from(signature, "base64url");
  const signingInput = Buffer.from(token.slice(0, protectedHeader.length + 1 + payload.length), "latin1");
  let ok = false;
  try {
    ok =
      alg === "ES256"
        ? sig.length === 64 && verify("sha256", signingInput, { key, dsaEncoding: "ieee-p1363" }, sig)
        : verify("sha256", signingInput, key, sig);
  } catch (cause) {
    throw new jose.errors.JWSSignatureVerificationFailed(undefined, { cause });
  }
  if (!ok) throw new jose.errors.JWSSignatureVerificationFailed();
  return jose.UnsecuredJWT.decode(`${NONE_HEADER}.${payload}.`, {
    issuer: opts.issuer,
    audience: opts.audience,
    clockTolerance: CLOCK_LEEWAY_SECONDS,
    currentDate: opts.now,
    requiredClaims: ["exp", "iat", ...(opts.requiredClaims ?? [])],
  }).payload;
}

/** What a CryptoKey that jose imported from a JWKS may verify, and its KeyObject. jose
 *  caches the CryptoKey per JWK and alg, so each issuer key is converted and checked once. */
const verificationKeys = new WeakMap<jose.CryptoKey, { key: KeyObject; usableFor: Alg | undefined }>();
/** The runtime's CryptoKey class (global in Node >= 17; not a property of node:crypto's webcrypto on 20). */
const CryptoKeyClass = (globalThis as unknown as { CryptoKey: abstract new () => jose.CryptoKey }).CryptoKey;

/** The KeyObject to verify an `alg` signature with, after the checks jose makes before
 *  verifying (key type, usage, algorithm and curve, RSA modulus of at least 2048 bits). */
function verificationKey(cryptoKey: unknown, alg: Alg): KeyObject {
  if (!(cryptoKey instanceof CryptoKeyClass))
    throw new jose.errors.JOSENotSupported("the key source returned no CryptoKey");
  let v = verificationKeys.get(cryptoKey);
  if (!v) {
    const key = KeyObject.from(cryptoKey);
    v = { key, usableFor: usableFor(cryptoKey, key) };
    verificationKeys.set(cryptoKey, v);
  }
  if (v.usableFor !== alg)
    throw denied(`the issuer's key for this ID token is not a usable ${alg} verification key`);
  return v.key;
}

function usableFor(c: jose.CryptoKey, k: KeyObject): Alg | undefined {
  if (c.type !== "public" || k.type !== "public" || !c.usages.includes("verify")) return undefined;
  const a = c.algorithm as { name?: string; hash?: { name?: string }; namedCurve?: string };
  const details = k.asymmetricKeyDetails;
  if (
    a.name === "RSASSA-PKCS1-v1_5" &&
    a.hash?.name === "SHA-256" &&
    k.asymmetricKeyType === "rsa" &&
    (details?.modulusLength ?? 0) >= 2048
  )
    return "RS256";
  if (
    a.name === "ECDSA" &&
    a.namedCurve === "P-256" &&
    k.asymmetricKeyType === "ec" &&
    details?.namedCurve === "prime256v1"
  )
    return "ES256";
  return undefined;
}

function claimOf(token: string, claim: string): unknown {
  try {
    return (jose.decodeJwt(token) as Record<string, unknown>)[claim];
  } catch {
    return undefined;
  }
}

function mapJoseError(e: unknown, token: string, opts: VerifyOptions): JoinError {
  if (e instanceof JoinError) return e;
  if (e instanceof jose.errors.JWTExpired) {
    const exp = Number(claimOf(token, "exp"));
    return denied(
      `the ID token expired${Number.isFinite(exp) ? ` at ${new Date(exp * 1000).toISOString()}` : ""}`,
      "Request a fresh ID token for each join; GitHub's tokens live a few minutes.",
    );
  }
  if (e instanceof jose.errors.JWTClaimValidationFailed) {
    switch (e.claim) {
      case "aud":
        return denied(
          `the ID token's audience ${JSON.stringify(claimOf(token, "aud"))} is not "${opts.audience}"`,
          `Request the token with audience "${opts.audience}" (the Action's "audience" input defaults to the "server" input), or set the join token's audience to match.`,
        );
      case "iss":
        return denied(
          `the ID token's issuer ${JSON.stringify(claimOf(token, "iss"))} is not "${opts.issuer}"`,
          "Check the join token's enterprise_server_host / enterprise_slug settings.",
        );
      case "nbf":
        return denied(
          "the ID token is not valid yet (nbf is in the future)",
          "Check the clocks of the runner and the service.",
        );
      case "iat":
        return denied(
          "the ID token's issue time (iat) is in the future",
          "Check the clocks of the runner and the service.",
        );
      default:
        return denied(`the ID token's "${e.claim}" claim is missing or invalid (${e.reason})`);
    }
  }
  if (e instanceof jose.errors.JOSEAlgNotAllowed)
    return denied("the ID token's signing algorithm is not allowed");
  if (e instanceof jose.errors.JWKSNoMatchingKey) {
    return denied(
      "no key of the issuer matches the ID token's key id (kid)",
      "The token was not signed by the configured issuer, or the issuer's keys could not be refreshed.",
    );
  }
  if (e instanceof jose.errors.JWKSMultipleMatchingKeys)
    return denied("the issuer's JWKS has several keys for this kid");
  if (e instanceof jose.errors.JWSSignatureVerificationFailed)
    return denied("the ID token's signature is invalid");
  if (e instanceof jose.errors.JWKSTimeout || e instanceof jose.errors.JWKSInvalid || isFetchError(e)) {
    return new JoinError(
      "unavailable",
      "the service could not fetch the issuer's signing keys",
      "Retry later; the operator should check the service's access to the issuer's JWKS.",
      String((e as Error).message),
    );
  }
  if (e instanceof jose.errors.JOSEError) return denied(`the ID token is invalid (${e.code})`);
  return new JoinError("internal", "internal error verifying the ID token", undefined, String(e));
}

function isFetchError(e: unknown): boolean {
  return (
    e instanceof TypeError ||
    (e instanceof Error &&
      /fetch|ECONNREFUSED|ENOTFOUND|status code|JSON Web Key Set HTTP response|discovery|jwks_uri|aborted|timeout/i.test(
        e.message,
      ))
  );
}
