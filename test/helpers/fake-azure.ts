// Stand-ins for Azure on loopback, following the real protocols byte for byte:
//
// IMDS (plain HTTP, like 169.254.169.254; every request needs the header Metadata: true,
// requests with X-Forwarded-For are refused, as Azure does):
//  - GET /metadata/attested/document?api-version=2020-09-01&nonce=N (N: at most 32
//    alphanumeric characters) answers {"encoding":"pkcs7","signature":"<base64 DER>"}: a
//    PKCS#7 SignedData made with `openssl smime -sign -nodetach` (SHA-256, signed attributes)
//    by a leaf "metadata.azure.com" of a test chain root -> intermediate -> leaf, carrying
//    the leaf and the intermediate, over the JSON Azure signs: {"licenseType","nonce","plan",
//    "sku","subscriptionId","timeStamp":{"createdOn","expiresOn"} ("MM/DD/YY HH:MM:SS -0000",
//    6 hours apart),"vmId"}.
//  - GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R answers the VM's
//    managed identity token as Azure does ({access_token, client_id, expires_in, expires_on,
//    ext_expires_in, not_before, resource, token_type}).
// Entra ID (HTTPS with the test CA): an issuer https://HOST/TENANT/v2.0 with OIDC discovery
// and its JWKS at /TENANT/discovery/v2.0/keys (login.microsoftonline.com's layout), minting
// RS256 access tokens with Entra's managed identity claims (aud, iss, tid, oid, sub, appid,
// idtyp, xms_mirid = /subscriptions/SUB/resourcegroups/RG/providers/Microsoft.Compute/
// virtualMachines/VM, ...).
import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type FakeOidcIssuer, startFakeOidcIssuer } from "./fake-oidc.ts";

const execFileP = promisify(execFile);
const OPENSSL = "/usr/bin/openssl";

