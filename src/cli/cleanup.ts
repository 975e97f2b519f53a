// `idbot cleanup DIR`: removes what a join wrote into DIR, exactly the files and
// directories its manifest names (then DIR itself when nothing else is left).
import { lstat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { cleanupDir, MANIFEST_NAME, readManifest } from "../client/files.ts";
import { CliError, EXIT, parseCommand, say } from "./args.ts";
import { parseFormat } from "./join.ts";

const USAGE = `
Usage: idbot cleanup DIR
       idbot cleanup --all-from-manifest DIR/${MANIFEST_NAME}

Removes what an idbot join wrote into DIR: only the files and directories listed in its
${MANIFEST_NAME}, never anything else (files you added are kept and listed). DIR itself
is removed when nothing is left in it. A DIR that does not exist is not an error, so the
command is safe in an after_script that runs whether the join happened or not.

Options:
  --all-from-manifest FILE   the manifest of the join to remove (instead of DIR)
  --format text|json         json prints removed, missing, refused, kept, dir_removed

Exit status: 0 cleaned (or nothing to clean), 2 DIR holds no idbot manifest or is unsafe.

Example:
  idbot cleanup "$CI_PROJECT_DIR/.idbot"
`;

export async function cleanupCommand(argv: string[]): Promise<number> {
  const args = parseCommand(
    argv,
    { "all-from-manifest": { type: "string" }, format: { type: "string" } },
    USAGE,
    true,
  );
  if (!args) return EXIT.ok;
  const format = parseFormat(args.values.format);
  const manifestFile = args.values["all-from-manifest"];
  if (args.positionals.length > 1) throw new CliError(`give one directory\n\n${USAGE.trim()}`);
  const [positional] = args.positionals;
  if ((positional === undefined) === (manifestFile === undefined)) {
    throw new CliError(`give DIR or --all-from-manifest FILE (one of them)\n\n${USAGE.trim()}`);
  }
  let dir: string;
  if (manifestFile !== undefined) {
    if (basename(manifestFile) !== MANIFEST_NAME) {
      throw new CliError(`--all-from-manifest: ${manifestFile} is not an idbot manifest (${MANIFEST_NAME})`);
    }
    dir = dirname(resolve(manifestFile));
  } else {
    dir = resolve(positional!);
  }
  let result: Awaited<ReturnType<typeof cleanupDir>>;
  try {
    const manifest = await readManifest(dir).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
      throw e;
    });
    if (manifest === undefined) {
      if ((await lstat(dir).catch(() => undefined)) === undefined) {
        say(`idbot: ${dir} does not exist: nothing to clean up`);
        if (format === "json") process.stdout.write(`${JSON.stringify({ dir, exists: false })}\n`);
        return EXIT.ok;
      }
      throw new CliError(
        `${dir} holds no ${MANIFEST_NAME}: idbot removes only what a join wrote; nothing removed`,
      );
    }
    result = await cleanupDir(dir);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`cleanup of ${dir} failed: ${(e as Error).message}; nothing more removed`);
  }
  if (result.refused.length > 0) say(`idbot: left alone (unsafe to remove): ${result.refused.join(", ")}`);
  if (result.kept.length > 0) say(`idbot: kept what idbot did not write: ${result.kept.join(", ")}`);
  say(
    `idbot: removed ${result.removed.length} entries from ${dir}${result.missing.length ? ` (${result.missing.length} already gone)` : ""}${result.dirRemoved ? "; directory removed" : ""}`,
  );
  if (format === "json") {
    process.stdout.write(
      `${JSON.stringify(
        {
          dir,
          exists: true,
          removed: result.removed,
          missing: result.missing,
          refused: result.refused,
          kept: result.kept,
          dir_removed: result.dirRemoved,
        },
        null,
        2,
      )}\n`,
    );
  }
  return EXIT.ok;
}
