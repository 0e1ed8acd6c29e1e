/**
 * What every room structure's codec (PROTOCOL.md section 10: `ROOM_LIST`,
 * `ROOM_LEAVE`, `ROOM_KEY`) shares and callers do not see: the
 * `room-malformed` refusal, the decoder wrapper that turns any reading
 * error into it, and the head each begins with, `u8 version (1) ||
 * room_id[16]`.
 * @module
 */

import { type ByteReader, isImError, ProtocolError } from "../util/mod.ts";
import { ROOM_ID_BYTES, ROOM_VERSION } from "./room_id.ts";

/**
 * A `room-malformed` refusal.
 * @param what what was read
 * @param why what did not decode
 * @returns the error to throw
 */
export function malformed(what: string, why: string): ProtocolError {
  return new ProtocolError("room-malformed", `Cannot read ${what}: ${why}`);
}

/**
 * Run a decoder; a truncated or over-long input, or bad UTF-8, becomes
 * `room-malformed`.
 */
export function decoding<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (isImError(e) && e.code !== "room-malformed") {
      throw malformed(what, e.message);
    }
    throw e;
  }
}

/**
 * Read the head of a room structure: version 1, then the `room_id`.
 * @param r the reader, at the start
 * @param what the structure, for the message
 * @returns the version and the `room_id`
 * @throws {ProtocolError} `room-malformed` for another version
 */
export function readRoomHead(
  r: ByteReader,
  what: string,
): { version: number; roomId: Uint8Array } {
  const version = r.u8();
  if (version !== ROOM_VERSION) {
    throw malformed(what, `version ${version}, expected ${ROOM_VERSION}`);
  }
  return { version, roomId: r.bytes(ROOM_ID_BYTES) };
}
