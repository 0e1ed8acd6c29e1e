/**
 * Framing (PROTOCOL.md "Frames", rules 1.0 and 1.1): every message on a TCP
 * stream is `u32 length || payload`, the payload's first byte names its kind.
 * TCP has no message boundaries, so the decoder is incremental: a frame split
 * over many reads, or many frames in one read, come out whole and in order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, FrameDecoder } from "./frame.ts";
 * const wire = encodeFrame(new Uint8Array([0x10, 1, 2]));
 * const dec = new FrameDecoder();
 * const a = dec.push(wire.subarray(0, 3));
 * const b = dec.push(wire.subarray(3));
 * assert.ok(a.length === 0 && b.length === 1 && b[0]!.length === 3);
 * ```
 * @module
 */

import { ProtocolError } from "../util/mod.ts";

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** Bodies up to this many bytes are copied byte by byte out of a read (no view made). */
const SMALL_COPY_BYTES = 128;

/** Default largest payload, rule 1.1 (64 KiB). */
export const DEFAULT_MAX_FRAME_BYTES = 65536;

/** First byte of every frame payload (PROTOCOL.md "Frame kinds"). */
export const FrameKind = {
  CLIENT_HELLO: 0x01,
  SERVER_HELLO: 0x02,
  CLIENT_AUTH: 0x03,
  SERVER_KEY: 0x04,
  ERROR: 0x0e,
  RECORD: 0x10,
  PEER_HELLO: 0x21,
  PEER_REPLY: 0x22,
  PEER_COMMIT: 0x23,
} as const;

/** One of the values of {@link FrameKind}. */
export type FrameKind = typeof FrameKind[keyof typeof FrameKind];

/**
 * Prefix a payload with its length, ready for one socket write (rule 1.0).
 * @param payload 1..maxBytes bytes
 * @param maxBytes the frame limit
 * @returns length prefix and payload in one array
 * @throws {ProtocolError} `frame-too-large` or `empty-frame`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame } from "./frame.ts";
 * assert.ok(encodeFrame(new Uint8Array([1])).length === 5);
 * ```
 */
