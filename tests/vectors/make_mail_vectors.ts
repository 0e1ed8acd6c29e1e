/**
 * Generates `mail_vectors.json`: mailbox conformance vectors (PROTOCOL.md
 * section 9, promised at the end of 9.10): one bundle of user `bob`, two
 * sealed messages from `alice` (with and without a one-time prekey) with
 * every intermediate value, each refusal of section 9.4 in the order of its
 * steps, and each refusal of a bundle (section 9.2 step 3).
 *
 * Everything here is built straight from PROTOCOL.md with WebCrypto and the
 * MD-CFB and HMAC primitives, not with `lib/proto`: `tests/mail_vectors_test.ts`
 * then checks that the real mail code opens, refuses and verifies exactly
 * as the file says.
 *
 * Fixed inputs: the X25519 private keys (each scalar is SHA-256 of a fixed
 * text, as PKCS#8 of RFC 8410), the ephemeral keys `ek_a` included, so the
 * sealed messages are reproducible byte for byte; `msg_id`s, times, ids and
 * texts. Three 2048-bit RSA keys (alice's, bob's, and carol's, which signs
 * the forgeries) and the RSA-PSS signatures inside the certificates are
 * randomized: they were made once and are inputs too. An implementation
 * verifies the certificates, it does not re-sign them.
 *
 * Run: `deno run --allow-read=tests/vectors --allow-write=tests/vectors
 * tests/vectors/make_mail_vectors.ts` rebuilds the file from its own fixed
 * inputs (the RSA keys and signatures already in it; a signature whose
 * content changed is made again) and changes nothing unless this script
 * changed. `--fresh` makes new RSA keys and signatures.
 * @module
 */

import { HmacSha256, MdCfb, sha256 } from "../../lib/crypto/mod.ts";

/** The file this script writes. */
export const MAIL_VECTORS_FILE = new URL("./mail_vectors.json", import.meta.url);

/** An RSA key of the vectors (a throwaway, made for them only). */
export interface RsaVectorKey {
  /** SPKI DER, hex: what a `bundle`'s `identity` carries. */
  spki: string;
  /** H(SPKI DER), 32 raw bytes, hex: `fp_user` of section 9.1, `fp_sender`/`fp_recipient` of 9.2. */
  fingerprint: string;
  /** The same as `im` prints it. */
  fingerprint_text: string;
  /** PKCS#8 DER, hex: only so that this script can sign again; a verifier needs none. */
  private_pkcs8: string;
}

/** An X25519 key pair, hex. */
export interface X25519VectorKey {
  /** The RFC 7748 scalar (clamped when used). */
  scalar: string;
  /** PKCS#8 DER (RFC 8410): `302e020100300506032b656e04220420 || scalar`. */
  private_pkcs8: string;
  /** The 32-byte public key, X25519(scalar, 9). */
  public: string;
}

/** What the recipient holds and knows when it receives (section 9.4). */
export interface ReceiveContext {
  /** The `from` of the server's `mail` push (who the server authenticated). */
  from: string;
  /** The recipient's clock (server's clock), ms. */
  now: number;
  /** Ids of the recipient's prekeys it holds: `spk` ids name `spk_b`, `opk` ids name `opk_b`. */
  held: { spk: number[]; opk: number[] };
  /** `msg_id`s (hex) already in `seen` (section 9.5). */
  seen: string[];
}

/** One sealed message, with every value of sections 9.2 and 9.3. */
export interface SealedVector {
  name: string;
  /** The whole `MAIL`, hex. */
  mail: string;
  /** Its parts: `header || ciphertext || tag`. */
  header: string;
  ciphertext: string;
  tag: string;
  fields: {
    version: number;
    sender: string;
    recipient: string;
    msg_id: string;
    time: number;
    spk_id: number;
    opk_id: number;
    ik_a: string;
    ek_a: string;
  };
  /** Which keys of `inputs.x25519` it was sealed with. */
  ephemeral: string;
  text: string;
  /** `u8 type || u32 len || text || zeros` up to its bucket. */
  plaintext: string;
  /** DH1 to DH3 (and DH4), in order. */
  dh: string[];
  /** `F || DH1 || DH2 || DH3 [|| DH4]`. */
  ikm: string;
  ad: string;
  sk: string;
  enc: string;
  ivk: string;
  mac: string;
  /** `HMAC(ivk, msg_id)`. */
  iv: string;
  rk: string;
  /** `HMAC(rk, msg_id)`: what the `delivered` receipt carries (section 9.6). */
  proof: string;
  /** The context it opens in. */
  open: ReceiveContext;
}

/**
 * What receiving a `MAIL` must give: a refusal code of section 9.4, or
 * `shown` (it opens; `text` given), or `duplicate` (silent, acknowledged).
 */
export type ReceiveExpect =
  | "mail-malformed"
  | "mail-stale"
  | "mail-tampered"
  | "unknown-identity-key"
  | "unknown-prekey"
  | "misaddressed"
  | "duplicate"
  | "shown";

