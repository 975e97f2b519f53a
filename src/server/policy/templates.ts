// Role templates: `{{ join.<method>.<claim> }}` inside logins, Kubernetes users and
// groups and SPIFFE paths, filled from the attested claims of the join. A template whose
// claim is missing, or whose result is not a valid value for its field, denies the join
// with the template named: a certificate is never issued half-filled.
import { denied } from "../joinmethods/errors.ts";
import { claimAt } from "../joinmethods/rules.ts";

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const REFERENCE = /^join\.([a-z_]+)\.([A-Za-z0-9_.-]+)$/;

export interface TemplateContext {
  joinMethod: string;
  claims: Record<string, unknown>;
}

/** Checks a template's syntax at load time; returns an error message or undefined. */
export function templateSyntaxError(template: string): string | undefined {
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (!REFERENCE.test(m[1]!))
      return `"{{ ${m[1]} }}" is not a template reference (use {{ join.<method>.<claim> }})`;
  }
  if (template.replace(PLACEHOLDER, "").includes("{{")) return `unbalanced "{{" in "${template}"`;
  return undefined;
}

export function expandTemplate(template: string, field: string, ctx: TemplateContext): string {
  return template.replace(PLACEHOLDER, (_all, ref: string) => {
    const m = REFERENCE.exec(ref);
    if (!m) throw denied(`role template ${field} "${template}" is malformed`);
    const [, method, claim] = m;
    if (method !== ctx.joinMethod) {
      throw denied(
        `role template ${field} "${template}" refers to join method "${method}", but this join used "${ctx.joinMethod}"`,
        "Give bots that join with several methods one role per method.",
      );
    }
    const value = claimAt(ctx.claims, claim!);
    if (value === undefined || value === null || value === "") {
      throw denied(
        `role template ${field} "${template}" needs the claim "${claim}", which this ${method} token does not carry`,
        `Restrict the join token's allow rules to jobs that carry "${claim}", or change the template.`,
      );
    }
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      throw denied(`role template ${field} "${template}": claim "${claim}" is not a single value`);
    }
    return String(value);
  });
}

export type ValueKind = "ssh_principal" | "kubernetes_name" | "spiffe_path" | "name";

const VALIDATORS: Record<ValueKind, { test: (v: string) => boolean; what: string }> = {
  // OpenSSH principals: no whitespace, commas or control characters.
  ssh_principal: {
    test: (v) => /^[^\s,\p{Cc}]{1,256}$/u.test(v),
    what: "an SSH principal (no spaces, commas or control characters)",
  },
  kubernetes_name: {
    test: (v) => /^[^\p{Cc}]{1,256}$/u.test(v) && v.trim() === v,
    what: "a Kubernetes user or group name",
  },
  // SPIFFE ID path: "/" + segments of [A-Za-z0-9._-], no empty, "." or ".." segments.
  spiffe_path: {
    test: (v) =>
      v.length <= 2048 &&
      /^(\/[A-Za-z0-9._-]+)+$/.test(v) &&
      !v.split("/").some((s) => s === "." || s === ".."),
    what: 'a SPIFFE ID path ("/" followed by segments of letters, digits, ".", "_" and "-")',
  },
  name: {
    test: (v) => /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(v),
    what: "a name (letters, digits, '.', '_', '@', '-')",
  },
};

/** Expands a template and checks the result; both failures deny naming the template. */
export function expandChecked(
  template: string,
  field: string,
  kind: ValueKind,
  ctx: TemplateContext,
): string {
  const value = expandTemplate(template, field, ctx);
  const v = VALIDATORS[kind];
  if (!v.test(value)) {
    throw denied(
      `role template ${field} "${template}" produced ${JSON.stringify(value.slice(0, 100))}, which is not ${v.what}`,
      "Change the template or restrict the join token's allow rules.",
    );
  }
  return value;
}
