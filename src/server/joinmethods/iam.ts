// The `iam` join method (AWS): the job sends a presigned sts:GetCallerIdentity request
// (SigV4, signed with its own AWS credentials) and the service forwards it to STS, trusting
// only STS's answer: the account, ARN and user id of whoever signed it. idbot never sees a
// secret key and cannot check the signature itself, so the request is checked to be exactly
// a GetCallerIdentity call to an allowed STS endpoint over https BEFORE it leaves the
// service, and nothing else is ever forwarded. A signed `x-idbot-audience` header binds the
// request to this service (as Teleport and Vault bind a server ID header): a request signed
// for another relying party is refused here, and one altered to name this service no longer
// verifies at STS. x-amz-date bounds its life to 15 minutes (STS refuses older ones too), and
// the signature's hash is the replay key for that window (a signed random x-idbot-nonce
// keeps two jobs signing in the same second with one instance role from colliding).
import { createHash } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { z } from "zod";
import { denied, JoinError } from "./errors.ts";
import { type ClaimJoinMethod, pick } from "./method.ts";
import { evaluateRules, type Rule } from "./rules.ts";

/** The only request body forwarded, byte for byte. */
export const GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15";
/** The header that binds a presigned request to one idbot service. */
export const AUDIENCE_HEADER = "x-idbot-audience";
/** How long a presigned request is accepted (STS's own limit on x-amz-date). */
export const MAX_REQUEST_AGE_SECONDS = 15 * 60;
/** Clock skew tolerated for an x-amz-date in the future. */
const FUTURE_LEEWAY_SECONDS = 5 * 60;
const STS_TIMEOUT_MS = 5000;
const MAX_STS_RESPONSE_BYTES = 64 * 1024;

const REGION = "[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\\d{1,2}";
/** The default allow-list: the global endpoint and the regional and FIPS endpoints of every
 *  region, commercial, GovCloud and China (https on port 443 only). */
const DEFAULT_STS_HOST = new RegExp(
  `^(?:sts\\.amazonaws\\.com|sts(?:-fips)?\\.${REGION}\\.amazonaws\\.com|sts\\.cn-[a-z]+-\\d\\.amazonaws\\.com\\.cn)$`,
);

/** Headers a presigned request may carry; anything else is refused, never forwarded. */
const FORWARDED_HEADERS = new Set([
  "host",
  "x-amz-date",
  "authorization",
  "content-type",
  "content-length",
  "x-amz-security-token",
  "x-amz-content-sha256",
  AUDIENCE_HEADER,
  // A random value the client signs so that concurrent requests never coincide.
  "x-idbot-nonce",
]);

const hostPort = z
  .string()
  .transform((s) => s.trim().toLowerCase())
  .refine(
    (s) =>
      /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/.test(
        s,
      ),
    {
      message:
        'an STS endpoint is a host name with an optional port, without https:// (for example "sts.eu-west-1.amazonaws.com")',
    },
  );

// YAML reads an unquoted account id as a number (and drops a leading zero): accept only
// a full 12-digit number, and ask for quotes otherwise.
const account = z.union([z.string().min(1).max(64), z.number().int()]).transform((v, ctx) => {
  if (typeof v === "number" && String(v).length !== 12) {
    ctx.addIssue({
      code: "custom",
      message: 'quote the AWS account id ("012345678901"): unquoted, YAML reads it as a number',
    });
    return z.NEVER;
  }
  return String(v);
});

export const IAM_RULE_FIELDS = ["aws_account", "aws_arn"] as const;

export const IamRuleSchema = z
  .strictObject({
    /** The 12-digit account id; `*`/`?` globs allowed. */
    aws_account: account.optional(),
    /** The caller ARN STS returns, e.g. arn:aws:sts::123456789012:assumed-role/ci/*; globs allowed. */
    aws_arn: z.string().min(1).max(2048).optional(),
  })
  .refine((r) => r.aws_account !== undefined || r.aws_arn !== undefined, {
    message: "an iam allow rule needs aws_account or aws_arn; an empty rule would admit every AWS identity",
  });

