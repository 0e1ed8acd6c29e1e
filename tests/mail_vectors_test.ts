/**
 * Runs `tests/vectors/mail_vectors.json` (PROTOCOL.md section 9, the end of
 * 9.10) against the real mail code: the keys and certificates, both sealed
 * messages (opened by `openMail`, and recomputed here from their recorded
 * DH inputs with the labels and layout of PROTOCOL.md written out, not
 * imported), a fresh `sealMail` to the vectors' bundle opened by that same
 * written-out derivation, every receiving case of section 9.4 (through the
 * functions of `lib/proto` step by step, and through the client's
 * `MailInbox` with the vectors' keys in a `MemoryMailVault`), and every
 * bundle case of section 9.2 step 3 (`verifyBundle`).
 *
 * So a label, the order of the DH values or a field of the layout changed
 * in `lib/proto/mail.ts` fails here, on either side.
 * @module
 */

import assert from "node:assert/strict";
import {
  importX25519Private,
  MdCfb,
  privateIdentityFromDer,
  type PublicIdentity,
  publicIdentityFromDer,
} from "../lib/crypto/mod.ts";
import {
  checkMailTime,
  decodeIdentityCert,
  decodeMail,
  decodeOneTimePrekey,
  decodePrekeyCert,
  type MailKeyPair,
  openMail,
  receiptProof,
  sealMail,
  verifyBundle,
  verifyIdentityOnly,
} from "../lib/proto/mod.ts";
import { type ClientContext, MemoryMailVault } from "../lib/client/mod.ts";
import { type InboxRecord, MailInbox } from "../lib/client/mail_receive.ts";
import type { MailKeys } from "../lib/client/mail_keys.ts";
import type { KnownSender, MailPeers } from "../lib/client/mail_peers.ts";
import type { ServerConnection } from "../lib/client/server_link.ts";
import { isImError, ProtocolError } from "../lib/util/mod.ts";
import {
  buildMailVectors,
  madeOf,
  type MailVectorFile,
  readMailVectors,
  type ReceiveVector,
  type SealedVector,
} from "./vectors/make_mail_vectors.ts";

const file = (await readMailVectors()) as MailVectorFile;
const inp = file.inputs;
const hex = (s: string) => Uint8Array.fromHex(s);
const toHex = (b: Uint8Array) => b.toHex();
const te = new TextEncoder();

// PROTOCOL.md section 9.2, written out here on purpose: not `Label`.
const LABEL = {
  ad: "im v1 mail ad",
  secret: "im v1 mail secret",
  enc: "im v1 mail enc",
  iv: "im v1 mail iv",
  mac: "im v1 mail mac",
  receipt: "im v1 mail receipt",
};

const rsa: Record<string, PublicIdentity> = {};
for (const [user, k] of Object.entries(inp.rsa)) {
  rsa[user] = await publicIdentityFromDer(hex(k.spki), user);
}
const x: Record<string, MailKeyPair> = {};
for (const [name, k] of Object.entries(inp.x25519)) {
  x[name] = await importX25519Private(hex(k.private_pkcs8));
}
const SENDER = inp.sender, RECIPIENT = inp.recipient;
const fpA = rsa[SENDER]!.fingerprintBytes;
const fpB = rsa[RECIPIENT]!.fingerprintBytes;
const bundle = file.bundle;

// ---------------------------------------------------------------------------
// The spec, written out: primitives only (WebCrypto, MD-CFB).

function cat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

async function th(
  label: string,
  ...parts: Uint8Array[]
): Promise<Uint8Array<ArrayBuffer>> {
  const body = cat(
    ...[te.encode(label), ...parts].flatMap((p) => [u32(p.length), p]),
  );
  return new Uint8Array(await crypto.subtle.digest("SHA-256", body));
}

async function hkdf(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: string,
): Promise<Uint8Array<ArrayBuffer>> {
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
        info: te.encode(info),
      },
      key,
      256,
    ),
  );
}

async function hmac(
  key: Uint8Array,
  data: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(
    await crypto.subtle.sign("HMAC", k, data as Uint8Array<ArrayBuffer>),
  );
}

