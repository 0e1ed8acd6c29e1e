/**
 * The mailbox certificates (PROTOCOL.md section 9.1): a user's RSA key
 * certifies its long-term X25519 identity key (`IK_CERT`) and each signed
 * prekey (`SPK_CERT`); one-time prekeys (`OPK`) are not signed. Their codecs
 * and signatures; the checks a sender runs on a fetched bundle (section 9.2
 * step 3) are mail_bundle.ts's.
 *
 * Both signatures are `PSS(user key, label || 0x00 || TH(...))` under labels
 * of their own, so neither passes for the other, nor for a login's or a
 * peer's signature.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, generateX25519, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { decodeIdentityCert, makeIdentityCert, verifyIdentityCert } from "./mail_certs.ts";
 * const b = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const ik = await generateX25519(false);
 * const cert = decodeIdentityCert(await makeIdentityCert(b, "B", ik.publicRaw, Date.now()));
 * assert.ok(await verifyIdentityCert(cert, b.publicIdentity));
 * ```
 * @module
 */

import {
  ByteReader,
  ByteWriter,
  fromUtf8,
  isImError,
  ProtocolError,
  u64be,
  utf8,
} from "../util/mod.ts";
import {
  Label,
  MAX_RSA_BITS,
  MIN_RSA_BITS,
  type PrivateIdentity,
  type PublicIdentity,
  signPss,
  transcriptHash,
  verifyPss,
  X25519_PUBLIC_BYTES,
} from "../crypto/mod.ts";
import { signedContent } from "./_login.ts";
import { isValidUsername } from "./username.ts";

/** The version byte of `IK_CERT`, `SPK_CERT` and `MAIL` (section 9). */
export const MAIL_VERSION = 1;
/** Bytes of an `OPK`: `opk_id u32 || opk[32]` (section 9.1). */
export const OPK_BYTES = 4 + X25519_PUBLIC_BYTES;

/** Shortest signature accepted: that of a 2048-bit key. */
const MIN_SIG_BYTES = MIN_RSA_BITS / 8;
/** Longest signature accepted: that of a 4096-bit key. */
const MAX_SIG_BYTES = MAX_RSA_BITS / 8;
/** The labels the two signatures are made under (section 9.1). */
const IK_SIG = Label.MAIL_IDENTITY_SIGNATURE;
const SPK_SIG = Label.MAIL_PREKEY_SIGNATURE;
/** Largest u32: ids are counters from 1 (0 means "none" in a header). */
const U32_MAX = 0xffff_ffff;

/** An `IK_CERT`, decoded (section 9.1). */
export interface IdentityCert {
  /** Always {@link MAIL_VERSION}. */
  readonly version: number;
  /** The user it certifies (rule 2.9). */
  readonly user: string;
  /** The X25519 identity key, 32 bytes. */
  readonly ik: Uint8Array;
  /** When it was made, ms since the epoch (server's clock). */
  readonly created: number;
  /** `sig_ik`: RSA-PSS by the user's key. */
  readonly sig: Uint8Array;
}

/** An `SPK_CERT`, decoded (section 9.1). */
export interface PrekeyCert {
  /** Always {@link MAIL_VERSION}. */
  readonly version: number;
  /** The user it certifies (rule 2.9). */
  readonly user: string;
  /** `spk_id`, from 1. */
  readonly id: number;
  /** The X25519 signed prekey, 32 bytes. */
  readonly spk: Uint8Array;
  /** When it was made, ms since the epoch (server's clock). */
  readonly created: number;
  /** When senders stop using it (`created + 30 days`). */
  readonly expires: number;
  /** `sig_spk`: RSA-PSS by the user's key. */
  readonly sig: Uint8Array;
}

function badCert(what: string, why: string): ProtocolError {
  return new ProtocolError("bad-cert", `Cannot read ${what}: ${why}`);
}

