/**
 * A mail's `delivered` receipt (PROTOCOL.md sections 9.6, 9.7): the proof
 * `HMAC(rk, msg_id)`, its constant-time check, and a `msg_id` as the hex
 * `id` of a `receipt`.
 * @module
 */

import { constantTimeEqual } from "../util/mod.ts";
import { hmacSha256, SHA256_BYTES } from "../crypto/mod.ts";
import { checkBytes } from "./_mail.ts";
import { MAIL_ID_BYTES } from "./mail_format.ts";

/**
 * The proof of a `delivered` receipt (section 9.6): `HMAC(rk, msg_id)`.
 * @param rk the message's receipt key, 32 bytes
 * @param msgId its `msg_id`, 16 bytes
 * @returns 32 bytes
 * @throws {ProtocolError} `bad-length` for a key or id of the wrong size
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { receiptProof } from "./mail_receipt.ts";
 * assert.equal((await receiptProof(new Uint8Array(32), new Uint8Array(16))).length, 32);
 * ```
 */
export function receiptProof(
  rk: Uint8Array,
  msgId: Uint8Array,
): Promise<Uint8Array> {
  try {
    checkBytes(rk, SHA256_BYTES, "receipt key");
    checkBytes(msgId, MAIL_ID_BYTES, "msg_id");
    return Promise.resolve(hmacSha256(rk, msgId));
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * Does a `delivered` receipt's proof match the `rk` kept in `pending`?
 * Compared in constant time (section 9.6); a proof of the wrong length is
 * simply false.
 * @param rk the receipt key kept when the message was sealed
 * @param msgId the message's `msg_id`
 * @param proof the proof the receipt carries
 * @returns true only for the right proof
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkReceiptProof, receiptProof } from "./mail_receipt.ts";
 * const rk = new Uint8Array(32).fill(1), id = new Uint8Array(16);
 * assert.ok(await checkReceiptProof(rk, id, await receiptProof(rk, id)));
 * assert.ok(!(await checkReceiptProof(rk, id, new Uint8Array(32))));
 * ```
 */
export async function checkReceiptProof(
  rk: Uint8Array,
  msgId: Uint8Array,
  proof: Uint8Array,
): Promise<boolean> {
  return constantTimeEqual(await receiptProof(rk, msgId), proof);
}

/**
 * A `msg_id` as the `id` of a `receipt` (section 9.7): 32 lowercase hex
 * digits.
 * @param msgId 16 bytes
 * @returns the hex text
 * @throws {ProtocolError} `bad-length` for another length
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mailIdHex } from "./mail_receipt.ts";
 * assert.equal(mailIdHex(new Uint8Array(16).fill(0xab)), "ab".repeat(16));
 * ```
 */
export function mailIdHex(msgId: Uint8Array): string {
  checkBytes(msgId, MAIL_ID_BYTES, "msg_id");
  return msgId.toHex();
}