export const IamTokenSpecSchema = z.strictObject({
  /** The value the signed x-idbot-audience header must carry (default: the service's public URL). */
  audience: z.string().min(1).optional(),
  /** STS hosts (host or host:port) presigned requests may go to, https only. Replaces the
   *  default: sts.amazonaws.com and sts.REGION.amazonaws.com / sts-fips.REGION.amazonaws.com. */
  sts_endpoints: z.array(hostPort).min(1).max(64).optional(),
  allow: z.array(IamRuleSchema).min(1, "an iam token needs at least one allow rule"),
});
export type IamTokenSpec = z.output<typeof IamTokenSpecSchema>;

/** What the client sends in `id_token`: the presigned request, as JSON. */
const ProofSchema = z.strictObject({
  method: z.string().max(16),
  url: z.string().max(512),
  headers: z.record(z.string().max(64), z.string().max(8192)),
  body: z.string().max(1024),
});
export type IamProof = z.infer<typeof ProofSchema>;

/** Why a proof is malformed: the job sent something that is not a presigned request. */
const bad = (message: string, hint?: string) => new JoinError("bad_request", message, hint);
/** Why a well-formed request is refused without being forwarded. */
const refuse = (message: string) =>
  denied(
    `the presigned request was not forwarded to STS: ${message}`,
    "Let idbot sign the request (idbot join --join-method iam); it must be exactly sts:GetCallerIdentity to an allowed STS endpoint.",
  );

interface CheckedRequest {
  url: URL;
  headers: Record<string, string>;
  signature: string;
  amzDate: Date;
}

function parseAmzDate(s: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return undefined;
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, se));
  return t.getUTCMonth() === mo - 1 && t.getUTCDate() === d ? t : undefined;
}

function hostAllowed(spec: IamTokenSpec, url: URL): boolean {
  const host = url.host.toLowerCase();
  if (spec.sts_endpoints) return spec.sts_endpoints.includes(host);
  return url.port === "" && DEFAULT_STS_HOST.test(url.hostname.toLowerCase());
}

/** Every check made before anything is sent: the request must be exactly a SigV4-signed
 *  GetCallerIdentity to an allowed STS host over https, bound to this audience, and fresh. */
