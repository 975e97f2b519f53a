// What every output writer produces from one join: files (relative to the join's fresh
// directory), the Action outputs naming them, and environment variables to export.
import type { JoinResponse } from "../../protocol/join.ts";
import type { FileSpec } from "../files.ts";
import type { ClientKeys } from "../keys.ts";

export interface OutputInput {
  /** Absolute path of the join's directory (files are written below it). */
  dir: string;
  response: JoinResponse;
  keys: ClientKeys;
  /** Host patterns for ssh_config and known_hosts ("*" by default). */
  sshHosts: string[];
}

/** One row of the job summary: what was issued, never a secret. */
export interface SummaryRow {
  type: string;
  /** Principals, user and groups, or SPIFFE ID. */
  identity: string;
  /** Path relative to the join directory. */
  path: string;
}

export interface OutputPlan {
  files: FileSpec[];
  /** Action output name → path relative to dir. */
  outputs: Record<string, string>;
  /** Environment variable → path relative to dir ("" = the directory itself). */
  env?: Record<string, string>;
  summary: SummaryRow[];
  /** Values derived from secrets (e.g. a base64-encoded key) to mask in CI logs. */
  secrets?: string[];
  /** Outputs that are not paths (e.g. a connection string), with {dir} replaced. */
  values?: Record<string, string>;
}
