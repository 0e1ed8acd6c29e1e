/**
 * Rooms, the cryptography of PROTOCOL.md sections 10.2 and 10.3: Ed25519
 * (RFC 8032 vectors), the room key as a mail of plaintext type 2, sender
 * and receiver chains (the key schedule recomputed here from the spec's
 * text with WebCrypto's HKDF, the window, replays, the cap on skipped
 * keys, frozen chains, saved states), the ROOM_MSG layout, and the
 * receiver's checks in order (`RoomReader`).
 */
import assert from "node:assert/strict";
import { ByteWriter, concat, ProtocolError, utf8 } from "../lib/util/mod.ts";
import {
  type Ed25519KeyPair,
  exportEd25519Private,
  generateEd25519,
  generateX25519,
  hkdf,
  hmacSha256,
  importEd25519Private,
  mdcfbDecrypt,
  mdcfbEncrypt,
  signEd25519,
  transcriptHash,
  verifyEd25519,
} from "../lib/crypto/mod.ts";
import {
  checkRoomTime,
  type DecodedMail,
  type DecodedRoomMessage,
  decodeMail,
  decodeRoomKey,
  decodeRoomMessage,
  encodeRoomKey,
  MAIL_TYPE_ROOM_KEY,
  type MailKeyPair,
  MAX_ROOM_TEXT_BYTES,
  openMail,
  openRoomMessage,
  ReceiverChain,
  ROOM_MAX_SKIP,
  type RoomKey,
  RoomReader,
  sealMail,
  sealRoomMessage,
  SenderChain,
  verifyRoomSignature,
} from "../lib/proto/mod.ts";
import {
  assertRejectsIm,
  assertThrowsIm,
  flipBit,
  identities,
  x25519,
} from "./_helpers.ts";

const NOW = 1_800_000_000_000;
const DAY = 24 * 60 * 60 * 1000;
const te = new TextEncoder();
const hex = (s: string) => Uint8Array.fromHex(s);
const u8 = (...n: number[]) => new Uint8Array(n);

// ---------------------------------------------------------------------------
// Ed25519

/** PKCS#8 (RFC 8410) of an Ed25519 seed: the fixed prefix, then the 32 bytes. */
function pkcs8Of(seed: Uint8Array): Uint8Array {
  return concat(hex("302e020100300506032b657004220420"), seed);
}

Deno.test("Ed25519 is RFC 8032: test vectors 1 and 2 (section 7.1) sign and verify", async () => {
  const vectors = [
    {
      seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
      pub: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
      msg: "",
      sig:
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    },
    {
      seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
      pub: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
      msg: "72",
      sig:
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    },
  ];
  for (const v of vectors) {
    const pair = await importEd25519Private(pkcs8Of(hex(v.seed)), hex(v.pub));
    assert.equal(pair.privateKey.extractable, false);
    assert.equal((await signEd25519(pair, hex(v.msg))).toHex(), v.sig);
    assert.ok(await verifyEd25519(hex(v.pub), hex(v.sig), hex(v.msg)));
  }
});

Deno.test("verifyEd25519() is false, never throwing, for another key, another message, a flipped signature or wrong lengths", async () => {
  const [k, other] = await Promise.all([
    generateEd25519(false),
    generateEd25519(false),
  ]);
  assert.equal(k.publicRaw.length, 32);
  const data = utf8("room message");
  const sig = await signEd25519(k, data);
  assert.equal(sig.length, 64);
  assert.ok(await verifyEd25519(k.publicRaw, sig, data));
  assert.ok(!(await verifyEd25519(other.publicRaw, sig, data)));
  assert.ok(!(await verifyEd25519(k.publicRaw, sig, utf8("room messagE"))));
  for (const bit of [0, 7, 255, 256, 511]) {
    assert.ok(!(await verifyEd25519(k.publicRaw, flipBit(sig, bit), data)));
  }
  for (const bit of [0, 100, 255]) {
    assert.ok(!(await verifyEd25519(flipBit(k.publicRaw, bit), sig, data)));
  }
  assert.ok(!(await verifyEd25519(k.publicRaw, sig.subarray(0, 63), data)));
  assert.ok(!(await verifyEd25519(k.publicRaw, concat(sig, u8(0)), data)));
  assert.ok(!(await verifyEd25519(k.publicRaw.subarray(1), sig, data)));
  assert.ok(!(await verifyEd25519(new Uint8Array(0), sig, data)));
  assert.ok(!(await verifyEd25519(new Uint8Array(32).fill(0xff), sig, data)));
});

Deno.test("Ed25519 private keys export as PKCS#8 and import back only beside their own public key", async () => {
  const k = await generateEd25519(true), other = await generateEd25519(true);
  const der = await exportEd25519Private(k);
  const back = await importEd25519Private(der, k.publicRaw);
  assert.equal(back.privateKey.extractable, false);
  assert.deepEqual(back.publicRaw, k.publicRaw);
  const data = utf8("x");
  assert.ok(
    await verifyEd25519(k.publicRaw, await signEd25519(back, data), data),
  );
  await assertRejectsIm(
    () => importEd25519Private(der, other.publicRaw),
    ProtocolError,
    "bad-key",
  );
  await assertRejectsIm(
    () => importEd25519Private(der, k.publicRaw.subarray(1)),
    ProtocolError,
    "bad-key",
  );
  await assertRejectsIm(
    () => importEd25519Private(der.subarray(1), k.publicRaw),
    ProtocolError,
    "bad-key",
  );
  const x = await generateX25519(true);
  await assertRejectsIm(
    async () =>
      importEd25519Private(
        new Uint8Array(await crypto.subtle.exportKey("pkcs8", x.privateKey)),
        k.publicRaw,
      ),
    ProtocolError,
    "bad-key",
  );
  await assert.rejects(exportEd25519Private(back), { code: "wrong-key" });
});