async function x25519(
  own: MailKeyPair,
  peer: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  const pub = await crypto.subtle.importKey(
    "raw",
    peer as Uint8Array<ArrayBuffer>,
    { name: "X25519" },
    false,
    [],
  );
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "X25519", public: pub },
      own.privateKey,
      256,
    ),
  );
}

/** The padding buckets of section 6 (64, 128, ... 16,384, then 4,096 steps). */
function isBucket(n: number): boolean {
  if (n > 16_384) return n % 4096 === 0;
  for (let b = 64; b <= 16_384; b *= 2) if (b === n) return true;
  return false;
}

/** A `MAIL` read at the offsets of section 9.3. */
function layout(mail: Uint8Array) {
  const view = new DataView(mail.buffer, mail.byteOffset, mail.byteLength);
  const td = new TextDecoder("utf-8", { fatal: true });
  let at = 0;
  const version = mail[at++]!;
  const sLen = mail[at++]!;
  const sender = td.decode(mail.subarray(at, at + sLen));
  at += sLen;
  const rLen = mail[at++]!;
  const recipient = td.decode(mail.subarray(at, at + rLen));
  at += rLen;
  // The header is 99 bytes plus the two names.
  assert.equal(at, 3 + sLen + rLen);
  const msgId = mail.slice(at, at + 16);
  const time = Number(view.getBigUint64(at + 16));
  const spkId = view.getUint32(at + 24);
  const opkId = view.getUint32(at + 28);
  const ik = mail.slice(at + 32, at + 64);
  const ek = mail.slice(at + 64, at + 96);
  const headerLength = at + 96;
  assert.equal(headerLength, 99 + sLen + rLen);
  return {
    version,
    sender,
    recipient,
    msgId,
    time,
    spkId,
    opkId,
    ik,
    ek,
    header: mail.slice(0, headerLength),
    ciphertext: mail.slice(headerLength, mail.length - 32),
    tag: mail.slice(mail.length - 32),
  };
}

/**
 * Section 9.4 step 3 from bob's side, as PROTOCOL.md writes it: the DH
 * values in their order, `ad`, `sk` and the four keys, the tag, and the
 * plaintext.
 */
async function specOpen(
  mail: Uint8Array,
  b: { ik: MailKeyPair; spk: MailKeyPair; opk?: MailKeyPair },
) {
  const l = layout(mail);
  const dh = [
    await x25519(b.spk, l.ik), // DH1 = X25519(spk_b, ik_a)
    await x25519(b.ik, l.ek), // DH2 = X25519(ik_b, ek_a)
    await x25519(b.spk, l.ek), // DH3 = X25519(spk_b, ek_a)
  ];
  if (l.opkId !== 0) dh.push(await x25519(b.opk!, l.ek)); // DH4 = X25519(opk_b, ek_a)
  const ikm = cat(new Uint8Array(32).fill(0xff), ...dh);
  const ad = await th(
    LABEL.ad,
    Uint8Array.of(l.version),
    te.encode(l.sender),
    te.encode(l.recipient),
    fpA,
    fpB,
    l.ik,
    b.ik.publicRaw,
  );
  const sk = await hkdf(ikm, ad, LABEL.secret);
  const enc = await hkdf(sk, l.msgId, LABEL.enc);
  const ivk = await hkdf(sk, l.msgId, LABEL.iv);
  const mac = await hkdf(sk, l.msgId, LABEL.mac);
  const rk = await hkdf(sk, l.msgId, LABEL.receipt);
  const tag = await hmac(mac, cat(l.header, l.ciphertext));
  const iv = await hmac(ivk, l.msgId);
  const plaintext = new MdCfb(enc).decrypt(iv, l.ciphertext);
  return {
    l,
    dh,
    ikm,
    ad,
    sk,
    enc,
    ivk,
    mac,
    rk,
    iv,
    tagOk: toHex(tag) === toHex(l.tag),
    plaintext,
    proof: await hmac(rk, l.msgId),
  };
}

