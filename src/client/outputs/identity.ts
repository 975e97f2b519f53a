// identity/: the SSH key and user certificate, the TLS client certificate and key, and
// the CAs that issued them, in the file names tbot users know.
import type { OutputInput, OutputPlan } from "./output.ts";

export const IDENTITY_DIR = "identity";

export function identityOutput({ response, keys }: OutputInput): OutputPlan {
  const f = (name: string) => `${IDENTITY_DIR}/${name}`;
  const files = [
    { path: f("key"), contents: keys.sshPrivateFile },
    { path: f("key.pub"), contents: `${keys.sshPublic}\n` },
    { path: f("tlscert"), contents: response.tls.certificate },
    { path: f("tlskey"), contents: keys.tlsPrivatePem },
    { path: f("tls-ca.pem"), contents: response.tls.ca },
  ];
  if (response.ssh) {
    files.push(
      { path: f("key-cert.pub"), contents: `${response.ssh.certificate}\n` },
      { path: f("ssh-user-ca.pub"), contents: `${response.ssh.user_ca}\n` },
    );
  }
  return {
    files,
    outputs: {
      "identity-dir": IDENTITY_DIR,
      "tls-cert": f("tlscert"),
      "tls-key": f("tlskey"),
      "tls-ca": f("tls-ca.pem"),
    },
    env: { IDBOT_IDENTITY_DIR: IDENTITY_DIR },
    summary: [
      ...(response.ssh
        ? [
            {
              type: "SSH user certificate",
              identity: response.ssh.principals.join(", "),
              path: f("key-cert.pub"),
            },
          ]
        : []),
      { type: "TLS client certificate", identity: `CN=${response.bot_name}`, path: f("tlscert") },
    ],
  };
}
