/**
 * The `ROOM_KEY` (PROTOCOL.md section 10.2): a member's chain position,
 * handed to every other member once, sealed in a mail of plaintext type 2
 * (section 9). Its fields and its codec.
 *
 * ```
 * ROOM_KEY = u8 version || room_id[16] || bytes8(name) || epoch u32 || index u32
 *            || ck_index[32] || ed25519_public[32]
 * ```
 * @module
 */

import { ByteReader, ByteWriter, fromUtf8, utf8 } from "../util/mod.ts";
import { ED25519_PUBLIC_BYTES } from "../crypto/mod.ts";
import { checkRoomKey, KEY_BYTES } from "./_room_chain.ts";
import { decoding, readRoomHead } from "./_room.ts";
import { ROOM_VERSION } from "./room_id.ts";

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
 * import { decodeRoomKey, encodeRoomKey } from "./room_key.ts";
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
 * import { decodeRoomKey } from "./room_key.ts";
 * assert.throws(() => decodeRoomKey(new Uint8Array(87)), { code: "room-malformed" });
 * ```
 */
export function decodeRoomKey(b: Uint8Array): RoomKey {
  const what = "ROOM_KEY";
  return decoding(what, () => {
    const r = new ByteReader(b, what);
    const { roomId } = readRoomHead(r, what);
    const name = fromUtf8(r.bytes8(), `${what} name`);
    const epoch = r.u32();
    const index = r.u32();
    const chainKey = r.bytes(KEY_BYTES);
    const signingKey = r.bytes(ED25519_PUBLIC_BYTES);
    r.end();
    const k = { roomId, name, epoch, index, chainKey, signingKey };
    checkRoomKey(k, what);
    return k;
  });
}
