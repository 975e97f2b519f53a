// `idbot join`: everything the Action does, configured by flags, IDBOT_* variables or a
// tbot-shaped config file (first one set wins), writing into --out DIR, a fresh private
// directory under $RUNNER_TEMP or the OS temp dir, or (--refresh DIR) replacing an earlier
// join's files in place. The directory goes to stdout (or everything with --format json).
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import {
  type CliInputs,
  type ExampleFormatter,
  envLayer,
  envName,
  InputError,
  type InputLayer,
  JOIN_INPUTS,
  layeredInputs,
  parseCliInputs,
  recordableInputs,
} from "../client/config.ts";
import { ConfigFileError, type FileConfig, loadConfigFile } from "../client/configfile.ts";
import { ManifestError, UnsafePathError } from "../client/files.ts";
import { JoinFailure } from "../client/join.ts";
import { JOIN_RECORD_NAME, JoinRecordError, joinRecordFile, readJoinRecord } from "../client/record.ts";
import { renewProof } from "../client/renew.ts";
import { type JoinDeps, type JoinResult, joinAndWrite, OutputDirError } from "../client/run.ts";
import { azureProofSource } from "../client/sources/azure.ts";
import { envIdTokenSource, IdTokenError } from "../client/sources/env.ts";
import { gcpProofSource } from "../client/sources/gcp.ts";
import { actionsIdTokenSource, NoOidcPermissionError } from "../client/sources/github.ts";
import { iamProofSource } from "../client/sources/iam.ts";
import { boundKeypairProof, writeJoinState } from "../client/sources/keypair.ts";
import { kubernetesProofSource } from "../client/sources/kubernetes.ts";
import { InsecureUrlError, nodeTransport, type Transport } from "../client/transport.ts";
import { CliError, EXIT, parseCommand, say } from "./args.ts";

const USAGE = `
Usage: idbot join --server URL --token NAME [options]
       idbot join -c idbot.yaml [options]
       idbot join --refresh DIR [options]

Joins the idbot service with this job's ID token and writes the credentials into one
private directory (0700; keys 0600): identity/ (SSH key and certificate, ssh_config,
known_hosts, TLS certificate), kubernetes/, database/, spiffe/. Prints the directory on
stdout; progress and errors go to stderr. Every option can also be set as an IDBOT_*
variable (--certificate-ttl → IDBOT_CERTIFICATE_TTL) or in a config file (-c); flags beat
variables, variables beat the file.

Options:
  --server URL               the idbot service (https://; http:// only for loopback)
  --token NAME               the join token resource on the service
  --join-method METHOD       github (default in GitHub Actions), gitlab (default in
                             GitLab CI), oidc, token (a one-time secret from
                             idbot admin tokens add) or bound_keypair
  --id-token-env VAR         variable holding the ID token for gitlab/oidc (IDBOT_ID_TOKEN)
  --audience AUD             audience of the GitHub ID token (default: the server URL)
  --outputs LIST             identity,ssh (default), kubernetes, database, spiffe-x509, jwt,
                             ssh_host
  --ssh-hosts LIST           host patterns for ssh_config and known_hosts (default *)
  --certificate-ttl DUR      requested certificate lifetime (e.g. 30m; default 1h)
  --kubernetes-cluster NAME  kube_cluster resource for the kubernetes output
  --database NAME            database resource for the database output
  --database-user USER       database user (certificate CN)
  --database-name NAME       database name for the connection string
  --spiffe-path PATH         SPIFFE ID path for spiffe-x509 and jwt
  --jwt-audience LIST        audiences of the JWT-SVID (jwt output)
  --ssh-host-key FILE.pub    this host's public key, for the ssh_host output
  --storage DIR              bound_keypair: the bound key and join state live here (0700)
  --registration-secret S    bound_keypair: the one-time secret of the first join
  --retries N                retries on network errors, 429 and 5xx (default 4)
  --attempt-timeout DUR      timeout of one attempt (default 10s)
  --deadline DUR             deadline for all attempts (default 60s)
  --ca PEM|FILE              CA to trust for the service's HTTPS instead of the system roots
  --out DIR                  write here; DIR must not exist or be empty (IDBOT_OUT)
  --refresh DIR              new certificates in place, atomically, with the settings
                             recorded there (flags override them): a fresh ID token for
                             CI methods; a renewal with the current certificate for
                             token and bound_keypair machines
  -c, --config FILE          tbot-style config file (version: v2) (IDBOT_CONFIG)
  --format text|json         json prints dir, outputs, env, expires_at, bot_instance_id

Exit status: 0 joined, 1 denied, 2 bad input or configuration (also: an expired ID
token), 3 service unreachable or not answering the idbot protocol.

Examples:
  # GitHub Actions (job with permissions: id-token: write)
  DIR=$(idbot join --server https://idbot.example.com --token github-deploy)
  ssh -F "$DIR/identity/ssh_config" deploy@web01.example.com

  # GitLab CI (id_tokens: { IDBOT_ID_TOKEN: { aud: https://idbot.example.com } })
  idbot join --join-method gitlab --server https://idbot.example.com --token gitlab-deploy \\
    --outputs identity,ssh,kubernetes --kubernetes-cluster prod --out "$CI_PROJECT_DIR/.idbot"

  idbot join --refresh "$CI_PROJECT_DIR/.idbot"

  # A machine, with a one-time secret from the operator (idbot admin tokens add)
  idbot join --server https://idbot.example.com --join-method token --token "$SECRET" --out /var/lib/idbot
`;

