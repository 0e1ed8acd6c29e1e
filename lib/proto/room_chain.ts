/**
 * Sender chains (PROTOCOL.md section 10.2): for each room and epoch at
 * which it is a member, a member keeps a chain of message keys and hands
 * its current position to every other member, once, as a `ROOM_KEY` sealed
 * in a mail of plaintext type 2 (section 9).
 *
 * ```
 * mk_i     = HKDF(ck_i, room_id, "im v1 room message")
 * ck_{i+1} = HKDF(ck_i, room_id, "im v1 room chain")
 * ROOM_KEY = u8 version || room_id[16] || bytes8(name) || epoch u32 || index u32
 *            || ck_index[32] || ed25519_public[32]
 * ```
 *
 * {@link SenderChain} is our own chain; {@link ReceiverChain} another
 * member's, as we hold it: keys derived ahead and kept for messages that
 * arrive out of order (at most {@link ROOM_MAX_SKIP}), each used once.
 * Chain keys are wiped as soon as the next one is derived (forward secrecy
 * inside the chain). Pure: no I/O; the states are JSON for the caller to
 * keep.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReceiverChain, SenderChain } from "./room_chain.ts";
 * const roomId = new Uint8Array(16).fill(3);
 * const mine = SenderChain.fresh(roomId);
 * const { index, chainKey } = mine.current();
 * const theirs = new ReceiverChain({
 *   roomId, name: "team", epoch: 1, index, chainKey, signingKey: new Uint8Array(32),
 * });
 * const m0 = mine.next(), m1 = mine.next();
 * assert.deepEqual(theirs.keyFor(1), m1.messageKey); // out of order
 * theirs.use(1);
 * assert.deepEqual(theirs.keyFor(0), m0.messageKey);
 * ```
 * @module
 */

