// The tbot-shaped config file of `idbot join -c`: the seed's shapes load and map to the
// Action's inputs; unknown fields and bad values are errors naming the field and line.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { layeredInputs, parseCliInputs } from "../src/client/config.ts";
import { ConfigFileError, parseConfigFile } from "../src/client/configfile.ts";

const parse = (text: string) => parseConfigFile(text, "idbot.yaml", "/etc/idbot");

function rejects(text: string, pattern: RegExp): void {
  assert.throws(
    () => parse(text),
    (e: Error) => {
      assert.ok(e instanceof ConfigFileError, String(e));
      assert.match(e.message, pattern);
      return true;
    },
  );
}

describe("config file: the seed's shapes", () => {
  test("identity + ssh_client (the Ansible and EC2 examples, joined with github)", () => {
    const c = parse(`version: v2
onboarding:
  join_method: github
  token: ansible-bot
auth_server: teleport.example.com:443
outputs:
  - type: identity
    destination:
      type: directory
      path: /opt/ansible/.tbot
  - type: ssh_client
    destination:
      type: directory
      path: /opt/ansible/.tbot
`);
    assert.deepEqual(c.values, {
      token: "ansible-bot",
      "join-method": "github",
      server: "https://teleport.example.com:443",
      outputs: "identity,ssh",
    });
    assert.deepEqual(c.out, {
      path: "/opt/ansible/.tbot",
      label: "outputs[0].destination.path (idbot.yaml:10)",
    });
    assert.equal(c.outConflict, undefined);
    assert.equal(c.labels.token, "onboarding.token (idbot.yaml:4)");
  });

  test("kubernetes with kubernetes_cluster (the runner example), destinations in different directories", () => {
    const c = parse(`version: v2
onboarding:
  join_method: gitlab
  token: gitlab-runner-bot
auth_server: teleport.example.com:443
outputs:
  - type: identity
    destination:
      type: directory
      path: /opt/gitlab-runner/teleport
  - type: kubernetes
    destination:
      type: directory
      path: /opt/gitlab-runner/k8s
    kubernetes_cluster: production
`);
    assert.equal(c.values.outputs, "identity,kubernetes");
    assert.equal(c.values["kubernetes-cluster"], "production");
    assert.equal(c.out, undefined);
    assert.match(
      c.outConflict!,
      /^idbot\.yaml:14: outputs\[1\]\.destination\.path: "\/opt\/gitlab-runner\/k8s" differs from "\/opt\/gitlab-runner\/teleport" \(idbot\.yaml:10\): idbot writes one join into one directory/,
    );
  });

  test("database: the seed's `database: NAME` names the service; tbot's service/username/database map one to one", () => {
    const seed = parse(`version: v2
onboarding: { join_method: github, token: backup-bot }
auth_server: teleport.example.com:443
outputs:
  - type: database
    destination: { type: directory, path: db-certs }
    database: production-postgres
`);
    assert.equal(seed.values.database, "production-postgres");
    assert.equal(seed.values["database-name"], undefined);
    assert.equal(seed.out?.path, "/etc/idbot/db-certs", "relative to the config file's directory");
    const tbot = parse(`version: v2
onboarding: { join_method: github, token: backup-bot }
server: https://idbot.example.com
certificate_ttl: 30m
retries: 2
ssh_hosts: ["*.example.com", web01]
outputs:
  - type: database
    service: app-db
    username: ci
    database: app
`);
    assert.deepEqual(tbot.values, {
      token: "backup-bot",
      "join-method": "github",
      server: "https://idbot.example.com",
      "certificate-ttl": "30m",
      "ssh-hosts": "*.example.com,web01",
      retries: "2",
      database: "app-db",
      "database-name": "app",
      "database-user": "ci",
      outputs: "database",
    });
    const inputs = parseCliInputs(layeredInputs([{ values: tbot.values, label: (i) => i }]).get, {});
    assert.deepEqual(inputs.database, { service: "app-db", user: "ci", name: "app" });
    assert.equal(inputs.ttlSeconds, 1800);
    assert.equal(inputs.joinMethod, "github");
  });

  test("spiffe-svid with jwts, and workload-identity-jwt, map to spiffe-x509 and jwt", () => {
    const c = parse(`version: v2
onboarding: { join_method: oidc, token: t, id_token_env: CI_JOB_JWT }
server: https://idbot.example.com
outputs:
  - type: spiffe-svid
    svid: { path: /ci/app }
    jwts: [{ audience: vault }]
  - type: workload-identity-jwt
    audiences: [vault, aws]
`);
    assert.equal(c.values.outputs, "spiffe-x509,jwt");
    assert.equal(c.values["spiffe-path"], "/ci/app");
    assert.equal(c.values["jwt-audience"], "vault,aws");
    assert.equal(c.values["id-token-env"], "CI_JOB_JWT");
  });

  test("the daemon's fields: storage (bound keypair), oneshot, renewal settings, on_renew", () => {
    const c = parse(`version: v2
oneshot: true
onboarding:
  join_method: bound_keypair
  token: edge
  bound_keypair: { registration_secret: s3cret-s3cret-s3cret }
storage: { type: directory, path: /var/lib/teleport/bot }
server: https://idbot.example.com
certificate_ttl: 1h
renewal_interval: 40m
retry_interval: 1m
max_retries: 5
on_renew: systemctl reload nginx
outputs:
  - type: ssh_host
    host_key: /etc/ssh/ssh_host_ed25519_key.pub
    destination: { type: directory, path: /etc/ssh/idbot }
`);
    assert.equal(c.values.storage, "/var/lib/teleport/bot");
    assert.equal(c.values["join-method"], "bound_keypair");
    assert.equal(c.values["registration-secret"], "s3cret-s3cret-s3cret");
    assert.equal(c.values.outputs, "ssh_host");
    assert.equal(c.values["ssh-host-key"], "/etc/ssh/ssh_host_ed25519_key.pub");
    assert.deepEqual(c.daemon, {
      oneshot: true,
      renewalIntervalSeconds: 2400,
      retryIntervalSeconds: 60,
      maxRetries: 5,
      onRenew: "systemctl reload nginx",
    });
    assert.deepEqual(c.warnings, []);
  });
});

