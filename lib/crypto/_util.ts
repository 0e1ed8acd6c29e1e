/**
 * Helpers shared by the RSA files (`_der.ts`, `pem.ts`, `rsa.ts`,
 * `pss_oaep.ts`): a byte view WebCrypto accepts, the reason of a caught
 * error, and the one wording of a malformed key (PROTOCOL.md section 1,
 * "Primitives").
 * @module
 */

import { KeyError } from "../util/mod.ts";

/**
 * WebCrypto wants `BufferSource` over an `ArrayBuffer`; copy only when needed.
 * @param b any bytes
 * @returns `b` itself, or a copy over a plain `ArrayBuffer`
 */
export function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b.buffer instanceof ArrayBuffer
    ? b as Uint8Array<ArrayBuffer>
    : new Uint8Array(b);
}

/**
 * The message of anything thrown.
 * @param e a caught value
 * @returns its message, or its string form
 */
export function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A key that cannot be used: `Cannot use <source>: <why>`.
 * @param source what the key is (a path), for the message
 * @param why what is wrong with it
 * @returns a {@link KeyError} `bad-key`, to throw
 */
export function badKey(source: string, why: string): KeyError {
  return new KeyError("bad-key", `Cannot use ${source}: ${why}`);
}
