// Stand-ins for AWS on loopback, following the real protocols byte for byte:
//
// STS (HTTPS with the test CA): POST / with a form body, authenticated by AWS Signature
// Version 4 (Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/sts/aws4_request,
// SignedHeaders=..., Signature=...). It recomputes the signature from the request it
// received (canonical request: method, path, empty query, the signed headers lowercased
// and trimmed, the payload's SHA-256; string to sign with x-amz-date and the scope; the
// signing key derived from "AWS4" + secret key), checks x-amz-date is within 15 minutes and
// a session token where the key needs one, and answers Action=GetCallerIdentity exactly as
// sts.amazonaws.com does (XML, namespace https://sts.amazonaws.com/doc/2011-06-15/). Errors
// are AWS's ErrorResponse XML with HTTP 403 (SignatureDoesNotMatch, InvalidClientTokenId,
// SignatureDoesNotMatch "Signature expired", ...) or 400 (InvalidAction). It knows a small
// table of access keys and counts every request it receives.
//
// IMDSv2 (plain HTTP, like 169.254.169.254): PUT /latest/api/token with
// X-aws-ec2-metadata-token-ttl-seconds (1-21600) returns a session token; GET
// /latest/meta-data/iam/security-credentials/ lists the role and .../ROLE returns its
// credentials JSON, only with a valid X-aws-ec2-metadata-token header (401 otherwise).
// Requests carrying X-Forwarded-For are refused, as EC2 does.
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";

export interface AwsIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  account: string;
  arn: string;
  userId: string;
}

export interface FakeSts {
  host: string;
  url: string;
  region: string;
  /** Every request received, valid or not. */
  requests: number;
  identities: AwsIdentity[];
  close(): Promise<void>;
}

