/**
 * {@link SqliteStore}: the durable {@link Store} of mailboxes, one SQLite
 * file through Deno's built-in `node:sqlite` (no dependency). Write-ahead
 * log with `synchronous=FULL`: {@link SqliteStore.append} resolves only
 * after its transaction is committed and the log synced, so a `stored`
 * receipt sent after it survives a `kill -9` or a power cut (PROTOCOL.md 9.9).
 * @module
 */

import { MailDatabase, run } from "./_db.ts";
import type {
  AppendEntry,
  AppendOptions,
  ExpireOptions,
  ReadOptions,
  Store,
  StoredRecord,
} from "../seams.ts";

export { STORE_DIR_MODE, STORE_FILE_MODE } from "./_db.ts";

const NEXT_SEQ = `INSERT INTO seqs (user, last) VALUES (?, 1)
  ON CONFLICT (user) DO UPDATE SET last = last + 1 RETURNING last`;
const INSERT =
  "INSERT INTO records (user, seq, at, data, counted) VALUES (?, ?, ?, ?, ?)";
// LIMIT -1 is "no limit" in SQLite.
const READ = `SELECT seq, at, data FROM records WHERE user = ? AND seq > ?
  ORDER BY seq LIMIT ?`;
const ACK = `DELETE FROM records WHERE user = ? AND seq <= ?
  RETURNING length(data) AS n, counted`;
// LIMIT -1 is "no limit"; the oldest first, one batch per transaction.
const EXPIRE = `DELETE FROM records WHERE (user, seq) IN
  (SELECT user, seq FROM records WHERE at < ? ORDER BY at, seq LIMIT ?)
  RETURNING user, seq, at, data, counted`;
const USAGE = "SELECT count, bytes FROM usage WHERE user = ?";
const ADD_USAGE = `INSERT INTO usage (user, count, bytes) VALUES (?1, ?2, ?3)
  ON CONFLICT (user) DO UPDATE SET count = count + ?2, bytes = bytes + ?3`;

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

