/**
 * The record layer (PROTOCOL.md "Records", section 3 of the requirements).
 *
 * A record is one frame payload:
 * `0x10 || type u8 || seq u64 || timestamp u64 (ms) || ciphertext || tag[32]`.
 * The 17 bytes `type || seq || timestamp` are the header. The IV of record
 * `seq` is `HMAC(ivKey, seq)` (rule 3.2), the body is MD-CFB under the
 * direction's encryption key (3.3), and the tag is `HMAC(macKey, header ||
 * ciphertext)` (3.4), checked in constant time before anything is decrypted.
 *
 * One {@link RecordSealer} or {@link RecordOpener} per direction holds that
 * direction's keys and sequence number; the counter of an opener moves only
 * after a record passes its tag (3.5).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RecordOpener, RecordSealer, RecordType } from "./record.ts";
 * const keys = { enc: new Uint8Array(32).fill(1), iv: new Uint8Array(32).fill(2), mac: new Uint8Array(32).fill(3) };
 * const sealer = new RecordSealer(keys), opener = new RecordOpener(keys);
 * const rec = sealer.seal(RecordType.DATA, new TextEncoder().encode("hi"));
 * assert.ok(new TextDecoder().decode(opener.open(rec).plaintext) === "hi");
 * ```
 * @module
 */

import {
  constantTimeEqual,
  ProtocolError,
  RecordError,
  U64_MAX,
} from "../util/mod.ts";
import { FrameKind } from "../wire/mod.ts";
import {
  type DirectionKeys,
  HMAC_STATE_WORDS,
  HmacSha256,
  MdCfb,
} from "../crypto/mod.ts";

/** Record types (header byte 0). */
export const RecordType = {
  /** Key confirmation, rule 2.7: body is the transcript hash. */
  FINISHED: 0x01,
  /** Application data: a UTF-8 JSON message (PROTOCOL.md "Messages"). */
  DATA: 0x02,
  /** Keep-alive; empty body. */
  HEARTBEAT: 0x03,
  /** Orderly close; body is a UTF-8 JSON `{ "reason": ... }`. */
  CLOSE: 0x04,
} as const;

/** One of the values of {@link RecordType}. */
export type RecordType = typeof RecordType[keyof typeof RecordType];

/** `type u8 || seq u64 || timestamp u64`. */
export const RECORD_HEADER_BYTES = 17;
/** HMAC-SHA256 tag length. */
export const RECORD_TAG_BYTES = 32;
/** Smallest record payload: kind byte, header, empty body, tag. */
export const RECORD_MIN_BYTES = 1 + RECORD_HEADER_BYTES + RECORD_TAG_BYTES;
/** Default freshness window, rule 3.5 (two minutes). */
export const DEFAULT_WINDOW_MS = 120_000;

const KNOWN_TYPES = new Set<number>(Object.values(RecordType));

/** A record that passed every check. */
export interface OpenedRecord {
  type: RecordType;
  seq: bigint;
  timestamp: number;
  plaintext: Uint8Array;
  /** Records skipped before this one (rule 3.5: a jump is reported as messages lost). */
  lost: bigint;
}

/** What a wiped sealer or opener throws: its keys are gone, with its channel. */
function wipedError(what: "seal" | "open"): ProtocolError {
  return new ProtocolError(
    "closed",
    `Cannot ${what} a record: its keys were wiped (its channel is closed)`,
  );
}

// Where the parts of a record sit in the frame payload.
const SEQ_AT = 2; // seq u64, after the kind and type bytes
const TIME_AT = 10; // timestamp u64
const BODY_AT = 1 + RECORD_HEADER_BYTES; // ciphertext
const TWO_32 = 0x1_0000_0000;

// The IV of the record being sealed or opened (rule 3.2): module scratch,
// shared by every sealer and opener (sealing and opening are synchronous)
// and zeroed after each record.
const IV = new Uint8Array(32);

/**
 * The three keyed states of a direction (MD-CFB's, the IV's and the tag's
 * HMAC, rules 3.2-3.4) in one `Int32Array` instead of three: each typed
 * array costs about 250 bytes of objects besides its 64 bytes of state, and
 * a server holds a sealer and an opener for every connection, idle or not
 * (issue 15; measured in BENCHMARKS.md "Idle connections").
 */
function directionKeys(
  keys: DirectionKeys,
): { cipher: MdCfb; ivMac: HmacSha256; tagMac: HmacSha256 } {
  const state = new Int32Array(3 * HMAC_STATE_WORDS);
  return {
    cipher: new MdCfb(keys.enc, state, 0),
    ivMac: new HmacSha256(keys.iv, state, HMAC_STATE_WORDS),
    tagMac: new HmacSha256(keys.mac, state, 2 * HMAC_STATE_WORDS),
  };
}

