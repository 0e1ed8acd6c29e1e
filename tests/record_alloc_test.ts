/**
 * The allocation-free record layer (issue 15; PROTOCOL.md section 3): the
 * sealer writes the IV's input, the MD-CFB body and the tag straight into
 * the record and keeps its sequence number as two 32-bit halves; the opener
 * checks the tag in place; both share module scratch (the IV, MD-CFB's
 * blocks, SHA-256's schedule). Each test checks the bytes against a record
 * built from the definition with fresh objects, so reuse cannot change them.
 */
import assert from "node:assert/strict";
import {
  concat,
  randomBytes,
  RecordError,
  U64_MAX,
  u64be,
  utf8,
} from "../lib/util/mod.ts";
import { type DirectionKeys, HmacSha256, MdCfb } from "../lib/crypto/mod.ts";
import {
  RECORD_TAG_BYTES,
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../lib/record/mod.ts";
import { assertThrowsIm, flipBit } from "./_helpers.ts";

const T = 1_700_000_000_000;

function keys(): DirectionKeys {
  return { enc: randomBytes(32), iv: randomBytes(32), mac: randomBytes(32) };
}

/**
 * Rules 3.1-3.4 from the definition, every object fresh:
 * `0x10 || type || seq || ts || MD-CFB(enc, HMAC(iv, seq), p) || HMAC(mac, header || ct)`.
 */
function reference(
  k: DirectionKeys,
  type: number,
  seq: bigint,
  ts: bigint,
  p: Uint8Array,
): Uint8Array {
  const header = concat(new Uint8Array([type]), u64be(seq), u64be(ts));
  const iv = new HmacSha256(k.iv).mac(u64be(seq));
  const ct = new MdCfb(k.enc).encrypt(iv, p);
  const tag = new HmacSha256(k.mac).mac(concat(header, ct));
  return concat(new Uint8Array([0x10]), header, ct, tag);
}

/** Re-tag an edited record, as a holder of the MAC key could. */
function retag(k: DirectionKeys, rec: Uint8Array): Uint8Array {
  const out = new Uint8Array(rec);
  out.set(
    new HmacSha256(k.mac).mac(out.subarray(1, out.length - RECORD_TAG_BYTES)),
    out.length - RECORD_TAG_BYTES,
  );
  return out;
}

Deno.test("one sealer reused for many records gives the bytes of records built fresh, for every body length 0..200", () => {
  const k = keys();
  const sealer = new RecordSealer(k);
  const opener = new RecordOpener(k);
  for (let n = 0; n <= 200; n++) {
    const p = randomBytes(n);
    const copy = p.slice();
    const rec = sealer.seal(RecordType.DATA, p, T + n);
    assert.equal(
      rec.toHex(),
      reference(k, RecordType.DATA, BigInt(n), BigInt(T + n), p).toHex(),
      `body of ${n} bytes`,
    );
    assert.equal(p.toHex(), copy.toHex(), "the plaintext is not modified");
    const got = opener.open(rec, T + n);
    assert.equal(got.plaintext.toHex(), p.toHex());
    assert.equal(got.seq, BigInt(n));
    assert.equal(got.timestamp, T + n);
    assert.equal(got.lost, 0n);
  }
});

Deno.test("records of two channels sealed and opened interleaved equal each channel's alone (shared scratch does not leak between keys)", () => {
  const ka = keys(), kb = keys();
  const a = new RecordSealer(ka), b = new RecordSealer(kb);
  const oa = new RecordOpener(ka), ob = new RecordOpener(kb);
  for (let i = 0; i < 20; i++) {
    const pa = randomBytes(i * 7), pb = randomBytes(100);
    const ra = a.seal(RecordType.DATA, pa, T);
    const rb = b.seal(RecordType.HEARTBEAT, pb, T);
    assert.equal(
      ra.toHex(),
      reference(ka, RecordType.DATA, BigInt(i), BigInt(T), pa).toHex(),
    );
    assert.equal(
      rb.toHex(),
      reference(kb, RecordType.HEARTBEAT, BigInt(i), BigInt(T), pb).toHex(),
    );
    // Each opener refuses the other channel's record, then opens its own.
    assertThrowsIm(() => oa.open(rb, T), RecordError, "tampered");
    assert.equal(ob.open(rb, T).plaintext.toHex(), pb.toHex());
    assertThrowsIm(() => ob.open(ra, T), RecordError, "tampered");
    assert.equal(oa.open(ra, T).plaintext.toHex(), pa.toHex());
  }
});

Deno.test("a tampered record fails right after a genuine one opened, and the next genuine one still opens", () => {
  const k = keys();
  const sealer = new RecordSealer(k), opener = new RecordOpener(k);
  for (let i = 0; i < 10; i++) {
    opener.open(sealer.seal(RecordType.DATA, utf8(`genuine ${i}`), T), T);
    const next = sealer.seal(RecordType.DATA, utf8(`next ${i}`), T);
    for (const bit of [8, 8 * 18 + i, 8 * (next.length - 1) + (i & 7)]) {
      assertThrowsIm(
        () => opener.open(flipBit(next, bit), T),
        RecordError,
        "tampered",
      );
    }
    assert.equal(opener.nextSeq, BigInt(2 * i + 1), "the counter did not move");
    assert.equal(
      new TextDecoder().decode(opener.open(next, T).plaintext),
      `next ${i}`,
    );
  }
});

Deno.test("sequence numbers carry across 2^32 (two 32-bit halves): bytes, opening and lost count", () => {
  const k = keys();
  const first = (1n << 32n) - 2n;
  const sealer = new RecordSealer(k, first);
  const opener = new RecordOpener(k);
  const recs: Uint8Array[] = [];
  for (let i = 0n; i < 5n; i++) {
    assert.equal(sealer.nextSeq, first + i);
    const p = utf8(`r${i}`);
    const rec = sealer.seal(RecordType.DATA, p, T);
    assert.equal(
      rec.toHex(),
      reference(k, RecordType.DATA, first + i, BigInt(T), p).toHex(),
    );
    recs.push(rec);
  }
  assert.equal(sealer.nextSeq, first + 5n);
  // The first is a jump of 2^32 - 2 from 0; then one skipped across 2^32.
  assert.equal(opener.open(recs[0]!, T).lost, first);
  assert.equal(opener.nextSeq, first + 1n);
  const got = opener.open(recs[2]!, T);
  assert.equal(got.seq, 1n << 32n);
  assert.equal(got.lost, 1n);
  assert.equal(opener.nextSeq, (1n << 32n) + 1n);
  assertThrowsIm(() => opener.open(recs[1]!, T), RecordError, "replayed");
  assert.equal(opener.open(recs[3]!, T).lost, 0n);
  assert.equal(opener.open(recs[4]!, T).seq, (1n << 32n) + 2n);
});

Deno.test("the sealer's first sequence number is checked; 2^64 is exhausted from the start", () => {
  assert.throws(() => new RecordSealer(keys(), -1n), RangeError);
  assert.throws(() => new RecordSealer(keys(), U64_MAX + 2n), RangeError);
  const s = new RecordSealer(keys(), U64_MAX + 1n);
  assert.equal(s.nextSeq, U64_MAX + 1n);
  assert.throws(() => s.seal(RecordType.DATA, utf8("x"), T), /exhausted/);
});

Deno.test("timestamps are written as u64 and read back as Number(u64) would, beyond 2^32 and 2^53 too", () => {
  const k = keys();
  const sealer = new RecordSealer(k);
  const opener = new RecordOpener(k, { windowMs: Infinity });
  let seq = 0n;
  for (
    const ts of [
      0,
      1,
      2 ** 32 - 1,
      2 ** 32,
      T,
      Number.MAX_SAFE_INTEGER,
      2 ** 53 + 2,
      2 ** 63,
      2 ** 64 - 2 ** 11,
    ]
  ) {
    const rec = sealer.seal(RecordType.DATA, utf8("t"), ts);
    const want = BigInt(ts) % (1n << 64n);
    assert.equal(
      rec.toHex(),
      reference(k, RecordType.DATA, seq++, want, utf8("t")).toHex(),
      `now ${ts}`,
    );
    assert.equal(opener.open(rec, 0).timestamp, Number(want), `now ${ts}`);
  }
  // Fractions are floored, negatives are 0.
  const fr = sealer.seal(RecordType.DATA, utf8("t"), 1234.9);
  assert.equal(opener.open(fr, 0).timestamp, 1234);
  const neg = sealer.seal(RecordType.DATA, utf8("t"), -5);
  assert.equal(opener.open(neg, 0).timestamp, 0);
  // A u64 above 2^53 that is not a double: read rounded, as Number(bigint).
  for (const ts of [(1n << 64n) - 1n, (1n << 53n) + 1n, (1n << 60n) + 3n]) {
    const rec = new Uint8Array(sealer.seal(RecordType.DATA, utf8("u"), 0));
    rec.set(u64be(ts), 10);
    assert.equal(opener.open(retag(k, rec), 0).timestamp, Number(ts));
  }
  // Not a number: refused before a sequence number is used.
  const next = sealer.nextSeq;
  assert.throws(() => sealer.seal(RecordType.DATA, utf8("n"), NaN), RangeError);
  assert.equal(sealer.nextSeq, next);
});

Deno.test("a sealed record is its own buffer, and later records do not change earlier ones", () => {
  const k = keys();
  const sealer = new RecordSealer(k);
  const recs: Uint8Array[] = [], copies: Uint8Array[] = [];
  for (let i = 0; i < 300; i++) {
    const rec = sealer.seal(RecordType.DATA, randomBytes(i % 90), T);
    assert.equal(rec.byteOffset, 0);
    assert.equal(rec.buffer.byteLength, rec.length);
    recs.push(rec);
    copies.push(rec.slice());
  }
  const opener = new RecordOpener(k);
  for (const [i, rec] of recs.entries()) {
    assert.equal(rec.toHex(), copies[i]!.toHex());
    opener.open(rec, T);
  }
});

Deno.test("open() leaves the record as it was: a second open of it is a replay, not tampering", () => {
  const k = keys();
  const rec = new RecordSealer(k).seal(RecordType.DATA, randomBytes(100), T);
  const copy = rec.slice();
  const opener = new RecordOpener(k);
  const got = opener.open(rec, T);
  assert.equal(rec.toHex(), copy.toHex());
  got.plaintext.fill(0); // the caller wipes its plaintext (section 4)
  assert.equal(rec.toHex(), copy.toHex(), "the plaintext is not a view of it");
  assertThrowsIm(() => opener.open(rec, T), RecordError, "replayed");
});
