/**
 * The sealed mailbox message, PROTOCOL.md sections 9.2 to 9.4 and 9.6:
 * X3DH from both sides, the MAIL layout, MAC before decryption, every
 * header field bound, low-order keys, padding, limits and receipt proofs.
 * The key schedule is recomputed here from the spec's text (with the
 * recipient's private keys), so a change of layout or label fails.
 */
import assert from "node:assert/strict";
import {
  ByteWriter,
  concat,
  ProtocolError,
  u64be,
  utf8,
} from "../lib/util/mod.ts";
import {
  generateX25519,
  hkdf,
  hmacSha256,
  mdcfbDecrypt,
  mdcfbEncrypt,
  transcriptHash,
} from "../lib/crypto/mod.ts";
import {
  checkMailTime,
  checkReceiptProof,
  type DecodedMail,
  decodeMail,
  mailIdHex,
  type MailKeyPair,
  MAX_MAIL_TEXT_BYTES,
  openMail,
  receiptProof,
  sealMail,
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

const ids = await identities();
const fpA = ids.A.fingerprintBytes;
const fpB = ids.B.fingerprintBytes;
const fpC = ids.C.fingerprintBytes;
// Extractable, so the test can recompute the key schedule with the private keys.
const [ikA, ikB, spkB, opkB, ikC, spkC, otherOpk] = await Promise.all(
  [1, 2, 3, 4, 5, 6, 7].map(() => generateX25519(true)),
) as MailKeyPair[];

/** The field prime of Curve25519, 2^255 - 19. */
const P = (1n << 255n) - 19n;

/** `n` as the 32-byte little-endian u-coordinate of RFC 7748. */
function le32(n: bigint): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return out;
}

/**
 * RFC 7748 low-order points (and non-canonical encodings of them, as in
 * libsodium's blocklist): X25519 with any of them gives all zeros.
 */
const LOW_ORDER = [
  ...[0n, 1n, P - 1n, P, P + 1n].map(le32),
  // The two points of order 8.
  Uint8Array.fromHex(
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  ),
  Uint8Array.fromHex(
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  ),
];

interface SealOptions {
  text?: string;
  withOpk?: boolean;
  recipientIdentityKey?: Uint8Array;
  spkKey?: Uint8Array;
  opkKey?: Uint8Array;
  time?: number;
}

function seal(o: SealOptions = {}) {
  return sealMail({
    sender: "A",
    recipient: "B",
    senderFingerprint: fpA,
    recipientFingerprint: fpB,
    senderIdentity: ikA!,
    recipientIdentityKey: o.recipientIdentityKey ?? ikB!.publicRaw,
    signedPrekey: { id: 7, key: o.spkKey ?? spkB!.publicRaw },
    oneTimePrekey: o.withOpk || o.opkKey
      ? { id: 42, key: o.opkKey ?? opkB!.publicRaw }
      : undefined,
    text: o.text ?? "hello B",
    time: o.time ?? NOW,
  });
}

interface OpenOptions {
  senderFingerprint?: Uint8Array;
  recipientFingerprint?: Uint8Array;
  identity?: MailKeyPair;
  signedPrekey?: MailKeyPair;
  /** B's one-time prekey unless given; `undefined` for none. */
  oneTimePrekey?: MailKeyPair | undefined;
}

function open(mail: DecodedMail | Uint8Array, o: OpenOptions = {}) {
  return openMail({
    mail: mail instanceof Uint8Array ? decodeMail(mail) : mail,
    senderFingerprint: o.senderFingerprint ?? fpA,
    recipientFingerprint: o.recipientFingerprint ?? fpB,
    identity: o.identity ?? ikB!,
    signedPrekey: o.signedPrekey ?? spkB!,
    oneTimePrekey: "oneTimePrekey" in o ? o.oneTimePrekey : opkB!,
  });
}

/** Offsets of the header fields of a MAIL from A to B (names of 1 byte). */
const AT = {
  version: 0,
  sender: 2,
  recipient: 4,
  msgId: 5,
  time: 21,
  spkId: 29,
  opkId: 33,
  ik: 37,
  ek: 69,
  end: 101,
};

