/**
 * The key directory: where keygen writes keys and where the server and the
 * client read them. Layout (all paths under the key directory, `keys` or
 * `$IM_KEYS` by default):
 *
 * ```text
 * <dir>/server/private.pem         server key pair, 0600
 * <dir>/server/public.pem          0644
 * <dir>/server/clients/<user>.pem  the server's directory of client public keys, 0644
 * <dir>/users/<user>/private.pem   the user's key pair, 0600
 * <dir>/users/<user>/public.pem    0644
 * <dir>/users/<user>/server.pem    the pinned server public key (like known_hosts), 0644
 * ```
 *
 * Directories that this module creates are 0700. Files are written to a
 * temporary name and renamed, so a crash never leaves half a key. A key is
 * never overwritten unless the caller asks for it (`force`).
 *
 * Permission policy (like ssh; not applied on Windows): a private key file
 * that group or others can read or write (`mode & 0o077`) is refused with
 * `key-permissions` and a `chmod 600` hint. A trusted public key (an entry
 * of `server/clients/`, or a pinned `server.pem`) that group or others can
 * write (`mode & 0o022`) is refused too, as sshd's StrictModes refuses such
 * an `authorized_keys`.
 *
 * Every username goes through {@link checkUsername} (rule 2.9) before it is
 * used in a path. Every file system failure is a {@link KeyError} naming the
 * path, with a hint.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadServerKeys, loadUserKeys, provision } from "./keystore.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await provision(dir, { users: ["A"], bits: 2048 });
 *   const server = await loadServerKeys(dir);
 *   const a = await loadUserKeys(dir, "A");
 *   assert.equal(a.pinnedServer.fingerprint, server.identity.fingerprint);
 *   assert.equal(server.clients.get("A")?.fingerprint, a.identity.fingerprint);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 * @module
 */

import { join } from "node:path";
import { allSettledOrThrow, KeyError } from "../util/mod.ts";
import {
  checkRsaBits,
  DEFAULT_RSA_BITS,
  generateRsaKeyPair,
  loadPrivateIdentity,
  loadPublicIdentity,
  MAX_PEM_CHARS,
  pemEncode,
  type PrivateIdentity,
  type PublicIdentity,
} from "../crypto/mod.ts";
import { checkUsername, isValidUsername } from "../proto/mod.ts";

/** The users `im keygen` provisions when none are named. */
export const DEFAULT_USERS: readonly string[] = ["A", "B", "C", "D", "E", "F"];
/** Mode of private key files. */
export const PRIVATE_KEY_MODE = 0o600;
/** Mode of public key files. */
export const PUBLIC_KEY_MODE = 0o644;
/** Mode of directories created in the key directory. */
export const KEY_DIR_MODE = 0o700;

/** What provisioning did to one file. */
export type ProvisionAction = "created" | "kept" | "enrolled" | "pinned";

/** One line of a {@link ProvisionReport}. */
export interface ProvisionEntry {
  /** Path relative to the key directory, `/`-separated, e.g. `users/A/private.pem`. */
  readonly path: string;
  /** Fingerprint of the key in that file (`SHA256:...`). */
  readonly fingerprint: string;
  /** What was done. */
  readonly action: ProvisionAction;
}

/** What provisioning did, file by file, in a stable order. */
export interface ProvisionReport {
  /** The key directory. */
  readonly dir: string;
  /** One entry per key file touched or checked. */
  readonly entries: ProvisionEntry[];
}

/** Options of {@link provision}. */
export interface ProvisionOptions {
  /** Users to provision (default {@link DEFAULT_USERS}); `[]` makes only the server key. */
  readonly users?: readonly string[];
  /** RSA size of keys created now (default 3072). */
  readonly bits?: number;
  /**
   * Replace the listed users' key pairs, and any enrollment or pin of theirs
   * that differs. Without it an existing key is kept and a conflict is an error.
   */
  readonly force?: boolean;
  /**
   * Replace the server key pair too; every local user that had pinned the
   * old key is re-pinned. Kept separate from `force` so that replacing one
   * user's key cannot lock every other user out.
   */
  readonly forceServer?: boolean;
}

/** What {@link enroll} did, and what the user must pin. */
export interface EnrollResult {
  /** The server key (created or kept) and the enrollment. */
  readonly entries: ProvisionEntry[];
  /** Full path of the server public key to hand to the user. */
  readonly serverPublicPath: string;
  /** Its fingerprint, for the user to compare out of band. */
  readonly serverFingerprint: string;
}

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

