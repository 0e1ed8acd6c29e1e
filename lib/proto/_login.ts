/**
 * Internal to the login (PROTOCOL.md section 3): the transcript hash `th`,
 * what each side signs, and the key schedule. Shared by `login_client.ts`
 * and `login_server.ts`; not re-exported by `mod.ts`.
 * @module
 */

import { concat, constantTimeEqual, utf8, wipe } from "../util/mod.ts";
import {
  deriveDirectionKeys,
  deriveKey,
  hmacSha256,
  Label,
  transcriptHash,
} from "../crypto/mod.ts";
import type { ClientHello } from "./login_messages.ts";
import type { TicketKeys } from "./ticket.ts";
import { type RecordPair, recordPair } from "./_record_pair.ts";

/**
 * The login transcript hash th (PROTOCOL.md section 3, "Transcript hashes";
 * rule 2.3): label, both sides' versions, username, both nonces, the server
 * key fingerprint and both ephemeral keys. Both versions are signed, so a
 * later version cannot be downgraded to this one by rewriting the bytes.
 * @param hello the client's CLIENT_HELLO
 * @param serverVersion the version byte of SERVER_HELLO
 * @param serverNonce nonce_s
 * @param serverFingerprint raw SHA-256 of the server's SPKI
 * @param serverEphemeral eph_s
 * @returns 32 bytes
 */
export async function loginTranscript(
  hello: ClientHello,
  serverVersion: number,
  serverNonce: Uint8Array,
  serverFingerprint: Uint8Array,
  serverEphemeral: Uint8Array,
): Promise<Uint8Array> {
  return await transcriptHash(Label.TRANSCRIPT, [
    new Uint8Array([hello.version]),
    new Uint8Array([serverVersion]),
    utf8(hello.user),
    hello.nonce,
    serverNonce,
    serverFingerprint,
    hello.ephemeral,
    serverEphemeral,
  ]);
}

/**
 * What a side signs: `label || 0x00 || th`, so the two signatures can never
 * stand for each other (rule 2.3).
 * @param label {@link Label.SERVER_SIGNATURE} or {@link Label.CLIENT_SIGNATURE}
 * @param th the transcript hash
 * @returns the signed bytes
 */
export function signedContent(label: string, th: Uint8Array): Uint8Array {
  return concat(utf8(label), new Uint8Array([0]), th);
}

/** One side's keys after the login: its record layer and the ticket keys. */
export interface LoginKeys extends RecordPair {
  /** Keys that seal tickets for this user (rule 4.2). */
  ticketKeys: TicketKeys;
}

/**
 * The key schedule (PROTOCOL.md section 3, "Key schedule"; rules 2.5, 2.6):
 * both directions and the ticket keys from `session key || X25519 secret`,
 * salted with th2. Every raw secret is wiped here: the session key, the
 * X25519 secret, the IKM and the direction keys (rule 2.8).
 * @param sessionKey the 32-byte session key (wiped)
 * @param dh the X25519 shared secret (wiped)
 * @param th2 the key transcript hash
 * @param side which side's record layer to build (the client seals c2s)
 * @param windowMs the opener's freshness window (rule 3.5)
 * @returns the sealer, the opener and the ticket keys
 */
export async function loginKeys(
  sessionKey: Uint8Array,
  dh: Uint8Array,
  th2: Uint8Array,
  side: "client" | "server",
  windowMs: number | undefined,
): Promise<LoginKeys> {
  const ikm = concat(sessionKey, dh);
  wipe(sessionKey, dh);
  try {
    const [c2s, s2c, enc, mac] = await Promise.all([
      deriveDirectionKeys(ikm, th2, "c2s"),
      deriveDirectionKeys(ikm, th2, "s2c"),
      deriveKey(ikm, th2, Label.TICKET_ENC),
      deriveKey(ikm, th2, Label.TICKET_MAC),
    ]);
    const records = side === "client"
      ? recordPair(c2s, s2c, windowMs)
      : recordPair(s2c, c2s, windowMs);
    return { ...records, ticketKeys: { enc, mac } };
  } finally {
    wipe(ikm);
  }
}

/**
 * The tag on the sealed session key (PROTOCOL.md section 3, SERVER_KEY):
 * `HMAC(HKDF(X25519 secret, th, "im v1 server key tag"), oaep_ciphertext)`.
 * Only the two ends of this login's X25519 exchange can make it, and th
 * binds the server's ephemeral key to its signature, so the client decrypts
 * no ciphertext that anyone else chose: its RSA key never serves as a
 * decryption oracle.
 * @param dh the X25519 shared secret (not wiped)
 * @param th the login transcript hash
 * @param sealed the OAEP ciphertext
 * @returns 32 bytes
 */
export async function serverKeyTag(
  dh: Uint8Array,
  th: Uint8Array,
  sealed: Uint8Array,
): Promise<Uint8Array> {
  const key = await deriveKey(dh, th, Label.SERVER_KEY_TAG);
  try {
    return hmacSha256(key, sealed);
  } finally {
    wipe(key);
  }
}

/**
 * Check {@link serverKeyTag} in constant time.
 * @returns whether the tag is the one this login's X25519 secret makes
 */
export async function checkServerKeyTag(
  dh: Uint8Array,
  th: Uint8Array,
  sealed: Uint8Array,
  tag: Uint8Array,
): Promise<boolean> {
  return constantTimeEqual(await serverKeyTag(dh, th, sealed), tag);
}