// ---------------------------------------------------------------------------
// ROOM_KEY and the mail of type 2

const ROOM_ID = new Uint8Array(16).map((_, i) => i + 1);
const OTHER_ROOM_ID = new Uint8Array(16).fill(0xee);

function roomKey(over: Partial<RoomKey> = {}): RoomKey {
  return {
    roomId: ROOM_ID,
    name: "team",
    epoch: 3,
    index: 9,
    chainKey: new Uint8Array(32).fill(0xc1),
    signingKey: new Uint8Array(32).fill(0x5e),
    ...over,
  };
}

Deno.test("a ROOM_KEY is u8 version || room_id[16] || bytes8(name) || epoch u32 || index u32 || ck[32] || ed25519_public[32]", () => {
  const k = roomKey();
  const b = encodeRoomKey(k);
  assert.deepEqual(
    b,
    new ByteWriter().u8(1).bytes(ROOM_ID).bytes8(utf8("team")).u32(3).u32(9)
      .bytes(k.chainKey).bytes(k.signingKey).finish(),
  );
  assert.deepEqual(decodeRoomKey(b), k);
  const bad: [string, Uint8Array][] = [
    ["version 2", concat(u8(2), b.subarray(1))],
    ["truncated", b.subarray(0, b.length - 1)],
    ["trailing byte", concat(b, u8(0))],
    ["epoch 0", encodeWith(b, 22, [0, 0, 0, 0])],
    ["invalid name", encodeWith(b, 18, utf8("t/am"))],
    ["invalid UTF-8", encodeWith(b, 18, [0xc3, 0x28, 0x61, 0x6d])],
    ["empty", new Uint8Array(0)],
  ];
  for (const [what, x] of bad) {
    assertThrowsIm(
      () => decodeRoomKey(x),
      ProtocolError,
      "room-malformed",
      what,
    );
  }
  assertThrowsIm(
    () => encodeRoomKey(roomKey({ chainKey: new Uint8Array(31) })),
    ProtocolError,
    "room-malformed",
  );
});

/** A copy of `b` with `bytes` written at `at`. */
function encodeWith(b: Uint8Array, at: number, bytes: ArrayLike<number>) {
  const x = new Uint8Array(b);
  x.set(bytes, at);
  return x;
}

const ids = await identities();
const fpA = ids.A.fingerprintBytes, fpB = ids.B.fingerprintBytes;
const [ikA, ikB, spkB] = await Promise.all(
  [1, 2, 3].map(() => generateX25519(true)),
) as MailKeyPair[];

function sealTo(text: string, key?: Uint8Array) {
  return sealMail({
    sender: "A",
    recipient: "B",
    senderFingerprint: fpA,
    recipientFingerprint: fpB,
    senderIdentity: ikA!,
    recipientIdentityKey: ikB!.publicRaw,
    signedPrekey: { id: 1, key: spkB!.publicRaw },
    text,
    roomKey: key,
    time: NOW,
  });
}

function openAsB(mail: Uint8Array) {
  return openMail({
    mail: decodeMail(mail),
    senderFingerprint: fpA,
    recipientFingerprint: fpB,
    identity: ikB!,
    signedPrekey: spkB!,
  });
}

/** Section 9.2's enc, ivk and mac from B's private keys (no one-time prekey). */
async function mailKeys(m: DecodedMail) {
  const h = m.header;
  const dh = [
    await x25519(spkB!.privateKey, h.ik),
    await x25519(ikB!.privateKey, h.ek),
    await x25519(spkB!.privateKey, h.ek),
  ];
  const ad = await transcriptHash("im v1 mail ad", [
    new Uint8Array([1]),
    utf8("A"),
    utf8("B"),
    fpA,
    fpB,
    ikA!.publicRaw,
    ikB!.publicRaw,
  ]);
  const sk = await hkdf(
    concat(new Uint8Array(32).fill(0xff), ...dh),
    ad,
    utf8("im v1 mail secret"),
    32,
  );
  const k = (label: string) => hkdf(sk, h.msgId, utf8(label), 32);
  return {
    enc: await k("im v1 mail enc"),
    ivk: await k("im v1 mail iv"),
    mac: await k("im v1 mail mac"),
  };
}

/** A MAIL with `m`'s header, sealed with its true keys over `plaintext`. */
async function resealMail(m: DecodedMail, plaintext: Uint8Array) {
  const keys = await mailKeys(m);
  const ct = mdcfbEncrypt(
    keys.enc,
    hmacSha256(keys.ivk, m.header.msgId),
    plaintext,
  );
  return concat(
    m.headerBytes,
    ct,
    hmacSha256(keys.mac, concat(m.headerBytes, ct)),
  );
}

function plaintextOf(type: number, body: Uint8Array, size: number) {
  const p = new Uint8Array(size);
  p[0] = type;
  new DataView(p.buffer).setUint32(1, body.length);
  p.set(body, 5);
  return p;
}

