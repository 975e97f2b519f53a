// Runs every test file under test/ with node:test through tsx. On Node 20 a directory or
// glob of .ts files silently runs nothing, so the files are listed here explicitly, and
// the run fails when the runner reports zero tests.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
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

const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", "--test-reporter=spec", "--test-concurrency=2", ...files],
  { stdio: ["ignore", "pipe", "inherit"] },
);
let out = "";
child.stdout.on("data", (d) => {
  process.stdout.write(d);
  out += d.toString();
  if (out.length > 1 << 20) out = out.slice(-65536);
});
child.on("close", (code) => {
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
