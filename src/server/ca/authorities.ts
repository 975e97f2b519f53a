// The service's signing keys, created once per store on first start: a TLS CA and a
// SPIFFE CA (ECDSA P-256), an SSH user CA and an SSH host CA (Ed25519), a JWT key (ES256).
import { createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import type { CAKeyRecord, CAName } from "../store/store.ts";
import { JwtIssuer } from "./jwt.ts";
import { SshCertificateAuthority } from "./ssh.ts";
import { createSelfSignedCA, X509Issuer } from "./x509.ts";

const CA_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;

/** Creates one of the service's signing keys; called for each one a store lacks. */
export function createAuthorityRecord(name: CAName, clusterName: string, now = new Date()): CAKeyRecord {
  const createdAt = now.toISOString();
  const pem = (k: KeyObject) => k.export({ format: "pem", type: "pkcs8" }).toString();
  const p256 = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const x509Ca = (commonName: string) => {
    const key = p256();
    const cert = createSelfSignedCA({
      key,
      commonName,
      organization: "idbot",
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + CA_LIFETIME_MS),
    });
    return { name, privateKeyPem: pem(key), publicMaterial: cert, createdAt };
  };
  const sshCa = (comment: string) => {
    const key = generateKeyPairSync("ed25519").privateKey;
    return {
      name,
      privateKeyPem: pem(key),
      publicMaterial: new SshCertificateAuthority(key).publicKeyLine(comment),
      createdAt,
    };
  };
  switch (name) {
    case "tls":
      return x509Ca(`idbot TLS CA (${clusterName})`);
    case "spiffe":
      return x509Ca(`idbot SPIFFE CA (${clusterName})`);
    case "ssh_user":
      return sshCa("idbot-user-ca");
    case "ssh_host":
      return sshCa("idbot-host-ca");
    case "jwt":
    case "jwt_previous":
      return { name, privateKeyPem: pem(p256()), publicMaterial: randomUUID(), createdAt };
  }
}

export class Authorities {
  readonly tls: X509Issuer;
  readonly sshUser: SshCertificateAuthority;
  readonly sshHost: SshCertificateAuthority;
  readonly spiffe: X509Issuer;
  readonly jwt: JwtIssuer;

  constructor(records: CAKeyRecord[]) {
    const get = (name: CAKeyRecord["name"]) => {
      const r = records.find((x) => x.name === name);
      if (!r) throw new Error(`the store has no ${name} CA; it may be from an incompatible version`);
      return r;
    };
    const tls = get("tls");
    this.tls = new X509Issuer(createPrivateKey(tls.privateKeyPem), tls.publicMaterial);
    this.sshUser = new SshCertificateAuthority(createPrivateKey(get("ssh_user").privateKeyPem));
    this.sshHost = new SshCertificateAuthority(createPrivateKey(get("ssh_host").privateKeyPem));
    const spiffe = get("spiffe");
    this.spiffe = new X509Issuer(createPrivateKey(spiffe.privateKeyPem), spiffe.publicMaterial);
    const jwtKey = (r: CAKeyRecord) => ({
      kid: r.publicMaterial,
      privateKey: createPrivateKey(r.privateKeyPem),
    });
    const previous = records.find((x) => x.name === "jwt_previous");
    this.jwt = new JwtIssuer(jwtKey(get("jwt")), previous ? jwtKey(previous) : undefined);
  }

  get tlsCaPem(): string {
    return this.tls.caCertPem;
  }
  get sshUserCaLine(): string {
    return this.sshUser.publicKeyLine("idbot-user-ca");
  }
  get sshHostCaLine(): string {
    return this.sshHost.publicKeyLine("idbot-host-ca");
  }
}
