// The join settings, read from named string inputs: the Action's inputs, and later the
// CLI's flags and IDBOT_* variables use the same names, so every error names the input
// the user has to fix.
import { readFileSync } from "node:fs";
import { parseDuration } from "../protocol/duration.ts";
import { MAX_TTL_SECONDS, OUTPUT_TYPES, type OutputType } from "../protocol/join.ts";
import { normalizeServiceUrl } from "../protocol/net.ts";
import type { RetryPolicy } from "./join.ts";
import { checkServiceUrl } from "./transport.ts";

export class InputError extends Error {
  override name = "InputError";
  constructor(
    readonly input: string,
    message: string,
  ) {
    super(`input "${input}": ${message}`);
  }
}

export type GetInput = (name: string) => string | undefined;

export interface CommonInputs {
  server: string;
  token: string;
  audience: string;
  outputs: OutputType[];
  ttlSeconds?: number;
  sshHosts: string[];
  kubernetesCluster?: string;
  database?: { service: string; user: string; name?: string };
  spiffePath?: string;
  jwtAudiences?: string[];
  policy: RetryPolicy;
  caPem?: string;
  exportEnv: boolean;
  cleanup: boolean;
}

const text = (get: GetInput, name: string) => {
  const v = get(name)?.trim();
  return v === "" ? undefined : v;
};

function required(get: GetInput, name: string, example: string): string {
  const v = text(get, name);
  if (v === undefined)
    throw new InputError(name, `is required, for example:\n\n  with:\n    ${name}: ${example}`);
  return v;
}

export function parseBoolean(get: GetInput, name: string, fallback: boolean): boolean {
  const v = text(get, name)?.toLowerCase();
  if (v === undefined) return fallback;
  if (["true", "yes", "1", "on"].includes(v)) return true;
  if (["false", "no", "0", "off"].includes(v)) return false;
  throw new InputError(name, `"${v}" is not a boolean (use true or false)`);
}

function durationSeconds(get: GetInput, name: string, fallback?: number): number | undefined {
  const v = text(get, name);
  if (v === undefined) return fallback;
  try {
    return /^\d+$/.test(v) ? Number(v) : parseDuration(v);
  } catch (e) {
    throw new InputError(name, (e as Error).message);
  }
}

function list(get: GetInput, name: string): string[] {
  return (text(get, name) ?? "")
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** PEM text, or a path to a PEM file. */
function caPem(get: GetInput): string | undefined {
  const v = text(get, "ca");
  if (v === undefined) return undefined;
  let pem = v;
  if (!v.includes("-----BEGIN")) {
    try {
      pem = readFileSync(v, "utf8");
    } catch (e) {
      throw new InputError(
        "ca",
        `is neither PEM text nor a readable file (${(e as NodeJS.ErrnoException).code ?? "error"})`,
      );
    }
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----"))
    throw new InputError("ca", "holds no PEM CERTIFICATE block");
  return pem;
}

export function parseCommonInputs(get: GetInput): CommonInputs {
  const server = normalizeServiceUrl(required(get, "server", "https://idbot.example.com"));
  try {
    checkServiceUrl(server);
  } catch (e) {
    throw new InputError("server", (e as Error).message);
  }
  const token = required(get, "token", "github-deploy");
  const outputs = list(get, "outputs");
  for (const o of outputs) {
    if (!(OUTPUT_TYPES as readonly string[]).includes(o)) {
      throw new InputError("outputs", `unknown output "${o}" (known: ${OUTPUT_TYPES.join(", ")})`);
    }
  }
  // Each output's own inputs: required when that output is asked for, named when missing.
  const needs = (output: string, input: string, example: string) => {
    if (!outputs.includes(output)) return text(get, input);
    const v = text(get, input);
    if (v === undefined) {
      throw new InputError(
        input,
        `is required by the ${output} output, for example:\n\n  with:\n    outputs: ${outputs.join(",")}\n    ${input}: ${example}`,
      );
    }
    return v;
  };
  const kubernetesCluster = needs("kubernetes", "kubernetes-cluster", "prod");
  const dbService = needs("database", "database", "app-db");
  const dbUser = needs("database", "database-user", "ci");
  const jwtAudience = needs("jwt", "jwt-audience", "vault");
  const ttl = durationSeconds(get, "certificate-ttl");
  if (ttl !== undefined && (ttl <= 0 || ttl > MAX_TTL_SECONDS)) {
    throw new InputError("certificate-ttl", "must be between 1s and 24h");
  }
  const retriesText = text(get, "retries") ?? "4";
  if (!/^\d+$/.test(retriesText) || Number(retriesText) > 20) {
    throw new InputError("retries", `"${retriesText}" is not a number of retries from 0 to 20`);
  }
  const attemptTimeout = durationSeconds(get, "attempt-timeout", 10)!;
  const deadline = durationSeconds(get, "deadline", 60)!;
  return {
    server,
    token,
    audience: text(get, "audience") ?? server,
    outputs: (outputs.length > 0 ? outputs : ["identity", "ssh"]) as OutputType[],
    ttlSeconds: ttl,
    sshHosts: list(get, "ssh-hosts"),
    kubernetesCluster,
    database:
      dbService && dbUser
        ? { service: dbService, user: dbUser, name: text(get, "database-name") }
        : undefined,
    spiffePath: text(get, "spiffe-path"),
    jwtAudiences: jwtAudience ? list(get, "jwt-audience") : undefined,
    policy: {
      retries: Number(retriesText),
      attemptTimeoutMs: attemptTimeout * 1000,
      deadlineMs: deadline * 1000,
    },
    caPem: caPem(get),
    exportEnv: parseBoolean(get, "export-env", true),
    cleanup: parseBoolean(get, "cleanup", true),
  };
}