Deno.test("a room key travels as a mail of plaintext type 2: u8 0x02 || u32 len || ROOM_KEY || zeros to the bucket", async () => {
  assert.equal(MAIL_TYPE_ROOM_KEY, 2);
  const key = encodeRoomKey(roomKey());
  const sealed = await sealTo("", key);
  const m = decodeMail(sealed.mail);
  const keys = await mailKeys(m);
  assert.deepEqual(
    mdcfbDecrypt(keys.enc, hmacSha256(keys.ivk, m.header.msgId), m.ciphertext),
    plaintextOf(2, key, 128),
  );
  const opened = await openAsB(sealed.mail);
  assert.equal(opened.text, "");
  assert.deepEqual(opened.roomKey, key);
  assert.deepEqual(decodeRoomKey(opened.roomKey!), roomKey());
  assert.deepEqual(opened.rk, sealed.rk);
  // A text mail has no room key.
  const text = await openAsB((await sealTo("hi")).mail);
  assert.equal(text.text, "hi");
  assert.equal(text.roomKey, undefined);
  assert.ok(!("roomKey" in text));
});

Deno.test("sealMail() refuses a text beside a room key (bad-length) and a room key that does not decode (room-malformed)", async () => {
  const key = encodeRoomKey(roomKey());
  await assertRejectsIm(() => sealTo("hi", key), ProtocolError, "bad-length");
  await assertRejectsIm(
    () => sealTo("", key.subarray(1)),
    ProtocolError,
    "room-malformed",
  );
  await assertRejectsIm(
    () => sealTo("", new Uint8Array(0)),
    ProtocolError,
    "room-malformed",
  );
});

Deno.test("openMail() refuses an authenticated type 2 plaintext that is no ROOM_KEY, and types other than 1 and 2, as mail-malformed", async () => {
  const m = decodeMail((await sealTo("hi")).mail);
  const key = encodeRoomKey(roomKey());
  // The reference: a well-formed room key resealed opens.
  assert.deepEqual(
    (await openAsB(await resealMail(m, plaintextOf(2, key, 128)))).roomKey,
    key,
  );
  const padded = plaintextOf(2, key, 128);
  padded[127] = 1;
  const cases: [string, Uint8Array][] = [
    ["type 2 of two bytes", plaintextOf(2, utf8("hi"), 64)],
    ["type 2, empty", plaintextOf(2, new Uint8Array(0), 64)],
    ["type 2, a ROOM_KEY cut short", plaintextOf(2, key.subarray(1), 128)],
    ["type 2, padding not zero", padded],
    ["type 3", plaintextOf(3, key, 128)],
    ["type 0", plaintextOf(0, utf8("hi"), 64)],
  ];
  for (const [what, p] of cases) {
    await assertRejectsIm(
      async () => await openAsB(await resealMail(m, p)),
      ProtocolError,
      "mail-malformed",
      what,
    );
  }
});

// ---------------------------------------------------------------------------
// Chains (section 10.2)

/** HKDF-SHA256 through WebCrypto's own `deriveBits`, 32 bytes. */
async function hkdfSpec(ikm: Uint8Array, salt: Uint8Array, label: string) {
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
        info: te.encode(label),
      },
      key,
      256,
    ),
  );
}

/** mk_0 .. mk_{n-1} and ck_0 .. ck_n from the spec's text. */
async function specChain(ck0: Uint8Array, roomId: Uint8Array, n: number) {
  const ck = [ck0], mk: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    mk.push(await hkdfSpec(ck[i]!, roomId, "im v1 room message"));
    ck.push(await hkdfSpec(ck[i]!, roomId, "im v1 room chain"));
  }
  return { ck, mk };
}

const CK0 = new Uint8Array(32).map((_, i) => 0xa0 ^ i);

function receiverAt(chain: SenderChain, over: Partial<RoomKey> = {}) {
  return new ReceiverChain(
    roomKey({ epoch: 1, ...chain.current(), ...over }),
  );
}

Deno.test('SenderChain.next() gives mk_i = HKDF(ck_i, room_id, "im v1 room message"), ck_{i+1} = HKDF(ck_i, room_id, "im v1 room chain")', async () => {
  const spec = await specChain(CK0, ROOM_ID, 5);
  const chain = new SenderChain(ROOM_ID, CK0, 0);
  for (let i = 0; i < 5; i++) {
    const cur = chain.current();
    assert.equal(cur.index, i);
    assert.deepEqual(cur.chainKey, spec.ck[i], `ck_${i}`);
    cur.chainKey.fill(0); // a copy: the chain is not touched
    const { index, messageKey } = chain.next();
    assert.equal(index, i);
    assert.deepEqual(messageKey, spec.mk[i], `mk_${i}`);
  }
  assert.equal(chain.index, 5);
  assert.deepEqual(chain.current().chainKey, spec.ck[5]);
  // The salt is the room_id: another room's chain from the same ck_0 differs.
  assert.notDeepEqual(
    new SenderChain(OTHER_ROOM_ID, CK0, 0).next().messageKey,
    spec.mk[0],
  );
  // Fresh chains start at 0 from random keys.
  const [f1, f2] = [SenderChain.fresh(ROOM_ID), SenderChain.fresh(ROOM_ID)];
  assert.equal(f1.index, 0);
  assert.notDeepEqual(f1.current().chainKey, f2.current().chainKey);
});

Deno.test("a ReceiverChain from a ROOM_KEY at index k derives the sender's keys from k on, and none below", async () => {
  const spec = await specChain(CK0, ROOM_ID, 8);
  const sender = new SenderChain(ROOM_ID, CK0, 0);
  sender.next(), sender.next(), sender.next();
  const receiver = receiverAt(sender);
  assert.equal(receiver.position, 3);
  for (let i = 3; i < 8; i++) {
    assert.deepEqual(receiver.keyFor(i), spec.mk[i], `mk_${i}`);
    receiver.use(i);
  }
  for (const i of [0, 1, 2]) {
    assertThrowsIm(() => receiver.keyFor(i), ProtocolError, "room-replayed");
  }
});

