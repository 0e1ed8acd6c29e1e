/**
 * Synchronous SHA-256 (FIPS 180-4): the compression function (6.2.2), the
 * padding (5.1.1) and the one-shot digest {@link sha256}. Small enough to
 * audit, fast enough to be the MD-CFB hot path (see `mdcfb.ts`). The keyed
 * HMAC-SHA256 (RFC 2104) built on this compression is in `hmac.ts`.
 *
 * Why our own compression function, when WebCrypto exists: MD-CFB chains one
 * HMAC per 32-byte block, each depending on the previous ciphertext block, so
 * the cost per HMAC call is what counts. Measured on the project machine (2
 * cores, Deno 2.9.6; `bench/cipher.ts`), per HMAC of a 32-byte block:
 * - WebCrypto `crypto.subtle.sign("HMAC")` is async: 7-60 us per awaited
 *   call (noisy), so MD-CFB on it runs at 0.7-3 MB/s, and the protocol
 *   forbids awaiting once per block anyway.
 * - `node:crypto` `createHmac` is synchronous but rebuilds the keyed state
 *   on every call: 6-9 us per call.
 * - `@noble/hashes` clones its keyed state with allocation: ~1.5 us per
 *   block (figure from the project lead; not re-measured, as we use no npm).
 * - This module with `hmac.ts`: ~0.4 us (2.5 million per second); MD-CFB
 *   ~70 MB/s at 1 KiB and 64 KiB, SHA-256 ~300 MB/s (OpenSSL: ~1.8 GB/s).
 *
 * Not thread-safe in the JavaScript sense: every call, here and in
 * `hmac.ts`, shares one module-level message schedule and one digest
 * scratch, which is fine because everything here is synchronous.
 *
 * Besides its public exports, this file exports the compression and its
 * scratch under `sha256*` names for `hmac.ts` (see the export list at the
 * end). They are internal to lib/crypto: `mod.ts` does not re-export them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256 } from "./sha256.ts";
 * const abc = new TextEncoder().encode("abc");
 * assert.ok(sha256(abc).toHex().startsWith("ba7816bf"));
 * ```
 * @module
 */

/** SHA-256 digest length in bytes. */
export const SHA256_BYTES = 32;
/** SHA-256 block length in bytes (FIPS 180-4 section 1, "Block size"). */
export const SHA256_BLOCK_BYTES = 64;

// FIPS 180-4 4.2.2: the 64 round constants, as signed 32-bit integers.
const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

// FIPS 180-4 5.3.3: the initial hash value H(0).
const H0 = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

// The 16 words of the block being compressed, M(i) in FIPS 180-4 6.2.2,
// shared by every call (no allocation per block).
const W = new Int32Array(16);
// The digest being computed (an inner or outer hash, or sha256's), shared
// by every call like W: `HmacSha256` instances hold only their keyed states.
const T = new Int32Array(8);

/**
 * FIPS 180-4 6.2.2: one SHA-256 compression. Reads the 16 message words
 * M(i) from `W`, the chaining value H(i-1) from `src[so..so+8)`, and writes
 * H(i) = H(i-1) + (a..h) to `dst[d..d+8)` (which may be the same words).
 *
 * Written for V8: every value is an int32 local (`| 0` after each sum is
 * addition modulo 2^32), the rounds are unrolled 16 at a time so the eight
 * working variables rotate by renaming instead of moving (what round t calls
 * `h` is the next round's `a`), and the message schedule lives in 16
 * locals, W_t overwriting W_{t-16}. This is ~1.4x faster than a plain
 * 64-iteration loop; unrolling all 64 rounds gains ~10% more at four times
 * the code, so we stop here.
 *
 * The functions of 4.1.2, written inline (shifts bind tighter than | and ^):
 * - Ch(e, f, g) = (e & f) ^ (~e & g), computed as g ^ (e & (f ^ g));
 * - Maj(a, b, c) = (a & b) ^ (a & c) ^ (b & c), as b ^ ((a ^ b) & (b ^ c)),
 *   where b ^ c is the previous round's a ^ b (see `p` and `q` below);
 * - Sigma0(a) = ROTR2 ^ ROTR13 ^ ROTR22; Sigma1(e) = ROTR6 ^ ROTR11 ^ ROTR25;
 * - sigma0(x) = ROTR7 ^ ROTR18 ^ SHR3; sigma1(x) = ROTR17 ^ ROTR19 ^ SHR10;
 * where ROTRn(x) = x >>> n | x << (32 - n).
 */