const NS = "https://sts.amazonaws.com/doc/2011-06-15/";
const sha256 = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");
const hmac = (key: Buffer | string, s: string) => createHmac("sha256", key).update(s, "utf8").digest();
const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function errorXml(type: string, code: string, message: string): string {
  return `<ErrorResponse xmlns="${NS}">\n  <Error>\n    <Type>${type}</Type>\n    <Code>${code}</Code>\n    <Message>${xml(message)}</Message>\n  </Error>\n  <RequestId>${randomUUID()}</RequestId>\n</ErrorResponse>\n`;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function amzTime(s: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : undefined;
}

/** Verifies SigV4 as STS does; returns the caller or an [HTTP status, error XML]. */
function authenticate(
  req: IncomingMessage,
  body: Buffer,
  region: string,
  identities: AwsIdentity[],
): AwsIdentity | [number, string] {
  const auth =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(
      String(req.headers.authorization ?? ""),
    );
  if (!auth)
    return [403, errorXml("Sender", "MissingAuthenticationToken", "Request is missing Authentication Token")];
  const [, akid, date, scopeRegion, service, signedList, signature] = auth as unknown as string[];
  const who = identities.find((i) => i.accessKeyId === akid);
  if (!who)
    return [
      403,
      errorXml("Sender", "InvalidClientTokenId", "The security token included in the request is invalid."),
    ];
  if (service !== "sts" || scopeRegion !== region)
    return [
      403,
      errorXml(
        "Sender",
        "SignatureDoesNotMatch",
        `Credential should be scoped to a valid region, not '${scopeRegion}'. `,
      ),
    ];
  const amzDate = String(req.headers["x-amz-date"] ?? "");
  const t = amzTime(amzDate);
  if (t === undefined || amzDate.slice(0, 8) !== date)
    return [403, errorXml("Sender", "IncompleteSignature", "Date must be in ISO-8601 'basic format'.")];
  if (Math.abs(Date.now() - t) > 15 * 60_000)
    return [
      403,
      errorXml(
        "Sender",
        "SignatureDoesNotMatch",
        `Signature expired: ${amzDate} is now earlier than ${new Date(Date.now() - 15 * 60_000)
          .toISOString()
          .replace(/[-:]/g, "")
          .replace(/\.\d{3}/, "")} (${new Date().toISOString()} - 15 min.)`,
      ),
    ];
  const signed = signedList!.split(";");
  if (!signed.includes("host"))
    return [
      403,
      errorXml(
        "Sender",
        "SignatureDoesNotMatch",
        "'Host' must be a 'SignedHeader' in the AWS Authorization.",
      ),
    ];
  const canonicalHeaders = signed
    .map((h) => {
      const v = req.headers[h];
      return `${h}:${(Array.isArray(v) ? v.join(",") : (v ?? "")).trim().replace(/\s+/g, " ")}\n`;
    })
    .join("");
  const [path, query = ""] = (req.url ?? "/").split("?");
  const canonical = [req.method, path, query, canonicalHeaders, signedList, sha256(body)].join("\n");
  const toSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    `${date}/${scopeRegion}/sts/aws4_request`,
    sha256(canonical),
  ].join("\n");
  let key = hmac(`AWS4${who.secretAccessKey}`, date!);
  for (const part of [scopeRegion!, "sts", "aws4_request"]) key = hmac(key, part);
  const expected = createHmac("sha256", key).update(toSign, "utf8").digest();
  const given = Buffer.from(signature!, "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected))
    return [
      403,
      errorXml(
        "Sender",
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
      ),
    ];
  if (who.sessionToken !== undefined && req.headers["x-amz-security-token"] !== who.sessionToken)
    return [
      403,
      errorXml("Sender", "InvalidClientTokenId", "The security token included in the request is invalid."),
    ];
  return who;
}

export async function startFakeSts(opts: {
  tlsCertFile: string;
  tlsKeyFile: string;
  identities: AwsIdentity[];
  region?: string;
}): Promise<FakeSts> {
  const region = opts.region ?? "us-east-1";
  const state = { requests: 0 };
  const server = createServer(
    { cert: await readFile(opts.tlsCertFile), key: await readFile(opts.tlsKeyFile) },
    async (req, res) => {
      state.requests++;
      const body = await readBody(req);
      const send = (status: number, text: string) => {
        res.writeHead(status, { "content-type": "text/xml", "x-amzn-requestid": randomUUID() });
        res.end(text);
      };
      const who = authenticate(req, body, region, opts.identities);
      if (Array.isArray(who)) return send(who[0], who[1]);
      const form = new URLSearchParams(
        req.method === "POST" ? body.toString("utf8") : (req.url ?? "").split("?")[1],
      );
      if (form.get("Action") !== "GetCallerIdentity" || form.get("Version") !== "2011-06-15")
        return send(
          400,
          errorXml(
            "Sender",
            "InvalidAction",
            `Could not find operation ${form.get("Action")} for version ${form.get("Version")}`,
          ),
        );
      send(
        200,
        `<GetCallerIdentityResponse xmlns="${NS}">\n  <GetCallerIdentityResult>\n    <Arn>${xml(who.arn)}</Arn>\n    <UserId>${xml(who.userId)}</UserId>\n    <Account>${who.account}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>${randomUUID()}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n`,
      );
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    url: `https://${host}`,
    region,
    get requests() {
      return state.requests;
    },
    identities: opts.identities,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface FakeImds {
  url: string;
  requests: { token: number; credentials: number; refused: number };
  close(): Promise<void>;
}

/** An EC2 instance metadata service (IMDSv2 only) serving one role's credentials. */
export async function startFakeImds(opts: { role: string; identity: AwsIdentity }): Promise<FakeImds> {
  const sessions = new Map<string, number>();
  const requests = { token: 0, credentials: 0, refused: 0 };
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const text = (status: number, body: string, type = "text/plain") => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (req.headers["x-forwarded-for"] !== undefined) {
      requests.refused++;
      return text(403, "Forbidden");
    }
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/latest/api/token") {
      if (req.method !== "PUT") return text(405, "Method Not Allowed");
      const ttl = Number(req.headers["x-aws-ec2-metadata-token-ttl-seconds"]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return text(400, "Bad Request");
      requests.token++;
      const token = randomBytes(40).toString("base64");
      sessions.set(token, Date.now() + ttl * 1000);
      return text(200, token);
    }
    const session = req.headers["x-aws-ec2-metadata-token"];
    const until = typeof session === "string" ? sessions.get(session) : undefined;
    if (until === undefined || until < Date.now()) {
      requests.refused++;
      return text(401, "Unauthorized");
    }
    if (req.method !== "GET") return text(405, "Method Not Allowed");
    if (path === "/latest/meta-data/iam/security-credentials/") return text(200, opts.role);
    if (path === `/latest/meta-data/iam/security-credentials/${opts.role}`) {
      requests.credentials++;
      const now = new Date();
      return text(
        200,
        JSON.stringify(
          {
            Code: "Success",
            LastUpdated: now.toISOString().replace(/\.\d{3}/, ""),
            Type: "AWS-HMAC",
            AccessKeyId: opts.identity.accessKeyId,
            SecretAccessKey: opts.identity.secretAccessKey,
            Token: opts.identity.sessionToken,
            Expiration: new Date(now.getTime() + 6 * 3600_000).toISOString().replace(/\.\d{3}/, ""),
          },
          null,
          2,
        ),
      );
    }
    return text(404, "Not Found");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
