/**
 * {@link ReceiverChain}: another member's chain for one room and epoch, as
 * we hold it (PROTOCOL.md sections 10.2, 10.3): keys derived ahead and kept
 * for messages that arrive out of order (at most {@link ROOM_MAX_SKIP}),
 * each used once; frozen when a new epoch begins; and its state as JSON.
 * @module
 */

import { ProtocolError, wipe } from "../util/mod.ts";
import { ED25519_PUBLIC_BYTES } from "../crypto/mod.ts";
import {
  b64,
  checkRoomKey,
  KEY_BYTES,
  messageKey,
  nextChainKey,
  U32_MAX,
} from "./_room_chain.ts";
import { malformed } from "./_room.ts";
import type { RoomKey } from "./room_key.ts";
import { ROOM_ID_BYTES } from "./room_id.ts";

/**
 * How many message keys a receiver derives ahead of the highest index it
 * saw, and how many skipped keys it keeps per chain (section 10.2, 10.3:
 * `room-gap`).
 */
export const ROOM_MAX_SKIP = 1000;
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
   * import { ReceiverChain } from "./room_receiver_chain.ts";
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
   * import { ReceiverChain } from "./room_receiver_chain.ts";
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
   * import { ReceiverChain } from "./room_receiver_chain.ts";
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
   * import { ReceiverChain } from "./room_receiver_chain.ts";
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
