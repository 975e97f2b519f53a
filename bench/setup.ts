// What every bench scenario shares: the resource file the service loads, and the public
// keys a client sends.
import { generateKeyPairSync } from "node:crypto";
import type { Issuer } from "./tokens.ts";

/** Role, bot and a `bench` github token verifying against the issuer's static JWKS; with
 *  `githubHost`, also a `bench-action` token trusting the fake GitHub (GHES shape) at that host. */
export function benchResources(issuer: Issuer, githubHost?: string): string {
  let yaml = `kind: role
version: v1
metadata: { name: bench }
spec: { logins: [bench] }
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
