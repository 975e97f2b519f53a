import { CliError, parseCommand, required, storeFlags } from "./args.ts";

const USAGE = `
Usage: idbot serve (--data-dir DIR | --database URL) --listen HOST:PORT --resources FILE_OR_DIR [options]

Runs the join service with its embedded store in DIR (created 0700 on first start, with
its CAs). Plain HTTP is only allowed on loopback; otherwise give --tls-cert and --tls-key.
Resources are re-read on SIGHUP; an invalid file keeps the previous set.

Options:
  --data-dir DIR        embedded store directory (SQLite), or
  --database URL        postgres://... shared by every replica; CA keys are stored
                        encrypted with IDBOT_CA_PASSPHRASE (or IDBOT_CA_PASSPHRASE_FILE)
  --listen HOST:PORT    address to listen on (port 0 picks a free port)
  --resources PATH      a YAML file or a directory of *.yaml resources
  --public-url URL      URL clients use (default: the listen URL); the default audience
                        and the issuer of the JWTs the service signs
  --trust-domain NAME   SPIFFE trust domain (default: the public URL's host)
  --rate-limit N        requests per second per source address, burst 2N (default 500;
                        0 = off); over it: 429 with Retry-After
  --token-rate-limit N  joins per second per join token (default 1000; 0 = off)
  --tls-cert FILE       PEM certificate chain for HTTPS
  --tls-key FILE        PEM private key for HTTPS
  --workers N|auto      HTTP threads beside the main thread, which serves too (default
                        auto: one per core beyond the first, so 0 on one core; each
                        thread costs ~40-60 MB of memory under load; 0 = one thread)

Example:
  idbot serve --data-dir /var/lib/idbot --listen 0.0.0.0:8443 --resources /etc/idbot \\
    --public-url https://idbot.example.com --tls-cert /etc/idbot/tls.crt --tls-key /etc/idbot/tls.key
`;

export async function serveCommand(argv: string[]): Promise<number> {
  const args = parseCommand(
    argv,
    {
      "data-dir": { type: "string" },
      database: { type: "string" },
      listen: { type: "string" },
      resources: { type: "string" },
      "public-url": { type: "string" },
      "trust-domain": { type: "string" },
      "rate-limit": { type: "string", default: "500" },
      "token-rate-limit": { type: "string", default: "1000" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      workers: { type: "string", default: "auto" },
    },
    USAGE,
  );
  if (!args) return 0;
  const v = args.values;
  const { startService } = await import("../server/service.ts");
  const { defaultWorkers, startThreadedService } = await import("../server/threads.ts");
  const workers = workerCount(v.workers!, defaultWorkers);
  let svc: Awaited<ReturnType<typeof startService>>;
  try {
    const start =
      workers > 0
        ? (o: Parameters<typeof startService>[0]) => startThreadedService({ ...o, workers })
        : startService;
    svc = await start({
      ...storeFlags(v["data-dir"], v.database),
      listen: required(v.listen, "--listen"),
      resourcesPath: required(v.resources, "--resources"),
      publicUrl: v["public-url"],
      trustDomain: v["trust-domain"],
      rateLimit: rate(v["rate-limit"]!, "--rate-limit"),
      tokenRateLimit: rate(v["token-rate-limit"]!, "--token-rate-limit"),
      tlsCertFile: v["tls-cert"],
      tlsKeyFile: v["tls-key"],
    });
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError((e as Error).message);
  }
  process.on("SIGHUP", async () => {
    try {
      await svc.reload();
    } catch (e) {
      process.stderr.write(
        `${JSON.stringify({ time: new Date().toISOString(), level: "error", msg: "resource reload failed; keeping the previous resources", error: (e as Error).message })}\n`,
      );
    }
  });
  // Handlers first, then the line that tells a supervisor (or a test) we are up.
  const stopped = new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  process.stdout.write(`idbot service listening on ${svc.url} (public URL ${svc.publicUrl})\n`);
  await stopped;
  await svc.close();
  return 0;
}

function workerCount(v: string, auto: () => number): number {
  if (v === "auto") return auto();
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64)
    throw new CliError(
      `--workers "${v}" is not a number of threads: give 0 (everything on one thread), 1 to 64, or auto`,
    );
  return n;
}

function rate(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0)
    throw new CliError(`${flag} "${v}" is not a number of requests per second (0 turns it off)`);
  return n;
}