export function checkPresignedRequest(
  spec: IamTokenSpec,
  proofString: string,
  audience: string | undefined,
  now: Date,
): CheckedRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(proofString);
  } catch {
    throw bad(
      "the iam proof is not JSON (a presigned sts:GetCallerIdentity request)",
      "Join with idbot join --join-method iam, which signs the request.",
    );
  }
  const parsed = ProofSchema.safeParse(raw);
  if (!parsed.success)
    throw bad(
      `the iam proof is not a presigned request {method, url, headers, body}: ${parsed.error.issues[0]?.message ?? "invalid"}`,
    );
  const p = parsed.data;
  if (p.method !== "POST") throw refuse(`method ${JSON.stringify(p.method)} is not POST`);
  let url: URL;
  try {
    url = new URL(p.url);
  } catch {
    throw refuse("the URL is not a URL");
  }
  if (url.protocol !== "https:") throw refuse(`${url.protocol}// is not https://`);
  if (url.username || url.password) throw refuse("the URL carries credentials");
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "")
    throw refuse(`the URL must be https://HOST/ with no path or query, not ${p.url.slice(0, 200)}`);
  if (!hostAllowed(spec, url))
    throw refuse(
      `${url.host} is not an allowed STS endpoint (${spec.sts_endpoints ? spec.sts_endpoints.join(", ") : "sts.amazonaws.com, sts.REGION.amazonaws.com, sts-fips.REGION.amazonaws.com"})`,
    );
  if (p.body !== GET_CALLER_IDENTITY_BODY)
    throw refuse(
      `the body is not ${JSON.stringify(GET_CALLER_IDENTITY_BODY)} (only sts:GetCallerIdentity is forwarded)`,
    );

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(p.headers)) {
    const k = name.toLowerCase();
    if (k in headers) throw refuse(`the header ${k} appears twice`);
    if (!FORWARDED_HEADERS.has(k))
      throw refuse(`the header ${JSON.stringify(k.slice(0, 64))} is not allowed`);
    if (/[\r\n\0]/.test(value)) throw refuse(`the header ${k} holds a control character`);
    headers[k] = value;
  }
  if (headers.host?.toLowerCase() !== url.host.toLowerCase())
    throw refuse(
      `the signed host header ${JSON.stringify(headers.host ?? null)} is not the URL's host ${url.host}`,
    );
  const ct = headers["content-type"];
  if (ct !== undefined && !/^application\/x-www-form-urlencoded(;\s*charset=utf-8)?$/i.test(ct.trim()))
    throw refuse(`the content type ${JSON.stringify(ct)} is not application/x-www-form-urlencoded`);
  const cl = headers["content-length"];
  if (cl !== undefined && cl.trim() !== String(Buffer.byteLength(p.body)))
    throw refuse("the content-length header does not match the body");

  const auth =
    /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/.exec(
      headers.authorization ?? "",
    );
  if (!auth) throw refuse("the authorization header is not an AWS4-HMAC-SHA256 signature");
  const [, credential, signedList, signature] = auth as unknown as [string, string, string, string];
  const scope = credential.split("/");
  if (scope.length !== 5 || scope[3] !== "sts" || scope[4] !== "aws4_request")
    throw refuse("the signature's credential scope is not .../sts/aws4_request");
  const signed = signedList.split(";");
  for (const h of ["host", "x-amz-date", AUDIENCE_HEADER]) {
    if (!signed.includes(h)) throw refuse(`the signed headers do not include ${h}`);
  }
  for (const h of signed) {
    if (!(h in headers)) throw refuse(`the signed header ${h} is missing`);
  }

  const amzDate = parseAmzDate(headers["x-amz-date"] ?? "");
  if (!amzDate) throw refuse("x-amz-date is not YYYYMMDDTHHMMSSZ");
  if (scope[1] !== headers["x-amz-date"]!.slice(0, 8))
    throw refuse("the credential scope's date is not x-amz-date's date");
  const age = (now.getTime() - amzDate.getTime()) / 1000;
  if (age > MAX_REQUEST_AGE_SECONDS)
    throw denied(
      `the presigned request expired: it was signed at ${amzDate.toISOString()}, more than ${MAX_REQUEST_AGE_SECONDS / 60} minutes ago`,
      "Sign a fresh request for every join (idbot join does).",
    );
  if (-age > FUTURE_LEEWAY_SECONDS)
    throw denied(
      `the presigned request is dated in the future (${amzDate.toISOString()})`,
      "Check the clocks of the machine and the service.",
    );

  if (audience !== undefined && headers[AUDIENCE_HEADER] !== audience) {
    throw denied(
      `the presigned request is for ${JSON.stringify(headers[AUDIENCE_HEADER]?.slice(0, 200))}, not this service (${JSON.stringify(audience)})`,
      `Sign it with ${AUDIENCE_HEADER}: ${audience} (idbot join --audience defaults to the server URL), or set the join token's audience to match.`,
    );
  }
  return { url, headers, signature, amzDate };
}

interface StsAnswer {
  status: number;
  body: string;
}

function postToSts(req: CheckedRequest): Promise<StsAnswer> {
  const host = req.url.hostname.replace(/^\[|\]$/g, "");
  const headers: Record<string, string | number> = { ...req.headers, host: req.url.host };
  headers["content-length"] = Buffer.byteLength(GET_CALLER_IDENTITY_BODY);
  return new Promise((resolve, reject) => {
    const r = httpsRequest(
      {
        host,
        port: req.url.port || 443,
        method: "POST",
        path: "/",
        headers,
        servername: isIP(host) ? undefined : host,
        agent: false,
        signal: AbortSignal.timeout(STS_TIMEOUT_MS),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_STS_RESPONSE_BYTES) {
            res.destroy(new Error("the STS answer is too large"));
            return;
          }
          chunks.push(c);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    r.on("error", reject);
    r.end(GET_CALLER_IDENTITY_BODY);
  });
}

const XML_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
const unescapeXml = (s: string) => s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => XML_ENTITIES[e]!);

function element(xml: string, name: string): string | undefined {
  const all = [...xml.matchAll(new RegExp(`<${name}>([^<]*)</${name}>`, "g"))];
  return all.length === 1 ? unescapeXml(all[0]![1]!) : undefined;
}