Deno.test("a ReceiverChain opens out of order within the window, each index once; keyFor() uses nothing up", async () => {
  const spec = await specChain(CK0, ROOM_ID, 10);
  const r = new ReceiverChain(roomKey({ index: 0, chainKey: CK0 }));
  // keyFor alone moves nothing.
  assert.deepEqual(r.keyFor(5), spec.mk[5]);
  assert.deepEqual(r.keyFor(5), spec.mk[5]);
  assert.equal(r.position, 0);
  for (const i of [5, 2, 9, 0, 7]) {
    assert.deepEqual(r.keyFor(i), spec.mk[i], `mk_${i}`);
    r.use(i);
    assertThrowsIm(() => r.keyFor(i), ProtocolError, "room-replayed", `#${i}`);
    assertThrowsIm(() => r.use(i), ProtocolError, "room-replayed", `#${i}`);
  }
  assert.equal(r.position, 10);
  for (const i of [1, 3, 4, 6, 8]) assert.deepEqual(r.keyFor(i), spec.mk[i]);
  assert.deepEqual(r.toJSON().skipped.map(([i]) => i), [1, 3, 4, 6, 8]);
});

Deno.test("an index more than 1,000 past the chain's position is room-gap", () => {
  assert.equal(ROOM_MAX_SKIP, 1000);
  const r = new ReceiverChain(roomKey({ index: 0 }));
  assertThrowsIm(() => r.keyFor(1001), ProtocolError, "room-gap");
  assertThrowsIm(() => r.use(1001), ProtocolError, "room-gap");
  assert.equal(r.position, 0);
  r.keyFor(1000);
  r.use(10);
  assert.equal(r.position, 11);
  r.keyFor(1011);
  assertThrowsIm(() => r.keyFor(1012), ProtocolError, "room-gap");
  // Above 2^32 - 1 no index exists.
  assertThrowsIm(() => r.keyFor(2 ** 32), ProtocolError, "room-malformed");
});

Deno.test("skipped keys are capped at 1,000 per chain, the oldest dropped", async () => {
  const spec = await specChain(CK0, ROOM_ID, 2);
  const r = new ReceiverChain(roomKey({ index: 0, chainKey: CK0 }));
  r.use(1000); // skips 0..999: exactly the cap
  assert.equal(r.toJSON().skipped.length, 1000);
  assert.deepEqual(r.keyFor(0), spec.mk[0]);
  r.use(1002); // 1001 is skipped too: 0 is dropped
  assert.equal(r.toJSON().skipped.length, 1000);
  assertThrowsIm(() => r.keyFor(0), ProtocolError, "room-replayed");
  assert.deepEqual(r.keyFor(1), spec.mk[1]);
  r.keyFor(1001);
  r.use(2000); // 1003..1999 skipped: the newest 1,000 are kept
  const kept = r.toJSON().skipped.map(([i]) => i);
  assert.equal(kept.length, 1000);
  assert.deepEqual(kept.slice(0, 4), [998, 999, 1001, 1003]);
  assert.equal(kept.at(-1), 1999);
  assertThrowsIm(() => r.keyFor(997), ProtocolError, "room-replayed");
  r.keyFor(998);
});

Deno.test("a frozen chain opens only skipped indexes below its position: past it is room-lost", async () => {
  const spec = await specChain(CK0, ROOM_ID, 4);
  const r = new ReceiverChain(roomKey({ index: 0, chainKey: CK0 }));
  r.use(5);
  r.use(2);
  r.freeze();
  assert.ok(r.frozen);
  assert.deepEqual(r.keyFor(3), spec.mk[3]);
  r.use(3);
  assertThrowsIm(() => r.keyFor(3), ProtocolError, "room-replayed");
  assertThrowsIm(() => r.keyFor(2), ProtocolError, "room-replayed");
  for (const i of [6, 7, 1006]) {
    assertThrowsIm(() => r.keyFor(i), ProtocolError, "room-lost", `#${i}`);
    assertThrowsIm(() => r.use(i), ProtocolError, "room-lost", `#${i}`);
  }
  assert.deepEqual(r.keyFor(0), spec.mk[0]);
  assert.equal(r.toJSON().chainKey, null);
});

Deno.test("chain states round-trip through JSON and keep their behaviour", async () => {
  const spec = await specChain(CK0, ROOM_ID, 12);
  const sender = new SenderChain(ROOM_ID, CK0, 0);
  sender.next(), sender.next();
  const s2 = SenderChain.fromJSON(JSON.parse(JSON.stringify(sender)));
  assert.equal(s2.index, 2);
  assert.deepEqual(s2.next().messageKey, spec.mk[2]);

  const r = new ReceiverChain(roomKey({ index: 0, chainKey: CK0 }));
  r.use(4);
  r.use(1);
  const r2 = ReceiverChain.fromJSON(JSON.parse(JSON.stringify(r)));
  assert.deepEqual(r2.signingKey, roomKey().signingKey);
  assert.equal(r2.epoch, 3);
  assert.equal(r2.position, 5);
  assertThrowsIm(() => r2.keyFor(1), ProtocolError, "room-replayed");
  assertThrowsIm(() => r2.keyFor(4), ProtocolError, "room-replayed");
  assert.deepEqual(r2.keyFor(0), spec.mk[0]);
  assert.deepEqual(r2.keyFor(11), spec.mk[11]);
  r2.freeze();
  const r3 = ReceiverChain.fromJSON(JSON.parse(JSON.stringify(r2)));
  assert.ok(r3.frozen);
  assertThrowsIm(() => r3.keyFor(5), ProtocolError, "room-lost");
  assert.deepEqual(r3.keyFor(3), spec.mk[3]);

  const good = r.toJSON();
  const bad: [string, unknown][] = [
    ["a skipped index at the position", {
      ...good,
      skipped: [[5, good.skipped[0]![1]]],
    }],
    ["skipped out of order", { ...good, skipped: [...good.skipped].reverse() }],
    ["a short chain key", { ...good, chainKey: "AAAA" }],
    ["frozen with a chain key", { ...good, frozen: true }],
    ["not base64", { ...good, signingKey: "!" }],
    ["null", null],
  ];
  for (const [what, s] of bad) {
    assertThrowsIm(
      () => ReceiverChain.fromJSON(s as never),
      ProtocolError,
      "room-malformed",
      what,
    );
  }
});

