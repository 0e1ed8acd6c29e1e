/**
 * Key schedule (PROTOCOL.md "Key schedule", rules 2.5, 2.6, 4.2, 4.4): every
 * derived key is HKDF-SHA256 (RFC 5869), computed synchronously on
 * `hmac.ts` (WebCrypto's HKDF costs two asynchronous calls per key: about
 * 70 us against 13 us here, issue 15), and every label starts with `im v1 `.
 * The labels are defined here once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveDirectionKeys } from "./kdf.ts";
 * const ikm = new Uint8Array(64), salt = new Uint8Array(32);
 * const c2s = await deriveDirectionKeys(ikm, salt, "c2s");
 * const s2c = await deriveDirectionKeys(ikm, salt, "s2c");
 * assert.ok(c2s.enc.length === 32 && c2s.enc.toHex() !== s2c.enc.toHex());
 * ```
 * @module
 */

import { utf8, wipe } from "../util/mod.ts";
import { hmacSha256 } from "./hmac.ts";

/** Every label of the protocol (PROTOCOL.md "Labels"). */
export const Label = {
  /** Login transcript hash prefix (rule 2.3). */
  TRANSCRIPT: "im v1 login transcript",
  /** Second login transcript: adds the client signature and the sealed session key. */
  TRANSCRIPT_KEYS: "im v1 login keys",
  /** Context the server signs (rule 2.2). */
  SERVER_SIGNATURE: "im v1 server signature",
  /** Context the client signs (rule 2.3). */
  CLIENT_SIGNATURE: "im v1 client signature",
  /** RSA-OAEP label of the sealed session key (rule 2.5). */
  SESSION_KEY: "im v1 session key",
  /**
   * Key of the tag on the sealed session key, from the X25519 secret: the
   * client checks it before it decrypts (PROTOCOL.md section 3).
   */
  SERVER_KEY_TAG: "im v1 server key tag",
  /** Ticket sealing keys, from the joiner's server session (rule 4.2). */
  TICKET_ENC: "im v1 ticket enc",
  TICKET_MAC: "im v1 ticket mac",
  /** The joiner's commitment to its nonce and ephemeral key, sent before it sees the host's (rule 4.4; PROTOCOL.md "Peer sessions"). */
  PEER_COMMIT: "im v1 peer commit",
  /** Key of the MAC that binds a PEER_COMMIT to its grant, from the peer key (PROTOCOL.md "Peer sessions", one commitment per grant). */
  PEER_COMMIT_AUTH: "im v1 peer commit auth",
  /** Peer handshake transcript (rule 4.4). */
  PEER_TRANSCRIPT: "im v1 peer transcript",
  /** Key that authenticates the peer handshake, from the peer key. */
  PEER_AUTH: "im v1 peer auth",
  /** Short authentication string of a peer session (rule 4.4). */
  PEER_SAS: "im v1 peer sas",
  /** Context the host signs in its FINISHED: `label || 0x00 || pth` (PROTOCOL.md section 6, "Key continuity"). */
  PEER_HOST_SIGNATURE: "im v1 peer host signature",
  /** Context the joiner signs in its FINISHED (PROTOCOL.md section 6, "Key continuity"). */
  PEER_JOINER_SIGNATURE: "im v1 peer joiner signature",
  /** Mailboxes (PROTOCOL.md section 9.1): the transcript of an `IK_CERT`. */
  MAIL_IDENTITY: "im v1 mail identity",
  /** Context the user signs in an `IK_CERT`: `label || 0x00 || ik_th`. */
  MAIL_IDENTITY_SIGNATURE: "im v1 mail identity signature",
  /** The transcript of an `SPK_CERT` (section 9.1). */
  MAIL_PREKEY: "im v1 mail prekey",
  /** Context the user signs in an `SPK_CERT`: `label || 0x00 || spk_th`. */
  MAIL_PREKEY_SIGNATURE: "im v1 mail prekey signature",
  /** X3DH associated data (section 9.2): names, RSA fingerprints, identity keys. */
  MAIL_AD: "im v1 mail ad",
  /** X3DH output `sk` (section 9.2). */
  MAIL_SECRET: "im v1 mail secret",
  /** One message's keys from `sk`, salted with its `msg_id` (section 9.2). */
  MAIL_ENC: "im v1 mail enc",
  MAIL_IV: "im v1 mail iv",
  MAIL_MAC: "im v1 mail mac",
  /** Key of the `delivered` proof (section 9.6). */
  MAIL_RECEIPT: "im v1 mail receipt",
  /** Rooms (PROTOCOL.md section 10.1): the transcript `list_th` of a `ROOM_LIST`. */
  ROOM_LIST: "im v1 room list",
  /** Context the creator signs in a `ROOM_LIST`: `label || 0x00 || list_th`. */
  ROOM_LIST_SIGNATURE: "im v1 room list signature",
  /** The transcript of a `ROOM_LEAVE` (section 10.1). */
  ROOM_LEAVE: "im v1 room leave",
  /** Context the member signs in a `ROOM_LEAVE`. */
  ROOM_LEAVE_SIGNATURE: "im v1 room leave signature",
  /** A sender chain's message key `mk_i` from `ck_i`, salted with `room_id` (section 10.2). */
  ROOM_MESSAGE: "im v1 room message",
  /** The next chain key `ck_{i+1}` from `ck_i`, salted with `room_id` (section 10.2). */
  ROOM_CHAIN: "im v1 room chain",
  /** One room message's keys from `mk_i`, salted with `H(header)` (section 10.2). */
  ROOM_ENC: "im v1 room enc",
  ROOM_IV: "im v1 room iv",
  ROOM_MAC: "im v1 room mac",
  /** Context the sender's chain key pair signs in a `ROOM_MSG` (Ed25519, section 10.3). */
  ROOM_MESSAGE_SIGNATURE: "im v1 room message signature",
  /** Cluster (PROTOCOL.md section 11.2): the envelope's keys, from the cluster key. */
  CLUSTER_ENC: "im v1 cluster enc",
  CLUSTER_IV: "im v1 cluster iv",
  CLUSTER_MAC: "im v1 cluster mac",
  /** Cluster (PROTOCOL.md section 11.6): the keys of what is sealed at rest in NATS. */
  CLUSTER_STORE_ENC: "im v1 cluster store enc",
  CLUSTER_STORE_IV: "im v1 cluster store iv",
  CLUSTER_STORE_MAC: "im v1 cluster store mac",
} as const;

