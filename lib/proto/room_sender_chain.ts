/**
 * {@link SenderChain}: our own chain of message keys for one room and epoch
 * (PROTOCOL.md section 10.2), its position handed out in a `ROOM_KEY`, each
 * chain key wiped once the next is derived; and its state as JSON.
 * @module
 */

import { ProtocolError, randomBytes, wipe } from "../util/mod.ts";
import {
  b64,
  checkLength,
  KEY_BYTES,
  messageKey,
  nextChainKey,
  U32_MAX,
} from "./_room_chain.ts";
import { malformed } from "./_room.ts";
import { ROOM_ID_BYTES } from "./room_id.ts";

/** A {@link SenderChain} as JSON: base64 (RFC 4648 section 4) for bytes. */
export interface SenderChainState {
  /** The room's `room_id`. */
  readonly roomId: string;
  /** `ck_index` (secret). */
  readonly chainKey: string;
  /** The index of the next message. */
  readonly index: number;
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
   * import { SenderChain } from "./room_sender_chain.ts";
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
   * import { SenderChain } from "./room_sender_chain.ts";
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
   * import { SenderChain } from "./room_sender_chain.ts";
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
   * import { SenderChain } from "./room_sender_chain.ts";
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
