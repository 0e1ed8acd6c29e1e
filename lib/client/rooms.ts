/**
 * Rooms on the client's side (PROTOCOL.md section 10): the facade the
 * client holds. It lets in only what verifies (a list signed by the
 * room's creator under its pinned key, a leave signed by the member), makes
 * and hands out our sender chain at each epoch (one sealed mail per other
 * member, section 10.2), reads the rooms' streams through each room's
 * {@link RoomReader} (section 10.3's checks), seals and sends our room
 * messages, and acknowledges what it handled once the chain positions that
 * read it are saved (section 10.6).
 *
 * Everything that changes a room runs in one queue, in arrival order: the
 * server's pushes, the room keys the mailbox hands over, and the commands.
 *
 * A facade over parts with one job each: the rooms held and their queue
 * (room_table.ts), the lists and leaves (room_lists.ts), the keys waiting
 * for their room's list (room_pending.ts), the hand-out of our chain
 * (room_handout.ts), the messages in and out (room_messages.ts), the
 * commands (room_commands.ts) and the acknowledgements (room_acks.ts).
 * This file routes the server's messages to them, in the queue, and runs
 * each login's start.
 *
 * @example
 * ```ts ignore
 * const rooms = new Rooms(ctx, link, mailbox, vault);
 * rooms.onWelcome();                       // after every login
 * await rooms.command({ kind: "room-create", room: "team", members: ["B"] });
 * await rooms.say("team", "hello");        // #team hello
 * ```
 * @module
 */

import type {
  ClientToServer,
  RoomVault,
  ServerToClient,
} from "../proto/mod.ts";
import { isImError } from "../util/mod.ts";
import type { Command } from "./commands.ts";
import type { Mailbox } from "./mailbox.ts";
import { ask } from "./mail_peers.ts";
import type { ClientContext } from "./options.ts";
import { RoomAcks } from "./room_acks.ts";
import { RoomCommands } from "./room_commands.ts";
import { KeyHandOut } from "./room_handout.ts";
import { RoomLists } from "./room_lists.ts";
import { dropQueued, RoomMessages } from "./room_messages.ts";
import { PendingKeys } from "./room_pending.ts";
import { RoomTable } from "./room_table.ts";
import type { PendingRequest, ServerConnection } from "./server_link.ts";

/** Entries of one room that may await our `room-ack` (the server allows 1,024). */
export const ROOM_WINDOW = 256;

/** Requests whose answers the rooms part awaits itself. */
const ROOM_REQUESTS: ReadonlySet<ClientToServer["t"]> = new Set([
  "room-create",
  "room-update",
  "room-leave",
  "member-keys",
  "room-keys",
  "room-send",
  "my-rooms",
]);

type RoomPush = Extract<
  ServerToClient,
  { t: "room" | "room-left" | "room-msg" }
>;

/** The client's rooms. */
export class Rooms {
  #ctx: ClientContext;
  #link: ServerConnection;
  #mail: Mailbox;
  #vault: RoomVault;
  #table: RoomTable;
  #pending: PendingKeys;
  #handOut: KeyHandOut;
  #messages: RoomMessages;
  #lists: RoomLists;
  #commands: RoomCommands;
  #acks: RoomAcks;
  #loaded: Promise<void> | undefined;
  #linkEpoch = 0;
  #stopped = false;
  #synced = Promise.withResolvers<void>();
  #welcomed: Promise<void> = Promise.resolve();

