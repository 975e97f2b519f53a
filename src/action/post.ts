// The Action's post step: remove exactly what this step's own main step wrote. Cleanup
// never fails the job; a problem becomes a warning.
import * as core from "@actions/core";
import { cleanupDir } from "../client/files.ts";

async function run(): Promise<void> {
  const dir = core.getState("identity-dir");
  if (!dir) {
    core.info("idbot: nothing to clean up (the main step wrote no identity)");
    return;
  }
  if (core.getState("cleanup") === "false" || process.env.IDBOT_SKIP_CLEANUP === "true") {
    core.info(`idbot: cleanup disabled; leaving ${dir}`);
    return;
  }
  const r = await cleanupDir(dir);
  core.info(
    `idbot: removed ${r.removed.length} files from ${dir}${r.missing.length ? ` (${r.missing.length} already gone)` : ""}`,
  );
  if (r.refused.length > 0) core.warning(`idbot: left alone (unsafe to remove): ${r.refused.join(", ")}`);
  if (r.kept.length > 0) core.info(`idbot: kept files it did not write: ${r.kept.join(", ")}`);
}

run().catch((e: unknown) => core.warning(`idbot cleanup: ${e instanceof Error ? e.message : String(e)}`));
