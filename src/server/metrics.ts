// Prometheus text-format metrics (GET /metrics) and the seed's auth-failure alert: more
// than 5 failed authentications in a minute is logged as an alert, once per minute.
import type { Logger } from "./log.ts";

type Labels = Record<string, string>;

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const key = (labels: Labels) =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escape(labels[k]!)}"`)
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
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ""} ${v}`);
    return lines.join("\n");
  }
}

class Histogram {
  private series = new Map<string, { buckets: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: number[],
  ) {}
  observe(seconds: number, labels: Labels = {}): void {
    const k = key(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.bounds.length; i++) if (seconds <= this.bounds[i]!) s.buckets[i]!++;
    s.sum += seconds;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : "";
      this.bounds.forEach((b, i) => lines.push(`${this.name}_bucket{${sep}le="${b}"} ${s.buckets[i]}`));
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
    "Joins by join method and result (success, denied, bad_request, rate_limited, error).",
  );
  readonly certificates = new Counter(
    "idbot_certificates_issued_total",
    "Certificates and tokens issued, by type.",
  );
  readonly renewals = new Counter("idbot_renewals_total", "Renewals by result (success, failure).");
  readonly authFailures = new Counter(
    "idbot_auth_failures_total",
    "Refused joins and renewals (bad proof, replay, denied rule).",
  );
  readonly rateLimited = new Counter(
    "idbot_rate_limited_total",
    "Requests refused with 429, by limit (address, token).",
  );
  readonly storeErrors = new Counter(
    "idbot_store_errors_total",
    "Store operations that failed (database down, disk full).",
  );
  readonly requestSeconds = new Histogram(
    "idbot_request_duration_seconds",
    "Request latency by route.",
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  private failureTimes: number[] = [];
  private lastAlert = 0;

  constructor(private logger: Logger) {}

  /** Counts an authentication failure and raises the seed's alert past 5 per minute. */
  authFailure(reason: string, now = Date.now()): void {
    this.authFailures.inc({ reason });
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

  render(extra: string[] = []): string {
    return `${[
      this.joins,
      this.certificates,
      this.renewals,
      this.authFailures,
      this.rateLimited,
      this.storeErrors,
      this.requestSeconds,
    ]
      .map((m) => m.render())
      .concat(extra)
      .join("\n")}\n`;
  }
}
