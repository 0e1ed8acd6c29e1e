/**
 * The deletes of the cluster's room store (PROTOCOL.md 11.6 _The room
 * store_), a part of the `JetStreamRoomStore` (room_store.ts): what follows
 * a commit deletes only messages below it, never the last one: the state a
 * change replaced, the entries no position holds any more (`sweep`), a
 * deleted room's messages (`gonePlan`: its `gone` mark, then a purge); and
 * the retention sweep (`expire`: the entries older than a time, oldest
 * first, and the messages no reader returns, uncounted).
 * @module
 */

import { isValidUsername } from "../../proto/mod.ts";
import { constantTimeEqual } from "../../util/mod.ts";
import type { RoomEntry } from "../seams.ts";
import {
  checkLimit,
  dropped,
  restate,
  type State,
  type View,
} from "./room_codec.ts";
import type { Plan, RoomLog } from "./room_log.ts";
import { EXPIRE_SKEW_MS } from "./store.ts";

/**
 * After a new state at `top` replaced `old` (at `oldSeq`): delete the old
 * one unless its entry is still held, and, when `walk`, every message
 * below `top` no reader returns (another generation's, a replaced state
 * without a held entry, a deleted entry), up to entry `upTo`.
 * @returns the entries deleted that `count` says to count
 */
export async function sweep(
  log: RoomLog,
  name: string,
  now: State,
  top: number,
  oldSeq: number,
  old: State,
  walk: { upTo: number; count: (seq: number) => boolean } | undefined,
): Promise<number> {
  let n = 0;
  if (!old.entry || dropped(now, old.entry.seq)) {
    if (
      (await log.delete(oldSeq)) && old.entry && walk?.count(old.entry.seq)
    ) n++;
  }
  if (!walk) return n;
  for await (const m of log.walk(name)) {
    if (m.seq >= top) break;
    const msg = m.msg;
    if (!msg) continue; // refused: left for expire
    if (!constantTimeEqual(msg.gen, now.gen) || msg.type === "gone") {
      await log.delete(m.seq);
      continue;
    }
    const e = msg.entry;
    if (e && e.seq > walk.upTo) break;
    if (e ? dropped(now, e.seq) : msg.type === "state") {
      if ((await log.delete(m.seq)) && e && walk.count(e.seq)) n++;
    }
  }
  return n;
}

/** The entries of the room's generation below `top` not dropped as of `s`. */
export async function entries(
  log: RoomLog,
  name: string,
  s: State,
  top: number,
): Promise<RoomEntry[]> {
  const out: RoomEntry[] = [];
  for await (const m of log.walk(name)) {
    if (m.seq > top) break;
    const msg = m.msg;
    if (!msg || msg.type === "gone" || !msg.entry) continue;
    const e = msg.entry;
    if (!constantTimeEqual(msg.gen, s.gen) || dropped(s, e.seq)) continue;
    if (e.seq > (out.at(-1)?.seq ?? 0)) out.push(e); // not a copy twice
  }
  return out;
}

/** Mark the room gone on top of `v`, then purge its subject. */
export function gonePlan<T>(
  log: RoomLog,
  name: string,
  v: View,
  result: (seq: number) => T,
  count?: (n: number) => void,
): Plan<T> {
  const s = v.state!;
  return {
    msg: { type: "gone", gen: s.gen },
    after: async (seq) => {
      if (count) count((await entries(log, name, s, v.top)).length);
      await log.purge(name, seq + 1);
    },
    result,
  };
}

/**
 * The retention sweep of every room (RoomStore.expire, PROTOCOL.md 10.4):
 * the entries older than `before` deleted, the oldest first, at most
 * `limit`; the messages no reader returns deleted with them, uncounted.
 * @returns the entries deleted
 */
export async function expire(
  log: RoomLog,
  before: number,
  opts: { limit?: number } = {},
): Promise<number> {
  log.check();
  if (opts.limit !== undefined) checkLimit(opts.limit);
  const limit = opts.limit ?? Infinity;
  interface Old {
    name: string;
    seq: number;
    entry: RoomEntry;
    gen: Uint8Array;
  }
  const found: Old[] = [];
  const junk: { name: string; seq: number }[] = [];
  const prefix = log.prefix;
  let seq = 1;
  for (;;) {
    const sm = await log.get({ seq, next_by_subj: `${prefix}*` });
    if (!sm) break;
    seq = sm.seq + 1;
    const name = sm.subject.slice(prefix.length);
    const msg = log.openMsg(sm);
    if (!msg) {
      // No `at` to trust: gone once NATS's own time says it is old.
      if (sm.time.getTime() < before) junk.push({ name, seq: sm.seq });
      continue;
    }
    if (msg.type === "gone" || !msg.entry) continue;
    if (msg.entry.at < before) {
      found.push({ name, seq: sm.seq, entry: msg.entry, gen: msg.gen });
    } else if (msg.entry.at >= before + EXPIRE_SKEW_MS) break;
  }
  // Those no reader returns go, uncounted.
  const views = new Map<string, View>();
  const view = async (name: string) => {
    let v = views.get(name);
    if (!v) views.set(name, v = await log.view(name));
    return v;
  };
  const live: Old[] = [];
  for (const o of found) {
    const s = (await view(o.name)).state;
    if (s && constantTimeEqual(s.gen, o.gen) && !dropped(s, o.entry.seq)) {
      live.push(o);
    } else junk.push(o);
  }
  for (const j of junk) {
    if (isValidUsername(j.name) && j.seq !== (await view(j.name)).top) {
      await log.delete(j.seq);
    }
  }
  // The oldest first, as the mailbox store does (PROTOCOL.md 9.8).
  live.sort((a, b) =>
    a.entry.at - b.entry.at ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
    a.entry.seq - b.entry.seq
  );
  let n = 0;
  for (const o of live.slice(0, limit)) {
    await uncover(log, o.name, o.seq);
    if (await log.delete(o.seq)) n++;
  }
  return n;
}

/**
 * Make message `seq` of the room neither its last message nor its state:
 * a copy of the state (without its entry) is put on top when it is.
 */
function uncover(log: RoomLog, name: string, seq: number): Promise<void> {
  return log.mutate("expire", name, (v): Plan<void> => {
    const s = v.state;
    if (!s || (seq !== v.top && seq !== v.stateSeq)) {
      return { result: () => {} };
    }
    return { msg: restate(s, v.next, {}), result: () => {} };
  });
}