/** One receiving case. */
export interface ReceiveVector extends ReceiveContext {
  name: string;
  /** The step of section 9.4 that decides. */
  step: number;
  mail: string;
  expect: ReceiveExpect;
  /** On `shown`: the text. */
  text?: string;
}

/** What checking a bundle must give (section 9.2 step 3). */
export type BundleExpect = "ok" | "bad-bundle" | "prekey-expired" | "prekey-rollback";

/** One bundle case. */
export interface BundleVector {
  name: string;
  /** Whose bundle the sender asked for. */
  user: string;
  /** Which RSA key of `inputs.rsa` the sender has pinned for `user`. */
  owner: string;
  /** The `IK_CERT`: a name in `certificates`. */
  identity_cert: string;
  /** The `SPK_CERT`: a name in `certificates`. */
  signed_prekey_cert: string;
  now: number;
  /** The certificates verified before (`peers/<user>.mail`), when any: names in `certificates`. */
  previous?: { identity_cert: string; signed_prekey_cert: string };
  expect: BundleExpect;
}

/** The whole file. */
export interface MailVectorFile {
  description: string;
  notes: string[];
  inputs: {
    version: number;
    sender: string;
    recipient: string;
    /** A third user: carol's RSA key signs the forgeries; mail is misaddressed to her. */
    other: string;
    rsa: Record<string, RsaVectorKey>;
    x25519: Record<string, X25519VectorKey>;
  };
  /**
   * Every certificate of the file, by name: those made by an RSA key (their
   * RSA-PSS signatures made once: check them, do not compare), and those
   * altered from them.
   */
  certificates: Record<string, string>;
  /** Bob's bundle as the server hands it out with `fetch`. */
  bundle: {
    user: string;
    /** Bob's RSA key, SPKI DER. */
    identity: string;
    identity_cert: string;
    signed_prekey_cert: string;
    /** `OPK` = `opk_id u32 || opk[32]`. */
    one_time_prekey: string;
    now: number;
    /** The fields of the two certificates, decoded. */
    ik: string;
    ik_created: number;
    spk_id: number;
    spk: string;
    spk_created: number;
    spk_expires: number;
    opk_id: number;
    opk: string;
  };
  /** Alice's `IK_CERT`: what bob verifies, with alice's RSA key, before trusting `ik_a` (section 9.4 step 2). */
  sender_identity_cert: string;
  messages: SealedVector[];
  receive: ReceiveVector[];
  bundle_cases: BundleVector[];
}

const te = new TextEncoder();
const hex = (b: Uint8Array) => b.toHex();
const unhex = (s: string) => Uint8Array.fromHex(s);

function fixed(label: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(sha256(te.encode(`im test vector mail ${label}`)));
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const u8 = (n: number) => Uint8Array.of(n);

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n);
  return b;
}

/** `bytes8(x)`, `bytes16(x)` of PROTOCOL.md's notation. */
const bytes8 = (x: Uint8Array) => concat(u8(x.length), x);
const bytes16 = (x: Uint8Array) => concat(Uint8Array.of(x.length >> 8, x.length & 0xff), x);

async function H(b: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>));
}

/** TH(label, parts...) of PROTOCOL.md section 3. */
async function TH(label: string, ...parts: Uint8Array[]): Promise<Uint8Array<ArrayBuffer>> {
  return await H(concat(...[te.encode(label), ...parts].flatMap((p) => [u32(p.length), p])));
}

async function HKDF(ikm: Uint8Array, salt: Uint8Array, info: string): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey("raw", ikm as Uint8Array<ArrayBuffer>, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, info: te.encode(info) },
      key,
      256,
    ),
  );
}

const HMAC = (key: Uint8Array, data: Uint8Array) => new HmacSha256(key).mac(data);

/** PKCS#8 prefix of an X25519 private key (RFC 8410): the scalar follows. */
const X25519_PKCS8_PREFIX = unhex("302e020100300506032b656e04220420");

interface X25519Pair {
  privateKey: CryptoKey;
  publicRaw: Uint8Array<ArrayBuffer>;
  vector: X25519VectorKey;
}

async function x25519Pair(name: string): Promise<X25519Pair> {
  const scalar = fixed(`x25519 ${name}`);
  const pkcs8 = concat(X25519_PKCS8_PREFIX, scalar);
  const extractable = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, true, ["deriveBits"]);
  const jwk = await crypto.subtle.exportKey("jwk", extractable);
  const publicRaw = Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" });
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, false, ["deriveBits"]);
  return {
    privateKey,
    publicRaw,
    vector: { scalar: hex(scalar), private_pkcs8: hex(pkcs8), public: hex(publicRaw) },
  };
}

async function x25519(own: CryptoKey, peerRaw: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const pub = await crypto.subtle.importKey("raw", peerRaw as Uint8Array<ArrayBuffer>, { name: "X25519" }, false, []);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: pub }, own, 256));
}

const PSS = { name: "RSA-PSS", hash: "SHA-256" };
const PSS_PARAMS = { name: "RSA-PSS", saltLength: 32 };

