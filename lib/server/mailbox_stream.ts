/**
 * {@link MailStream}: one connection's stream of its user's mailbox log
 * (PROTOCOL.md 9.8), from `mailbox` to the end of the connection. It reads
 * the log in pages and pushes records in `seq` order under flow control: at
 * most `window` records and {@link MAX_UNACKED_BYTES} pushed and not yet
 * covered by a `mail-ack`, and writing only while fewer than
 * {@link STREAM_QUEUE_BUDGET_BYTES} wait on the connection. Once it has
 * caught up with the log it sends `synced`; then each record appended later
 * is pushed once {@link MailStream.wake} says it was committed. The stream
 * holds no record the store does not: what it pushed and was not
 * acknowledged is pushed again by the next connection's stream.
 * @module
 */

import type { ServerToClient } from "../proto/mod.ts";
import { type Logger, sleep } from "../util/mod.ts";
import { PROOF_BYTES, recordPush } from "./mail_records.ts";
import type { Store, StoredRecord } from "./seams.ts";

/** Bytes pushed and not yet acknowledged, at most (PROTOCOL.md 9.8). */
export const MAX_UNACKED_BYTES = 1024 * 1024;
/** Bytes waiting on the connection past which the stream stops writing (PROTOCOL.md 9.8). */
export const STREAM_QUEUE_BUDGET_BYTES = 256 * 1024;
/** How often a stream looks again at a queue that other messages fill. */
const DRAIN_POLL_MS = 20;
/** The largest `window` of `mailbox`. */
export const MAX_MAILBOX_WINDOW = 1024;

/** What a stream writes to: the connection's channel. */
export interface StreamChannel {
  send(msg: ServerToClient): Promise<void>;
  readonly transport: { readonly queuedBytes: number };
  /** The connection ended. */
  readonly closed: boolean;
}

/** Settings of a {@link MailStream}. */
export interface MailStreamOptions {
  /** Whose log. */
  user: string;
  store: Store;
  channel: StreamChannel;
  /** Records pushed and not acknowledged, at most: 1 to {@link MAX_MAILBOX_WINDOW}. */
  window: number;
  /** Counts records pushed and records skipped as unreadable. */
  log: Logger;
  /** Called with the number of records each push wrote. */
  onPushed?: (n: number) => void;
  /**
   * The stream stopped on its own (the store failed, or a record could not
   * be written to an open connection): what was not acknowledged stays in
   * the log, and the mailbox tells the user.
   */
  onFailed?: (why: string) => void;
}

/** A delivered record, as a `mail-ack` names it with its proof. */
export interface DeliveredRecord {
  record: StoredRecord;
  proof: Uint8Array;
}

/** The result of {@link MailStream.ack}. */
export type AckResult =
  | { ok: true; delivered: DeliveredRecord[] }
  | { ok: false; message: string };

/** One connection's stream. */
export class MailStream {
  #o: MailStreamOptions;
  /** Pushed (or skipped as unreadable) and not acknowledged, in seq order. */
  #inflight: Array<{ record: StoredRecord; bytes: number }> = [];
  #inflightBytes = 0;
  /** The highest seq pushed. */
  #cursor = 0;
  /** The highest `upTo` acknowledged. */
  #acked = 0;
  #synced = false;
  #count = 0;
  #dirty = false;
  #running: Promise<void> | undefined;
  #closed = false;
  /** The last push's send; set by the first one (`#unsent` counts them). */
  #lastSend: Promise<void> | undefined;
  /** Pushes sent and not yet written. */
  #unsent = 0;
  /**
   * Ends a wait for the queue to drain when the stream closes; made by the
   * first such wait (issue 15: an AbortController costs about 400 bytes,
   * and an idle connection's stream never waits).
   */
  #stop: AbortController | undefined;

  /** @param o the settings */
  constructor(o: MailStreamOptions) {
    this.#o = o;
  }

  /** Has the backlog been pushed (`synced` sent)? */
  get synced(): boolean {
    return this.#synced;
  }

