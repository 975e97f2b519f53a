// A small mTLS stand-in for kube-apiserver, plus a kubectl runner.
//
// No Kubernetes API server can be installed here, so this follows the real protocol for the
// calls kubectl makes: HTTPS on 127.0.0.1 with a server certificate from the test CA, client
// certificates verified against clientCaPem (idbot's TLS CA) like kube-apiserver's
// --client-ca-file, and x509 authentication as kube-apiserver does it: user = subject CN,
// groups = every subject O.
//
// Like kube-apiserver (secure_serving.go sets tls.RequestClientCert when a client CA is given),
// the TLS layer only *requests* a certificate; the x509 authenticator then verifies it, and a
// request without a verified certificate gets 401 Unauthorized (as with --anonymous-auth=false).
// kubectl then fails at once with "You must be logged in to the server (Unauthorized)".
// `rejectAtHandshake: true` instead fails the TLS handshake itself; client-go treats that as a
// probable EOF and retries for ~10 s per request before giving up.
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdtemp, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { promisify } from "node:util";
import { aptInstall, cannotInstall } from "./debian.ts";
import type { TestTlsCA } from "./testca.ts";

const execFileP = promisify(execFile);

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (!dir) continue;
    const p = join(dir, cmd);
    if (await exists(p, constants.X_OK)) return p;
  }
  for (const p of [`/usr/bin/${cmd}`, `/usr/local/bin/${cmd}`]) {
    if (await exists(p, constants.X_OK)) return p;
  }
  return undefined;
}

/**
 * Finds `kubectl` (PATH, then /usr/bin), installing Debian's kubernetes-client when root.
 * When impossible: throws under CI=true, otherwise returns { skip }.
 */
export async function ensureKubectl(): Promise<{ kubectl: string } | { skip: string }> {
  const found = await which("kubectl");
  if (found) return { kubectl: found };
  let reason = await cannotInstall("kubectl", "kubernetes-client");
  if (!reason) {
    try {
      await aptInstall(["kubernetes-client"]);
    } catch (err) {
      reason = (err as Error).message;
    }
    const after = await which("kubectl");
    if (after) return { kubectl: after };
    reason ??= "kubernetes-client was installed but kubectl is still missing";
  }
  if (process.env.CI === "true") throw new Error(`kubectl is required under CI: ${reason}`);
  return { skip: reason };
}

/** One request as the stand-in saw it; `user` is absent when authentication failed (401). */
export interface KubeRequest {
  method: string;
  path: string;
  user?: string;
  groups: string[];
}

export interface KubeApiStandIn {
  /** https://127.0.0.1:PORT */
  url: string;
  /** The API server's CA (the test CA): goes into the kubeconfig's certificate-authority-data. */
  caPem: string;
  /** Every request seen, in order. */
  requests: KubeRequest[];
  close(): Promise<void>;
}

export interface StartKubeApiStandInOptions {
  /** Server certificate and key for 127.0.0.1 (from createTestTlsCA). */
  tls: TestTlsCA;
  /** CA that client certificates must chain to (idbot's TLS CA), like --client-ca-file. */
  clientCaPem: string;
  /** Fail the TLS handshake for a missing or unverified client certificate instead of a 401. */
  rejectAtHandshake?: boolean;
}

const VERSION_INFO = {
  major: "1",
  minor: "30",
  gitVersion: "v1.30.0",
  gitCommit: "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a",
  gitTreeState: "clean",
  buildDate: "2024-04-17T17:27:03Z",
  goVersion: "go1.22.2",
  compiler: "gc",
  platform: "linux/amd64",
};

function asList(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map(String);
  return [String(v)];
}

function status(code: number, reason: string, message: string): object {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
}

function send(res: ServerResponse, code: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-cache, private",
  });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      data += d;
      if (data.length > 1 << 20) req.destroy(new Error("body too large"));
    });
    req.on("end", () => resolve(data));
    req.on("error", reject);
  });
}