/** Zero IV (a loop: cheaper than `fill` for 32 bytes). */
function zeroIv(): void {
  for (let i = 0; i < 32; i++) IV[i] = 0;
}

/** The big-endian u32 at `b[o..o+4)`, as a non-negative number. */
function u32At(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>>
    0;
}

/** Write `v` (0 <= v < 2^32) big-endian at `b[o..o+4)`. */
function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** A u64 given as its high and low 32 bits, as a bigint. */
function u64Of(hi: number, lo: number): bigint {
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Seals records for one direction. Sealing allocates the record and
 * nothing else: the IV is the HMAC of the header's own sequence bytes
 * (rule 3.2), MD-CFB encrypts straight into the record (3.3) and the tag is
 * written into it (3.4); the sequence number is kept as two 32-bit halves.
 */
export class RecordSealer {
  #cipher: MdCfb;
  #ivMac: HmacSha256;
  #tagMac: HmacSha256;
  // The next sequence number: #hi * 2^32 + #lo; #hi reaches 2^32 once the
  // last one, 2^64 - 1, was used (rule 3.5: exhausted, never wrapped).
  #hi: number;
  #lo: number;
  #wiped = false;

  /**
   * @param keys the direction's keys; the raw bytes may be wiped afterwards
   * @param firstSeq first sequence number (0, rule 3.1; tests start near the end)
   * @throws {RangeError} when `firstSeq` is negative or above 2^64
   */
  constructor(keys: DirectionKeys, firstSeq = 0n) {
    if (firstSeq < 0n || firstSeq > U64_MAX + 1n) {
      throw new RangeError(`First sequence number out of range: ${firstSeq}`);
    }
    const k = directionKeys(keys);
    this.#cipher = k.cipher;
    this.#ivMac = k.ivMac;
    this.#tagMac = k.tagMac;
    this.#hi = Number(firstSeq >> 32n);
    this.#lo = Number(firstSeq & 0xffff_ffffn);
  }

  /** Sequence number the next record will carry. */
  get nextSeq(): bigint {
    return u64Of(this.#hi, this.#lo);
  }

  /**
   * Seal one record.
   * @param type record type
   * @param plaintext body
   * @param now sender's clock in ms
   * @param at bytes left free before the record (a frame's length prefix,
   *   filled by the transport: no copy of the record into a frame)
   * @returns the frame payload, after `at` free bytes
   * @throws {ProtocolError} `sequence-exhausted` once 2^64 records were sent: rule 3.5, a sequence number never wraps;
   *   `closed` after {@link wipe}
   */
  seal(
    type: RecordType,
    plaintext: Uint8Array,
    now: number = Date.now(),
    at = 0,
  ): Uint8Array {
    if (this.#wiped) throw wipedError("seal");
    const hi = this.#hi, lo = this.#lo;
    if (hi >= TWO_32) {
      throw new ProtocolError(
        "sequence-exhausted",
        "Cannot send: sequence numbers are exhausted; the channel must be closed",
      );
    }
    const tagAt = at + BODY_AT + plaintext.length;
    const out = new Uint8Array(tagAt + RECORD_TAG_BYTES);
    out[at] = FrameKind.RECORD;
    out[at + 1] = type;
    putU32(out, at + SEQ_AT, hi);
    putU32(out, at + SEQ_AT + 4, lo);
    const t = Math.max(0, Math.floor(now));
    if (t <= Number.MAX_SAFE_INTEGER) {
      putU32(out, at + TIME_AT, Math.floor(t / TWO_32));
      putU32(out, at + TIME_AT + 4, t >>> 0);
    } else {
      // Beyond 2^53 (or not a number): as a u64, modulo 2^64; NaN and
      // Infinity throw a RangeError here, as BigInt() does.
      new DataView(out.buffer).setBigUint64(at + TIME_AT, BigInt(t));
    }
    // Rule 3.2: IV = HMAC(ivKey, seq), the seq bytes just written.
    this.#ivMac.macInto(out, at + SEQ_AT, at + SEQ_AT + 8, IV, 0);
    try {
      this.#cipher.encryptInto(IV, plaintext, out, at + BODY_AT); // rule 3.3
    } finally {
      zeroIv();
    }
    this.#tagMac.macInto(out, at + 1, tagAt, out, tagAt); // rule 3.4
    if (lo === 0xffff_ffff) {
      this.#hi = hi + 1;
      this.#lo = 0;
    } else this.#lo = lo + 1;
    return out;
  }

  /**
   * Zero the keyed states (rule 4.5; PROTOCOL.md section 4, "Wiping"): a
   * closing channel calls this. Later calls to {@link seal} throw `closed`.
   */
  wipe(): void {
    this.#wiped = true;
    this.#cipher.wipe();
    this.#ivMac.wipe();
    this.#tagMac.wipe();
  }

  /** Has {@link wipe} run? */
  get wiped(): boolean {
    return this.#wiped;
  }
}

/**
 * A record whose tag checked but whose timestamp is outside the window
 * (rule 3.5): the other side holds the keys, and its clock differs from ours
 * by {@link offsetMs}. Code `stale`.
 */
export class StaleRecordError extends RecordError {
  /** The sender's clock minus ours, as the record says (ms). */
  readonly offsetMs: number;
  /** The window it is outside of (ms). */
  readonly windowMs: number;

  constructor(message: string, offsetMs: number, windowMs: number) {
    super("stale", message);
    this.offsetMs = offsetMs;
    this.windowMs = windowMs;
  }
}

/** Options of {@link RecordOpener}. */
export interface RecordOpenerOptions {
  /** Freshness window in ms, rule 3.5 (default 120 s). */
  windowMs?: number;
}

/**
 * Opens records of one direction and keeps its replay state. Opening
 * allocates the plaintext and the result (with its bigint sequence number):
 * the tag is checked against the record's own bytes in constant time
 * (rule 3.4), the header read in place, the IV made from the header's
 * sequence bytes (3.2).
 */
export class RecordOpener {
  #cipher: MdCfb;
  #ivMac: HmacSha256;
  #tagMac: HmacSha256;
  // The lowest acceptable sequence number: #hi * 2^32 + #lo (#hi reaches
  // 2^32 once 2^64 - 1 was accepted: nothing is acceptable after it).
  #hi = 0;
  #lo = 0;
  #windowMs: number;
  #wiped = false;

  /**
   * @param keys the direction's keys
   * @param opts freshness window
   */
  constructor(keys: DirectionKeys, opts: RecordOpenerOptions = {}) {
    const k = directionKeys(keys);
    this.#cipher = k.cipher;
    this.#ivMac = k.ivMac;
    this.#tagMac = k.tagMac;
    this.#windowMs = opts.windowMs ?? DEFAULT_WINDOW_MS;
  }

  /** Lowest sequence number still acceptable. */
  get nextSeq(): bigint {
    return u64Of(this.#hi, this.#lo);
  }

  /**
   * Check and decrypt one record (rules 3.4, 3.5).
   * @param payload the frame payload
   * @param now receiver's clock in ms
   * @returns the record
   * @throws {RecordError} code `malformed`, `tampered`, `replayed` or `stale`; the state is unchanged.
   *   {@link ProtocolError} `closed` after {@link wipe}
   */
  open(payload: Uint8Array, now: number = Date.now()): OpenedRecord {
    if (this.#wiped) throw wipedError("open");
    if (payload.length < RECORD_MIN_BYTES || payload[0] !== FrameKind.RECORD) {
      throw new RecordError(
        "malformed",
        `Record discarded: malformed (${payload.length} bytes)`,
      );
    }
    const tagAt = payload.length - RECORD_TAG_BYTES;
    // Rule 3.4: encrypt-then-MAC, the tag is checked (in constant time)
    // before anything else is read.
    if (!this.#tagMac.verify(payload, 1, tagAt, payload, tagAt)) {
      throw new RecordError(
        "tampered",
        "Record discarded: integrity check failed (tampered)",
      );
    }
    const type = payload[1]!;
    const hi = u32At(payload, SEQ_AT), lo = u32At(payload, SEQ_AT + 4);
    // A u64 as a number: rounded to the nearest above 2^53, as Number(bigint).
    const timestamp = u32At(payload, TIME_AT) * TWO_32 +
      u32At(payload, TIME_AT + 4);
    if (!KNOWN_TYPES.has(type)) {
      throw new RecordError(
        "malformed",
        `Record discarded: unknown type ${type}`,
      );
    }
    if (hi < this.#hi || (hi === this.#hi && lo < this.#lo)) {
      throw new RecordError(
        "replayed",
        `Record discarded: sequence number ${
          u64Of(hi, lo)
        } was already used (replayed or reordered)`,
      );
    }
    if (Math.abs(now - timestamp) > this.#windowMs) {
      throw new StaleRecordError(
        `Record discarded: timestamp is ${
          Math.round((now - timestamp) / 1000)
        } s from this clock, outside the ${this.#windowMs / 1000} s window`,
        timestamp - now,
        this.#windowMs,
      );
    }
    // Rule 3.2: IV = HMAC(ivKey, seq), from the header's seq bytes.
    this.#ivMac.macInto(payload, SEQ_AT, SEQ_AT + 8, IV, 0);
    let plaintext: Uint8Array;
    try {
      plaintext = this.#cipher.decrypt(IV, payload.subarray(BODY_AT, tagAt));
    } finally {
      zeroIv();
    }
    const seq = u64Of(hi, lo);
    const lost = hi === this.#hi && lo === this.#lo
      ? 0n
      : seq - u64Of(this.#hi, this.#lo);
    if (lo === 0xffff_ffff) {
      this.#hi = hi + 1;
      this.#lo = 0;
    } else {
      this.#hi = hi;
      this.#lo = lo + 1;
    }
    return { type: type as RecordType, seq, timestamp, plaintext, lost };
  }

  /**
   * Zero the keyed states (rule 4.5; PROTOCOL.md section 4, "Wiping"): a
   * closing channel calls this. Later calls to {@link open} throw `closed`.
   */
  wipe(): void {
    this.#wiped = true;
    this.#cipher.wipe();
    this.#ivMac.wipe();
    this.#tagMac.wipe();
  }

  /** Has {@link wipe} run? */
  get wiped(): boolean {
    return this.#wiped;
  }
}

/**
 * Key confirmation (rule 2.7): does `payload` open as a FINISHED record whose
 * body is `transcript`? Any failure is just `false`, so the caller raises
 * one opaque error whatever went wrong.
 * @param opener the direction's opener (its counter moves only on success)
 * @param payload the other side's first record
 * @param transcript the transcript hash both sides must agree on
 * @returns true when the other side proved it holds the keys
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { confirmFinished, RecordOpener, RecordSealer, RecordType } from "./record.ts";
 * const keys = { enc: new Uint8Array(32), iv: new Uint8Array(32), mac: new Uint8Array(32) };
 * const th = new Uint8Array(32).fill(7);
 * const rec = new RecordSealer(keys).seal(RecordType.FINISHED, th);
 * assert.ok(confirmFinished(new RecordOpener(keys), rec, th));
 * assert.ok(!confirmFinished(new RecordOpener(keys), rec, new Uint8Array(32)));
 * ```
 */
export function confirmFinished(
  opener: RecordOpener,
  payload: Uint8Array,
  transcript: Uint8Array,
  now: number = Date.now(),
): boolean {
  return verifyFinished(opener, payload, transcript, now).ok;
}

/** What {@link verifyFinished} found. */
export type FinishedVerdict =
  | { ok: true }
  /** `clockOffsetMs`: set when the record was authentic but outside the window. */
  | { ok: false; clockOffsetMs?: number; windowMs?: number };

/**
 * {@link confirmFinished}, saying why it failed when the cause is the
 * clocks: an authentic FINISHED whose timestamp is outside the window
 * (PROTOCOL.md section 4), so a skewed clock is reported as such.
 * @param opener the other direction's opener, at sequence 0
 * @param payload the other side's first record
 * @param transcript what FINISHED must carry
 * @param now our clock in ms
 * @returns ok, or the clock offset when that is why not
 */
export function verifyFinished(
  opener: RecordOpener,
  payload: Uint8Array,
  transcript: Uint8Array,
  now: number = Date.now(),
): FinishedVerdict {
  try {
    const rec = opener.open(payload, now);
    return rec.type === RecordType.FINISHED &&
        constantTimeEqual(rec.plaintext, transcript)
      ? { ok: true }
      : { ok: false };
  } catch (e) {
    return e instanceof StaleRecordError
      ? { ok: false, clockOffsetMs: e.offsetMs, windowMs: e.windowMs }
      : { ok: false };
  }
}

/**
 * The words of a clock skew: how far apart, which way, and the fix.
 * @param whose "the server's", "the peer's"
 * @param offsetMs their clock minus ours
 * @param windowMs the window
 * @returns a sentence
 */
export function describeClockSkew(
  whose: string,
  offsetMs: number,
  windowMs: number,
): string {
  const s = Math.round(Math.abs(offsetMs) / 1000);
  return `This computer's clock and ${whose} differ by ${s} s (${whose} is ${
    offsetMs > 0 ? "ahead" : "behind"
  }), more than the ${
    Math.round(windowMs / 1000)
  } s records may be apart: set the clock that is wrong (turn on automatic time, NTP)`;
}
