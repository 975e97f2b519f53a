// What an identity directory holds, read back from its files (`idbot status`, `idbot
// certs`): the bot and instance from the join record, SSH principals and validity from
// key-cert.pub, TLS subjects from the PEM files, the Kubernetes user and groups from the
// kubeconfig's certificate, the SPIFFE ID, the JWT-SVID's audience and expiry (decoded,
// not verified). evaluateHealth() applies the monitoring threshold: a warning once a
// credential is past 80% of its lifetime.
import { X509Certificate } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open } from "node:fs/promises";
import { join, resolve } from "node:path";
import { decodeJwt } from "jose";
import { parse as parseYaml } from "yaml";
import { formatDuration } from "../protocol/duration.ts";
import { parseCertificateLine, sshFingerprint } from "../protocol/ssh.ts";
import { MANIFEST_NAME, readManifest } from "./files.ts";
import { type JoinRecord, readJoinRecord } from "./record.ts";

/** One certificate, SSH or X.509, as `idbot certs` lists it. */
export interface CertificateInfo {
  /** Path relative to the directory ("kubernetes/kubeconfig.yaml#client-certificate-data" for embedded ones). */
  file: string;
  /** What it is: "SSH user certificate", "TLS client certificate", "TLS CA", ... */
  role: string;
  format: "ssh" | "x509";
  serial: string;
  subject: string;
  issuer: string;
  not_before: string;
  not_after: string;
  /** SHA-256: X.509 DER fingerprint (AA:BB:..), or the certified SSH key's SHA256:... */
  fingerprint: string;
  /** Subject alternative names (X.509), principals (SSH). */
  names: string[];
  /** A leaf credential (counts for expiry), not a CA. */
  leaf: boolean;
}

export interface IdentityStatus {
  dir: string;
  bot_name?: string;
  bot_instance_id?: string;
  joined_at?: string;
  join_method?: string;
  server?: string;
  token?: string;
  ssh?: {
    file: string;
    key_id: string;
    principals: string[];
    serial: string;
    valid_after: string;
    valid_before: string;
    ca_fingerprint: string;
  };
  tls?: { file: string; subject: string; issuer: string; not_before: string; not_after: string };
  kubernetes?: {
    file: string;
    cluster?: string;
    server?: string;
    user: string;
    groups: string[];
    not_after: string;
  };
  database?: { file: string; user: string; issuer: string; not_after: string };
  spiffe?: { file: string; spiffe_id: string; not_after: string };
  jwt?: {
    file: string;
    subject?: string;
    audiences: string[];
    issuer?: string;
    issued_at?: string;
    expires_at?: string;
  };
  certificates: CertificateInfo[];
}

export class IdentityDirError extends Error {
  override name = "IdentityDirError";
}

const MAX_FILE_BYTES = 1 << 20;

/** Reads a regular file under dir without following a symlink; undefined when absent. */
async function readInside(dir: string, rel: string): Promise<string | undefined> {
  const path = join(dir, ...rel.split("/"));
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw e;
  }
  if (!st.isFile()) throw new IdentityDirError(`${path} is not a regular file (symbolic link?)`);
  if (st.size > MAX_FILE_BYTES) throw new IdentityDirError(`${path} is larger than ${MAX_FILE_BYTES} bytes`);
  const fh = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  try {
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}

const iso = (s: string) => new Date(Date.parse(s)).toISOString();
const oneLine = (dn: string) => dn.split("\n").filter(Boolean).join(", ");

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function x509Info(cert: X509Certificate, file: string, role: string, leaf: boolean): CertificateInfo {
  return {
    file,
    role,
    format: "x509",
    serial: cert.serialNumber,
    subject: oneLine(cert.subject),
    issuer: oneLine(cert.issuer),
    not_before: iso(cert.validFrom),
    not_after: iso(cert.validTo),
    fingerprint: cert.fingerprint256,
    names: cert.subjectAltName ? cert.subjectAltName.split(", ") : [],
    leaf,
  };
}

/** The first value of an attribute in an RFC 2253-ish multi-line DN ("CN=deploy\nO=a"). */
function dnValues(dn: string, attr: string): string[] {
  return dn
    .split("\n")
    .filter((l) => l.startsWith(`${attr}=`))
    .map((l) => l.slice(attr.length + 1));
}

