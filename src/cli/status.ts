// `idbot status DIR` and `idbot certs DIR` (like `tbot status` / `tbot certs`): what a
// join's directory holds and how long it stays valid, with a WARNING on stderr once a
// credential is past 80% of its lifetime (the exit status stays 0).

import {
  type CertificateInfo,
  evaluateHealth,
  IdentityDirError,
  type IdentityStatus,
  readIdentityDir,
} from "../client/status.ts";
import { formatDuration } from "../protocol/duration.ts";
import { CliError, EXIT, parseCommand, say } from "./args.ts";
import { parseFormat } from "./join.ts";

const STATUS_USAGE = `
Usage: idbot status DIR [--format text|json] [--at TIME]

Shows what the join in DIR holds: bot and instance, SSH principals, key id and validity,
the TLS subject and issuer, the Kubernetes user and groups, the database user, the SPIFFE
ID, the JWT-SVID's audience and expiry (decoded, not verified), and the time left. Prints
a WARNING to stderr once a credential is past 80% of its lifetime or has expired (the exit
status stays 0; --format json has "warning" and "expired").

Options:
  --format text|json   json for scripts and monitoring
  --at TIME            evaluate at TIME (RFC 3339 or Unix seconds) instead of now

Exit status: 0 read (even with a warning), 2 DIR is not an idbot join's directory.

Example:
  idbot status "$CI_PROJECT_DIR/.idbot"
  idbot status "$IDBOT_DIR" --format json | jq .seconds_left
`;

const CERTS_USAGE = `
Usage: idbot certs DIR [--format text|json]

Lists every certificate in the join's directory (SSH user certificate, TLS client
certificate and CA, Kubernetes client certificate and API server CA, database and SPIFFE
certificates): file, serial, subject, issuer, not-before, not-after and SHA-256 fingerprint.

Example:
  idbot certs "$IDBOT_DIR"
`;

/** RFC 3339 with a zone, or Unix seconds. */
function parseAt(text: string): Date {
  if (/^\d{1,12}$/.test(text)) return new Date(Number(text) * 1000);
  const ok = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(text);
  const d = new Date(text);
  if (!ok || Number.isNaN(d.getTime())) {
    throw new CliError(`--at "${text}" is not an RFC 3339 time or Unix seconds (e.g. 2026-11-23T14:05:00Z)`);
  }
  return d;
}

async function read(argv: string[], usage: string, extra: Record<string, { type: "string" }>) {
  const args = parseCommand(argv, { format: { type: "string" }, ...extra }, usage, true);
  if (!args) return undefined;
  const format = parseFormat(args.values.format as string | undefined);
  if (args.positionals.length !== 1) throw new CliError(`give one directory\n\n${usage.trim()}`);
  let status: IdentityStatus;
  try {
    status = await readIdentityDir(args.positionals[0]!);
  } catch (e) {
    if (e instanceof IdentityDirError) throw new CliError(e.message);
    throw e;
  }
  return { status, format, values: args.values as Record<string, string | undefined> };
}

const left = (iso: string, now: Date) => {
  const s = Math.floor((Date.parse(iso) - now.getTime()) / 1000);
  return s > 0 ? `${formatDuration(s)} left` : `expired ${formatDuration(-s || 0)} ago`;
};

