import assert from "node:assert/strict";
import { HmacSha256, hmacSha256, sha256 } from "../lib/crypto/mod.ts";

const enc = new TextEncoder();
const hex = (b: Uint8Array) => b.toHex();

async function webDigest(b: Uint8Array): Promise<string> {
  return hex(
    new Uint8Array(
      await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>),
    ),
  );
}

async function webHmac(key: Uint8Array, data: Uint8Array): Promise<string> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return hex(
    new Uint8Array(
      await crypto.subtle.sign("HMAC", k, data as Uint8Array<ArrayBuffer>),
    ),
  );
}

function random(n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(b.subarray(off, Math.min(off + 65536, n)));
  }
  return b;
}

// FIPS 180-4 examples (NIST CSRC "SHA256.pdf" example values).
const NIST: Array<[string, Uint8Array, string]> = [
  [
    '"abc"',
    enc.encode("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  ],
  [
    "empty",
    new Uint8Array(0),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  ],
  [
    "448-bit",
    enc.encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  ],
  [
    "896-bit",
    enc.encode(
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno" +
        "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
    ),
    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
  ],
  [
    "one million 'a'",
    new Uint8Array(1_000_000).fill(0x61),
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
  ],
];

for (const [name, msg, digest] of NIST) {
  Deno.test(`sha256() reproduces the FIPS 180-4 example: ${name}`, () => {
    assert.equal(hex(sha256(msg)), digest);
  });
}

Deno.test("sha256() matches crypto.subtle.digest for every length 0..300", async () => {
  for (let n = 0; n <= 300; n++) {
    const m = random(n);
    assert.equal(hex(sha256(m)), await webDigest(m), `length ${n}`);
  }
});

Deno.test("sha256() matches crypto.subtle.digest at padding boundaries with 0x80 and 0xff tails", async () => {
  for (const n of [55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129]) {
    for (const fill of [0x00, 0x80, 0xff]) {
      const m = new Uint8Array(n).fill(fill);
      assert.equal(hex(sha256(m)), await webDigest(m), `length ${n}`);
    }
  }
});

Deno.test("sha256() matches crypto.subtle.digest for large random inputs", async () => {
  for (const n of [4096, 65535, 65536, 1 << 20]) {
    const m = random(n);
    assert.equal(hex(sha256(m)), await webDigest(m), `length ${n}`);
  }
});

Deno.test("sha256() reads a subarray view at its own offset, not the buffer start", async () => {
  const buf = random(200);
  const view = buf.subarray(13, 150);
  assert.equal(hex(sha256(view)), await webDigest(view.slice()));
});

Deno.test("sha256() changes with one flipped input bit", () => {
  const m = random(100);
  const d = hex(sha256(m));
  for (const bit of [0, 7, 8, 439, 799]) {
    const x = m.slice();
    x[bit >> 3] = x[bit >> 3]! ^ (1 << (bit & 7));
    assert.notEqual(hex(sha256(x)), d, `bit ${bit}`);
  }
});

Deno.test("sha256() distinguishes a message from the same message plus a zero byte", () => {
  const m = random(55);
  const z = new Uint8Array(56);
  z.set(m);
  assert.notEqual(hex(sha256(m)), hex(sha256(z)));
});

Deno.test("sha256() distinguishes a message from its own padded form", () => {
  // FIPS 180-4 5.1.1: the length field makes padding injective.
  const m = enc.encode("abc");
  const padded = new Uint8Array(64);
  padded.set(m);
  padded[3] = 0x80;
  padded[63] = 24;
  assert.notEqual(hex(sha256(m)), hex(sha256(padded)));
});

Deno.test("sha256() does not modify its input", () => {
  const m = random(130);
  const copy = m.slice();
  sha256(m);
  assert.equal(hex(m), hex(copy));
});

// RFC 4231 section 4, HMAC-SHA-256 results.
const aa131 = new Uint8Array(131).fill(0xaa);
const RFC4231: Array<[number, Uint8Array, Uint8Array, string]> = [
  [
    1,
    new Uint8Array(20).fill(0x0b),
    enc.encode("Hi There"),
    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
  ],
  [
    2,
    enc.encode("Jefe"),
    enc.encode("what do ya want for nothing?"),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  ],
  [
    3,
    new Uint8Array(20).fill(0xaa),
    new Uint8Array(50).fill(0xdd),
    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
  ],
  [
    4,
    Uint8Array.from({ length: 25 }, (_, i) => i + 1),
    new Uint8Array(50).fill(0xcd),
    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
  ],
  [
    5, // truncated to 128 bits in the RFC
    new Uint8Array(20).fill(0x0c),
    enc.encode("Test With Truncation"),
    "a3b6167473100ee06e0c796c2955552b",
  ],
  [
    6,
    aa131,
    enc.encode("Test Using Larger Than Block-Size Key - Hash Key First"),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
  ],
  [
    7,
    aa131,
    enc.encode(
      "This is a test using a larger than block-size key and a larger than " +
        "block-size data. The key needs to be hashed before being used by " +
        "the HMAC algorithm.",
    ),
    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
  ],
];

for (const [n, key, data, tag] of RFC4231) {
  Deno.test(`HmacSha256 reproduces RFC 4231 test case ${n}`, async () => {
    const ours = hex(new HmacSha256(key).mac(data));
    assert.ok(ours.startsWith(tag), `case ${n}: ${ours}`);
    assert.equal(hex(hmacSha256(key, data)), ours);
    assert.equal(ours, await webHmac(key, data));
  });
}

Deno.test("HmacSha256 matches WebCrypto HMAC for key lengths 1..200 around the 64-byte block", async () => {
  for (
    const kl of [1, 16, 31, 32, 33, 63, 64, 65, 100, 128, 129, 200]
  ) {
    for (const ml of [0, 1, 32, 55, 56, 64, 119, 120, 300]) {
      const key = random(kl);
      const msg = random(ml);
      assert.equal(
        hex(new HmacSha256(key).mac(msg)),
        await webHmac(key, msg),
        `key ${kl} msg ${ml}`,
      );
    }
  }
});

Deno.test("HmacSha256 accepts an empty key (WebCrypto refuses one; value cross-checked with Python hmac)", () => {
  assert.equal(
    hex(hmacSha256(new Uint8Array(0), new Uint8Array(0))),
    "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
  );
});

Deno.test("HmacSha256 hashes a 65-byte key first, so it differs from its 64-byte prefix", () => {
  const key = random(65);
  const msg = random(32);
  assert.notEqual(
    hex(hmacSha256(key, msg)),
    hex(hmacSha256(key.subarray(0, 64), msg)),
  );
  // RFC 2104 section 2: a long key is replaced by its hash.
  assert.equal(hex(hmacSha256(key, msg)), hex(hmacSha256(sha256(key), msg)));
});

Deno.test("macBlock32Into() equals mac() at odd offsets and overlapping in place", async () => {
  const key = random(32);
  const h = new HmacSha256(key);
  const buf = random(100);
  for (const off of [0, 1, 7, 68]) {
    const want = hex(h.mac(buf.subarray(off, off + 32)));
    assert.equal(want, await webHmac(key, buf.subarray(off, off + 32)));
    const out = new Uint8Array(40);
    h.macBlock32Into(buf, off, out, 5);
    assert.equal(hex(out.subarray(5, 37)), want, `offset ${off}`);
    assert.equal(out[4], 0, "wrote before its output offset");
    assert.equal(out[37], 0, "wrote past its 32 bytes");
    const inPlace = buf.slice();
    h.macBlock32Into(inPlace, off, inPlace, off);
    assert.equal(hex(inPlace.subarray(off, off + 32)), want);
  }
});

Deno.test("HmacSha256 with a different key gives a different tag", () => {
  const k = random(32);
  const msg = random(32);
  const k2 = k.slice();
  k2[31] = k2[31]! ^ 1;
  assert.notEqual(hex(hmacSha256(k, msg)), hex(hmacSha256(k2, msg)));
});

Deno.test("HmacSha256 changes with one flipped message bit", () => {
  const h = new HmacSha256(random(32));
  const msg = random(32);
  const t = hex(h.mac(msg));
  for (let bit = 0; bit < 256; bit += 37) {
    const x = msg.slice();
    x[bit >> 3] = x[bit >> 3]! ^ (1 << (bit & 7));
    assert.notEqual(hex(h.mac(x)), t, `bit ${bit}`);
  }
});

Deno.test("HmacSha256 distinguishes HMAC from plain SHA-256 of key || message", () => {
  const key = random(64);
  const msg = random(32);
  const joined = new Uint8Array(96);
  joined.set(key);
  joined.set(msg, 64);
  assert.notEqual(hex(hmacSha256(key, msg)), hex(sha256(joined)));
});

Deno.test("HmacSha256 keeps its key after the caller wipes the key bytes", () => {
  const key = random(32);
  const msg = random(10);
  const want = hex(hmacSha256(key, msg));
  const h = new HmacSha256(key);
  key.fill(0);
  assert.equal(hex(h.mac(msg)), want);
});

Deno.test("HmacSha256 wipe() zeroes the keyed states so the old tag is no longer produced", () => {
  const h = new HmacSha256(random(32));
  const msg = random(32);
  const before = hex(h.mac(msg));
  h.wipe();
  assert.notEqual(hex(h.mac(msg)), before);
});

Deno.test("HmacSha256 instances do not disturb each other between calls", () => {
  const a = new HmacSha256(random(32));
  const b = new HmacSha256(random(32));
  const msg = random(32);
  const ta = hex(a.mac(msg));
  b.mac(random(200));
  const out = new Uint8Array(32);
  b.macBlock32Into(msg, 0, out, 0);
  assert.equal(hex(a.mac(msg)), ta);
});

Deno.test("macWords8Into() equals mac() on big-endian words, also in place", async () => {
  const key = random(32);
  const h = new HmacSha256(key);
  for (let r = 0; r < 20; r++) {
    const msg = random(32);
    const want = await webHmac(key, msg);
    const dv = new DataView(msg.buffer);
    const words = Int32Array.from({ length: 8 }, (_, i) => dv.getInt32(4 * i));
    const out = new Int32Array(8);
    h.macWords8Into(words, out);
    const bytes = new Uint8Array(32);
    const ov = new DataView(bytes.buffer);
    out.forEach((w, i) => ov.setInt32(4 * i, w));
    assert.equal(bytes.toHex(), want);
    h.macWords8Into(words, words);
    assert.deepEqual(words, out);
  }
});

Deno.test("macInto() equals mac() for ranges at any offset, the tag written after its message in the same array", async () => {
  const key = random(32);
  const h = new HmacSha256(key);
  const buf = random(400);
  for (
    const [start, end] of [
      [0, 0],
      [3, 3],
      [1, 9],
      [0, 55],
      [5, 61],
      [2, 66],
      [7, 124],
      [1, 118],
      [0, 300],
    ] as const
  ) {
    const want = await webHmac(key, buf.subarray(start, end));
    assert.equal(hex(h.mac(buf.subarray(start, end))), want);
    const out = new Uint8Array(40);
    h.macInto(buf, start, end, out, 3);
    assert.equal(hex(out.subarray(3, 35)), want, `[${start}, ${end})`);
    assert.equal(out[2], 0, "wrote before its output offset");
    assert.equal(out[35], 0, "wrote past its 32 bytes");
    // As the record layer does: the tag lands right after the bytes it covers.
    const rec = buf.slice(0, end + 32);
    h.macInto(rec, start, end, rec, end);
    assert.equal(hex(rec.subarray(end)), want);
    assert.equal(hex(rec.subarray(0, end)), hex(buf.subarray(0, end)));
  }
});

Deno.test("macInto() and verify() refuse ranges outside their arrays with a RangeError", () => {
  const h = new HmacSha256(random(32));
  const b = random(40);
  assert.throws(() => h.macInto(b, 0, 41, new Uint8Array(32), 0), RangeError);
  assert.throws(() => h.macInto(b, -1, 4, new Uint8Array(32), 0), RangeError);
  assert.throws(() => h.macInto(b, 5, 4, new Uint8Array(32), 0), RangeError);
  assert.throws(() => h.macInto(b, 0, 8, new Uint8Array(32), 1), RangeError);
  assert.throws(() => h.macInto(b, 0, 8, b, 9), RangeError);
  assert.throws(() => h.verify(b, 0, 41, b, 0), RangeError);
  assert.throws(() => h.verify(b, 0, 8, b, 9), RangeError);
});

Deno.test("verify() accepts the message's tag and refuses every single-bit flip of the tag or the message", () => {
  const h = new HmacSha256(random(32));
  const rec = random(117 + 32);
  h.macInto(rec, 0, 117, rec, 117);
  assert.ok(h.verify(rec, 0, 117, rec, 117));
  for (let bit = 0; bit < rec.length * 8; bit++) {
    const x = rec.slice();
    x[bit >> 3] = x[bit >> 3]! ^ (1 << (bit & 7));
    assert.ok(!h.verify(x, 0, 117, x, 117), `bit ${bit}`);
  }
  // Another key, or the same tag over a shorter message, fails too.
  assert.ok(!new HmacSha256(random(32)).verify(rec, 0, 117, rec, 117));
  assert.ok(!h.verify(rec, 0, 116, rec, 117));
});

Deno.test("an instance reused between other keys' calls keeps giving its own key's tags (shared scratch, one array per key)", async () => {
  const keys = [random(32), random(32), random(80), random(5)];
  const hs = keys.map((k) => new HmacSha256(k));
  const msgs = [random(0), random(8), random(32), random(117), random(1000)];
  // Every key on every message, interleaved, against WebCrypto.
  for (let round = 0; round < 2; round++) {
    for (const m of msgs) {
      for (const [i, h] of hs.entries()) {
        assert.equal(hex(h.mac(m)), await webHmac(keys[i]!, m), `key ${i}`);
        const w = new Int32Array(8);
        if (m.length === 32) {
          h.macWords8Into(
            Int32Array.from(
              { length: 8 },
              (_, j) => new DataView(m.buffer).getInt32(4 * j),
            ),
            w,
          );
          const b = new Uint8Array(32);
          w.forEach((x, j) => new DataView(b.buffer).setInt32(4 * j, x));
          assert.equal(hex(b), await webHmac(keys[i]!, m));
        }
      }
    }
  }
  // Wiping one leaves the others' keyed states alone.
  hs[0]!.wipe();
  assert.equal(hex(hs[1]!.mac(msgs[3]!)), await webHmac(keys[1]!, msgs[3]!));
});
