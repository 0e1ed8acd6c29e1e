/**
 * File system steps of the keystore, each failure a {@link KeyStoreError}
 * naming the path: check, create a folder (0700), refuse a folder that
 * group or others can write, write a key file via a temporary name and a
 * rename (so a crash never leaves half a key), and read a key file after
 * checking its type, size and mode (the permission policy of `layout.ts`);
 * the steps the mailbox's files share with them (a temporary name, a
 * file's mode check, the error of a failed write).
 * Internal to the keystore.
 * @module
 */

import { MAX_PEM_CHARS } from "../crypto/mod.ts";
import { type KeyFix, KeyStoreError } from "./keystore_error.ts";
import { KEY_DIR_MODE, PRIVATE_KEY_MODE, PUBLIC_KEY_MODE } from "./layout.ts";

/** Whether modes are checked and set: not on Windows, which has none. */
export const checksModes: boolean = Deno.build.os !== "windows";

/** Write permission for group or others: what sshd's StrictModes refuses. */
const GROUP_OTHER_WRITE = 0o022;

/** Permission bits as `ls -l` users read them, e.g. `0644`, `1777`. */
function modeText(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/**
 * Refuse a directory of the key directory that group or others can write
 * (the permission policy of `layout.ts`).
 * @param path the directory
 * @param mode its mode, as `Deno.stat` gives it
 * @throws {KeyStoreError} `key-dir-writable`
 */
function checkDirInfo(path: string, mode: number | null): void {
  if (!checksModes || mode === null || (mode & GROUP_OTHER_WRITE) === 0) {
    return;
  }
  throw new KeyStoreError(
    "key-dir-writable",
    `Refusing to use key directory "${path}": mode ${
      modeText(mode)
    } lets group or others write to it`,
    path,
    { kind: "chmod-dir", path, mode: KEY_DIR_MODE },
    mode & 0o7777,
  );
}

/**
 * Check that no directory on the way to a key lets group or others write:
 * anyone who can write one can add, replace or rename the keys in it. Each
 * is checked from the outside in, so the error names the outermost. A
 * directory that is missing, or is not one, is left to the read that
 * follows, which reports it as it always has.
 * @param dirs directories, outermost first
 * @throws {KeyStoreError} `key-dir-writable`
 */
export async function checkKeyDirs(dirs: readonly string[]): Promise<void> {
  if (!checksModes) return;
  for (const path of dirs) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch {
      return;
    }
    if (!info.isDirectory) return;
    checkDirInfo(path, info.mode);
  }
}

/**
 * A file system failure in words.
 * @param e what Deno threw
 * @returns e.g. `no such file or directory`
 */
export function fsReason(e: unknown): string {
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

/**
 * What fixes a file system failure: Deno's access first, else `fallback`.
 * @param e what Deno threw
 * @param fallback the fix when it was not Deno's permissions
 * @returns the fix, if any
 */
export function fsFix(e: unknown, fallback?: KeyFix): KeyFix | undefined {
  return e instanceof Deno.errors.NotCapable
    ? { kind: "grant-access" }
    : fallback;
}

/**
 * Is there anything at `path`?
 * @param path a path
 * @returns false only when nothing is there
 * @throws {KeyStoreError} `key-unreadable` when that cannot be told
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw new KeyStoreError(
      "key-unreadable",
      `Cannot check "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, { kind: "dir-permissions" }),
    );
  }
}

/**
 * Make `path` a directory (0700, parents too) unless it is one; an existing
 * one must not be writable by group or others.
 * @param path the directory
 * @throws {KeyStoreError} `key-write-failed`, `key-dir-writable`
 */
export async function ensureDir(path: string): Promise<void> {
  const failed = (why: string, e?: unknown) =>
    new KeyStoreError(
      "key-write-failed",
      `Cannot create directory "${path}": ${why}`,
      path,
      fsFix(e, { kind: "other-dir" }),
    );
  let info: Deno.FileInfo | undefined;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw failed(fsReason(e), e);
  }
  if (info) {
    if (!info.isDirectory) throw failed("a file is in the way");
    checkDirInfo(path, info.mode);
    return;
  }
  try {
    await Deno.mkdir(path, { recursive: true, mode: KEY_DIR_MODE });
    if (checksModes) await Deno.chmod(path, KEY_DIR_MODE);
  } catch (e) {
    throw failed(fsReason(e), e);
  }
}

