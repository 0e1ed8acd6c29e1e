/**
 * The `MAIL` bytes (PROTOCOL.md section 9.3) and the checks a mail passes
 * before any key is used (section 9.4 step 1): its constants, its decoded
 * header, {@link decodeMail} and the time window {@link checkMailTime}.
 *
 * ```
 * MAIL   = header || ciphertext || tag[32]
 * header = u8 version (1) || bytes8(sender) || bytes8(recipient) || msg_id[16] || time u64
 *          || spk_id u32 || opk_id u32 || ik_a[32] || ek_a[32]
 * ```
 * @module
 */

import { ByteReader, fromUtf8, isImError, ProtocolError } from "../util/mod.ts";
import { SHA256_BYTES, X25519_PUBLIC_BYTES } from "../crypto/mod.ts";
import { malformed } from "./_mail.ts";
import { MAIL_VERSION } from "./mail_certs.ts";
import { bucketOf } from "./padding.ts";
import { isValidUsername } from "./username.ts";

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
 * import { decodeMail } from "./mail_format.ts";
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
 * import { checkMailTime, type MailHeader } from "./mail_format.ts";
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
