/**
 * Internal to the room message (PROTOCOL.md section 10.3): the error every
 * decoding failure becomes, and the checks of names and u32 fields that
 * sealing, decoding and the reader share. Shared by `room_msg.ts` and
 * `room_reader.ts`; not re-exported by `mod.ts`.
 * @module
 */

import { ProtocolError } from "../util/mod.ts";
import { isValidUsername } from "./username.ts";

/** Largest u32: epochs and indexes. */
export const U32_MAX = 0xffff_ffff;

/** A `room-malformed` error: `Cannot read room message: <why>`. */
export function malformed(why: string): ProtocolError {
  return new ProtocolError(
    "room-malformed",
    `Cannot read room message: ${why}`,
  );
}

/** Throws `room-malformed` unless `name` is a valid name (rule 2.9). */
export function checkName(name: string, field: string): void {
  if (!isValidUsername(name)) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}...` : name;
    throw malformed(`${field}: invalid name "${shown}"`);
  }
}

/** Throws `room-malformed` unless `n` is an integer from `min` to {@link U32_MAX}. */
export function checkU32(n: number, min: number, field: string): void {
  if (!Number.isInteger(n) || n < min || n > U32_MAX) {
    throw malformed(`${field}: expected ${min} to ${U32_MAX}, got ${n}`);
  }
}
