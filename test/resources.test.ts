// The operator's YAML resources: every error names the file and line, unknown fields are
// errors naming their full path, and cross-references are checked before anything applies.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadResources, parseResources, ResourceError } from "../src/server/policy/resources.ts";

const ROLE = `kind: role
version: v1
metadata: { name: deployer }
spec:
  logins: [idbot-deploy]
  max_ttl: 2h
`;
const BOT = `kind: bot
version: v1
metadata: { name: deploy }
spec: { roles: [deployer] }
`;
const TOKEN = `kind: token
version: v1
metadata: { name: github-deploy }
spec:
  join_method: github
  bot_name: deploy
  github:
    allow:
      - repository: acme/app
        ref: refs/heads/main
`;
const docs = (...d: string[]) => d.join("---\n");

/** The ResourceError message of parsing `text`; fails if it parses. */
function parseError(text: string, file = "res.yaml"): string {
  try {
    parseResources(text, file);
  } catch (e) {
    assert.ok(e instanceof ResourceError, `a ResourceError, got ${String(e)}`);
    return e.message;
  }
  assert.fail("expected the resources to be refused");
}

function loadError(path: string): string {
  try {
    loadResources(path);
  } catch (e) {
    assert.ok(e instanceof ResourceError, `a ResourceError, got ${String(e)}`);
    return e.message;
  }
  assert.fail("expected the resources to be refused");
}

/** 1-based line of the first line of `text` containing `needle` (at or after `from`). */
function lineOf(text: string, needle: string, from = 1): number {
  const i = text.split("\n").findIndex((l, n) => n + 1 >= from && l.includes(needle));
  assert.ok(i >= 0, `"${needle}" is in the text`);
  return i + 1;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "idbot-res-"));
}

describe("parseResources: valid resources", () => {
  test("a role, a bot and a token parse, with max_ttl in seconds and the origin file:line", () => {
    const text = docs(ROLE, BOT, TOKEN);
    const { resources, origin } = parseResources(text, "res.yaml");
    assert.deepEqual(
      resources.map((r) => `${r.kind}/${r.metadata.name}`),
      ["role/deployer", "bot/deploy", "token/github-deploy"],
    );
    const role = resources[0]!;
    assert.equal(role.kind, "role");
    if (role.kind === "role") assert.equal(role.spec.max_ttl, 7200);
    assert.equal(origin.get(resources[0]!), "res.yaml:1");
    assert.equal(origin.get(resources[1]!), `res.yaml:${lineOf(text, "kind: bot")}`);
    assert.equal(origin.get(resources[2]!), `res.yaml:${lineOf(text, "kind: token")}`);
  });

  test("a repository_id written as a YAML number is accepted as a string", () => {
    const text = TOKEN.replace(
      "      - repository: acme/app\n        ref: refs/heads/main\n",
      "      - repository_id: 892349901\n",
    );
    const { resources } = parseResources(text, "res.yaml");
    const token = resources[0]!;
    assert.equal(token.kind, "token");
    if (token.kind === "token" && token.spec.join_method === "github") {
      assert.deepEqual(token.spec.github.allow, [{ repository_id: "892349901" }]);
      assert.equal(typeof token.spec.github.allow[0]!.repository_id, "string");
    }
  });

  test("a file of comments only holds no resources", () => {
    assert.equal(parseResources("# nothing here yet\n", "res.yaml").resources.length, 0);
  });

  test("an empty document (a trailing --- or one holding only comments) is skipped", () => {
    for (const text of [
      `${ROLE}---\n`,
      `${ROLE}---\n# kind: bot (disabled)\n`,
      `---\n${ROLE}---\n---\n${BOT}`,
    ]) {
      let count: number | string;
      try {
        count = parseResources(text, "res.yaml").resources.length;
      } catch (e) {
        count = (e as Error).message;
      }
      assert.equal(count, text.includes("kind: bot\n") ? 2 : 1, JSON.stringify(text));
    }
  });
});

