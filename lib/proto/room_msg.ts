/**
 * The room message (PROTOCOL.md section 10.3): sealed once for all members
 * under a key of the sender's chain (section 10.2), signed with the
 * chain's Ed25519 key, read by each member with the chain it holds.
 *
 * ```
 * ROOM_MSG   = header || ciphertext || tag[32] || sig[64]
 * header     = u8 version || room_id[16] || bytes8(name) || bytes8(sender) || epoch u32 || index u32 || time u64
 * plaintext  = u8 type (0x01 text) || u32 len || text[len] || zero bytes up to the bucket (section 9.3)
 * enc, ivk, mac = HKDF(mk_i, H(header), "im v1 room enc" | "im v1 room iv" | "im v1 room mac")
 * IV         = HMAC(ivk, header)
 * ciphertext = MD-CFB(enc, IV, plaintext)
 * tag        = HMAC(mac, header || ciphertext)
 * sig        = Ed25519(sender's chain key pair, "im v1 room message signature" || 0x00 || header || ciphertext || tag)
 * ```
 *
 * The MAC is shared by every member, so only the signature shows who
 * wrote a message. {@link RoomReader} runs the receiver's checks in
 * section 10.3's order over the chains it holds. Pure: no I/O.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519 } from "../crypto/mod.ts";
 * import { SenderChain } from "./room_chain.ts";
 * import { RoomReader, sealRoomMessage } from "./room_msg.ts";
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

import {
  ByteReader,
  ByteWriter,
  concat,
  constantTimeEqual,
  fromUtf8,
  isImError,
  ProtocolError,
  utf8,
  wipe,
} from "../util/mod.ts";
import {
  deriveKeySync,
  ED25519_SIGNATURE_BYTES,
  type Ed25519KeyPair,
  hmacSha256,
  Label,
  mdcfbDecrypt,
  mdcfbEncrypt,
  sha256,
  SHA256_BYTES,
  signEd25519,
  verifyEd25519,
} from "../crypto/mod.ts";
import { signedContent } from "./_login.ts";
import { bucketOf } from "./padding.ts";
import {
  ReceiverChain,
  type ReceiverChainState,
  ROOM_MAX_SKIP,
  type RoomKey,
} from "./room_chain.ts";
import { ROOM_ID_BYTES, ROOM_VERSION } from "./room_list.ts";
import { isValidUsername } from "./username.ts";

/** The longest text a room message may carry, in UTF-8 bytes: 45 KiB, as a mail (section 9.3). */
export const MAX_ROOM_TEXT_BYTES = 46_080;
/** How far in the past a room message's `time` may lie: 31 days (section 10.3). */
export const ROOM_MAX_AGE_MS = 31 * 24 * 60 * 60 * 1000;
/** How far in the future a room message's `time` may lie: 120 s (section 10.3). */
export const ROOM_MAX_SKEW_MS = 120_000;

/** The plaintext's type byte of a text (section 10.3). */
const TYPE_TEXT = 0x01;
/** Bytes before the text in a plaintext: `u8 type || u32 len`. */
const PLAINTEXT_HEAD_BYTES = 5;
/** Bytes of the tag (HMAC-SHA256). */
const TAG_BYTES = SHA256_BYTES;
/** Bytes of a message key. */
const KEY_BYTES = SHA256_BYTES;
/** The longest ciphertext: the bucket of the longest text. */
const MAX_CIPHERTEXT_BYTES = bucketOf(
  PLAINTEXT_HEAD_BYTES + MAX_ROOM_TEXT_BYTES,
);
/** Largest u32: epochs and indexes. */
const U32_MAX = 0xffff_ffff;

/** A decoded `ROOM_MSG` header (section 10.3). */
export interface RoomMessageHeader {
  /** Always {@link ROOM_VERSION}. */
  readonly version: number;
  /** The room's `room_id`, 16 bytes. */
  readonly roomId: Uint8Array;
  /** The room's name. */
  readonly name: string;
  /** Who wrote it, by its own word (checked by the signature). */
  readonly sender: string;
  /** The membership epoch of the sender's chain, from 1. */
  readonly epoch: number;
  /** The message's index in the sender's chain, from 0. */
  readonly index: number;
  /** When it was written, ms since the epoch (server's clock, as the sender read it). */
  readonly time: number;
}

/** A `ROOM_MSG` split into its parts, not yet authenticated. */
export interface DecodedRoomMessage {
  /** The header's fields. */
  readonly header: RoomMessageHeader;
  /** The header's bytes, as the keys, IV, tag and signature cover them. */
  readonly headerBytes: Uint8Array;
  /** MD-CFB of the padded plaintext: as long as its bucket. */
  readonly ciphertext: Uint8Array;
  /** HMAC-SHA256, 32 bytes. */
  readonly tag: Uint8Array;
  /** Ed25519, 64 bytes. */
  readonly sig: Uint8Array;
}

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