function compress(
  src: Int32Array,
  so: number,
  dst: Int32Array,
  dOff: number,
): void {
  // 6.2.2 step 2: initialize the working variables with H(i-1).
  let a = src[so]!, b = src[so + 1]!, c = src[so + 2]!, d = src[so + 3]!;
  let e = src[so + 4]!, f = src[so + 5]!, g = src[so + 6]!, h = src[so + 7]!;
  // 6.2.2 step 1, t = 0..15: W_t = M_t(i).
  let w0 = W[0]!, w1 = W[1]!, w2 = W[2]!, w3 = W[3]!;
  let w4 = W[4]!, w5 = W[5]!, w6 = W[6]!, w7 = W[7]!;
  let w8 = W[8]!, w9 = W[9]!, w10 = W[10]!, w11 = W[11]!;
  let w12 = W[12]!, w13 = W[13]!, w14 = W[14]!, w15 = W[15]!;
  let s = 0, u = 0;
  // Maj(a, b, c) as b ^ ((a ^ b) & (b ^ c)): this round's b ^ c is the
  // previous round's a ^ b (b and c are the previous a and b), kept in p or
  // q, so Maj costs three operations instead of four (3-4% per compression).
  let p = 0, q = b ^ c;
  for (let t = 0; t < 64; t += 16) {
    if (t > 0) {
      // 6.2.2 step 1, t = 16..63, each line replacing W_{t-16}:
      // W_t = sigma1(W_{t-2}) + W_{t-7} + sigma0(W_{t-15}) + W_{t-16}.
      s = (w14 >>> 17 | w14 << 15) ^ (w14 >>> 19 | w14 << 13) ^ w14 >>> 10;
      u = (w1 >>> 7 | w1 << 25) ^ (w1 >>> 18 | w1 << 14) ^ w1 >>> 3;
      w0 = s + w9 + u + w0 | 0;
      s = (w15 >>> 17 | w15 << 15) ^ (w15 >>> 19 | w15 << 13) ^ w15 >>> 10;
      u = (w2 >>> 7 | w2 << 25) ^ (w2 >>> 18 | w2 << 14) ^ w2 >>> 3;
      w1 = s + w10 + u + w1 | 0;
      s = (w0 >>> 17 | w0 << 15) ^ (w0 >>> 19 | w0 << 13) ^ w0 >>> 10;
      u = (w3 >>> 7 | w3 << 25) ^ (w3 >>> 18 | w3 << 14) ^ w3 >>> 3;
      w2 = s + w11 + u + w2 | 0;
      s = (w1 >>> 17 | w1 << 15) ^ (w1 >>> 19 | w1 << 13) ^ w1 >>> 10;
      u = (w4 >>> 7 | w4 << 25) ^ (w4 >>> 18 | w4 << 14) ^ w4 >>> 3;
      w3 = s + w12 + u + w3 | 0;
      s = (w2 >>> 17 | w2 << 15) ^ (w2 >>> 19 | w2 << 13) ^ w2 >>> 10;
      u = (w5 >>> 7 | w5 << 25) ^ (w5 >>> 18 | w5 << 14) ^ w5 >>> 3;
      w4 = s + w13 + u + w4 | 0;
      s = (w3 >>> 17 | w3 << 15) ^ (w3 >>> 19 | w3 << 13) ^ w3 >>> 10;
      u = (w6 >>> 7 | w6 << 25) ^ (w6 >>> 18 | w6 << 14) ^ w6 >>> 3;
      w5 = s + w14 + u + w5 | 0;
      s = (w4 >>> 17 | w4 << 15) ^ (w4 >>> 19 | w4 << 13) ^ w4 >>> 10;
      u = (w7 >>> 7 | w7 << 25) ^ (w7 >>> 18 | w7 << 14) ^ w7 >>> 3;
      w6 = s + w15 + u + w6 | 0;
      s = (w5 >>> 17 | w5 << 15) ^ (w5 >>> 19 | w5 << 13) ^ w5 >>> 10;
      u = (w8 >>> 7 | w8 << 25) ^ (w8 >>> 18 | w8 << 14) ^ w8 >>> 3;
      w7 = s + w0 + u + w7 | 0;
      s = (w6 >>> 17 | w6 << 15) ^ (w6 >>> 19 | w6 << 13) ^ w6 >>> 10;
      u = (w9 >>> 7 | w9 << 25) ^ (w9 >>> 18 | w9 << 14) ^ w9 >>> 3;
      w8 = s + w1 + u + w8 | 0;
      s = (w7 >>> 17 | w7 << 15) ^ (w7 >>> 19 | w7 << 13) ^ w7 >>> 10;
      u = (w10 >>> 7 | w10 << 25) ^ (w10 >>> 18 | w10 << 14) ^ w10 >>> 3;
      w9 = s + w2 + u + w9 | 0;
      s = (w8 >>> 17 | w8 << 15) ^ (w8 >>> 19 | w8 << 13) ^ w8 >>> 10;
      u = (w11 >>> 7 | w11 << 25) ^ (w11 >>> 18 | w11 << 14) ^ w11 >>> 3;
      w10 = s + w3 + u + w10 | 0;
      s = (w9 >>> 17 | w9 << 15) ^ (w9 >>> 19 | w9 << 13) ^ w9 >>> 10;
      u = (w12 >>> 7 | w12 << 25) ^ (w12 >>> 18 | w12 << 14) ^ w12 >>> 3;
      w11 = s + w4 + u + w11 | 0;
      s = (w10 >>> 17 | w10 << 15) ^ (w10 >>> 19 | w10 << 13) ^ w10 >>> 10;
      u = (w13 >>> 7 | w13 << 25) ^ (w13 >>> 18 | w13 << 14) ^ w13 >>> 3;
      w12 = s + w5 + u + w12 | 0;
      s = (w11 >>> 17 | w11 << 15) ^ (w11 >>> 19 | w11 << 13) ^ w11 >>> 10;
      u = (w14 >>> 7 | w14 << 25) ^ (w14 >>> 18 | w14 << 14) ^ w14 >>> 3;
      w13 = s + w6 + u + w13 | 0;
      s = (w12 >>> 17 | w12 << 15) ^ (w12 >>> 19 | w12 << 13) ^ w12 >>> 10;
      u = (w15 >>> 7 | w15 << 25) ^ (w15 >>> 18 | w15 << 14) ^ w15 >>> 3;
      w14 = s + w7 + u + w14 | 0;
      s = (w13 >>> 17 | w13 << 15) ^ (w13 >>> 19 | w13 << 13) ^ w13 >>> 10;
      u = (w0 >>> 7 | w0 << 25) ^ (w0 >>> 18 | w0 << 14) ^ w0 >>> 3;
      w15 = s + w8 + u + w15 | 0;
    }
    // 6.2.2 step 3, rounds t..t+15, each:
    //   T1 = h + Sigma1(e) + Ch(e, f, g) + K_t + W_t;  T2 = Sigma0(a) + Maj(a, b, c)
    //   d = d + T1;  h = T1 + T2;  then rename (a, ..., h) = (h, a, ..., g).
    s = (e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7);
    h = h + s + (g ^ (e & (f ^ g))) + K[t + 0]! + w0 | 0;
    d = d + h | 0;
    s = (a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10);
    h = h + s + (b ^ ((p = a ^ b) & q)) | 0;
    s = (d >>> 6 | d << 26) ^ (d >>> 11 | d << 21) ^ (d >>> 25 | d << 7);
    g = g + s + (f ^ (d & (e ^ f))) + K[t + 1]! + w1 | 0;
    c = c + g | 0;
    s = (h >>> 2 | h << 30) ^ (h >>> 13 | h << 19) ^ (h >>> 22 | h << 10);
    g = g + s + (a ^ ((q = h ^ a) & p)) | 0;
    s = (c >>> 6 | c << 26) ^ (c >>> 11 | c << 21) ^ (c >>> 25 | c << 7);
    f = f + s + (e ^ (c & (d ^ e))) + K[t + 2]! + w2 | 0;
    b = b + f | 0;
    s = (g >>> 2 | g << 30) ^ (g >>> 13 | g << 19) ^ (g >>> 22 | g << 10);
    f = f + s + (h ^ ((p = g ^ h) & q)) | 0;
    s = (b >>> 6 | b << 26) ^ (b >>> 11 | b << 21) ^ (b >>> 25 | b << 7);
    e = e + s + (d ^ (b & (c ^ d))) + K[t + 3]! + w3 | 0;
    a = a + e | 0;
    s = (f >>> 2 | f << 30) ^ (f >>> 13 | f << 19) ^ (f >>> 22 | f << 10);
    e = e + s + (g ^ ((q = f ^ g) & p)) | 0;
    s = (a >>> 6 | a << 26) ^ (a >>> 11 | a << 21) ^ (a >>> 25 | a << 7);
    d = d + s + (c ^ (a & (b ^ c))) + K[t + 4]! + w4 | 0;
    h = h + d | 0;
    s = (e >>> 2 | e << 30) ^ (e >>> 13 | e << 19) ^ (e >>> 22 | e << 10);
    d = d + s + (f ^ ((p = e ^ f) & q)) | 0;
    s = (h >>> 6 | h << 26) ^ (h >>> 11 | h << 21) ^ (h >>> 25 | h << 7);
    c = c + s + (b ^ (h & (a ^ b))) + K[t + 5]! + w5 | 0;
    g = g + c | 0;
    s = (d >>> 2 | d << 30) ^ (d >>> 13 | d << 19) ^ (d >>> 22 | d << 10);
    c = c + s + (e ^ ((q = d ^ e) & p)) | 0;
    s = (g >>> 6 | g << 26) ^ (g >>> 11 | g << 21) ^ (g >>> 25 | g << 7);
    b = b + s + (a ^ (g & (h ^ a))) + K[t + 6]! + w6 | 0;
    f = f + b | 0;
    s = (c >>> 2 | c << 30) ^ (c >>> 13 | c << 19) ^ (c >>> 22 | c << 10);
    b = b + s + (d ^ ((p = c ^ d) & q)) | 0;
    s = (f >>> 6 | f << 26) ^ (f >>> 11 | f << 21) ^ (f >>> 25 | f << 7);
    a = a + s + (h ^ (f & (g ^ h))) + K[t + 7]! + w7 | 0;
    e = e + a | 0;
    s = (b >>> 2 | b << 30) ^ (b >>> 13 | b << 19) ^ (b >>> 22 | b << 10);
    a = a + s + (c ^ ((q = b ^ c) & p)) | 0;
    s = (e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7);
    h = h + s + (g ^ (e & (f ^ g))) + K[t + 8]! + w8 | 0;
    d = d + h | 0;
    s = (a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10);
    h = h + s + (b ^ ((p = a ^ b) & q)) | 0;
    s = (d >>> 6 | d << 26) ^ (d >>> 11 | d << 21) ^ (d >>> 25 | d << 7);
    g = g + s + (f ^ (d & (e ^ f))) + K[t + 9]! + w9 | 0;
    c = c + g | 0;
    s = (h >>> 2 | h << 30) ^ (h >>> 13 | h << 19) ^ (h >>> 22 | h << 10);
    g = g + s + (a ^ ((q = h ^ a) & p)) | 0;
    s = (c >>> 6 | c << 26) ^ (c >>> 11 | c << 21) ^ (c >>> 25 | c << 7);
    f = f + s + (e ^ (c & (d ^ e))) + K[t + 10]! + w10 | 0;
    b = b + f | 0;
    s = (g >>> 2 | g << 30) ^ (g >>> 13 | g << 19) ^ (g >>> 22 | g << 10);
    f = f + s + (h ^ ((p = g ^ h) & q)) | 0;
    s = (b >>> 6 | b << 26) ^ (b >>> 11 | b << 21) ^ (b >>> 25 | b << 7);
    e = e + s + (d ^ (b & (c ^ d))) + K[t + 11]! + w11 | 0;
    a = a + e | 0;
    s = (f >>> 2 | f << 30) ^ (f >>> 13 | f << 19) ^ (f >>> 22 | f << 10);
    e = e + s + (g ^ ((q = f ^ g) & p)) | 0;
    s = (a >>> 6 | a << 26) ^ (a >>> 11 | a << 21) ^ (a >>> 25 | a << 7);
    d = d + s + (c ^ (a & (b ^ c))) + K[t + 12]! + w12 | 0;
    h = h + d | 0;
    s = (e >>> 2 | e << 30) ^ (e >>> 13 | e << 19) ^ (e >>> 22 | e << 10);
    d = d + s + (f ^ ((p = e ^ f) & q)) | 0;
    s = (h >>> 6 | h << 26) ^ (h >>> 11 | h << 21) ^ (h >>> 25 | h << 7);
    c = c + s + (b ^ (h & (a ^ b))) + K[t + 13]! + w13 | 0;
    g = g + c | 0;
    s = (d >>> 2 | d << 30) ^ (d >>> 13 | d << 19) ^ (d >>> 22 | d << 10);
    c = c + s + (e ^ ((q = d ^ e) & p)) | 0;
    s = (g >>> 6 | g << 26) ^ (g >>> 11 | g << 21) ^ (g >>> 25 | g << 7);
    b = b + s + (a ^ (g & (h ^ a))) + K[t + 14]! + w14 | 0;
    f = f + b | 0;
    s = (c >>> 2 | c << 30) ^ (c >>> 13 | c << 19) ^ (c >>> 22 | c << 10);
    b = b + s + (d ^ ((p = c ^ d) & q)) | 0;
    s = (f >>> 6 | f << 26) ^ (f >>> 11 | f << 21) ^ (f >>> 25 | f << 7);
    a = a + s + (h ^ (f & (g ^ h))) + K[t + 15]! + w15 | 0;
    e = e + a | 0;
    s = (b >>> 2 | b << 30) ^ (b >>> 13 | b << 19) ^ (b >>> 22 | b << 10);
    a = a + s + (c ^ ((q = b ^ c) & p)) | 0;
  }
  // 6.2.2 step 4: H(i) = H(i-1) + (a..h), modulo 2^32.
  // (All eight are read before any is written: `dst` may be `src`.)
  a = src[so]! + a | 0;
  b = src[so + 1]! + b | 0;
  c = src[so + 2]! + c | 0;
  d = src[so + 3]! + d | 0;
  e = src[so + 4]! + e | 0;
  f = src[so + 5]! + f | 0;
  g = src[so + 6]! + g | 0;
  h = src[so + 7]! + h | 0;
  dst[dOff] = a;
  dst[dOff + 1] = b;
  dst[dOff + 2] = c;
  dst[dOff + 3] = d;
  dst[dOff + 4] = e;
  dst[dOff + 5] = f;
  dst[dOff + 6] = g;
  dst[dOff + 7] = h;
}