function checkVersion(version: number, what: string): void {
  if (version !== MAIL_VERSION) {
    throw badCert(what, `version ${version}, expected ${MAIL_VERSION}`);
  }
}

function checkUser(user: string, what: string): void {
  if (!isValidUsername(user)) {
    const shown = user.length > 40 ? `${user.slice(0, 40)}...` : user;
    throw badCert(what, `invalid username "${shown}"`);
  }
}

function checkKeyBytes(key: Uint8Array, name: string, what: string): void {
  if (key.length !== X25519_PUBLIC_BYTES) {
    throw badCert(
      what,
      `${name}: expected ${X25519_PUBLIC_BYTES} bytes, got ${key.length}`,
    );
  }
}

function checkTime(t: number, name: string, what: string): void {
  if (!Number.isSafeInteger(t) || t < 0) {
    throw badCert(what, `${name}: expected ms since the epoch, got ${t}`);
  }
}

function checkId(id: number, name: string, what: string): void {
  if (!Number.isInteger(id) || id < 1 || id > U32_MAX) {
    throw badCert(what, `${name}: expected 1 to ${U32_MAX}, got ${id}`);
  }
}

function checkSig(sig: Uint8Array, what: string): void {
  if (sig.length < MIN_SIG_BYTES || sig.length > MAX_SIG_BYTES) {
    throw badCert(
      what,
      `signature: expected ${MIN_SIG_BYTES} to ${MAX_SIG_BYTES} bytes, got ${sig.length}`,
    );
  }
}

/**
 * Read a u64 that must hold ms since the epoch (a safe integer).
 * @param r the reader
 * @param name the field
 * @param what the structure, for the message
 * @returns the number
 */
function readTime(r: ByteReader, name: string, what: string): number {
  const t = r.u64();
  if (t > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw badCert(what, `${name}: ${t} is past the largest time`);
  }
  return Number(t);
}

/**
 * Run a decoder; a truncated or over-long input becomes `bad-cert`.
 * @param what the structure, for the message
 * @param read the decoder
 * @returns what it returned
 */
function decoding<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (isImError(e) && e.code !== "bad-cert") {
      throw badCert(what, e.message);
    }
    throw e;
  }
}

/**
 * Encode an `IK_CERT`:
 * `u8 version || bytes8(user) || ik[32] || created u64 || bytes16(sig_ik)`.
 * @param c the certificate
 * @returns its bytes
 * @throws {ProtocolError} `bad-cert` for a field that would not decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeIdentityCert, encodeIdentityCert } from "./mail_certs.ts";
 * const c = { version: 1, user: "B", ik: new Uint8Array(32).fill(9), created: 5, sig: new Uint8Array(256) };
 * assert.equal(decodeIdentityCert(encodeIdentityCert(c)).created, 5);
 * ```
 */
export function encodeIdentityCert(c: IdentityCert): Uint8Array<ArrayBuffer> {
  const what = "IK_CERT";
  checkVersion(c.version, what);
  checkUser(c.user, what);
  checkKeyBytes(c.ik, "ik", what);
  checkTime(c.created, "created", what);
  checkSig(c.sig, what);
  return new ByteWriter().u8(c.version).bytes8(utf8(c.user)).bytes(c.ik)
    .u64(BigInt(c.created)).bytes16(c.sig).finish();
}

/**
 * Decode an `IK_CERT` (section 9.1): version 1, a valid username (rule
 * 2.9), a 32-byte key, a signature as long as a 2048- to 4096-bit key's,
 * nothing after it. The signature is not checked here
 * ({@link verifyIdentityCert}).
 * @param b the bytes
 * @returns the certificate
 * @throws {ProtocolError} `bad-cert`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeIdentityCert } from "./mail_certs.ts";
 * assert.throws(() => decodeIdentityCert(new Uint8Array([1, 1, 0x42])), { name: "ProtocolError" });
 * ```
 */
