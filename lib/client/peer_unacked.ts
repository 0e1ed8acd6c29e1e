/**
 * The sender's half of cumulative receipts in a peer session (PROTOCOL.md
 * section 6, "Receipts"): our chat messages without a receipt, in the order
 * they were sealed, which of them an `ack` covers, and a wait until none is
 * left. The receiver's half is {@link ReceiptRun} in peer_receipts.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UnackedTexts } from "./peer_unacked.ts";
 * const u = new UnackedTexts();
 * u.add("1", "hi");
 * u.add("2", "there");
 * assert.deepEqual(u.covered("2", 2), ["1", "2"]);
 * assert.equal(u.covered("2", 3), null);
 * ```
 * @module
 */

/** Our messages waiting for their receipt, and who waits for them all. */
export class UnackedTexts {
  /** Our messages without a receipt, in the order they were sealed. */
  #texts = new Map<string, string>();
  #settleWaiters = new Set<() => void>();

  /** How many wait for their receipt. */
  get size(): number {
    return this.#texts.size;
  }

  /** A message sealed and queued: it waits for its receipt. */
  add(id: string, text: string): void {
    this.#texts.set(id, text);
  }

  /**
   * The messages an `ack` covers: the `count` waiting ones that end at `id`,
   * oldest first; null when it names none waiting or counts more than wait
   * up to it (PROTOCOL.md section 6, "Receipts").
   */
  covered(id: string, count: number): string[] | null {
    if (!this.#texts.has(id)) return null;
    const upTo: string[] = [];
    for (const k of this.#texts.keys()) {
      upTo.push(k);
      if (k === id) break;
    }
    return count > upTo.length ? null : upTo.slice(upTo.length - count);
  }

  /** Their receipt came: they wait no more. */
  acknowledge(ids: readonly string[]): void {
    for (const id of ids) this.#texts.delete(id);
    if (this.#texts.size === 0) this.#wake();
  }

  /**
   * A message whose write failed waits no more.
   * @returns whether it was still waiting (false: the session's end took it)
   */
  forget(id: string): boolean {
    if (!this.#texts.delete(id)) return false;
    if (this.#texts.size === 0) this.#wake();
    return true;
  }

  /** The session ended: every message still waiting, oldest first; none waits now. */
  takeAll(): Array<{ id: string; text: string }> {
    const all = [...this.#texts].map(([id, text]) => ({ id, text }));
    this.#texts.clear();
    this.#wake();
    return all;
  }

  /** Resolve when none waits any more (acknowledged, failed, or taken at the end), or after `ms`. */
  settled(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#settleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#settleWaiters.add(done);
    });
  }

  #wake(): void {
    for (const w of [...this.#settleWaiters]) w();
  }
}