// ---------------------------------------------------------------------------
// The room message (section 10.3)

interface SealArgs {
  roomId: Uint8Array;
  name: string;
  sender: string;
  epoch: number;
  index: number;
  time: number;
  messageKey: Uint8Array;
  signing: Ed25519KeyPair;
  text: string;
}

const signingA = await generateEd25519(false);
const signingB = await generateEd25519(false);

function args(over: Partial<SealArgs> = {}): SealArgs {
  return {
    roomId: ROOM_ID,
    name: "team",
    sender: "A",
    epoch: 1,
    index: 0,
    time: NOW,
    messageKey: new Uint8Array(32).fill(0x4d),
    signing: signingA,
    text: "hello room",
    ...over,
  };
}

/** enc, ivk, mac = HKDF(mk, SHA-256(header), label), from the spec's text. */
async function roomKeys(mk: Uint8Array, header: Uint8Array) {
  const salt = new Uint8Array(
    await crypto.subtle.digest("SHA-256", header as Uint8Array<ArrayBuffer>),
  );
  return {
    enc: await hkdfSpec(mk, salt, "im v1 room enc"),
    ivk: await hkdfSpec(mk, salt, "im v1 room iv"),
    mac: await hkdfSpec(mk, salt, "im v1 room mac"),
  };
}

/** What the chain's key signs, from the spec's text. */
function signedOf(header: Uint8Array, ct: Uint8Array, tag: Uint8Array) {
  return concat(utf8("im v1 room message signature"), u8(0), header, ct, tag);
}

/**
 * A ROOM_MSG with `m`'s header, over `plaintext` under `mk`'s true keys
 * (or `ciphertext` as given), tagged, and signed by `signing`.
 */
async function resealRoom(
  m: DecodedRoomMessage,
  o: {
    plaintext?: Uint8Array;
    ciphertext?: Uint8Array;
    mk: Uint8Array;
    signing?: Ed25519KeyPair;
    tag?: Uint8Array;
  },
) {
  const keys = await roomKeys(o.mk, m.headerBytes);
  const ct = o.ciphertext ??
    mdcfbEncrypt(keys.enc, hmacSha256(keys.ivk, m.headerBytes), o.plaintext!);
  const tag = o.tag ?? hmacSha256(keys.mac, concat(m.headerBytes, ct));
  const sig = await signEd25519(
    o.signing ?? signingA,
    signedOf(m.headerBytes, ct, tag),
  );
  return concat(m.headerBytes, ct, tag, sig);
}

Deno.test("a ROOM_MSG is the section 10.3 layout, keys and signature recomputed from the spec's text", async () => {
  const a = args({ epoch: 2, index: 7, text: "héllo ✓" });
  const bytes = await sealRoomMessage(a);
  const header = new ByteWriter().u8(1).bytes(ROOM_ID).bytes8(utf8("team"))
    .bytes8(utf8("A")).u32(2).u32(7).u64(BigInt(NOW)).finish();
  assert.equal(header.length, 1 + 16 + 5 + 2 + 4 + 4 + 8);
  assert.deepEqual(bytes.subarray(0, header.length), header);
  assert.equal(bytes.length, header.length + 64 + 32 + 64);
  const ct = bytes.subarray(header.length, header.length + 64);
  const tag = bytes.subarray(header.length + 64, header.length + 96);
  const sig = bytes.subarray(header.length + 96);
  const keys = await roomKeys(a.messageKey, header);
  assert.deepEqual(tag, hmacSha256(keys.mac, concat(header, ct)));
  const text = utf8("héllo ✓");
  assert.deepEqual(
    mdcfbDecrypt(keys.enc, hmacSha256(keys.ivk, header), ct),
    plaintextOf(1, text, 64),
  );
  const pub = await crypto.subtle.importKey(
    "raw",
    signingA.publicRaw as Uint8Array<ArrayBuffer>,
    "Ed25519",
    false,
    ["verify"],
  );
  assert.ok(
    await crypto.subtle.verify(
      "Ed25519",
      pub,
      sig as Uint8Array<ArrayBuffer>,
      signedOf(header, ct, tag),
    ),
  );
  const m = decodeRoomMessage(bytes);
  assert.deepEqual(m.header, {
    version: 1,
    roomId: ROOM_ID,
    name: "team",
    sender: "A",
    epoch: 2,
    index: 7,
    time: NOW,
  });
  await verifyRoomSignature(m, signingA.publicRaw);
  assert.equal(openRoomMessage(m, a.messageKey), "héllo ✓");
});