/** Directions of a channel: login (client/server) and peer (host/joiner). Rule 2.6: never the same key both ways. */
export type Direction = "c2s" | "s2c" | "h2j" | "j2h";

/** The seed's three keys for one direction (rule 2.6). */
export interface DirectionKeys {
  /** MD-CFB key (rule 3.3). */
  enc: Uint8Array;
  /** Key that derives each record's IV from its sequence number (rule 3.2). */
  iv: Uint8Array;
  /** HMAC-SHA256 key of the tag (rule 3.4). */
  mac: Uint8Array;
}

/** Most bytes one HKDF-SHA256 may give (RFC 5869 2.3: 255 blocks). */
export const HKDF_MAX_BYTES = 255 * 32;

/**
 * HKDF-SHA256 extract (RFC 5869 2.2).
 * @param ikm input keying material
 * @param salt salt (empty means 32 zero bytes, as RFC 5869 says)
 * @returns the pseudorandom key (the caller wipes it)
 */
function extract(ikm: Uint8Array, salt: Uint8Array): Uint8Array<ArrayBuffer> {
  return hmacSha256(salt.length === 0 ? new Uint8Array(32) : salt, ikm);
}

/**
 * HKDF-SHA256 expand (RFC 5869 2.3): T(i) = HMAC(PRK, T(i-1) || info || i).
 * @param prk the pseudorandom key
 * @param info context
 * @param length output bytes, at most {@link HKDF_MAX_BYTES}
 * @returns the output
 */
function expand(
  prk: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  const block = new Uint8Array(32 + info.length + 1);
  let prev = 0; // bytes of T(i-1) at the start of `block` (none for T(1))
  for (let i = 1, off = 0; off < length; i++) {
    block.set(info, prev);
    block[prev + info.length] = i;
    const t = hmacSha256(prk, block.subarray(0, prev + info.length + 1));
    out.set(t.subarray(0, Math.min(32, length - off)), off);
    block.set(t, 0);
    prev = 32;
    off += 32;
    wipe(t);
  }
  wipe(block);
  return out;
}

/**
 * HKDF-SHA256 extract-and-expand (RFC 5869 2.2, 2.3), synchronous.
 * @param ikm input keying material
 * @param salt salt (may be empty)
 * @param info context label
 * @param length output bytes (0 to {@link HKDF_MAX_BYTES})
 * @returns the derived bytes
 * @throws {RangeError} a length out of range
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hkdfSync } from "./kdf.ts";
 * const k = hkdfSync(new Uint8Array(32), new Uint8Array(0), new Uint8Array(0), 42);
 * assert.ok(k.length === 42);
 * ```
 */
