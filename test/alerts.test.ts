// deploy/prometheus/idbot-alerts.yml, the seed's monitoring thresholds as Prometheus alert
// rules: `promtool check rules` and `promtool test rules idbot-alerts.test.yml` (synthetic
// series for each alert, both sides of each threshold), plus checks that need no promtool:
// the file's shape, the thresholds in each expression, and that every series a rule reads
// is one the service exports (so a renamed metric cannot silently disarm an alert).
//
// promtool comes from Debian's `prometheus` package, installed here when missing and
// running as root. When it cannot be had, the promtool tests are skipped and the checks
// below still run; under CI=true that is a failure only if Debian has the package (then
// the install should have worked), so CI on a system without it still passes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { parse as parseYaml } from "yaml";
import { silentLogger } from "../src/server/log.ts";
import { Metrics } from "../src/server/metrics.ts";

const execFileP = promisify(execFile);
const DIR = resolve(import.meta.dirname, "../deploy/prometheus");
const RULES = join(DIR, "idbot-alerts.yml");
const RULE_TESTS = join(DIR, "idbot-alerts.test.yml");
/** PROMTOOL names another binary (a newer Prometheus release, or a missing one to try the fallback). */
const PROMTOOL = process.env.PROMTOOL || "promtool";

async function promtoolVersion(): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await execFileP(PROMTOOL, ["--version"], { timeout: 30_000 });
    return (stdout || stderr).split("\n")[0];
  } catch {
    return undefined;
  }
}

async function ensurePromtool(): Promise<{ version: string } | { skip: string }> {
  let version = await promtoolVersion();
  if (version) return { version };
  let reason: string;
  if (process.getuid?.() !== 0) {
    reason = `${PROMTOOL} is missing and we are not root, so Debian's prometheus package cannot be installed`;
  } else {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    try {
      await execFileP("apt-get", ["update"], { env, maxBuffer: 64 << 20, timeout: 300_000 });
      await execFileP("apt-get", ["install", "-y", "--no-install-recommends", "prometheus"], {
        env,
        maxBuffer: 64 << 20,
        timeout: 600_000,
      });
      reason = `prometheus was installed but ${PROMTOOL} still does not run`;
    } catch (err) {
      const e = err as Error & { stderr?: string };
      reason = `installing Debian's prometheus package failed: ${(e.stderr ?? "").trim().split("\n").slice(-3).join(" ") || e.message}`;
    }
    version = await promtoolVersion();
    if (version) return { version };
  }
  const packaged = await execFileP("apt-cache", ["show", "prometheus"], { maxBuffer: 64 << 20 }).then(
    () => true,
    () => false,
  );
  if (process.env.CI === "true" && packaged) {
    throw new Error(`promtool is required under CI (Debian has the prometheus package): ${reason}`);
  }
  return { skip: `${reason}; the rules are checked without promtool only` };
}

const promtool = ensurePromtool();

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const rules = (): Rule[] => {
  const doc = parseYaml(readFileSync(RULES, "utf8")) as { groups: Array<{ name: string; rules: Rule[] }> };
  return doc.groups.flatMap((g) => g.rules);
};

test("promtool check rules: the file is valid", async (t) => {
  const p = await promtool;
  if ("skip" in p) return t.skip(p.skip);
  const { stdout, stderr } = await execFileP(PROMTOOL, ["check", "rules", RULES]);
  t.diagnostic(`${p.version}: ${(stdout + stderr).trim().replace(/\s+/g, " ")}`);
  assert.match(stdout + stderr, /SUCCESS: 3 rules found/);
});

