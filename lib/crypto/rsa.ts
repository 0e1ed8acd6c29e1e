/**
 * RSA identities (PROTOCOL.md "Primitives"): key generation, PEM, the
 * `SHA256:` fingerprint, and the RSA-PSS / RSA-OAEP primitives the handshake
 * uses. WebCrypto only.
 *
 * One key pair per identity, as in the seed. It is stored as PKCS#8
 * (`PRIVATE KEY`) and SPKI (`PUBLIC KEY`) PEM, readable by `openssl pkey`,
 * and imported once per use: RSA-PSS-SHA256 (salt 32) for signatures and
 * RSA-OAEP-SHA256 for key transport, each as its own non-extractable
 * `CryptoKey` (PSS and OAEP are jointly secure on one key: Haber and Pinkas,
 * 2001).
 *
 * Every malformed input becomes a {@link KeyError} (`bad-pem`, `bad-key`,
 * `not-rsa`, `bad-key-size`), never a raw `DOMException`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity, signPss, verifyPss } from "./rsa.ts";
 * const { privatePem } = await generateRsaKeyPair(2048);
 * const me = await loadPrivateIdentity(privatePem);
 * const msg = new TextEncoder().encode("hello");
 * const sig = await signPss(me.sign, msg);
 * assert(await verifyPss(me.publicIdentity.verify, sig, msg));
 * assert(/^SHA256:[A-Za-z0-9+\/]{43}$/.test(me.fingerprint));
 * ```
 * @module
 */

import {
  allSettledOrThrow,
  AuthError,
  KeyError,
  UsageError,
  utf8,
  wipe,
} from "../util/mod.ts";

/** RSA modulus size that keygen uses unless told otherwise. */
export const DEFAULT_RSA_BITS = 3072;
/** Smallest RSA modulus accepted, at keygen and when a key is loaded. */
export const MIN_RSA_BITS = 2048;
/** Largest RSA modulus accepted, at keygen and when a key is loaded. */
export const MAX_RSA_BITS = 4096;
/** RSA-PSS salt length in bytes (PROTOCOL.md "Primitives": salt 32). */
export const PSS_SALT_LENGTH = 32;
/** A PEM file larger than this is refused before it is parsed. */
export const MAX_PEM_CHARS = 64 * 1024;

/** The two PEM labels `im` reads and writes (RFC 7468 sections 10 and 13). */
export type PemLabel = "PRIVATE KEY" | "PUBLIC KEY";

/** A freshly generated key pair as PEM text. */
export interface RsaKeyPairPem {
  /** PKCS#8 `PRIVATE KEY` PEM. */
  readonly privatePem: string;
  /** SPKI `PUBLIC KEY` PEM. */
  readonly publicPem: string;
}

/** The public half of an identity, imported for each use. */
export interface PublicIdentity {
  /** RSA-PSS SHA-256 public key, non-extractable. */
  readonly verify: CryptoKey;
  /** RSA-OAEP SHA-256 public key, non-extractable. */
  readonly encrypt: CryptoKey;
  /** Canonical SPKI DER (as WebCrypto exports it). */
  readonly publicDer: Uint8Array<ArrayBuffer>;
  /** `SHA256:` + unpadded base64 of SHA-256(publicDer). */
  readonly fingerprint: string;
  /** The raw 32-byte SHA-256(publicDer), used in the handshake transcript. */
  readonly fingerprintBytes: Uint8Array<ArrayBuffer>;
  /** Modulus size in bits. */
  readonly bits: number;
}

/** A private identity: the key pair imported for each use. */
export interface PrivateIdentity {
  /** RSA-PSS SHA-256 private key, non-extractable. */
  readonly sign: CryptoKey;
  /** RSA-OAEP SHA-256 private key, non-extractable. */
  readonly decrypt: CryptoKey;
  /** Canonical SPKI DER of the public half. */
  readonly publicDer: Uint8Array<ArrayBuffer>;
  /** `SHA256:` fingerprint of the public half. */
  readonly fingerprint: string;
  /** Raw 32-byte SHA-256 of the public half's SPKI DER. */
  readonly fingerprintBytes: Uint8Array<ArrayBuffer>;
  /** Modulus size in bits. */
  readonly bits: number;
  /** The public half, ready to verify and encrypt. */
  readonly publicIdentity: PublicIdentity;
}