Deno.test("texts in one bucket seal to messages of one length; over 46,080 bytes is message-too-large", async () => {
  const len = async (text: string) =>
    (await sealRoomMessage(args({ text }))).length;
  assert.equal(await len(""), await len("x".repeat(59)));
  assert.equal((await len("x".repeat(60))) - (await len("")), 64);
  assert.equal(MAX_ROOM_TEXT_BYTES, 46_080);
  const max = await sealRoomMessage(args({ text: "x".repeat(46_080) }));
  assert.equal(
    openRoomMessage(decodeRoomMessage(max), args().messageKey).length,
    46_080,
  );
  await assertRejectsIm(
    () => sealRoomMessage(args({ text: "é".repeat(23_041) })),
    ProtocolError,
    "message-too-large",
  );
});

Deno.test("decodeRoomMessage() refuses truncations, extra bytes, another version, epoch 0, bad names and a ciphertext no bucket holds", async () => {
  const b = await sealRoomMessage(args());
  decodeRoomMessage(b);
  for (let n = 0; n < b.length; n += 7) {
    assertThrowsIm(
      () => decodeRoomMessage(b.subarray(0, n)),
      ProtocolError,
      "room-malformed",
      `${n} bytes`,
    );
  }
  const cases: [string, Uint8Array][] = [
    ["a byte more", concat(b, u8(0))],
    ["a byte less", b.subarray(0, b.length - 1)],
    ["version 2", encodeWith(b, 0, [2])],
    ["invalid room name", encodeWith(b, 18, utf8("t.am"))],
    ["invalid sender", encodeWith(b, 23, utf8("/"))],
    ["epoch 0", encodeWith(b, 24, [0, 0, 0, 0])],
    ["time past the largest safe integer", encodeWith(b, 32, [0xff])],
    [
      "a ciphertext of 65 bytes",
      concat(b.subarray(0, 40), new Uint8Array(65 + 96)),
    ],
    [
      "a ciphertext of 4 bytes",
      concat(b.subarray(0, 40), new Uint8Array(4 + 96)),
    ],
    [
      "a ciphertext past the largest bucket",
      concat(b.subarray(0, 40), new Uint8Array(53_248 + 96)),
    ],
  ];
  for (const [what, x] of cases) {
    assertThrowsIm(
      () => decodeRoomMessage(x),
      ProtocolError,
      "room-malformed",
      what,
    );
  }
});

Deno.test("checkRoomTime() accepts 31 days back to 120 s ahead and refuses outside as room-stale", () => {
  const h = headerAt(NOW);
  checkRoomTime(h, NOW);
  checkRoomTime(h, NOW + 31 * DAY);
  checkRoomTime(h, NOW - 120_000);
  assertThrowsIm(
    () => checkRoomTime(h, NOW + 31 * DAY + 1),
    ProtocolError,
    "room-stale",
  );
  assertThrowsIm(
    () => checkRoomTime(h, NOW - 120_001),
    ProtocolError,
    "room-stale",
  );
});

function headerAt(time: number) {
  return {
    version: 1,
    roomId: ROOM_ID,
    name: "team",
    sender: "A",
    epoch: 1,
    index: 0,
    time,
  };
}

Deno.test("openRoomMessage() checks the tag in constant time before decrypting; an authenticated bad plaintext is room-malformed", async () => {
  const a = args();
  const m = decodeRoomMessage(await sealRoomMessage(a));
  // A flip of the first ciphertext bit would decrypt to type 0: the tag
  // refuses it first.
  assertThrowsIm(
    () =>
      openRoomMessage(
        { ...m, ciphertext: flipBit(m.ciphertext, 0) },
        a.messageKey,
      ),
    ProtocolError,
    "room-tampered",
  );
  assertThrowsIm(
    () => openRoomMessage({ ...m, tag: flipBit(m.tag, 255) }, a.messageKey),
    ProtocolError,
    "room-tampered",
  );
  assertThrowsIm(
    () => openRoomMessage(m, new Uint8Array(32)),
    ProtocolError,
    "room-tampered",
  );
  // Every header byte is under the keys and the tag.
  for (let bit = 0; bit < m.headerBytes.length * 8; bit += 5) {
    assertThrowsIm(
      () =>
        openRoomMessage(
          { ...m, headerBytes: flipBit(m.headerBytes, bit) },
          a.messageKey,
        ),
      ProtocolError,
      "room-tampered",
      `header bit ${bit}`,
    );
  }
  const hi = utf8("hi");
  const reference = await resealRoom(m, {
    plaintext: plaintextOf(1, hi, 64),
    mk: a.messageKey,
  });
  assert.equal(
    openRoomMessage(decodeRoomMessage(reference), a.messageKey),
    "hi",
  );
  const nonZero = plaintextOf(1, hi, 64);
  nonZero[63] = 0x20;
  const bad: [string, Uint8Array][] = [
    ["type 2", plaintextOf(2, hi, 64)],
    [
      "len past the end",
      (() => {
        const p = plaintextOf(1, hi, 64);
        new DataView(p.buffer).setUint32(1, 60);
        return p;
      })(),
    ],
    ["invalid UTF-8", plaintextOf(1, new Uint8Array([0xc3, 0x28]), 64)],
    ["padding not zero", nonZero],
  ];
  for (const [what, p] of bad) {
    const x = decodeRoomMessage(
      await resealRoom(m, { plaintext: p, mk: a.messageKey }),
    );
    assertThrowsIm(
      () => openRoomMessage(x, a.messageKey),
      ProtocolError,
      "room-malformed",
      what,
    );
  }
});

