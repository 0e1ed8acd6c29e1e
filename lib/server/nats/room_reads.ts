/**
 * The reads of the cluster's room store (PROTOCOL.md 11.6 _The room
 * store_), a part of the `JetStreamRoomStore` (room_store.ts): a room's
 * row, a user's rooms, the key mails stored, a member's entries after a
 * seq, its position, a message's delivered count and a room's bytes. Each
 * reads the room's view (its last message and state) and, for entries,
 * walks its subject; nothing here publishes or deletes.
 * @module
 */

import { isValidUsername } from "../../proto/mod.ts";
import { constantTimeEqual } from "../../util/mod.ts";
import type {
  ReadOptions,
  RoomEntry,
  RoomPosition,
  RoomRow,
} from "../seams.ts";
import { checkLimit, checkSeq, copyRow, type State } from "./room_codec.ts";
import type { RoomIndex } from "./room_index.ts";
import type { RoomLog } from "./room_log.ts";
import { entries } from "./room_sweep.ts";

/** The room's row now, or undefined. */
export async function room(
  log: RoomLog,
  name: string,
): Promise<RoomRow | undefined> {
  log.check();
  if (!isValidUsername(name)) return undefined;
  const s = (await log.view(name)).state;
  return s && copyRow(s.row);
}

/**
 * Every room now, or those the index names for `user` once it covers the
 * stream (11.6 _The index_): its name and state, a request or two per room.
 */
export async function rooms(
  log: RoomLog,
  index?: RoomIndex,
  user?: string,
): Promise<{ name: string; state: State }[]> {
  const out: { name: string; state: State }[] = [];
  const names = index?.built && user !== undefined
    ? await index.rooms(user)
    : await log.names();
  for (const name of names) {
    const s = (await log.view(name)).state;
    if (s) out.push({ name, state: s });
  }
  return out;
}

/** The rooms `user` holds a position in, by name. */
export async function roomsOf(
  log: RoomLog,
  index: RoomIndex,
  user: string,
): Promise<string[]> {
  log.check();
  return (await rooms(log, index, user))
    .filter((r) => r.state.pos.has(user))
    .map((r) => r.name);
}

/** The rooms `user` is a member of, counted. */
export async function memberships(
  log: RoomLog,
  index: RoomIndex,
  user: string,
): Promise<number> {
  log.check();
  return (await rooms(log, index, user))
    .filter((r) => {
      const p = r.state.pos.get(user);
      return p !== undefined && p.until === undefined;
    }).length;
}

/** The members `sender`'s key mail of `epoch` was stored for (10.4), sorted. */
export async function keyed(
  log: RoomLog,
  name: string,
  epoch: number,
  sender: string,
): Promise<string[]> {
  log.check();
  if (!isValidUsername(name)) return [];
  const s = (await log.view(name)).state;
  if (!s || s.row.epoch !== epoch) return [];
  return [...(s.keyed.get(sender) ?? [])].sort();
}

/** `user`'s entries of the room after its position and `opts.after`, in order. */
export async function read(
  log: RoomLog,
  name: string,
  user: string,
  opts: ReadOptions = {},
): Promise<RoomEntry[]> {
  log.check();
  const after = opts.after ?? 0;
  checkSeq("after", after);
  if (opts.limit !== undefined) checkLimit(opts.limit);
  const limit = opts.limit ?? Infinity;
  if (!isValidUsername(name)) return [];
  const v = await log.view(name);
  const p = v.state?.pos.get(user);
  if (!v.state || !p) return [];
  const from = Math.max(after, p.upTo);
  const end = Math.min(p.until ?? Infinity, v.next - 1);
  const out: RoomEntry[] = [];
  if (from >= end) return out;
  for await (const m of log.walk(name)) {
    if (out.length >= limit || m.seq > v.top) break;
    const msg = m.msg;
    if (!msg || msg.type === "gone" || !msg.entry) continue;
    if (!constantTimeEqual(msg.gen, v.state.gen)) continue;
    const e = msg.entry;
    if (e.seq > end) break;
    // A copy NATS put back (it can) is not returned twice.
    if (e.seq > from && e.seq > (out.at(-1)?.seq ?? 0)) {
      out.push({ ...e, data: e.data.slice() });
    }
  }
  return out;
}

/** `user`'s position in the room, or undefined. */
export async function position(
  log: RoomLog,
  name: string,
  user: string,
): Promise<RoomPosition | undefined> {
  log.check();
  if (!isValidUsername(name)) return undefined;
  const p = (await log.view(name)).state?.pos.get(user);
  if (!p) return undefined;
  return p.until === undefined
    ? { upTo: p.upTo }
    : { upTo: p.upTo, until: p.until };
}

/** The members other than `sender` whose position passed `seq` (10.4). */
export async function delivered(
  log: RoomLog,
  name: string,
  seq: number,
  sender: string,
): Promise<number> {
  log.check();
  if (!isValidUsername(name)) return 0;
  let n = 0;
  for (const [user, p] of (await log.view(name)).state?.pos ?? []) {
    if (user !== sender && p.until === undefined && p.upTo >= seq) n++;
  }
  return n;
}

/** The bytes of the room's entries kept. */
export async function bytes(log: RoomLog, name: string): Promise<number> {
  log.check();
  if (!isValidUsername(name)) return 0;
  const v = await log.view(name);
  if (!v.state) return 0;
  return (await entries(log, name, v.state, v.top))
    .reduce((n, e) => n + e.data.length, 0);
}