async function rsaKey(): Promise<{ spki: string; private_pkcs8: string }> {
  const pair = await crypto.subtle.generateKey(
    { ...PSS, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  return {
    spki: hex(new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey))),
    private_pkcs8: hex(new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey))),
  };
}

/** The section 6 padding rule: 64, 128, ... 16,384, then multiples of 4,096. */
function bucketOf(n: number): number {
  if (n > 16_384) return Math.ceil(n / 4096) * 4096;
  let b = 64;
  while (b < n) b *= 2;
  return b;
}

/** `u8 type || u32 len || text || zeros` up to the bucket (section 9.3). */
function plaintextOf(text: Uint8Array, type = 0x01): Uint8Array<ArrayBuffer> {
  const p = new Uint8Array(bucketOf(5 + text.length));
  p.set(concat(u8(type), u32(text.length), text));
  return p;
}

const DAY = 24 * 60 * 60 * 1000;
/** 2026-01-15 12:00:00 UTC: when the messages are written. */
const T = Date.UTC(2026, 0, 15, 12);
const SENDER = "alice", RECIPIENT = "bob", OTHER = "carol";
const VERSION = 1;
const SPK_ID = 3, OPK_ID = 42, SPK_ID_LATER = 4;
const IK_A_CREATED = T - 25 * DAY;
const IK_B_CREATED = T - 20 * DAY;
const IK_B_LATER = T - 5 * DAY;
const SPK_CREATED = T - 2 * DAY;
const SPK_EXPIRES = SPK_CREATED + 30 * DAY;
const SPK_LATER_CREATED = T - DAY;
/** When bob receives (and alice fetched): a minute after the messages were written. */
const NOW = T + 60_000;
const MAX_AGE = 31 * DAY, MAX_SKEW = 120_000;

/** What is randomized, or was made once: taken from an earlier file unless `fresh`. */
export interface Made {
  rsa: Record<string, { spki: string; private_pkcs8: string }>;
  /** The certificates made before, by name: their signatures are used again while they verify. */
  certificates?: Record<string, string>;
}

/**
 * The signature at the end of a certificate made before: `bytes16(sig)`
 * after the fixed fields of `IK_CERT` or `SPK_CERT` (section 9.1).
 * @param cert the certificate's hex
 * @param kind which certificate
 * @returns the signature, or undefined when it does not parse
 */
function signatureOf(cert: string | undefined, kind: "ik" | "spk"): Uint8Array<ArrayBuffer> | undefined {
  if (cert === undefined) return undefined;
  const b = unhex(cert);
  const at = 2 + (b[1] ?? 0) + (kind === "ik" ? 32 + 8 : 4 + 32 + 8 + 8);
  if (b.length < at + 2) return undefined;
  const n = (b[at]! << 8) | b[at + 1]!;
  return b.length === at + 2 + n ? b.slice(at + 2) : undefined;
}

/** Header offsets of section 9.3, for names of these lengths. */
function offsets(sender: string, recipient: string) {
  const s = 1 + 1 + sender.length, r = s + 1 + recipient.length;
  return { version: 0, sender: 1, recipient: s, msgId: r, time: r + 16, spkId: r + 24, opkId: r + 28, ik: r + 32, ek: r + 64, end: r + 96 };
}

/**
 * Build the file. RSA keys and signatures come from `earlier` when given
 * (a signature that no longer verifies over its content is made again);
 * everything else is computed from fixed inputs.
 * @param earlier the RSA keys and signatures of the file as it is, if any
 * @returns the file's content
 */
