// Runs a bundled Action entry point (dist/main.js, dist/post.js) the way the GitHub Actions runner
// does: `node script` in GITHUB_WORKSPACE with INPUT_*/STATE_* env, fresh file-command files, and the
// workflow commands (::add-mask::, ::error:: ...) read back from stdout.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Annotation {
  level: "error" | "warning" | "notice";
  message: string;
  /** title, file, line, endLine, col, endColumn ... as given. */
  properties: Record<string, string>;
}

export interface WorkflowCommand {
  command: string;
  properties: Record<string, string>;
  message: string;
}

export interface ActionRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** GITHUB_OUTPUT */
  outputs: Record<string, string>;
  /** GITHUB_STATE (pass to the post step as opts.state) */
  state: Record<string, string>;
  /** GITHUB_ENV */
  env: Record<string, string>;
  /** GITHUB_PATH entries, in the order written */
  path: string[];
  /** GITHUB_STEP_SUMMARY contents */
  summary: string;
  /** ::add-mask:: values */
  masks: string[];
  /** ::error::, ::warning::, ::notice:: */
  annotations: Annotation[];
  /** ::debug:: messages */
  debug: string[];
  /** every workflow command seen on stdout, in order (honouring ::stop-commands::) */
  commands: WorkflowCommand[];
  durationMs: number;
  /** the per-run directory (file commands, workspace, home, tool cache live under it) */
  workDir: string;
  /** HOME given to the step (workDir/home unless opts.env.HOME is set) */
  home: string;
}

export interface RunActionStepOptions {
  /** → INPUT_<NAME>: name uppercased, spaces replaced by '_', hyphens kept (as the runner does). */
  inputs?: Record<string, string>;
  /** → STATE_<name> (for post steps). */
  state?: Record<string, string>;
  /** Extra env, applied last; undefined deletes a key. */
  env?: Record<string, string | undefined>;
  /** RUNNER_TEMP (must exist). */
  runnerTemp: string;
  /** Per-run dir; a fresh temp dir when absent. Reuse it for main + post to share HOME/workspace. */
  workDir?: string;
  /** Default 60 s; on timeout the step is SIGKILLed and the promise rejects with its output. */
  timeoutMs?: number;
}

/**
 * Parses a GITHUB_OUTPUT / GITHUB_STATE / GITHUB_ENV file as the runner does:
 * `name<<DELIMITER` … `DELIMITER` blocks (what @actions/core writes) and `name=value` lines.
 */
export function parseCommandFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    const eq = line.indexOf("=");
    const hd = line.indexOf("<<");
    if (hd >= 0 && (eq < 0 || hd < eq)) {
      const name = line.slice(0, hd);
      const delimiter = line.slice(hd + 2);
      if (name === "" || delimiter === "")
        throw new Error(`file command: invalid line ${JSON.stringify(line)}`);
      const value: string[] = [];
      let closed = false;
      for (i++; i < lines.length; i++) {
        if (lines[i] === delimiter) {
          closed = true;
          break;
        }
        value.push(lines[i]!);
      }
      if (!closed)
        throw new Error(`file command: matching delimiter not found: ${JSON.stringify(delimiter)}`);
      out[name] = value.join("\n");
    } else if (eq > 0) {
      out[line.slice(0, eq)] = line.slice(eq + 1);
    } else {
      throw new Error(`file command: invalid line ${JSON.stringify(line)}`);
    }
  }
  return out;
}

function unescapeData(s: string): string {
  return s.replace(/%0D/gi, "\r").replace(/%0A/gi, "\n").replace(/%25/g, "%");
}

function unescapeProperty(s: string): string {
  return s
    .replace(/%0D/gi, "\r")
    .replace(/%0A/gi, "\n")
    .replace(/%3A/gi, ":")
    .replace(/%2C/gi, ",")
    .replace(/%25/g, "%");
}

/** Workflow commands (`::name k=v,k2=v2::message`) in a step's stdout, honouring ::stop-commands::. */
export function parseWorkflowCommands(stdout: string): WorkflowCommand[] {
  const out: WorkflowCommand[] = [];
  let stopToken: string | undefined;
  for (const raw of stdout.split(/\r?\n/)) {
    const line = raw.trimStart();
    if (!line.startsWith("::")) continue;
    const end = line.indexOf("::", 2);
    if (end < 0) continue;
    const head = line.slice(2, end);
    const message = line.slice(end + 2);
    const sp = head.indexOf(" ");
    const command = sp < 0 ? head : head.slice(0, sp);
    if (stopToken !== undefined) {
      if (command === stopToken) stopToken = undefined;
      continue;
    }
    const properties: Record<string, string> = {};
    if (sp >= 0) {
      for (const pair of head.slice(sp + 1).split(",")) {
        const i = pair.indexOf("=");
        if (i <= 0) continue;
        properties[pair.slice(0, i).trim()] = unescapeProperty(pair.slice(i + 1));
      }
    }
    if (command === "stop-commands") {
      stopToken = message;
      continue;
    }
    out.push({ command, properties, message: unescapeData(message) });
  }
  return out;
}

