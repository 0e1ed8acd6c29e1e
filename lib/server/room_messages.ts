/**
 * {@link RoomMessages}: writing to a room and acknowledging it on the
 * server (PROTOCOL.md 10.3, 10.4): `room-send` checks a message's header
 * and stores it once for every member; `room-ack` moves the user's position
 * (deleting what every member has passed) and sends the senders online
 * here their `room-receipt`s; in a cluster the other nodes are told of the
 * senders not connected here, and {@link RoomMessages.receipts} sends
 * those connected here theirs (PROTOCOL.md 11.4 _Room receipts between
 * nodes_). A part of the rooms facade (rooms.ts).
 * @module
 */

import { decodeRoomMessage } from "../proto/mod.ts";
import { fromBase64 } from "./mail_keys.ts";
import {
  answerBytes,
  type Msg,
  type RoomCounts,
  type RoomReplies,
  sameBytes,
} from "./room_replies.ts";
import type { RoomStreams } from "./room_streams.ts";
import type { RoomsOptions } from "./rooms.ts";
import type { ClientSession, Reply } from "./registry.ts";

/** Receipts one `room-ack` sends one sender, at most: those of its newest messages (PROTOCOL.md 10.4). */
export const MAX_RECEIPTS_PER_ACK = 64;

/** What {@link RoomMessages} uses of the rooms' settings. */
type Options = Pick<
  RoomsOptions,
  "store" | "session" | "maxFrameBytes" | "now" | "wakeElsewhere"
>;

/** `room-send` and `room-ack`, with its receipts. */
export class RoomMessages {
  #o: Options;
  #replies: RoomReplies;
  #counts: RoomCounts;
  #streams: RoomStreams;

  /**
   * @param o the seams and limits it uses, of the rooms' settings
   * @param parts the refusals, the counts, and the streams (woken by a
   *   message, and moved by an acknowledgement)
   */
  constructor(
    o: Options,
    parts: { replies: RoomReplies; counts: RoomCounts; streams: RoomStreams },
  ) {
    this.#o = o;
    this.#replies = parts.replies;
    this.#counts = parts.counts;
    this.#streams = parts.streams;
  }

