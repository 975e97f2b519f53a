import { spawn } from "node:child_process";
import { realpathSync } from "node:fs";
import { loadConfigFile } from "../client/configfile.ts";
import { type JoinMode, runDaemon } from "../client/daemon.ts";
import { readManifest } from "../client/files.ts";
import { readCurrentIdentity } from "../client/renew.ts";
import { systemdUnit } from "../client/systemd.ts";
import { CliError, parseCommand, required, say } from "./args.ts";
import { performJoin, toCliError } from "./join.ts";

const USAGE = `
Usage: idbot start -c idbot.yaml

Runs as a daemon for a long-lived machine: joins (or picks up the identity already in the
output directory), renews every output at 2/3 of its TTL (renewal_interval), retries every
retry_interval (default 1m) up to max_retries (default 5), then joins again with the join
method; writes every file atomically and runs on_renew after each renewal. With
oneshot: true it joins once and exits. SIGTERM or SIGINT stops it cleanly.

Config file (tbot v2 shape) fields for the daemon:
  storage: { type: directory, path: /var/lib/idbot-bot }   # bound keypair, join state
  certificate_ttl: 1h
  renewal_interval: 40m
  retry_interval: 1m
  max_retries: 5
  on_renew: systemctl reload nginx
  oneshot: false

Example:
  idbot start -c /etc/idbot/idbot.yaml
`;

export async function startCommand(argv: string[]): Promise<number> {
  const args = parseCommand(argv, { config: { type: "string", short: "c" } }, USAGE);
  if (!args) return 0;
  const configPath = required(args.values.config, "-c");
  let file: ReturnType<typeof loadConfigFile>;
  try {
    file = loadConfigFile(configPath);
  } catch (e) {
    throw toCliError(e);
  }
  const dir = file.out?.path;
  if (!dir)
    throw new CliError(`${configPath}: the daemon needs an output destination (outputs[].destination.path)`);
  const d = file.daemon;
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  const log = (level: string, msg: string) =>
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, dir })}\n`);

  const hasIdentity = async () => {
    if (!(await readManifest(dir).catch(() => undefined))) return false;
    try {
      return (await readCurrentIdentity(dir)).notAfter > new Date();
    } catch {
      return false;
    }
  };
  const acquire = async (mode: JoinMode) => {
    const onDisk = (await readManifest(dir).catch(() => undefined)) !== undefined;
    const { result } = await performJoin({
      flags: {},
      env: process.env,
      configPath,
      ...(onDisk ? { refreshDir: dir, forceJoin: mode !== "renew" } : { out: dir }),
      parentDir: dir,
    });
    return { ttlSeconds: result.response.ttl_seconds, generation: result.response.generation };
  };
  const firstMode: JoinMode = (await hasIdentity())
    ? "renew"
    : (await readManifest(dir).catch(() => undefined))
      ? "rejoin"
      : "join";
  await runDaemon({
    acquire,
    firstMode,
    oneshot: d.oneshot,
    renewalIntervalMs: d.renewalIntervalSeconds !== undefined ? d.renewalIntervalSeconds * 1000 : undefined,
    retryIntervalMs: (d.retryIntervalSeconds ?? 60) * 1000,
    maxRetries: d.maxRetries ?? 5,
    onRenew: d.onRenew ? () => runHook(d.onRenew!, dir) : undefined,
    log,
    signal: controller.signal,
  });
  log("info", controller.signal.aborted ? "stopped" : "done");
  return 0;
}

/** Runs on_renew through the shell with IDBOT_DIR set; a failure is logged, not fatal. */
function runHook(command: string, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, {
      shell: true,
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, IDBOT_DIR: dir },
    });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`on_renew exited with ${code}`))));
  });
}

const INSTALL_USAGE = `
Usage: idbot install systemd --config FILE --user USER --group GROUP [--write] [--unit-dir DIR]

Prints a systemd unit that runs "idbot start -c FILE" as USER:GROUP, sandboxed
(NoNewPrivileges, ProtectSystem=strict, ProtectHome, ReadWritePaths limited to the
storage and output directories of FILE). --write writes it to DIR/idbot.service
(default /etc/systemd/system); then: systemctl daemon-reload && systemctl enable --now idbot

Example:
  idbot install systemd --config /etc/idbot/idbot.yaml --user idbot --group idbot --write
`;

export async function installCommand(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what === "--help" || what === "-h" || what === undefined) {
    process.stdout.write(`${INSTALL_USAGE.trim()}\n`);
    return what === undefined ? 2 : 0;
  }
  if (what !== "systemd")
    throw new CliError(`idbot install: unknown target "${what}" (only systemd)\n\n${INSTALL_USAGE.trim()}`);
  const args = parseCommand(
    rest,
    {
      config: { type: "string", short: "c" },
      user: { type: "string" },
      group: { type: "string" },
      write: { type: "boolean" },
      "unit-dir": { type: "string", default: "/etc/systemd/system" },
    },
    INSTALL_USAGE,
  );
  if (!args) return 0;
  const v = args.values;
  const configFile = realpathSync(required(v.config, "--config"));
  let file: ReturnType<typeof loadConfigFile>;
  try {
    file = loadConfigFile(configFile);
  } catch (e) {
    throw toCliError(e);
  }
  const paths = [file.out?.path, file.values.storage].filter((p): p is string => p !== undefined);
  if (paths.length === 0)
    throw new CliError(`${configFile}: name an output destination so the unit can allow writing there`);
  let unit: string;
  try {
    unit = systemdUnit({
      node: process.execPath,
      script: realpathSync(process.argv[1]!),
      configFile,
      user: required(v.user, "--user"),
      group: required(v.group, "--group"),
      writablePaths: paths,
    });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (!v.write) {
    process.stdout.write(unit);
    return 0;
  }
  const { writeFileAtomic } = await import("../client/files.ts");
  const target = `${v["unit-dir"]}/idbot.service`;
  await writeFileAtomic(target, unit, 0o644);
  say(`wrote ${target}; run: systemctl daemon-reload && systemctl enable --now idbot`);
  process.stdout.write(`${target}\n`);
  return 0;
}
