// The Action's main step: read inputs, join, publish outputs. All logic lives in client/.
import * as core from "@actions/core";
import { type CommonInputs, InputError, parseCommonInputs } from "../client/config.ts";
import { JoinFailure } from "../client/join.ts";
import { type JoinResult, joinAndWrite } from "../client/run.ts";
import {
  actionRefWarning,
  githubIdTokenSource,
  loggableClaims,
  MissingOidcError,
} from "../client/sources/github.ts";
import { InsecureUrlError, nodeTransport } from "../client/transport.ts";

export const STATE_DIR = "identity-dir";
export const STATE_CLEANUP = "cleanup";

async function run(): Promise<void> {
  const refWarning = actionRefWarning(process.env.GITHUB_ACTION_REF, process.env.GITHUB_ACTION_REPOSITORY);
  if (refWarning) core.warning(refWarning);

  const inputs: CommonInputs = parseCommonInputs((name) => core.getInput(name));
  core.saveState(STATE_CLEANUP, String(inputs.cleanup));
  const fetchToken = githubIdTokenSource(inputs.audience);
  let claimsLogged = false;

  const result = await joinAndWrite(
    { ...inputs, joinMethod: "github", parentDir: runnerTemp() },
    {
      getIdToken: async () => {
        const token = await fetchToken();
        core.setSecret(token);
        if (!claimsLogged) {
          claimsLogged = true;
          core.info(
            `GitHub ID token claims (allow rules match these): ${JSON.stringify(loggableClaims(token))}`,
          );
        }
        return token;
      },
      transport: nodeTransport({ caPem: inputs.caPem }),
      onSecret: (s) => core.setSecret(s),
      onRetry: ({ attempt, delayMs, reason }) =>
        core.info(`join attempt ${attempt} failed (${reason}); retrying in ${delayMs} ms`),
    },
  );
  // Record the directory first: whatever happens next, the post step removes it.
  core.saveState(STATE_DIR, result.dir);

  for (const [name, path] of Object.entries(result.outputs)) core.setOutput(name, path);
  core.setOutput("expires-at", result.response.expires_at);
  core.setOutput("bot-instance-id", result.response.bot_instance_id);
  if (inputs.exportEnv)
    for (const [name, path] of Object.entries(result.env)) core.exportVariable(name, path);

  const r = result.response;
  await writeSummary(result.summary, r.expires_at);
  if (r.ttl_capped)
    core.notice(
      `the requested certificate TTL was above the roles' max_ttl; certificates expire at ${r.expires_at}`,
    );
  core.info(
    `joined as bot "${r.bot_name}" (instance ${r.bot_instance_id}); SSH principals ${r.ssh?.principals.join(", ") ?? "-"}; expires ${r.expires_at}`,
  );
  core.info(`identity written to ${result.dir}`);
}

/** One table of what was issued: types, identities, expiry, paths. Never a secret. */
async function writeSummary(rows: JoinResult["summary"], expiresAt: string): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  await core.summary
    .addHeading("idbot credentials", 3)
    .addTable([
      [
        { data: "Type", header: true },
        { data: "Identity", header: true },
        { data: "Expires", header: true },
        { data: "File", header: true },
      ],
      ...rows.map((row) => [row.type, row.identity, expiresAt, row.path]),
    ])
    .write();
}

function runnerTemp(): string {
  const t = process.env.RUNNER_TEMP;
  if (!t) throw new Error("RUNNER_TEMP is not set: this step must run inside a GitHub Actions job");
  return t;
}

function describe(e: unknown): string {
  if (e instanceof MissingOidcError) return `${e.message}.\n\n${e.hint}`;
  if (e instanceof JoinFailure) {
    const what = e.kind === "denied" ? "the idbot service refused the join" : "the join failed";
    return `${what}: ${e.message}${e.hint ? `\nHint: ${e.hint}` : ""}`;
  }
  if (e instanceof InputError || e instanceof InsecureUrlError) return e.message;
  return `idbot failed: ${e instanceof Error ? e.message : String(e)}`;
}

run().catch((e: unknown) => core.setFailed(describe(e)));
