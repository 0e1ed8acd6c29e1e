/**
 * {@link SqliteMail}: the mailbox file of `im serve --data DIR`
 * (PROTOCOL.md 9.9): a {@link SqliteStore}, a {@link SqlitePrekeys} and a
 * {@link SqliteRoomStore} (10.4) on one SQLite connection to one file.
 * @module
 */

import { MailDatabase } from "./_db.ts";
import { SqlitePrekeys } from "./prekeys.ts";
import { SqliteRoomStore } from "./rooms.ts";
import { SqliteStore } from "./store.ts";

/** The file name of the mailbox database in a data directory. */
export const MAIL_DB_FILE = "mail.db";

/**
 * The store, the prekeys and the rooms of one database file. Each may be
 * closed on its own; the file closes with the last ({@link SqliteMail.close}
 * closes all three).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteMail } from "./mail.ts";
 * const dir = await Deno.makeTempDir();
 * const mail = await SqliteMail.open(`${dir}/data/mail.db`);
 * await mail.store.append("B", new Uint8Array([1]));
 * assert.equal(await mail.prekeys.count("B"), 0);
 * assert.deepEqual(await mail.rooms.roomsOf("B"), []);
 * await mail.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteMail {
  /** The users' logs. */
  readonly store: SqliteStore;
  /** The users' published keys. */
  readonly prekeys: SqlitePrekeys;
  /** The rooms (PROTOCOL.md 10.4). */
  readonly rooms: SqliteRoomStore;

  private constructor(
    store: SqliteStore,
    prekeys: SqlitePrekeys,
    rooms: SqliteRoomStore,
  ) {
    this.store = store;
    this.prekeys = prekeys;
    this.rooms = rooms;
  }

  /**
   * Open (or create) the mailbox database at `path`.
   * @param path the database file; its directory is created 0700 and the
   *   file 0600 when missing
   * @param clock the clock of `at` and `expire` of the store, and of `at`
   *   of the rooms' entries (default `Date.now`)
   * @returns the store, the prekeys and the rooms
   * @throws {Deno.errors.PermissionDenied} without read and write permission for the path
   * @throws {Error} a file that is not a SQLite database, a schema newer than
   *   this code, or a WAL that cannot be set
   */
  static async open(
    path: string,
    clock: () => number = Date.now,
  ): Promise<SqliteMail> {
    const db = await MailDatabase.open(path);
    return new SqliteMail(
      new SqliteStore(db, clock),
      new SqlitePrekeys(db),
      new SqliteRoomStore(db, clock),
    );
  }

  /** Close all three; idempotent. */
  async close(): Promise<void> {
    await this.store.close();
    await this.prekeys.close();
    await this.rooms.close();
  }
}
