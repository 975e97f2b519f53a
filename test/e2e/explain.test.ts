// `idbot explain` run from the bundle the way an operator types it: resources on disk, an
// ID token in a file or on stdin, exit status 0 allowed / 1 denied / 2 bad input.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type FakeGitHub, type MintOptions, startFakeGitHub } from "../helpers/fake-github.ts";
import { IDBOT } from "../helpers/service.ts";
import { createTestTlsCA, type TestTlsCA } from "../helpers/testca.ts";

const GITHUB_ISSUER = "https://token.actions.githubusercontent.com";
const AUDIENCE = "https://idbot.example.com";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function explain(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [IDBOT, "explain", ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d) => {
      stdout += d;
    });
    proc.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`idbot explain ${args.join(" ")} did not exit in 15 s\n${stdout}\n${stderr}`));
    }, 15_000);
    proc.on("error", reject);
    proc.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    proc.stdin.end(opts.input ?? "");
  });
}

const ROLE_AND_BOT = `kind: role
version: v1
metadata: { name: deployer }
spec:
  logins: [idbot-deploy]
  max_ttl: 2h
---
kind: bot
version: v1
metadata: { name: deploy }
spec: { roles: [deployer] }
`;

function tokenResource(githubSpec: string): string {
  return `${ROLE_AND_BOT}---
kind: token
version: v1
metadata: { name: github-deploy }
spec:
  join_method: github
  bot_name: deploy
  github:
${githubSpec}
    allow:
      - repository: acme/app
        ref: refs/heads/main
      - repository: acme/tools
        environment: production
`;
}

let dir: string;
let ca: TestTlsCA;
let github: FakeGitHub;
let staticResources: string;

function file(name: string, contents: string): string {
  const p = join(mkdtempSync(join(dir, "f-")), name);
  writeFileSync(p, contents);
  return p;
}

/** A github.com-issuer token signed by the fake's keys (verified through static_jwks). */
const mintGitHub = (opts: MintOptions = {}) =>
  github.mint({ issuer: GITHUB_ISSUER, audience: AUDIENCE, ...opts });

const baseArgs = (tokenFile: string) => [
  "--resources",
  staticResources,
  "--token",
  "github-deploy",
  "--id-token",
  tokenFile,
  "--public-url",
  AUDIENCE,
];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "idbot-explain-"));
  ca = await createTestTlsCA(join(dir, "ca"));
  github = await startFakeGitHub({ tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile });
  staticResources = file(
    "resources.yaml",
    tokenResource(`    static_jwks: '${JSON.stringify(github.publicJwks())}'`),
  );
});

after(async () => {
  await github?.close();
});

