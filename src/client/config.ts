// The join settings, read from named string inputs: the Action's inputs, and the CLI's
// flags, IDBOT_* variables and config file fields use the same names, so every error
// names the input the user has to fix (and, in the CLI, where its value came from).
import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { parseDuration } from "../protocol/duration.ts";
import { type JoinMethodName, MAX_TTL_SECONDS, OUTPUT_TYPES, type OutputType } from "../protocol/join.ts";
import { normalizeServiceUrl } from "../protocol/net.ts";
import type { RetryPolicy } from "./join.ts";
import { checkServiceUrl } from "./transport.ts";

export class InputError extends Error {
  override name = "InputError";
  constructor(
    readonly input: string,
    /** The problem without the input's name, for callers that name the input their own way. */
    readonly detail: string,
  ) {
    super(`input "${input}": ${detail}`);
  }
}

export type GetInput = (name: string) => string | undefined;

/** How an error shows the user an example of setting inputs: `with:` for the Action. */
export type ExampleFormatter = (pairs: ReadonlyArray<readonly [string, string]>) => string;

export const actionExample: ExampleFormatter = (pairs) =>
  `\n\n  with:\n${pairs.map(([k, v]) => `    ${k}: ${v}`).join("\n")}`;

export interface CommonInputs {
  server: string;
  /** Every replica given, in order; server is the first. */
  servers: string[];
  token: string;
  audience: string;
  outputs: OutputType[];
  ttlSeconds?: number;
  sshHosts: string[];
  kubernetesCluster?: string;
  database?: { service: string; user: string; name?: string };
  spiffePath?: string;
  jwtAudiences?: string[];
  /** OpenSSH public key line of this host (ssh_host output). */
  sshHostKey?: string;
  policy: RetryPolicy;
  caPem?: string;
  exportEnv: boolean;
  cleanup: boolean;
}

const text = (get: GetInput, name: string) => {
  const v = get(name)?.trim();
  return v === "" ? undefined : v;
};