// ---------------------------------------------------------------------------
// Paths (relative, `/`-separated; see the module doc)

const SERVER_PRIVATE = "server/private.pem";
const SERVER_PUBLIC = "server/public.pem";
const CLIENTS_DIR = "server/clients";
const USERS_DIR = "users";
const clientKey = (user: string) => `${CLIENTS_DIR}/${user}.pem`;
const userDir = (user: string) => `${USERS_DIR}/${user}`;
const userPrivate = (user: string) => `${userDir(user)}/private.pem`;
const userPublic = (user: string) => `${userDir(user)}/public.pem`;
const userServer = (user: string) => `${userDir(user)}/server.pem`;

/**
 * Full path of a file in the key directory.
 * @param dir the key directory
 * @param rel a `/`-separated relative path, as in {@link ProvisionEntry.path}
 * @returns the path joined for this platform
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { keyPath } from "./keystore.ts";
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
 * import { defaultKeyDir } from "./keystore.ts";
 * assert.equal(typeof defaultKeyDir(), "string");
 * ```
 */
export function defaultKeyDir(): string {
  try {
    const v = Deno.env.get("IM_KEYS");
    if (v !== undefined && v !== "") return v;
  } catch {
    // No --allow-env: fall back to the default.
  }
  return "keys";
}

// ---------------------------------------------------------------------------
// File system helpers: every failure is a KeyError naming the path

const checksModes = Deno.build.os !== "windows";

function fsReason(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file or directory";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.NotADirectory) {
    return "a parent is not a directory";
  }
  if (e instanceof Deno.errors.IsADirectory) return "it is a directory";
  if (e instanceof Deno.errors.NotCapable) return "Deno was not given access";
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/:\s*\w+ '.*'$/s, "");
}

function fsHint(e: unknown, fallback?: string): string | undefined {
  return e instanceof Deno.errors.NotCapable
    ? '"deno task im" may only use keys/ in the checkout: put the file there, or run main.ts with deno run --allow-net --allow-read=DIR --allow-write=DIR --allow-env=IM_KEYS,NO_COLOR,IM_DEBUG (README, "Deploying")'
    : fallback;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw new KeyError(
      "key-unreadable",
      `Cannot check "${path}": ${fsReason(e)}`,
      fsHint(e, "check the key directory's permissions"),
    );
  }
}

async function ensureDir(path: string): Promise<void> {
  let info: Deno.FileInfo | undefined;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new KeyError(
        "key-write-failed",
        `Cannot create directory "${path}": ${fsReason(e)}`,
        fsHint(e, "choose another directory with --dir"),
      );
    }
  }
  if (info) {
    if (!info.isDirectory) {
      throw new KeyError(
        "key-write-failed",
        `Cannot create directory "${path}": a file is in the way`,
        "choose another directory with --dir",
      );
    }
    return;
  }
  try {
    await Deno.mkdir(path, { recursive: true, mode: KEY_DIR_MODE });
    if (checksModes) await Deno.chmod(path, KEY_DIR_MODE);
  } catch (e) {
    throw new KeyError(
      "key-write-failed",
      `Cannot create directory "${path}": ${fsReason(e)}`,
      fsHint(e, "choose another directory with --dir"),
    );
  }
}

/** Write via a temporary file and rename, so readers never see half a key. */
async function writeKeyFile(
  path: string,
  text: string,
  mode: number,
): Promise<void> {
  const tmp = `${path}.${
    crypto.getRandomValues(new Uint8Array(6)).toHex()
  }.tmp`;
  try {
    await Deno.writeTextFile(tmp, text, { mode, createNew: true });
    if (checksModes) await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new KeyError(
      "key-write-failed",
      `Cannot write "${path}": ${fsReason(e)}`,
      fsHint(e, "check that the key directory is writable, or use --dir"),
    );
  }
}

type FileKind = "private" | "trusted" | "public";

/**
 * Read a key file, checking type, size and (per the module doc) mode.
 * @param hint what to do when the file is missing
 */
