/**
 * MD-CFB, the seed's cipher (PROTOCOL.md "Primitives"): HMAC-SHA256 used as
 * the block function of cipher feedback mode over 32-byte blocks.
 *
 * ```
 * b_1 = HMAC-SHA256(K, IV)
 * b_i = HMAC-SHA256(K, c_{i-1})      for i >= 2
 * c_i = p_i XOR b_i                   (last block truncated, no padding)
 * ```
 *
 * Decryption recomputes b_i from the received ciphertext blocks. MD-CFB
 * gives confidentiality only; the record layer authenticates.
 *
 * It is the hot path: synchronous, two SHA-256 compressions per block, no
 * allocation per block (see `sha256.ts` for why not WebCrypto). An instance
 * holds its HMAC's keyed states (in an array of their own, or a stretch of
 * one its owner gives, see `hmac.ts`); the keystream and feedback
 * blocks are module scratch, zeroed after every message. `encryptInto` and
 * `decryptInto` write into the caller's buffer (in place when it is the
 * input's own position), so the record layer allocates nothing here.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mdcfbDecrypt, mdcfbEncrypt } from "./mdcfb.ts";
 * const key = new Uint8Array(32).fill(1), iv = new Uint8Array(32).fill(2);
 * const c = mdcfbEncrypt(key, iv, new TextEncoder().encode("hello"));
 * assert.ok(new TextDecoder().decode(mdcfbDecrypt(key, iv, c)) === "hello");
 * ```
 * @module
 */

import { ProtocolError } from "../util/mod.ts";
import { HmacSha256 } from "./hmac.ts";

/** MD-CFB block length in bytes (one HMAC-SHA256 output). */
export const MDCFB_BLOCK_BYTES = 32;
/** MD-CFB key length in bytes. */
export const MDCFB_KEY_BYTES = 32;
/** MD-CFB IV length in bytes. */
export const MDCFB_IV_BYTES = 32;

function checkLength(what: string, b: Uint8Array, n: number): void {
  if (b.length !== n) {
    throw new ProtocolError(
      "bad-length",
      `${what}: expected ${n} bytes, got ${b.length}`,
    );
  }
}

// Keystream block b_i, as 8 big-endian words; shared by every instance
// (everything here is synchronous) and zeroed after each message.
const KS = new Int32Array(8);
// Feedback block c_{i-1} (c_0 = IV), as 8 big-endian words; likewise.
const FB = new Int32Array(8);

/** A RangeError unless `n` bytes fit `out` from `outOff`. */
function checkFits(n: number, out: Uint8Array, outOff: number): void {
  if (!(outOff >= 0 && outOff + n <= out.length)) {
    throw new RangeError(
      `MD-CFB output: ${n} bytes at ${outOff} do not fit an array of ${out.length}`,
    );
  }
}

/**
 * An MD-CFB key, with its HMAC keyed states precomputed once. Reuse one
 * instance per key; call {@link MdCfb.wipe} when done.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MdCfb } from "./mdcfb.ts";
 * const m = new MdCfb(new Uint8Array(32));
 * const iv = new Uint8Array(32);
 * const c = m.encrypt(iv, new Uint8Array([1, 2, 3]));
 * assert.ok(m.decrypt(iv, c).join() === "1,2,3");
 * m.wipe();
 * ```
 */
export class MdCfb {
  readonly #hmac: HmacSha256;
  #wiped = false;

  /**
   * @param key 32 bytes; copied into the HMAC states, so the caller may wipe it
   * @param state where to keep the HMAC's keyed states: `HMAC_STATE_WORDS`
   *   words of it from `at`, given no other use (default: an array of their own)
   * @param at where they start in `state`
   * @throws {ProtocolError} `bad-length` when `key` is not 32 bytes
   * @throws {RangeError} when the states do not fit `state` from `at`
   */
  constructor(key: Uint8Array, state?: Int32Array, at?: number) {
    checkLength("key", key, MDCFB_KEY_BYTES);
    this.#hmac = new HmacSha256(key, state, at);
  }

