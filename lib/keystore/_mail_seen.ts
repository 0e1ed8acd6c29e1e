/**
 * {@link MailSeen}: the `msg_id`s of the mails shown (PROTOCOL.md section
 * 9.5), in `mail/seen`: loaded at open without the records older than
 * {@link SEEN_KEEP_MS} (or a torn last one), added in memory at once and
 * appended to the file by the next sync, one write per `mail-ack`.
 * @module
 */

import { concat } from "../util/mod.ts";
import type { MailDir } from "./_mail_dir.ts";
import { readMailFile, writeAt, writeFiles } from "./_mail_files.ts";
import {
  checkLength,
  checkTime,
  encodeSeen,
  MAIL_FILE,
  MSG_ID_BYTES,
  parseSeen,
  SEEN_RECORD,
} from "./_mail_records.ts";

const DAY_MS = 86_400_000;
/** `seen` records older than this are dropped at open (PROTOCOL.md 9.5: the 31-day window plus a day). */
export const SEEN_KEEP_MS: number = 32 * DAY_MS;

/** The seen ids of one mailbox. */
export class MailSeen {
  readonly #d: MailDir;
  #seen = new Set<string>();
  #size = 0;
  /** Records added since the last flush, not yet in the file. */
  #unwritten: Uint8Array[] = [];

  /** @param d the mail folder */
  constructor(d: MailDir) {
    this.#d = d;
  }

  /**
   * Read `seen`, and rewrite it without the records older than
   * {@link SEEN_KEEP_MS} and a torn last record.
   * @param now the time to prune against
   */
  async load(now: number): Promise<void> {
    const path = this.#d.path("seen");
    const bytes = await readMailFile(path, MAIL_FILE.seen);
    if (!bytes) return;
    const { ids, records } = parseSeen(bytes, now - SEEN_KEEP_MS);
    for (const id of ids) this.#seen.add(id);
    this.#size = records.length * SEEN_RECORD;
    if (this.#size !== bytes.length) {
      await writeFiles([{ path, bytes: concat(...records) }]);
    }
  }

  /** Whether a `msg_id` was shown. */
  has(msgId: Uint8Array): boolean {
    return this.#seen.has(msgId.toHex());
  }

  /**
   * A `msg_id` shown: held at once, written by the next {@link flush}.
   * @param msgId 16 bytes
   * @param time when the mail was written
   */
  async add(msgId: Uint8Array, time: number): Promise<void> {
    checkLength("msgId", msgId, MSG_ID_BYTES);
    checkTime("time", time);
    const record = encodeSeen(msgId, time);
    return await this.#d.serial(() => {
      const key = msgId.toHex();
      if (!this.#seen.has(key)) {
        this.#seen.add(key);
        // Written and synced by sync(): one write and one sync per
        // mail-ack, not one per message (PROTOCOL.md 9.4).
        this.#unwritten.push(record);
      }
      return Promise.resolve();
    });
  }

  /** Append the records added since the last flush (run in the queue). */
  async flush(): Promise<void> {
    if (this.#unwritten.length === 0) return;
    const bytes = concat(...this.#unwritten);
    await this.#d.make();
    await writeAt(this.#d.path("seen"), this.#size, bytes);
    this.#size += bytes.length;
    this.#unwritten = [];
  }
}
