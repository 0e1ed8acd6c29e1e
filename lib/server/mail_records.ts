/**
 * The records of a user's mailbox log (PROTOCOL.md 9.9) and the pushes they
 * become (9.7): a mail record is `0x01 || MAIL`, pushed as `mail`; a receipt
 * record is `0x02 || msg_id[16] || u8 status || bytes8(recipient) ||
 * proof[32]`, pushed as `receipt`. The store keeps them as opaque bytes;
 * only this file reads them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { receiptRecord, recordPush } from "./mail_records.ts";
 * const data = receiptRecord({ msgId: new Uint8Array(16), status: "expired", recipient: "B" });
 * const push = recordPush({ seq: 3, user: "A", at: 5, data });
 * assert.deepEqual(push, {
 *   t: "receipt", seq: 3, id: "0".repeat(32), to: "B", status: "expired", at: 5, proof: "",
 * });
 * ```
 * @module
 */

import { ByteReader, ByteWriter, fromUtf8, utf8 } from "../util/mod.ts";
import {
  type DecodedMail,
  decodeMail,
  isValidUsername,
  MAIL_ID_BYTES,
  mailIdHex,
} from "../proto/mod.ts";
import type { Push, StoredRecord } from "./seams.ts";

/** First byte of a mail record. */
export const MAIL_RECORD = 0x01;
/** First byte of a receipt record. */
export const RECEIPT_RECORD = 0x02;
/** Bytes of a `delivered` proof, `HMAC(rk, msg_id)` (PROTOCOL.md 9.6). */
export const PROOF_BYTES = 32;

/** A receipt's status byte (PROTOCOL.md 9.9). */
const STATUS_BYTE = { delivered: 1, expired: 2 } as const;

/** What a receipt record holds. */
export interface ReceiptFields {
  /** The `msg_id` of the message it is about, 16 bytes. */
  msgId: Uint8Array;
  status: "delivered" | "expired";
  /** The recipient of the message. */
  recipient: string;
  /** `delivered`: the recipient's proof, 32 bytes; `expired`: none (zeros are stored). */
  proof?: Uint8Array;
}

/**
 * The record of a mail.
 * @param mail the `MAIL` bytes
 * @returns `0x01 || MAIL`
 */
export function mailRecord(mail: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + mail.length);
  out[0] = MAIL_RECORD;
  out.set(mail, 1);
  return out;
}

/**
 * The record of a receipt.
 * @param r its fields
 * @returns `0x02 || msg_id || status || bytes8(recipient) || proof`
 * @throws {RangeError} a msg_id or proof of the wrong length
 */
export function receiptRecord(r: ReceiptFields): Uint8Array {
  const proof = r.proof ?? new Uint8Array(PROOF_BYTES);
  if (r.msgId.length !== MAIL_ID_BYTES || proof.length !== PROOF_BYTES) {
    throw new RangeError(
      `receipt: expected a ${MAIL_ID_BYTES}-byte msg_id and a ${PROOF_BYTES}-byte proof, got ${r.msgId.length} and ${proof.length}`,
    );
  }
  return new ByteWriter().u8(RECEIPT_RECORD).bytes(r.msgId)
    .u8(STATUS_BYTE[r.status]).bytes8(utf8(r.recipient)).bytes(proof).finish();
}

/**
 * The mail of a mail record, decoded (not authenticated: the server cannot).
 * @param data a record's bytes
 * @returns the mail's parts, or undefined for a receipt record or one that
 *   does not decode (a row altered on disk)
 */
export function recordMail(data: Uint8Array): DecodedMail | undefined {
  if (data[0] !== MAIL_RECORD) return undefined;
  try {
    return decodeMail(data.subarray(1));
  } catch {
    return undefined;
  }
}

/**
 * The sender named by a mail record whose mail does not decode as a whole:
 * its header's `bytes8(sender)` alone (after the version byte), so that a
 * row altered past its sender still reaches its recipient, who reports it.
 */
function senderOnly(data: Uint8Array): string | undefined {
  try {
    const r = new ByteReader(data.subarray(2), "mail");
    const name = fromUtf8(r.bytes8(), "sender");
    return isValidUsername(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The push of a record (PROTOCOL.md 9.7): `mail` with the sender the server
 * authenticated at `send` (the header's, which `send` held to the logged-in
 * user), or `receipt`.
 * @param rec the record
 * @returns the message, or undefined for a record too damaged to name its
 *   sender (or of an unknown kind)
 */
export function recordPush(rec: StoredRecord): Push | undefined {
  const d = rec.data;
  if (d[0] === MAIL_RECORD) {
    const from = recordMail(d)?.header.sender ?? senderOnly(d);
    if (from === undefined) return undefined;
    return {
      t: "mail",
      seq: rec.seq,
      from,
      at: rec.at,
      mail: d.subarray(1).toBase64(),
    };
  }
  if (d[0] !== RECEIPT_RECORD) return undefined;
  try {
    const r = new ByteReader(d.subarray(1), "receipt");
    const msgId = r.bytes(MAIL_ID_BYTES);
    const byte = r.u8();
    const status = byte === STATUS_BYTE.delivered
      ? "delivered"
      : byte === STATUS_BYTE.expired
      ? "expired"
      : undefined;
    const to = fromUtf8(r.bytes8(), "recipient");
    const proof = r.bytes(PROOF_BYTES);
    r.end();
    if (status === undefined || !isValidUsername(to)) return undefined;
    return {
      t: "receipt",
      seq: rec.seq,
      id: mailIdHex(msgId),
      to,
      status,
      at: rec.at,
      proof: status === "delivered" ? proof.toBase64() : "",
    };
  } catch {
    return undefined;
  }
}