  constructor(
    ctx: ClientContext,
    link: ServerConnection,
    mail: Mailbox,
    vault: RoomVault,
  ) {
    this.#ctx = ctx;
    this.#link = link;
    this.#mail = mail;
    this.#vault = vault;
    const table = new RoomTable(vault);
    this.#table = table;
    this.#pending = new PendingKeys(ctx, table, vault);
    this.#handOut = new KeyHandOut({
      ctx,
      link,
      mail,
      table,
      pump: (room) => this.#messages.pump(room),
    });
    this.#messages = new RoomMessages({
      ctx,
      link,
      table,
      handOut: this.#handOut,
      stopped: () => this.#stopped,
    });
    this.#lists = new RoomLists({
      ctx,
      link,
      mail,
      table,
      pending: this.#pending,
      handOut: this.#handOut,
      onForgotten: (name) => this.#commands.untarget(name),
    });
    this.#commands = new RoomCommands({
      ctx,
      link,
      mail,
      table,
      lists: this.#lists,
      messages: this.#messages,
    });
    this.#acks = new RoomAcks({
      ctx,
      link,
      table,
      linkEpoch: () => this.#linkEpoch,
    });
  }

  /** The rooms we are in, by name (Tab completion, `!rooms`). */
  get names(): string[] {
    return this.#table.names;
  }

  /** The room plain lines go to (`!room <name>`), if any. */
  get target(): string | undefined {
    return this.#commands.target;
  }

  /** @returns once the rooms' backlog at this login was handled */
  synced(): Promise<void> {
    return this.#synced.promise;
  }

  #load(): Promise<void> {
    this.#loaded ??= this.#table.serial(async () => {
      const saved = await this.#vault.load();
      await this.#table.restore(saved.rooms, (e) => this.#ctx.error(e));
      this.#pending.restore(saved.pendingKeys);
    });
    return this.#loaded;
  }

  /**
   * After each `welcome`: once the mailbox's backlog was handled (the room
   * keys it held are ours then), the rooms we are in, then their streams.
   */
  onWelcome(): void {
    const epoch = ++this.#linkEpoch;
    this.#acks.clear();
    const work = (async () => {
      await this.#load();
      await this.#mail.synced();
      // The keys that came in the backlog are acknowledged before the
      // rooms stream: the server's gate (section 10.4) then lets the
      // messages they open through at once, not after the next `mail-ack`.
      await this.#mail.acknowledged();
      if (epoch !== this.#linkEpoch || this.#stopped) return;
      const a = await ask(this.#link, { t: "my-rooms" });
      if (a?.t === "rooms") {
        for (const r of a.rooms) {
          try {
            await this.#table.serial(() => this.#lists.onList(r.name, r.list));
            for (const l of r.leaves) {
              await this.#table.serial(() => this.#lists.onLeave(r.name, l));
            }
            const room = this.#table.rooms.get(r.name);
            if (room) this.#lists.pruneLeavers(room);
          } catch (e) {
            this.#refused(r.name, "membership change", e);
          }
        }
      }
      if (epoch !== this.#linkEpoch || this.#stopped) return;
      this.#link.sendQuietly({ t: "room-stream", window: ROOM_WINDOW });
      // A hand-out a dropped link or a crash cut short goes again.
      for (const room of this.#table.rooms.values()) {
        if (room.own && !room.own.keyed) {
          this.#ctx.track(this.#handOut.run(room, room.own.epoch));
        }
      }
    })();
    this.#welcomed = work.catch(() => {});
    this.#ctx.track(work);
  }

  /**
   * @returns once the requests a login sends on its own (`my-rooms`,
   *   `room-stream`) are sent, or given up: {@link ChatClient.settled}
   */
  welcomed(): Promise<void> {
    return this.#welcomed;
  }

  /** The link dropped: what was not acknowledged is pushed again. */
  lost(): void {
    this.#synced.resolve(); // no backlog comes on this link any more
    this.#linkEpoch++;
    this.#acks.lost();
  }

  /** Quit: acknowledge what was handled; nothing more is handled. */
  async stop(): Promise<void> {
    await this.#table.idle();
    await this.#acks.flush();
    this.#stopped = true;
    this.#synced.resolve();
    for (const room of this.#table.rooms.values()) {
      dropQueued(
        this.#ctx,
        room,
        "you logged out before your key was handed out",
      );
    }
  }

  /**
   * @param answers the request a server message answers, if any
   * @returns whether a rooms part awaits that answer
   */
  awaits(answers: PendingRequest | undefined): boolean {
    return answers !== undefined && ROOM_REQUESTS.has(answers.message.t);
  }

  /**
   * A server message of the rooms that answers nothing of ours.
   * @returns whether it was one
   */
  onServerMessage(m: ServerToClient): boolean {
    switch (m.t) {
      case "room":
      case "room-left":
      case "room-msg":
        this.#push(m);
        return true;
      case "room-synced":
        this.#ctx.track(this.#table.serial(() => {
          this.#synced.resolve();
          return Promise.resolve();
        }));
        return true;
      case "room-receipt":
        this.#ctx.print({
          kind: "receipt",
          id: String(m.seq),
          status: "delivered",
          peer: m.room,
          via: "room",
          delivered: m.delivered,
          members: m.members,
        });
        return true;
      case "room-bundles":
        // The second and later answers to one `member-keys` (section 10.4:
        // as many as fit a record each).
        this.#handOut.onBundles(m.room, m.bundles);
        return true;
      case "rooms":
      case "room-keyed":
        return true; // a late answer: its request gave up
      default:
        return false;
    }
  }

  #push(m: RoomPush): void {
    const epoch = this.#linkEpoch;
    this.#ctx.track(this.#table.serial(async () => {
      await this.#load();
      if (epoch !== this.#linkEpoch || this.#stopped) return;
      const held = this.#table.rooms.get(m.room);
      if (held && m.seq <= held.handled) {
        // Pushed again after a reconnect: handled before, its keys used up.
        this.#acks.handled(m.room, m.seq);
        return;
      }
      try {
        if (m.t === "room") await this.#lists.onList(m.room, m.list);
        else if (m.t === "room-left") {
          await this.#lists.onLeave(m.room, m.statement);
        } else await this.#messages.onMessage(m);
      } catch (e) {
        // Refused: shown, and acknowledged so the rest of the room flows.
        this.#refused(
          m.room,
          m.t === "room-msg"
            ? `message from ${m.from} (unverified)`
            : "membership change",
          e,
        );
      }
      const room = this.#table.rooms.get(m.room);
      if (room && m.seq > room.handled) {
        room.handled = m.seq;
        this.#table.dirty.add(room);
      }
      if (epoch === this.#linkEpoch) this.#acks.handled(m.room, m.seq);
    }));
  }

  #refused(room: string, what: string, e: unknown): void {
    this.#ctx.print({
      kind: "error",
      code: isImError(e) ? e.code : "internal",
      text: `[#${room}] ${what} refused: ${(e as Error).message}`,
    });
  }

  /**
   * A room key a member sealed to us (a mail of plaintext type 2): kept
   * with its room once saved, so the mail may be acknowledged
   * ({@link PendingKeys.receive}).
   * @param from the mail's verified sender
   * @param bytes the `ROOM_KEY`
   */
  onRoomKey(from: string, bytes: Uint8Array): Promise<void> {
    return this.#table.serial(async () => {
      await this.#load();
      await this.#pending.receive(from, bytes);
    });
  }

  /** `#room text`: queued, then sealed and sent once our key is out. */
  say(name: string, text: string): Promise<void> {
    return this.#messages.say(name, text);
  }

  /**
   * A room command (README "Rooms").
   * @param cmd the parsed line
   */
  async command(cmd: Command): Promise<void> {
    await this.#load();
    await this.#commands.command(cmd);
  }
}
