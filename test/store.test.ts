// One conformance suite for both stores: the embedded SQLite file and the scale-out
// PostgreSQL database. Concurrency runs through two store instances on one database (two
// pools = two replicas; two SQLite connections sharing a write lock = two threads of
// `serve --workers`), since single-use and replay checks must hold across them.
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, type TestContext, test } from "node:test";
import { decryptSecret, encryptSecret } from "../src/server/store/crypto.ts";
import { openStore } from "../src/server/store/open.ts";
import { openPostgresStore } from "../src/server/store/postgres.ts";
import { openSqliteStore } from "../src/server/store/sqlite.ts";
import type {
  AuditEvent,
  BotInstanceRecord,
  BoundJoin,
  CAKeyRecord,
  CAName,
  CommitResult,
  Store,
} from "../src/server/store/store.ts";
import { REQUIRED_CAS } from "../src/server/store/store.ts";
import { ThreadLock } from "../src/server/store/threadlock.ts";
import { startTestPostgres, type TestPostgres } from "./helpers/pgserver.ts";

const PASSPHRASE = "correct horse battery staple";
const iso = (offsetSeconds = 0) => new Date(Date.now() + offsetSeconds * 1000).toISOString();
const nowSeconds = () => Math.floor(Date.now() / 1000);
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

function fakeCA(name: CAName): CAKeyRecord {
  const key = generateKeyPairSync("ed25519").privateKey;
  return {
    name,
    privateKeyPem: key.export({ format: "pem", type: "pkcs8" }).toString(),
    publicMaterial: `${name}-${randomUUID()}`,
    createdAt: iso(),
  };
}

function inst(over: Partial<BotInstanceRecord> = {}): BotInstanceRecord {
  return {
    id: randomUUID(),
    botName: "deploy",
    tokenName: "tok",
    joinMethod: "token",
    claims: { repository: "acme/app", run: 7, nested: { ok: true } },
    createdAt: iso(),
    expiresAt: iso(3600),
    generation: 1,
    ...over,
  };
}

const ev = (type: string, i?: BotInstanceRecord): AuditEvent => ({
  type,
  time: iso(),
  ...(i ? { botName: i.botName, instanceId: i.id, tokenName: i.tokenName } : {}),
});

const byName = (cas: CAKeyRecord[]) => Object.fromEntries(cas.map((c) => [c.name, c]));
/** How many results had each outcome, e.g. { ok: 1, token_used: 19 }. */
const tally = (rs: CommitResult[]) => {
  const out: Record<string, number> = {};
  for (const r of rs) out[r.ok ? "ok" : r.reason] = (out[r.ok ? "ok" : r.reason] ?? 0) + 1;
  return out;
};

// One PostgreSQL server for the whole file, started on first use.
let pgServer: Promise<TestPostgres | { skip: string }> | undefined;
const testPostgres = () => {
  pgServer ??= startTestPostgres();
  return pgServer;
};
after(async () => {
  const r = await pgServer;
  if (r && !("skip" in r)) await r.stop();
});
let dbCount = 0;

/** A database several store instances (replicas) open. */
interface Backend {
  open(): Promise<Store>;
}