export const cliExample: ExampleFormatter = (pairs) =>
  `\n\n  idbot join ${pairs.map(([k, v]) => `--${k} ${v}`).join(" ")}\n\n  or in the environment: ${pairs
    .map(([k, v]) => `${envName(k)}=${v}`)
    .join(" ")}`;

export interface PerformJoinOptions {
  /** Flag values by input name (the top layer). */
  flags: Record<string, string | undefined>;
  /** Label of the top layer's values in messages (default --NAME). */
  flagLabel?: (input: string) => string;
  env: NodeJS.ProcessEnv;
  configPath?: string;
  /** --out (else IDBOT_OUT or the config file's destination). */
  out?: string;
  refreshDir?: string;
  /** Used when no directory is named: a fresh private directory under it. */
  parentDir: string;
  /** The hooks ignore IDBOT_OUT and destinations: they always write under RUNNER_TEMP. */
  ignoreOut?: boolean;
  /** Refresh by joining with the join method even where renewal would do (the daemon's
   *  fallback once renewals keep failing). */
  forceJoin?: boolean;
}

export interface JoinOutcome {
  result: JoinResult;
  inputs: CliInputs;
  refreshed: boolean;
}

/** Resolves the settings and joins; throws CliError with the exit code on any failure. */
export async function performJoin(opts: PerformJoinOptions): Promise<JoinOutcome> {
  let file: FileConfig | undefined;
  const configPath = opts.configPath ?? opts.env.IDBOT_CONFIG;
  let claims: Record<string, unknown> | undefined;
  let sourceOf: (input: string) => string | undefined = () => undefined;
  try {
    if (configPath) {
      file = loadConfigFile(configPath);
      for (const w of file.warnings) say(`idbot: warning: ${w}`);
    }
    const layers: InputLayer[] = [
      { values: opts.flags, label: opts.flagLabel ?? ((i) => `--${i}`) },
      envLayer(opts.env),
    ];
    if (opts.refreshDir) {
      const record = await readJoinRecord(opts.refreshDir);
      if (record === undefined) {
        throw new CliError(
          `${opts.refreshDir} holds no ${JOIN_RECORD_NAME}: it was not written by idbot join (or it does not exist)`,
        );
      }
      layers.push({
        values: record.settings,
        label: (i) => `${i} (recorded in ${join(opts.refreshDir!, JOIN_RECORD_NAME)})`,
      });
    }
    if (file) {
      const f = file;
      layers.push({ values: f.values, label: (i) => f.labels[i] ?? `${i} (${f.file})` });
    }
    const layered = layeredInputs(layers);
    sourceOf = layered.sourceOf;
    const inputs = parseCliInputs(layered.get, opts.env, cliExample);

    let targetDir: string | undefined;
    if (!opts.refreshDir && !opts.ignoreOut) {
      targetDir = opts.out ?? (opts.env.IDBOT_OUT?.trim() || undefined) ?? file?.out?.path;
      if (targetDir === undefined && file?.outConflict) throw new ConfigFileError(file.outConflict);
    }

    const transport = nodeTransport({ caPem: inputs.caPem });
    const proof = await proofFor(inputs, opts, transport, (token) => {
      claims ??= claimsOf(token, inputs.joinMethod);
    });
    const settings = recordableInputs({ ...layered.resolved(), "join-method": inputs.joinMethod });
    const result = await joinAndWrite(
      {
        ...inputs,
        parentDir: opts.parentDir,
        targetDir,
        refreshDir: opts.refreshDir,
        extraFiles: (response) => [joinRecordFile(settings, inputs.joinMethod, response)],
      },
      {
        ...proof,
        transport,
        onRetry: ({ attempt, delayMs, reason }) =>
          say(`idbot: join attempt ${attempt} failed (${reason}); retrying in ${delayMs} ms`),
      },
    );
    if (inputs.joinMethod === "bound_keypair" && result.response.join_state) {
      await writeJoinState(inputs.storageDir!, result.response.join_state);
    }
    return { result, inputs, refreshed: opts.refreshDir !== undefined };
  } catch (e) {
    throw toCliError(e, sourceOf, claims);
  }
}