/**
 * Section 9.2 from the spec's text, computed from B's side with B's private
 * keys: `enc`, `ivk`, `mac`, `rk`.
 */
async function specKeys(m: DecodedMail, withOpk: boolean) {
  const h = m.header;
  const dh = [
    await x25519(spkB!.privateKey, h.ik),
    await x25519(ikB!.privateKey, h.ek),
    await x25519(spkB!.privateKey, h.ek),
    ...(withOpk ? [await x25519(opkB!.privateKey, h.ek)] : []),
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
    rk: await k("im v1 mail receipt"),
  };
}

/** A MAIL with the same header as `m`, sealed with its true keys over `plaintext`. */
async function reseal(m: DecodedMail, plaintext: Uint8Array, withOpk = false) {
  const keys = await specKeys(m, withOpk);
  const iv = hmacSha256(keys.ivk, m.header.msgId);
  const ct = mdcfbEncrypt(keys.enc, iv, plaintext);
  return concat(
    m.headerBytes,
    ct,
    hmacSha256(keys.mac, concat(m.headerBytes, ct)),
  );
}

function plaintextOf(
  type: number,
  len: number,
  text: Uint8Array,
  size: number,
) {
  const p = new Uint8Array(size);
  p[0] = type;
  new DataView(p.buffer).setUint32(1, len);
  p.set(text, 5);
  return p;
}

// ---------------------------------------------------------------------------
// Round trips and the layout

Deno.test("sealMail() and openMail() round-trip without a one-time prekey, and both sides get the same rk", async () => {
  const sealed = await seal({ text: "héllo, B ✓" });
  const m = decodeMail(sealed.mail);
  assert.deepEqual(
    {
      version: m.header.version,
      sender: m.header.sender,
      recipient: m.header.recipient,
      time: m.header.time,
      spkId: m.header.spkId,
      opkId: m.header.opkId,
    },
    { version: 1, sender: "A", recipient: "B", time: NOW, spkId: 7, opkId: 0 },
  );
  assert.deepEqual(m.header.msgId, sealed.msgId);
  assert.deepEqual(m.header.ik, ikA!.publicRaw);
  const opened = await open(m, { oneTimePrekey: undefined });
  assert.equal(opened.text, "héllo, B ✓");
  assert.deepEqual(opened.rk, sealed.rk);
  assert.equal(opened.rk.length, 32);
});

Deno.test("sealMail() and openMail() round-trip with a one-time prekey, which is then required", async () => {
  const sealed = await seal({ withOpk: true });
  const m = decodeMail(sealed.mail);
  assert.equal(m.header.opkId, 42);
  const opened = await open(m);
  assert.equal(opened.text, "hello B");
  assert.deepEqual(opened.rk, sealed.rk);
  await assertRejectsIm(
    () => open(m, { oneTimePrekey: undefined }),
    ProtocolError,
    "mail-tampered",
  );
  await assertRejectsIm(
    () => open(m, { oneTimePrekey: otherOpk! }),
    ProtocolError,
    "mail-tampered",
  );
});

Deno.test("a MAIL is the section 9.3 layout, under the section 9.2 key schedule recomputed from B's keys", async () => {
  for (const withOpk of [false, true]) {
    const sealed = await seal({ text: "abc", withOpk });
    const m = decodeMail(sealed.mail);
    assert.deepEqual(
      m.headerBytes,
      new ByteWriter().u8(1).bytes8(utf8("A")).bytes8(utf8("B"))
        .bytes(sealed.msgId).u64(BigInt(NOW)).u32(7).u32(withOpk ? 42 : 0)
        .bytes(ikA!.publicRaw).bytes(m.header.ek).finish(),
    );
    assert.equal(m.headerBytes.length, 99 + 2);
    assert.equal(sealed.mail.length, 99 + 2 + 64 + 32);
    const keys = await specKeys(m, withOpk);
    assert.deepEqual(
      m.tag,
      hmacSha256(keys.mac, concat(m.headerBytes, m.ciphertext)),
    );
    const iv = hmacSha256(keys.ivk, sealed.msgId);
    assert.deepEqual(
      mdcfbDecrypt(keys.enc, iv, m.ciphertext),
      plaintextOf(1, 3, utf8("abc"), 64),
    );
    assert.deepEqual(keys.rk, sealed.rk);
  }
});

