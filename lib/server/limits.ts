/**
 * Limits on what one logged-in user may ask of the server (PROTOCOL.md
 * section 5.2): a token bucket per user and kind of request, and the cached
 * `!list` answer, rebuilt only when who is online changes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RequestLimits } from "./limits.ts";
 * const limits = new RequestLimits({ list: { burst: 2, refillMs: 1000 } });
 * assert.ok(limits.take("A", "list", 0) && limits.take("A", "list", 0));
 * assert.ok(!limits.take("A", "list", 0)); // the burst is spent
 * assert.ok(limits.take("B", "list", 0)); // another user's bucket is full
 * assert.ok(limits.take("A", "list", 1000)); // one token back after a second
 * ```
 * @module
 */

import type { ClientToServer, UserEntry } from "../proto/mod.ts";
import type { Presence, PresenceEntry } from "./seams.ts";

/** One bucket's shape: `burst` tokens, one more every `refillMs`. */
export interface BucketShape {
  burst: number;
  refillMs: number;
}

/**
 * Requests that are limited. `send` is the mail bucket, which `fetch` shares
 * (PROTOCOL.md 9.8); `room` is the bucket every room request but
 * `room-stream` and `room-ack` takes from (PROTOCOL.md 10.4).
 */
export type LimitedRequest =
  | Extract<
    ClientToServer["t"],
    "list" | "session" | "host" | "send" | "keys" | "publish"
  >
  | "room";

/** Mails a user may send (and bundles fetch) in a burst (PROTOCOL.md 9.8). */
export const MAIL_BURST = 100;
/** Mails a second once the burst is spent, by default (`--mail-rate`). */
export const DEFAULT_MAIL_RATE = 20;
/**
 * Room requests a user may make in a burst (PROTOCOL.md 10.4); then
 * `--mail-rate` a second, as mail.
 */
export const ROOM_BURST = 100;

/** The limits of PROTOCOL.md sections 5.2, 9.8 and 10.4. */
export const REQUEST_LIMITS: Readonly<Record<LimitedRequest, BucketShape>> = {
  list: { burst: 10, refillMs: 1000 },
  session: { burst: 10, refillMs: 1000 },
  host: { burst: 10, refillMs: 1000 },
  send: { burst: MAIL_BURST, refillMs: 1000 / DEFAULT_MAIL_RATE },
  keys: { burst: 10, refillMs: 1000 },
  publish: { burst: 10, refillMs: 1000 },
  room: { burst: ROOM_BURST, refillMs: 1000 / DEFAULT_MAIL_RATE },
};

/** Bytes waiting unsent on a connection past which `list` is refused. */
export const LIST_QUEUE_BUDGET_BYTES = 256 * 1024;

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Buckets {@link RequestLimits.take} looks at besides its own, dropping
 * those full again: a full bucket and no bucket answer alike, and an idle
 * user's buckets otherwise stay for as long as it is connected (issue 15,
 * BENCHMARKS.md "Idle connections": two a user after a login).
 */
const SWEEP_PER_TAKE = 2;

/** Per-user token buckets. */
export class RequestLimits {
  #shapes: Record<LimitedRequest, BucketShape>;
  #buckets = new Map<string, Bucket>();
  /** Where the sweep of {@link SWEEP_PER_TAKE} buckets a take goes on. */
  #sweep: MapIterator<[string, Bucket]> | undefined;

  /** @param shapes overrides of {@link REQUEST_LIMITS} */
  constructor(shapes: Partial<Record<LimitedRequest, BucketShape>> = {}) {
    this.#shapes = { ...REQUEST_LIMITS, ...shapes };
  }

  /**
   * Take a token for `user`'s request of `kind`.
   * @param user the asker
   * @param kind the request
   * @param now clock in ms
   * @returns whether the request may go ahead
   */
  take(user: string, kind: LimitedRequest, now = Date.now()): boolean {
    this.#sweepSome(now);
    const shape = this.#shapes[kind];
    const key = `${kind}\u0000${user}`;
    const b = this.#buckets.get(key) ?? { tokens: shape.burst, at: now };
    const refilled = Math.floor((now - b.at) / shape.refillMs);
    if (refilled > 0) {
      b.tokens = Math.min(shape.burst, b.tokens + refilled);
      b.at = b.tokens === shape.burst ? now : b.at + refilled * shape.refillMs;
    }
    if (b.tokens <= 0) {
      this.#buckets.set(key, b);
      return false;
    }
    b.tokens--;
    this.#buckets.set(key, b);
    return true;
  }

