/**
 * HMAC-SHA256 (RFC 2104) on the SHA-256 compression of `sha256.ts` (FIPS
 * 180-4): {@link HmacSha256}, one instance per key, and the one-shot
 * {@link hmacSha256}. The MAC of the record layer (PROTOCOL.md section 3) and
 * the block function of MD-CFB (`mdcfb.ts`); `kdf.ts` builds HKDF on it.
 * Why our own code and not WebCrypto, with the figures: `sha256.ts`.
 *
 * {@link HmacSha256} computes the RFC 2104 inner and outer keyed states once
 * per key and keeps them in 16 words of an `Int32Array` (the whole per-key
 * memory, inner at `INNER`, outer at `OUTER`): its own, or a stretch of one
 * its owner shares among several keys (a record sealer keeps its three
 * keys' states in one array: a typed array costs about 250 bytes besides
 * its contents, and a server holds two sealers' worth per idle connection,
 * issue 15); a 32-byte message then costs exactly
 * two compression calls and no allocation
 * ({@link HmacSha256.macBlock32Into}, {@link HmacSha256.macWords8Into}), and
 * a message of any length none either when the tag is written into the
 * caller's buffer ({@link HmacSha256.macInto}) or compared in place
 * ({@link HmacSha256.verify}): the record layer's path.
 *
 * Not thread-safe in the JavaScript sense: calls share the message schedule
 * and digest scratch of `sha256.ts` (with `sha256` too), which is fine
 * because everything here is synchronous.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hmacSha256 } from "./hmac.ts";
 * const abc = new TextEncoder().encode("abc");
 * assert.ok(hmacSha256(abc, abc).length === 32);
 * ```
 * @module
 */

import {
  sha256,
  SHA256_BLOCK_BYTES,
  SHA256_BYTES,
  SHA256_H0,
  sha256Compress,
  sha256Digest,
  sha256HashFrom,
  sha256LoadBlock,
  sha256Schedule,
  sha256StoreState,
  sha256ZeroDigest,
  sha256ZeroSchedule,
} from "./sha256.ts";

// Module-local copies of the imported bindings, under the names they have
// inside sha256.ts: V8 reads an import through a cell at every use, a local
// const directly. Without them an HMAC measured 0-0.7% slower than before
// the split, with them within +-1% both ways (the noise of a same-code run);
// see the note at the end of sha256.ts.
const W = sha256Schedule, T = sha256Digest, H0 = SHA256_H0;
const compress = sha256Compress, hashFrom = sha256HashFrom;
const loadBlock = sha256LoadBlock, storeState = sha256StoreState;
const zeroW = sha256ZeroSchedule, zeroT = sha256ZeroDigest;

// Where the keyed states sit in an instance's one array: the chaining value
// after compressing (K0 XOR ipad), RFC 2104 section 2 step 3, then the one
// after (K0 XOR opad), step 6.
const INNER = 0;
const OUTER = 8;

/** Words of `Int32Array` one key's states take ({@link HmacSha256}'s `state`). */
export const HMAC_STATE_WORDS = 16;

/**
 * HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed
 * once in the constructor. Reuse one instance per key. An instance's whole
 * memory is its two keyed states, {@link HMAC_STATE_WORDS} words of an
 * `Int32Array` (its own, or a stretch of one the caller gives); the message
 * schedule and the digest being computed are module scratch shared by all.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HmacSha256 } from "./hmac.ts";
 * const h = new HmacSha256(new TextEncoder().encode("key"));
 * const tag = h.mac(new TextEncoder().encode("The quick brown fox jumps over the lazy dog"));
 * assert.ok(tag.toHex().startsWith("f7bc83f430538424"));
 * h.wipe();
 * ```
 */
export class HmacSha256 {
  // The inner keyed state at #at + INNER, the outer at #at + OUTER.
  readonly #state: Int32Array;
  readonly #at: number;

  /**
   * Precompute the keyed states.
   * @param key any length; keys longer than 64 bytes are hashed first
   *   (RFC 2104 section 2); the caller keeps ownership of `key`
   * @param state where to keep them: {@link HMAC_STATE_WORDS} words of this
   *   array from `at`, which the caller gives no other use (default: an
   *   array of its own)
   * @param at where they start in `state`
   * @throws {RangeError} when the words do not fit `state` from `at`
   */
  constructor(
    key: Uint8Array,
    state: Int32Array = new Int32Array(HMAC_STATE_WORDS),
    at = 0,
  ) {
    if (
      !(Number.isInteger(at) && at >= 0 &&
        at + HMAC_STATE_WORDS <= state.length)
    ) {
      throw new RangeError(
        `HMAC state: ${HMAC_STATE_WORDS} words at ${at} do not fit an array of ${state.length}`,
      );
    }
    this.#state = state;
    this.#at = at;
    // RFC 2104 section 2: K0 = H(K) when K is longer than B = 64 bytes,
    // else K; then padded with zeros to B bytes.
    const k0 = new Uint8Array(SHA256_BLOCK_BYTES);
    if (key.length > SHA256_BLOCK_BYTES) k0.set(sha256(key));
    else k0.set(key);
    // Step 2/3: K0 XOR ipad (0x36 repeated), compressed once from H(0).
    for (let i = 0; i < 64; i++) k0[i] = k0[i]! ^ 0x36;
    loadBlock(k0, 0);
    compress(H0, 0, state, at + INNER);
    // Step 5/6: K0 XOR opad (0x5c repeated); 0x36 ^ 0x5c = 0x6a.
    for (let i = 0; i < 64; i++) k0[i] = k0[i]! ^ 0x6a;
    loadBlock(k0, 0);
    compress(H0, 0, state, at + OUTER);
    k0.fill(0);
    W.fill(0);
  }

