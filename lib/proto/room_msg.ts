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
 * wrote a message. This file holds the layout, sealing, decoding and the
 * checks of one message; {@link RoomReader} (room_reader.ts) runs the
 * receiver's checks in section 10.3's order over the chains it holds.
 * Pure: no I/O.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519 } from "../crypto/mod.ts";
 * import { decodeRoomMessage, openRoomMessage, sealRoomMessage, verifyRoomSignature } from "./room_msg.ts";
 * const messageKey = new Uint8Array(32).fill(3), signing = await generateEd25519(false);
 * const m = decodeRoomMessage(await sealRoomMessage({ roomId: new Uint8Array(16), name: "team", sender: "A",
 *   epoch: 1, index: 0, time: Date.now(), messageKey, signing, text: "hi all" }));
 * await verifyRoomSignature(m, signing.publicRaw);
 * assert.equal(openRoomMessage(m, messageKey), "hi all");
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
import { checkName, checkU32, malformed } from "./_room_msg.ts";
import { bucketOf } from "./padding.ts";
import { ROOM_ID_BYTES, ROOM_VERSION } from "./room_list.ts";

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