/** Load 16 big-endian words (FIPS 180-4 3.1 byte order) into W[0..15]. */
function loadBlock(data: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++, off += 4) {
    W[i] = (data[off]! << 24) | (data[off + 1]! << 16) |
      (data[off + 2]! << 8) | data[off + 3]!;
  }
}

/** Write 8 state words big-endian into `out` at `off`. */
function storeState(st: Int32Array, out: Uint8Array, off: number): void {
  for (let i = 0; i < 8; i++, off += 4) {
    const v = st[i]!;
    out[off] = v >>> 24;
    out[off + 1] = v >>> 16;
    out[off + 2] = v >>> 8;
    out[off + 3] = v;
  }
}

/**
 * Hash `data[start..end)` starting from the chaining value
 * `init[io..io+8)`, as if `prefixBytes` (a multiple of 64) had already been
 * compressed; the result words go to `T`. FIPS 180-4 5.1.1 padding: 0x80,
 * zeros, then the 64-bit bit length.
 */
function hashFrom(
  init: Int32Array,
  io: number,
  prefixBytes: number,
  data: Uint8Array,
  start: number,
  end: number,
): void {
  let off = start;
  // 6.2.2: one compression per complete 64-byte block M(i); the first one
  // from `init`, the others from T.
  let src = init, so = io;
  for (; off + 64 <= end; off += 64) {
    loadBlock(data, off);
    compress(src, so, T, 0);
    src = T;
    so = 0;
  }
  // 5.1.1: pad the tail; one extra block when fewer than 9 bytes remain.
  const tail = end - off;
  zeroW();
  let i = 0;
  // Whole words first, then the last 0-3 bytes.
  for (; i + 4 <= tail; i += 4, off += 4) {
    W[i >> 2] = (data[off]! << 24) | (data[off + 1]! << 16) |
      (data[off + 2]! << 8) | data[off + 3]!;
  }
  for (; i < tail; i++, off++) {
    W[i >> 2] = W[i >> 2]! | (data[off]! << (24 - 8 * (i & 3)));
  }
  W[tail >> 2] = W[tail >> 2]! | (0x80 << (24 - 8 * (tail & 3)));
  if (tail > 55) {
    compress(src, so, T, 0);
    src = T;
    so = 0;
    zeroW();
  }
  // 5.1.1: length l in bits as a 64-bit big-endian integer.
  const bytes = prefixBytes + end - start;
  W[14] = Math.floor(bytes / 0x20000000) | 0;
  W[15] = (bytes << 3) | 0;
  compress(src, so, T, 0);
}