Deno.test("every message gets a fresh ephemeral key and msg_id", async () => {
  const [a, b] = [
    decodeMail((await seal()).mail),
    decodeMail((await seal()).mail),
  ];
  assert.notDeepEqual(a.header.ek, b.header.ek);
  assert.notDeepEqual(a.header.msgId, b.header.msgId);
  assert.notDeepEqual(a.ciphertext, b.ciphertext);
});

// ---------------------------------------------------------------------------
// Tampering: section 9.4 steps 1 and 3

Deno.test("openMail() refuses a flip in any header field, the ciphertext or the tag", async () => {
  const plain = (await seal()).mail;
  const withOpk = (await seal({ withOpk: true })).mail;
  const set = (b: Uint8Array, at: number, bytes: number[]) => {
    const x = new Uint8Array(b);
    x.set(bytes, at);
    return x;
  };
  const cases: [string, Uint8Array, string][] = [
    ["version", set(plain, AT.version, [2]), "mail-malformed"],
    ["sender A -> C", set(plain, AT.sender, [0x43]), "mail-tampered"],
    [
      "sender to an invalid name",
      set(plain, AT.sender, [0x2f]),
      "mail-malformed",
    ],
    ["recipient B -> C", set(plain, AT.recipient, [0x43]), "mail-tampered"],
    ["msg_id", flipBit(plain, AT.msgId * 8 + 3), "mail-tampered"],
    ["time", flipBit(plain, (AT.time + 7) * 8), "mail-tampered"],
    ["spk_id 7 -> 6", set(plain, AT.spkId + 3, [6]), "mail-tampered"],
    ["spk_id 7 -> 0", set(plain, AT.spkId, [0, 0, 0, 0]), "mail-malformed"],
    ["opk_id 0 -> 42", set(plain, AT.opkId + 3, [42]), "mail-tampered"],
    ["opk_id 42 -> 43", set(withOpk, AT.opkId + 3, [43]), "mail-tampered"],
    ["opk_id 42 -> 0", set(withOpk, AT.opkId + 3, [0]), "mail-tampered"],
    ["ik", flipBit(plain, AT.ik * 8 + 9), "mail-tampered"],
    ["ek", flipBit(plain, AT.ek * 8 + 9), "mail-tampered"],
    ["ciphertext", flipBit(plain, (AT.end + 10) * 8), "mail-tampered"],
    [
      "last ciphertext byte",
      flipBit(plain, (plain.length - 33) * 8),
      "mail-tampered",
    ],
    ["tag", flipBit(plain, (plain.length - 32) * 8 + 1), "mail-tampered"],
    ["last tag byte", flipBit(plain, plain.length * 8 - 1), "mail-tampered"],
  ];
  for (const [what, bytes, code] of cases) {
    await assertRejectsIm(
      async () => await open(bytes),
      ProtocolError,
      code,
      what,
    );
  }
});

Deno.test("openMail() checks the tag before it decrypts: a ciphertext that would decode badly is mail-tampered, not mail-malformed", async () => {
  const m = decodeMail((await seal()).mail);
  // Flipping the first ciphertext bit flips the plaintext's type byte
  // (MD-CFB: c_1 = p_1 XOR HMAC(enc, IV)): decrypted, it is type 0.
  const flipped = flipBit(m.ciphertext, 0);
  const keys = await specKeys(m, false);
  const decrypted = mdcfbDecrypt(
    keys.enc,
    hmacSha256(keys.ivk, m.header.msgId),
    flipped,
  );
  assert.equal(decrypted[0], 0);
  await assertRejectsIm(
    () => open({ ...m, ciphertext: flipped }),
    ProtocolError,
    "mail-tampered",
  );
  // The same plaintext under a valid tag is the sender's fault: malformed.
  await assertRejectsIm(
    async () => await open(await reseal(m, decrypted)),
    ProtocolError,
    "mail-malformed",
  );
});