/** The text of a plaintext of section 9.3 (type 1, len, text, zeros). */
function specText(p: Uint8Array): string {
  assert.equal(p[0], 0x01);
  const len = new DataView(p.buffer, p.byteOffset).getUint32(1);
  assert.ok(p.subarray(5 + len).every((b) => b === 0), "zero padding");
  return new TextDecoder("utf-8", { fatal: true }).decode(
    p.subarray(5, 5 + len),
  );
}

const bobKeys = { ik: x.ik_b!, spk: x.spk_b!, opk: x.opk_b! };

// ---------------------------------------------------------------------------

Deno.test("mail_vectors.json is exactly what make_mail_vectors.ts builds from its RSA keys and certificates (reproducible)", async () => {
  assert.deepEqual(file, await buildMailVectors(madeOf(file)));
});

Deno.test("mail vectors: the keys (RSA fingerprints, X25519 pairs from PKCS#8 through importX25519Private)", async () => {
  for (const [user, k] of Object.entries(inp.rsa)) {
    const id = rsa[user]!;
    assert.equal(toHex(id.publicDer), k.spki, `${user}: canonical SPKI`);
    assert.equal(toHex(id.fingerprintBytes), k.fingerprint, user);
    assert.equal(id.fingerprint, k.fingerprint_text, user);
    assert.equal(id.bits, 2048, user);
    const priv = await privateIdentityFromDer(hex(k.private_pkcs8), user);
    assert.equal(priv.fingerprint, k.fingerprint_text, `${user}: one pair`);
  }
  for (const [name, k] of Object.entries(inp.x25519)) {
    assert.equal(toHex(x[name]!.publicRaw), k.public, name);
    assert.equal(
      k.private_pkcs8,
      "302e020100300506032b656e04220420" + k.scalar,
      name,
    );
  }
  for (
    const name of ["ik_a", "ik_b", "spk_b", "opk_b", "ek_a", "ek_a2"]
  ) assert.ok(inp.x25519[name], name);
});

Deno.test("mail vectors: bob's bundle verifies (verifyBundle), its certificates and OPK decode to the recorded fields; alice's IK_CERT verifies", async () => {
  assert.equal(bundle.identity, inp.rsa[RECIPIENT]!.spki);
  assert.equal(bundle.identity_cert, file.certificates.ik_cert_bob);
  assert.equal(bundle.signed_prekey_cert, file.certificates.spk_cert_bob);
  const owner = await publicIdentityFromDer(hex(bundle.identity));
  const { identity, prekey } = await verifyBundle({
    user: bundle.user,
    owner,
    identityCert: hex(bundle.identity_cert),
    signedPrekeyCert: hex(bundle.signed_prekey_cert),
    now: bundle.now,
  });
  assert.equal(identity.user, RECIPIENT);
  assert.equal(toHex(identity.ik), bundle.ik);
  assert.equal(identity.created, bundle.ik_created);
  assert.equal(prekey.user, RECIPIENT);
  assert.equal(prekey.id, bundle.spk_id);
  assert.equal(toHex(prekey.spk), bundle.spk);
  assert.equal(prekey.created, bundle.spk_created);
  assert.equal(prekey.expires, bundle.spk_expires);
  assert.equal(bundle.ik, inp.x25519.ik_b!.public);
  assert.equal(bundle.spk, inp.x25519.spk_b!.public);
  // IK_CERT = u8 version || bytes8(user) || ik[32] || created u64 || bytes16(sig_ik)
  const ikc = hex(bundle.identity_cert);
  assert.equal(ikc[0], 1);
  assert.equal(ikc[1], RECIPIENT.length);
  assert.equal(
    toHex(ikc.subarray(2 + RECIPIENT.length, 34 + RECIPIENT.length)),
    bundle.ik,
  );
  assert.equal(ikc.length, 2 + RECIPIENT.length + 32 + 8 + 2 + 256);
  // SPK_CERT = ... || spk_id u32 || spk[32] || created u64 || expires u64 || bytes16(sig_spk)
  const spkc = hex(bundle.signed_prekey_cert);
  assert.equal(spkc.length, 2 + RECIPIENT.length + 4 + 32 + 16 + 2 + 256);
  assert.deepEqual(decodeIdentityCert(ikc).ik, identity.ik);
  assert.deepEqual(decodePrekeyCert(spkc).spk, prekey.spk);
  // OPK = opk_id u32 || opk[32]
  const opk = decodeOneTimePrekey(hex(bundle.one_time_prekey));
  assert.equal(opk.id, bundle.opk_id);
  assert.equal(toHex(opk.key), bundle.opk);
  assert.equal(bundle.opk, inp.x25519.opk_b!.public);
  assert.equal(bundle.one_time_prekey.slice(0, 8), "0000002a");

  assert.equal(file.sender_identity_cert, file.certificates.ik_cert_alice);
  const a = await verifyIdentityOnly({
    user: SENDER,
    owner: rsa[SENDER]!,
    identityCert: hex(file.sender_identity_cert),
  });
  assert.equal(toHex(a.ik), inp.x25519.ik_a!.public);
  await assert.rejects(
    verifyIdentityOnly({
      user: SENDER,
      owner: rsa[RECIPIENT]!,
      identityCert: hex(file.sender_identity_cert),
    }),
    { code: "bad-bundle" },
  );
});

