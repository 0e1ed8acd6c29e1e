import assert from "node:assert/strict";
import { ProtocolError } from "../lib/util/mod.ts";
import {
  MdCfb,
  MDCFB_BLOCK_BYTES,
  mdcfbDecrypt,
  mdcfbEncrypt,
} from "../lib/crypto/mod.ts";

interface VectorCase {
  key: string;
  iv: string;
  plaintext: string;
  ciphertext: string;
}

const vectors = JSON.parse(
  await Deno.readTextFile(new URL("./vectors/mdcfb.json", import.meta.url)),
) as { cases: VectorCase[] };

function random(n: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(n));
}

function flipBit(b: Uint8Array, bit: number): Uint8Array<ArrayBuffer> {
  const x = b.slice() as Uint8Array<ArrayBuffer>;
  x[bit >> 3] = x[bit >> 3]! ^ (1 << (bit & 7));
  return x;
}

/**
 * Independent slow reference on WebCrypto HMAC, written straight from the
 * definition: b_1 = HMAC(K, IV), b_i = HMAC(K, c_{i-1}), c_i = p_i ^ b_i.
 */
async function referenceEncrypt(
  key: Uint8Array,
  iv: Uint8Array,
  p: Uint8Array,
): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const c = new Uint8Array(p.length);
  let prev: Uint8Array = iv;
  for (let off = 0; off < p.length; off += 32) {
    const b = new Uint8Array(
      await crypto.subtle.sign("HMAC", k, prev as Uint8Array<ArrayBuffer>),
    );
    const n = Math.min(32, p.length - off);
    for (let i = 0; i < n; i++) c[off + i] = p[off + i]! ^ b[i]!;
    prev = c.slice(off, off + 32);
  }
  return c;
}

Deno.test("mdcfb.json has the expected 13 cases", () => {
  assert.equal(vectors.cases.length, 13);
});

for (const [i, v] of vectors.cases.entries()) {
  const len = v.plaintext.length / 2;
  Deno.test(`mdcfbEncrypt() reproduces mdcfb.json case ${i} (${len} B) byte for byte`, () => {
    const got = mdcfbEncrypt(
      Uint8Array.fromHex(v.key),
      Uint8Array.fromHex(v.iv),
      Uint8Array.fromHex(v.plaintext),
    );
    assert.equal(got.toHex(), v.ciphertext);
  });
  Deno.test(`mdcfbDecrypt() recovers mdcfb.json case ${i} (${len} B) byte for byte`, () => {
    const m = new MdCfb(Uint8Array.fromHex(v.key));
    const got = m.decrypt(
      Uint8Array.fromHex(v.iv),
      Uint8Array.fromHex(v.ciphertext),
    );
    assert.equal(got.toHex(), v.plaintext);
    m.wipe();
  });
}

Deno.test("MdCfb matches a WebCrypto HMAC reference for random keys, IVs and lengths", async () => {
  const lengths = [0, 1, 31, 32, 33, 64, 65, 1000];
  for (let r = 0; r < 24; r++) lengths.push(Math.floor(Math.random() * 700));
  for (const n of lengths) {
    const key = random(32);
    const iv = random(32);
    const p = random(n);
    const want = (await referenceEncrypt(key, iv, p)).toHex();
    const m = new MdCfb(key);
    const c = m.encrypt(iv, p);
    assert.equal(c.toHex(), want, `length ${n}`);
    assert.equal(m.decrypt(iv, c).toHex(), p.toHex(), `length ${n}`);
    m.wipe();
  }
});

Deno.test("MdCfb round-trips lengths 0, 1, 31, 32, 33, 64, 65 and 1000 with output of the same length", () => {
  const m = new MdCfb(random(32));
  for (const n of [0, 1, 31, 32, 33, 64, 65, 1000]) {
    const iv = random(32);
    const p = random(n);
    const c = m.encrypt(iv, p);
    assert.equal(c.length, n);
    if (n >= 16) assert.notEqual(c.toHex(), p.toHex(), `length ${n}`);
    assert.equal(m.decrypt(iv, c).toHex(), p.toHex(), `length ${n}`);
  }
});