export function decodeIdentityCert(b: Uint8Array): IdentityCert {
  const what = "IK_CERT";
  return decoding(what, () => {
    const r = new ByteReader(b, what);
    const version = r.u8();
    checkVersion(version, what);
    const user = fromUtf8(r.bytes8(), `${what} user`);
    checkUser(user, what);
    const ik = r.bytes(X25519_PUBLIC_BYTES);
    const created = readTime(r, "created", what);
    const sig = r.bytes16();
    checkSig(sig, what);
    r.end();
    return { version, user, ik, created, sig };
  });
}

/**
 * `ik_th = TH("im v1 mail identity", version, user, fp_user, ik, created)`.
 * @param c the certificate
 * @param fp the owner's raw RSA fingerprint
 * @returns 32 bytes
 */
function identityTranscript(
  c: Omit<IdentityCert, "sig">,
  fp: Uint8Array,
): Promise<Uint8Array> {
  return transcriptHash(Label.MAIL_IDENTITY, [
    new Uint8Array([c.version]),
    utf8(c.user),
    fp,
    c.ik,
    u64be(BigInt(c.created)),
  ]);
}

/**
 * `spk_th = TH("im v1 mail prekey", version, user, fp_user, ik, spk_id, spk,
 * created, expires)`.
 * @param c the certificate
 * @param fp the owner's raw RSA fingerprint
 * @param ik the identity key it names
 * @returns 32 bytes
 */
function prekeyTranscript(
  c: Omit<PrekeyCert, "sig">,
  fp: Uint8Array,
  ik: Uint8Array,
): Promise<Uint8Array> {
  const id = new Uint8Array(4);
  new DataView(id.buffer).setUint32(0, c.id);
  return transcriptHash(Label.MAIL_PREKEY, [
    new Uint8Array([c.version]),
    utf8(c.user),
    fp,
    ik,
    id,
    c.spk,
    u64be(BigInt(c.created)),
    u64be(BigInt(c.expires)),
  ]);
}

/**
 * Make and sign an `IK_CERT` (section 9.1).
 * @param me the user's RSA identity
 * @param user the user's name
 * @param ik the X25519 identity key, 32 bytes
 * @param created ms since the epoch (server's clock)
 * @returns the encoded certificate
 * @throws {ProtocolError} `bad-cert` for a field that would not decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { decodeIdentityCert, makeIdentityCert } from "./mail_certs.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const c = decodeIdentityCert(await makeIdentityCert(me, "A", new Uint8Array(32).fill(7), 1));
 * assert.equal(c.user, "A");
 * ```
 */
export async function makeIdentityCert(
  me: PrivateIdentity,
  user: string,
  ik: Uint8Array,
  created: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const what = "IK_CERT";
  checkUser(user, what);
  checkKeyBytes(ik, "ik", what);
  checkTime(created, "created", what);
  const body = { version: MAIL_VERSION, user, ik, created };
  const th = await identityTranscript(body, me.fingerprintBytes);
  const sig = await signPss(me.sign, signedContent(IK_SIG, th));
  return encodeIdentityCert({ ...body, sig });
}

/**
 * Does `sig_ik` verify with `owner`'s key, over the certificate's fields and
 * `owner`'s fingerprint? The name is not compared here: the caller checks
 * that the certificate names the user it asked for.
 * @param c a decoded certificate
 * @param owner the RSA key it should be signed by (the pinned one)
 * @returns true only for a valid signature
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { decodeIdentityCert, makeIdentityCert, verifyIdentityCert } from "./mail_certs.ts";
 * const [a, b] = await Promise.all([1, 2].map(async () => loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem)));
 * const c = decodeIdentityCert(await makeIdentityCert(a!, "A", new Uint8Array(32).fill(7), 1));
 * assert.ok(!(await verifyIdentityCert(c, b!.publicIdentity)));
 * ```
 */
