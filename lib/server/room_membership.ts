/**
 * {@link RoomMembership}: who is in which room, on the server (PROTOCOL.md
 * 10.1, 10.4): make a room and change its members (`room-create`,
 * `room-update`, `room-leave`, each the creator's or the member's signed
 * statement, checked against the enrolled RSA keys, and run alone among
 * the room's changes), and list one's rooms (`my-rooms`). A part of the
 * rooms facade (rooms.ts).
 * @module
 */

import {
  decodeRoomLeave,
  decodeRoomList,
  membersAt,
  type RoomLeave,
  type RoomList,
  type RoomSummary,
  verifyRoomLeave,
  verifyRoomList,
} from "../proto/mod.ts";
import { isImError, ProtocolError } from "../util/mod.ts";
import { fromBase64, noMailbox } from "./mail_keys.ts";
import { SWEEP_BATCH } from "./mail_sweep.ts";
import { type Later, later, type RoomLocks } from "./room_lock.ts";
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
import type { RoomRow } from "./seams.ts";

/** What {@link RoomMembership} uses of the rooms' settings. */
type Options = Pick<
  RoomsOptions,
  | "store"
  | "prekeys"
  | "clients"
  | "session"
  | "online"
  | "maxFrameBytes"
  | "now"
  | "log"
>;

/** The parts {@link RoomMembership} works with, and its limits. */
interface Parts {
  replies: RoomReplies;
  locks: RoomLocks;
  counts: RoomCounts;
  /** Woken by each change. */
  streams: RoomStreams;
  /** Members of one room, at most. */
  maxMembers: number;
  /** Rooms one user may be a member of. */
  maxRooms: number;
}

/** `room-create`, `room-update`, `room-leave` and `my-rooms`. */
export class RoomMembership {
  #o: Options;
  #replies: RoomReplies;
  #locks: RoomLocks;
  #counts: RoomCounts;
  #streams: RoomStreams;
  #maxMembers: number;
  #maxRooms: number;

  /**
   * @param o the seams it uses, of the rooms' settings
   * @param parts the refusals, locks, counts and streams it
   *   shares, and its limits
   */
  constructor(o: Options, parts: Parts) {
    this.#o = o;
    this.#replies = parts.replies;
    this.#locks = parts.locks;
    this.#counts = parts.counts;
    this.#streams = parts.streams;
    this.#maxMembers = parts.maxMembers;
    this.#maxRooms = parts.maxRooms;
  }

