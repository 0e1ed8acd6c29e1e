/**
 * The mailbox database file (PROTOCOL.md 9.9), shared by {@link SqliteStore},
 * {@link SqlitePrekeys} and {@link SqliteRoomStore}: one `node:sqlite`
 * connection, opened once, in WAL mode with `synchronous=FULL`, with the
 * schema of all three, and closed when the last of its users closes (a count
 * of references).
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";

/** File mode of the database (and of its `-wal` and `-shm` files, which SQLite creates alike). */
export const STORE_FILE_MODE = 0o600;
/** File mode of a data directory the store creates. */
export const STORE_DIR_MODE = 0o700;

/** The schema version this code writes (`PRAGMA user_version`). */
const SCHEMA_VERSION = 4;

/**
 * The schema. `records` holds the logs (`counted` 0 for a record that does
 * not count towards the quota: a receipt); `seqs` each user's highest seq
 * ever given, so a seq is never reused even once the log is empty; `usage`
 * each user's counted records and their bytes, kept in the transaction of
 * every change, so the quota (PROTOCOL.md 9.8) costs one row read. `certs`
 * and `prekeys` hold the published keys of 9.1. The rooms of 10.4: `rooms`
 * one row per room (its newest list, its members as a JSON array of names,
 * and `next_seq`, the seq its next entry gets, so a seq is never reused once
 * entries are deleted), `room_leaves` the room's leaves for its epoch in the
 * order they came, `room_entries` each entry once for all members, and
 * `room_positions` each member's (`until` NULL) or removed member's read
 * position. `user_version` names the schema: version 1 had `records`
 * (without `counted`) and `seqs` only; an older file gets the column and its
 * `usage` counted from its records; version 3 had no rooms, and gets their
 * (empty) tables.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS records (
  user TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  data BLOB NOT NULL,
  counted INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (user, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_at ON records (at);
CREATE TABLE IF NOT EXISTS seqs (
  user TEXT PRIMARY KEY,
  last INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS usage (
  user TEXT PRIMARY KEY,
  count INTEGER NOT NULL,
  bytes INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS certs (
  user TEXT PRIMARY KEY,
  identity BLOB NOT NULL,
  signed BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS prekeys (
  user TEXT NOT NULL,
  id INTEGER NOT NULL,
  opk BLOB NOT NULL,
  PRIMARY KEY (user, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
  name TEXT PRIMARY KEY,
  room_id BLOB NOT NULL,
  creator TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  list BLOB NOT NULL,
  members TEXT NOT NULL,
  next_seq INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS room_leaves (
  room TEXT NOT NULL,
  i INTEGER NOT NULL,
  statement BLOB NOT NULL,
  PRIMARY KEY (room, i)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS room_entries (
  room TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('list', 'leave', 'msg', 'keys')),
  sender TEXT NOT NULL,
  at INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (room, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS room_entries_at ON room_entries (at);
CREATE TABLE IF NOT EXISTS room_positions (
  room TEXT NOT NULL,
  user TEXT NOT NULL,
  up_to INTEGER NOT NULL,
  until INTEGER,
  PRIMARY KEY (room, user)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS room_positions_user ON room_positions (user);
`;

/** From an older version: the usage counters of the records already there. */
const FILL_USAGE = `
DELETE FROM usage;
INSERT INTO usage (user, count, bytes)
  SELECT user, count(*), sum(length(data)) FROM records WHERE counted = 1
  GROUP BY user;
`;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Create the directory (0700) and the file (0600) when they are missing; an existing one is left as it is. */
async function prepareFile(path: string): Promise<void> {
  const dir = dirname(path);
  if (!(await exists(dir))) {
    await Deno.mkdir(dir, { recursive: true, mode: STORE_DIR_MODE });
    await Deno.chmod(dir, STORE_DIR_MODE); // mkdir's mode is masked by the umask
  }
  try {
    const f = await Deno.open(path, {
      createNew: true,
      write: true,
      mode: STORE_FILE_MODE,
    });
    f.close();
    await Deno.chmod(path, STORE_FILE_MODE);
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
}

/**
 * One open mailbox database, shared by the objects that use it. Each user
 * takes a reference ({@link MailDatabase.retain}) and gives it back once
 * ({@link MailDatabase.release}); the connection closes with the last.
 * Calls run synchronously: a write transaction blocks the event loop for its
 * commit and fsync, so no other call of this process interleaves with it.
 */
export class MailDatabase {
  readonly path: string;
  #db: DatabaseSync | undefined;
  #refs = 0;
  #statements = new Map<string, StatementSync>();

  private constructor(path: string, db: DatabaseSync) {
    this.path = path;
    this.#db = db;
  }

  /**
   * Open (or create) the database at `path`, with no reference taken yet.
   * @param path the database file; its directory is created 0700 and the
   *   file 0600 when missing
   * @returns the open database
   * @throws {Deno.errors.PermissionDenied} without read and write permission for the path
   * @throws {Error} a file that is not a SQLite database, a schema newer than
   *   this code, or a WAL that cannot be set
   */
  static async open(path: string): Promise<MailDatabase> {
    await prepareFile(path);
    const db = new DatabaseSync(path);
    try {
      const mode = db.prepare("PRAGMA journal_mode = WAL").get()
        ?.journal_mode;
      if (mode !== "wal") {
        throw new Error(`Cannot open store: journal mode "${mode}" is not wal`);
      }
      // FULL: the WAL is synced at every commit, so a commit survives power loss.
      db.exec("PRAGMA synchronous = FULL");
      db.exec("PRAGMA busy_timeout = 5000");
      db.exec("BEGIN IMMEDIATE");
      const version = Number(
        db.prepare("PRAGMA user_version").get()?.user_version,
      );
      if (version > SCHEMA_VERSION) {
        throw new Error(
          `Cannot open store "${path}": its schema version ${version} is newer than ${SCHEMA_VERSION}`,
        );
      }
      db.exec(SCHEMA);
      const columns = db.prepare("PRAGMA table_info(records)").all();
      if (!columns.some((c) => c.name === "counted")) {
        db.exec(
          "ALTER TABLE records ADD COLUMN counted INTEGER NOT NULL DEFAULT 1",
        );
      }
      // Version 3 -> 4 only adds the rooms' tables (made by SCHEMA above).
      if (version < 3) db.exec(FILL_USAGE);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
      return new MailDatabase(path, db);
    } catch (e) {
      if (db.isTransaction) db.exec("ROLLBACK");
      db.close();
      throw e;
    }
  }

  /**
   * Take a reference.
   * @returns this
   */
  retain(): this {
    this.#refs++;
    return this;
  }

  /** Give a reference back; the last one closes the connection. */
  release(): void {
    if (--this.#refs > 0) return;
    const db = this.#db;
    this.#db = undefined;
    this.#statements.clear();
    db?.close();
  }

  /**
   * A statement, prepared once per connection.
   * @param sql its text (the key of the cache)
   * @returns the prepared statement
   * @throws {Error} the database is closed
   */
  statement(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#open().prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  /**
   * One write transaction: committed when `fn` returns, rolled back when it throws.
   * @param fn the work
   * @returns what `fn` returned
   */
  transaction<T>(fn: () => T): T {
    const db = this.#open();
    db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      db.exec("COMMIT");
      return out;
    } catch (e) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw e;
    }
  }

  #open(): DatabaseSync {
    if (this.#db === undefined) {
      throw new Error(`Cannot use store "${this.path}": it is closed`);
    }
    return this.#db;
  }
}

/**
 * Run `fn` unless `closed`; its result or throw becomes the promise's.
 * @param path the store's file, for the error
 * @param closed whether its user closed it
 * @param fn the work
 * @returns the promise
 */
export function run<T>(path: string, closed: boolean, fn: () => T): Promise<T> {
  try {
    if (closed) throw new Error(`Cannot use store "${path}": it is closed`);
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}