  /**
   * Encrypt: `c_i = p_i XOR HMAC(K, c_{i-1})`, `c_0 = IV`.
   * @param iv 32 bytes, never reused under one key
   * @param plaintext any length, including 0
   * @returns a new array, the same length as `plaintext`
   * @throws {ProtocolError} `bad-length` when `iv` is not 32 bytes;
   *   `key-wiped` after {@link MdCfb.wipe}
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MdCfb } from "./mdcfb.ts";
   * const c = new MdCfb(new Uint8Array(32)).encrypt(new Uint8Array(32), new Uint8Array(40));
   * assert.ok(c.length === 40);
   * ```
   */
  encrypt(iv: Uint8Array, plaintext: Uint8Array): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(plaintext.length);
    // Feedback comes from the ciphertext we are writing.
    this.#run(iv, plaintext, out, 0, true);
    return out;
  }

  /**
   * {@link encrypt} into `out[outOff..outOff+plaintext.length)`, allocating
   * nothing. In place when `plaintext` is that same stretch of `out`'s
   * memory (`out.subarray(outOff, outOff + n)`); any other overlap is not
   * allowed.
   * @param iv 32 bytes, never reused under one key
   * @param plaintext any length, including 0
   * @param out receives the ciphertext
   * @param outOff where it starts
   * @throws {ProtocolError} `bad-length` when `iv` is not 32 bytes;
   *   `key-wiped` after {@link MdCfb.wipe}
   * @throws {RangeError} when the ciphertext does not fit `out` there
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MdCfb } from "./mdcfb.ts";
   * const m = new MdCfb(new Uint8Array(32)), iv = new Uint8Array(32);
   * const buf = new Uint8Array([0, 1, 2, 3, 0]);
   * m.encryptInto(iv, buf.subarray(1, 4), buf, 1); // in place
   * assert.ok(buf.subarray(1, 4).join() === m.encrypt(iv, new Uint8Array([1, 2, 3])).join());
   * ```
   */
  encryptInto(
    iv: Uint8Array,
    plaintext: Uint8Array,
    out: Uint8Array,
    outOff: number,
  ): void {
    checkFits(plaintext.length, out, outOff);
    this.#run(iv, plaintext, out, outOff, true);
  }

  /**
   * Decrypt: `p_i = c_i XOR HMAC(K, c_{i-1})`, `c_0 = IV`, with `c_{i-1}`
   * taken from the received ciphertext.
   * @param iv 32 bytes, the one used to encrypt
   * @param ciphertext any length, including 0
   * @returns a new array, the same length as `ciphertext`
   * @throws {ProtocolError} `bad-length` when `iv` is not 32 bytes;
   *   `key-wiped` after {@link MdCfb.wipe}
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MdCfb } from "./mdcfb.ts";
   * const m = new MdCfb(new Uint8Array(32)), iv = new Uint8Array(32);
   * assert.ok(m.decrypt(iv, m.encrypt(iv, new Uint8Array([7])))[0] === 7);
   * ```
   */
  decrypt(iv: Uint8Array, ciphertext: Uint8Array): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(ciphertext.length);
    this.#run(iv, ciphertext, out, 0, false);
    return out;
  }

  /**
   * {@link decrypt} into `out[outOff..outOff+ciphertext.length)`,
   * allocating nothing; in place as {@link encryptInto} is.
   * @param iv 32 bytes, the one used to encrypt
   * @param ciphertext any length, including 0
   * @param out receives the plaintext
   * @param outOff where it starts
   * @throws {ProtocolError} `bad-length` when `iv` is not 32 bytes;
   *   `key-wiped` after {@link MdCfb.wipe}
   * @throws {RangeError} when the plaintext does not fit `out` there
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MdCfb } from "./mdcfb.ts";
   * const m = new MdCfb(new Uint8Array(32)), iv = new Uint8Array(32);
   * const c = m.encrypt(iv, new Uint8Array([7, 8]));
   * m.decryptInto(iv, c, c, 0); // in place
   * assert.ok(c.join() === "7,8");
   * ```
   */
  decryptInto(
    iv: Uint8Array,
    ciphertext: Uint8Array,
    out: Uint8Array,
    outOff: number,
  ): void {
    checkFits(ciphertext.length, out, outOff);
    this.#run(iv, ciphertext, out, outOff, false);
  }

  /**
   * The CFB loop: `out = input XOR b_i` with `b_1 = HMAC(K, IV)` and
   * `b_{i+1} = HMAC(K, c_i)`, where `c_i` is `out` when encrypting and
   * `input` when decrypting. Works on big-endian 32-bit words so the
   * ciphertext words go straight back into HMAC without byte round trips.
   * Each word of `input` is read before the same word of `out` is written,
   * so `out` may be `input`'s own memory (in place).
   */
  #run(
    iv: Uint8Array,
    input: Uint8Array,
    out: Uint8Array,
    o: number,
    encrypting: boolean,
  ): void {
    if (this.#wiped) {
      throw new ProtocolError(
        "key-wiped",
        "Cannot use MD-CFB key: it was wiped",
      );
    }
    checkLength("iv", iv, MDCFB_IV_BYTES);
    const n = input.length;
    if (n === 0) return;
    const hmac = this.#hmac;
    const ks = KS;
    const fb = FB;
    // c_0 = IV; b_1 = HMAC-SHA256(K, IV).
    for (let k = 0, o = 0; k < 8; k++, o += 4) {
      fb[k] = (iv[o]! << 24) | (iv[o + 1]! << 16) | (iv[o + 2]! << 8) |
        iv[o + 3]!;
    }
    hmac.macWords8Into(fb, ks);
    // Full blocks: c_i = p_i XOR b_i (decrypt: p_i = c_i XOR b_i).
    const full = n - (n % MDCFB_BLOCK_BYTES);
    let off = 0;
    while (off < full) {
      for (let k = 0; k < 8; k++, off += 4, o += 4) {
        const x = (input[off]! << 24) | (input[off + 1]! << 16) |
          (input[off + 2]! << 8) | input[off + 3]!;
        const y = x ^ ks[k]!;
        out[o] = y >>> 24;
        out[o + 1] = y >>> 16;
        out[o + 2] = y >>> 8;
        out[o + 3] = y;
        fb[k] = encrypting ? y : x; // c_i, the next feedback block
      }
      // b_{i+1} = HMAC-SHA256(K, c_i), only if there is a next block.
      if (off < n) hmac.macWords8Into(fb, ks);
    }
    // Last block truncated: XOR the first n - off bytes of b_i, no padding.
    for (let j = 0; off < n; off++, o++, j++) {
      out[o] = input[off]! ^ (ks[j >> 2]! >>> (24 - 8 * (j & 3)));
    }
    for (let k = 0; k < 8; k++) ks[k] = fb[k] = 0;
    hmac.scrub();
  }

  /**
   * Zero the keyed states; later calls throw `key-wiped`.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MdCfb } from "./mdcfb.ts";
   * const m = new MdCfb(new Uint8Array(32));
   * m.wipe();
   * let threw = false;
   * try { m.encrypt(new Uint8Array(32), new Uint8Array(1)); } catch { threw = true; }
   * assert.ok(threw);
   * ```
   */
  wipe(): void {
    this.#hmac.wipe();
    KS.fill(0);
    FB.fill(0);
    this.#wiped = true;
  }
}