  /**
   * `room-send` (PROTOCOL.md 10.3, 10.4), checked in order:
   * `rate-limited`; a member (`no-room`, `not-a-member`); a `ROOM_MSG` whose
   * header names this room and the user (`bad-room-msg`) at the room's
   * epoch (`room-stale-epoch`); its push fits a frame
   * (`room-msg-too-large`). Stored once; the answer is its `room-receipt`
   * (`delivered` 0), and the other members' streams push it.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-receipt`, or `error`
   */
  async send(
    s: ClientSession,
    m: Msg<"room-send">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#replies.take(s)) return this.#replies.rateLimited(reply);
    const row = await this.#replies.memberRoom(s, m.room, reply);
    if (!row) return;
    let msg: Uint8Array;
    let header;
    try {
      msg = fromBase64(m.msg, "room message");
      header = decodeRoomMessage(msg).header;
    } catch (e) {
      return this.#replies.refuse(
        reply,
        "bad-room-msg",
        `Room message refused: ${(e as Error).message}`,
      );
    }
    if (header.name !== row.name || !sameBytes(header.roomId, row.roomId)) {
      return this.#replies.refuse(
        reply,
        "bad-room-msg",
        `Room message refused: its header names another room than ${row.name}`,
      );
    }
    if (header.sender !== s.user) {
      return this.#replies.refuse(
        reply,
        "bad-room-msg",
        "Room message refused: its header names another sender than you",
      );
    }
    if (header.epoch !== row.epoch) {
      return this.#replies.stale(reply, row, header.epoch);
    }
    const pushBytes = answerBytes({
      t: "room-msg",
      room: row.name,
      seq: Number.MAX_SAFE_INTEGER,
      from: s.user,
      at: Number.MAX_SAFE_INTEGER,
      msg: msg.toBase64(),
    });
    if (pushBytes > this.#o.maxFrameBytes) {
      return this.#replies.refuse(
        reply,
        "room-msg-too-large",
        `Room message of ${msg.length} bytes refused: delivered, it would need a record of ${pushBytes} bytes, over the limit of ${this.#o.maxFrameBytes}`,
      );
    }
    const seq = await this.#o.store.append(row.name, {
      kind: "msg",
      from: s.user,
      at: this.#o.now(),
      data: msg,
    });
    this.#counts.stored++;
    const answered = reply({
      t: "room-receipt",
      room: row.name,
      seq,
      delivered: 0,
      members: row.members.filter((u) => u !== s.user).length,
    });
    this.#streams.notify(row.members, row.name);
    await answered;
  }

  /**
   * `room-ack` (PROTOCOL.md 10.4): the user's position in the room moves
   * to `upTo` (and past the entries passed silently after it); an `upTo`
   * above what was pushed of the room, or below an earlier one, is
   * `bad-ack` (no effect). Each sender online here gets a `room-receipt`
   * with the count now, for each of its messages the acknowledgement
   * covers, at most {@link MAX_RECEIPTS_PER_ACK} (its newest) per
   * acknowledgement; in a cluster the senders not connected here are told
   * to the other nodes (PROTOCOL.md 11.4 _Room receipts between nodes_).
   * @param s the connection
   * @param m the message
   * @param reply errors only
   */
  async ack(s: ClientSession, m: Msg<"room-ack">, reply: Reply): Promise<void> {
    const stream = this.#streams.of(s);
    const r = stream?.ack(m.room, m.upTo) ??
      (m.upTo === 0 ? { ok: true as const, from: 0, to: 0, handled: [] } : {
        ok: false as const,
        message:
          `Acknowledgement of room ${m.room} up to ${m.upTo} refused: nothing was pushed`,
      });
    if (!r.ok) return this.#replies.refuse(reply, "bad-ack", r.message);
    if (r.to > r.from) {
      this.#counts.deleted += await this.#o.store.ack(m.room, s.user, r.to);
    }
    const here = new Map<string, number[]>();
    const elsewhere = new Map<string, number[]>();
    for (const e of r.handled) {
      if (e.kind !== "msg" || e.from === s.user) continue;
      const to = this.#o.session(e.from) ? here : elsewhere;
      const seqs = to.get(e.from) ?? [];
      seqs.push(e.seq);
      to.set(e.from, seqs);
    }
    if (elsewhere.size > 0 && this.#o.wakeElsewhere) {
      // 11.4: committed above; the sender's node reads the counts.
      this.#o.wakeElsewhere(
        m.room,
        [],
        false,
        [...elsewhere].map(([from, seqs]) => ({
          from,
          seqs: seqs.slice(-MAX_RECEIPTS_PER_ACK),
        })),
      );
    }
    await this.#send(m.room, here);
    stream?.wake(m.room);
  }

  /**
   * A member acknowledged messages of `room` on another node (PROTOCOL.md
   * 11.4 _Room receipts between nodes_): each sender connected here gets
   * their `room-receipt`s, with the counts read from the store now; the
   * others are ignored.
   * @param room the room
   * @param receipts the senders and the `seq`s of theirs acknowledged
   * @returns when they were read and queued (a store failure is thrown)
   */
  async receipts(
    room: string,
    receipts: readonly { from: string; seqs: readonly number[] }[],
  ): Promise<void> {
    const here = new Map<string, number[]>();
    for (const { from, seqs } of receipts) {
      if (this.#o.session(from)) here.set(from, [...seqs]);
    }
    await this.#send(room, here);
  }

  /** Send each sender online here its receipts, with the counts from the store. */
  async #send(room: string, bySender: Map<string, number[]>): Promise<void> {
    if (bySender.size === 0) return;
    const row = await this.#o.store.room(room);
    for (const [sender, seqs] of bySender) {
      const members = row?.members.filter((u) => u !== sender).length ?? 0;
      for (const seq of seqs.slice(-MAX_RECEIPTS_PER_ACK)) {
        const delivered = await this.#o.store.delivered(room, seq, sender);
        const to = this.#o.session(sender);
        if (!to) break;
        this.#counts.receipts++;
        to.channel.send({
          t: "room-receipt",
          room,
          seq,
          delivered,
          members,
        }).catch(() => {});
      }
    }
  }
}