function malformed(why: string): ProtocolError {
  return new ProtocolError(
    "room-malformed",
    `Cannot read room message: ${why}`,
  );
}

function checkName(name: string, field: string): void {
  if (!isValidUsername(name)) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}...` : name;
    throw malformed(`${field}: invalid name "${shown}"`);
  }
}

function checkU32(n: number, min: number, field: string): void {
  if (!Number.isInteger(n) || n < min || n > U32_MAX) {
    throw malformed(`${field}: expected ${min} to ${U32_MAX}, got ${n}`);
  }
}

/** One message's keys (section 10.2): `HKDF(mk_i, H(header), label)`. */
function messageKeys(
  mk: Uint8Array,
  headerBytes: Uint8Array,
): { enc: Uint8Array; ivk: Uint8Array; mac: Uint8Array } {
  const salt = sha256(headerBytes);
  return {
    enc: deriveKeySync(mk, salt, Label.ROOM_ENC),
    ivk: deriveKeySync(mk, salt, Label.ROOM_IV),
    mac: deriveKeySync(mk, salt, Label.ROOM_MAC),
  };
}

/** What the chain's key pair signs: `label || 0x00 || header || ciphertext || tag`. */
function signedBytes(
  headerBytes: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
): Uint8Array {
  return signedContent(
    Label.ROOM_MESSAGE_SIGNATURE,
    concat(headerBytes, ciphertext, tag),
  );
}

/**
 * Seal a room message (PROTOCOL.md section 10.3): the text padded with
 * zeros to its bucket (section 9.3's rule), encrypted and tagged under the
 * keys of `mk_index`, then signed with the chain's Ed25519 key. The
 * message key is not wiped here: the caller wipes it once sent.
 * @param a the header's fields (`roomId`, `name`, `sender`, `epoch`,
 *   `index`, `time` in ms, server's clock); `messageKey`, the chain's
 *   `mk_index` ({@link SenderChain.next}); `signing`, the chain's key pair;
 *   the `text`
 * @returns the `ROOM_MSG` bytes
 * @throws {ProtocolError} `message-too-large` for a text over
 *   {@link MAX_ROOM_TEXT_BYTES} UTF-8 bytes; `room-malformed` for a field
 *   that would not decode; `bad-length` for a message key of the wrong
 *   size
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519 } from "../crypto/mod.ts";
 * import { decodeRoomMessage, sealRoomMessage } from "./room_msg.ts";
 * const a = { roomId: new Uint8Array(16), name: "r", sender: "A", epoch: 1, index: 0, time: 0,
 *   messageKey: new Uint8Array(32), signing: await generateEd25519(false) };
 * const m = decodeRoomMessage(await sealRoomMessage({ ...a, text: "hi" }));
 * assert.equal(m.ciphertext.length, 64);
 * await assert.rejects(sealRoomMessage({ ...a, text: "x".repeat(46_081) }), { code: "message-too-large" });
 * ```
 */
export async function sealRoomMessage(a: {
  roomId: Uint8Array;
  name: string;
  sender: string;
  epoch: number;
  index: number;
  time: number;
  messageKey: Uint8Array;
  signing: Ed25519KeyPair;
  text: string;
}): Promise<Uint8Array> {
  const text = utf8(a.text);
  if (text.length > MAX_ROOM_TEXT_BYTES) {
    throw new ProtocolError(
      "message-too-large",
      `Room message of ${text.length} bytes exceeds the limit of ${MAX_ROOM_TEXT_BYTES}`,
    );
  }
  if (a.roomId.length !== ROOM_ID_BYTES) {
    throw malformed(`room_id: expected ${ROOM_ID_BYTES} bytes`);
  }
  checkName(a.name, "name");
  checkName(a.sender, "sender");
  checkU32(a.epoch, 1, "epoch");
  checkU32(a.index, 0, "index");
  if (!Number.isSafeInteger(a.time) || a.time < 0) {
    throw malformed(`time: expected ms since the epoch, got ${a.time}`);
  }
  if (a.messageKey.length !== KEY_BYTES) {
    throw new ProtocolError(
      "bad-length",
      `Room message key: expected ${KEY_BYTES} bytes, got ${a.messageKey.length}`,
    );
  }
  const headerBytes = new ByteWriter().u8(ROOM_VERSION).bytes(a.roomId)
    .bytes8(utf8(a.name)).bytes8(utf8(a.sender)).u32(a.epoch).u32(a.index)
    .u64(BigInt(a.time)).finish();
  // Section 10.3: u8 type || u32 len || text || zero bytes up to the bucket.
  const plaintext = new Uint8Array(
    bucketOf(PLAINTEXT_HEAD_BYTES + text.length),
  );
  plaintext[0] = TYPE_TEXT;
  new DataView(plaintext.buffer).setUint32(1, text.length);
  plaintext.set(text, PLAINTEXT_HEAD_BYTES);
  const keys = messageKeys(a.messageKey, headerBytes);
  const iv = hmacSha256(keys.ivk, headerBytes);
  const ciphertext = mdcfbEncrypt(keys.enc, iv, plaintext);
  const tag = hmacSha256(keys.mac, concat(headerBytes, ciphertext));
  wipe(keys.enc, keys.ivk, keys.mac, iv, plaintext, text);
  const sig = await signEd25519(
    a.signing,
    signedBytes(headerBytes, ciphertext, tag),
  );
  return concat(headerBytes, ciphertext, tag, sig);
}

