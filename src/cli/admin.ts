import { existsSync, readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { CliError, parseCommand, required, say, storeFlags } from "./args.ts";

const USAGE = `
Usage: idbot admin <command> [options]

Commands:
  tokens         one-time join secrets and bound-keypair tokens: add, ls, show, rm, edit
  bot-instances  joined bots: ls, show
  apply          store resources (YAML) in the service's store; they override the files
  audit          the audit trail: ls
  sign-host      sign an SSH host certificate with the service's host CA
  rotate-jwt     replace the JWT signing key, keeping the previous one in the JWKS

Every command takes --data-dir DIR (the embedded store) or --database postgres://... (the
store shared by replicas; IDBOT_CA_PASSPHRASE decrypts its CA keys).

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
    case "tokens":
      return tokensCommand(rest);
    case "bot-instances":
      return botInstancesCommand(rest);
    case "apply":
      return applyCommand(rest);
    case "audit":
      return auditCommand(rest);
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
      database: { type: "string" },
      "host-key": { type: "string" },
      principals: { type: "string" },
      ttl: { type: "string", default: "720h" },
      out: { type: "string" },
    },
    SIGN_HOST_USAGE,
  );
  if (!args) return 0;
  const v = args.values;
  const dataDir = storeFlags(v["data-dir"], v.database);
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
  const { Authorities, createAuthorityRecord } = await import("../server/ca/authorities.ts");
  const { writeFileSync } = await import("node:fs");
  return withStore(dataDir, async (store) => {
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
  });
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
  const args = parseCommand(
    argv,
    { "data-dir": { type: "string" }, database: { type: "string" } },
    ROTATE_JWT_USAGE,
  );
  if (!args) return 0;
  const dataDir = storeFlags(args.values["data-dir"], args.values.database);
  const { Authorities, createAuthorityRecord } = await import("../server/ca/authorities.ts");
  return withStore(dataDir, async (store) => {
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
  });
}

type Store = import("../server/store/store.ts").Store;

async function withStore<T>(
  where: { dataDir?: string; database?: string },
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const { openStore } = await import("../server/store/open.ts");
  let store: Store;
  try {
    store = await openStore(where);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const table = (rows: string[][]) => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
};

const TOKENS_USAGE = `
Usage: idbot admin tokens <add|ls|show|rm|edit> --data-dir DIR [options]

  add  --bot NAME [--ttl 15m]     a one-time join secret, printed once on the last line of stdout
  ls                              one-time secrets (never the secret) and bound-keypair tokens
  show NAME|ID                    one token: status, bound public key, recovery count, lock
  rm ID                           delete a one-time secret
  edit NAME [--recovery-limit N] [--unlock] [--reset]
                                  a bound-keypair token: raise its recovery limit (applied
                                  tokens), unlock it after a copied-keypair lock, or forget
                                  its bound key so it registers again

Example:
  idbot admin tokens add --data-dir /var/lib/idbot --bot edge --ttl 15m
  idbot join --server https://idbot.example.com --join-method token --token "$SECRET" --out /var/lib/idbot-bot
`;

async function tokensCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const args = parseCommand(
    rest,
    {
      "data-dir": { type: "string" },
      database: { type: "string" },
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
  const dataDir = storeFlags(v["data-dir"], v.database);
  const name = args.positionals[0];
  return withStore(dataDir, async (store) => {
    switch (sub) {
      case "add": {
        const bot = required(v.bot, "--bot");
        const { parseDuration } = await import("../protocol/duration.ts");
        let ttl: number;
        try {
          ttl = parseDuration(v.ttl!);
        } catch (e) {
          throw new CliError(`--ttl: ${(e as Error).message}`);
        }
        const { newJoinSecret, hashSecret } = await import("../server/joinmethods/token.ts");
        const { secret, id } = newJoinSecret();
        const now = new Date();
        const expiresAt = new Date(now.getTime() + ttl * 1000).toISOString();
        await store.createJoinToken({
          id,
          hash: hashSecret(secret),
          botName: bot,
          createdAt: now.toISOString(),
          expiresAt,
        });
        await store.appendAudit([
          {
            type: "token.created",
            time: now.toISOString(),
            botName: bot,
            tokenName: id,
            data: { expires_at: expiresAt },
          },
        ]);
        say(`one-time join secret ${id} for bot "${bot}", valid until ${expiresAt}; it is shown once:`);
        out(secret);
        return 0;
      }
      case "ls": {
        const tokens = await store.listJoinTokens();
        const bound = await store.listBoundKeypairs();
        const now = new Date().toISOString();
        if (v.format === "json") {
          out(
            JSON.stringify(
              { join_secrets: tokens.map(({ hash: _h, ...t }) => t), bound_keypairs: bound },
              null,
              2,
            ),
          );
          return 0;
        }
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
      }
      case "show": {
        if (!name) throw new CliError("tokens show needs a token NAME or ID");
        const t = (await store.listJoinTokens()).find((x) => x.id === name);
        const b = await store.getBoundKeypair(name);
        const applied = (await store.listResources()).find((r) => r.kind === "token" && r.name === name);
        if (!t && !b && !applied)
          throw new CliError(`no one-time secret, bound-keypair state or applied token named "${name}"`);
        const { hash: _h, ...shown } = t ?? ({} as Record<string, unknown>);
        const spec = applied
          ? (
              JSON.parse(applied.body) as {
                spec?: { bound_keypair?: { onboarding?: { registration_secret?: string } } };
              }
            ).spec
          : undefined;
        const reg = spec?.bound_keypair?.onboarding?.registration_secret;
        out(
          JSON.stringify(
            {
              ...(t ? { join_secret: shown } : {}),
              ...(b
                ? {
                    bound_keypair: {
                      ...b,
                      joinStateHash: undefined,
                      registration: b.publicKey
                        ? "registered (the registration secret is spent)"
                        : "not registered yet",
                    },
                  }
                : reg
                  ? { bound_keypair: { registration: "not registered yet", registration_secret: reg } }
                  : {}),
              ...(applied ? { applied: JSON.parse(applied.body) } : {}),
            },
            (k, val) => (k === "registration_secret" && b?.publicKey ? undefined : val),
            2,
          ),
        );
        return 0;
      }
      case "rm": {
        if (!name) throw new CliError("tokens rm needs a one-time secret ID (tok-...)");
        if (!(await store.deleteJoinToken(name))) throw new CliError(`no one-time secret with ID "${name}"`);
        await store.appendAudit([{ type: "token.deleted", time: new Date().toISOString(), tokenName: name }]);
        say(`deleted ${name}`);
        return 0;
      }
      case "edit": {
        if (!name) throw new CliError("tokens edit needs a bound-keypair token NAME");
        const changes: string[] = [];
        if (v.unlock || v.reset) {
          if (!(await store.updateBoundKeypair(name, { unlock: v.unlock, reset: v.reset }))) {
            throw new CliError(`token "${name}" has no bound-keypair state (it never joined)`);
          }
          changes.push(v.reset ? "reset (the bound key is forgotten)" : "unlocked");
        }
        if (v["recovery-limit"] !== undefined) {
          const limit = Number(v["recovery-limit"]);
          if (!Number.isInteger(limit) || limit < 1)
            throw new CliError("--recovery-limit must be a whole number >= 1");
          const applied = (await store.listResources()).find((r) => r.kind === "token" && r.name === name);
          if (!applied) {
            throw new CliError(
              `token "${name}" is not an applied resource. If it is declared in a resources file, set spec.bound_keypair.recovery.limit: ${limit} there and send SIGHUP to the service, or apply the token with: idbot admin apply --data-dir ${dataDir} -f token.yaml`,
            );
          }
          const body = JSON.parse(applied.body) as {
            spec: { bound_keypair?: { recovery?: { limit?: number; mode?: string } } };
          };
          if (!body.spec.bound_keypair) throw new CliError(`token "${name}" is not a bound_keypair token`);
          body.spec.bound_keypair.recovery = {
            mode: body.spec.bound_keypair.recovery?.mode ?? "standard",
            limit,
          };
          const { parseStoredResource } = await import("../server/policy/resources.ts");
          parseStoredResource(JSON.stringify(body), `token/${name}`);
          await store.putResource({
            kind: "token",
            name,
            body: JSON.stringify(body),
            updatedAt: new Date().toISOString(),
          });
          changes.push(`recovery limit ${limit}`);
        }
        if (changes.length === 0)
          throw new CliError("tokens edit: give --recovery-limit N, --unlock or --reset");
        await store.appendAudit([
          { type: "token.edited", time: new Date().toISOString(), tokenName: name, data: { changes } },
        ]);
        say(`token "${name}": ${changes.join(", ")}; running services pick this up within seconds`);
        return 0;
      }
      default:
        throw new CliError(`unknown tokens command "${sub}"\n\n${TOKENS_USAGE.trim()}`);
    }
  });
}

const INSTANCES_USAGE = `
Usage: idbot admin bot-instances <ls|show> --data-dir DIR [BOT | BOT/ID | ID] [--format json]

  ls [BOT]          every bot instance (or one bot's): join method, generation, expiry, lock
  show BOT/ID       one instance: attested claims, last 10 authentications and heartbeats

Example:
  idbot admin bot-instances ls --data-dir /var/lib/idbot deploy
`;

async function botInstancesCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(`${INSTANCES_USAGE.trim()}\n`);
    return sub === undefined ? 2 : 0;
  }
  const args = parseCommand(
    rest,
    { "data-dir": { type: "string" }, database: { type: "string" }, format: { type: "string" } },
    INSTANCES_USAGE,
    true,
  );
  if (!args) return 0;
  const dataDir = storeFlags(args.values["data-dir"], args.values.database);
  const arg = args.positionals[0];
  return withStore(dataDir, async (store) => {
    if (sub === "ls") {
      const list = await store.listBotInstances(arg);
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
    }
    if (sub === "show") {
      if (!arg) throw new CliError("bot-instances show needs BOT/ID");
      const id = arg.includes("/") ? arg.slice(arg.lastIndexOf("/") + 1) : arg;
      const i = await store.getBotInstance(id);
      if (!i || (arg.includes("/") && !arg.startsWith(`${i.botName}/`)))
        throw new CliError(`no bot instance ${arg}`);
      out(JSON.stringify(i, null, 2));
      return 0;
    }
    throw new CliError(INSTANCES_USAGE.trim());
  });
}

const APPLY_USAGE = `
Usage: idbot admin apply --data-dir DIR -f FILE

Validates the YAML resources in FILE (as the service does) and stores them; they
override resources of the same kind and name from the service's files, and running
services pick them up within seconds.

Example:
  idbot admin apply --data-dir /var/lib/idbot -f edge-token.yaml
`;

async function applyCommand(argv: string[]): Promise<number> {
  const args = parseCommand(
    argv,
    { "data-dir": { type: "string" }, database: { type: "string" }, file: { type: "string", short: "f" } },
    APPLY_USAGE,
  );
  if (!args) return 0;
  const dataDir = storeFlags(args.values["data-dir"], args.values.database);
  const file = required(args.values.file, "-f");
  const { parseResources } = await import("../server/policy/resources.ts");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let resources: ReturnType<typeof parseResources>["resources"];
  try {
    resources = parseResources(text, file).resources;
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  return withStore(dataDir, async (store) => {
    const now = new Date().toISOString();
    for (const r of resources) {
      // Stored as the YAML parsed to JSON (defaults not filled in), re-validated on load.
      await store.putResource({
        kind: r.kind,
        name: r.metadata.name,
        body: JSON.stringify(rawOf(text, r.kind, r.metadata.name)),
        updatedAt: now,
      });
      say(`applied ${r.kind}/${r.metadata.name}`);
    }
    await store.appendAudit([
      {
        type: "resources.applied",
        time: now,
        data: { resources: resources.map((r) => `${r.kind}/${r.metadata.name}`) },
      },
    ]);
    return 0;
  });
}

/** The document of FILE declaring kind/name, as plain JSON. */
function rawOf(text: string, kind: string, name: string): unknown {
  for (const d of parseAllDocuments(text)) {
    const v = d.toJS() as { kind?: string; metadata?: { name?: string } } | null;
    if (v?.kind === kind && v.metadata?.name === name) return v;
  }
  throw new CliError(`internal: ${kind}/${name} not found again in the file`);
}

const AUDIT_USAGE = `
Usage: idbot admin audit ls --data-dir DIR [--since 1h] [--type TYPE] [--format json]

Lists audit events (joins, failures with their reasons, certificates issued, admin
changes), oldest first; --format json prints JSON lines for export.

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
      "data-dir": { type: "string" },
      database: { type: "string" },
      since: { type: "string", default: "24h" },
      type: { type: "string" },
      format: { type: "string" },
    },
    AUDIT_USAGE,
  );
  if (!args) return 0;
  if (sub !== "ls") throw new CliError(AUDIT_USAGE.trim());
  const { parseDuration } = await import("../protocol/duration.ts");
  let since: number;
  try {
    since = parseDuration(args.values.since!);
  } catch (e) {
    throw new CliError(`--since: ${(e as Error).message}`);
  }
  return withStore(storeFlags(args.values["data-dir"], args.values.database), async (store) => {
    const events = await store.listAudit({
      sinceIso: new Date(Date.now() - since * 1000).toISOString(),
      type: args.values.type,
      limit: 100_000,
    });
    for (const e of events) {
      if (args.values.format === "json") out(JSON.stringify(e));
      else
        out(
          `${e.time}  ${e.type.padEnd(16)} ${[e.botName, e.tokenName, e.instanceId, e.reason].filter(Boolean).join("  ")}`,
        );
    }
    return 0;
  });
}
