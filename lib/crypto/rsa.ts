/**
 * RSA identities (PROTOCOL.md section 1, "Primitives"): key generation, the
 * `SHA256:` fingerprint, and importing a key pair for each use. WebCrypto
 * only.
 *
 * One key pair per identity, as in the seed. It is stored as PKCS#8
 * (`PRIVATE KEY`) and SPKI (`PUBLIC KEY`) PEM (`pem.ts`) and imported once
 * per use: RSA-PSS-SHA256 for signatures and RSA-OAEP-SHA256 for key
 * transport (`pss_oaep.ts`), each as its own non-extractable `CryptoKey`
 * (PSS and OAEP are jointly secure on one key: Haber and Pinkas, 2001).
 *
 * Every malformed input becomes a {@link KeyError} (`bad-pem`, `bad-key`,
 * `not-rsa`, `bad-key-size`), never a raw `DOMException`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "./rsa.ts";
 * import { signPss, verifyPss } from "./pss_oaep.ts";
 * const { privatePem } = await generateRsaKeyPair(2048);
 * const me = await loadPrivateIdentity(privatePem);
 * const msg = new TextEncoder().encode("hello");
 * const sig = await signPss(me.sign, msg);
 * assert(await verifyPss(me.publicIdentity.verify, sig, msg));
 * assert(/^SHA256:[A-Za-z0-9+\/]{43}$/.test(me.fingerprint));
 * ```
 * @module
 */

import { allSettledOrThrow, KeyError, utf8, wipe } from "../util/mod.ts";
import { parseRsaPkcs8, parseRsaSpki, rsaSpki } from "./_der.ts";
import { badKey, buf, reason } from "./_util.ts";
import { pemDecode, pemEncode } from "./pem.ts";
import { signPss, verifyPss } from "./pss_oaep.ts";

/** RSA modulus size that keygen uses unless told otherwise. */
export const DEFAULT_RSA_BITS = 3072;
/** Smallest RSA modulus accepted, at keygen and when a key is loaded. */
export const MIN_RSA_BITS = 2048;
/** Largest RSA modulus accepted, at keygen and when a key is loaded. */
export const MAX_RSA_BITS = 4096;

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

// ---------------------------------------------------------------------------
// Input checks

/**
 * Check an RSA modulus size for key generation. A front end that took the
 * size from its command line reports the failure as a usage error.
 * @param bits requested size
 * @returns the same size
 * @throws {KeyError} `bad-bits` unless an integer from 2048 to 4096
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkRsaBits } from "./rsa.ts";
 * assert(checkRsaBits(3072) === 3072);
 * ```
 */
export function checkRsaBits(bits: number): number {
  if (!Number.isInteger(bits) || bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw new KeyError(
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
      `generate a new key of ${DEFAULT_RSA_BITS} bits`,
    );
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
 * @throws {KeyError} `bad-bits` when `bits` is out of range
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
 * import { generateRsaKeyPair, privateIdentityFromDer } from "./rsa.ts";
 * import { pemDecode } from "./pem.ts";
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