describe("parseResources: unknown fields name the path and the line", () => {
  test("inside an allow rule of the first document", () => {
    const text = TOKEN.replace("      - repository: acme/app\n", "      - repo: acme/app\n");
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(
        `^res\\.yaml:${lineOf(text, "- repo:")}: unknown field "spec\\.github\\.allow\\[0\\]\\.repo"$`,
        "m",
      ),
    );
  });

  test("in the second rule, on the rule's own line", () => {
    const text = `${TOKEN}      - repository: acme/tools\n        environmnet: production\n`;
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(
        `^res\\.yaml:${lineOf(text, "environmnet")}: unknown field "spec\\.github\\.allow\\[1\\]\\.environmnet"$`,
        "m",
      ),
    );
  });

  test("under spec.github in the second document", () => {
    const bad = TOKEN.replace("    allow:\n", "    audiance: https://idbot.example.com\n    allow:\n");
    const text = docs(ROLE, bad);
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(`^res\\.yaml:${lineOf(text, "audiance")}: unknown field "spec\\.github\\.audiance"$`, "m"),
    );
  });

  test("in a role spec of the third document", () => {
    const text = docs(
      ROLE,
      BOT,
      ROLE.replace("deployer", "other").replace("  max_ttl: 2h\n", "  max_ttl: 2h\n  colour: blue\n"),
    );
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(`^res\\.yaml:${lineOf(text, "colour")}: unknown field "spec\\.colour"$`, "m"),
    );
  });

  test("in a flow mapping (metadata) and at the top level", () => {
    const text = docs(
      ROLE,
      BOT.replace("metadata: { name: deploy }", "metadata: { name: deploy, nmae: x }"),
      `${ROLE.replace("deployer", "r2")}specs: {}\n`,
    );
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(`^res\\.yaml:${lineOf(text, "nmae")}: unknown field "metadata\\.nmae"$`, "m"),
    );
    assert.match(msg, new RegExp(`^res\\.yaml:${lineOf(text, "specs:")}: unknown field "specs"$`, "m"));
  });

  test("every problem in a file is reported, not just the first", () => {
    const text = docs(
      ROLE.replace("  max_ttl: 2h\n", "  max_ttl: 2h\n  colour: blue\n"),
      TOKEN.replace("        ref: refs/heads/main\n", "        reff: refs/heads/main\n"),
    );
    const msg = parseError(text);
    assert.match(msg, /unknown field "spec\.colour"/);
    assert.match(msg, /unknown field "spec\.github\.allow\[0\]\.reff"/);
    assert.equal(msg.split("\n").length, 2);
  });
});

describe("parseResources: invalid values", () => {
  test("an invalid max_ttl names the field, the value and the line", () => {
    const text = ROLE.replace("max_ttl: 2h", "max_ttl: 2 hours");
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(`^res\\.yaml:${lineOf(text, "max_ttl")}: spec\\.max_ttl: invalid duration "2 hours"`),
    );
  });

  test("a max_ttl given as a bare number is refused (a duration needs a unit)", () => {
    const text = ROLE.replace("max_ttl: 2h", "max_ttl: 3600");
    assert.match(parseError(text), new RegExp(`^res\\.yaml:${lineOf(text, "max_ttl")}: spec\\.max_ttl: `));
  });

  test("a max_ttl above 24h is refused", () => {
    const text = ROLE.replace("max_ttl: 2h", "max_ttl: 25h");
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(`^res\\.yaml:${lineOf(text, "max_ttl")}: spec\\.max_ttl: max_ttl may not exceed 24h$`),
    );
    // 24h itself is allowed.
    parseResources(ROLE.replace("max_ttl: 2h", "max_ttl: 24h"), "res.yaml");
  });

  test("enterprise_server_host and enterprise_slug together are refused", () => {
    const text = TOKEN.replace(
      "    allow:\n",
      "    enterprise_server_host: ghe.example.com\n    enterprise_slug: acme\n    allow:\n",
    );
    const msg = parseError(text);
    assert.match(
      msg,
      /^res\.yaml:\d+: spec\.github: set enterprise_server_host \(GHES\) or enterprise_slug \(github\.com enterprise\), not both$/,
    );
    const line = Number(/^res\.yaml:(\d+):/.exec(msg)![1]);
    assert.ok(
      line >= lineOf(text, "github:") && line <= lineOf(text, "enterprise_slug"),
      `line ${line} points at spec.github`,
    );
  });

  test("an enterprise_server_host with a scheme is refused", () => {
    const text = TOKEN.replace(
      "    allow:\n",
      "    enterprise_server_host: https://ghe.example.com\n    allow:\n",
    );
    assert.match(
      parseError(text),
      /spec\.github\.enterprise_server_host: enterprise_server_host is a host name/,
    );
  });

  test("an empty allow list is refused", () => {
    const text = TOKEN.replace(/ {4}allow:\n[\s\S]*$/, "    allow: []\n");
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(
        `^res\\.yaml:${lineOf(text, "allow")}: spec\\.github\\.allow: a github token needs at least one allow rule$`,
      ),
    );
  });

  test("an allow rule with no fields is refused (it would admit every repository)", () => {
    const text = `${TOKEN}      - {}\n`;
    const msg = parseError(text);
    assert.match(
      msg,
      new RegExp(
        `^res\\.yaml:${lineOf(text, "- {}")}: spec\\.github\\.allow\\[1\\]: an allow rule needs at least one field`,
      ),
    );
  });

  test("a static_jwks that is not a JWKS is refused", () => {
    const text = TOKEN.replace("    allow:\n", "    static_jwks: '{\"keys\": []}'\n    allow:\n");
    assert.match(
      parseError(text),
      new RegExp(
        `^res\\.yaml:${lineOf(text, "static_jwks")}: spec\\.github\\.static_jwks: static_jwks must be a JSON Web Key Set`,
      ),
    );
  });

  test("an unknown kind and an unknown join method are named", () => {
    assert.match(parseError(ROLE.replace("kind: role", "kind: rolee")), /^res\.yaml:1: kind: /);
    const text = TOKEN.replace("join_method: github", "join_method: gitlub");
    assert.match(parseError(text), /spec\.join_method/);
  });

  test("a YAML syntax error gives file:line", () => {
    const text = docs(
      ROLE,
      "kind: bot\nversion: v1\nmetadata: { name: deploy\nspec: { roles: [deployer] }\n",
    );
    const msg = parseError(text);
    const line = Number(/^res\.yaml:(\d+): YAML syntax error: /.exec(msg)?.[1]);
    const start = lineOf(text, "metadata: { name: deploy", lineOf(text, "kind: bot"));
    assert.ok(line >= start && line <= start + 1, `line ${line} is near the unclosed mapping at ${start}`);
  });

  test("a duplicate key in one mapping is a syntax error with its line", () => {
    const text = ROLE.replace("  max_ttl: 2h\n", "  max_ttl: 2h\n  max_ttl: 3h\n");
    assert.match(
      parseError(text),
      new RegExp(`^res\\.yaml:${lineOf(text, "max_ttl: 3h")}: YAML syntax error: Map keys must be unique`),
    );
  });
});

