/**
 * Ephemeral X25519 (RFC 7748) through WebCrypto, for forward secrecy of the
 * server channel (rule 2.5) and the peer channel (rule 4.4).
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

import { ProtocolError } from "../util/mod.ts";

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
