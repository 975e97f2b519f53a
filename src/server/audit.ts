// Append-only audit trail: every join success, join failure (with its reason) and
// certificate issued is a row in the store and a log line.
import type { Logger } from "./log.ts";
import type { AuditEvent, Store } from "./store/store.ts";

export class Audit {
  constructor(
    private store: Store,
    private logger: Logger,
  ) {}

  /** Events committed with a join are written by Store.commitJoin; this logs them. */
  logged(events: AuditEvent[]): void {
    for (const e of events)
      this.logger.log(e.type.endsWith("failure") ? "warn" : "info", e.type, { audit: e });
  }

  async record(events: AuditEvent[]): Promise<void> {
    this.logged(events);
    try {
      await this.store.appendAudit(events);
    } catch (err) {
      this.logger.log("error", "audit write failed", { error: String(err), events });
    }
  }
}
