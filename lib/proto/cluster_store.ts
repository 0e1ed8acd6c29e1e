/**
 * What a cluster's nodes keep in NATS, sealed at rest (PROTOCOL.md 11.6):
 * each record of the mail stream and each value of the prekeys bucket is
 * sealed with the record primitives of section 4 under keys of the cluster
 * key with labels of their own, and bound to the NATS subject it is stored
 * under, so NATS can neither read nor change it, nor move it to another
 * user or key. The record's `at` and `counted` are in the sealed header.
 *
 * ```
 * SEALED = header || ciphertext || tag[32]
 * header = u8 version (1) || u8 flags (bit 0 counted) || at u64 || nonce[16]
 * tag    = HMAC(smac, bytes8(subject) || header || ciphertext)
 * ```
 *
 * Pure: byte arrays and the synchronous primitives, no I/O.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openStored, sealStored, StoreKeys } from "./cluster_store.ts";
 * const keys = new StoreKeys(new Uint8Array(32).fill(7));
 * const v = sealStored(keys, { subject: "im.c.mail.bob", at: 1000, counted: true, value: new Uint8Array([1, 2]) });
 * const opened = openStored(keys, v, "im.c.mail.bob");
 * assert.deepEqual([...opened.value], [1, 2]);
 * assert.equal(opened.at, 1000);
 * assert.throws(() => openStored(keys, v, "im.c.mail.eve"), { code: "store-forged" });
 * ```
 * @module
 */

import {
  deriveKeySync,
  hmacSha256,
  Label,
  mdcfbDecrypt,
  mdcfbEncrypt,
  SHA256_BYTES,
} from "../crypto/mod.ts";
import {
  ByteReader,
  ByteWriter,
  concat,
  constantTimeEqual,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import { CLUSTER_KEY_BYTES } from "./cluster.ts";

/** The sealed value's version byte. */
export const STORED_VERSION = 1;
/** Bytes of a sealed value's nonce. */
export const STORED_NONCE_BYTES = 16;
/** Bytes of a sealed value's header: version, flags, at, nonce. */
export const STORED_HEADER_BYTES = 1 + 1 + 8 + STORED_NONCE_BYTES;
/** Flag bit 0: the record counts in the mailbox's usage. */
const FLAG_COUNTED = 1;

const EMPTY = new Uint8Array(0);

/** The three keys of section 11.6's sealed values, derived once from the cluster key. */
export class StoreKeys {
  readonly enc: Uint8Array;
  readonly ivk: Uint8Array;
  readonly mac: Uint8Array;

  /**
   * @param clusterKey the 32-byte cluster key
   * @throws {ProtocolError} `bad-length` for another length
   */
  constructor(clusterKey: Uint8Array) {
    if (clusterKey.length !== CLUSTER_KEY_BYTES) {
      throw new ProtocolError(
        "bad-length",
        `cluster key: expected ${CLUSTER_KEY_BYTES} bytes, got ${clusterKey.length}`,
      );
    }
    this.enc = deriveKeySync(clusterKey, EMPTY, Label.CLUSTER_STORE_ENC);
    this.ivk = deriveKeySync(clusterKey, EMPTY, Label.CLUSTER_STORE_IV);
    this.mac = deriveKeySync(clusterKey, EMPTY, Label.CLUSTER_STORE_MAC);
  }

  /** Wipe the keys (the node stops). */
  wipe(): void {
    wipe(this.enc, this.ivk, this.mac);
  }
}

/** A sealed value, opened. */
export interface OpenedStored {
  /** When it was sealed (ms, the sealing node's clock): a record's `at`. */
  readonly at: number;
  /** Whether the record counts in the mailbox's usage. */
  readonly counted: boolean;
  readonly value: Uint8Array;
}

function tag(
  keys: StoreKeys,
  subject: string,
  header: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  const s = utf8(subject);
  if (s.length > 255) {
    throw new ProtocolError(
      "store-malformed",
      "Stored value refused: subject longer than 255 bytes",
    );
  }
  return hmacSha256(
    keys.mac,
    concat(new Uint8Array([s.length]), s, header, ciphertext),
  );
}

/**
 * Seal a value for the NATS subject it is stored under (PROTOCOL.md 11.6).
 * @param keys the cluster's store keys
 * @param v the `subject` (`im.<cluster>.mail.<user>`, or
 *   `$KV.im_<cluster>_prekeys.<key>`), `at` (ms), `counted`, the value
 * @returns the sealed value
 * @throws {ProtocolError} `store-malformed` for a bad time or a subject over 255 bytes
 */
export function sealStored(
  keys: StoreKeys,
  v: { subject: string; at: number; counted?: boolean; value: Uint8Array },
): Uint8Array {
  if (!Number.isSafeInteger(v.at) || v.at < 0) {
    throw new ProtocolError("store-malformed", `Stored value: at ${v.at}`);
  }
  const header = new ByteWriter().u8(STORED_VERSION)
    .u8(v.counted ? FLAG_COUNTED : 0).u64(BigInt(v.at))
    .bytes(randomBytes(STORED_NONCE_BYTES)).finish();
  const iv = hmacSha256(keys.ivk, header);
  const ciphertext = mdcfbEncrypt(keys.enc, iv, v.value);
  wipe(iv);
  return concat(header, ciphertext, tag(keys, v.subject, header, ciphertext));
}

/**
 * Open a sealed value (PROTOCOL.md 11.6), the checks in order: the layout
 * (`store-malformed`), then the tag over the subject, header and
 * ciphertext, in constant time (`store-forged`); only then is it
 * decrypted. Every failure is one of those two codes; the caller skips the
 * value and logs the code, never the bytes.
 * @param keys the cluster's store keys
 * @param bytes the sealed value, as NATS gave it
 * @param subject the subject it was read from
 * @returns its `at`, `counted` and value
 * @throws {ProtocolError} `store-malformed` or `store-forged`
 */
export function openStored(
  keys: StoreKeys,
  bytes: Uint8Array,
  subject: string,
): OpenedStored {
  if (bytes.length < STORED_HEADER_BYTES + SHA256_BYTES) {
    throw new ProtocolError(
      "store-malformed",
      "Stored value refused: shorter than a header and a tag",
    );
  }
  const r = new ByteReader(bytes, "stored value");
  const version = r.u8();
  const flags = r.u8();
  const at = Number(r.u64());
  if (version !== STORED_VERSION || (flags & ~FLAG_COUNTED) !== 0) {
    throw new ProtocolError(
      "store-malformed",
      `Stored value refused: version ${version}, flags ${flags}`,
    );
  }
  const header = bytes.subarray(0, STORED_HEADER_BYTES);
  const ciphertext = bytes.subarray(
    STORED_HEADER_BYTES,
    bytes.length - SHA256_BYTES,
  );
  const got = bytes.subarray(bytes.length - SHA256_BYTES);
  if (!constantTimeEqual(tag(keys, subject, header, ciphertext), got)) {
    throw new ProtocolError(
      "store-forged",
      "Stored value refused: it does not authenticate (another key, another subject, or altered)",
    );
  }
  if (!Number.isSafeInteger(at)) {
    throw new ProtocolError("store-malformed", "Stored value refused: at");
  }
  const iv = hmacSha256(keys.ivk, header);
  const value = mdcfbDecrypt(keys.enc, iv, ciphertext);
  wipe(iv);
  return { at, counted: (flags & FLAG_COUNTED) !== 0, value };
}
