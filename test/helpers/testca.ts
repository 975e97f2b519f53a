// A throwaway TLS CA and a loopback server certificate, made with the openssl CLI.
// Spawned processes trust it through NODE_EXTRA_CA_CERTS=caFile; in-process clients pass
// `ca: caPem` to https/tls.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);
const OPENSSL = "/usr/bin/openssl";

export interface TestTlsCA {
  caPem: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  serverCert: string;
  serverKey: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileP(OPENSSL, args, { cwd });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`);
  }
}

function serial(): string {
  // Positive 128-bit serial (top bit cleared).
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return `0x${b.toString("hex")}`;
}

export async function createTestTlsCA(dir: string): Promise<TestTlsCA> {
  await mkdir(dir, { recursive: true });
  const caKeyFile = join(dir, "ca.key");
  const caFile = join(dir, "ca.pem");
  const serverKeyFile = join(dir, "server.key");
  const serverCsrFile = join(dir, "server.csr");
  const serverCertFile = join(dir, "server.pem");
  const extFile = join(dir, "server.ext");

  const ecKey = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
  await openssl(["genpkey", ...ecKey, "-out", caKeyFile], dir);
  await openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      caKeyFile,
      "-sha256",
      "-days",
      "2",
      "-set_serial",
      serial(),
      "-subj",
      "/CN=idbot test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE,pathlen:0",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-addext",
      "subjectKeyIdentifier=hash",
      "-out",
      caFile,
    ],
    dir,
  );

  await openssl(["genpkey", ...ecKey, "-out", serverKeyFile], dir);
  await openssl(["req", "-new", "-key", serverKeyFile, "-subj", "/CN=localhost", "-out", serverCsrFile], dir);
  await writeFile(
    extFile,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
      "subjectKeyIdentifier=hash",
      "authorityKeyIdentifier=keyid,issuer",
      "",
    ].join("\n"),
  );
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      serverCsrFile,
      "-CA",
      caFile,
      "-CAkey",
      caKeyFile,
      "-set_serial",
      serial(),
      "-sha256",
      "-days",
      "2",
      "-extfile",
      extFile,
      "-out",
      serverCertFile,
    ],
    dir,
  );

  const [caPem, serverCert, serverKey] = await Promise.all([
    readFile(caFile, "utf8"),
    readFile(serverCertFile, "utf8"),
    readFile(serverKeyFile, "utf8"),
  ]);
  return { caPem, caFile, serverCertFile, serverKeyFile, serverCert, serverKey };
}
