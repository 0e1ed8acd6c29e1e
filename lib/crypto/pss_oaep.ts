/**
 * The RSA operations the handshakes use (PROTOCOL.md section 1,
 * "Primitives"): RSA-PSS SHA-256 signatures with a 32-byte salt, and
 * RSA-OAEP SHA-256 key transport with a label. The keys come from the
 * identities of `rsa.ts`; each operation first checks that it was handed a
 * key of the right kind.
 *
 * A bad signature is `false`, never an exception; every OAEP decryption
 * failure is one opaque {@link AuthError} `bad-session-key`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "./rsa.ts";
 * import { signPss, verifyPss } from "./pss_oaep.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const msg = new TextEncoder().encode("hello");
 * assert(await verifyPss(me.publicIdentity.verify, await signPss(me.sign, msg), msg));
 * ```
 * @module
 */

import { AuthError, KeyError } from "../util/mod.ts";
import { buf, reason } from "./_util.ts";

/** RSA-PSS salt length in bytes (PROTOCOL.md section 1: salt 32). */
export const PSS_SALT_LENGTH = 32;

const PSS_PARAMS = { name: "RSA-PSS", saltLength: PSS_SALT_LENGTH } as const;

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
 * import { generateRsaKeyPair, loadPrivateIdentity } from "./rsa.ts";
 * import { signPss } from "./pss_oaep.ts";
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
 * import { generateRsaKeyPair, loadPrivateIdentity } from "./rsa.ts";
 * import { verifyPss } from "./pss_oaep.ts";
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
 * import { generateRsaKeyPair, loadPrivateIdentity } from "./rsa.ts";
 * import { encryptOaep, decryptOaep } from "./pss_oaep.ts";
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
 * import { generateRsaKeyPair, loadPrivateIdentity } from "./rsa.ts";
 * import { decryptOaep } from "./pss_oaep.ts";
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