describe("idbot explain with static_jwks", () => {
  test("an allowed token: exit 0, every rule listed with ✓/✗ per field, and the claims", async () => {
    const r = await explain(baseArgs(file("token.jwt", await mintGitHub())));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Join token "github-deploy" \(join method github, bot deploy\)/);
    assert.match(r.stdout, /issuer\s+https:\/\/token\.actions\.githubusercontent\.com \(static_jwks\)/);
    assert.match(r.stdout, /Signature and time window: valid/);
    assert.match(
      r.stdout,
      /rule 1: MATCH\n\s+✓ repository\s+want "acme\/app", got "acme\/app"\n\s+✓ ref\s+want "refs\/heads\/main", got "refs\/heads\/main"/,
    );
    assert.match(
      r.stdout,
      /rule 2: no match\n\s+✗ repository\s+want "acme\/tools", got "acme\/app"\n\s+✗ environment\s+want "production", got \(absent\)/,
    );
    assert.match(r.stdout, /^\s+repository\s+"acme\/app"$/m, "the token's claims are printed");
    assert.match(r.stdout, /^\s+runner_environment\s+"github-hosted"$/m);
    assert.match(r.stdout, /Result: ALLOWED by rule 1/);
  });

  test("a token from another repository: exit 1 showing ✗ repository with want and got", async () => {
    const r = await explain(
      baseArgs(file("token.jwt", await mintGitHub({ claims: { repository: "acme/other" } }))),
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /Signature and time window: valid/);
    assert.match(
      r.stdout,
      /rule 1: no match\n\s+✗ repository\s+want "acme\/app", got "acme\/other"\n\s+✓ ref/,
    );
    assert.match(r.stdout, /rule 2: no match\n\s+✗ repository\s+want "acme\/tools", got "acme\/other"/);
    assert.match(r.stdout, /Result: DENIED: no allow rule matches/);
  });

  test("an expired token: exit 1 saying expired, though the rules match", async () => {
    const r = await explain(
      baseArgs(file("token.jwt", await mintGitHub({ issuedAt: "-1h", expiresIn: 300 }))),
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /Signature and time window: REJECTED: the ID token expired at /);
    assert.match(r.stdout, /rule 1: MATCH/);
    assert.match(r.stdout, /Result: DENIED\n?$/);
  });

  test("--at an RFC 3339 time within the token's validity: exit 0", async () => {
    const iat = Math.floor(Date.now() / 1000) - 3600;
    const tokenFile = file("token.jwt", await mintGitHub({ issuedAt: iat, expiresIn: 300 }));
    const at = new Date((iat + 100) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
    const r = await explain([...baseArgs(tokenFile), "--at", at]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`checked at ${at.replace("Z", "")}\\.000Z \\(--at\\)`));
    assert.match(r.stdout, /Result: ALLOWED by rule 1/);
  });

  test("--at Unix seconds within the token's validity: exit 0", async () => {
    const iat = Math.floor(Date.now() / 1000) - 3600;
    const tokenFile = file("token.jwt", await mintGitHub({ issuedAt: iat, expiresIn: 300 }));
    const r = await explain([...baseArgs(tokenFile), "--at", String(iat + 100)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`checked at ${new Date((iat + 100) * 1000).toISOString()} \\(--at\\)`));
  });

  test("--id-token - reads the token from standard input", async () => {
    const args = baseArgs("-");
    const r = await explain(args, { input: `${await mintGitHub()}\n` });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Result: ALLOWED by rule 1/);
  });

  test("a tampered token: exit 1 with the signature rejected", async () => {
    const r = await explain(baseArgs(file("token.jwt", github.tamper(await mintGitHub()))));
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /REJECTED: the ID token's signature is invalid/);
    assert.match(r.stdout, /Result: DENIED/);
  });

  test("a token for another audience: exit 1 naming the audience", async () => {
    const r = await explain(
      baseArgs(file("token.jwt", await mintGitHub({ audience: "https://other.example.com" }))),
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /REJECTED: the ID token's audience "https:\/\/other\.example\.com" is not "https:\/\/idbot\.example\.com"/,
    );
  });
});

