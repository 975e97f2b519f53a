// Rows to records and records to rows, shared by both stores: their tables have the same
// columns (TEXT for times and JSON), so one mapping serves SQLite and PostgreSQL.
import { createHash } from "node:crypto";
import type {
  AuditEvent,
  BotInstanceRecord,
  BoundKeypairState,
  CAKeyRecord,
  JoinTokenRecord,
} from "./store.ts";

export type Row = Record<string, unknown>;

const opt = (v: unknown) => (v === null || v === undefined ? undefined : (v as string));

export function rowToCA(r: Row): CAKeyRecord {
  return {
    name: r.name as CAKeyRecord["name"],
    privateKeyPem: r.private_key_pem as string,
    publicMaterial: r.public_material as string,
    createdAt: r.created_at as string,
  };
}

export function rowToInstance(r: Row): BotInstanceRecord {
  return {
    id: r.id as string,
    botName: r.bot_name as string,
    tokenName: r.token_name as string,
    joinMethod: r.join_method as string,
    claims: JSON.parse(r.claims as string) as Record<string, unknown>,
    createdAt: r.created_at as string,
    expiresAt: r.expires_at as string,
    generation: Number(r.generation),
    lockedReason: opt(r.locked_reason),
    authentications: JSON.parse((r.authentications as string | undefined) ?? "[]"),
    heartbeats: JSON.parse((r.heartbeats as string | undefined) ?? "[]"),
  };
}

export function rowToJoinToken(r: Row): JoinTokenRecord {
  return {
    id: r.id as string,
    hash: r.hash as string,
    botName: r.bot_name as string,
    createdAt: r.created_at as string,
    expiresAt: r.expires_at as string,
    usedAt: opt(r.used_at),
    usedByInstance: opt(r.used_by_instance),
  };
}

export function rowToBound(r: Row): BoundKeypairState {
  return {
    tokenName: r.token_name as string,
    publicKey: opt(r.public_key),
    boundAt: opt(r.bound_at),
    joinStateHash: opt(r.join_state_hash),
    recoveryCount: Number(r.recovery_count ?? 0),
    instanceId: opt(r.instance_id),
    lockedReason: opt(r.locked_reason),
  };
}

export function rowToAudit(r: Row): AuditEvent {
  return {
    type: r.type as string,
    time: r.time as string,
    botName: opt(r.bot_name),
    tokenName: opt(r.token_name),
    instanceId: opt(r.instance_id),
    joinMethod: opt(r.join_method),
    remoteAddr: opt(r.remote_addr),
    reason: opt(r.reason),
    data: r.data ? (JSON.parse(r.data as string) as Record<string, unknown>) : undefined,
  };
}

/** The values of INSERT INTO bot_instances (id, bot_name, token_name, join_method, claims,
 *  created_at, expires_at, generation, authentications). */
export function instanceValues(i: BotInstanceRecord): unknown[] {
  return [
    i.id,
    i.botName,
    i.tokenName,
    i.joinMethod,
    JSON.stringify(i.claims),
    i.createdAt,
    i.expiresAt,
    i.generation,
    JSON.stringify(i.authentications ?? [{ time: i.createdAt, kind: "join", generation: i.generation }]),
  ];
}

/** The values of INSERT INTO audit (time, type, bot_name, token_name, instance_id,
 *  join_method, remote_addr, reason, data). */
export function auditValues(e: AuditEvent): unknown[] {
  return [
    e.time,
    e.type,
    e.botName ?? null,
    e.tokenName ?? null,
    e.instanceId ?? null,
    e.joinMethod ?? null,
    e.remoteAddr ?? null,
    e.reason ?? null,
    e.data ? JSON.stringify(e.data) : null,
  ];
}

/** Keeps the newest `max` entries of a JSON array column. */
export function pushCapped<T>(json: string | null | undefined, item: T, max = 10): string {
  const list = (json ? (JSON.parse(json) as T[]) : []).concat(item);
  return JSON.stringify(list.slice(-max));
}

/** What a renewal stores to recognise its own retry: SHA-256 of the new public keys. */
export function renewKeysHash(publicKeys: { ssh: string; tls: string }): string {
  return createHash("sha256").update(`${publicKeys.ssh}\n${publicKeys.tls}`).digest("base64url");
}

export type RenewStep =
  | { kind: "advance"; generation: number }
  | { kind: "repeat"; generation: number }
  | { kind: "lock"; reason: string };

/**
 * What a renewal presenting generation `presented`, for the public keys hashed as
 * `keysHash`, does to an unlocked instance; both stores decide with this.
 *
 * The current generation advances. One behind, with the same new public keys as the
 * renewal that made the current generation, is that renewal's retry: its answer was lost
 * (a timeout or a reset after the commit), and it gets the current generation again instead
 * of locking a machine that did nothing wrong. That answer is worthless to a copy of the
 * identity: the certificates are usable only with the private halves of those keys, which
 * never left the machine that renewed. A copy that brings keys of its own still locks, as
 * does any older generation.
 */
export function renewStep(inst: BotInstanceRecord, presented: number, keysHash: string): RenewStep {
  if (presented === inst.generation) return { kind: "advance", generation: presented + 1 };
  const last = inst.authentications?.at(-1);
  if (
    presented === inst.generation - 1 &&
    last !== undefined &&
    last.kind.startsWith("renew") &&
    last.generation === inst.generation &&
    last.keys === keysHash
  ) {
    return { kind: "repeat", generation: inst.generation };
  }
  return {
    kind: "lock",
    reason: `certificate generation ${presented} presented, current is ${inst.generation}: the identity was copied`,
  };
}

/** The audit events a renewal's step writes: its own, `renew.success` renamed
 *  `renew.retry` for a repeat, or every one as `instance.locked` with the reason. */
export function renewEvents(step: RenewStep, events: AuditEvent[]): AuditEvent[] {
  if (step.kind === "lock")
    return events.map((e) => ({ ...e, type: "instance.locked", reason: step.reason }));
  if (step.kind === "repeat")
    return events.map((e) => (e.type === "renew.success" ? { ...e, type: "renew.retry" } : e));
  return events;
}
