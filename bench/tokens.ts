// GitHub-shaped RS256 ID tokens for the load runs, minted before any timed run so the
// load generator only sends bytes. RSA-2048 signing costs ~1 ms per token, so minting is
// split across worker threads (node:crypto sign over "header.payload", no jose).
import { generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import { Worker } from "node:worker_threads";

export const GITHUB_ISSUER = "https://token.actions.githubusercontent.com";

export interface Issuer {
  kid: string;
  privateKey: KeyObject;
  /** PKCS#8 PEM of the signing key (what the workers import). */
  privatePem: string;
  /** `{"keys":[...]}`: the public JWKS, for a token resource's `static_jwks`. */
  jwksJson: string;
}

export function createIssuer(): Issuer {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const kid = randomUUID();
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" };
  return {
    kid,
    privateKey,
    privatePem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    jwksJson: JSON.stringify({ keys: [jwk] }),
  };
}

/** GitHub's claim set for a push to acme/app main (no jti/aud/iat/nbf/exp: added per token). */
export function githubClaims(repository = "acme/app"): Record<string, unknown> {
  const sha = "3f786850e387550fdab836ed7e6dc881de23001b";
  const ref = "refs/heads/main";
  const workflowRef = `${repository}/.github/workflows/deploy.yml@${ref}`;
  return {
    sub: `repo:${repository}:ref:${ref}`,
    ref,
    sha,
    repository,
    repository_owner: repository.split("/")[0],
    repository_owner_id: "1342004",
    repository_id: "892349901",
    repository_visibility: "private",
    actor: "octocat",
    actor_id: "583231",
    workflow: "deploy",
    workflow_ref: workflowRef,
    workflow_sha: sha,
    job_workflow_ref: workflowRef,
    job_workflow_sha: sha,
    head_ref: "",
    base_ref: "",
    event_name: "push",
    ref_type: "branch",
    ref_protected: "false",
    run_id: "12345678901",
    run_number: "42",
    run_attempt: "1",
    runner_environment: "github-hosted",
    iss: GITHUB_ISSUER,
  };
}

interface MintJob {
  privatePem: string;
  headerB64: string;
  claims: Record<string, unknown>;
  audience: string;
  count: number;
  lifetimeS: number;
}

// Plain JS (eval'd), so the workers need no TypeScript loader.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createPrivateKey, randomUUID, sign } = require("node:crypto");
const j = workerData;
const key = createPrivateKey(j.privatePem);
const now = Math.floor(Date.now() / 1000);
const out = new Array(j.count);
for (let i = 0; i < j.count; i++) {
  const payload = { jti: randomUUID(), aud: j.audience, ...j.claims, nbf: now, exp: now + j.lifetimeS, iat: now };
  const input = j.headerB64 + "." + Buffer.from(JSON.stringify(payload)).toString("base64url");
  out[i] = input + "." + sign("sha256", Buffer.from(input), key).toString("base64url");
}
parentPort.postMessage(out);
`;

function mintIn(job: MintJob): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: job });
    w.once("message", (m: string[]) => {
      resolve(m);
      void w.terminate();
    });
    w.once("error", reject);
    w.once("exit", (code) => {
      if (code !== 0) reject(new Error(`mint worker exited with ${code}`));
    });
  });
}

/** `count` fresh tokens (unique jti each), minted by `workers` threads in parallel. */
export async function mintTokens(
  issuer: Issuer,
  opts: {
    count: number;
    audience: string;
    claims?: Record<string, unknown>;
    workers?: number;
    lifetimeS?: number;
  },
): Promise<string[]> {
  const workers = Math.max(1, Math.min(opts.workers ?? 2, opts.count));
  const headerB64 = Buffer.from(JSON.stringify({ alg: "RS256", kid: issuer.kid, typ: "JWT" })).toString(
    "base64url",
  );
  const base = {
    privatePem: issuer.privatePem,
    headerB64,
    claims: opts.claims ?? githubClaims(),
    audience: opts.audience,
    lifetimeS: opts.lifetimeS ?? 900,
  };
  const per = Math.ceil(opts.count / workers);
  const parts = await Promise.all(
    Array.from({ length: workers }, (_, i) =>
      mintIn({ ...base, count: Math.max(0, Math.min(per, opts.count - i * per)) }),
    ),
  );
  return parts.flat();
}

/** Tokens handed out in order; each is used once (the service refuses a replayed jti). */
export class TokenPool {
  private next = 0;
  constructor(private tokens: string[]) {}
  take(): string | undefined {
    const t = this.tokens[this.next];
    if (t === undefined) return undefined;
    this.tokens[this.next++] = ""; // let it be collected
    return t;
  }
  get remaining(): number {
    return this.tokens.length - this.next;
  }
  add(more: string[]): void {
    for (const t of more) this.tokens.push(t);
  }
  /** Drops what is left (tokens minted for another service's audience). */
  clear(): void {
    this.tokens = [];
    this.next = 0;
  }
}
