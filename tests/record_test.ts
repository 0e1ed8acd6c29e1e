/**
 * The record layer, requirements section 3: header, per-record IV, MD-CFB
 * body, encrypt-then-MAC, replay and freshness checks, loss reporting,
 * reflection and sequence exhaustion.
 */
import assert from "node:assert/strict";
import {
  concat,
  ProtocolError,
  randomBytes,
  RecordError,
  U64_MAX,
  u64be,
  utf8,
} from "../lib/util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  FrameKind,
} from "../lib/wire/mod.ts";
import { type DirectionKeys, HmacSha256, MdCfb } from "../lib/crypto/mod.ts";
import {
  DEFAULT_WINDOW_MS,
  RECORD_HEADER_BYTES,
  RECORD_MIN_BYTES,
  RECORD_TAG_BYTES,
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../lib/record/mod.ts";
import { assertThrowsIm, flipBit, loginInMemory } from "./_helpers.ts";

const T = 1_700_000_000_000;

function keys(): DirectionKeys {
  return { enc: randomBytes(32), iv: randomBytes(32), mac: randomBytes(32) };
}

function channel(opts: { windowMs?: number } = {}) {
  const k = keys();
  return { k, sealer: new RecordSealer(k), opener: new RecordOpener(k, opts) };
}

/** Re-tag a record after editing it, as someone holding the MAC key could. */
function retag(macKey: Uint8Array, rec: Uint8Array): Uint8Array {
  const out = new Uint8Array(rec);
  const tag = new HmacSha256(macKey).mac(
    out.subarray(1, out.length - RECORD_TAG_BYTES),
  );
  out.set(tag, out.length - RECORD_TAG_BYTES);
  return out;
}

Deno.test("a sealed record opens to the same type, seq, timestamp and plaintext", () => {
  const { sealer, opener } = channel();
  const msg = utf8("hello, record layer");
  const rec = sealer.seal(RecordType.DATA, msg, T);
  const got = opener.open(rec, T);
  assert.equal(got.type, RecordType.DATA);
  assert.equal(got.seq, 0n);
  assert.equal(got.timestamp, T);
  assert.deepEqual(got.plaintext, msg);
  assert.equal(got.lost, 0n);
  assert.equal(opener.nextSeq, 1n);
  assert.equal(sealer.nextSeq, 1n);
});

Deno.test("every record type round-trips and sequence numbers count from 0 by 1 (rule 3.1)", () => {
  const { sealer, opener } = channel();
  const types = [
    RecordType.FINISHED,
    RecordType.DATA,
    RecordType.HEARTBEAT,
    RecordType.CLOSE,
  ];
  for (let i = 0; i < 20; i++) {
    const type = types[i % 4]!;
    const got = opener.open(sealer.seal(type, utf8(`m${i}`), T), T);
    assert.equal(got.type, type);
    assert.equal(got.seq, BigInt(i));
    assert.equal(got.lost, 0n);
  }
});

Deno.test("record layout is 0x10 || type || seq u64 || timestamp u64 || MD-CFB(enc, HMAC(iv, seq)) || HMAC(mac, header || ct) (rules 3.1-3.4)", () => {
  const k = keys();
  const sealer = new RecordSealer(k, 41n);
  const msg = randomBytes(77);
  const rec = sealer.seal(RecordType.DATA, msg, T);
  assert.equal(
    rec.length,
    1 + RECORD_HEADER_BYTES + msg.length + RECORD_TAG_BYTES,
  );
  assert.equal(rec[0], FrameKind.RECORD);
  assert.equal(rec[1], RecordType.DATA);
  const view = new DataView(rec.buffer, rec.byteOffset);
  assert.equal(view.getBigUint64(2), 41n);
  assert.equal(view.getBigUint64(10), BigInt(T));
  const iv = new HmacSha256(k.iv).mac(u64be(41n));
  const ct = new MdCfb(k.enc).encrypt(iv, msg);
  assert.deepEqual(rec.subarray(18, 18 + msg.length), ct);
  const tag = new HmacSha256(k.mac).mac(rec.subarray(1, 18 + msg.length));
  assert.deepEqual(rec.subarray(rec.length - 32), tag);
});

Deno.test("the same plaintext sealed twice gives different bytes, body included (rule 3.2)", () => {
  const { sealer } = channel();
  const msg = utf8("same message, same time");
  const a = sealer.seal(RecordType.DATA, msg, T);
  const b = sealer.seal(RecordType.DATA, msg, T);
  assert.notDeepEqual(a, b);
  const body = (r: Uint8Array) => r.subarray(18, r.length - 32);
  assert.notDeepEqual(
    body(a),
    body(b),
    "the ciphertext itself differs, not only the header",
  );
  assert.notDeepEqual(body(a), msg);
});

Deno.test("openRecord() rejects every single-bit flip of a sealed record; the counter does not move", () => {
  const { sealer, opener } = channel();
  const rec = sealer.seal(
    RecordType.DATA,
    utf8("flip every bit of me, 40 bytes long!!!!"),
    T,
  );
  for (let bit = 0; bit < rec.length * 8; bit++) {
    const bad = flipBit(rec, bit);
    // Byte 0 is the frame kind: not a record at all. Every other bit is under the tag.
    const code = bit < 8 ? "malformed" : "tampered";
    assertThrowsIm(() => opener.open(bad, T), RecordError, code, `bit ${bit}`);
    assert.equal(opener.nextSeq, 0n);
  }
  assert.equal(opener.open(rec, T).seq, 0n, "the genuine record still opens");
});

Deno.test("openRecord() rejects a record with one flipped tag bit as tampered", () => {
  const { sealer, opener } = channel();
  const rec = sealer.seal(RecordType.DATA, utf8("x"), T);
  const e = assertThrowsIm(
    () => opener.open(flipBit(rec, rec.length * 8 - 1), T),
    RecordError,
    "tampered",
  );
  assert.match(e.message, /tampered/);
});

Deno.test("a forged record with a huge sequence number does not block the next genuine one (rule 3.5)", () => {
  const { k, sealer, opener } = channel();
  const forger = new RecordSealer({ ...keys(), iv: k.iv }, U64_MAX - 5n);
  const forged = forger.seal(RecordType.DATA, utf8("evil"), T);
  assertThrowsIm(() => opener.open(forged, T), RecordError, "tampered");
  // A genuine record edited to carry a huge sequence number fails its tag too.
  const genuine = sealer.seal(RecordType.DATA, utf8("good"), T);
  const edited = new Uint8Array(genuine);
  new DataView(edited.buffer).setBigUint64(2, 1n << 62n);
  assertThrowsIm(() => opener.open(edited, T), RecordError, "tampered");
  assert.equal(opener.nextSeq, 0n);
  const got = opener.open(genuine, T);
  assert.equal(got.seq, 0n);
  assert.deepEqual(got.plaintext, utf8("good"));
});

Deno.test("a replayed record is rejected as replayed and leaves the counter alone", () => {
  const { sealer, opener } = channel();
  const r0 = sealer.seal(RecordType.DATA, utf8("once"), T);
  opener.open(r0, T);
  const e = assertThrowsIm(() => opener.open(r0, T), RecordError, "replayed");
  assert.match(e.message, /sequence number 0/);
  assert.equal(opener.nextSeq, 1n);
  assert.equal(
    opener.open(sealer.seal(RecordType.DATA, utf8("next"), T), T).seq,
    1n,
  );
});

Deno.test("reordered records are rejected as replayed: seq 1 then seq 0", () => {
  const { sealer, opener } = channel();
  const r0 = sealer.seal(RecordType.DATA, utf8("zero"), T);
  const r1 = sealer.seal(RecordType.DATA, utf8("one"), T);
  assert.equal(opener.open(r1, T).lost, 1n);
  assertThrowsIm(() => opener.open(r0, T), RecordError, "replayed");
  assert.equal(opener.nextSeq, 2n);
});

Deno.test("a gap of 3 sequence numbers is reported as lost = 3 (rule 3.5)", () => {
  const { sealer, opener } = channel();
  assert.equal(
    opener.open(sealer.seal(RecordType.DATA, utf8("a"), T), T).lost,
    0n,
  );
  for (let i = 0; i < 3; i++) sealer.seal(RecordType.DATA, utf8("dropped"), T);
  const got = opener.open(sealer.seal(RecordType.DATA, utf8("b"), T), T);
  assert.equal(got.seq, 4n);
  assert.equal(got.lost, 3n);
  assert.equal(
    opener.open(sealer.seal(RecordType.DATA, utf8("c"), T), T).lost,
    0n,
  );
});

Deno.test("timestamps 121 s old or 121 s ahead are stale; 119 s and exactly 120 s are accepted (rule 3.5)", () => {
  assert.equal(DEFAULT_WINDOW_MS, 120_000);
  for (
    const [offset, ok] of [
      [-121_000, false],
      [121_000, false],
      [-120_001, false],
      [120_001, false],
      [-119_000, true],
      [119_000, true],
      [-120_000, true],
      [120_000, true],
      [0, true],
    ] as const
  ) {
    const { sealer, opener } = channel();
    const rec = sealer.seal(RecordType.DATA, utf8("t"), T + offset);
    if (ok) {
      assert.equal(
        opener.open(rec, T).timestamp,
        T + offset,
        `offset ${offset}`,
      );
    } else {
      const e = assertThrowsIm(
        () => opener.open(rec, T),
        RecordError,
        "stale",
        `offset ${offset}`,
      );
      assert.match(e.message, /120 s window/);
      assert.equal(
        opener.nextSeq,
        0n,
        "a stale record does not move the counter",
      );
    }
  }
});

Deno.test("the freshness window is configurable: 5 s window rejects 5.001 s, accepts 4.999 s", () => {
  const { sealer, opener } = channel({ windowMs: 5_000 });
  assertThrowsIm(
    () => opener.open(sealer.seal(RecordType.DATA, utf8("old"), T - 5_001), T),
    RecordError,
    "stale",
  );
  assertThrowsIm(
    () => opener.open(sealer.seal(RecordType.DATA, utf8("new"), T + 5_001), T),
    RecordError,
    "stale",
  );
  const got = opener.open(
    sealer.seal(RecordType.DATA, utf8("ok"), T - 4_999),
    T,
  );
  assert.deepEqual(got.plaintext, utf8("ok"));
  // A long window accepts what the default refuses.
  const wide = channel({ windowMs: 600_000 });
  assert.equal(
    wide.opener.open(
      wide.sealer.seal(RecordType.DATA, utf8("x"), T - 300_000),
      T,
    ).seq,
    0n,
  );
});

Deno.test("a sealer at seq 2^64-1 seals once and then throws sequence-exhausted, never wrapping (rule 3.5)", () => {
  const k = keys();
  const sealer = new RecordSealer(k, U64_MAX);
  const opener = new RecordOpener(k);
  const last = sealer.seal(RecordType.DATA, utf8("last"), T);
  assert.equal(new DataView(last.buffer).getBigUint64(2), U64_MAX);
  for (let i = 0; i < 2; i++) {
    assertThrowsIm(
      () => sealer.seal(RecordType.DATA, utf8("wrap?"), T),
      ProtocolError,
      "sequence-exhausted",
    );
  }
  assert.equal(sealer.nextSeq, U64_MAX + 1n);
  const got = opener.open(last, T);
  assert.equal(got.seq, U64_MAX);
  // Nothing can follow the last sequence number, in particular not seq 0.
  const zero = new RecordSealer(k).seal(RecordType.DATA, utf8("zero"), T);
  assertThrowsIm(() => opener.open(zero, T), RecordError, "replayed");
});

Deno.test("a record with a truncated tag is rejected", () => {
  const { sealer, opener } = channel();
  const rec = sealer.seal(
    RecordType.DATA,
    utf8("truncate my tag please, 40+ bytes of it"),
    T,
  );
  for (const cut of [1, 16, 31, 32]) {
    assertThrowsIm(
      () => opener.open(rec.subarray(0, rec.length - cut), T),
      RecordError,
      "tampered",
      `cut ${cut}`,
    );
  }
  // Cut below the minimum size: malformed.
  const empty = sealer.seal(RecordType.HEARTBEAT, new Uint8Array(0), T);
  assertThrowsIm(
    () => opener.open(empty.subarray(0, empty.length - 1), T),
    RecordError,
    "malformed",
  );
  assert.equal(opener.nextSeq, 0n);
});

Deno.test("a record with an extended tag is rejected as tampered", () => {
  const { sealer, opener } = channel();
  const rec = sealer.seal(RecordType.DATA, utf8("x"), T);
  for (const extra of [[0], [1, 2, 3], Array(32).fill(0)]) {
    assertThrowsIm(
      () => opener.open(concat(rec, new Uint8Array(extra)), T),
      RecordError,
      "tampered",
    );
  }
  assert.equal(opener.open(rec, T).seq, 0n);
});

Deno.test("a zero-length body round-trips in a record of the minimum size", () => {
  const { sealer, opener } = channel();
  const rec = sealer.seal(RecordType.HEARTBEAT, new Uint8Array(0), T);
  assert.equal(rec.length, RECORD_MIN_BYTES);
  assert.equal(RECORD_MIN_BYTES, 50);
  const got = opener.open(rec, T);
  assert.equal(got.type, RecordType.HEARTBEAT);
  assert.equal(got.plaintext.length, 0);
});

Deno.test("the maximum body (frame limit - 50 bytes) round-trips; one byte more does not fit a frame", () => {
  const { sealer, opener } = channel();
  const max = DEFAULT_MAX_FRAME_BYTES - RECORD_MIN_BYTES;
  const msg = randomBytes(max);
  const rec = sealer.seal(RecordType.DATA, msg, T);
  assert.equal(rec.length, DEFAULT_MAX_FRAME_BYTES);
  encodeFrame(rec);
  assert.deepEqual(opener.open(rec, T).plaintext, msg);
  const over = sealer.seal(RecordType.DATA, randomBytes(max + 1), T);
  assertThrowsIm(() => encodeFrame(over), ProtocolError, "frame-too-large");
});

Deno.test("records shorter than 50 bytes or of another frame kind are malformed", () => {
  const { sealer, opener } = channel();
  for (let n = 0; n < RECORD_MIN_BYTES; n++) {
    const junk = new Uint8Array(n);
    if (n > 0) junk[0] = FrameKind.RECORD;
    assertThrowsIm(
      () => opener.open(junk, T),
      RecordError,
      "malformed",
      `length ${n}`,
    );
  }
  const rec = sealer.seal(RecordType.DATA, utf8("kind"), T);
  for (const kind of [0x00, 0x01, 0x0e, 0x11, 0x21, 0xff]) {
    const other = new Uint8Array(rec);
    other[0] = kind;
    assertThrowsIm(
      () => opener.open(other, T),
      RecordError,
      "malformed",
      `kind ${kind}`,
    );
  }
  assert.equal(opener.nextSeq, 0n);
});

Deno.test("an unknown record type is rejected after the tag check: malformed with a valid tag, tampered without", () => {
  const { k, sealer, opener } = channel();
  const rec = sealer.seal(RecordType.DATA, utf8("type"), T);
  for (const type of [0x00, 0x05, 0x7f, 0xff]) {
    const edited = new Uint8Array(rec);
    edited[1] = type;
    assertThrowsIm(
      () => opener.open(edited, T),
      RecordError,
      "tampered",
      `type ${type}, old tag`,
    );
    const e = assertThrowsIm(
      () => opener.open(retag(k.mac, edited), T),
      RecordError,
      "malformed",
      `type ${type}`,
    );
    assert.match(e.message, new RegExp(`unknown type ${type}`));
  }
  assert.equal(opener.nextSeq, 0n);
  assert.equal(opener.open(rec, T).seq, 0n);
});

Deno.test("the opener checks the tag before decrypting: a bad tag never reaches MD-CFB (rule 3.4)", () => {
  const { sealer, opener } = channel();
  const original = MdCfb.prototype.decrypt;
  let decrypts = 0;
  MdCfb.prototype.decrypt = function (
    this: MdCfb,
    iv: Uint8Array,
    ct: Uint8Array,
  ) {
    decrypts++;
    return original.call(this, iv, ct);
  };
  try {
    const rec = sealer.seal(
      RecordType.DATA,
      utf8("decrypt me only if genuine"),
      T,
    );
    // Valid structure, wrong tag.
    const bad = new Uint8Array(rec);
    bad.set(randomBytes(32), bad.length - 32);
    assertThrowsIm(() => opener.open(bad, T), RecordError, "tampered");
    // Tag intact but ciphertext edited.
    assertThrowsIm(
      () => opener.open(flipBit(rec, 20 * 8), T),
      RecordError,
      "tampered",
    );
    assert.equal(decrypts, 0, "no decryption for a record whose tag fails");
    // Replayed and stale records are not decrypted either.
    opener.open(rec, T);
    assert.equal(decrypts, 1);
    assertThrowsIm(() => opener.open(rec, T), RecordError, "replayed");
    assertThrowsIm(
      () =>
        opener.open(sealer.seal(RecordType.DATA, utf8("old"), T - 200_000), T),
      RecordError,
      "stale",
    );
    assert.equal(decrypts, 1);
  } finally {
    MdCfb.prototype.decrypt = original;
  }
});

Deno.test("a record sealed with another direction's keys is rejected as tampered (rule 2.6)", () => {
  const ab = channel();
  const ba = channel();
  const rec = ab.sealer.seal(
    RecordType.DATA,
    utf8("for the other direction"),
    T,
  );
  assertThrowsIm(() => ba.opener.open(rec, T), RecordError, "tampered");
  // Same MAC key but another encryption key would still be caught by nothing
  // but the tag; with everything different, the tag fails first.
  assert.equal(ba.opener.nextSeq, 0n);
});

Deno.test("a record reflected to its sender after a real login is rejected (rule 3.5 reflection)", async () => {
  const { client, server } = await loginInMemory("A");
  const c2s = client.sealer.seal(RecordType.DATA, utf8("to the server"));
  assertThrowsIm(() => client.opener.open(c2s), RecordError, "tampered");
  const s2c = server.sealer.seal(RecordType.DATA, utf8("to the client"));
  assertThrowsIm(() => server.opener.open(s2c), RecordError, "tampered");
  // Each still reaches its real receiver.
  assert.deepEqual(server.opener.open(c2s).plaintext, utf8("to the server"));
  assert.deepEqual(client.opener.open(s2c).plaintext, utf8("to the client"));
});

Deno.test("a record from another login of the same user is rejected as tampered", async () => {
  const first = await loginInMemory("A");
  const second = await loginInMemory("A");
  const rec = first.client.sealer.seal(RecordType.DATA, utf8("old session"));
  assertThrowsIm(() => second.server.opener.open(rec), RecordError, "tampered");
});

Deno.test("a wiped opener refuses a genuine record with ProtocolError closed, not as tampered, and its counter stays (rule 4.5)", () => {
  const { sealer, opener } = channel();
  const rec = sealer.seal(RecordType.DATA, utf8("before wipe"), T);
  assert.equal(opener.wiped, false);
  opener.wipe();
  assert.equal(opener.wiped, true);
  assertThrowsIm(() => opener.open(rec, T), ProtocolError, "closed");
  assertThrowsIm(
    () => opener.open(new Uint8Array(3), T),
    ProtocolError,
    "closed",
  );
  assert.equal(opener.nextSeq, 0n);
});

Deno.test("a wiped sealer refuses every record type with ProtocolError closed and uses no sequence number (rule 4.5)", () => {
  const { sealer } = channel();
  sealer.seal(RecordType.DATA, utf8("before wipe"), T);
  sealer.wipe();
  assert.equal(sealer.wiped, true);
  for (const type of Object.values(RecordType)) {
    assertThrowsIm(
      () => sealer.seal(type, new Uint8Array(0), T),
      ProtocolError,
      "closed",
    );
  }
  assert.equal(sealer.nextSeq, 1n);
});

Deno.test("RecordSealer.seal(..., at) writes the same record after `at` free bytes, left zero (a frame's prefix, filled by the transport), and the opener accepts it", () => {
  const k = {
    enc: new Uint8Array(32).fill(3),
    iv: new Uint8Array(32).fill(4),
    mac: new Uint8Array(32).fill(5),
  };
  const body = () => new Uint8Array([1, 2, 3, 4]);
  const plain = new RecordSealer(k).seal(RecordType.HEARTBEAT, body(), 1234);
  const placed = new RecordSealer(k).seal(
    RecordType.HEARTBEAT,
    body(),
    1234,
    4,
  );
  assert.equal(placed.length, plain.length + 4);
  assert.deepEqual(placed.subarray(0, 4), new Uint8Array(4));
  assert.deepEqual(placed.subarray(4), plain);
  const rec = new RecordOpener(k).open(placed.subarray(4), 1234);
  assert.deepEqual(rec.plaintext, body());
});
