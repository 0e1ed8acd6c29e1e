/**
 * Minimal DER (X.690), just enough for the two key containers `im` stores
 * (PROTOCOL.md section 1, "Primitives": PKCS#8 and SPKI): read a TLV
 * strictly (definite, minimal lengths), read the RSA modulus and exponent
 * out of `PrivateKeyInfo` and `SubjectPublicKeyInfo`, and write an RSA SPKI.
 *
 * Internal to the crypto layer: `pem.ts` checks a PEM body with
 * {@link readTlv}, and `rsa.ts` sizes and rebuilds keys with the parsers.
 * Every malformed input becomes a {@link KeyError} (`bad-key`, `not-rsa`)
 * naming its source, never a raw exception.
 * @module
 */

import { KeyError } from "../util/mod.ts";
import { badKey, reason } from "./_util.ts";

/** One tag-length-value, by offsets into the DER. */
export interface Tlv {
  /** The tag byte. */
  tag: number;
  /** First content byte. */
  start: number;
  /** One past the last content byte. */
  end: number;
  /** Offset of the next TLV. */
  next: number;
}

/** Malformed DER; the parsers below turn it into a {@link KeyError}. */
export class DerError extends Error {}

/** The modulus, exponent and size of an RSA key. */
export interface RsaKeyInfo {
  /** Modulus, unsigned big-endian, no leading zeros. */
  n: Uint8Array;
  /** Public exponent, unsigned big-endian. */
  e: Uint8Array;
  /** Modulus size in bits. */
  bits: number;
}

/** rsaEncryption, RFC 8017 appendix A.1. */
const RSA_ENCRYPTION_OID = "1.2.840.113549.1.1.1";
/** Algorithms people hand us instead of an RSA key, named in the error. */
const OID_NAMES: Record<string, string> = {
  "1.2.840.113549.1.1.10": "RSASSA-PSS-restricted RSA",
  "1.2.840.10045.2.1": "EC",
  "1.2.840.10040.4.1": "DSA",
  "1.3.101.110": "X25519",
  "1.3.101.111": "X448",
  "1.3.101.112": "Ed25519",
  "1.3.101.113": "Ed448",
};

// ---------------------------------------------------------------------------
// Reading (X.690 8.1: identifier, definite length, contents)

/**
 * Read the TLV at `off`, refusing indefinite, over-long and non-minimal
 * lengths (X.690 10.1) and anything that runs past `limit`.
 * @param der the bytes
 * @param off where the TLV starts
 * @param limit one past the last byte it may use
 * @returns the TLV's offsets
 * @throws {DerError} when malformed
 */
export function readTlv(der: Uint8Array, off: number, limit = der.length): Tlv {
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

// ---------------------------------------------------------------------------
// Writing

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

/**
 * SPKI for an RSA public key (RFC 8017 A.1.1, RFC 5280 4.1.2.7).
 * @param n modulus, unsigned big-endian
 * @param e public exponent, unsigned big-endian
 * @returns the SPKI DER
 */
export function rsaSpki(n: Uint8Array, e: Uint8Array): Uint8Array {
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

// ---------------------------------------------------------------------------
// The RSA key containers

function notRsa(oid: string, source: string): never {
  const name = OID_NAMES[oid];
  throw new KeyError(
    "not-rsa",
    `Cannot use ${source}: not an RSA key (${
      name ? `${name}, ` : ""
    }algorithm ${oid})`,
    "generate an RSA key",
  );
}

/**
 * Parse `PrivateKeyInfo` (RFC 5208 section 5) holding an `RSAPrivateKey`.
 * @param der PKCS#8 DER
 * @param source what the key is, for messages
 * @returns the modulus, exponent and size
 * @throws {KeyError} `bad-key` when malformed, `not-rsa` for another algorithm
 */
export function parseRsaPkcs8(der: Uint8Array, source: string): RsaKeyInfo {
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

/**
 * Parse `SubjectPublicKeyInfo` (RFC 5280 4.1.2.7) holding an `RSAPublicKey`.
 * @param der SPKI DER
 * @param source what the key is, for messages
 * @returns the modulus, exponent and size
 * @throws {KeyError} `bad-key` when malformed, `not-rsa` for another algorithm
 */
export function parseRsaSpki(der: Uint8Array, source: string): RsaKeyInfo {
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
