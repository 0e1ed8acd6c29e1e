/**
 * Padding of peer messages to size buckets (PROTOCOL.md section 6,
 * "Padding"): a record's length shows its plaintext's, so the DATA records
 * of a peer session carry their message followed by ASCII spaces up to the
 * next bucket. JSON allows whitespace after a value (RFC 8259 section 2), so
 * a padded message decodes as it is: the decoder needs no change.
 *
 * Buckets: the next power of two from 64 bytes up to 16 KiB, then the next
 * multiple of 4 KiB; never past what the record may hold, and never shorter
 * than the message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { padToBucket } from "./padding.ts";
 * assert.equal(padToBucket(new TextEncoder().encode('{"t":"ack","id":"1"}'), 1000).length, 64);
 * ```
 * @module
 */

import { ProtocolError } from "../util/mod.ts";

/** The smallest bucket: every padded plaintext is at least this long. */
export const PAD_MIN_BYTES = 64;
/** Up to here the buckets are powers of two (16 KiB). */
export const PAD_POWERS_UP_TO_BYTES = 16 * 1024;
/** Past {@link PAD_POWERS_UP_TO_BYTES}, the buckets are multiples of this (4 KiB). */
export const PAD_STEP_BYTES = 4 * 1024;
/** The byte padding is made of: an ASCII space, JSON whitespace. */
export const PAD_BYTE = 0x20;

/**
 * The bucket of a plaintext of `n` bytes, before any cap: the next power of
 * two from {@link PAD_MIN_BYTES} up to {@link PAD_POWERS_UP_TO_BYTES}, then
 * the next multiple of {@link PAD_STEP_BYTES}.
 * @param n the plaintext's length, a whole number of bytes
 * @returns the bucket, at least `n`
 * @throws {ProtocolError} `bad-length` when `n` is not a whole number from 0
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bucketOf } from "./padding.ts";
 * assert.deepEqual([0, 64, 65, 16384, 16385].map(bucketOf), [64, 64, 128, 16384, 20480]);
 * ```
 */
export function bucketOf(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new ProtocolError(
      "bad-length",
      `Plaintext length: expected a whole number of bytes, got ${n}`,
    );
  }
  if (n > PAD_POWERS_UP_TO_BYTES) {
    return Math.ceil(n / PAD_STEP_BYTES) * PAD_STEP_BYTES;
  }
  let bucket = PAD_MIN_BYTES;
  while (bucket < n) bucket *= 2;
  return bucket;
}

/**
 * Pad `bytes` with spaces to its bucket ({@link bucketOf}), or to
 * `maxPlaintext` when the bucket is larger: a message that nearly fills a
 * record is padded only to what the record can hold, and still sent. Never
 * truncates: `bytes` at or past the cap comes back as it is.
 * @param bytes the encoded message (not wiped here; the caller owns it)
 * @param maxPlaintext the most a record on this channel may carry
 *   (`Infinity` for no cap)
 * @returns a new array of `min(bucket, maxPlaintext)` bytes, or `bytes`
 *   itself when it is that long already
 * @throws {ProtocolError} `bad-length` when `maxPlaintext` is negative or
 *   not a whole number
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { padToBucket } from "./padding.ts";
 * const m = new Uint8Array(65).fill(0x7b);
 * assert.equal(padToBucket(m, Infinity).length, 128);
 * assert.equal(padToBucket(m, 100).length, 100);
 * assert.equal(padToBucket(m, 10).length, 65);
 * ```
 */
export function padToBucket(
  bytes: Uint8Array,
  maxPlaintext: number,
): Uint8Array {
  if (
    maxPlaintext !== Infinity &&
    (!Number.isSafeInteger(maxPlaintext) || maxPlaintext < 0)
  ) {
    throw new ProtocolError(
      "bad-length",
      `Largest plaintext: expected a whole number of bytes, got ${maxPlaintext}`,
    );
  }
  const target = Math.min(bucketOf(bytes.length), maxPlaintext);
  if (target <= bytes.length) return bytes;
  const out = new Uint8Array(target);
  out.set(bytes);
  out.fill(PAD_BYTE, bytes.length);
  return out;
}