const PSS_IMPORT = { name: "RSA-PSS", hash: "SHA-256" } as const;
const OAEP_IMPORT = { name: "RSA-OAEP", hash: "SHA-256" } as const;
const PSS_PARAMS = { name: "RSA-PSS", saltLength: PSS_SALT_LENGTH } as const;
/** rsaEncryption, RFC 8017 appendix A.1. */
const RSA_ENCRYPTION_OID = "1.2.840.113549.1.1.1";
const OID_NAMES: Record<string, string> = {
  "1.2.840.113549.1.1.10": "RSASSA-PSS-restricted RSA",
  "1.2.840.10045.2.1": "EC",
  "1.2.840.10040.4.1": "DSA",
  "1.3.101.110": "X25519",
  "1.3.101.111": "X448",
  "1.3.101.112": "Ed25519",
  "1.3.101.113": "Ed448",
};
/** Hints for PEM labels people are likely to hand us by mistake. */
const LABEL_HINTS: Record<string, string> = {
  "RSA PRIVATE KEY":
    'convert the PKCS#1 key with "openssl pkcs8 -topk8 -nocrypt -in FILE -out private.pem"',
  "ENCRYPTED PRIVATE KEY":
    'im needs an unencrypted key: "openssl pkey -in FILE -out private.pem"',
  "OPENSSH PRIVATE KEY":
    'convert the OpenSSH key with "ssh-keygen -p -m PKCS8 -f FILE"',
  "RSA PUBLIC KEY":
    'convert the PKCS#1 key with "openssl rsa -RSAPublicKey_in -in FILE -pubout -out public.pem"',
  "PRIVATE KEY": "this is a private key; give the public.pem file instead",
  "PUBLIC KEY": "this is a public key; give the private.pem file instead",
};

// ---------------------------------------------------------------------------
// Input checks

/**
 * Check an RSA modulus size for key generation.
 * @param bits requested size
 * @returns the same size
 * @throws {UsageError} `bad-bits` unless an integer from 2048 to 4096
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkRsaBits } from "./rsa.ts";
 * assert(checkRsaBits(3072) === 3072);
 * ```
 */
export function checkRsaBits(bits: number): number {
  if (!Number.isInteger(bits) || bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw new UsageError(
      "bad-bits",
      `Invalid RSA key size "${bits}": expected an integer from ${MIN_RSA_BITS} to ${MAX_RSA_BITS}`,
    );
  }
  return bits;
}

function checkKeyBits(bits: number, source: string): void {
  if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw new KeyError(
      "bad-key-size",
      `Cannot use ${source}: RSA key has ${bits} bits, expected ${MIN_RSA_BITS} to ${MAX_RSA_BITS}`,
      `generate a new key with "im keygen --bits ${DEFAULT_RSA_BITS}"`,
    );
  }
}

/** WebCrypto wants `BufferSource` over an `ArrayBuffer`; copy only when needed. */
function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b.buffer instanceof ArrayBuffer
    ? b as Uint8Array<ArrayBuffer>
    : new Uint8Array(b);
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------
// PEM (RFC 7468, strict form)

/**
 * Encode DER as PEM with 64-character base64 lines (RFC 7468 section 2).
 * @param label `PRIVATE KEY` or `PUBLIC KEY`
 * @param der the DER bytes
 * @returns PEM text ending in a newline
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pemEncode } from "./rsa.ts";
 * const pem = pemEncode("PUBLIC KEY", new Uint8Array([0x30, 0x00]));
 * assert(pem === "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n");
 * ```
 */
