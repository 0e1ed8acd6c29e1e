/**
 * Loading the key directory (layout in `layout.ts`): what the server needs
 * (its key pair and its directory of client public keys) and what a user's
 * client needs (the user's key pair and the pinned server key, PROTOCOL.md
 * section 3, "Login", rule 2.2). A key that is missing comes with a
 * {@link KeyFix} saying how to make it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadUserKeys } from "./load.ts";
 * const err = await loadUserKeys("/nonexistent", "G").catch((e) => e);
 * assert.equal(err.code, "key-missing");
 * assert.deepEqual(err.fix, { kind: "provision-user", dir: "/nonexistent", user: "G" });
 * ```
 * @module
 */

import { join } from "node:path";
import { allSettledOrThrow } from "../util/mod.ts";
import {
  loadPrivateIdentity,
  loadPublicIdentity,
  type PrivateIdentity,
  type PublicIdentity,
} from "../crypto/mod.ts";
import { checkUsername, isValidUsername } from "../proto/mod.ts";
import { checkKeyDirs, exists, fsReason, readKeyFile } from "./_files.ts";
import { KEY_LAYOUT as L, keyPath } from "./layout.ts";

/** The client directory as loaded, with the files that were skipped and why. */
export interface ClientDirectory {
  /** Username -> public identity. */
  readonly clients: Map<string, PublicIdentity>;
  /** One line per skipped file, for the server's log. */
  readonly problems: string[];
  /**
   * False when the directory itself could not be read: `clients` is then
   * empty for that reason only, and a running server keeps what it had
   * rather than revoke everyone.
   */
  readonly complete: boolean;
}

/** Everything the server needs. */
export interface ServerKeys extends ClientDirectory {
  /** The server's own key pair. */
  readonly identity: PrivateIdentity;
}

/** Everything a user's client needs. */
export interface UserKeys {
  /** The user's own key pair. */
  readonly identity: PrivateIdentity;
  /** The server key the user trusts (rule 2.2). */
  readonly pinnedServer: PublicIdentity;
}

/**
 * The directories on the way to the server's keys, outermost first: the key
 * directory, `server/`, `server/clients/`.
 */
function serverDirs(dir: string): string[] {
  return [dir, keyPath(dir, L.serverDir), keyPath(dir, L.clientsDir)];
}

/**
 * Load the server's client directory, `server/clients/<user>.pem`. Files
 * whose name is not `<valid username>.pem`, that are not regular files, or
 * whose key is bad, are skipped and reported; they never stop the server.
 * A directory on the way that group or others can write is another matter:
 * anyone could have enrolled a key there, so nothing is loaded from it (a
 * running server that reloads keeps the keys it had).
 * @param dir the key directory
 * @returns the clients and the problems
 * @throws {KeyError} `key-dir-writable`: the key directory, `server/` or `server/clients/` is writable by group or others
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadClientDirectory } from "./load.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const { clients, problems } = await loadClientDirectory(dir);
 *   assert.equal(clients.size, 0);
 *   assert.equal(problems.length, 1);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function loadClientDirectory(
  dir: string,
): Promise<ClientDirectory> {
  await checkKeyDirs(serverDirs(dir));
  const clients = new Map<string, PublicIdentity>();
  const problems: string[] = [];
  const clientsPath = keyPath(dir, L.clientsDir);
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(clientsPath)) names.push(e.name);
  } catch (e) {
    problems.push(
      `Cannot read the client directory "${clientsPath}": ${fsReason(e)}`,
    );
    return { clients, problems, complete: false };
  }
  names.sort();
  for (const name of names) {
    const path = join(clientsPath, name);
    const user = name.endsWith(".pem") ? name.slice(0, -4) : undefined;
    if (user === undefined || !isValidUsername(user)) {
      problems.push(
        `Skipped "${path}": expected <username>.pem with a username of 1-32 characters of A-Z a-z 0-9 _ -`,
      );
      continue;
    }
    try {
      const text = await readKeyFile(path, "trusted");
      clients.set(
        user,
        await loadPublicIdentity(text, `public key "${path}"`),
      );
    } catch (e) {
      problems.push(
        `Skipped "${path}": ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }
  return { clients, problems, complete: true };
}

/**
 * Load what the server needs: its key pair and the client directory.
 * @param dir the key directory
 * @returns the server identity, the clients and the skipped files
 * @throws {KeyError} the server key is missing (`fix`: provision it), unreadable, too open or malformed; `key-dir-writable`: a directory on the way is writable by group or others
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadServerKeys } from "./load.ts";
 * const err = await loadServerKeys("/nonexistent").catch((e) => e);
 * assert.equal(err.code, "key-missing");
 * ```
 */
export async function loadServerKeys(dir: string): Promise<ServerKeys> {
  await checkKeyDirs(serverDirs(dir));
  const path = keyPath(dir, L.serverPrivate);
  const text = await readKeyFile(path, "private", {
    kind: "provision-server",
    dir,
  });
  const identity = await loadPrivateIdentity(text, `private key "${path}"`);
  return { identity, ...await loadClientDirectory(dir) };
}

/**
 * Load what a user's client needs: the user's key pair and the pinned server key.
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @returns the identity and the pinned server key
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} a key is missing (a {@link KeyStoreError} whose `fix` says how to make it), unreadable, too open or malformed; `key-dir-writable`: the key directory, `users/` or `users/<user>/` is writable by group or others
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadUserKeys } from "./load.ts";
 * const err = await loadUserKeys("/nonexistent", "G").catch((e) => e);
 * assert.equal(err.code, "key-missing");
 * assert.equal(err.fix.kind, "provision-user");
 * ```
 */
export async function loadUserKeys(
  dir: string,
  user: string,
): Promise<UserKeys> {
  checkUsername(user);
  await checkKeyDirs([
    dir,
    keyPath(dir, L.usersDir),
    keyPath(dir, L.userDir(user)),
  ]);
  const privPath = keyPath(dir, L.userPrivate(user));
  const pinPath = keyPath(dir, L.userServer(user));
  const [privText, pinText] = await allSettledOrThrow([
    readKeyFile(privPath, "private", { kind: "provision-user", dir, user }),
    readKeyFile(pinPath, "trusted", { kind: "pin-server", dir, user }),
  ]);
  const [identity, pinnedServer] = await allSettledOrThrow([
    loadPrivateIdentity(privText, `private key "${privPath}"`),
    loadPublicIdentity(pinText, `pinned server key "${pinPath}"`),
  ]);
  return { identity, pinnedServer };
}

/**
 * Is there a server key in `dir`?
 * @param dir the key directory
 * @returns true when `server/private.pem` exists
 * @throws {KeyError} `key-unreadable` when that cannot be told
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverKeysExist } from "./load.ts";
 * assert.equal(await serverKeysExist("/nonexistent"), false);
 * ```
 */
export async function serverKeysExist(dir: string): Promise<boolean> {
  return await exists(keyPath(dir, L.serverPrivate));
}

/**
 * The users who can log in from this key directory: the valid names under
 * `users/` that have a private key, sorted (what `im chat` offers when it
 * asks for a username).
 * @param dir the key directory
 * @returns the names; none when there is no `users/` directory
 */
export async function listUsers(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(keyPath(dir, L.usersDir))) {
      if (!e.isDirectory || !isValidUsername(e.name)) continue;
      if (await exists(keyPath(dir, L.userPrivate(e.name)))) names.push(e.name);
    }
  } catch {
    // No users directory: nothing to offer; loading the keys will say why.
  }
  return names.sort();
}
