// Starts the bundled `idbot serve` (dist/idbot.js) as a child process, the way an operator
// runs it, and reads its listening URL from stdout.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
export const IDBOT = join(ROOT, "dist/idbot.js");
export const MAIN = join(ROOT, "dist/main.js");
export const POST = join(ROOT, "dist/post.js");

export interface Service {
  url: string;
  dataDir: string;
  resourcesFile: string;
  logs(): string;
  proc: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startService(opts: {
  resources: string;
  dataDir?: string;
  args?: string[];
  env?: Record<string, string | undefined>;
  listen?: string;
}): Promise<Service> {
  const work = mkdtempSync(join(tmpdir(), "idbot-svc-"));
  const dataDir = opts.dataDir ?? join(work, "data");
  const resourcesFile = join(work, "resources.yaml");
  writeFileSync(resourcesFile, opts.resources);
  const { proc, url, logs, stop } = await launchServe(
    [
      "--data-dir",
      dataDir,
      "--listen",
      opts.listen ?? "127.0.0.1:0",
      "--resources",
      resourcesFile,
      ...(opts.args ?? []),
    ],
    opts.env,
  );
  return { url, dataDir, resourcesFile, proc, logs, stop };
}

/** Spawns `idbot serve ARGS` from the bundle and resolves once it prints its URL. */
export async function launchServe(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{
  proc: ChildProcess;
  url: string;
  logs(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}> {
  const proc = spawn(process.execPath, [IDBOT, "serve", ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stderr!.on("data", (d) => {
    err += d;
    if (err.length > 4 << 20) err = err.slice(-(1 << 20));
  });
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`idbot serve did not start in 20 s:\n${err}`)), 20_000);
    proc.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]!);
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`idbot serve exited with ${code}:\n${err}`));
    });
  });
  return {
    proc,
    url,
    logs: () => err,
    stop: (signal = "SIGTERM") =>
      new Promise((r) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return r(proc.exitCode);
        proc.once("exit", (code) => r(code));
        proc.kill(signal);
      }),
  };
}

export function writeTemp(name: string, contents: string): string {
  const dir = mkdtempSync(join(tmpdir(), "idbot-f-"));
  const p = join(dir, name);
  writeFileSync(p, contents);
  return p;
}