Deno.test("verifyRoomSignature() refuses another key and any flipped bit of header, ciphertext, tag or signature as room-forged", async () => {
  const m = decodeRoomMessage(await sealRoomMessage(args()));
  await verifyRoomSignature(m, signingA.publicRaw);
  await assertRejectsIm(
    () => verifyRoomSignature(m, signingB.publicRaw),
    ProtocolError,
    "room-forged",
  );
  const parts = ["headerBytes", "ciphertext", "tag", "sig"] as const;
  for (const part of parts) {
    for (const bit of [0, 9, m[part].length * 8 - 1]) {
      await assertRejectsIm(
        () =>
          verifyRoomSignature(
            { ...m, [part]: flipBit(m[part], bit) },
            signingA.publicRaw,
          ),
        ProtocolError,
        "room-forged",
        `${part} bit ${bit}`,
      );
    }
  }
});

// ---------------------------------------------------------------------------
// RoomReader: the receiver's checks, in order

/** A's chain of epoch 1 as the reader holds it, and a way to seal with it. */
function world() {
  const chain = new SenderChain(ROOM_ID, CK0, 0);
  const reader = new RoomReader(ROOM_ID, "team");
  reader.addChain("A", {
    roomId: ROOM_ID,
    name: "team",
    epoch: 1,
    ...chain.current(),
    signingKey: signingA.publicRaw,
  });
  const keys: Uint8Array[] = [];
  /** Message `index` of A's chain (keys derived as needed). */
  const msg = (index: number, over: Partial<SealArgs> = {}) => {
    while (keys.length <= index) keys.push(chain.next().messageKey);
    return sealRoomMessage(
      args({ index, messageKey: keys[index]!, text: `m${index}`, ...over }),
    );
  };
  return { reader, msg, keys };
}

const members = (...names: string[]) => (sender: string, epoch: number) =>
  epoch === 1 && names.includes(sender);
const ok = { now: NOW, isMember: members("A", "B") };

Deno.test("RoomReader.open() returns the header and the text, and each message opens once (room-replayed)", async () => {
  const { reader, msg } = world();
  const seen: [string, number][] = [];
  const m0 = await msg(0);
  const got = await reader.open(m0, {
    now: NOW,
    isMember: (s, e) => (seen.push([s, e]), true),
  });
  assert.equal(got.text, "m0");
  assert.deepEqual([got.header.sender, got.header.epoch, got.header.index], [
    "A",
    1,
    0,
  ]);
  assert.deepEqual(seen, [["A", 1]]);
  await assertRejectsIm(
    () => reader.open(m0, ok),
    ProtocolError,
    "room-replayed",
  );
  // Out of order.
  const [m3, m1] = [await msg(3), await msg(1)];
  assert.equal((await reader.open(m3, ok)).text, "m3");
  assert.equal((await reader.open(m1, ok)).text, "m1");
  await assertRejectsIm(
    () => reader.open(m3, ok),
    ProtocolError,
    "room-replayed",
  );
  assert.equal((await reader.open(await msg(2), ok)).text, "m2");
});

Deno.test("RoomReader.open() refuses with the first failing check's code, in section 10.3's order", async () => {
  const { reader, msg } = world();
  const stale = NOW - 32 * DAY;
  const cases: [string, () => Promise<Uint8Array>, string, typeof ok?][] = [
    ["garbage", () => Promise.resolve(new Uint8Array(200)), "room-malformed"],
    // Each below also fails every later check it can.
    [
      "another room_id, from a non-member",
      () => msg(0, { roomId: OTHER_ROOM_ID, sender: "C" }),
      "room-unknown",
    ],
    [
      "another room name, stale",
      () => msg(0, { name: "other", time: stale }),
      "room-unknown",
    ],
    [
      "a non-member, stale, with no key",
      () => msg(0, { sender: "C", time: stale }),
      "not-a-member",
    ],
    [
      "a member at another epoch only",
      () => msg(0, { epoch: 2 }),
      "not-a-member",
    ],
    [
      "stale, with no key",
      () => msg(0, { sender: "B", time: stale }),
      "room-stale",
    ],
    [
      "in the future, signed by another key",
      () => msg(0, { time: NOW + 120_001, signing: signingB }),
      "room-stale",
    ],
    [
      "no chain of B, signed by another key",
      () => msg(0, { sender: "B", signing: signingB }),
      "room-no-key",
    ],
    [
      "past the window, with a bad tag, signed by another key",
      () => msg(1001, { messageKey: new Uint8Array(32), signing: signingB }),
      "room-gap",
    ],
    [
      "a bad tag, signed by another key",
      () => msg(0, { messageKey: new Uint8Array(32), signing: signingB }),
      "room-tampered",
    ],
    [
      "the right tag, signed by another key (a member forging the sender)",
      () => msg(0, { signing: signingB }),
      "room-forged",
    ],
  ];
  for (const [what, make, code, o] of cases) {
    await assertRejectsIm(
      async () => reader.open(await make(), o ?? ok),
      ProtocolError,
      code,
      what,
    );
  }
  // None of them used a key up: message 0 still opens, once.
  const m0 = await msg(0);
  assert.equal((await reader.open(m0, ok)).text, "m0");
  // A replay is refused before its tag and signature are looked at.
  await assertRejectsIm(
    async () => reader.open(await msg(0, { signing: signingB }), ok),
    ProtocolError,
    "room-replayed",
  );
  await assertRejectsIm(
    async () =>
      reader.open(await msg(0, { messageKey: new Uint8Array(32) }), ok),
    ProtocolError,
    "room-replayed",
  );
});

