/**
 * Ephemeral X25519 (RFC 7748) for forward secrecy, rules 2.5 and 4.4.
 */
import assert from "node:assert/strict";
import { concat, KeyError, ProtocolError } from "../lib/util/mod.ts";
import {
  type Ephemeral,
  exportX25519Private,
  generateEphemeral,
  generateX25519,
  importX25519Private,
  sharedSecret,
  X25519_PUBLIC_BYTES,
} from "../lib/crypto/mod.ts";
import { assertRejectsIm } from "./_helpers.ts";

/** PKCS#8 prefix of an X25519 private key (RFC 8410). */
const PKCS8_X25519 = Uint8Array.fromHex("302e020100300506032b656e04220420");

async function fromScalar(hex: string, publicHex: string): Promise<Ephemeral> {
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    concat(PKCS8_X25519, Uint8Array.fromHex(hex)),
    { name: "X25519" },
    false,
    ["deriveBits"],
  );
  return { privateKey, publicRaw: Uint8Array.fromHex(publicHex) };
}

Deno.test("sharedSecret() reproduces the RFC 7748 section 6.1 test vector", async () => {
  const alice = await fromScalar(
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
  const bob = await fromScalar(
    "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
  );
  const expected =
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  assert.equal((await sharedSecret(alice, bob.publicRaw)).toHex(), expected);
  assert.equal((await sharedSecret(bob, alice.publicRaw)).toHex(), expected);
});

Deno.test("two fresh ephemeral pairs agree on a 32-byte secret", async () => {
  const a = await generateEphemeral();
  const b = await generateEphemeral();
  const s1 = await sharedSecret(a, b.publicRaw);
  const s2 = await sharedSecret(b, a.publicRaw);
  assert.equal(s1.length, 32);
  assert.deepEqual(s1, s2);
  const c = await generateEphemeral();
  assert.notDeepEqual(await sharedSecret(a, c.publicRaw), s1);
});

Deno.test("generateEphemeral() gives a fresh 32-byte public key each time and a private key that cannot be exported", async () => {
  const pairs = await Promise.all(
    Array.from({ length: 8 }, () => generateEphemeral()),
  );
  assert.equal(new Set(pairs.map((p) => p.publicRaw.toHex())).size, 8);
  for (const p of pairs) {
    assert.equal(p.publicRaw.length, X25519_PUBLIC_BYTES);
    assert.equal(p.privateKey.extractable, false);
    assert.deepEqual(p.privateKey.usages, ["deriveBits"]);
  }
  await assert.rejects(() =>
    crypto.subtle.exportKey("pkcs8", pairs[0]!.privateKey)
  );
});

Deno.test("sharedSecret() refuses a public key of the wrong length with bad-ephemeral", async () => {
  const a = await generateEphemeral();
  for (const n of [0, 1, 31, 33, 64]) {
    const e = await assertRejectsIm(
      () => sharedSecret(a, new Uint8Array(n).fill(9)),
      ProtocolError,
      "bad-ephemeral",
      `length ${n}`,
    );
    assert.match(e.message, new RegExp(`got ${n}`));
  }
});

Deno.test("sharedSecret() refuses low-order points (all-zero output, RFC 7748 6.1) with bad-ephemeral", async () => {
  const a = await generateEphemeral();
  const lowOrder = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  ];
  for (const hex of lowOrder) {
    await assertRejectsIm(
      () => sharedSecret(a, Uint8Array.fromHex(hex)),
      ProtocolError,
      "bad-ephemeral",
      hex,
    );
  }
});

Deno.test("importX25519Private() derives the public key of a PKCS#8 private key (RFC 7748 section 6.1 vector) and keeps it non-extractable", async () => {
  const alice = await importX25519Private(
    concat(
      PKCS8_X25519,
      Uint8Array.fromHex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
      ),
    ),
  );
  assert.equal(
    alice.publicRaw.toHex(),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
  assert.equal(alice.privateKey.extractable, false);
  assert.deepEqual(alice.privateKey.usages, ["deriveBits"]);
  const bob = Uint8Array.fromHex(
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
  );
  assert.equal(
    (await sharedSecret(alice, bob)).toHex(),
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
  );
});

Deno.test("exportX25519Private() then importX25519Private() gives a key with the same public key and the same shared secrets", async () => {
  const original = await generateX25519(true);
  assert.equal(original.privateKey.extractable, true);
  const der = await exportX25519Private(original.privateKey);
  assert.deepEqual(der.subarray(0, PKCS8_X25519.length), PKCS8_X25519);
  assert.equal(der.length, PKCS8_X25519.length + 32);
  const back = await importX25519Private(der);
  assert.deepEqual(back.publicRaw, original.publicRaw);
  assert.equal(back.privateKey.extractable, false);
  const peer = await generateEphemeral();
  assert.deepEqual(
    await sharedSecret(back, peer.publicRaw),
    await sharedSecret(original, peer.publicRaw),
  );
  assert.deepEqual(
    await sharedSecret(peer, back.publicRaw),
    await sharedSecret(back, peer.publicRaw),
  );
});

Deno.test("exportX25519Private() refuses a non-extractable key and a public key with wrong-key", async () => {
  const pinned = await generateX25519(false);
  await assertRejectsIm(
    () => exportX25519Private(pinned.privateKey),
    KeyError,
    "wrong-key",
  );
  const pub = await crypto.subtle.importKey(
    "raw",
    pinned.publicRaw,
    { name: "X25519" },
    true,
    [],
  );
  await assertRejectsIm(() => exportX25519Private(pub), KeyError, "wrong-key");
});

Deno.test("importX25519Private() refuses bytes that are not an X25519 PKCS#8 key with bad-key", async () => {
  const good = await exportX25519Private(
    (await generateX25519(true)).privateKey,
  );
  const ed25519 = new Uint8Array(good);
  ed25519[11] = 0x70; // OID 1.3.101.112 (Ed25519) instead of 1.3.101.110
  for (
    const [what, der] of [
      ["empty", new Uint8Array(0)],
      ["truncated", good.subarray(0, good.length - 1)],
      ["raw scalar", good.subarray(PKCS8_X25519.length)],
      ["Ed25519", ed25519],
    ] as const
  ) {
    await assertRejectsIm(
      () => importX25519Private(der),
      KeyError,
      "bad-key",
      what,
    );
  }
});
