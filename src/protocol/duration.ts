// Go-style durations ("90s", "15m", "1h30m"), the format operators know from Teleport
// and Kubernetes resources.
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === "") throw new Error("empty duration");
  const re = /(\d+(?:\.\d+)?)([smhd])/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new Error(`invalid duration "${text}" (use forms like 90s, 15m, 1h, 1h30m)`);
    total += Number(m[1]) * UNIT_SECONDS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (!Number.isFinite(total) || total <= 0) throw new Error(`duration "${text}" must be positive`);
  return Math.round(total);
}

export function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s || (!h && !m) ? `${s}s` : ""}`;
}
