// The proof of a pod: its projected service account token, read from a file on every
// attempt (the kubelet rewrites the file well before the token expires). The file is
// $IDBOT_KUBERNETES_TOKEN_FILE, else the first of /var/run/secrets/tokens/idbot (a
// projected volume for idbot, the recommended setup) and the pod's default service
// account token.
//
// The token is sent only when its audience includes the one this join is for (the
// service URL unless --audience says otherwise): the default service account token's
// audience is the API server, and handing it to the idbot service would hand over the
// pod's Kubernetes credentials. Such a token fails here, with the volume to add. Expiry is
// left to the service (its clock and leeway decide; the kubelet renews the file anyway).
import { readFile } from "node:fs/promises";
import { decodeJwt } from "jose";
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";
import { IdTokenError } from "./env.ts";

export const KUBERNETES_TOKEN_FILES = [
  "/var/run/secrets/tokens/idbot",
  "/var/run/secrets/kubernetes.io/serviceaccount/token",
] as const;

function volumeSnippet(audience: string): string {
  return [
    "Give the pod a token for the idbot service's audience (a projected volume):",
    "",
    "  spec:",
    "    containers:",
    "      - name: job",
    "        volumeMounts: [{ name: idbot-token, mountPath: /var/run/secrets/tokens, readOnly: true }]",
    "    volumes:",
    "      - name: idbot-token",
    "        projected:",
    "          sources:",
    "            - serviceAccountToken:",
    "                path: idbot",
    `                audience: ${audience}`,
    "                expirationSeconds: 600",
    "",
    "or point IDBOT_KUBERNETES_TOKEN_FILE at the token.",
  ].join("\n");
}

async function readToken(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new IdTokenError("missing", `cannot read the service account token ${path}: ${code ?? String(e)}`);
  }
}

export function kubernetesProofSource(opts: CloudSourceOptions): ProofSource {
  const configured = opts.env.IDBOT_KUBERNETES_TOKEN_FILE?.trim();
  const files = configured ? [configured] : [...KUBERNETES_TOKEN_FILES];
  return async () => {
    let token: string | undefined;
    let file = "";
    for (file of files) {
      token = await readToken(file);
      if (token !== undefined) break;
    }
    if (!token) {
      throw new IdTokenError(
        "missing",
        configured
          ? `the service account token file ${configured} (IDBOT_KUBERNETES_TOKEN_FILE) does not exist or is empty`
          : `no service account token: neither ${files.join(" nor ")} exists`,
        volumeSnippet(opts.audience),
      );
    }
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(token);
    } catch {
      throw new IdTokenError("malformed", `${file} does not hold a JWT service account token`);
    }
    const aud = Array.isArray(claims.aud) ? claims.aud : claims.aud === undefined ? [] : [claims.aud];
    if (!aud.includes(opts.audience)) {
      throw new IdTokenError(
        "malformed",
        `the token in ${file} is for ${JSON.stringify(aud)}, not for "${opts.audience}": idbot does not send it (a token for another audience, such as the API server, must not leave the pod)`,
        volumeSnippet(opts.audience),
      );
    }
    return token;
  };
}