function checkLayout(v: SealedVector): void {
  const mail = hex(v.mail);
  const l = layout(mail);
  assert.equal(toHex(l.header) + toHex(l.ciphertext) + toHex(l.tag), v.mail);
  assert.equal(toHex(l.header), v.header);
  assert.equal(toHex(l.ciphertext), v.ciphertext);
  assert.equal(toHex(l.tag), v.tag);
  assert.deepEqual(
    {
      version: l.version,
      sender: l.sender,
      recipient: l.recipient,
      msg_id: toHex(l.msgId),
      time: l.time,
      spk_id: l.spkId,
      opk_id: l.opkId,
      ik_a: toHex(l.ik),
      ek_a: toHex(l.ek),
    },
    v.fields,
  );
  assert.ok(isBucket(l.ciphertext.length), "a padding bucket");
  assert.equal(l.ciphertext.length, v.plaintext.length / 2);
  // decodeMail reads the same fields at the same places.
  const d = decodeMail(mail);
  assert.deepEqual(d.header, {
    version: l.version,
    sender: l.sender,
    recipient: l.recipient,
    msgId: l.msgId,
    time: l.time,
    spkId: l.spkId,
    opkId: l.opkId,
    ik: l.ik,
    ek: l.ek,
  });
  assert.deepEqual(d.headerBytes, l.header);
  assert.deepEqual(d.ciphertext, l.ciphertext);
  assert.deepEqual(d.tag, l.tag);
}

for (const v of file.messages) {
  Deno.test(`mail vectors, ${v.name}: the layout of PROTOCOL.md 9.3, field by field at its offsets`, () => {
    checkLayout(v);
    assert.equal(v.fields.spk_id, bundle.spk_id);
    assert.equal(v.fields.ek_a, inp.x25519[v.ephemeral]!.public);
  });

  Deno.test(`mail vectors, ${v.name}: DH values, ad, sk, keys, tag and plaintext recomputed with PROTOCOL.md's labels written out`, async () => {
    const s = await specOpen(hex(v.mail), bobKeys);
    assert.deepEqual(s.dh.map(toHex), v.dh, "DH1..DH4, in order");
    assert.equal(s.dh.length, v.fields.opk_id === 0 ? 3 : 4);
    // The sender's side gives the same values (X25519 is symmetric).
    const ek = x[v.ephemeral]!, opk = hex(bundle.opk);
    const senderDh = [
      await x25519(x.ik_a!, hex(bundle.spk)),
      await x25519(ek, hex(bundle.ik)),
      await x25519(ek, hex(bundle.spk)),
      ...(v.fields.opk_id === 0 ? [] : [await x25519(ek, opk)]),
    ];
    assert.deepEqual(senderDh.map(toHex), v.dh);
    assert.equal(toHex(s.ikm), v.ikm);
    assert.equal(toHex(s.ad), v.ad);
    assert.equal(toHex(s.sk), v.sk);
    assert.equal(toHex(s.enc), v.enc);
    assert.equal(toHex(s.ivk), v.ivk);
    assert.equal(toHex(s.mac), v.mac);
    assert.equal(toHex(s.iv), v.iv);
    assert.equal(toHex(s.rk), v.rk);
    assert.ok(s.tagOk, "the tag is HMAC(mac, header || ciphertext)");
    assert.equal(toHex(s.plaintext), v.plaintext);
    assert.equal(specText(s.plaintext), v.text);
    assert.equal(toHex(s.proof), v.proof);
    // Sealing again with the recorded ephemeral key and msg_id is the same MAIL.
    const ct = new MdCfb(s.enc).encrypt(s.iv, s.plaintext);
    assert.equal(toHex(ct), v.ciphertext);
  });

  Deno.test(`mail vectors, ${v.name}: openMail opens it to the recorded text and rk; receiptProof gives the recorded proof`, async () => {
    const mail = decodeMail(hex(v.mail));
    checkMailTime(mail.header, v.open.now);
    const opened = await openMail({
      mail,
      senderFingerprint: fpA,
      recipientFingerprint: fpB,
      identity: x.ik_b!,
      signedPrekey: x.spk_b!,
      oneTimePrekey: v.fields.opk_id === 0 ? undefined : x.opk_b!,
    });
    assert.equal(opened.text, v.text);
    assert.equal(toHex(opened.rk), v.rk);
    assert.equal(
      toHex(await receiptProof(opened.rk, mail.header.msgId)),
      v.proof,
    );
    // With the fingerprints swapped, or alice's key as bob's, `ad` differs.
    await assert.rejects(
      openMail({
        mail,
        senderFingerprint: fpB,
        recipientFingerprint: fpA,
        identity: x.ik_b!,
        signedPrekey: x.spk_b!,
        oneTimePrekey: x.opk_b!,
      }),
      { code: "mail-tampered" },
    );
  });
}

