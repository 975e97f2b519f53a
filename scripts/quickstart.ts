// `npm run quickstart`: the whole flow on this machine, with nothing to configure.
// Starts the join service on its embedded store, a loopback stand-in for GitHub's OIDC
// token service (the real one exists only inside Actions jobs), runs the bundled Action's
// main step as the runner would, shows the SSH certificate, then runs the post step.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runActionStep } from "../test/helpers/runner.ts";
import { MAIN, POST } from "../test/helpers/service.ts";
import { startWorld } from "../test/helpers/world.ts";

const step = (s: string) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);

// Everything this run writes (the service's data, the runner's directories) goes under
// one temporary directory, removed at the end.
const root = mkdtempSync(join(tmpdir(), "idbot-quickstart-"));
process.env.TMPDIR = root;

step("starting idbot serve (embedded SQLite store) and a loopback GitHub OIDC issuer");
const world = await startWorld();
try {
  console.log(`service: ${world.service.url}   data dir: ${world.service.dataDir}`);
  console.log(`resources: ${world.service.resourcesFile}`);

  step("running the Action's main step (dist/main.js) as the runner does");
  const runnerTemp = mkdtempSync(join(tmpdir(), "idbot-runner-temp-"));
  const main = await runActionStep(MAIN, {
    inputs: { server: world.service.url, token: "github-deploy", "certificate-ttl": "15m" },
    env: {
      ...world.env,
      ACTIONS_ID_TOKEN_REQUEST_URL: world.github.idTokenRequestUrl,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: world.github.idTokenRequestToken,
    },
    runnerTemp,
  });
  process.stdout.write(main.stdout.replace(/^::add-mask::.*\n/gm, ""));
  if (main.code !== 0) throw new Error(`main step failed:\n${main.stderr}`);
  console.log("outputs:");
  for (const [k, v] of Object.entries(main.outputs)) console.log(`  ${k.padEnd(16)} ${v}`);

  step("the SSH user certificate (ssh-keygen -L)");
  console.log(
    execFileSync("ssh-keygen", ["-L", "-f", join(main.outputs["identity-dir"]!, "key-cert.pub")], {
      encoding: "utf8",
    }),
  );
  step("the TLS client certificate (openssl)");
  console.log(
    execFileSync(
      "openssl",
      ["x509", "-noout", "-subject", "-issuer", "-enddate", "-in", main.outputs["tls-cert"]!],
      {
        encoding: "utf8",
      },
    ),
  );
  console.log(`ssh with it:  ssh -F ${main.outputs["ssh-config"]} idbot-deploy@HOST`);

  step("running the post step (dist/post.js)");
  const post = await runActionStep(POST, { state: main.state, runnerTemp, env: world.env });
  process.stdout.write(post.stdout);
  const left = existsSync(runnerTemp) ? readdirSync(runnerTemp) : [];
  console.log(
    left.length === 0
      ? "RUNNER_TEMP is empty again: every file main wrote is gone."
      : `left: ${left.join(", ")}`,
  );
} finally {
  await world.close();
  rmSync(root, { recursive: true, force: true });
}
