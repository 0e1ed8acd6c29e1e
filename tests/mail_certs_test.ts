/**
 * Mailbox certificates, PROTOCOL.md section 9.1 (`IK_CERT`, `SPK_CERT`,
 * `OPK`) and the sender's checks of a bundle, section 9.2 step 3, in order.
 * The transcripts and signed bytes are recomputed here from the spec's
 * text, so a change of layout fails.
 */
import assert from "node:assert/strict";
import { concat, ProtocolError, u64be, utf8 } from "../lib/util/mod.ts";
import {
  generateX25519,
  Label,
  type PrivateIdentity,
  signPss,
  transcriptHash,
  verifyPss,
} from "../lib/crypto/mod.ts";
import {
  decodeIdentityCert,
  decodeOneTimePrekey,
  decodePrekeyCert,
  encodeIdentityCert,
  encodeOneTimePrekey,
  encodePrekeyCert,
  makeIdentityCert,
  makePrekeyCert,
  OPK_BYTES,
  verifyBundle,
  verifyIdentityCert,
  verifyIdentityOnly,
  verifyPrekeyCert,
} from "../lib/proto/mod.ts";
import { assertRejectsIm, assertThrowsIm, identities } from "./_helpers.ts";

const NOW = 1_800_000_000_000;
const DAY = 24 * 60 * 60 * 1000;

const ids = await identities();
const [ikB, ikOther, spkB] = await Promise.all(
  [1, 2, 3].map(() => generateX25519(false)),
);

/** B's certificates, made now, the prekey valid 30 days; fields overridable. */
async function bCerts(o: {
  signer?: PrivateIdentity;
  user?: string;
  spkUser?: string;
  ik?: Uint8Array;
  spkIk?: Uint8Array;
  ikCreated?: number;
  created?: number;
  expires?: number;
} = {}): Promise<{ identityCert: Uint8Array; signedPrekeyCert: Uint8Array }> {
  const signer = o.signer ?? ids.B;
  const ik = o.ik ?? ikB!.publicRaw;
  const created = o.created ?? NOW;
  const identityCert = await makeIdentityCert(
    signer,
    o.user ?? "B",
    ik,
    o.ikCreated ?? NOW - DAY,
  );
  const signedPrekeyCert = await makePrekeyCert(
    signer,
    o.spkUser ?? o.user ?? "B",
    o.spkIk ?? ik,
    1,
    spkB!.publicRaw,
    created,
    o.expires ?? created + 30 * DAY,
  );
  return { identityCert, signedPrekeyCert };
}

/** B's IK_CERT, decoded. */
async function bIdentity(created = NOW) {
  return decodeIdentityCert(
    await makeIdentityCert(ids.B, "B", ikB!.publicRaw, created),
  );
}

/** B's SPK_CERT (id 1, valid a day), decoded. */
async function bPrekey(created = NOW) {
  return decodePrekeyCert(
    await makePrekeyCert(
      ids.B,
      "B",
      ikB!.publicRaw,
      1,
      spkB!.publicRaw,
      created,
      created + DAY,
    ),
  );
}

/** ik_th of B's IK_CERT, from the spec's text (section 9.1). */
function specIkTh(created: number) {
  return transcriptHash("im v1 mail identity", [
    new Uint8Array([1]),
    utf8("B"),
    ids.B.fingerprintBytes,
    ikB!.publicRaw,
    u64be(BigInt(created)),
  ]);
}

/** spk_th of B's SPK_CERT, from the spec's text (section 9.1). */
function specSpkTh(id: number, created: number, expires: number) {
  const idBytes = new Uint8Array(4);
  new DataView(idBytes.buffer).setUint32(0, id);
  return transcriptHash("im v1 mail prekey", [
    new Uint8Array([1]),
    utf8("B"),
    ids.B.fingerprintBytes,
    ikB!.publicRaw,
    idBytes,
    spkB!.publicRaw,
    u64be(BigInt(created)),
    u64be(BigInt(expires)),
  ]);
}

function bundle(
  certs: { identityCert: Uint8Array; signedPrekeyCert: Uint8Array },
  extra: {
    now?: number;
    previous?: { identityCert: Uint8Array; signedPrekeyCert?: Uint8Array };
  } = {},
) {
  return verifyBundle({
    user: "B",
    owner: ids.B.publicIdentity,
    ...certs,
    now: extra.now ?? NOW,
    previous: extra.previous,
  });
}

// ---------------------------------------------------------------------------
// Layout and signed bytes

