// `idbot admin`: flags in, results out. The operations live in server/admin.ts (on the
// store, with --data-dir or --database on the service host) and are reached over HTTP with
// --server URL and an admin token (client/admin.ts); both print the same thing.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { InsecureUrlError, TransportError } from "../client/transport.ts";
import { ADMIN_TOKEN_ENV, type AdminApi, AdminApiError } from "../protocol/admin.ts";
import { CliError, EXIT, type Options, parseCommand, required, say } from "./args.ts";

const TARGET_HELP = `Where (exactly one):
  --data-dir DIR           on the service host: the embedded store
  --database URL           on the service host: the PostgreSQL store shared by replicas
                           (IDBOT_CA_PASSPHRASE decrypts its CA keys)
  --server URL             remotely, over HTTPS (http:// only to loopback), with an admin
                           token from IDBOT_ADMIN_TOKEN (preferred) or --admin-token TOKEN
  --ca PEM|FILE            with --server: the CA to trust for the service's HTTPS`;

const USAGE = `
Usage: idbot admin <command> [options]

Commands:
  tokens         one-time join secrets and bound-keypair tokens: add, ls, show, rm, edit
  bot-instances  joined bots: ls, show
  apply          store resources (YAML) in the service's store; they override the files
  audit          the audit trail: ls
  sign-host      sign an SSH host certificate with the service's host CA
  rotate-jwt     replace the JWT signing key, keeping the previous one in the JWKS
  admin-tokens   credentials for the remote admin API: add, ls, rm (service host only)

Every command takes --data-dir DIR (the embedded store) or --database postgres://... (the
store shared by replicas; IDBOT_CA_PASSPHRASE decrypts its CA keys) on the service host,
or --server URL with an admin token (IDBOT_ADMIN_TOKEN or --admin-token) from anywhere;
admin-tokens works on the service host only. Changes are audited with who made them.

Example:
  idbot admin admin-tokens add --data-dir /var/lib/idbot --name bootstrap   # on the service host
  IDBOT_ADMIN_TOKEN=... idbot admin tokens ls --server https://idbot.example.com

Run "idbot admin <command> --help" for a command's options.
`;

