// The service's four signing keys, created once per store on first start: a TLS CA
// (ECDSA P-256), an SSH user CA and an SSH host CA (Ed25519), and a JWT key (ES256).
import { createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID } from "node:crypto";
import type { CAKeyRecord } from "../store/store.ts";
import { SshCertificateAuthority } from "./ssh.ts";
import { createSelfSignedCA, X509Issuer } from "./x509.ts";

const CA_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;

export function createAuthorityRecords(clusterName: string, now = new Date()): CAKeyRecord[] {
  const createdAt = now.toISOString();
  const tlsKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const tlsCert = createSelfSignedCA({
    key: tlsKey,
    commonName: `idbot TLS CA (${clusterName})`,
    organization: "idbot",
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + CA_LIFETIME_MS),
  });
  const sshUser = generateKeyPairSync("ed25519").privateKey;
  const sshHost = generateKeyPairSync("ed25519").privateKey;
  const jwtKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const pem = (k: KeyObject) => k.export({ format: "pem", type: "pkcs8" }).toString();
  return [
    { name: "tls", privateKeyPem: pem(tlsKey), publicMaterial: tlsCert, createdAt },
    {
      name: "ssh_user",
      privateKeyPem: pem(sshUser),
      publicMaterial: new SshCertificateAuthority(sshUser).publicKeyLine("idbot-user-ca"),
      createdAt,
    },
    {
      name: "ssh_host",
      privateKeyPem: pem(sshHost),
      publicMaterial: new SshCertificateAuthority(sshHost).publicKeyLine("idbot-host-ca"),
      createdAt,
    },
    { name: "jwt", privateKeyPem: pem(jwtKey), publicMaterial: randomUUID(), createdAt },
  ];
}

export class Authorities {
  readonly tls: X509Issuer;
  readonly sshUser: SshCertificateAuthority;
  readonly sshHost: SshCertificateAuthority;
  readonly jwtKey: KeyObject;
  readonly jwtKid: string;

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
    const jwt = get("jwt");
    this.jwtKey = createPrivateKey(jwt.privateKeyPem);
    this.jwtKid = jwt.publicMaterial;
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