async function openssl(args: string[], cwd: string): Promise<Buffer> {
  try {
    const { stdout } = await execFileP(OPENSSL, args, { cwd, encoding: "buffer", maxBuffer: 1 << 20 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: Buffer };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

export interface AttestationChain {
  dir: string;
  rootPem: string;
  intermediatePem: string;
  leafPem: string;
  leafKeyFile: string;
  leafFile: string;
  intermediateFile: string;
}

/** A test PKI shaped like Azure's: RSA root -> intermediate CA -> leaf for `leafCn`. */
export async function createAttestationChain(
  dir: string,
  leafCn = "metadata.azure.com",
): Promise<AttestationChain> {
  await mkdir(dir, { recursive: true });
  const rsa = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
  for (const k of ["root", "inter", "leaf"]) await openssl(["genpkey", ...rsa, "-out", `${k}.key`], dir);
  await openssl(
    [
      "req",
      "-x509",
      "-new",
      "-key",
      "root.key",
      "-sha256",
      "-days",
      "2",
      "-subj",
      "/O=idbot test/CN=Test Azure Root",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      "-out",
      "root.pem",
    ],
    dir,
  );
  await writeFile(
    join(dir, "inter.ext"),
    "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
  );
  await writeFile(
    join(dir, "leaf.ext"),
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=DNS:${leafCn}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`,
  );
  await openssl(
    [
      "req",
      "-new",
      "-key",
      "inter.key",
      "-subj",
      "/O=idbot test/CN=Test Azure TLS Issuing CA",
      "-out",
      "inter.csr",
    ],
    dir,
  );
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "inter.csr",
      "-CA",
      "root.pem",
      "-CAkey",
      "root.key",
      "-CAcreateserial",
      "-sha256",
      "-days",
      "2",
      "-extfile",
      "inter.ext",
      "-out",
      "inter.pem",
    ],
    dir,
  );
  await openssl(
    [
      "req",
      "-new",
      "-key",
      "leaf.key",
      "-subj",
      `/C=US/O=Microsoft Corporation/CN=${leafCn}`,
      "-out",
      "leaf.csr",
    ],
    dir,
  );
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "inter.pem",
      "-CAkey",
      "inter.key",
      "-CAcreateserial",
      "-sha256",
      "-days",
      "2",
      "-extfile",
      "leaf.ext",
      "-out",
      "leaf.pem",
    ],
    dir,
  );
  const [rootPem, intermediatePem, leafPem] = await Promise.all(
    ["root.pem", "inter.pem", "leaf.pem"].map((f) => readFile(join(dir, f), "utf8")),
  );
  return {
    dir,
    rootPem: rootPem!,
    intermediatePem: intermediatePem!,
    leafPem: leafPem!,
    leafKeyFile: join(dir, "leaf.key"),
    leafFile: join(dir, "leaf.pem"),
    intermediateFile: join(dir, "inter.pem"),
  };
}

export interface AzureVm {
  subscriptionId: string;
  resourceGroup: string;
  vmName: string;
  vmId: string;
  principalId: string;
  clientId: string;
}

/** "MM/DD/YY HH:MM:SS -0000", as IMDS writes time stamps. */
function imdsTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${p(d.getUTCFullYear() % 100)} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} -0000`;
}

/** Signs Azure's attested JSON with `openssl smime -sign` (PKCS#7 SignedData, DER). */
export async function signAttestedDocument(chain: AttestationChain, content: string): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "idbot-azdoc-"));
  try {
    await writeFile(join(dir, "doc.json"), content);
    return await openssl(
      [
        "smime",
        "-sign",
        "-binary",
        "-nodetach",
        "-md",
        "sha256",
        "-in",
        "doc.json",
        "-signer",
        chain.leafFile,
        "-inkey",
        chain.leafKeyFile,
        "-certfile",
        chain.intermediateFile,
        "-outform",
        "DER",
      ],
      dir,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface FakeAzure {
  imdsUrl: string;
  entra: FakeOidcIssuer;
  tenantId: string;
  /** The VM IMDS describes; tests change it to move the VM. */
  vm: AzureVm;
  /** Which chain signs documents (tests swap in an untrusted one). */
  signer: AttestationChain;
  /** Shifts the document's timeStamp back by this many seconds (an old document). */
  documentAgeSeconds: number;
  requests: { documents: number; tokens: number; refused: number };
  mintToken(resource: string, overrides?: Record<string, unknown>): Promise<string>;
  documentFor(nonce: string): Promise<string>;
  close(): Promise<void>;
}

export async function startFakeAzure(opts: {
  tlsCertFile: string;
  tlsKeyFile: string;
  chain: AttestationChain;
  vm: AzureVm;
  tenantId?: string;
}): Promise<FakeAzure> {
  const tenantId = opts.tenantId ?? randomUUID();
  const entra = await startFakeOidcIssuer({
    tlsCertFile: opts.tlsCertFile,
    tlsKeyFile: opts.tlsKeyFile,
    issuerPath: `/${tenantId}/v2.0`,
    jwksPath: `/${tenantId}/discovery/v2.0/keys`,
    defaultClaims: () => ({}),
  });
  const requests = { documents: 0, tokens: 0, refused: 0 };
  const fake = {
    entra,
    tenantId,
    vm: opts.vm,
    signer: opts.chain,
    documentAgeSeconds: 0,
    requests,
    async mintToken(resource: string, overrides: Record<string, unknown> = {}): Promise<string> {
      const vm = fake.vm;
      return entra.mint({
        audience: resource,
        expiresIn: 86_399,
        claims: {
          aio: randomBytes(40).toString("base64url"),
          appid: vm.clientId,
          appidacr: "2",
          idp: `https://sts.windows.net/${tenantId}/`,
          idtyp: "app",
          oid: vm.principalId,
          rh: `0.${randomBytes(30).toString("base64url")}.`,
          sub: vm.principalId,
          tid: tenantId,
          uti: randomBytes(16).toString("base64url"),
          ver: "1.0",
          xms_mirid: `/subscriptions/${vm.subscriptionId}/resourcegroups/${vm.resourceGroup}/providers/Microsoft.Compute/virtualMachines/${vm.vmName}`,
          xms_tcdt: 1_600_000_000,
          ...overrides,
        },
      });
    },
    async documentFor(nonce: string): Promise<string> {
      const created = new Date(Date.now() - fake.documentAgeSeconds * 1000);
      const content = JSON.stringify({
        licenseType: "",
        nonce,
        plan: { name: "", product: "", publisher: "" },
        sku: "22_04-lts-gen2",
        subscriptionId: fake.vm.subscriptionId,
        timeStamp: {
          createdOn: imdsTime(created),
          expiresOn: imdsTime(new Date(created.getTime() + 6 * 3600_000)),
        },
        vmId: fake.vm.vmId,
      });
      return (await signAttestedDocument(fake.signer, content)).toString("base64");
    },
  };
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const json = (status: number, v: unknown) => {
      res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify(v));
    };
    if (req.headers["x-forwarded-for"] !== undefined) {
      requests.refused++;
      return json(400, { error: "Bad request. Forwarded header is not allowed" });
    }
    if (req.headers.metadata !== "true") {
      requests.refused++;
      return json(400, { error: "Bad request. Required metadata header not specified" });
    }
    const url = new URL(req.url ?? "/", "http://169.254.169.254");
    if (req.method !== "GET") return json(405, { error: "Method not allowed" });
    try {
      if (url.pathname === "/metadata/attested/document") {
        if (!url.searchParams.get("api-version"))
          return json(400, { error: "Bad request. api-version was not specified" });
        const nonce = url.searchParams.get("nonce") ?? "";
        if (!/^[A-Za-z0-9]{1,32}$/.test(nonce))
          return json(400, { error: "Bad request. Nonce must be at most 32 alphanumeric characters" });
        requests.documents++;
        return json(200, { encoding: "pkcs7", signature: await fake.documentFor(nonce) });
      }
      if (url.pathname === "/metadata/identity/oauth2/token") {
        const resource = url.searchParams.get("resource");
        if (!resource)
          return json(400, {
            error: "invalid_request",
            error_description: "Required query variable 'resource' is missing",
          });
        requests.tokens++;
        const now = Math.floor(Date.now() / 1000);
        return json(200, {
          access_token: await fake.mintToken(resource),
          client_id: fake.vm.clientId,
          expires_in: "86399",
          expires_on: String(now + 86_399),
          ext_expires_in: "86399",
          not_before: String(now),
          resource,
          token_type: "Bearer",
        });
      }
      return json(404, { error: "Not found" });
    } catch (e) {
      return json(500, { error: String(e) });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return Object.assign(fake, {
    imdsUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await entra.close();
    },
  });
}
