/**
 * {@link RoomLocks}: the server's per-room lock (PROTOCOL.md 10.4): the
 * room-changing requests of one room (`room-create`, `room-update`,
 * `room-leave`, `room-keys`) run one at a time, each on the row the one
 * before it wrote; and {@link later}, for an answer written once the lock
 * is let go. A part of the rooms facade (rooms.ts).
 *
 * The lock is this process's: it cannot order two nodes of a cluster. There
 * the store is the authority (PROTOCOL.md 11.6): a change names the row it
 * was planned on (`RoomChange.base`), the store refuses it `room-conflict`
 * when that row moved, and the change is planned again on the room as it is
 * (room_membership.ts). The lock stays as this node's fast path: its own
 * changes of a room seldom lose that race.
 * @module
 */

/** One chain of room-changing requests per room name. */
export class RoomLocks {
  /**
   * Per room name, the tail of its chain of room-changing requests
   * (`room-create`, `room-update`, `room-leave`, `room-keys`): each runs
   * alone; an entry is removed when its chain is idle.
   */
  #locks = new Map<string, Promise<void>>();

  /**
   * Run `fn` alone among the room-changing requests of the room `name`
   * (PROTOCOL.md 10.4): `room-create`, `room-update`, `room-leave` and
   * `room-keys` of one room wait for each other, so each reads the row the
   * one before it wrote. The chain's entry goes once nothing waits on it.
   * @param name the room's name
   * @param fn the work, which re-reads the row it changes
   * @returns what `fn` returns
   */
  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#locks.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = before.then(() => mine);
    this.#locks.set(name, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    }
  }
}

/**
 * An answer being written, to await once a room's lock is let go (a bare
 * promise returned from an async function would be awaited inside it).
 */
export interface Later {
  readonly done: Promise<void>;
}

/** Wrap `p` to await later; a failure before then is not unhandled. */
export function later(p: Promise<void>): Later {
  p.catch(() => {});
  return { done: p };
}
