// Real peers (sshd, PostgreSQL, kubectl, PyJWT) come from Debian packages, installed by the
// tests that need them when missing; CI runs as root on a fresh machine. Test files run two
// at a time and dpkg lets one installer in: a second apt-get fails at once with "Could not
// get lock /var/lib/dpkg/lock-frontend" (seen here when the Action's sshd test and another
// peer's install started together). So every apt-get of the run takes one flock, and also
// waits out a foreign apt (unattended upgrades) instead of failing.
import { execFile } from "node:child_process";
import { constants, existsSync } from "node:fs";
import { access } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);
const LOCK = existsSync("/run/lock")
  ? "/run/lock/idbot-tests-apt.lock"
  : join(tmpdir(), "idbot-tests-apt.lock");
/** How long an install may wait for another one (ours or the system's). */
const WAIT_S = 1200;

let updated: Promise<void> | undefined;

async function aptGet(args: string[], timeoutMs: number): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  try {
    await execFileP(
      "flock",
      ["-w", String(WAIT_S), LOCK, "apt-get", "-o", `DPkg::Lock::Timeout=${WAIT_S}`, ...args],
      { env, maxBuffer: 64 << 20, timeout: timeoutMs + WAIT_S * 1000 },
    );
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string; code?: number | string };
    const detail = `${e.stderr ?? ""}${e.stdout ?? ""}`.trim() || e.message;
    throw new Error(`apt-get ${args.join(" ")} failed (${e.code}): ${detail}`);
  }
}

/** Why this process cannot install `pkg` to provide `what`, or undefined when it can
 *  (root, with apt-get). */
export async function cannotInstall(what: string, pkg: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0)
    return `${what} is missing and we are not root, so ${pkg} cannot be installed`;
  try {
    await access("/usr/bin/apt-get", constants.X_OK);
  } catch {
    return `${what} is missing and there is no apt-get to install ${pkg}`;
  }
  return undefined;
}

/** Installs the first of `choices` (each a list of packages) that installs; the package
 *  lists are refreshed once per process. Throws with apt-get's own words. */
export async function aptInstall(...choices: string[][]): Promise<void> {
  updated ??= aptGet(["update"], 300_000).catch((e: unknown) => {
    updated = undefined;
    throw e;
  });
  await updated;
  let last: unknown;
  for (const packages of choices) {
    try {
      await aptGet(["install", "-y", "--no-install-recommends", ...packages], 600_000);
      return;
    } catch (e) {
      last = e;
    }
  }
  throw last;
}
