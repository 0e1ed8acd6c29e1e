/**
 * The sealed mailbox message (PROTOCOL.md sections 9.2 to 9.4, 9.6): X3DH
 * on X25519 keys certified by the users' RSA keys, one fresh ephemeral key
 * per message, then the record primitives of section 4 (MD-CFB,
 * HMAC-SHA256, encrypt-then-MAC over a header) under keys of one message.
 *
 * ```
 * MAIL   = header || ciphertext || tag[32]
 * header = u8 version (1) || bytes8(sender) || bytes8(recipient) || msg_id[16] || time u64
 *          || spk_id u32 || opk_id u32 || ik_a[32] || ek_a[32]
 * ```
 *
 * Pure: WebCrypto and byte arrays, no I/O. Which keys to use (the pinned
 * fingerprint, the verified `IK_CERT`, the held prekeys) and what to do
 * with a refusal are the caller's (section 9.4).
 *
 * The mail is split by job; this file gathers them for callers:
 * - `mail_format.ts`: the constants, {@link MailHeader}, `decodeMail` and
 *   `checkMailTime` (sections 9.3, 9.4 step 1);
 * - `_mail_keys.ts`: the DH values and the key schedule (section 9.2);
 * - `mail_seal.ts`: `sealMail` (sections 9.2 steps 4 and 5, 9.3);
 * - `mail_open.ts`: `openMail` (section 9.4 steps 3 and 5);
 * - `mail_receipt.ts`: `receiptProof`, `checkReceiptProof`, `mailIdHex`
 *   (sections 9.6, 9.7);
 * - `_mail.ts`: the refusals and the length checks they share.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateX25519 } from "../crypto/mod.ts";
 * import { decodeMail, openMail, sealMail } from "./mail.ts";
 * const [ikA, ikB, spkB] = await Promise.all([generateX25519(false), generateX25519(false), generateX25519(false)]);
 * const fpA = new Uint8Array(32).fill(1), fpB = new Uint8Array(32).fill(2);
 * const { mail } = await sealMail({
 *   sender: "A", recipient: "B", senderFingerprint: fpA, recipientFingerprint: fpB,
 *   senderIdentity: ikA, recipientIdentityKey: ikB.publicRaw,
 *   signedPrekey: { id: 1, key: spkB.publicRaw }, text: "hello", time: Date.now(),
 * });
 * const opened = await openMail({
 *   mail: decodeMail(mail), senderFingerprint: fpA, recipientFingerprint: fpB,
 *   identity: ikB, signedPrekey: spkB,
 * });
 * assert.equal(opened.text, "hello");
 * ```
 * @module
 */

export * from "./mail_format.ts";
export * from "./mail_open.ts";
export * from "./mail_receipt.ts";
export * from "./mail_seal.ts";