export async function buildMailVectors(earlier?: Made): Promise<MailVectorFile> {
  const rsaMade = earlier?.rsa ?? { [SENDER]: await rsaKey(), [RECIPIENT]: await rsaKey(), [OTHER]: await rsaKey() };
  const oldCerts = earlier?.certificates ?? {};
  const rsa: Record<string, RsaVectorKey> = {};
  const signers: Record<string, { sign: CryptoKey; verify: CryptoKey; fp: Uint8Array }> = {};
  for (const user of [SENDER, RECIPIENT, OTHER]) {
    const m = rsaMade[user]!;
    const fp = await H(unhex(m.spki));
    rsa[user] = {
      spki: m.spki,
      fingerprint: hex(fp),
      fingerprint_text: `SHA256:${fp.toBase64({ omitPadding: true })}`,
      private_pkcs8: m.private_pkcs8,
    };
    signers[user] = {
      sign: await crypto.subtle.importKey("pkcs8", unhex(m.private_pkcs8), PSS, false, ["sign"]),
      verify: await crypto.subtle.importKey("spki", unhex(m.spki), PSS, false, ["verify"]),
      fp,
    };
  }
  const certificates: Record<string, string> = {};
  /** `PSS(key, label || 0x00 || th)`, or the one made before if it still verifies. */
  async function pss(name: string, kind: "ik" | "spk", signer: string, label: string, th: Uint8Array): Promise<Uint8Array> {
    const s = signers[signer]!;
    const data = concat(te.encode(label), u8(0), th);
    const old = signatureOf(oldCerts[name], kind);
    if (old !== undefined && await crypto.subtle.verify(PSS_PARAMS, s.verify, old, data)) return old;
    return new Uint8Array(await crypto.subtle.sign(PSS_PARAMS, s.sign, data));
  }

  // Section 9.1: IK_CERT and SPK_CERT, signed by `signer`'s RSA key, with
  // `signer`'s fingerprint as `fp_user` (a forgery by carol in bob's name
  // verifies with neither key of bob's).
  async function ikCert(name: string, signer: string, user: string, ik: Uint8Array, created: number, version = VERSION) {
    const th = await TH("im v1 mail identity", u8(version), te.encode(user), signers[signer]!.fp, ik, u64(BigInt(created)));
    const sig = await pss(name, "ik", signer, "im v1 mail identity signature", th);
    const c = concat(u8(version), bytes8(te.encode(user)), ik, u64(BigInt(created)), bytes16(sig));
    certificates[name] = hex(c);
    return c;
  }
  async function spkCert(
    name: string,
    signer: string,
    user: string,
    ik: Uint8Array,
    id: number,
    spk: Uint8Array,
    created: number,
    expires: number,
  ) {
    const th = await TH(
      "im v1 mail prekey",
      u8(VERSION),
      te.encode(user),
      signers[signer]!.fp,
      ik,
      u32(id),
      spk,
      u64(BigInt(created)),
      u64(BigInt(expires)),
    );
    const sig = await pss(name, "spk", signer, "im v1 mail prekey signature", th);
    const c = concat(u8(VERSION), bytes8(te.encode(user)), u32(id), spk, u64(BigInt(created)), u64(BigInt(expires)), bytes16(sig));
    certificates[name] = hex(c);
    return c;
  }

  const keys = {
    ik_a: await x25519Pair("ik_a"),
    ik_b: await x25519Pair("ik_b"),
    spk_b: await x25519Pair("spk_b"),
    opk_b: await x25519Pair("opk_b"),
    ek_a: await x25519Pair("ek_a"),
    ek_a2: await x25519Pair("ek_a2"),
    spk_b_later: await x25519Pair("spk_b_later"),
    ik_x: await x25519Pair("ik_x"),
  };
  const fpA = signers[SENDER]!.fp, fpB = signers[RECIPIENT]!.fp;

  // The bundle, and the certificates of the bundle cases.
  const ikB = keys.ik_b.publicRaw, spkB = keys.spk_b.publicRaw;
  const ikCertB = await ikCert("ik_cert_bob", RECIPIENT, RECIPIENT, ikB, IK_B_CREATED);
  const spkCertB = await spkCert("spk_cert_bob", RECIPIENT, RECIPIENT, ikB, SPK_ID, spkB, SPK_CREATED, SPK_EXPIRES);
  const ikCertA = await ikCert("ik_cert_alice", SENDER, SENDER, keys.ik_a.publicRaw, IK_A_CREATED);
  await ikCert("ik_cert_bob_later", RECIPIENT, RECIPIENT, ikB, IK_B_LATER);
  await spkCert(
    "spk_cert_bob_later",
    RECIPIENT,
    RECIPIENT,
    ikB,
    SPK_ID_LATER,
    keys.spk_b_later.publicRaw,
    SPK_LATER_CREATED,
    SPK_LATER_CREATED + 30 * DAY,
  );
  await ikCert("ik_cert_bob_by_carol", OTHER, RECIPIENT, ikB, IK_B_CREATED);
  await spkCert("spk_cert_bob_by_carol", OTHER, RECIPIENT, ikB, SPK_ID, spkB, SPK_CREATED, SPK_EXPIRES);
  await spkCert(
    "spk_cert_bob_other_ik",
    RECIPIENT,
    RECIPIENT,
    keys.ik_x.publicRaw,
    SPK_ID,
    spkB,
    SPK_CREATED,
    SPK_EXPIRES,
  );
  await ikCert("ik_cert_carol_by_bob", RECIPIENT, OTHER, ikB, IK_B_CREATED);
  const opk = concat(u32(OPK_ID), keys.opk_b.publicRaw);

  // Sections 9.2 and 9.3, the sender's side.
  async function seal(a: {
    sender?: string;
    recipient?: string;
    ikA?: X25519Pair;
    ek: X25519Pair;
    msgId: Uint8Array;
    time: number;
    withOpk: boolean;
    plaintext: Uint8Array;
  }) {
    const sender = a.sender ?? SENDER, recipient = a.recipient ?? RECIPIENT, ikA = a.ikA ?? keys.ik_a;
    const dh = [
      await x25519(ikA.privateKey, spkB), // DH1 = X25519(ik_a, spk_b)
      await x25519(a.ek.privateKey, ikB), // DH2 = X25519(ek_a, ik_b)
      await x25519(a.ek.privateKey, spkB), // DH3 = X25519(ek_a, spk_b)
    ];
    if (a.withOpk) dh.push(await x25519(a.ek.privateKey, keys.opk_b.publicRaw)); // DH4 = X25519(ek_a, opk_b)
    const ikm = concat(new Uint8Array(32).fill(0xff), ...dh);
    const ad = await TH("im v1 mail ad", u8(VERSION), te.encode(sender), te.encode(recipient), fpA, fpB, ikA.publicRaw, ikB);
    const sk = await HKDF(ikm, ad, "im v1 mail secret");
    const enc = await HKDF(sk, a.msgId, "im v1 mail enc");
    const ivk = await HKDF(sk, a.msgId, "im v1 mail iv");
    const mac = await HKDF(sk, a.msgId, "im v1 mail mac");
    const rk = await HKDF(sk, a.msgId, "im v1 mail receipt");
    const header = concat(
      u8(VERSION),
      bytes8(te.encode(sender)),
      bytes8(te.encode(recipient)),
      a.msgId,
      u64(BigInt(a.time)),
      u32(SPK_ID),
      u32(a.withOpk ? OPK_ID : 0),
      ikA.publicRaw,
      a.ek.publicRaw,
    );
    const iv = HMAC(ivk, a.msgId);
    const ciphertext = new MdCfb(enc).encrypt(iv, a.plaintext);
    const tag = HMAC(mac, concat(header, ciphertext));
    return { mail: concat(header, ciphertext, tag), header, ciphertext, tag, dh, ikm, ad, sk, enc, ivk, mac, iv, rk, proof: HMAC(rk, a.msgId) };
  }

  const openContext: ReceiveContext = { from: SENDER, now: NOW, held: { spk: [SPK_ID], opk: [OPK_ID] }, seen: [] };
  const msgId1 = fixed("msg_id 1").slice(0, 16), msgId2 = fixed("msg_id 2").slice(0, 16);
  const text1 = "Hello bob, this is alice: sealed to your one-time prekey 42. Grüße, ünïcödé ✓";
  const text2 = "No one-time prekey was left.";
  const sealedOf = async (
    name: string,
    ek: "ek_a" | "ek_a2",
    msgId: Uint8Array,
    time: number,
    text: string,
    withOpk: boolean,
  ): Promise<SealedVector> => {
    const plaintext = plaintextOf(te.encode(text));
    const s = await seal({ ek: keys[ek], msgId, time, withOpk, plaintext });
    return {
      name,
      mail: hex(s.mail),
      header: hex(s.header),
      ciphertext: hex(s.ciphertext),
      tag: hex(s.tag),
      fields: {
        version: VERSION,
        sender: SENDER,
        recipient: RECIPIENT,
        msg_id: hex(msgId),
        time,
        spk_id: SPK_ID,
        opk_id: withOpk ? OPK_ID : 0,
        ik_a: hex(keys.ik_a.publicRaw),
        ek_a: hex(keys[ek].publicRaw),
      },
      ephemeral: ek,
      text,
      plaintext: hex(plaintext),
      dh: s.dh.map(hex),
      ikm: hex(s.ikm),
      ad: hex(s.ad),
      sk: hex(s.sk),
      enc: hex(s.enc),
      ivk: hex(s.ivk),
      mac: hex(s.mac),
      iv: hex(s.iv),
      rk: hex(s.rk),
      proof: hex(s.proof),
      open: openContext,
    };
  };
  const withOpk = await sealedOf("with a one-time prekey", "ek_a", msgId1, T, text1, true);
  const withoutOpk = await sealedOf("without a one-time prekey", "ek_a2", msgId2, T + 1000, text2, false);

  // Section 9.4: each case a MAIL and what the recipient holds.
  const m1 = unhex(withOpk.mail), m2 = unhex(withoutOpk.mail);
  const o = offsets(SENDER, RECIPIENT);
  const edit = (mail: Uint8Array, at: number, bytes: Uint8Array) => {
    const x = new Uint8Array(mail);
    x.set(bytes, at);
    return x;
  };
  const flip = (mail: Uint8Array, at: number) => edit(mail, at, u8(mail[at]! ^ 0x01));
  const sealText = async (tag: string, p: Uint8Array, extra: { recipient?: string; ikA?: X25519Pair } = {}) =>
    (await seal({ ...extra, ek: keys.ek_a2, msgId: fixed(`msg_id ${tag}`).slice(0, 16), time: T, withOpk: false, plaintext: p })).mail;
  const badLen = plaintextOf(te.encode("hi"));
  badLen.set(u32(60), 1); // 60 > 64 - 5
  const badPadding = plaintextOf(te.encode("hi"));
  badPadding[63] = 0x01;
  const ctx = (over: Partial<ReceiveContext> = {}): ReceiveContext => ({ ...openContext, ...over });
  const receive: ReceiveVector[] = [];
  const add = (step: number, name: string, mail: Uint8Array, expect: ReceiveExpect, over: Partial<ReceiveContext> = {}, text?: string) => {
    receive.push({ name, step, mail: hex(mail), ...ctx(over), expect, ...(text === undefined ? {} : { text }) });
  };

  // Step 1: decode.
  add(1, "truncated: the last byte of the tag missing", m2.subarray(0, m2.length - 1), "mail-malformed");
  add(1, "truncated inside the header (after ik_a)", m2.subarray(0, o.ek), "mail-malformed");
  add(1, "empty", new Uint8Array(0), "mail-malformed");
  add(1, "version 2", edit(m2, o.version, u8(2)), "mail-malformed");
  add(1, "version 0", edit(m2, o.version, u8(0)), "mail-malformed");
  add(1, "sender name not valid (rule 2.9): alice -> al!ce", edit(m2, o.sender + 3, te.encode("!")), "mail-malformed");
  add(1, "recipient name not valid (rule 2.9): bob -> b b", edit(m2, o.recipient + 2, te.encode(" ")), "mail-malformed");
  add(1, "recipient name empty (length byte 0)", concat(m2.subarray(0, o.recipient), u8(0), m2.subarray(o.msgId)), "mail-malformed");
  add(1, "spk_id 0", edit(m2, o.spkId, u32(0)), "mail-malformed");
  add(1, "time past the largest safe integer", edit(m2, o.time, u64(2n ** 63n)), "mail-malformed");
  add(1, "ciphertext not a padding bucket: one byte appended", concat(m2, u8(0)), "mail-malformed");
  add(1, "ciphertext shorter than the smallest bucket (5 bytes)", concat(m2.subarray(0, o.end + 5), m2.subarray(m2.length - 32)), "mail-malformed");
  // Step 1: the time window.
  add(1, "too old: now is 31 days and 1 ms after time", m1, "mail-stale", { now: T + MAX_AGE + 1 });
  add(1, "too far ahead: time is 120 s and 1 ms after now", m1, "mail-stale", { now: T - MAX_SKEW - 1 });
  add(1, "re-dated 40 days back: stale before its tag is checked", edit(m1, o.time, u64(BigInt(T - 40 * DAY))), "mail-stale");
  add(1, "edge: now is exactly 31 days after time", m1, "shown", { now: T + MAX_AGE }, text1);
  add(1, "edge: time is exactly 120 s after now", m1, "shown", { now: T - MAX_SKEW }, text1);
  // Step 1: the sender the server authenticated.
  add(1, "the push's from (carol) is not the header's sender", m1, "mail-tampered", { from: OTHER });
  // Step 2: keys.
  add(2, "sealed with an identity key that is not alice's (her IK_CERT names ik_a)", await sealText("ik_x", plaintextOf(te.encode("from ik_x")), { ikA: keys.ik_x }), "unknown-identity-key");
  add(2, "ik_a replaced in the header: unknown before its tag is checked", edit(m1, o.ik, keys.ik_x.publicRaw), "unknown-identity-key");
  add(2, "spk_id not held: 3 -> 4 in the header", edit(m1, o.spkId, u32(SPK_ID_LATER)), "unknown-prekey");
  add(2, "opk_id not held: 42 -> 43 in the header", edit(m1, o.opkId, u32(OPK_ID + 1)), "unknown-prekey");
  add(2, "the one-time prekey 42 is no longer held (used, or handed out twice)", m1, "unknown-prekey", { held: { spk: [SPK_ID], opk: [] } });
  add(2, "the signed prekey 3 is no longer held (retired)", m2, "unknown-prekey", { held: { spk: [], opk: [OPK_ID] } });
  add(2, "duplicate: the one-time prekey is gone and msg_id is in seen", m1, "duplicate", { held: { spk: [SPK_ID], opk: [] }, seen: [withOpk.fields.msg_id] });
  // Step 3: the MAC.
  add(3, "re-addressed: recipient bob -> rob (a valid name)", edit(m1, o.recipient + 1, te.encode("r")), "mail-tampered");
  add(3, "re-dated within the window: time + 1 ms", edit(m1, o.time, u64(BigInt(T + 1))), "mail-tampered");
  add(3, "msg_id: one bit flipped", flip(m1, o.msgId), "mail-tampered");
  add(3, "ek_a replaced by another valid key (ek_a2)", edit(m1, o.ek, keys.ek_a2.publicRaw), "mail-tampered");
  add(3, "ek_a replaced by a low-order point (all zeros): an all-zero DH value", edit(m1, o.ek, new Uint8Array(32)), "mail-tampered");
  add(3, "opk_id 42 -> 0: DH4 left out", edit(m1, o.opkId, u32(0)), "mail-tampered");
  add(3, "opk_id 0 -> 42 (held): DH4 added", edit(m2, o.opkId, u32(OPK_ID)), "mail-tampered");
  add(3, "ciphertext: first byte flipped", flip(m1, o.end), "mail-tampered");
  add(3, "ciphertext: last byte flipped", flip(m1, m1.length - 33), "mail-tampered");
  add(3, "tag: first byte flipped", flip(m1, m1.length - 32), "mail-tampered");
  add(3, "tag: last byte flipped", flip(m1, m1.length - 1), "mail-tampered");
  add(3, "one bucket of zeros inserted before the tag", concat(m2.subarray(0, m2.length - 32), new Uint8Array(64), m2.subarray(m2.length - 32)), "mail-tampered");
  add(3, "duplicate of a tampered message: still tampered (step 3 before step 4)", flip(m1, m1.length - 1), "mail-tampered", { seen: [withOpk.fields.msg_id] });
  // Step 4: addressee and freshness.
  add(4, "sealed to bob's keys but addressed to carol", await sealText("carol", plaintextOf(te.encode("for carol?")), { recipient: OTHER }), "misaddressed");
  add(4, "duplicate: msg_id already in seen (acknowledged with its proof)", m1, "duplicate", { seen: [withOpk.fields.msg_id] });
  // Step 5: the plaintext, authenticated but not decodable.
  add(5, "plaintext type 2", await sealText("type", plaintextOf(te.encode("hi"), 0x02)), "mail-malformed");
  add(5, "plaintext len past its bucket", await sealText("len", badLen), "mail-malformed");
  add(5, "plaintext padding not all zeros", await sealText("padding", badPadding), "mail-malformed");
  add(5, "text not UTF-8", await sealText("utf8", plaintextOf(Uint8Array.of(0x68, 0xff, 0x69))), "mail-malformed");
  // Steps 1 to 6 pass.
  add(6, "shown: with a one-time prekey", m1, "shown", {}, text1);
  add(6, "shown: without a one-time prekey", m2, "shown", {}, text2);

  // Section 9.2 step 3. Certificates altered from those made above.
  const altered = (name: string, b: Uint8Array) => {
    certificates[name] = hex(b);
  };
  altered("ik_cert_bob_version_2", edit(ikCertB, 0, u8(2)));
  altered("spk_cert_bob_truncated", spkCertB.subarray(0, spkCertB.length - 1));
  altered("ik_cert_bob_ik_flipped", flip(ikCertB, 1 + 1 + RECIPIENT.length));
  altered("spk_cert_bob_expires_plus_1", edit(spkCertB, 1 + 1 + RECIPIENT.length + 4 + 32 + 8, u64(BigInt(SPK_EXPIRES + 1))));
  const bundle_cases: BundleVector[] = [];
  const addB = (
    name: string,
    identity: string,
    prekey: string,
    expect: BundleExpect,
    over: { now?: number; owner?: string; user?: string; previous?: [string, string] } = {},
  ) => {
    for (const c of [identity, prekey, ...(over.previous ?? [])]) {
      if (certificates[c] === undefined) throw new Error(`no certificate ${c}`);
    }
    bundle_cases.push({
      name,
      user: over.user ?? RECIPIENT,
      owner: over.owner ?? RECIPIENT,
      identity_cert: identity,
      signed_prekey_cert: prekey,
      now: over.now ?? NOW,
      ...(over.previous ? { previous: { identity_cert: over.previous[0], signed_prekey_cert: over.previous[1] } } : {}),
      expect,
    });
  };
  const IK = "ik_cert_bob", SPK = "spk_cert_bob";
  addB("bob's bundle", IK, SPK, "ok");
  addB("IK_CERT signed by another key (carol's) in bob's name", "ik_cert_bob_by_carol", SPK, "bad-bundle");
  addB("SPK_CERT signed by another key (carol's) in bob's name", IK, "spk_cert_bob_by_carol", "bad-bundle");
  addB("both certificates signed by carol's key", "ik_cert_bob_by_carol", "spk_cert_bob_by_carol", "bad-bundle");
  addB("the key pinned for bob is carol's", IK, SPK, "bad-bundle", { owner: OTHER });
  addB("SPK_CERT signed by bob over another identity key", IK, "spk_cert_bob_other_ik", "bad-bundle");
  addB("IK_CERT names carol (signed by bob)", "ik_cert_carol_by_bob", SPK, "bad-bundle");
  addB("bob's bundle handed out for carol", IK, SPK, "bad-bundle", { user: OTHER });
  addB("IK_CERT version 2", "ik_cert_bob_version_2", SPK, "bad-bundle");
  addB("SPK_CERT truncated (last byte missing)", IK, "spk_cert_bob_truncated", "bad-bundle");
  addB("IK_CERT: one bit of ik flipped", "ik_cert_bob_ik_flipped", SPK, "bad-bundle");
  addB("SPK_CERT: expires changed (+1 ms)", IK, "spk_cert_bob_expires_plus_1", "bad-bundle");
  addB("prekey expired: now = expires", IK, SPK, "prekey-expired", { now: SPK_EXPIRES });
  addB("edge: now = expires - 1 ms", IK, SPK, "ok", { now: SPK_EXPIRES - 1 });
  addB("SPK_CERT made in the future: created > now + 120 s", IK, SPK, "bad-bundle", { now: SPK_CREATED - MAX_SKEW - 1 });
  addB("edge: created = now + 120 s", IK, SPK, "ok", { now: SPK_CREATED - MAX_SKEW });
  addB("prekey-rollback: an SPK_CERT older than the one verified before", IK, SPK, "prekey-rollback", { previous: [IK, "spk_cert_bob_later"] });
  addB("prekey-rollback: an IK_CERT older than the one verified before", IK, SPK, "prekey-rollback", { previous: ["ik_cert_bob_later", SPK] });
  addB("the same certificates as verified before", IK, SPK, "ok", { previous: [IK, SPK] });
  addB("newer certificates than those verified before", "ik_cert_bob_later", "spk_cert_bob_later", "ok", { previous: [IK, SPK] });

  const x25519Keys: Record<string, X25519VectorKey> = {};
  for (const [name, k] of Object.entries(keys)) x25519Keys[name] = k.vector;

  return {
    description:
      "im mailbox vectors (PROTOCOL.md section 9): bob's bundle, two MAILs from alice to bob (with and without a one-time prekey) with every value of sections 9.2 and 9.3, the receiving cases of section 9.4 in the order of its steps, and the bundle cases of section 9.2 step 3. Byte strings are hex; times are ms since the epoch. Generated by make_mail_vectors.ts; checked against lib/proto and lib/client by tests/mail_vectors_test.ts.",
    notes: [
      "Certificates are checked, not compared: RSA-PSS is randomized, so the signatures inside IK_CERT and SPK_CERT were made once. Verify them with the RSA key of inputs.rsa the case names (RSA-PSS, SHA-256, MGF1-SHA-256, salt 32). certificates holds every one by name (the bundle's, alice's, carol's forgeries, newer ones of bob's, and altered copies); bundle_cases name them.",
      "The RSA and X25519 private keys are throwaway keys made for these vectors only; no server or user holds them.",
      "X25519 private keys are PKCS#8 (RFC 8410) of a fixed scalar (clamped when used); ek_a sealed the first message and ek_a2 the second and every case sealed anew; ik_x is an identity key that is not alice's; spk_b_later is a newer signed prekey (id 4) that only the rollback cases name.",
      "messages: everything is deterministic; open each MAIL as bob with ik_b, spk_b (id 3) and, for opk_id 42, opk_b, fp_sender alice's fingerprint and fp_recipient bob's, and compare the text, rk and proof. Sealing the recorded plaintext with the recorded ephemeral key and msg_id gives the MAIL again byte for byte.",
      "receive: each case is one `mail` push to bob: `from` as the server says, `mail` the MAIL, at clock `now`, bob holding the prekeys listed in `held` (spk id 3 is spk_b, opk id 42 is opk_b) and the msg_ids in `seen`, and knowing alice's verified IK_CERT (sender_identity_cert) under her pinned RSA key. Run the steps of section 9.4 in order; the first that fails gives `expect`. `shown` means it opens to `text`; `duplicate` means not shown, not reported, only acknowledged.",
      "bundle_cases: run section 9.2 step 3 on identity_cert and signed_prekey_cert as a sender that asked for `user`, with the RSA key inputs.rsa[owner] pinned for it, at `now`, with `previous` the certificates verified before when given.",
    ],
    inputs: {
      version: VERSION,
      sender: SENDER,
      recipient: RECIPIENT,
      other: OTHER,
      rsa,
      x25519: x25519Keys,
    },
    certificates,
    bundle: {
      user: RECIPIENT,
      identity: rsa[RECIPIENT]!.spki,
      identity_cert: hex(ikCertB),
      signed_prekey_cert: hex(spkCertB),
      one_time_prekey: hex(opk),
      now: NOW,
      ik: hex(ikB),
      ik_created: IK_B_CREATED,
      spk_id: SPK_ID,
      spk: hex(spkB),
      spk_created: SPK_CREATED,
      spk_expires: SPK_EXPIRES,
      opk_id: OPK_ID,
      opk: hex(keys.opk_b.publicRaw),
    },
    sender_identity_cert: hex(ikCertA),
    messages: [withOpk, withoutOpk],
    receive,
    bundle_cases,
  };
}

/**
 * The file as it is on disk, or undefined when there is none.
 * @returns its content
 */
export async function readMailVectors(): Promise<MailVectorFile | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(MAIL_VECTORS_FILE)) as MailVectorFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * The RSA keys and signatures of a file, to build it again.
 * @param f the file
 * @returns what was made once
 */
export function madeOf(f: MailVectorFile): Made {
  const rsa: Made["rsa"] = {};
  for (const [user, k] of Object.entries(f.inputs.rsa)) rsa[user] = { spki: k.spki, private_pkcs8: k.private_pkcs8 };
  return { rsa, certificates: f.certificates };
}

if (import.meta.main) {
  const fresh = Deno.args.includes("--fresh");
  const old = fresh ? undefined : await readMailVectors();
  const doc = await buildMailVectors(old && madeOf(old));
  await Deno.writeTextFile(MAIL_VECTORS_FILE, JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote ${MAIL_VECTORS_FILE.pathname}${old ? "" : " with new RSA keys and signatures"}`);
}
