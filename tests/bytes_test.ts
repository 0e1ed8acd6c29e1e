/**
 * Byte helpers under every codec: bounds-checked reads that fail with
 * ProtocolError, big-endian integers, strict UTF-8, constant-time compare.
 */
import assert from "node:assert/strict";
import {
  ByteReader,
  ByteWriter,
  concat,
  constantTimeEqual,
  fromUtf8,
  ProtocolError,
  randomBytes,
  U64_MAX,
  u64be,
  utf8,
  wipe,
} from "../lib/util/mod.ts";
import { assertThrowsIm } from "./_helpers.ts";

Deno.test("ByteWriter and ByteReader round-trip every field type, big-endian", () => {
  const w = new ByteWriter()
    .u8(0xab)
    .u16(0x1234)
    .u32(0xdeadbeef)
    .u64(U64_MAX - 1n)
    .bytes8(new Uint8Array([1, 2]))
    .bytes16(new Uint8Array(300).fill(7))
    .bytes(new Uint8Array([9, 9]));
  const buf = w.finish();
  assert.deepEqual([...buf.subarray(0, 7)], [
    0xab,
    0x12,
    0x34,
    0xde,
    0xad,
    0xbe,
    0xef,
  ]);
  const r = new ByteReader(buf, "test");
  assert.equal(r.u8(), 0xab);
  assert.equal(r.u16(), 0x1234);
  assert.equal(r.u32(), 0xdeadbeef);
  assert.equal(r.u64(), U64_MAX - 1n);
  assert.deepEqual([...r.bytes8()], [1, 2]);
  assert.equal(r.bytes16().length, 300);
  assert.equal(r.remaining(), 2);
  assert.deepEqual([...r.rest()], [9, 9]);
  r.end();
});

Deno.test("ByteReader reads a subarray from its own offset, not the buffer's start", () => {
  const backing = new Uint8Array([0xff, 0xff, 0x00, 0x01, 0x02, 0x03]);
  const r = new ByteReader(backing.subarray(2), "view");
  assert.equal(r.u16(), 0x0001);
  assert.equal(r.u16(), 0x0203);
  assertThrowsIm(() => r.u8(), ProtocolError, "truncated");
});

Deno.test("ByteReader throws ProtocolError truncated, naming the message, for every read past the end", () => {
  const reads: [string, (r: ByteReader) => unknown][] = [
    ["u8", (r) => r.u8()],
    ["u16", (r) => r.u16()],
    ["u32", (r) => r.u32()],
    ["u64", (r) => r.u64()],
    ["bytes", (r) => r.bytes(1)],
    ["bytes8", (r) => r.bytes8()],
    ["bytes16", (r) => r.bytes16()],
  ];
  for (const [what, read] of reads) {
    const e = assertThrowsIm(
      () => read(new ByteReader(new Uint8Array(0), "HELLO")),
      ProtocolError,
      "truncated",
      what,
    );
    assert.match(e.message, /HELLO/);
  }
  // A length prefix that promises more than is there.
  assertThrowsIm(
    () => new ByteReader(new Uint8Array([5, 1, 2]), "x").bytes8(),
    ProtocolError,
    "truncated",
  );
  assertThrowsIm(
    () => new ByteReader(new Uint8Array([0xff, 0xff, 1]), "x").bytes16(),
    ProtocolError,
    "truncated",
  );
});

Deno.test("ByteReader.end() throws trailing-bytes when bytes are left", () => {
  const r = new ByteReader(new Uint8Array([1, 2, 3]), "MSG");
  r.u8();
  const e = assertThrowsIm(() => r.end(), ProtocolError, "trailing-bytes");
  assert.match(e.message, /2 unexpected trailing bytes/);
});

Deno.test("ByteWriter refuses length-prefixed fields that do not fit their prefix", () => {
  assert.throws(() => new ByteWriter().bytes8(new Uint8Array(256)), RangeError);
  assert.throws(
    () => new ByteWriter().bytes16(new Uint8Array(65536)),
    RangeError,
  );
  assert.equal(
    new ByteWriter().bytes8(new Uint8Array(255)).finish().length,
    256,
  );
  assert.equal(
    new ByteWriter().bytes16(new Uint8Array(65535)).finish().length,
    65537,
  );
});

Deno.test("u64be() writes big-endian u64 up to 2^64-1", () => {
  assert.deepEqual([...u64be(258n)], [0, 0, 0, 0, 0, 0, 1, 2]);
  assert.deepEqual([...u64be(U64_MAX)], Array(8).fill(0xff));
  assert.equal(U64_MAX, 18446744073709551615n);
});

Deno.test("constantTimeEqual() is true only for equal length and content", () => {
  const a = new Uint8Array([1, 2, 3, 4]);
  assert.ok(constantTimeEqual(a, new Uint8Array([1, 2, 3, 4])));
  assert.ok(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)));
  for (let i = 0; i < 4; i++) {
    const b = new Uint8Array(a);
    b[i] = b[i]! ^ 0x80;
    assert.ok(!constantTimeEqual(a, b), `byte ${i}`);
  }
  assert.ok(!constantTimeEqual(a, a.subarray(0, 3)));
  assert.ok(!constantTimeEqual(a.subarray(0, 3), a));
});

Deno.test("fromUtf8() decodes valid UTF-8 and refuses invalid, overlong and surrogate sequences with bad-utf8", () => {
  assert.equal(fromUtf8(utf8("héllo 名前"), "name"), "héllo 名前");
  for (
    const hex of ["ff", "c0", "c080", "e08080", "eda080", "f4908080", "80"]
  ) {
    const e = assertThrowsIm(
      () => fromUtf8(Uint8Array.fromHex(hex), "the name"),
      ProtocolError,
      "bad-utf8",
      hex,
    );
    assert.match(e.message, /the name/);
  }
});

Deno.test("concat() joins in order into a new array", () => {
  const a = new Uint8Array([1]);
  const out = concat(a, new Uint8Array(0), new Uint8Array([2, 3]));
  assert.deepEqual([...out], [1, 2, 3]);
  out[0] = 9;
  assert.equal(a[0], 1);
  assert.equal(concat().length, 0);
});

Deno.test("randomBytes() gives fresh bytes of any length, beyond the 64 KiB getRandomValues quota", () => {
  assert.equal(randomBytes(0).length, 0);
  assert.notDeepEqual(randomBytes(32), randomBytes(32));
  for (const n of [65536, 65537, 200_000]) {
    const big = randomBytes(n);
    assert.equal(big.length, n);
    // The tail was filled too (2^-8000 chance of a false failure).
    assert.ok(big.subarray(n - 1000).some((b) => b !== 0), `tail of ${n}`);
  }
});

Deno.test("wipe() zeroes every array it is given", () => {
  const a = new Uint8Array([1, 2]), b = new Uint8Array([3]);
  wipe(a, b);
  assert.deepEqual([...a, ...b], [0, 0, 0]);
});
