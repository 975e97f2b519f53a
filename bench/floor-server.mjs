// The platform floor for the latency and throughput targets (bench/floor.ts starts it): a
// server that does only what no join can skip, on node:http like `idbot serve`, on the
// same number of threads. Per POST: read and JSON-parse the body, check the ID token's
// RS256 signature (node:crypto, cached key), sign an SSH-certificate-sized blob with
// Ed25519 and an X.509-TBS-sized blob with ECDSA P-256, answer JSON of the size a real
// join answer has. No policy, no store, no audit, no log. Plain JavaScript: worker threads
// load it as it is.
//
// env: FLOOR_JWKS (the issuer's public JWKS), FLOOR_WORKERS (threads beside this one),
// FLOOR_RESPONSE_BYTES (answer size); FLOOR_FD is set for the worker threads.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { createServer } from "node:http";
import { isMainThread, parentPort, Worker } from "node:worker_threads";

const jwk = JSON.parse(process.env.FLOOR_JWKS ?? "").keys[0];
const issuerKey = createPublicKey({ key: jwk, format: "jwk" });
const ed25519 = createPrivateKey(
  generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }),
);
const p256 = createPrivateKey(
  generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }),
);
const responseBytes = Number(process.env.FLOOR_RESPONSE_BYTES ?? 4096);

const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const token = String(body.id_token);
  const dot = token.lastIndexOf(".");
  const ok = verify(
    "sha256",
    Buffer.from(token.slice(0, dot)),
    issuerKey,
    Buffer.from(token.slice(dot + 1), "base64url"),
  );
  const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8"));
  const sshBlob = Buffer.alloc(300);
  sshBlob.write(String(body.public_keys?.ssh));
  const tbs = Buffer.alloc(300);
  tbs.write(String(claims.sub));
  const answer = {
    ok,
    ssh_certificate: Buffer.concat([sshBlob, sign(null, sshBlob, ed25519)]).toString("base64"),
    tls_certificate: Buffer.concat([tbs, sign("sha256", tbs, p256)]).toString("base64"),
    padding: "",
  };
  answer.padding = "x".repeat(Math.max(0, responseBytes - JSON.stringify(answer).length));
  const text = JSON.stringify(answer);
  res.writeHead(ok ? 200 : 403, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
});
server.keepAliveTimeout = 5000;

if (isMainThread) {
  server.listen(0, "127.0.0.1", () => {
    const fd = server._handle.fd;
    const workers = Number(process.env.FLOOR_WORKERS ?? 0);
    let ready = 0;
    const up = () => {
      if (++ready > workers) process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
    };
    for (let i = 0; i < workers; i++) {
      const w = new Worker(new URL(import.meta.url), { env: { ...process.env, FLOOR_FD: String(fd) } });
      w.once("message", up);
    }
    up();
  });
} else {
  server.listen({ fd: Number(process.env.FLOOR_FD) }, () => parentPort?.postMessage("ready"));
}