/**
 * How this join proves itself. ID-token methods fetch a token per attempt; a one-time
 * secret is the token itself; a bound keypair answers a challenge. Refreshing a machine's
 * identity (token, bound_keypair) renews it with the current certificate instead, since
 * its one-time proof is spent: only an expired identity needs the join method again.
 */
async function proofFor(
  inputs: CliInputs,
  opts: PerformJoinOptions,
  transport: Transport,
  onIdToken: (token: string) => void,
): Promise<Pick<JoinDeps, "getIdToken" | "prove" | "path">> {
  const machine = inputs.joinMethod === "token" || inputs.joinMethod === "bound_keypair";
  if (machine && opts.refreshDir && !opts.forceJoin) {
    return { path: "/v1/renew", prove: await renewProof(opts.refreshDir) };
  }
  switch (inputs.joinMethod) {
    case "token":
      return { prove: async () => ({}) };
    case "bound_keypair":
      return {
        prove: (_attempt, publicKeys) =>
          boundKeypairProof({
            server: inputs.server,
            token: inputs.token,
            transport,
            storageDir: inputs.storageDir!,
            registrationSecret: inputs.registrationSecret,
            timeoutMs: inputs.policy.attemptTimeoutMs,
          })(publicKeys),
      };
    case "github": {
      const source = actionsIdTokenSource(inputs.audience, opts.env);
      return { getIdToken: async () => tap(await source(), onIdToken) };
    }
    case "kubernetes":
    case "gcp":
    case "iam":
    case "azure": {
      const make = {
        kubernetes: kubernetesProofSource,
        gcp: gcpProofSource,
        iam: iamProofSource,
        azure: azureProofSource,
      }[inputs.joinMethod];
      const source = make({
        audience: inputs.audience,
        server: inputs.server,
        token: inputs.token,
        env: opts.env,
        transport,
        timeoutMs: inputs.policy.attemptTimeoutMs,
      });
      return { getIdToken: (a) => source(a) };
    }
    default: {
      const source = envIdTokenSource({
        variable: inputs.idTokenEnv,
        method: inputs.joinMethod,
        env: opts.env,
      });
      return { getIdToken: async (a) => tap(await source(a), onIdToken) };
    }
  }
}

const tap = <T>(v: T, f: (v: T) => void): T => {
  f(v);
  return v;
};

/** Claims that identify the job and grant nothing: shown with a denial so it can be fixed. */
const SHOWN_CLAIMS: Record<string, string[]> = {
  github: ["iss", "sub", "aud", "repository", "ref", "job_workflow_ref", "environment", "runner_environment"],
  gitlab: ["iss", "sub", "aud", "project_path", "ref", "ref_type", "pipeline_source", "environment"],
  oidc: ["iss", "sub", "aud"],
};

function claimsOf(token: string, method: string): Record<string, unknown> {
  const shown = SHOWN_CLAIMS[method] ?? SHOWN_CLAIMS.oidc!;
  try {
    const c = decodeJwt(token) as Record<string, unknown>;
    return Object.fromEntries(shown.filter((k) => c[k] !== undefined).map((k) => [k, c[k]]));
  } catch {
    return {};
  }
}

