// Flag parsing shared by every command: unknown flags are errors, --help prints the
// command's usage (with an example) to stdout.
import { type ParseArgsConfig, parseArgs } from "node:util";

/** Exit codes, documented in the README. */
export const EXIT = { ok: 0, denied: 1, badInput: 2, unreachable: 3 } as const;

export class CliError extends Error {
  override name = "CliError";
  constructor(
    message: string,
    readonly exitCode: number = EXIT.badInput,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export type Options = NonNullable<ParseArgsConfig["options"]>;

export function parseCommand<O extends Options>(
  argv: string[],
  options: O,
  usage: string,
  allowPositionals = false,
):
  | {
      values: ReturnType<typeof parseArgs<{ options: O; allowPositionals: boolean; strict: true }>>["values"];
      positionals: string[];
    }
  | undefined {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${usage.trim()}\n`);
    return undefined;
  }
  try {
    const r = parseArgs({ args: argv, options, allowPositionals, strict: true });
    return { values: r.values, positionals: r.positionals };
  } catch (e) {
    throw new CliError(`${(e as Error).message.replace(/\. To specify.*$/s, "")}\n\n${usage.trim()}`);
  }
}

export function required<T>(value: T | undefined, flag: string): T {
  if (value === undefined || value === "") throw new CliError(`missing required flag ${flag}`);
  return value;
}

export const say = (line: string) => process.stderr.write(`${line}\n`);

/** Where a command finds the service's store: --data-dir (SQLite) or --database (PostgreSQL). */
export function storeFlags(
  dataDir: string | undefined,
  database: string | undefined,
): { dataDir?: string; database?: string } {
  if (dataDir && database)
    throw new CliError("give --data-dir (embedded store) or --database (PostgreSQL), not both");
  if (!dataDir && !database)
    throw new CliError("missing required flag --data-dir DIR (or --database postgres://...)");
  return dataDir ? { dataDir } : { database };
}
