/**
 * {@link RoomReader}: one room's receiving side (PROTOCOL.md section
 * 10.3): the other members' chains it holds, by sender and epoch (from the
 * `ROOM_KEY`s of section 10.2), and the receiver's checks in section
 * 10.3's order over them; the message's layout, sealing and opening are
 * `room_msg.ts`'s. Pure: no I/O.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519 } from "../crypto/mod.ts";
 * import { SenderChain } from "./room_chain.ts";
 * import { sealRoomMessage } from "./room_msg.ts";
 * import { RoomReader } from "./room_reader.ts";
 * const roomId = new Uint8Array(16).fill(7), signing = await generateEd25519(false);
 * const chain = SenderChain.fresh(roomId);
 * const reader = new RoomReader(roomId, "team");
 * reader.addChain("A", { roomId, name: "team", epoch: 1, ...chain.current(), signingKey: signing.publicRaw });
 * const { index, messageKey } = chain.next();
 * const msg = await sealRoomMessage({
 *   roomId, name: "team", sender: "A", epoch: 1, index, time: Date.now(), messageKey, signing, text: "hi all",
 * });
 * const got = await reader.open(msg, { now: Date.now(), isMember: () => true });
 * assert.equal(got.text, "hi all");
 * ```
 * @module
 */

import { constantTimeEqual, ProtocolError, wipe } from "../util/mod.ts";
import { checkName, malformed, U32_MAX } from "./_room_msg.ts";
import {
  ReceiverChain,
  type ReceiverChainState,
  ROOM_MAX_SKIP,
  type RoomKey,
} from "./room_chain.ts";
import { ROOM_ID_BYTES } from "./room_list.ts";
import {
  checkRoomTime,
  decodeRoomMessage,
  openRoomMessage,
  type RoomMessageHeader,
  verifyRoomSignature,
} from "./room_msg.ts";

/** A {@link RoomReader} as JSON. */
export interface RoomReaderState {
  /** Base64 of the `room_id`. */
  readonly roomId: string;
  /** The room's name. */
  readonly name: string;
  /** The newest epoch begun ({@link RoomReader.beginEpoch}), 0 for none. */
  readonly epoch: number;
  /** Every chain held, with its sender. */
  readonly chains: readonly {
    readonly sender: string;
    readonly chain: ReceiverChainState;
  }[];
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Is `fresh`, a chain from a key at `index`, the held chain itself (a key
 * sent again)? Then the held one opens all the new one would, and more.
 * @param held the chain held, not frozen, at or before `index`
 * @param fresh the chain from the new key
 * @param index the new key's index
 * @returns true when both have the same signing key and message key at `index`
 */
function onHeldChain(
  held: ReceiverChain,
  fresh: ReceiverChain,
  index: number,
): boolean {
  if (!sameBytes(held.signingKey, fresh.signingKey)) return false;
  if (index - held.position > ROOM_MAX_SKIP) return false;
  const a = held.keyFor(index), b = fresh.keyFor(index);
  try {
    return constantTimeEqual(a, b);
  } finally {
    wipe(a, b);
  }
}

/** The key of a chain in the reader's map: the epoch, then the sender. */
function chainId(sender: string, epoch: number): string {
  return `${epoch} ${sender}`;
}

/**
 * One room's receiving side (section 10.3): the other members' chains it
 * holds, by sender and epoch, and the receiver's checks in order.
 */
export class RoomReader {
  #roomId: Uint8Array;
  #name: string;
  /** The newest epoch begun; 0 before any. */
  #epoch = 0;
  #chains = new Map<string, { sender: string; chain: ReceiverChain }>();

  /**
   * A reader for one room that holds no chain yet ({@link RoomReader.addChain}).
   * @param roomId the room's `room_id`, 16 bytes
   * @param name the room's name
   * @throws {ProtocolError} `room-malformed` for a wrong length or name
   */
  constructor(roomId: Uint8Array, name: string) {
    if (roomId.length !== ROOM_ID_BYTES) {
      throw malformed(`room_id: expected ${ROOM_ID_BYTES} bytes`);
    }
    checkName(name, "name");
    this.#roomId = new Uint8Array(roomId);
    this.#name = name;
  }