/** Starts the stand-in on 127.0.0.1 at a random port. */
export async function startKubeApiStandIn(opts: StartKubeApiStandInOptions): Promise<KubeApiStandIn> {
  const requests: KubeRequest[] = [];
  let port = 0;

  const server = createServer(
    {
      cert: opts.tls.serverCert,
      key: opts.tls.serverKey,
      ca: [opts.clientCaPem],
      requestCert: true,
      rejectUnauthorized: opts.rejectAtHandshake === true,
      minVersion: "TLSv1.2",
    },
    (req, res) => {
      void handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, status(500, "InternalError", String(err)));
        else res.destroy();
      });
    },
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const sock = req.socket as TLSSocket;
    // authorized: the client sent a certificate that chains to clientCaPem and is in its validity.
    const peer = sock.authorized ? sock.getPeerCertificate() : undefined;
    const cn = peer?.subject ? asList(peer.subject.CN)[0] : undefined;
    const user = cn ? cn : undefined;
    const groups = user && peer?.subject ? asList(peer.subject.O) : [];
    const method = req.method ?? "GET";
    const path = new URL(req.url ?? "/", "https://127.0.0.1").pathname;
    requests.push({ method, path, ...(user !== undefined ? { user } : {}), groups });
    const body = method === "POST" || method === "PUT" || method === "PATCH" ? await readBody(req) : "";

    if (!user) {
      // No certificate, an unverified one, or an empty CN: x509 auth fails, and with anonymous
      // auth off kube-apiserver answers 401 with this Status.
      send(res, 401, status(401, "Unauthorized", "Unauthorized"));
      return;
    }

    const route = `${method} ${path}`;
    switch (route) {
      case "GET /version":
        send(res, 200, VERSION_INFO);
        return;
      case "GET /api":
        send(res, 200, {
          kind: "APIVersions",
          versions: ["v1"],
          serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `127.0.0.1:${port}` }],
        });
        return;
      case "GET /apis":
        send(res, 200, { kind: "APIGroupList", apiVersion: "v1", groups: [] });
        return;
      case "GET /api/v1":
        // Legacy discovery: kubectl maps "pods" to a resource through this list.
        send(res, 200, {
          kind: "APIResourceList",
          groupVersion: "v1",
          resources: [
            {
              name: "namespaces",
              singularName: "namespace",
              namespaced: false,
              kind: "Namespace",
              verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
              shortNames: ["ns"],
            },
            {
              name: "pods",
              singularName: "pod",
              namespaced: true,
              kind: "Pod",
              verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
              shortNames: ["po"],
              categories: ["all"],
            },
          ],
        });
        return;
      case "GET /api/v1/namespaces/default/pods":
        send(res, 200, {
          kind: "PodList",
          apiVersion: "v1",
          metadata: { resourceVersion: "1" },
          items: [],
        });
        return;
      case "POST /apis/authentication.k8s.io/v1/selfsubjectreviews": {
        let parsed: { kind?: unknown } = {};
        try {
          parsed = body ? (JSON.parse(body) as { kind?: unknown }) : {};
        } catch {
          send(res, 400, status(400, "BadRequest", "invalid JSON body"));
          return;
        }
        if (parsed.kind !== undefined && parsed.kind !== "SelfSubjectReview") {
          send(res, 400, status(400, "BadRequest", `unexpected kind ${String(parsed.kind)}`));
          return;
        }
        send(res, 201, {
          kind: "SelfSubjectReview",
          apiVersion: "authentication.k8s.io/v1",
          metadata: { creationTimestamp: null },
          status: { userInfo: { username: user, groups: [...groups, "system:authenticated"] } },
        });
        return;
      }
      default:
        send(res, 404, status(404, "NotFound", "the server could not find the requested resource"));
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  port = typeof addr === "object" && addr ? addr.port : 0;

  return {
    url: `https://127.0.0.1:${port}`,
    caPem: opts.tls.caPem,
    requests,
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/**
 * Runs kubectl with KUBECONFIG=kubeconfig and `--kubeconfig kubeconfig`, HOME set to a fresh temp
 * directory (no discovery cache or config from the real HOME). Never throws on a non-zero exit.
 */
export async function kubectl(
  args: string[],
  kubeconfig: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const found = await ensureKubectl();
  if ("skip" in found) throw new Error(found.skip);
  const home = await mkdtemp(join(tmpdir(), "idbot-kubectl-home-"));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    KUBECONFIG: kubeconfig,
    KUBECACHEDIR: join(home, ".kube", "cache"),
    NO_PROXY: "127.0.0.1,localhost,::1",
    no_proxy: "127.0.0.1,localhost,::1",
  };
  try {
    const r = await execFileP(found.kubectl, [...args, "--kubeconfig", kubeconfig], {
      env,
      maxBuffer: 64 << 20,
      timeout: 60_000,
    });
    return { code: 0, stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (err) {
    const e = err as Error & { code?: number | string; stdout?: string; stderr?: string };
    // Spawn failures (ENOENT, maxBuffer) carry a string code: those are real errors.
    if (typeof e.code === "string") throw err;
    return {
      code: typeof e.code === "number" ? e.code : 1, // null: killed by the timeout
      stdout: String(e.stdout ?? ""),
      stderr: String(e.stderr ?? e.message),
    };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}
