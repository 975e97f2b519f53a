// Everything a joining job does, independent of how it was started (Action, CLI, hook):
// generate keys, join with retries, and write every requested output into one fresh
// private directory, all or nothing.
import { rmdir } from "node:fs/promises";
import { join } from "node:path";
import type { JoinMethodName, JoinResponse, OutputType } from "../protocol/join.ts";
import { createPrivateDir, writeFilesExclusive } from "./files.ts";
import { joinWithRetries, type RetryPolicy } from "./join.ts";
import { generateClientKeys, privateKeyLines } from "./keys.ts";
import { databaseOutput } from "./outputs/database.ts";
import { identityOutput } from "./outputs/identity.ts";
import { kubernetesOutput } from "./outputs/kubernetes.ts";
import type { OutputInput, OutputPlan, SummaryRow } from "./outputs/output.ts";
import { jwtOutput, spiffeX509Output } from "./outputs/spiffe.ts";
import { sshOutput } from "./outputs/ssh.ts";
import type { Transport } from "./transport.ts";

export interface JoinConfig {
  server: string;
  token: string;
  joinMethod: JoinMethodName;
  outputs: OutputType[];
  ttlSeconds?: number;
  sshHosts: string[];
  kubernetesCluster?: string;
  database?: { service: string; user: string; name?: string };
  spiffePath?: string;
  jwtAudiences?: string[];
  policy: RetryPolicy;
  /** The fresh output directory is created under this parent. */
  parentDir: string;
}

export interface JoinDeps {
  getIdToken: (attempt: number) => Promise<string>;
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
  jwt: jwtOutput,
};

export async function joinAndWrite(cfg: JoinConfig, deps: JoinDeps): Promise<JoinResult> {
  const keys = generateClientKeys(`idbot-${cfg.token}`);
  for (const line of privateKeyLines(keys)) deps.onSecret?.(line);
  // The ssh output needs the identity's key files, so identity is always written.
  const outputs = [...new Set<OutputType>(["identity", ...cfg.outputs])];
  const response = await joinWithRetries({
    server: cfg.server,
    request: {
      token: cfg.token,
      join_method: cfg.joinMethod,
      public_keys: { ssh: keys.sshPublic, tls: keys.tlsPublicPem },
      outputs,
      ...(cfg.ttlSeconds ? { ttl: cfg.ttlSeconds } : {}),
      ...(outputs.includes("kubernetes") ? { kubernetes: { cluster: cfg.kubernetesCluster! } } : {}),
      ...(outputs.includes("database") ? { database: cfg.database! } : {}),
      ...(cfg.spiffePath ? { spiffe: { path: cfg.spiffePath } } : {}),
      ...(outputs.includes("jwt") ? { jwt: { audiences: cfg.jwtAudiences! } } : {}),
    },
    getIdToken: async (attempt) => {
      const t = await deps.getIdToken(attempt);
      deps.onSecret?.(t);
      return t;
    },
    policy: cfg.policy,
    transport: deps.transport,
    onRetry: deps.onRetry,
    sleep: deps.sleep,
  });

  // Plan every file before creating anything, so a failing writer leaves nothing behind.
  const dir = await createPrivateDir(cfg.parentDir, "idbot-");
  let plans: OutputPlan[];
  let written: Record<string, string>;
  try {
    plans = outputs.map((o) => WRITERS[o]({ dir, response, keys, sshHosts: cfg.sshHosts }));
    written = await writeFilesExclusive(
      dir,
      plans.flatMap((p) => p.files.map((f) => ({ ...f, mode: 0o600 }))),
    );
  } catch (e) {
    await rmdir(dir).catch(() => {});
    throw e;
  }
  const abs = (rel: string) => (rel === "" ? dir : join(dir, rel));
  const result: JoinResult = {
    dir,
    response,
    outputs: {},
    env: {},
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