Deno.test("makeIdentityCert() writes IK_CERT byte for byte and signs label || 0x00 || ik_th", async () => {
  const bytes = await makeIdentityCert(ids.B, "B", ikB!.publicRaw, NOW);
  // u8 version || bytes8(user) || ik[32] || created u64 || bytes16(sig)
  assert.equal(bytes.length, 1 + 1 + 1 + 32 + 8 + 2 + 256);
  assert.deepEqual(
    bytes.subarray(0, 1 + 1 + 1 + 32 + 8 + 2),
    concat(
      new Uint8Array([1, 1]),
      utf8("B"),
      ikB!.publicRaw,
      u64be(BigInt(NOW)),
      new Uint8Array([1, 0]),
    ),
  );
  const c = decodeIdentityCert(bytes);
  assert.deepEqual(
    { version: c.version, user: c.user, created: c.created },
    { version: 1, user: "B", created: NOW },
  );
  assert.deepEqual(c.ik, ikB!.publicRaw);
  const th = await specIkTh(NOW);
  const signed = concat(
    utf8("im v1 mail identity signature"),
    new Uint8Array([0]),
    th,
  );
  assert.equal(signed.length, 29 + 1 + 32);
  assert.ok(await verifyPss(ids.B.publicIdentity.verify, c.sig, signed));
  assert.ok(await verifyIdentityCert(c, ids.B.publicIdentity));
  assert.deepEqual(encodeIdentityCert(c), bytes);
});

Deno.test("makePrekeyCert() writes SPK_CERT byte for byte and signs label || 0x00 || spk_th, which names ik", async () => {
  const bytes = await makePrekeyCert(
    ids.B,
    "B",
    ikB!.publicRaw,
    0x01020304,
    spkB!.publicRaw,
    NOW,
    NOW + 30 * DAY,
  );
  assert.equal(bytes.length, 1 + 2 + 4 + 32 + 8 + 8 + 2 + 256);
  assert.deepEqual(
    bytes.subarray(0, 1 + 2 + 4 + 32 + 16 + 2),
    concat(
      new Uint8Array([1, 1]),
      utf8("B"),
      new Uint8Array([1, 2, 3, 4]),
      spkB!.publicRaw,
      u64be(BigInt(NOW)),
      u64be(BigInt(NOW + 30 * DAY)),
      new Uint8Array([1, 0]),
    ),
  );
  const c = decodePrekeyCert(bytes);
  assert.equal(c.id, 0x01020304);
  const th = await specSpkTh(0x01020304, NOW, NOW + 30 * DAY);
  const signed = concat(
    utf8("im v1 mail prekey signature"),
    new Uint8Array([0]),
    th,
  );
  assert.equal(signed.length, 27 + 1 + 32);
  assert.ok(await verifyPss(ids.B.publicIdentity.verify, c.sig, signed));
  assert.ok(await verifyPrekeyCert(c, ids.B.publicIdentity, ikB!.publicRaw));
  assert.ok(
    !(await verifyPrekeyCert(c, ids.B.publicIdentity, ikOther!.publicRaw)),
    "an SPK_CERT moved under another identity key must not verify",
  );
  assert.deepEqual(encodePrekeyCert(c), bytes);
});

Deno.test("a signature made under the identity label does not verify as a prekey signature, nor the other way", async () => {
  const spk = await bPrekey();
  const spkTh = await specSpkTh(1, NOW, NOW + DAY);
  const underIkLabel = await signPss(
    ids.B.sign,
    concat(utf8(Label.MAIL_IDENTITY_SIGNATURE), new Uint8Array([0]), spkTh),
  );
  assert.ok(
    !(await verifyPrekeyCert(
      { ...spk, sig: underIkLabel },
      ids.B.publicIdentity,
      ikB!.publicRaw,
    )),
  );
  const ik = await bIdentity();
  const ikTh = await specIkTh(NOW);
  const underSpkLabel = await signPss(
    ids.B.sign,
    concat(utf8(Label.MAIL_PREKEY_SIGNATURE), new Uint8Array([0]), ikTh),
  );
  assert.ok(
    !(await verifyIdentityCert(
      { ...ik, sig: underSpkLabel },
      ids.B.publicIdentity,
    )),
  );
  // The same signature moved over whole: an IK_CERT's signature in an SPK_CERT.
  assert.ok(
    !(await verifyPrekeyCert(
      { ...spk, sig: ik.sig },
      ids.B.publicIdentity,
      ikB!.publicRaw,
    )),
  );
});

