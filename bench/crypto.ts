// The crypto floor of one join, measured in this process: what the service cannot avoid
// doing per join (verify the RS256 ID token's signature as the service does, with
// node:crypto on a cached KeyObject, sign the X.509 leaf with P-256,
// sign the SSH certificate with Ed25519). 1e6 / sum(µs) is the most joins/s one core could do.
import {
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  randomBytes,
  sign,
  verify,
} from "node:crypto";
import { Worker } from "node:worker_threads";
import * as jose from "jose";
import { GITHUB_ISSUER, type Issuer, mintTokens } from "./tokens.ts";

export interface CryptoCosts {
  /** node:crypto.verify of the RS256 signature on a cached KeyObject, as the service does. */
  rs256VerifyUs: number;
  p256SignUs: number;
  ed25519SignUs: number;
  sumUs: number;
  /** 1e6 / sumUs: joins/s per core if a join cost only its three crypto operations. */
  floorJoinsPerS: number;
  /** Reference: the whole token checked with jose jwtVerify (WebCrypto, async, claims
   *  included), which the service used before its check went synchronous. */
  rs256JoseVerifyUs: number;
}

export interface CryptoFloor extends CryptoCosts {
  /** The same, measured while a busy thread occupies the other vCPU, as the load generator
   *  does during the runs (on this VM a busy sibling vCPU slows a thread down markedly). */
  contended: CryptoCosts;
}

/** Median µs per call over `rounds` batches of `batch` calls (after a warm-up batch). */
async function timeIt(fn: () => unknown, opts: { batch: number; rounds: number }): Promise<number> {
  const perCall: number[] = [];
  for (let r = -1; r < opts.rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < opts.batch; i++) {
      const v = fn();
      if (v instanceof Promise) await v;
    }
    const us = Number(process.hrtime.bigint() - t0) / 1e3 / opts.batch;
    if (r >= 0) perCall.push(us);
  }
  perCall.sort((a, b) => a - b);
  return perCall[Math.floor(perCall.length / 2)]!;
}

/** Keeps one other core busy until stopped. */
async function spin(): Promise<() => Promise<void>> {
  const w = new Worker("for (;;) {}", { eval: true });
  await new Promise((r) => w.once("online", r));
  return async () => {
    await w.terminate();
  };
}

export async function measureCryptoFloor(issuer: Issuer, audience: string): Promise<CryptoFloor> {
  const idle = await measureCosts(issuer, audience);
  const stop = await spin();
  try {
    return { ...idle, contended: await measureCosts(issuer, audience) };
  } finally {
    await stop();
  }
}

async function measureCosts(issuer: Issuer, audience: string): Promise<CryptoCosts> {
  // The same verification the service does: local JWKS, alg allow-list, iss, aud, times, required claims.
  const [token] = await mintTokens(issuer, { count: 1, audience, workers: 1 });
  const keys = jose.createLocalJWKSet(JSON.parse(issuer.jwksJson) as jose.JSONWebKeySet);
  const verifyOpts: jose.JWTVerifyOptions = {
    algorithms: ["RS256", "ES256"],
    issuer: GITHUB_ISSUER,
    audience,
    clockTolerance: 60,
    requiredClaims: ["exp", "iat", "jti", "sub", "repository"],
  };
  await jose.jwtVerify(token!, keys, verifyOpts); // fails loudly if the token is not what the service expects

  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const ed = generateKeyPairSync("ed25519").privateKey;
  const tbs = randomBytes(300); // about a TBSCertificate / SSH certificate body

  const rs256JoseVerifyUs = await timeIt(() => jose.jwtVerify(token!, keys, verifyOpts), {
    batch: 200,
    rounds: 9,
  });
  const p256SignUs = await timeIt(() => sign("sha256", tbs, p256), { batch: 500, rounds: 9 });
  const ed25519SignUs = await timeIt(() => sign(null, tbs, ed), { batch: 500, rounds: 9 });

  const dot = token!.lastIndexOf(".");
  const data = Buffer.from(token!.slice(0, dot));
  const sig = Buffer.from(token!.slice(dot + 1), "base64url");
  const jwk = (JSON.parse(issuer.jwksJson) as { keys: JsonWebKey[] }).keys[0]!;
  const rsaKey = createPublicKey({ key: jwk, format: "jwk" });
  if (!verify("sha256", data, rsaKey, sig)) throw new Error("node:crypto could not verify the bench token");
  const rs256VerifyUs = await timeIt(() => verify("sha256", data, rsaKey, sig), {
    batch: 500,
    rounds: 9,
  });
  const sumUs = rs256VerifyUs + p256SignUs + ed25519SignUs;
  return { rs256VerifyUs, p256SignUs, ed25519SignUs, sumUs, floorJoinsPerS: 1e6 / sumUs, rs256JoseVerifyUs };
}
