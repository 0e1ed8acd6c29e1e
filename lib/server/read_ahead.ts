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
export async function* readAhead<T>(
  source: AsyncIterable<T>,
  max: number = READ_AHEAD_MESSAGES,
): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const waiting: T[] = [];
  let done = false;
  let stopped = false;
  let failure: { error: unknown } | undefined;
  let wakeConsumer: (() => void) | undefined;
  let wakeReader: (() => void) | undefined;
  const wake = () => {
    wakeConsumer?.();
    wakeConsumer = undefined;
  };
  const reader = (async () => {
    try {
      while (!stopped) {
        while (waiting.length >= Math.max(1, max) && !stopped) {
          await new Promise<void>((r) => wakeReader = r);
        }
        if (stopped) break;
        const r = await it.next();
        if (r.done) break;
        waiting.push(r.value);
        wake();
      }
    } catch (error) {
      failure = { error };
    } finally {
      done = true;
      wake();
    }
  })();
  try {
    for (;;) {
      if (waiting.length > 0) {
        const item = waiting.shift()!;
        wakeReader?.();
        wakeReader = undefined;
        yield item;
        continue;
      }
      if (done) {
        if (failure) throw failure.error;
        return;
      }
      await new Promise<void>((r) => wakeConsumer = r);
    }
  } finally {
    if (!done) {
      // The consumer stopped early: the reader stops at its next turn (a
      // read under way ends with its source).
      stopped = true;
      wakeReader?.();
      it.return?.()?.catch(() => {});
    } else {
      await reader;
    }
  }
}
