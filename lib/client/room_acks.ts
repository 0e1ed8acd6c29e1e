/**
 * {@link RoomAcks}: the client's acknowledgements of its rooms
 * (PROTOCOL.md sections 10.4, 10.6): per room, the highest entry handled
 * on this link, sent as a `room-ack` a moment later (to cover more), and
 * only once the rooms whose chains moved are saved. A part of the rooms
 * facade (rooms.ts).
 * @module
 */

import type { ClientContext } from "./options.ts";
import type { RoomTable } from "./room_table.ts";
import type { ServerConnection } from "./server_link.ts";

/** An acknowledgement waits at most this long for more entries to cover. */
const ACK_DELAY_MS = 20;

/** What was handled of each room and is not yet acknowledged. */
export class RoomAcks {
  #ctx: ClientContext;
  #link: ServerConnection;
  #table: RoomTable;
  #linkEpoch: () => number;
  /** Per room, the highest seq handled on this link and not yet acknowledged. */
  #acks = new Map<string, number>();
  #ackTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param o the client's context, the server link, the rooms we hold (the
   *   changed ones saved first), and the link's generation now (an
   *   acknowledgement is for the link it was handled on)
   */
  constructor(o: {
    ctx: ClientContext;
    link: ServerConnection;
    table: RoomTable;
    linkEpoch: () => number;
  }) {
    this.#ctx = o.ctx;
    this.#link = o.link;
    this.#table = o.table;
    this.#linkEpoch = o.linkEpoch;
  }

  /** A new link: nothing handled on it yet. */
  clear(): void {
    this.#acks.clear();
  }

  /** The link dropped: what was not acknowledged is pushed again. */
  lost(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#acks.clear();
  }

  /**
   * The entry `seq` of `room` was handled: acknowledged a moment later.
   * @param room the room
   * @param seq the entry
   */
  handled(room: string, seq: number): void {
    this.#acks.set(room, Math.max(this.#acks.get(room) ?? 0, seq));
    this.#ackTimer ??= setTimeout(() => {
      this.#ackTimer = undefined;
      this.#ctx.track(this.flush());
    }, ACK_DELAY_MS);
  }

  /** Every room's state is saved as it changes: acknowledge what was handled. */
  flush(): Promise<void> {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const linkEpoch = this.#linkEpoch();
    return this.#table.serial(async () => {
      // Section 10.6: a message is acknowledged only once the chain
      // position that read it is saved.
      for (const room of this.#table.dirty) {
        if (this.#table.rooms.get(room.name) === room) {
          await this.#table.save(room);
        }
      }
      this.#table.dirty.clear();
      if (linkEpoch !== this.#linkEpoch()) return;
      for (const [room, upTo] of this.#acks) {
        this.#link.sendQuietly({ t: "room-ack", room, upTo });
      }
      this.#acks.clear();
    });
  }
}