  /**
   * HMAC-SHA256 of a message of any length.
   * @param data the message
   * @returns the 32-byte tag
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HmacSha256 } from "./hmac.ts";
   * const h = new HmacSha256(new Uint8Array(32));
   * assert.ok(h.mac(new Uint8Array(0)).length === 32);
   * ```
   */
  mac(data: Uint8Array): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(SHA256_BYTES);
    this.#macRange(data, 0, data.length);
    storeState(T, out, 0);
    return out;
  }

  /**
   * HMAC-SHA256 of `data[start..end)`, the tag written to
   * `out[outOff..outOff+32)`: no allocation, no copy of the message. The
   * tag is written after the whole message is read, so `out` may be `data`
   * (the record layer writes a record's tag right after the bytes it
   * covers, PROTOCOL.md section 3 rule 3.4).
   * @param data holds the message
   * @param start where it starts
   * @param end where it ends (exclusive)
   * @param out receives the 32-byte tag
   * @param outOff where to write it
   * @throws {RangeError} when a range is outside its array
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HmacSha256 } from "./hmac.ts";
   * const h = new HmacSha256(new Uint8Array(32));
   * const buf = new Uint8Array(5 + 32).fill(9);
   * h.macInto(buf, 0, 5, buf, 5);
   * assert.ok(buf.subarray(5).toHex() === h.mac(new Uint8Array(5).fill(9)).toHex());
   * ```
   */
  macInto(
    data: Uint8Array,
    start: number,
    end: number,
    out: Uint8Array,
    outOff: number,
  ): void {
    checkRange("HMAC message", start, end, data.length);
    checkRange("HMAC tag", outOff, outOff + SHA256_BYTES, out.length);
    this.#macRange(data, start, end);
    storeState(T, out, outOff);
  }

  /**
   * Does `tag[tagOff..tagOff+32)` equal the HMAC-SHA256 of
   * `data[start..end)`? Compared in constant time: every byte is looked at
   * whatever differs, and nothing is allocated (the record layer's tag
   * check, PROTOCOL.md section 3 rule 3.4).
   * @param data holds the message
   * @param start where it starts
   * @param end where it ends (exclusive)
   * @param tag holds the 32-byte tag to check
   * @param tagOff where it starts
   * @returns true when the tag is the message's
   * @throws {RangeError} when a range is outside its array
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HmacSha256 } from "./hmac.ts";
   * const h = new HmacSha256(new Uint8Array(32));
   * const m = new Uint8Array([1, 2, 3]);
   * assert.ok(h.verify(m, 0, 3, h.mac(m), 0));
   * assert.ok(!h.verify(m, 0, 2, h.mac(m), 0));
   * ```
   */
  verify(
    data: Uint8Array,
    start: number,
    end: number,
    tag: Uint8Array,
    tagOff: number,
  ): boolean {
    checkRange("HMAC message", start, end, data.length);
    checkRange("HMAC tag", tagOff, tagOff + SHA256_BYTES, tag.length);
    this.#macRange(data, start, end);
    let diff = 0;
    for (let i = 0, o = tagOff; i < 8; i++, o += 4) {
      diff |= T[i]! ^ ((tag[o]! << 24) | (tag[o + 1]! << 16) |
        (tag[o + 2]! << 8) | tag[o + 3]!);
    }
    return diff === 0;
  }

  /**
   * HMAC-SHA256 of exactly 32 bytes `msg[msgOff..msgOff+32)`, written to
   * `out[outOff..outOff+32)`: two compressions, no allocation. `out` may
   * overlap `msg`. The caller checks the bounds (MD-CFB does).
   * @param msg holds the 32-byte message
   * @param msgOff where it starts
   * @param out receives the 32-byte tag
   * @param outOff where to write it
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HmacSha256 } from "./hmac.ts";
   * const h = new HmacSha256(new Uint8Array(32));
   * const m = new Uint8Array(32), t = new Uint8Array(32);
   * h.macBlock32Into(m, 0, t, 0);
   * assert.ok(t.toHex() === h.mac(m).toHex());
   * ```
   */
  macBlock32Into(
    msg: Uint8Array,
    msgOff: number,
    out: Uint8Array,
    outOff: number,
  ): void {
    const w = W;
    for (let i = 0; i < 8; i++, msgOff += 4) {
      w[i] = (msg[msgOff]! << 24) | (msg[msgOff + 1]! << 16) |
        (msg[msgOff + 2]! << 8) | msg[msgOff + 3]!;
    }
    this.#macLoaded32(T);
    storeState(T, out, outOff);
  }

  /**
   * HMAC-SHA256 of a 32-byte message given as 8 big-endian 32-bit words,
   * the tag written as 8 big-endian words: the MD-CFB step, with no byte
   * conversion and no allocation. `out` may be `msg`.
   * @param msg 8 words (`msg[0]` holds message bytes 0..3, big-endian)
   * @param out receives the tag as 8 words
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HmacSha256 } from "./hmac.ts";
   * const h = new HmacSha256(new Uint8Array(32));
   * const t = new Int32Array(8);
   * h.macWords8Into(new Int32Array(8), t);
   * const b = h.mac(new Uint8Array(32));
   * assert.ok(t[0] === new DataView(b.buffer).getInt32(0));
   * ```
   */
  macWords8Into(msg: Int32Array, out: Int32Array): void {
    const w = W;
    for (let i = 0; i < 8; i++) w[i] = msg[i]!;
    this.#macLoaded32(out);
  }

  /**
   * RFC 2104 section 2 steps 4-7 for `data[start..end)`: the inner hash
   * from the keyed inner state (the block K0 ^ ipad counted as 64 bytes
   * already hashed), then the outer hash; the tag words end in `T`.
   */
  #macRange(data: Uint8Array, start: number, end: number): void {
    hashFrom(
      this.#state,
      this.#at + INNER,
      SHA256_BLOCK_BYTES,
      data,
      start,
      end,
    );
    this.#outerHash(T);
  }

  /**
   * HMAC of the 32-byte message already in W[0..7], tag words to `out`.
   * RFC 2104 section 2 step 4: the block (K0 ^ ipad) is already
   * compressed, so the inner hash is one block: text || 0x80 || zeros ||
   * bit length (64 + 32) * 8 = 768 (FIPS 180-4 5.1.1).
   */
  #macLoaded32(out: Int32Array): void {
    const w = W;
    w[8] = 0x80000000 | 0;
    w[9] =
      w[10] =
      w[11] =
      w[12] =
      w[13] =
      w[14] =
        0;
    w[15] = (64 + 32) * 8;
    compress(this.#state, this.#at + INNER, T, 0);
    this.#outerHash(out);
  }

  /**
   * RFC 2104 section 2 steps 6-7: H((K0 ^ opad) || inner digest), the
   * inner digest in `T`; again one padded block of 96 bytes total. `out`
   * may be `T`: the digest is copied into W first.
   */
  #outerHash(out: Int32Array): void {
    const w = W;
    const t = T;
    for (let i = 0; i < 8; i++) w[i] = t[i]!;
    w[8] = 0x80000000 | 0;
    w[9] =
      w[10] =
      w[11] =
      w[12] =
      w[13] =
      w[14] =
        0;
    w[15] = (64 + 32) * 8;
    compress(this.#state, this.#at + OUTER, out, 0);
  }

  /**
   * Zero the shared message schedule and digest scratch, which hold the
   * last message and tag; the keyed states stay. Call after a run of
   * {@link macBlock32Into}, {@link macWords8Into} or {@link macInto} whose
   * messages are secret.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { HmacSha256 } from "./hmac.ts";
   * const h = new HmacSha256(new Uint8Array(32));
   * h.scrub();
   * assert.ok(h.mac(new Uint8Array(1)).length === 32);
   * ```
   */
  scrub(): void {
    zeroW();
    zeroT();
  }

  /**
   * Zero the keyed states and scratch. The instance then computes a
   * meaningless function; do not use it again.
   * @example
   * ```ts
   * import { HmacSha256 } from "./hmac.ts";
   * const h = new HmacSha256(new Uint8Array(32));
   * h.wipe();
   * ```
   */
  wipe(): void {
    this.#state.fill(0, this.#at, this.#at + HMAC_STATE_WORDS);
    this.scrub();
  }
}

/**
 * One-shot HMAC-SHA256 (RFC 2104). For many messages under one key, keep a
 * {@link HmacSha256} instead.
 * @param key any length
 * @param data the message
 * @returns the 32-byte tag
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hmacSha256 } from "./hmac.ts";
 * const enc = new TextEncoder();
 * const tag = hmacSha256(enc.encode("Jefe"), enc.encode("what do ya want for nothing?"));
 * assert.ok(tag.toHex().startsWith("5bdcc146bf60754e"));
 * ```
 */
export function hmacSha256(
  key: Uint8Array,
  data: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const h = new HmacSha256(key);
  const out = h.mac(data);
  h.wipe();
  return out;
}

/** A RangeError unless `[start, end)` lies within `length`. */
function checkRange(
  what: string,
  start: number,
  end: number,
  length: number,
): void {
  if (!(start >= 0 && start <= end && end <= length)) {
    throw new RangeError(
      `${what}: [${start}, ${end}) is outside an array of ${length} bytes`,
    );
  }
}
