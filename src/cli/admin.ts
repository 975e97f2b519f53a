import { existsSync, readFileSync } from "node:fs";
import { CliError, parseCommand, required, say } from "./args.ts";

const USAGE = `
Usage: idbot admin <command> [options]

Commands:
  sign-host    sign an SSH host certificate with the service's host CA
  rotate-jwt   replace the JWT signing key, keeping the previous one in the JWKS

Run "idbot admin <command> --help" for a command's options.
`;

const SIGN_HOST_USAGE = `
Usage: idbot admin sign-host --data-dir DIR --host-key FILE --principals NAME[,NAME...] [--ttl DURATION] [--out FILE]

Signs the host's public key with the service's SSH host CA, so clients that carry the
"@cert-authority" line from a join's known_hosts verify the host with StrictHostKeyChecking.
Writes the certificate beside the key (KEY-cert.pub) unless --out is given.

Options:
  --data-dir DIR       the service's data directory (embedded store)
  --host-key FILE      the host's public key (e.g. /etc/ssh/ssh_host_ed25519_key.pub)
  --principals LIST    host names clients connect with, comma-separated
  --ttl DURATION       certificate lifetime (default 720h, at most 8760h)
  --out FILE           where to write the certificate

Example:
  idbot admin sign-host --data-dir /var/lib/idbot --host-key /etc/ssh/ssh_host_ed25519_key.pub \\
    --principals web01,web01.example.com
  # then in sshd_config: HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub
`;

export async function adminCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "sign-host":
      return signHost(rest);
    case "rotate-jwt":
      return rotateJwt(rest);
    case undefined:
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE.trim()}\n`);
      return sub === undefined ? 2 : 0;
    default:
      throw new CliError(`unknown admin command "${sub}"\n\n${USAGE.trim()}`);
  }
}

async function signHost(argv: string[]): Promise<number> {
  const args = parseCommand(
    argv,
    {
      "data-dir": { type: "string" },
      "host-key": { type: "string" },
      principals: { type: "string" },
      ttl: { type: "string", default: "720h" },
      out: { type: "string" },
    },
    SIGN_HOST_USAGE,
  );
  if (!args) return 0;
  const v = args.values;
  const dataDir = required(v["data-dir"], "--data-dir");
  let keyFile = required(v["host-key"], "--host-key");
  const principals = required(v.principals, "--principals")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (principals.length === 0) throw new CliError("--principals needs at least one host name");
  if (!keyFile.endsWith(".pub") && existsSync(`${keyFile}.pub`)) keyFile = `${keyFile}.pub`;
  const { parseDuration } = await import("../protocol/duration.ts");
  let ttl: number;
  try {
    ttl = parseDuration(v.ttl!);
  } catch (e) {
    throw new CliError(`--ttl: ${(e as Error).message}`);
  }
  if (ttl > 8760 * 3600) throw new CliError("--ttl may not exceed 8760h (one year)");
  let line: string;
  try {
    line = readFileSync(keyFile, "utf8").trim();
  } catch (e) {
    throw new CliError(
      `cannot read ${keyFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (line.includes("PRIVATE KEY")) {
    throw new CliError(`${keyFile} is a private key; give the public key (${keyFile}.pub)`);
  }
  const { openSqliteStore } = await import("../server/store/sqlite.ts");
  const { Authorities, createAuthorityRecord } = await import("../server/ca/authorities.ts");
  const { writeFileSync } = await import("node:fs");
  const store = openSqliteStore(dataDir);
  try {
    const auth = new Authorities(await store.loadOrCreateCAs((name) => createAuthorityRecord(name, "idbot")));
    const now = Math.floor(Date.now() / 1000);
    let cert: string;
    try {
      cert = auth.sshHost.sign({
        publicKey: line,
        certType: "host",
        keyId: `host=${principals[0]}`,
        principals,
        validAfter: now - 300,
        validBefore: now + ttl,
      });
    } catch (e) {
      throw new CliError(`${keyFile}: ${(e as Error).message}`);
    }
    const out = v.out ?? keyFile.replace(/\.pub$/, "-cert.pub");
    writeFileSync(out, `${cert}\n`, { mode: 0o644 });
    await store.appendAudit([
      {
        type: "cert.issued",
        time: new Date().toISOString(),
        data: { kind: "ssh_host", principals, key_file: keyFile },
      },
    ]);
    say(
      `wrote host certificate ${out} for ${principals.join(", ")}, valid until ${new Date((now + ttl) * 1000).toISOString()}`,
    );
    process.stdout.write(`${out}\n`);
    return 0;
  } finally {
    await store.close();
  }
}

const ROTATE_JWT_USAGE = `
Usage: idbot admin rotate-jwt --data-dir DIR

Makes a new JWT signing key current. The previous key stays in /.well-known/jwks.json, so
JWTs signed before the rotation keep verifying until they expire; the key before that is
dropped. A running service picks the new key up on SIGHUP.

Example:
  idbot admin rotate-jwt --data-dir /var/lib/idbot && systemctl reload idbot
`;

async function rotateJwt(argv: string[]): Promise<number> {
  const args = parseCommand(argv, { "data-dir": { type: "string" } }, ROTATE_JWT_USAGE);
  if (!args) return 0;
  const dataDir = required(args.values["data-dir"], "--data-dir");
  const { openSqliteStore } = await import("../server/store/sqlite.ts");
  const { Authorities, createAuthorityRecord } = await import("../server/ca/authorities.ts");
  const store = openSqliteStore(dataDir);
  try {
    const before = new Authorities(
      await store.loadOrCreateCAs((name) => createAuthorityRecord(name, "idbot")),
    );
    const next = createAuthorityRecord("jwt", "idbot");
    await store.rotateCA("jwt", next);
    await store.appendAudit([
      {
        type: "ca.rotated",
        time: new Date().toISOString(),
        data: { ca: "jwt", previous_kid: before.jwt.kid, kid: next.publicMaterial },
      },
    ]);
    say(
      `JWT signing key rotated: new kid ${next.publicMaterial}, previous kid ${before.jwt.kid} stays published; send SIGHUP to the service`,
    );
    process.stdout.write(`${next.publicMaterial}\n`);
    return 0;
  } finally {
    await store.close();
  }
}
