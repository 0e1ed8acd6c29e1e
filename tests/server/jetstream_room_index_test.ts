/**
 * The index of the cluster's rooms (PROTOCOL.md 11.6 _The index_,
 * lib/server/nats/room_index.ts) on one real nats-server (tests/_nats.ts):
 * `roomsOf` and `memberships` read the user's index, not every room (a key
 * dropped, as NATS can, hides its rooms); the index names a room before its
 * commit (a node dead right after the commit leaves it listed); a member
 * added is indexed; the values hold no room name in plaintext; a stream
 * from before the index gets it built at open.
 * @module
 */

import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { StoreKeys } from "../../lib/proto/mod.ts";
import {
  INDEX_BUILT_KEY,
  roomIndexBucket,
} from "../../lib/server/nats/room_index.ts";
import {
  JetStreamRoomStore,
  type JetStreamRoomStoreOptions,
} from "../../lib/server/nats/room_store.ts";
import type { RoomEntry, RoomRow } from "../../lib/server/mod.ts";
import { type NatsServer, withNats } from "../_nats.ts";

const KEYS = new StoreKeys(new Uint8Array(32).fill(5));

const row = (name: string, members: string[], epoch = 1): RoomRow => ({
  name,
  roomId: new Uint8Array(16).fill(7),
  creator: members[0]!,
  epoch,
  list: new Uint8Array([0x4c, epoch]),
  leaves: [],
  members,
});

const list = (from: string): Omit<RoomEntry, "seq"> => ({
  kind: "list",
  from,
  at: 0,
  data: new Uint8Array([1]),
});

/** Stores on connections of their own, closed at the end. */
async function withStores(
  nats: NatsServer,
  fn: (
    open: (more?: Partial<JetStreamRoomStoreOptions>) => Promise<
      JetStreamRoomStore
    >,
    nc: NatsConnection,
  ) => Promise<void>,
): Promise<void> {
  const conns: NatsConnection[] = [];
  const stores: JetStreamRoomStore[] = [];
  const nc = await connect({ servers: nats.url });
  conns.push(nc);
  try {
    await fn(async (more = {}) => {
      const c = await connect({ servers: nats.url });
      conns.push(c);
      const s = await JetStreamRoomStore.open({
        nc: c,
        cluster: "ix",
        keys: KEYS,
        ...more,
      });
      stores.push(s);
      return s;
    }, nc);
  } finally {
    for (const s of stores) await s.close();
    for (const c of conns) await c.close();
  }
}

Deno.test("JetStreamRoomStore index (11.6): roomsOf and memberships read the user's index (a key NATS dropped hides its rooms); a room is indexed before its commit; an added member is indexed; no room name in plaintext", async () => {
  await withNats(async (nats) => {
    await withStores(nats, async (open, nc) => {
      const s = await open();
      await s.create(row("alpha", ["A", "B"]), list("A"));
      await s.create(row("beta", ["A", "C"]), list("A"));
      assert.deepEqual(await s.roomsOf("A"), ["alpha", "beta"]);
      assert.equal(await s.memberships("A"), 2);
      assert.deepEqual(await s.roomsOf("C"), ["beta"]);

      const kv = await new Kvm(nc).open(roomIndexBucket("ix"));
      const value = (await kv.get("A"))!.value;
      const text = new TextDecoder("latin1").decode(value);
      assert.ok(!text.includes("alpha") && !text.includes("beta"), text);
      assert.ok((await kv.get(INDEX_BUILT_KEY)) !== null);

      // NATS drops A's key: A's rooms are no longer listed (a full read of
      // the rooms would list them), though they are there.
      await kv.delete("A");
      assert.deepEqual(await s.roomsOf("A"), []);
      assert.equal(await s.memberships("A"), 0);
      assert.equal((await s.room("alpha"))?.name, "alpha");
      assert.deepEqual(await s.roomsOf("B"), ["alpha"]);

      // A node dead right after its commit: the room is indexed already.
      const dying = await open({
        afterCommit: (m) => {
          if (m === "create") throw new Error("dead");
        },
      });
      await assert.rejects(
        dying.create(row("gamma", ["D", "B"]), list("D")),
        /dead/,
      );
      assert.deepEqual(await s.roomsOf("D"), ["gamma"]);
      assert.deepEqual(await s.roomsOf("B"), ["alpha", "gamma"]);

      // A member added by a change is indexed; A, added again, is indexed
      // anew (beta's name went with the key NATS dropped).
      await s.change({
        row: row("beta", ["A", "C", "E"], 2),
        entry: list("A"),
        added: ["E"],
        removed: [],
      });
      assert.deepEqual(await s.roomsOf("E"), ["beta"]);
      await s.change({
        row: row("alpha", ["A", "B"], 2),
        entry: list("A"),
        added: ["A"],
        removed: [],
      });
      assert.deepEqual(await s.roomsOf("A"), ["alpha"]);
    });
  });
});

Deno.test("JetStreamRoomStore index (11.6): a stream from before the index gets it built from every room's positions when a store opens it; then the index is what is read", async () => {
  await withNats(async (nats) => {
    await withStores(nats, async (open, nc) => {
      const s = await open();
      await s.create(row("alpha", ["A", "B"]), list("A"));
      await s.create(row("beta", ["A", "C"]), list("A"));
      // The rooms of a cluster from before the index: no bucket.
      await (await new Kvm(nc).open(roomIndexBucket("ix"))).destroy();
      const t = await open();
      assert.deepEqual(await t.roomsOf("A"), ["alpha", "beta"]);
      assert.deepEqual(await t.roomsOf("C"), ["beta"]);
      assert.equal(await t.memberships("B"), 1);
      const kv = await new Kvm(nc).open(roomIndexBucket("ix"));
      assert.ok((await kv.get(INDEX_BUILT_KEY)) !== null);
      await kv.delete("C");
      assert.deepEqual(await t.roomsOf("C"), []);
    });
  });
});
