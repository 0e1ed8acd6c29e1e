/**
 * {@link RoomTable}: the rooms the client holds (PROTOCOL.md section 10.6):
 * each {@link Room} by name, the floor kept of each room we left or were
 * removed from (10.1), the rooms changed since they were saved, their
 * saving in the vault, and the one queue everything that changes a room
 * runs in, in arrival order. Shared by the parts of the rooms facade
 * (rooms.ts), with the byte helpers they share.
 * @module
 */

import type { RoomVault, RoomVaultState } from "../proto/mod.ts";
import { ProtocolError } from "../util/mod.ts";
import { Room } from "./room_state.ts";

/** The rooms we hold, what is left of those we left, and their queue. */
export class RoomTable {
  #vault: RoomVault;
  #queue: Promise<unknown> = Promise.resolve();
  /** The rooms we are in, by name. */
  readonly rooms = new Map<string, Room>();
  /** Rooms whose chains moved since they were saved: saved before the next `room-ack`. */
  readonly dirty = new Set<Room>();
  /**
   * Rooms we were removed from or left, by name: their `room_id` and the
   * epoch then. An older list of the same room is a rollback (10.1).
   */
  readonly gone = new Map<string, { roomId: Uint8Array; epoch: number }>();

  /** @param vault where each room's state is saved */
  constructor(vault: RoomVault) {
    this.#vault = vault;
  }

  /** The rooms we are in, by name (Tab completion, `!rooms`). */
  get names(): string[] {
    return [...this.rooms.keys()].sort();
  }

  /**
   * Run `f` after everything queued before it, failed or not.
   * @param f the work
   * @returns what `f` returns
   */
  serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f, f);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** @returns once everything queued so far has run */
  idle(): Promise<unknown> {
    return this.#queue;
  }

  /**
   * Take back the rooms saved in the vault, and the floors of those gone.
   * @param saved the vault's rooms, by name
   * @param onError a room whose state does not read (it is left out)
   */
  async restore(
    saved: Iterable<[string, RoomVaultState]>,
    onError: (e: unknown) => void,
  ): Promise<void> {
    for (const [name, state] of saved) {
      const gone = state.gone as { roomId?: unknown; epoch?: unknown } | null;
      if (
        typeof gone === "object" && gone !== null &&
        typeof gone.roomId === "string" && typeof gone.epoch === "number"
      ) {
        try {
          this.gone.set(name, {
            roomId: Uint8Array.fromBase64(gone.roomId),
            epoch: gone.epoch,
          });
        } catch { /* not base64: no floor kept */ }
        continue;
      }
      try {
        this.rooms.set(name, await Room.fromJSON(state));
      } catch (e) {
        onError(e);
      }
    }
  }

  /**
   * Save the room's state (its chains' positions with it).
   * @param room the room
   */
  async save(room: Room): Promise<void> {
    await this.#vault.saveRoom(room.name, room.toJSON());
  }

  /**
   * Keep, and save, the floor of a room we are no longer in (10.1): its
   * `room_id` and the epoch then, in place of its state.
   * @param room the room
   * @param epoch the epoch we left it at
   */
  async keepFloor(room: Room, epoch: number): Promise<void> {
    this.gone.set(room.name, { roomId: room.list.roomId, epoch });
    await this.#vault.saveRoom(room.name, {
      v: 1,
      gone: { roomId: room.list.roomId.toBase64(), epoch },
    });
  }
}

/**
 * A base64 field of a push, decoded.
 * @throws {ProtocolError} `room-malformed` when it is not base64
 */
export function fromB64(s: string, what: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(s);
  } catch {
    throw new ProtocolError("room-malformed", `the ${what} is not base64`);
  }
}

/** Are `a` and `b` the same bytes (room ids, statements)? */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