export function pemEncode(label: PemLabel, der: Uint8Array): string {
  const b64 = der.toBase64();
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${
    lines.join("\n")
  }\n-----END ${label}-----\n`;
}

/**
 * Decode one PEM block strictly: exactly one `-----BEGIN label-----` /
 * `-----END label-----` pair with nothing but whitespace around it, a body of
 * standard base64 (lines of any length, CRLF allowed), and a DER SEQUENCE
 * that fills the body exactly.
 * @param pem PEM text
 * @param label the label expected
 * @param source what the text is, for error messages (e.g. a file path)
 * @returns the DER bytes
 * @throws {KeyError} `bad-pem` naming what is wrong: missing header or footer,
 *   wrong label, text around the block, bad base64, trailing data
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pemDecode, pemEncode } from "./rsa.ts";
 * const der = new Uint8Array([0x30, 0x01, 0x05]);
 * assert(pemDecode(pemEncode("PUBLIC KEY", der), "PUBLIC KEY")[2] === 5);
 * ```
 */
export function pemDecode(
  pem: string,
  label: PemLabel,
  source = "PEM input",
): Uint8Array<ArrayBuffer> {
  function fail(why: string, hint?: string): never {
    throw new KeyError("bad-pem", `Cannot read ${source}: ${why}`, hint);
  }
  if (typeof pem !== "string") fail("expected PEM text");
  if (pem.length > MAX_PEM_CHARS) {
    fail(`${pem.length} characters exceeds the limit of ${MAX_PEM_CHARS}`);
  }
  const lines = pem.split(/\r?\n/).map((l) => l.trim());
  while (lines.length > 0 && lines[0] === "") lines.shift();
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const first = lines[0] ?? "";
  if (first !== begin) {
    const found = /^-----BEGIN ([A-Z0-9 ]+)-----$/.exec(first);
    if (found) {
      fail(
        `expected "${label}" PEM, found "${found[1]}"`,
        LABEL_HINTS[found[1]!],
      );
    }
    if (/^ssh-(rsa|ed25519|dss) /.test(first) || first.startsWith("ecdsa-")) {
      fail(
        `expected "${label}" PEM, found an OpenSSH public key`,
        'convert it with "ssh-keygen -e -m PKCS8 -f FILE"',
      );
    }
    if (lines.some((l) => l === begin)) {
      fail(`unexpected text before the "${begin}" line`);
    }
    fail(`no "${begin}" line`);
  }
  const endAt = lines.indexOf(end);
  if (endAt < 0) fail(`no "${end}" line`);
  if (endAt !== lines.length - 1) {
    fail(`unexpected text after the "${end}" line`);
  }
  const body = lines.slice(1, endAt);
  if (body.length === 0) fail("empty PEM body");
  for (let i = 0; i < body.length; i++) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body[i]!)) {
      fail(`invalid base64 on line ${i + 2}`);
    }
  }
  const b64 = body.join("");
  if (/=[^=]/.test(b64) || b64.length % 4 !== 0) {
    fail("invalid base64: bad padding or length");
  }
  let der: Uint8Array<ArrayBuffer>;
  try {
    der = Uint8Array.fromBase64(b64, { lastChunkHandling: "strict" });
  } catch {
    return fail("invalid base64: non-zero padding bits");
  }
  try {
    const top = readTlv(der, 0);
    if (top.tag !== 0x30) fail("PEM body is not a DER SEQUENCE");
    if (top.next !== der.length) {
      fail(
        `${
          der.length - top.next
        } bytes of trailing data after the DER structure`,
      );
    }
  } catch (e) {
    if (e instanceof KeyError) throw e;
    fail(`PEM body is not valid DER: ${reason(e)}`);
  }
  return der;
}

// ---------------------------------------------------------------------------
// Minimal DER (X.690) reading and writing, just enough for PKCS#8 and SPKI

interface Tlv {
  tag: number;
  /** First content byte. */
  start: number;
  /** One past the last content byte. */
  end: number;
  /** Offset of the next TLV. */
  next: number;
}

class DerError extends Error {}

