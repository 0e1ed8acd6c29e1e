/**
 * Back-pressure of a peer session's sending (issue 15): the bytes of our
 * chat messages queued for writing, counted by an upper bound, and the
 * senders waiting for them to drop below {@link MAX_SEND_AHEAD}. A peer that
 * does not read holds at most that much of ours.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_SEND_AHEAD, SendWindow } from "./peer_send_window.ts";
 * const w = new SendWindow(() => false);
 * w.add(MAX_SEND_AHEAD);
 * const room = w.room();
 * assert.ok(room !== undefined);
 * w.done(MAX_SEND_AHEAD);
 * await room;
 * assert.equal(w.room(), undefined);
 * ```
 * @module
 */

/**
 * Most bytes of our chat messages (counted as their upper bound, 6 per
 * UTF-16 unit and 32 more) queued for writing before the sender waits
 * (`PeerSession.room`): a peer that does not read holds at most this
 * (plus one message) of ours, well below the transport's own limit.
 */
export const MAX_SEND_AHEAD = 256 * 1024;

/** The bytes queued and not written yet, and who waits for room. */
export class SendWindow {
  #ahead = 0;
  #waiters: Array<() => void> = [];
  #closed: () => boolean;

  /**
   * @param closed whether the session's writes ended: then nobody waits
   */
  constructor(closed: () => boolean) {
    this.#closed = closed;
  }

  /** Bytes (an upper bound) queued, their write not done. */
  get bytes(): number {
    return this.#ahead;
  }

  /** A message of `weight` bytes was queued. */
  add(weight: number): void {
    this.#ahead += weight;
  }

  /**
   * Undefined while fewer than {@link MAX_SEND_AHEAD} bytes wait to be
   * written, else a promise that resolves once they drop below it (or the
   * session's writes end).
   */
  room(): Promise<void> | undefined {
    if (this.#ahead < MAX_SEND_AHEAD || this.#closed()) return undefined;
    const w = Promise.withResolvers<void>();
    this.#waiters.push(w.resolve);
    return w.promise;
  }

  /**
   * A write of `weight` bytes is done (or failed); 0 after the session's
   * writes ended, to let the waiting senders go on.
   */
  done(weight: number): void {
    this.#ahead -= weight;
    if (
      (this.#ahead < MAX_SEND_AHEAD || this.#closed()) &&
      this.#waiters.length > 0
    ) {
      const ws = this.#waiters;
      this.#waiters = [];
      for (const w of ws) w();
    }
  }
}
