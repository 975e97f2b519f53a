// Everything a joining job does, independent of how it was started (Action, CLI, hook):
// generate keys, join with retries, and write every requested output into one private
// directory, all or nothing: a fresh one under a parent (the Action, hooks), one the user
// names (`--out`, which must not exist or be empty), or, for a refresh, the directory of
// an earlier join whose files are replaced atomically in place.
import { chmod, lstat, mkdir, readdir, realpath, rmdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { JoinMethodName, JoinResponse, OutputType } from "../protocol/join.ts";
import {
  createPrivateDir,
  type FileSpec,
  MANIFEST_NAME,
  readManifest,
  replaceFilesAtomic,
  writeFilesExclusive,
} from "./files.ts";
import { joinWithRetries, type RetryPolicy } from "./join.ts";
import { generateClientKeys, privateKeyLines } from "./keys.ts";
import { databaseOutput } from "./outputs/database.ts";
import { identityOutput } from "./outputs/identity.ts";
import { kubernetesOutput } from "./outputs/kubernetes.ts";
import type { OutputInput, OutputPlan, SummaryRow } from "./outputs/output.ts";
import { jwtOutput, spiffeX509Output } from "./outputs/spiffe.ts";
import { sshOutput } from "./outputs/ssh.ts";
import { sshHostOutput } from "./outputs/sshhost.ts";
import type { Transport } from "./transport.ts";

export interface JoinConfig {
  server: string;
  /** Replicas to fail over between (default: [server]). */
  servers?: string[];
  token: string;
  joinMethod: JoinMethodName;
  outputs: OutputType[];
  ttlSeconds?: number;
  sshHosts: string[];
  kubernetesCluster?: string;
  database?: { service: string; user: string; name?: string };
  spiffePath?: string;
  jwtAudiences?: string[];
  sshHostKey?: string;
  policy: RetryPolicy;
  /** A fresh output directory is created under this parent (unless targetDir or refreshDir). */
  parentDir?: string;
  /** Write into exactly this directory: it must not exist (created 0700) or be empty and ours. */
  targetDir?: string;
  /** Replace, atomically and in place, the files an earlier join wrote into this directory. */
  refreshDir?: string;
  /** Files written (or replaced) along with the outputs and listed in the manifest. */
  extraFiles?: (response: JoinResponse) => FileSpec[];
}

/** The output directory cannot be used: not empty, not ours, a symlink, no earlier join... */
export class OutputDirError extends Error {
  override name = "OutputDirError";
}

export interface JoinDeps {
  /** The ID token of an attempt (github, gitlab, oidc). */
  getIdToken?: (attempt: number) => Promise<string>;
  /** Any other proof of an attempt (token: none; bound_keypair: a challenge answer; a
   *  renewal: the signature of the current identity), given the attempt's public keys. */
  prove?: (attempt: number, publicKeys: { ssh: string; tls: string }) => Promise<Record<string, unknown>>;
  /** "/v1/renew" for a renewal; default "/v1/join". */
  path?: string;
  transport: Transport;
  /** Called with every secret before anything could print it (CI log masking). */
  onSecret?: (secret: string) => void;
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
  sleep?: (ms: number) => Promise<void>;
}

export interface JoinResult {
  dir: string;
  response: JoinResponse;
  /** Output name → absolute path. */
  outputs: Record<string, string>;
  /** Environment variable → absolute path. */
  env: Record<string, string>;
  files: string[];
  /** What was issued, for the job summary; paths absolute. */
  summary: SummaryRow[];
}

const WRITERS: Record<OutputType, (input: OutputInput) => OutputPlan> = {
  identity: identityOutput,
  ssh: sshOutput,
  kubernetes: kubernetesOutput,
  database: databaseOutput,
  "spiffe-x509": spiffeX509Output,
  ssh_host: sshHostOutput,
  jwt: jwtOutput,
};

export async function joinAndWrite(cfg: JoinConfig, deps: JoinDeps): Promise<JoinResult> {
  // Check the directory before the join spends the ID token.
  const target = cfg.refreshDir
    ? await checkRefreshDir(cfg.refreshDir)
    : cfg.targetDir
      ? await checkTargetDir(cfg.targetDir)
      : undefined;
  if (!target && !cfg.parentDir) throw new Error("joinAndWrite: no parentDir, targetDir or refreshDir");
  const keys = generateClientKeys(`idbot-${cfg.token}`);
  for (const line of privateKeyLines(keys)) deps.onSecret?.(line);
  // The ssh output needs the identity's key files, so identity is always written.
  const outputs = [...new Set<OutputType>(["identity", ...cfg.outputs])];
  const publicKeys = { ssh: keys.sshPublic, tls: keys.tlsPublicPem };
  const response = await joinWithRetries({
    servers: cfg.servers ?? [cfg.server],
    request: {
      ...(deps.path === "/v1/renew" ? {} : { token: cfg.token, join_method: cfg.joinMethod }),
      public_keys: publicKeys,
      outputs,
      ...(cfg.ttlSeconds ? { ttl: cfg.ttlSeconds } : {}),
      ...(outputs.includes("kubernetes") ? { kubernetes: { cluster: cfg.kubernetesCluster! } } : {}),
      ...(outputs.includes("database") ? { database: cfg.database! } : {}),
      ...(cfg.spiffePath ? { spiffe: { path: cfg.spiffePath } } : {}),
      ...(outputs.includes("jwt") ? { jwt: { audiences: cfg.jwtAudiences! } } : {}),
      ...(outputs.includes("ssh_host") ? { ssh_host: { public_key: cfg.sshHostKey! } } : {}),
    },
    path: deps.path,
    prove: async (attempt) => {
      if (deps.prove) return deps.prove(attempt, publicKeys);
      if (!deps.getIdToken) return {};
      const t = await deps.getIdToken(attempt);
      deps.onSecret?.(t);
      return { id_token: t };
    },
    policy: cfg.policy,
    transport: deps.transport,
    onRetry: deps.onRetry,
    sleep: deps.sleep,
  });

  // Plan every file before creating anything, so a failing writer leaves nothing behind.
  let dir: string;
  let created = true;
  if (target?.kind === "refresh") dir = target.dir;
  else if (target?.kind === "new") ({ dir, created } = await createTargetDir(target.dir));
  else dir = await createPrivateDir(cfg.parentDir!, "idbot-");
  let plans: OutputPlan[];
  let written: Record<string, string>;
  try {
    plans = outputs.map((o) => WRITERS[o]({ dir, response, keys, sshHosts: cfg.sshHosts }));
    const files = [...plans.flatMap((p) => p.files), ...(cfg.extraFiles?.(response) ?? [])].map((f) => ({
      ...f,
      mode: f.mode ?? 0o600,
    }));
    if (target?.kind === "refresh") {
      checkSameFiles(dir, target.files, files);
      written = await replaceFilesAtomic(dir, files);
    } else {
      written = await writeFilesExclusive(dir, files);
    }
  } catch (e) {
    if (target?.kind !== "refresh" && created) await rmdir(dir).catch(() => {});
    throw e;
  }
  const abs = (rel: string) => (rel === "" ? dir : join(dir, rel));
  const result: JoinResult = {
    dir,
    response,
    outputs: {},
    // The join's directory itself, for `idbot status/certs/cleanup` and `join --refresh`.
    env: { IDBOT_DIR: dir },
    files: Object.values(written),
    summary: [],
  };
  for (const p of plans) {
    for (const s of p.secrets ?? []) deps.onSecret?.(s);
    for (const [k, v] of Object.entries(p.outputs)) result.outputs[k] = abs(v);
    for (const [k, v] of Object.entries(p.values ?? {})) result.outputs[k] = v;
    for (const [k, v] of Object.entries(p.env ?? {})) result.env[k] = abs(v);
    for (const row of p.summary) result.summary.push({ ...row, path: abs(row.path) });
  }
  return result;
}

type Target = { kind: "new"; dir: string } | { kind: "refresh"; dir: string; files: string[] };

/** `--out DIR`: absent (its parent must exist) or an empty real directory of ours. */
async function checkTargetDir(raw: string): Promise<Target> {
  const abs = resolve(raw);
  let parent: string;
  try {
    parent = await realpath(dirname(abs));
  } catch {
    throw new OutputDirError(`cannot create ${abs}: its parent directory ${dirname(abs)} does not exist`);
  }
  const dir = join(parent, basename(abs));
  const st = await lstat(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (st !== undefined) await checkEmptyOwnDir(dir, st);
  return { kind: "new", dir };
}

async function checkEmptyOwnDir(dir: string, st: Awaited<ReturnType<typeof lstat>>): Promise<void> {
  if (st.isSymbolicLink()) throw new OutputDirError(`${dir} is a symbolic link; give a real directory`);
  if (!st.isDirectory()) throw new OutputDirError(`${dir} exists and is not a directory`);
  const uid = process.platform === "win32" ? undefined : process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new OutputDirError(`${dir} is owned by uid ${st.uid}, not by this user (uid ${uid})`);
  }
  const entries = await readdir(dir);
  if (entries.length > 0) {
    throw new OutputDirError(
      `${dir} is not empty (${entries.slice(0, 3).join(", ")}${entries.length > 3 ? ", ..." : ""}): idbot never writes into a directory holding other files. Give a new directory, or refresh an earlier join's directory with --refresh.`,
    );
  }
}

async function createTargetDir(dir: string): Promise<{ dir: string; created: boolean }> {
  let created = false;
  try {
    await mkdir(dir, { mode: 0o700 });
    created = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  await checkEmptyOwnDir(dir, await lstat(dir));
  if (process.platform !== "win32") await chmod(dir, 0o700);
  return { dir, created };
}

/** `--refresh DIR`: a real directory of ours holding an idbot manifest. */
async function checkRefreshDir(raw: string): Promise<Target> {
  const dir = resolve(raw);
  const st = await lstat(dir).catch(() => undefined);
  if (st === undefined) throw new OutputDirError(`${dir} does not exist: nothing to refresh`);
  if (st.isSymbolicLink()) throw new OutputDirError(`${dir} is a symbolic link; give the real directory`);
  if (!st.isDirectory()) throw new OutputDirError(`${dir} is not a directory`);
  const real = await realpath(dir);
  const manifest = await readManifest(real);
  if (manifest === undefined) {
    throw new OutputDirError(
      `${dir} holds no ${MANIFEST_NAME}: --refresh only replaces files an idbot join wrote`,
    );
  }
  return { kind: "refresh", dir: real, files: manifest.files };
}

/** A refresh replaces exactly the files of the earlier join: same outputs, same names. */
function checkSameFiles(dir: string, listed: string[], files: FileSpec[]): void {
  const planned = new Set(files.map((f) => f.path));
  const before = new Set(listed);
  const extra = [...planned].filter((p) => !before.has(p));
  const gone = [...before].filter((p) => !planned.has(p));
  if (extra.length > 0 || gone.length > 0) {
    throw new OutputDirError(
      `refreshing ${dir} would change which files it holds (${[
        ...extra.map((p) => `new ${p}`),
        ...gone.map((p) => `no ${p}`),
      ].join(
        ", ",
      )}): a refresh replaces the same files in place. Keep the original outputs, or join into a new directory.`,
    );
  }
}
