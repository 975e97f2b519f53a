// The `idbot` command: dispatches to one module per command group. Results go to stdout,
// progress and errors to stderr; exit codes are EXIT in args.ts.
import { workerData } from "node:worker_threads";
import { adminCommand } from "./admin.ts";
import { CliError, EXIT } from "./args.ts";
import { cleanupCommand } from "./cleanup.ts";
import { explainCommand } from "./explain.ts";
import { hookCommand } from "./hook.ts";
import { joinCommand } from "./join.ts";
import { serveCommand } from "./serve.ts";
import { installCommand, startCommand } from "./start.ts";
import { certsCommand, statusCommand } from "./status.ts";

declare const IDBOT_VERSION: string | undefined;
const VERSION = typeof IDBOT_VERSION === "string" ? IDBOT_VERSION : "dev";

const USAGE = `
idbot ${VERSION}: short-lived credentials for CI jobs and machines

Usage: idbot <command> [options]

Commands:
  join       join with this job's ID token and write the credentials (or --refresh them)
  status     show what a join's directory holds and how long it stays valid
  certs      list the certificates in a join's directory
  cleanup    remove what a join wrote
  hook       self-hosted GitHub runner job hooks (job-started, job-completed)
  start      run as a daemon on a long-lived machine: join, renew, rejoin (-c idbot.yaml)
  install    install the daemon as a service (systemd)
  serve      run the join service (embedded SQLite store, or PostgreSQL with --database)
  explain    evaluate a CI ID token against a join token's allow rules, offline
  admin      operator commands (tokens, bot-instances, apply, audit, sign-host, rotate-jwt)
  version    print the version

Run "idbot <command> --help" for options and an example.
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  join: joinCommand,
  status: statusCommand,
  certs: certsCommand,
  cleanup: cleanupCommand,
  hook: hookCommand,
  start: startCommand,
  install: installCommand,
  serve: serveCommand,
  explain: explainCommand,
  admin: adminCommand,
  version: async () => {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  },
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(`${USAGE.trim()}\n`);
    return cmd === undefined ? EXIT.badInput : EXIT.ok;
  }
  if (cmd === "--version") return COMMANDS.version!([]);
  const run = COMMANDS[cmd];
  if (!run) throw new CliError(`unknown command "${cmd}"\n\n${USAGE.trim()}`);
  return run(rest);
}

// `idbot serve --workers N` starts this file again as each HTTP worker thread
// (server/threads.ts, whose WORKER_ROLE this is): that thread runs the worker, not the CLI.
if ((workerData as { role?: string } | null)?.role === "idbot-http-worker") {
  await import("../server/threads.ts");
} else {
  runCli();
}

function runCli(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      if (e instanceof CliError) {
        process.stderr.write(`idbot: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ""}`);
        process.exitCode = e.exitCode;
      } else {
        process.stderr.write(`idbot: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
        process.exitCode = 1;
      }
    },
  );
}
