/**
 * The contract of a {@link Prekeys} (lib/server/seams.ts, PROTOCOL.md 9.9),
 * as tests any implementation runs: `prekeysContract("MemoryPrekeys", () =>
 * new MemoryPrekeys())`. The SQLite one runs the same.
 * @module
 */

import assert from "node:assert/strict";
import type { Prekeys, PublishedPrekey } from "../../lib/server/mod.ts";

/** Makes a fresh, empty {@link Prekeys}. */
export type PrekeysFactory = () => Prekeys | Promise<Prekeys>;

const bytes = (...v: number[]) => new Uint8Array(v);
/** Certificates: signed prekey `n` under identity `id`. */
const certs = (n: number, id = 1) => ({
  identityCert: bytes(1, id),
  signedPrekeyCert: bytes(2, n),
});
/** One-time prekeys with these ids; each key's bytes name its id. */
const opks = (...ids: number[]): PublishedPrekey[] =>
  ids.map((id) => ({ id, opk: new Uint8Array(36).fill(id & 0xff) }));

/**
 * Register the contract's tests.
 * @param name the implementation, in each test's name
 * @param make fresh prekeys per test
 */
export function prekeysContract(name: string, make: PrekeysFactory): void {
  const withPrekeys = (what: string, fn: (p: Prekeys) => Promise<void>) =>
    Deno.test(`${name}: ${what}`, async () => {
      const p = await make();
      try {
        await fn(p);
      } finally {
        await p.close();
      }
    });

  withPrekeys(
    "a user who never published has no certificates, nothing to take and no one-time prekeys",
    async (p) => {
      assert.equal(await p.certs("B"), undefined);
      assert.equal(await p.take("B"), undefined);
      assert.equal(await p.count("B"), 0);
    },
  );

  withPrekeys(
    "publish() keeps the certificates and counts the one-time prekeys held",
    async (p) => {
      assert.equal(await p.publish("B", certs(1), opks(1, 2, 3)), 3);
      const c = await p.certs("B");
      assert.deepEqual([...c!.identityCert], [1, 1]);
      assert.deepEqual([...c!.signedPrekeyCert], [2, 1]);
      assert.equal(await p.count("B"), 3);
      assert.equal(await p.count("A"), 0, "another user has none");
      assert.equal(await p.certs("A"), undefined);
    },
  );

  withPrekeys(
    "publish() replaces the certificates and adds one-time prekeys; an id already held is ignored, its first key kept",
    async (p) => {
      await p.publish("B", certs(1), opks(1, 2));
      const again = [{ id: 2, opk: new Uint8Array(36).fill(99) }, ...opks(3)];
      assert.equal(await p.publish("B", certs(2), again), 3);
      assert.deepEqual([...(await p.certs("B"))!.signedPrekeyCert], [2, 2]);
      const taken = [];
      for (let i = 0; i < 3; i++) taken.push((await p.take("B"))!.oneTime!);
      assert.deepEqual(taken.map((k) => k.id), [1, 2, 3]);
      assert.equal(taken[1]!.opk[0], 2, "the first key of id 2 was kept");
      assert.equal(await p.publish("B", certs(3), []), 0, "certificates alone");
    },
  );

  withPrekeys(
    "publish() with another identity certificate drops the one-time prekeys held for the old one, then adds the new ones",
    async (p) => {
      await p.publish("B", certs(1, 1), opks(1, 2, 3));
      assert.equal(await p.publish("B", certs(1, 2), opks(7)), 1);
      const t = await p.take("B");
      assert.equal(t!.oneTime!.id, 7, "none of the old pool is handed out");
      assert.deepEqual([...t!.certs.identityCert], [1, 2]);
      assert.equal((await p.take("B"))!.oneTime, undefined);
    },
  );

  withPrekeys(
    "take() hands out the one-time prekey of lowest id with the certificates, and removes it",
    async (p) => {
      await p.publish("B", certs(1), opks(5, 3, 9));
      const t = await p.take("B");
      assert.equal(t?.oneTime?.id, 3);
      assert.deepEqual([...t!.oneTime!.opk], [...new Uint8Array(36).fill(3)]);
      assert.deepEqual([...t!.certs.identityCert], [1, 1]);
      assert.equal(await p.count("B"), 2);
      assert.equal((await p.take("B"))?.oneTime?.id, 5);
      assert.equal((await p.take("B"))?.oneTime?.id, 9);
    },
  );

  withPrekeys(
    "once the one-time prekeys run out, take() still gives the certificates, with no one-time prekey",
    async (p) => {
      await p.publish("B", certs(1), opks(1));
      await p.take("B");
      for (let i = 0; i < 3; i++) {
        const t = await p.take("B");
        assert.ok(t, "the signed prekey carries on");
        assert.equal(t.oneTime, undefined);
        assert.deepEqual([...t.certs.signedPrekeyCert], [2, 1]);
      }
      assert.equal(await p.count("B"), 0);
    },
  );

  withPrekeys(
    "each one-time prekey is handed out once, even to many takers at once",
    async (p) => {
      const ids = Array.from({ length: 50 }, (_, i) => i + 1);
      await p.publish("B", certs(1), opks(...ids));
      const takes = await Promise.all(
        Array.from({ length: 60 }, () => p.take("B")),
      );
      const got = takes.map((t) => t!.oneTime?.id).filter((id) =>
        id !== undefined
      );
      assert.equal(got.length, 50);
      assert.deepEqual([...new Set(got)].sort((a, b) => a - b), ids);
    },
  );

  withPrekeys("one user's prekeys are never another's", async (p) => {
    await p.publish("A", certs(1), opks(1));
    await p.publish("B", certs(2, 2), opks(2));
    assert.equal((await p.take("A"))?.oneTime?.id, 1);
    assert.equal((await p.take("A"))?.oneTime, undefined);
    assert.equal(await p.count("B"), 1);
    assert.deepEqual([...(await p.certs("B"))!.identityCert], [1, 2]);
  });

  withPrekeys(
    "it keeps its own copies: changing the bytes after publish() or after certs() or take() changes nothing held",
    async (p) => {
      const c = certs(1);
      const k = opks(1, 2);
      await p.publish("B", c, k);
      c.identityCert.fill(0);
      k[1]!.opk.fill(0);
      const got = await p.certs("B");
      assert.deepEqual([...got!.identityCert], [1, 1]);
      got!.identityCert.fill(0);
      const t = await p.take("B");
      t!.certs.signedPrekeyCert.fill(0);
      t!.oneTime!.opk.fill(0);
      const t2 = await p.take("B");
      assert.deepEqual([...t2!.certs.identityCert], [1, 1]);
      assert.deepEqual([...t2!.certs.signedPrekeyCert], [2, 1]);
      assert.equal(t2!.oneTime!.opk[0], 2);
    },
  );

  withPrekeys(
    "publish() refuses an id that is not a u32 with RangeError and changes nothing",
    async (p) => {
      await p.publish("B", certs(1), opks(1));
      for (const id of [-1, 1.5, 2 ** 32, NaN]) {
        await assert.rejects(
          p.publish("B", certs(2), [...opks(2), { id, opk: bytes(1) }]),
          RangeError,
          `id ${id}`,
        );
      }
      assert.equal(await p.count("B"), 1);
      assert.deepEqual([...(await p.certs("B"))!.identityCert], [1, 1]);
    },
  );

  Deno.test(`${name}: close() may be called twice`, async () => {
    const p = await make();
    await p.close();
    await p.close();
  });
}
