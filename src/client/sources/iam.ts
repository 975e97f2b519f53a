// The iam proof source (AWS): a presigned sts:GetCallerIdentity request, signed here with
// SigV4 (service "sts") by the machine's own AWS credentials, which never leave it. The
// service forwards the request to STS and trusts STS's answer. A signed x-idbot-audience
// header binds the request to one idbot service.
//
// Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else the
// instance role from the EC2 metadata service (IMDSv2: a session token from
// PUT /latest/api/token, then the role's credentials), at http://169.254.169.254 or
// $IDBOT_AWS_IMDS_URL. Endpoint: $IDBOT_AWS_STS_ENDPOINT, else https://sts.REGION.amazonaws.com
// for $AWS_REGION (or $AWS_DEFAULT_REGION), else the global https://sts.amazonaws.com.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { isLoopbackHost } from "../../protocol/net.ts";
import { JoinFailure } from "../join.ts";
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";

export const GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15";
export const AUDIENCE_HEADER = "x-idbot-audience";
/** A random signed header: two requests signed in the same second with the same
 *  credentials (two jobs on one instance role) still differ, so neither is a replay. */
export const NONCE_HEADER = "x-idbot-nonce";
const DEFAULT_IMDS = "http://169.254.169.254";
const IMDS_TIMEOUT_MS = 2000;

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The presigned request as the service receives it in `id_token` (JSON). */
export interface PresignedRequest {
  method: "POST";
  url: string;
  headers: Record<string, string>;
  body: string;
}

const sha256Hex = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
const hmac = (key: Buffer | string, s: string) => createHmac("sha256", key).update(s, "utf8").digest();

export function amzDate(now: Date): string {
  return now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

/** Signs POST / with the GetCallerIdentity body (AWS Signature Version 4, service sts). */
export function signGetCallerIdentity(opts: {
  url: string;
  region: string;
  credentials: AwsCredentials;
  audience: string;
  now?: Date;
  /** Tests only: another body (the service must refuse it unsent). */
  body?: string;
}): PresignedRequest {
  const url = new URL(opts.url);
  const body = opts.body ?? GET_CALLER_IDENTITY_BODY;
  const date = amzDate(opts.now ?? new Date());
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded; charset=utf-8",
    host: url.host,
    "x-amz-date": date,
    [AUDIENCE_HEADER]: opts.audience,
    [NONCE_HEADER]: randomBytes(16).toString("hex"),
  };
  if (opts.credentials.sessionToken) headers["x-amz-security-token"] = opts.credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((n) => `${n}:${headers[n]!.trim().replace(/\s+/g, " ")}\n`).join("");
  const signedHeaders = names.join(";");
  const canonicalRequest = ["POST", "/", "", canonicalHeaders, signedHeaders, sha256Hex(body)].join("\n");
  const scope = `${date.slice(0, 8)}/${opts.region}/sts/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", date, scope, sha256Hex(canonicalRequest)].join("\n");
  let key = hmac(`AWS4${opts.credentials.secretAccessKey}`, date.slice(0, 8));
  for (const part of [opts.region, "sts", "aws4_request"]) key = hmac(key, part);
  const signature = createHmac("sha256", key).update(stringToSign, "utf8").digest("hex");
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${opts.credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return { method: "POST", url: `${url.origin}/`, headers, body };
}

const REGION = /^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/;

/** The STS endpoint and signing region from the environment. */
export function stsEndpoint(env: NodeJS.ProcessEnv): { url: string; region: string } {
  const envRegion = env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined;
  const override = env.IDBOT_AWS_STS_ENDPOINT?.trim();
  if (override) {
    let url: URL;
    try {
      url = new URL(/^[a-z]+:\/\//i.test(override) ? override : `https://${override}`);
    } catch {
      throw new JoinFailure("bad_input", `IDBOT_AWS_STS_ENDPOINT "${override}" is not a URL or host name`);
    }
    if (url.protocol !== "https:")
      throw new JoinFailure("bad_input", `IDBOT_AWS_STS_ENDPOINT must be https://, not ${url.protocol}//`);
    const m = /^sts(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(url.hostname);
    return { url: `${url.origin}/`, region: m?.[1] ?? envRegion ?? "us-east-1" };
  }
  if (!envRegion) return { url: "https://sts.amazonaws.com/", region: "us-east-1" };
  if (!REGION.test(envRegion))
    throw new JoinFailure(
      "bad_input",
      `AWS_REGION "${envRegion}" is not an AWS region name (like eu-west-1)`,
    );
  const suffix = envRegion.startsWith("cn-") ? "amazonaws.com.cn" : "amazonaws.com";
  return { url: `https://sts.${envRegion}.${suffix}/`, region: envRegion };
}

export interface MetadataAnswer {
  status: number;
  body: string;
}

