// What a bot may receive: the union of its roles' grants, and the tightest max_ttl.
import { DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS } from "../../protocol/join.ts";
import type { ResourceSet, RoleResource } from "./resources.ts";

export interface BotGrants {
  botName: string;
  roles: RoleResource[];
  logins: string[];
  /** Tightest max_ttl of the bot's roles, never above 24h. */
  maxTtlSeconds: number;
}

export function grantsFor(set: ResourceSet, botName: string): BotGrants {
  const bot = set.bots.get(botName);
  if (!bot) throw new Error(`bot "${botName}" is not declared`);
  const roles = bot.spec.roles.map((r) => set.roles.get(r)).filter((r): r is RoleResource => r !== undefined);
  const logins = [...new Set(roles.flatMap((r) => r.spec.logins))];
  let maxTtlSeconds = MAX_TTL_SECONDS;
  for (const r of roles) if (r.spec.max_ttl !== undefined) maxTtlSeconds = Math.min(maxTtlSeconds, r.spec.max_ttl);
  return { botName, roles, logins, maxTtlSeconds };
}

export function effectiveTtl(requested: number | undefined, grants: BotGrants): { ttl: number; capped: boolean } {
  const want = requested ?? DEFAULT_TTL_SECONDS;
  return want > grants.maxTtlSeconds ? { ttl: grants.maxTtlSeconds, capped: true } : { ttl: want, capped: false };
}