Deno.test("MdCfb encrypts an empty plaintext to an empty ciphertext", () => {
  const c = mdcfbEncrypt(random(32), random(32), new Uint8Array(0));
  assert.equal(c.length, 0);
  assert.equal(mdcfbDecrypt(random(32), random(32), c).length, 0);
});

Deno.test("MdCfb truncates the last block: a prefix of the plaintext gives a prefix of the ciphertext", () => {
  const key = random(32);
  const iv = random(32);
  const p = random(100);
  const full = mdcfbEncrypt(key, iv, p);
  for (const n of [1, 31, 32, 33, 65, 99]) {
    assert.equal(
      mdcfbEncrypt(key, iv, p.subarray(0, n)).toHex(),
      full.subarray(0, n).toHex(),
    );
  }
});

Deno.test("MdCfb with a wrong key does not recover the plaintext", () => {
  const key = random(32);
  const iv = random(32);
  const p = random(65);
  const c = mdcfbEncrypt(key, iv, p);
  const wrong = mdcfbDecrypt(flipBit(key, 0), iv, c);
  assert.notEqual(wrong.toHex(), p.toHex());
  // Every block is garbled, not just the first.
  for (let off = 0; off < 65; off += 32) {
    assert.notEqual(
      wrong.subarray(off, off + 32).toHex(),
      p.subarray(off, off + 32).toHex(),
      `block at ${off}`,
    );
  }
});

Deno.test("MdCfb with a different key gives a different ciphertext", () => {
  const key = random(32);
  const iv = random(32);
  const p = random(40);
  assert.notEqual(
    mdcfbEncrypt(key, iv, p).toHex(),
    mdcfbEncrypt(flipBit(key, 255), iv, p).toHex(),
  );
});

Deno.test("MdCfb with a wrong IV garbles only the first block: being CFB, it recovers from block 2 on", () => {
  const key = random(32);
  const iv = random(32);
  const p = random(96);
  const c = mdcfbEncrypt(key, iv, p);
  const wrong = mdcfbDecrypt(key, flipBit(iv, 100), c);
  assert.notEqual(wrong.subarray(0, 32).toHex(), p.subarray(0, 32).toHex());
  // b_2 depends only on c_1, so block 2 onwards decrypts (self-synchronising).
  assert.equal(wrong.subarray(32).toHex(), p.subarray(32).toHex());
});

Deno.test("MdCfb with a different IV gives a different ciphertext in every block", () => {
  const key = random(32);
  const iv = random(32);
  const p = random(96);
  const a = mdcfbEncrypt(key, iv, p);
  const b = mdcfbEncrypt(key, flipBit(iv, 7), p);
  for (let off = 0; off < 96; off += 32) {
    assert.notEqual(
      a.subarray(off, off + 32).toHex(),
      b.subarray(off, off + 32).toHex(),
    );
  }
});

Deno.test("MdCfb: a flipped ciphertext bit flips exactly that plaintext bit and garbles the next block only", () => {
  const m = new MdCfb(random(32));
  const iv = random(32);
  const p = random(4 * MDCFB_BLOCK_BYTES);
  const c = m.encrypt(iv, p);
  for (const bit of [0, 77, 255, 256 + 3, 512 + 200]) {
    const got = m.decrypt(iv, flipBit(c, bit));
    const block = Math.floor(bit / 256);
    // Same block: exactly the one bit differs.
    assert.equal(
      got.subarray(block * 32, block * 32 + 32).toHex(),
      flipBit(p, bit).subarray(block * 32, block * 32 + 32).toHex(),
      `bit ${bit}`,
    );
    // Next block: garbled (its keystream came from the flipped block).
    assert.notEqual(
      got.subarray(block * 32 + 32, block * 32 + 64).toHex(),
      p.subarray(block * 32 + 32, block * 32 + 64).toHex(),
      `bit ${bit}: next block`,
    );
    // Earlier blocks and the block after next: intact.
    assert.equal(
      got.subarray(0, block * 32).toHex(),
      p.subarray(0, block * 32).toHex(),
    );
    assert.equal(
      got.subarray(block * 32 + 64).toHex(),
      p.subarray(block * 32 + 64).toHex(),
    );
  }
});