function readTlv(der: Uint8Array, off: number, limit = der.length): Tlv {
  if (off + 2 > limit) throw new DerError("truncated");
  const tag = der[off]!;
  let len = der[off + 1]!;
  let start = off + 2;
  if (len === 0x80) throw new DerError("indefinite length");
  if (len > 0x80) {
    const n = len - 0x80;
    if (n > 4) throw new DerError("length too long");
    if (start + n > limit) throw new DerError("truncated");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    if (len < 0x80 || der[start] === 0) {
      throw new DerError("non-minimal length");
    }
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new DerError("truncated");
  return { tag, start, end, next: end };
}

function expectTlv(
  der: Uint8Array,
  off: number,
  limit: number,
  tag: number,
): Tlv {
  const t = readTlv(der, off, limit);
  if (t.tag !== tag) {
    throw new DerError(
      `expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`,
    );
  }
  return t;
}

function decodeOid(b: Uint8Array): string {
  if (b.length === 0) throw new DerError("empty OID");
  const parts: number[] = [];
  let v = 0;
  for (const byte of b) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  const first = parts.shift() ?? 0;
  const a = first < 40 ? 0 : first < 80 ? 1 : 2;
  return [a, first - a * 40, ...parts].join(".");
}

/** Read `AlgorithmIdentifier ::= SEQUENCE { OID, params }` at `off`. */
function readAlgorithmOid(der: Uint8Array, off: number, limit: number): Tlv & {
  oid: string;
} {
  const seq = expectTlv(der, off, limit, 0x30);
  const oid = expectTlv(der, seq.start, seq.end, 0x06);
  return { ...seq, oid: decodeOid(der.subarray(oid.start, oid.end)) };
}

/** Unsigned magnitude of a DER INTEGER, leading zeros removed. */
function readUnsigned(der: Uint8Array, t: Tlv): Uint8Array {
  if (t.end === t.start) throw new DerError("empty integer");
  if (der[t.start]! & 0x80) throw new DerError("negative integer");
  let s = t.start;
  while (s < t.end - 1 && der[s] === 0) s++;
  return der.subarray(s, t.end);
}

function bitLength(mag: Uint8Array): number {
  let i = 0;
  while (i < mag.length && mag[i] === 0) i++;
  if (i === mag.length) return 0;
  return (mag.length - i - 1) * 8 + (32 - Math.clz32(mag[i]!));
}

function derLength(n: number): Uint8Array {
  if (n < 0x80) return new Uint8Array([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return new Uint8Array([0x80 | bytes.length, ...bytes]);
}

function derTlv(tag: number, ...content: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const c of content) n += c.length;
  const len = derLength(n);
  const out = new Uint8Array(1 + len.length + n);
  out[0] = tag;
  out.set(len, 1);
  let off = 1 + len.length;
  for (const c of content) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

function derUnsigned(mag: Uint8Array): Uint8Array {
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  const m = mag.subarray(i);
  return m[0]! & 0x80 ? derTlv(0x02, new Uint8Array([0]), m) : derTlv(0x02, m);
}

/** SPKI for an RSA public key (RFC 8017 A.1.1, RFC 5280 4.1.2.7). */
function rsaSpki(n: Uint8Array, e: Uint8Array): Uint8Array {
  const algId = derTlv(
    0x30,
    new Uint8Array([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1]),
    new Uint8Array([0x05, 0x00]),
  );
  const rsaPublicKey = derTlv(0x30, derUnsigned(n), derUnsigned(e));
  return derTlv(
    0x30,
    algId,
    derTlv(0x03, new Uint8Array([0]), rsaPublicKey),
  );
}

interface RsaInfo {
  n: Uint8Array;
  e: Uint8Array;
  bits: number;
}

function notRsa(oid: string, source: string): never {
  const name = OID_NAMES[oid];
  throw new KeyError(
    "not-rsa",
    `Cannot use ${source}: not an RSA key (${
      name ? `${name}, ` : ""
    }algorithm ${oid})`,
    `generate an RSA key with "im keygen"`,
  );
}

function badKey(source: string, why: string): KeyError {
  return new KeyError("bad-key", `Cannot use ${source}: ${why}`);
}

/** Parse `PrivateKeyInfo` (RFC 5208 section 5) holding an `RSAPrivateKey`. */
function parseRsaPkcs8(der: Uint8Array, source: string): RsaInfo {
  let oid: string;
  let key: Tlv;
  try {
    const top = expectTlv(der, 0, der.length, 0x30);
    if (top.next !== der.length) throw new DerError("trailing data");
    const version = expectTlv(der, top.start, top.end, 0x02);
    const alg = readAlgorithmOid(der, version.next, top.end);
    oid = alg.oid;
    key = expectTlv(der, alg.next, top.end, 0x04);
  } catch (e) {
    throw badKey(source, `malformed PKCS#8 private key (${reason(e)})`);
  }
  if (oid !== RSA_ENCRYPTION_OID) notRsa(oid, source);
  try {
    // RSAPrivateKey ::= SEQUENCE { version, modulus, publicExponent, ... }
    const seq = expectTlv(der, key.start, key.end, 0x30);
    const version = expectTlv(der, seq.start, seq.end, 0x02);
    const nTlv = expectTlv(der, version.next, seq.end, 0x02);
    const eTlv = expectTlv(der, nTlv.next, seq.end, 0x02);
    const n = readUnsigned(der, nTlv);
    return { n, e: readUnsigned(der, eTlv), bits: bitLength(n) };
  } catch (e) {
    throw badKey(source, `malformed RSA private key (${reason(e)})`);
  }
}

/** Parse `SubjectPublicKeyInfo` (RFC 5280 4.1.2.7) holding an `RSAPublicKey`. */
function parseRsaSpki(der: Uint8Array, source: string): RsaInfo {
  let oid: string;
  let bits: Tlv;
  try {
    const top = expectTlv(der, 0, der.length, 0x30);
    if (top.next !== der.length) throw new DerError("trailing data");
    const alg = readAlgorithmOid(der, top.start, top.end);
    oid = alg.oid;
    bits = expectTlv(der, alg.next, top.end, 0x03);
  } catch (e) {
    throw badKey(source, `malformed SPKI public key (${reason(e)})`);
  }
  if (oid !== RSA_ENCRYPTION_OID) notRsa(oid, source);
  try {
    if (der[bits.start] !== 0) throw new DerError("unused bits in BIT STRING");
    // RSAPublicKey ::= SEQUENCE { modulus, publicExponent }
    const seq = expectTlv(der, bits.start + 1, bits.end, 0x30);
    const nTlv = expectTlv(der, seq.start, seq.end, 0x02);
    const eTlv = expectTlv(der, nTlv.next, seq.end, 0x02);
    const n = readUnsigned(der, nTlv);
    return { n, e: readUnsigned(der, eTlv), bits: bitLength(n) };
  } catch (e) {
    throw badKey(source, `malformed RSA public key (${reason(e)})`);
  }
}

// ---------------------------------------------------------------------------
// Fingerprints

/**
 * Raw fingerprint: SHA-256 of the SPKI DER.
 * @param spkiDer the public key as SPKI DER
 * @returns 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprintBytes } from "./rsa.ts";
 * assert((await fingerprintBytes(new Uint8Array([0x30, 0x00]))).length === 32);
 * ```
 */
export async function fingerprintBytes(
  spkiDer: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf(spkiDer)));
}

/**
 * Fingerprint as ssh prints it: `SHA256:` + unpadded standard base64 of
 * SHA-256(SPKI DER), 43 characters after the prefix.
 * @param spkiDer the public key as SPKI DER
 * @returns e.g. `SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fingerprint } from "./rsa.ts";
 * assert(await fingerprint(new Uint8Array()) === "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
 * ```
 */
export async function fingerprint(spkiDer: Uint8Array): Promise<string> {
  return formatFingerprint(await fingerprintBytes(spkiDer));
}

/**
 * Format raw fingerprint bytes as `SHA256:...`.
 * @param raw the 32-byte SHA-256
 * @returns the printable fingerprint
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatFingerprint } from "./rsa.ts";
 * assert(formatFingerprint(new Uint8Array(32)).length === 7 + 43);
 * ```
 */
export function formatFingerprint(raw: Uint8Array): string {
  return `SHA256:${raw.toBase64({ omitPadding: true })}`;
}

// ---------------------------------------------------------------------------
// Generation

/**
 * Generate an RSA key pair (e = 65537) as PKCS#8 and SPKI PEM.
 * @param bits modulus size, 2048..4096 (default {@link DEFAULT_RSA_BITS})
 * @returns the two PEM texts
 * @throws {UsageError} `bad-bits` when `bits` is out of range
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair } from "./rsa.ts";
 * const { privatePem, publicPem } = await generateRsaKeyPair(2048);
 * assert(privatePem.startsWith("-----BEGIN PRIVATE KEY-----\n"));
 * assert(publicPem.startsWith("-----BEGIN PUBLIC KEY-----\n"));
 * ```
 */
export async function generateRsaKeyPair(
  bits: number = DEFAULT_RSA_BITS,
): Promise<RsaKeyPairPem> {
  checkRsaBits(bits);
  const pair = await crypto.subtle.generateKey(
    {
      ...PSS_IMPORT,
      modulusLength: bits,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
    true,
    ["sign", "verify"],
  );
  const pkcs8 = new Uint8Array(
    await crypto.subtle.exportKey("pkcs8", pair.privateKey),
  );
  const spki = new Uint8Array(
    await crypto.subtle.exportKey("spki", pair.publicKey),
  );
  const privatePem = pemEncode("PRIVATE KEY", pkcs8);
  wipe(pkcs8);
  return { privatePem, publicPem: pemEncode("PUBLIC KEY", spki) };
}

// ---------------------------------------------------------------------------
// Imports, one per use

async function importKey(
  format: "spki" | "pkcs8",
  der: Uint8Array,
  alg: typeof PSS_IMPORT | typeof OAEP_IMPORT,
  extractable: boolean,
  usage: KeyUsage,
  source: string,
): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey(format, buf(der), alg, extractable, [
      usage,
    ]);
  } catch (e) {
    throw badKey(source, `WebCrypto refused the key (${reason(e)})`);
  }
}

