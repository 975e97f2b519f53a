// Assembles the join service: store, CAs, resources, HTTP(S) listener.
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { isLoopbackHost, normalizeServiceUrl, parseListen } from "../protocol/net.ts";
import type { AdminRouteContext } from "./admin.ts";
import { Audit } from "./audit.ts";
import type { ConnectionBalance } from "./balance.ts";
import { Authorities, createAuthorityRecord } from "./ca/authorities.ts";
import { createHandler } from "./http.ts";
import { JwksCache } from "./joinmethods/jwt.ts";
import { jsonLogger, type Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import {
  loadResources,
  mergeResources,
  parseStoredResource,
  RESOURCE_KINDS,
  type ResourceSet,
} from "./policy/resources.ts";
import { type Limiter, RateLimiter } from "./ratelimit.ts";
import { openStore } from "./store/open.ts";
import type { Store } from "./store/store.ts";
import type { ThreadLock } from "./store/threadlock.ts";

export interface ServeOptions {
  /** Embedded store directory, or (database) a PostgreSQL URL shared by replicas. */
  dataDir?: string;
  database?: string;
  listen: string;
  resourcesPath: string;
  publicUrl?: string;
  /** SPIFFE trust domain; default: the public URL's host name. */
  trustDomain?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  logger?: Logger;
  /** Requests per second per source address (0 = off); default 500. */
  rateLimit?: number;
  /** Joins per second per join token (0 = off); default 1000. */
  tokenRateLimit?: number;
  /** Set in every HTTP thread of a threaded service (threads.ts): what the threads share
   *  instead of keeping their own. */
  shared?: SharedState;
  /** Accept connections on this already-listening socket (shared by the worker threads)
   *  instead of binding `listen`. */
  listenFd?: number;
}

export interface SharedState {
  /** Each thread opens the store itself; on one SQLite file their join commits take turns
   *  on this lock. */
  sqliteWriteLock: ThreadLock;
  /** Spreads keep-alive connections over the threads. */
  balance: ConnectionBalance;
  /** True in the main thread: it alone prunes the replay keys. */
  main: boolean;
  /** HTTP threads in the process, the main one included. */
  threads: number;
  limits: { address: Limiter; token: Limiter };
  /** Every thread's metrics, added up and rendered. */
  renderMetrics: () => Promise<string>;
  /** Feeds the process-wide auth-failure alert; unset in the thread whose own alert
   *  window is the process's (the main thread). */
  authFailure?: (now: number) => void;
  /** After `idbot admin rotate-jwt --server` through this thread: every thread reloads
   *  its signing keys before the answer goes out. */
  authoritiesRotated: () => Promise<void>;
}

export class ServeError extends Error {
  override name = "ServeError";
}

export interface RunningService {
  url: string;
  publicUrl: string;
  store: Store;
  authorities: Authorities;
  /** The listening socket's descriptor, for worker threads to accept on too. */
  listenFd?: number;
  /** This thread's metrics (a threaded service adds up its threads'). */
  metrics: Metrics;
  /** Re-reads the resources and signing keys; on error keeps the previous ones and throws. */
  reload(): Promise<void>;
  /** Re-reads the signing keys only. */
  reloadAuthorities(): Promise<void>;
  close(): Promise<void>;
}

/** The checks that come before anything is created: listen address, TLS flags. */
export function checkListen(opts: ServeOptions): {
  host: string;
  port: number;
  useTls: boolean;
  hostLabel: string;
} {
  const { host, port } = parseListen(opts.listen);
  const useTls = Boolean(opts.tlsCertFile || opts.tlsKeyFile);
  if (useTls && !(opts.tlsCertFile && opts.tlsKeyFile)) {
    throw new ServeError("--tls-cert and --tls-key go together: give both");
  }
  if (!useTls && !isLoopbackHost(host)) {
    throw new ServeError(
      `refusing to serve plain HTTP on ${host}: only loopback addresses may be served without TLS. Give --tls-cert and --tls-key, or listen on 127.0.0.1.`,
    );
  }
  return { host, port, useTls, hostLabel: host.includes(":") ? `[${host}]` : host };
}

/** The SPIFFE trust domain when none is given: the public URL's host, an IPv6 address
 *  without brackets and with "-" for ":" (a trust domain allows neither). */
function defaultTrustDomain(publicUrl: string): string {
  return new URL(publicUrl).hostname.replace(/^\[|\]$/g, "").replace(/:/g, "-");
}

/** Opens the store the options name, as a ServeError when it cannot be opened. */
async function openServiceStore(opts: ServeOptions, logger: Logger, shared?: SharedState): Promise<Store> {
  try {
    return await openStore({
      dataDir: opts.dataDir,
      database: opts.database,
      ...(shared ? { sqliteWriteLock: shared.sqliteWriteLock, threads: shared.threads } : {}),
      onConnectionError: (e) =>
        logger.log("warn", "store connection lost; reconnecting", { error: e.message }),
    });
  } catch (e) {
    throw new ServeError((e as Error).message);
  }
}

export async function startService(opts: ServeOptions): Promise<RunningService> {
  const logger = opts.logger ?? jsonLogger();
  const { host, port, useTls, hostLabel } = checkListen(opts);
  // Resources first: a bad file must fail the start before anything is created.
  const fileResources = () => loadResources(opts.resourcesPath);
  let files = fileResources();
  const shared = opts.shared;
  const store = await openServiceStore(opts, logger, shared);
  // Applied resources (idbot admin apply, tokens edit) live in the store and override
  // the files; the version is polled so changes reach every replica within seconds.
  // The table also holds entries that are not resources (admin tokens): only resource kinds merge.
  const kinds: ReadonlySet<string> = new Set(RESOURCE_KINDS);
  const withApplied = async (set: ResourceSet) =>
    mergeResources(
      set,
      (await store.listResources())
        .filter((r) => kinds.has(r.kind))
        .map((r) => parseStoredResource(r.body, `applied ${r.kind}/${r.name}`)),
    );
  let resourcesVersion = await store.resourcesVersion();
  let resources = await withApplied(files);
  try {
    let tlsOptions: { cert: Buffer; key: Buffer } | undefined;
    if (useTls) {
      try {
        tlsOptions = { cert: readFileSync(opts.tlsCertFile!), key: readFileSync(opts.tlsKeyFile!) };
      } catch (e) {
        throw new ServeError(`cannot read the TLS certificate or key: ${(e as Error).message}`);
      }
    }
    let authorities = new Authorities(
      await store.loadOrCreateCAs((name) => createAuthorityRecord(name, opts.publicUrl ?? hostLabel)),
    );
    const audit = new Audit(store, logger);
    let publicUrl = opts.publicUrl ? normalizeServiceUrl(opts.publicUrl) : "";
    let trustDomain = opts.trustDomain ?? (publicUrl ? defaultTrustDomain(publicUrl) : "");
    if (trustDomain && !/^[a-z0-9._-]+$/.test(trustDomain)) {
      throw new ServeError(
        `--trust-domain "${trustDomain}" is not a SPIFFE trust domain (lower-case letters, digits, ".", "_", "-")`,
      );
    }
    const metrics = new Metrics(logger, shared?.authFailure);
    const routeContext: AdminRouteContext = {
      store,
      get authorities() {
        return authorities;
      },
      resources: () => resources,
      audit,
      jwks: new JwksCache(),
      get publicUrl() {
        return publicUrl;
      },
      get trustDomain() {
        return trustDomain;
      },
      logger,
      metrics,
      renderMetrics: shared?.renderMetrics ?? (async () => metrics.render()),
      balance: shared?.balance,
      limits: shared?.limits ?? {
        address: new RateLimiter(opts.rateLimit ?? 500),
        token: new RateLimiter(opts.tokenRateLimit ?? 1000),
      },
      // After `idbot admin rotate-jwt --server`, this replica signs with the new key at once.
      reloadAuthorities: async () => {
        await reloadAuthorities();
        await shared?.authoritiesRotated();
      },
    };
    const reloadAuthorities = async () => {
      authorities = new Authorities(
        await store.loadOrCreateCAs((name) => createAuthorityRecord(name, publicUrl)),
      );
    };
    const handler = createHandler(routeContext);
    const serverOptions = {
      maxHeaderSize: 16 * 1024,
      requestTimeout: 30_000,
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
    };
    const server: Server = tlsOptions
      ? createHttpsServer({ ...serverOptions, ...tlsOptions, minVersion: "TLSv1.2" }, handler)
      : createHttpServer(serverOptions, handler);
    // Every accepted connection, also one still in its TLS handshake (which
    // closeAllConnections does not know of): close() ends them all.
    const sockets = new Set<Socket>();
    server.on("connection", (socket: Socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
      shared?.balance.track(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) =>
        reject(new ServeError(`cannot listen on ${opts.listen}: ${e.code ?? e.message}`)),
      );
      if (opts.listenFd !== undefined) server.listen({ fd: opts.listenFd }, () => resolve());
      else server.listen(port, host, () => resolve());
    });
    shared?.balance.serving();
    const actualPort = (server.address() as AddressInfo).port;
    const url = `${useTls ? "https" : "http"}://${hostLabel}:${actualPort}`;
    if (!publicUrl) publicUrl = url;
    if (!trustDomain) trustDomain = defaultTrustDomain(publicUrl);
    const poll = setInterval(async () => {
      try {
        const v = await store.resourcesVersion();
        if (v === resourcesVersion) return;
        resourcesVersion = v;
        resources = await withApplied(files);
        logger.log("info", "applied resources changed; reloaded", { version: v });
      } catch (e) {
        logger.log("error", "applied resources could not be loaded; keeping the previous ones", {
          error: String(e),
        });
      }
    }, 2000);
    poll.unref();
    // Once per process: the main thread's.
    const prune =
      shared && !shared.main
        ? undefined
        : setInterval(
            () => void store.pruneReplayKeys(Math.floor(Date.now() / 1000)).catch(() => {}),
            600_000,
          );
    prune?.unref();
    // Each --workers thread says so once, with the label its requests carry in /metrics.
    logger.log("info", shared ? "idbot service thread started" : "idbot service started", {
      ...(shared ? { thread: metrics.thread } : {}),
      url,
      public_url: publicUrl,
      store: store.kind,
      data_dir: opts.dataDir,
      database: opts.database ? "postgres" : undefined,
    });
    const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    return {
      url,
      publicUrl,
      store,
      listenFd: typeof fd === "number" && fd >= 0 ? fd : undefined,
      reloadAuthorities,
      metrics,
      get authorities() {
        return authorities;
      },
      async reload() {
        files = fileResources();
        resourcesVersion = await store.resourcesVersion();
        const next = await withApplied(files);
        // Signing keys too, so a rotation done with `idbot admin rotate-jwt` takes effect.
        await reloadAuthorities();
        resources = next;
        logger.log("info", "resources reloaded", {
          roles: next.roles.size,
          bots: next.bots.size,
          tokens: next.tokens.size,
        });
      },
      async close() {
        clearInterval(prune);
        clearInterval(poll);
        shared?.balance.stopped();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
          for (const socket of sockets) socket.destroy();
        });
        await store.close();
      },
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}