async function readKeyFile(
  path: string,
  kind: FileKind,
  hint?: string,
): Promise<string> {
  const what = kind === "private" ? "private key" : "public key";
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    throw new KeyError(
      e instanceof Deno.errors.NotFound ? "key-missing" : "key-unreadable",
      `Cannot read ${what} "${path}": ${fsReason(e)}`,
      fsHint(e, hint),
    );
  }
  if (!info.isFile) {
    throw new KeyError(
      "key-unreadable",
      `Cannot read ${what} "${path}": not a regular file`,
      hint,
    );
  }
  if (info.size > MAX_PEM_CHARS) {
    throw new KeyError(
      "bad-pem",
      `Cannot read ${what} "${path}": ${info.size} bytes exceeds the limit of ${MAX_PEM_CHARS}`,
    );
  }
  const mode = info.mode;
  if (checksModes && mode !== null) {
    const perm = (mode & 0o777).toString(8).padStart(4, "0");
    if (kind === "private" && (mode & 0o077) !== 0) {
      throw new KeyError(
        "key-permissions",
        `Refusing to use private key "${path}": mode ${perm} lets group or others read it`,
        `run "chmod 600 ${path}"`,
      );
    }
    if (kind === "trusted" && (mode & 0o022) !== 0) {
      throw new KeyError(
        "key-permissions",
        `Refusing to trust public key "${path}": mode ${perm} lets group or others change it`,
        `run "chmod 644 ${path}"`,
      );
    }
  }
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new KeyError(
      "key-unreadable",
      `Cannot read ${what} "${path}": ${fsReason(e)}`,
      fsHint(e, hint),
    );
  }
}

// ---------------------------------------------------------------------------
// Provisioning steps

interface PairState {
  entries: ProvisionEntry[];
  publicPem: string;
  fingerprint: string;
  /** True when a new key pair was written now. */
  created: boolean;
}

/** Create a key pair unless one exists (or `force`); check that an existing pair matches. */
async function ensurePair(
  dir: string,
  privRel: string,
  pubRel: string,
  bits: number,
  force: boolean,
): Promise<PairState> {
  const privPath = keyPath(dir, privRel);
  const pubPath = keyPath(dir, pubRel);
  const [hasPriv, hasPub] = await allSettledOrThrow([
    exists(privPath),
    exists(pubPath),
  ]);
  if (hasPriv && !force) {
    const id = await loadPrivateIdentity(
      await readKeyFile(privPath, "private"),
      `private key "${privPath}"`,
    );
    const entries: ProvisionEntry[] = [
      { path: privRel, fingerprint: id.fingerprint, action: "kept" },
    ];
    const publicPem = pemEncode("PUBLIC KEY", id.publicDer);
    if (hasPub) {
      const pub = await loadPublicIdentity(
        await readKeyFile(pubPath, "public"),
        `public key "${pubPath}"`,
      );
      if (pub.fingerprint !== id.fingerprint) {
        throw new KeyError(
          "key-mismatch",
          `Public key "${pubPath}" (${pub.fingerprint}) does not match private key "${privPath}" (${id.fingerprint})`,
          `delete "${pubPath}" to have it rewritten, or use --force to replace the key pair`,
        );
      }
    } else {
      await writeKeyFile(pubPath, publicPem, PUBLIC_KEY_MODE);
      entries.push({
        path: pubRel,
        fingerprint: id.fingerprint,
        action: "created",
      });
    }
    return { entries, publicPem, fingerprint: id.fingerprint, created: false };
  }
  if (hasPub && !force) {
    throw new KeyError(
      "key-orphan",
      `Found public key "${pubPath}" without its private key "${privPath}"`,
      `delete "${pubPath}", or use --force to make a new key pair`,
    );
  }
  const pair = await generateRsaKeyPair(bits);
  const pub = await loadPublicIdentity(pair.publicPem);
  await writeKeyFile(privPath, pair.privatePem, PRIVATE_KEY_MODE);
  await writeKeyFile(pubPath, pair.publicPem, PUBLIC_KEY_MODE);
  return {
    entries: [{
      path: privRel,
      fingerprint: pub.fingerprint,
      action: "created",
    }],
    publicPem: pair.publicPem,
    fingerprint: pub.fingerprint,
    created: true,
  };
}

/**
 * Make `rel` hold the trusted public key `publicPem` (an enrollment or a pin).
 * A different key already there is replaced only with `force`.
 */