Deno.test("MdCfb: a flipped bit in a truncated last block flips only that plaintext bit", () => {
  const key = random(32);
  const iv = random(32);
  const p = random(40);
  const c = mdcfbEncrypt(key, iv, p);
  assert.equal(
    mdcfbDecrypt(key, iv, flipBit(c, 300)).toHex(),
    flipBit(p, 300).toHex(),
  );
});

for (const n of [0, 16, 31, 33, 64]) {
  Deno.test(`MdCfb rejects a ${n}-byte IV with ProtocolError bad-length`, () => {
    const m = new MdCfb(random(32));
    for (
      const f of [
        () => m.encrypt(random(n), random(5)),
        () => m.decrypt(random(n), random(5)),
      ]
    ) {
      assert.throws(f, (e: unknown) => {
        assert.ok(e instanceof ProtocolError);
        assert.equal(e.code, "bad-length");
        assert.equal(e.message, `iv: expected 32 bytes, got ${n}`);
        return true;
      });
    }
  });
}

Deno.test("MdCfb rejects a wrong IV length even for an empty plaintext", () => {
  assert.throws(
    () => mdcfbEncrypt(random(32), random(16), new Uint8Array(0)),
    (e: unknown) => e instanceof ProtocolError && e.code === "bad-length",
  );
});

for (const n of [0, 16, 31, 33, 64]) {
  Deno.test(`MdCfb rejects a ${n}-byte key with ProtocolError bad-length`, () => {
    for (
      const f of [
        () => new MdCfb(random(n)),
        () => mdcfbEncrypt(random(n), random(32), random(3)),
        () => mdcfbDecrypt(random(n), random(32), random(3)),
      ]
    ) {
      assert.throws(f, (e: unknown) => {
        assert.ok(e instanceof ProtocolError);
        assert.equal(e.code, "bad-length");
        assert.equal(e.message, `key: expected 32 bytes, got ${n}`);
        return true;
      });
    }
  });
}

Deno.test("MdCfb refuses to run after wipe() with ProtocolError key-wiped", () => {
  const m = new MdCfb(random(32));
  m.wipe();
  assert.throws(
    () => m.encrypt(random(32), random(1)),
    (e: unknown) => e instanceof ProtocolError && e.code === "key-wiped",
  );
  assert.throws(
    () => m.decrypt(random(32), random(1)),
    (e: unknown) => e instanceof ProtocolError && e.code === "key-wiped",
  );
});

Deno.test("MdCfb does not modify its inputs and keeps working after the caller wipes the key", () => {
  const key = random(32);
  const iv = random(32);
  const p = random(70);
  const [iv0, p0] = [iv.toHex(), p.toHex()];
  const want = mdcfbEncrypt(key, iv, p).toHex();
  const m = new MdCfb(key);
  key.fill(0);
  const c = m.encrypt(iv, p);
  assert.equal(c.toHex(), want);
  assert.equal(iv.toHex(), iv0);
  assert.equal(p.toHex(), p0);
  m.decrypt(iv, c);
  assert.equal(c.toHex(), want);
});

Deno.test("MdCfb reads subarray views at their own offsets", () => {
  const key = random(32);
  const buf = random(300);
  const iv = buf.subarray(3, 35);
  const p = buf.subarray(41, 141);
  const want = mdcfbEncrypt(key, iv.slice(), p.slice()).toHex();
  assert.equal(mdcfbEncrypt(key, iv, p).toHex(), want);
  const c = Uint8Array.fromHex(want);
  const cbuf = new Uint8Array(c.length + 9);
  cbuf.set(c, 9);
  assert.equal(
    mdcfbDecrypt(key, iv, cbuf.subarray(9)).toHex(),
    p.toHex(),
  );
});

