/**
 * The cluster's envelope (PROTOCOL.md section 11.2): what one node tells
 * the others through NATS, sealed with the record primitives of section 4
 * (MD-CFB, HMAC-SHA256, encrypt-then-MAC over a header) under keys of the
 * cluster key, bound to its NATS subject, and numbered so that a copy is
 * refused. NATS routes and stores envelopes; it can neither read nor forge
 * them, nor move one to another subject.
 *
 * ```
 * ENVELOPE = header || ciphertext || tag[32]
 * header   = u8 version (1) || bytes8(node) || boot[8] || seq u64 || time u64
 * ```
 *
 * Pure: byte arrays and the synchronous primitives, no I/O.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClusterKeys, EnvelopeWindow, openEnvelope, sealEnvelope } from "./cluster.ts";
 * const keys = new ClusterKeys(new Uint8Array(32).fill(7));
 * const boot = new Uint8Array(8).fill(1);
 * const env = sealEnvelope(keys, { node: "n1", boot, seq: 1, time: 1000, subject: "im.c.node.n2", payload: new TextEncoder().encode("{}") });
 * const window = new EnvelopeWindow();
 * const opened = openEnvelope(keys, env, { subject: "im.c.node.n2", now: 1000, window });
 * assert.equal(opened.node, "n1");
 * assert.throws(() => openEnvelope(keys, env, { subject: "im.c.node.n2", now: 1000, window }), { code: "cluster-replayed" });
 * assert.throws(() => openEnvelope(keys, env, { subject: "im.c.node.n3", now: 1000, window: new EnvelopeWindow() }), { code: "cluster-forged" });
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
  fromUtf8,
  ProtocolError,
  utf8,
  wipe,
} from "../util/mod.ts";
import { isValidUsername } from "./username.ts";

/** The envelope's version byte. */
export const ENVELOPE_VERSION = 1;
/** Bytes of the cluster key (`server/cluster.key`, section 11.1). */
export const CLUSTER_KEY_BYTES = 32;
/** Bytes of a node's boot id. */
export const BOOT_BYTES = 8;
/** How far an envelope's time may lie from the receiver's clock (section 11.2). */
export const ENVELOPE_MAX_SKEW_MS = 120_000;
/** Envelopes of one node and boot remembered for replays (section 11.2). */
export const ENVELOPE_WINDOW = 1024;

const EMPTY = new Uint8Array(0);

/** The three keys of section 11.2, derived once from the cluster key. */
export class ClusterKeys {
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
    this.enc = deriveKeySync(clusterKey, EMPTY, Label.CLUSTER_ENC);
    this.ivk = deriveKeySync(clusterKey, EMPTY, Label.CLUSTER_IV);
    this.mac = deriveKeySync(clusterKey, EMPTY, Label.CLUSTER_MAC);
  }

  /**
   * Take the keys of another cluster key, in place (section 11.1, a
   * SIGHUP): whoever holds this object seals and opens under the new key
   * from now on, and what the old one sealed no longer opens. The old keys'
   * bytes are overwritten.
   * @param clusterKey the new 32-byte cluster key
   * @throws {ProtocolError} `bad-length` for another length (nothing changed)
   */
  replace(clusterKey: Uint8Array): void {
    const next = new ClusterKeys(clusterKey);
    this.enc.set(next.enc);
    this.ivk.set(next.ivk);
    this.mac.set(next.mac);
    next.wipe();
  }

  /** Wipe the keys (the node stops, or the key was replaced). */
  wipe(): void {
    wipe(this.enc, this.ivk, this.mac);
  }
}

/** What an envelope says of itself, once it verified. */
export interface OpenedEnvelope {
  /** The node that sealed it. */
  readonly node: string;
  /** That node's boot id (8 bytes). */
  readonly boot: Uint8Array;
  readonly seq: number;
  /** When it was sealed, ms (the sealing node's clock). */
  readonly time: number;
  /** The payload (section 11.3, 11.4: UTF-8 JSON). */
  readonly payload: Uint8Array;
}

function malformed(why: string): ProtocolError {
  return new ProtocolError(
    "cluster-malformed",
    `Cluster envelope refused: ${why}`,
  );
}

function tag(
  keys: ClusterKeys,
  subject: string,
  header: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  const s = utf8(subject);
  if (s.length > 255) throw malformed("subject longer than 255 bytes");
  return hmacSha256(
    keys.mac,
    concat(new Uint8Array([s.length]), s, header, ciphertext),
  );
}

/**
 * Seal a payload for one NATS subject (section 11.2).
 * @param keys the cluster's keys
 * @param e the sealing node's name and boot id, the envelope's `seq` (from
 *   1, one more per envelope of that boot), `time` (ms), the NATS
 *   `subject` it is published on, and the payload
 * @returns the envelope
 * @throws {ProtocolError} `cluster-malformed` for a bad node name, boot id,
 *   seq or time
 */