/**
 * Import an SPKI RSA public key for RSA-PSS SHA-256 verification.
 * @param spki SPKI DER
 * @param source what the key is, for messages
 * @returns a non-extractable verify key
 * @throws {KeyError} `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importPssPublicFromDer, loadPrivateIdentity, generateRsaKeyPair } from "./rsa.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const k = await importPssPublicFromDer(me.publicDer);
 * assert(k.usages.includes("verify"));
 * ```
 */
export async function importPssPublicFromDer(
  spki: Uint8Array,
  source = "public key",
): Promise<CryptoKey> {
  checkKeyBits(parseRsaSpki(spki, source).bits, source);
  return await importKey("spki", spki, PSS_IMPORT, false, "verify", source);
}

/**
 * Import an SPKI RSA public key for RSA-OAEP SHA-256 encryption.
 * @param spki SPKI DER
 * @param source what the key is, for messages
 * @returns a non-extractable encrypt key
 * @throws {KeyError} `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importOaepPublicFromDer } from "./rsa.ts";
 * const bad = await importOaepPublicFromDer(new Uint8Array([0x30, 0])).catch((e) => e.code);
 * assert(bad === "bad-key");
 * ```
 */
export async function importOaepPublicFromDer(
  spki: Uint8Array,
  source = "public key",
): Promise<CryptoKey> {
  checkKeyBits(parseRsaSpki(spki, source).bits, source);
  return await importKey("spki", spki, OAEP_IMPORT, false, "encrypt", source);
}