export async function adminCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "sign-host":
      return signHost(rest);
    case "rotate-jwt":
      return rotateJwt(rest);
    case "tokens":
      return tokensCommand(rest);
    case "bot-instances":
      return botInstancesCommand(rest);
    case "apply":
      return applyCommand(rest);
    case "audit":
      return auditCommand(rest);
    case "admin-tokens":
      return adminTokensCommand(rest);
    case undefined:
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE.trim()}\n`);
      return sub === undefined ? 2 : 0;
    default:
      throw new CliError(`unknown admin command "${sub}"\n\n${USAGE.trim()}`);
  }
}

// ---------------------------------------------------------------------------------------
// Where the operations run: the store on this host, or the service over HTTP.

const TARGET = {
  "data-dir": { type: "string" },
  database: { type: "string" },
  server: { type: "string" },
  "admin-token": { type: "string" },
  ca: { type: "string" },
} as const satisfies Options;

interface TargetFlags {
  "data-dir"?: string;
  database?: string;
  server?: string;
  "admin-token"?: string;
  ca?: string;
}

type Store = import("../server/store/store.ts").Store;

/** Exit code for a refused admin operation. */
function exitFor(status: number): number {
  if (status === 401 || status === 403) return EXIT.denied;
  if (status === 429 || status >= 500) return EXIT.unreachable;
  return EXIT.badInput;
}

function readCa(value: string): string {
  let pem = value;
  if (!value.includes("-----BEGIN")) {
    try {
      pem = readFileSync(value, "utf8");
    } catch (e) {
      throw new CliError(
        `--ca is neither PEM text nor a readable file (${(e as NodeJS.ErrnoException).code ?? "error"})`,
      );
    }
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new CliError("--ca holds no PEM CERTIFICATE block");
  return pem;
}

/** Runs `fn` with the admin operations at the place the flags name; maps refusals to exit codes. */
async function withAdmin<T>(
  v: TargetFlags,
  fn: (api: AdminApi, where: { remote: boolean; store?: Store }) => Promise<T>,
): Promise<T> {
  const given = (["data-dir", "database", "server"] as const).filter((k) => v[k]);
  if (given.length > 1) {
    throw new CliError(
      `give one of --data-dir, --database or --server, not ${given.map((g) => `--${g}`).join(" and ")}`,
    );
  }
  if (given.length === 0) {
    throw new CliError(
      "missing required flag --data-dir DIR (or --database postgres://... on the service host, or --server URL)",
    );
  }
  const mapped = (e: unknown): unknown => {
    if (e instanceof AdminApiError) return new CliError(e.message, exitFor(e.status), e.hint);
    if (e instanceof InsecureUrlError) return new CliError(e.message);
    if (e instanceof TransportError)
      return new CliError(
        e.message.replace('pass it with the "ca" input', "pass it with --ca"),
        EXIT.unreachable,
      );
    return e;
  };
  if (v.server) {
    const token = v["admin-token"] || process.env[ADMIN_TOKEN_ENV];
    if (!token) {
      throw new CliError(
        `--server needs an admin token: set ${ADMIN_TOKEN_ENV} (or pass --admin-token TOKEN)`,
        EXIT.badInput,
        "On the service host, create one with: idbot admin admin-tokens add --data-dir DIR --name NAME",
      );
    }
    const { remoteAdmin } = await import("../client/admin.ts");
    try {
      const api = remoteAdmin({ server: v.server, token, ...(v.ca ? { caPem: readCa(v.ca) } : {}) });
      return await fn(api, { remote: true });
    } catch (e) {
      throw mapped(e);
    }
  }
  if (v["admin-token"]) throw new CliError("--admin-token goes with --server (local commands need none)");
  if (v.ca) throw new CliError("--ca goes with --server");
  const { storeAdmin, localActor } = await import("../server/admin.ts");
  return withStore({ dataDir: v["data-dir"], database: v.database }, async (store) => {
    try {
      return await fn(storeAdmin(store, { actor: localActor() }), { remote: false, store });
    } catch (e) {
      throw mapped(e);
    }
  });
}

async function withStore<T>(
  where: { dataDir?: string; database?: string },
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const { openStore } = await import("../server/store/open.ts");
  let store: Store;
  try {
    store = await openStore(where.dataDir ? { dataDir: where.dataDir } : { database: where.database });
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function checkDuration(value: string, flag: string): Promise<number> {
  const { parseDuration } = await import("../protocol/duration.ts");
  try {
    return parseDuration(value);
  } catch (e) {
    throw new CliError(`${flag}: ${(e as Error).message}`);
  }
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const table = (rows: string[][]) => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
};

// ---------------------------------------------------------------------------------------

const SIGN_HOST_USAGE = `
Usage: idbot admin sign-host (--data-dir DIR | --database URL | --server URL) --host-key FILE --principals NAME[,NAME...] [--ttl DURATION] [--out FILE]

Signs the host's public key with the service's SSH host CA, so clients that carry the
"@cert-authority" line from a join's known_hosts verify the host with StrictHostKeyChecking.
Writes the certificate beside the key (KEY-cert.pub) unless --out is given. With --server
only the public key travels.

Options:
  --host-key FILE      the host's public key (e.g. /etc/ssh/ssh_host_ed25519_key.pub)
  --principals LIST    host names clients connect with, comma-separated
  --ttl DURATION       certificate lifetime (default 720h, at most 8760h)
  --out FILE           where to write the certificate

${TARGET_HELP}

Example:
  idbot admin sign-host --data-dir /var/lib/idbot --host-key /etc/ssh/ssh_host_ed25519_key.pub \\
    --principals web01,web01.example.com
  # then in sshd_config: HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub
`;

async function signHost(argv: string[]): Promise<number> {
  const args = parseCommand(
    argv,
    {
      ...TARGET,
      "host-key": { type: "string" },
      principals: { type: "string" },
      ttl: { type: "string", default: "720h" },
      out: { type: "string" },
    },
    SIGN_HOST_USAGE,
  );
  if (!args) return 0;
  const v = args.values;
  let keyFile = required(v["host-key"], "--host-key");
  const principals = required(v.principals, "--principals")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (principals.length === 0) throw new CliError("--principals needs at least one host name");
  if (!keyFile.endsWith(".pub") && existsSync(`${keyFile}.pub`)) keyFile = `${keyFile}.pub`;
  const ttl = await checkDuration(v.ttl!, "--ttl");
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
  return withAdmin(v, async (api) => {
    const r = await api.signHost({ public_key: line, principals, ttl: v.ttl!, key_file: keyFile });
    const file = v.out ?? keyFile.replace(/\.pub$/, "-cert.pub");
    writeFileSync(file, `${r.certificate}\n`, { mode: 0o644 });
    say(`wrote host certificate ${file} for ${principals.join(", ")}, valid until ${r.valid_until}`);
    out(file);
    return 0;
  });
}

const ROTATE_JWT_USAGE = `
Usage: idbot admin rotate-jwt (--data-dir DIR | --database URL | --server URL)

