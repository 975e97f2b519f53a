// Prometheus text-format metrics (GET /metrics) and the seed's auth-failure alert: more
// than 5 failed authentications in a minute is logged as an alert, once per minute.
// deploy/prometheus/idbot-alerts.yml turns the seed's three thresholds into alert rules
// over these series. Every label value a rule reads is exported at 0 from the start, so
// `increase()` also sees the first failures after a (re)start.
import { threadId } from "node:worker_threads";
import type { Logger } from "./log.ts";

type Labels = Record<string, string>;

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const key = (labels: Labels) =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabel(labels[k]!)}"`)
    .join(",");

class Counter {
  private values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  /** Exports each label set at 0 until it is first counted. */
  init(...labelSets: Labels[]): this {
    for (const labels of labelSets) if (!this.values.has(key(labels))) this.values.set(key(labels), 0);
    return this;
  }
  snapshot(): Array<[string, number]> {
    return [...this.values];
  }
  merge(values: Array<[string, number]>): void {
    for (const [k, v] of values) this.values.set(k, (this.values.get(k) ?? 0) + v);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ""} ${v}`);
    return lines.join("\n");
  }
}

type Series = { buckets: number[]; sum: number; count: number };

class Histogram {
  private series = new Map<string, Series>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: number[],
  ) {}
  observe(value: number, labels: Labels = {}): void {
    const s = this.get(labels);
    for (let i = 0; i < this.bounds.length; i++) if (value <= this.bounds[i]!) s.buckets[i]!++;
    s.sum += value;
    s.count++;
  }
  /** Exports the label set with empty buckets until its first observation. */
  init(labels: Labels = {}): this {
    this.get(labels);
    return this;
  }
  private get(labels: Labels) {
    const k = key(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    return s;
  }
  snapshot(): Array<[string, Series]> {
    return [...this.series];
  }
  merge(series: Array<[string, Series]>): void {
    for (const [k, s] of series) {
      const mine = this.series.get(k);
      if (!mine) {
        this.series.set(k, { buckets: [...s.buckets], sum: s.sum, count: s.count });
        continue;
      }
      for (let i = 0; i < mine.buckets.length; i++) mine.buckets[i]! += s.buckets[i] ?? 0;
      mine.sum += s.sum;
      mine.count += s.count;
    }
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : "";
      for (let i = 0; i < this.bounds.length; i++) {
        lines.push(`${this.name}_bucket{${sep}le="${this.bounds[i]}"} ${s.buckets[i]}`);
      }
      lines.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum${k ? `{${k}}` : ""} ${s.sum}`);
      lines.push(`${this.name}_count${k ? `{${k}}` : ""} ${s.count}`);
    }
    return lines.join("\n");
  }
}

export class Metrics {
  readonly joins = new Counter(
    "idbot_joins_total",
    "Joins by result (success, denied, bad_request, rate_limited, error).",
  ).init(...["success", "denied", "bad_request", "rate_limited", "error"].map((result) => ({ result })));
  readonly certificates = new Counter(
    "idbot_certificates_issued_total",
    "Certificates and tokens issued, by type.",
  );
  readonly renewals = new Counter("idbot_renewals_total", "Renewals by result (success, failure).").init(
    { result: "success" },
    { result: "failure" },
  );
  readonly authFailures = new Counter(
    "idbot_auth_failures_total",
    "Refused joins and renewals (bad proof, replay, denied rule), by reason (join, renew).",
  ).init({ reason: "join" }, { reason: "renew" });
  readonly rateLimited = new Counter(
    "idbot_rate_limited_total",
    "Requests refused with 429, by limit (address, token).",
  ).init({ limit: "address" }, { limit: "token" });
  readonly storeErrors = new Counter(
    "idbot_store_errors_total",
    "Store operations that failed (database down, disk full).",
  ).init({});
  /** The seed's certificate-age threshold (80% of the TTL), seen from the service: how
   *  much of its lifetime (not-before to not-after, as `idbot status` measures it) the
   *  certificate a bot presented had used up when its renewal succeeded. The daemon renews
   *  at 2/3 of the TTL, so a renewal above 0.8 means the certificate aged past the
   *  threshold before it was renewed (failed or late renewals). */
  readonly renewalCertificateAge = new Histogram(
    "idbot_renewal_certificate_age_ratio",
    "Share of its lifetime (not-before to not-after) the presented certificate had used when a renewal succeeded.",
    [0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1],
  ).init();
  /** Shows how the kernel spreads connections over the threads of `serve --workers`. */
  readonly requests = new Counter(
    "idbot_http_requests_total",
    "HTTP requests, by the thread that served them (0: the main thread; 1..N: --workers threads).",
  );
  /** serve --workers: answers that closed their keep-alive connection because this thread
   *  held more than its share (balance.ts). */
  readonly connectionsShed = new Counter(
    "idbot_http_connections_shed_total",
    "Keep-alive connections a busy thread closed (Connection: close) because it held more than its share, by thread.",
  );
  /** This thread's label value for `requests`. */
  readonly thread = String(threadId);
  readonly requestSeconds = new Histogram(
    "idbot_request_duration_seconds",
    "Request latency by route.",
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  private failureTimes: number[] = [];
  private lastAlert = 0;

  /** `alert` replaces the alert window of this instance: a worker thread sends its
   *  failures to the main thread, whose window sees the whole process's. */
  constructor(
    private logger: Logger,
    private alert?: (now: number) => void,
  ) {}

  /** Counts an authentication failure and raises the seed's alert past 5 per minute. */
  authFailure(reason: string, now = Date.now()): void {
    this.authFailures.inc({ reason });
    if (this.alert) this.alert(now);
    else this.failureSeen(now);
  }

  /** The alert window: logs the alert when more than 5 failures fall in one minute. */
  failureSeen(now: number): void {
    this.failureTimes.push(now);
    while (this.failureTimes.length > 0 && this.failureTimes[0]! < now - 60_000) this.failureTimes.shift();
    if (this.failureTimes.length > 5 && now - this.lastAlert >= 60_000) {
      this.lastAlert = now;
      this.logger.log("error", "alert: more than 5 authentication failures in the last minute", {
        alert: "idbot_auth_failures",
        failures_last_minute: this.failureTimes.length,
      });
    }
  }

  /** Records a successful renewal of a certificate valid from `notBefore` to `notAfter`. */
  renewedCertificate(notBefore: number, notAfter: number, now = Date.now()): void {
    if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) return;
    this.renewalCertificateAge.observe((now - notBefore) / Math.max(1, notAfter - notBefore));
  }

  private all() {
    return [
      this.joins,
      this.certificates,
      this.renewals,
      this.authFailures,
      this.rateLimited,
      this.storeErrors,
      this.requests,
      this.connectionsShed,
      this.requestSeconds,
      this.renewalCertificateAge,
    ] as const;
  }

  /** Every series as plain data, to add up the threads of one process. */
  snapshot(): MetricsSnapshot {
    return this.all().map((m) => m.snapshot()) as MetricsSnapshot;
  }

  merge(snapshot: MetricsSnapshot): this {
    this.all().forEach((m, i) => {
      (m.merge as (v: unknown) => void)(snapshot[i]);
    });
    return this;
  }

  render(extra: string[] = []): string {
    return `${this.all()
      .map((m) => m.render())
      .concat(extra)
      .join("\n")}\n`;
  }
}

export type MetricsSnapshot = unknown[] & { readonly __metrics: unique symbol };
