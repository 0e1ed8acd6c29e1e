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

import {
  ByteReader,
  ByteWriter,
  concat,
  constantTimeEqual,
  fromUtf8,
  isImError,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import {
  deriveKeySync,
  generateX25519,
  hmacSha256,
  Label,
  mdcfbDecrypt,
  mdcfbEncrypt,
  SHA256_BYTES,
  sharedSecret,
  transcriptHash,
  X25519_PUBLIC_BYTES,
} from "../crypto/mod.ts";
import { MAIL_VERSION } from "./mail_certs.ts";
import type { MailKeyPair } from "./mail_vault.ts";
import { bucketOf } from "./padding.ts";
import { decodeRoomKey } from "./room_chain.ts";
import { checkUsername, isValidUsername } from "./username.ts";

/** The longest text a mail may carry, in UTF-8 bytes: 45 KiB, as a peer `msg` (section 9.3). */
export const MAX_MAIL_TEXT_BYTES = 46_080;
/** Bytes of a `msg_id` (section 9.2). */
export const MAIL_ID_BYTES = 16;
/** Bytes of the tag at the end of a `MAIL` (HMAC-SHA256). */
export const MAIL_TAG_BYTES = SHA256_BYTES;
/** The shortest ciphertext: a plaintext's type and length (section 9.4 step 1). */
export const MAIL_MIN_CIPHERTEXT_BYTES = 5;
/** How far in the past a mail's `time` may lie: 31 days (section 9.4 step 1). */
export const MAIL_MAX_AGE_MS = 31 * 24 * 60 * 60 * 1000;
/** How far in the future a mail's `time` may lie: the record window (section 9.4 step 1). */
export const MAIL_MAX_SKEW_MS = 120_000;
/** The plaintext's type byte of a text message (section 9.3). */
export const MAIL_TYPE_TEXT = 0x01;
/**
 * The plaintext's type byte of a room key: a `ROOM_KEY` (section 10.2)
 * handed to one member, sealed and authenticated pairwise by X3DH.
 */
export const MAIL_TYPE_ROOM_KEY = 0x02;

/** X3DH section 2.2: 32 bytes 0xff before the DH values, for X25519. */
const F = new Uint8Array(32).fill(0xff);
/** Bytes before the text in a plaintext: `u8 type || u32 len`. */
const PLAINTEXT_HEAD_BYTES = 5;

/** A decoded `MAIL` header (section 9.3). */
export interface MailHeader {
  /** Always {@link MAIL_VERSION}. */
  readonly version: number;
  /** Who sealed it, by its own word (checked by the MAC). */
  readonly sender: string;
  /** Whom it is for (section 9.4 step 4: `misaddressed`). */
  readonly recipient: string;
  /** 16 random bytes. */
  readonly msgId: Uint8Array;
  /** When it was sealed, ms since the epoch (server's clock, as the sender read it). */
  readonly time: number;
  /** The recipient's signed prekey used, from 1. */
  readonly spkId: number;
  /** The recipient's one-time prekey used, or 0 for none. */
  readonly opkId: number;
  /** The sender's X25519 identity key `ik_a`. */
  readonly ik: Uint8Array;
  /** The sender's ephemeral key `ek_a`. */
  readonly ek: Uint8Array;
}

/** A `MAIL` split into its parts, not yet authenticated. */
export interface DecodedMail {
  readonly header: MailHeader;
  /** The header's bytes, as the tag covers them. */
  readonly headerBytes: Uint8Array;
  readonly ciphertext: Uint8Array;
  /** The last 32 bytes. */
  readonly tag: Uint8Array;
}

function malformed(why: string): ProtocolError {
  return new ProtocolError("mail-malformed", `Cannot read mail: ${why}`);
}

function tampered(): ProtocolError {
  // One opaque refusal whatever failed (a DH value, the tag): the reason
  // would only help a forger.
  return new ProtocolError(
    "mail-tampered",
    "Mail refused: it does not authenticate (altered, or not sealed to these keys)",
  );
}

function readName(r: ByteReader, field: string): string {
  const name = fromUtf8(r.bytes8(), field);
  if (!isValidUsername(name)) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}...` : name;
    throw malformed(`${field}: invalid username "${shown}"`);
  }
  return name;
}

/**
 * Decode a `MAIL` (PROTOCOL.md section 9.4 step 1): version 1, both names
 * valid (rule 2.9), a header of fixed lengths, `spk_id` not 0, and after it
 * a ciphertext as long as a plaintext bucket can be (at least 5 bytes; a
 * bucket of section 9.3, since every plaintext is padded to one) and a
 * 32-byte tag. Nothing is authenticated here ({@link openMail}).
 * @param b the bytes
 * @returns the parts
 * @throws {ProtocolError} `mail-malformed`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMail } from "./mail.ts";
 * assert.throws(() => decodeMail(new Uint8Array(200)), { code: "mail-malformed" });
 * ```
 */
export function decodeMail(b: Uint8Array): DecodedMail {
  try {
    const r = new ByteReader(b, "mail");
    const version = r.u8();
    if (version !== MAIL_VERSION) {
      throw malformed(`version ${version}, expected ${MAIL_VERSION}`);
    }
    const sender = readName(r, "sender");
    const recipient = readName(r, "recipient");
    const msgId = r.bytes(MAIL_ID_BYTES);
    const time64 = r.u64();
    if (time64 > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw malformed(`time ${time64} is past the largest time`);
    }
    const spkId = r.u32();
    if (spkId === 0) throw malformed("spk_id is 0");
    const opkId = r.u32();
    const ik = r.bytes(X25519_PUBLIC_BYTES);
    const ek = r.bytes(X25519_PUBLIC_BYTES);
    const headerLength = b.length - r.remaining();
    const ciphertextLength = r.remaining() - MAIL_TAG_BYTES;
    if (ciphertextLength < MAIL_MIN_CIPHERTEXT_BYTES) {
      throw malformed(
        `expected at least ${
          MAIL_MIN_CIPHERTEXT_BYTES + MAIL_TAG_BYTES
        } bytes after the header, got ${r.remaining()}`,
      );
    }
    if (bucketOf(ciphertextLength) !== ciphertextLength) {
      throw malformed(
        `ciphertext of ${ciphertextLength} bytes is not a padding bucket`,
      );
    }
    const ciphertext = r.bytes(ciphertextLength);
    const tag = r.bytes(MAIL_TAG_BYTES);
    r.end();
    return {
      header: {
        version,
        sender,
        recipient,
        msgId,
        time: Number(time64),
        spkId,
        opkId,
        ik,
        ek,
      },
      headerBytes: b.slice(0, headerLength),
      ciphertext,
      tag,
    };
  } catch (e) {
    if (isImError(e) && e.code !== "mail-malformed") throw malformed(e.message);
    throw e;
  }
}

/**
 * The time window of section 9.4 step 1: a mail sealed more than 31 days
 * ago, or more than 120 s in the future, is refused (seen ids are kept only
 * that long, section 9.5).
 * @param h the header
 * @param now ms since the epoch (server's clock)
 * @throws {ProtocolError} `mail-stale`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkMailTime, type MailHeader } from "./mail.ts";
 * const h = { time: 1_000_000 } as MailHeader;
 * checkMailTime(h, 1_000_000);
 * assert.throws(() => checkMailTime(h, 1_000_000 - 120_001), { code: "mail-stale" });
 * ```
 */
export function checkMailTime(h: MailHeader, now: number): void {
  if (h.time < now - MAIL_MAX_AGE_MS || h.time > now + MAIL_MAX_SKEW_MS) {
    throw new ProtocolError(
      "mail-stale",
      `Mail refused: written at ${
        new Date(h.time).toISOString()
      }, outside the window of 31 days before now to 120 s after`,
    );
  }
}

function checkBytes(b: Uint8Array, n: number, what: string): void {
  if (b.length !== n) {
    throw new ProtocolError(
      "bad-length",
      `${what}: expected ${n} bytes, got ${b.length}`,
    );
  }
}

function checkId(id: number, what: string): void {
  if (!Number.isInteger(id) || id < 1 || id > 0xffff_ffff) {
    throw new ProtocolError(
      "bad-length",
      `${what}: expected 1 to 4294967295, got ${id}`,
    );
  }
}

/** One message's keys (section 9.2). */
interface MailKeys {
  enc: Uint8Array;
  ivk: Uint8Array;
  mac: Uint8Array;
  rk: Uint8Array;
}

/**
 * From the DH values to one message's keys (section 9.2): `ad`, then
 * `sk = HKDF(F || DH1 || DH2 || DH3 [|| DH4], ad, "im v1 mail secret")`,
 * then `enc`, `ivk`, `mac`, `rk = HKDF(sk, msg_id, label)`. The DH values,
 * the input and `sk` are wiped here.
 * @param dh DH1 to DH3, and DH4 when a one-time prekey was used (wiped)
 * @param header the names, identity keys and `msg_id`
 * @param fpSender the sender's raw RSA fingerprint
 * @param fpRecipient the recipient's raw RSA fingerprint
 * @param ikRecipient the recipient's identity key `ik_b`
 * @returns the keys
 */
async function mailKeys(
  dh: Uint8Array[],
  header: Pick<MailHeader, "version" | "sender" | "recipient" | "ik" | "msgId">,
  fpSender: Uint8Array,
  fpRecipient: Uint8Array,
  ikRecipient: Uint8Array,
): Promise<MailKeys> {
  const ikm = concat(F, ...dh);
  wipe(...dh);
  let sk: Uint8Array | undefined;
  try {
    const ad = await transcriptHash(Label.MAIL_AD, [
      new Uint8Array([header.version]),
      utf8(header.sender),
      utf8(header.recipient),
      fpSender,
      fpRecipient,
      header.ik,
      ikRecipient,
    ]);
    // Synchronous HKDF: five derivations per message, each the same bytes
    // as WebCrypto's (kdf_test.ts) at a fifth of the cost.
    sk = deriveKeySync(ikm, ad, Label.MAIL_SECRET);
    return {
      enc: deriveKeySync(sk, header.msgId, Label.MAIL_ENC),
      ivk: deriveKeySync(sk, header.msgId, Label.MAIL_IV),
      mac: deriveKeySync(sk, header.msgId, Label.MAIL_MAC),
      rk: deriveKeySync(sk, header.msgId, Label.MAIL_RECEIPT),
    };
  } finally {
    wipe(ikm);
    if (sk !== undefined) wipe(sk);
  }
}

/**
 * The DH values, in order; any that fails (a low-order public key: an
 * all-zero value, RFC 7748 section 6.1) throws `onBad()`, and the values
 * already computed are wiped.
 * @param pairs each own key pair and the peer's public key
 * @param onBad the error to throw
 * @returns the 32-byte values
 */
async function dhAll(
  pairs: [MailKeyPair, Uint8Array][],
  onBad: () => ProtocolError,
): Promise<Uint8Array[]> {
  // At once: WebCrypto runs them off the main thread, so the four take
  // about the time of two on two cores.
  const settled = await Promise.allSettled(
    pairs.map(([own, peer]) => sharedSecret(own, peer)),
  );
  const out = settled.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  const failed = settled.find((r) => r.status === "rejected");
  if (failed === undefined) return out;
  wipe(...out);
  if (isImError(failed.reason)) throw onBad();
  throw failed.reason;
}

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
 * import { decodeMail, sealMail } from "./mail.ts";
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
 * import { decodeMail, openMail, sealMail } from "./mail.ts";
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

/**
 * The proof of a `delivered` receipt (section 9.6): `HMAC(rk, msg_id)`.
 * @param rk the message's receipt key, 32 bytes
 * @param msgId its `msg_id`, 16 bytes
 * @returns 32 bytes
 * @throws {ProtocolError} `bad-length` for a key or id of the wrong size
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { receiptProof } from "./mail.ts";
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
 * import { checkReceiptProof, receiptProof } from "./mail.ts";
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
 * import { mailIdHex } from "./mail.ts";
 * assert.equal(mailIdHex(new Uint8Array(16).fill(0xab)), "ab".repeat(16));
 * ```
 */
export function mailIdHex(msgId: Uint8Array): string {
  checkBytes(msgId, MAIL_ID_BYTES, "msg_id");
  return msgId.toHex();
}
