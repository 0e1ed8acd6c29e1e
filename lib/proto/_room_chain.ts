/**
 * What the parts of the sender chains (PROTOCOL.md section 10.2) share and
 * callers do not see: the key and index sizes, the field checks, base64 state fields back to bytes, and the
 * two derivations of a chain step:
 *
 * ```
 * mk_i     = HKDF(ck_i, room_id, "im v1 room message")
 * ck_{i+1} = HKDF(ck_i, room_id, "im v1 room chain")
 * ```
 * @module
 */

import {
  deriveKeySync,
  ED25519_PUBLIC_BYTES,
  Label,
  SHA256_BYTES,
} from "../crypto/mod.ts";
import { malformed } from "./_room.ts";
import { ROOM_ID_BYTES } from "./room_id.ts";
import type { RoomKey } from "./room_key.ts";
import { isValidUsername } from "./username.ts";

/** Bytes of a chain key and of a message key. */
export const KEY_BYTES = SHA256_BYTES;
/** Largest u32: message indexes and epochs. */
export const U32_MAX = 0xffff_ffff;

/** Check a message index: 0 to 2^32 - 1. */
export function checkIndex(index: number, what: string): void {
  if (!Number.isInteger(index) || index < 0 || index > U32_MAX) {
    throw malformed(what, `index: expected 0 to ${U32_MAX}, got ${index}`);
  }
}

/** Check a field's length. */
export function checkLength(
  b: Uint8Array,
  n: number,
  field: string,
  what: string,
) {
  if (b.length !== n) {
    throw malformed(what, `${field}: expected ${n} bytes, got ${b.length}`);
  }
}

/**
 * Check a `ROOM_KEY`'s fields as its decoder does (section 10.2).
 * @throws {ProtocolError} `room-malformed`
 */
export function checkRoomKey(k: RoomKey, what: string): void {
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
export function b64(
  s: unknown,
  n: number,
  field: string,
  what: string,
): Uint8Array {
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
export function messageKey(ck: Uint8Array, roomId: Uint8Array): Uint8Array {
  return deriveKeySync(ck, roomId, Label.ROOM_MESSAGE);
}

/** ck_{i+1} = HKDF(ck_i, room_id, "im v1 room chain"). */
export function nextChainKey(ck: Uint8Array, roomId: Uint8Array): Uint8Array {
  return deriveKeySync(ck, roomId, Label.ROOM_CHAIN);
}