/**
 * Decode a `ROOM_MSG` (section 10.3): version 1, valid names (rule 2.9),
 * `epoch` from 1, a ciphertext as long as a plaintext bucket (5 bytes at
 * least, no longer than the longest text's), a 32-byte tag and a 64-byte
 * signature. Nothing is authenticated here.
 * @param b the bytes
 * @returns the parts
 * @throws {ProtocolError} `room-malformed`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRoomMessage } from "./room_msg.ts";
 * assert.throws(() => decodeRoomMessage(new Uint8Array(300)), { code: "room-malformed" });
 * ```
 */
export function decodeRoomMessage(b: Uint8Array): DecodedRoomMessage {
  try {
    const r = new ByteReader(b, "room message");
    const version = r.u8();
    if (version !== ROOM_VERSION) {
      throw malformed(`version ${version}, expected ${ROOM_VERSION}`);
    }
    const roomId = r.bytes(ROOM_ID_BYTES);
    const name = fromUtf8(r.bytes8(), "room name");
    checkName(name, "name");
    const sender = fromUtf8(r.bytes8(), "sender");
    checkName(sender, "sender");
    const epoch = r.u32();
    checkU32(epoch, 1, "epoch");
    const index = r.u32();
    const time64 = r.u64();
    if (time64 > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw malformed(`time ${time64} is past the largest time`);
    }
    const headerLength = b.length - r.remaining();
    const ciphertextLength = r.remaining() - TAG_BYTES -
      ED25519_SIGNATURE_BYTES;
    if (
      ciphertextLength < PLAINTEXT_HEAD_BYTES ||
      ciphertextLength > MAX_CIPHERTEXT_BYTES ||
      bucketOf(ciphertextLength) !== ciphertextLength
    ) {
      throw malformed(
        `${r.remaining()} bytes after the header do not hold a padded ciphertext, a tag and a signature`,
      );
    }
    const ciphertext = r.bytes(ciphertextLength);
    const tag = r.bytes(TAG_BYTES);
    const sig = r.bytes(ED25519_SIGNATURE_BYTES);
    r.end();
    return {
      header: {
        version,
        roomId,
        name,
        sender,
        epoch,
        index,
        time: Number(time64),
      },
      headerBytes: b.slice(0, headerLength),
      ciphertext,
      tag,
      sig,
    };
  } catch (e) {
    if (isImError(e) && e.code !== "room-malformed") throw malformed(e.message);
    throw e;
  }
}

/**
 * The time window of section 10.3: a message written more than 31 days
 * ago, or more than 120 s in the future, is refused.
 * @param h the header
 * @param now ms since the epoch (server's clock)
 * @throws {ProtocolError} `room-stale`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkRoomTime, type RoomMessageHeader } from "./room_msg.ts";
 * const h = { time: 1_000_000 } as RoomMessageHeader;
 * checkRoomTime(h, 1_000_000 - 120_000);
 * assert.throws(() => checkRoomTime(h, 1_000_000 - 120_001), { code: "room-stale" });
 * ```
 */
export function checkRoomTime(h: RoomMessageHeader, now: number): void {
  if (h.time < now - ROOM_MAX_AGE_MS || h.time > now + ROOM_MAX_SKEW_MS) {
    throw new ProtocolError(
      "room-stale",
      `Room message refused: written at ${
        new Date(h.time).toISOString()
      }, outside the window of 31 days before now to 120 s after`,
    );
  }
}

