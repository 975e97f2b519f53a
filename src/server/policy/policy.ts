// What a bot may receive: the union of its roles' grants, the tightest max_ttl, and the
// checks that deny a request for anything the roles do not grant, naming what was refused.
// Templates are expanded only for the outputs a join asks for.
import { DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS } from "../../protocol/join.ts";
import { denied } from "../joinmethods/errors.ts";
import { globMatch } from "../joinmethods/rules.ts";
import type { DatabaseResource, KubeClusterResource, ResourceSet, RoleResource } from "./resources.ts";
import { expandChecked, type TemplateContext } from "./templates.ts";

export interface BotGrants {
  botName: string;
  roles: RoleResource[];
  /** Tightest max_ttl of the bot's roles, never above 24h. */
  maxTtlSeconds: number;
}

export function grantsFor(set: ResourceSet, botName: string): BotGrants {
  const bot = set.bots.get(botName);
  if (!bot) throw new Error(`bot "${botName}" is not declared`);
  const roles = bot.spec.roles.map((r) => set.roles.get(r)).filter((r): r is RoleResource => r !== undefined);
  let maxTtlSeconds = MAX_TTL_SECONDS;
  for (const r of roles)
    if (r.spec.max_ttl !== undefined) maxTtlSeconds = Math.min(maxTtlSeconds, r.spec.max_ttl);
  return { botName, roles, maxTtlSeconds };
}

export function effectiveTtl(
  requested: number | undefined,
  grants: BotGrants,
): { ttl: number; capped: boolean } {
  const want = requested ?? DEFAULT_TTL_SECONDS;
  return want > grants.maxTtlSeconds
    ? { ttl: grants.maxTtlSeconds, capped: true }
    : { ttl: want, capped: false };
}

const roleNames = (g: BotGrants) => g.roles.map((r) => r.metadata.name).join(", ");
const unique = (xs: string[]) => [...new Set(xs)];
const granted = (patterns: string[], value: string) =>
  patterns.some((p) => p === value || (p.includes("*") && globMatch(p, value)));

export function sshLogins(g: BotGrants, ctx: TemplateContext): string[] {
  return unique(
    g.roles.flatMap((r) =>
      r.spec.logins.map((t, i) => expandChecked(t, `${r.metadata.name}.logins[${i}]`, "ssh_principal", ctx)),
    ),
  );
}

export function hostPrincipals(g: BotGrants, ctx: TemplateContext): string[] {
  const principals = unique(
    g.roles.flatMap((r) =>
      r.spec.host_principals.map((t, i) =>
        expandChecked(t, `${r.metadata.name}.host_principals[${i}]`, "ssh_principal", ctx),
      ),
    ),
  );
  if (principals.length === 0) {
    throw denied(
      `bot "${g.botName}" has no SSH host principals`,
      `Add host_principals (e.g. ["{{ join.token.bot_name }}.example.com"]) to one of its roles (${roleNames(g)}).`,
    );
  }
  return principals;
}

export interface KubernetesGrant {
  cluster: KubeClusterResource;
  user: string;
  groups: string[];
}

export function authorizeKubernetes(
  g: BotGrants,
  set: ResourceSet,
  clusterName: string,
  ctx: TemplateContext,
): KubernetesGrant {
  const allowed = g.roles.flatMap((r) => r.spec.kubernetes_clusters);
  const cluster = set.kubeClusters.get(clusterName);
  if (!granted(allowed, clusterName) || !cluster) {
    throw denied(
      `Kubernetes cluster "${clusterName}" is not granted to bot "${g.botName}"`,
      `Add "${clusterName}" to kubernetes_clusters of one of its roles (${roleNames(g)})${cluster ? "" : ` and declare a kube_cluster named "${clusterName}"`}.`,
    );
  }
  const users = unique(
    g.roles.flatMap((r) =>
      r.spec.kubernetes_users.map((t, i) =>
        expandChecked(t, `${r.metadata.name}.kubernetes_users[${i}]`, "kubernetes_name", ctx),
      ),
    ),
  );
  const groups = unique(
    g.roles.flatMap((r) =>
      r.spec.kubernetes_groups.map((t, i) =>
        expandChecked(t, `${r.metadata.name}.kubernetes_groups[${i}]`, "kubernetes_name", ctx),
      ),
    ),
  );
  if (users.length === 0 && groups.length === 0) {
    throw denied(
      `bot "${g.botName}" has no Kubernetes users or groups`,
      `Add kubernetes_groups (or kubernetes_users) to one of its roles (${roleNames(g)}).`,
    );
  }
  return { cluster, user: users[0] ?? `bot-${g.botName}`, groups };
}

