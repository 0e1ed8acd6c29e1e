/**
 * The cluster key (PROTOCOL.md 11.1): `server/cluster.key` in the key
 * directory, 32 random bytes as base64 on one line, 0600 in the 0700
 * server folder. Every node of a cluster holds the same file; it seals
 * what nodes tell each other through NATS (11.2) and never reaches a
 * client. {@link ensureClusterKey} makes it (`im keygen` does, with the
 * server's keys) and keeps one that is there; {@link loadClusterKey}
 * reads it with the checks of the other private keys.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureClusterKey, loadClusterKey } from "./cluster_key.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const made = await ensureClusterKey(dir);
 *   assert.equal(made.action, "created");
 *   assert.equal((await ensureClusterKey(dir)).action, "kept");
 *   assert.equal((await loadClusterKey(dir)).length, 32);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 * @module
 */

import { sha256 } from "../crypto/mod.ts";
import { CLUSTER_KEY_BYTES } from "../proto/mod.ts";
import {
  checkKeyDirs,
  ensureDir,
  exists,
  readKeyFile,
  writeKeyFile,
} from "./_files.ts";
import { KeyStoreError } from "./keystore_error.ts";
import { KEY_LAYOUT as L, keyPath, PRIVATE_KEY_MODE } from "./layout.ts";
import type { ProvisionEntry } from "./provision.ts";

/** Where the cluster key is, relative to the key directory. */
export const CLUSTER_KEY_PATH: string = L.clusterKey;

/**
 * A cluster key's id, to compare between nodes without showing the key:
 * `SHA256:` and the unpadded base64 of its SHA-256.
 * @param key the 32 bytes
 * @returns the id
 */
export function clusterKeyId(key: Uint8Array): string {
  return `SHA256:${sha256(key).toBase64().replace(/=+$/, "")}`;
}

function decode(text: string, path: string): Uint8Array {
  const line = text.replace(/\r?\n$/, "");
  let bytes: Uint8Array | undefined;
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(line)) {
    try {
      bytes = Uint8Array.fromBase64(line);
    } catch {
      bytes = undefined;
    }
  }
  if (!bytes || bytes.length !== CLUSTER_KEY_BYTES) {
    throw new KeyStoreError(
      "bad-cluster-key",
      `Cannot use cluster key "${path}": expected ${CLUSTER_KEY_BYTES} bytes as base64 on one line; copy it from another node, or delete it and make a new one with im keygen (then on every node)`,
      path,
    );
  }
  return bytes;
}

/**
 * Make `server/cluster.key` unless it is there (then it is checked and kept).
 * @param dir the key directory (created, 0700, if missing)
 * @returns the entry: `created` or `kept`, with the key's id
 * @throws {KeyError} `key-dir-writable`, `key-permissions`, `bad-cluster-key`, `key-write-failed`
 */
export async function ensureClusterKey(dir: string): Promise<ProvisionEntry> {
  await ensureDir(dir);
  await ensureDir(keyPath(dir, L.serverDir));
  const path = keyPath(dir, CLUSTER_KEY_PATH);
  if (await exists(path)) {
    const key = await loadClusterKey(dir);
    return {
      path: CLUSTER_KEY_PATH,
      fingerprint: clusterKeyId(key),
      action: "kept",
    };
  }
  const key = crypto.getRandomValues(new Uint8Array(CLUSTER_KEY_BYTES));
  await writeKeyFile(path, `${key.toBase64()}\n`, PRIVATE_KEY_MODE);
  const id = clusterKeyId(key);
  key.fill(0);
  return { path: CLUSTER_KEY_PATH, fingerprint: id, action: "created" };
}

/**
 * Read `server/cluster.key`, checked as a private key is (a regular file,
 * 0600 or narrower, in folders that group and others cannot write).
 * @param dir the key directory
 * @returns the 32 bytes
 * @throws {KeyError} `key-missing` (its fix: run `im keygen`), `key-unreadable`, `key-permissions`, `key-dir-writable`, `bad-cluster-key`
 */
export async function loadClusterKey(dir: string): Promise<Uint8Array> {
  await checkKeyDirs([dir, keyPath(dir, L.serverDir)]);
  const path = keyPath(dir, CLUSTER_KEY_PATH);
  const text = await readKeyFile(path, "private", {
    kind: "provision-server",
    dir,
  }).catch((e) => {
    if (e instanceof KeyStoreError) {
      // The file is a key, not a PEM: say which.
      throw new KeyStoreError(
        e.code,
        e.message.replace("private key", "cluster key"),
        e.path,
        e.fix,
        e.mode,
      );
    }
    throw e;
  });
  return decode(text, path);
}