export async function verifyIdentityCert(
  c: IdentityCert,
  owner: PublicIdentity,
): Promise<boolean> {
  if (c.version !== MAIL_VERSION) return false;
  const th = await identityTranscript(c, owner.fingerprintBytes);
  return await verifyPss(owner.verify, c.sig, signedContent(IK_SIG, th));
}

/**
 * Encode an `SPK_CERT`: `u8 version || bytes8(user) || spk_id u32 ||
 * spk[32] || created u64 || expires u64 || bytes16(sig_spk)`.
 * @param c the certificate
 * @returns its bytes
 * @throws {ProtocolError} `bad-cert` for a field that would not decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePrekeyCert, encodePrekeyCert } from "./mail_certs.ts";
 * const c = { version: 1, user: "B", id: 3, spk: new Uint8Array(32).fill(9), created: 5, expires: 6, sig: new Uint8Array(256) };
 * assert.equal(decodePrekeyCert(encodePrekeyCert(c)).id, 3);
 * ```
 */
export function encodePrekeyCert(c: PrekeyCert): Uint8Array<ArrayBuffer> {
  const what = "SPK_CERT";
  checkVersion(c.version, what);
  checkUser(c.user, what);
  checkId(c.id, "spk_id", what);
  checkKeyBytes(c.spk, "spk", what);
  checkTime(c.created, "created", what);
  checkTime(c.expires, "expires", what);
  checkSig(c.sig, what);
  return new ByteWriter().u8(c.version).bytes8(utf8(c.user)).u32(c.id)
    .bytes(c.spk).u64(BigInt(c.created)).u64(BigInt(c.expires)).bytes16(c.sig)
    .finish();
}

/**
 * Decode an `SPK_CERT` (section 9.1): version 1, a valid username, `spk_id`
 * from 1, a 32-byte key, a signature as long as a 2048- to 4096-bit key's,
 * nothing after it. The signature is not checked here
 * ({@link verifyPrekeyCert}).
 * @param b the bytes
 * @returns the certificate
 * @throws {ProtocolError} `bad-cert`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePrekeyCert } from "./mail_certs.ts";
 * assert.throws(() => decodePrekeyCert(new Uint8Array([2])), { name: "ProtocolError" });
 * ```
 */
export function decodePrekeyCert(b: Uint8Array): PrekeyCert {
  const what = "SPK_CERT";
  return decoding(what, () => {
    const r = new ByteReader(b, what);
    const version = r.u8();
    checkVersion(version, what);
    const user = fromUtf8(r.bytes8(), `${what} user`);
    checkUser(user, what);
    const id = r.u32();
    checkId(id, "spk_id", what);
    const spk = r.bytes(X25519_PUBLIC_BYTES);
    const created = readTime(r, "created", what);
    const expires = readTime(r, "expires", what);
    const sig = r.bytes16();
    checkSig(sig, what);
    r.end();
    return { version, user, id, spk, created, expires, sig };
  });
}

/**
 * Make and sign an `SPK_CERT` (section 9.1), naming the identity key `ik`.
 * @param me the user's RSA identity
 * @param user the user's name
 * @param ik the user's X25519 identity key (as in its `IK_CERT`)
 * @param id `spk_id`, from 1
 * @param spk the signed prekey, 32 bytes
 * @param created ms since the epoch (server's clock)
 * @param expires `created + 30 days`
 * @returns the encoded certificate
 * @throws {ProtocolError} `bad-cert` for a field that would not decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { decodePrekeyCert, makePrekeyCert, verifyPrekeyCert } from "./mail_certs.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const ik = new Uint8Array(32).fill(7);
 * const c = decodePrekeyCert(await makePrekeyCert(me, "A", ik, 1, new Uint8Array(32).fill(8), 1, 2));
 * assert.ok(await verifyPrekeyCert(c, me.publicIdentity, ik));
 * assert.ok(!(await verifyPrekeyCert(c, me.publicIdentity, new Uint8Array(32))));
 * ```
 */