async function ensureTrusted(
  dir: string,
  rel: string,
  publicPem: string,
  fingerprint: string,
  force: boolean,
  action: "enrolled" | "pinned",
  conflictHint: string | undefined,
): Promise<ProvisionEntry> {
  const path = keyPath(dir, rel);
  if (await exists(path)) {
    let current: string;
    try {
      current = (await loadPublicIdentity(
        await readKeyFile(path, "trusted"),
        `public key "${path}"`,
      )).fingerprint;
    } catch (e) {
      if (!force) throw e;
      current = "";
    }
    if (current === fingerprint) {
      return { path: rel, fingerprint, action: "kept" };
    }
    if (!force) {
      throw new KeyError(
        "key-mismatch",
        `"${path}" holds a different key (${current}) than the one given (${fingerprint})`,
        conflictHint,
      );
    }
  }
  await writeKeyFile(path, publicPem, PUBLIC_KEY_MODE);
  return { path: rel, fingerprint, action };
}

/** Read, validate and canonicalise a public key file handed to us. */
async function readGivenPublicKey(
  path: string,
): Promise<{ pem: string; fingerprint: string }> {
  const text = await readKeyFile(
    path,
    "public",
    "give the path of a PUBLIC KEY PEM file",
  );
  const id = await loadPublicIdentity(text, `public key "${path}"`);
  return {
    pem: pemEncode("PUBLIC KEY", id.publicDer),
    fingerprint: id.fingerprint,
  };
}

function uniqueUsers(users: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const u of users) seen.add(checkUsername(u));
  return [...seen];
}

// ---------------------------------------------------------------------------
// Public operations

/**
 * Provision a deployment in one directory: the server key pair if missing,
 * each listed user's key pair if missing, each user's public key enrolled in
 * `server/clients/`, and the server key pinned in each `users/<user>/server.pem`.
 * Existing keys are kept (`kept`), so adding a user leaves everyone else's
 * files byte-identical. When the server key is created, every other local
 * user who had pinned an older server key is re-pinned. New keys are
 * generated in parallel.
 * @param dir the key directory (created, 0700, if missing)
 * @param options users, bits, force, forceServer
 * @returns one entry per key file, server first, then users in order
 * @throws {UsageError} `bad-username`, `bad-bits` before anything is written
 * @throws {KeyError} unreadable, malformed or conflicting existing files; unwritable directory
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { provision } from "./keystore.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const first = await provision(dir, { users: ["A"], bits: 2048 });
 *   assert.deepEqual(first.entries.map((e) => e.action), ["created", "created", "enrolled", "pinned"]);
 *   const again = await provision(dir, { users: ["A"], bits: 2048 });
 *   assert.ok(again.entries.every((e) => e.action === "kept"));
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function provision(
  dir: string,
  options: ProvisionOptions = {},
): Promise<ProvisionReport> {
  const users = uniqueUsers(options.users ?? DEFAULT_USERS);
  const bits = checkRsaBits(options.bits ?? DEFAULT_RSA_BITS);
  const force = options.force ?? false;
  const forceServer = options.forceServer ?? false;

  await ensureDir(dir);
  for (const rel of ["server", CLIENTS_DIR, USERS_DIR]) {
    await ensureDir(keyPath(dir, rel));
  }
  for (const u of users) await ensureDir(keyPath(dir, userDir(u)));

  const [server, ...pairs] = await allSettledOrThrow([
    ensurePair(dir, SERVER_PRIVATE, SERVER_PUBLIC, bits, forceServer),
    ...users.map((u) =>
      ensurePair(dir, userPrivate(u), userPublic(u), bits, force)
    ),
  ]);
  const entries: ProvisionEntry[] = [...server!.entries];
  for (const [i, u] of users.entries()) {
    const pair = pairs[i]!;
    entries.push(...pair.entries);
    entries.push(
      await ensureTrusted(
        dir,
        clientKey(u),
        pair.publicPem,
        pair.fingerprint,
        force || pair.created,
        "enrolled",
        `use --force to replace the enrolled key of "${u}"`,
      ),
    );
    entries.push(
      await ensureTrusted(
        dir,
        userServer(u),
        server!.publicPem,
        server!.fingerprint,
        force || server!.created,
        "pinned",
        `use --force to pin the current server key for "${u}"`,
      ),
    );
  }
  if (server!.created) {
    entries.push(...await repinOthers(dir, users, server!));
  }
  return { dir, entries };
}

/** After a new server key: re-pin local users outside `done` who had pinned an old one. */
async function repinOthers(
  dir: string,
  done: readonly string[],
  server: PairState,
): Promise<ProvisionEntry[]> {
  const out: ProvisionEntry[] = [];
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(keyPath(dir, USERS_DIR))) {
      if (e.isDirectory && isValidUsername(e.name) && !done.includes(e.name)) {
        names.push(e.name);
      }
    }
  } catch (e) {
    throw new KeyError(
      "key-unreadable",
      `Cannot list "${keyPath(dir, USERS_DIR)}": ${fsReason(e)}`,
      fsHint(e, "check the key directory's permissions"),
    );
  }
  names.sort();
  for (const u of names) {
    if (await exists(keyPath(dir, userServer(u)))) {
      out.push(
        await ensureTrusted(
          dir,
          userServer(u),
          server.publicPem,
          server.fingerprint,
          true,
          "pinned",
          undefined,
        ),
      );
    }
  }
  return out;
}

