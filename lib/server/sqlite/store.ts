/**
 * {@link SqliteStore}: the durable {@link Store} of mailboxes, one SQLite
 * file through Deno's built-in `node:sqlite` (no dependency). Write-ahead
 * log with `synchronous=FULL`: {@link SqliteStore.append} resolves only
 * after its transaction is committed and the log synced, so a `stored`
 * receipt sent after it survives a `kill -9` or a power cut.
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { dirname } from "node:path";
import type { ReadOptions, Store, StoredRecord } from "../seams.ts";

/** File mode of the database (and of its `-wal` and `-shm` files, which SQLite creates alike). */
export const STORE_FILE_MODE = 0o600;
/** File mode of a data directory the store creates. */
export const STORE_DIR_MODE = 0o700;

/**
 * The schema. `records` holds the logs; `seqs` holds each user's highest
 * seq ever given, so a seq is never reused even once the log is empty.
 * `user_version` names the schema for later migrations.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS records (
  user TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (user, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_at ON records (at);
CREATE TABLE IF NOT EXISTS seqs (
  user TEXT PRIMARY KEY,
  last INTEGER NOT NULL
) STRICT;
PRAGMA user_version = 1;
`;

function checkSeq(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what}: expected an integer >= 0, got ${n}`);
  }
}

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`limit: expected a positive integer, got ${limit}`);
  }
}

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

/** The prepared statements, made once per open database. */
class Statements {
  readonly nextSeq: StatementSync;
  readonly insert: StatementSync;
  readonly readAll: StatementSync;
  readonly ack: StatementSync;
  readonly expire: StatementSync;

  constructor(db: DatabaseSync) {
    this.nextSeq = db.prepare(
      `INSERT INTO seqs (user, last) VALUES (?, 1)
       ON CONFLICT (user) DO UPDATE SET last = last + 1 RETURNING last`,
    );
    this.insert = db.prepare(
      "INSERT INTO records (user, seq, at, data) VALUES (?, ?, ?, ?)",
    );
    // LIMIT -1 is "no limit" in SQLite.
    this.readAll = db.prepare(
      `SELECT seq, at, data FROM records WHERE user = ? AND seq > ?
       ORDER BY seq LIMIT ?`,
    );
    this.ack = db.prepare("DELETE FROM records WHERE user = ? AND seq <= ?");
    this.expire = db.prepare("DELETE FROM records WHERE at < ?");
  }
}

/**
 * Per-user logs in one SQLite file. Each user's seqs start at 1 and
 * increase by one per append, never reused (the `seqs` table keeps the
 * high-water mark). The store sees only opaque bytes. Calls run
 * synchronously under their promise: an append blocks the event loop
 * for its commit and fsync.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteStore } from "./store.ts";
 * const dir = await Deno.makeTempDir();
 * const s = await SqliteStore.open(`${dir}/data/mail.db`);
 * const first = await s.append("A", new Uint8Array([1]));
 * await s.append("A", new Uint8Array([2]));
 * assert.equal(await s.ack("A", first), 1);
 * assert.deepEqual((await s.read("A")).map((r) => r.data[0]), [2]);
 * await s.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteStore implements Store {
  #db: DatabaseSync | undefined;
  #st: Statements;
  #now: () => number;
  readonly path: string;

  private constructor(path: string, db: DatabaseSync, now: () => number) {
    this.path = path;
    this.#db = db;
    this.#st = new Statements(db);
    this.#now = now;
  }

  /**
   * Open (or create) the store at `path`.
   * @param path the database file; its directory is created 0700 and the
   *   file 0600 when missing
   * @param clock the clock of `at` and {@link SqliteStore.expire} (default `Date.now`)
   * @returns the open store
   * @throws {Deno.errors.PermissionDenied} without read and write permission for the path
   * @throws {Error} a file that is not a SQLite database, or a WAL that cannot be set
   */
  static async open(
    path: string,
    clock: () => number = Date.now,
  ): Promise<SqliteStore> {
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
      db.exec(`BEGIN IMMEDIATE; ${SCHEMA} COMMIT;`);
      return new SqliteStore(path, db, clock);
    } catch (e) {
      if (db.isTransaction) db.exec("ROLLBACK");
      db.close();
      throw e;
    }
  }

  /**
   * Append a record; resolves after the commit is on disk.
   * @param user whose log
   * @param data the record (copied)
   * @returns its seq
   */
  append(user: string, data: Uint8Array): Promise<number> {
    return this.#run(() => {
      if (!(data instanceof Uint8Array)) {
        throw new TypeError(
          `data: expected a Uint8Array, got ${typeof data}`,
        );
      }
      return this.#transaction((st) => {
        const seq = Number(st.nextSeq.get(user)?.last);
        st.insert.run(user, seq, this.#now(), data);
        return seq;
      });
    });
  }

  read(user: string, opts: ReadOptions = {}): Promise<StoredRecord[]> {
    return this.#run(() => {
      const after = opts.after ?? 0;
      checkSeq("after", after);
      if (opts.limit !== undefined) checkLimit(opts.limit);
      const rows = this.#st.readAll.all(user, after, opts.limit ?? -1);
      return rows.map((r) => ({
        seq: Number(r.seq),
        user,
        at: Number(r.at),
        data: new Uint8Array(r.data as Uint8Array),
      }));
    });
  }

  ack(user: string, seq: number): Promise<number> {
    return this.#run(() => {
      checkSeq("seq", seq);
      return Number(this.#st.ack.run(user, seq).changes);
    });
  }

  expire(before: number): Promise<number> {
    return this.#run(() => Number(this.#st.expire.run(before).changes));
  }

  close(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    db?.close();
    return Promise.resolve();
  }

  /** Run `fn` on the open database; its result or throw becomes the promise's. */
  #run<T>(fn: () => T): Promise<T> {
    try {
      if (this.#db === undefined) {
        throw new Error(`Cannot use store "${this.path}": it is closed`);
      }
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** One write transaction: committed when `fn` returns, rolled back when it throws. */
  #transaction<T>(fn: (st: Statements) => T): T {
    const db = this.#db!;
    db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn(this.#st);
      db.exec("COMMIT");
      return out;
    } catch (e) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw e;
    }
  }
}
