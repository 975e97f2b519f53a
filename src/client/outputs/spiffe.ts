// spiffe/: an X.509-SVID in the spiffe-helper layout (svid.pem, svid_key.pem,
// svid_bundle.pem), and a JWT-SVID (jwt_svid.token) for relying parties such as Vault.
import type { OutputInput, OutputPlan } from "./output.ts";

export function spiffeX509Output({ response, keys }: OutputInput): OutputPlan {
  const s = response.spiffe;
  if (!s) throw new Error("the service issued no X.509-SVID for the spiffe-x509 output");
  return {
    files: [
      { path: "spiffe/svid.pem", contents: s.certificate },
      { path: "spiffe/svid_key.pem", contents: keys.tlsPrivatePem },
      { path: "spiffe/svid_bundle.pem", contents: s.bundle },
    ],
    outputs: { "spiffe-dir": "spiffe" },
    summary: [{ type: "SPIFFE X.509-SVID", identity: s.spiffe_id, path: "spiffe/svid.pem" }],
  };
}

export function jwtOutput({ response }: OutputInput): OutputPlan {
  const j = response.jwt;
  if (!j) throw new Error("the service issued no JWT-SVID for the jwt output");
  return {
    files: [{ path: "spiffe/jwt_svid.token", contents: j.token }],
    outputs: { "jwt-svid-file": "spiffe/jwt_svid.token" },
    summary: [
      {
        type: `JWT-SVID (aud ${j.audiences.join(", ")})`,
        identity: j.spiffe_id,
        path: "spiffe/jwt_svid.token",
      },
    ],
    secrets: [j.token],
  };
}
