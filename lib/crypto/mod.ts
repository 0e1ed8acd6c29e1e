/**
 * Layer 1, crypto: the primitives (SHA-256 and HMAC, MD-CFB, HKDF and the
 * labels, X25519, Ed25519, RSA-PSS and RSA-OAEP identities with their PEM files).
 * Pure functions and key objects; no sockets, no files. May import: util.
 * @module
 */

export * from "./ed25519.ts";
export * from "./hmac.ts";
export * from "./kdf.ts";
export * from "./mdcfb.ts";
export * from "./pem.ts";
export * from "./pss_oaep.ts";
export * from "./rsa.ts";
// Named, not `*`: sha256.ts also exports its compression and scratch for
// hmac.ts, which stay internal to lib/crypto.
export { sha256, SHA256_BLOCK_BYTES, SHA256_BYTES } from "./sha256.ts";
export * from "./sign_pool.ts";
export * from "./x25519.ts";
