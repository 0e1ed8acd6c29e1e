/**
 * The file system steps of the mailbox (layout in `mail_vault.ts`), each
 * failure a {@link KeyStoreError} naming the path: list its folder, read a
 * file after checking its type, size and mode, write whole files durably (a
 * synced temporary file, a rename, a sync of the folder), write a record at
 * an offset, sync a file's data, remove a file; and the private key files,
 * PKCS#8 PEM, written once their public half is checked and read back
 * non-extractable, checked against their certificate's public key.
 * Internal to the keystore.
 * @module
 */

import { dirname } from "node:path";
import {
  exportX25519Private,
  importX25519Private,
  pemDecode,
  pemEncode,
} from "../crypto/mod.ts";
import type { MailKeyPair } from "../proto/mod.ts";
import { constantTimeEqual, KeyError, utf8, wipe } from "../util/mod.ts";
import {
  checkFileMode,
  checksModes,
  fsFix,
  fsReason,
  tmpPath,
  writeFailed,
} from "./_files.ts";
import {
  checkLength,
  corrupt,
  KEY_BYTES,
  MAIL_FILE,
  type MailFileKind,
} from "./_mail_records.ts";
import { KeyStoreError } from "./keystore_error.ts";
import { PRIVATE_KEY_MODE } from "./layout.ts";

// ---- reading

/**
 * The names in the mailbox folder.
 * @param path the folder
 * @returns its names, or undefined when it is missing
 * @throws {KeyStoreError} `key-unreadable`
 */
