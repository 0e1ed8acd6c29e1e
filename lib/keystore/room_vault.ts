/**
 * The rooms of a user in the key directory (PROTOCOL.md 10.6): one JSON
 * file per room and one for the room keys waiting for their list.
 *
 * ```
 * users/<me>/rooms/            0700
 *   room-<hex>.json            0600  a room's state (RoomVaultState); <hex>
 *                                    is its name's UTF-8 in lowercase hex, so
 *                                    no room name can be another file's, nor
 *                                    two names one file where case is folded
 *   pending-keys.json          0600  room keys that came before their list
 * ```
 *
 * Every file holds secrets (chain keys, our Ed25519 private key), so each
 * is written 0600 through a synced temporary file and a rename, and read
 * only when neither group nor others can read it. A `.tmp` a crash left is
 * removed at open.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openRoomVault } from "./room_vault.ts";
 * const dir = await Deno.makeTempDir();
 * const vault = await openRoomVault(dir, "A");
 * await vault.saveRoom("team", { epoch: 1 });
 * await vault.saveRoom("pending-keys", { epoch: 2 }); // a room: its own file
 * const again = await openRoomVault(dir, "A");
 * const { rooms, pendingKeys } = await again.load();
 * assert.deepEqual(rooms.get("team"), { epoch: 1 });
 * assert.deepEqual(rooms.get("pending-keys"), { epoch: 2 });
 * assert.deepEqual(pendingKeys, []);
 * await Deno.remove(dir, { recursive: true });
 * ```
 * @module
 */

import { join } from "node:path";
import type { RoomVault, RoomVaultState } from "../proto/mod.ts";
import { checkUsername, isValidUsername } from "../proto/mod.ts";
import { fromUtf8, utf8 } from "../util/mod.ts";
import { checkKeyDirs, ensureDir } from "./_files.ts";
import {
  listDir,
  readMailFile,
  removeFile,
  syncDir,
  writeFiles,
} from "./_mail_files.ts";
import { KeyStoreError } from "./keystore_error.ts";
import { KEY_LAYOUT as L, keyPath } from "./layout.ts";

/** A room's file may hold up to 1,000 skipped keys per chain of 256 members: 64 MiB. */
const MAX_ROOM_FILE = 64 * 1024 * 1024;
const ROOM_FILE = { what: "room state", secret: true, max: MAX_ROOM_FILE };
const PENDING_FILE = "pending-keys.json";

/**
 * Open the rooms of `me` in the key directory `dir`. Nothing is created
 * until the first write.
 * @param dir the key directory
 * @param me the user
 * @returns the vault
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} `key-dir-writable`, `key-permissions`, `key-unreadable`
 */
export async function openRoomVault(
  dir: string,
  me: string,
): Promise<RoomVault> {
  checkUsername(me);
  const vault = new FileRoomVault(dir, me);
  await vault.open();
  return vault;
}

/** The file of the room `name`: `room-<hex of its UTF-8>.json`. */
function roomFile(name: string): string {
  return `room-${utf8(name).toHex()}.json`;
}

/** The room name of a file's hex, if it is one. */
function roomName(hex: string): string | undefined {
  try {
    const name = fromUtf8(Uint8Array.fromHex(hex), "room name");
    return isValidUsername(name) && roomFile(name) === `room-${hex}.json`
      ? name
      : undefined;
  } catch {
    return undefined;
  }
}

class FileRoomVault implements RoomVault {
  readonly #dir: string;
  readonly #me: string;
  readonly #rooms: string;
  #made = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(dir: string, me: string) {
    this.#dir = dir;
    this.#me = me;
    this.#rooms = keyPath(dir, L.userRooms(me));
  }

  #dirs(): string[] {
    const d = this.#dir, me = this.#me;
    return [d, keyPath(d, L.usersDir), keyPath(d, L.userDir(me)), this.#rooms];
  }

  /** Check the folders; remove what a crash left. */
  async open(): Promise<void> {
    await checkKeyDirs(this.#dirs());
    const names = await listDir(this.#rooms);
    if (names === undefined) return;
    this.#made = true;
    const leftovers = [...names].filter((n) => n.endsWith(".tmp"));
    for (const n of leftovers) await removeFile(join(this.#rooms, n));
    if (leftovers.length > 0) await syncDir(this.#rooms);
  }

  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f, f);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #make(): Promise<void> {
    if (this.#made) return;
    for (const d of this.#dirs()) await ensureDir(d);
    this.#made = true;
  }

  async #read(path: string): Promise<unknown> {
    const bytes = await readMailFile(path, ROOM_FILE);
    if (bytes === undefined) return undefined;
    try {
      return JSON.parse(fromUtf8(bytes, "room state"));
    } catch {
      throw new KeyStoreError(
        "room-corrupt",
        `Cannot read room state "${path}": not JSON; move it away to leave the room on this device`,
        path,
      );
    }
  }

  load(): ReturnType<RoomVault["load"]> {
    return this.#serial(async () => {
      const rooms = new Map<string, RoomVaultState>();
      let pendingKeys: RoomVaultState[] = [];
      const names = await listDir(this.#rooms);
      for (const n of names ?? []) {
        const path = join(this.#rooms, n);
        if (n === PENDING_FILE) {
          const v = await this.#read(path);
          if (Array.isArray(v)) pendingKeys = v as RoomVaultState[];
          continue;
        }
        const m = /^room-([0-9a-f]+)\.json$/.exec(n);
        const name = m ? roomName(m[1]!) : undefined;
        if (name === undefined) continue;
        const v = await this.#read(path);
        if (typeof v === "object" && v !== null && !Array.isArray(v)) {
          rooms.set(name, v as RoomVaultState);
        }
      }
      return { rooms, pendingKeys };
    });
  }

  saveRoom(name: string, state: RoomVaultState): Promise<void> {
    checkUsername(name);
    return this.#serial(async () => {
      await this.#make();
      await writeFiles([{
        path: join(this.#rooms, roomFile(name)),
        bytes: utf8(JSON.stringify(state)),
      }]);
    });
  }

  savePendingKeys(keys: readonly RoomVaultState[]): Promise<void> {
    return this.#serial(async () => {
      if (!this.#made && keys.length === 0) return;
      await this.#make();
      await writeFiles([{
        path: join(this.#rooms, PENDING_FILE),
        bytes: utf8(JSON.stringify(keys)),
      }]);
    });
  }
}