  /** Start, or go on after an acknowledgement or a newly committed record. */
  wake(): void {
    if (this.#closed) return;
    this.#dirty = true;
    // #pump clears #running in the step its loop ends, so a wake() after
    // that starts a new pump and none is lost.
    this.#running ??= this.#pump();
  }

  /** End the stream; what is in flight stays in the log. */
  close(): void {
    this.#closed = true;
    this.#stop?.abort();
  }

  /**
   * Wait for the pushing in progress, if any, to stop.
   * @returns when it stopped
   */
  async done(): Promise<void> {
    await this.#running;
  }

  /**
   * Check a `mail-ack` and take the records it covers out of flight
   * (PROTOCOL.md 9.8): `upTo` at most the highest seq pushed and not below an
   * earlier one; each `delivered` entry a seq in the acknowledged range with
   * a proof of 32 bytes. A refused one changes nothing.
   * @param upTo the last seq handled
   * @param delivered the records shown, with their proofs (base64)
   * @returns the delivered records that are in flight, or why it was refused
   */
  ack(
    upTo: number,
    delivered: ReadonlyArray<{ seq: number; proof: string }>,
  ): AckResult {
    if (!Number.isSafeInteger(upTo) || upTo > this.#cursor) {
      return {
        ok: false,
        message:
          `Acknowledgement up to ${upTo} refused: only up to ${this.#cursor} was pushed`,
      };
    }
    if (upTo < this.#acked) {
      return {
        ok: false,
        message:
          `Acknowledgement up to ${upTo} refused: below the earlier ${this.#acked}`,
      };
    }
    const proofs = new Map<number, Uint8Array>();
    for (const d of delivered) {
      let proof: Uint8Array | undefined;
      try {
        proof = Uint8Array.fromBase64(d.proof);
      } catch {
        proof = undefined;
      }
      if (
        !Number.isSafeInteger(d.seq) || d.seq <= this.#acked || d.seq > upTo ||
        proof?.length !== PROOF_BYTES
      ) {
        return {
          ok: false,
          message:
            `Acknowledgement refused: a delivered entry must name a seq from ${
              this.#acked + 1
            } to ${upTo} and a proof of ${PROOF_BYTES} bytes`,
        };
      }
      proofs.set(d.seq, proof);
    }
    const out: DeliveredRecord[] = [];
    let n = 0;
    for (const f of this.#inflight) {
      if (f.record.seq > upTo) break;
      n++;
      this.#inflightBytes -= f.bytes;
      const proof = proofs.get(f.record.seq);
      if (proof) out.push({ record: f.record, proof });
    }
    this.#inflight.splice(0, n);
    this.#acked = upTo;
    return { ok: true, delivered: out };
  }

  async #pump(): Promise<void> {
    try {
      while (this.#dirty && !this.#closed) {
        this.#dirty = false;
        await this.#fill();
      }
    } catch (e) {
      // The store failed: the stream stops; the records stay in the log for
      // the next `mailbox`.
      this.#fail((e as Error).message);
    } finally {
      this.#running = undefined;
    }
  }

  #fail(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop?.abort();
    this.#o.log("mail-stream-failed", { user: this.#o.user, error: why });
    this.#o.onFailed?.(why);
  }

  /** Push what the window allows, reading the log after the cursor. */
  async #fill(): Promise<void> {
    const { store, user, window } = this.#o;
    for (;;) {
      const room = window - this.#inflight.length;
      if (
        this.#closed || room <= 0 || this.#inflightBytes >= MAX_UNACKED_BYTES
      ) {
        return; // an acknowledgement wakes the stream again
      }
      const page = await store.read(user, { after: this.#cursor, limit: room });
      for (const record of page) {
        if (this.#closed) return;
        const bytes = record.data.length;
        if (
          this.#inflight.length > 0 &&
          this.#inflightBytes + bytes > MAX_UNACKED_BYTES
        ) return;
        await this.#drained();
        if (this.#closed) return;
        this.#push(record, bytes);
      }
      if (page.length < room) {
        // Caught up with the log: the backlog is out.
        if (!this.#synced) {
          this.#synced = true;
          this.#send({ t: "synced", count: this.#count });
        }
        return;
      }
    }
  }

  /** Wait while the connection holds {@link STREAM_QUEUE_BUDGET_BYTES} or more unsent. */
  async #drained(): Promise<void> {
    while (
      !this.#closed &&
      this.#o.channel.transport.queuedBytes >= STREAM_QUEUE_BUDGET_BYTES
    ) {
      if (this.#unsent > 0) {
        // Our last push settles once written: the queue before it is gone.
        await this.#lastSend;
      } else {
        // Other messages fill the queue (relays): look again a little later.
        this.#stop ??= new AbortController();
        await sleep(DRAIN_POLL_MS, this.#stop.signal);
      }
    }
  }

  #push(record: StoredRecord, bytes: number): void {
    this.#inflight.push({ record, bytes });
    this.#inflightBytes += bytes;
    this.#cursor = record.seq;
    this.#count++;
    const push = recordPush(record);
    if (push === undefined) {
      // Too damaged to name its sender: not pushed; the next acknowledgement
      // past it removes it (or the retention sweep).
      this.#o.log("mail-unreadable", { user: this.#o.user, count: 1 });
      return;
    }
    this.#o.onPushed?.(1);
    this.#send(push);
  }

  #send(msg: ServerToClient): void {
    this.#unsent++;
    this.#lastSend = this.#o.channel.send(msg).catch((e) => {
      // The connection is gone (its end stops the stream), or the record no
      // longer fits the frame limit (a server restarted with a smaller
      // --max-frame): then the stream stops, so no acknowledgement past the
      // record can delete it unhandled.
      this.#o.log("mail-push-failed", {
        user: this.#o.user,
        error: (e as Error).message,
      });
      if (!this.#o.channel.closed) this.#fail((e as Error).message);
    }).finally(() => this.#unsent--);
  }
}
