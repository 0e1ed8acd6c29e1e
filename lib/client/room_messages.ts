/**
 * {@link RoomMessages}: room messages on the client's side (PROTOCOL.md
 * section 10.3): a pushed message opened through its room's
 * `RoomReader` (section 10.3's checks) and shown; ours queued per
 * room, then sealed under our chain and sent in order once our key is out,
 * the chain's new position saved before each leaves (section 10.6). A part
 * of the rooms facade (rooms.ts).
 * @module
 */

import {
  MAX_ROOM_TEXT_BYTES,
  sealRoomMessage,
  type ServerToClient,
} from "../proto/mod.ts";
import { isImError, ProtocolError, utf8 } from "../util/mod.ts";
import { ask } from "./mail_peers.ts";
import type { ClientContext } from "./options.ts";
import type { KeyHandOut } from "./room_handout.ts";
import type { Room } from "./room_state.ts";
import { fromB64, type RoomTable } from "./room_table.ts";
import type { ServerConnection } from "./server_link.ts";

/** Messages in, and ours out, of the rooms we hold. */
export class RoomMessages {
  #ctx: ClientContext;
  #link: ServerConnection;
  #table: RoomTable;
  #handOut: KeyHandOut;
  #stopped: () => boolean;
  #pumping = new Set<string>();

  /**
   * @param o the client's context, the server link, the rooms we hold,
   *   the hand-out of our key (tried again when a text waits for it), and
   *   whether we quit
   */
  constructor(o: {
    ctx: ClientContext;
    link: ServerConnection;
    table: RoomTable;
    handOut: KeyHandOut;
    stopped: () => boolean;
  }) {
    this.#ctx = o.ctx;
    this.#link = o.link;
    this.#table = o.table;
    this.#handOut = o.handOut;
    this.#stopped = o.stopped;
  }

  /**
   * A `room-msg` pushed: opened with the room's reader and shown.
   * @param m the push
   * @throws {ProtocolError} the first of section 10.3's checks that fails
   */
  async onMessage(
    m: Extract<ServerToClient, { t: "room-msg" }>,
  ): Promise<void> {
    const room = this.#table.rooms.get(m.room);
    if (!room) {
      throw new ProtocolError("room-unknown", `we hold no room #${m.room}`);
    }
    if (m.from === this.#ctx.o.user) return; // our own, as stored
    const opened = await room.reader.open(fromB64(m.msg, "msg"), {
      now: this.#link.serverNow(),
      isMember: (s, e) => room.isMember(s, e),
    });
    if (opened.header.sender !== m.from) {
      throw new ProtocolError(
        "room-tampered",
        `the server says it is from ${m.from}, the message names ${opened.header.sender}`,
      );
    }
    this.#table.dirty.add(room);
    this.#ctx.print({
      kind: "message",
      direction: "in",
      from: m.from,
      to: room.name,
      text: opened.text,
      id: String(m.seq),
      room: room.name,
    });
  }

  /** `#room text`: queued, then sealed and sent once our key is out. */
  say(name: string, text: string): Promise<void> {
    const room = this.#table.rooms.get(name);
    if (!room) {
      this.#ctx.print({
        kind: "error",
        code: "room-unknown",
        text: `You are not in a room #${name} (!rooms lists yours)`,
      });
      return Promise.resolve();
    }
    const size = utf8(text).length;
    if (size > MAX_ROOM_TEXT_BYTES) {
      this.#ctx.print({
        kind: "error",
        code: "message-too-large",
        text:
          `[#${name}] not sent: ${size} bytes of text; the limit is ${MAX_ROOM_TEXT_BYTES}`,
      });
      return Promise.resolve();
    }
    const sent = Promise.withResolvers<void>();
    room.outbox.push({ text, done: sent.resolve });
    // Our key not out yet, and no hand-out under way (one failed): try again.
    if (room.own && !room.own.keyed) {
      this.#ctx.track(this.#handOut.run(room, room.own.epoch));
    }
    this.pump(room);
    return sent.promise;
  }

  /** Send the room's queued texts in order, while our chain is keyed. */
  pump(room: Room): void {
    if (this.#pumping.has(room.name)) return;
    this.#pumping.add(room.name);
    this.#ctx.track((async () => {
      try {
        while (room.outbox.length > 0 && room.own?.keyed && !this.#stopped()) {
          const next = room.outbox[0]!;
          let ok: "sent" | "retry";
          try {
            ok = await this.#sendOne(room, next.text);
          } catch (e) {
            // Our own failure (the disk would not take the chain's new
            // position): this text is not sent; the next ones may be.
            this.#ctx.print({
              kind: "error",
              code: isImError(e) ? e.code : "internal",
              text: `[#${room.name}] not sent: ${(e as Error).message}`,
            });
            ok = "sent";
          }
          // A new epoch: sent under its chain, now if it is handed out
          // already, else when its hand-out ends.
          if (ok === "retry") continue;
          if (room.outbox[0] === next) room.outbox.shift();
          next.done();
        }
      } finally {
        this.#pumping.delete(room.name);
      }
    })());
  }

  async #sendOne(room: Room, text: string): Promise<"sent" | "retry"> {
    const own = room.own!;
    // Our chain moves on disk before the message leaves: a crash never
    // reuses a message key (section 10.6).
    const { index, messageKey } = await this.#table.serial(async () => {
      const next = own.chain.next();
      await this.#table.save(room);
      return next;
    });
    const msg = await sealRoomMessage({
      roomId: room.list.roomId,
      name: room.name,
      sender: this.#ctx.o.user,
      epoch: own.epoch,
      index,
      time: this.#link.serverNow(),
      messageKey,
      signing: own.signing,
      text,
    });
    messageKey.fill(0);
    const a = await ask(this.#link, {
      t: "room-send",
      room: room.name,
      msg: msg.toBase64(),
    });
    if (a?.t === "room-receipt") {
      this.#ctx.print({
        kind: "message",
        direction: "out",
        from: this.#ctx.o.user,
        to: room.name,
        text,
        id: String(a.seq),
        room: room.name,
      });
      this.#ctx.print({
        kind: "receipt",
        id: String(a.seq),
        status: "stored",
        peer: room.name,
        via: "room",
        delivered: a.delivered,
        members: a.members,
      });
      return "sent";
    }
    if (
      a?.t === "error" && a.code === "room-stale-epoch" &&
      this.#table.rooms.get(room.name) === room
    ) {
      // The new list is on its way (or here): the text goes again under
      // its chain (section 10.3).
      if (room.own === own) own.keyed = false;
      return "retry";
    }
    this.#ctx.print({
      kind: "error",
      code: a === null
        ? "no-answer"
        : a.t === "error"
        ? a.code
        : "unexpected-message",
      text: `[#${room.name}] not sent: ${
        a === null
          ? "the server did not answer"
          : a.t === "error"
          ? a.message
          : `the server answered "${a.t}"`
      }`,
    });
    return "sent";
  }
}

/**
 * The texts waiting for our key to go out are not sent: say so.
 * @param ctx the client's context (what is printed)
 * @param room the room
 * @param why the reason shown
 */
export function dropQueued(
  ctx: ClientContext,
  room: Room,
  why: string,
): void {
  for (const q of room.outbox.splice(0)) {
    ctx.print({
      kind: "error",
      code: "not-sent",
      text: `[#${room.name}] not sent (${why}): ${q.text.slice(0, 60)}`,
    });
    q.done();
  }
}