/**
 * Import a PKCS#8 RSA private key for RSA-PSS SHA-256 signing.
 * @param pkcs8 PKCS#8 DER (not wiped; the caller owns it)
 * @param source what the key is, for messages
 * @returns a non-extractable sign key
 * @throws {KeyError} `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importPssPrivateFromDer } from "./rsa.ts";
 * const bad = await importPssPrivateFromDer(new Uint8Array([1])).catch((e) => e.code);
 * assert(bad === "bad-key");
 * ```
 */
export async function importPssPrivateFromDer(
  pkcs8: Uint8Array,
  source = "private key",
): Promise<CryptoKey> {
  checkKeyBits(parseRsaPkcs8(pkcs8, source).bits, source);
  return await importKey("pkcs8", pkcs8, PSS_IMPORT, false, "sign", source);
}

/**
 * Import a PKCS#8 RSA private key for RSA-OAEP SHA-256 decryption.
 * @param pkcs8 PKCS#8 DER (not wiped; the caller owns it)
 * @param source what the key is, for messages
 * @returns a non-extractable decrypt key
 * @throws {KeyError} `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { importOaepPrivateFromDer } from "./rsa.ts";
 * const bad = await importOaepPrivateFromDer(new Uint8Array([1])).catch((e) => e.code);
 * assert(bad === "bad-key");
 * ```
 */
export async function importOaepPrivateFromDer(
  pkcs8: Uint8Array,
  source = "private key",
): Promise<CryptoKey> {
  checkKeyBits(parseRsaPkcs8(pkcs8, source).bits, source);
  return await importKey("pkcs8", pkcs8, OAEP_IMPORT, false, "decrypt", source);
}

// ---------------------------------------------------------------------------
// Identities

/**
 * Build a {@link PublicIdentity} from SPKI DER. The DER is canonicalised
 * (re-exported by WebCrypto) before it is fingerprinted, so one key always
 * has one fingerprint.
 * @param spki SPKI DER of an RSA key of 2048..4096 bits
 * @param source what the key is, for messages
 * @returns the identity
 * @throws {KeyError} `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity, publicIdentityFromDer } from "./rsa.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const pub = await publicIdentityFromDer(me.publicDer);
 * assert(pub.fingerprint === me.fingerprint && pub.bits === 2048);
 * ```
 */
export async function publicIdentityFromDer(
  spki: Uint8Array,
  source = "public key",
): Promise<PublicIdentity> {
  const info = parseRsaSpki(spki, source);
  checkKeyBits(info.bits, source);
  const probe = await importKey(
    "spki",
    spki,
    PSS_IMPORT,
    true,
    "verify",
    source,
  );
  let publicDer: Uint8Array<ArrayBuffer>;
  try {
    publicDer = new Uint8Array(await crypto.subtle.exportKey("spki", probe));
  } catch (e) {
    throw badKey(source, `WebCrypto refused the key (${reason(e)})`);
  }
  const [verify, encrypt, raw] = await allSettledOrThrow([
    importKey("spki", publicDer, PSS_IMPORT, false, "verify", source),
    importKey("spki", publicDer, OAEP_IMPORT, false, "encrypt", source),
    fingerprintBytes(publicDer),
  ]);
  return {
    verify,
    encrypt,
    publicDer,
    fingerprint: formatFingerprint(raw),
    fingerprintBytes: raw,
    bits: info.bits,
  };
}