Deno.test("verifyIdentityCert() refuses a certificate signed by another key, and one whose fields were changed", async () => {
  const byC = decodeIdentityCert(
    await makeIdentityCert(ids.C, "B", ikB!.publicRaw, NOW),
  );
  assert.ok(!(await verifyIdentityCert(byC, ids.B.publicIdentity)));
  const c = await bIdentity();
  for (
    const changed of [
      { ...c, user: "C" },
      { ...c, ik: ikOther!.publicRaw },
      { ...c, created: NOW + 1 },
      { ...c, version: 2 },
    ]
  ) {
    assert.ok(!(await verifyIdentityCert(changed, ids.B.publicIdentity)));
  }
  const p = await bPrekey();
  for (
    const changed of [
      { ...p, user: "C" },
      { ...p, id: 2 },
      { ...p, spk: ikOther!.publicRaw },
      { ...p, created: NOW + 1 },
      { ...p, expires: NOW + DAY + 1 },
    ]
  ) {
    assert.ok(
      !(await verifyPrekeyCert(changed, ids.B.publicIdentity, ikB!.publicRaw)),
    );
  }
  assert.ok(!(await verifyPrekeyCert(p, ids.C.publicIdentity, ikB!.publicRaw)));
});

// ---------------------------------------------------------------------------
// Decoding

Deno.test("decodeIdentityCert() and decodePrekeyCert() refuse every truncation and a trailing byte", async () => {
  const { identityCert, signedPrekeyCert } = await bCerts();
  for (
    const [decode, bytes] of [[decodeIdentityCert, identityCert], [
      decodePrekeyCert,
      signedPrekeyCert,
    ]] as const
  ) {
    for (let n = 0; n < bytes.length; n++) {
      assertThrowsIm(
        () => decode(bytes.subarray(0, n)),
        ProtocolError,
        "bad-cert",
        `length ${n}`,
      );
    }
    assertThrowsIm(
      () => decode(concat(bytes, new Uint8Array(1))),
      ProtocolError,
      "bad-cert",
    );
  }
});

Deno.test("decodeIdentityCert() refuses another version, an invalid name and a signature no RSA key makes", async () => {
  const good = await bIdentity();
  const raw = (user: Uint8Array, version = 1, sig: Uint8Array = good.sig) =>
    concat(
      new Uint8Array([version, user.length]),
      user,
      good.ik,
      u64be(BigInt(NOW)),
      new Uint8Array([sig.length >> 8, sig.length & 0xff]),
      sig,
    );
  decodeIdentityCert(raw(utf8("B")));
  assertThrowsIm(
    () => decodeIdentityCert(raw(utf8("B"), 2)),
    ProtocolError,
    "bad-cert",
  );
  assertThrowsIm(
    () => decodeIdentityCert(raw(utf8("B"), 0)),
    ProtocolError,
    "bad-cert",
  );
  for (const name of ["", "a b", "../x", "x".repeat(33), "é"]) {
    assertThrowsIm(
      () => decodeIdentityCert(raw(utf8(name))),
      ProtocolError,
      "bad-cert",
      name,
    );
  }
  assertThrowsIm(
    () => decodeIdentityCert(raw(new Uint8Array([0xff]))),
    ProtocolError,
    "bad-cert",
  );
  assertThrowsIm(
    () => decodeIdentityCert(raw(utf8("B"), 1, new Uint8Array(0))),
    ProtocolError,
    "bad-cert",
  );
  assertThrowsIm(
    () => decodeIdentityCert(raw(utf8("B"), 1, new Uint8Array(255))),
    ProtocolError,
    "bad-cert",
  );
  assertThrowsIm(
    () => decodeIdentityCert(raw(utf8("B"), 1, new Uint8Array(513))),
    ProtocolError,
    "bad-cert",
  );
});

Deno.test("decodePrekeyCert() refuses spk_id 0 and a time past the largest safe integer", async () => {
  const bytes = (await bCerts()).signedPrekeyCert;
  const zeroId = new Uint8Array(bytes);
  zeroId.set([0, 0, 0, 0], 3);
  assertThrowsIm(() => decodePrekeyCert(zeroId), ProtocolError, "bad-cert");
  const farExpires = new Uint8Array(bytes);
  farExpires.set(u64be(1n << 60n), 3 + 4 + 32 + 8);
  assertThrowsIm(() => decodePrekeyCert(farExpires), ProtocolError, "bad-cert");
});