export function sealEnvelope(
  keys: ClusterKeys,
  e: {
    node: string;
    boot: Uint8Array;
    seq: number;
    time: number;
    subject: string;
    payload: Uint8Array;
  },
): Uint8Array {
  if (!isValidUsername(e.node)) throw malformed(`node name "${e.node}"`);
  if (e.boot.length !== BOOT_BYTES) throw malformed("boot id length");
  if (!Number.isSafeInteger(e.seq) || e.seq < 1) throw malformed("seq");
  if (!Number.isSafeInteger(e.time) || e.time < 0) throw malformed("time");
  const header = new ByteWriter().u8(ENVELOPE_VERSION).bytes8(utf8(e.node))
    .bytes(e.boot).u64(BigInt(e.seq)).u64(BigInt(e.time)).finish();
  const iv = hmacSha256(keys.ivk, header);
  const ciphertext = mdcfbEncrypt(keys.enc, iv, e.payload);
  wipe(iv);
  return concat(header, ciphertext, tag(keys, e.subject, header, ciphertext));
}

/**
 * The (node, boot, seq) already seen, per node and boot: the newest 1,024
 * seqs of each (section 11.2). One per receiving node.
 */
export class EnvelopeWindow {
  #seen = new Map<string, { top: number; seqs: Set<number> }>();

  /**
   * Take `seq` of a node's boot, once.
   * @returns false when it was seen, or is older than the window
   */
  take(node: string, boot: Uint8Array, seq: number): boolean {
    const id = `${node}\0${boot.toHex()}`;
    let w = this.#seen.get(id);
    if (!w) this.#seen.set(id, w = { top: 0, seqs: new Set() });
    if (seq <= w.top - ENVELOPE_WINDOW || w.seqs.has(seq)) return false;
    w.seqs.add(seq);
    if (seq > w.top) {
      w.top = seq;
      for (const s of w.seqs) {
        if (s <= w.top - ENVELOPE_WINDOW) w.seqs.delete(s);
      }
    }
    return true;
  }

  /** Forget a node (it is gone): its next boot starts a new window anyway. */
  forget(node: string): void {
    for (const id of this.#seen.keys()) {
      if (id.startsWith(`${node}\0`)) this.#seen.delete(id);
    }
  }
}

/**
 * Open an envelope (section 11.2), the checks in order: the layout
 * (`cluster-malformed`), the tag over the subject, header and ciphertext,
 * in constant time (`cluster-forged`), the time (`cluster-stale`), then
 * (node, boot, seq) not seen (`cluster-replayed`); only then is it
 * decrypted.
 * @param keys the cluster's keys
 * @param bytes the envelope
 * @param a the subject it arrived on, the receiver's clock, its window
 * @returns who sealed it, when, and the payload
 * @throws {ProtocolError} the code of the first check that fails
 */
export function openEnvelope(
  keys: ClusterKeys,
  bytes: Uint8Array,
  a: { subject: string; now: number; window: EnvelopeWindow },
): OpenedEnvelope {
  let node: string, boot: Uint8Array, seq: number, time: number;
  let headerLength: number;
  try {
    const r = new ByteReader(bytes, "cluster envelope");
    if (r.u8() !== ENVELOPE_VERSION) throw malformed("version");
    node = fromUtf8(r.bytes8(), "node");
    boot = r.bytes(BOOT_BYTES);
    seq = Number(r.u64());
    time = Number(r.u64());
    headerLength = bytes.length - r.remaining();
  } catch (e) {
    if (e instanceof ProtocolError && e.code === "cluster-malformed") throw e;
    throw malformed("truncated header");
  }
  if (!isValidUsername(node)) throw malformed("node name");
  if (bytes.length < headerLength + SHA256_BYTES) throw malformed("no tag");
  const header = bytes.subarray(0, headerLength);
  const ciphertext = bytes.subarray(headerLength, bytes.length - SHA256_BYTES);
  const got = bytes.subarray(bytes.length - SHA256_BYTES);
  if (!constantTimeEqual(tag(keys, a.subject, header, ciphertext), got)) {
    throw new ProtocolError(
      "cluster-forged",
      "Cluster envelope refused: it does not authenticate (another key, another subject, or altered)",
    );
  }
  if (Math.abs(time - a.now) > ENVELOPE_MAX_SKEW_MS) {
    throw new ProtocolError(
      "cluster-stale",
      `Cluster envelope refused: sealed at ${time}, more than 120 s from now`,
    );
  }
  if (
    !Number.isSafeInteger(seq) || seq < 1 || !a.window.take(node, boot, seq)
  ) {
    throw new ProtocolError(
      "cluster-replayed",
      `Cluster envelope refused: ${node}'s envelope ${seq} was seen before`,
    );
  }
  const iv = hmacSha256(keys.ivk, header);
  const payload = mdcfbDecrypt(keys.enc, iv, ciphertext);
  wipe(iv);
  return { node, boot: new Uint8Array(boot), seq, time, payload };
}