Makes a new JWT signing key current. The previous key stays in /.well-known/jwks.json, so
JWTs signed before the rotation keep verifying until they expire; the key before that is
dropped. A running service picks the new key up on SIGHUP; with --server the replica that
answers picks it up at once (send SIGHUP to any other replicas).

${TARGET_HELP}

Example:
  idbot admin rotate-jwt --data-dir /var/lib/idbot && systemctl reload idbot
`;

async function rotateJwt(argv: string[]): Promise<number> {
  const args = parseCommand(argv, { ...TARGET }, ROTATE_JWT_USAGE);
  if (!args) return 0;
  return withAdmin(args.values, async (api) => {
    const r = await api.rotateJwt();
    say(
      r.reloaded
        ? `JWT signing key rotated: new kid ${r.kid}, previous kid ${r.previous_kid} stays published; the service that answered uses it now, send SIGHUP to any other replicas`
        : `JWT signing key rotated: new kid ${r.kid}, previous kid ${r.previous_kid} stays published; send SIGHUP to the service`,
    );
    out(r.kid);
    return 0;
  });
}

const TOKENS_USAGE = `
Usage: idbot admin tokens <add|ls|show|rm|edit> (--data-dir DIR | --database URL | --server URL) [options]

  add  --bot NAME [--ttl 15m]     a one-time join secret, printed once on the last line of stdout
  ls [--format json]              one-time secrets (never the secret) and bound-keypair tokens
  show NAME|ID                    one token: status, bound public key, recovery count, lock
  rm ID                           delete a one-time secret
  edit NAME [--recovery-limit N] [--unlock] [--reset]
                                  a bound-keypair token: raise its recovery limit (applied
                                  tokens), unlock it after a copied-keypair lock, or forget
                                  its bound key so it registers again

${TARGET_HELP}

Example:
  idbot admin tokens add --data-dir /var/lib/idbot --bot edge --ttl 15m
  idbot join --server https://idbot.example.com --join-method token --token "$SECRET" --out /var/lib/idbot-bot
