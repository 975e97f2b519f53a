// Self-hosted runner job hooks: `idbot hook job-started` / `job-completed` run with the
// environment a runner gives a hook (RUNNER_TEMP, GITHUB_ENV, GITHUB_RUN_ID, ...), with
// and without the job's OIDC token, directly and through hooks/job-*.sh.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseCommandFile } from "../helpers/runner.ts";
import { IDBOT, ROOT } from "../helpers/service.ts";
import { startWorld, type World } from "../helpers/world.ts";

let world: World;

before(async () => {
  world = await startWorld();
});

after(async () => {
  await world?.close();
});

interface Job {
  runnerTemp: string;
  githubEnv: string;
  env: Record<string, string | undefined>;
}

/** A job as the runner sets it up for its hooks. */
function job(opts: { oidc: boolean; extra?: Record<string, string | undefined> }): Job {
  const work = mkdtempSync(join(tmpdir(), "idbot-runner-"));
  const runnerTemp = join(work, "_temp");
  const githubEnv = join(work, "set_env");
  mkdirSync(runnerTemp);
  writeFileSync(githubEnv, "");
  return {
    runnerTemp,
    githubEnv,
    env: {
      RUNNER_TEMP: runnerTemp,
      GITHUB_ENV: githubEnv,
      GITHUB_ACTIONS: "true",
      GITHUB_RUN_ID: "12345678901",
      GITHUB_JOB: "deploy",
      GITHUB_REPOSITORY: "acme/app",
      IDBOT_SERVER: world.service.url,
      IDBOT_TOKEN: "github-deploy",
      ...(opts.oidc
        ? {
            ACTIONS_ID_TOKEN_REQUEST_URL: world.github.idTokenRequestUrl,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN: world.github.idTokenRequestToken,
          }
        : {}),
      ...opts.extra,
    },
  };
}

function run(cmd: string, args: string[], env: Record<string, string | undefined>) {
  const full: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(GITHUB_|ACTIONS_|RUNNER_|IDBOT_)/.test(k) || k === "NODE_TEST_CONTEXT")
      continue;
    full[k] = v;
  }
  Object.assign(full, world.env);
  for (const [k, v] of Object.entries(env)) if (v !== undefined) full[k] = v;
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(cmd, args, { env: full, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const hook = (name: string, env: Record<string, string | undefined>) =>
  run(process.execPath, [IDBOT, "hook", name], env);

describe("runner job hooks", () => {
  test("job-started joins when the job has OIDC, exports paths through GITHUB_ENV; job-completed removes it all", async () => {
    const j = job({ oidc: true });
    const started = await hook("job-started", j.env);
    assert.equal(started.code, 0, started.stderr);
    const vars = parseCommandFile(readFileSync(j.githubEnv, "utf8"));
    const dir = vars.IDBOT_DIR!;
    assert.ok(dir.startsWith(realpathSync(j.runnerTemp)), "written under RUNNER_TEMP");
    assert.equal(vars.IDBOT_IDENTITY_DIR, join(dir, "identity"));
    assert.equal(vars.IDBOT_SSH_CONFIG, join(dir, "identity", "ssh_config"));
    assert.equal(vars.IDBOT_KNOWN_HOSTS, join(dir, "identity", "known_hosts"));
    assert.match(vars.IDBOT_BOT_INSTANCE_ID!, /^[0-9a-f-]{36}$/);
    assert.ok(existsSync(vars.IDBOT_SSH_CONFIG!));
    assert.match(started.stdout, /joined as bot "deploy"/);
    assert.deepEqual(
      readFileSync(join(j.runnerTemp, ".idbot-hook-dirs"), "utf8").trim().split("\n"),
      [dir],
      "the directory is recorded for job-completed",
    );
    // A step of the job can use what the hook wrote, e.g. idbot status.
    const status = await run(process.execPath, [IDBOT, "status", vars.IDBOT_DIR!], {});
    assert.match(status.stdout, /principals\s+idbot-deploy/);

    // The job "fails" or not: job-completed does not know and removes everything.
    writeFileSync(join(j.runnerTemp, "job-output.txt"), "a file of the job's own");
    const completed = await hook("job-completed", j.env);
    assert.equal(completed.code, 0, completed.stderr);
    assert.equal(existsSync(dir), false);
    assert.deepEqual(readdirSync(j.runnerTemp), ["job-output.txt"], "only what the hook wrote is gone");
    const twice = await hook("job-completed", j.env);
    assert.equal(twice.code, 0);
    assert.match(twice.stdout, /nothing to clean up/);
  });

  test("without OIDC (no id-token: write) job-started warns, writes nothing and exits 0", async () => {
    const j = job({ oidc: false });
    const before = world.github.requests.idToken;
    const r = await hook("job-started", j.env);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /warning: this job cannot request a GitHub OIDC token/);
    assert.match(r.stdout, /^::warning title=idbot hook::this job cannot request/m);
    assert.equal(readFileSync(j.githubEnv, "utf8"), "");
    assert.deepEqual(readdirSync(j.runnerTemp), []);
    assert.equal(world.github.requests.idToken, before);
    const completed = await hook("job-completed", j.env);
    assert.equal(completed.code, 0);
    const strict = await hook("job-started", { ...j.env, IDBOT_HOOK_STRICT: "true" });
    assert.equal(strict.code, 2, "IDBOT_HOOK_STRICT=true fails the job instead");
  });

  test("a denial warns and exits 0 (the runner's other jobs are never broken), strict mode exits 1", async () => {
    const j = job({ oidc: true, extra: { IDBOT_TOKEN: "no-such-token" } });
    const r = await hook("job-started", j.env);
    assert.equal(r.code, 0);
    assert.match(
      r.stderr,
      /warning: job-started: the idbot service refused the join: join token "no-such-token"/,
    );
    assert.equal(readFileSync(j.githubEnv, "utf8"), "");
    assert.deepEqual(readdirSync(j.runnerTemp), []);
    const strict = await hook("job-started", { ...j.env, IDBOT_HOOK_STRICT: "true" });
    assert.equal(strict.code, 1);
  });

  test("hooks/job-started.sh and job-completed.sh run idbot from IDBOT_BIN", async () => {
    const bin = join(mkdtempSync(join(tmpdir(), "idbot-bin-")), "idbot");
    writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${IDBOT}" "$@"\n`);
    chmodSync(bin, 0o755);
    const j = job({ oidc: true, extra: { IDBOT_BIN: bin, IDBOT_OUTPUTS: "identity" } });
    const started = await run("bash", [join(ROOT, "hooks", "job-started.sh")], j.env);
    assert.equal(started.code, 0, started.stderr);
    const vars = parseCommandFile(readFileSync(j.githubEnv, "utf8"));
    assert.ok(existsSync(join(vars.IDBOT_IDENTITY_DIR!, "tlscert")));
    assert.equal(vars.IDBOT_SSH_CONFIG, undefined, "IDBOT_OUTPUTS=identity: no ssh_config");
    const completed = await run("bash", [join(ROOT, "hooks", "job-completed.sh")], j.env);
    assert.equal(completed.code, 0, completed.stderr);
    assert.deepEqual(readdirSync(j.runnerTemp), []);
    const missing = await run("bash", [join(ROOT, "hooks", "job-started.sh")], {
      ...j.env,
      IDBOT_BIN: "/nonexistent/idbot",
    });
    assert.equal(missing.code, 0, "a runner without idbot installed still runs its jobs");
    assert.match(missing.stderr, /not found/);
  });
});