  /**
   * `room-create` (PROTOCOL.md 10.1, 10.4), checked in order:
   * `rate-limited`; the list decodes, names the user as creator and is at
   * epoch 1 (`bad-room`); `room-full`; it verifies with the user's
   * enrolled key (`room-forged`); the name is free (`room-exists`); every
   * member has a mailbox (`no-mailbox`) and room for one more room
   * (`too-many-rooms`). Then the room is stored, the creator answered and
   * the other members' streams woken.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room`, or `error`
   */
  async create(
    s: ClientSession,
    m: Msg<"room-create">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#replies.take(s)) return this.#replies.rateLimited(reply);
    let list: RoomList;
    try {
      list = decodeRoomList(fromBase64(m.list, "member list"));
    } catch (e) {
      return this.#replies.refuse(
        reply,
        "bad-room",
        `Room refused: ${(e as Error).message}`,
      );
    }
    if (list.creator !== s.user) {
      return this.#replies.refuse(
        reply,
        "bad-room",
        `Room refused: its list names ${list.creator} as its creator, not you`,
      );
    }
    if (list.epoch !== 1) {
      return this.#replies.refuse(
        reply,
        "bad-room",
        `Room refused: a new room's list is at epoch 1, not ${list.epoch}`,
      );
    }
    if (list.members.length > this.#maxMembers) {
      return this.#replies.full(reply, list, this.#maxMembers);
    }
    await this.#verifyList(list, s.user);
    // The answer is written after the lock is let go: a client slow to
    // read holds up no one else's change of the room.
    const answered = await this.#locks.run(list.name, async () => {
      if (await this.#o.store.room(list.name)) {
        return later(this.#replies.refuse(
          reply,
          "room-exists",
          `A room named ${list.name} exists already; choose another name`,
        ));
      }
      const refused = await this.#checkJoining(reply, list.members);
      if (refused) return refused;
      const row: RoomRow = {
        name: list.name,
        roomId: list.roomId,
        creator: list.creator,
        epoch: 1,
        list: list.bytes,
        leaves: [],
        members: [...list.members],
      };
      const seq = await this.#o.store.create(row, {
        kind: "list",
        from: s.user,
        at: this.#o.now(),
        data: list.bytes,
      });
      this.#counts.created++;
      // The name may have been a room's that was deleted (PROTOCOL.md
      // 10.4): nothing of that one is remembered under it any more.
      this.#streams.reset(list.name);
      const answer = reply({
        t: "room",
        room: list.name,
        seq,
        list: list.bytes.toBase64(),
      });
      this.#streams.notify(list.members, list.name);
      return later(answer);
    });
    await answered.done;
  }

  /**
   * `room-update`: the creator's next list (PROTOCOL.md 10.1, 10.4):
   * `rate-limited`; it decodes (`bad-room`); the room exists (`no-room`);
   * the user is its creator (`not-creator`) and still a member
   * (`not-a-member`); same room id, name and creator (`bad-room`); its
   * epoch is the stored one plus one (`room-conflict`); `room-full`;
   * `room-forged`; the members it adds have a mailbox and room for one
   * more room. Members added start just before the new entry, members
   * removed get it and nothing after.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room`, or `error`
   */
  async update(
    s: ClientSession,
    m: Msg<"room-update">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#replies.take(s)) return this.#replies.rateLimited(reply);
    let list: RoomList;
    try {
      list = decodeRoomList(fromBase64(m.list, "member list"));
    } catch (e) {
      return this.#replies.refuse(
        reply,
        "bad-room",
        `Room change refused: ${(e as Error).message}`,
      );
    }
    const first = await this.#updatable(s, list, reply);
    if (!first.ok) return first.refused.done;
    if (list.members.length > this.#maxMembers) {
      return this.#replies.full(reply, list, this.#maxMembers);
    }
    await this.#verifyList(list, s.user);
    // Checked again on the row as it is now, alone among the room's
    // changes (PROTOCOL.md 10.4): a change that came meanwhile is seen.
    const answered = await this.#locks.run(
      list.name,
      () =>
        replanned(async (): Promise<Later | undefined> => {
          const now = await this.#updatable(s, list, reply);
          if (!now.ok) return now.refused;
          const row = now.row;
          const current = new Set(row.members);
          const next = new Set(list.members);
          const added = list.members.filter((u) => !current.has(u));
          const removed = row.members.filter((u) => !next.has(u));
          const refused = await this.#checkJoining(reply, added);
          if (refused) return refused;
          const seq = await this.#o.store.change({
            row: {
              ...row,
              epoch: list.epoch,
              list: list.bytes,
              leaves: [],
              members: [...list.members],
            },
            entry: {
              kind: "list",
              from: s.user,
              at: this.#o.now(),
              data: list.bytes,
            },
            added,
            removed,
            base: row,
          }).catch(planAgain);
          if (seq === undefined) return undefined;
          this.#counts.changed++;
          const answer = reply({
            t: "room",
            room: row.name,
            seq,
            list: list.bytes.toBase64(),
          });
          this.#streams.notify([...list.members, ...removed], row.name);
          return later(answer);
        }),
    );
    await answered.done;
  }

  /**
   * The checks of `room-update` on the room's row as stored now, in order:
   * `no-room`, `not-creator`, `not-a-member`, `bad-room`, `room-conflict`.
   * @returns the row, or the refusal being written (not awaited)
   */
  async #updatable(
    s: ClientSession,
    list: RoomList,
    reply: Reply,
  ): Promise<{ ok: true; row: RoomRow } | { ok: false; refused: Later }> {
    const no = (p: Promise<void>) => ({
      ok: false as const,
      refused: later(p),
    });
    const row = await this.#o.store.room(list.name);
    if (!row) return no(this.#replies.noRoom(reply, list.name));
    if (s.user !== row.creator) {
      return no(this.#replies.refuse(
        reply,
        "not-creator",
        `Only ${row.creator}, who made room ${row.name}, can change its members`,
      ));
    }
    if (!row.members.includes(s.user)) {
      return no(this.#replies.refuse(
        reply,
        "not-a-member",
        `You left room ${row.name}; its members can no longer change`,
      ));
    }
    if (list.creator !== row.creator || !sameBytes(list.roomId, row.roomId)) {
      return no(this.#replies.refuse(
        reply,
        "bad-room",
        `Room change refused: the list is not of room ${row.name} (another room id or creator)`,
      ));
    }
    if (list.epoch !== row.epoch + 1) {
      return no(this.#replies.refuse(
        reply,
        "room-conflict",
        `Room change refused: room ${row.name} is at epoch ${row.epoch}, so its next list is at ${
          row.epoch + 1
        }, not ${list.epoch}`,
      ));
    }
    return { ok: true, row };
  }

  /**
   * `room-leave` (PROTOCOL.md 10.1, 10.4): `rate-limited`; the statement
   * decodes and names the user (`bad-room`); it names a room the user is a
   * member of (`not-a-member`), at its epoch (`room-conflict`); it
   * verifies with the user's enrolled key (`room-forged`). The user gets
   * nothing of the room after it; a creator that leaves leaves a room
   * whose members can no longer change. The membership and epoch are
   * checked again, alone among the room's changes, on the row as it is
   * then, and the new leaves and members are made from that row (two
   * members leaving at once both leave). A leaver with nothing of the
   * others left to read has its position dropped at once.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-left`, or `error`
   */
  async leaveRoom(
    s: ClientSession,
    m: Msg<"room-leave">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#replies.take(s)) return this.#replies.rateLimited(reply);
    let leave: RoomLeave;
    try {
      leave = decodeRoomLeave(fromBase64(m.statement, "leave statement"));
    } catch (e) {
      return this.#replies.refuse(
        reply,
        "bad-room",
        `Leave refused: ${(e as Error).message}`,
      );
    }
    if (leave.member !== s.user) {
      return this.#replies.refuse(
        reply,
        "bad-room",
        `Leave refused: the statement names ${leave.member}, not you`,
      );
    }
    let found: RoomRow | undefined;
    for (const name of await this.#o.store.roomsOf(s.user)) {
      const r = await this.#o.store.room(name);
      if (r && sameBytes(r.roomId, leave.roomId)) {
        found = r;
        break;
      }
    }
    const first = this.#leavable(found, leave, reply);
    if (!first.ok) return first.refused.done;
    const name = first.row.name;
    const key = this.#o.clients().get(s.user);
    if (!key) throw forgedBy(s.user);
    await verifyRoomLeave(leave, key);
    const answered = await this.#locks.run(
      name,
      () =>
        replanned(async (): Promise<Later | undefined> => {
          const stored = await this.#o.store.room(name);
          const now = this.#leavable(
            stored && sameBytes(stored.roomId, leave.roomId)
              ? stored
              : undefined,
            leave,
            reply,
          );
          if (!now.ok) return now.refused;
          const row = now.row;
          const leaves = [...row.leaves, leave.bytes];
          const members = membersAt(
            decodeRoomList(row.list),
            leaves.map((b) => decodeRoomLeave(b)),
          );
          const seq = await this.#o.store.change({
            row: { ...row, leaves, members },
            entry: {
              kind: "leave",
              from: s.user,
              at: this.#o.now(),
              data: leave.bytes,
            },
            added: [],
            removed: [s.user],
            base: row,
          }).catch(planAgain);
          if (seq === undefined) return undefined;
          this.#counts.left++;
          await this.#letGo(name, s.user, seq);
          const answer = reply({
            t: "room-left",
            room: name,
            seq,
            statement: leave.bytes.toBase64(),
          });
          // Its own stream too: it moves past its own leave, and lets the room go.
          this.#streams.notify([...members, s.user], name);
          return later(answer);
        }),
    );
    await answered.done;
  }

  /**
   * The checks of `room-leave` on a room's row, in order: the user is a
   * member (`not-a-member`), the leave of its epoch (`room-conflict`).
   * @param row the room whose `room_id` the leave names, if any
   * @returns the row, or the refusal being written (not awaited)
   */
  #leavable(
    row: RoomRow | undefined,
    leave: RoomLeave,
    reply: Reply,
  ): { ok: true; row: RoomRow } | { ok: false; refused: Later } {
    if (!row || !row.members.includes(leave.member)) {
      return {
        ok: false,
        refused: later(this.#replies.refuse(
          reply,
          "not-a-member",
          "Leave refused: you are not a member of the room it names",
        )),
      };
    }
    if (leave.epoch !== row.epoch) {
      return {
        ok: false,
        refused: later(this.#replies.refuse(
          reply,
          "room-conflict",
          `Leave refused: room ${row.name} is at epoch ${row.epoch}, not ${leave.epoch}`,
        )),
      };
    }
    return { ok: true, row };
  }

  /**
   * A member just left at `until`: if nothing of the others is left for it
   * to read before its leave (only its own entries and `keys` entries,
   * neither ever pushed to it), its position is dropped now, as its stream
   * would drop it passing those silently (room_stream.ts): so a room whose
   * members all left is deleted (PROTOCOL.md 10.4) without waiting for a
   * leaver to stream again. Else its stream hands it the rest first. Its
   * leave is stored already: a store that fails here is logged, and the
   * position left for its stream to move.
   */
  async #letGo(name: string, user: string, until: number): Promise<void> {
    try {
      const limit = SWEEP_BATCH;
      let after = 0;
      for (;;) {
        const page = await this.#o.store.read(name, user, { after, limit });
        if (page.some((e) => e.from !== user && e.kind !== "keys")) return;
        if (page.length < limit) break;
        after = page.at(-1)!.seq;
      }
      this.#counts.deleted += await this.#o.store.ack(name, user, until);
    } catch (e) {
      this.#o.log("room-store-failed", {
        user,
        request: "room-leave",
        error: (e as Error).message,
      });
    }
  }

  /**
   * `my-rooms`: every room the user is a member of, with its newest list,
   * the leaves of its epoch and its members online (in a cluster on any
   * node, as the presence view shows them: PROTOCOL.md 11.6 _Online_); as many
   * rooms as fit one record (by name), the rest left out and counted in
   * the log.
   * @param s the connection
   * @param _m the message
   * @param reply its answer: `rooms`, or `error` `rate-limited`
   */
  async myRooms(
    s: ClientSession,
    _m: Msg<"my-rooms">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#replies.take(s)) return this.#replies.rateLimited(reply);
    const rooms: RoomSummary[] = [];
    const online = this.#o.online ??
      ((u: string) => this.#o.session(u) !== undefined);
    let bytes = answerBytes({ t: "rooms", rooms: [] });
    let left = 0;
    for (const name of await this.#o.store.roomsOf(s.user)) {
      const row = await this.#o.store.room(name);
      if (!row || !row.members.includes(s.user)) continue;
      const summary: RoomSummary = {
        name: row.name,
        list: row.list.toBase64(),
        leaves: row.leaves.map((l) => l.toBase64()),
        online: row.members.filter(online),
      };
      const more = JSON.stringify(summary).length + 1;
      if (bytes + more > this.#o.maxFrameBytes) {
        left++;
        continue;
      }
      bytes += more;
      rooms.push(summary);
    }
    if (left > 0) this.#o.log("rooms-truncated", { left });
    await reply({ t: "rooms", rooms });
  }

  /** The list verifies with the enrolled key of `user`, its creator; else `room-forged`. */
  async #verifyList(list: RoomList, user: string): Promise<void> {
    const key = this.#o.clients().get(user);
    if (!key) throw forgedBy(user);
    await verifyRoomList(list, key);
  }

  /**
   * Users about to join a room: each has a mailbox (`no-mailbox`) and is a
   * member of fewer than the most rooms (`too-many-rooms`).
   * @returns undefined when all may join, else the refusal being written
   *   (not awaited: the caller may hold the room's lock)
   */
  async #checkJoining(
    reply: Reply,
    users: readonly string[],
  ): Promise<Later | undefined> {
    for (const u of users) {
      if (!this.#o.clients().has(u) || !(await this.#o.prekeys.certs(u))) {
        return later(noMailbox(this.#replies.refuseCounted, reply, u));
      }
    }
    for (const u of users) {
      if ((await this.#o.store.memberships(u)) >= this.#maxRooms) {
        return later(this.#replies.refuse(
          reply,
          "too-many-rooms",
          `${u} is a member of ${this.#maxRooms} rooms already, the most one user may be in`,
        ));
      }
    }
    return undefined;
  }
}

/**
 * Times a change is planned again on the room as it is now, after the store
 * refused it as planned on a row changed meanwhile (PROTOCOL.md 10.4, 11.6).
 */
export const MAX_REPLANS = 5;

/** A `room-conflict` of the store: plan again (undefined); anything else is thrown. */
function planAgain(e: unknown): undefined {
  if (isImError(e) && e.code === "room-conflict") return undefined;
  throw e;
}

/**
 * Run `plan` until it answers (a {@link Later}), at most {@link MAX_REPLANS}
 * times: undefined means the store refused the change as planned on a row
 * another node changed meanwhile, and `plan` reads the room again, checks
 * the request again on it, and plans again (PROTOCOL.md 10.4, 11.6).
 * @throws {ProtocolError} `room-conflict` when the last try was refused too
 */
async function replanned(
  plan: () => Promise<Later | undefined>,
): Promise<Later> {
  for (let i = 0; i < MAX_REPLANS; i++) {
    const done = await plan();
    if (done) return done;
  }
  throw new ProtocolError(
    "room-conflict",
    `The room changed ${MAX_REPLANS} times while your change was made; try again`,
  );
}

/** A list or leave by a user the directory no longer holds: nothing can verify it. */
function forgedBy(user: string): ProtocolError {
  return new ProtocolError(
    "room-forged",
    `No enrolled key of ${user} to check the signature with`,
  );
}