Deno.test("openMail() refuses an authenticated plaintext that does not decode as mail-malformed", async () => {
  const m = decodeMail((await seal()).mail);
  const hi = utf8("hi");
  // The reference: a well-formed plaintext resealed opens.
  assert.equal(
    (await open(await reseal(m, plaintextOf(1, 2, hi, 64)))).text,
    "hi",
  );
  const nonZeroPadding = plaintextOf(1, 2, hi, 64);
  nonZeroPadding[63] = 0x20;
  const cases: [string, Uint8Array][] = [
    ["type 2", plaintextOf(2, 2, hi, 64)],
    ["len past the end", plaintextOf(1, 60, hi, 64)],
    ["len of 2^32 - 1", plaintextOf(1, 0xffff_ffff, hi, 64)],
    ["invalid UTF-8", plaintextOf(1, 2, new Uint8Array([0xc3, 0x28]), 64)],
    ["padding not zero", nonZeroPadding],
  ];
  for (const [what, p] of cases) {
    await assertRejectsIm(
      async () => await open(await reseal(m, p)),
      ProtocolError,
      "mail-malformed",
      what,
    );
  }
});

Deno.test("openMail() with another recipient's keys, or B's identity with another prekey, is mail-tampered", async () => {
  const mail = (await seal()).mail;
  const cases: [string, OpenOptions][] = [
    ["C's keys", { identity: ikC!, signedPrekey: spkC! }],
    ["C's identity key", { identity: ikC! }],
    ["C's signed prekey", { signedPrekey: spkC! }],
    ["the keys swapped", { identity: spkB!, signedPrekey: ikB! }],
  ];
  for (const [what, o] of cases) {
    await assertRejectsIm(
      () => open(mail, o),
      ProtocolError,
      "mail-tampered",
      what,
    );
  }
  // Sealed to C's keys but addressed to B: B cannot open it.
  const toC = await seal({
    recipientIdentityKey: ikC!.publicRaw,
    spkKey: spkC!.publicRaw,
  });
  await assertRejectsIm(() => open(toC.mail), ProtocolError, "mail-tampered");
});

Deno.test("ad binds both RSA fingerprints: another recipient's or sender's fingerprint cannot open", async () => {
  const mail = (await seal()).mail;
  await assertRejectsIm(
    () => open(mail, { recipientFingerprint: fpC }),
    ProtocolError,
    "mail-tampered",
  );
  await assertRejectsIm(
    () => open(mail, { senderFingerprint: fpC }),
    ProtocolError,
    "mail-tampered",
  );
  await assertRejectsIm(
    () => open(mail, { senderFingerprint: fpB, recipientFingerprint: fpA }),
    ProtocolError,
    "mail-tampered",
  );
});

// ---------------------------------------------------------------------------
// Low-order keys (RFC 7748 section 6.1)

Deno.test("the low-order points are those of RFC 7748 (p - 1, p, p + 1 as in libsodium)", () => {
  assert.equal(
    LOW_ORDER[2]!.toHex(),
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  );
  assert.equal(LOW_ORDER.length, 7);
});

Deno.test("sealMail() refuses a low-order identity key, signed prekey or one-time prekey as bad-bundle", async () => {
  for (const point of LOW_ORDER) {
    const hex = point.toHex();
    for (
      const [what, o] of [
        ["ik", { recipientIdentityKey: point }],
        ["spk", { spkKey: point }],
        ["opk", { opkKey: point }],
      ] as [string, SealOptions][]
    ) {
      await assertRejectsIm(
        () => seal(o),
        ProtocolError,
        "bad-bundle",
        `${what} ${hex}`,
      );
    }
  }
});