export async function readIdentityDir(rawDir: string): Promise<IdentityStatus> {
  const dir = resolve(rawDir);
  const st = await lstat(dir).catch(() => undefined);
  if (st === undefined) throw new IdentityDirError(`${dir} does not exist`);
  if (!st.isDirectory()) throw new IdentityDirError(`${dir} is not a directory`);
  const manifest = await readManifest(dir);
  if (manifest === undefined) {
    throw new IdentityDirError(`${dir} holds no ${MANIFEST_NAME}: it is not a directory an idbot join wrote`);
  }
  const record: JoinRecord | undefined = await readJoinRecord(dir).catch(() => undefined);
  const status: IdentityStatus = { dir, certificates: [] };
  if (record) {
    status.bot_name = record.joined.bot_name;
    status.bot_instance_id = record.joined.bot_instance_id;
    status.joined_at = record.joined.at;
    status.join_method = record.joined.join_method;
    status.server = record.settings.server;
    status.token = record.settings.token;
  }
  const certs = status.certificates;
  const problem = (file: string, e: unknown) =>
    new IdentityDirError(`${join(dir, file)}: ${(e as Error).message}`);

  const sshFile = "identity/key-cert.pub";
  const sshLine = await readInside(dir, sshFile);
  if (sshLine !== undefined) {
    try {
      const c = parseCertificateLine(sshLine.trim());
      const after = new Date(c.validAfter * 1000).toISOString();
      const before = new Date(Math.min(c.validBefore, 253402300799) * 1000).toISOString();
      status.ssh = {
        file: sshFile,
        key_id: c.keyId,
        principals: c.principals,
        serial: c.serial.toString(),
        valid_after: after,
        valid_before: before,
        ca_fingerprint: sshFingerprint(c.signatureKey),
      };
      certs.push({
        file: sshFile,
        role: `SSH ${c.certType} certificate`,
        format: "ssh",
        serial: c.serial.toString(),
        subject: c.keyId,
        issuer: sshFingerprint(c.signatureKey),
        not_before: after,
        not_after: before,
        fingerprint: sshFingerprint(c.publicKeyBlob),
        names: c.principals,
        leaf: true,
      });
    } catch (e) {
      throw problem(sshFile, e);
    }
  }

  const pemFiles: Array<[file: string, role: string, leaf: boolean]> = [
    ["identity/tlscert", "TLS client certificate", true],
    ["identity/tls-ca.pem", "TLS CA", false],
    ["database/tls.crt", "database client certificate", true],
    ["database/ca.crt", "database server CA", false],
    ["spiffe/svid.pem", "SPIFFE X.509-SVID", true],
    ["spiffe/svid_bundle.pem", "SPIFFE trust bundle", false],
  ];
  for (const [file, role, leaf] of pemFiles) {
    const text = await readInside(dir, file);
    if (text === undefined) continue;
    const blocks = pemBlocks(text);
    if (blocks.length === 0) throw problem(file, new Error("holds no PEM certificate"));
    for (const [i, pem] of blocks.entries()) {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(pem);
      } catch (e) {
        throw problem(file, e);
      }
      const info = x509Info(cert, file, role, leaf && i === 0);
      certs.push(info);
      if (i !== 0) continue;
      if (file === "identity/tlscert") {
        status.tls = {
          file,
          subject: info.subject,
          issuer: info.issuer,
          not_before: info.not_before,
          not_after: info.not_after,
        };
        status.bot_name ??= dnValues(cert.subject, "CN")[0];
      } else if (file === "database/tls.crt") {
        status.database = {
          file,
          user: dnValues(cert.subject, "CN")[0] ?? "",
          issuer: info.issuer,
          not_after: info.not_after,
        };
      } else if (file === "spiffe/svid.pem") {
        const id = info.names.find((n) => n.startsWith("URI:spiffe://"));
        status.spiffe = { file, spiffe_id: id?.slice(4) ?? "", not_after: info.not_after };
      }
    }
  }

  const kubeFile = "kubernetes/kubeconfig.yaml";
  const kubeText = await readInside(dir, kubeFile);
  if (kubeText !== undefined) {
    try {
      const kc = parseYaml(kubeText) as {
        clusters?: { name?: string; cluster?: Record<string, string> }[];
        users?: { user?: Record<string, string> }[];
      };
      const cluster = kc.clusters?.[0];
      const userPem = Buffer.from(
        kc.users?.[0]?.user?.["client-certificate-data"] ?? "",
        "base64",
      ).toString();
      const client = new X509Certificate(userPem);
      const info = x509Info(
        client,
        `${kubeFile}#client-certificate-data`,
        "Kubernetes client certificate",
        true,
      );
      certs.push(info);
      const caData = cluster?.cluster?.["certificate-authority-data"];
      if (caData) {
        for (const pem of pemBlocks(Buffer.from(caData, "base64").toString())) {
          certs.push(
            x509Info(
              new X509Certificate(pem),
              `${kubeFile}#certificate-authority-data`,
              "Kubernetes API server CA",
              false,
            ),
          );
        }
      }
      status.kubernetes = {
        file: kubeFile,
        cluster: cluster?.name,
        server: cluster?.cluster?.server,
        user: dnValues(client.subject, "CN")[0] ?? "",
        groups: dnValues(client.subject, "O"),
        not_after: info.not_after,
      };
    } catch (e) {
      throw problem(kubeFile, e);
    }
  }

  const jwtFile = "spiffe/jwt_svid.token";
  const jwt = await readInside(dir, jwtFile);
  if (jwt !== undefined) {
    try {
      const c = decodeJwt(jwt.trim());
      status.jwt = {
        file: jwtFile,
        subject: c.sub,
        audiences: c.aud === undefined ? [] : Array.isArray(c.aud) ? c.aud : [c.aud],
        issuer: c.iss,
        issued_at: typeof c.iat === "number" ? new Date(c.iat * 1000).toISOString() : undefined,
        expires_at: typeof c.exp === "number" ? new Date(c.exp * 1000).toISOString() : undefined,
      };
    } catch (e) {
      throw problem(jwtFile, e);
    }
  }
  return status;
}