import {
  ByteReader,
  ByteWriter,
  fromUtf8,
  isImError,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import {
  deriveKeySync,
  ED25519_PUBLIC_BYTES,
  Label,
  SHA256_BYTES,
} from "../crypto/mod.ts";
import { ROOM_ID_BYTES, ROOM_VERSION } from "./room_list.ts";
import { isValidUsername } from "./username.ts";

/**
 * How many message keys a receiver derives ahead of the highest index it
 * saw, and how many skipped keys it keeps per chain (section 10.2, 10.3:
 * `room-gap`).
 */
export const ROOM_MAX_SKIP = 1000;
/** Bytes of a chain key and of a message key. */
const KEY_BYTES = SHA256_BYTES;
/** Largest u32: message indexes and epochs. */
const U32_MAX = 0xffff_ffff;

/** A `ROOM_KEY`, decoded (section 10.2). */
export interface RoomKey {
  /** The room's `room_id`, 16 bytes. */
  readonly roomId: Uint8Array;
  /** The room's name (rule 2.9). */
  readonly name: string;
  /** The epoch the chain is for, from 1. */
  readonly epoch: number;
  /** The index of `chainKey`: the first message it opens. */
  readonly index: number;
  /** `ck_index`, 32 bytes (secret). */
  readonly chainKey: Uint8Array;
  /** The chain's Ed25519 public key, 32 bytes: it signs each message. */
  readonly signingKey: Uint8Array;
}

/** A {@link SenderChain} as JSON: base64 (RFC 4648 section 4) for bytes. */
export interface SenderChainState {
  /** The room's `room_id`. */
  readonly roomId: string;
  /** `ck_index` (secret). */
  readonly chainKey: string;
  /** The index of the next message. */
  readonly index: number;
}

/** A {@link ReceiverChain} as JSON: base64 (RFC 4648 section 4) for bytes. */
export interface ReceiverChainState {
  /** The room's `room_id`. */
  readonly roomId: string;
  /** The epoch the chain is for. */
  readonly epoch: number;
  /** The chain's Ed25519 public key. */
  readonly signingKey: string;
  /** `ck_position` (secret); null once frozen. */
  readonly chainKey: string | null;
  /** The index of `chainKey`: every index below it is used, skipped or lost. */
  readonly position: number;
  /** Whether a new epoch began: nothing past `position` is derived. */
  readonly frozen: boolean;
  /** Skipped indexes and their message keys (secret), oldest first. */
  readonly skipped: readonly (readonly [number, string])[];
}

function malformed(what: string, why: string): ProtocolError {
  return new ProtocolError("room-malformed", `Cannot read ${what}: ${why}`);
}

function checkIndex(index: number, what: string): void {
  if (!Number.isInteger(index) || index < 0 || index > U32_MAX) {
    throw malformed(what, `index: expected 0 to ${U32_MAX}, got ${index}`);
  }
}

function checkLength(b: Uint8Array, n: number, field: string, what: string) {
  if (b.length !== n) {
    throw malformed(what, `${field}: expected ${n} bytes, got ${b.length}`);
  }
}

function checkRoomKey(k: RoomKey, what: string): void {
  checkLength(k.roomId, ROOM_ID_BYTES, "room_id", what);
  if (!isValidUsername(k.name)) {
    throw malformed(what, `name: invalid room name "${k.name.slice(0, 40)}"`);
  }
  if (!Number.isInteger(k.epoch) || k.epoch < 1 || k.epoch > U32_MAX) {
    throw malformed(what, `epoch: expected 1 to ${U32_MAX}, got ${k.epoch}`);
  }
  checkIndex(k.index, what);
  checkLength(k.chainKey, KEY_BYTES, "chain key", what);
  checkLength(k.signingKey, ED25519_PUBLIC_BYTES, "signing key", what);
}

/**
 * Base64 of a state field back to bytes of the expected length.
 * @throws {ProtocolError} `room-malformed`
 */
function b64(s: unknown, n: number, field: string, what: string): Uint8Array {
  let b: Uint8Array;
  try {
    b = Uint8Array.fromBase64(s as string, { lastChunkHandling: "strict" });
  } catch {
    throw malformed(what, `${field} is not base64`);
  }
  checkLength(b, n, field, what);
  return b;
}

/** mk_i = HKDF(ck_i, room_id, "im v1 room message"). */
function messageKey(ck: Uint8Array, roomId: Uint8Array): Uint8Array {
  return deriveKeySync(ck, roomId, Label.ROOM_MESSAGE);
}

/** ck_{i+1} = HKDF(ck_i, room_id, "im v1 room chain"). */
function nextChainKey(ck: Uint8Array, roomId: Uint8Array): Uint8Array {
  return deriveKeySync(ck, roomId, Label.ROOM_CHAIN);
}

/**
 * Encode a `ROOM_KEY` (section 10.2): `u8 version || room_id[16] ||
 * bytes8(name) || epoch u32 || index u32 || ck[32] || ed25519_public[32]`.
 * @param k the key
 * @returns its bytes (secret: they hold the chain key)
 * @throws {ProtocolError} `room-malformed` for a field that would not
 *   decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRoomKey, encodeRoomKey } from "./room_chain.ts";
 * const k = { roomId: new Uint8Array(16), name: "r", epoch: 2, index: 5,
 *   chainKey: new Uint8Array(32).fill(1), signingKey: new Uint8Array(32).fill(2) };
 * const b = encodeRoomKey(k);
 * assert.equal(b.length, 1 + 16 + 2 + 4 + 4 + 32 + 32);
 * assert.deepEqual(decodeRoomKey(b), k);
 * ```
 */
export function encodeRoomKey(k: RoomKey): Uint8Array {
  checkRoomKey(k, "ROOM_KEY");
  return new ByteWriter().u8(ROOM_VERSION).bytes(k.roomId)
    .bytes8(utf8(k.name)).u32(k.epoch).u32(k.index).bytes(k.chainKey)
    .bytes(k.signingKey).finish();
}

/**
 * Decode a `ROOM_KEY` (section 10.2): version 1, a valid room name (rule
 * 2.9), `epoch` from 1, nothing after the keys.
 * @param b the bytes (a mail's room key, plaintext type 2: `MAIL_TYPE_ROOM_KEY`)
 * @returns the key
 * @throws {ProtocolError} `room-malformed`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRoomKey } from "./room_chain.ts";
 * assert.throws(() => decodeRoomKey(new Uint8Array(87)), { code: "room-malformed" });
 * ```
 */
export function decodeRoomKey(b: Uint8Array): RoomKey {
  const what = "ROOM_KEY";
  try {
    const r = new ByteReader(b, what);
    const version = r.u8();
    if (version !== ROOM_VERSION) {
      throw malformed(what, `version ${version}, expected ${ROOM_VERSION}`);
    }
    const roomId = r.bytes(ROOM_ID_BYTES);
    const name = fromUtf8(r.bytes8(), `${what} name`);
    const epoch = r.u32();
    const index = r.u32();
    const chainKey = r.bytes(KEY_BYTES);
    const signingKey = r.bytes(ED25519_PUBLIC_BYTES);
    r.end();
    const k = { roomId, name, epoch, index, chainKey, signingKey };
    checkRoomKey(k, what);
    return k;
  } catch (e) {
    if (isImError(e) && e.code !== "room-malformed") {
      throw malformed(what, e.message);
    }
    throw e;
  }
}

/** Our own chain for one room and epoch (section 10.2). */
export class SenderChain {
  #roomId: Uint8Array;
  #ck: Uint8Array;
  #index: number;

  /**
   * A new chain: `ck_0` random, index 0.
   * @param roomId the room's `room_id`
   * @returns the chain
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SenderChain } from "./room_chain.ts";
   * assert.equal(SenderChain.fresh(new Uint8Array(16)).index, 0);
   * ```
   */
  static fresh(roomId: Uint8Array): SenderChain {
    const ck = randomBytes(KEY_BYTES);
    try {
      return new SenderChain(roomId, ck, 0);
    } finally {
      wipe(ck);
    }
  }

  /**
   * A chain at `ck_index` (copied: the caller's bytes are its own).
   * @param roomId the room's `room_id`, 16 bytes
   * @param chainKey `ck_index`, 32 bytes
   * @param index the index of the next message, 0 to 2^32
   * @throws {ProtocolError} `room-malformed` for a wrong length or index
   */
  constructor(roomId: Uint8Array, chainKey: Uint8Array, index: number) {
    const what = "sender chain";
    checkLength(roomId, ROOM_ID_BYTES, "room_id", what);
    checkLength(chainKey, KEY_BYTES, "chain key", what);
    if (!Number.isInteger(index) || index < 0 || index > U32_MAX + 1) {
      throw malformed(
        what,
        `index: expected 0 to ${U32_MAX + 1}, got ${index}`,
      );
    }
    this.#roomId = new Uint8Array(roomId);
    this.#ck = new Uint8Array(chainKey);
    this.#index = index;
  }

  /** The index of the next message. */
  get index(): number {
    return this.#index;
  }

  /**
   * What a `ROOM_KEY` hands out now: a copy of `ck_index` and `index`.
   * @returns the position (the chain key is secret: wipe it once sealed)
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SenderChain } from "./room_chain.ts";
   * const c = SenderChain.fresh(new Uint8Array(16));
   * c.next();
   * assert.equal(c.current().index, 1);
   * ```
   */
  current(): { index: number; chainKey: Uint8Array } {
    return { index: this.#index, chainKey: new Uint8Array(this.#ck) };
  }

  /**
   * The key of message `index`, `mk_index`; the chain then moves to
   * `index + 1` and `ck_index` is wiped.
   * @returns the index and its message key (secret: wipe it once sealed)
   * @throws {ProtocolError} `room-exhausted` past index 2^32-1
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SenderChain } from "./room_chain.ts";
   * const c = SenderChain.fresh(new Uint8Array(16));
   * const a = c.next(), b = c.next();
   * assert.ok(a.index === 0 && b.index === 1 && a.messageKey.toHex() !== b.messageKey.toHex());
   * ```
   */
  next(): { index: number; messageKey: Uint8Array } {
    if (this.#index > U32_MAX) {
      throw new ProtocolError(
        "room-exhausted",
        "Room chain used up: 2^32 messages in one epoch",
      );
    }
    const index = this.#index;
    const mk = messageKey(this.#ck, this.#roomId);
    const ck = nextChainKey(this.#ck, this.#roomId);
    wipe(this.#ck);
    this.#ck = ck;
    this.#index = index + 1;
    return { index, messageKey: mk };
  }

  /**
   * The chain as JSON, for the caller to keep (it holds the chain key).
   * @returns the state
   */
  toJSON(): SenderChainState {
    return {
      roomId: this.#roomId.toBase64(),
      chainKey: this.#ck.toBase64(),
      index: this.#index,
    };
  }

  /**
   * A chain back from {@link SenderChain.toJSON}.
   * @param s the state
   * @returns the chain
   * @throws {ProtocolError} `room-malformed` for a state that does not read
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { SenderChain } from "./room_chain.ts";
   * const c = SenderChain.fresh(new Uint8Array(16));
   * const back = SenderChain.fromJSON(JSON.parse(JSON.stringify(c)));
   * assert.deepEqual(back.next(), c.next());
   * ```
   */
  static fromJSON(s: SenderChainState): SenderChain {
    const what = "sender chain state";
    if (typeof s !== "object" || s === null) {
      throw malformed(what, "not an object");
    }
    return new SenderChain(
      b64(s.roomId, ROOM_ID_BYTES, "room_id", what),
      b64(s.chainKey, KEY_BYTES, "chain key", what),
      s.index,
    );
  }
}

/** Another member's chain for one room and epoch, as we hold it (section 10.2, 10.3). */
export class ReceiverChain {
  #roomId: Uint8Array;
  #epoch: number;
  #signingKey: Uint8Array;
  /** `ck_position`; undefined once frozen. */
  #ck: Uint8Array | undefined;
  #position: number;
  /** Message keys of indexes passed over, by index, oldest first. */
  #skipped = new Map<number, Uint8Array>();

  /**
   * A chain from a `ROOM_KEY` (its bytes are copied).
   * @param key the decoded key
   * @throws {ProtocolError} `room-malformed` for a key that would not
   *   decode
   */
  constructor(key: RoomKey) {
    checkRoomKey(key, "ROOM_KEY");
    this.#roomId = new Uint8Array(key.roomId);
    this.#epoch = key.epoch;
    this.#signingKey = new Uint8Array(key.signingKey);
    this.#ck = new Uint8Array(key.chainKey);
    this.#position = key.index;
  }

  /** The chain's Ed25519 public key (a copy). */
  get signingKey(): Uint8Array {
    return new Uint8Array(this.#signingKey);
  }

  /** The epoch the chain is for. */
  get epoch(): number {
    return this.#epoch;
  }

  /** The index of the next key not derived yet: the highest used, plus one. */
  get position(): number {
    return this.#position;
  }

  /** Whether a new epoch began ({@link ReceiverChain.freeze}). */
  get frozen(): boolean {
    return this.#ck === undefined;
  }

  /**
   * The key of message `index`, without using it up (section 10.3): a
   * skipped key below the position, or one derived ahead of it.
   * @param index the message's index
   * @returns `mk_index` (a copy: the caller wipes it)
   * @throws {ProtocolError} `room-replayed` for an index below the position
   *   with no skipped key (used, below the chain's start, or dropped);
   *   `room-gap` for an index more than {@link ROOM_MAX_SKIP} past the
   *   position; `room-lost` for an index at or past a frozen chain's end
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ReceiverChain } from "./room_chain.ts";
   * const c = new ReceiverChain({ roomId: new Uint8Array(16), name: "r", epoch: 1, index: 0,
   *   chainKey: new Uint8Array(32), signingKey: new Uint8Array(32) });
   * assert.throws(() => c.keyFor(1001), { code: "room-gap" });
   * c.use(0);
   * assert.throws(() => c.keyFor(0), { code: "room-replayed" });
   * ```
   */
  keyFor(index: number): Uint8Array {
    this.#check(index);
    const kept = this.#skipped.get(index);
    if (kept !== undefined) return new Uint8Array(kept);
    let ck: Uint8Array = new Uint8Array(this.#ck!);
    for (let i = this.#position; i < index; i++) {
      const next = nextChainKey(ck, this.#roomId);
      wipe(ck);
      ck = next;
    }
    try {
      return messageKey(ck, this.#roomId);
    } finally {
      wipe(ck);
    }
  }

  /**
   * Message `index` was opened: its key is used up (wiped). Passing over
   * indexes keeps their keys for late messages, at most
   * {@link ROOM_MAX_SKIP}, the oldest dropped.
   * @param index the message's index
   * @throws {ProtocolError} as {@link ReceiverChain.keyFor}
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ReceiverChain } from "./room_chain.ts";
   * const c = new ReceiverChain({ roomId: new Uint8Array(16), name: "r", epoch: 1, index: 0,
   *   chainKey: new Uint8Array(32), signingKey: new Uint8Array(32) });
   * c.use(2);
   * assert.equal(c.position, 3);
   * c.use(0);
   * assert.throws(() => c.use(0), { code: "room-replayed" });
   * ```
   */
  use(index: number): void {
    this.#check(index);
    const kept = this.#skipped.get(index);
    if (kept !== undefined) {
      wipe(kept);
      this.#skipped.delete(index);
      return;
    }
    let ck = this.#ck!;
    for (let i = this.#position; i <= index; i++) {
      const mk = messageKey(ck, this.#roomId);
      if (i < index) this.#skipped.set(i, mk);
      else wipe(mk);
      const next = nextChainKey(ck, this.#roomId);
      wipe(ck);
      ck = next;
    }
    this.#ck = ck;
    this.#position = index + 1;
    for (const [i, mk] of this.#skipped) {
      if (this.#skipped.size <= ROOM_MAX_SKIP) break;
      wipe(mk);
      this.#skipped.delete(i);
    }
  }

  /**
   * A new epoch began (section 10.3, last sentence): from now on only the
   * skipped keys below the current position open messages; the chain key
   * is wiped and nothing past it is derived.
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ReceiverChain } from "./room_chain.ts";
   * const c = new ReceiverChain({ roomId: new Uint8Array(16), name: "r", epoch: 1, index: 0,
   *   chainKey: new Uint8Array(32), signingKey: new Uint8Array(32) });
   * c.use(1);
   * c.freeze();
   * assert.equal(c.keyFor(0).length, 32);
   * assert.throws(() => c.keyFor(2), { code: "room-lost" });
   * ```
   */
  freeze(): void {
    if (this.#ck !== undefined) wipe(this.#ck);
    this.#ck = undefined;
  }

  /**
   * Throw unless a key for `index` can be had (section 10.3's order:
   * `room-replayed`, `room-gap`, `room-lost`).
   */
  #check(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index > U32_MAX) {
      throw new ProtocolError(
        "room-malformed",
        `Room message index ${index} is out of range`,
      );
    }
    if (index < this.#position) {
      if (this.#skipped.has(index)) return;
      throw new ProtocolError(
        "room-replayed",
        `Room message #${index} refused: its key is used up or was never held (the chain is at #${this.#position})`,
      );
    }
    if (index - this.#position > ROOM_MAX_SKIP) {
      throw new ProtocolError(
        "room-gap",
        `Room message #${index} refused: more than ${ROOM_MAX_SKIP} past the chain's position #${this.#position}`,
      );
    }
    if (this.#ck === undefined) {
      throw new ProtocolError(
        "room-lost",
        `Room message #${index} refused: written in epoch ${this.#epoch} after a new epoch began (the chain ended at #${this.#position})`,
      );
    }
  }

  /**
   * The chain as JSON, for the caller to keep (it holds secret keys).
   * @returns the state
   */
  toJSON(): ReceiverChainState {
    return {
      roomId: this.#roomId.toBase64(),
      epoch: this.#epoch,
      signingKey: this.#signingKey.toBase64(),
      chainKey: this.#ck === undefined ? null : this.#ck.toBase64(),
      position: this.#position,
      frozen: this.#ck === undefined,
      skipped: [...this.#skipped].map(([i, mk]) => [i, mk.toBase64()] as const),
    };
  }

  /**
   * A chain back from {@link ReceiverChain.toJSON}.
   * @param s the state
   * @returns the chain
   * @throws {ProtocolError} `room-malformed` for a state that does not read
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ReceiverChain } from "./room_chain.ts";
   * const c = new ReceiverChain({ roomId: new Uint8Array(16), name: "r", epoch: 1, index: 0,
   *   chainKey: new Uint8Array(32), signingKey: new Uint8Array(32) });
   * c.use(3);
   * const back = ReceiverChain.fromJSON(JSON.parse(JSON.stringify(c)));
   * assert.deepEqual(back.keyFor(1), c.keyFor(1));
   * assert.throws(() => back.keyFor(3), { code: "room-replayed" });
   * ```
   */
  static fromJSON(s: ReceiverChainState): ReceiverChain {
    const what = "receiver chain state";
    if (typeof s !== "object" || s === null) {
      throw malformed(what, "not an object");
    }
    const roomId = b64(s.roomId, ROOM_ID_BYTES, "room_id", what);
    const signingKey = b64(
      s.signingKey,
      ED25519_PUBLIC_BYTES,
      "signing key",
      what,
    );
    if (typeof s.frozen !== "boolean" || (s.chainKey === null) !== s.frozen) {
      throw malformed(what, "a chain key must be held exactly when not frozen");
    }
    const ck = s.frozen
      ? new Uint8Array(KEY_BYTES)
      : b64(s.chainKey, KEY_BYTES, "chain key", what);
    if (
      !Number.isInteger(s.position) || s.position < 0 ||
      s.position > U32_MAX + 1
    ) {
      throw malformed(what, `position ${s.position} is out of range`);
    }
    // The constructor takes a ROOM_KEY (whose name the chain does not keep:
    // any valid one does) and an index up to 2^32-1; the position is set
    // after.
    const c = new ReceiverChain({
      roomId,
      name: "state",
      epoch: s.epoch,
      index: 0,
      chainKey: ck,
      signingKey,
    });
    wipe(ck);
    c.#position = s.position;
    if (s.frozen) c.freeze();
    if (!Array.isArray(s.skipped) || s.skipped.length > ROOM_MAX_SKIP) {
      throw malformed(what, `expected at most ${ROOM_MAX_SKIP} skipped keys`);
    }
    let last = -1;
    for (const entry of s.skipped) {
      const [i, mk] = Array.isArray(entry) ? entry : [];
      if (
        typeof i !== "number" || !Number.isInteger(i) || i <= last ||
        i >= s.position
      ) {
        throw malformed(what, `skipped index ${i} is out of order or range`);
      }
      c.#skipped.set(i, b64(mk, KEY_BYTES, "skipped key", what));
      last = i;
    }
    return c;
  }
}
