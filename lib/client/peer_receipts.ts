/**
 * The receiver's half of cumulative receipts in a peer session (PROTOCOL.md
 * section 6, "Receipts"): the `msg`s read since our last `ack` form a run,
 * answered by one `ack` naming the last and how many, after a quiet spell,
 * at once when the run is long, and before a gap or our CLOSE. The sender's
 * half (which messages an `ack` covers) is in `peer_unacked.ts`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReceiptRun } from "./peer_receipts.ts";
 * const sent: unknown[] = [];
 * const run = new ReceiptRun((ack) => { sent.push(ack); return Promise.resolve(); });
 * run.add("1");
 * run.add("2");
 * await run.flush();
 * assert.deepEqual(sent, [{ t: "ack", id: "2", count: 2 }]);
 * ```
 * @module
 */

import type { PeerToPeer } from "../proto/mod.ts";

/**
 * The quiet spell: a receiver sends its receipt once a tick of this long
 * passed with no further `msg` (PROTOCOL.md section 6, "Receipts").
 */
export const ACK_QUIET_MS = 2;

/**
 * Longest a receipt waits after the first `msg` it covers while messages
 * keep arriving faster than the quiet spell (PROTOCOL.md section 6,
 * "Receipts").
 */
export const ACK_MAX_DELAY_MS = 20;

/**
 * A run of this many `msg`s is acknowledged at once (PROTOCOL.md section 6,
 * "Receipts").
 */
export const ACK_RUN_MAX = 64;

/** How a {@link ReceiptRun} sets and clears its timer (a test's own clock). */
export interface TickTimer {
  set(f: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const REAL_TIMER: TickTimer = {
  set: (f, ms) => setTimeout(f, ms),
  clear: (h) => clearTimeout(h as number),
};

/** A run of `msg`s read and not yet acknowledged, with its one timer. */
export class ReceiptRun {
  #send: (ack: PeerToPeer) => Promise<void>;
  #clock: TickTimer;
  /** The run's last `msg` and its length. */
  #id = "";
  #count = 0;
  /**
   * The run's length at the last tick, and the ticks so far: counted, not
   * timed, so that a `msg` costs no clock read (issue 15).
   */
  #seen = 0;
  #ticks = 0;
  #timer: unknown;

  /**
   * @param send sends an `ack` on the session's channel; never rejects
   * @param clock the timer (default: `setTimeout`)
   */
  constructor(
    send: (ack: PeerToPeer) => Promise<void>,
    clock: TickTimer = REAL_TIMER,
  ) {
    this.#send = send;
    this.#clock = clock;
  }

  /** Is a run waiting for its receipt (the timer set)? */
  get pending(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * A `msg` was read: it joins the run, whose receipt goes at once at its
   * {@link ACK_RUN_MAX}th message, else when the timer finds a quiet spell.
   * @param id the `msg`'s id
   */
  add(id: string): void {
    this.#id = id;
    if (++this.#count >= ACK_RUN_MAX) {
      void this.flush();
    } else if (this.#timer === undefined) {
      this.#seen = this.#count;
      this.#ticks = 0;
      this.#timer = this.#clock.set(this.#onTick, ACK_QUIET_MS);
    }
  }

  /**
   * A tick: the receipt goes when no `msg` came during it (the quiet spell),
   * or once the run is {@link ACK_MAX_DELAY_MS} old; else another tick.
   */
  #onTick = (): void => {
    this.#timer = undefined;
    if (this.#count === 0) return;
    if (
      this.#count === this.#seen ||
      ++this.#ticks * ACK_QUIET_MS >= ACK_MAX_DELAY_MS
    ) {
      void this.flush();
    } else {
      this.#seen = this.#count;
      this.#timer = this.#clock.set(this.#onTick, ACK_QUIET_MS);
    }
  };

  /**
   * Send the run's receipt now, if there is a run; the next `msg` starts a
   * new one.
   * @returns when the `ack` was handed to the channel
   */
  flush(): Promise<void> {
    if (this.#timer !== undefined) this.#clock.clear(this.#timer);
    this.#timer = undefined;
    const count = this.#count, id = this.#id;
    if (count === 0) return Promise.resolve();
    this.#count = 0;
    this.#id = "";
    // `count` is left out when it is 1: the `ack` of earlier versions.
    return this.#send(count === 1 ? { t: "ack", id } : { t: "ack", id, count });
  }

  /** Forget the run without a receipt (the channel is gone), and its timer. */
  drop(): void {
    if (this.#timer !== undefined) this.#clock.clear(this.#timer);
    this.#timer = undefined;
    this.#count = 0;
    this.#id = "";
  }
}