`;

async function tokensCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const args = parseCommand(
    rest,
    {
      ...TARGET,
      bot: { type: "string" },
      ttl: { type: "string", default: "15m" },
      "recovery-limit": { type: "string" },
      unlock: { type: "boolean" },
      reset: { type: "boolean" },
      format: { type: "string" },
    },
    TOKENS_USAGE,
    true,
  );
  if (!args) return 0;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(`${TOKENS_USAGE.trim()}\n`);
    return sub === undefined ? 2 : 0;
  }
  const v = args.values;
  const name = args.positionals[0];
  switch (sub) {
    case "add": {
      const bot = required(v.bot, "--bot");
      await checkDuration(v.ttl!, "--ttl");
      return withAdmin(v, async (api) => {
        const r = await api.addJoinSecret({ bot, ttl: v.ttl! });
        say(
          `one-time join secret ${r.id} for bot "${r.bot}", valid until ${r.expires_at}; it is shown once:`,
        );
        out(r.secret);
        return 0;
      });
    }
    case "ls":
      return withAdmin(v, async (api) => {
        const { join_secrets: tokens, bound_keypairs: bound } = await api.listTokens();
        if (v.format === "json") {
          out(JSON.stringify({ join_secrets: tokens, bound_keypairs: bound }, null, 2));
          return 0;
        }
        const now = new Date().toISOString();
        table([
          ["ID/NAME", "KIND", "BOT/INSTANCE", "STATUS"],
          ...tokens.map((t) => [
            t.id,
            "one-time",
            t.botName,
            t.usedAt ? `used ${t.usedAt}` : t.expiresAt <= now ? "expired" : `valid until ${t.expiresAt}`,
          ]),
          ...bound.map((b) => [
            b.tokenName,
            "bound_keypair",
            b.instanceId ?? "-",
            b.lockedReason ? `LOCKED: ${b.lockedReason}` : `bound, ${b.recoveryCount} joins`,
          ]),
        ]);
        return 0;
      });
    case "show": {
      if (!name) throw new CliError("tokens show needs a token NAME or ID");
      return withAdmin(v, async (api) => {
        out(JSON.stringify(await api.showToken(name), null, 2));
        return 0;
      });
    }
    case "rm": {
      if (!name) throw new CliError("tokens rm needs a one-time secret ID (tok-...)");
      return withAdmin(v, async (api) => {
        await api.deleteJoinSecret(name);
        say(`deleted ${name}`);
        return 0;
      });
    }
    case "edit": {
      if (!name) throw new CliError("tokens edit needs a bound-keypair token NAME");
      let limit: number | undefined;
      if (v["recovery-limit"] !== undefined) {
        limit = Number(v["recovery-limit"]);
        if (!Number.isInteger(limit) || limit < 1)
          throw new CliError("--recovery-limit must be a whole number >= 1");
      }
      if (limit === undefined && !v.unlock && !v.reset)
        throw new CliError("tokens edit: give --recovery-limit N, --unlock or --reset");
      return withAdmin(v, async (api) => {
        const r = await api.editToken(name, {
          ...(limit !== undefined ? { recovery_limit: limit } : {}),
          ...(v.unlock ? { unlock: true } : {}),
          ...(v.reset ? { reset: true } : {}),
        });
        say(`token "${name}": ${r.changes.join(", ")}; running services pick this up within seconds`);
        return 0;
      });
    }
    default:
      throw new CliError(`unknown tokens command "${sub}"\n\n${TOKENS_USAGE.trim()}`);
  }
}

const INSTANCES_USAGE = `
Usage: idbot admin bot-instances <ls|show> (--data-dir DIR | --database URL | --server URL) [BOT | BOT/ID | ID] [--format json]

  ls [BOT]          every bot instance (or one bot's): join method, generation, expiry, lock
  show BOT/ID       one instance: attested claims, last 10 authentications and heartbeats

${TARGET_HELP}

Example:
  idbot admin bot-instances ls --data-dir /var/lib/idbot deploy
`;

async function botInstancesCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(`${INSTANCES_USAGE.trim()}\n`);
    return sub === undefined ? 2 : 0;
  }
  const args = parseCommand(rest, { ...TARGET, format: { type: "string" } }, INSTANCES_USAGE, true);
  if (!args) return 0;
  const arg = args.positionals[0];
  if (sub === "ls") {
    return withAdmin(args.values, async (api) => {
      const list = await api.listBotInstances(arg);
      if (args.values.format === "json") {
        out(JSON.stringify(list, null, 2));
        return 0;
      }
      table([
        ["BOT/ID", "METHOD", "GENERATION", "JOINED", "EXPIRES", "STATUS"],
        ...list.map((i) => [
          `${i.botName}/${i.id}`,
          i.joinMethod,
          String(i.generation),
          i.createdAt,
          i.expiresAt,
          i.lockedReason ? "LOCKED" : "ok",
        ]),
      ]);
      return 0;
    });
  }
  if (sub === "show") {
    if (!arg) throw new CliError("bot-instances show needs BOT/ID");
    return withAdmin(args.values, async (api) => {
      out(JSON.stringify(await api.showBotInstance(arg), null, 2));
      return 0;
    });
  }
  throw new CliError(INSTANCES_USAGE.trim());
}

const APPLY_USAGE = `
Usage: idbot admin apply (--data-dir DIR | --database URL | --server URL) -f FILE

Validates the YAML resources in FILE (as the service does) and stores them; they
override resources of the same kind and name from the service's files, and running
services pick them up within seconds.

${TARGET_HELP}

Example:
  idbot admin apply --data-dir /var/lib/idbot -f edge-token.yaml
`;

async function applyCommand(argv: string[]): Promise<number> {
  const args = parseCommand(argv, { ...TARGET, file: { type: "string", short: "f" } }, APPLY_USAGE);
  if (!args) return 0;
  const file = required(args.values.file, "-f");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return withAdmin(args.values, async (api) => {
    const r = await api.apply(text, file);
    for (const a of r.applied) say(`applied ${a}`);
    return 0;
  });
}

const AUDIT_USAGE = `
Usage: idbot admin audit ls (--data-dir DIR | --database URL | --server URL) [--since 1h] [--type TYPE] [--format json]

Lists audit events (joins, failures with their reasons, certificates issued, admin
changes with data.actor naming who made them), oldest first; --format json prints JSON
lines for export.

${TARGET_HELP}

Example:
  idbot admin audit ls --data-dir /var/lib/idbot --since 1h --type join.failure
`;

async function auditCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(`${AUDIT_USAGE.trim()}\n`);
    return sub === undefined ? 2 : 0;
  }
  const args = parseCommand(
    rest,
    {
      ...TARGET,
      since: { type: "string", default: "24h" },
      type: { type: "string" },
      format: { type: "string" },
    },
    AUDIT_USAGE,
  );
  if (!args) return 0;
  if (sub !== "ls") throw new CliError(AUDIT_USAGE.trim());
  await checkDuration(args.values.since!, "--since");
  return withAdmin(args.values, async (api) => {
    const events = await api.listAudit({
      since: args.values.since!,
      ...(args.values.type ? { type: args.values.type } : {}),
    });
    for (const e of events) {
      if (args.values.format === "json") out(JSON.stringify(e));
      else {
        const actor = typeof e.data?.actor === "string" ? `by ${e.data.actor}` : undefined;
        out(
          `${e.time}  ${e.type.padEnd(16)} ${[e.botName, e.tokenName, e.instanceId, e.reason, actor].filter(Boolean).join("  ")}`,
        );
      }
    }
    return 0;
  });
}

const ADMIN_TOKENS_USAGE = `
Usage: idbot admin admin-tokens <add|ls|rm> (--data-dir DIR | --database URL) [options]

Credentials for the remote admin API (idbot admin ... --server URL). Managed only on the
service host, never over HTTP. Only a token's SHA-256 is stored; its secret is printed
once, on the last line of stdout. The first one is the bootstrap token.

  add --name NAME     a new admin token (its name appears in the audit trail)
  ls [--format json]  ids, names and creation times (never the secret)
  rm ID               revoke a token at once

Example:
  idbot admin admin-tokens add --data-dir /var/lib/idbot --name bootstrap
  IDBOT_ADMIN_TOKEN=<token> idbot admin tokens ls --server https://idbot.example.com
`;

async function adminTokensCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(`${ADMIN_TOKENS_USAGE.trim()}\n`);
    return sub === undefined ? 2 : 0;
  }
  const args = parseCommand(
    rest,
    { ...TARGET, name: { type: "string" }, format: { type: "string" } },
    ADMIN_TOKENS_USAGE,
    true,
  );
  if (!args) return 0;
  const v = args.values;
  if (v.server || v["admin-token"] || v.ca) {
    throw new CliError(
      "admin tokens are managed only on the service host, never over HTTP",
      EXIT.badInput,
      "Run idbot admin admin-tokens there with --data-dir DIR or --database URL.",
    );
  }
  if (!["add", "ls", "rm"].includes(sub)) {
    throw new CliError(`unknown admin-tokens command "${sub}"\n\n${ADMIN_TOKENS_USAGE.trim()}`);
  }
  const name = sub === "add" ? required(v.name, "--name") : undefined;
  const id = args.positionals[0];
  if (sub === "rm" && !id) throw new CliError("admin-tokens rm needs an admin token ID (adm-...)");
  const admin = await import("../server/admin.ts");
  // withAdmin checks the flags and maps errors; the store is the local one.
  return withAdmin(v, async (_api, { store }) => {
    const actor = admin.localActor();
    if (sub === "add") {
      const t = await admin.addAdminToken(store!, actor, name!);
      say(`admin token ${t.id} "${t.name}" created; it is shown once:`);
      out(t.token);
      return 0;
    }
    if (sub === "rm") {
      const t = await admin.removeAdminToken(store!, actor, id!);
      say(`removed admin token ${t.id} "${t.name}"; it is refused from now on`);
      return 0;
    }
    const list = await admin.listAdminTokens(store!);
    if (v.format === "json") out(JSON.stringify(list, null, 2));
    else table([["ID", "NAME", "CREATED"], ...list.map((t) => [t.id, t.name, t.created_at])]);
    return 0;
  });
}