Deno.test("openMail() refuses a header whose ik or ek is a low-order point as mail-tampered", async () => {
  const m = decodeMail((await seal({ withOpk: true })).mail);
  for (const point of LOW_ORDER) {
    for (const field of ["ik", "ek"] as const) {
      await assertRejectsIm(
        () => open({ ...m, header: { ...m.header, [field]: point } }),
        ProtocolError,
        "mail-tampered",
        `${field} ${point.toHex()}`,
      );
    }
  }
});

// ---------------------------------------------------------------------------
// Padding and limits

Deno.test("texts in the same bucket seal to MAILs of the same length; the next bucket is longer", async () => {
  const len = async (text: string) => (await seal({ text })).mail.length;
  // Plaintext = 5 bytes + text, padded to 64, 128, ...
  assert.equal(await len(""), await len("x".repeat(59)));
  assert.equal(await len("a"), 99 + 2 + 64 + 32);
  assert.equal(await len("x".repeat(60)), 99 + 2 + 128 + 32);
  assert.equal(await len("x".repeat(100)), await len("x".repeat(123)));
  assert.equal(
    await len("x".repeat(MAX_MAIL_TEXT_BYTES)),
    99 + 2 + 49_152 + 32,
  );
});

Deno.test("sealMail() refuses a text over 46,080 UTF-8 bytes as message-too-large", async () => {
  const max = "x".repeat(MAX_MAIL_TEXT_BYTES);
  assert.equal((await open((await seal({ text: max })).mail)).text, max);
  await assertRejectsIm(
    () => seal({ text: max + "x" }),
    ProtocolError,
    "message-too-large",
  );
  // Counted in bytes, not characters: 23,041 two-byte characters.
  await assertRejectsIm(
    () => seal({ text: "é".repeat(23_041) }),
    ProtocolError,
    "message-too-large",
  );
});

// ---------------------------------------------------------------------------
// decodeMail and checkMailTime, section 9.4 step 1

Deno.test("decodeMail() refuses every truncation and extra bytes as mail-malformed", async () => {
  const mail = (await seal()).mail;
  decodeMail(mail);
  for (let n = 0; n < mail.length; n++) {
    assertThrowsIm(
      () => decodeMail(mail.subarray(0, n)),
      ProtocolError,
      "mail-malformed",
      `length ${n}`,
    );
  }
  for (const extra of [1, 32, 63]) {
    assertThrowsIm(
      () => decodeMail(concat(mail, new Uint8Array(extra))),
      ProtocolError,
      "mail-malformed",
      `${extra} more`,
    );
  }
  // 64 more bytes make a ciphertext of the next bucket: it decodes, and the
  // tag refuses it.
  await assertRejectsIm(
    () => open(concat(mail, new Uint8Array(64))),
    ProtocolError,
    "mail-tampered",
  );
});

Deno.test("decodeMail() refuses invalid names, another version, spk_id 0 and a time past the largest safe integer", async () => {
  const m = decodeMail((await seal()).mail);
  const rest = concat(m.ciphertext, m.tag);
  const mail = (o: {
    version?: number;
    sender?: Uint8Array;
    recipient?: Uint8Array;
    time?: bigint;
    spkId?: number;
  }) =>
    concat(
      new ByteWriter().u8(o.version ?? 1).bytes8(o.sender ?? utf8("A"))
        .bytes8(o.recipient ?? utf8("B")).bytes(m.header.msgId)
        .u64(o.time ?? BigInt(NOW)).u32(o.spkId ?? 7).u32(0)
        .bytes(m.header.ik).bytes(m.header.ek).finish(),
      rest,
    );
  assert.deepEqual(decodeMail(mail({})).headerBytes, m.headerBytes);
  const cases: [string, Uint8Array][] = [
    ["version 0", mail({ version: 0 })],
    ["version 2", mail({ version: 2 })],
    ["empty sender", mail({ sender: new Uint8Array(0) })],
    ["sender with a slash", mail({ sender: utf8("A/B") })],
    ["sender of 33 characters", mail({ sender: utf8("a".repeat(33)) })],
    ["sender not UTF-8", mail({ sender: new Uint8Array([0xff]) })],
    ["recipient with a space", mail({ recipient: utf8("B C") })],
    ["recipient not ASCII", mail({ recipient: utf8("Bé") })],
    ["spk_id 0", mail({ spkId: 0 })],
    ["time 2^53", mail({ time: 1n << 53n })],
  ];
  for (const [what, bytes] of cases) {
    assertThrowsIm(
      () => decodeMail(bytes),
      ProtocolError,
      "mail-malformed",
      what,
    );
  }
});

