// Replicas of the bundled `idbot serve` on one PostgreSQL database (--database URL), and the
// small HTTP client the replica and fault tests share: JSON posts that report a network error
// as status 0 instead of throwing, failover across replicas, and per-join session keys.
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";
import { IDBOT, launchServe } from "./service.ts";

/** At least 16 characters, the same for every replica (encrypts the CA keys in the database). */
export const TEST_CA_PASSPHRASE = "replica-test-passphrase-0123456789";

export interface Replica {
  url: string;
  database: string;
  resourcesFile: string;
  proc: ChildProcess;
  /** stderr so far (the service's JSON log lines). */
  logs(): string;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code (null after a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns `idbot serve --database URL`; resolves once it prints its listening URL. */
export async function startReplica(opts: {
  database: string;
  resources: string;
  /** Shared by the replicas of one deployment: the audience their GitHub tokens carry. */
  publicUrl?: string;
  args?: string[];
  env?: Record<string, string | undefined>;
  listen?: string;
}): Promise<Replica> {
  const work = mkdtempSync(join(tmpdir(), "idbot-replica-"));
  const resourcesFile = join(work, "resources.yaml");
  writeFileSync(resourcesFile, opts.resources);
  const { proc, url, logs, stop } = await launchServe(
    [
      "--database",
      opts.database,
      "--listen",
      opts.listen ?? "127.0.0.1:0",
      "--resources",
      resourcesFile,
      ...(opts.publicUrl ? ["--public-url", opts.publicUrl] : []),
      ...(opts.args ?? []),
    ],
    { IDBOT_CA_PASSPHRASE: TEST_CA_PASSPHRASE, ...opts.env },
  );
  return { url, database: opts.database, resourcesFile, proc, logs, stop };
}

export interface Answer {
  /** HTTP status; 0 when the request failed at the network level (refused, reset, timeout). */
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: test code reads arbitrary JSON answers
  body: Record<string, any>;
  /** The network error, when status is 0. */
  error?: string;
}

/** POSTs JSON to base+path; never throws for network errors (status 0 instead). */
export async function postJson(
  base: string,
  path: string,
  body: unknown,
  timeoutMs = 10_000,
): Promise<Answer> {
  try {
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { raw: text };
    }
    return { status: res.status, body: parsed };
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    return { status: 0, body: {}, error: cause?.code ?? cause?.message ?? (e as Error).message };
  }
}

/** GET base+path: status and parsed JSON (status 0 on a network error). */
export async function getJson(base: string, path: string, timeoutMs = 5_000): Promise<Answer> {
  try {
    const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    try {
      return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
    } catch {
      return { status: res.status, body: { raw: text } };
    }
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    return { status: 0, body: {}, error: cause?.code ?? (e as Error).message };
  }
}

/** Whether an answer is worth sending to the next replica (what the client retries). */
export const retryable = (a: Answer) => a.status === 0 || a.status === 429 || a.status >= 500;

/**
 * The client's failover in miniature: tries servers[start], then the next ones in turn, for
 * at most `attempts` tries, moving on after a network error, 429 or 5xx. `body(attempt)`
 * builds each attempt's body (a fresh ID token per attempt, as the real client does).
 * Returns every answer, the last one deciding.
 */
export async function postWithFailover(
  servers: string[],
  path: string,
  body: (attempt: number) => Promise<unknown> | unknown,
  opts: { start?: number; attempts?: number; delayMs?: number; timeoutMs?: number } = {},
): Promise<Answer[]> {
  const answers: Answer[] = [];
  const attempts = opts.attempts ?? 2 * servers.length;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const server = servers[((opts.start ?? 0) + attempt) % servers.length]!;
    const a = await postJson(server, path, await body(attempt), opts.timeoutMs);
    answers.push(a);
    if (!retryable(a)) break;
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
  }
  return answers;
}

export interface SessionKeys {
  tlsPrivate: KeyObject;
  public_keys: { ssh: string; tls: string };
}

/** The per-join keys a client generates: SSH Ed25519 and TLS P-256 (public halves sent). */
export function sessionKeys(): SessionKeys {
  const ssh = generateKeyPairSync("ed25519");
  const tls = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    tlsPrivate: tls.privateKey,
    public_keys: {
      ssh: ed25519PublicKeyLine(ssh.publicKey, "s"),
      tls: tls.publicKey.export({ format: "pem", type: "spki" }).toString(),
    },
  };
}

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passes; returns the last result. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 200,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the bundled CLI (dist/idbot.js) with the test CA passphrase; never throws on a non-zero exit. */
export function runIdbot(
  args: string[],
  opts: { env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [IDBOT, ...args], {
      env: { ...process.env, IDBOT_CA_PASSPHRASE: TEST_CA_PASSPHRASE, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => {
      stdout += d;
    });
    child.stderr!.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * `n` one-time join secrets for `bot` in the store at `where` (a PostgreSQL URL or an
 * embedded data directory), created as `idbot admin tokens add` does (same store call, same
 * hash), in this process: one CLI process per secret would cost ~0.3 s each.
 */
export async function createJoinSecrets(
  where: string | { dataDir: string },
  bot: string,
  n: number,
): Promise<string[]> {
  const { openStore } = await import("../../src/server/store/open.ts");
  const { newJoinSecret, hashSecret } = await import("../../src/server/joinmethods/token.ts");
  const store = await openStore({
    ...(typeof where === "string" ? { database: where } : where),
    env: { IDBOT_CA_PASSPHRASE: TEST_CA_PASSPHRASE },
  });
  try {
    const out: string[] = [];
    const now = new Date();
    for (let i = 0; i < n; i++) {
      const { secret, id } = newJoinSecret();
      await store.createJoinToken({
        id,
        hash: hashSecret(secret),
        botName: bot,
        createdAt: now.toISOString(),
        expiresAt: new Date(now.getTime() + 15 * 60_000).toISOString(),
      });
      out.push(secret);
    }
    return out;
  } finally {
    await store.close();
  }
}