/**
 * Check a message's Ed25519 signature with the sender's chain key of its
 * epoch (section 10.3): only the sender holds the private half, which the
 * MAC, shared by all members, cannot show.
 * @param m the decoded message
 * @param signingKey the sender's 32-byte Ed25519 public key (its
 *   `ROOM_KEY`'s)
 * @throws {ProtocolError} `room-forged`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519 } from "../crypto/mod.ts";
 * import { decodeRoomMessage, sealRoomMessage, verifyRoomSignature } from "./room_msg.ts";
 * const [k, other] = await Promise.all([generateEd25519(false), generateEd25519(false)]);
 * const m = decodeRoomMessage(await sealRoomMessage({ roomId: new Uint8Array(16), name: "r", sender: "A",
 *   epoch: 1, index: 0, time: 0, messageKey: new Uint8Array(32), signing: k, text: "hi" }));
 * await verifyRoomSignature(m, k.publicRaw);
 * await assert.rejects(verifyRoomSignature(m, other.publicRaw), { code: "room-forged" });
 * ```
 */
export async function verifyRoomSignature(
  m: DecodedRoomMessage,
  signingKey: Uint8Array,
): Promise<void> {
  const ok = await verifyEd25519(
    signingKey,
    m.sig,
    signedBytes(m.headerBytes, m.ciphertext, m.tag),
  );
  if (!ok) {
    throw new ProtocolError(
      "room-forged",
      `Room message refused: its signature is not ${m.header.sender}'s`,
    );
  }
}

/**
 * Open a decoded message with its message key (section 10.3): the tag is
 * compared in constant time before anything is decrypted, then the
 * plaintext is decoded (type 1, `len` within it, UTF-8, zero padding). The
 * message key is not wiped here.
 * @param m the decoded message
 * @param messageKey `mk_index` of the sender's chain
 * @returns the text
 * @throws {ProtocolError} `room-tampered` when the tag does not verify;
 *   `room-malformed` for a plaintext that authenticated but does not decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519 } from "../crypto/mod.ts";
 * import { decodeRoomMessage, openRoomMessage, sealRoomMessage } from "./room_msg.ts";
 * const mk = new Uint8Array(32).fill(4);
 * const m = decodeRoomMessage(await sealRoomMessage({ roomId: new Uint8Array(16), name: "r", sender: "A",
 *   epoch: 1, index: 0, time: 0, messageKey: mk, signing: await generateEd25519(false), text: "hi" }));
 * assert.equal(openRoomMessage(m, mk), "hi");
 * assert.throws(() => openRoomMessage(m, new Uint8Array(32)), { code: "room-tampered" });
 * ```
 */
export function openRoomMessage(
  m: DecodedRoomMessage,
  messageKey: Uint8Array,
): string {
  const keys = messageKeys(messageKey, m.headerBytes);
  try {
    // Encrypt-then-MAC: nothing is decrypted before the tag verifies.
    const expected = hmacSha256(keys.mac, concat(m.headerBytes, m.ciphertext));
    if (!constantTimeEqual(expected, m.tag)) {
      throw new ProtocolError(
        "room-tampered",
        "Room message refused: it does not authenticate (altered, or not sealed with this chain)",
      );
    }
    const iv = hmacSha256(keys.ivk, m.headerBytes);
    const plaintext = mdcfbDecrypt(keys.enc, iv, m.ciphertext);
    wipe(iv);
    try {
      return readPlaintext(plaintext);
    } finally {
      wipe(plaintext);
    }
  } finally {
    wipe(keys.enc, keys.ivk, keys.mac);
  }
}

/**
 * Decode a plaintext: type 1, `len` within it, UTF-8, then only zero bytes.
 * @param p the plaintext
 * @returns the text
 */
function readPlaintext(p: Uint8Array): string {
  if (p[0] !== TYPE_TEXT) {
    throw malformed(`plaintext type ${p[0]}, expected ${TYPE_TEXT}`);
  }
  const len = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(1);
  if (len > p.length - PLAINTEXT_HEAD_BYTES) {
    throw malformed(
      `text length ${len} exceeds the ${
        p.length - PLAINTEXT_HEAD_BYTES
      } bytes that hold it`,
    );
  }
  const end = PLAINTEXT_HEAD_BYTES + len;
  if (!p.subarray(end).every((b) => b === 0)) {
    throw malformed("padding is not all zero bytes");
  }
  try {
    return fromUtf8(p.subarray(PLAINTEXT_HEAD_BYTES, end), "room text");
  } catch (e) {
    if (isImError(e)) throw malformed(e.message);
    throw e;
  }
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
   * import { RoomReader } from "./room_msg.ts";
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
   * import { RoomReader } from "./room_msg.ts";
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
   * import { RoomReader } from "./room_msg.ts";
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