/**
 * Load a public identity from SPKI `PUBLIC KEY` PEM.
 * @param pem PEM text
 * @param source what the text is (a path), for messages
 * @returns the identity
 * @throws {KeyError} `bad-pem`, `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPublicIdentity } from "./rsa.ts";
 * const pub = await loadPublicIdentity((await generateRsaKeyPair(2048)).publicPem);
 * assert(pub.bits === 2048);
 * ```
 */
export async function loadPublicIdentity(
  pem: string,
  source = "public key",
): Promise<PublicIdentity> {
  return await publicIdentityFromDer(
    pemDecode(pem, "PUBLIC KEY", source),
    source,
  );
}

/**
 * Build a {@link PrivateIdentity} from PKCS#8 DER. The public half is derived
 * from the modulus and exponent inside the private key, and a test signature
 * proves the two halves belong together (a corrupted key fails here, not in
 * the middle of a login).
 * @param pkcs8 PKCS#8 DER of an RSA key of 2048..4096 bits (not wiped; the caller owns it)
 * @param source what the key is, for messages
 * @returns the identity, with non-extractable sign and decrypt keys
 * @throws {KeyError} `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, pemDecode, privateIdentityFromDer } from "./rsa.ts";
 * const { privatePem } = await generateRsaKeyPair(2048);
 * const me = await privateIdentityFromDer(pemDecode(privatePem, "PRIVATE KEY"));
 * assert(me.sign.extractable === false && me.bits === 2048);
 * ```
 */
export async function privateIdentityFromDer(
  pkcs8: Uint8Array,
  source = "private key",
): Promise<PrivateIdentity> {
  const info = parseRsaPkcs8(pkcs8, source);
  checkKeyBits(info.bits, source);
  const [sign, decrypt, publicIdentity] = await allSettledOrThrow([
    importKey("pkcs8", pkcs8, PSS_IMPORT, false, "sign", source),
    importKey("pkcs8", pkcs8, OAEP_IMPORT, false, "decrypt", source),
    publicIdentityFromDer(rsaSpki(info.n, info.e), source),
  ]);
  // Pairwise consistency test (as FIPS 140 asks of generated keys).
  const probe = utf8("im v1 key check");
  let ok = false;
  try {
    const sig = await signPss(sign, probe);
    ok = await verifyPss(publicIdentity.verify, sig, probe);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw badKey(source, "the private key is corrupt (test signature failed)");
  }
  return {
    sign,
    decrypt,
    publicDer: publicIdentity.publicDer,
    fingerprint: publicIdentity.fingerprint,
    fingerprintBytes: publicIdentity.fingerprintBytes,
    bits: info.bits,
    publicIdentity,
  };
}

/**
 * Load a private identity from PKCS#8 `PRIVATE KEY` PEM. The decoded DER is
 * wiped once imported.
 * @param pem PEM text
 * @param source what the text is (a path), for messages
 * @returns the identity
 * @throws {KeyError} `bad-pem`, `bad-key`, `not-rsa`, `bad-key-size`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity, loadPublicIdentity } from "./rsa.ts";
 * const { privatePem, publicPem } = await generateRsaKeyPair(2048);
 * const me = await loadPrivateIdentity(privatePem);
 * assert(me.fingerprint === (await loadPublicIdentity(publicPem)).fingerprint);
 * ```
 */
export async function loadPrivateIdentity(
  pem: string,
  source = "private key",
): Promise<PrivateIdentity> {
  const der = pemDecode(pem, "PRIVATE KEY", source);
  try {
    return await privateIdentityFromDer(der, source);
  } finally {
    wipe(der);
  }
}

// ---------------------------------------------------------------------------
// Primitives used by the handshake

function checkKey(
  key: CryptoKey,
  name: string,
  type: KeyType,
  usage: KeyUsage,
): void {
  if (
    key.algorithm.name !== name || key.type !== type ||
    !key.usages.includes(usage)
  ) {
    throw new KeyError(
      "wrong-key",
      `Cannot ${usage}: expected a ${type} ${name} key with usage "${usage}", got a ${key.type} ${key.algorithm.name} key`,
    );
  }
}