  /**
   * Drop up to {@link SWEEP_PER_TAKE} buckets that {@link take} would find
   * full, going round the map a few at a time: one with
   * `tokens + floor((now - at) / refillMs) >= burst` would be refilled to
   * the burst with `at = now`, as a new one is.
   */
  #sweepSome(now: number): void {
    for (let i = 0; i < SWEEP_PER_TAKE; i++) {
      this.#sweep ??= this.#buckets.entries();
      const r = this.#sweep.next();
      if (r.done) {
        this.#sweep = undefined;
        return;
      }
      const [key, b] = r.value;
      const shape =
        this.#shapes[key.slice(0, key.indexOf("\u0000")) as LimitedRequest];
      if (
        shape &&
        b.tokens + Math.floor((now - b.at) / shape.refillMs) >= shape.burst
      ) this.#buckets.delete(key);
    }
  }

  /**
   * Forget a user's buckets once they are full again (they left long ago);
   * called when a user leaves, so the map holds only recent askers.
   * @param user the user
   * @param now clock in ms
   */
  forget(user: string, now = Date.now()): void {
    for (const kind of Object.keys(this.#shapes) as LimitedRequest[]) {
      const key = `${kind}\u0000${user}`;
      const b = this.#buckets.get(key);
      const shape = this.#shapes[kind];
      if (b && b.tokens + (now - b.at) / shape.refillMs >= shape.burst) {
        this.#buckets.delete(key);
      }
    }
  }
}

/**
 * The `!list` answer: the users to list, how many more are online, and in a
 * cluster whose other nodes cannot be reached `partial: true` (PROTOCOL.md
 * 11.5).
 */
export interface ListAnswer {
  users: UserEntry[];
  more: number;
  partial?: boolean;
}

/** The page a `list` asks for (PROTOCOL.md 5.3); every field may be absent. */
export interface ListQuery {
  /** Only names starting with it. */
  prefix?: string;
  /** Only names sorting after it. */
  after?: string;
  /** At most this many users (never more than the server's own cap). */
  limit?: number;
}

/**
 * The `!list` answers (PROTOCOL.md 5.3), never sorted per request: the
 * sorted users are read from {@link Presence} once per change of who is
 * online, the answer to a `list` with no fields is built once per change,
 * and a page starts at a binary search for its `after`.
 */
export class ListCache {
  #presence: Presence;
  #max: number;
  #partial: () => boolean;
  #sorted: PresenceEntry[] | undefined;
  #answer: ListAnswer | undefined;
  #unsubscribe: () => void;

  /**
   * @param presence who is online; every change of it drops what was built
   * @param max most users in one answer (the rest are counted in `more`)
   * @param partial in a cluster: whether other nodes cannot be reached now
   */
  constructor(presence: Presence, max: number, partial?: () => boolean) {
    this.#presence = presence;
    this.#max = max;
    this.#partial = partial ?? (() => false);
    this.#unsubscribe = presence.subscribe(() => {
      this.#sorted = undefined;
      this.#answer = undefined;
    });
  }

  /**
   * @param q the page asked for (none: the first page of everyone)
   * @returns the users to list, how many more match, and whether the list is partial
   */
  answer(q: ListQuery = {}): ListAnswer {
    const partial = this.#partial();
    const all = this.#sorted ??= this.#presence.list();
    const first = q.prefix === undefined && q.after === undefined &&
      q.limit === undefined;
    if (
      first && this.#answer && (this.#answer.partial === true) === partial
    ) return this.#answer;
    const max = Math.min(q.limit ?? this.#max, this.#max);
    const users: UserEntry[] = [];
    let i = q.after === undefined ? 0 : after(all, q.after);
    let more = 0;
    if (q.prefix === undefined) {
      for (; i < all.length && users.length < max; i++) {
        users.push({ name: all[i]!.name, state: all[i]!.state });
      }
      more = all.length - i;
    } else {
      // Names with a prefix need not be neighbours in localeCompare's
      // order ("a-b" and "ab" may have "aB" between them): one pass.
      for (; i < all.length; i++) {
        const e = all[i]!;
        if (!e.name.startsWith(q.prefix)) continue;
        if (users.length < max) users.push({ name: e.name, state: e.state });
        else more++;
      }
    }
    const a: ListAnswer = { users, more, ...(partial && { partial: true }) };
    if (first) this.#answer = a;
    return a;
  }

  /** Stop following presence. */
  close(): void {
    this.#unsubscribe();
  }
}

/**
 * The index of the first user whose name sorts after `name` in
 * {@link Presence.list}'s order (`localeCompare`): a binary search.
 */
function after(sorted: readonly PresenceEntry[], name: string): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]!.name.localeCompare(name) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
