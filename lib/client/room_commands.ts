/**
 * {@link RoomCommands}: the room commands a user types (README "Rooms"):
 * make a room, add or remove a member (the creator), leave, choose the
 * room plain lines go to, write to a room, list one's rooms. The lists
 * they sign go through {@link RoomLists}; the texts through
 * {@link RoomMessages}. A part of the rooms facade (rooms.ts).
 * @module
 */

import {
  makeRoomLeave,
  makeRoomList,
  ROOM_ID_BYTES,
  type RoomLeave,
} from "../proto/mod.ts";
import { randomBytes } from "../util/mod.ts";
import type { Command } from "./commands.ts";
import type { Mailbox } from "./mailbox.ts";
import { ask } from "./mail_peers.ts";
import type { ClientContext } from "./options.ts";
import type { RoomLists } from "./room_lists.ts";
import type { RoomMessages } from "./room_messages.ts";
import type { RoomTable } from "./room_table.ts";
import type { ServerConnection } from "./server_link.ts";

/** The room commands, and the room plain lines go to. */
export class RoomCommands {
  #ctx: ClientContext;
  #link: ServerConnection;
  #mail: Mailbox;
  #table: RoomTable;
  #lists: RoomLists;
  #messages: RoomMessages;
  #target: string | undefined;

  /**
   * @param o the client's context, the server link, the mailbox (our keys
   *   published), the rooms we hold, their lists and their messages
   */
  constructor(o: {
    ctx: ClientContext;
    link: ServerConnection;
    mail: Mailbox;
    table: RoomTable;
    lists: RoomLists;
    messages: RoomMessages;
  }) {
    this.#ctx = o.ctx;
    this.#link = o.link;
    this.#mail = o.mail;
    this.#table = o.table;
    this.#lists = o.lists;
    this.#messages = o.messages;
  }

  /** The room plain lines go to (`!room <name>`), if any. */
  get target(): string | undefined {
    return this.#target;
  }

  /**
   * We are no longer in the room `name`: if plain lines went to it, they
   * go to our peer again.
   * @param name the room
   */
  untarget(name: string): void {
    if (this.#target === name) this.#setTarget(undefined);
  }

  /**
   * A room command (README "Rooms").
   * @param cmd the parsed line
   */
  async command(cmd: Command): Promise<void> {
    const me = this.#ctx.o.user;
    const refuse = (code: string, text: string) =>
      this.#ctx.print({ kind: "error", code, text });
    switch (cmd.kind) {
      case "room-create": {
        if (this.#table.rooms.has(cmd.room)) {
          return refuse("room-exists", `You are already in #${cmd.room}`);
        }
        // Every member needs mailbox keys on the server, we too: a room
        // made right after our first login waits for our publish.
        await this.#mail.keys.idle();
        const list = await makeRoomList({
          roomId: randomBytes(ROOM_ID_BYTES),
          name: cmd.room,
          creator: this.#ctx.o.identity,
          creatorName: me,
          epoch: 1,
          created: this.#link.serverNow(),
          members: [me, ...cmd.members],
        });
        await this.#lists.answerList(
          await ask(this.#link, {
            t: "room-create",
            list: list.bytes.toBase64(),
          }),
          cmd.room,
        );
        return;
      }
      case "room-add":
      case "room-remove": {
        const room = this.#table.rooms.get(cmd.room);
        if (!room) return refuse("room-unknown", `You are not in #${cmd.room}`);
        if (room.list.creator !== me) {
          return refuse(
            "not-creator",
            `Only ${room.list.creator}, who made #${cmd.room}, can change its members`,
          );
        }
        const members = room.members;
        if (cmd.kind === "room-add") {
          if (members.includes(cmd.user)) {
            return refuse(
              "bad-command",
              `${cmd.user} is already in #${cmd.room}`,
            );
          }
          await this.#lists.update(room, [...members, cmd.user]);
          return;
        }
        if (cmd.user === me) {
          return refuse(
            "bad-command",
            `To leave #${cmd.room}, type !room leave ${cmd.room}`,
          );
        }
        if (!members.includes(cmd.user)) {
          return refuse("bad-command", `${cmd.user} is not in #${cmd.room}`);
        }
        await this.#lists.update(room, members.filter((m) => m !== cmd.user));
        return;
      }
      case "room-leave": {
        const room = this.#table.rooms.get(cmd.room);
        if (!room) return refuse("room-unknown", `You are not in #${cmd.room}`);
        const leave: RoomLeave = await makeRoomLeave({
          roomId: room.list.roomId,
          member: me,
          identity: this.#ctx.o.identity,
          epoch: room.epoch,
        });
        const a = await ask(this.#link, {
          t: "room-leave",
          statement: leave.bytes.toBase64(),
        });
        if (a?.t === "room-left") {
          const m = a;
          await this.#table.serial(async () => {
            await this.#lists.onLeave(m.room, m.statement);
          });
          return;
        }
        return this.#lists.answerError(a, cmd.room);
      }
      case "room-target": {
        if (cmd.room !== undefined && !this.#table.rooms.has(cmd.room)) {
          return refuse(
            "room-unknown",
            `You are not in #${cmd.room} (!rooms lists yours)`,
          );
        }
        this.#setTarget(cmd.room);
        this.#ctx.system(
          cmd.room === undefined
            ? "Lines go to your peer again"
            : `Lines you type now go to #${cmd.room}; !room alone goes back`,
        );
        return;
      }
      case "room-say":
        return this.#messages.say(cmd.room, cmd.text);
      case "rooms": {
        const a = await ask(this.#link, { t: "my-rooms" });
        const online = new Map<string, string[]>();
        if (a?.t === "rooms") {
          for (const r of a.rooms) online.set(r.name, r.online);
        }
        this.#ctx.print({
          kind: "rooms",
          rooms: this.#table.names.map((name) => {
            const room = this.#table.rooms.get(name)!;
            return {
              name,
              creator: room.list.creator,
              members: room.members,
              online: online.get(name) ?? [],
            };
          }),
        });
        return;
      }
    }
  }

  #setTarget(room: string | undefined): void {
    this.#target = room;
    this.#ctx.o.ui.setRoom?.(room ?? null);
  }
}