/**
 * Sign with RSA-PSS SHA-256, salt 32 bytes (RFC 8017 8.1).
 * @param key an RSA-PSS private key (`PrivateIdentity.sign`)
 * @param data the bytes to sign
 * @returns the signature, as long as the modulus
 * @throws {KeyError} `wrong-key` for a key of the wrong kind, `sign-failed`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity, signPss } from "./rsa.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * assert((await signPss(me.sign, new Uint8Array([1]))).length === 256);
 * ```
 */
export async function signPss(
  key: CryptoKey,
  data: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  checkKey(key, "RSA-PSS", "private", "sign");
  try {
    return new Uint8Array(await crypto.subtle.sign(PSS_PARAMS, key, buf(data)));
  } catch (e) {
    throw new KeyError("sign-failed", `Cannot sign: ${reason(e)}`);
  }
}

/**
 * Verify an RSA-PSS SHA-256 signature, salt 32 bytes (RFC 8017 8.1.2).
 * Never throws on a bad signature, whatever its length or content.
 * @param key an RSA-PSS public key (`PublicIdentity.verify`)
 * @param signature the signature
 * @param data the signed bytes
 * @returns true only for a valid signature
 * @throws {KeyError} `wrong-key` for a key of the wrong kind (a programming error)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity, verifyPss } from "./rsa.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * assert(!(await verifyPss(me.publicIdentity.verify, new Uint8Array(3), new Uint8Array(1))));
 * ```
 */
export async function verifyPss(
  key: CryptoKey,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  checkKey(key, "RSA-PSS", "public", "verify");
  try {
    return await crypto.subtle.verify(
      PSS_PARAMS,
      key,
      buf(signature),
      buf(data),
    );
  } catch {
    return false;
  }
}

/**
 * Encrypt with RSA-OAEP SHA-256 (MGF1 SHA-256) and a label (RFC 8017 7.1.1).
 * @param key an RSA-OAEP public key (`PublicIdentity.encrypt`)
 * @param data at most k - 66 bytes (190 for a 2048-bit key)
 * @param label the OAEP label, bound into the ciphertext
 * @returns the ciphertext, as long as the modulus
 * @throws {KeyError} `wrong-key`, `oaep-too-long`, `encrypt-failed`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity, encryptOaep, decryptOaep } from "./rsa.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const label = new TextEncoder().encode("label");
 * const ct = await encryptOaep(me.publicIdentity.encrypt, new Uint8Array([7]), label);
 * assert((await decryptOaep(me.decrypt, ct, label))[0] === 7);
 * ```
 */
export async function encryptOaep(
  key: CryptoKey,
  data: Uint8Array,
  label: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  checkKey(key, "RSA-OAEP", "public", "encrypt");
  const k = Math.ceil(
    (key.algorithm as RsaHashedKeyAlgorithm).modulusLength / 8,
  );
  const max = k - 2 * 32 - 2; // RFC 8017 7.1.1 step 1b
  if (data.length > max) {
    throw new KeyError(
      "oaep-too-long",
      `Cannot encrypt: ${data.length} bytes exceeds the RSA-OAEP limit of ${max}`,
    );
  }
  try {
    return new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "RSA-OAEP", label: buf(label) },
        key,
        buf(data),
      ),
    );
  } catch (e) {
    throw new KeyError("encrypt-failed", `Cannot encrypt: ${reason(e)}`);
  }
}

/**
 * Decrypt RSA-OAEP SHA-256 with a label (RFC 8017 7.1.2). Every failure
 * (wrong key, wrong label, tampered or truncated ciphertext) is the same
 * opaque error.
 * @param key an RSA-OAEP private key (`PrivateIdentity.decrypt`)
 * @param ciphertext the ciphertext
 * @param label the OAEP label used to encrypt
 * @returns the plaintext
 * @throws {AuthError} `bad-session-key` on any decryption failure
 * @throws {KeyError} `wrong-key` for a key of the wrong kind (a programming error)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity, decryptOaep } from "./rsa.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const code = await decryptOaep(me.decrypt, new Uint8Array(256), new Uint8Array()).catch((e) => e.code);
 * assert(code === "bad-session-key");
 * ```
 */
export async function decryptOaep(
  key: CryptoKey,
  ciphertext: Uint8Array,
  label: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  checkKey(key, "RSA-OAEP", "private", "decrypt");
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "RSA-OAEP", label: buf(label) },
        key,
        buf(ciphertext),
      ),
    );
  } catch {
    throw new AuthError(
      "bad-session-key",
      "Cannot decrypt the session key: RSA-OAEP decryption failed",
    );
  }
}
