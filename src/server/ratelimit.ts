// Token-bucket rate limits per source address and per join token, in this replica's
// memory: they bound what one client or one leaked token can cost a replica (the
// single-use guarantees live in the database, not here). Idle buckets are forgotten.

/** 0 when allowed, else the seconds to wait; a worker thread asks the main thread's. */
export interface Limiter {
  take(key: string): number | Promise<number>;
}

export class RateLimiter implements Limiter {
  private buckets = new Map<string, { tokens: number; at: number }>();

  /** `perSecond` 0 disables the limit. Burst = 2 seconds' worth. */
  constructor(
    readonly perSecond: number,
    readonly maxKeys = 50_000,
  ) {}

  /** 0 when allowed, else the seconds to wait (for Retry-After). */
  take(key: string, now = Date.now()): number {
    if (this.perSecond <= 0) return 0;
    const burst = this.perSecond * 2;
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.evict(now);
      b = { tokens: burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }

  private evict(now: number): void {
    for (const [k, b] of this.buckets) if (now - b.at > 10_000) this.buckets.delete(k);
    if (this.buckets.size >= this.maxKeys) this.buckets.clear();
  }
}