const OUTER_PREFIXES = ["GITHUB_", "INPUT_", "STATE_", "ACTIONS_", "RUNNER_"];

export async function runActionStep(script: string, opts: RunActionStepOptions): Promise<ActionRun> {
  const workDir = opts.workDir ?? (await mkdtemp(join(tmpdir(), "idbot-step-")));
  const cmdDir = join(workDir, "_runner_file_commands");
  const workspace = join(workDir, "workspace");
  const toolCache = join(workDir, "_tool");
  const defaultHome = join(workDir, "home");
  await Promise.all([cmdDir, workspace, toolCache, defaultHome].map((d) => mkdir(d, { recursive: true })));

  const id = randomUUID();
  const files = {
    GITHUB_OUTPUT: join(cmdDir, `set_output_${id}`),
    GITHUB_STATE: join(cmdDir, `save_state_${id}`),
    GITHUB_ENV: join(cmdDir, `set_env_${id}`),
    GITHUB_PATH: join(cmdDir, `add_path_${id}`),
    GITHUB_STEP_SUMMARY: join(cmdDir, `step_summary_${id}`),
  };
  await Promise.all(Object.values(files).map((f) => writeFile(f, "")));

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (OUTER_PREFIXES.some((p) => k.startsWith(p))) continue;
    if (k === "NODE_TEST_CONTEXT") continue; // set by node:test for its children; not the runner's
    env[k] = v;
  }
  Object.assign(env, {
    HOME: defaultHome,
    CI: "true",
    GITHUB_ACTIONS: "true",
    GITHUB_SERVER_URL: "https://github.com",
    GITHUB_API_URL: "https://api.github.com",
    GITHUB_GRAPHQL_URL: "https://api.github.com/graphql",
    GITHUB_REPOSITORY: "acme/app",
    GITHUB_REPOSITORY_OWNER: "acme",
    GITHUB_REF: "refs/heads/main",
    GITHUB_REF_NAME: "main",
    GITHUB_REF_TYPE: "branch",
    GITHUB_SHA: "3f786850e387550fdab836ed7e6dc881de23001b",
    GITHUB_EVENT_NAME: "push",
    GITHUB_WORKFLOW: "deploy",
    GITHUB_JOB: "deploy",
    GITHUB_RUN_ID: "12345678901",
    GITHUB_RUN_NUMBER: "42",
    GITHUB_RUN_ATTEMPT: "1",
    GITHUB_ACTOR: "octocat",
    GITHUB_ACTION: "__acme_idbot",
    GITHUB_ACTION_REPOSITORY: "acme/idbot",
    GITHUB_ACTION_REF: "v1",
    GITHUB_WORKSPACE: workspace,
    RUNNER_TEMP: opts.runnerTemp,
    RUNNER_TOOL_CACHE: toolCache,
    RUNNER_OS: "Linux",
    RUNNER_ARCH: process.arch === "arm64" ? "ARM64" : "X64",
    RUNNER_NAME: "GitHub Actions 1",
    RUNNER_ENVIRONMENT: "github-hosted",
    ...files,
  });
  for (const [name, value] of Object.entries(opts.inputs ?? {})) {
    env[`INPUT_${name.replace(/ /g, "_").toUpperCase()}`] = value;
  }
  for (const [name, value] of Object.entries(opts.state ?? {})) env[`STATE_${name}`] = value;
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }

  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  const child = spawn(process.execPath, [script], { cwd: workspace, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d: string) => {
    stdout += d;
  });
  child.stderr.on("data", (d: string) => {
    stderr += d;
  });
  const { code, signal, timedOut } = await new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    timedOut: boolean;
  }>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (c, s) => {
      clearTimeout(timer);
      resolve({ code: c, signal: s, timedOut });
    });
  });
  const durationMs = Date.now() - started;
  if (timedOut) {
    throw new Error(
      `action step ${script} timed out after ${timeoutMs} ms\n--- stdout ---\n${stdout.slice(-8000)}\n--- stderr ---\n${stderr.slice(-8000)}`,
    );
  }

  const [outText, stateText, envText, pathText, summary] = await Promise.all(
    [
      files.GITHUB_OUTPUT,
      files.GITHUB_STATE,
      files.GITHUB_ENV,
      files.GITHUB_PATH,
      files.GITHUB_STEP_SUMMARY,
    ].map((f) => readFile(f, "utf8")),
  );
  const commands = parseWorkflowCommands(stdout);
  const masks: string[] = [];
  const annotations: Annotation[] = [];
  const debug: string[] = [];
  for (const c of commands) {
    if (c.command === "add-mask") masks.push(c.message);
    else if (c.command === "debug") debug.push(c.message);
    else if (c.command === "error" || c.command === "warning" || c.command === "notice") {
      annotations.push({ level: c.command, message: c.message, properties: c.properties });
    }
  }
  return {
    code,
    signal,
    stdout,
    stderr,
    outputs: parseCommandFile(outText!),
    state: parseCommandFile(stateText!),
    env: parseCommandFile(envText!),
    path: pathText!
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== ""),
    summary: summary!,
    masks,
    annotations,
    debug,
    commands,
    durationMs,
    workDir,
    home: env.HOME ?? defaultHome,
  };
}
