/**
 * Key schedule: HKDF-SHA256 (RFC 5869), labels `im v1 ...` (PROTOCOL.md
 * "Labels"), direction keys (rule 2.6) and the transcript hash (rule 2.3).
 */
import assert from "node:assert/strict";
import { concat, utf8 } from "../lib/util/mod.ts";
import {
  deriveDirectionKeys,
  deriveKey,
  deriveKeySync,
  type Direction,
  hkdf,
  hkdfSync,
  Label,
  transcriptHash,
} from "../lib/crypto/mod.ts";
import { flipBit } from "./_helpers.ts";

const DIRECTIONS: Direction[] = ["c2s", "s2c", "h2j", "j2h"];
const KINDS = ["enc", "iv", "mac"] as const;

function bytes(n: number, start = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
}

Deno.test("hkdf() reproduces RFC 5869 test case 1", async () => {
  const okm = await hkdf(
    new Uint8Array(22).fill(0x0b),
    Uint8Array.fromHex("000102030405060708090a0b0c"),
    Uint8Array.fromHex("f0f1f2f3f4f5f6f7f8f9"),
    42,
  );
  assert.equal(
    okm.toHex(),
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  );
});

Deno.test("hkdf() reproduces RFC 5869 test case 3 (empty salt and info)", async () => {
  const okm = await hkdf(
    new Uint8Array(22).fill(0x0b),
    new Uint8Array(0),
    new Uint8Array(0),
    42,
  );
  assert.equal(
    okm.toHex(),
    "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
  );
});

/** WebCrypto's HKDF-SHA256: an independent implementation to compare with. */
async function webCryptoHkdf(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    ikm as Uint8Array<ArrayBuffer>,
    "HKDF",
    false,
    ["deriveBits"],
  );
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      {
        name: "HKDF",
        hash: "SHA-256",
        salt: salt as Uint8Array<ArrayBuffer>,
        info: info as Uint8Array<ArrayBuffer>,
      },
      key,
      length * 8,
    ),
  );
}

Deno.test("hkdfSync() gives WebCrypto's HKDF-SHA256 bytes for one, several and the most blocks, with and without salt and info", async () => {
  for (const length of [1, 31, 32, 33, 64, 65, 100, 255 * 32]) {
    for (
      const [salt, info] of [[bytes(16, 200), bytes(9, 3)], [
        bytes(0),
        bytes(0),
      ], [bytes(80, 1), bytes(300, 5)]] as const
    ) {
      const ikm = bytes(length % 70 + 1, length);
      assert.deepEqual(
        hkdfSync(ikm, salt, info, length),
        await webCryptoHkdf(ikm, salt, info, length),
        `length ${length}, salt ${salt.length}, info ${info.length}`,
      );
    }
  }
  assert.equal(hkdfSync(bytes(32), bytes(0), bytes(0), 0).length, 0);
  assert.throws(() => hkdfSync(bytes(32), bytes(0), bytes(0), -1), RangeError);
  assert.throws(() => hkdfSync(bytes(32), bytes(0), bytes(0), 1.5), RangeError);
});

Deno.test("deriveKeySync() is RFC 5869 HKDF-SHA256: test case 3's first block, and WebCrypto's bytes for every label; deriveDirectionKeys() its three labels", async () => {
  assert.equal(
    deriveKeySync(new Uint8Array(22).fill(0x0b), new Uint8Array(0), "").toHex(),
    "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d",
  );
  const ikm = bytes(64, 9), salt = bytes(16, 200);
  for (const label of Object.values(Label)) {
    assert.deepEqual(
      deriveKeySync(ikm, salt, label),
      await webCryptoHkdf(ikm, salt, utf8(label), 32),
      label,
    );
  }
  for (const dir of DIRECTIONS) {
    const k = await deriveDirectionKeys(ikm, salt, dir);
    for (const kind of KINDS) {
      assert.deepEqual(
        k[kind],
        await webCryptoHkdf(ikm, salt, utf8(`im v1 ${dir} ${kind}`), 32),
        `${dir} ${kind}`,
      );
    }
  }
});

Deno.test("hkdf() refuses more than 255 * 32 output bytes", async () => {
  assert.equal(
    (await hkdf(bytes(32), bytes(32), bytes(1), 255 * 32)).length,
    255 * 32,
  );
  await assert.rejects(() =>
    hkdf(bytes(32), bytes(32), bytes(1), 255 * 32 + 1)
  );
});

Deno.test("every protocol label starts with `im v1 ` and no two are equal", () => {
  const labels: string[] = [...Object.values(Label)];
  for (const d of DIRECTIONS) {
    for (const k of KINDS) labels.push(`im v1 ${d} ${k}`);
  }
  for (const l of labels) assert.ok(l.startsWith("im v1 "), `label "${l}"`);
  assert.equal(new Set(labels).size, labels.length, "labels are unique");
  assert.ok(labels.length >= 10 + 12);
});

