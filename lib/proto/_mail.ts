/**
 * What the parts of the mail (PROTOCOL.md sections 9.3, 9.4) share and
 * callers do not see: the two refusals of a mail (`mail-malformed`, and the
 * one opaque `mail-tampered`), the length and id checks at the entry
 * points, and the plaintext's head (section 9.3).
 * @module
 */

import { ProtocolError } from "../util/mod.ts";

/** Bytes before the text in a plaintext: `u8 type || u32 len`. */
export const PLAINTEXT_HEAD_BYTES = 5;

/**
 * A `mail-malformed` refusal (section 9.4 steps 1 and 5).
 * @param why what did not decode
 * @returns the error to throw
 */
export function malformed(why: string): ProtocolError {
  return new ProtocolError("mail-malformed", `Cannot read mail: ${why}`);
}

/**
 * The `mail-tampered` refusal (section 9.4 step 3).
 * @returns the error to throw
 */
export function tampered(): ProtocolError {
  // One opaque refusal whatever failed (a DH value, the tag): the reason
  // would only help a forger.
  return new ProtocolError(
    "mail-tampered",
    "Mail refused: it does not authenticate (altered, or not sealed to these keys)",
  );
}

/**
 * Check a key, fingerprint or id's length at an entry point.
 * @param b the bytes
 * @param n the length expected
 * @param what what they are, for the message
 * @throws {ProtocolError} `bad-length`
 */
export function checkBytes(b: Uint8Array, n: number, what: string): void {
  if (b.length !== n) {
    throw new ProtocolError(
      "bad-length",
      `${what}: expected ${n} bytes, got ${b.length}`,
    );
  }
}

/**
 * Check a prekey id (`spk_id`, `opk_id`): 1 to 2^32 - 1.
 * @param id the id
 * @param what which id, for the message
 * @throws {ProtocolError} `bad-length`
 */
export function checkId(id: number, what: string): void {
  if (!Number.isInteger(id) || id < 1 || id > 0xffff_ffff) {
    throw new ProtocolError(
      "bad-length",
      `${what}: expected 1 to 4294967295, got ${id}`,
    );
  }
}