/**
 * Per-user logs in one SQLite file. Each user's seqs start at 1 and
 * increase by one per append, never reused (the `seqs` table keeps the
 * high-water mark). The store sees only opaque bytes. Calls run
 * synchronously under their promise: an append blocks the event loop
 * for its commit and fsync. {@link SqliteMail} opens it together with the
 * {@link SqlitePrekeys} of the same file.
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
 * assert.deepEqual(await s.usage("A"), { count: 1, bytes: 1 });
 * await s.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteStore implements Store {
  #db: MailDatabase;
  #now: () => number;
  #closed = false;

  /**
   * The store of an open database; it takes a reference to it. Use
   * {@link SqliteStore.open} or {@link SqliteMail.open}.
   * @param db the database
   * @param clock the clock of `at` and {@link SqliteStore.expire}
   */
  constructor(db: MailDatabase, clock: () => number = Date.now) {
    this.#db = db.retain();
    this.#now = clock;
  }

  /** The database file. */
  get path(): string {
    return this.#db.path;
  }

  /**
   * Open (or create) the store at `path`, alone on its connection.
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
    return new SqliteStore(await MailDatabase.open(path), clock);
  }

  /**
   * Append a record; resolves after the commit is on disk.
   * @param user whose log
   * @param data the record (copied)
   * @param opts whether it counts in the usage (default it does)
   * @returns its seq
   */
  append(
    user: string,
    data: Uint8Array,
    opts: AppendOptions = {},
  ): Promise<number> {
    return this.#run(() => {
      if (!(data instanceof Uint8Array)) {
        throw new TypeError(
          `data: expected a Uint8Array, got ${typeof data}`,
        );
      }
      const db = this.#db;
      return db.transaction(() => {
        const seq = Number(db.statement(NEXT_SEQ).get(user)?.last);
        const counted = opts.counted !== false;
        db.statement(INSERT).run(user, seq, this.#now(), data, counted ? 1 : 0);
        if (counted) db.statement(ADD_USAGE).run(user, 1, data.length);
        return seq;
      });
    });
  }

  /**
   * Append records in one transaction; resolves after its commit is on disk.
   * @param entries each record's log, bytes (copied) and whether it counts
   * @returns their seqs, in order
   */
  appendMany(entries: readonly AppendEntry[]): Promise<number[]> {
    return this.#run(() => {
      for (const e of entries) {
        if (!(e.data instanceof Uint8Array)) {
          throw new TypeError(
            `data: expected a Uint8Array, got ${typeof e.data}`,
          );
        }
      }
      if (entries.length === 0) return [];
      return this.#db.transaction(() => entries.map((e) => this.#insert(e)));
    });
  }

  /** One append, inside the caller's transaction. */
  #insert(e: AppendEntry): number {
    const db = this.#db;
    const seq = Number(db.statement(NEXT_SEQ).get(e.user)?.last);
    const counted = e.counted !== false;
    db.statement(INSERT).run(
      e.user,
      seq,
      this.#now(),
      e.data,
      counted ? 1 : 0,
    );
    if (counted) db.statement(ADD_USAGE).run(e.user, 1, e.data.length);
    return seq;
  }

  read(user: string, opts: ReadOptions = {}): Promise<StoredRecord[]> {
    return this.#run(() => {
      const after = opts.after ?? 0;
      checkSeq("after", after);
      if (opts.limit !== undefined) checkLimit(opts.limit);
      const rows = this.#db.statement(READ).all(user, after, opts.limit ?? -1);
      return rows.map((r) => ({
        seq: Number(r.seq),
        user,
        at: Number(r.at),
        data: new Uint8Array(r.data as Uint8Array),
      }));
    });
  }

  /** Remove the user's records up to `seq`, in one transaction with its usage. */
  ack(user: string, seq: number): Promise<number> {
    return this.#run(() => {
      checkSeq("seq", seq);
      const db = this.#db;
      return db.transaction(() => {
        const gone = db.statement(ACK).all(user, seq);
        const counted = gone.filter((r) => Number(r.counted) === 1);
        const bytes = counted.reduce((sum, r) => sum + Number(r.n), 0);
        if (counted.length > 0) {
          db.statement(ADD_USAGE).run(user, -counted.length, -bytes);
        }
        return gone.length;
      });
    });
  }

  /** Remove every record older than `before`, in one transaction with the usage. */
  expire(before: number, opts: ExpireOptions = {}): Promise<StoredRecord[]> {
    return this.#run(() => {
      if (opts.limit !== undefined) checkLimit(opts.limit);
      const db = this.#db;
      return db.transaction(() => {
        const rows = db.statement(EXPIRE).all(before, opts.limit ?? -1);
        const gone: StoredRecord[] = [];
        const per = new Map<string, { count: number; bytes: number }>();
        for (const r of rows) {
          const rec = {
            seq: Number(r.seq),
            user: String(r.user),
            at: Number(r.at),
            data: new Uint8Array(r.data as Uint8Array),
          };
          gone.push(rec);
          if (Number(r.counted) !== 1) continue;
          const u = per.get(rec.user) ?? { count: 0, bytes: 0 };
          u.count++;
          u.bytes += rec.data.length;
          per.set(rec.user, u);
        }
        for (const [user, u] of per) {
          db.statement(ADD_USAGE).run(user, -u.count, -u.bytes);
        }
        gone.sort((a, b) => a.at - b.at || a.seq - b.seq);
        for (const rec of gone) {
          const e = opts.replaceWith?.(rec);
          if (e) this.#insert(e);
        }
        return gone;
      });
    });
  }

  usage(user: string): Promise<{ count: number; bytes: number }> {
    return this.#run(() => {
      const row = this.#db.statement(USAGE).get(user);
      return { count: Number(row?.count ?? 0), bytes: Number(row?.bytes ?? 0) };
    });
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#db.release();
    }
    return Promise.resolve();
  }

  #run<T>(fn: () => T): Promise<T> {
    return run(this.#db.path, this.#closed, fn);
  }
}
