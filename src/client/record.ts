// .idbot-join.json: the settings of a join (server, token, outputs, ...) and what it got
// (bot, instance, expiry), written with the credentials and listed in the manifest, so
// `idbot join --refresh DIR` needs no other flag and `idbot status DIR` can name the bot
// instance. It holds no secret: input values and identifiers only.
import { constants } from "node:fs";
import { lstat, open } from "node:fs/promises";
import { join, resolve } from "node:path";
import { z } from "zod";
import type { JoinMethodName, JoinResponse } from "../protocol/join.ts";
import { JOIN_INPUTS } from "./config.ts";
import type { FileSpec } from "./files.ts";

export const JOIN_RECORD_NAME = ".idbot-join.json";
const MAX_BYTES = 256 * 1024;

const JoinRecordSchema = z.object({
  version: z.literal(1),
  /** Input name (as in action.yml) → the value the join used. */
  settings: z.partialRecord(z.enum(JOIN_INPUTS), z.string()),
  joined: z.object({
    at: z.string(),
    join_method: z.string(),
    bot_name: z.string(),
    bot_instance_id: z.string(),
    expires_at: z.string(),
    ttl_seconds: z.number(),
  }),
});
export type JoinRecord = z.infer<typeof JoinRecordSchema>;

export class JoinRecordError extends Error {
  override name = "JoinRecordError";
}

export function joinRecordFile(
  settings: Record<string, string>,
  joinMethod: JoinMethodName,
  response: JoinResponse,
  now = new Date(),
): FileSpec {
  const record: JoinRecord = {
    version: 1,
    settings: Object.fromEntries(
      Object.entries(settings).filter(([k]) => (JOIN_INPUTS as readonly string[]).includes(k)),
    ),
    joined: {
      at: now.toISOString(),
      join_method: joinMethod,
      bot_name: response.bot_name,
      bot_instance_id: response.bot_instance_id,
      expires_at: response.expires_at,
      ttl_seconds: response.ttl_seconds,
    },
  };
  return { path: JOIN_RECORD_NAME, contents: `${JSON.stringify(record, null, 2)}\n` };
}

/** The record of `dir`, undefined when there is none; never follows a symlink. */
export async function readJoinRecord(dir: string): Promise<JoinRecord | undefined> {
  const path = join(resolve(dir), JOIN_RECORD_NAME);
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  if (!st.isFile()) throw new JoinRecordError(`${path} is not a regular file`);
  if (st.size > MAX_BYTES) throw new JoinRecordError(`${path} is larger than ${MAX_BYTES} bytes`);
  const fh = await open(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  let text: string;
  try {
    text = await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new JoinRecordError(`${path} is not valid JSON`);
  }
  const parsed = JoinRecordSchema.safeParse(value);
  if (!parsed.success) {
    throw new JoinRecordError(
      `${path} is not an idbot join record: ${parsed.error.issues[0]?.message ?? ""}`,
    );
  }
  return parsed.data;
}