export interface Health {
  /** The earliest expiry of the directory's credentials. */
  expires_at?: string;
  seconds_left?: number;
  /** Lifetime (not-before to not-after) of the credential expiring first. */
  lifetime_seconds?: number;
  /** Share of that lifetime already gone, 0..1 (above 1 once expired). */
  elapsed_fraction?: number;
  expired: boolean;
  /** Set past the threshold (default 80% of the lifetime) or once expired. */
  warning?: string;
}

/** The seed's monitoring threshold: certificate age above 80% of its TTL. */
export const WARN_FRACTION = 0.8;

export function evaluateHealth(status: IdentityStatus, now: Date, threshold = WARN_FRACTION): Health {
  const windows: { from: number; to: number; what: string }[] = status.certificates
    .filter((c) => c.leaf)
    .map((c) => ({ from: Date.parse(c.not_before), to: Date.parse(c.not_after), what: c.file }));
  if (status.jwt?.expires_at) {
    const exp = Date.parse(status.jwt.expires_at);
    const iat = Date.parse(status.jwt.issued_at ?? status.joined_at ?? "") || exp;
    windows.push({ from: Math.min(iat, exp), to: exp, what: status.jwt.file });
  }
  if (windows.length === 0) return { expired: false };
  const first = windows.reduce((a, b) => (b.to < a.to ? b : a));
  const t = now.getTime();
  const lifetime = Math.max(1, first.to - first.from);
  const fraction = (t - first.from) / lifetime;
  const left = Math.floor((first.to - t) / 1000);
  const health: Health = {
    expires_at: new Date(first.to).toISOString(),
    seconds_left: left,
    lifetime_seconds: Math.round(lifetime / 1000),
    elapsed_fraction: Math.round(fraction * 1000) / 1000,
    expired: left <= 0,
  };
  const renew = `renew with: idbot join --refresh ${status.dir}`;
  if (health.expired) {
    health.warning = `the credentials in ${status.dir} expired at ${health.expires_at} (${formatDuration(-left || 0)} ago; ${first.what}); ${renew}`;
  } else if (fraction >= threshold) {
    health.warning = `the credentials in ${status.dir} are past ${Math.round(threshold * 100)}% of their lifetime: ${formatDuration(left)} of ${formatDuration(Math.round(lifetime / 1000))} left (${first.what} expires at ${health.expires_at}); ${renew}`;
  }
  return health;
}
