// A long-lived machine: `idbot start` (the bundled CLI) joins with a bound keypair, renews
// at 2/3 of a short TTL, survives a service outage longer than its retries by joining
// again, runs on_renew, never lets a reader see half a file, and stops on SIGTERM. Also:
// `idbot join --join-method token`, an SSH host certificate served by a real sshd, and the
// systemd unit checked by systemd-analyze.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { parseInstanceUri } from "../../src/protocol/join.ts";
import { parseCertificateLine } from "../../src/protocol/ssh.ts";
import { IDBOT, type Service, startService } from "../helpers/service.ts";
import { ensureOpenSSHServer, ensureUser, startSshd } from "../helpers/sshd.ts";

const execFileP = promisify(execFile);
const SECRET = "daemon-registration-secret-0001";

const resources = `
kind: role
version: v1
metadata: { name: edge }
spec:
  logins: [idbot-edge]
  host_principals: [127.0.0.1, localhost]
  max_ttl: 6s
---
kind: bot
version: v1
metadata: { name: edge }
spec: { roles: [edge] }
---
kind: token
version: v1
metadata: { name: edge }
spec:
  join_method: bound_keypair
  bot_name: edge
  bound_keypair:
    onboarding: { registration_secret: "${SECRET}" }
    recovery: { mode: relaxed }
`;

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

function instanceOf(dir: string): { instanceId: string; generation: number } {
  const cert = new X509Certificate(readFileSync(join(dir, "identity", "tlscert")));
  const uri = (cert.subjectAltName ?? "").split(/,\s*/).find((s) => s.startsWith("URI:urn:idbot"))!;
  return parseInstanceUri(uri.slice(4))!;
}