describe("loadResources: files, directories and cross-references", () => {
  test("duplicate names of one kind are refused, naming both places", () => {
    const dir = tempDir();
    const f = join(dir, "resources.yaml");
    const text = docs(ROLE, BOT, ROLE);
    writeFileSync(f, text);
    const second = lineOf(text, "kind: role", 2);
    assert.match(
      loadError(f),
      new RegExp(
        `resources\\.yaml:${second}: role "deployer" is declared twice \\(first at .*resources\\.yaml:1\\)`,
      ),
    );
  });

  test("the same name for resources of different kinds is fine", () => {
    const dir = tempDir();
    const f = join(dir, "resources.yaml");
    writeFileSync(
      f,
      docs(
        ROLE,
        BOT.replace("name: deploy", "name: deployer"),
        TOKEN.replace("bot_name: deploy", "bot_name: deployer"),
      ),
    );
    const set = loadResources(f);
    assert.ok(set.roles.has("deployer") && set.bots.has("deployer"));
  });

  test("a bot naming an undeclared role and a token naming an undeclared bot are refused", () => {
    const dir = tempDir();
    const f = join(dir, "resources.yaml");
    writeFileSync(
      f,
      docs(
        ROLE,
        BOT.replace("[deployer]", "[deployer, ghost]"),
        TOKEN.replace("bot_name: deploy", "bot_name: phantom"),
      ),
    );
    const msg = loadError(f);
    assert.match(msg, /resources\.yaml:\d+: bot "deploy" names role "ghost", which is not declared/);
    assert.match(
      msg,
      /resources\.yaml:\d+: token "github-deploy" names bot "phantom", which is not declared/,
    );
  });

  test("a directory of several files loads every *.yaml and *.yml, with references across files", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "10-roles.yaml"), ROLE);
    writeFileSync(join(dir, "20-bots.yml"), BOT);
    writeFileSync(join(dir, "30-tokens.yaml"), docs(TOKEN, TOKEN.replace("github-deploy", "github-second")));
    writeFileSync(join(dir, "README.md"), "not: [yaml");
    writeFileSync(join(dir, "notes.txt"), "kind: nonsense");
    mkdirSync(join(dir, "sub.yaml.d"));
    const set = loadResources(dir);
    assert.deepEqual([...set.roles.keys()], ["deployer"]);
    assert.deepEqual([...set.bots.keys()], ["deploy"]);
    assert.deepEqual([...set.tokens.keys()].sort(), ["github-deploy", "github-second"]);
    const second = set.tokens.get("github-second")!;
    assert.match(set.origin.get(second)!, /30-tokens\.yaml:\d+$/);
  });

  test("in a directory, an error names the file it is in, with its line", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "a.yaml"), docs(ROLE, BOT));
    const bad = TOKEN.replace(
      "        ref: refs/heads/main\n",
      "        ref: refs/heads/main\n        branch: main\n",
    );
    writeFileSync(join(dir, "b.yaml"), bad);
    const msg = loadError(dir);
    assert.match(
      msg,
      new RegExp(`b\\.yaml:${lineOf(bad, "branch:")}: unknown field "spec\\.github\\.allow\\[0\\]\\.branch"`),
    );
    assert.doesNotMatch(msg, /a\.yaml/);
  });

  test("a missing path is a clear error", () => {
    const msg = loadError(join(tempDir(), "nope.yaml"));
    assert.match(msg, /cannot read resources at .*nope\.yaml: ENOENT/);
  });
});