Deno.test("encodeIdentityCert() and makePrekeyCert() refuse fields that would not decode", async () => {
  const c = await bIdentity();
  assertThrowsIm(
    () => encodeIdentityCert({ ...c, ik: new Uint8Array(31) }),
    ProtocolError,
    "bad-cert",
  );
  assertThrowsIm(
    () => encodeIdentityCert({ ...c, user: "a b" }),
    ProtocolError,
    "bad-cert",
  );
  assertThrowsIm(
    () => encodeIdentityCert({ ...c, created: -1 }),
    ProtocolError,
    "bad-cert",
  );
  await assertRejectsIm(
    () =>
      makePrekeyCert(ids.B, "B", ikB!.publicRaw, 0, spkB!.publicRaw, NOW, NOW),
    ProtocolError,
    "bad-cert",
  );
  await assertRejectsIm(
    () => makeIdentityCert(ids.B, "B", new Uint8Array(33), NOW),
    ProtocolError,
    "bad-cert",
  );
});

Deno.test("OPK is opk_id u32 || opk[32]; other lengths and id 0 are refused", () => {
  const key = new Uint8Array(32).fill(5);
  const b = encodeOneTimePrekey(0x0a0b0c0d, key);
  assert.equal(b.length, OPK_BYTES);
  assert.deepEqual(b, concat(new Uint8Array([10, 11, 12, 13]), key));
  assert.deepEqual(decodeOneTimePrekey(b), { id: 0x0a0b0c0d, key });
  for (const n of [0, 35, 37]) {
    assertThrowsIm(
      () => decodeOneTimePrekey(new Uint8Array(n).fill(1)),
      ProtocolError,
      "bad-cert",
    );
  }
  assertThrowsIm(
    () => decodeOneTimePrekey(concat(new Uint8Array(4), key)),
    ProtocolError,
    "bad-cert",
  );
  assertThrowsIm(() => encodeOneTimePrekey(0, key), ProtocolError, "bad-cert");
  assertThrowsIm(
    () => encodeOneTimePrekey(1, new Uint8Array(31)),
    ProtocolError,
    "bad-cert",
  );
});

// ---------------------------------------------------------------------------
// verifyBundle, section 9.2 step 3

Deno.test("verifyBundle() accepts B's own bundle and returns both certificates", async () => {
  const { identity, prekey } = await bundle(await bCerts());
  assert.deepEqual(identity.ik, ikB!.publicRaw);
  assert.deepEqual(prekey.spk, spkB!.publicRaw);
  assert.equal(prekey.id, 1);
});

Deno.test("verifyBundle() refuses with bad-bundle: undecodable, naming another user, signed by another key, SPK_CERT naming another ik", async () => {
  const good = await bCerts();
  const cases: [
    string,
    { identityCert: Uint8Array; signedPrekeyCert: Uint8Array },
  ][] = [
    ["IK_CERT undecodable", {
      ...good,
      identityCert: good.identityCert.subarray(1),
    }],
    ["SPK_CERT undecodable", { ...good, signedPrekeyCert: new Uint8Array(0) }],
    ["both name C", await bCerts({ user: "C" })],
    ["SPK_CERT names C", await bCerts({ spkUser: "C" })],
    ["signed by C's key", await bCerts({ signer: ids.C })],
    ["IK_CERT signed by C's key", {
      ...good,
      identityCert: (await bCerts({ signer: ids.C })).identityCert,
    }],
    ["SPK_CERT signed by C's key", {
      ...good,
      signedPrekeyCert: (await bCerts({ signer: ids.C })).signedPrekeyCert,
    }],
    ["SPK_CERT names another ik", await bCerts({ spkIk: ikOther!.publicRaw })],
    ["IK_CERT of another ik, SPK_CERT of B's", {
      ...good,
      identityCert: (await bCerts({ ik: ikOther!.publicRaw })).identityCert,
    }],
    ["the two certificates swapped", {
      identityCert: good.signedPrekeyCert,
      signedPrekeyCert: good.identityCert,
    }],
  ];
  for (const [what, certs] of cases) {
    await assertRejectsIm(
      () => bundle(certs),
      ProtocolError,
      "bad-bundle",
      what,
    );
  }
});

Deno.test("verifyBundle() refuses an expired prekey (expires <= now) as prekey-expired", async () => {
  const certs = await bCerts({ created: NOW - 30 * DAY, expires: NOW });
  await assertRejectsIm(() => bundle(certs), ProtocolError, "prekey-expired");
  await bundle(certs, { now: NOW - 1 });
});