describe("config file: errors name the field and its line", () => {
  const head =
    "version: v2\nonboarding: { join_method: github, token: t }\nserver: https://idbot.example.com\n";

  test("unknown fields, at any depth", () => {
    rejects(`${head}renewal_intervall: 20m\n`, /^idbot\.yaml:4: unknown field "renewal_intervall"$/);
    rejects(
      `${head}outputs:\n  - type: identity\n    destination:\n      type: directory\n      path: /x\n      symlinks: secure\n`,
      /^idbot\.yaml:9: unknown field "outputs\[0\]\.destination\.symlinks"$/,
    );
    rejects(
      `${head}outputs:\n  - type: kubernetes\n    kubernetes_cluster: prod\n    roles: [a]\n`,
      /idbot\.yaml:7: unknown field "outputs\[0\]\.roles"/,
    );
  });

  test("bad values and paths", () => {
    rejects(
      `${head}outputs:\n  - type: application_tunnel\n`,
      /idbot\.yaml:5: outputs\[0\]\.type: unknown output type/,
    );
    rejects(
      `${head}outputs:\n  - type: identity\n    destination: { type: kubernetes_secret, path: x }\n`,
      /idbot\.yaml:6: outputs\[0\]\.destination\.type: only destination type "directory" is supported/,
    );
    rejects(
      `${head}outputs:\n  - type: identity\n    destination: { type: directory, path: "" }\n`,
      /idbot\.yaml:6: outputs\[0\]\.destination\.path: /,
    );
    rejects(
      `${head}outputs:\n  - type: kubernetes\n`,
      /idbot\.yaml:5: outputs\[0\]\.kubernetes_cluster: is required/,
    );
    rejects(
      "version: v2\nonboarding: { join_method: carrier-pigeon, token: t }\n",
      /idbot\.yaml:2: onboarding\.join_method: Invalid option: expected one of "github"\|"gitlab"\|"oidc"/,
    );
    rejects(
      "version: v1\nonboarding: { join_method: github, token: t }\n",
      /idbot\.yaml:1: version: version must be "v2"/,
    );
    rejects(`${head}auth_server: other:443\n`, /idbot\.yaml:4: auth_server: give the service address once/);
    rejects(`${head}max_retries: -1\n`, /idbot\.yaml:4: max_retries: /);
    rejects(
      `${head}storage: { type: memory }\n`,
      /idbot\.yaml:4: storage\.type: storage type must be "directory"/,
    );
    rejects(
      `${head}outputs:\n  - type: kubernetes\n    kubernetes_cluster: a\n  - type: kubernetes\n    kubernetes_cluster: b\n`,
      /idbot\.yaml:8: outputs\[1\]\.kubernetes_cluster: "b" conflicts with "a" from outputs\[0\]\.kubernetes_cluster \(idbot\.yaml:6\)/,
    );
    rejects("version: v2\nonboarding: [\n", /^idbot\.yaml:\d+: YAML syntax error/);
    rejects("version: v2\nversion: v2\n", /YAML syntax error: Map keys must be unique/);
  });
});

describe("templates/gitlab-ci.yml", () => {
  test("a hidden .idbot job minting IDBOT_ID_TOKEN for the server, pinned to this version", async () => {
    const { readFileSync } = await import("node:fs");
    const { parse } = await import("yaml");
    const root = new URL("../", import.meta.url);
    const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { version: string };
    const t = parse(readFileSync(new URL("templates/gitlab-ci.yml", root), "utf8")) as Record<
      string,
      {
        id_tokens: Record<string, { aud: string }>;
        variables: Record<string, string>;
        before_script: string[];
        after_script: string[];
      }
    >;
    const job = t[".idbot"]!;
    assert.deepEqual(job.id_tokens, { IDBOT_ID_TOKEN: { aud: "$IDBOT_SERVER" } });
    assert.equal(job.variables.IDBOT_VERSION, pkg.version);
    assert.match(
      job.before_script[0]!,
      /idbot@\$\{IDBOT_VERSION\}" join --join-method gitlab --token "\$IDBOT_TOKEN" --out "\$IDBOT_DIR"$/,
    );
    assert.match(job.after_script[0]!, /cleanup "\$IDBOT_DIR"$/);
  });
});
