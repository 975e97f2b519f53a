// A real OpenSSH sshd on loopback that trusts a user CA (TrustedUserCAKeys) and nothing else.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, chmod, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import { aptInstall, cannotInstall } from "./debian.ts";

const execFileP = promisify(execFile);
const SSHD = "/usr/sbin/sshd";

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function run(
  cmd: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Promise<{ stdout: string; stderr: string }> {
  try {
    const r = await execFileP(cmd, args, { env: env ?? process.env, maxBuffer: 64 << 20 });
    return { stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string; code?: number | string };
    const detail = `${e.stderr ?? ""}${e.stdout ?? ""}`.trim() || e.message;
    const wrapped = new Error(`${cmd} ${args.join(" ")} failed (${e.code}): ${detail}`) as Error & {
      exitCode?: number | string;
    };
    wrapped.exitCode = e.code;
    throw wrapped;
  }
}

/**
 * Makes sure /usr/sbin/sshd exists, installing openssh-server with apt-get when running as root.
 * When that is impossible: throws under CI=true (a missing peer fails CI), otherwise returns { skip }.
 */
export async function ensureOpenSSHServer(): Promise<{ sshd: string } | { skip: string }> {
  if (await exists(SSHD, constants.X_OK)) return { sshd: SSHD };
  let reason = await cannotInstall(SSHD, "openssh-server");
  if (!reason) {
    try {
      await aptInstall(["openssh-server"]);
    } catch (err) {
      reason = `installing openssh-server failed: ${(err as Error).message}`;
    }
    if (await exists(SSHD, constants.X_OK)) return { sshd: SSHD };
    reason ??= `openssh-server was installed but ${SSHD} is still missing`;
  }
  if (process.env.CI === "true") throw new Error(`sshd is required under CI: ${reason}`);
  return { skip: reason };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function userExists(name: string): Promise<boolean> {
  try {
    await run("id", ["-u", name]);
    return true;
  } catch {
    return false;
  }
}

/** Retries commands that lose a race for /etc/passwd's lock with a concurrent test process. */
async function retry<T>(fn: () => Promise<T>, attempts = 10): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      await sleep(100 * i);
    }
  }
}

/**
 * Creates a local account (useradd -m -s /bin/sh) if missing, then gives it the password hash '*'
 * (no password, but not locked: sshd with UsePAM no refuses a locked '!' account even for certificates).
 */
export async function ensureUser(name: string): Promise<void> {
  if (!(await userExists(name))) {
    await retry(async () => {
      if (await userExists(name)) return;
      await run("useradd", ["-m", "-s", "/bin/sh", name]);
    });
  }
  await retry(() => run("usermod", ["-p", "*", name]));
}

export interface Sshd {
  port: number;
  host: "127.0.0.1";
  configFile: string;
  pid: number;
  logs(): string;
  stop(): Promise<void>;
}

