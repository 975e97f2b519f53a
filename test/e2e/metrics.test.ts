// GET /metrics of the bundled `idbot serve` after real traffic (a join with identity and
// ssh outputs, a denied join, a renewal and a refused one), read with a small strict
// parser of the Prometheus text format (0.0.4): HELP and TYPE lines, `name{labels} value`
// samples, histogram buckets. Also the series the alert rules read, exported at 0 from the
// start, and the renewal certificate-age histogram fed directly.
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { request as httpRequest } from "node:http";
import { after, before, describe, test } from "node:test";
import { renewSigningInput } from "../../src/protocol/join.ts";
import { ed25519PublicKeyLine } from "../../src/protocol/ssh.ts";
import { silentLogger } from "../../src/server/log.ts";
import { Metrics } from "../../src/server/metrics.ts";
import { startWorld, type World } from "../helpers/world.ts";

// ---------------------------------------------------------------------------------------
// a strict Prometheus text-format parser

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help?: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(text: string, where: string): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (text === "NaN") return Number.NaN;
  assert.match(text, /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/, `${where}: a number`);
  return Number(text);
}

/** `{a="x",b="y\"z"}` → labels; every escape is one of \\ \" \n. */
function parseLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    assert.ok(eq > i, `${where}: label name at ${i}`);
    const name = text.slice(i, eq);
    assert.match(name, LABEL, `${where}: label name ${JSON.stringify(name)}`);
    assert.equal(labels[name], undefined, `${where}: label ${name} twice`);
    assert.equal(text[eq + 1], '"', `${where}: quoted value for ${name}`);
    let j = eq + 2;
    let value = "";
    for (;;) {
      const c = text[j];
      assert.ok(c !== undefined, `${where}: unterminated value of ${name}`);
      if (c === '"') break;
      if (c === "\\") {
        const e = text[j + 1];
        assert.ok(e === "\\" || e === '"' || e === "n", `${where}: escape \\${e}`);
        value += e === "n" ? "\n" : e;
        j += 2;
      } else {
        assert.notEqual(c, "\n", `${where}: raw newline in a label value`);
        value += c;
        j++;
      }
    }
    labels[name] = value;
    i = j + 1;
    if (i < text.length) {
      assert.equal(text[i], ",", `${where}: "," between labels`);
      i++;
    }
  }
  return labels;
}

const seriesKey = (s: Sample) =>
  `${s.name}{${Object.keys(s.labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(s.labels[k])}`)
    .join(",")}}`;

function parsePrometheusText(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, n) => {
    const where = `line ${n + 1} ${JSON.stringify(line.slice(0, 120))}`;
    assert.notEqual(line.trim(), "", `${where}: no blank lines`);
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, "HELP" | "TYPE", string, string];
      assert.match(name, NAME, `${where}: metric name`);
      let f = families.get(name);
      if (!f) {
        assert.equal(seen.has(name), false, `${where}: family ${name} is not split`);
        f = { name, type: "untyped", samples: [] };
        families.set(name, f);
      }
      if (kind === "HELP") {
        assert.equal(f.help, undefined, `${where}: one HELP per family`);
        assert.ok(rest.length > 0, `${where}: HELP text`);
        f.help = rest;
      } else {
        assert.ok(
          ["counter", "gauge", "histogram", "summary", "untyped"].includes(rest),
          `${where}: TYPE ${rest}`,
        );
        assert.equal(f.samples.length, 0, `${where}: TYPE before the samples`);
        f.type = rest as Family["type"];
      }
      current = f;
      return;
    }
    assert.ok(!line.startsWith("#"), `${where}: only HELP and TYPE comments are written`);
    const m = /^([^\s{]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `${where}: a sample line "name{labels} value"`);
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    assert.match(name, NAME, `${where}: sample name`);
    const sample: Sample = {
      name,
      labels: labelText ? parseLabels(labelText, where) : {},
      value: parseValue(valueText, where),
    };
    assert.ok(current, `${where}: a sample after its family's TYPE`);
    const suffixes = current.type === "histogram" ? ["_bucket", "_sum", "_count"] : [""];
    assert.ok(
      suffixes.some((s) => name === `${current!.name}${s}`),
      `${where}: belongs to family ${current.name} (${current.type})`,
    );
    if (current.type === "counter") assert.ok(sample.value >= 0, `${where}: counters are not negative`);
    const key = seriesKey(sample);
    assert.equal(seen.has(key), false, `${where}: series ${key} once`);
    seen.add(key);
    seen.add(current.name);
    current.samples.push(sample);
  });
  for (const f of families.values()) {
    assert.notEqual(f.type, "untyped", `${f.name} has a TYPE`);
    assert.ok(f.help, `${f.name} has a HELP`);
    if (f.type === "histogram") checkHistogram(f);
  }
  return families;
}