Deno.test("deriveDirectionKeys() uses the labels `im v1 <dir> enc|iv|mac` (pinned to PROTOCOL.md)", async () => {
  const ikm = bytes(64), salt = bytes(32, 100);
  for (const d of DIRECTIONS) {
    const k = await deriveDirectionKeys(ikm, salt, d);
    assert.deepEqual(k.enc, await hkdf(ikm, salt, utf8(`im v1 ${d} enc`), 32));
    assert.deepEqual(k.iv, await hkdf(ikm, salt, utf8(`im v1 ${d} iv`), 32));
    assert.deepEqual(k.mac, await hkdf(ikm, salt, utf8(`im v1 ${d} mac`), 32));
  }
});

Deno.test("deriveKey() is HKDF-SHA256 with the label as info and 32 bytes out", async () => {
  const ikm = bytes(32), salt = bytes(32, 7);
  const k = await deriveKey(ikm, salt, Label.PEER_AUTH);
  assert.equal(k.length, 32);
  assert.deepEqual(k, await hkdf(ikm, salt, utf8("im v1 peer auth"), 32));
});

Deno.test("the twelve direction keys (c2s, s2c, h2j, j2h x enc, iv, mac) are all different (rule 2.6)", async () => {
  const ikm = bytes(64), salt = bytes(32, 9);
  const all: string[] = [];
  for (const d of DIRECTIONS) {
    const k = await deriveDirectionKeys(ikm, salt, d);
    for (const kind of KINDS) {
      assert.equal(k[kind].length, 32);
      all.push(k[kind].toHex());
    }
  }
  assert.equal(new Set(all).size, 12);
});

Deno.test("c2s keys differ from s2c keys for the same secret and salt", async () => {
  const ikm = bytes(64), salt = bytes(32);
  const c2s = await deriveDirectionKeys(ikm, salt, "c2s");
  const s2c = await deriveDirectionKeys(ikm, salt, "s2c");
  assert.notDeepEqual(c2s.enc, s2c.enc);
  assert.notDeepEqual(c2s.iv, s2c.iv);
  assert.notDeepEqual(c2s.mac, s2c.mac);
});

Deno.test("the key schedule is deterministic and depends on both the secret and the salt", async () => {
  const ikm = bytes(64), salt = bytes(32);
  const a = await deriveDirectionKeys(ikm, salt, "c2s");
  const b = await deriveDirectionKeys(bytes(64), bytes(32), "c2s");
  assert.deepEqual(a, b);
  const otherIkm = flipBit(bytes(64), 63 * 8);
  const otherSalt = flipBit(bytes(32), 0);
  const c = await deriveDirectionKeys(otherIkm, salt, "c2s");
  const d = await deriveDirectionKeys(ikm, otherSalt, "c2s");
  for (const kind of KINDS) {
    assert.notDeepEqual(a[kind], c[kind], `ikm changes ${kind}`);
    assert.notDeepEqual(a[kind], d[kind], `salt changes ${kind}`);
  }
});

Deno.test("transcriptHash() is injective across part boundaries: [a, bc] != [ab, c]", async () => {
  const a = utf8("a"), b = utf8("b"), c = utf8("c");
  const h1 = await transcriptHash(Label.TRANSCRIPT, [a, concat(b, c)]);
  const h2 = await transcriptHash(Label.TRANSCRIPT, [concat(a, b), c]);
  assert.notDeepEqual(h1, h2);
});

Deno.test("transcriptHash() tells apart empty parts, missing parts and the label boundary", async () => {
  const hs = await Promise.all([
    transcriptHash("im v1 x", []),
    transcriptHash("im v1 x", [new Uint8Array(0)]),
    transcriptHash("im v1 x", [new Uint8Array(0), new Uint8Array(0)]),
    transcriptHash("im v1 ", [utf8("x")]),
    transcriptHash("im v1 y", []),
    transcriptHash("im v1 x", [new Uint8Array(1)]),
  ]);
  assert.equal(new Set(hs.map((h) => h.toHex())).size, hs.length);
});

Deno.test("transcriptHash() is SHA-256 over u32-length-prefixed label and parts (pinned to PROTOCOL.md)", async () => {
  const parts = [utf8("alice"), new Uint8Array([1, 2, 3]), new Uint8Array(0)];
  const all = [utf8(Label.TRANSCRIPT), ...parts];
  const enc = concat(
    ...all.flatMap((p) => {
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, p.length);
      return [len, p];
    }),
  );
  const expected = new Uint8Array(await crypto.subtle.digest("SHA-256", enc));
  const got = await transcriptHash(Label.TRANSCRIPT, parts);
  assert.equal(got.length, 32);
  assert.deepEqual(got, expected);
  // Deterministic.
  assert.deepEqual(await transcriptHash(Label.TRANSCRIPT, parts), got);
});
