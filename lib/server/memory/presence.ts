/**
 * {@link MemoryPresence}: the {@link Presence} of one process, a map of
 * online users whose changes are told to subscribers in order, and an
 * index of them kept sorted by name as they come and go, so `!list` never
 * sorts (issue 15: 10,000 online).
 * @module
 */

import type {
  Presence,
  PresenceChange,
  PresenceEntry,
  PresenceFields,
  PresenceListener,
} from "../seams.ts";

/** Options of {@link MemoryPresence}. */
export interface MemoryPresenceOptions {
  /** Told when a listener throws; the other listeners are still called. */
  onListenerError?: (error: unknown) => void;
}

function entry(
  name: string,
  node: string,
  fields: PresenceFields,
): PresenceEntry {
  const e: PresenceEntry = { name, node, state: fields.state };
  const more: Partial<PresenceFields> = {};
  if (fields.addr !== undefined) more.addr = fields.addr;
  if (fields.partner !== undefined) more.partner = fields.partner;
  if (fields.isHost !== undefined) more.isHost = fields.isHost;
  if (fields.ticketId !== undefined) more.ticketId = fields.ticketId;
  return Object.freeze({ ...e, ...more });
}

/**
 * Who is online in this process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryPresence } from "./presence.ts";
 * const p = new MemoryPresence();
 * p.join("B", "local");
 * p.join("A", "local");
 * p.update("B", { state: "HOSTING", addr: "127.0.0.1:5000" });
 * assert.deepEqual(p.list().map((e) => `${e.name} ${e.state}`), ["A IDLE", "B HOSTING"]);
 * ```
 */
export class MemoryPresence implements Presence {
  #online = new Map<string, PresenceEntry>();
  /** The entries of {@link #online}, sorted by name (`localeCompare`). */
  #sorted: PresenceEntry[] = [];
  #listeners = new Set<PresenceListener>();
  #queue: PresenceChange[] = [];
  #telling = false;
  #onListenerError: (error: unknown) => void;

  /** @param opts what to do with a listener's error */
  constructor(opts: MemoryPresenceOptions = {}) {
    this.#onListenerError = opts.onListenerError ?? (() => {});
  }

  join(name: string, node: string): PresenceEntry {
    this.leave(name);
    const e = entry(name, node, { state: "IDLE" });
    this.#online.set(name, e);
    this.#sorted.splice(this.#indexOf(name), 0, e);
    this.#tell({ kind: "join", entry: e });
    return e;
  }

  leave(name: string): PresenceEntry | undefined {
    const e = this.#online.get(name);
    if (!e) return undefined;
    this.#online.delete(name);
    this.#sorted.splice(this.#indexOf(name), 1);
    this.#tell({ kind: "leave", entry: e });
    return e;
  }

  update(name: string, fields: PresenceFields): PresenceEntry | undefined {
    const previous = this.#online.get(name);
    if (!previous) return undefined;
    const e = entry(name, previous.node, fields);
    this.#online.set(name, e);
    this.#sorted[this.#indexOf(name)] = e;
    this.#tell({ kind: "update", entry: e, previous });
    return e;
  }

  get(name: string): PresenceEntry | undefined {
    return this.#online.get(name);
  }

  list(): PresenceEntry[] {
    return this.#sorted.slice();
  }

  /**
   * Where `name` is in {@link #sorted}, or would go: a binary search, the
   * order `localeCompare`'s.
   */
  #indexOf(name: string): number {
    let lo = 0, hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#sorted[mid]!.name.localeCompare(name) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get size(): number {
    return this.#online.size;
  }

  subscribe(listener: PresenceListener): () => void {
    // A wrapper per subscription, so one function subscribed twice is told twice.
    const l: PresenceListener = (c) => listener(c);
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /** Tell every listener, in order; a change made by a listener waits for the current one. */
  #tell(change: PresenceChange): void {
    this.#queue.push(change);
    if (this.#telling) return;
    this.#telling = true;
    try {
      for (let c = this.#queue.shift(); c; c = this.#queue.shift()) {
        for (const l of [...this.#listeners]) {
          try {
            l(c);
          } catch (e) {
            this.#onListenerError(e);
          }
        }
      }
    } finally {
      this.#telling = false;
    }
  }
}