export interface StartSshdOptions {
  dir: string;
  trustedUserCaKeysFile: string;
  hostKeyFile: string;
  hostCertFile?: string;
  /** Extra sshd_config lines, appended as given (e.g. "AuthorizedPrincipalsFile /x/%u"). */
  extraConfig?: string[];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

function configText(o: StartSshdOptions, port: number, penalties: boolean): string {
  const lines = [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${o.hostKeyFile}`,
    ...(o.hostCertFile ? [`HostCertificate ${o.hostCertFile}`] : []),
    `TrustedUserCAKeys ${o.trustedUserCaKeysFile}`,
    "AuthorizedKeysFile none",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "UsePAM no",
    `PidFile ${join(o.dir, "sshd.pid")}`,
    "StrictModes no",
    "LogLevel VERBOSE",
    // OpenSSH >= 9.8 penalises source addresses after failed logins; tests that expect a refusal
    // followed by a success from 127.0.0.1 must not trip it.
    ...(penalties ? ["PerSourcePenalties no"] : []),
    ...(o.extraConfig ?? []),
    "",
  ];
  return lines.join("\n");
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Starts `sshd -D -e -f DIR/sshd_config` on a free loopback port and waits until it accepts TCP. */
export async function startSshd(opts: StartSshdOptions): Promise<Sshd> {
  await mkdir(opts.dir, { recursive: true });
  // Privilege separation directory.
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  await chmod("/run/sshd", 0o755);
  await chmod(opts.hostKeyFile, 0o600);
  const configFile = join(opts.dir, "sshd_config");

  // Validate once; drop PerSourcePenalties on OpenSSH versions that do not know it.
  let penalties = true;
  await writeFile(configFile, configText(opts, 22, penalties));
  try {
    await run(SSHD, ["-t", "-f", configFile]);
  } catch (err) {
    if (!/PerSourcePenalties/i.test((err as Error).message)) throw err;
    penalties = false;
    await writeFile(configFile, configText(opts, 22, penalties));
    await run(SSHD, ["-t", "-f", configFile]);
  }

  let lastLogs = "";
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freePort();
    await writeFile(configFile, configText(opts, port, penalties));
    const child = spawn(SSHD, ["-D", "-e", "-f", configFile], { stdio: ["ignore", "ignore", "pipe"] });
    let logs = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => {
      logs += d;
      if (logs.length > 4 << 20) logs = logs.slice(-(1 << 20));
    });
    let spawnError: Error | undefined;
    child.once("error", (e) => {
      spawnError = e;
    });

    const deadline = Date.now() + 10_000;
    let up = false;
    while (Date.now() < deadline) {
      if (spawnError || child.exitCode !== null || child.signalCode !== null) break;
      if (await tryConnect(port)) {
        up = true;
        break;
      }
      await sleep(50);
    }
    if (up) {
      const sshd: Sshd = {
        port,
        host: "127.0.0.1",
        configFile,
        pid: child.pid!,
        logs: () => logs,
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = waitExit(child);
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(timer);
        },
      };
      return sshd;
    }
    // Not up: stop whatever is left, then decide whether a retry on another port can help.
    if (child.exitCode === null && child.signalCode === null) {
      const exited = waitExit(child);
      child.kill("SIGKILL");
      await exited;
    }
    if (spawnError) throw new Error(`could not spawn ${SSHD}: ${spawnError.message}`);
    lastLogs = logs;
    const bindFailure = /Address already in use|Cannot bind any address|bind to port/i.test(logs);
    if (!bindFailure) {
      throw new Error(
        `sshd did not accept connections on 127.0.0.1:${port} within 10 s (exit ${child.exitCode ?? child.signalCode}).\n--- sshd logs ---\n${logs}`,
      );
    }
  }
  throw new Error(`sshd could not bind a loopback port after 5 attempts.\n--- sshd logs ---\n${lastLogs}`);
}

/**
 * A real sshd on loopback for the e2e tests, set up as an operator would against a running
 * idbot service: a host key certified by `idbot admin sign-host` (127.0.0.1, localhost),
 * the service's user CA as TrustedUserCAKeys, and `login` as a local user. Returns
 * { skip } when OpenSSH cannot be had here (a failure under CI=true, see ensureOpenSSHServer).
 */
export async function startSshdForIdbot(opts: {
  idbot: string;
  dataDir: string;
  serviceUrl: string;
  login: string;
}): Promise<Sshd | { skip: string }> {
  const ok = await ensureOpenSSHServer();
  if ("skip" in ok) return ok;
  await ensureUser(opts.login);
  const dir = await mkdtemp(join(tmpdir(), "idbot-sshd-"));
  await execFileP("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "host_key")]);
  await execFileP(process.execPath, [
    opts.idbot,
    "admin",
    "sign-host",
    "--data-dir",
    opts.dataDir,
    "--host-key",
    join(dir, "host_key.pub"),
    "--principals",
    "127.0.0.1,localhost",
  ]);
  await writeFile(join(dir, "user_ca.pub"), await (await fetch(`${opts.serviceUrl}/v1/ca/ssh-user`)).text());
  return startSshd({
    dir,
    trustedUserCaKeysFile: join(dir, "user_ca.pub"),
    hostKeyFile: join(dir, "host_key"),
    hostCertFile: join(dir, "host_key-cert.pub"),
  });
}
