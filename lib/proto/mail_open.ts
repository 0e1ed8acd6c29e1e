/**
 * Opening a mail with the recipient's keys (PROTOCOL.md section 9.4 steps
 * 3 and 5): the recipient's side of X3DH, the tag compared in constant time
 * before anything is decrypted, then the plaintext decoded (a text, or a
 * room key of section 10.2).
 * @module
 */

import {
  concat,
  constantTimeEqual,
  fromUtf8,
  isImError,
  wipe,
} from "../util/mod.ts";
import { hmacSha256, mdcfbDecrypt, SHA256_BYTES } from "../crypto/mod.ts";
import {
  checkBytes,
  malformed,
  PLAINTEXT_HEAD_BYTES,
  tampered,
} from "./_mail.ts";
import { dhAll, mailKeys } from "./_mail_keys.ts";
import {
  type DecodedMail,
  MAIL_TYPE_ROOM_KEY,
  MAIL_TYPE_TEXT,
} from "./mail_format.ts";
import type { MailKeyPair } from "./mail_vault.ts";
import { decodeRoomKey } from "./room_key.ts";

/**
 * Decode a plaintext (section 9.4 step 5): type 1 or 2, `len` within it,
 * then only zero bytes; a text (type 1) must be UTF-8, a room key (type 2,
 * section 10.2) must decode as a `ROOM_KEY` and is returned as its bytes.
 * @param p the plaintext
 * @returns the text, or an empty text and the room key
 */
function readPlaintext(p: Uint8Array): { text: string; roomKey?: Uint8Array } {
  const type = p[0];
  if (type !== MAIL_TYPE_TEXT && type !== MAIL_TYPE_ROOM_KEY) {
    throw malformed(
      `plaintext type ${type}, expected ${MAIL_TYPE_TEXT} or ${MAIL_TYPE_ROOM_KEY}`,
    );
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
  if (type === MAIL_TYPE_ROOM_KEY) {
    const roomKey = p.slice(PLAINTEXT_HEAD_BYTES, end);
    try {
      wipe(decodeRoomKey(roomKey).chainKey);
    } catch (e) {
      wipe(roomKey);
      if (isImError(e)) throw malformed(e.message);
      throw e;
    }
    return { text: "", roomKey };
  }
  try {
    return {
      text: fromUtf8(p.subarray(PLAINTEXT_HEAD_BYTES, end), "mail text"),
    };
  } catch (e) {
    if (isImError(e)) throw malformed(e.message);
    throw e;
  }
}

/**
 * Open a decoded `MAIL` with the recipient's keys (PROTOCOL.md section 9.4
 * steps 3 and 5): derive the keys as in 9.2 from the recipient's side,
 * compare the tag in constant time, and only then decrypt and decode the
 * plaintext. Steps 1, 2 and 4 (time, which keys, addressee, seen ids) are
 * the caller's. A one-time prekey given while the header's `opk_id` is 0 is
 * not used.
 * @param a the decoded mail; the raw RSA fingerprints (the sender's pinned
 *   one, the recipient's own); the recipient's identity key pair, the
 *   signed prekey `spk_id` names, and the one-time prekey `opk_id` names
 *   (required when it is not 0)
 * @returns the text and `rk`, whose receipt proof acknowledges it
 *   ({@link receiptProof}); for a room key (plaintext type 2, section
 *   10.2), an empty text and the `ROOM_KEY`'s bytes in `roomKey` (checked
 *   to decode; `decodeRoomKey` gives its fields)
 * @throws {ProtocolError} `mail-tampered` when the tag does not verify, a DH
 *   value is all zeros, or `opk_id` is not 0 and no one-time prekey is
 *   given; `mail-malformed` for a plaintext that authenticated but does not
 *   decode (a room key included)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateX25519 } from "../crypto/mod.ts";
 * import { decodeMail } from "./mail_format.ts";
 * import { openMail } from "./mail_open.ts";
 * import { sealMail } from "./mail_seal.ts";
 * const [ikA, ikB, spkB] = await Promise.all([1, 2, 3].map(() => generateX25519(false)));
 * const fp = new Uint8Array(32);
 * const { mail } = await sealMail({
 *   sender: "A", recipient: "B", senderFingerprint: fp, recipientFingerprint: fp,
 *   senderIdentity: ikA!, recipientIdentityKey: ikB!.publicRaw,
 *   signedPrekey: { id: 1, key: spkB!.publicRaw }, text: "hi", time: 0,
 * });
 * const other = new Uint8Array(32).fill(1);
 * await assert.rejects(openMail({
 *   mail: decodeMail(mail), senderFingerprint: fp, recipientFingerprint: other,
 *   identity: ikB!, signedPrekey: spkB!,
 * }), { code: "mail-tampered" });
 * ```
 */
export async function openMail(a: {
  mail: DecodedMail;
  senderFingerprint: Uint8Array;
  recipientFingerprint: Uint8Array;
  identity: MailKeyPair;
  signedPrekey: MailKeyPair;
  oneTimePrekey?: MailKeyPair | undefined;
}): Promise<{ text: string; roomKey?: Uint8Array; rk: Uint8Array }> {
  const { header, headerBytes, ciphertext, tag } = a.mail;
  checkBytes(a.senderFingerprint, SHA256_BYTES, "sender fingerprint");
  checkBytes(a.recipientFingerprint, SHA256_BYTES, "recipient fingerprint");
  const dhPairs: [MailKeyPair, Uint8Array][] = [
    [a.signedPrekey, header.ik], // DH1 = X25519(spk_b, ik_a)
    [a.identity, header.ek], // DH2 = X25519(ik_b, ek_a)
    [a.signedPrekey, header.ek], // DH3 = X25519(spk_b, ek_a)
  ];
  if (header.opkId !== 0) {
    if (a.oneTimePrekey === undefined) throw tampered();
    dhPairs.push([a.oneTimePrekey, header.ek]); // DH4 = X25519(opk_b, ek_a)
  }
  const dh = await dhAll(dhPairs, tampered);
  const keys = await mailKeys(
    dh,
    header,
    a.senderFingerprint,
    a.recipientFingerprint,
    a.identity.publicRaw,
  );
  try {
    // Encrypt-then-MAC: nothing is decrypted before the tag verifies.
    const expected = hmacSha256(keys.mac, concat(headerBytes, ciphertext));
    if (!constantTimeEqual(expected, tag)) {
      wipe(keys.rk);
      throw tampered();
    }
    const iv = hmacSha256(keys.ivk, header.msgId);
    const plaintext = mdcfbDecrypt(keys.enc, iv, ciphertext);
    wipe(iv);
    try {
      return { ...readPlaintext(plaintext), rk: keys.rk };
    } catch (e) {
      wipe(keys.rk);
      throw e;
    } finally {
      wipe(plaintext);
    }
  } finally {
    wipe(keys.enc, keys.ivk, keys.mac);
  }
}
