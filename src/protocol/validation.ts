// One way to turn schema failures into messages that name the field, used for the wire
// protocol (400 responses) and for YAML resources (with file and line added by the loader).
import type { z } from "zod";

export type FieldPath = ReadonlyArray<PropertyKey>;

export interface FieldProblem {
  /** Path of the offending field, e.g. ["spec", "github", "allow", 0, "repo"]. */
  path: FieldPath;
  /** The field name itself when the problem is an unknown field. */
  unknownField?: string;
  message: string;
}

export function formatPath(path: FieldPath): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? String(p) : `.${String(p)}`;
  }
  return out === "" ? "(top level)" : out;
}

/** Flattens zod issues: each unknown key becomes its own problem naming the key. */
export function fieldProblems(error: z.ZodError): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        out.push({ path: [...issue.path, key], unknownField: key, message: `unknown field "${key}"` });
      }
    } else if (issue.code === "invalid_union" && issue.errors.length > 0) {
      // Report the branch that got furthest rather than "invalid input".
      const best = issue.errors.reduce((a, b) => (b.length < a.length ? b : a));
      for (const sub of best) out.push({ path: [...issue.path, ...sub.path], message: sub.message });
    } else {
      out.push({ path: issue.path, message: issue.message });
    }
  }
  return out;
}

export function describeProblems(problems: FieldProblem[]): string {
  return problems.map((p) => `${formatPath(p.path)}: ${p.message}`).join("; ");
}
