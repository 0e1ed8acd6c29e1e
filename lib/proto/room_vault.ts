/**
 * What a room member keeps between runs (PROTOCOL.md section 10.6), as an
 * interface: the keystore keeps it in the key directory
 * (`users/<me>/rooms/`, `keystore/room_vault.ts`), the client in memory
 * when it has none (`client/room_memory.ts`). Each room's state (its
 * verified list and leaves, the chains of the other members as far as
 * they were read, our own chain and its Ed25519 private key) is one JSON
 * document, written whole: a write is durable when it resolves, so a
 * room message is acknowledged only after the chain position that read it
 * is on disk, and our own chain's position is on disk before a message
 * sealed with it leaves.
 * @module
 */

/** A room member's saved state: JSON values only. */
export type RoomVaultState = Readonly<Record<string, unknown>>;

/** The rooms of one user, at rest. */
export interface RoomVault {
  /**
   * Everything saved: each room's state by name (a room we left or were
   * removed from keeps a state too: its `room_id` and the epoch then, the
   * floor of section 10.1), and the room keys that came before their
   * room's list.
   */
  load(): Promise<{
    rooms: Map<string, RoomVaultState>;
    pendingKeys: RoomVaultState[];
  }>;
  /** Replace a room's state; durable when it resolves. */
  saveRoom(name: string, state: RoomVaultState): Promise<void>;
  /** Replace the room keys waiting for their room's list; durable when it resolves. */
  savePendingKeys(keys: readonly RoomVaultState[]): Promise<void>;
}