Deno.test("RoomReader.open(): a flipped ciphertext byte is room-tampered, signed again with the sender's key or not; a member's forgery with the right tag is room-forged; the true message still opens", async () => {
  const { reader, msg, keys } = world();
  const m = decodeRoomMessage(await msg(0));
  for (const bit of [0, 100, 511]) {
    const ct = flipBit(m.ciphertext, bit);
    await assertRejectsIm(
      () => reader.open(concat(m.headerBytes, ct, m.tag, m.sig), ok),
      ProtocolError,
      "room-tampered",
    );
    const resigned = await resealRoom(m, {
      ciphertext: ct,
      tag: m.tag,
      mk: keys[0]!,
    });
    await assertRejectsIm(
      () => reader.open(resigned, ok),
      ProtocolError,
      "room-tampered",
    );
  }
  // A message of A's signed by B's chain key.
  const byB = await resealRoom(m, {
    ciphertext: m.ciphertext,
    tag: m.tag,
    mk: keys[0]!,
    signing: signingB,
  });
  await assertRejectsIm(
    () => reader.open(byB, ok),
    ProtocolError,
    "room-forged",
  );
  assert.equal((await reader.open(await msg(0), ok)).text, "m0");
});

Deno.test("RoomReader: after beginEpoch(), an old epoch's message opens only if its index was skipped before (room-lost past the end)", async () => {
  const { reader, msg } = world();
  const early = await msg(1);
  await reader.open(await msg(2), ok);
  const late = await msg(3);
  reader.beginEpoch(2);
  assert.equal(reader.epoch, 2);
  const stillMember = { now: NOW, isMember: () => true };
  await assertRejectsIm(
    () => reader.open(late, stillMember),
    ProtocolError,
    "room-lost",
  );
  assert.equal((await reader.open(early, stillMember)).text, "m1");
  await assertRejectsIm(
    async () => reader.open(await msg(0, { epoch: 2 }), stillMember),
    ProtocolError,
    "room-no-key",
  );
  // A key of epoch 1 arriving now is held frozen: it opens nothing new.
  const r2 = new RoomReader(ROOM_ID, "team");
  r2.beginEpoch(2);
  r2.addChain(
    "A",
    roomKey({
      epoch: 1,
      index: 0,
      chainKey: CK0,
      signingKey: signingA.publicRaw,
    }),
  );
  await assertRejectsIm(
    () => r2.open(late, stillMember),
    ProtocolError,
    "room-lost",
  );
});

Deno.test("RoomReader.addChain(): another room's key is room-unknown, a rewind is room-replayed and keeps the held chain, the same key again loses nothing", async () => {
  const { reader, msg } = world();
  const key = (index: number, chainKey: Uint8Array) =>
    roomKey({ epoch: 1, index, chainKey, signingKey: signingA.publicRaw });
  assertThrowsIm(
    () => reader.addChain("A", { ...key(0, CK0), roomId: OTHER_ROOM_ID }),
    ProtocolError,
    "room-unknown",
  );
  assertThrowsIm(
    () => reader.addChain("A", { ...key(0, CK0), name: "other" }),
    ProtocolError,
    "room-unknown",
  );
  const m0 = await msg(0), m1 = await msg(1);
  await reader.open(await msg(2), ok);
  // A rewind to index 0 (a replayed ROOM_KEY) is refused; m0 and m1 are
  // still open-able once, m2 not again.
  assertThrowsIm(
    () => reader.addChain("A", key(0, CK0)),
    ProtocolError,
    "room-replayed",
  );
  await assertRejectsIm(
    async () => reader.open(await msg(2), ok),
    ProtocolError,
    "room-replayed",
  );
  // The same chain handed again at its position (3) keeps the skipped keys.
  const spec = await specChain(CK0, ROOM_ID, 4);
  reader.addChain("A", key(3, spec.ck[3]!));
  assert.equal((await reader.open(m0, ok)).text, "m0");
  // Another chain for the same epoch, at or past the position, replaces it.
  const fresh = SenderChain.fresh(ROOM_ID);
  reader.addChain("A", key(5, fresh.current().chainKey));
  await assertRejectsIm(
    () => reader.open(m1, ok),
    ProtocolError,
    "room-replayed",
  );
  assert.ok(
    reader.hasChain("A", 1) && !reader.hasChain("B", 1) &&
      !reader.hasChain("A", 2),
  );
});

Deno.test("RoomReader state round-trips through JSON and keeps its behaviour", async () => {
  const { reader, msg } = world();
  const m1 = await msg(1);
  await reader.open(await msg(2), ok);
  const back = RoomReader.fromJSON(JSON.parse(JSON.stringify(reader)));
  await assertRejectsIm(
    async () => back.open(await msg(2), ok),
    ProtocolError,
    "room-replayed",
  );
  assert.equal((await back.open(m1, ok)).text, "m1");
  assert.equal((await back.open(await msg(3), ok)).text, "m3");
  back.beginEpoch(2);
  const again = RoomReader.fromJSON(JSON.parse(JSON.stringify(back)));
  assert.equal(again.epoch, 2);
  await assertRejectsIm(
    async () => again.open(await msg(4), { now: NOW, isMember: () => true }),
    ProtocolError,
    "room-lost",
  );
  assert.equal(
    (await again.open(await msg(0), { now: NOW, isMember: () => true })).text,
    "m0",
  );
  assertThrowsIm(
    () => RoomReader.fromJSON({ ...reader.toJSON(), name: "a b" }),
    ProtocolError,
    "room-malformed",
  );
});
