/**
 * {@link RoomReplies}: how the parts of the server's rooms (rooms.ts)
 * answer: every refusal counted by its code, the refusals several requests
 * share (`rate-limited`, `no-room`, `not-a-member`, `room-full`,
 * `room-stale-epoch`), and the bytes an answer takes in a record; with the
 * counts for the log (PROTOCOL.md 9.9, 10.4), never a message, a list or a
 * key.
 * @module
 */

import {
  type ClientToServer,
  encodeMessage,
  MAX_REQUEST_ID,
  type RoomList,
} from "../proto/mod.ts";
import { RECORD_MIN_BYTES } from "../record/mod.ts";
import type { Logger } from "../util/mod.ts";
import type { RequestLimits } from "./limits.ts";
import type { Refuse } from "./mail_keys.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type { RoomRow, RoomStore } from "./seams.ts";

/** One client request of type `T`. */
export type Msg<T extends ClientToServer["t"]> = Extract<
  ClientToServer,
  { t: T }
>;

/** Counts for the log (PROTOCOL.md 9.9, 10.4): never a message, a list or a key. */
export interface RoomCounts {
  created: number;
  changed: number;
  left: number;
  stored: number;
  keyed: number;
  pushed: number;
  deleted: number;
  receipts: number;
  expired: number;
  refused: Record<string, number>;
}

/** All counts at zero. */
export const newCounts = (): RoomCounts => ({
  created: 0,
  changed: 0,
  left: 0,
  stored: 0,
  keyed: 0,
  pushed: 0,
  deleted: 0,
  receipts: 0,
  expired: 0,
  refused: {},
});

/**
 * Log the counts (`room-counts`), each refusal as `refused-<code>`.
 * @param log the server's log
 * @param c the counts
 */
export function logCounts(log: Logger, c: RoomCounts): void {
  const refused = Object.fromEntries(
    Object.entries(c.refused).map(([code, n]) => [`refused-${code}`, n]),
  );
  log("room-counts", {
    created: c.created,
    changed: c.changed,
    left: c.left,
    stored: c.stored,
    keyed: c.keyed,
    pushed: c.pushed,
    deleted: c.deleted,
    receipts: c.receipts,
    expired: c.expired,
    ...refused,
  });
}

/** The answers and refusals the room requests share. */
export class RoomReplies {
  #store: RoomStore;
  #limits: RequestLimits;
  #counts: RoomCounts;
  /** {@link RoomReplies.refuse}, to hand to the mailbox's helpers. */
  readonly refuseCounted: Refuse = (reply, code, message) =>
    this.refuse(reply, code, message);

  /**
   * @param o the room store, the per-user buckets (`room`), and the
   *   counts its refusals add to
   */
  constructor(o: {
    store: RoomStore;
    limits: RequestLimits;
    counts: RoomCounts;
  }) {
    this.#store = o.store;
    this.#limits = o.limits;
    this.#counts = o.counts;
  }

  /** The room `name` if the user is a member of it now; else refused. */
  async memberRoom(
    s: ClientSession,
    name: string,
    reply: Reply,
  ): Promise<RoomRow | undefined> {
    const row = await this.#store.room(name);
    if (!row) {
      await this.noRoom(reply, name);
      return undefined;
    }
    if (!row.members.includes(s.user)) {
      await this.refuse(
        reply,
        "not-a-member",
        `You are not a member of room ${name}`,
      );
      return undefined;
    }
    return row;
  }

  /** Take one from the user's `room` bucket: false when it is empty. */
  take(s: ClientSession): boolean {
    return this.#limits.take(s.user, "room");
  }

  /** `rate-limited`. */
  rateLimited(reply: Reply): Promise<void> {
    return this.refuse(
      reply,
      "rate-limited",
      "Too many room requests; wait a moment and try again",
    );
  }

  /** `no-room`. */
  noRoom(reply: Reply, name: string): Promise<void> {
    return this.refuse(reply, "no-room", `There is no room named ${name}`);
  }

  /** `room-full`: the list has more members than `maxMembers`. */
  full(reply: Reply, list: RoomList, maxMembers: number): Promise<void> {
    return this.refuse(
      reply,
      "room-full",
      `Room ${list.name} refused: ${list.members.length} members, over the limit of ${maxMembers}`,
    );
  }

  /** `room-stale-epoch`: `epoch` is not the room's. */
  stale(reply: Reply, row: RoomRow, epoch: number): Promise<void> {
    return this.refuse(
      reply,
      "room-stale-epoch",
      `Room ${row.name} is at epoch ${row.epoch}, not ${epoch}: take its new member list and try again`,
    );
  }

  /** Answer `error` with `code`, counted. */
  refuse(reply: Reply, code: string, message: string): Promise<void> {
    this.#counts.refused[code] = (this.#counts.refused[code] ?? 0) + 1;
    return reply({ t: "error", code, message });
  }
}

/** Bytes of the record that carries `msg` with a `req`, at most. */
export function answerBytes(msg: Parameters<Reply>[0]): number {
  return RECORD_MIN_BYTES +
    encodeMessage({ ...msg, req: MAX_REQUEST_ID }).length;
}

/** Are `a` and `b` the same bytes (room ids)? */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