function required(get: GetInput, name: string, example: string, fmt: ExampleFormatter): string {
  const v = text(get, name);
  if (v === undefined) throw new InputError(name, `is required, for example:${fmt([[name, example]])}`);
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

export function parseCommonInputs(get: GetInput, example: ExampleFormatter = actionExample): CommonInputs {
  // One URL, or several replicas (comma-separated) to fail over between; the first is
  // the default audience, so every replica must share one public URL for ID tokens.
  const servers = required(get, "server", "https://idbot.example.com", example)
    .split(",")
    .map((s) => normalizeServiceUrl(s))
    .filter(Boolean);
  for (const s of servers) {
    try {
      checkServiceUrl(s);
    } catch (e) {
      throw new InputError("server", (e as Error).message);
    }
  }
  const server = servers[0]!;
  const token = required(get, "token", "github-deploy", example);
  const outputs = list(get, "outputs");
  for (const o of outputs) {
    if (!(OUTPUT_TYPES as readonly string[]).includes(o)) {
      throw new InputError("outputs", `unknown output "${o}" (known: ${OUTPUT_TYPES.join(", ")})`);
    }
  }
  // Each output's own inputs: required when that output is asked for, named when missing.
  const needs = (output: string, input: string, sample: string) => {
    if (!outputs.includes(output)) return text(get, input);
    const v = text(get, input);
    if (v === undefined) {
      throw new InputError(
        input,
        `is required by the ${output} output, for example:${example([
          ["outputs", outputs.join(",")],
          [input, sample],
        ])}`,
      );
    }
    return v;
  };
  const kubernetesCluster = needs("kubernetes", "kubernetes-cluster", "prod");
  const dbService = needs("database", "database", "app-db");
  const dbUser = needs("database", "database-user", "ci");
  const jwtAudience = needs("jwt", "jwt-audience", "vault");
  const sshHostKeyFile = needs("ssh_host", "ssh-host-key", "/etc/ssh/ssh_host_ed25519_key.pub");
  let sshHostKey: string | undefined;
  if (sshHostKeyFile !== undefined) {
    try {
      sshHostKey = readFileSync(sshHostKeyFile, "utf8").trim();
    } catch (e) {
      throw new InputError(
        "ssh-host-key",
        `cannot read ${sshHostKeyFile} (${(e as NodeJS.ErrnoException).code ?? "error"})`,
      );
    }
    if (sshHostKey.includes("PRIVATE KEY"))
      throw new InputError("ssh-host-key", `${sshHostKeyFile} is a private key; give the .pub file`);
  }
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
    servers,
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
    sshHostKey,
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

// ---------------------------------------------------------------------------------------
// The CLI and the runner hooks: the same inputs from flags, IDBOT_* variables, the settings
// recorded by an earlier join (--refresh) and a config file, first one set wins.

/** Every join input the CLI takes, by its Action input name (flag --NAME, env IDBOT_NAME). */
export const JOIN_INPUTS = [
  "server",
  "token",
  "join-method",
  "id-token-env",
  "audience",
  "outputs",
  "ssh-hosts",
  "certificate-ttl",
  "retries",
  "attempt-timeout",
  "deadline",
  "ca",
  "kubernetes-cluster",
  "database",
  "database-user",
  "database-name",
  "spiffe-path",
  "jwt-audience",
  "ssh-host-key",
  "storage",
  "registration-secret",
] as const;
export type JoinInputName = (typeof JOIN_INPUTS)[number];

/** "certificate-ttl" → "IDBOT_CERTIFICATE_TTL". */
export function envName(input: string): string {
  return `IDBOT_${input.toUpperCase().replace(/-/g, "_")}`;
}

export interface InputLayer {
  /** Values by input name; undefined or blank means "not set here". */
  values: Readonly<Record<string, string | undefined>>;
  /** How to name the input to the user when its value came from this layer. */
  label: (input: string) => string;
}

export interface LayeredInputs {
  get: GetInput;
  /** Label of the layer the input's value comes from; undefined when no layer sets it. */
  sourceOf: (input: string) => string | undefined;
  /** The winning raw value of every input that is set. */
  resolved: () => Record<string, string>;
}

/** Inputs from several layers, the first layer that sets an input winning. */
export function layeredInputs(layers: readonly InputLayer[]): LayeredInputs {
  const winner = (input: string) =>
    layers.find((l) => {
      const v = l.values[input];
      return v !== undefined && v.trim() !== "";
    });
  return {
    get: (input) => winner(input)?.values[input],
    sourceOf: (input) => winner(input)?.label(input),
    resolved: () => {
      const out: Record<string, string> = {};
      for (const input of JOIN_INPUTS) {
        const v = winner(input)?.values[input];
        if (v !== undefined) out[input] = v;
      }
      return out;
    },
  };
}

/** The IDBOT_* variables of `env` as a layer. */
export function envLayer(env: NodeJS.ProcessEnv): InputLayer {
  const values: Record<string, string | undefined> = {};
  for (const input of JOIN_INPUTS) values[input] = env[envName(input)];
  return { values, label: (input) => envName(input) };
}

/** Join methods the CLI can prove: a platform-signed ID token, a one-time secret, a bound keypair. */
export const CLI_JOIN_METHODS = [
  "github",
  "gitlab",
  "oidc",
  "token",
  "bound_keypair",
  "kubernetes",
  "gcp",
  "iam",
  "azure",
] as const satisfies readonly JoinMethodName[];
export type CliJoinMethod = (typeof CLI_JOIN_METHODS)[number];

export interface CliInputs extends CommonInputs {
  joinMethod: CliJoinMethod;
  /** Environment variable holding the ID token (gitlab, oidc). */
  idTokenEnv: string;
  /** bound_keypair: the directory holding the bound key and the join state. */
  storageDir?: string;
  /** bound_keypair: the one-time registration secret of the first join. */
  registrationSecret?: string;
}

/**
 * The join method: given, or github inside GitHub Actions, gitlab inside GitLab CI. Outside
 * both it must be given, since the proof has to come from somewhere.
 */
export function parseJoinMethod(get: GetInput, env: NodeJS.ProcessEnv): CliJoinMethod {
  const v = text(get, "join-method");
  if (v !== undefined) {
    if (!(CLI_JOIN_METHODS as readonly string[]).includes(v)) {
      throw new InputError(
        "join-method",
        `unknown join method "${v}" (known: ${CLI_JOIN_METHODS.join(", ")})`,
      );
    }
    return v as CliJoinMethod;
  }
  if (env.ACTIONS_ID_TOKEN_REQUEST_URL || env.GITHUB_ACTIONS === "true") return "github";
  if (env.GITLAB_CI === "true") return "gitlab";
  throw new InputError(
    "join-method",
    `is required outside GitHub Actions and GitLab CI (one of ${CLI_JOIN_METHODS.join(", ")})`,
  );
}

export const DEFAULT_ID_TOKEN_ENV = "IDBOT_ID_TOKEN";

export function parseCliInputs(
  get: GetInput,
  env: NodeJS.ProcessEnv,
  example: ExampleFormatter = actionExample,
): CliInputs {
  const common = parseCommonInputs(get, example);
  const joinMethod = parseJoinMethod(get, env);
  const idTokenEnv = text(get, "id-token-env") ?? DEFAULT_ID_TOKEN_ENV;
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(idTokenEnv)) {
    throw new InputError("id-token-env", `"${idTokenEnv}" is not an environment variable name`);
  }
  const storageDir = text(get, "storage");
  if (joinMethod === "bound_keypair" && storageDir === undefined) {
    throw new InputError(
      "storage",
      "is required by the bound_keypair join method: the directory holding the bound key (created 0700)",
    );
  }
  return {
    ...common,
    joinMethod,
    idTokenEnv,
    storageDir: storageDir ? resolve(storageDir) : undefined,
    registrationSecret: text(get, "registration-secret"),
  };
}

/** The raw inputs worth recording for a later refresh: a CA path made absolute. */
export function recordableInputs(raw: Record<string, string>, cwd = process.cwd()): Record<string, string> {
  const out = { ...raw };
  // Secrets are never recorded: a one-time join secret and a registration secret work once.
  delete out["registration-secret"];
  // The spent secret is replaced by a marker: refreshing renews with the certificate.
  if (out["join-method"] === "token") out.token = "one-time-secret-spent";
  if (out.storage !== undefined && !isAbsolute(out.storage)) out.storage = resolve(cwd, out.storage);
  const ca = out.ca?.trim();
  if (ca !== undefined && !ca.includes("-----BEGIN") && !isAbsolute(ca)) out.ca = resolve(cwd, ca);
  return out;
}
