/**
 * The contract of a {@link Store} (lib/server/seams.ts), as tests any
 * implementation runs: `storeContract("MemoryStore", (clock) => new
 * MemoryStore({ now: clock }))`. The SQLite and JetStream stores run the
 * same ones.
 * @module
 */

import assert from "node:assert/strict";
import type { Store } from "../../lib/server/mod.ts";

/** Makes a fresh, empty store whose clock is `clock`. */
export type StoreFactory = (clock: () => number) => Store | Promise<Store>;

const bytes = (...v: number[]) => new Uint8Array(v);

/**
 * Register the contract's tests.
 * @param name the implementation, in each test's name
 * @param make a fresh store per test
 */
export function storeContract(name: string, make: StoreFactory): void {
  /** Run `fn` on a fresh store whose clock the test moves; always closed. */
  const withStore = (
    what: string,
    fn: (s: Store, clock: { now: number }) => Promise<void>,
  ) =>
    Deno.test(`${name}: ${what}`, async () => {
      const clock = { now: 1_000 };
      const s = await make(() => clock.now);
      try {
        await fn(s, clock);
      } finally {
        await s.close();
      }
    });

  withStore(
    "append() gives increasing seqs and read() returns the records in that order, with user, time and bytes",
    async (s, clock) => {
      const seqs: number[] = [];
      for (let i = 0; i < 5; i++) {
        clock.now = 1_000 + i;
        seqs.push(await s.append("A", bytes(i, 255 - i)));
      }
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!);
      assert.ok(seqs.every((q) => Number.isSafeInteger(q) && q > 0));
      const recs = await s.read("A");
      assert.deepEqual(recs.map((r) => r.seq), seqs);
      assert.deepEqual(
        recs.map((r) => [...r.data]),
        [0, 1, 2, 3, 4].map((i) => [i, 255 - i]),
      );
      assert.ok(recs.every((r) => r.user === "A"));
      assert.deepEqual(recs.map((r) => r.at), [
        1_000,
        1_001,
        1_002,
        1_003,
        1_004,
      ]);
    },
  );

  withStore(
    "appendMany() appends to several logs at once, in order, counted or not, and an empty list appends nothing",
    async (s) => {
      await s.append("A", bytes(1));
      const seqs = await s.appendMany([
        { user: "A", data: bytes(2) },
        { user: "B", data: bytes(3), counted: false },
        { user: "A", data: bytes(4, 4), counted: false },
      ]);
      assert.equal(seqs.length, 3);
      assert.deepEqual(await s.appendMany([]), []);
      const a = await s.read("A");
      assert.deepEqual(a.map((r) => [...r.data]), [[1], [2], [4, 4]]);
      assert.deepEqual(a.slice(1).map((r) => r.seq), [seqs[0], seqs[2]]);
      assert.ok(seqs[2]! > seqs[0]!);
      assert.deepEqual((await s.read("B")).map((r) => r.seq), [seqs[1]]);
      assert.deepEqual(await s.usage("A"), { count: 2, bytes: 2 });
      assert.deepEqual(await s.usage("B"), { count: 0, bytes: 0 });
    },
  );

  withStore(
    "read() of a user with no records is empty, and one user's records are never another's",
    async (s) => {
      assert.deepEqual(await s.read("A"), []);
      await s.append("A", bytes(1));
      await s.append("B", bytes(2));
      await s.append("A", bytes(3));
      assert.deepEqual((await s.read("A")).map((r) => r.data[0]), [1, 3]);
      assert.deepEqual((await s.read("B")).map((r) => r.data[0]), [2]);
      assert.deepEqual(await s.read("C"), []);
    },
  );

  withStore(
    "read() with after and limit pages through a log in order",
    async (s) => {
      const seqs: number[] = [];
      for (let i = 0; i < 7; i++) seqs.push(await s.append("A", bytes(i)));
      const page1 = await s.read("A", { limit: 3 });
      assert.deepEqual(page1.map((r) => r.data[0]), [0, 1, 2]);
      const page2 = await s.read("A", { after: page1.at(-1)!.seq, limit: 3 });
      assert.deepEqual(page2.map((r) => r.data[0]), [3, 4, 5]);
      const page3 = await s.read("A", { after: page2.at(-1)!.seq, limit: 3 });
      assert.deepEqual(page3.map((r) => r.data[0]), [6]);
      assert.deepEqual(await s.read("A", { after: seqs.at(-1)! }), []);
      assert.deepEqual(await s.read("A", { after: seqs.at(-1)! + 100 }), []);
    },
  );

  withStore(
    "read() refuses a limit that is not a positive integer and a negative after, with RangeError",
    async (s) => {
      await s.append("A", bytes(1));
      for (const limit of [0, -1, 1.5, NaN]) {
        await assert.rejects(
          s.read("A", { limit }),
          RangeError,
          `limit ${limit}`,
        );
      }
      await assert.rejects(s.read("A", { after: -1 }), RangeError);
      assert.equal((await s.read("A")).length, 1, "nothing was removed");
    },
  );

  withStore(
    "the store keeps its own copy: changing the bytes after append() or after read() changes nothing stored",
    async (s) => {
      const data = bytes(1, 2, 3);
      await s.append("A", data);
      data[0] = 99;
      const [first] = await s.read("A");
      assert.deepEqual([...first!.data], [1, 2, 3]);
      first!.data.fill(0);
      assert.deepEqual([...(await s.read("A"))[0]!.data], [1, 2, 3]);
    },
  );

  withStore("an empty record is kept and read back empty", async (s) => {
    await s.append("A", new Uint8Array(0));
    const recs = await s.read("A");
    assert.equal(recs.length, 1);
    assert.equal(recs[0]!.data.length, 0);
  });

  withStore(
    "ack() removes the user's records up to and including seq, and no others",
    async (s) => {
      const a = [];
      for (let i = 0; i < 4; i++) a.push(await s.append("A", bytes(i)));
      await s.append("B", bytes(9));
      assert.equal(await s.ack("A", a[1]!), 2);
      assert.deepEqual((await s.read("A")).map((r) => r.data[0]), [2, 3]);
      assert.equal((await s.read("B")).length, 1, "B's log is untouched");
      assert.equal(
        await s.ack("A", a[1]!),
        0,
        "acknowledging again removes nothing",
      );
      assert.equal(await s.ack("A", 0), 0);
      assert.equal(await s.ack("C", a[3]!), 0, "a user with no log");
      assert.equal(await s.ack("A", a[3]!), 2);
      assert.deepEqual(await s.read("A"), []);
    },
  );

  withStore(
    "ack() refuses a negative seq with RangeError and removes nothing",
    async (s) => {
      await s.append("A", bytes(1));
      await assert.rejects(s.ack("A", -1), RangeError);
      assert.equal((await s.read("A")).length, 1);
    },
  );

  withStore(
    "a seq is never reused: after everything is acknowledged the next append() gets a greater one",
    async (s) => {
      const first = await s.append("A", bytes(1));
      const second = await s.append("A", bytes(2));
      assert.equal(await s.ack("A", second), 2);
      const third = await s.append("A", bytes(3));
      assert.ok(third > second && second > first);
      const recs = await s.read("A", { after: second });
      assert.deepEqual(recs.map((r) => r.seq), [third]);
    },
  );

  withStore(
    "expire() removes only the records appended before the time, of every user, and returns them with user, seq, time and bytes",
    async (s, clock) => {
      clock.now = 1_000;
      const a1 = await s.append("A", bytes(1));
      const b1 = await s.append("B", bytes(2));
      clock.now = 2_000;
      await s.append("A", bytes(3));
      clock.now = 3_000;
      await s.append("B", bytes(4));
      assert.deepEqual(
        await s.expire(1_000),
        [],
        "nothing is older than the oldest",
      );
      const gone = await s.expire(2_000);
      assert.deepEqual(
        gone.map((r) => [r.user, r.seq, r.at, [...r.data]]).sort(),
        [["A", a1, 1_000, [1]], ["B", b1, 1_000, [2]]].sort(),
      );
      assert.deepEqual((await s.read("A")).map((r) => r.data[0]), [3]);
      assert.deepEqual((await s.read("B")).map((r) => r.data[0]), [4]);
      assert.deepEqual(
        await s.expire(2_000),
        [],
        "expiring again removes nothing",
      );
      assert.equal((await s.expire(10_000)).length, 2);
      assert.deepEqual(await s.read("A"), []);
      assert.deepEqual(await s.read("B"), []);
    },
  );

  withStore(
    "expire() returns the removed records oldest first",
    async (s, clock) => {
      for (const [user, at] of [["B", 30], ["A", 10], ["C", 20]] as const) {
        clock.now = at;
        await s.append(user, bytes(at));
      }
      const gone = await s.expire(100);
      assert.deepEqual(gone.map((r) => r.at), [10, 20, 30]);
    },
  );

  withStore(
    "expire() with a limit removes the oldest first, batch by batch, and appends the replacement of each removed record in the same call",
    async (s, clock) => {
      for (const [user, at] of [["B", 30], ["A", 10], ["C", 20]] as const) {
        clock.now = at;
        await s.append(user, bytes(at));
      }
      clock.now = 500;
      const replaceWith = (r: { user: string; data: Uint8Array }) =>
        r.data[0] === 20 ? undefined : {
          user: "Z",
          data: bytes(200 + r.data[0]!),
          counted: false,
        };
      const first = await s.expire(100, { limit: 2, replaceWith });
      assert.deepEqual(first.map((r) => r.at), [10, 20]);
      assert.deepEqual((await s.read("B")).map((r) => r.data[0]), [30]);
      assert.deepEqual((await s.read("Z")).map((r) => r.data[0]), [210]);
      const second = await s.expire(100, { limit: 2, replaceWith });
      assert.deepEqual(second.map((r) => r.at), [30]);
      assert.deepEqual((await s.read("Z")).map((r) => r.data[0]), [210, 230]);
      assert.deepEqual(await s.usage("Z"), { count: 0, bytes: 0 });
      assert.deepEqual(await s.expire(100, { limit: 2 }), []);
      await assert.rejects(() => s.expire(100, { limit: 0 }), RangeError);
    },
  );

  withStore(
    "usage() counts the user's records and bytes, and follows append(), ack() and expire()",
    async (s, clock) => {
      assert.deepEqual(await s.usage("A"), { count: 0, bytes: 0 });
      clock.now = 1_000;
      await s.append("A", bytes(1, 2, 3));
      const second = await s.append("A", bytes(4, 5));
      await s.append("B", bytes(6));
      clock.now = 5_000;
      await s.append("A", new Uint8Array(1000));
      assert.deepEqual(await s.usage("A"), { count: 3, bytes: 1005 });
      assert.deepEqual(await s.usage("B"), { count: 1, bytes: 1 });
      assert.equal(await s.ack("A", second), 2);
      assert.deepEqual(await s.usage("A"), { count: 1, bytes: 1000 });
      assert.equal((await s.expire(2_000)).length, 1, "B's record");
      assert.deepEqual(await s.usage("B"), { count: 0, bytes: 0 });
      assert.deepEqual(await s.usage("A"), { count: 1, bytes: 1000 });
      await s.append("B", bytes(7, 8));
      assert.deepEqual(await s.usage("B"), { count: 1, bytes: 2 });
      assert.deepEqual(await s.usage("C"), { count: 0, bytes: 0 });
    },
  );

  withStore(
    "expire() keeps the seqs of what remains, and ack() after it still works",
    async (s, clock) => {
      clock.now = 1_000;
      const old = await s.append("A", bytes(1));
      clock.now = 5_000;
      const fresh = await s.append("A", bytes(2));
      assert.equal((await s.expire(2_000)).length, 1);
      const [left] = await s.read("A");
      assert.equal(left!.seq, fresh);
      assert.equal(await s.ack("A", old), 0);
      assert.equal(await s.ack("A", fresh), 1);
    },
  );

  withStore(
    "a record appended not counted is kept, read, acknowledged and expired like any other, and only usage() leaves it out",
    async (s, clock) => {
      clock.now = 1_000;
      const first = await s.append("A", bytes(1, 2), { counted: false });
      await s.append("A", bytes(3, 4, 5));
      await s.append("A", bytes(6), { counted: true });
      assert.deepEqual(await s.usage("A"), { count: 2, bytes: 4 });
      assert.deepEqual((await s.read("A")).map((r) => r.data.length), [
        2,
        3,
        1,
      ]);
      assert.equal(await s.ack("A", first), 1);
      assert.deepEqual(await s.usage("A"), { count: 2, bytes: 4 });
      clock.now = 2_000;
      await s.append("A", bytes(7, 8), { counted: false });
      assert.equal((await s.expire(1_500)).length, 2);
      assert.deepEqual(await s.usage("A"), { count: 0, bytes: 0 });
      assert.deepEqual((await s.read("A")).map((r) => r.data[0]), [7]);
    },
  );

  Deno.test(`${name}: close() may be called twice`, async () => {
    const s = await make(() => 0);
    await s.close();
    await s.close();
  });
}
