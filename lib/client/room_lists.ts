/**
 * {@link RoomLists}: room membership on the client's side (PROTOCOL.md
 * section 10.1): it lets in only what verifies (a list signed by the
 * room's creator under its pinned key, a leave signed by the member), never
 * an older list of a room it holds or left (a rollback); it signs the
 * creator's next list (`room-update`) and, as creator, the list without the
 * members who left; and it forgets a room we are no longer in, keeping its
 * floor. A part of the rooms facade (rooms.ts); it runs in the rooms'
 * queue.
 * @module
 */

import {
  decodeRoomLeave,
  decodeRoomList,
  makeRoomList,
  type RoomList,
  type ServerToClient,
  verifyRoomLeave,
  verifyRoomList,
} from "../proto/mod.ts";
import { ProtocolError } from "../util/mod.ts";
import type { Mailbox } from "./mailbox.ts";
import { ask } from "./mail_peers.ts";
import type { ClientContext } from "./options.ts";
import type { KeyHandOut } from "./room_handout.ts";
import { dropQueued } from "./room_messages.ts";
import type { PendingKeys } from "./room_pending.ts";
import { Room } from "./room_state.ts";
import { equal, fromB64, type RoomTable } from "./room_table.ts";
import type { ServerConnection } from "./server_link.ts";

/** The lists and leaves of the rooms we hold, in and out. */
export class RoomLists {
  #ctx: ClientContext;
  #link: ServerConnection;
  #mail: Mailbox;
  #table: RoomTable;
  #pending: PendingKeys;
  #handOut: KeyHandOut;
  #onForgotten: (name: string) => void;

  /**
   * @param o the client's context, the server link, the mailbox (its
   *   pinned keys), the rooms we hold, the keys waiting for their list, the
   *   hand-out of our key at each new epoch, and what to do once we are no
   *   longer in a room (its name)
   */
  constructor(o: {
    ctx: ClientContext;
    link: ServerConnection;
    mail: Mailbox;
    table: RoomTable;
    pending: PendingKeys;
    handOut: KeyHandOut;
    onForgotten: (name: string) => void;
  }) {
    this.#ctx = o.ctx;
    this.#link = o.link;
    this.#mail = o.mail;
    this.#table = o.table;
    this.#pending = o.pending;
    this.#handOut = o.handOut;
    this.#onForgotten = o.onForgotten;
  }

