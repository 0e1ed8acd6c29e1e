/**
 * Retrying JetStream calls while a stream has no leader (PROTOCOL.md 11.6):
 * after a NATS process dies, JetStream answers timeouts, "no responders" or
 * 503s until a new leader is elected (about 5 s); the mail store
 * (store.ts) and the room log (room_log.ts) run their calls through
 * {@link retryTransient} so that an election costs a wait, not an error;
 * both delete messages through {@link deleteIfStored}, where a message
 * already gone is not an error.
 * @module
 */

import type { JetStreamManager } from "@nats-io/jetstream";

/** How long a call keeps retrying a JetStream that does not answer (ms). */
export const JS_RETRY_MS = 10_000;

/**
 * Is this error one JetStream may stop giving once a leader is elected?
 * A connection closed by us is not: it never comes back.
 * @param e what a JetStream call threw
 * @returns true when trying again may succeed
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transientJsError } from "./js_retry.ts";
 * assert.equal(transientJsError(new Error("TimeoutError: timeout")), true);
 * assert.equal(transientJsError(new Error("wrong last sequence: 4")), false);
 * assert.equal(transientJsError(new Error("connection closed")), false);
 * ```
 */
export function transientJsError(e: unknown): boolean {
  const s = String(e instanceof Error ? `${e.name} ${e.message}` : e);
  return /timeout|no responders|not enabled|503|not available|leader|unavailable|disconnect|reconnect|closed connection|cancel/i
    .test(s) && !/connection closed|CLOSED/.test(s);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Run `fn` again while it fails with a {@link transientJsError}, waiting
 * 50 ms, then twice as long each time up to 500 ms, until `retryMs` pass.
 * @param fn the JetStream call
 * @param retryMs how long to keep trying
 * @param check throws when the caller is closed (called before each try)
 * @param closed stops the retries once true
 * @returns what `fn` returned
 * @throws the last error when it is not transient, the time is up or the caller closed
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { retryTransient } from "./js_retry.ts";
 * let tries = 0;
 * const r = await retryTransient(async () => {
 *   if (++tries < 3) throw new Error("503 no responders");
 *   return "ok";
 * }, 5_000, () => {}, () => false);
 * assert.deepEqual([r, tries], ["ok", 3]);
 * ```
 */
export async function retryTransient<T>(
  fn: () => Promise<T>,
  retryMs: number,
  check: () => void,
  closed: () => boolean,
): Promise<T> {
  const until = Date.now() + retryMs;
  let delay = 50;
  for (;;) {
    check();
    try {
      return await fn();
    } catch (e) {
      if (!transientJsError(e) || Date.now() + delay > until || closed()) {
        throw e;
      }
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 500);
  }
}

/**
 * Is this nats-server's answer to a delete of a message no longer there?
 * It has two: 10057 "no message found" (the first message of a file
 * stream) and 10043 "sequence N not found" (any other, and every message of
 * a memory stream); a missing stream is 10059 "stream not found" and no
 * leader a timeout, both errors.
 */
function messageGone(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  const text = String(e);
  return (code === 10057 && /no message found/i.test(text)) ||
    code === 10043 || /sequence \d+ not found/i.test(text);
}

/**
 * Delete stream message `seq`; a message already deleted is not an error
 * (PROTOCOL.md 11.6): two nodes sweep the same room or mailbox at once, and
 * a delete retried after a lost answer finds its own work done.
 * @param jsm the manager
 * @param stream the stream
 * @param seq the message
 * @returns true when this call deleted it, false when it was gone already
 * @throws what nats-server answered otherwise (the stream missing, no leader)
 */
export async function deleteIfStored(
  jsm: JetStreamManager,
  stream: string,
  seq: number,
): Promise<boolean> {
  try {
    return await jsm.streams.deleteMessage(stream, seq, false);
  } catch (e) {
    if (messageGone(e)) return false;
    throw e;
  }
}
