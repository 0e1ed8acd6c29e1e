/**
 * {@link MemoryRoomVault}: the rooms of a client without a key directory
 * (tests, the demo), for the client's life (PROTOCOL.md 10.6). Each state
 * is copied through JSON, as the file vault stores it, so a test that
 * reopens a client with the same vault sees what a restart would.
 * @module
 */

import type { RoomVault, RoomVaultState } from "../proto/mod.ts";

const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v));

/** Rooms in memory. */
export class MemoryRoomVault implements RoomVault {
  #rooms = new Map<string, RoomVaultState>();
  #pending: RoomVaultState[] = [];

  load(): ReturnType<RoomVault["load"]> {
    return Promise.resolve({
      rooms: new Map([...this.#rooms].map(([k, v]) => [k, copy(v)])),
      pendingKeys: copy(this.#pending),
    });
  }

  saveRoom(name: string, state: RoomVaultState): Promise<void> {
    this.#rooms.set(name, copy(state));
    return Promise.resolve();
  }

  savePendingKeys(keys: readonly RoomVaultState[]): Promise<void> {
    this.#pending = copy([...keys]);
    return Promise.resolve();
  }
}
