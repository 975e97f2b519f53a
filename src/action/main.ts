import { existsSync } from "node:fs";
// The Action's main step: read inputs, join, publish outputs. All logic lives in client/.
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as core from "@actions/core";
import { cacheFile, find } from "@actions/tool-cache";
import pkg from "../../package.json" with { type: "json" };
import {
  type CommonInputs,
  InputError,
  JOIN_INPUTS,
  parseCommonInputs,
  recordableInputs,
} from "../client/config.ts";
import { JoinFailure } from "../client/join.ts";
import { joinRecordFile } from "../client/record.ts";
import { type JoinResult, joinAndWrite } from "../client/run.ts";
import {
  actionRefWarning,
  actionsIdTokenSource,
  loggableClaims,
  NoOidcPermissionError,
} from "../client/sources/github.ts";
import { InsecureUrlError, nodeTransport } from "../client/transport.ts";

export const STATE_DIR = "identity-dir";
export const STATE_CLEANUP = "cleanup";

async function run(): Promise<void> {
  const refWarning = actionRefWarning(process.env.GITHUB_ACTION_REF, process.env.GITHUB_ACTION_REPOSITORY);
  if (refWarning) core.warning(refWarning);

  const inputs: CommonInputs = parseCommonInputs((name) => core.getInput(name));
  core.saveState(STATE_CLEANUP, String(inputs.cleanup));
  const fetchToken = actionsIdTokenSource(inputs.audience);
  let claimsLogged = false;

  // Recorded with the files, so a later step can run `idbot join --refresh DIR`.
  const settings = recordableInputs({
    ...Object.fromEntries(JOIN_INPUTS.map((i) => [i, core.getInput(i)]).filter(([, v]) => v !== "")),
    "join-method": "github",
  });
  const result = await joinAndWrite(
    {
      ...inputs,
      joinMethod: "github",
      parentDir: runnerTemp(),
      extraFiles: (response) => [joinRecordFile(settings, "github", response)],
    },
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
  await putCliOnPath().catch((e: unknown) =>
    core.warning(`idbot: could not put the idbot command on PATH: ${(e as Error).message}`),
  );
}

/**
 * Later steps can run `idbot status`, `idbot join --refresh ...`: the CLI bundle shipped
 * next to this file goes into the runner's tool cache, started by a launcher that uses
 * the runner's own Node.js (a self-hosted runner may have no node on PATH).
 */
async function putCliOnPath(): Promise<void> {
  // Cached once per version and runner: later uses in the job only add it to PATH.
  const cached = find("idbot", pkg.version);
  if (cached && existsSync(join(cached, process.platform === "win32" ? "idbot.cmd" : "idbot"))) {
    core.addPath(cached);
    return;
  }
  const bundle = fileURLToPath(new URL("./idbot.js", import.meta.url));
  const dir = await cacheFile(bundle, "idbot.mjs", "idbot", pkg.version);
  const node = process.execPath;
  if (process.platform === "win32") {
    await writeFile(join(dir, "idbot.cmd"), `@echo off\r\n"${node}" "%~dp0idbot.mjs" %*\r\n`);
  } else {
    const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
    const launcher = `#!/bin/sh\n# idbot, put on PATH by the idbot Action: the CLI bundle run by the runner's Node.js.\nnode=${q(node)}\n[ -x "$node" ] || node=node\nexec "$node" "$(dirname "$0")/idbot.mjs" "$@"\n`;
    await writeFile(join(dir, "idbot"), launcher);
    await chmod(join(dir, "idbot"), 0o755);
  }
  core.addPath(dir);
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
  if (e instanceof NoOidcPermissionError) return `${e.message}.\n\n${e.hint}`;
  if (e instanceof JoinFailure) {
    const what = e.kind === "denied" ? "the idbot service refused the join" : "the join failed";
    return `${what}: ${e.message}${e.hint ? `\nHint: ${e.hint}` : ""}`;
  }
  if (e instanceof InputError || e instanceof InsecureUrlError) return e.message;
  return `idbot failed: ${e instanceof Error ? e.message : String(e)}`;
}

run().catch((e: unknown) => core.setFailed(describe(e)));
