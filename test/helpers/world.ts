// A complete loopback world for end-to-end tests: a test TLS CA, the fake GitHub issuer
// (GHES shape over HTTPS), and the bundled `idbot serve` trusting that issuer.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FakeGitHub, startFakeGitHub } from "./fake-github.ts";
import { type Service, startService } from "./service.ts";
import { createTestTlsCA, type TestTlsCA } from "./testca.ts";

export interface World {
  dir: string;
  ca: TestTlsCA;
  github: FakeGitHub;
  service: Service;
  /** Environment for spawned clients: trust the test CA. */
  env: Record<string, string>;
  close(): Promise<void>;
}

export function githubResources(host: string, extra = ""): string {
  return `
kind: role
version: v1
metadata: { name: deployer }
spec:
  logins: [idbot-deploy]
  max_ttl: 2h
---
kind: bot
version: v1
metadata: { name: deploy }
spec: { roles: [deployer] }
---
kind: token
version: v1
metadata: { name: github-deploy }
spec:
  join_method: github
  bot_name: deploy
  github:
    enterprise_server_host: "${host}"
    allow:
      - repository: acme/app
        ref: refs/heads/main
      - repository: acme/tools
        environment: production
${extra}`;
}

/** One more github join token for bot "deploy", allowing acme/app (a YAML document to
 *  append to githubResources). */
export function githubToken(host: string, name: string): string {
  return `---
kind: token
version: v1
metadata: { name: ${name} }
spec:
  join_method: github
  bot_name: deploy
  github:
    enterprise_server_host: "${host}"
    allow: [{ repository: acme/app }]
`;
}

export async function startWorld(
  opts: { resources?: (host: string) => string; serviceArgs?: string[] } = {},
): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), "idbot-world-"));
  const ca = await createTestTlsCA(join(dir, "ca"));
  const github = await startFakeGitHub({ tlsCertFile: ca.serverCertFile, tlsKeyFile: ca.serverKeyFile });
  const env = { NODE_EXTRA_CA_CERTS: ca.caFile };
  let service: Service;
  try {
    service = await startService({
      resources: (opts.resources ?? githubResources)(github.host),
      env,
      args: opts.serviceArgs,
    });
  } catch (e) {
    await github.close();
    throw e;
  }
  return {
    dir,
    ca,
    github,
    service,
    env,
    async close() {
      await service.stop();
      await github.close();
    },
  };
}