test("promtool test rules: each alert fires past its threshold and not at or below it", async (t) => {
  const p = await promtool;
  if ("skip" in p) return t.skip(p.skip);
  // promtool resolves rule_files relative to the test file's directory.
  const r = await execFileP(PROMTOOL, ["test", "rules", RULE_TESTS]).catch(
    (e: Error & { stdout?: string; stderr?: string }) => {
      assert.fail(`promtool test rules failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
    },
  );
  assert.match(r.stdout + r.stderr, /SUCCESS/);
  // Every alert is exercised, on both sides of its threshold.
  const tests = parseYaml(readFileSync(RULE_TESTS, "utf8")) as {
    rule_files: string[];
    tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
  };
  assert.deepEqual(tests.rule_files, ["idbot-alerts.yml"]);
  for (const rule of rules()) {
    const cases = tests.tests.flatMap((x) => x.alert_rule_test).filter((c) => c.alertname === rule.alert);
    assert.ok(
      cases.some((c) => c.exp_alerts.length > 0),
      `${rule.alert}: a case where it fires`,
    );
    assert.ok(
      cases.some((c) => c.exp_alerts.length === 0),
      `${rule.alert}: a case where it does not`,
    );
  }
});

test("the rules encode the seed's thresholds (checked without promtool)", () => {
  const doc = parseYaml(readFileSync(RULES, "utf8")) as { groups: unknown };
  assert.ok(Array.isArray(doc.groups) && doc.groups.length === 1, "one group");
  const all = rules();
  assert.deepEqual(
    all.map((r) => r.alert),
    ["IdbotAuthFailures", "IdbotRenewalFailures", "IdbotCertificateAge"],
  );
  for (const r of all) {
    assert.deepEqual(
      Object.keys(r).sort(),
      ["alert", "annotations", "expr", "labels"],
      `${r.alert}: only alert, expr, labels, annotations`,
    );
    assert.equal(typeof r.expr, "string");
    assert.equal(r.labels?.severity, "warning", `${r.alert}: a severity`);
    assert.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`);
    // Balanced brackets: a cheap syntax check where promtool is missing.
    for (const [open, close] of ["()", "[]", "{}"]) {
      const count = (c: string) => r.expr.split(c).length - 1;
      assert.equal(count(open!), count(close!), `${r.alert}: balanced ${open}${close}`);
    }
  }
  const expr = (name: string) =>
    all
      .find((r) => r.alert === name)!
      .expr.replace(/\s+/g, " ")
      .trim();
  // Auth failures > 5 per minute.
  assert.equal(expr("IdbotAuthFailures"), "sum(increase(idbot_auth_failures_total[1m])) > 5");
  // Renewal failures > 2 (consecutive: within the daemon's retry window).
  assert.equal(
    expr("IdbotRenewalFailures"),
    'sum(increase(idbot_renewals_total{result="failure"}[10m])) > 2',
  );
  // Certificate age > 80% of TTL: renewals above the 0.8 bucket.
  assert.equal(
    expr("IdbotCertificateAge"),
    'sum(increase(idbot_renewal_certificate_age_ratio_bucket{le="+Inf"}[15m])) - sum(increase(idbot_renewal_certificate_age_ratio_bucket{le="0.8"}[15m])) > 0',
  );
});

test("every series the rules read is one the service exports, with the label values they select", () => {
  const exported = new Metrics(silentLogger).render();
  for (const r of rules()) {
    for (const m of r.expr.matchAll(/\b(idbot_[a-z_]+)(?:\{([^}]*)\})?/g)) {
      const [, name, selector] = m as unknown as [string, string, string | undefined];
      const family = name.replace(/_(bucket|sum|count)$/, "");
      assert.match(
        exported,
        new RegExp(`^# TYPE ${family} (counter|histogram)$`, "m"),
        `${r.alert}: ${name}`,
      );
      // A fresh service already exports the selected series (at 0), so increase() also
      // counts the first events after a start.
      const wanted = (selector ?? "").split(",").filter(Boolean);
      const lines = exported.split("\n").filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
      assert.ok(
        lines.some((l) => wanted.every((sel) => l.includes(sel.trim()))),
        `${r.alert}: ${name}{${wanted.join(",")}} is exported from the start`,
      );
    }
  }
  // The bucket boundary the certificate-age rule subtracts is one of the histogram's.
  assert.match(exported, /^idbot_renewal_certificate_age_ratio_bucket\{le="0\.8"\} 0$/m);
});