Deno.test("sealMail to the vectors' bundle: the layout of 9.3, and PROTOCOL.md's derivation written out opens it (both sides agree on labels and DH order)", async () => {
  const text = "sealed by sealMail, opened by the spec";
  for (const withOpk of [true, false]) {
    const time = file.messages[0]!.fields.time;
    const sealed = await sealMail({
      sender: SENDER,
      recipient: RECIPIENT,
      senderFingerprint: fpA,
      recipientFingerprint: fpB,
      senderIdentity: x.ik_a!,
      recipientIdentityKey: hex(bundle.ik),
      signedPrekey: { id: bundle.spk_id, key: hex(bundle.spk) },
      oneTimePrekey: withOpk
        ? { id: bundle.opk_id, key: hex(bundle.opk) }
        : undefined,
      text,
      time,
    });
    const s = await specOpen(sealed.mail, bobKeys);
    assert.equal(s.l.version, 1);
    assert.equal(s.l.sender, SENDER);
    assert.equal(s.l.recipient, RECIPIENT);
    assert.deepEqual(s.l.msgId, sealed.msgId);
    assert.equal(s.l.time, time);
    assert.equal(s.l.spkId, bundle.spk_id);
    assert.equal(s.l.opkId, withOpk ? bundle.opk_id : 0);
    assert.equal(toHex(s.l.ik), inp.x25519.ik_a!.public);
    assert.ok(isBucket(s.l.ciphertext.length));
    assert.ok(s.tagOk, `tag (${withOpk ? "with" : "without"} opk)`);
    assert.equal(specText(s.plaintext), text);
    assert.deepEqual(s.rk, sealed.rk);
  }
});

// ---------------------------------------------------------------------------
// Section 9.4.

/** What bob knows of alice: her pinned RSA key, the ik of her verified IK_CERT. */
const alice: KnownSender = {
  owner: rsa[SENDER]!,
  ik: (await verifyIdentityOnly({
    user: SENDER,
    owner: rsa[SENDER]!,
    identityCert: hex(file.sender_identity_cert),
  })).ik,
};

const sameBytes = (a: Uint8Array, b: Uint8Array) => toHex(a) === toHex(b);

/** What receiving gave: a code, or `shown` with its text, or `duplicate`; and the receipt proof, if any. */
interface Outcome {
  outcome: string;
  text?: string;
  proof?: string;
}

/**
 * The steps of section 9.4 in order, each through the function of
 * `lib/proto` that owns it; steps 2 and 4 compare what the case says bob
 * holds.
 */
