/**
 * {@link MailPending}: the receipt keys of the mails sent and not yet
 * acknowledged (PROTOCOL.md section 9.6), in `mail/pending` (the secrets)
 * and `mail/pending.to` (their recipients): appended one record at a time,
 * rewritten whole when entries are dropped (by the next sync) or expire.
 * @module
 */

import { checkUsername, type PendingReceipt } from "../proto/mod.ts";
import { wipe } from "../util/mod.ts";
import type { MailDir } from "./_mail_dir.ts";
import { readMailFile, writeAt, writeFiles } from "./_mail_files.ts";
import {
  applyPendingTo,
  checkLength,
  checkTime,
  encodePending,
  encodePendingFiles,
  encodePendingTo,
  MAIL_FILE,
  MSG_ID_BYTES,
  parsePending,
  type Pending,
  PENDING_RECORD,
  RK_BYTES,
} from "./_mail_records.ts";

/** The pending receipts of one mailbox. */
export class MailPending {
  readonly #d: MailDir;
  #pending = new Map<string, Pending>();
  #size = 0;
  #toSize = 0;
  /** Entries were dropped since `pending` was last written. */
  #dirty = false;

  /** @param d the mail folder */
  constructor(d: MailDir) {
    this.#d = d;
  }

  /** Read `pending` and `pending.to`; rewrite them without a torn record. */
  async load(): Promise<void> {
    const path = this.#d.path("pending");
    const bytes = await readMailFile(path, MAIL_FILE.pending);
    if (!bytes) return;
    const { entries, whole } = parsePending(bytes);
    for (const p of entries) this.#pending.set(p.msgId.toHex(), p);
    wipe(bytes);
    const toPath = this.#d.path("pending.to");
    const to = await readMailFile(toPath, MAIL_FILE.pendingTo);
    const toClean = to ? applyPendingTo(to, this.#pending) : true;
    this.#size = whole;
    this.#toSize = to?.length ?? 0;
    if (whole !== bytes.length || !toClean) await this.#write();
  }

  async add(p: PendingReceipt): Promise<void> {
    checkLength("msgId", p.msgId, MSG_ID_BYTES);
    checkLength("rk", p.rk, RK_BYTES);
    checkTime("time", p.time);
    if (p.to !== undefined) checkUsername(p.to);
    const entry: Pending = {
      msgId: p.msgId.slice(),
      rk: p.rk.slice(),
      time: p.time,
    };
    if (p.to !== undefined) entry.to = p.to;
    return await this.#d.serial(async () => {
      await this.#d.make();
      if (entry.to !== undefined) {
        const rec = encodePendingTo(entry.msgId, entry.to);
        await writeAt(this.#d.path("pending.to"), this.#toSize, rec);
        this.#toSize += rec.length;
      }
      const rec = encodePending(entry);
      try {
        await writeAt(this.#d.path("pending"), this.#size, rec);
      } finally {
        wipe(rec);
      }
      this.#size += PENDING_RECORD;
      this.#pending.set(entry.msgId.toHex(), entry);
    });
  }

  async get(msgId: Uint8Array): Promise<PendingReceipt | undefined> {
    return await this.#d.serial(() => {
      const p = this.#pending.get(msgId.toHex());
      return Promise.resolve(p && copyPending(p));
    });
  }

  async drop(msgId: Uint8Array): Promise<void> {
    return await this.#d.serial(() => {
      const key = msgId.toHex();
      const p = this.#pending.get(key);
      if (!p) return Promise.resolve();
      this.#pending.delete(key);
      // Rewritten by the next sync(): one rewrite per mail-ack, not one per
      // receipt (each rewrite is the whole file).
      this.#dirty = true;
      wipe(p.rk);
      return Promise.resolve();
    });
  }

  async expire(before: number): Promise<PendingReceipt[]> {
    return await this.#d.serial(async () => {
      const old = [...this.#pending.values()].filter((p) => p.time < before)
        .sort((a, b) => a.time - b.time);
      if (old.length === 0) return [];
      for (const p of old) this.#pending.delete(p.msgId.toHex());
      await this.#write();
      this.#dirty = false;
      const out = old.map(copyPending);
      for (const p of old) wipe(p.rk);
      return out;
    });
  }

  /** Rewrite the files if entries were dropped since (run in the queue). */
  async flush(): Promise<void> {
    if (!this.#dirty) return;
    await this.#write();
    this.#dirty = false;
  }

  /** Rewrite `pending` and `pending.to` from memory (the secrets first). */
  async #write(): Promise<void> {
    const { bytes, toBytes } = encodePendingFiles(this.#pending.values());
    try {
      await writeFiles([{ path: this.#d.path("pending"), bytes }]);
      this.#size = bytes.length;
      await writeFiles([{ path: this.#d.path("pending.to"), bytes: toBytes }]);
      this.#toSize = toBytes.length;
    } finally {
      wipe(bytes);
    }
  }
}

/** A copy of a pending entry, for a caller that may keep it after it is wiped. */
function copyPending(p: Pending): PendingReceipt {
  const out = { msgId: p.msgId.slice(), rk: p.rk.slice(), time: p.time };
  return p.to === undefined ? out : { ...out, to: p.to };
}