  /** The pinned RSA key of `user` (pinned now on first use, as for mail). */
  #keyOf(user: string) {
    return this.#mail.peers.ownerOf(user);
  }

  /**
   * A list pushed or answered (section 10.1): checked, verified, then
   * taken (a room made, members added or removed, or we were removed), and
   * our chain of its epoch handed out.
   * @param name the room it was pushed as
   * @param b64 the list's bytes
   * @throws {ProtocolError} `room-forged`, `room-rollback`, or the
   *   signature's failure
   */
  async onList(name: string, b64: string): Promise<void> {
    const list = decodeRoomList(fromB64(b64, "list"));
    if (list.name !== name) {
      throw new ProtocolError(
        "room-forged",
        `the list is for "${list.name}", pushed as "${name}"`,
      );
    }
    const room = this.#table.rooms.get(name);
    const gone = this.#table.gone.get(name);
    if (
      !room && gone && equal(gone.roomId, list.roomId) &&
      list.epoch <= gone.epoch
    ) {
      throw new ProtocolError(
        "room-rollback",
        `the list is of epoch ${list.epoch}; we left #${name} at epoch ${gone.epoch}`,
      );
    }
    if (room) {
      if (
        !equal(room.list.roomId, list.roomId) ||
        room.list.creator !== list.creator
      ) {
        throw new ProtocolError(
          "room-forged",
          `the list is of another room than the #${name} we hold (creator ${list.creator})`,
        );
      }
      if (list.epoch === room.epoch && equal(list.bytes, room.list.bytes)) {
        return;
      }
      if (list.epoch <= room.epoch) {
        throw new ProtocolError(
          "room-rollback",
          `the list is of epoch ${list.epoch}; we hold epoch ${room.epoch}`,
        );
      }
    }
    await verifyRoomList(list, await this.#keyOf(list.creator));
    const me = this.#ctx.o.user;
    const before = room ? room.members : [];
    if (!list.members.includes(me)) {
      if (!room) return; // not ours: nothing to keep
      await this.#forget(room, list.epoch, "you were removed from the room");
      this.#print(list, "removed", list.creator, [me], list.members);
      return;
    }
    let r = room;
    if (!r) {
      r = new Room(list);
      this.#table.rooms.set(name, r);
      this.#table.gone.delete(name);
    } else r.advance(list);
    await r.freshChain();
    await this.#pending.adopt(r);
    await this.#table.save(r);
    const added = list.members.filter((m) => !before.includes(m));
    const removed = before.filter((m) => !list.members.includes(m));
    if (!room) {
      this.#print(list, "created", list.creator, [], list.members);
    } else {
      if (added.length > 0) {
        this.#print(list, "added", list.creator, added, list.members);
      }
      if (removed.length > 0) {
        this.#print(list, "removed", list.creator, removed, list.members);
      }
    }
    this.#ctx.track(this.#handOut.run(r, r.epoch));
  }

  /**
   * A member's leave pushed or answered (section 10.1): verified, then
   * taken (ours forgets the room).
   * @param name the room
   * @param b64 the statement's bytes
   * @throws {ProtocolError} `room-forged`, or the signature's failure
   */
  async onLeave(name: string, b64: string): Promise<void> {
    const leave = decodeRoomLeave(fromB64(b64, "statement"));
    const room = this.#table.rooms.get(name);
    if (!room) return; // a room we do not hold (or left)
    if (!equal(leave.roomId, room.list.roomId)) {
      throw new ProtocolError("room-forged", "the leave is of another room");
    }
    if (leave.epoch !== room.epoch) return; // of an epoch behind us
    if (
      room.leaves.some((l) => equal(l.bytes, leave.bytes)) ||
      !room.members.includes(leave.member)
    ) {
      this.pruneLeavers(room); // a re-signing that failed goes again
      return;
    }
    await verifyRoomLeave(leave, await this.#keyOf(leave.member));
    const me = this.#ctx.o.user;
    if (leave.member === me) {
      await this.#forget(room, room.epoch, "you left the room");
      this.#print(
        room.list,
        "left",
        me,
        [me],
        room.members.filter((m) => m !== me),
      );
      return;
    }
    room.leaves.push(leave);
    await this.#table.save(room);
    this.#print(room.list, "left", leave.member, [leave.member], room.members);
    this.pruneLeavers(room);
  }

  /**
   * Section 10.1: the creator's client signs the list without the members
   * who left, so every member hands out a fresh chain the leavers lack.
   * Tried again at each leave seen and at each login until it is done.
   */
  pruneLeavers(room: Room): void {
    const me = this.#ctx.o.user;
    if (
      room.list.creator !== me || !room.members.includes(me) ||
      room.members.length >= room.list.members.length ||
      room.pruned >= room.epoch
    ) return;
    const epoch = room.epoch;
    room.pruned = epoch;
    this.#ctx.track(
      this.update(room, room.members).then((ok) => {
        if (!ok && room.pruned === epoch) room.pruned = 0;
      }),
    );
  }

  /**
   * We are no longer in the room: its state goes, a floor stays (10.1), and
   * what we typed for it is not sent.
   */
  async #forget(room: Room, epoch: number, why: string): Promise<void> {
    this.#table.rooms.delete(room.name);
    this.#table.dirty.delete(room);
    dropQueued(this.#ctx, room, why);
    await this.#table.keepFloor(room, epoch);
    this.#onForgotten(room.name);
  }

  #print(
    list: RoomList,
    change: "created" | "added" | "removed" | "left",
    by: string,
    who: string[],
    members: readonly string[],
  ): void {
    this.#ctx.print({
      kind: "room",
      room: list.name,
      change,
      by,
      who,
      members: [...members],
    });
  }

  /**
   * Sign the room's next list, with `members`, and send it (`room-update`).
   * @returns whether the server took the list
   */
  async update(room: Room, members: string[]): Promise<boolean> {
    const list = await makeRoomList({
      roomId: room.list.roomId,
      name: room.name,
      creator: this.#ctx.o.identity,
      creatorName: this.#ctx.o.user,
      epoch: room.epoch + 1,
      created: room.list.created,
      members,
    });
    return this.answerList(
      await ask(this.#link, { t: "room-update", list: list.bytes.toBase64() }),
      room.name,
    );
  }

  /**
   * The answer to a list we sent: a `room` is taken as pushed, else the
   * error is shown.
   * @returns whether the server took the list
   */
  async answerList(
    a: ServerToClient | null,
    name: string,
  ): Promise<boolean> {
    if (a?.t === "room") {
      const m = a;
      await this.#table.serial(() => this.onList(m.room, m.list)).catch((e) =>
        this.#ctx.error(e)
      );
      return true;
    }
    this.answerError(a, name);
    return false;
  }

  /** Show the answer to a room request of ours that was not taken. */
  answerError(a: ServerToClient | null, name: string): void {
    this.#ctx.print({
      kind: "error",
      code: a === null
        ? "no-answer"
        : a.t === "error"
        ? a.code
        : "unexpected-message",
      text: `#${name}: ${
        a === null
          ? "the server did not answer"
          : a.t === "error"
          ? a.message
          : `the server answered "${a.t}"`
      }`,
    });
  }
}
