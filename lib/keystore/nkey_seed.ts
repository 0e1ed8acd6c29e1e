/**
 * A NATS user nkey seed (PROTOCOL.md 11.1, `im serve --nats-nkey-file F`):
 * the first line of a file, `SU` and 56 base32 characters, as `nk -gen
 * user` writes it. It signs the NATS server's nonce, so it is a private key
 * and read as one: a regular file, 0600 or narrower, in a folder that group
 * and others cannot write. Its checksum is checked where the NATS client is
 * (lib/server/nats/), which decodes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadNkeySeed } from "./nkey_seed.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const path = `${dir}/nats.nk`;
 *   const seed = "SUA" + "A".repeat(55);
 *   await Deno.writeTextFile(path, `${seed}\n`, { mode: 0o600 });
 *   assert.equal(new TextDecoder().decode(await loadNkeySeed(path)), seed);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 * @module
 */

import { dirname, resolve } from "node:path";
import { checkKeyDirs, readKeyFile } from "./_files.ts";
import { KeyStoreError } from "./keystore_error.ts";

/** A user seed: `S` (seed), `U` (user), then 56 base32 characters. */
const USER_SEED = /^SU[A-Z2-7]{56}$/;

/**
 * Read a NATS user nkey seed, checked as a private key is.
 * @param path the seed file
 * @returns the seed's characters as bytes (the caller wipes them)
 * @throws {KeyStoreError} `key-missing`, `key-unreadable`, `key-permissions`,
 *   `key-dir-writable`, `bad-nkey-seed`
 */
export async function loadNkeySeed(path: string): Promise<Uint8Array> {
  await checkKeyDirs([dirname(resolve(path))]);
  const text = await readKeyFile(path, "private").catch((e) => {
    if (e instanceof KeyStoreError) {
      throw new KeyStoreError(
        e.code,
        e.message.replace("private key", "NATS nkey seed"),
        e.path,
        e.fix,
        e.mode,
      );
    }
    throw e;
  });
  const line = text.split(/\r?\n/)[0]!.trim();
  if (!USER_SEED.test(line)) {
    throw new KeyStoreError(
      "bad-nkey-seed",
      `Cannot use NATS nkey seed "${path}": expected a user seed (SU and 56 base32 characters) on the first line`,
      path,
    );
  }
  return new TextEncoder().encode(line);
}