/** Per label set: buckets with le, non-decreasing in le, +Inf last and equal to _count. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const k = seriesKey({ name: "", labels: rest, value: 0 });
    const g = groups.get(k) ?? { buckets: [] };
    groups.set(k, g);
    if (s.name.endsWith("_bucket")) {
      assert.ok(le !== undefined, `${f.name}_bucket${k} has le`);
      g.buckets.push([parseValue(le, `${f.name} le`), s.value]);
    } else {
      assert.equal(le, undefined, `${s.name} has no le`);
      if (s.name.endsWith("_count")) g.count = s.value;
      else g.sum = s.value;
    }
  }
  // A labelled histogram has no series before its first observation: HELP and TYPE only.
  for (const [k, g] of groups) {
    const les = g.buckets.map(([le]) => le);
    assert.deepEqual(
      les,
      [...les].sort((a, b) => a - b),
      `${f.name}${k}: buckets in increasing le`,
    );
    assert.equal(les.at(-1), Number.POSITIVE_INFINITY, `${f.name}${k}: a +Inf bucket`);
    for (let i = 1; i < g.buckets.length; i++) {
      assert.ok(g.buckets[i]![1] >= g.buckets[i - 1]![1], `${f.name}${k}: cumulative buckets are monotone`);
    }
    assert.equal(g.buckets.at(-1)![1], g.count, `${f.name}${k}: +Inf bucket = _count`);
    assert.ok(g.sum !== undefined && g.sum >= 0, `${f.name}${k}: _sum`);
  }
}

function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name.replace(/_(bucket|sum|count)$/, "")) ?? families.get(name);
  assert.ok(family, `family of ${name} exported`);
  const want = seriesKey({ name, labels, value: 0 });
  const s = family.samples.find((x) => seriesKey(x) === want);
  assert.ok(s, `${want} exported`);
  return s.value;
}

// ---------------------------------------------------------------------------------------

interface HttpResult {
  status: number;
  text: string;
  headers: Record<string, unknown>;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies are inspected field by field
  json: any;
}

function http(url: string, body?: unknown): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest(
      url,
      {
        method: data === undefined ? "GET" : "POST",
        headers:
          data === undefined ? {} : { "content-type": "application/json", "content-length": data.length },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, text, headers: res.headers, json });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${url} timed out`)));
    req.on("error", reject);
    req.end(data);
  });
}

const sshKey = generateKeyPairSync("ed25519");
const tlsKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
const PUBLIC_KEYS = {
  ssh: ed25519PublicKeyLine(sshKey.publicKey, "metrics@idbot"),
  tls: tlsKey.publicKey.export({ type: "spki", format: "pem" }).toString(),
};

let world: World;
let before0: Map<string, Family>;

before(async () => {
  world = await startWorld();
  const res = await http(`${world.service.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  before0 = parsePrometheusText(res.text);
});

after(async () => {
  await world?.close();
});

describe("GET /metrics", () => {
  test("a fresh service exports every series the alert rules read, at 0", () => {
    assert.equal(value(before0, "idbot_auth_failures_total", { reason: "join" }), 0);
    assert.equal(value(before0, "idbot_auth_failures_total", { reason: "renew" }), 0);
    assert.equal(value(before0, "idbot_renewals_total", { result: "failure" }), 0);
    assert.equal(value(before0, "idbot_renewals_total", { result: "success" }), 0);
    assert.equal(value(before0, "idbot_joins_total", { result: "success" }), 0);
    assert.equal(value(before0, "idbot_store_errors_total"), 0);
    assert.equal(value(before0, "idbot_renewal_certificate_age_ratio_bucket", { le: "0.8" }), 0);
    assert.equal(value(before0, "idbot_renewal_certificate_age_ratio_bucket", { le: "+Inf" }), 0);
    assert.equal(value(before0, "idbot_renewal_certificate_age_ratio_count"), 0);
  });

  test("after a join, a denied join, a renewal and a refused renewal it parses strictly and counts them", async () => {
    const url = world.service.url;
    const idToken = await world.github.mint({ audience: url });
    const joined = await http(`${url}/v1/join`, {
      token: "github-deploy",
      join_method: "github",
      id_token: idToken,
      public_keys: PUBLIC_KEYS,
      outputs: ["identity", "ssh"],
    });
    assert.equal(joined.status, 200, joined.text);
    const denied = await http(`${url}/v1/join`, {
      token: "github-deploy",
      join_method: "github",
      id_token: await world.github.mint({ audience: url, claims: { repository: "evil/app" } }),
      public_keys: PUBLIC_KEYS,
    });
    assert.equal(denied.status, 403, denied.text);

    // A renewal, signed with the TLS key of the identity just issued.
    const renewal = (signature?: string) => {
      const timestamp = Math.floor(Date.now() / 1000);
      const id = joined.json.bot_instance_id as string;
      const input = renewSigningInput(id, 1, timestamp, PUBLIC_KEYS);
      return {
        bot_instance_id: id,
        generation: 1,
        certificate: joined.json.tls.certificate,
        timestamp,
        signature: signature ?? sign("sha256", input, tlsKey.privateKey).toString("base64"),
        public_keys: PUBLIC_KEYS,
        outputs: ["identity", "ssh"],
      };
    };
    const refused = await http(`${url}/v1/renew`, renewal(Buffer.alloc(64, 1).toString("base64")));
    assert.equal(refused.status, 403, refused.text);
    const renewed = await http(`${url}/v1/renew`, renewal());
    assert.equal(renewed.status, 200, renewed.text);
    assert.equal(renewed.json.generation, 2);

    const res = await http(`${url}/metrics`);
    assert.equal(res.status, 200);
    const m = parsePrometheusText(res.text);
    assert.equal(m.get("idbot_joins_total")?.type, "counter");
    assert.equal(value(m, "idbot_joins_total", { result: "success" }), 1);
    assert.ok(value(m, "idbot_joins_total", { result: "denied" }) >= 1);
    // The join and the renewal each issued an SSH and a TLS certificate.
    assert.equal(value(m, "idbot_certificates_issued_total", { type: "ssh" }), 2);
    assert.equal(value(m, "idbot_certificates_issued_total", { type: "tls" }), 2);
    assert.equal(value(m, "idbot_renewals_total", { result: "success" }), 1);
    assert.equal(value(m, "idbot_renewals_total", { result: "failure" }), 1);
    assert.equal(value(m, "idbot_auth_failures_total", { reason: "join" }), 1);
    assert.equal(value(m, "idbot_auth_failures_total", { reason: "renew" }), 1);
    assert.equal(value(m, "idbot_store_errors_total"), 0);

    const latency = m.get("idbot_request_duration_seconds");
    assert.equal(latency?.type, "histogram");
    assert.equal(value(m, "idbot_request_duration_seconds_count", { route: "/v1/join" }), 2);
    assert.equal(value(m, "idbot_request_duration_seconds_count", { route: "/v1/renew" }), 2);
    assert.equal(value(m, "idbot_request_duration_seconds_bucket", { route: "/v1/join", le: "+Inf" }), 2);

    // The renewed certificate was a minute old (its not-before is backdated 60 s) of a
    // lifetime of an hour and a minute: far below the 0.8 threshold.
    const age = m.get("idbot_renewal_certificate_age_ratio");
    assert.equal(age?.type, "histogram");
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_count"), 1);
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_bucket", { le: "0.25" }), 1);
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_bucket", { le: "0.8" }), 1);
    const sum = value(m, "idbot_renewal_certificate_age_ratio_sum");
    assert.ok(sum > 0 && sum < 0.05, `ratio ${sum}`);
  });
});

describe("the strict parser itself", () => {
  test("refuses what a Prometheus scrape would refuse or misread", () => {
    const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
    parsePrometheusText(ok);
    const hist = (buckets: string) => `# HELP h H.\n# TYPE h histogram\n${buckets}h_sum 1\nh_count 2\n`;
    parsePrometheusText(hist('h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'));
    for (const bad of [
      "a_total 1\n", // no TYPE
      ok.slice(0, -1), // no trailing newline
      ok.replace("# HELP a_total A.\n", ""), // no HELP
      ok.replace("a_total{", "b_total{"), // sample of another family
      ok.replace('x="1"', "x=1"), // unquoted label value
      ok.replace('x="1"', 'x="1\\q"'), // bad escape
      ok.replace(" 2\n", " two\n"), // not a number
      `${ok}a_total{x="1"} 3\n`, // duplicate series
      `${ok}\n`, // blank line
      hist('h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'), // not monotone
      hist('h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 3\n'), // +Inf != count
      hist('h_bucket{le="1"} 1\n'), // no +Inf
    ]) {
      assert.throws(() => parsePrometheusText(bad), assert.AssertionError, JSON.stringify(bad));
    }
  });
});

describe("Metrics (the class behind /metrics)", () => {
  test("a renewal past 80% of the certificate's lifetime lands above the 0.8 bucket", () => {
    const metrics = new Metrics(silentLogger);
    const hour = 3_600_000;
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    metrics.renewedCertificate(t0, t0 + hour, t0 + (hour * 2) / 3); // the daemon's 2/3
    metrics.renewedCertificate(t0, t0 + hour, t0 + hour * 0.9); // late
    metrics.renewedCertificate(t0, t0 + hour, t0 + hour * 0.8); // exactly 80%: not over
    metrics.renewedCertificate(Number.NaN, t0, t0); // unparsable dates are ignored
    const m = parsePrometheusText(metrics.render());
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_bucket", { le: "0.7" }), 1);
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_bucket", { le: "0.8" }), 2);
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_bucket", { le: "0.9" }), 3);
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_bucket", { le: "+Inf" }), 3);
    assert.equal(value(m, "idbot_renewal_certificate_age_ratio_count"), 3);
  });

  test("label values are escaped so the text stays parseable", () => {
    const metrics = new Metrics(silentLogger);
    metrics.authFailures.inc({ reason: 'a "quoted"\\ reason\nwith a newline' });
    const m = parsePrometheusText(metrics.render());
    assert.equal(value(m, "idbot_auth_failures_total", { reason: 'a "quoted"\\ reason\nwith a newline' }), 1);
  });

  test("the auth-failure alert is logged once a minute past 5 failures in a minute", () => {
    const lines: Array<Record<string, unknown>> = [];
    const metrics = new Metrics({ log: (_level, msg, fields) => lines.push({ msg, ...fields }) });
    const t0 = 1_000_000;
    for (let i = 0; i < 5; i++) metrics.authFailure("join", t0 + i * 1000);
    assert.equal(lines.length, 0);
    metrics.authFailure("join", t0 + 5000);
    assert.equal(lines.length, 1);
    for (let i = 0; i < 20; i++) metrics.authFailure("join", t0 + 6000 + i * 100);
    assert.equal(lines.length, 1, "once, not once per failure");
    // Failures spaced out beyond a minute never add up to more than 5.
    const spaced: unknown[] = [];
    const quiet = new Metrics({ log: () => spaced.push(1) });
    for (let i = 0; i < 30; i++) quiet.authFailure("join", t0 + i * 15_000);
    assert.equal(spaced.length, 0);
    // A minute after the first alert, a new burst alerts again.
    for (let i = 0; i < 6; i++) metrics.authFailure("join", t0 + 70_000 + i);
    assert.equal(lines.length, 2);
  });
});
