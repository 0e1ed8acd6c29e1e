/**
 * {@link RoomWake}: the room wake-ups of a cluster (PROTOCOL.md 11.4
 * _Room wake-ups_). The rooms are one store for every node (11.6), but a
 * member's room stream (10.4) runs on the node it is connected to, and
 * reads a room only when woken. After a node committed a change to a room
 * (made, changed, left, a message, a key gate), it wakes its own streams at
 * once and publishes one sealed envelope (11.2) on
 * `im.<cluster>.room-wake`,
 * `{"t":"room-wake","rooms":[{"room":R,"users":[...],"made":true?}]}`, the
 * rooms of one turn of the event loop, each once with the union of its
 * users (at most {@link ROOM_WAKE_ROOMS} rooms and {@link ROOM_WAKE_USERS}
 * users an envelope). Every node subscribes and wakes, per room, the
 * streams of the named users connected to it (`made`: its streams first
 * forget an earlier room of that name). Its own envelopes, and those that
 * do not verify, wake nobody. A node whose link to NATS comes back wakes
 * every room stream it runs. The envelopes, their window and refusals are
 * wake_channel.ts's, shared with the mail wake-ups.
 *
 * @example
 * ```ts ignore
 * const wake = await RoomWake.open({ nc, cluster: "team", node: "n1", keys });
 * wake.attach((room, users, made) => streams.wakeLocal(room, users, made), () => streams.wakeAll());
 * wake.tell("ops", ["A", "B"]);   // their streams on the other nodes
 * await wake.close();
 * ```
 * @module
 */

import { isValidUsername } from "../../proto/mod.ts";
import { ProtocolError } from "../../util/mod.ts";
import {
  wakeBody,
  WakeChannel,
  type WakeChannelOptions,
} from "./wake_channel.ts";

/** Rooms named in one `room-wake` envelope, at most. */
export const ROOM_WAKE_ROOMS = 64;
/** Users named in one `room-wake` envelope, at most (all its rooms together). */
export const ROOM_WAKE_USERS = 2048;
/** Receipts (a sender of a room each) in one `room-wake` envelope, at most (11.4 _Room receipts between nodes_). */
export const ROOM_WAKE_RECEIPTS = 64;
/** `seq`s of one receipt, at most (10.4: a sender's newest 64 of an acknowledgement). */
export const ROOM_WAKE_SEQS = 64;

/** The subject every node of a cluster hears room wake-ups on (11.4). */
export function roomWakeSubject(cluster: string): string {
  return `im.${cluster}.room-wake`;
}

/**
 * A sender's messages of a room that a member acknowledged on another node
 * (11.4 _Room receipts between nodes_): its node sends their `room-receipt`s.
 */
export interface RoomWakeReceipt {
  from: string;
  seqs: readonly number[];
}

/** One room of a `room-wake`: who to wake, whether it was just made, and receipts to send. */
export interface RoomWakeItem {
  room: string;
  users: string[];
  made?: true;
  receipts?: RoomWakeReceipt[];
}

/** Options of {@link RoomWake.open}. */
export type RoomWakeOptions = WakeChannelOptions;

/**
 * What a room wake-up does on this node: wake the streams of `users` here,
 * and send the senders connected here the `room-receipt`s of `receipts`.
 */
export type RoomWakeLocal = (
  room: string,
  users: readonly string[],
  made: boolean,
  receipts?: readonly RoomWakeReceipt[],
) => void;

/** Room wake-ups between the nodes of a cluster (PROTOCOL.md 11.4). */
export class RoomWake {
  readonly subject: string;
  readonly #ch: WakeChannel;
  #local: RoomWakeLocal = () => {};
  #everyone: () => void = () => {};
  /** The rooms of this turn: room to its users, whether it was made, and its receipts (sender to seqs). */
  #batch = new Map<
    string,
    { users: Set<string>; made: boolean; receipts: Map<string, Set<number>> }
  >();

  private constructor(o: RoomWakeOptions) {
    this.subject = roomWakeSubject(o.cluster);
    this.#ch = new WakeChannel(o, this.subject);
  }

