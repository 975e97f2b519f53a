// Self-hosted runner job hooks: the started hook joins into a fresh directory under
// RUNNER_TEMP, exports paths to the job's steps through GITHUB_ENV and records the
// directory in RUNNER_TEMP/.idbot-hook-dirs; the completed hook removes what each recorded
// directory's manifest lists. Neither file is ever opened through a symlink.
import { constants } from "node:fs";
import { lstat, open, realpath, unlink } from "node:fs/promises";
import { basename, dirname, isAbsolute, join } from "node:path";
import { type CleanupResult, cleanupDir, MANIFEST_NAME } from "./files.ts";
import type { JoinResult } from "./run.ts";

export const HOOK_STATE_NAME = ".idbot-hook-dirs";
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

/** Appends lines to a file (created 0600), refusing a symlink or anything but a regular file. */
async function appendLines(path: string, lines: string[]): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st !== undefined && !st.isFile()) throw new Error(`${path} is not a regular file (symbolic link?)`);
  const fh = await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | NOFOLLOW, 0o600);
  try {
    await fh.writeFile(lines.map((l) => `${l}\n`).join(""));
  } finally {
    await fh.close();
  }
}

/** Records a directory the started hook wrote, for the completed hook. */
export async function recordHookDir(runnerTemp: string, dir: string): Promise<void> {
  if (/[\r\n]/.test(dir))
    throw new Error(`refusing to record a path with a line break: ${JSON.stringify(dir)}`);
  await appendLines(join(runnerTemp, HOOK_STATE_NAME), [dir]);
}

/** The variables the started hook exports: the directory, the Action's env, every output path. */
export function hookExports(result: JoinResult): Record<string, string> {
  const vars: Record<string, string> = { ...result.env };
  for (const [name, value] of Object.entries(result.outputs)) {
    vars[`IDBOT_${name.toUpperCase().replace(/-/g, "_")}`] = value;
  }
  vars.IDBOT_EXPIRES_AT = result.response.expires_at;
  vars.IDBOT_BOT_INSTANCE_ID = result.response.bot_instance_id;
  return vars;
}

/** Appends NAME=value lines to a GITHUB_ENV file (values with a line break are refused). */
export async function exportToGithubEnv(file: string, vars: Record<string, string>): Promise<void> {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(vars)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || /[\r\n]/.test(value)) {
      throw new Error(`cannot export ${name}: a name or value with a line break`);
    }
    lines.push(`${name}=${value}`);
  }
  await appendLines(file, lines);
}

export interface HookCleanup {
  dir: string;
  result?: CleanupResult;
  error?: string;
}

/**
 * Cleans every directory recorded under runnerTemp, then removes the record. Only direct
 * children of RUNNER_TEMP named idbot-* are touched: a line pointing anywhere else is
 * reported, not followed. Directories that could not be cleaned stay recorded.
 */
export async function cleanupHookDirs(runnerTemp: string): Promise<HookCleanup[]> {
  const stateFile = join(runnerTemp, HOOK_STATE_NAME);
  const st = await lstat(stateFile).catch(() => undefined);
  if (st === undefined) return [];
  if (!st.isFile()) throw new Error(`${stateFile} is not a regular file (symbolic link?)`);
  const fh = await open(stateFile, constants.O_RDONLY | NOFOLLOW);
  let text: string;
  try {
    text = await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
  const temp = await realpath(runnerTemp);
  const done: HookCleanup[] = [];
  const keep: string[] = [];
  for (const dir of [...new Set(text.split("\n").filter((l) => l.trim() !== ""))]) {
    if (!isAbsolute(dir) || dirname(dir) !== temp || !basename(dir).startsWith("idbot-")) {
      done.push({ dir, error: `not a directory the started hook creates (idbot-* directly under ${temp})` });
      continue;
    }
    try {
      const result = await cleanupDir(dir);
      done.push({ dir, result });
      // The manifest stays when an entry could not be deleted (a busy file): try again next time.
      if (result.kept.includes(MANIFEST_NAME)) keep.push(dir);
    } catch (e) {
      done.push({ dir, error: (e as Error).message });
      keep.push(dir);
    }
  }
  await unlink(stateFile);
  if (keep.length > 0) await appendLines(stateFile, keep);
  return done;
}
