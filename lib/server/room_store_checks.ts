/**
 * What every {@link RoomStore} checks alike for a cluster's sake
 * (PROTOCOL.md 10.4, 11.6): a change planned on a row that is no longer the
 * stored one (`base`) is `room-conflict`; a `keys` entry of another epoch
 * is `room-stale-epoch`; and {@link KeyedPairs}, the key mails stored per
 * room, epoch, sender and member, as one process's stores keep them (in
 * memory; the cluster's store keeps them in the room's sealed state).
 * @module
 */

import { ProtocolError } from "../util/mod.ts";
import type { RoomChange, RoomRow } from "./seams.ts";

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Is the stored row still the one `change` was planned on?
 * @param stored the room's row as stored now
 * @param change the change, with its `base` if any
 * @throws {ProtocolError} `room-conflict` when it is not
 */
export function checkBase(
  stored: Pick<RoomRow, "name" | "roomId" | "epoch"> & { leaves: number },
  change: RoomChange,
): void {
  const b = change.base;
  if (!b) return;
  if (
    sameBytes(b.roomId, stored.roomId) && b.epoch === stored.epoch &&
    b.leaves.length === stored.leaves
  ) return;
  throw new ProtocolError(
    "room-conflict",
    `Room "${stored.name}" changed meanwhile (epoch ${stored.epoch}, ${stored.leaves} leaves; the change was planned at epoch ${b.epoch}, ${b.leaves.length} leaves): a concurrent change won`,
  );
}

/**
 * The refusal of a `keys` entry of another epoch than the room's.
 * @param name the room
 * @param epoch the room's epoch
 * @param want the entry's
 */
export function staleKeys(
  name: string,
  epoch: number,
  want: number,
): ProtocolError {
  return new ProtocolError(
    "room-stale-epoch",
    `Room ${name} is at epoch ${epoch}, not ${want}: take its new member list and try again`,
  );
}

/** Per room, the key mails stored at one epoch: sender to members. */
export class KeyedPairs {
  #rooms = new Map<string, { epoch: number; sent: Map<string, Set<string>> }>();

  /**
   * @param name the room
   * @param epoch the epoch asked about
   * @param sender whose key mails
   * @returns the members whose mail from `sender` at `epoch` is stored
   */
  get(name: string, epoch: number, sender: string): string[] {
    const r = this.#rooms.get(name);
    if (!r || r.epoch !== epoch) return [];
    return [...(r.sent.get(sender) ?? [])].sort();
  }

  /**
   * Remember that `sender`'s key mails to `recipients` at `epoch` are
   * stored (another epoch's are forgotten).
   */
  add(
    name: string,
    epoch: number,
    sender: string,
    recipients: readonly string[],
  ): void {
    let r = this.#rooms.get(name);
    if (!r || r.epoch !== epoch) {
      r = { epoch, sent: new Map() };
      this.#rooms.set(name, r);
    }
    const mine = r.sent.get(sender) ?? new Set();
    for (const u of recipients) mine.add(u);
    r.sent.set(sender, mine);
  }

  /** The room was made, deleted or moved to another epoch: forget its pairs. */
  forget(name: string): void {
    this.#rooms.delete(name);
  }
}
