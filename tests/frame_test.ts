/**
 * Framing, rule 1.1: `u32 length || payload`, at most 64 KiB, decoded
 * incrementally; every malformation is a {@link ProtocolError}.
 */
import assert from "node:assert/strict";
import { concat, ImError, ProtocolError } from "../lib/util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
} from "../lib/wire/mod.ts";
import { assertThrowsIm, seededRandom } from "./_helpers.ts";

function prefix(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function payload(n: number, fill = 0x10): Uint8Array {
  const p = new Uint8Array(n).fill(fill);
  for (let i = 0; i < n; i += 97) p[i] = i & 0xff;
  return p;
}

Deno.test("encodeFrame() writes a big-endian u32 length before the payload", () => {
  const f = encodeFrame(new Uint8Array([0x10, 1, 2]));
  assert.deepEqual([...f], [0, 0, 0, 3, 0x10, 1, 2]);
  assert.equal(FRAME_HEADER_BYTES, 4);
  assert.equal(DEFAULT_MAX_FRAME_BYTES, 65536);
});

Deno.test("encodeFrame() refuses an empty payload and one over the limit", () => {
  assertThrowsIm(
    () => encodeFrame(new Uint8Array(0)),
    ProtocolError,
    "empty-frame",
  );
  assertThrowsIm(
    () => encodeFrame(new Uint8Array(DEFAULT_MAX_FRAME_BYTES + 1)),
    ProtocolError,
    "frame-too-large",
  );
  assert.equal(
    encodeFrame(new Uint8Array(DEFAULT_MAX_FRAME_BYTES)).length,
    DEFAULT_MAX_FRAME_BYTES + 4,
  );
  assertThrowsIm(
    () => encodeFrame(new Uint8Array(11), 10),
    ProtocolError,
    "frame-too-large",
  );
});

Deno.test("FrameDecoder reassembles a frame split at every byte boundary", () => {
  const p = payload(300);
  const wire = encodeFrame(p);
  for (let cut = 0; cut <= wire.length; cut++) {
    const dec = new FrameDecoder();
    const a = dec.push(wire.subarray(0, cut));
    const b = dec.push(wire.subarray(cut));
    const got = [...a, ...b];
    assert.equal(got.length, 1, `cut ${cut}`);
    assert.deepEqual(got[0], p, `cut ${cut}`);
    assert.equal(dec.buffered, 0);
    dec.end();
  }
});

Deno.test("FrameDecoder reassembles a frame fed one byte at a time", () => {
  const p = payload(70);
  const wire = encodeFrame(p);
  const dec = new FrameDecoder();
  const got: Uint8Array[] = [];
  for (let i = 0; i < wire.length; i++) {
    const out = dec.push(wire.subarray(i, i + 1));
    if (i < wire.length - 1) assert.equal(out.length, 0, `byte ${i}`);
    got.push(...out);
  }
  assert.equal(got.length, 1);
  assert.deepEqual(got[0], p);
});

Deno.test("FrameDecoder returns many frames from one chunk, whole and in order", () => {
  const payloads = Array.from({ length: 50 }, (_, i) => payload(1 + i * 7, i));
  const wire = concat(...payloads.map((p) => encodeFrame(p)));
  const dec = new FrameDecoder();
  const got = dec.push(wire);
  assert.equal(got.length, 50);
  for (let i = 0; i < 50; i++) assert.deepEqual(got[i], payloads[i]);
  assert.equal(dec.buffered, 0);
});

Deno.test("FrameDecoder handles frames straddling chunks at every split of a 3-frame stream", () => {
  const payloads = [payload(5, 1), payload(1, 2), payload(40, 3)];
  const wire = concat(...payloads.map((p) => encodeFrame(p)));
  for (let a = 0; a <= wire.length; a++) {
    for (let b = a; b <= wire.length; b += 3) {
      const dec = new FrameDecoder();
      const got = [
        ...dec.push(wire.subarray(0, a)),
        ...dec.push(wire.subarray(a, b)),
        ...dec.push(wire.subarray(b)),
      ];
      assert.equal(got.length, 3, `split ${a}/${b}`);
      for (let i = 0; i < 3; i++) assert.deepEqual(got[i], payloads[i]);
    }
  }
});

Deno.test("FrameDecoder payloads are copies: later reads do not change them", () => {
  const dec = new FrameDecoder();
  const chunk = encodeFrame(new Uint8Array([1, 2, 3]));
  const [p] = dec.push(chunk);
  chunk.fill(0xff);
  assert.deepEqual([...p!], [1, 2, 3]);
});

Deno.test("FrameDecoder accepts a payload of exactly the limit", () => {
  const dec = new FrameDecoder(1000);
  const got = dec.push(encodeFrame(payload(1000), 1000));
  assert.equal(got.length, 1);
  assert.equal(got[0]!.length, 1000);
});

Deno.test("FrameDecoder rejects a length-0 frame", () => {
  const dec = new FrameDecoder();
  assertThrowsIm(() => dec.push(prefix(0)), ProtocolError, "empty-frame");
});

Deno.test("FrameDecoder rejects length limit+1 as soon as the 4-byte prefix arrives, before any body byte", () => {
  const dec = new FrameDecoder();
  // Three bytes of the prefix: not decidable yet.
  assert.deepEqual(
    dec.push(prefix(DEFAULT_MAX_FRAME_BYTES + 1).subarray(0, 3)),
    [],
  );
  const e = assertThrowsIm(
    () => dec.push(prefix(DEFAULT_MAX_FRAME_BYTES + 1).subarray(3)),
    ProtocolError,
    "frame-too-large",
  );
  assert.match(e.message, /65537/);
  assert.match(e.message, /65536/);
  assert.equal(dec.buffered, 0, "nothing is held after the error");
});

Deno.test("FrameDecoder honours a configured limit: 101 rejected with limit 100", () => {
  const dec = new FrameDecoder(100);
  assertThrowsIm(() => dec.push(prefix(101)), ProtocolError, "frame-too-large");
  const ok = new FrameDecoder(100);
  assert.equal(ok.push(concat(prefix(100), new Uint8Array(100))).length, 1);
});

Deno.test("FrameDecoder rejects a 4 GiB length prefix", () => {
  const dec = new FrameDecoder();
  assertThrowsIm(
    () => dec.push(prefix(0xffffffff)),
    ProtocolError,
    "frame-too-large",
  );
  const dec2 = new FrameDecoder();
  assertThrowsIm(
    () => dec2.push(prefix(0x80000000)),
    ProtocolError,
    "frame-too-large",
  );
});

Deno.test("FrameDecoder rejects an oversized frame that follows a good one in the same chunk", () => {
  const dec = new FrameDecoder(100);
  const wire = concat(encodeFrame(new Uint8Array([1]), 100), prefix(101));
  assertThrowsIm(() => dec.push(wire), ProtocolError, "frame-too-large");
});

Deno.test("FrameDecoder never holds more than limit + 4 bytes", () => {
  const dec = new FrameDecoder(1000);
  const wire = encodeFrame(payload(1000), 1000);
  dec.push(wire.subarray(0, wire.length - 1));
  assert.equal(dec.buffered, 1003);
  assert.ok(dec.buffered <= 1000 + 4);
  assert.equal(dec.push(wire.subarray(wire.length - 1)).length, 1);
  assert.equal(dec.buffered, 0);
});

Deno.test("FrameDecoder.end() at EOF mid-frame throws truncated-frame", () => {
  for (const cut of [1, 3, 4, 5, 20]) {
    const dec = new FrameDecoder();
    dec.push(encodeFrame(payload(30)).subarray(0, cut));
    const e = assertThrowsIm(
      () => dec.end(),
      ProtocolError,
      "truncated-frame",
      `cut ${cut}`,
    );
    assert.match(e.message, new RegExp(`${cut} bytes`));
  }
});

Deno.test("FrameDecoder.end() at a frame boundary does not throw", () => {
  const dec = new FrameDecoder();
  dec.end();
  dec.push(encodeFrame(payload(3)));
  dec.end();
  assert.equal(dec.buffered, 0);
});

Deno.test("FrameDecoder keeps failing with the first error after an error", () => {
  const dec = new FrameDecoder(100);
  const first = assertThrowsIm(
    () => dec.push(prefix(101)),
    ProtocolError,
    "frame-too-large",
  );
  // A perfectly good frame afterwards is still refused, with the same error.
  for (let i = 0; i < 3; i++) {
    const again = assertThrowsIm(
      () => dec.push(encodeFrame(new Uint8Array([1]), 100)),
      ProtocolError,
      "frame-too-large",
    );
    assert.equal(again, first);
  }
  assert.throws(
    () => dec.end(),
    (e) => e === first,
    "end() reports the first error too",
  );
});

Deno.test("FrameDecoder throws only ProtocolError for 2000 seeded random inputs", () => {
  const rnd = seededRandom(0x1f2e3d4c);
  let errors = 0;
  let frames = 0;
  for (let i = 0; i < 2000; i++) {
    const dec = new FrameDecoder(64 + rnd.int(256));
    const input = rnd.bytes(rnd.int(600));
    // Half the inputs get plausible small length prefixes so that some frames decode.
    if (i % 2 === 0 && input.length >= 4) {
      input[0] = 0;
      input[1] = 0;
      input[2] = 0;
      input[3] = rnd.int(64);
    }
    try {
      let off = 0;
      while (off < input.length) {
        const n = 1 + rnd.int(64);
        frames += dec.push(input.subarray(off, off + n)).length;
        off += n;
      }
      dec.end();
    } catch (e) {
      assert.ok(e instanceof ProtocolError, `input ${i}: ${e}`);
      assert.ok(e instanceof ImError);
      assert.match(e.code, /^(frame-too-large|empty-frame|truncated-frame)$/);
      errors++;
    }
  }
  assert.ok(errors > 500, `errors ${errors}`);
  assert.ok(frames > 50, `frames ${frames}`);
});

Deno.test("FrameDecoder.push() reads only the first `length` bytes of a read buffer and adds the payloads to `out`", () => {
  const buf = new Uint8Array(64).fill(0xee);
  buf.set(encodeFrame(new Uint8Array([0x10, 1, 2])), 0);
  buf.set(encodeFrame(new Uint8Array([0x10, 3])), 7);
  const out: Uint8Array<ArrayBuffer>[] = [new Uint8Array([9])];
  const dec = new FrameDecoder();
  assert.equal(dec.push(buf, 13, out), out);
  assert.deepEqual(out, [
    new Uint8Array([9]),
    new Uint8Array([0x10, 1, 2]),
    new Uint8Array([0x10, 3]),
  ]);
  assert.equal(dec.buffered, 0, "the 0xee bytes after `length` were not read");
});
