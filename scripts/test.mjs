// Runs every test file under test/ with node:test through tsx. On Node 20 a directory or
// glob of .ts files silently runs nothing, so the files are listed here explicitly, and
// the run fails when the runner reports zero tests.
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function list(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...list(p));
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const filter = process.argv.slice(2);
let files = list("test");
if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error("test: no test files found");
  process.exit(1);
}

// Every temporary directory of the run (tests, services, sshd, PostgreSQL) is made under
// one fresh TMPDIR, removed when the run ends, so no test can leave anything in /tmp.
// IDBOT_KEEP_TEST_TMP=1 keeps it for a look after a failure.
const root = mkdtempSync(join(tmpdir(), "idbot-test-"));
// Traversable (not listable) by the unprivileged users some peers run as.
chmodSync(root, 0o711);
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", "--test-reporter=spec", "--test-concurrency=2", ...files],
  { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, TMPDIR: root } },
);
let out = "";
child.stdout.on("data", (d) => {
  process.stdout.write(d);
  out += d.toString();
  if (out.length > 1 << 20) out = out.slice(-65536);
});
child.on("close", (code) => {
  if (process.env.IDBOT_KEEP_TEST_TMP === "1") console.log(`test: temporary files kept in ${root}`);
  else rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  const num = (k) => Number((out.match(new RegExp(`ℹ ${k} (\\d+)`)) ?? [])[1] ?? 0);
  const tests = num("tests");
  const pass = num("pass");
  const fail = num("fail");
  const skipped = num("skipped");
  console.log(`${pass} passed, ${fail} failed, ${skipped} skipped`);
  if (tests === 0) {
    console.error("test: the runner reported zero tests; failing the run");
    process.exit(1);
  }
  process.exit(code ?? 1);
});