/**
 * Refuse a file whose mode lets group or others read it (`read`: bits
 * `0o077`, for a secret) or write to it (`change`: bits `0o022`), as the
 * permission policy of `layout.ts` asks.
 * @param path the file
 * @param mode its mode, as `Deno.stat` gives it
 * @param refusing how the message starts, e.g. `Refusing to use private key`
 * @param access what group or others must not do
 * @param fixMode the mode the fix sets
 * @throws {KeyStoreError} `key-permissions`
 */
export function checkFileMode(
  path: string,
  mode: number | null,
  refusing: string,
  access: "read" | "change",
  fixMode: number,
): void {
  const bits = access === "read" ? 0o077 : GROUP_OTHER_WRITE;
  if (!checksModes || mode === null || (mode & bits) === 0) return;
  throw new KeyStoreError(
    "key-permissions",
    `${refusing} "${path}": mode ${
      (mode & 0o777).toString(8).padStart(4, "0")
    } lets group or others ${access} it`,
    path,
    { kind: "chmod", path, mode: fixMode },
    mode & 0o7777,
  );
}

/**
 * A fresh temporary name beside a file, for a write that ends in a rename;
 * the `.tmp` ending is how a clean-up knows what a crash left.
 * @param path the file
 * @returns `<path>.<12 hex digits>.tmp`
 */
export function tmpPath(path: string): string {
  return `${path}.${crypto.getRandomValues(new Uint8Array(6)).toHex()}.tmp`;
}

/**
 * The error of a write that failed.
 * @param path the file being written
 * @param e what Deno threw
 * @returns a `key-write-failed` error naming the file
 */
export function writeFailed(path: string, e: unknown): KeyStoreError {
  return new KeyStoreError(
    "key-write-failed",
    `Cannot write "${path}": ${fsReason(e)}`,
    path,
    fsFix(e, { kind: "writable-dir" }),
  );
}

/**
 * Write via a temporary file and rename, so readers never see half a key.
 * @param path the key file
 * @param text PEM text
 * @param mode {@link PRIVATE_KEY_MODE} or {@link PUBLIC_KEY_MODE}
 * @throws {KeyStoreError} `key-write-failed`
 */
export async function writeKeyFile(
  path: string,
  text: string,
  mode: number,
): Promise<void> {
  const tmp = tmpPath(path);
  try {
    await Deno.writeTextFile(tmp, text, { mode, createNew: true });
    if (checksModes) await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw writeFailed(path, e);
  }
}

/**
 * How a key file is trusted: a private key, a trusted public key (an
 * enrollment or a pin), or a public key that is only read.
 */
export type FileKind = "private" | "trusted" | "public";

/**
 * Read a key file, checking type, size and (per `layout.ts`) mode.
 * @param path the key file
 * @param kind what it is, for the mode check and the message
 * @param fix what to do when the file is missing or not a file
 * @returns its text
 * @throws {KeyStoreError} `key-missing`, `key-unreadable`, `key-permissions`, `bad-pem` (too large)
 */
export async function readKeyFile(
  path: string,
  kind: FileKind,
  fix?: KeyFix,
): Promise<string> {
  const what = kind === "private" ? "private key" : "public key";
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    throw new KeyStoreError(
      e instanceof Deno.errors.NotFound ? "key-missing" : "key-unreadable",
      `Cannot read ${what} "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, fix),
    );
  }
  if (!info.isFile) {
    throw new KeyStoreError(
      "key-unreadable",
      `Cannot read ${what} "${path}": not a regular file`,
      path,
      fix,
    );
  }
  if (info.size > MAX_PEM_CHARS) {
    throw new KeyStoreError(
      "bad-pem",
      `Cannot read ${what} "${path}": ${info.size} bytes exceeds the limit of ${MAX_PEM_CHARS}`,
      path,
    );
  }
  if (kind === "private") {
    const refusing = "Refusing to use private key";
    checkFileMode(path, info.mode, refusing, "read", PRIVATE_KEY_MODE);
  } else if (kind === "trusted") {
    const refusing = "Refusing to trust public key";
    checkFileMode(path, info.mode, refusing, "change", PUBLIC_KEY_MODE);
  }
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new KeyStoreError(
      "key-unreadable",
      `Cannot read ${what} "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, fix),
    );
  }
}