/**
 * On a user's own machine: create only `users/<user>/private.pem` and
 * `public.pem`. The public key then goes to the server operator ({@link enroll}).
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @param bits RSA size of a new key (default 3072)
 * @param force replace an existing key pair
 * @returns the entries for the key pair (`created` or `kept`)
 * @throws {UsageError} `bad-username`, `bad-bits`
 * @throws {KeyError} existing files unreadable or mismatched; directory unwritable
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { provisionPublicOnly } from "./keystore.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const r = await provisionPublicOnly(dir, "G", 2048);
 *   assert.equal(r.entries[0]?.path, "users/G/private.pem");
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function provisionPublicOnly(
  dir: string,
  user: string,
  bits: number = DEFAULT_RSA_BITS,
  force = false,
): Promise<ProvisionReport> {
  checkUsername(user);
  checkRsaBits(bits);
  await ensureDir(dir);
  await ensureDir(keyPath(dir, USERS_DIR));
  await ensureDir(keyPath(dir, userDir(user)));
  const pair = await ensurePair(
    dir,
    userPrivate(user),
    userPublic(user),
    bits,
    force,
  );
  return { dir, entries: pair.entries };
}

/**
 * On the server: enroll a user's public key in `server/clients/<user>.pem`
 * (a canonical copy, after validation). The server key pair is created if
 * missing. A different key already enrolled for the user is replaced only
 * with `force`.
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @param publicPemPath the user's `public.pem`
 * @param options `force` to replace a different enrolled key; `bits` for a new server key
 * @returns the entries, and the server public key the user must pin
 * @throws {UsageError} `bad-username`, `bad-bits`
 * @throws {KeyError} unreadable or malformed key file, conflicting enrollment
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { enroll, provisionPublicOnly } from "./keystore.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await provisionPublicOnly(dir, "G", 2048);
 *   const r = await enroll(dir, "G", `${dir}/users/G/public.pem`, { bits: 2048 });
 *   assert.ok(r.entries.some((e) => e.path === "server/clients/G.pem" && e.action === "enrolled"));
 *   assert.match(r.serverFingerprint, /^SHA256:/);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function enroll(
  dir: string,
  user: string,
  publicPemPath: string,
  options: { readonly force?: boolean; readonly bits?: number } = {},
): Promise<EnrollResult> {
  checkUsername(user);
  const bits = checkRsaBits(options.bits ?? DEFAULT_RSA_BITS);
  const given = await readGivenPublicKey(publicPemPath);
  await ensureDir(dir);
  await ensureDir(keyPath(dir, "server"));
  await ensureDir(keyPath(dir, CLIENTS_DIR));
  const server = await ensurePair(
    dir,
    SERVER_PRIVATE,
    SERVER_PUBLIC,
    bits,
    false,
  );
  const entry = await ensureTrusted(
    dir,
    clientKey(user),
    given.pem,
    given.fingerprint,
    options.force ?? false,
    "enrolled",
    `use --force to replace the enrolled key of "${user}"`,
  );
  return {
    entries: [...server.entries, entry],
    serverPublicPath: keyPath(dir, SERVER_PUBLIC),
    serverFingerprint: server.fingerprint,
  };
}

/**
 * On a user's machine: pin the server public key (a canonical copy, after
 * validation) in `users/<user>/server.pem`. A different pinned key is
 * replaced only with `force`.
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @param serverPemPath the server's `public.pem`, as received from its operator
 * @param force replace a different pinned key
 * @returns the entry (`pinned` or `kept`)
 * @throws {UsageError} `bad-username`
 * @throws {KeyError} unreadable or malformed key file, a different key already pinned
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pinServerKey, provision } from "./keystore.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await provision(dir, { users: [], bits: 2048 });
 *   const e = await pinServerKey(dir, "G", `${dir}/server/public.pem`);
 *   assert.equal(e.action, "pinned");
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function pinServerKey(
  dir: string,
  user: string,
  serverPemPath: string,
  force = false,
): Promise<ProvisionEntry> {
  checkUsername(user);
  const given = await readGivenPublicKey(serverPemPath);
  await ensureDir(dir);
  await ensureDir(keyPath(dir, USERS_DIR));
  await ensureDir(keyPath(dir, userDir(user)));
  return await ensureTrusted(
    dir,
    userServer(user),
    given.pem,
    given.fingerprint,
    force,
    "pinned",
    "if the server key really changed, use --force to pin the new one",
  );
}

/**
 * Call `onChange` (debounced) whenever a file in the server's directory of
 * client public keys changes, so an enrollment by `im keygen` takes effect
 * without a signal (issue 6). Where the platform cannot watch, it does
 * nothing and SIGHUP remains the way.
 * @param dir the key directory
 * @param onChange what to do; called at most once per `debounceMs`
 * @param debounceMs quiet time after the last change
 * @returns a handle whose `close()` stops watching
 * @example
 * ```ts ignore
 * const watcher = watchClientDirectory("keys", () => console.log("changed"));
 * watcher.close();
 * ```
 */