export function hkdfSync(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(length) || length < 0 || length > HKDF_MAX_BYTES) {
    throw new RangeError(
      `HKDF-SHA256 gives 0 to ${HKDF_MAX_BYTES} bytes, not ${length}`,
    );
  }
  const prk = extract(ikm, salt);
  try {
    return expand(prk, info, length);
  } finally {
    wipe(prk);
  }
}

/**
 * {@link hkdfSync} behind a promise, for callers written against
 * WebCrypto's asynchronous HKDF: a bad length rejects.
 * @param ikm input keying material
 * @param salt salt (may be empty)
 * @param info context label
 * @param length output bytes (at most 255 * 32)
 * @returns the derived bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hkdf } from "./kdf.ts";
 * const k = await hkdf(new Uint8Array(32), new Uint8Array(0), new Uint8Array(0), 42);
 * assert.ok(k.length === 42);
 * ```
 */
export function hkdf(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  try {
    return Promise.resolve(hkdfSync(ikm, salt, info, length));
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * One 32-byte key under a protocol label.
 * @param ikm secret input
 * @param salt salt (a transcript hash)
 * @param label a string starting with `im v1 `
 * @returns 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveKey, Label } from "./kdf.ts";
 * const k = await deriveKey(new Uint8Array(32), new Uint8Array(32), Label.PEER_AUTH);
 * assert.ok(k.length === 32);
 * ```
 */
export function deriveKey(
  ikm: Uint8Array,
  salt: Uint8Array,
  label: string,
): Promise<Uint8Array<ArrayBuffer>> {
  return Promise.resolve(deriveKeySync(ikm, salt, label));
}

/**
 * One 32-byte HKDF-SHA256 output (RFC 5869 2.2, 2.3: extract, then one
 * block of expand), synchronously: the bytes of {@link deriveKey}, for code
 * that derives several keys per message (PROTOCOL.md section 9.2).
 * @param ikm secret input
 * @param salt salt (empty means 32 zero bytes, as RFC 5869 says)
 * @param label a string starting with `im v1 `
 * @returns 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveKey, deriveKeySync, Label } from "./kdf.ts";
 * const ikm = new Uint8Array(32).fill(7), salt = new Uint8Array(16).fill(1);
 * assert.deepEqual(deriveKeySync(ikm, salt, Label.MAIL_ENC), await deriveKey(ikm, salt, Label.MAIL_ENC));
 * ```
 */
export function deriveKeySync(
  ikm: Uint8Array,
  salt: Uint8Array,
  label: string,
): Uint8Array<ArrayBuffer> {
  return hkdfSync(ikm, salt, utf8(label), 32);
}

/**
 * The three keys of one direction: labels `im v1 <dir> enc`, `... iv`, `... mac`.
 * @param ikm secret input (session key || X25519 secret, or peer key || X25519 secret)
 * @param salt the transcript hash
 * @param dir which direction
 * @returns the direction's keys
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deriveDirectionKeys } from "./kdf.ts";
 * const k = await deriveDirectionKeys(new Uint8Array(64), new Uint8Array(32), "h2j");
 * assert.ok(k.mac.length === 32);
 * ```
 */
export function deriveDirectionKeys(
  ikm: Uint8Array,
  salt: Uint8Array,
  dir: Direction,
): Promise<DirectionKeys> {
  // One extract for the three keys: they share the secret and the salt.
  const prk = extract(ikm, salt);
  try {
    return Promise.resolve({
      enc: expand(prk, utf8(`im v1 ${dir} enc`), 32),
      iv: expand(prk, utf8(`im v1 ${dir} iv`), 32),
      mac: expand(prk, utf8(`im v1 ${dir} mac`), 32),
    });
  } finally {
    wipe(prk);
  }
}

/**
 * SHA-256 of the concatenation of labelled parts, each prefixed by its u32
 * length so that no two different part lists hash the same way.
 * @param label domain-separation label
 * @param parts the fields, in order
 * @returns 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { transcriptHash } from "./kdf.ts";
 * const h = await transcriptHash("im v1 login transcript", [new Uint8Array([1])]);
 * assert.ok(h.length === 32);
 * ```
 */
export async function transcriptHash(
  label: string,
  parts: Uint8Array[],
): Promise<Uint8Array<ArrayBuffer>> {
  const all = [utf8(label), ...parts];
  let n = 0;
  for (const p of all) n += 4 + p.length;
  const buf = new Uint8Array(n);
  const view = new DataView(buf.buffer);
  let off = 0;
  for (const p of all) {
    view.setUint32(off, p.length);
    buf.set(p, off + 4);
    off += 4 + p.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}
