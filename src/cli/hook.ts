// `idbot hook job-started|job-completed`: self-hosted GitHub Actions runner job hooks
// (ACTIONS_RUNNER_HOOK_JOB_STARTED / _COMPLETED). The started hook joins when the job may
// request an OIDC token (it granted `id-token: write`), writes under RUNNER_TEMP and
// exports the paths to the job's steps through GITHUB_ENV; the completed hook removes
// exactly what the started hook wrote, whether the job passed or failed. A hook never
// breaks a job: a job without OIDC, a denial, an unreachable service all become warnings
// and exit 0, unless IDBOT_HOOK_STRICT=true.

import { envName, parseBoolean } from "../client/config.ts";
import { cleanupHookDirs, exportToGithubEnv, hookExports, recordHookDir } from "../client/hook.ts";
import { actionsOidcAvailable } from "../client/sources/github.ts";
import { CliError, EXIT, parseCommand } from "./args.ts";
import { performJoin } from "./join.ts";

const USAGE = `
Usage: idbot hook job-started
       idbot hook job-completed

Job hooks for self-hosted GitHub Actions runners. In the runner's .env file:

  ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/idbot/hooks/job-started.sh
  ACTIONS_RUNNER_HOOK_JOB_COMPLETED=/opt/idbot/hooks/job-completed.sh
  IDBOT_SERVER=https://idbot.example.com
  IDBOT_TOKEN=github-runner

job-started joins with the job's GitHub OIDC token when the job granted
"permissions: id-token: write" (other jobs get a notice and run as before), writes the
credentials into a fresh directory under RUNNER_TEMP and exports IDBOT_DIR,
IDBOT_IDENTITY_DIR, IDBOT_SSH_CONFIG, KUBECONFIG (kubernetes output), ... through
GITHUB_ENV (not with IDBOT_EXPORT_ENV=false). Settings come from the IDBOT_* variables of
"idbot join --help" (and a config file named by IDBOT_CONFIG). job-completed removes what
job-started wrote (not with IDBOT_CLEANUP=false or IDBOT_SKIP_CLEANUP=true).

A hook never fails the job: problems are printed as warnings and the exit status is 0.
Set IDBOT_HOOK_STRICT=true to fail the job instead (exit status as for idbot join).

Example:
  # a workflow on that runner
  jobs:
    deploy:
      runs-on: self-hosted
      permissions: { id-token: write, contents: read }
      steps:
        - run: ssh -F "$IDBOT_SSH_CONFIG" deploy@web01.example.com ./release.sh
`;

function warn(message: string, env: NodeJS.ProcessEnv): void {
  process.stderr.write(`idbot hook: warning: ${message}\n`);
  if (env.GITHUB_ACTIONS === "true") {
    const escaped = message.replace(/%/g, "%25").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
    process.stdout.write(`::warning title=idbot hook::${escaped}\n`);
  }
}

const info = (line: string) => process.stdout.write(`idbot hook: ${line}\n`);

export async function hookCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(`${USAGE.trim()}\n`);
    return sub === undefined ? EXIT.badInput : EXIT.ok;
  }
  if (sub !== "job-started" && sub !== "job-completed") {
    throw new CliError(`unknown hook "${sub}"\n\n${USAGE.trim()}`);
  }
  if (!parseCommand(rest, {}, USAGE)) return EXIT.ok;
  const env = process.env;
  const strict = /^(true|1|yes)$/i.test(env.IDBOT_HOOK_STRICT ?? "");
  try {
    return sub === "job-started" ? await jobStarted(env, strict) : await jobCompleted(env, strict);
  } catch (e) {
    const err = e instanceof CliError ? e : new CliError((e as Error).message, EXIT.denied);
    const text = `${err.message}${err.hint ? `\n${err.hint}` : ""}`;
    if (strict) throw err;
    warn(`${sub}: ${text}\n(the job continues; set IDBOT_HOOK_STRICT=true to fail it instead)`, env);
    return EXIT.ok;
  }
}

async function jobStarted(env: NodeJS.ProcessEnv, strict: boolean): Promise<number> {
  const runnerTemp = env.RUNNER_TEMP;
  if (!runnerTemp) throw new CliError("RUNNER_TEMP is not set: run this as a runner job hook");
  if (!actionsOidcAvailable(env)) {
    const message =
      "this job cannot request a GitHub OIDC token (it does not grant `permissions: id-token: write`), so no idbot credentials were issued; jobs that need them must grant id-token: write";
    if (strict) throw new CliError(message, EXIT.badInput);
    warn(message, env);
    return EXIT.ok;
  }
  if (!env.GITHUB_ENV) throw new CliError("GITHUB_ENV is not set: run this as a runner job hook");
  const { result } = await performJoin({
    flags: { "join-method": "github" },
    flagLabel: (i) => `${i} (the hook always uses github)`,
    env,
    parentDir: runnerTemp,
    ignoreOut: true,
  });
  // Recorded first: whatever happens next, job-completed removes the directory.
  await recordHookDir(runnerTemp, result.dir);
  const vars = hookExports(result);
  const exportEnv = parseBoolean((n) => env[envName(n)], "export-env", true);
  if (exportEnv) await exportToGithubEnv(env.GITHUB_ENV, vars);
  const r = result.response;
  info(
    `joined as bot "${r.bot_name}" (instance ${r.bot_instance_id}); SSH principals ${r.ssh?.principals.join(", ") || "-"}; expires ${r.expires_at}`,
  );
  info(
    `credentials in ${result.dir}; ${exportEnv ? `exported ${Object.keys(vars).join(", ")}` : "nothing exported (IDBOT_EXPORT_ENV=false)"}`,
  );
  return EXIT.ok;
}

async function jobCompleted(env: NodeJS.ProcessEnv, strict: boolean): Promise<number> {
  const runnerTemp = env.RUNNER_TEMP;
  if (!runnerTemp) throw new CliError("RUNNER_TEMP is not set: run this as a runner job hook");
  const get = (n: string) => env[envName(n)];
  if (!parseBoolean(get, "cleanup", true) || env.IDBOT_SKIP_CLEANUP === "true") {
    info("cleanup disabled (IDBOT_CLEANUP=false or IDBOT_SKIP_CLEANUP=true): leaving the credentials");
    return EXIT.ok;
  }
  const done = await cleanupHookDirs(runnerTemp);
  if (done.length === 0) info("nothing to clean up (job-started wrote no credentials)");
  let failed = false;
  for (const d of done) {
    if (d.error) {
      failed = true;
      warn(`could not clean up ${d.dir}: ${d.error}`, env);
      continue;
    }
    const r = d.result!;
    info(`removed ${r.removed.length} entries from ${d.dir}${r.dirRemoved ? " (directory removed)" : ""}`);
    if (r.kept.length > 0) info(`kept what idbot did not write: ${r.kept.join(", ")}`);
  }
  return failed && strict ? EXIT.denied : EXIT.ok;
}