for (const kind of ["sqlite", "postgres"] as const) {
  describe(`${kind} store`, () => {
    let server: TestPostgres | undefined;
    let skip: string | undefined;

    before(async () => {
      if (kind !== "postgres") return;
      const r = await testPostgres();
      if ("skip" in r) skip = r.skip;
      else server = r;
    });

    /** A fresh database; undefined when the test is skipped. Stores close after the test. */
    async function backend(t: TestContext): Promise<Backend | undefined> {
      if (skip) {
        t.skip(skip);
        return undefined;
      }
      const opened: Store[] = [];
      t.after(async () => {
        for (const s of opened) await s.close().catch(() => {});
      });
      let open: () => Promise<Store>;
      if (kind === "sqlite") {
        const dir = mkdtempSync(join(tmpdir(), "idbot-store-"));
        t.after(() => rmSync(dir, { recursive: true, force: true }));
        // As the threads of one `serve --workers` process open it.
        const writeLock = new ThreadLock();
        open = async () => openSqliteStore(dir, { writeLock });
      } else {
        const url = await server!.createDatabase(`conf_${++dbCount}`);
        open = () => openPostgresStore(url, { caPassphrase: PASSPHRASE });
      }
      return {
        async open() {
          const s = await open();
          opened.push(s);
          return s;
        },
      };
    }

    /** Two replicas on one fresh database. */
    async function pair(t: TestContext): Promise<[Store, Store] | undefined> {
      const b = await backend(t);
      if (!b) return undefined;
      return [await b.open(), await b.open()];
    }

    test("creates each missing CA exactly once, also when two replicas start together", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      assert.equal(s1.kind, kind);
      const made: CAKeyRecord[] = [];
      const create = (name: CAName) => {
        const ca = fakeCA(name);
        made.push(ca);
        return ca;
      };
      const [a, b] = await Promise.all([s1.loadOrCreateCAs(create), s2.loadOrCreateCAs(create)]);
      assert.deepEqual(made.map((c) => c.name).sort(), [...REQUIRED_CAS].sort());
      assert.deepEqual(byName(a), byName(made));
      assert.deepEqual(byName(b), byName(made));
      const again = await s2.loadOrCreateCAs(() => assert.fail("no CA may be created twice"));
      assert.deepEqual(byName(again), byName(made));
      assert.match(byName(again).tls!.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/);
    });

    test("rotateCA makes the new JWT key current and keeps exactly one previous", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const first = byName(await s1.loadOrCreateCAs(fakeCA));
      const next = fakeCA("jwt");
      await s1.rotateCA("jwt", next);
      let now = byName(await s2.loadOrCreateCAs(() => assert.fail("nothing is missing")));
      assert.deepEqual(now.jwt, next);
      assert.equal(now.jwt_previous!.name, "jwt_previous");
      assert.equal(now.jwt_previous!.privateKeyPem, first.jwt!.privateKeyPem);
      assert.equal(now.jwt_previous!.publicMaterial, first.jwt!.publicMaterial);
      assert.deepEqual(now.tls, first.tls);
      const third = fakeCA("jwt");
      await s2.rotateCA("jwt", third);
      now = byName(await s1.loadOrCreateCAs(() => assert.fail("nothing is missing")));
      assert.equal(Object.keys(now).length, REQUIRED_CAS.length + 1);
      assert.deepEqual(now.jwt, third);
      assert.equal(now.jwt_previous!.publicMaterial, next.publicMaterial);
    });

    test("commitJoin refuses a replayed token, also concurrently across replicas, and rolls back", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const issuer = "https://token.actions.githubusercontent.com";
      const replay = { issuer, jti: "jti-1", expiresAt: nowSeconds() + 600 };
      const i1 = inst();
      assert.deepEqual(await s1.commitJoin({ replay, instance: i1, events: [ev("join.success", i1)] }), {
        ok: true,
      });
      const i2 = inst();
      assert.deepEqual(await s2.commitJoin({ replay, instance: i2, events: [ev("join.success", i2)] }), {
        ok: false,
        reason: "replayed",
      });
      assert.equal(await s1.getBotInstance(i2.id), undefined, "a refused join stores no instance");
      assert.deepEqual(
        (await s1.listAudit({ type: "join.success" })).map((e) => e.instanceId),
        [i1.id],
        "nor its audit events",
      );
      // The same jti from another issuer is another token.
      assert.equal(
        (await s2.commitJoin({ replay: { ...replay, issuer: "x" }, instance: inst(), events: [] })).ok,
        true,
      );

      const shared = { issuer, jti: "jti-race", expiresAt: nowSeconds() + 600 };
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, k) =>
          (k % 2 ? s1 : s2).commitJoin({ replay: shared, instance: inst(), events: [ev("join.success")] }),
        ),
      );
      assert.deepEqual(tally(results), { ok: 1, replayed: 11 });

      // Expired keys are pruned; only then may the (long invalid) token's key come back.
      const old = { issuer, jti: "jti-old", expiresAt: nowSeconds() - 10 };
      assert.equal((await s1.commitJoin({ replay: old, instance: inst(), events: [] })).ok, true);
      assert.equal(await s2.pruneReplayKeys(nowSeconds()), 1);
      assert.equal((await s1.commitJoin({ replay: old, instance: inst(), events: [] })).ok, true);
      assert.equal((await s1.commitJoin({ replay, instance: inst(), events: [] })).ok, false);
    });

    test("joins committed together (group commit) keep their own results, rows and event order", async (t) => {
      const stores = await pair(t);
      if (!stores) return;
      const [s1, s2] = stores;
      const issuer = "https://token.actions.githubusercontent.com";
      const used = { issuer, jti: "jti-used", expiresAt: nowSeconds() + 600 };
      assert.equal((await s1.commitJoin({ replay: used, instance: inst(), events: [] })).ok, true);
      // 40 joins in the same event-loop turn on two replicas: every fifth reuses a taken key.
      const joins = Array.from({ length: 40 }, (_, k) => {
        const i = inst({ claims: { k, text: `quote " backslash \\ comma , brace } ${k}` } });
        const replay = k % 5 === 0 ? used : { issuer, jti: `jti-group-${k}`, expiresAt: nowSeconds() + 600 };
        const events = [
          ev("join.success", i),
          ev("cert.issued", i),
          { ...ev("cert.issued", i), data: { k } },
        ];
        return { replay, instance: i, events };
      });
      const results = await Promise.all(joins.map((j, k) => (k % 2 ? s1 : s2).commitJoin(j)));
      for (const [k, r] of results.entries())
        assert.deepEqual(r, k % 5 === 0 ? { ok: false, reason: "replayed" } : { ok: true });
      const audit = await s1.listAudit({ limit: 1000 });
      for (const [k, j] of joins.entries()) {
        const stored = await s2.getBotInstance(j.instance.id);
        const rows = audit.filter((e) => e.instanceId === j.instance.id);
        if (k % 5 === 0) {
          assert.equal(stored, undefined, `join ${k} was refused: no instance row`);
          assert.equal(rows.length, 0, `join ${k} was refused: no audit rows`);
          continue;
        }
        assert.deepEqual(stored?.claims, j.instance.claims);
        assert.deepEqual(
          rows.map((e) => e.type),
          ["join.success", "cert.issued", "cert.issued"],
        );
        assert.deepEqual(rows[2]!.data, { k });
      }
    });

    test("in one group: a key used twice commits once; a join failing for another reason fails alone", async (t) => {
      const stores = await pair(t);
      if (!stores) return;
      const [s] = stores;
      const issuer = "https://token.actions.githubusercontent.com";
      const key = (jti: string) => ({ issuer, jti, expiresAt: nowSeconds() + 600 });
      const [x, y, b, bad] = [inst(), inst(), inst(), inst()];
      // One event-loop turn. The last join's event breaks a NOT NULL column: a failure that
      // is no refusal, so its group is rolled back as a whole and every join is committed
      // on its own, with the result it would have had alone.
      const broken = { ...ev("join.success", bad), type: null as unknown as string };
      const results = await Promise.allSettled([
        s.commitJoin({ replay: key("jti-twice"), instance: x, events: [ev("join.success", x)] }),
        s.commitJoin({ replay: key("jti-twice"), instance: y, events: [ev("join.success", y)] }),
        s.commitJoin({ replay: key("jti-b"), instance: b, events: [ev("join.success", b)] }),
        s.commitJoin({ replay: key("jti-bad"), instance: bad, events: [broken] }),
      ]);
      const values = results.map((r) => (r.status === "fulfilled" ? r.value : "rejected"));
      assert.deepEqual(
        tally(values.slice(0, 2) as CommitResult[]),
        { ok: 1, replayed: 1 },
        "one use of the key commits",
      );
      assert.deepEqual(values.slice(2), [{ ok: true }, "rejected"]);
      const audit = await s.listAudit({ limit: 100 });
      for (const [i, r] of [x, y, b, bad].entries()) {
        const committed = (values[i] as CommitResult).ok === true;
        assert.equal(Boolean(await s.getBotInstance(r.id)), committed, `instance ${i}`);
        assert.equal(audit.filter((e) => e.instanceId === r.id).length, committed ? 1 : 0, `events ${i}`);
      }
      // The failed join's key went with it: a retry commits.
      const retry = inst();
      assert.deepEqual(await s.commitJoin({ replay: key("jti-bad"), instance: retry, events: [] }), {
        ok: true,
      });
    });

    test("a one-time join secret is consumed exactly once under 20 concurrent commits from two replicas", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const hash = sha256("the-secret");
      await s1.createJoinToken({
        id: "jt-1",
        hash,
        botName: "deploy",
        createdAt: iso(),
        expiresAt: iso(3600),
      });
      const contenders = Array.from({ length: 20 }, () => inst());
      const results = await Promise.all(
        contenders.map((i, k) =>
          (k % 2 ? s1 : s2).commitJoin({ joinTokenHash: hash, instance: i, events: [ev("join.success", i)] }),
        ),
      );
      assert.deepEqual(tally(results), { ok: 1, token_used: 19 });
      const winner = contenders[results.findIndex((r) => r.ok)]!;
      const rec = await s2.getJoinTokenByHash(hash);
      assert.equal(rec?.usedByInstance, winner.id);
      assert.equal(rec?.usedAt, winner.createdAt);
      assert.deepEqual(
        (await s1.listBotInstances()).map((i) => i.id),
        [winner.id],
      );
      assert.equal((await s1.listAudit({ type: "join.success" })).length, 1);
      assert.deepEqual(await s1.commitJoin({ joinTokenHash: hash, instance: inst(), events: [] }), {
        ok: false,
        reason: "token_used",
      });
      assert.deepEqual(await s1.commitJoin({ joinTokenHash: sha256("nope"), instance: inst(), events: [] }), {
        ok: false,
        reason: "token_unknown",
      });

      const expired = sha256("expired");
      await s2.createJoinToken({
        id: "jt-2",
        hash: expired,
        botName: "deploy",
        createdAt: iso(-7200),
        expiresAt: iso(-1),
      });
      assert.deepEqual(await s1.commitJoin({ joinTokenHash: expired, instance: inst(), events: [] }), {
        ok: false,
        reason: "token_expired",
      });
      assert.equal((await s1.getJoinTokenByHash(expired))?.usedAt, undefined);

      // A refused join consumes nothing: the replay key of a join refused for its secret is
      // still free.
      const fresh = sha256("fresh");
      await s1.createJoinToken({
        id: "jt-3",
        hash: fresh,
        botName: "deploy",
        createdAt: iso(),
        expiresAt: iso(60),
      });
      const replay = { issuer: "i", jti: "j", expiresAt: nowSeconds() + 60 };
      assert.equal(
        (await s1.commitJoin({ replay, joinTokenHash: hash, instance: inst(), events: [] })).ok,
        false,
      );
      assert.equal(
        (await s2.commitJoin({ replay, joinTokenHash: fresh, instance: inst(), events: [] })).ok,
        true,
      );

      assert.deepEqual(
        (await s2.listJoinTokens()).map((x) => [x.id, x.usedAt !== undefined]),
        [
          ["jt-2", false],
          ["jt-1", true],
          ["jt-3", true],
        ],
      );
      assert.equal(await s1.deleteJoinToken("jt-2"), true);
      assert.equal(await s2.deleteJoinToken("jt-2"), false);
      assert.equal(await s1.getJoinTokenByHash(expired), undefined);
    });

    test("bound keypair: registration, key and join-state checks, a lock that persists, unlock, limits", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const challenge = async (s: Store, tokenName = "bk") => {
        const id = randomUUID();
        await s.createChallenge({ id, tokenName, nonce: randomUUID(), expiresAt: iso(60) });
        return id;
      };
      const join = async (
        s: Store,
        b: Partial<BoundJoin>,
        i = inst({ tokenName: "bk", joinMethod: "bound_keypair" }),
      ) => {
        const bound: BoundJoin = {
          tokenName: "bk",
          challengeId: b.challengeId ?? (await challenge(s, b.tokenName ?? "bk")),
          publicKey: "ssh-ed25519 AAAA-key-A",
          registering: false,
          newJoinStateHash: "state-1",
          recoveryLimit: null,
          checkJoinState: true,
          ...b,
        };
        return { r: await s.commitJoin({ bound, instance: i, events: [ev("join.success", i)] }), i };
      };

      // Nothing bound, no initial key, not registering: refused, and nothing sticks.
      const c0 = await challenge(s1);
      assert.deepEqual((await join(s1, { challengeId: c0 })).r, { ok: false, reason: "not_registered" });
      assert.equal(await s2.getBoundKeypair("bk"), undefined);
      assert.equal((await s2.getChallenge(c0))?.tokenName, "bk", "a refused join leaves its challenge");

      const reg = await join(s2, { challengeId: c0, registering: true });
      assert.deepEqual(reg.r, { ok: true });
      assert.equal(await s1.getChallenge(c0), undefined);
      assert.deepEqual(await s1.getBoundKeypair("bk"), {
        tokenName: "bk",
        publicKey: "ssh-ed25519 AAAA-key-A",
        boundAt: reg.i.createdAt,
        joinStateHash: "state-1",
        recoveryCount: 1,
        instanceId: reg.i.id,
        lockedReason: undefined,
      });
      assert.deepEqual((await join(s1, { challengeId: c0, presentedJoinStateHash: "state-1" })).r, {
        ok: false,
        reason: "challenge_used",
      });
      assert.deepEqual((await join(s1, { registering: true })).r, {
        ok: false,
        reason: "already_registered",
      });
      assert.deepEqual(
        (await join(s2, { publicKey: "ssh-ed25519 AAAA-key-B", presentedJoinStateHash: "state-1" })).r,
        {
          ok: false,
          reason: "key_mismatch",
        },
      );

      const rejoin = await join(s1, { presentedJoinStateHash: "state-1", newJoinStateHash: "state-2" });
      assert.deepEqual(rejoin.r, { ok: true });
      let st = await s2.getBoundKeypair("bk");
      assert.equal(st?.recoveryCount, 2);
      assert.equal(st?.instanceId, rejoin.i.id);
      assert.equal(st?.boundAt, reg.i.createdAt, "the same key keeps its bound time");

      const rotated = await join(s2, {
        presentedJoinStateHash: "state-2",
        newJoinStateHash: "state-3",
        nextPublicKey: "ssh-ed25519 AAAA-key-B",
      });
      assert.deepEqual(rotated.r, { ok: true });
      st = await s1.getBoundKeypair("bk");
      assert.equal(st?.publicKey, "ssh-ed25519 AAAA-key-B");
      assert.equal(st?.boundAt, rotated.i.createdAt);
      assert.equal(st?.joinStateHash, "state-3");

      // A second machine with a copy of the key presents an older join state: refused, and
      // the token and its current instance are locked although the join rolled back.
      const copy = await join(s1, { publicKey: "ssh-ed25519 AAAA-key-B", presentedJoinStateHash: "state-2" });
      assert.equal(copy.r.ok, false);
      assert.equal(!copy.r.ok && copy.r.reason, "join_state_mismatch");
      assert.match((!copy.r.ok && copy.r.detail) || "", /second machine/);
      assert.equal(await s2.getBotInstance(copy.i.id), undefined);
      st = await s2.getBoundKeypair("bk");
      assert.match(st?.lockedReason ?? "", /join state mismatch/);
      assert.equal(st?.joinStateHash, "state-3");
      assert.match((await s2.getBotInstance(rotated.i.id))?.lockedReason ?? "", /join state mismatch/);
      const renew = await s2.renewInstance({
        id: rotated.i.id,
        presented: 1,
        keysHash: "k",
        now: iso(),
        expiresAt: iso(3600),
        events: [],
      });
      assert.equal(renew.ok, false);
      assert.equal(!renew.ok && renew.reason, "locked");
      const legit = {
        publicKey: "ssh-ed25519 AAAA-key-B",
        presentedJoinStateHash: "state-3",
        newJoinStateHash: "state-4",
      };
      const whileLocked = await join(s1, legit);
      assert.equal(!whileLocked.r.ok && whileLocked.r.reason, "locked");

      assert.equal(await s1.updateBoundKeypair("bk", { unlock: true }), true);
      assert.equal((await s2.getBoundKeypair("bk"))?.lockedReason, undefined);
      assert.equal((await s2.getBotInstance(rotated.i.id))?.lockedReason, undefined);
      assert.deepEqual((await join(s2, legit)).r, { ok: true });
      assert.equal((await s1.getBoundKeypair("bk"))?.recoveryCount, 4);

      const limited = await join(s1, {
        publicKey: "ssh-ed25519 AAAA-key-B",
        presentedJoinStateHash: "state-4",
        recoveryLimit: 4,
      });
      assert.deepEqual(limited.r, { ok: false, reason: "recovery_limit", detail: "4 of 4 joins used" });
      assert.deepEqual(
        (
          await join(s1, {
            publicKey: "ssh-ed25519 AAAA-key-B",
            presentedJoinStateHash: "state-4",
            recoveryLimit: 5,
          })
        ).r,
        { ok: true },
      );
      // checkJoinState off (relaxed): an old state is accepted.
      assert.deepEqual(
        (
          await join(s2, {
            publicKey: "ssh-ed25519 AAAA-key-B",
            presentedJoinStateHash: "old",
            checkJoinState: false,
          })
        ).r,
        { ok: true },
      );

      // Onboarding with an initial public key instead of a registration secret.
      assert.deepEqual(
        (await join(s1, { tokenName: "bk2", initialPublicKey: "ssh-ed25519 C", publicKey: "ssh-ed25519 D" }))
          .r,
        { ok: false, reason: "key_mismatch" },
      );
      assert.deepEqual(
        (await join(s1, { tokenName: "bk2", initialPublicKey: "ssh-ed25519 C", publicKey: "ssh-ed25519 C" }))
          .r,
        { ok: true },
      );
      assert.deepEqual(
        (await s2.listBoundKeypairs()).map((b) => [b.tokenName, b.publicKey]),
        [
          ["bk", "ssh-ed25519 AAAA-key-B"],
          ["bk2", "ssh-ed25519 C"],
        ],
      );
      // A challenge belongs to its token.
      const other = await challenge(s1, "bk2");
      assert.deepEqual((await join(s1, { challengeId: other, registering: true })).r, {
        ok: false,
        reason: "challenge_used",
      });

      assert.equal(await s1.updateBoundKeypair("missing", { unlock: true }), false);
      assert.equal(await s2.updateBoundKeypair("bk", { reset: true }), true);
      assert.equal(await s1.getBoundKeypair("bk"), undefined);
      assert.deepEqual(
        (await join(s1, { registering: true })).r,
        { ok: true },
        "a reset token registers again",
      );
    });

    test("bound keypair: a challenge is used once and a first registration happens once, across replicas", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const bound = (challengeId: string): BoundJoin => ({
        tokenName: "race",
        challengeId,
        publicKey: `ssh-ed25519 ${challengeId}`,
        registering: true,
        newJoinStateHash: "s",
        recoveryLimit: null,
        checkJoinState: true,
      });
      const one = randomUUID();
      await s1.createChallenge({ id: one, tokenName: "race", nonce: "n", expiresAt: iso(60) });
      const same = await Promise.all(
        Array.from({ length: 10 }, (_, k) =>
          (k % 2 ? s1 : s2).commitJoin({ bound: bound(one), instance: inst(), events: [] }),
        ),
      );
      assert.deepEqual(tally(same), { ok: 1, challenge_used: 9 });

      const ids = Array.from({ length: 10 }, () => randomUUID());
      for (const id of ids)
        await s2.createChallenge({ id, tokenName: "race2", nonce: "n", expiresAt: iso(60) });
      const firsts = await Promise.all(
        ids.map((id, k) =>
          (k % 2 ? s1 : s2).commitJoin({
            bound: { ...bound(id), tokenName: "race2" },
            instance: inst(),
            events: [],
          }),
        ),
      );
      assert.deepEqual(tally(firsts), { ok: 1, already_registered: 9 });
      const winner = ids[firsts.findIndex((r) => r.ok)]!;
      assert.equal((await s1.getBoundKeypair("race2"))?.publicKey, `ssh-ed25519 ${winner}`);
      assert.equal((await s1.getBoundKeypair("race2"))?.recoveryCount, 1);

      // Challenges expired for over an hour are pruned when new ones are made.
      await s1.createChallenge({ id: "stale", tokenName: "race", nonce: "n", expiresAt: iso(-7200) });
      await s1.createChallenge({ id: "recent", tokenName: "race", nonce: "n", expiresAt: iso(-60) });
      await s2.createChallenge({ id: "new", tokenName: "race", nonce: "n2", expiresAt: iso(60) });
      assert.equal(await s2.getChallenge("stale"), undefined);
      assert.equal((await s2.getChallenge("recent"))?.id, "recent");
      assert.deepEqual(await s1.getChallenge("new"), {
        id: "new",
        tokenName: "race",
        nonce: "n2",
        expiresAt: (await s2.getChallenge("new"))!.expiresAt,
      });
    });

    test("renewInstance advances the generation, locks on a stale one, refuses a locked one", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const i = inst();
      await s1.commitJoin({ instance: i, events: [] });
      assert.deepEqual((await s2.getBotInstance(i.id))?.authentications, [
        { time: i.createdAt, kind: "join", generation: 1 },
      ]);
      let keysCount = 0;
      const renewal = (presented: number, s: Store = s1, extra: object = {}) =>
        s.renewInstance({
          id: i.id,
          presented,
          keysHash: `keys-${++keysCount}`, // every renewal brings new keys
          now: iso(),
          expiresAt: iso(7200),
          remoteAddr: "192.0.2.7",
          events: [{ ...ev("instance.renewed", i), data: { presented } }],
          ...extra,
        });
      const r = await renewal(1, s2, { heartbeat: { time: iso(), hostname: "runner-1", uptimeSeconds: 3 } });
      assert.equal(r.ok, true);
      assert.equal(r.ok && r.generation, 2);
      assert.equal(r.ok && r.instance.generation, 2);
      let got = (await s1.getBotInstance(i.id))!;
      assert.equal(got.generation, 2);
      assert.equal(got.authentications?.at(-1)?.kind, "renew");
      assert.equal(got.authentications?.at(-1)?.remoteAddr, "192.0.2.7");
      assert.deepEqual(
        got.heartbeats?.map((h) => h.hostname),
        ["runner-1"],
      );

      for (let g = 2; g < 14; g++) {
        const x = await renewal(g, g % 2 ? s1 : s2, { heartbeat: { time: iso(), hostname: `h${g}` } });
        assert.equal(x.ok, true);
      }
      got = (await s2.getBotInstance(i.id))!;
      assert.equal(got.generation, 14);
      assert.equal(got.authentications?.length, 10);
      assert.deepEqual(
        got.authentications?.map((a) => a.generation),
        [5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
      );
      assert.equal(got.heartbeats?.length, 10);
      assert.equal(got.heartbeats?.at(-1)?.hostname, "h13");
      assert.equal((await s1.listAudit({ type: "instance.renewed" })).length, 13);

      const stale = await renewal(13);
      assert.equal(stale.ok, false);
      assert.equal(!stale.ok && stale.reason, "stale_generation");
      assert.match(
        (!stale.ok && stale.instance?.lockedReason) || "",
        /generation 13 presented, current is 14/,
      );
      assert.match((await s2.getBotInstance(i.id))?.lockedReason ?? "", /the identity was copied/);
      const locked = await s2.listAudit({ type: "instance.locked" });
      assert.equal(locked.length, 1);
      assert.match(locked[0]!.reason ?? "", /copied/);
      const afterLock = await renewal(14, s2);
      assert.equal(!afterLock.ok && afterLock.reason, "locked");
      assert.equal((await s1.getBotInstance(i.id))?.generation, 14);
      const unknown = await s1.renewInstance({
        id: "nope",
        presented: 1,
        keysHash: "k",
        now: iso(),
        expiresAt: iso(),
        events: [],
      });
      assert.deepEqual(unknown, { ok: false, reason: "unknown" });

      // Two replicas renewing the same generation at once with different keys: one wins,
      // the other is a copy.
      const j = inst();
      await s2.commitJoin({ instance: j, events: [] });
      const both = await Promise.all(
        [s1, s2].map((s, n) =>
          s.renewInstance({
            id: j.id,
            presented: 1,
            keysHash: `copy-${n}`,
            now: iso(),
            expiresAt: iso(60),
            events: [],
          }),
        ),
      );
      assert.deepEqual(both.map((x) => (x.ok ? "ok" : x.reason)).sort(), ["ok", "stale_generation"]);
      const final = await s1.getBotInstance(j.id);
      assert.equal(final?.generation, 2);
      assert.ok(final?.lockedReason);
    });

    test("a renewal retried after its answer was lost gets the same generation; a copy still locks", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const i = inst();
      await s1.commitJoin({ instance: i, events: [] });
      const renewal = (s: Store, presented: number, keysHash: string) =>
        s.renewInstance({
          id: i.id,
          presented,
          keysHash,
          now: iso(),
          expiresAt: iso(7200),
          remoteAddr: "192.0.2.9",
          events: [{ ...ev("renew.success", i), data: { presented } }],
        });
      assert.equal((await renewal(s1, 1, "keys-a")).ok, true);
      // The answer to that renewal never arrived; the machine retries, on either replica,
      // with the generation it still holds and the same new keys.
      for (const s of [s2, s1]) {
        const retry = await renewal(s, 1, "keys-a");
        assert.equal(retry.ok, true, JSON.stringify(retry));
        assert.equal(retry.ok && retry.generation, 2, "the current generation again, not a third");
        assert.equal(retry.ok && retry.repeated, true);
      }
      let got = (await s2.getBotInstance(i.id))!;
      assert.equal(got.generation, 2);
      assert.equal(got.lockedReason, undefined);
      assert.deepEqual(
        got.authentications?.map((a) => `${a.kind}:${a.generation}`),
        ["join:1", "renew:2", "renew_retry:2", "renew_retry:2"],
      );
      assert.equal((await s1.listAudit({ type: "renew.success" })).length, 1);
      assert.equal((await s1.listAudit({ type: "renew.retry" })).length, 2);
      // The machine goes on from generation 2.
      const next = await renewal(s1, 2, "keys-b");
      assert.equal(next.ok && next.generation, 3);
      assert.equal(next.ok && next.repeated, false);
      // Generation 2 again with the keys of that renewal is its retry; generation 1 with the
      // first renewal's keys is two behind: a copy.
      const old = await renewal(s2, 1, "keys-a");
      assert.equal(!old.ok && old.reason, "stale_generation");
      got = (await s1.getBotInstance(i.id))!;
      assert.match(got.lockedReason ?? "", /generation 1 presented, current is 3/);
      assert.equal((await s1.listAudit({ type: "instance.locked" })).length, 1);

      // One behind with keys of its own: a copy of the identity, locked.
      const k = inst();
      await s2.commitJoin({ instance: k, events: [] });
      const renewK = (presented: number, keysHash: string) =>
        s1.renewInstance({ id: k.id, presented, keysHash, now: iso(), expiresAt: iso(60), events: [] });
      assert.equal((await renewK(1, "mine")).ok, true);
      const copy = await renewK(1, "the copy's");
      assert.equal(!copy.ok && copy.reason, "stale_generation");
      assert.equal((await renewK(1, "mine")).ok, false, "locked for good, even for the retry");

      // The retry racing its original (the client's timeout fired first): both answered.
      const m = inst();
      await s1.commitJoin({ instance: m, events: [] });
      const race = await Promise.all(
        [s1, s2].map((s) =>
          s.renewInstance({
            id: m.id,
            presented: 1,
            keysHash: "same",
            now: iso(),
            expiresAt: iso(60),
            events: [],
          }),
        ),
      );
      assert.deepEqual(
        race.map((x) => x.ok && x.generation),
        [2, 2],
      );
      assert.equal((await s2.getBotInstance(m.id))?.lockedReason, undefined);
    });

    test("stored resources bump a version every replica sees", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const v0 = await s1.resourcesVersion();
      const put = (s: Store, kind: string, name: string, body: string) =>
        s.putResource({ kind, name, body, updatedAt: iso() });
      await put(s1, "role", "b", '{"v":1}');
      assert.equal(await s2.resourcesVersion(), v0 + 1);
      await put(s2, "role", "a", '{"v":1}');
      await put(s1, "bot", "z", '{"v":1}');
      await put(s1, "role", "b", '{"v":2}');
      assert.equal(await s2.resourcesVersion(), v0 + 4);
      const list = await s2.listResources();
      assert.deepEqual(
        list.map((r) => [r.kind, r.name, r.body]),
        [
          ["bot", "z", '{"v":1}'],
          ["role", "a", '{"v":1}'],
          ["role", "b", '{"v":2}'],
        ],
      );
      assert.equal(await s2.deleteResource("role", "a"), true);
      assert.equal(await s1.resourcesVersion(), v0 + 5);
      assert.equal(await s1.deleteResource("role", "a"), false);
      assert.equal(await s2.resourcesVersion(), v0 + 5, "deleting nothing changes nothing");
      assert.deepEqual(
        (await s1.listResources()).map((r) => r.name),
        ["z", "b"],
      );
    });

    test("audit: oldest first among the newest `limit`, with since and type filters", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const base = Date.parse("2031-05-01T00:00:00.000Z");
      const at = (s: number) => new Date(base + s * 1000).toISOString();
      await s1.appendAudit([
        {
          type: "join.success",
          time: at(1),
          botName: "deploy",
          joinMethod: "github",
          data: { n: 1, list: ["a"] },
        },
        { type: "join.failure", time: at(2), reason: "no rule matched", remoteAddr: "203.0.113.9" },
      ]);
      await s2.appendAudit([{ type: "join.success", time: at(3), tokenName: "t", instanceId: "i-3" }]);
      await s1.appendAudit([]);
      await s1.appendAudit([{ type: "cert.issued", time: at(4) }]);
      const all = await s2.listAudit();
      assert.deepEqual(
        all.map((e) => e.time),
        [at(1), at(2), at(3), at(4)],
      );
      assert.deepEqual(all[0], {
        type: "join.success",
        time: at(1),
        botName: "deploy",
        tokenName: undefined,
        instanceId: undefined,
        joinMethod: "github",
        remoteAddr: undefined,
        reason: undefined,
        data: { n: 1, list: ["a"] },
      });
      assert.equal(all[1]!.reason, "no rule matched");
      assert.deepEqual(
        (await s1.listAudit({ type: "join.success" })).map((e) => e.time),
        [at(1), at(3)],
      );
      assert.deepEqual(
        (await s1.listAudit({ sinceIso: at(2) })).map((e) => e.type),
        ["join.failure", "join.success", "cert.issued"],
      );
      assert.deepEqual(
        (await s1.listAudit({ sinceIso: at(2), type: "join.success" })).map((e) => e.time),
        [at(3)],
      );
      assert.deepEqual(
        (await s1.listAudit({ limit: 2 })).map((e) => e.time),
        [at(3), at(4)],
      );
      assert.deepEqual(await s1.listAudit({ sinceIso: at(5) }), []);
    });

    test("bot instances keep their claims and list by bot", async (t) => {
      const p = await pair(t);
      if (!p) return;
      const [s1, s2] = p;
      const a = inst({ botName: "a", createdAt: "2031-01-01T00:00:01.000Z" });
      const b = inst({ botName: "b", createdAt: "2031-01-01T00:00:02.000Z", joinMethod: "github" });
      const a2 = inst({
        botName: "a",
        createdAt: "2031-01-01T00:00:03.000Z",
        authentications: [
          { time: "2031-01-01T00:00:03.000Z", kind: "join", remoteAddr: "10.0.0.1", generation: 1 },
        ],
      });
      for (const i of [a2, b, a]) assert.equal((await s1.commitJoin({ instance: i, events: [] })).ok, true);
      assert.deepEqual(
        (await s2.listBotInstances()).map((i) => i.id),
        [a.id, b.id, a2.id],
      );
      assert.deepEqual(
        (await s2.listBotInstances("a")).map((i) => i.id),
        [a.id, a2.id],
      );
      assert.deepEqual(await s2.listBotInstances("nobody"), []);
      assert.deepEqual(await s2.getBotInstance(b.id), {
        ...b,
        lockedReason: undefined,
        authentications: [{ time: b.createdAt, kind: "join", generation: 1 }],
        heartbeats: [],
      });
      assert.deepEqual((await s2.getBotInstance(a2.id))?.authentications, a2.authentications);
      assert.equal(await s1.getBotInstance("missing"), undefined);
      assert.equal(await s1.healthy(), true);
    });
  });
}

