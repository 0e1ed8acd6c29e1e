import assert from "node:assert/strict";
import { join } from "node:path";
import {
  MemoryRoomStore,
  type RoomRow,
  SqliteMail,
  SqliteRoomStore,
} from "../../lib/server/mod.ts";
import { roomStoreContract } from "./room_store_contract.ts";

roomStoreContract("MemoryRoomStore", (clock) => new MemoryRoomStore(clock));

/** A fresh temp directory for `fn`, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im_sqlite_rooms_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Rooms on a fresh temp file whose close() also removes the file's directory. */
async function tempRooms(clock: () => number): Promise<SqliteRoomStore> {
  const dir = await Deno.makeTempDir({ prefix: "im_sqlite_rooms_" });
  const s = await SqliteRoomStore.open(join(dir, "data", "mail.db"), clock);
  const close = s.close.bind(s);
  let removed = false;
  return Object.assign(s, {
    close: async () => {
      await close();
      if (!removed) {
        removed = true;
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

roomStoreContract("SqliteRoomStore", tempRooms);

const bytes = (...v: number[]) => new Uint8Array(v);

const row = (members: string[], epoch = 1, leaves: Uint8Array[] = []) => ({
  name: "ops",
  roomId: new Uint8Array(16).fill(3),
  creator: "A",
  epoch,
  list: bytes(0x4c, epoch),
  leaves,
  members,
} satisfies RoomRow);

Deno.test("SqliteRoomStore keeps rooms, entries and positions across close and reopen: a seq is never reused, even after every entry was deleted", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    let s = await SqliteRoomStore.open(path, () => 7);
    await s.create(row(["A", "B", "C"]), {
      kind: "list",
      from: "A",
      at: 0,
      data: bytes(1),
    });
    const m = await s.append("ops", {
      kind: "msg",
      from: "B",
      at: 0,
      data: bytes(2, 2),
    });
    const leave = bytes(9);
    const out = await s.change({
      row: row(["A", "B"], 1, [leave]),
      entry: { kind: "leave", from: "C", at: 0, data: leave },
      added: [],
      removed: ["C"],
    });
    await s.ack("ops", "B", m);
    await s.close();
    await s.close(); // idempotent
    await assert.rejects(s.room("ops"), /closed/);

    s = await SqliteRoomStore.open(path, () => 8);
    try {
      assert.deepEqual(await s.room("ops"), row(["A", "B"], 1, [leave]));
      assert.deepEqual(await s.position("ops", "B"), { upTo: m });
      assert.deepEqual(await s.position("ops", "C"), { upTo: 0, until: out });
      assert.deepEqual(await s.roomsOf("C"), ["ops"]);
      assert.equal(await s.memberships("C"), 0);
      assert.equal(await s.bytes("ops"), 4);
      assert.deepEqual(
        (await s.read("ops", "C")).map((e) => [e.seq, e.kind, e.from, e.at]),
        [[1, "list", "A", 7], [m, "msg", "B", 7], [out, "leave", "C", 7]],
      );
      for (const u of ["A", "B", "C"]) await s.ack("ops", u, out);
      assert.equal(await s.bytes("ops"), 0);
      assert.equal(await s.roomsOf("C").then((r) => r.length), 0);
    } finally {
      await s.close();
    }

    s = await SqliteRoomStore.open(path, () => 9);
    try {
      const next = await s.append("ops", {
        kind: "msg",
        from: "A",
        at: 0,
        data: bytes(3),
      });
      assert.equal(next, out + 1);
    } finally {
      await s.close();
    }
  });
});

Deno.test("SqliteMail opens the rooms on the connection of the store and the prekeys, and close() closes them too", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "data", "mail.db");
    const mail = await SqliteMail.open(path, () => 5);
    await mail.store.append("B", bytes(1));
    await mail.rooms.create(row(["A", "B"]), {
      kind: "list",
      from: "A",
      at: 0,
      data: bytes(1),
    });
    assert.equal(mail.rooms.path, mail.store.path);
    assert.equal((await mail.rooms.read("ops", "B"))[0]?.at, 5);
    await mail.close();
    await mail.close(); // idempotent
    await assert.rejects(mail.rooms.roomsOf("B"), /closed/);

    const again = await SqliteMail.open(path);
    try {
      assert.deepEqual(await again.rooms.roomsOf("B"), ["ops"]);
      assert.deepEqual(await again.store.usage("B"), { count: 1, bytes: 1 });
    } finally {
      await again.close();
    }
  });
});

Deno.test("a mailbox file of schema version 3 (no rooms) opens with its mail as it was, gets the rooms' tables and version 4", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const mail = await SqliteMail.open(path);
    await mail.store.append("A", bytes(1, 2));
    await mail.store.append("A", bytes(3), { counted: false });
    await mail.close();
    const { DatabaseSync } = await import("node:sqlite");
    const db = new DatabaseSync(path);
    db.exec(`
      DROP TABLE room_positions; DROP TABLE room_entries;
      DROP TABLE room_leaves; DROP TABLE rooms;
      PRAGMA user_version = 3;`);
    db.close();

    const opened = await SqliteMail.open(path);
    try {
      assert.deepEqual(await opened.store.usage("A"), { count: 1, bytes: 2 });
      assert.deepEqual(
        (await opened.store.read("A")).map((r) => [r.seq, [...r.data]]),
        [[1, [1, 2]], [2, [3]]],
      );
      assert.deepEqual(await opened.rooms.roomsOf("A"), []);
      assert.equal(
        await opened.rooms.create(row(["A", "B"]), {
          kind: "list",
          from: "A",
          at: 0,
          data: bytes(1),
        }),
        1,
      );
    } finally {
      await opened.close();
    }
    const check = new DatabaseSync(path);
    try {
      assert.equal(
        Number(check.prepare("PRAGMA user_version").get()?.user_version),
        4,
      );
    } finally {
      check.close();
    }
  });
});