async function receiveSteps(c: ReceiveVector): Promise<Outcome> {
  try {
    const mail = decodeMail(hex(c.mail)); // step 1
    const h = mail.header;
    checkMailTime(h, c.now);
    if (h.sender !== c.from) return { outcome: "mail-tampered" };
    if (h.sender !== SENDER || !sameBytes(h.ik, alice.ik)) { // step 2
      return { outcome: "unknown-identity-key" };
    }
    const spk = c.held.spk.includes(h.spkId) ? x.spk_b! : undefined;
    const opk = h.opkId !== 0 && c.held.opk.includes(h.opkId)
      ? x.opk_b!
      : undefined;
    const seen = c.seen.includes(toHex(h.msgId));
    if (!spk || (h.opkId !== 0 && !opk)) {
      return { outcome: seen ? "duplicate" : "unknown-prekey" };
    }
    const opened = await openMail({ // steps 3 and 5
      mail,
      senderFingerprint: alice.owner.fingerprintBytes,
      recipientFingerprint: fpB,
      identity: x.ik_b!,
      signedPrekey: spk,
      oneTimePrekey: opk,
    });
    const proof = toHex(await receiptProof(opened.rk, h.msgId));
    if (h.recipient !== RECIPIENT) return { outcome: "misaddressed" }; // step 4
    if (seen) return { outcome: "duplicate", proof };
    return { outcome: "shown", text: opened.text, proof };
  } catch (e) {
    if (isImError(e)) return { outcome: e.code };
    throw e;
  }
}

/**
 * The same case through the client's `MailInbox`: bob's keys in a
 * `MemoryMailVault` as `held` says, alice known as above, the clock at
 * `now`, one `mail` push; what it shows and what it acknowledges.
 */
async function receiveInbox(c: ReceiveVector): Promise<Outcome> {
  const events: { kind: string; code?: string; text?: string }[] = [];
  const tracked: Promise<unknown>[] = [];
  const sent: { t: string; upTo?: number; delivered?: unknown[] }[] = [];
  const ctx = {
    o: { user: RECIPIENT, identity: { fingerprintBytes: fpB } },
    print: (ev: { kind: string }) => events.push(ev),
    system: (text: string) => events.push({ kind: "system", text }),
    error: (e: unknown) =>
      events.push({
        kind: "error",
        code: isImError(e) ? e.code : "internal",
      }),
    track: (p: Promise<unknown>) => tracked.push(p),
  } as unknown as ClientContext;
  const link = {
    serverNow: () => c.now,
    sendQuietly: (m: (typeof sent)[number]) => sent.push(m),
    recordRoom: 1 << 20,
  } as unknown as ServerConnection;
  const ikCert = hex(bundle.identity_cert);
  const keys = {
    identity: () =>
      Promise.resolve({
        pair: x.ik_b!,
        cert: ikCert,
        created: bundle.ik_created,
      }),
  } as unknown as MailKeys;
  const peers = {
    forReceiving: (sender: string) =>
      sender === SENDER
        ? Promise.resolve(alice)
        : Promise.reject(new ProtocolError("no-mailbox", `no ${sender}`)),
  } as unknown as MailPeers;
  const vault = new MemoryMailVault();
  for (const id of c.held.spk) {
    await vault.saveSignedPrekey({
      id,
      pair: x.spk_b!,
      cert: hex(bundle.signed_prekey_cert),
      created: bundle.spk_created,
      expires: bundle.spk_expires,
    });
  }
  await vault.saveOneTimePrekeys(
    c.held.opk.map((id) => ({ id, pair: x.opk_b! })),
  );
  for (const id of c.seen) await vault.addSeen(hex(id), c.now);

  const inbox = new MailInbox(ctx, link, keys, peers, vault);
  const push: InboxRecord = {
    t: "mail",
    seq: 7,
    from: c.from,
    at: c.now,
    mail: hex(c.mail).toBase64(),
  };
  inbox.push(push);
  for (let n = 0; n < tracked.length; n++) await tracked[n];
  await inbox.stop();

  // Exactly one acknowledgement, of this record.
  assert.equal(sent.length, 1, "one mail-ack");
  const ack = sent[0]!;
  assert.equal(ack.t, "mail-ack");
  assert.equal(ack.upTo, 7);
  const delivered = ack.delivered as { seq: number; proof: string }[];
  assert.ok(delivered.length <= 1);
  if (delivered[0]) assert.equal(delivered[0].seq, 7);
  const proof = delivered[0] &&
    Uint8Array.fromBase64(delivered[0].proof).toHex();
  const shown = events.filter((e) => e.kind === "mail");
  const errors = events.filter((e) => e.kind === "error");
  assert.ok(shown.length + errors.length <= 1, JSON.stringify(events));
  const out: Outcome = shown[0]
    ? { outcome: "shown", text: shown[0].text! }
    : errors[0]
    ? { outcome: errors[0].code! }
    : { outcome: "duplicate" };
  if (proof) out.proof = proof;
  return out;
}