/** Every failure as a CliError carrying its exit code (see USAGE). */
export function toCliError(
  e: unknown,
  sourceOf: (input: string) => string | undefined = () => undefined,
  claims?: Record<string, unknown>,
): CliError {
  if (e instanceof CliError) return e;
  if (e instanceof InputError) {
    const where = sourceOf(e.input);
    const label = where ?? `--${e.input} (${envName(e.input)})`;
    return new CliError(`${label}: ${e.detail}`, EXIT.badInput);
  }
  if (e instanceof NoOidcPermissionError) return new CliError(e.message, EXIT.badInput, e.hint);
  if (e instanceof IdTokenError) return new CliError(e.message, EXIT.badInput, e.hint);
  if (e instanceof JoinFailure) {
    const code =
      e.kind === "denied" ? EXIT.denied : e.kind === "bad_input" ? EXIT.badInput : EXIT.unreachable;
    const what = e.kind === "denied" ? "the idbot service refused the join" : "the join failed";
    const claimText =
      e.kind === "denied" && claims && Object.keys(claims).length > 0
        ? `\nID token claims (allow rules match these): ${JSON.stringify(claims)}`
        : "";
    return new CliError(`${what}: ${e.message}${claimText}`, code, e.hint);
  }
  if (
    e instanceof ConfigFileError ||
    e instanceof InsecureUrlError ||
    e instanceof OutputDirError ||
    e instanceof JoinRecordError ||
    e instanceof UnsafePathError ||
    e instanceof ManifestError
  ) {
    return new CliError(e.message, EXIT.badInput);
  }
  return new CliError(`idbot failed: ${e instanceof Error ? e.message : String(e)}`, EXIT.denied);
}

const FLAG_OPTIONS = Object.fromEntries(JOIN_INPUTS.map((i) => [i, { type: "string" as const }]));

export function parseFormat(v: string | undefined): "text" | "json" {
  if (v === undefined || v === "text") return "text";
  if (v === "json") return "json";
  throw new CliError(`--format "${v}": use text or json`);
}

export async function joinCommand(argv: string[]): Promise<number> {
  const args = parseCommand(
    argv,
    {
      ...FLAG_OPTIONS,
      out: { type: "string" },
      refresh: { type: "string" },
      config: { type: "string", short: "c" },
      format: { type: "string" },
    },
    USAGE,
  );
  if (!args) return EXIT.ok;
  const v = args.values as Record<string, string | undefined>;
  const format = parseFormat(v.format);
  if (v.out !== undefined && v.refresh !== undefined) {
    throw new CliError(
      "--out and --refresh exclude each other: a refresh writes into the directory it refreshes",
    );
  }
  const flags = Object.fromEntries(JOIN_INPUTS.map((i) => [i, v[i]]));
  const { result, inputs, refreshed } = await performJoin({
    flags,
    env: process.env,
    configPath: v.config,
    out: v.out,
    refreshDir: v.refresh,
    parentDir: process.env.RUNNER_TEMP || tmpdir(),
  });
  const r = result.response;
  say(
    `idbot: ${refreshed ? "refreshed" : "joined"} as bot "${r.bot_name}" (instance ${r.bot_instance_id}) with the ${inputs.joinMethod} join method; expires ${r.expires_at}`,
  );
  if (r.ttl_capped) say("idbot: the requested certificate TTL was above the roles' max_ttl and was capped");
  say(`idbot: ${refreshed ? "replaced" : "wrote"} ${result.files.length} files in ${result.dir}`);
  if (result.outputs["ssh-config"]) say(`idbot:   ssh -F ${result.outputs["ssh-config"]} USER@HOST`);
  if (result.env.KUBECONFIG) say(`idbot:   export KUBECONFIG=${result.env.KUBECONFIG}`);
  if (format === "json") {
    process.stdout.write(
      `${JSON.stringify(
        {
          dir: result.dir,
          refreshed,
          bot_name: r.bot_name,
          bot_instance_id: r.bot_instance_id,
          expires_at: r.expires_at,
          ttl_seconds: r.ttl_seconds,
          outputs: result.outputs,
          env: result.env,
          files: result.files,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    process.stdout.write(`${result.dir}\n`);
  }
  return EXIT.ok;
}
