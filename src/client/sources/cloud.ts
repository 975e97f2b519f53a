// What every cloud/cluster proof source gets: the proof of one attempt is a string carried
// in the join request's id_token field (a JWT, or a JSON document for iam and azure).
import type { Transport } from "../transport.ts";

export interface CloudSourceOptions {
  /** The audience the proof is for: the service's public URL unless configured. */
  audience: string;
  server: string;
  token: string;
  env: NodeJS.ProcessEnv;
  transport: Transport;
  timeoutMs: number;
}

export type ProofSource = (attempt: number) => Promise<string>;