/**
 * Zero W. A loop, not `fill`: for 16 words the builtin call costs twice
 * the stores, and this runs several times per record.
 */
function zeroW(): void {
  for (let i = 0; i < 16; i++) W[i] = 0;
}

/** Zero T (as {@link zeroW}). */
function zeroT(): void {
  for (let i = 0; i < 8; i++) T[i] = 0;
}

/**
 * SHA-256 of `data` (FIPS 180-4 6.2), synchronous.
 * @param data the message
 * @returns the 32-byte digest
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256 } from "./sha256.ts";
 * const d = sha256(new TextEncoder().encode("abc"));
 * assert.ok(d.toHex() === "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
 * ```
 */
export function sha256(data: Uint8Array): Uint8Array<ArrayBuffer> {
  hashFrom(H0, 0, 0, data, 0, data.length);
  const out = new Uint8Array(SHA256_BYTES);
  storeState(T, out, 0);
  zeroT();
  return out;
}

// Internal to lib/crypto: `hmac.ts` runs RFC 2104 on these, sharing the
// scratch with `sha256`; `mod.ts` does not re-export them. Exported as new
// consts holding the same objects, not with `export { compress as ... }`:
// V8 reads an exported binding through a cell at every use, even inside its
// own module, and with `W`, `T` and `compress` exported that way SHA-256
// and HMAC measured 1-2% slower (the module before and after the split in
// one process, alternated, best of 60 trials each).

/** Internal: `compress`, FIPS 180-4 6.2.2, on the block in `W`. */
export const sha256Compress: typeof compress = compress;
/** Internal: H(0), FIPS 180-4 5.3.3; never written. */
export const SHA256_H0: Int32Array = H0;
/** Internal: `hashFrom`, padding and compressions from a chaining value. */
export const sha256HashFrom: typeof hashFrom = hashFrom;
/** Internal: `loadBlock`, 64 bytes big-endian into {@link sha256Schedule}. */
export const sha256LoadBlock: typeof loadBlock = loadBlock;
/** Internal: `storeState`, 8 words big-endian into bytes. */
export const sha256StoreState: typeof storeState = storeState;
/** Internal: the shared digest scratch `T` (8 words). */
export const sha256Digest: Int32Array = T;
/** Internal: the shared message schedule `W` (16 words). */
export const sha256Schedule: Int32Array = W;
/** Internal: `zeroT`, zero {@link sha256Digest}. */
export const sha256ZeroDigest: typeof zeroT = zeroT;
/** Internal: `zeroW`, zero {@link sha256Schedule}. */
export const sha256ZeroSchedule: typeof zeroW = zeroW;