export async function makePrekeyCert(
  me: PrivateIdentity,
  user: string,
  ik: Uint8Array,
  id: number,
  spk: Uint8Array,
  created: number,
  expires: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const what = "SPK_CERT";
  checkUser(user, what);
  checkKeyBytes(ik, "ik", what);
  checkId(id, "spk_id", what);
  checkKeyBytes(spk, "spk", what);
  checkTime(created, "created", what);
  checkTime(expires, "expires", what);
  const body = { version: MAIL_VERSION, user, id, spk, created, expires };
  const th = await prekeyTranscript(body, me.fingerprintBytes, ik);
  const sig = await signPss(me.sign, signedContent(SPK_SIG, th));
  return encodePrekeyCert({ ...body, sig });
}

/**
 * Does `sig_spk` verify with `owner`'s key, over the certificate's fields,
 * `owner`'s fingerprint and the identity key `ik`? A signed prekey moved
 * under another identity key does not verify.
 * @param c a decoded certificate
 * @param owner the RSA key it should be signed by (the pinned one)
 * @param ik the identity key it should name (the verified `IK_CERT`'s)
 * @returns true only for a valid signature
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { decodePrekeyCert, verifyPrekeyCert } from "./mail_certs.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const c = { version: 1, user: "A", id: 1, spk: new Uint8Array(32), created: 1, expires: 2, sig: new Uint8Array(256) };
 * assert.ok(!(await verifyPrekeyCert(c, me.publicIdentity, new Uint8Array(32))));
 * ```
 */
export async function verifyPrekeyCert(
  c: PrekeyCert,
  owner: PublicIdentity,
  ik: Uint8Array,
): Promise<boolean> {
  if (c.version !== MAIL_VERSION || ik.length !== X25519_PUBLIC_BYTES) {
    return false;
  }
  const th = await prekeyTranscript(c, owner.fingerprintBytes, ik);
  return await verifyPss(owner.verify, c.sig, signedContent(SPK_SIG, th));
}

/**
 * Encode an `OPK`: `opk_id u32 || opk[32]` ({@link OPK_BYTES} bytes).
 * @param id `opk_id`, from 1
 * @param key the one-time prekey, 32 bytes
 * @returns 36 bytes
 * @throws {ProtocolError} `bad-cert` for an id or key that would not decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeOneTimePrekey, encodeOneTimePrekey } from "./mail_certs.ts";
 * const b = encodeOneTimePrekey(7, new Uint8Array(32).fill(1));
 * assert.equal(b.length, 36);
 * assert.equal(decodeOneTimePrekey(b).id, 7);
 * ```
 */
export function encodeOneTimePrekey(
  id: number,
  key: Uint8Array,
): Uint8Array<ArrayBuffer> {
  checkId(id, "opk_id", "OPK");
  checkKeyBytes(key, "opk", "OPK");
  return new ByteWriter().u32(id).bytes(key).finish();
}

/**
 * Decode an `OPK`: exactly {@link OPK_BYTES} bytes, `opk_id` from 1.
 * @param b the bytes
 * @returns the id and the 32-byte key
 * @throws {ProtocolError} `bad-cert`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeOneTimePrekey } from "./mail_certs.ts";
 * assert.throws(() => decodeOneTimePrekey(new Uint8Array(36)), { name: "ProtocolError" });
 * ```
 */
export function decodeOneTimePrekey(
  b: Uint8Array,
): { id: number; key: Uint8Array<ArrayBuffer> } {
  const what = "OPK";
  if (b.length !== OPK_BYTES) {
    throw badCert(what, `expected ${OPK_BYTES} bytes, got ${b.length}`);
  }
  const r = new ByteReader(b, what);
  const id = r.u32();
  checkId(id, "opk_id", what);
  return { id, key: r.bytes(X25519_PUBLIC_BYTES) };
}