/**
 * One-shot MD-CFB encryption. For many messages under one key, keep an
 * {@link MdCfb}.
 * @param key 32 bytes
 * @param iv 32 bytes
 * @param plaintext any length
 * @returns the ciphertext, same length as `plaintext`
 * @throws {ProtocolError} `bad-length` when `key` or `iv` is not 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mdcfbEncrypt } from "./mdcfb.ts";
 * assert.ok(mdcfbEncrypt(new Uint8Array(32), new Uint8Array(32), new Uint8Array(5)).length === 5);
 * ```
 */
export function mdcfbEncrypt(
  key: Uint8Array,
  iv: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const m = new MdCfb(key);
  try {
    return m.encrypt(iv, plaintext);
  } finally {
    m.wipe();
  }
}

/**
 * One-shot MD-CFB decryption.
 * @param key 32 bytes
 * @param iv 32 bytes
 * @param ciphertext any length
 * @returns the plaintext, same length as `ciphertext`
 * @throws {ProtocolError} `bad-length` when `key` or `iv` is not 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mdcfbDecrypt, mdcfbEncrypt } from "./mdcfb.ts";
 * const k = new Uint8Array(32), iv = new Uint8Array(32);
 * const p = new Uint8Array([1, 2, 3]);
 * assert.ok(mdcfbDecrypt(k, iv, mdcfbEncrypt(k, iv, p)).join() === "1,2,3");
 * ```
 */
export function mdcfbDecrypt(
  key: Uint8Array,
  iv: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const m = new MdCfb(key);
  try {
    return m.decrypt(iv, ciphertext);
  } finally {
    m.wipe();
  }
}