  /**
   * Hold `sender`'s chain of `key.epoch`, from the `ROOM_KEY` it sent
   * (section 10.2). A key for a chain already held replaces it, unless it
   * would rewind it (an index below the held chain's position) or the held
   * chain is frozen: then it is refused and the held one kept. A key of the
   * held chain itself (sent again, at or past its position) changes
   * nothing, so no skipped key is lost. A chain of an epoch older than the
   * newest begun is held frozen.
   * @param sender the member who sent the key (the mail's authenticated
   *   sender)
   * @param key the decoded key
   * @throws {ProtocolError} `room-unknown` for a key of another room;
   *   `room-replayed` for a key that would rewind a held chain or replace
   *   a frozen one;
   *   `room-malformed` for a bad sender name
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RoomReader } from "./room_reader.ts";
   * const roomId = new Uint8Array(16), r = new RoomReader(roomId, "r");
   * const key = { roomId, name: "r", epoch: 1, index: 4, chainKey: new Uint8Array(32), signingKey: new Uint8Array(32) };
   * r.addChain("A", key);
   * assert.ok(r.hasChain("A", 1) && !r.hasChain("A", 2));
   * assert.throws(() => r.addChain("A", { ...key, name: "s" }), { code: "room-unknown" });
   * ```
   */
  addChain(sender: string, key: RoomKey): void {
    checkName(sender, "sender");
    if (!sameBytes(key.roomId, this.#roomId) || key.name !== this.#name) {
      throw new ProtocolError(
        "room-unknown",
        `Room key from ${sender} refused: it is for room "${key.name}" (${key.roomId.toHex()}), not "${this.#name}"`,
      );
    }
    const id = chainId(sender, key.epoch);
    const held = this.#chains.get(id)?.chain;
    const chain = new ReceiverChain(key);
    if (held !== undefined) {
      if (held.frozen || key.index < held.position) {
        chain.freeze();
        throw new ProtocolError(
          "room-replayed",
          `Room key from ${sender} refused: the chain of epoch ${key.epoch} held is ${
            held.frozen
              ? "closed"
              : `at #${held.position}, the key at #${key.index}`
          }`,
        );
      }
      if (onHeldChain(held, chain, key.index)) {
        chain.freeze();
        return;
      }
    }
    if (key.epoch < this.#epoch) chain.freeze();
    this.#chains.set(id, { sender, chain });
  }

  /**
   * Is a chain of `sender` held for `epoch`?
   * @param sender the member
   * @param epoch the epoch
   * @returns true when held (frozen or not)
   */
  hasChain(sender: string, epoch: number): boolean {
    return this.#chains.has(chainId(sender, epoch));
  }

  /**
   * A new epoch began (section 10.3, last sentence): every chain of an
   * older epoch is frozen, so its messages open only if their index was
   * below the chain's position now. An epoch not newer than the newest
   * begun changes nothing.
   * @param epoch the new epoch
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RoomReader } from "./room_reader.ts";
   * const roomId = new Uint8Array(16), r = new RoomReader(roomId, "r");
   * r.beginEpoch(2);
   * assert.equal(r.epoch, 2);
   * ```
   */
  beginEpoch(epoch: number): void {
    if (!(epoch > this.#epoch)) return;
    this.#epoch = epoch;
    for (const { chain } of this.#chains.values()) {
      if (chain.epoch < epoch) chain.freeze();
    }
  }

  /** The newest epoch begun ({@link RoomReader.beginEpoch}), 0 before any. */
  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Run the receiver's checks of section 10.3 in order and return the
   * text; the first that fails decides: `room-malformed` (it does not
   * decode), `room-unknown` (another room's `room_id` or name),
   * `not-a-member` (`isMember(sender, epoch)` is false), `room-stale` (the
   * time window), `room-no-key` (no chain of the sender for that epoch),
   * `room-replayed`, `room-gap`, `room-lost` (the chain,
   * {@link ReceiverChain.keyFor}), `room-tampered` (the tag), then
   * `room-malformed` (the plaintext), then `room-forged` (the signature).
   * Only a message that passed all of them uses its key up.
   * @param bytes the `ROOM_MSG`
   * @param a `now`, ms (server's clock); `isMember`, the members at an
   *   epoch as the caller's verified list and leaves say (`membersAt`)
   * @returns the header and the text
   * @throws {ProtocolError} the code of the first check that fails
   */
  async open(
    bytes: Uint8Array,
    a: { now: number; isMember: (sender: string, epoch: number) => boolean },
  ): Promise<{ header: RoomMessageHeader; text: string }> {
    const m = decodeRoomMessage(bytes);
    const h = m.header;
    if (!sameBytes(h.roomId, this.#roomId) || h.name !== this.#name) {
      throw new ProtocolError(
        "room-unknown",
        `Room message refused: it is for room "${h.name}" (${h.roomId.toHex()}), not "${this.#name}"`,
      );
    }
    if (!a.isMember(h.sender, h.epoch)) {
      throw new ProtocolError(
        "not-a-member",
        `Room message refused: ${h.sender} is not a member of "${this.#name}" at epoch ${h.epoch}`,
      );
    }
    checkRoomTime(h, a.now);
    const id = chainId(h.sender, h.epoch);
    const chain = this.#chains.get(id)?.chain;
    if (chain === undefined) {
      throw new ProtocolError(
        "room-no-key",
        `Room message refused: no key of ${h.sender} for epoch ${h.epoch} of "${this.#name}"`,
      );
    }
    // The index, then the tag (any byte changed on the way fails here, as
    // `room-tampered`), then the signature: a member who holds the sender's
    // chain can make a tag, not the sender's signature (`room-forged`).
    const mk = chain.keyFor(h.index);
    let text: string;
    try {
      text = openRoomMessage(m, mk);
    } finally {
      wipe(mk);
    }
    await verifyRoomSignature(m, chain.signingKey);
    // Another open() may have run while the signature was checked: a chain
    // replaced, or this index used by a copy. Check both again.
    if (this.#chains.get(id)?.chain !== chain) return this.open(bytes, a);
    wipe(chain.keyFor(h.index));
    chain.use(h.index);
    return { header: h, text };
  }

  /**
   * The reader as JSON, for the caller to keep (it holds secret keys).
   * @returns the state
   */
  toJSON(): RoomReaderState {
    return {
      roomId: this.#roomId.toBase64(),
      name: this.#name,
      epoch: this.#epoch,
      chains: [...this.#chains.values()].map(({ sender, chain }) => ({
        sender,
        chain: chain.toJSON(),
      })),
    };
  }

  /**
   * A reader back from {@link RoomReader.toJSON}.
   * @param s the state
   * @returns the reader
   * @throws {ProtocolError} `room-malformed` for a state that does not read
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { RoomReader } from "./room_reader.ts";
   * const roomId = new Uint8Array(16), r = new RoomReader(roomId, "r");
   * r.addChain("A", { roomId, name: "r", epoch: 1, index: 0, chainKey: new Uint8Array(32), signingKey: new Uint8Array(32) });
   * r.beginEpoch(2);
   * const back = RoomReader.fromJSON(JSON.parse(JSON.stringify(r)));
   * assert.ok(back.hasChain("A", 1) && back.epoch === 2);
   * ```
   */
  static fromJSON(s: RoomReaderState): RoomReader {
    if (typeof s !== "object" || s === null || !Array.isArray(s.chains)) {
      throw malformed("reader state: not an object with chains");
    }
    let roomId: Uint8Array;
    try {
      roomId = Uint8Array.fromBase64(s.roomId, { lastChunkHandling: "strict" });
    } catch {
      throw malformed("reader state: room_id is not base64");
    }
    const r = new RoomReader(roomId, s.name);
    if (!Number.isInteger(s.epoch) || s.epoch < 0 || s.epoch > U32_MAX) {
      throw malformed(`reader state: epoch ${s.epoch} is out of range`);
    }
    r.#epoch = s.epoch;
    for (const { sender, chain } of s.chains) {
      checkName(sender, "sender");
      const c = ReceiverChain.fromJSON(chain);
      r.#chains.set(chainId(sender, c.epoch), { sender, chain: c });
    }
    return r;
  }
}
