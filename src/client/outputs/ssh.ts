// identity/ssh_config and identity/known_hosts: `ssh -F ssh_config user@host` (and
// Ansible's ssh_args) use the certificate and trust hosts only through the host CA.
import { join } from "node:path";
import { IDENTITY_DIR } from "./identity.ts";
import type { OutputInput, OutputPlan } from "./output.ts";

/** ssh_config arguments with spaces must be double-quoted; quotes themselves cannot be. */
function quote(path: string): string {
  if (path.includes('"')) throw new Error(`cannot write a path containing '"' into ssh_config: ${path}`);
  return `"${path}"`;
}

export function sshOutput({ dir, response, sshHosts }: OutputInput): OutputPlan {
  if (!response.ssh) throw new Error("the service issued no SSH certificate for the ssh output");
  const abs = (name: string) => join(dir, IDENTITY_DIR, name);
  const patterns = sshHosts.length > 0 ? sshHosts : ["*"];
  const knownHosts = `@cert-authority ${patterns.join(",")} ${response.ssh.host_ca}\n`;
  const config = [
    `# Written by idbot for bot ${response.bot_name} (instance ${response.bot_instance_id}).`,
    `# The certificate expires at ${response.expires_at}. Use: ssh -F ${quote(abs("ssh_config"))} USER@HOST`,
    `Host ${patterns.join(" ")}`,
    `    IdentityFile ${quote(abs("key"))}`,
    `    CertificateFile ${quote(abs("key-cert.pub"))}`,
    "    IdentitiesOnly yes",
    "    IdentityAgent none",
    `    UserKnownHostsFile ${quote(abs("known_hosts"))}`,
    "    GlobalKnownHostsFile none",
    "    StrictHostKeyChecking yes",
    "    PasswordAuthentication no",
    "    KbdInteractiveAuthentication no",
    "    BatchMode yes",
    "",
  ].join("\n");
  return {
    files: [
      { path: `${IDENTITY_DIR}/known_hosts`, contents: knownHosts },
      { path: `${IDENTITY_DIR}/ssh_config`, contents: config },
    ],
    outputs: { "ssh-config": `${IDENTITY_DIR}/ssh_config`, "known-hosts": `${IDENTITY_DIR}/known_hosts` },
    summary: [
      { type: "ssh_config", identity: `Host ${patterns.join(" ")}`, path: `${IDENTITY_DIR}/ssh_config` },
    ],
  };
}