Deno.test("decodeMail() wants at least 5 bytes of ciphertext, and a length a padded plaintext can have", async () => {
  const m = decodeMail((await seal()).mail);
  const tag = new Uint8Array(32);
  for (const n of [0, 4, 5, 63, 65, 127]) {
    assertThrowsIm(
      () => decodeMail(concat(m.headerBytes, new Uint8Array(n), tag)),
      ProtocolError,
      "mail-malformed",
      `${n} bytes`,
    );
  }
  for (const n of [64, 128, 16_384, 20_480]) {
    assert.equal(
      decodeMail(concat(m.headerBytes, new Uint8Array(n), tag)).ciphertext
        .length,
      n,
    );
  }
});

Deno.test("checkMailTime() accepts 31 days back to 120 s ahead and refuses outside as mail-stale", async () => {
  const h = decodeMail((await seal({ time: NOW })).mail).header;
  checkMailTime(h, NOW);
  checkMailTime(h, NOW + 31 * DAY);
  checkMailTime(h, NOW - 120_000);
  assertThrowsIm(
    () => checkMailTime(h, NOW + 31 * DAY + 1),
    ProtocolError,
    "mail-stale",
  );
  assertThrowsIm(
    () => checkMailTime(h, NOW - 120_001),
    ProtocolError,
    "mail-stale",
  );
});

// ---------------------------------------------------------------------------
// Receipts, section 9.6

Deno.test("the receipt proof is HMAC(rk, msg_id); a proof for another message, key or byte is refused", async () => {
  const sealed = await seal();
  const opened = await open(sealed.mail);
  const proof = await receiptProof(opened.rk, sealed.msgId);
  assert.deepEqual(proof, hmacSha256(sealed.rk, sealed.msgId));
  assert.ok(await checkReceiptProof(sealed.rk, sealed.msgId, proof));
  const other = await seal();
  assert.ok(!(await checkReceiptProof(sealed.rk, other.msgId, proof)));
  assert.ok(!(await checkReceiptProof(other.rk, sealed.msgId, proof)));
  assert.ok(
    !(await checkReceiptProof(sealed.rk, sealed.msgId, flipBit(proof, 255))),
  );
  assert.ok(
    !(await checkReceiptProof(sealed.rk, sealed.msgId, proof.subarray(0, 31))),
  );
  assert.ok(
    !(await checkReceiptProof(sealed.rk, sealed.msgId, new Uint8Array(0))),
  );
  await assertRejectsIm(
    () => receiptProof(sealed.rk, new Uint8Array(15)),
    ProtocolError,
    "bad-length",
  );
});

Deno.test("mailIdHex() is 32 lowercase hex digits of msg_id", async () => {
  const { msgId } = await seal();
  const hex = mailIdHex(msgId);
  assert.match(hex, /^[0-9a-f]{32}$/);
  assert.deepEqual(Uint8Array.fromHex(hex), msgId);
  assertThrowsIm(
    () => mailIdHex(new Uint8Array(17)),
    ProtocolError,
    "bad-length",
  );
});

Deno.test("the time sealed is the header's, and the recipient's check of it is the caller's", async () => {
  const old = await seal({ time: NOW - 40 * DAY });
  const m = decodeMail(old.mail);
  assert.equal(m.header.time, NOW - 40 * DAY);
  assert.equal((await open(m)).text, "hello B");
  assertThrowsIm(
    () => checkMailTime(m.header, NOW),
    ProtocolError,
    "mail-stale",
  );
  // u64 on the wire: the 8 bytes after msg_id.
  assert.deepEqual(
    old.mail.subarray(AT.time, AT.spkId),
    u64be(BigInt(NOW - 40 * DAY)),
  );
});