describe("sqlite store: threads sharing one file", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const fresh = () => {
    const dir = mkdtempSync(join(tmpdir(), "idbot-store-"));
    dirs.push(dir);
    return dir;
  };
  const join1 = (i = inst()) => ({
    replay: { issuer: "i", jti: randomUUID(), expiresAt: nowSeconds() + 60 },
    instance: i,
    events: [ev("join.success", i)],
  });

  test("join commits wait for the write lock without blocking the event loop, then commit as one group", async () => {
    const lock = new ThreadLock();
    const store = openSqliteStore(fresh(), { writeLock: lock });
    try {
      // Another thread's commit in progress.
      assert.equal(lock.tryAcquire(), true);
      const results = Promise.all(Array.from({ length: 5 }, () => store.commitJoin(join1())));
      let settled = false;
      void results.then(() => {
        settled = true;
      });
      // The event loop keeps turning (timers fire) while the joins wait.
      for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(settled, false, "nothing commits while another thread holds the lock");
      assert.equal((await store.listBotInstances()).length, 0);
      lock.release();
      assert.deepEqual(tally(await results), { ok: 5 });
      assert.equal((await store.listBotInstances()).length, 5);
      assert.equal(lock.tryAcquire(), true, "the store released the lock after its commit");
      lock.release();
    } finally {
      await store.close();
    }
  });

  test("a replayed token is refused whichever connection saw it first; nothing is lost when closing waits for the lock", async () => {
    const dir = fresh();
    const lock = new ThreadLock();
    const a = openSqliteStore(dir, { writeLock: lock });
    const b = openSqliteStore(dir, { writeLock: new ThreadLock(lock.buffer) });
    const replay = {
      issuer: "https://token.actions.githubusercontent.com",
      jti: randomUUID(),
      expiresAt: nowSeconds() + 60,
    };
    const rs = await Promise.all(
      Array.from({ length: 20 }, (_, k) =>
        (k % 2 ? a : b).commitJoin({ replay, instance: inst(), events: [] }),
      ),
    );
    assert.deepEqual(tally(rs), { ok: 1, replayed: 19 });
    // b closes with a join queued while a's thread holds the lock: the join still commits.
    assert.equal(lock.tryAcquire(), true);
    const queued = b.commitJoin(join1());
    const closed = b.close();
    setTimeout(() => lock.release(), 20);
    await closed;
    assert.deepEqual(await queued, { ok: true });
    assert.equal((await a.listBotInstances()).length, 2);
    await a.close();
  });

  test("a lock whose holder never lets go (a thread terminated mid-commit) is taken over: joins commit late, not never", async () => {
    const lock = new ThreadLock(undefined, 150);
    const store = openSqliteStore(fresh(), { writeLock: lock });
    try {
      assert.equal(lock.tryAcquire(), true, "held by a thread that is gone");
      const started = performance.now();
      assert.deepEqual(tally(await Promise.all([store.commitJoin(join1()), store.commitJoin(join1())])), {
        ok: 2,
      });
      assert.ok(performance.now() - started >= 140, "after the takeover time, not before");
      assert.equal(lock.tryAcquire(), true, "and released after that commit");
      lock.release();
    } finally {
      await store.close();
    }
  });
});

