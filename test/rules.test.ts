// Allow-rule evaluation: exact matching of every field a rule sets, absent claims never
// match, globs only where asked for and only `*`/`?`, and a job-facing summary that never
// reveals the operator's expected values.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  evaluateRules,
  fullMismatchDetail,
  globMatch,
  type Rule,
  safeMismatchSummary,
} from "../src/server/joinmethods/rules.ts";

const CLAIMS = {
  repository: "acme/app",
  ref: "refs/heads/main",
  repository_id: "892349901",
  run_number: 42,
  ref_protected: true,
  environment: null,
};

describe("evaluateRules", () => {
  test("a rule matches when every field it sets equals the claim exactly", () => {
    const [v] = evaluateRules([{ repository: "acme/app", ref: "refs/heads/main" }], CLAIMS);
    assert.equal(v!.ok, true);
    assert.equal(v!.index, 0);
    assert.deepEqual(v!.fields, [
      { field: "repository", want: "acme/app", got: "acme/app", ok: true },
      { field: "ref", want: "refs/heads/main", got: "refs/heads/main", ok: true },
    ]);
  });

  test("matching is exact: case, prefixes, suffixes and whitespace all differ", () => {
    for (const want of ["Acme/App", "acme/ap", "acme/app2", " acme/app", "acme/app ", "acme/*", "acme/ap?"]) {
      const [v] = evaluateRules([{ repository: want }], CLAIMS);
      assert.equal(v!.ok, false, `"${want}" must not match "acme/app"`);
    }
  });

  test("one differing field fails the rule; every field keeps its own verdict", () => {
    const [v] = evaluateRules([{ repository: "acme/app", ref: "refs/heads/dev" }], CLAIMS);
    assert.equal(v!.ok, false);
    assert.deepEqual(
      v!.fields.map((f) => [f.field, f.ok]),
      [
        ["repository", true],
        ["ref", false],
      ],
    );
  });

  test("any matching rule admits; every rule is evaluated and indexed in order", () => {
    const verdicts = evaluateRules(
      [{ repository: "acme/tools" }, { repository: "acme/app" }, { repository: "acme/other" }],
      CLAIMS,
    );
    assert.deepEqual(
      verdicts.map((v) => [v.index, v.ok]),
      [
        [0, false],
        [1, true],
        [2, false],
      ],
    );
  });

  test("an absent or null claim never matches, and is reported as got undefined", () => {
    const [absent, nul] = evaluateRules([{ workflow: "deploy" }, { environment: "null" }], CLAIMS);
    assert.equal(absent!.ok, false);
    assert.deepEqual(absent!.fields[0], { field: "workflow", want: "deploy", got: undefined, ok: false });
    assert.equal(nul!.ok, false, 'a null claim is absent, not the text "null"');
    assert.equal(nul!.fields[0]!.got, undefined);
  });

  test('an empty-string claim does not match an absent claim nor the text "undefined"', () => {
    const [v] = evaluateRules([{ head_ref: "undefined" }], { head_ref: "" });
    assert.equal(v!.ok, false);
    assert.equal(v!.fields[0]!.got, "");
  });

  test("numeric and boolean claims compare by their decimal text", () => {
    const verdicts = evaluateRules(
      [
        { run_number: "42" },
        { run_number: "42.0" },
        { run_number: "042" },
        { ref_protected: "true" },
        { repository_id: "892349901" },
      ],
      CLAIMS,
    );
    assert.deepEqual(
      verdicts.map((v) => v.ok),
      [true, false, false, true, true],
    );
    assert.equal(verdicts[0]!.fields[0]!.got, "42");
  });

  test("object and array claims are compared as JSON, never as [object Object]", () => {
    const [obj, arr] = evaluateRules([{ extra: "[object Object]" }, { aud: '["a","b"]' }], {
      extra: { a: 1 },
      aud: ["a", "b"],
    });
    assert.equal(obj!.ok, false);
    assert.equal(obj!.fields[0]!.got, '{"a":1}');
    assert.equal(arr!.ok, true);
  });

  test("fields a rule leaves undefined are skipped; a rule with no fields never matches", () => {
    const [partial, empty] = evaluateRules([{ repository: "acme/app", ref: undefined }, {}], CLAIMS);
    assert.equal(partial!.ok, true);
    assert.deepEqual(
      partial!.fields.map((f) => f.field),
      ["repository"],
    );
    assert.equal(empty!.ok, false, "an empty rule must not admit every job");
    assert.deepEqual(empty!.fields, []);
  });

  test("inherited properties of the claims object are not claims", () => {
    const verdicts = evaluateRules(
      [{ constructor: "function Object() { [native code] }" }, { toString: "x" }],
      {},
    );
    assert.ok(verdicts.every((v) => !v.ok));
  });

  test("globs apply only to the fields named as glob fields", () => {
    const rules: Rule[] = [{ ref: "refs/heads/*" }];
    assert.equal(evaluateRules(rules, CLAIMS)[0]!.ok, false, "no glob field given: * is literal");
    assert.equal(evaluateRules(rules, CLAIMS, new Set(["ref"]))[0]!.ok, true);
    assert.equal(evaluateRules([{ repository: "acme/*" }], CLAIMS, new Set(["ref"]))[0]!.ok, false);
  });

  test("a glob field with an absent claim does not match, even for *", () => {
    const [v] = evaluateRules([{ environment: "*" }], CLAIMS, new Set(["environment"]));
    assert.equal(v!.ok, false);
  });
});

