/**
 * {@link SqliteMail}: the mailbox file of `im serve --data DIR`
 * (PROTOCOL.md 9.9): a {@link SqliteStore} and a {@link SqlitePrekeys} on
 * one SQLite connection to one file.
 * @module
 */

import { MailDatabase } from "./_db.ts";
import { SqlitePrekeys } from "./prekeys.ts";
import { SqliteStore } from "./store.ts";

/** The file name of the mailbox database in a data directory. */
export const MAIL_DB_FILE = "mail.db";

/**
 * The store and the prekeys of one database file. Each may be closed on its
 * own; the file closes with the last ({@link SqliteMail.close} closes both).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteMail } from "./mail.ts";
 * const dir = await Deno.makeTempDir();
 * const mail = await SqliteMail.open(`${dir}/data/mail.db`);
 * await mail.store.append("B", new Uint8Array([1]));
 * assert.equal(await mail.prekeys.count("B"), 0);
 * await mail.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteMail {
  /** The users' logs. */
  readonly store: SqliteStore;
  /** The users' published keys. */
  readonly prekeys: SqlitePrekeys;

  private constructor(store: SqliteStore, prekeys: SqlitePrekeys) {
    this.store = store;
    this.prekeys = prekeys;
  }

  /**
   * Open (or create) the mailbox database at `path`.
   * @param path the database file; its directory is created 0700 and the
   *   file 0600 when missing
   * @param clock the store's clock of `at` and `expire` (default `Date.now`)
   * @returns the store and the prekeys
   * @throws {Deno.errors.PermissionDenied} without read and write permission for the path
   * @throws {Error} a file that is not a SQLite database, a schema newer than
   *   this code, or a WAL that cannot be set
   */
  static async open(
    path: string,
    clock: () => number = Date.now,
  ): Promise<SqliteMail> {
    const db = await MailDatabase.open(path);
    return new SqliteMail(new SqliteStore(db, clock), new SqlitePrekeys(db));
  }

  /** Close both; idempotent. */
  async close(): Promise<void> {
    await this.store.close();
    await this.prekeys.close();
  }
}
