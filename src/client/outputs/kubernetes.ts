// kubernetes/kubeconfig.yaml: one cluster, one user, one context, certificates embedded,
// so `kubectl` works with KUBECONFIG alone (no other file to keep in place).
import type { OutputInput, OutputPlan } from "./output.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");
// JSON strings are valid YAML double-quoted scalars: no escaping rules of our own.
const q = (s: string) => JSON.stringify(s);

export function kubernetesOutput({ response, keys }: OutputInput): OutputPlan {
  const k = response.kubernetes;
  if (!k) throw new Error("the service issued no Kubernetes certificate for the kubernetes output");
  const keyData = b64(keys.tlsPrivatePem);
  const user = `idbot-${response.bot_name}`;
  const kubeconfig = [
    `# Written by idbot. Expires at ${response.expires_at}`,
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `  - name: ${q(k.cluster)}`,
    "    cluster:",
    `      server: ${q(k.server)}`,
    `      certificate-authority-data: ${q(b64(k.ca))}`,
    ...(k.tls_server_name ? [`      tls-server-name: ${q(k.tls_server_name)}`] : []),
    "users:",
    `  - name: ${q(user)}`,
    "    user:",
    `      client-certificate-data: ${q(b64(k.certificate))}`,
    `      client-key-data: ${q(keyData)}`,
    "contexts:",
    `  - name: ${q(k.cluster)}`,
    "    context:",
    `      cluster: ${q(k.cluster)}`,
    `      user: ${q(user)}`,
    `current-context: ${q(k.cluster)}`,
    "preferences: {}",
    "",
  ].join("\n");
  return {
    files: [{ path: "kubernetes/kubeconfig.yaml", contents: kubeconfig }],
    outputs: { kubeconfig: "kubernetes/kubeconfig.yaml" },
    env: { KUBECONFIG: "kubernetes/kubeconfig.yaml" },
    summary: [
      {
        type: `Kubernetes (${k.cluster})`,
        identity: `user ${k.user}${k.groups.length ? `, groups ${k.groups.join(", ")}` : ""}`,
        path: "kubernetes/kubeconfig.yaml",
      },
    ],
    secrets: [keyData],
  };
}