export interface DatabaseGrant {
  database: DatabaseResource;
  user: string;
  name: string;
}

export function authorizeDatabase(
  g: BotGrants,
  set: ResourceSet,
  req: { service: string; user: string; name?: string },
): DatabaseGrant {
  const database = set.databases.get(req.service);
  if (
    !granted(
      g.roles.flatMap((r) => r.spec.databases),
      req.service,
    ) ||
    !database
  ) {
    throw denied(
      `database "${req.service}" is not granted to bot "${g.botName}"`,
      `Add "${req.service}" to databases of one of its roles (${roleNames(g)}).`,
    );
  }
  if (
    !granted(
      g.roles.flatMap((r) => r.spec.db_users),
      req.user,
    )
  ) {
    throw denied(
      `database user "${req.user}" is not granted to bot "${g.botName}"`,
      `Add "${req.user}" to db_users of one of its roles (${roleNames(g)}).`,
    );
  }
  const dbNames = g.roles.flatMap((r) => r.spec.db_names);
  if (req.name !== undefined && !granted(dbNames, req.name)) {
    throw denied(
      `database name "${req.name}" is not granted to bot "${g.botName}"`,
      `Add "${req.name}" to db_names of one of its roles (${roleNames(g)}).`,
    );
  }
  return { database, user: req.user, name: req.name ?? dbNames.find((n) => !n.includes("*")) ?? req.user };
}

export interface SpiffeGrant {
  path: string;
  dnsSans: string[];
  ipSans: string[];
}

/** The requested SPIFFE path, or the first one the roles grant. */
export function authorizeSpiffe(
  g: BotGrants,
  requestedPath: string | undefined,
  ctx: TemplateContext,
): SpiffeGrant {
  const grants = g.roles.flatMap((r) =>
    r.spec.spiffe.map((s, i) => ({
      path: expandChecked(s.path, `${r.metadata.name}.spiffe[${i}].path`, "spiffe_path", ctx),
      dnsSans: s.dns_sans,
      ipSans: s.ip_sans,
    })),
  );
  if (grants.length === 0) {
    throw denied(
      `bot "${g.botName}" has no SPIFFE identity`,
      `Add spiffe: [{ path: ... }] to one of its roles (${roleNames(g)}).`,
    );
  }
  if (requestedPath === undefined) return grants[0]!;
  const match = grants.find((s) => s.path === requestedPath);
  if (!match) {
    throw denied(
      `SPIFFE path "${requestedPath}" is not granted to bot "${g.botName}"`,
      `Request one of the paths its roles grant, or add it to spiffe of one of its roles (${roleNames(g)}).`,
    );
  }
  return match;
}

export function authorizeJwtAudiences(g: BotGrants, audiences: string[]): string[] {
  const allowed = g.roles.flatMap((r) => r.spec.jwt_audiences);
  for (const a of audiences) {
    if (!granted(allowed, a)) {
      throw denied(
        `JWT audience "${a}" is not granted to bot "${g.botName}"`,
        `Add "${a}" to jwt_audiences of one of its roles (${roleNames(g)}).`,
      );
    }
  }
  return audiences;
}
