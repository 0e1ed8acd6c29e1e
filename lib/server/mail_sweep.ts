/**
 * {@link MailSweep}: the retention sweep of the mailbox (PROTOCOL.md section
 * 9.8), run when the server starts and then every
 * {@link SWEEP_INTERVAL_MS}: the records older than the retention are
 * deleted, and each expired mail appends an `expired` receipt to its
 * sender's log. Receipts expire without a receipt. It logs counts only
 * (section 9.9), never a message, an id or a key. The `Mailbox`
 * (mailbox.ts) starts and stops it.
 *
 * @example
 * ```ts ignore
 * const sweep = new MailSweep({ store, retentionMs, now, log, notify, swept });
 * await sweep.start();        // the first sweep is done
 * await sweep.stop();         // no more; the one in flight is done
 * ```
 * @module
 */

import type { Logger } from "../util/mod.ts";
import { MAIL_RECORD, receiptRecord, recordMail } from "./mail_records.ts";
import type { Store } from "./seams.ts";

/** Records removed per transaction of the sweep. */
export const SWEEP_BATCH = 256;

/** How often the retention sweep runs (PROTOCOL.md 9.8). */
export const SWEEP_INTERVAL_MS = 60 * 60 * 1000;

/** Settings of a {@link MailSweep}: the `Mailbox`'s, in part. */
export interface MailSweepOptions {
  store: Store;
  /** A record older than this is deleted by the sweep. */
  retentionMs: number;
  /** The server's clock. */
  now: () => number;
  log: Logger;
  /** A record was committed to `user`'s log: its stream on this node pushes it. */
  notify: (user: string) => void;
  /** A sweep is done and logged: `mails` expired in it. */
  swept: (mails: number) => void;
}

/** The retention sweep, now and every {@link SWEEP_INTERVAL_MS}. */
export class MailSweep {
  #o: MailSweepOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  #sweeping: Promise<void> | undefined;
  #stopped = false;

  /** @param o the store, the retention, the clock and what to tell */
  constructor(o: MailSweepOptions) {
    this.#o = o;
  }

  /**
   * Run the sweep now and then every {@link SWEEP_INTERVAL_MS}, until
   * {@link stop}.
   * @returns when the first sweep is done (a failure is logged, not thrown)
   */
  start(): Promise<void> {
    if (this.#stopped || this.#timer !== undefined) return Promise.resolve();
    this.#timer = setInterval(
      () => this.#sweepInBackground(),
      SWEEP_INTERVAL_MS,
    );
    this.#sweepInBackground();
    return this.#sweeping ?? Promise.resolve();
  }

  /**
   * The retention sweep (PROTOCOL.md 9.8): delete the records older than the
   * retention; each expired mail appends an `expired` receipt to its
   * sender's log. Receipts expire without a receipt. Logs the counts.
   * @returns when it is done
   */
  async sweep(): Promise<void> {
    const o = this.#o;
    const before = o.now() - o.retentionMs;
    let mails = 0, receipts = 0, unreadable = 0;
    const senders = new Set<string>();
    // In batches, each one transaction with its `expired` receipts: memory
    // stays bounded, and a crash never keeps a removal without its receipt.
    for (;;) {
      const gone = await o.store.expire(before, {
        limit: SWEEP_BATCH,
        replaceWith: (rec) => {
          const header = recordMail(rec.data)?.header;
          if (!header) return undefined;
          return {
            user: header.sender,
            data: receiptRecord({
              msgId: header.msgId,
              status: "expired",
              recipient: rec.user,
            }),
            counted: false,
          };
        },
      });
      for (const rec of gone) {
        const header = recordMail(rec.data)?.header;
        if (header) {
          mails++;
          senders.add(header.sender);
        } else if (rec.data[0] === MAIL_RECORD) unreadable++;
        else receipts++;
      }
      if (gone.length < SWEEP_BATCH) break;
    }
    for (const sender of senders) o.notify(sender);
    o.log("mail-expired", { mails, receipts, unreadable });
    o.swept(mails);
  }

  /**
   * No sweep starts from now on.
   * @returns when the sweep in flight, if any, is done
   */
  stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    return this.#sweeping ?? Promise.resolve();
  }

  #sweepInBackground(): void {
    if (this.#sweeping || this.#stopped) return;
    this.#sweeping = this.sweep()
      .catch((e) =>
        this.#o.log("mail-sweep-failed", { error: (e as Error).message })
      )
      .finally(() => (this.#sweeping = undefined));
  }
}