export async function statusCommand(argv: string[]): Promise<number> {
  const r = await read(argv, STATUS_USAGE, { at: { type: "string" } });
  if (!r) return EXIT.ok;
  const { status: s, format } = r;
  const now = r.values.at ? parseAt(r.values.at) : new Date();
  const health = evaluateHealth(s, now);
  if (health.warning) say(`WARNING: ${health.warning}`);
  if (format === "json") {
    const { certificates: _certs, ...rest } = s;
    process.stdout.write(
      `${JSON.stringify({ ...rest, ...health, warning: health.warning ?? null, checked_at: now.toISOString() }, null, 2)}\n`,
    );
    return EXIT.ok;
  }
  const out: string[] = [];
  out.push(`Directory   ${s.dir}`);
  out.push(`Bot         ${s.bot_name ?? "-"}${s.bot_instance_id ? ` (instance ${s.bot_instance_id})` : ""}`);
  if (s.server)
    out.push(`Service     ${s.server} (token ${s.token ?? "-"}, join method ${s.join_method ?? "-"})`);
  if (s.joined_at) out.push(`Joined      ${s.joined_at}`);
  if (health.expires_at) {
    out.push(
      `Expires     ${health.expires_at} (${left(health.expires_at, now)}, ${Math.round((health.elapsed_fraction ?? 0) * 100)}% of ${formatDuration(health.lifetime_seconds ?? 0)} used)`,
    );
  }
  if (s.ssh) {
    out.push("", `SSH user certificate (${s.ssh.file})`);
    out.push(`  principals  ${s.ssh.principals.join(", ") || "(none)"}`);
    out.push(`  key id      ${s.ssh.key_id}`);
    out.push(`  serial      ${s.ssh.serial}`);
    out.push(
      `  valid       ${s.ssh.valid_after} to ${s.ssh.valid_before} (${left(s.ssh.valid_before, now)})`,
    );
    out.push(`  issuer      ${s.ssh.ca_fingerprint}`);
  }
  if (s.tls) {
    out.push("", `TLS client certificate (${s.tls.file})`);
    out.push(`  subject     ${s.tls.subject}`);
    out.push(`  issuer      ${s.tls.issuer}`);
    out.push(`  valid       ${s.tls.not_before} to ${s.tls.not_after} (${left(s.tls.not_after, now)})`);
  }
  if (s.kubernetes) {
    const k = s.kubernetes;
    out.push("", `Kubernetes (${k.file})`);
    out.push(`  cluster     ${k.cluster ?? "-"}${k.server ? ` at ${k.server}` : ""}`);
    out.push(`  user        ${k.user}`);
    out.push(`  groups      ${k.groups.join(", ") || "(none)"}`);
    out.push(`  expires     ${k.not_after} (${left(k.not_after, now)})`);
  }
  if (s.database) {
    out.push("", `Database (${s.database.file})`);
    out.push(`  user        ${s.database.user}`);
    out.push(`  issuer      ${s.database.issuer}`);
    out.push(`  expires     ${s.database.not_after} (${left(s.database.not_after, now)})`);
  }
  if (s.spiffe) {
    out.push("", `SPIFFE X.509-SVID (${s.spiffe.file})`);
    out.push(`  SPIFFE ID   ${s.spiffe.spiffe_id}`);
    out.push(`  expires     ${s.spiffe.not_after} (${left(s.spiffe.not_after, now)})`);
  }
  if (s.jwt) {
    out.push("", `JWT-SVID (${s.jwt.file})`);
    out.push(`  subject     ${s.jwt.subject ?? "-"}`);
    out.push(`  audience    ${s.jwt.audiences.join(", ")}`);
    if (s.jwt.issuer) out.push(`  issuer      ${s.jwt.issuer}`);
    if (s.jwt.expires_at) out.push(`  expires     ${s.jwt.expires_at} (${left(s.jwt.expires_at, now)})`);
  }
  if (health.warning) out.push("", `WARNING: ${health.warning}`);
  process.stdout.write(`${out.join("\n")}\n`);
  return EXIT.ok;
}

export async function certsCommand(argv: string[]): Promise<number> {
  const r = await read(argv, CERTS_USAGE, {});
  if (!r) return EXIT.ok;
  const certs: CertificateInfo[] = r.status.certificates;
  if (r.format === "json") {
    process.stdout.write(`${JSON.stringify({ dir: r.status.dir, certificates: certs }, null, 2)}\n`);
    return EXIT.ok;
  }
  const out: string[] = [];
  for (const c of certs) {
    out.push(`${c.file}: ${c.role}`);
    out.push(`  serial       ${c.serial}`);
    out.push(`  subject      ${c.subject}`);
    out.push(`  issuer       ${c.issuer}`);
    if (c.names.length > 0)
      out.push(`  ${c.format === "ssh" ? "principals  " : "names       "} ${c.names.join(", ")}`);
    out.push(`  not before   ${c.not_before}`);
    out.push(`  not after    ${c.not_after}`);
    out.push(`  fingerprint  ${c.fingerprint}`);
    out.push("");
  }
  if (certs.length === 0) out.push(`no certificates in ${r.status.dir}`, "");
  process.stdout.write(out.join("\n"));
  return EXIT.ok;
}
