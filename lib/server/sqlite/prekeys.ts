/**
 * {@link SqlitePrekeys}: the users' published mailbox keys (PROTOCOL.md 9.1,
 * 9.9) in the SQLite file of the mailboxes. `take` hands out the one-time
 * prekey of lowest id with one `DELETE ... RETURNING` in one transaction, so
 * no prekey is ever handed out twice, even across a crash.
 * @module
 */

import { MailDatabase, run } from "./_db.ts";
import type { Prekeys, PublishedCerts, PublishedPrekey } from "../seams.ts";

const PUT_CERTS =
  `INSERT INTO certs (user, identity, signed) VALUES (?1, ?2, ?3)
  ON CONFLICT (user) DO UPDATE SET identity = ?2, signed = ?3`;
const PUT_PREKEY =
  "INSERT OR IGNORE INTO prekeys (user, id, opk) VALUES (?, ?, ?)";
const CERTS = "SELECT identity, signed FROM certs WHERE user = ?";
const COUNT = "SELECT count(*) AS n FROM prekeys WHERE user = ?";
const DROP_POOL = "DELETE FROM prekeys WHERE user = ?";
const TAKE = `DELETE FROM prekeys WHERE user = ?1
  AND id = (SELECT min(id) FROM prekeys WHERE user = ?1) RETURNING id, opk`;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** @throws {RangeError} an id that is not a u32 */
function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff_ffff) {
    throw new RangeError(
      `id: expected an integer from 0 to 4294967295, got ${id}`,
    );
  }
}

function certsOf(row: Record<string, unknown> | undefined) {
  if (!row) return undefined;
  return {
    identityCert: new Uint8Array(row.identity as Uint8Array),
    signedPrekeyCert: new Uint8Array(row.signed as Uint8Array),
  };
}

/**
 * Published keys in SQLite. Every write is one transaction, committed and
 * synced (`synchronous=FULL`) before its promise resolves. {@link SqliteMail}
 * opens it on the file of the {@link SqliteStore}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqlitePrekeys } from "./prekeys.ts";
 * const dir = await Deno.makeTempDir();
 * const p = await SqlitePrekeys.open(`${dir}/mail.db`);
 * const certs = { identityCert: new Uint8Array([1]), signedPrekeyCert: new Uint8Array([2]) };
 * await p.publish("B", certs, [{ id: 7, opk: new Uint8Array(36) }]);
 * assert.equal((await p.take("B"))?.oneTime?.id, 7);
 * assert.equal((await p.take("B"))?.oneTime, undefined); // the certificates carry on
 * await p.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqlitePrekeys implements Prekeys {
  #db: MailDatabase;
  #closed = false;

  /**
   * The prekeys of an open database; it takes a reference to it. Use
   * {@link SqlitePrekeys.open} or {@link SqliteMail.open}.
   * @param db the database
   */
  constructor(db: MailDatabase) {
    this.#db = db.retain();
  }

  /**
   * Open (or create) the prekeys at `path`, alone on their connection.
   * @param path the database file (created 0600 in a 0700 directory)
   * @returns them
   * @throws {Error} as {@link MailDatabase.open}
   */
  static async open(path: string): Promise<SqlitePrekeys> {
    return new SqlitePrekeys(await MailDatabase.open(path));
  }

  publish(
    user: string,
    certs: PublishedCerts,
    oneTime: readonly PublishedPrekey[],
  ): Promise<number> {
    return this.#run(() => {
      for (const k of oneTime) checkId(k.id);
      const db = this.#db;
      return db.transaction(() => {
        const held = certsOf(db.statement(CERTS).get(user));
        if (held && !sameBytes(held.identityCert, certs.identityCert)) {
          // Another identity key: the pool was made for the old one.
          db.statement(DROP_POOL).run(user);
        }
        db.statement(PUT_CERTS).run(
          user,
          certs.identityCert,
          certs.signedPrekeyCert,
        );
        for (const k of oneTime) {
          db.statement(PUT_PREKEY).run(user, k.id, k.opk);
        }
        return Number(db.statement(COUNT).get(user)?.n);
      });
    });
  }

  certs(user: string): Promise<PublishedCerts | undefined> {
    return this.#run(() => certsOf(this.#db.statement(CERTS).get(user)));
  }

  take(
    user: string,
  ): Promise<
    { certs: PublishedCerts; oneTime: PublishedPrekey | undefined } | undefined
  > {
    return this.#run(() => {
      const db = this.#db;
      return db.transaction(() => {
        const certs = certsOf(db.statement(CERTS).get(user));
        if (!certs) return undefined;
        const row = db.statement(TAKE).get(user);
        const oneTime = row
          ? { id: Number(row.id), opk: new Uint8Array(row.opk as Uint8Array) }
          : undefined;
        return { certs, oneTime };
      });
    });
  }

  count(user: string): Promise<number> {
    return this.#run(() => Number(this.#db.statement(COUNT).get(user)?.n));
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
