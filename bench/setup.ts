// What every bench scenario shares: the resource file the service loads, and the public
// keys a client sends.
import { generateKeyPairSync } from "node:crypto";
import { createSelfSignedCA } from "../src/server/ca/x509.ts";
import type { Issuer } from "./tokens.ts";

/** Role, bot and a `bench` github token verifying against the issuer's static JWKS; with
 *  `githubHost`, also a `bench-action` token trusting the fake GitHub (GHES shape) at that host. */
/** Any CA certificate will do for the kube_cluster and database resources of the bench. */
function indentPem(pem: string): string {
  return pem
    .trim()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}

export function benchResources(issuer: Issuer, githubHost?: string): string {
  const anyCaPem = createSelfSignedCA({
    key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
    commonName: "bench CA",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
  });
  let yaml = `kind: role
version: v1
metadata: { name: bench }
spec:
  logins: [bench]
  kubernetes_clusters: [bench]
  kubernetes_groups: [bench]
  databases: [bench-db]
  db_users: [bench]
  spiffe: [{ path: "/bench/{{ join.github.repository }}" }]
  jwt_audiences: [vault]
---
kind: kube_cluster
version: v1
metadata: { name: bench }
spec:
  server: https://127.0.0.1:6443
  ca: |
${indentPem(anyCaPem)}
---
kind: database
version: v1
metadata: { name: bench-db }
spec:
  protocol: postgres
  host: 127.0.0.1
  ca: |
${indentPem(anyCaPem)}
---
kind: bot
version: v1
metadata: { name: bench }
spec: { roles: [bench] }
---
kind: token
version: v1
metadata: { name: bench }
spec:
  join_method: github
  bot_name: bench
  github:
    static_jwks: '${issuer.jwksJson}'
    allow: [{ repository: acme/app }]
`;
  if (githubHost) {
    yaml += `---
kind: token
version: v1
metadata: { name: bench-action }
spec:
  join_method: github
  bot_name: bench
  github:
    enterprise_server_host: "${githubHost}"
    allow: [{ repository: acme/app }]
`;
  }
  return yaml;
}

/** `idbot serve` options for load runs: rate limits off (all load comes from one address
 *  and one join token). */
export const BENCH_SERVE_ARGS = ["--rate-limit", "0", "--token-rate-limit", "0"];

/** One key pair for every request: the server does not care, and key generation is the client's cost. */
export function clientPublicKeys(): { ssh: string; tls: string } {
  const ed = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" });
  const str = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const blob = Buffer.concat([str(Buffer.from("ssh-ed25519")), str(ed.subarray(ed.length - 32))]);
  const tls = generateKeyPairSync("ec", { namedCurve: "P-256" })
    .publicKey.export({ format: "pem", type: "spki" })
    .toString();
  return { ssh: `ssh-ed25519 ${blob.toString("base64")} bench`, tls };
}