/** The proof a case must be acknowledged with: only when it opened. */
function expectedProof(c: ReceiveVector): string | undefined {
  if (c.expect !== "shown" && c.expect !== "duplicate") return undefined;
  const m = file.messages.find((v) => v.mail === c.mail);
  if (!m) return undefined;
  const held = c.held.spk.includes(m.fields.spk_id) &&
    (m.fields.opk_id === 0 || c.held.opk.includes(m.fields.opk_id));
  return held ? m.proof : undefined;
}

for (const c of file.receive) {
  Deno.test(`mail_vectors.json receive, step ${c.step}: ${c.name} -> ${c.expect}`, async () => {
    const want: Outcome = { outcome: c.expect };
    if (c.text !== undefined) want.text = c.text;
    const proof = expectedProof(c);
    if (proof !== undefined) want.proof = proof;
    assert.deepEqual(await receiveSteps(c), want, "lib/proto, step by step");
    assert.deepEqual(await receiveInbox(c), want, "MailInbox");
  });
}

// ---------------------------------------------------------------------------
// Section 9.2 step 3.

for (const c of file.bundle_cases) {
  Deno.test(`mail_vectors.json bundle: ${c.name} -> ${c.expect}`, async () => {
    const cert = (name: string) => {
      const hexCert = file.certificates[name];
      assert.ok(hexCert !== undefined, name);
      return hex(hexCert);
    };
    const run = verifyBundle({
      user: c.user,
      owner: rsa[c.owner]!,
      identityCert: cert(c.identity_cert),
      signedPrekeyCert: cert(c.signed_prekey_cert),
      now: c.now,
      previous: c.previous && {
        identityCert: cert(c.previous.identity_cert),
        signedPrekeyCert: cert(c.previous.signed_prekey_cert),
      },
    });
    if (c.expect === "ok") {
      const { identity, prekey } = await run;
      assert.equal(identity.user, c.user);
      assert.equal(prekey.user, c.user);
    } else {
      await assert.rejects(run, (e) => {
        assert.ok(isImError(e), String(e));
        assert.equal(e.code, c.expect, e.message);
        return true;
      });
    }
  });
}

Deno.test("mail_vectors.json covers every refusal of 9.4 and of 9.2 step 3, in the order of the steps", () => {
  const receive = new Set(file.receive.map((c) => c.expect));
  for (
    const code of [
      "mail-malformed",
      "mail-stale",
      "mail-tampered",
      "unknown-identity-key",
      "unknown-prekey",
      "misaddressed",
      "duplicate",
      "shown",
    ]
  ) assert.ok(receive.has(code as never), code);
  const steps = file.receive.map((c) => c.step);
  assert.deepEqual(steps, [...steps].sort((a, b) => a - b));
  const bundles = new Set(file.bundle_cases.map((c) => c.expect));
  for (
    const code of ["ok", "bad-bundle", "prekey-expired", "prekey-rollback"]
  ) assert.ok(bundles.has(code as never), code);
  assert.ok(file.receive.length >= 40 && file.bundle_cases.length >= 15);
  assert.equal(file.messages.length, 2);
  assert.deepEqual(file.messages.map((m) => m.fields.opk_id !== 0), [
    true,
    false,
  ]);
});