describe("postgres store only", () => {
  let server: TestPostgres | undefined;
  let skip: string | undefined;
  before(async () => {
    const r = await testPostgres();
    if ("skip" in r) skip = r.skip;
    else server = r;
  });
  const fresh = async (t: TestContext) => {
    if (skip) {
      t.skip(skip);
      return undefined;
    }
    const db = `only_${++dbCount}`;
    return { db, url: await server!.createDatabase(db) };
  };

  test("CA private keys are stored encrypted and a wrong passphrase fails the start clearly", async (t) => {
    const f = await fresh(t);
    if (!f) return;
    const s = await openPostgresStore(f.url, { caPassphrase: PASSPHRASE });
    try {
      const cas = byName(await s.loadOrCreateCAs(fakeCA));
      await s.rotateCA("jwt", fakeCA("jwt"));
      const rows = await server!.sql<{ name: string; private_key_pem: string }>(
        f.db,
        "SELECT name, private_key_pem FROM cas",
      );
      assert.equal(rows.length, REQUIRED_CAS.length + 1);
      for (const r of rows) {
        assert.doesNotMatch(r.private_key_pem, /PRIVATE KEY/);
        assert.match(r.private_key_pem, /^v1\$[\w-]{22}\$[\w-]{16}\$[\w-]{22}\$[\w-]+$/);
      }
      const tls = rows.find((r) => r.name === "tls")!;
      assert.equal(await decryptSecret(tls.private_key_pem, PASSPHRASE), cas.tls!.privateKeyPem);
    } finally {
      await s.close();
    }
    await assert.rejects(
      openPostgresStore(f.url, { caPassphrase: "another passphrase entirely" }),
      (e: Error) => {
        assert.match(e.message, /IDBOT_CA_PASSPHRASE does not decrypt the stored CA keys/);
        return true;
      },
    );
    // The right one still opens it.
    await (await openPostgresStore(f.url, { caPassphrase: PASSPHRASE })).close();
  });

  test("replicas opening one empty database together apply each migration once", async (t) => {
    const f = await fresh(t);
    if (!f) return;
    const stores = await Promise.all(
      Array.from({ length: 4 }, () =>
        openPostgresStore(f.url, { caPassphrase: PASSPHRASE, maxConnections: 2 }),
      ),
    );
    try {
      const versions = await server!.sql<{ version: number }>(
        f.db,
        "SELECT version FROM schema_migrations ORDER BY version",
      );
      assert.deepEqual(
        versions.map((v) => v.version),
        [1],
      );
      assert.deepEqual(await Promise.all(stores.map((s) => s.resourcesVersion())), [0, 0, 0, 0]);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
    const again = await openPostgresStore(f.url, { caPassphrase: PASSPHRASE });
    await again.close();
    assert.equal((await server!.sql(f.db, "SELECT * FROM schema_migrations")).length, 1);
    // A schema newer than this build is refused rather than used.
    await server!.sql(f.db, "INSERT INTO schema_migrations (version) VALUES (99)");
    await assert.rejects(openPostgresStore(f.url, { caPassphrase: PASSPHRASE }), /newer than this idbot/);
  });

  test("survives dropped connections and reports unhealthy while PostgreSQL is down", async (t) => {
    const f = await fresh(t);
    if (!f) return;
    const dropped: Error[] = [];
    const s = await openStore({
      database: f.url,
      env: { IDBOT_CA_PASSPHRASE: PASSPHRASE },
      onConnectionError: (e) => dropped.push(e),
    });
    t.after(() => s.close());
    assert.equal(s.kind, "postgres");
    // Fill the pool with idle connections, then kill them server-side.
    await Promise.all(Array.from({ length: 6 }, () => s.listResources()));
    const killed = await server!.sql<{ k: boolean }>(
      f.db,
      "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
      [f.db],
    );
    assert.ok(killed.length > 0);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(dropped.length > 0, "the pool reported the dropped connections");
    assert.equal(await s.healthy(), true);
    await s.putResource({ kind: "role", name: "r", body: "{}", updatedAt: iso() });

    await server!.pause();
    try {
      const started = Date.now();
      assert.equal(await s.healthy(), false);
      assert.ok(Date.now() - started < 5000);
      await assert.rejects(s.listResources());
    } finally {
      await server!.resume();
    }
    assert.equal(await s.healthy(), true);
    assert.equal(await s.resourcesVersion(), 1);
  });

  test("openStore picks PostgreSQL for a URL, with the passphrase from a file", async (t) => {
    const f = await fresh(t);
    if (!f) return;
    const dir = mkdtempSync(join(tmpdir(), "idbot-pass-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "pass"), `${PASSPHRASE}\n`);
    const s = await openStore({
      database: f.url,
      dataDir: join(dir, "ignored"),
      env: { IDBOT_CA_PASSPHRASE_FILE: join(dir, "pass") },
    });
    try {
      assert.equal(s.kind, "postgres");
      await s.loadOrCreateCAs(fakeCA);
    } finally {
      await s.close();
    }
    // The trailing newline of the file is not part of the passphrase.
    await (await openPostgresStore(f.url, { caPassphrase: PASSPHRASE })).close();
  });
});

describe("openStore and the CA passphrase", () => {
  const url = "postgresql://idbot@db.invalid/idbot";
  test("SQLite for a data directory", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "idbot-open-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const s = await openStore({ dataDir: dir, env: {} });
    assert.equal(s.kind, "sqlite");
    await s.close();
  });

  test("refuses to start without a usable passphrase, naming both variables", async (t) => {
    await assert.rejects(openStore({ database: url, env: {} }), (e: Error) => {
      assert.match(e.message, /IDBOT_CA_PASSPHRASE\b/);
      assert.match(e.message, /IDBOT_CA_PASSPHRASE_FILE/);
      return true;
    });
    await assert.rejects(
      openStore({ database: url, env: { IDBOT_CA_PASSPHRASE: "too-short" } }),
      /9 characters long: use at least 16/,
    );
    const dir = mkdtempSync(join(tmpdir(), "idbot-open-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await assert.rejects(
      openStore({ database: url, env: { IDBOT_CA_PASSPHRASE_FILE: join(dir, "missing") } }),
      /cannot read IDBOT_CA_PASSPHRASE_FILE .*ENOENT/,
    );
    writeFileSync(join(dir, "short"), "short\n");
    await assert.rejects(
      openStore({ database: url, env: { IDBOT_CA_PASSPHRASE_FILE: join(dir, "short") } }),
      /IDBOT_CA_PASSPHRASE_FILE.*5 characters long/,
    );
    await assert.rejects(
      openStore({
        database: url,
        env: { IDBOT_CA_PASSPHRASE: PASSPHRASE, IDBOT_CA_PASSPHRASE_FILE: join(dir, "short") },
      }),
      /only one of/,
    );
    await assert.rejects(openStore({ database: "mysql://x/y", env: {} }), /postgres:\/\/ or postgresql:\/\//);
    await assert.rejects(openStore({ env: {} }), /--data-dir.*--database/);
  });

  test("encryptSecret/decryptSecret: random salt and IV, tamper and wrong passphrase detected", async () => {
    const a = await encryptSecret("secret text", PASSPHRASE);
    const b = await encryptSecret("secret text", PASSPHRASE);
    assert.notEqual(a, b);
    assert.equal(await decryptSecret(a, PASSPHRASE), "secret text");
    await assert.rejects(decryptSecret(a, `${PASSPHRASE}!`), /does not decrypt/);
    const parts = a.split("$");
    const ct = Buffer.from(parts[4]!, "base64url");
    ct[0] = ct[0]! ^ 1;
    parts[4] = ct.toString("base64url");
    await assert.rejects(decryptSecret(parts.join("$"), PASSPHRASE), /does not decrypt/);
    await assert.rejects(decryptSecret("-----BEGIN PRIVATE KEY-----", PASSPHRASE), /known version/);
  });
});
