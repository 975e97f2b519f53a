// ssh_host/: a host certificate for this machine's SSH host key (sshd HostCertificate),
// and the user CA for TrustedUserCAKeys, so clients and the host trust each other
// through idbot's CAs alone.
import type { OutputInput, OutputPlan } from "./output.ts";

export function sshHostOutput({ response }: OutputInput): OutputPlan {
  const h = response.ssh_host;
  if (!h) throw new Error("the service issued no host certificate for the ssh_host output");
  return {
    files: [
      { path: "ssh_host/ssh_host-cert.pub", contents: `${h.certificate}\n`, mode: 0o644 },
      { path: "ssh_host/ssh_user_ca.pub", contents: `${h.user_ca}\n`, mode: 0o644 },
    ],
    outputs: { "ssh-host-cert": "ssh_host/ssh_host-cert.pub", "ssh-user-ca": "ssh_host/ssh_user_ca.pub" },
    summary: [
      { type: "SSH host certificate", identity: h.principals.join(", "), path: "ssh_host/ssh_host-cert.pub" },
    ],
  };
}