export function encodeFrame(
  payload: Uint8Array,
  maxBytes = DEFAULT_MAX_FRAME_BYTES,
): Uint8Array<ArrayBuffer> {
  checkLength(payload.length, maxBytes);
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * {@link encodeFrame} without the copy: `frame` holds the payload after
 * {@link FRAME_HEADER_BYTES} free bytes, and its length is written there.
 * @param frame the free prefix, then the payload (1..maxBytes bytes)
 * @param maxBytes the frame limit
 * @returns `frame`, ready for one socket write
 * @throws {ProtocolError} `frame-too-large` or `empty-frame`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFrame, frameInPlace } from "./frame.ts";
 * const f = new Uint8Array([0, 0, 0, 0, 0x10, 7]);
 * assert.deepEqual(frameInPlace(f), encodeFrame(new Uint8Array([0x10, 7])));
 * ```
 */
export function frameInPlace(
  frame: Uint8Array,
  maxBytes = DEFAULT_MAX_FRAME_BYTES,
): Uint8Array {
  const n = frame.length - FRAME_HEADER_BYTES;
  checkLength(Math.max(0, n), maxBytes);
  frame[0] = n >>> 24;
  frame[1] = n >>> 16;
  frame[2] = n >>> 8;
  frame[3] = n;
  return frame;
}

function checkLength(n: number, maxBytes: number): void {
  if (n === 0) {
    throw new ProtocolError("empty-frame", "Cannot read frame: length 0");
  }
  if (n > maxBytes) {
    throw new ProtocolError(
      "frame-too-large",
      `Cannot read frame: length ${n} exceeds the limit of ${maxBytes}`,
    );
  }
}

/**
 * Incremental frame decoder. Feed it whatever the socket returned; it hands
 * back every complete payload. It rejects an oversized length as soon as the
 * 4-byte prefix has arrived, before buffering the body, so a peer cannot make
 * it hold more than `maxBytes + 4` bytes. Each body is allocated once, when
 * its length is known, and filled in place: a peer that sends one byte at a
 * time costs linear work, not a copy of the whole buffer per byte.
 */
export class FrameDecoder {
  #max: number;
  /**
   * The length prefix of the frame being read, as far as it has arrived,
   * big-endian (a number, not an array: one less allocation per connection).
   */
  #head = 0;
  #headFill = 0;
  /** The body of the frame being read, allocated once its length is known. */
  #body: Uint8Array<ArrayBuffer> | undefined;
  #bodyFill = 0;
  #failed: ProtocolError | undefined;

  /** @param maxBytes the frame limit (rule 1.1) */
  constructor(maxBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.#max = maxBytes;
  }

  /** The frame limit; a frame already under way keeps the limit it was checked against. */
  get maxBytes(): number {
    return this.#max;
  }

  set maxBytes(n: number) {
    this.#max = n;
  }

  /** Bytes still to come of the frame under way, once its length prefix is in (0 otherwise). */
  get missing(): number {
    return this.#body === undefined ? 0 : this.#body.length - this.#bodyFill;
  }

  /** Bytes held that do not yet make a whole frame. */
  get buffered(): number {
    return this.#headFill + this.#bodyFill;
  }

  /**
   * Add bytes read from the stream.
   * @param chunk the bytes
   * @param length how many of them (a read buffer's first `length` bytes:
   *   no view of it made per read)
   * @param out where the completed payloads go (default a new array)
   * @returns `out`, with the payloads completed by this chunk added in order
   * @throws {ProtocolError} `frame-too-large` or `empty-frame`; after the first error every call throws it again
   */
  push(
    chunk: Uint8Array,
    length: number = chunk.length,
    out: Uint8Array<ArrayBuffer>[] = [],
  ): Uint8Array<ArrayBuffer>[] {
    if (this.#failed) throw this.#failed;
    let off = 0;
    try {
      while (off < length) {
        if (this.#body === undefined) {
          while (this.#headFill < FRAME_HEADER_BYTES && off < length) {
            this.#head = this.#head * 256 + chunk[off++]!;
            this.#headFill++;
          }
          if (this.#headFill < FRAME_HEADER_BYTES) break;
          const n = this.#head;
          this.#head = 0;
          checkLength(n, this.#max);
          this.#body = new Uint8Array(n);
          this.#bodyFill = 0;
        }
        const take = Math.min(
          this.#body.length - this.#bodyFill,
          length - off,
        );
        if (take <= SMALL_COPY_BYTES) {
          // A heartbeat's 54 bytes: a loop, not a view and a copy call.
          const body = this.#body, at = this.#bodyFill;
          for (let i = 0; i < take; i++) body[at + i] = chunk[off + i]!;
        } else {
          this.#body.set(chunk.subarray(off, off + take), this.#bodyFill);
        }
        this.#bodyFill += take;
        off += take;
        if (this.#bodyFill === this.#body.length) {
          out.push(this.#body);
          this.#body = undefined;
          this.#bodyFill = 0;
          this.#headFill = 0;
        }
      }
    } catch (e) {
      this.#failed = e as ProtocolError;
      this.#body = undefined;
      this.#bodyFill = 0;
      this.#head = 0;
      this.#headFill = 0;
      throw e;
    }
    return out;
  }

  /**
   * Call at end of stream: a frame cut short by EOF is malformed.
   * @throws {ProtocolError} `truncated-frame` when bytes are left over; after
   *   an earlier error, that error again
   */
  end(): void {
    if (this.#failed) throw this.#failed;
    if (this.buffered > 0) {
      throw new ProtocolError(
        "truncated-frame",
        `Cannot read frame: connection closed ${this.buffered} bytes into a frame`,
      );
    }
  }
}
