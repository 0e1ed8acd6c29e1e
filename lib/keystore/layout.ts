/**
 * The key directory's layout: where keygen writes keys and where the server
 * and the client read them (PROTOCOL.md section 3, "Login": rule 2.2 pins
 * the server key in `users/<user>/server.pem`). All paths are under the key
 * directory, `keys` or `$IM_KEYS` by default:
 *
 * ```text
 * <dir>/server/private.pem         server key pair, 0600
 * <dir>/server/public.pem          0644
 * <dir>/server/clients/<user>.pem  the server's directory of client public keys, 0644
 * <dir>/server/cluster.key         the cluster key (PROTOCOL.md 11.1), base64, 0600
 * <dir>/users/<user>/private.pem   the user's key pair, 0600
 * <dir>/users/<user>/public.pem    0644
 * <dir>/users/<user>/server.pem    the pinned server public key (like known_hosts), 0644
 * <dir>/users/<user>/peers/<peer>.pem  a partner's public key, pinned on first use, 0600
 * <dir>/users/<user>/peers/<peer>.mail      its last verified mailbox certificates, 0600
 * <dir>/users/<user>/peers/<peer>.verified  the fingerprint the user verified for it, 0600
 * <dir>/users/<user>/mail/         the user's mailbox keys and state (mail_vault.ts), 0700
 * ```
 *
 * Directories that the keystore creates are 0700 (parents it creates too).
 * Permission policy (like ssh; not applied on Windows): a private key file
 * that group or others can read or write (`mode & 0o077`) is refused with
 * `key-permissions`. A trusted public key (an entry of `server/clients/`,
 * a pinned `server.pem`, a peer's pin) that group or others can write
 * (`mode & 0o022`) is refused too, as sshd's StrictModes refuses such an
 * `authorized_keys`. So is a directory on the way to a key that group or
 * others can write (`key-dir-writable`), as StrictModes refuses one above
 * `authorized_keys`: whoever can write it can add, replace or rename the
 * keys in it. The key directory, `server/` and `server/clients/` are
 * checked whenever the server loads or reloads keys; the key directory,
 * `users/` and `users/<user>/` whenever a client loads its keys (and
 * `users/<user>/peers/` whenever it reads a peer's pin); every
 * existing directory that provisioning would write into, before it writes.
 * Such a directory is refused, never narrowed, keygen included: keys may
 * have been planted in it meanwhile, and narrowing it would make them
 * trusted. The owner is not checked (Deno tells a process its own user id
 * only with `--allow-sys`).
 *
 * Every username goes through `checkUsername` (rule 2.9) before it is used
 * in a path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KEY_LAYOUT, keyPath } from "./layout.ts";
 * assert.equal(keyPath("keys", KEY_LAYOUT.userServer("A")), "keys/users/A/server.pem");
 * ```
 * @module
 */

import { join } from "node:path";

/** The users `im keygen` provisions when none are named. */
export const DEFAULT_USERS: readonly string[] = ["A", "B", "C", "D", "E", "F"];
/** Mode of private key files. */
export const PRIVATE_KEY_MODE = 0o600;
/** Mode of public key files. */
export const PUBLIC_KEY_MODE = 0o644;
/** Mode of directories created in the key directory. */
export const KEY_DIR_MODE = 0o700;
/**
 * Mode of a peer's pin (PROTOCOL.md section 6, key continuity): a public
 * key, but whom a user talks to is nobody else's business.
 */
export const PEER_PIN_MODE = 0o600;

/**
 * Paths in the key directory, relative and `/`-separated (as in the module
 * doc); {@link keyPath} joins one to the directory. Usernames must already
 * follow rule 2.9.
 */
export const KEY_LAYOUT = {
  /** The server's folder. */
  serverDir: "server",
  /** The server's private key. */
  serverPrivate: "server/private.pem",
  /** The server's public key, which users pin. */
  serverPublic: "server/public.pem",
  /** The server's directory of client public keys. */
  clientsDir: "server/clients",
  /** The cluster key (PROTOCOL.md 11.1): 32 bytes, base64 on one line. */
  clusterKey: "server/cluster.key",
  /** The folder of users' folders. */
  usersDir: "users",
  /** A user's public key as enrolled on the server. */
  client: (user: string): string => `server/clients/${user}.pem`,
  /** A user's folder. */
  userDir: (user: string): string => `users/${user}`,
  /** A user's private key. */
  userPrivate: (user: string): string => `users/${user}/private.pem`,
  /** A user's public key. */
  userPublic: (user: string): string => `users/${user}/public.pem`,
  /** The server key a user pinned. */
  userServer: (user: string): string => `users/${user}/server.pem`,
  /** A user's folder of partners' keys, pinned on first use (and mailboxes' keys). */
  userPeers: (user: string): string => `users/${user}/peers`,
  /** The key `user` pinned for `peer`. */
  userPeer: (user: string, peer: string): string =>
    `users/${user}/peers/${peer}.pem`,
  /** The last mailbox certificates `user` verified for `peer` (PROTOCOL.md 9.1). */
  userPeerMail: (user: string, peer: string): string =>
    `users/${user}/peers/${peer}.mail`,
  /** The fingerprint `user` verified for `peer` (`!verify`, PROTOCOL.md 9.1). */
  userPeerVerified: (user: string, peer: string): string =>
    `users/${user}/peers/${peer}.verified`,
  /** A user's mailbox folder: its X25519 keys, `state`, `seen`, `pending` (PROTOCOL.md 9.1). */
  userMail: (user: string): string => `users/${user}/mail`,
  /** A user's rooms folder: one `<room>.json` per room, `pending-keys.json` (PROTOCOL.md 10.6). */
  userRooms: (user: string): string => `users/${user}/rooms`,
} as const;

/**
 * Full path of a file in the key directory.
 * @param dir the key directory
 * @param rel a `/`-separated relative path, as in {@link KEY_LAYOUT}
 * @returns the path joined for this platform
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keyPath } from "./layout.ts";
 * assert.equal(keyPath("keys", "users/A/private.pem"), "keys/users/A/private.pem");
 * ```
 */
export function keyPath(dir: string, rel: string): string {
  return join(dir, ...rel.split("/"));
}

/**
 * The key directory to use when none is given: `$IM_KEYS`, else `keys`.
 * Without permission to read the environment it is `keys`.
 * @returns a directory path
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultKeyDir } from "./layout.ts";
 * assert.equal(typeof defaultKeyDir(), "string");
 * ```
 */
export function defaultKeyDir(): string {
  try {
    const v = Deno.env.get("IM_KEYS");
    if (v !== undefined && v !== "") return v;
  } catch {
    // No permission to read the environment: fall back to the default.
  }
  return "keys";
}
