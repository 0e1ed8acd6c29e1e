/**
 * Sealing a mail to a recipient's bundle (PROTOCOL.md sections 9.2 steps 4
 * and 5, 9.3): the sender's side of X3DH, the padded plaintext, MD-CFB and
 * the tag over header and ciphertext.
 * @module
 */

import {
  ByteWriter,
  concat,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import {
  generateX25519,
  hmacSha256,
  mdcfbEncrypt,
  SHA256_BYTES,
  X25519_PUBLIC_BYTES,
} from "../crypto/mod.ts";
import { checkBytes, checkId, PLAINTEXT_HEAD_BYTES } from "./_mail.ts";
import { dhAll, mailKeys } from "./_mail_keys.ts";
import { MAIL_VERSION } from "./mail_certs.ts";
import {
  MAIL_ID_BYTES,
  MAIL_TYPE_ROOM_KEY,
  MAIL_TYPE_TEXT,
  MAX_MAIL_TEXT_BYTES,
} from "./mail_format.ts";
import type { MailKeyPair } from "./mail_vault.ts";
import { bucketOf } from "./padding.ts";
import { decodeRoomKey } from "./room_key.ts";
import { checkUsername } from "./username.ts";

/**
 * Seal a message to a recipient's bundle (PROTOCOL.md sections 9.2 step 4
 * and 5, 9.3): a fresh non-extractable ephemeral key and 16 random bytes of
 * `msg_id` per message; the text padded with zeros to its bucket; the DH
 * values, `sk` and the other keys but `rk` wiped once used. The bundle must
 * have been checked first (`verifyBundle`). With `roomKey`, the plaintext
 * is of type 2 (a room key, section 10.2) and carries those bytes instead
 * of a text, padded alike.
 * @param a `sender` and `recipient` names; their raw RSA fingerprints (the
 *   sender's own, the recipient's pinned one); the sender's identity key
 *   pair; the recipient's `ik`, signed prekey and, when the bundle held one,
 *   one-time prekey (ids and 32-byte keys); the `text` (empty when
 *   `roomKey` is given); `roomKey`, an encoded `ROOM_KEY` (not wiped here);
 *   `time`, ms (server's clock)
 * @returns the `MAIL` bytes, its `msg_id`, and `rk` to keep in `pending`
 *   (section 9.6)
 * @throws {ProtocolError} `message-too-large` for a text over
 *   {@link MAX_MAIL_TEXT_BYTES} UTF-8 bytes; `bad-bundle` when a DH value
 *   is all zeros (a low-order key);
 *   `bad-length` for a key, fingerprint or id of the wrong size, or a text
 *   beside a room key; `room-malformed` for a room key that does not
 *   decode as a `ROOM_KEY`
 * @throws {AuthError} `bad-username` for an invalid name
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateX25519 } from "../crypto/mod.ts";
 * import { decodeMail } from "./mail_format.ts";
 * import { sealMail } from "./mail_seal.ts";
 * const ikA = await generateX25519(false), ikB = await generateX25519(false);
 * const fp = new Uint8Array(32);
 * const base = {
 *   sender: "A", recipient: "B", senderFingerprint: fp, recipientFingerprint: fp,
 *   senderIdentity: ikA, recipientIdentityKey: ikB.publicRaw, time: 0,
 * };
 * const sealed = await sealMail({ ...base, signedPrekey: { id: 1, key: ikB.publicRaw }, text: "hi" });
 * assert.equal(decodeMail(sealed.mail).header.opkId, 0);
 * await assert.rejects(sealMail({ ...base, signedPrekey: { id: 1, key: new Uint8Array(32) }, text: "hi" }), { code: "bad-bundle" });
 * ```
 */
export async function sealMail(a: {
  sender: string;
  recipient: string;
  senderFingerprint: Uint8Array;
  recipientFingerprint: Uint8Array;
  senderIdentity: MailKeyPair;
  recipientIdentityKey: Uint8Array;
  signedPrekey: { id: number; key: Uint8Array };
  oneTimePrekey?: { id: number; key: Uint8Array } | undefined;
  text: string;
  roomKey?: Uint8Array | undefined;
  time: number;
}): Promise<{ mail: Uint8Array; msgId: Uint8Array; rk: Uint8Array }> {
  const isRoomKey = a.roomKey !== undefined;
  if (isRoomKey) {
    if (a.text !== "") {
      throw new ProtocolError(
        "bad-length",
        "Mail: a room key is sent without a text",
      );
    }
    // What the recipient would refuse is not sealed (section 9.4 step 5).
    wipe(decodeRoomKey(a.roomKey!).chainKey);
  }
  const text = isRoomKey ? new Uint8Array(a.roomKey!) : utf8(a.text);
  if (text.length > MAX_MAIL_TEXT_BYTES) {
    throw new ProtocolError(
      "message-too-large",
      `Mail of ${text.length} bytes exceeds the limit of ${MAX_MAIL_TEXT_BYTES}`,
    );
  }
  checkUsername(a.sender);
  checkUsername(a.recipient);
  checkBytes(a.senderFingerprint, SHA256_BYTES, "sender fingerprint");
  checkBytes(a.recipientFingerprint, SHA256_BYTES, "recipient fingerprint");
  checkBytes(
    a.senderIdentity.publicRaw,
    X25519_PUBLIC_BYTES,
    "own identity key",
  );
  checkBytes(a.recipientIdentityKey, X25519_PUBLIC_BYTES, "identity key");
  checkBytes(a.signedPrekey.key, X25519_PUBLIC_BYTES, "signed prekey");
  checkId(a.signedPrekey.id, "spk_id");
  const opk = a.oneTimePrekey;
  if (opk !== undefined) {
    checkBytes(opk.key, X25519_PUBLIC_BYTES, "one-time prekey");
    checkId(opk.id, "opk_id");
  }
  if (!Number.isSafeInteger(a.time) || a.time < 0) {
    throw new ProtocolError(
      "bad-length",
      `time: expected ms since the epoch, got ${a.time}`,
    );
  }

  // Section 9.2 step 4: a fresh ephemeral key, never extractable, dropped
  // when this function returns.
  const ek = await generateX25519(false);
  const msgId = randomBytes(MAIL_ID_BYTES);
  const dhPairs: [MailKeyPair, Uint8Array][] = [
    [a.senderIdentity, a.signedPrekey.key], // DH1 = X25519(ik_a, spk_b)
    [ek, a.recipientIdentityKey], // DH2 = X25519(ek_a, ik_b)
    [ek, a.signedPrekey.key], // DH3 = X25519(ek_a, spk_b)
  ];
  if (opk !== undefined) dhPairs.push([ek, opk.key]); // DH4 = X25519(ek_a, opk_b)
  const dh = await dhAll(
    dhPairs,
    () =>
      new ProtocolError(
        "bad-bundle",
        `Keys of "${a.recipient}" refused: a low-order X25519 key`,
      ),
  );
  const header = {
    version: MAIL_VERSION,
    sender: a.sender,
    recipient: a.recipient,
    msgId,
    ik: a.senderIdentity.publicRaw,
  };
  const keys = await mailKeys(
    dh,
    header,
    a.senderFingerprint,
    a.recipientFingerprint,
    a.recipientIdentityKey,
  );

  const headerBytes = new ByteWriter().u8(MAIL_VERSION)
    .bytes8(utf8(a.sender)).bytes8(utf8(a.recipient)).bytes(msgId)
    .u64(BigInt(a.time)).u32(a.signedPrekey.id).u32(opk?.id ?? 0)
    .bytes(a.senderIdentity.publicRaw).bytes(ek.publicRaw).finish();
  // Section 9.3: u8 type || u32 len || text || zero bytes up to the bucket;
  // a room key (section 10.2) in place of the text under type 2.
  const plaintext = new Uint8Array(
    bucketOf(PLAINTEXT_HEAD_BYTES + text.length),
  );
  plaintext[0] = isRoomKey ? MAIL_TYPE_ROOM_KEY : MAIL_TYPE_TEXT;
  new DataView(plaintext.buffer).setUint32(1, text.length);
  plaintext.set(text, PLAINTEXT_HEAD_BYTES);
  const iv = hmacSha256(keys.ivk, msgId);
  const ciphertext = mdcfbEncrypt(keys.enc, iv, plaintext);
  const tag = hmacSha256(keys.mac, concat(headerBytes, ciphertext));
  wipe(keys.enc, keys.ivk, keys.mac, iv, plaintext, text);
  return {
    mail: concat(headerBytes, ciphertext, tag),
    msgId,
    rk: keys.rk,
  };
}