export async function listDir(path: string): Promise<Set<string> | undefined> {
  const names = new Set<string>();
  try {
    for await (const e of Deno.readDir(path)) names.add(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new KeyStoreError(
      "key-unreadable",
      `Cannot list mailbox folder "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, { kind: "dir-permissions" }),
    );
  }
  return names;
}

/**
 * Read a file of the mailbox, checking type, size and mode: `secret` ones
 * (private keys, receipt keys) must not be readable by group or others, the
 * others not writable by them.
 * @param path the file
 * @param kind which file it is: its name in messages, `secret`, its limit
 * @returns its bytes, or undefined when it is missing
 * @throws {KeyStoreError} `key-unreadable`, `key-permissions`,
 *   `mail-corrupt` (too large)
 */
export async function readMailFile(
  path: string,
  kind: MailFileKind,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const { what, secret, max } = kind;
  const unreadable = (why: string, e?: unknown) =>
    new KeyStoreError(
      "key-unreadable",
      `Cannot read ${what} "${path}": ${why}`,
      path,
      fsFix(e, { kind: "dir-permissions" }),
    );
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw unreadable(fsReason(e), e);
  }
  if (!info.isFile) throw unreadable("not a regular file");
  if (info.size > max) {
    throw corrupt(path, `${info.size} bytes exceeds the limit of ${max}`);
  }
  const access = secret ? "read" : "change";
  checkFileMode(
    path,
    info.mode,
    `Refusing to use ${what}`,
    access,
    PRIVATE_KEY_MODE,
  );
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw unreadable(fsReason(e), e);
  }
}

// ---- writing

/** Write all of `bytes` to `f`, however many writes it takes. */
async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    off += await f.write(bytes.subarray(off));
  }
}

/** Make a folder's entries (a rename, a new or removed file) durable; best effort where a folder cannot be opened (Windows). */
export async function syncDir(path: string): Promise<void> {
  let d: Deno.FsFile;
  try {
    d = await Deno.open(path, { read: true });
  } catch {
    return;
  }
  try {
    await d.sync();
  } catch {
    // Not every platform syncs a folder.
  } finally {
    d.close();
  }
}

/**
 * Make the data of a file written without a sync durable.
 * @param path the file
 * @throws {KeyStoreError} `key-write-failed`
 */
export async function syncData(path: string): Promise<void> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { write: true });
  } catch (e) {
    throw writeFailed(path, e);
  }
  try {
    await f.syncData();
  } catch (e) {
    throw writeFailed(path, e);
  } finally {
    f.close();
  }
}

/**
 * Write whole files (0600), each through a synced temporary file, then the
 * renames, then one sync of each folder.
 */
export async function writeFiles(
  files: readonly { path: string; bytes: Uint8Array }[],
): Promise<void> {
  const tmps: { tmp: string; path: string }[] = [];
  let current = files[0]?.path ?? "";
  try {
    for (const { path, bytes } of files) {
      current = path;
      const tmp = tmpPath(path);
      const f = await Deno.open(tmp, {
        write: true,
        createNew: true,
        mode: PRIVATE_KEY_MODE,
      });
      tmps.push({ tmp, path });
      try {
        if (checksModes) await Deno.chmod(tmp, PRIVATE_KEY_MODE);
        await writeAll(f, bytes);
        await f.sync();
      } finally {
        f.close();
      }
    }
    for (const { tmp, path } of tmps) {
      current = path;
      await Deno.rename(tmp, path);
    }
  } catch (e) {
    for (const { tmp } of tmps) await Deno.remove(tmp).catch(() => {});
    throw writeFailed(current, e);
  }
  for (const d of new Set(files.map((f) => dirname(f.path)))) {
    await syncDir(d);
  }
}

/**
 * Write a record at `offset` (the end of the whole records, so a torn
 * record a failed write left is overwritten) and sync it.
 */
export async function writeAt(
  path: string,
  offset: number,
  record: Uint8Array,
  sync = true,
): Promise<void> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, {
      write: true,
      create: true,
      mode: PRIVATE_KEY_MODE,
    });
  } catch (e) {
    throw writeFailed(path, e);
  }
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    await writeAll(f, record);
    if (sync) await f.syncData();
  } catch (e) {
    throw writeFailed(path, e);
  } finally {
    f.close();
  }
  if (offset === 0) await syncDir(dirname(path));
}

/** Remove a file; one already gone is fine. */
export async function removeFile(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new KeyStoreError(
      "key-write-failed",
      `Cannot remove "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, { kind: "writable-dir" }),
    );
  }
}

// ---- private keys

/**
 * A pair's private key as PKCS#8 PEM bytes, once its public half is checked.
 * @throws {KeyError} `wrong-key` (not an extractable X25519 private key),
 *   `key-mismatch`, `bad-mail-value`
 */
export async function exportPrivate(pair: MailKeyPair): Promise<Uint8Array> {
  checkLength("publicRaw", pair.publicRaw, KEY_BYTES);
  const der = await exportX25519Private(pair.privateKey);
  try {
    const back = await importX25519Private(der);
    if (!constantTimeEqual(back.publicRaw, pair.publicRaw)) {
      throw new KeyError(
        "key-mismatch",
        "Cannot store a mailbox key: its public key is not its private key's",
      );
    }
    return utf8(pemEncode("PRIVATE KEY", der));
  } finally {
    wipe(der);
  }
}

/**
 * Read a private key file back, non-extractable, checked against the
 * public key its certificate file names.
 * @returns the pair, or undefined when the file is missing and nothing names it
 */
export async function readPrivate(
  path: string,
  publicRaw: Uint8Array,
  certPath: string,
): Promise<MailKeyPair>;
export async function readPrivate(
  path: string,
): Promise<MailKeyPair | undefined>;
export async function readPrivate(
  path: string,
  publicRaw?: Uint8Array,
  certPath?: string,
): Promise<MailKeyPair | undefined> {
  const bytes = await readMailFile(path, MAIL_FILE.privateKey);
  if (!bytes) {
    if (certPath === undefined) return undefined;
    throw new KeyStoreError(
      "key-missing",
      `Cannot read mailbox private key "${path}": no such file, though "${certPath}" names it`,
      path,
    );
  }
  const text = new TextDecoder().decode(bytes);
  wipe(bytes);
  const der = pemDecode(text, "PRIVATE KEY", `mailbox private key "${path}"`);
  let pair: MailKeyPair;
  try {
    pair = await importX25519Private(der);
  } catch (e) {
    throw new KeyStoreError(
      "bad-key",
      `Cannot read mailbox private key "${path}": ${
        e instanceof Error ? e.message : String(e)
      }`,
      path,
    );
  } finally {
    wipe(der);
  }
  if (publicRaw && !constantTimeEqual(pair.publicRaw, publicRaw)) {
    throw new KeyStoreError(
      "key-mismatch",
      `Mailbox private key "${path}" does not match the public key in "${certPath}"`,
      path,
    );
  }
  return pair;
}
