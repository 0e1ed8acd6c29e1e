/**
 * Partners' keys pinned on first use (PROTOCOL.md section 6, key
 * continuity): `users/<me>/peers/<peer>.pem` in the key directory, the
 * partner's SPKI `PUBLIC KEY` PEM, mode 0600 in a 0700 folder (layout in
 * `layout.ts`). A pin is written once and never overwritten: removing its
 * file is the only way to accept another key. Mailboxes pin the keys they
 * encrypt to in the same store.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPublicIdentity } from "../crypto/mod.ts";
 * import { loadPinnedPeer, pinPeer } from "./pins.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const b = await loadPublicIdentity((await generateRsaKeyPair(2048)).publicPem);
 *   assert.equal(await loadPinnedPeer(dir, "A", "B"), undefined);
 *   assert.equal(await pinPeer(dir, "A", "B", b), "pinned");
 *   assert.equal((await loadPinnedPeer(dir, "A", "B"))?.fingerprint, b.fingerprint);
 *   assert.equal(await pinPeer(dir, "A", "B", b), "kept");
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 * @module
 */

import {
  loadPublicIdentity,
  pemEncode,
  type PublicIdentity,
} from "../crypto/mod.ts";
import { checkUsername, type PeerPins, type PinAction } from "../proto/mod.ts";
import {
  checkKeyDirs,
  ensureDir,
  exists,
  readKeyFile,
  writeKeyFile,
} from "./_files.ts";
import { KeyStoreError } from "./keystore_error.ts";
import { KEY_LAYOUT as L, keyPath, PEER_PIN_MODE } from "./layout.ts";

/** The folders on the way to `me`'s pins, outermost first. */
function pinDirs(dir: string, me: string): string[] {
  return [
    dir,
    keyPath(dir, L.usersDir),
    keyPath(dir, L.userDir(me)),
    keyPath(dir, L.userPeers(me)),
  ];
}

/**
 * The path of the key `me` pinned (or would pin) for `peer`.
 * @param dir the key directory
 * @param me the user who pins
 * @param peer the partner
 * @returns `<dir>/users/<me>/peers/<peer>.pem`
 * @throws {AuthError} `bad-username` for either name
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerPinPath } from "./pins.ts";
 * assert.equal(peerPinPath("keys", "A", "B"), "keys/users/A/peers/B.pem");
 * ```
 */
export function peerPinPath(dir: string, me: string, peer: string): string {
  checkUsername(me);
  checkUsername(peer);
  return keyPath(dir, L.userPeer(me, peer));
}

/**
 * Read the key `me` pinned for `peer`, if any. The folders on the way and
 * the file are checked as for every trusted key (`layout.ts`).
 * @param dir the key directory
 * @param me the user who pinned
 * @param peer the partner
 * @returns the pinned key, or undefined when there is no pin
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} `key-dir-writable`, `key-permissions`, `key-unreadable`,
 *   `bad-pem` and the other errors of a malformed key
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadPinnedPeer } from "./pins.ts";
 * assert.equal(await loadPinnedPeer("/nonexistent", "A", "B"), undefined);
 * ```
 */
export async function loadPinnedPeer(
  dir: string,
  me: string,
  peer: string,
): Promise<PublicIdentity | undefined> {
  const path = peerPinPath(dir, me, peer);
  await checkKeyDirs(pinDirs(dir, me));
  if (!await exists(path)) return undefined;
  const text = await readKeyFile(path, "trusted");
  return await loadPublicIdentity(text, `pinned key of ${peer} "${path}"`);
}

/**
 * Pin `identity` as `peer`'s key for `me`, unless a key is pinned already:
 * the same key is kept, another is an error (a pin is never overwritten).
 * The folders are created 0700 where missing (existing ones must not be
 * writable by group or others); the file is written 0600 through a
 * temporary name and a rename.
 * @param dir the key directory
 * @param me the user who pins
 * @param peer the partner
 * @param identity the key to pin
 * @returns `pinned`, or `kept` when this key was pinned already
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} `peer-key-changed` (another key is pinned: its `fix`
 *   says to remove the pin once the partner confirmed its new key),
 *   `key-write-failed`, `key-dir-writable`, and the errors of
 *   {@link loadPinnedPeer}
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPublicIdentity } from "../crypto/mod.ts";
 * import { pinPeer } from "./pins.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const key = async () => await loadPublicIdentity((await generateRsaKeyPair(2048)).publicPem);
 *   await pinPeer(dir, "A", "B", await key());
 *   const e = await pinPeer(dir, "A", "B", await key()).catch((e) => e);
 *   assert.equal(e.code, "peer-key-changed");
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function pinPeer(
  dir: string,
  me: string,
  peer: string,
  identity: PublicIdentity,
): Promise<PinAction> {
  const path = peerPinPath(dir, me, peer);
  for (const d of pinDirs(dir, me)) await ensureDir(d);
  const pinned = await loadPinnedPeer(dir, me, peer);
  if (pinned) {
    if (pinned.fingerprint === identity.fingerprint) return "kept";
    throw new KeyStoreError(
      "peer-key-changed",
      `Refusing to pin ${identity.fingerprint} for ${peer}: "${path}" pins ${pinned.fingerprint}`,
      path,
      { kind: "remove-pin", peer, path },
    );
  }
  await writeKeyFile(
    path,
    pemEncode("PUBLIC KEY", identity.publicDer),
    PEER_PIN_MODE,
  );
  return "pinned";
}

/**
 * Replace the pin of `peer` (the user said so with `!trust`, PROTOCOL.md
 * section 6): written through a temporary file and a rename, like every key.
 * @param dir the key directory
 * @param me whose pins
 * @param peer the partner
 * @param identity the new key
 * @throws {KeyStoreError} `key-write-failed`, `key-dir-writable`
 */
export async function replacePeerPin(
  dir: string,
  me: string,
  peer: string,
  identity: PublicIdentity,
): Promise<void> {
  const path = peerPinPath(dir, me, peer);
  for (const d of pinDirs(dir, me)) await ensureDir(d);
  await writeKeyFile(
    path,
    pemEncode("PUBLIC KEY", identity.publicDer),
    PEER_PIN_MODE,
  );
}

/**
 * The pins of `me` in the key directory, as the client reads them
 * (PROTOCOL.md section 6, key continuity).
 * @param dir the key directory
 * @param me the user whose pins they are
 * @returns a {@link PeerPins} over {@link loadPinnedPeer} and {@link pinPeer}
 * @throws {AuthError} `bad-username`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerPinStore } from "./pins.ts";
 * const pins = peerPinStore("keys", "A");
 * assert.equal(pins.where("B"), "keys/users/A/peers/B.pem");
 * ```
 */
export function peerPinStore(dir: string, me: string): PeerPins {
  checkUsername(me);
  return {
    load: (peer) => loadPinnedPeer(dir, me, peer),
    pin: (peer, identity) => pinPeer(dir, me, peer, identity),
    replace: (peer, identity) => replacePeerPin(dir, me, peer, identity),
    where: (peer) => peerPinPath(dir, me, peer),
  };
}
