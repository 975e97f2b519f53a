// database/: a client certificate (CN = database user), its key and the database server's
// CA, plus a connection string psql and libpq-based clients take as they are.
import { join } from "node:path";
import type { OutputInput, OutputPlan } from "./output.ts";

export function databaseOutput({ dir, response, keys }: OutputInput): OutputPlan {
  const d = response.database;
  if (!d) throw new Error("the service issued no database certificate for the database output");
  const abs = (name: string) => join(dir, "database", name);
  const host = d.host.includes(":") ? `[${d.host}]` : d.host;
  const params = new URLSearchParams({
    sslmode: "verify-full",
    sslcert: abs("tls.crt"),
    sslkey: abs("tls.key"),
    sslrootcert: abs("ca.crt"),
  });
  const url = `postgresql://${encodeURIComponent(d.user)}@${host}:${d.port}/${encodeURIComponent(d.name)}?${params.toString().replace(/\+/g, "%20")}`;
  return {
    files: [
      { path: "database/tls.crt", contents: d.certificate },
      { path: "database/tls.key", contents: keys.tlsPrivatePem },
      { path: "database/ca.crt", contents: d.ca },
    ],
    outputs: {
      "database-cert": "database/tls.crt",
      "database-key": "database/tls.key",
      "database-ca": "database/ca.crt",
    },
    values: { "database-url": url },
    summary: [
      {
        type: `Database (${d.service})`,
        identity: `user ${d.user}, database ${d.name}`,
        path: "database/tls.crt",
      },
    ],
  };
}
