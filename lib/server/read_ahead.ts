/**
 * {@link readAhead}: a client's channel read on while one of its messages
 * is handled (PROTOCOL.md section 4, "Heartbeats", and 5.1). A channel
 * counts a peer alive by the records it reads; a server that stopped
 * reading while it awaited a slow request (a store waiting for JetStream to
 * elect a leader, 11.6) heard nothing, its HEARTBEATs included, and
 * dropped the client after three of its intervals (`peer-silent`), ending
 * the link in the middle of that request. Reading on, the messages are
 * still handled one at a time and in order; at most
 * {@link READ_AHEAD_MESSAGES} wait, past which reading stops until one is
 * handled (a client that sends that many at a stalled server is held back
 * by TCP, as it was before).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readAhead } from "./read_ahead.ts";
 * async function* source() { yield 1; yield 2; yield 3; }
 * const seen: number[] = [];
 * for await (const n of readAhead(source(), 2)) seen.push(n);
 * assert.deepEqual(seen, [1, 2, 3]);
 * ```
 * @module
 */

/** Messages of one connection read but not yet handled, at most. */
export const READ_AHEAD_MESSAGES = 16;

/**
 * The items of `source`, in order, pulled from it while the consumer is
 * still busy with earlier ones: at most `max` wait. The source's error, if
 * any, is thrown after the items read before it.
 * @param source what to read
 * @param max items that may wait (at least 1)
 * @returns the same items
 */
export function readAhead<T>(
  source: AsyncIterable<T>,
  max: number = READ_AHEAD_MESSAGES,
): AsyncIterableIterator<T> {
  return new ReadAhead(source, max);
}

const END: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * {@link readAhead}'s iterator: an object and the source's one pending
 * `next()`, not an async generator with a reading task of its own (a
 * generator, its registers, and two suspended awaits with their closures):
 * a server holds one per connection, idle or not (issue 15, BENCHMARKS.md
 * "Idle connections"). Like the generator it replaces, it starts reading
 * at the first `next()`, and a `return()` before the source ended stops
 * the reading and returns the source.
 */
class ReadAhead<T> implements AsyncIterableIterator<T> {
  readonly #source: AsyncIterable<T>;
  #it: AsyncIterator<T> | undefined;
  readonly #max: number;
  readonly #waiting: T[] = [];
  /** A `next()` of the source is under way. */
  #pulling = false;
  /** The source ended: done, or it threw ({@link #failure}). */
  #done = false;
  #failure: { error: unknown } | undefined;
  /** The end (or the failure) was handed out, or the consumer returned. */
  #finished = false;
  /** The consumer's `next()` waiting for an item or the end. */
  #wanted: PromiseWithResolvers<IteratorResult<T, undefined>> | undefined;

  constructor(source: AsyncIterable<T>, max: number) {
    this.#source = source;
    this.#max = Math.max(1, max);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.#wanted) {
      // Not done by `for await`; served in turn, as a generator would.
      return this.#wanted.promise.then(() => this.next());
    }
    if (this.#finished) return Promise.resolve(END);
    if (this.#it === undefined) {
      try {
        this.#it = this.#source[Symbol.asyncIterator]();
      } catch (e) {
        this.#finished = true;
        return Promise.reject(e);
      }
      this.#pull();
    }
    if (this.#waiting.length > 0) {
      const value = this.#waiting.shift()!;
      this.#pull();
      return Promise.resolve({ done: false, value });
    }
    if (this.#done) return this.#end();
    this.#wanted = Promise.withResolvers();
    return this.#wanted.promise;
  }

  return(): Promise<IteratorResult<T, undefined>> {
    if (this.#finished) return Promise.resolve(END);
    this.#finished = true;
    const wanted = this.#wanted;
    this.#wanted = undefined;
    wanted?.resolve(END);
    if (this.#it !== undefined && !this.#done) {
      // The consumer stopped early: no more reading, and the source is
      // returned (a read under way ends with it).
      try {
        this.#it.return?.()?.catch(() => {});
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return Promise.resolve(END);
  }

  /** The end, or the source's error, once: later calls get the end. */
  #end(): Promise<IteratorResult<T, undefined>> {
    this.#finished = true;
    return this.#failure
      ? Promise.reject(this.#failure.error)
      : Promise.resolve(END);
  }

  /** Ask the source for its next item, unless one is asked or enough wait. */
  #pull(): void {
    if (
      this.#pulling || this.#done || this.#finished ||
      this.#waiting.length >= this.#max
    ) return;
    this.#pulling = true;
    let next: Promise<IteratorResult<T>>;
    try {
      next = this.#it!.next();
    } catch (error) {
      next = Promise.reject(error);
    }
    next.then(
      (r) => this.#took(r),
      (error) => this.#ended({ error }),
    );
  }

  #took(r: IteratorResult<T>): void {
    this.#pulling = false;
    if (r.done) {
      this.#ended(undefined);
      return;
    }
    if (this.#finished) return; // returned meanwhile: dropped
    const wanted = this.#wanted;
    if (wanted) {
      this.#wanted = undefined;
      wanted.resolve({ done: false, value: r.value });
    } else this.#waiting.push(r.value);
    this.#pull();
  }

  #ended(failure: { error: unknown } | undefined): void {
    this.#pulling = false;
    this.#done = true;
    this.#failure = failure;
    const wanted = this.#wanted;
    if (wanted && !this.#finished) {
      this.#wanted = undefined;
      this.#end().then(wanted.resolve, wanted.reject);
    }
  }
}