Deno.test("MdCfb decryption is not encryption: decrypting a plaintext does not re-encrypt it", () => {
  // Feedback comes from the ciphertext in both directions, so for two or
  // more blocks decrypt(p) != encrypt(p).
  const key = random(32);
  const iv = random(32);
  const p = random(64);
  assert.notEqual(
    mdcfbDecrypt(key, iv, p).toHex(),
    mdcfbEncrypt(key, iv, p).toHex(),
  );
});

Deno.test("encryptInto() and decryptInto() equal encrypt() and decrypt(), into another array or in place", () => {
  const m = new MdCfb(random(32));
  for (const n of [0, 1, 31, 32, 33, 64, 65, 100, 1000]) {
    const iv = random(32);
    const p = random(n);
    const c = m.encrypt(iv, p);
    // Into another array at an offset: nothing around it is touched.
    const out = new Uint8Array(n + 9);
    m.encryptInto(iv, p, out, 4);
    assert.equal(out.subarray(4, 4 + n).toHex(), c.toHex(), `length ${n}`);
    assert.ok(out.subarray(0, 4).every((x) => x === 0));
    assert.ok(out.subarray(4 + n).every((x) => x === 0));
    const back = new Uint8Array(n + 2);
    m.decryptInto(iv, c, back, 1);
    assert.equal(back.subarray(1, 1 + n).toHex(), p.toHex(), `length ${n}`);
    // In place: the input is the output's own stretch of memory.
    const buf = new Uint8Array(n + 18);
    buf.set(p, 18);
    m.encryptInto(iv, buf.subarray(18), buf, 18);
    assert.equal(buf.subarray(18).toHex(), c.toHex(), `in place ${n}`);
    m.decryptInto(iv, buf.subarray(18), buf, 18);
    assert.equal(buf.subarray(18).toHex(), p.toHex(), `in place ${n}`);
  }
});

Deno.test("encryptInto() and decryptInto() refuse an output that does not fit with a RangeError", () => {
  const m = new MdCfb(random(32));
  const iv = random(32);
  assert.throws(
    () => m.encryptInto(iv, random(10), new Uint8Array(10), 1),
    RangeError,
  );
  assert.throws(
    () => m.decryptInto(iv, random(10), new Uint8Array(9), 0),
    RangeError,
  );
  assert.throws(
    () => m.encryptInto(iv, random(1), new Uint8Array(4), -1),
    RangeError,
  );
});

Deno.test("MdCfb instances of different keys interleaved give what fresh ones give, and a wiped one does not disturb the others", async () => {
  const keys = [random(32), random(32), random(32)];
  const ms = keys.map((k) => new MdCfb(k));
  const iv = random(32);
  const ps = [random(100), random(33), random(1000)];
  for (const p of ps) {
    for (const [i, m] of ms.entries()) {
      const want = (await referenceEncrypt(keys[i]!, iv, p)).toHex();
      assert.equal(m.encrypt(iv, p).toHex(), want, `key ${i}`);
      const out = new Uint8Array(p.length);
      m.encryptInto(iv, p, out, 0);
      assert.equal(out.toHex(), want, `key ${i}, into`);
    }
  }
  ms[0]!.wipe();
  assert.equal(
    ms[1]!.encrypt(iv, ps[0]!).toHex(),
    (await referenceEncrypt(keys[1]!, iv, ps[0]!)).toHex(),
  );
});

for (const [i, v] of vectors.cases.entries()) {
  const len = v.plaintext.length / 2;
  Deno.test(`encryptInto() in place reproduces mdcfb.json case ${i} (${len} B); decryptInto() in place undoes it`, () => {
    const m = new MdCfb(Uint8Array.fromHex(v.key));
    const iv = Uint8Array.fromHex(v.iv);
    const buf = Uint8Array.fromHex(v.plaintext);
    m.encryptInto(iv, buf, buf, 0);
    assert.equal(buf.toHex(), v.ciphertext);
    m.decryptInto(iv, buf, buf, 0);
    assert.equal(buf.toHex(), v.plaintext);
    m.wipe();
  });
}