describe("idbot explain refuses bad input with exit 2", () => {
  test("a missing ID token file", async () => {
    const missing = join(dir, "no-such-token.jwt");
    const r = await explain(baseArgs(missing));
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /cannot read the ID token from .*no-such-token\.jwt: ENOENT/);
    assert.equal(r.stdout, "");
  });

  test("a file that does not hold a JWT", async () => {
    const r = await explain(baseArgs(file("token.jwt", "hello, not a token\n")));
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /token\.jwt does not hold a JWT/);
    assert.equal(r.stdout, "");
  });

  test("an unknown join token name", async () => {
    const args = baseArgs(file("token.jwt", await mintGitHub()));
    args[3] = "no-such-token";
    const r = await explain(args);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /join token "no-such-token" is not declared in .*resources\.yaml \(declared: github-deploy\)/,
    );
  });

  test("an --at that is not a time", async () => {
    const r = await explain([...baseArgs(file("token.jwt", await mintGitHub())), "--at", "not-a-time"]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /--at "not-a-time" is not an RFC 3339 time or Unix seconds/);
  });

  test("an --at that is neither RFC 3339 nor Unix seconds, though JavaScript's Date would parse it", async () => {
    const tokenFile = file("token.jwt", await mintGitHub());
    for (const at of ["2026-02-30T10:00:00Z", "1.5", "March 7"]) {
      const r = await explain([...baseArgs(tokenFile), "--at", at]);
      assert.equal(r.code, 2, `--at ${at}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /is not an RFC 3339 time or Unix seconds/);
    }
  });

  test("an unknown flag", async () => {
    const r = await explain([...baseArgs(file("token.jwt", await mintGitHub())), "--frobnicate"]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /Unknown option '--frobnicate'/);
    assert.match(r.stderr, /Usage: idbot explain/);
  });

  test("a missing required flag", async () => {
    const r = await explain(["--resources", staticResources, "--id-token", "-"]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /missing required flag --token/);
  });

  test("a resources file with an unknown field names file and line", async () => {
    const bad = file("resources.yaml", tokenResource("    audiance: https://idbot.example.com"));
    const line =
      tokenResource("    audiance: https://idbot.example.com")
        .split("\n")
        .findIndex((l) => l.includes("audiance")) + 1;
    const r = await explain([
      "--resources",
      bad,
      "--token",
      "github-deploy",
      "--id-token",
      file("t.jwt", await mintGitHub()),
    ]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`resources\\.yaml:${line}: unknown field "spec\\.github\\.audiance"`));
  });
});

test("idbot explain --help: exit 0 with the options and an example", async () => {
  const r = await explain(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Usage: idbot explain --resources/);
  assert.match(r.stdout, /Exit status: 0 allowed, 1 denied, 2 bad input/);
  assert.match(r.stdout, /Example:\n\s+idbot explain --resources \S+ --token \S+ --id-token \S+/);
});

describe("idbot explain fetching the keys from a GHES issuer", () => {
  let ghesResources: string;
  const env = () => ({ NODE_EXTRA_CA_CERTS: ca.caFile });
  before(() => {
    ghesResources = file("resources.yaml", tokenResource(`    enterprise_server_host: "${github.host}"`));
  });

  test("a token from the enterprise issuer is verified against its JWKS: exit 0", async () => {
    const fetches = github.requests.jwks;
    const tokenFile = file("token.jwt", await github.mint({ audience: AUDIENCE }));
    const r = await explain(
      [
        "--resources",
        ghesResources,
        "--token",
        "github-deploy",
        "--id-token",
        tokenFile,
        "--public-url",
        `${AUDIENCE}/`,
      ],
      { env: env() },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(r.stdout.includes(`issuer   ${github.issuer}\n`), r.stdout);
    assert.match(
      r.stdout,
      /audience https:\/\/idbot\.example\.com\n/,
      "the trailing slash of --public-url is dropped",
    );
    assert.match(r.stdout, /Signature and time window: valid/);
    assert.match(r.stdout, /Result: ALLOWED by rule 1/);
    assert.ok(github.requests.jwks > fetches, "the JWKS was fetched from the issuer");
  });

  test("a github.com token checked against the enterprise issuer: exit 1 naming the issuer", async () => {
    const tokenFile = file("token.jwt", await mintGitHub());
    const r = await explain(
      [
        "--resources",
        ghesResources,
        "--token",
        "github-deploy",
        "--id-token",
        tokenFile,
        "--public-url",
        AUDIENCE,
      ],
      { env: env() },
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /REJECTED: the ID token's issuer "https:\/\/token\.actions\.githubusercontent\.com" is not/,
    );
  });

  test("a token from another repository: exit 1 with ✗ repository", async () => {
    const tokenFile = file(
      "token.jwt",
      await github.mint({ audience: AUDIENCE, claims: { repository: "acme/other" } }),
    );
    const r = await explain(
      [
        "--resources",
        ghesResources,
        "--token",
        "github-deploy",
        "--id-token",
        tokenFile,
        "--public-url",
        AUDIENCE,
      ],
      { env: env() },
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /✗ repository\s+want "acme\/app", got "acme\/other"/);
  });
});
