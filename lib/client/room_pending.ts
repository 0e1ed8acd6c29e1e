/**
 * {@link PendingKeys}: the room keys members sealed to us (PROTOCOL.md
 * sections 10.2, 10.6): one for a room and epoch we hold goes into the
 * room's reader; one that came before its room's list (or a newer one) is
 * kept, and saved, until that list comes. A part of the rooms facade
 * (rooms.ts); it runs in the rooms' queue.
 * @module
 */

import {
  decodeRoomKey,
  type RoomKey,
  type RoomVault,
  type RoomVaultState,
} from "../proto/mod.ts";
import { ProtocolError } from "../util/mod.ts";
import type { ClientContext } from "./options.ts";
import type { Room } from "./room_state.ts";
import { equal, type RoomTable } from "./room_table.ts";

/** Room keys kept for rooms whose list has not come yet. */
const MAX_PENDING_KEYS = 1000;
/** Of them, at most this many from one sender. */
const MAX_PENDING_KEYS_PER_SENDER = 100;

/** A room key that came before its room's list (section 10.6). */
interface PendingKey {
  from: string;
  key: string;
}

/** The room keys waiting for their room's list, and the taking in of keys. */
export class PendingKeys {
  #ctx: ClientContext;
  #table: RoomTable;
  #vault: RoomVault;
  #pending: PendingKey[] = [];

  /**
   * @param ctx the client's context: our name, the error log
   * @param table the rooms we hold
   * @param vault where the waiting keys are saved
   */
  constructor(ctx: ClientContext, table: RoomTable, vault: RoomVault) {
    this.#ctx = ctx;
    this.#table = table;
    this.#vault = vault;
  }

  /**
   * Take back the keys saved waiting.
   * @param saved the vault's `pendingKeys`
   */
  restore(saved: readonly RoomVaultState[]): void {
    this.#pending = saved.flatMap((k) =>
      typeof k.from === "string" && typeof k.key === "string"
        ? [{ from: k.from, key: k.key }]
        : []
    );
  }

  /**
   * A room key a member sealed to us (a mail of plaintext type 2): kept
   * with its room once saved, so the mail may be acknowledged.
   * @param from the mail's verified sender
   * @param bytes the `ROOM_KEY`
   */
  async receive(from: string, bytes: Uint8Array): Promise<void> {
    const key = decodeRoomKey(bytes);
    const room = this.#table.rooms.get(key.name);
    if (
      !room || !equal(room.list.roomId, key.roomId) || key.epoch > room.epoch
    ) {
      this.#pending.push({ from, key: bytes.toBase64() });
      // Junk from one sender cannot push out another's real keys.
      const mine = this.#pending.filter((p) => p.from === from);
      if (mine.length > MAX_PENDING_KEYS_PER_SENDER) {
        this.#pending.splice(this.#pending.indexOf(mine[0]!), 1);
      }
      if (this.#pending.length > MAX_PENDING_KEYS) this.#pending.shift();
      await this.#vault.savePendingKeys(
        this.#pending as unknown as RoomVaultState[],
      );
      return;
    }
    if (key.epoch < room.epoch) return; // an epoch we left behind
    this.#addChain(room, from, key);
    await this.#table.save(room);
  }

  #addChain(room: Room, from: string, key: RoomKey): void {
    if (from === this.#ctx.o.user) return;
    if (!room.members.includes(from)) {
      throw new ProtocolError(
        "not-a-member",
        `a room key for #${room.name} from ${from}, who is not a member`,
      );
    }
    room.reader.addChain(from, key);
  }

  /** The keys that waited for this room's list, now that it came. */
  async adopt(room: Room): Promise<void> {
    const keep: PendingKey[] = [];
    let changed = false;
    for (const p of this.#pending) {
      let key: RoomKey;
      try {
        key = decodeRoomKey(Uint8Array.fromBase64(p.key));
      } catch {
        changed = true;
        continue;
      }
      if (key.name !== room.name || !equal(key.roomId, room.list.roomId)) {
        keep.push(p);
        continue;
      }
      changed = true;
      if (key.epoch > room.epoch) keep.push(p);
      else if (key.epoch === room.epoch) {
        try {
          this.#addChain(room, p.from, key);
        } catch (e) {
          this.#ctx.error(e);
        }
      }
    }
    if (!changed) return;
    this.#pending = keep;
    await this.#vault.savePendingKeys(
      this.#pending as unknown as RoomVaultState[],
    );
  }
}
