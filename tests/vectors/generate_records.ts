/**
 * Generates `records.json`: record-layer test vectors with fixed inputs, so
 * the file is reproducible byte for byte.
 *
 * Records are built here straight from PROTOCOL.md "Records", not with
 * `lib/record.ts`: `0x10 || type || seq u64 || timestamp u64 || ct || tag`,
 * `iv = HMAC(ivKey, u64be(seq))`, `ct = MD-CFB(encKey, iv, plaintext)`,
 * `tag = HMAC(macKey, type || seq || timestamp || ct)`. The IV depends only
 * on the sequence number, so sealing is deterministic given keys, seq,
 * timestamp and plaintext. `tests/vectors_test.ts` checks that the library
 * reproduces every success case and reaches every expected verdict.
 *
 * Run: `deno run --allow-write=tests/vectors tests/vectors/generate_records.ts`
 * @module
 */

import { MdCfb, HmacSha256, sha256 } from "../../lib/crypto/mod.ts";

/** Expected verdict of {@link RecordOpener.open}. */
export type RecordExpect = "success" | "tampered" | "replayed" | "stale" | "malformed";

/** One record vector. */
export interface RecordVector {
  name: string;
  /** The direction's keys, hex. */
  keys: { enc: string; iv: string; mac: string };
  /** Opener freshness window in ms. */
  windowMs: number;
  /** Receiver clock in ms. */
  now: number;
  /** Records (hex) the opener accepts first, in order; each must succeed. */
  before: string[];
  /** The record under test (frame payload, hex). */
  record: string;
  expect: RecordExpect;
  /** On success: the plaintext (hex), type, seq (decimal string), timestamp, lost (decimal string). */
  plaintext?: string;
  type?: number;
  seq?: string;
  timestamp?: number;
  lost?: string;
}

const enc = new TextEncoder();
const NOW = 1_700_000_000_000;
const DATA = 2, FINISHED = 1, HEARTBEAT = 3, CLOSE = 4;

function fixed(label: string): Uint8Array {
  return sha256(enc.encode(`im test vector ${label}`));
}

const K = { enc: fixed("records enc"), iv: fixed("records iv"), mac: fixed("records mac") };
/** The other direction of the same channel (reflection, rule 2.6). */
const K2 = { enc: fixed("records enc 2"), iv: fixed("records iv 2"), mac: fixed("records mac 2") };

function hexKeys(k: typeof K) {
  return { enc: k.enc.toHex(), iv: k.iv.toHex(), mac: k.mac.toHex() };
}

/** Seal one record by the PROTOCOL.md definition. */
export function sealRecord(
  k: typeof K,
  type: number,
  seq: bigint,
  timestamp: number,
  plaintext: Uint8Array,
): Uint8Array {
  const seqBytes = new Uint8Array(8);
  new DataView(seqBytes.buffer).setBigUint64(0, seq);
  const iv = new HmacSha256(k.iv).mac(seqBytes);
  const ct = new MdCfb(k.enc).encrypt(iv, plaintext);
  const out = new Uint8Array(1 + 17 + ct.length + 32);
  const view = new DataView(out.buffer);
  out[0] = 0x10;
  out[1] = type;
  view.setBigUint64(2, seq);
  view.setBigUint64(10, BigInt(timestamp));
  out.set(ct, 18);
  out.set(new HmacSha256(k.mac).mac(out.subarray(1, 18 + ct.length)), 18 + ct.length);
  return out;
}

function flip(b: Uint8Array, byte: number, mask = 0x01): Uint8Array {
  const x = new Uint8Array(b);
  x[byte] = x[byte]! ^ mask;
  return x;
}

function retag(k: typeof K, rec: Uint8Array): Uint8Array {
  const x = new Uint8Array(rec);
  x.set(new HmacSha256(k.mac).mac(x.subarray(1, x.length - 32)), x.length - 32);
  return x;
}

/**
 * Build every case, deterministically.
 * @returns the vectors
 */
