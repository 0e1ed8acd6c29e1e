/**
 * The SHA-256 compression (FIPS 180-4 6.2.2) as a WebAssembly function, for
 * the cipher bench only: does moving `lib/crypto/sha256.ts`'s compression
 * out of JavaScript make the record layer faster on this runtime? The
 * module is generated here, byte by byte (no toolchain): all 64 rounds
 * unrolled, the eight working variables and the 16 schedule words in
 * locals, K as constants, the same operations as `compress` in
 * lib/crypto/sha256.ts. Memory: the block's 16 words at 0 (as numbers, the
 * big-endian load done by the caller, as `sha256LoadBlock` does), the
 * chaining value at {@link WASM_STATE}, the result written over it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wasmSha256Compressor } from "./_wasm_sha256.ts";
 * const w = wasmSha256Compressor();
 * // "abc", padded: one block.
 * w.block.set([0x61626380, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x18]);
 * w.state.set([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
 * w.compress();
 * assert.equal([...w.state].map((x) => (x >>> 0).toString(16).padStart(8, "0")).join(""),
 *   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
 * ```
 * @module
 */

// FIPS 180-4 4.2.2.
const K = [
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
];

/** Byte offset of the chaining value in the module's memory. */
export const WASM_STATE = 64;

/** A compiled compression and views of its block and chaining value. */
export interface WasmSha256Compressor {
  /** The 16 message words M(i) (write them before {@link compress}). */
  block: Int32Array;
  /** H(i-1) before {@link compress}, H(i) after. */
  state: Int32Array;
  /** One compression of `block` into `state`. */
  compress(): void;
}

const unsigned = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};

const signed = (n: number): number[] => {
  n |= 0;
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && (b & 0x40))) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
};

// WebAssembly opcodes (core spec 5.4).
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, I32_CONST = 0x41;
const I32_LOAD = 0x28, I32_STORE = 0x36, END = 0x0b;
const ADD = 0x6a, AND = 0x71, OR = 0x72, XOR = 0x73, SHR_U = 0x76;
const ROTR = 0x78;

/** The function body: locals 0-7 a..h, 8-23 the schedule. */
function body(): number[] {
  const c: number[] = [];
  const get = (i: number) => c.push(LOCAL_GET, ...unsigned(i));
  const set = (i: number) => c.push(LOCAL_SET, ...unsigned(i));
  const k = (v: number) => c.push(I32_CONST, ...signed(v));
  const rotr = (x: number, n: number) => (get(x), k(n), c.push(ROTR));
  const w = (t: number) => 8 + (t & 15);
  for (let i = 0; i < 8; i++) {
    k(WASM_STATE), c.push(I32_LOAD, 2, ...unsigned(4 * i)), set(i);
  }
  for (let i = 0; i < 16; i++) {
    k(0), c.push(I32_LOAD, 2, ...unsigned(4 * i)), set(8 + i);
  }
  for (let t = 0; t < 64; t++) {
    // The working variables rotate by renaming, as in sha256.ts.
    const [a, b, cc, d, e, f, g, h] = [0, 1, 2, 3, 4, 5, 6, 7].map((j) =>
      (j - (t % 8) + 8) % 8
    ) as [number, number, number, number, number, number, number, number];
    if (t >= 16) {
      // W_t = sigma1(W_{t-2}) + W_{t-7} + sigma0(W_{t-15}) + W_{t-16}.
      const x = w(t - 2), y = w(t - 15);
      rotr(x, 17), rotr(x, 19), c.push(XOR), get(x), k(10), c.push(SHR_U, XOR);
      get(w(t - 7)), c.push(ADD);
      rotr(y, 7), rotr(y, 18), c.push(XOR), get(y), k(3), c.push(SHR_U, XOR);
      c.push(ADD), get(w(t)), c.push(ADD), set(w(t));
    }
    // T1 = h + Sigma1(e) + Ch(e, f, g) + K_t + W_t, kept in h.
    get(h), rotr(e, 6), rotr(e, 11), c.push(XOR), rotr(e, 25), c.push(XOR, ADD);
    get(g), get(e), get(f), get(g), c.push(XOR, AND, XOR, ADD);
    k(K[t]!), c.push(ADD), get(w(t)), c.push(ADD), set(h);
    // d += T1; h = T1 + Sigma0(a) + Maj(a, b, c).
    get(d), get(h), c.push(ADD), set(d);
    get(h), rotr(a, 2), rotr(a, 13), c.push(XOR), rotr(a, 22), c.push(XOR, ADD);
    get(a), get(b), c.push(AND), get(cc), get(a), get(b), c.push(OR, AND, OR);
    c.push(ADD), set(h);
  }
  // After 64 rounds the names are back in place: H(i) = H(i-1) + (a..h).
  for (let i = 0; i < 8; i++) {
    k(WASM_STATE), k(WASM_STATE), c.push(I32_LOAD, 2, ...unsigned(4 * i));
    get(i), c.push(ADD, I32_STORE, 2, ...unsigned(4 * i));
  }
  c.push(END);
  return [1, 24, 0x7f, ...c]; // 24 locals of type i32
}

/**
 * Compile the module and return its compression.
 * @returns the compression and views of its memory
 */
export function wasmSha256Compressor(): WasmSha256Compressor {
  const section = (
    id: number,
    b: number[],
  ) => [id, ...unsigned(b.length), ...b];
  const name = (s: string) => [s.length, ...new TextEncoder().encode(s)];
  const code = body();
  const bytes = new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00, // magic, version 1
    ...section(1, [1, 0x60, 0, 0]), // one type: () -> ()
    ...section(3, [1, 0]), // one function of that type
    ...section(5, [1, 0, 1]), // one memory of one page
    ...section(7, [2, ...name("m"), 2, 0, ...name("c"), 0, 0]),
    ...section(10, [1, ...unsigned(code.length), ...code]),
  ]);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  const memory = instance.exports.m as WebAssembly.Memory;
  return {
    block: new Int32Array(memory.buffer, 0, 16),
    state: new Int32Array(memory.buffer, WASM_STATE, 8),
    compress: instance.exports.c as () => void,
  };
}