async function until(
  what: string,
  cond: () => boolean,
  timeoutMs: number,
  logs: () => string,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${logs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("the renewal daemon", () => {
  test("joins, renews before expiry, rejoins after an outage, runs on_renew, readers never see half a file, SIGTERM stops it", async () => {
    let svc: Service = await startService({ resources });
    const port = new URL(svc.url).port;
    cleanups.push(() => svc.stop());
    const work = mkdtempSync(join(tmpdir(), "idbot-daemon-"));
    const out = join(work, "out");
    const renewLog = join(work, "renewed.log");
    const config = join(work, "idbot.yaml");
    writeFileSync(
      config,
      `version: v2
onboarding:
  join_method: bound_keypair
  token: edge
  bound_keypair: { registration_secret: "${SECRET}" }
server: ${svc.url}
storage: { type: directory, path: ${join(work, "storage")} }
certificate_ttl: 6s
retry_interval: 1s
max_retries: 1
on_renew: echo "renewed $IDBOT_DIR" >> ${renewLog}
outputs:
  - type: identity
    destination: { type: directory, path: ${out} }
  - type: ssh_client
    destination: { type: directory, path: ${out} }
`,
    );
    let logs = "";
    const daemon: ChildProcess = spawn(process.execPath, [IDBOT, "start", "-c", config], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    daemon.stderr!.on("data", (d) => {
      logs += d;
    });
    cleanups.push(async () => daemon.kill("SIGKILL"));
    const showLogs = () => `daemon:\n${logs}\nservice:\n${svc.logs()}`;

    // The manifest is written after every file of the first join (renewals then replace
    // files by rename; the first join creates them exclusively, so read after it is done).
    await until("the first join", () => existsSync(join(out, ".idbot-manifest.json")), 15_000, showLogs);
    assert.equal(readFileSync(join(work, "storage", "bound_key.pem"), "utf8").includes("PRIVATE KEY"), true);
    const first = instanceOf(out);
    assert.equal(first.generation, 1);

    // A reader that keeps parsing the files while they are replaced.
    let reads = 0;
    let torn = 0;
    const tornErrors: string[] = [];
    let reading = true;
    const reader = (async () => {
      while (reading) {
        try {
          new X509Certificate(readFileSync(join(out, "identity", "tlscert")));
          parseCertificateLine(readFileSync(join(out, "identity", "key-cert.pub"), "utf8").trim());
          reads++;
        } catch (e) {
          torn++;
          tornErrors.push(String(e));
        }
        await new Promise((r) => setImmediate(r));
      }
    })();

    await until("two renewals", () => instanceOf(out).generation >= 3, 20_000, showLogs);
    assert.equal(instanceOf(out).instanceId, first.instanceId, "renewals keep the bot instance");
    // on_renew runs right after each renewal is written.
    await until(
      "on_renew after each renewal",
      () => existsSync(renewLog) && readFileSync(renewLog, "utf8").trim().split("\n").length >= 2,
      5_000,
      showLogs,
    );
    const renewed = readFileSync(renewLog, "utf8").trim().split("\n");
    assert.equal(renewed[0], `renewed ${out}`);

    // An outage longer than the retries (1 s x 2), then the service comes back.
    await svc.stop();
    await until("renewals to fail", () => /joining again with the join method/.test(logs), 15_000, showLogs);
    svc = await startService({ resources, dataDir: svc.dataDir, listen: `127.0.0.1:${port}` });
    await until("a rejoin", () => instanceOf(out).instanceId !== first.instanceId, 20_000, showLogs);
    await until("the rejoin to be logged", () => /joined again: generation 1/.test(logs), 5_000, showLogs);

    reading = false;
    await reader;
    assert.ok(reads > 100, `the reader read ${reads} times`);
    assert.equal(torn, 0, `no reader ever saw a partial file: ${tornErrors.slice(0, 3).join("; ")}`);

    const exited = new Promise<number | null>((r) => daemon.once("exit", (code) => r(code)));
    daemon.kill("SIGTERM");
    assert.equal(await exited, 0, "SIGTERM stops the daemon cleanly");
    assert.match(logs, /"msg":"stopped"/);
  });

  test("oneshot: true joins once and exits", async () => {
    const svc = await startService({ resources });
    cleanups.push(() => svc.stop());
    const work = mkdtempSync(join(tmpdir(), "idbot-oneshot-"));
    writeFileSync(
      join(work, "c.yaml"),
      `version: v2\noneshot: true\nonboarding: { join_method: bound_keypair, token: edge, bound_keypair: { registration_secret: "${SECRET}" } }\nserver: ${svc.url}\nstorage: { type: directory, path: ${join(work, "s")} }\noutputs: [{ type: identity, destination: { type: directory, path: ${join(work, "o")} } }]\n`,
    );
    await execFileP(process.execPath, [IDBOT, "start", "-c", join(work, "c.yaml")], { timeout: 20_000 });
    assert.equal(instanceOf(join(work, "o")).generation, 1);
  });
});

describe("machines: one-time token join, SSH host certificates, systemd", () => {
  test("a host joined with a one-time secret presents an idbot host certificate to a client trusting only the host CA", async (t) => {
    const sshdOk = await ensureOpenSSHServer();
    if ("skip" in sshdOk) return t.skip(sshdOk.skip);
    await ensureUser("idbot-edge");
    const svc = await startService({
      resources: resources.replace(
        "token\nversion: v1\nmetadata: { name: edge }",
        "token\nversion: v1\nmetadata: { name: edge }",
      ),
    });
    cleanups.push(() => svc.stop());
    const work = mkdtempSync(join(tmpdir(), "idbot-host-"));
    await execFileP("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(work, "host_key")]);
    const add = await execFileP(process.execPath, [
      IDBOT,
      "admin",
      "tokens",
      "add",
      "--data-dir",
      svc.dataDir,
      "--bot",
      "edge",
    ]);
    const secret = add.stdout.trim().split("\n").pop()!;
    const hostDir = join(work, "host");
    const joined = await execFileP(process.execPath, [
      IDBOT,
      "join",
      "--server",
      svc.url,
      "--join-method",
      "token",
      "--token",
      secret,
      "--outputs",
      "ssh_host",
      "--ssh-host-key",
      join(work, "host_key.pub"),
      "--certificate-ttl",
      "6s",
      "--out",
      hostDir,
    ]);
    assert.equal(joined.stdout.trim(), hostDir);
    assert.ok(
      !readFileSync(join(hostDir, ".idbot-join.json"), "utf8").includes(secret),
      "the one-time secret is not recorded",
    );
    const again = await execFileP(process.execPath, [
      IDBOT,
      "join",
      "--server",
      svc.url,
      "--join-method",
      "token",
      "--token",
      secret,
      "--out",
      join(work, "again"),
    ]).catch((e) => e as { code: number; stderr: string });
    assert.equal((again as { code: number }).code, 1);
    assert.match((again as { stderr: string }).stderr, /already used/);

    const sshd = await startSshd({
      dir: join(work, "sshd"),
      trustedUserCaKeysFile: join(hostDir, "ssh_host", "ssh_user_ca.pub"),
      hostKeyFile: join(work, "host_key"),
      hostCertFile: join(hostDir, "ssh_host", "ssh_host-cert.pub"),
    });
    cleanups.push(() => sshd.stop());
    // A client machine (another one-time secret): its known_hosts has only @cert-authority.
    const add2 = await execFileP(process.execPath, [
      IDBOT,
      "admin",
      "tokens",
      "add",
      "--data-dir",
      svc.dataDir,
      "--bot",
      "edge",
    ]);
    const client = join(work, "client");
    await execFileP(process.execPath, [
      IDBOT,
      "join",
      "--server",
      svc.url,
      "--join-method",
      "token",
      "--token",
      add2.stdout.trim().split("\n").pop()!,
      "--out",
      client,
    ]);
    const knownHosts = readFileSync(join(client, "identity", "known_hosts"), "utf8");
    assert.match(knownHosts, /^@cert-authority \* ssh-ed25519 \S+/);
    const r = await execFileP("ssh", [
      "-F",
      join(client, "identity", "ssh_config"),
      "-p",
      String(sshd.port),
      "-o",
      "StrictHostKeyChecking=yes",
      "idbot-edge@127.0.0.1",
      "echo",
      "host-cert-ok",
    ]);
    assert.equal(r.stdout.trim(), "host-cert-ok");
    // Renewal through --refresh: the identity's generation advances, same files.
    const before = instanceOf(client);
    await execFileP(process.execPath, [IDBOT, "join", "--refresh", client]);
    const afterRefresh = instanceOf(client);
    assert.equal(afterRefresh.instanceId, before.instanceId);
    assert.equal(afterRefresh.generation, before.generation + 1);
  });

  test("the systemd unit passes systemd-analyze verify and is sandboxed", async (t) => {
    const sa = await execFileP("sh", ["-c", "command -v systemd-analyze"]).catch(() => undefined);
    if (!sa) {
      if (process.env.CI === "true") {
        await execFileP("sh", [
          "-c",
          "apt-get install -y systemd >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y systemd >/dev/null)",
        ]);
      } else return t.skip("systemd-analyze is not installed");
    }
    const work = mkdtempSync(join(tmpdir(), "idbot-unit-"));
    writeFileSync(
      join(work, "idbot.yaml"),
      `version: v2\nonboarding: { join_method: bound_keypair, token: edge }\nserver: https://idbot.example.com\nstorage: { type: directory, path: /var/lib/idbot-bot }\noutputs: [{ type: identity, destination: { type: directory, path: /run/idbot } }]\n`,
    );
    const r = await execFileP(process.execPath, [
      IDBOT,
      "install",
      "systemd",
      "--config",
      join(work, "idbot.yaml"),
      "--user",
      "daemon",
      "--group",
      "daemon",
      "--write",
      "--unit-dir",
      work,
    ]);
    const unit = readFileSync(join(work, "idbot.service"), "utf8");
    assert.equal(r.stdout.trim(), join(work, "idbot.service"));
    for (const line of [
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ReadWritePaths=/run/idbot /var/lib/idbot-bot",
      "User=daemon",
    ]) {
      assert.ok(unit.includes(line), line);
    }
    assert.match(
      unit,
      new RegExp(`ExecStart=\\S+ \\S+idbot\\.js start -c ${join(work, "idbot.yaml").replace(/[.]/g, "\\.")}`),
    );
    await execFileP("systemd-analyze", ["verify", join(work, "idbot.service")]);
    const bad = await execFileP(process.execPath, [
      IDBOT,
      "install",
      "systemd",
      "--config",
      join(work, "idbot.yaml"),
      "--user",
      "bad user",
      "--group",
      "g",
    ]).catch((e) => e as { code: number; stderr: string });
    assert.equal((bad as { code: number }).code, 2);
    assert.match((bad as { stderr: string }).stderr, /--user "bad user" is not a valid user/);
  });
});