export function buildRecordVectors(): RecordVector[] {
  const cases: RecordVector[] = [];
  const success = (
    name: string,
    type: number,
    seq: bigint,
    timestamp: number,
    plaintext: Uint8Array,
    o: { windowMs?: number; before?: Uint8Array[]; lost?: bigint } = {},
  ) => {
    cases.push({
      name,
      keys: hexKeys(K),
      windowMs: o.windowMs ?? 120_000,
      now: NOW,
      before: (o.before ?? []).map((b) => b.toHex()),
      record: sealRecord(K, type, seq, timestamp, plaintext).toHex(),
      expect: "success",
      plaintext: plaintext.toHex(),
      type,
      seq: seq.toString(),
      timestamp,
      lost: (o.lost ?? seq - BigInt(o.before?.length ?? 0)).toString(),
    });
  };
  const failure = (
    name: string,
    record: Uint8Array,
    expect: RecordExpect,
    o: { windowMs?: number; before?: Uint8Array[] } = {},
  ) => {
    cases.push({
      name,
      keys: hexKeys(K),
      windowMs: o.windowMs ?? 120_000,
      now: NOW,
      before: (o.before ?? []).map((b) => b.toHex()),
      record: record.toHex(),
      expect,
    });
  };

  const hello = enc.encode('{"type":"msg","text":"hello"}');
  const long = Uint8Array.from({ length: 100 }, (_, i) => i);
  const r0 = sealRecord(K, DATA, 0n, NOW, hello);

  // Success.
  success("data record, seq 0", DATA, 0n, NOW, hello);
  success("empty heartbeat", HEARTBEAT, 0n, NOW, new Uint8Array(0));
  success("one full MD-CFB block", DATA, 0n, NOW, long.subarray(0, 32));
  success("one block and one byte", DATA, 0n, NOW, long.subarray(0, 33));
  success("100 bytes, seq 7 after nothing: 7 lost", DATA, 7n, NOW, long);
  success("finished record with a 32-byte transcript", FINISHED, 0n, NOW, fixed("transcript"));
  success("close record", CLOSE, 0n, NOW, enc.encode('{"reason":"bye"}'));
  success("seq 1 after seq 0", DATA, 1n, NOW, hello, { before: [r0] });
  success("seq 4 after seq 0: 3 lost", DATA, 4n, NOW, hello, { before: [r0], lost: 3n });
  success("timestamp exactly 120 s old", DATA, 0n, NOW - 120_000, hello);
  success("timestamp exactly 120 s ahead", DATA, 0n, NOW + 120_000, hello);
  success("timestamp 119 s old", DATA, 0n, NOW - 119_000, hello);
  success("5 s window, 5 s old", DATA, 0n, NOW - 5_000, hello, { windowMs: 5_000 });
  success("last sequence number 2^64-1", DATA, (1n << 64n) - 1n, NOW, hello);
  success("1000-byte body", DATA, 0n, NOW, new Uint8Array(1000).fill(0x61));

  // Stale.
  failure("timestamp 120.001 s old", sealRecord(K, DATA, 0n, NOW - 120_001, hello), "stale");
  failure("timestamp 120.001 s ahead", sealRecord(K, DATA, 0n, NOW + 120_001, hello), "stale");
  failure("timestamp 121 s old", sealRecord(K, DATA, 0n, NOW - 121_000, hello), "stale");
  failure("timestamp 0", sealRecord(K, DATA, 0n, 0, hello), "stale");
  failure("5 s window, 5.001 s old", sealRecord(K, DATA, 0n, NOW - 5_001, hello), "stale", { windowMs: 5_000 });

  // Replayed and reordered.
  failure("seq 0 replayed", r0, "replayed", { before: [r0] });
  failure(
    "seq 0 after seq 1 (reordered)",
    r0,
    "replayed",
    { before: [sealRecord(K, DATA, 1n, NOW, hello)] },
  );
  failure(
    "seq 0 after the last sequence number",
    r0,
    "replayed",
    { before: [sealRecord(K, DATA, (1n << 64n) - 1n, NOW, hello)] },
  );

  // Tampered: every part of the record is under the tag.
  failure("flipped type bit", flip(r0, 1), "tampered");
  failure("flipped seq bit", flip(r0, 9), "tampered");
  failure("huge seq written over seq 0", flip(r0, 2, 0x80), "tampered");
  failure("flipped timestamp bit", flip(r0, 17), "tampered");
  failure("flipped first ciphertext bit", flip(r0, 18), "tampered");
  failure("flipped last ciphertext bit", flip(r0, r0.length - 33, 0x80), "tampered");
  failure("flipped first tag bit", flip(r0, r0.length - 32), "tampered");
  failure("flipped last tag bit", flip(r0, r0.length - 1, 0x80), "tampered");
  failure("tag truncated by one byte", r0.subarray(0, r0.length - 1), "tampered");
  failure("tag extended by one byte", new Uint8Array([...r0, 0]), "tampered");
  failure("sealed with the other direction's keys (reflection)", sealRecord(K2, DATA, 0n, NOW, hello), "tampered");
  failure(
    "other direction's MAC key only",
    sealRecord({ ...K, mac: K2.mac }, DATA, 0n, NOW, hello),
    "tampered",
  );
  failure("zero tag", new Uint8Array([...r0.subarray(0, r0.length - 32), ...new Uint8Array(32)]), "tampered");

  // Malformed.
  failure("49 bytes: shorter than the smallest record", r0.subarray(0, 49), "malformed");
  failure("empty", new Uint8Array(0), "malformed");
  failure("frame kind 0x11", flip(r0, 0), "malformed");
  failure("unknown type 0x7f with a valid tag", retag(K, (() => {
    const x = new Uint8Array(r0);
    x[1] = 0x7f;
    return x;
  })()), "malformed");
  failure("unknown type 0x00 with a valid tag", retag(K, flip(r0, 1, DATA)), "malformed");
  return cases;
}

if (import.meta.main) {
  const file = new URL("./records.json", import.meta.url);
  const doc = {
    description:
      "im record-layer vectors (PROTOCOL.md Records). Open `before` in order with one RecordOpener(keys, windowMs) at `now`, then `record`; expect the verdict. Generated by generate_records.ts.",
    cases: buildRecordVectors(),
  };
  await Deno.writeTextFile(file, JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote ${doc.cases.length} cases to ${file.pathname}`);
}