describe("globMatch", () => {
  test("* matches any run of characters, including none and slashes", () => {
    assert.ok(globMatch("refs/heads/*", "refs/heads/main"));
    assert.ok(globMatch("refs/heads/*", "refs/heads/"));
    assert.ok(globMatch("refs/heads/*", "refs/heads/feature/x"));
    assert.ok(globMatch("*", ""));
    assert.ok(globMatch("*/app", "acme/app"));
    assert.ok(globMatch("a*b*c", "abc"));
    assert.ok(!globMatch("refs/heads/*", "refs/tags/v1"));
    assert.ok(!globMatch("refs/heads/*", "xrefs/heads/main"), "anchored at the start");
    assert.ok(!globMatch("*/app", "acme/app2"), "anchored at the end");
  });

  test("? matches exactly one character", () => {
    assert.ok(globMatch("v?", "v1"));
    assert.ok(!globMatch("v?", "v"));
    assert.ok(!globMatch("v?", "v12"));
    assert.ok(globMatch("??", "ab"));
  });

  test("regular-expression metacharacters in a pattern are literal", () => {
    const cases: Array<[pattern: string, literal: string, notMatching: string[]]> = [
      ["acme/app.v1", "acme/app.v1", ["acme/appXv1"]],
      ["a+b", "a+b", ["aab", "ab"]],
      ["(a|b)", "(a|b)", ["a", "b"]],
      ["[ab]", "[ab]", ["a"]],
      ["^main$", "^main$", ["main"]],
      ["a{2}", "a{2}", ["aa"]],
      ["a\\d", "a\\d", ["a1"]],
      ["x\\", "x\\", ["x"]],
      ["$(whoami)", "$(whoami)", ["root"]],
    ];
    for (const [pattern, literal, notMatching] of cases) {
      assert.ok(globMatch(pattern, literal), `${pattern} matches itself`);
      for (const s of notMatching) assert.ok(!globMatch(pattern, s), `${pattern} must not match ${s}`);
    }
    // Metacharacters mixed with globs.
    assert.ok(globMatch("release-1.*", "release-1.2"));
    assert.ok(!globMatch("release-1.*", "release-102"));
  });

  test("matching stays fast for patterns with many stars (no catastrophic backtracking)", () => {
    const start = performance.now();
    const matched = globMatch("*a*a*a*a*a*a*a*a*b", "a".repeat(34));
    const ms = performance.now() - start;
    assert.equal(matched, false);
    assert.ok(ms < 150, `took ${ms.toFixed(0)} ms for a 34-character value`);
  });
});

describe("mismatch summaries", () => {
  const rules: Rule[] = [
    { repository: "secret-org/secret-repo", ref: "refs/heads/release-42" },
    { repository: "secret-org/other", environment: "prod-hidden" },
  ];
  const claims = { repository: "acme/app", ref: "refs/heads/main" };

  test("safeMismatchSummary names the differing fields per rule and no values", () => {
    const verdicts = evaluateRules(rules, claims);
    const summary = safeMismatchSummary(verdicts);
    assert.equal(summary, "rule 1 differs in repository, ref; rule 2 differs in repository, environment");
    for (const rule of rules) {
      for (const want of Object.values(rule))
        assert.ok(!summary.includes(want!), `does not reveal "${want}"`);
    }
  });

  test("safeMismatchSummary does not list fields that matched", () => {
    const summary = safeMismatchSummary(
      evaluateRules([{ repository: "acme/app", ref: "refs/heads/dev" }], claims),
    );
    assert.equal(summary, "rule 1 differs in ref");
    assert.ok(!summary.includes("refs/heads/dev"));
  });

  test("fullMismatchDetail gives the operator want and got for every field", () => {
    const detail = fullMismatchDetail(evaluateRules(rules, claims));
    assert.equal(
      detail,
      'rule 1: repository want "secret-org/secret-repo" got "acme/app", ref want "refs/heads/release-42" got "refs/heads/main"; ' +
        'rule 2: repository want "secret-org/other" got "acme/app", environment want "prod-hidden" got null',
    );
    const partial = fullMismatchDetail(evaluateRules([{ repository: "acme/app", ref: "x" }], claims));
    assert.equal(partial, 'rule 1: repository ok, ref want "x" got "refs/heads/main"');
  });
});
