/**
 * {@link MemoryStore}: the {@link Store} of one process, lost when it
 * stops; for tests and for a server without a disk. SQLite and JetStream
 * stores follow the same contract (tests/server/store_contract.ts).
 * @module
 */

import type {
  AppendEntry,
  AppendOptions,
  ExpireOptions,
  ReadOptions,
  Store,
  StoredRecord,
} from "../seams.ts";

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** The clock of `at` and {@link Store.expire} (default `Date.now`). */
  now?: () => number;
}

function checkSeq(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what}: expected an integer >= 0, got ${n}`);
  }
}

/**
 * Per-user logs in memory. Seqs come from one counter, so they increase
 * per user and are never reused, even after a log was emptied.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryStore } from "./store.ts";
 * const s = new MemoryStore();
 * const first = await s.append("A", new Uint8Array([1]));
 * await s.append("A", new Uint8Array([2]));
 * assert.equal(await s.ack("A", first), 1);
 * assert.deepEqual((await s.read("A")).map((r) => r.data[0]), [2]);
 * assert.deepEqual(await s.usage("A"), { count: 1, bytes: 1 });
 * ```
 */
export class MemoryStore implements Store {
  #logs = new Map<string, StoredRecord[]>();
  /** The records appended not counted in the usage. */
  #uncounted = new WeakSet<StoredRecord>();
  #seq = 0;
  #now: () => number;

  /** @param opts the clock */
  constructor(opts: MemoryStoreOptions = {}) {
    this.#now = opts.now ?? Date.now;
  }

  append(
    user: string,
    data: Uint8Array,
    opts: AppendOptions = {},
  ): Promise<number> {
    const rec: StoredRecord = Object.freeze({
      seq: ++this.#seq,
      user,
      at: this.#now(),
      data: data.slice(),
    });
    if (opts.counted === false) this.#uncounted.add(rec);
    const log = this.#logs.get(user) ?? [];
    log.push(rec);
    this.#logs.set(user, log);
    return Promise.resolve(rec.seq);
  }

  appendMany(entries: readonly AppendEntry[]): Promise<number[]> {
    // Each append is synchronous under its promise: all happen in this turn.
    return Promise.all(entries.map((e) => this.append(e.user, e.data, e)));
  }

  read(user: string, opts: ReadOptions = {}): Promise<StoredRecord[]> {
    const after = opts.after ?? 0;
    const limit = opts.limit ?? Infinity;
    try {
      checkSeq("after", after);
      if (limit !== Infinity && (!Number.isSafeInteger(limit) || limit < 1)) {
        throw new RangeError(
          `limit: expected a positive integer, got ${limit}`,
        );
      }
    } catch (e) {
      return Promise.reject(e);
    }
    const out: StoredRecord[] = [];
    for (const r of this.#logs.get(user) ?? []) {
      if (out.length >= limit) break;
      if (r.seq > after) out.push({ ...r, data: r.data.slice() });
    }
    return Promise.resolve(out);
  }

  ack(user: string, seq: number): Promise<number> {
    try {
      checkSeq("seq", seq);
    } catch (e) {
      return Promise.reject(e);
    }
    const log = this.#logs.get(user);
    if (!log) return Promise.resolve(0);
    const keep = log.filter((r) => r.seq > seq);
    this.#set(user, keep);
    return Promise.resolve(log.length - keep.length);
  }

  expire(before: number, opts: ExpireOptions = {}): Promise<StoredRecord[]> {
    const limit = opts.limit ?? Infinity;
    if (limit !== Infinity && (!Number.isSafeInteger(limit) || limit < 1)) {
      return Promise.reject(
        new RangeError(`limit: expected a positive integer, got ${limit}`),
      );
    }
    const removed = [...this.#logs.values()].flat()
      .filter((r) => r.at < before)
      .sort((a, b) => a.at - b.at || a.seq - b.seq)
      .slice(0, limit);
    const gone = new Set(removed);
    for (const [user, log] of [...this.#logs]) {
      this.#set(user, log.filter((r) => !gone.has(r)));
    }
    // In the same turn: nothing runs between the removal and the appends.
    for (const rec of removed) {
      const e = opts.replaceWith?.(rec);
      if (e) void this.append(e.user, e.data, e);
    }
    return Promise.resolve(removed);
  }

  usage(user: string): Promise<{ count: number; bytes: number }> {
    let count = 0, bytes = 0;
    for (const r of this.#logs.get(user) ?? []) {
      if (this.#uncounted.has(r)) continue;
      count++;
      bytes += r.data.length;
    }
    return Promise.resolve({ count, bytes });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #set(user: string, log: StoredRecord[]): void {
    if (log.length === 0) this.#logs.delete(user);
    else this.#logs.set(user, log);
  }
}