  /**
   * Subscribe to the cluster's room wake-ups, and wait until NATS has the
   * subscription.
   * @param o the connection, cluster, node and keys; clock, logger
   * @returns the wake-ups
   * @throws {RangeError} a cluster or node name not of rule 2.9
   */
  static async open(o: RoomWakeOptions): Promise<RoomWake> {
    const w = new RoomWake(o);
    // 11.4: every stream woken when the link is back (a wake-up was lost).
    await w.#ch.subscribe(
      parseRoomWake,
      (rooms) => {
        for (const r of rooms) {
          w.#local(r.room, r.users, r.made === true, r.receipts);
        }
      },
      () => w.#everyone(),
    );
    return w;
  }

  /**
   * What a wake-up does on this node.
   * @param local wake the streams of those users connected here, for a room
   * @param everyone wake every room stream this node runs (NATS came back)
   */
  attach(local: RoomWakeLocal, everyone: () => void = () => {}): void {
    this.#local = local;
    this.#everyone = everyone;
  }

  /** Envelopes refused so far, by code. */
  refusals(): Record<string, number> {
    return this.#ch.refusals();
  }

  /**
   * A change to `room` was committed: the other nodes are told, with the
   * rooms of this turn in as few envelopes as fit. (This node wakes its
   * own streams itself, at once.)
   * @param room the room
   * @param users whose streams look again
   * @param made the room was just made (an earlier one of its name is gone)
   * @param receipts senders not connected here and the `seq`s of theirs a
   *   member acknowledged: the node each is connected to sends their
   *   `room-receipt`s (11.4 _Room receipts between nodes_)
   */
  tell(
    room: string,
    users: Iterable<string>,
    made = false,
    receipts: readonly RoomWakeReceipt[] = [],
  ): void {
    if (this.#ch.closed) return;
    if (this.#batch.size === 0) queueMicrotask(() => this.#flush());
    let r = this.#batch.get(room);
    if (!r) {
      this.#batch.set(
        room,
        r = { users: new Set(), made: false, receipts: new Map() },
      );
    }
    for (const u of users) r.users.add(u);
    r.made ||= made;
    for (const { from, seqs } of receipts) {
      const got = r.receipts.get(from) ?? new Set<number>();
      for (const seq of seqs) got.add(seq);
      r.receipts.set(from, got);
    }
  }

  #flush(): void {
    const rooms = [...this.#batch];
    this.#batch.clear();
    if (!this.#ch.open) return;
    let items: RoomWakeItem[] = [];
    let count = 0;
    let receiptCount = 0;
    const send = () => {
      if (items.length > 0) this.#ch.publish({ t: "room-wake", rooms: items });
      items = [];
      count = 0;
      receiptCount = 0;
    };
    for (const [room, r] of rooms) {
      const users = [...r.users];
      // 10.4: a sender's newest 64 (an older message's count is at least
      // the newest's).
      const receipts = [...r.receipts].map(([from, seqs]) => ({
        from,
        seqs: [...seqs].sort((a, b) => a - b).slice(-ROOM_WAKE_SEQS),
      }));
      let first = true;
      do {
        if (
          items.length >= ROOM_WAKE_ROOMS || count >= ROOM_WAKE_USERS ||
          (receipts.length > 0 && receiptCount >= ROOM_WAKE_RECEIPTS)
        ) send();
        const part = users.splice(0, ROOM_WAKE_USERS - count);
        const told = receipts.splice(0, ROOM_WAKE_RECEIPTS - receiptCount);
        items.push({
          room,
          users: part,
          ...(r.made && first && { made: true as const }),
          ...(told.length > 0 && { receipts: told }),
        });
        count += part.length;
        receiptCount += told.length;
        first = false;
      } while (users.length > 0 || receipts.length > 0);
    }
    send();
  }

  /** Unsubscribe; the connection stays the caller's. Idempotent. */
  async close(): Promise<void> {
    if (this.#ch.closed) return;
    this.#batch.clear();
    await this.#ch.close();
  }
}

/**
 * A `room-wake` payload, checked: room and user names of rule 2.9, within
 * the envelope's limits; its receipts (11.4 _Room receipts between nodes_)
 * senders of rule 2.9 with `seq`s from 1 to 2^53 - 1.
 * @throws {ProtocolError} `cluster-malformed`
 */
function parseRoomWake(payload: Uint8Array): RoomWakeItem[] {
  const bad = () => new ProtocolError("cluster-malformed", "not a room-wake");
  const b = wakeBody(payload, "room-wake");
  if (!Array.isArray(b.rooms) || b.rooms.length > ROOM_WAKE_ROOMS) throw bad();
  let count = 0;
  let receiptCount = 0;
  const out: RoomWakeItem[] = [];
  for (const r of b.rooms as unknown[]) {
    const x = r as {
      room?: unknown;
      users?: unknown;
      made?: unknown;
      receipts?: unknown;
    };
    if (
      typeof x !== "object" || x === null || typeof x.room !== "string" ||
      !isValidUsername(x.room) || !Array.isArray(x.users) ||
      !x.users.every((u) => typeof u === "string" && isValidUsername(u)) ||
      (x.made !== undefined && x.made !== true)
    ) throw bad();
    count += x.users.length;
    if (count > ROOM_WAKE_USERS) throw bad();
    const receipts = x.receipts === undefined
      ? undefined
      : parseReceipts(x.receipts, bad);
    receiptCount += receipts?.length ?? 0;
    if (receiptCount > ROOM_WAKE_RECEIPTS) throw bad();
    out.push({
      room: x.room,
      users: x.users as string[],
      ...(x.made === true && { made: true as const }),
      ...(receipts && { receipts }),
    });
  }
  return out;
}

/** A room item's `receipts`, checked (11.4 _Room receipts between nodes_). */
function parseReceipts(
  value: unknown,
  bad: () => ProtocolError,
): RoomWakeReceipt[] {
  if (!Array.isArray(value) || value.length > ROOM_WAKE_RECEIPTS) throw bad();
  return value.map((v) => {
    const x = v as { from?: unknown; seqs?: unknown };
    if (
      typeof x !== "object" || x === null || typeof x.from !== "string" ||
      !isValidUsername(x.from) || !Array.isArray(x.seqs) ||
      x.seqs.length === 0 || x.seqs.length > ROOM_WAKE_SEQS ||
      !x.seqs.every((n) => Number.isSafeInteger(n) && n >= 1)
    ) throw bad();
    return { from: x.from, seqs: x.seqs as number[] };
  });
}