/** The caller identity from STS's XML answer, exactly as AWS shapes it. */
export function parseCallerIdentity(
  xml: string,
): { arn: string; userId: string; account: string } | undefined {
  const m =
    /^\s*(?:<\?xml[^>]*\?>\s*)?<GetCallerIdentityResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">\s*<GetCallerIdentityResult>([\s\S]*?)<\/GetCallerIdentityResult>/.exec(
      xml,
    );
  if (!m) return undefined;
  const arn = element(m[1]!, "Arn");
  const userId = element(m[1]!, "UserId");
  const account = element(m[1]!, "Account");
  if (
    !arn ||
    !userId ||
    !account ||
    !/^\d{12}$/.test(account) ||
    !/^arn:aws[a-z-]*:(sts|iam)::\d{12}:/.test(arn)
  )
    return undefined;
  return { arn, userId, account };
}

function stsError(xml: string): string {
  const code = element(xml, "Code");
  const message = element(xml, "Message");
  return code ? `${code}${message ? `: ${message.slice(0, 300)}` : ""}` : "no error code";
}

/** Role and session of an assumed-role ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION). */
function roleOf(arn: string): { aws_role?: string; aws_role_session?: string } {
  const m = /^arn:aws[a-z-]*:sts::\d{12}:assumed-role\/(.+)\/([^/]+)$/.exec(arn);
  return m ? { aws_role: m[1]!.split("/").pop()!, aws_role_session: m[2]! } : {};
}

async function callerIdentity(req: CheckedRequest) {
  let answer: StsAnswer;
  try {
    answer = await postToSts(req);
  } catch (e) {
    throw new JoinError(
      "unavailable",
      `the service could not reach STS at ${req.url.host}`,
      "Retry later; the operator should check the service's access to STS.",
      String((e as Error).message),
    );
  }
  if (answer.status === 200) {
    const id = parseCallerIdentity(answer.body);
    if (!id)
      throw new JoinError(
        "unavailable",
        `STS at ${req.url.host} answered something that is not a GetCallerIdentity response`,
        undefined,
        answer.body.slice(0, 500),
      );
    return id;
  }
  if (answer.status >= 400 && answer.status < 500) {
    throw denied(
      `STS refused the presigned request (HTTP ${answer.status} ${stsError(answer.body)})`,
      "The request must be signed with valid, unexpired AWS credentials; sign a fresh one for every join.",
    );
  }
  throw new JoinError(
    "unavailable",
    `STS at ${req.url.host} answered HTTP ${answer.status}`,
    "Retry later.",
    answer.body.slice(0, 500),
  );
}

const KEPT_CLAIMS = new Set([
  "aws_account",
  "aws_arn",
  "aws_user_id",
  "aws_role",
  "aws_role_session",
  "sts_host",
]);

export const iamMethod: ClaimJoinMethod<IamTokenSpec> = {
  issuer: () => "aws-sts",
  async check(spec, proofString, ctx) {
    const now = ctx.now ?? new Date();
    const req = checkPresignedRequest(spec, proofString, spec.audience ?? ctx.defaultAudience, now);
    const id = await callerIdentity(req);
    const iat = Math.floor(req.amzDate.getTime() / 1000);
    const claims: Record<string, unknown> = {
      aws_account: id.account,
      aws_arn: id.arn,
      aws_user_id: id.userId,
      ...roleOf(id.arn),
      sts_host: req.url.host,
      iss: "aws-sts",
      // The signature is unique to this request; its hash is the replay key while STS
      // would still accept the request.
      jti: createHash("sha256").update(req.signature).digest("hex"),
      iat,
      exp: iat + MAX_REQUEST_AGE_SECONDS,
    };
    const verdicts = evaluateRules(spec.allow as Rule[], claims, "all");
    return { claims, verdicts, allowed: verdicts.some((v) => v.ok) };
  },
  rules: (spec) => spec.allow as Rule[],
  globFields: "all",
  keep: (c) => pick(c, KEPT_CLAIMS),
  subject: (c) => `aws_arn=${String(c.aws_arn).slice(0, 300)}`,
  shownClaims: ["aws_account", "aws_arn", "aws_user_id", "aws_role", "sts_host"],
};
