// Allow-rule evaluation shared by the claim-based join methods: a rule admits a token
// when every field it sets matches; any admitting rule admits the join. The result keeps
// every field's verdict so the operator (log, `idbot explain`) sees exactly what differed.

export interface FieldVerdict {
  field: string;
  want: string;
  got: string | undefined;
  ok: boolean;
}
export interface RuleVerdict {
  index: number;
  ok: boolean;
  fields: FieldVerdict[];
}

export type Rule = Record<string, string | undefined>;

/** A claim by name, or by a dotted path into nested claims ("kubernetes.io.namespace"),
 *  preferring the longest literal key at each level since claim names may hold dots. */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  if (path in claims) return claims[path];
  const parts = path.split(".");
  for (let i = parts.length - 1; i > 0; i--) {
    const head = parts.slice(0, i).join(".");
    const next = claims[head];
    if (next && typeof next === "object" && !Array.isArray(next)) {
      const v = claimAt(next as Record<string, unknown>, parts.slice(i).join("."));
      if (v !== undefined) return v;
    }
  }
  return undefined;
}

function claimText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

/** `*` matches any run of characters, `?` exactly one; everything else is literal.
 *  Greedy matching with one backtrack point: O(pattern × value) at worst, never the
 *  exponential backtracking of a regular expression, since values come from the job. */
export function globMatch(pattern: string, value: string): boolean {
  let p = 0;
  let v = 0;
  let star = -1;
  let mark = 0;
  while (v < value.length) {
    if (p < pattern.length && (pattern[p] === "?" || (pattern[p] !== "*" && pattern[p] === value[v]))) {
      p++;
      v++;
    } else if (p < pattern.length && pattern[p] === "*") {
      star = p++;
      mark = v;
    } else if (star >= 0) {
      p = star + 1;
      v = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

export function evaluateRules(
  rules: Rule[],
  claims: Record<string, unknown>,
  /** Fields whose rule values are `*`/`?` globs; "all" for every field. */
  globFields: ReadonlySet<string> | "all" = new Set(),
): RuleVerdict[] {
  return rules.map((rule, index) => {
    const fields: FieldVerdict[] = [];
    for (const [field, want] of Object.entries(rule)) {
      if (want === undefined) continue;
      const got = claimText(claimAt(claims, field));
      const ok =
        got !== undefined &&
        (globFields === "all" || globFields.has(field) ? globMatch(want, got) : got === want);
      fields.push({ field, want, got, ok });
    }
    return { index, ok: fields.length > 0 && fields.every((f) => f.ok), fields };
  });
}

/** What the job may see: which fields differed, never the operator's expected values. */
export function safeMismatchSummary(verdicts: RuleVerdict[]): string {
  return verdicts
    .map(
      (v) =>
        `rule ${v.index + 1} differs in ${v.fields
          .filter((f) => !f.ok)
          .map((f) => f.field)
          .join(", ")}`,
    )
    .join("; ");
}

/** Full detail for the operator's log and audit. */
export function fullMismatchDetail(verdicts: RuleVerdict[]): string {
  return verdicts
    .map(
      (v) =>
        `rule ${v.index + 1}: ${v.fields
          .map(
            (f) =>
              `${f.field} ${f.ok ? "ok" : `want ${JSON.stringify(f.want)} got ${JSON.stringify(f.got ?? null)}`}`,
          )
          .join(", ")}`,
    )
    .join("; ");
}
