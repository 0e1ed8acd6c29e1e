/**
 * What every room structure of PROTOCOL.md section 10 shares: the version
 * byte of `ROOM_LIST`, `ROOM_LEAVE`, `ROOM_KEY` and `ROOM_MSG`, and the
 * `room_id` (section 10.1), its size and its text form.
 * @module
 */

import { ProtocolError } from "../util/mod.ts";

/** The version byte of `ROOM_LIST`, `ROOM_LEAVE`, `ROOM_KEY` and `ROOM_MSG` (section 10). */
export const ROOM_VERSION = 1;
/** Bytes of a `room_id` (section 10.1). */
export const ROOM_ID_BYTES = 16;
/**
 * A `room_id` as text: 32 lowercase hex digits.
 * @param id 16 bytes
 * @returns the hex text
 * @throws {ProtocolError} `bad-length` for another length
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { roomIdHex } from "./room_id.ts";
 * assert.equal(roomIdHex(new Uint8Array(16).fill(0xab)), "ab".repeat(16));
 * ```
 */
export function roomIdHex(id: Uint8Array): string {
  if (id.length !== ROOM_ID_BYTES) {
    throw new ProtocolError(
      "bad-length",
      `room_id: expected ${ROOM_ID_BYTES} bytes, got ${id.length}`,
    );
  }
  return id.toHex();
}