export function watchClientDirectory(
  dir: string,
  onChange: () => void,
  debounceMs = 250,
): { close(): void } {
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(keyPath(dir, CLIENTS_DIR), { recursive: false });
  } catch {
    return { close() {} };
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const loop = (async () => {
    try {
      for await (const _event of watcher) {
        clearTimeout(timer);
        timer = setTimeout(onChange, debounceMs);
      }
    } catch {
      // The watcher was closed or the directory vanished: stop quietly.
    }
  })();
  return {
    close() {
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
      void loop;
    },
  };
}

/**
 * Load the server's client directory, `server/clients/<user>.pem`. Files
 * whose name is not `<valid username>.pem`, that are not regular files, or
 * whose key is bad, are skipped and reported; they never stop the server.
 * @param dir the key directory
 * @returns the clients and the problems
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadClientDirectory } from "./keystore.ts";
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
  const clients = new Map<string, PublicIdentity>();
  const problems: string[] = [];
  const clientsPath = keyPath(dir, CLIENTS_DIR);
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
 * @throws {KeyError} the server key is missing, unreadable, too open or malformed
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadServerKeys } from "./keystore.ts";
 * const err = await loadServerKeys("/nonexistent").catch((e) => e);
 * assert.equal(err.code, "key-missing");
 * ```
 */
export async function loadServerKeys(dir: string): Promise<ServerKeys> {
  const path = keyPath(dir, SERVER_PRIVATE);
  const text = await readKeyFile(
    path,
    "private",
    `run "im keygen --dir ${dir}" first`,
  );
  const identity = await loadPrivateIdentity(text, `private key "${path}"`);
  return { identity, ...await loadClientDirectory(dir) };
}

/**
 * Load what a user's client needs: the user's key pair and the pinned server key.
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @returns the identity and the pinned server key
 * @throws {UsageError} `bad-username`
 * @throws {KeyError} a key is missing (with a hint naming the keygen command), unreadable, too open or malformed
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadUserKeys } from "./keystore.ts";
 * const err = await loadUserKeys("/nonexistent", "G").catch((e) => e);
 * assert.equal(err.code, "key-missing");
 * assert.match(err.hint, /im keygen/);
 * ```
 */
export async function loadUserKeys(
  dir: string,
  user: string,
): Promise<UserKeys> {
  checkUsername(user);
  const privPath = keyPath(dir, userPrivate(user));
  const pinPath = keyPath(dir, userServer(user));
  const [privText, pinText] = await allSettledOrThrow([
    readKeyFile(
      privPath,
      "private",
      `run "im keygen --dir ${dir} --user ${user}" first`,
    ),
    readKeyFile(
      pinPath,
      "trusted",
      `get the server's public.pem from its operator, compare its fingerprint, and run "im keygen --dir ${dir} --pin FILE --user ${user}"`,
    ),
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
 * import { serverKeysExist } from "./keystore.ts";
 * assert.equal(await serverKeysExist("/nonexistent"), false);
 * ```
 */
export async function serverKeysExist(dir: string): Promise<boolean> {
  return await exists(keyPath(dir, SERVER_PRIVATE));
}
