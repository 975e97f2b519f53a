// The azure proof source: on an Azure VM, per attempt,
//  1. POST /v1/join/challenge {token, join_method: "azure"}: a single-use nonce (60 s);
//  2. IMDS GET /metadata/attested/document?api-version=2020-09-01&nonce=N (header
//     Metadata: true), N = 32 hex digits of SHA-256(challenge nonce), since IMDS takes at most
//     32 alphanumeric characters: a PKCS#7 document Microsoft signs, naming this VM;
//  3. IMDS GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=AUDIENCE
//     (same header): the VM's managed identity access token for this service
//     ($IDBOT_AZURE_CLIENT_ID picks a user-assigned identity).
// The proof is JSON {challenge_id, document (base64 PKCS#7), access_token}. IMDS is
// http://169.254.169.254, or $IDBOT_AZURE_IMDS_URL.
import { createHash } from "node:crypto";
import { ChallengeResponseSchema } from "../../protocol/join.ts";
import { JoinFailure } from "../join.ts";
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";
import { type MetadataAnswer, metadataBase, metadataRequest } from "./iam.ts";

const DEFAULT_IMDS = "http://169.254.169.254";
const IMDS_TIMEOUT_MS = 5000;

export function imdsNonce(challengeNonce: string): string {
  return createHash("sha256").update(challengeNonce, "utf8").digest("hex").slice(0, 32);
}

const retryable = (message: string) => Object.assign(new Error(message), { retryable: true });

async function challenge(opts: CloudSourceOptions): Promise<{ challenge_id: string; nonce: string }> {
  const res = await opts.transport.postJson(
    `${opts.server.replace(/\/+$/, "")}/v1/join/challenge`,
    { token: opts.token, join_method: "azure" },
    { timeoutMs: opts.timeoutMs },
  );
  if (res.status !== 200) {
    let message = `HTTP ${res.status}`;
    try {
      message = (JSON.parse(res.body) as { error: { message: string } }).error.message;
    } catch {}
    if (res.status >= 500 || res.status === 429) throw retryable(`challenge: ${message}`);
    throw new JoinFailure("denied", `the service refused a challenge: ${message}`);
  }
  return ChallengeResponseSchema.parse(JSON.parse(res.body));
}

export function azureProofSource(opts: CloudSourceOptions): ProofSource {
  return async () => {
    const base = metadataBase(opts.env.IDBOT_AZURE_IMDS_URL?.trim() || DEFAULT_IMDS, "IDBOT_AZURE_IMDS_URL");
    const t = Math.min(opts.timeoutMs, IMDS_TIMEOUT_MS);
    const imds = async (path: string, what: string): Promise<Record<string, unknown>> => {
      let res: MetadataAnswer;
      try {
        res = await metadataRequest(base, "GET", path, { metadata: "true" }, t);
      } catch (e) {
        throw new JoinFailure(
          "bad_input",
          `the Azure instance metadata service at ${base.origin} is unreachable (${(e as Error).message})`,
          "The azure join method runs on an Azure VM (or a scale set instance) with a managed identity.",
        );
      }
      if (res.status === 429 || res.status >= 500) throw retryable(`Azure IMDS ${what}: HTTP ${res.status}`);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(res.body) as Record<string, unknown>;
      } catch {}
      if (res.status !== 200) {
        const why = String(body.error_description ?? body.error ?? res.body.slice(0, 200));
        throw new JoinFailure(
          "bad_input",
          `the Azure instance metadata service refused the ${what} (HTTP ${res.status}: ${why})`,
          what === "access token"
            ? "Give the VM a managed identity (set IDBOT_AZURE_CLIENT_ID for a user-assigned one); the audience must be a resource Entra ID knows (--audience)."
            : undefined,
        );
      }
      return body;
    };
    const ch = await challenge(opts);
    const doc = await imds(
      `/metadata/attested/document?api-version=2020-09-01&nonce=${imdsNonce(ch.nonce)}`,
      "attested document",
    );
    const clientId = opts.env.IDBOT_AZURE_CLIENT_ID?.trim();
    const token = await imds(
      `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(opts.audience)}${clientId ? `&client_id=${encodeURIComponent(clientId)}` : ""}`,
      "access token",
    );
    if (typeof doc.signature !== "string" || (doc.encoding !== undefined && doc.encoding !== "pkcs7"))
      throw new JoinFailure("protocol", "the Azure attested document is not {encoding: pkcs7, signature}");
    if (typeof token.access_token !== "string")
      throw new JoinFailure("protocol", "the Azure metadata service answered no access_token");
    return JSON.stringify({
      challenge_id: ch.challenge_id,
      document: doc.signature.replace(/\s+/g, ""),
      access_token: token.access_token,
    });
  };
}
