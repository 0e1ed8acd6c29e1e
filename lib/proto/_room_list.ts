/**
 * What the signed room statements (PROTOCOL.md section 10.1: `ROOM_LIST`
 * and `ROOM_LEAVE`) share and callers do not see: the signature sizes, the
 * `room-forged` refusal and the field checks.
 * @module
 */

import { ProtocolError } from "../util/mod.ts";
import { malformed } from "./_room.ts";
import { MAX_RSA_BITS, MIN_RSA_BITS } from "../crypto/mod.ts";
import { ROOM_ID_BYTES } from "./room_id.ts";
import { isValidUsername } from "./username.ts";

/** Largest u32: epochs are counted from 1. */
export const U32_MAX = 0xffff_ffff;

/** Shortest signature accepted: that of a 2048-bit key. */
export const MIN_SIG_BYTES = MIN_RSA_BITS / 8;
/** Longest signature accepted: that of a 4096-bit key. */
export const MAX_SIG_BYTES = MAX_RSA_BITS / 8;

/** A `room-forged` refusal: `what`'s signature does not verify. */
export function forged(what: string): ProtocolError {
  return new ProtocolError(
    "room-forged",
    `${what} refused: its signature does not verify with the signer's key`,
  );
}

/** A name as an error shows it: at most 40 characters. */
export function shown(name: string): string {
  return name.length > 40 ? `${name.slice(0, 40)}...` : name;
}

/** Check a name (rule 2.9). */
export function checkName(name: string, field: string, what: string): void {
  if (!isValidUsername(name)) {
    throw malformed(what, `${field}: invalid name "${shown(name)}"`);
  }
}

/** Check a `room_id`'s length. */
export function checkRoomId(id: Uint8Array, what: string): void {
  if (id.length !== ROOM_ID_BYTES) {
    throw malformed(
      what,
      `room_id: expected ${ROOM_ID_BYTES} bytes, got ${id.length}`,
    );
  }
}

/** Check an epoch: 1 to 2^32 - 1. */
export function checkEpoch(epoch: number, what: string): void {
  if (!Number.isInteger(epoch) || epoch < 1 || epoch > U32_MAX) {
    throw malformed(what, `epoch: expected 1 to ${U32_MAX}, got ${epoch}`);
  }
}

/** Check a signature's length: that of a 2048- to 4096-bit key. */
export function checkSig(sig: Uint8Array, what: string): void {
  if (sig.length < MIN_SIG_BYTES || sig.length > MAX_SIG_BYTES) {
    throw malformed(
      what,
      `signature: expected ${MIN_SIG_BYTES} to ${MAX_SIG_BYTES} bytes, got ${sig.length}`,
    );
  }
}

/** A u32, big-endian, as the transcripts take it. */
export function u32be(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}
