/**
 * Byte helpers for the binary codecs: a bounds-checked reader that throws
 * {@link ProtocolError} on truncated input, a writer, u64 and constant-time
 * comparison. Pure; no I/O.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ByteReader, ByteWriter } from "./bytes.ts";
 * const w = new ByteWriter();
 * w.u8(1).u16(2).bytes(new Uint8Array([9]));
 * const r = new ByteReader(w.finish(), "example");
 * assert.ok(r.u8() === 1 && r.u16() === 2 && r.rest()[0] === 9);
 * ```
 * @module
 */

import { ProtocolError } from "./errors.ts";

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** Largest value a u64 field may hold. */
export const U64_MAX = (1n << 64n) - 1n;

/**
 * Concatenate byte arrays.
 * @param parts arrays to join, in order
 * @returns a new array holding all of them
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concat } from "./bytes.ts";
 * assert.ok(concat(new Uint8Array([1]), new Uint8Array([2])).length === 2);
 * ```
 */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Encode text as UTF-8.
 * @param s the text
 * @returns its UTF-8 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { utf8 } from "./bytes.ts";
 * assert.ok(utf8("hi").length === 2);
 * ```
 */
export function utf8(s: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(s) as Uint8Array<ArrayBuffer>;
}

/**
 * Decode UTF-8 strictly: invalid sequences are a {@link ProtocolError}.
 * @param b bytes
 * @param what what the field is, for the message
 * @returns the text
 * @throws {ProtocolError} `bad-utf8`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromUtf8 } from "./bytes.ts";
 * assert.ok(fromUtf8(new Uint8Array([104, 105]), "name") === "hi");
 * ```
 */
export function fromUtf8(b: Uint8Array, what: string): string {
  try {
    return strictDecoder.decode(b);
  } catch {
    throw new ProtocolError("bad-utf8", `Cannot decode ${what}: invalid UTF-8`);
  }
}

/**
 * Big-endian u64.
 * @param n 0..2^64-1
 * @returns 8 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { u64be } from "./bytes.ts";
 * assert.ok(u64be(258n)[7] === 2);
 * ```
 */
export function u64be(n: bigint): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n);
  return out;
}

/**
 * Compare two byte arrays in time that depends only on their lengths
 * (rule 3.4: tags are compared in constant time).
 * @param a first
 * @param b second
 * @returns true when equal
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { constantTimeEqual } from "./bytes.ts";
 * assert.ok(constantTimeEqual(new Uint8Array([1]), new Uint8Array([1])));
 * ```
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * Fresh random bytes from `crypto.getRandomValues` (the only source of randomness, see PROTOCOL.md).
 * @param n how many, any number (filled 64 KiB at a time)
 * @returns n random bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomBytes } from "./bytes.ts";
 * assert.ok(randomBytes(32).length === 32);
 * ```
 */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  // getRandomValues fills at most 65536 bytes per call (WebCrypto quota).
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, off + 65536));
  }
  return out;
}

/**
 * Overwrite secret bytes with zeros once they are no longer needed.
 * @param bufs the arrays to clear
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wipe } from "./bytes.ts";
 * const k = new Uint8Array([1, 2]);
 * wipe(k);
 * assert.ok(k[0] === 0);
 * ```
 */
export function wipe(...bufs: Uint8Array[]): void {
  for (const b of bufs) b.fill(0);
}

/**
 * Reads fields from a byte array; any read past the end throws
 * {@link ProtocolError} `truncated` naming `what`.
 */
export class ByteReader {
  #buf: Uint8Array;
  #view: DataView;
  #off = 0;
  #what: string;

  /**
   * @param buf bytes to read
   * @param what name of the message, for error text
   */
  constructor(buf: Uint8Array, what: string) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#what = what;
  }

  #need(n: number): number {
    const at = this.#off;
    if (at + n > this.#buf.length) {
      throw new ProtocolError(
        "truncated",
        `Cannot read ${this.#what}: needed ${n} bytes at offset ${at}, got ${
          this.#buf.length - at
        }`,
      );
    }
    this.#off += n;
    return at;
  }

  /** @returns the next byte */
  u8(): number {
    return this.#view.getUint8(this.#need(1));
  }

  /** @returns the next big-endian u16 */
  u16(): number {
    return this.#view.getUint16(this.#need(2));
  }

  /** @returns the next big-endian u32 */
  u32(): number {
    return this.#view.getUint32(this.#need(4));
  }

  /** @returns the next big-endian u64 */
  u64(): bigint {
    return this.#view.getBigUint64(this.#need(8));
  }

  /**
   * @param n how many bytes
   * @returns a copy of the next n bytes
   */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const at = this.#need(n);
    return this.#buf.slice(at, at + n);
  }

  /** @returns bytes prefixed by a u8 length */
  bytes8(): Uint8Array<ArrayBuffer> {
    return this.bytes(this.u8());
  }

  /** @returns bytes prefixed by a u16 length */
  bytes16(): Uint8Array<ArrayBuffer> {
    return this.bytes(this.u16());
  }

  /** @returns everything not read yet */
  rest(): Uint8Array<ArrayBuffer> {
    return this.bytes(this.#buf.length - this.#off);
  }

  /** @returns how many bytes are left */
  remaining(): number {
    return this.#buf.length - this.#off;
  }

  /**
   * Throw unless every byte was read: trailing bytes are malformed input.
   * @throws {ProtocolError} `trailing-bytes`
   */
  end(): void {
    if (this.#off !== this.#buf.length) {
      throw new ProtocolError(
        "trailing-bytes",
        `Cannot read ${this.#what}: ${
          this.#buf.length - this.#off
        } unexpected trailing bytes`,
      );
    }
  }
}

/** Builds a byte array field by field. */
export class ByteWriter {
  #parts: Uint8Array[] = [];

  /** @param n a byte */
  u8(n: number): this {
    this.#parts.push(new Uint8Array([n & 0xff]));
    return this;
  }

  /** @param n a u16, big-endian */
  u16(n: number): this {
    this.#parts.push(new Uint8Array([(n >>> 8) & 0xff, n & 0xff]));
    return this;
  }

  /** @param n a u32, big-endian */
  u32(n: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    this.#parts.push(b);
    return this;
  }

  /** @param n a u64, big-endian */
  u64(n: bigint): this {
    this.#parts.push(u64be(n));
    return this;
  }

  /** @param b raw bytes */
  bytes(b: Uint8Array): this {
    this.#parts.push(b);
    return this;
  }

  /** @param b bytes with a u8 length prefix (at most 255) */
  bytes8(b: Uint8Array): this {
    if (b.length > 0xff) {
      throw new RangeError(
        `bytes8: expected at most 255 bytes, got ${b.length}`,
      );
    }
    return this.u8(b.length).bytes(b);
  }

  /** @param b bytes with a u16 length prefix (at most 65535) */
  bytes16(b: Uint8Array): this {
    if (b.length > 0xffff) {
      throw new RangeError(
        `bytes16: expected at most 65535 bytes, got ${b.length}`,
      );
    }
    return this.u16(b.length).bytes(b);
  }

  /** @returns everything written */
  finish(): Uint8Array<ArrayBuffer> {
    return concat(...this.#parts);
  }
}