/** Metadata services are plain HTTP on a link-local address; an override may also point at
 *  loopback (a test or a local proxy) or use https. Nothing else is sent in the clear. */
export function metadataBase(raw: string, variable: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new JoinFailure("bad_input", `${variable} "${raw}" is not a URL`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const linkLocal = (isIP(host) === 4 && host.startsWith("169.254.")) || host === "fd00:ec2::254";
  if (url.protocol === "https:" || (url.protocol === "http:" && (linkLocal || isLoopbackHost(host))))
    return url;
  throw new JoinFailure(
    "bad_input",
    `${variable} "${raw}" must be http:// to a link-local or loopback address, or https://`,
  );
}

/** One request to a metadata service; the answer is capped at 1 MiB. */
export function metadataRequest(
  base: URL,
  method: "GET" | "PUT",
  path: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<MetadataAnswer> {
  const url = new URL(path, base);
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = request(
      url,
      {
        method,
        headers: {
          ...headers,
          ...(method === "PUT" ? { "content-length": "0" } : {}),
          "user-agent": "idbot",
        },
        agent: false,
        signal: AbortSignal.timeout(timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > 1024 * 1024) res.destroy(new Error("the metadata answer is too large"));
          else chunks.push(c);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    r.on("error", reject);
    r.end();
  });
}

/** The instance role's credentials from the EC2 metadata service (IMDSv2 only). */
async function imdsCredentials(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<AwsCredentials> {
  const raw = env.IDBOT_AWS_IMDS_URL?.trim() || DEFAULT_IMDS;
  const base = metadataBase(raw, "IDBOT_AWS_IMDS_URL");
  const t = Math.min(timeoutMs, IMDS_TIMEOUT_MS);
  const noCreds = (why: string) =>
    new JoinFailure(
      "bad_input",
      `no AWS credentials: AWS_ACCESS_KEY_ID is not set and the EC2 instance metadata service at ${base.origin} ${why}`,
      "Run on an EC2 instance with an instance profile (IMDSv2), or set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.",
    );
  let res: MetadataAnswer;
  try {
    res = await metadataRequest(
      base,
      "PUT",
      "/latest/api/token",
      { "x-aws-ec2-metadata-token-ttl-seconds": "300" },
      t,
    );
  } catch (e) {
    throw noCreds(`is unreachable (${(e as Error).message})`);
  }
  if (res.status !== 200 || !res.body) throw noCreds(`refused a session token (HTTP ${res.status})`);
  const session = { "x-aws-ec2-metadata-token": res.body.trim() };
  const get = async (path: string) => {
    const r = await metadataRequest(base, "GET", path, session, t).catch((e: Error) => {
      throw Object.assign(new Error(`the EC2 metadata service failed: ${e.message}`), { retryable: true });
    });
    if (r.status === 404) throw noCreds("lists no instance role (attach an instance profile)");
    if (r.status >= 500)
      throw Object.assign(new Error(`the EC2 metadata service answered HTTP ${r.status}`), {
        retryable: true,
      });
    if (r.status !== 200) throw noCreds(`answered HTTP ${r.status} for ${path}`);
    return r.body;
  };
  const role = (await get("/latest/meta-data/iam/security-credentials/")).split("\n")[0]?.trim();
  if (!role) throw noCreds("lists no instance role (attach an instance profile)");
  let c: { Code?: string; AccessKeyId?: string; SecretAccessKey?: string; Token?: string };
  try {
    c = JSON.parse(await get(`/latest/meta-data/iam/security-credentials/${encodeURIComponent(role)}`));
  } catch (e) {
    if (e instanceof JoinFailure || (e as { retryable?: boolean }).retryable) throw e;
    throw noCreds(`answered role credentials that are not JSON`);
  }
  if (c.Code !== "Success" || !c.AccessKeyId || !c.SecretAccessKey)
    throw noCreds(`has no usable credentials for role ${role} (Code ${String(c.Code)})`);
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    sessionToken: c.Token || undefined,
  };
}

export async function awsCredentials(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<AwsCredentials> {
  const id = env.AWS_ACCESS_KEY_ID?.trim();
  if (id) {
    const secret = env.AWS_SECRET_ACCESS_KEY?.trim();
    if (!secret)
      throw new JoinFailure("bad_input", "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    return {
      accessKeyId: id,
      secretAccessKey: secret,
      sessionToken: env.AWS_SESSION_TOKEN?.trim() || undefined,
    };
  }
  return imdsCredentials(env, timeoutMs);
}

export function iamProofSource(opts: CloudSourceOptions): ProofSource {
  return async () => {
    const endpoint = stsEndpoint(opts.env);
    const credentials = await awsCredentials(opts.env, opts.timeoutMs);
    return JSON.stringify(
      signGetCallerIdentity({
        url: endpoint.url,
        region: endpoint.region,
        credentials,
        audience: opts.audience,
      }),
    );
  };
}
