/**
 * Ed25519 (RFC 8032) through WebCrypto `Ed25519`: the key pair of a room
 * member's sender chain, which signs each room message (PROTOCOL.md
 * section 10.2 and 10.3). Its public half travels in a `ROOM_KEY`; its
 * private half, when a client keeps it, as PKCS#8 (RFC 8410).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519, signEd25519, verifyEd25519 } from "./ed25519.ts";
 * const k = await generateEd25519(false);
 * const data = new Uint8Array([1, 2, 3]);
 * const sig = await signEd25519(k, data);
 * assert.ok(await verifyEd25519(k.publicRaw, sig, data));
 * assert.ok(!(await verifyEd25519(k.publicRaw, sig, new Uint8Array([1, 2]))));
 * ```
 * @module
 */

import { KeyError, ProtocolError, randomBytes } from "../util/mod.ts";
import { buf, reason } from "./_util.ts";

/** Bytes of an Ed25519 public key (RFC 8032 section 5.1.5). */
export const ED25519_PUBLIC_BYTES = 32;
/** Bytes of an Ed25519 signature (RFC 8032 section 5.1.6). */
export const ED25519_SIGNATURE_BYTES = 64;

const ALG = { name: "Ed25519" } as const;

/** An Ed25519 key pair: the private half stays in WebCrypto. */
export interface Ed25519KeyPair {
  /** The private key, usage `sign`; extractable only when made so. */
  readonly privateKey: CryptoKey;
  /** The 32-byte public key (RFC 8032 encoding). */
  readonly publicRaw: Uint8Array;
}

/**
 * Make a fresh Ed25519 key pair (PROTOCOL.md section 10.2: one per room
 * and epoch).
 * @param extractable whether the private key may be exported
 *   ({@link exportEd25519Private}), for a client that keeps it on disk
 * @returns the pair
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519 } from "./ed25519.ts";
 * const k = await generateEd25519(false);
 * assert.ok(!k.privateKey.extractable && k.publicRaw.length === 32);
 * ```
 */
export async function generateEd25519(
  extractable: boolean,
): Promise<Ed25519KeyPair> {
  const pair = await crypto.subtle.generateKey(ALG, extractable, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const publicRaw = new Uint8Array(
    await crypto.subtle.exportKey("raw", pair.publicKey),
  );
  return { privateKey: pair.privateKey, publicRaw };
}

/**
 * Export an extractable Ed25519 private key as PKCS#8 DER (RFC 8410).
 * @param pair a pair made extractable
 * @returns the DER bytes (secret: the caller wipes them once written)
 * @throws {KeyError} `wrong-key` for another kind of key or one that is
 *   not extractable
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exportEd25519Private, generateEd25519 } from "./ed25519.ts";
 * const der = await exportEd25519Private(await generateEd25519(true));
 * assert.ok(der.length === 48 && der[0] === 0x30);
 * await assert.rejects(exportEd25519Private(await generateEd25519(false)), { code: "wrong-key" });
 * ```
 */
export async function exportEd25519Private(
  pair: Ed25519KeyPair,
): Promise<Uint8Array> {
  const key = pair.privateKey;
  if (
    key.type !== "private" || key.algorithm.name !== ALG.name ||
    !key.extractable
  ) {
    throw new KeyError(
      "wrong-key",
      `Cannot export: expected an extractable Ed25519 private key, got a ${
        key.extractable ? "" : "non-extractable "
      }${key.type} ${key.algorithm.name} key`,
    );
  }
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
}

/**
 * Import an Ed25519 private key from PKCS#8 DER (RFC 8410),
 * non-extractable, with the public key it is kept beside. WebCrypto cannot
 * compute the public half of a non-extractable key, so the two are checked
 * to belong together by signing a probe and verifying it with `publicRaw`.
 * @param pkcs8 the DER bytes (not wiped here; the caller owns them)
 * @param publicRaw the 32-byte public key
 * @returns the pair, its private key non-extractable
 * @throws {ProtocolError} `bad-key` when WebCrypto refuses the bytes or the
 *   public key is not the private key's
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exportEd25519Private, generateEd25519, importEd25519Private } from "./ed25519.ts";
 * const k = await generateEd25519(true), other = await generateEd25519(false);
 * const der = await exportEd25519Private(k);
 * const back = await importEd25519Private(der, k.publicRaw);
 * assert.ok(!back.privateKey.extractable);
 * await assert.rejects(importEd25519Private(der, other.publicRaw), { code: "bad-key" });
 * ```
 */
export async function importEd25519Private(
  pkcs8: Uint8Array,
  publicRaw: Uint8Array,
): Promise<Ed25519KeyPair> {
  let privateKey: CryptoKey;
  try {
    privateKey = await crypto.subtle.importKey(
      "pkcs8",
      buf(pkcs8),
      ALG,
      false,
      ["sign"],
    );
  } catch (e) {
    throw new ProtocolError(
      "bad-key",
      `Cannot use Ed25519 private key: WebCrypto refused it (${reason(e)})`,
    );
  }
  const pair = { privateKey, publicRaw: new Uint8Array(publicRaw) };
  const probe = randomBytes(32);
  const ok = await verifyEd25519(
    pair.publicRaw,
    await signEd25519(pair, probe),
    probe,
  );
  if (!ok) {
    throw new ProtocolError(
      "bad-key",
      "Cannot use Ed25519 private key: it is not the private half of the public key kept with it",
    );
  }
  return pair;
}

/**
 * Sign with Ed25519 (RFC 8032 section 5.1.6).
 * @param pair the signer's pair
 * @param data the bytes to sign
 * @returns the 64-byte signature
 * @throws {KeyError} `sign-failed` when WebCrypto refuses the key
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519, signEd25519 } from "./ed25519.ts";
 * assert.equal((await signEd25519(await generateEd25519(false), new Uint8Array(0))).length, 64);
 * ```
 */
export async function signEd25519(
  pair: Ed25519KeyPair,
  data: Uint8Array,
): Promise<Uint8Array> {
  try {
    return new Uint8Array(
      await crypto.subtle.sign(ALG, pair.privateKey, buf(data)),
    );
  } catch (e) {
    throw new KeyError("sign-failed", `Cannot sign: ${reason(e)}`);
  }
}

/**
 * Verify an Ed25519 signature (RFC 8032 section 5.1.7). Never throws: a
 * key or signature of the wrong length, a key WebCrypto refuses, and a bad
 * signature are all simply false.
 * @param publicRaw the signer's 32-byte public key
 * @param signature the signature, 64 bytes
 * @param data the signed bytes
 * @returns true only for a valid signature
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEd25519, signEd25519, verifyEd25519 } from "./ed25519.ts";
 * const k = await generateEd25519(false), d = new Uint8Array([7]);
 * const sig = await signEd25519(k, d);
 * assert.ok(await verifyEd25519(k.publicRaw, sig, d));
 * assert.ok(!(await verifyEd25519(k.publicRaw, sig.subarray(1), d)));
 * assert.ok(!(await verifyEd25519(new Uint8Array(31), sig, d)));
 * ```
 */
export async function verifyEd25519(
  publicRaw: Uint8Array,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  if (
    publicRaw.length !== ED25519_PUBLIC_BYTES ||
    signature.length !== ED25519_SIGNATURE_BYTES
  ) {
    return false;
  }
  try {
    const key = await crypto.subtle.importKey(
      "raw",
      buf(publicRaw),
      ALG,
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(ALG, key, buf(signature), buf(data));
  } catch {
    return false;
  }
}
