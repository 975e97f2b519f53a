// The pure parts of `idbot status` and the GitLab ID token source, with an injected clock.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { envIdTokenSource, type IdTokenError } from "../src/client/sources/env.ts";
import { evaluateHealth, type IdentityStatus } from "../src/client/status.ts";

const T0 = Date.parse("2026-11-23T14:00:00Z");
const at = (minutes: number) => new Date(T0 + minutes * 60_000);
const iso = (minutes: number) => at(minutes).toISOString();

function status(certs: Array<{ from: number; to: number; leaf?: boolean; file?: string }>): IdentityStatus {
  return {
    dir: "/tmp/idbot-x",
    certificates: certs.map((c, i) => ({
      file: c.file ?? `cert${i}`,
      role: "test",
      format: "x509",
      serial: String(i),
      subject: "CN=deploy",
      issuer: "CN=ca",
      not_before: iso(c.from),
      not_after: iso(c.to),
      fingerprint: "",
      names: [],
      leaf: c.leaf ?? true,
    })),
  };
}

describe("evaluateHealth: the 80% threshold", () => {
  // A 1 h certificate backdated by 1 min: lifetime 61 min, 80% reached at 48.8 min.
  const s = status([
    { from: -1, to: 60, file: "identity/tlscert" },
    { from: -60, to: 600, leaf: false, file: "identity/tls-ca.pem" },
  ]);

  test("fresh: no warning", () => {
    const h = evaluateHealth(s, at(10));
    assert.equal(h.warning, undefined);
    assert.equal(h.expired, false);
    assert.equal(h.seconds_left, 50 * 60);
    assert.equal(h.lifetime_seconds, 61 * 60);
    assert.equal(h.expires_at, iso(60));
  });

  test("just below and past 80% of the lifetime", () => {
    assert.equal(evaluateHealth(s, at(47.7)).warning, undefined);
    const h = evaluateHealth(s, at(48)); // 49 of 61 minutes = 80.3%
    assert.match(
      h.warning!,
      /past 80% of their lifetime: 12m of 1h1m left \(identity\/tlscert expires at 2026-11-23T15:00:00.000Z\); renew with: idbot join --refresh \/tmp\/idbot-x/,
    );
    assert.equal(h.expired, false);
  });

  test("expired", () => {
    const h = evaluateHealth(s, at(65));
    assert.equal(h.expired, true);
    assert.equal(h.seconds_left, -300);
    assert.match(h.warning!, /expired at 2026-11-23T15:00:00.000Z \(5m ago/);
  });

  test("the credential expiring first decides; CA certificates do not count", () => {
    const mixed = status([
      { from: 0, to: 60 },
      { from: 0, to: 20, file: "spiffe/svid.pem" },
      { from: -600, to: 5, leaf: false },
    ]);
    const h = evaluateHealth(mixed, at(17));
    assert.equal(h.expires_at, iso(20));
    assert.match(h.warning!, /spiffe\/svid\.pem/);
    assert.equal(evaluateHealth(status([]), at(0)).warning, undefined);
  });

  test("a JWT-SVID counts from its iat to its exp", () => {
    const s2: IdentityStatus = {
      ...status([{ from: 0, to: 60 }]),
      jwt: { file: "spiffe/jwt_svid.token", audiences: ["vault"], issued_at: iso(0), expires_at: iso(10) },
    };
    const h = evaluateHealth(s2, at(9));
    assert.equal(h.expires_at, iso(10));
    assert.match(h.warning!, /jwt_svid\.token/);
  });
});

describe("the ID token from a variable (gitlab, oidc)", () => {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const jwt = (exp: number) => `${b64({ alg: "RS256" })}.${b64({ exp })}.c2ln`;
  const expS = Math.floor(T0 / 1000) + 600;

  test("reused for every attempt while valid, a clear non-retryable error once expired", async () => {
    let now = T0;
    const get = envIdTokenSource({
      variable: "IDBOT_ID_TOKEN",
      method: "gitlab",
      env: { IDBOT_ID_TOKEN: jwt(expS) },
      now: () => now,
    });
    assert.equal(await get(0), jwt(expS));
    now = T0 + 599_000;
    assert.equal(await get(1), jwt(expS), "the same token on a retry");
    now = T0 + 601_000;
    await assert.rejects(get(2), (e: IdTokenError) => {
      assert.equal(e.problem, "expired");
      assert.match(
        e.message,
        /the ID token in \$IDBOT_ID_TOKEN expired at 2026-11-23T14:10:00.000Z \(1 s ago\)/,
      );
      assert.match(e.hint!, /id_tokens:.*once.*re-run the job, or move the join earlier/s);
      assert.equal((e as { retryable?: boolean }).retryable, undefined);
      return true;
    });
  });

  test("missing or not a JWT: fails before any attempt", () => {
    assert.throws(
      () => envIdTokenSource({ variable: "IDBOT_ID_TOKEN", method: "gitlab", env: {} }),
      (e: IdTokenError) => e.problem === "missing" && /aud: https:\/\/idbot\.example\.com/.test(e.hint!),
    );
    assert.throws(
      () => envIdTokenSource({ variable: "T", method: "oidc", env: { T: "not-a-jwt" } }),
      (e: IdTokenError) => e.problem === "malformed",
    );
    assert.throws(
      () =>
        envIdTokenSource({ variable: "T", method: "oidc", env: { T: jwt(expS) }, now: () => T0 + 3600_000 }),
      (e: IdTokenError) => e.problem === "expired",
    );
  });
});
