/**
 * {@link SqlitePrekeys} and {@link SqliteMail}: the prekeys contract on the
 * SQLite file the store shares, what survives a reopen, and the schema
 * upgrade of a file written before mailbox keys existed (PROTOCOL.md 9.9).
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Prekeys,
  SqliteMail,
  SqlitePrekeys,
  SqliteStore,
} from "../../lib/server/mod.ts";
import { prekeysContract } from "./prekeys_contract.ts";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im_sqlite_prekeys_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The prekeys of a fresh {@link SqliteMail}; close() closes the pair and removes the file. */
async function tempPrekeys(): Promise<Prekeys> {
  const dir = await Deno.makeTempDir({ prefix: "im_sqlite_prekeys_" });
  const mail = await SqliteMail.open(join(dir, "data", "mail.db"));
  const p = mail.prekeys;
  let removed = false;
  return {
    publish: (u, c, k) => p.publish(u, c, k),
    certs: (u) => p.certs(u),
    take: (u) => p.take(u),
    count: (u) => p.count(u),
    close: async () => {
      await mail.close();
      if (!removed) {
        removed = true;
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

prekeysContract("SqlitePrekeys", tempPrekeys);

const bytes = (...v: number[]) => new Uint8Array(v);
const certs = { identityCert: bytes(1), signedPrekeyCert: bytes(2) };
const opk = (id: number) => ({ id, opk: new Uint8Array(36).fill(id) });

Deno.test("SqliteMail keeps the store's records and the published keys across close and reopen; a prekey taken before stays taken", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "data", "mail.db");
    let mail = await SqliteMail.open(path, () => 5);
    await mail.prekeys.publish("B", certs, [opk(1), opk(2), opk(3)]);
    assert.equal((await mail.prekeys.take("B"))?.oneTime?.id, 1);
    const seq = await mail.store.append("B", bytes(9));
    await mail.close();

    mail = await SqliteMail.open(path, () => 6);
    try {
      assert.deepEqual(await mail.prekeys.certs("B"), certs);
      assert.equal(await mail.prekeys.count("B"), 2);
      assert.equal((await mail.prekeys.take("B"))?.oneTime?.id, 2);
      const recs = await mail.store.read("B");
      assert.deepEqual(recs.map((r) => [r.seq, r.at, [...r.data]]), [[
        seq,
        5,
        [9],
      ]]);
      assert.deepEqual(await mail.store.usage("B"), { count: 1, bytes: 1 });
    } finally {
      await mail.close();
    }
  });
});

Deno.test("SqliteMail's store and prekeys share one file: each works until closed, the other after it, and the file closes with the last", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const mail = await SqliteMail.open(path);
    await mail.store.close();
    await assert.rejects(mail.store.append("A", bytes(1)), /closed/);
    assert.equal(await mail.prekeys.publish("A", certs, [opk(1)]), 1);
    await mail.prekeys.close();
    await assert.rejects(mail.prekeys.count("A"), /closed/);
    await assert.rejects(mail.prekeys.take("A"), /closed/);
    await mail.close(); // idempotent
    // Closed for good: another connection may check it out whole.
    const { DatabaseSync } = await import("node:sqlite");
    const db = new DatabaseSync(path);
    try {
      assert.equal(
        db.prepare("PRAGMA integrity_check").get()?.integrity_check,
        "ok",
      );
      assert.equal(
        Number(db.prepare("SELECT count(*) AS n FROM prekeys").get()?.n),
        1,
      );
    } finally {
      db.close();
    }
  });
});

Deno.test("SqlitePrekeys.open() and SqliteStore.open() on one path see each other's writes", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const p = await SqlitePrekeys.open(path);
    await p.publish("B", certs, [opk(4)]);
    await p.close();
    const mail = await SqliteMail.open(path);
    try {
      assert.equal((await mail.prekeys.take("B"))?.oneTime?.id, 4);
    } finally {
      await mail.close();
    }
    const s = await SqliteStore.open(path);
    await s.close();
  });
});

Deno.test("a store file of schema version 1 (records and seqs only) opens with its usage counted from its records", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const { DatabaseSync } = await import("node:sqlite");
    const db = new DatabaseSync(path);
    db.exec(`
      CREATE TABLE records (user TEXT NOT NULL, seq INTEGER NOT NULL,
        at INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (user, seq))
        STRICT, WITHOUT ROWID;
      CREATE TABLE seqs (user TEXT PRIMARY KEY, last INTEGER NOT NULL) STRICT;
      INSERT INTO records VALUES ('A', 1, 10, x'0102'), ('A', 2, 11, x'03'),
        ('B', 1, 12, x'040506');
      INSERT INTO seqs VALUES ('A', 2), ('B', 1);
      PRAGMA user_version = 1;`);
    db.close();
    const mail = await SqliteMail.open(path);
    try {
      assert.deepEqual(await mail.store.usage("A"), { count: 2, bytes: 3 });
      assert.deepEqual(await mail.store.usage("B"), { count: 1, bytes: 3 });
      assert.equal(await mail.store.append("A", bytes(7)), 3);
      assert.equal(await mail.prekeys.count("A"), 0);
    } finally {
      await mail.close();
    }
  });
});

Deno.test("SqliteMail.open() refuses a file whose schema is newer than this code, and leaves it as it was", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const { DatabaseSync } = await import("node:sqlite");
    const db = new DatabaseSync(path);
    db.exec("PRAGMA user_version = 99");
    db.close();
    await assert.rejects(SqliteMail.open(path), /schema version 99/);
    const again = new DatabaseSync(path);
    try {
      assert.equal(
        Number(again.prepare("PRAGMA user_version").get()?.user_version),
        99,
      );
    } finally {
      again.close();
    }
  });
});