Deno.test("verifyBundle() refuses a certificate made more than 120 s in the future as bad-bundle", async () => {
  await bundle(await bCerts({ created: NOW + 120_000 }));
  await assertRejectsIm(
    async () => bundle(await bCerts({ created: NOW + 120_001 })),
    ProtocolError,
    "bad-bundle",
  );
  await bundle(await bCerts({ ikCreated: NOW + 120_000 }));
  await assertRejectsIm(
    async () => bundle(await bCerts({ ikCreated: NOW + 120_001 })),
    ProtocolError,
    "bad-bundle",
  );
});

Deno.test("verifyBundle() refuses certificates older than the ones verified before as prekey-rollback", async () => {
  const old = await bCerts({
    ikCreated: NOW - 2 * DAY,
    created: NOW - 7 * DAY,
  });
  const current = await bCerts();
  // The same or newer than before: accepted.
  await bundle(current, { previous: current });
  await bundle(current, { previous: old });
  await bundle(current, { previous: { identityCert: old.identityCert } });
  // An older SPK_CERT, or an older IK_CERT, than what was seen.
  await assertRejectsIm(
    () => bundle(old, { previous: current }),
    ProtocolError,
    "prekey-rollback",
  );
  const oldSpk = { ...current, signedPrekeyCert: old.signedPrekeyCert };
  await assertRejectsIm(
    () => bundle(oldSpk, { previous: current }),
    ProtocolError,
    "prekey-rollback",
  );
  const oldIk = await bCerts({ ikCreated: NOW - 2 * DAY });
  await assertRejectsIm(
    () => bundle(oldIk, { previous: { identityCert: current.identityCert } }),
    ProtocolError,
    "prekey-rollback",
  );
});

Deno.test("verifyBundle() runs its checks in order: signature, then expiry, then the clock, then rollback", async () => {
  const current = await bCerts();
  // Expired and signed by another key: the signature decides.
  await assertRejectsIm(
    async () =>
      bundle({
        ...current,
        signedPrekeyCert:
          (await bCerts({ signer: ids.C, expires: NOW })).signedPrekeyCert,
      }),
    ProtocolError,
    "bad-bundle",
  );
  // Expired and made in the future: expiry decides.
  const expiredFuture = await bCerts({ created: NOW + DAY, expires: NOW });
  await assertRejectsIm(
    () => bundle(expiredFuture),
    ProtocolError,
    "prekey-expired",
  );
  // Expired and rolled back: expiry decides.
  const expiredOld = await bCerts({ created: NOW - 30 * DAY, expires: NOW });
  await assertRejectsIm(
    () => bundle(expiredOld, { previous: current }),
    ProtocolError,
    "prekey-expired",
  );
  // Made in the future and rolled back (the IK_CERT): the clock decides.
  const futureRolledBack = await bCerts({
    ikCreated: NOW - 2 * DAY,
    created: NOW + DAY,
  });
  await assertRejectsIm(
    () => bundle(futureRolledBack, { previous: current }),
    ProtocolError,
    "bad-bundle",
  );
});

// ---------------------------------------------------------------------------
// verifyIdentityOnly, section 9.4 step 2

Deno.test("verifyIdentityOnly() checks the IK_CERT alone: its name, its signature, and rollback", async () => {
  const current = await bCerts();
  const only = (
    identityCert: Uint8Array,
    previous?: { identityCert: Uint8Array },
  ) =>
    verifyIdentityOnly({
      user: "B",
      owner: ids.B.publicIdentity,
      identityCert,
      previous,
    });
  assert.deepEqual((await only(current.identityCert)).ik, ikB!.publicRaw);
  await assertRejectsIm(
    () => only(current.signedPrekeyCert),
    ProtocolError,
    "bad-bundle",
  );
  await assertRejectsIm(
    async () => only((await bCerts({ user: "C" })).identityCert),
    ProtocolError,
    "bad-bundle",
  );
  await assertRejectsIm(
    async () => only((await bCerts({ signer: ids.C })).identityCert),
    ProtocolError,
    "bad-bundle",
  );
  const old = (await bCerts({ ikCreated: NOW - 2 * DAY })).identityCert;
  await only(current.identityCert, { identityCert: old });
  await assertRejectsIm(
    () => only(old, { identityCert: current.identityCert }),
    ProtocolError,
    "prekey-rollback",
  );
});
