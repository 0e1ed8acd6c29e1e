/**
 * X25519 (RFC 7748) through WebCrypto: ephemeral keys for forward secrecy of
 * the server channel (rule 2.5) and the peer channel (rule 4.4), and the
 * longer-lived mailbox keys (PROTOCOL.md section 9.1), whose private halves
 * a client keeps as PKCS#8 (RFC 8410).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEphemeral, sharedSecret } from "./x25519.ts";
 * const a = await generateEphemeral(), b = await generateEphemeral();
 * const s1 = await sharedSecret(a, b.publicRaw), s2 = await sharedSecret(b, a.publicRaw);
 * assert.ok(s1.toHex() === s2.toHex());
 * ```
 * @module
 */

import { KeyError, ProtocolError } from "../util/mod.ts";
import { buf, reason } from "./_util.ts";

/** Bytes of an X25519 public key. */
export const X25519_PUBLIC_BYTES = 32;

/** A fresh key pair whose private half never leaves WebCrypto. */
export interface Ephemeral {
  privateKey: CryptoKey;
  publicRaw: Uint8Array<ArrayBuffer>;
}

/**
 * Make a fresh ephemeral key pair; one per handshake, never reused.
 * @returns the pair
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEphemeral } from "./x25519.ts";
 * assert.ok((await generateEphemeral()).publicRaw.length === 32);
 * ```
 */
export async function generateEphemeral(): Promise<Ephemeral> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const publicRaw = new Uint8Array(
    await crypto.subtle.exportKey("raw", pair.publicKey),
  );
  return { privateKey: pair.privateKey, publicRaw };
}

/**
 * The X25519 shared secret with a peer's public key.
 * @param own our ephemeral pair
 * @param peerPublic the peer's 32-byte public key
 * @returns 32 bytes
 * @throws {ProtocolError} `bad-ephemeral` for a wrong length or a low-order point (all-zero secret, RFC 7748 6.1)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateEphemeral, sharedSecret } from "./x25519.ts";
 * const a = await generateEphemeral();
 * await assert.rejects(() => sharedSecret(a, new Uint8Array(32)), { name: "ProtocolError" });
 * ```
 */
export async function sharedSecret(
  own: Ephemeral,
  peerPublic: Uint8Array,
): Promise<Uint8Array<ArrayBuffer>> {
  if (peerPublic.length !== X25519_PUBLIC_BYTES) {
    throw new ProtocolError(
      "bad-ephemeral",
      `Ephemeral key: expected ${X25519_PUBLIC_BYTES} bytes, got ${peerPublic.length}`,
    );
  }
  let secret: Uint8Array<ArrayBuffer>;
  try {
    const pub = await crypto.subtle.importKey(
      "raw",
      peerPublic as Uint8Array<ArrayBuffer>,
      { name: "X25519" },
      false,
      [],
    );
    secret = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "X25519", public: pub },
        own.privateKey,
        256,
      ),
    );
  } catch {
    throw new ProtocolError(
      "bad-ephemeral",
      "Ephemeral key rejected: not a usable X25519 point",
    );
  }
  // RFC 7748 6.1: an all-zero output means the peer sent a low-order point.
  if (secret.every((b) => b === 0)) {
    throw new ProtocolError(
      "bad-ephemeral",
      "Ephemeral key rejected: low-order X25519 point",
    );
  }
  return secret;
}

/**
 * Make an X25519 key pair for the mailbox (PROTOCOL.md section 9.1): `ik`,
 * `spk` and `opk` are extractable so a key directory can keep them; a
 * sender's ephemeral `ek` is not.
 * @param extractable whether the private key may be exported
 *   ({@link exportX25519Private})
 * @returns the pair
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateX25519 } from "./x25519.ts";
 * const k = await generateX25519(true);
 * assert.ok(k.privateKey.extractable && k.publicRaw.length === 32);
 * ```
 */
export async function generateX25519(extractable: boolean): Promise<Ephemeral> {
  const pair = await crypto.subtle.generateKey(
    { name: "X25519" },
    extractable,
    ["deriveBits"],
  ) as CryptoKeyPair;
  const publicRaw = new Uint8Array(
    await crypto.subtle.exportKey("raw", pair.publicKey),
  );
  return { privateKey: pair.privateKey, publicRaw };
}

/**
 * Export an extractable X25519 private key as PKCS#8 DER (RFC 8410), as a
 * key directory writes it (PROTOCOL.md section 9.1, "At rest").
 * @param key an extractable X25519 private key
 * @returns the DER bytes (secret: the caller wipes them once written)
 * @throws {KeyError} `wrong-key` for another kind of key or one that is
 *   not extractable
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exportX25519Private, generateX25519 } from "./x25519.ts";
 * const der = await exportX25519Private((await generateX25519(true)).privateKey);
 * assert.ok(der.length === 48 && der[0] === 0x30);
 * ```
 */
export async function exportX25519Private(
  key: CryptoKey,
): Promise<Uint8Array<ArrayBuffer>> {
  if (
    key.type !== "private" || key.algorithm.name !== "X25519" ||
    !key.extractable
  ) {
    throw new KeyError(
      "wrong-key",
      `Cannot export: expected an extractable X25519 private key, got a ${
        key.extractable ? "" : "non-extractable "
      }${key.type} ${key.algorithm.name} key`,
    );
  }
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
}

/** RFC 7748 section 4.1: the u-coordinate of the base point, 9. */
const BASE_POINT = new Uint8Array(32);
BASE_POINT[0] = 9;

/**
 * Import an X25519 private key from PKCS#8 DER (RFC 8410), non-extractable,
 * with its public key, computed as `X25519(k, 9)` (RFC 7748 section 6.1):
 * the private key is never imported extractable, not even for a moment.
 * @param pkcs8 the DER bytes (not wiped here; the caller owns them)
 * @returns the pair, its private key non-extractable
 * @throws {KeyError} `bad-key` when WebCrypto refuses the bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { exportX25519Private, generateX25519, importX25519Private } from "./x25519.ts";
 * const k = await generateX25519(true);
 * const back = await importX25519Private(await exportX25519Private(k.privateKey));
 * assert.ok(!back.privateKey.extractable && back.publicRaw.toHex() === k.publicRaw.toHex());
 * ```
 */
export async function importX25519Private(
  pkcs8: Uint8Array,
): Promise<Ephemeral> {
  let privateKey: CryptoKey;
  let publicRaw: Uint8Array<ArrayBuffer>;
  try {
    privateKey = await crypto.subtle.importKey(
      "pkcs8",
      buf(pkcs8),
      { name: "X25519" },
      false,
      ["deriveBits"],
    );
    const base = await crypto.subtle.importKey(
      "raw",
      BASE_POINT,
      { name: "X25519" },
      false,
      [],
    );
    publicRaw = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "X25519", public: base },
        privateKey,
        256,
      ),
    );
  } catch (e) {
    throw new KeyError(
      "bad-key",
      `Cannot use X25519 private key: WebCrypto refused it (${reason(e)})`,
    );
  }
  return { privateKey, publicRaw };
}
