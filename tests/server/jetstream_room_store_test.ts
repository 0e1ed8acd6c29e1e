/**
 * The cluster's rooms on JetStream (PROTOCOL.md 11.6,
 * lib/server/nats/room_store.ts) on one real nats-server (tests/_nats.ts)
 * for the whole file, each case on a cluster name of its own: the RoomStore
 * contract the memory and SQLite ones pass; two nodes (two connections)
 * racing a change of one room and appending to it at once; a node that
 * dies between a commit and its deletes; and what is sealed at rest: NATS
 * holds no plaintext, and a message moved to another room, or junk, is
 * refused (counted) and never returned.
 * @module
 */

import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { StoreKeys } from "../../lib/proto/mod.ts";
import {
  JetStreamRoomStore,
  type JetStreamRoomStoreOptions,
  roomsStream,
  roomSubject,
} from "../../lib/server/nats/room_store.ts";
import type { RoomEntry, RoomRow } from "../../lib/server/mod.ts";
import { ProtocolError } from "../../lib/util/mod.ts";
import { startNats } from "../_nats.ts";
import { roomStoreContract } from "./room_store_contract.ts";

const KEYS = new StoreKeys(new Uint8Array(32).fill(3));

// One nats-server for the file, stopped by its last test; each case has a
// cluster (a stream) of its own.
const nats = await startNats();
addEventListener("unload", () => void nats.kill());
let clusters = 0;
const freshCluster = () => `rooms${++clusters}`;

function connectTo(): Promise<NatsConnection> {
  return connect({
    servers: nats.url,
    reconnectTimeWait: 50,
    maxReconnectAttempts: -1,
  });
}

/** A store on its own connection; close() closes both. */
async function openStore(
  cluster: string,
  more: Partial<JetStreamRoomStoreOptions> = {},
): Promise<JetStreamRoomStore> {
  const nc = await connectTo();
  try {
    const s = await JetStreamRoomStore.open({
      nc,
      cluster,
      keys: KEYS,
      ...more,
    });
    const close = s.close.bind(s);
    return Object.assign(s, {
      close: async () => {
        await close();
        if (!nc.isClosed()) await nc.close();
      },
    });
  } catch (e) {
    await nc.close();
    throw e;
  }
}

roomStoreContract(
  "JetStreamRoomStore",
  (clock) => openStore(freshCluster(), { now: clock }),
);

const bytes = (...v: number[]) => new Uint8Array(v);

const row = (
  name: string,
  members: string[],
  epoch = 1,
  leaves: Uint8Array[] = [],
): RoomRow => ({
  name,
  roomId: new Uint8Array(16).fill(7),
  creator: "A",
  epoch,
  list: bytes(0x4c, epoch, ...members.map((m) => m.charCodeAt(0))),
  leaves,
  members,
});

const entry = (
  kind: RoomEntry["kind"],
  from: string,
  data: Uint8Array,
): Omit<RoomEntry, "seq"> => ({ kind, from, at: 0, data });

const listChange = (name: string, members: string[], epoch: number) => ({
  row: row(name, members, epoch),
  entry: entry("list", "A", bytes(0x4c, epoch)),
  added: members.filter((m) => m !== "A" && m !== "B"),
  removed: [],
});

/** Two nodes: two stores on two connections, on one fresh cluster. */
async function twoNodes(
  fn: (a: JetStreamRoomStore, b: JetStreamRoomStore) => Promise<void>,
): Promise<void> {
  const cluster = freshCluster();
  const a = await openStore(cluster);
  try {
    const b = await openStore(cluster);
    try {
      await fn(a, b);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}

/** Every message the room's subject holds now: its stream seq and payload. */
async function rawMessages(
  cluster: string,
  name: string,
): Promise<{ seq: number; data: Uint8Array }[]> {
  const nc = await connectTo();
  try {
    const jsm = await jetstreamManager(nc);
    const out: { seq: number; data: Uint8Array }[] = [];
    let seq = 1;
    for (;;) {
      const sm = await jsm.streams.getMessage(
        roomsStream(cluster),
        { seq, next_by_subj: roomSubject(cluster, name) } as unknown as {
          seq: number;
        },
      );
      if (!sm) return out;
      out.push({ seq: sm.seq, data: sm.data });
      seq = sm.seq + 1;
    }
  } finally {
    await nc.close();
  }
}

/** Publish raw bytes on a room's subject, as NATS itself could. */
async function publishRaw(
  cluster: string,
  name: string,
  data: Uint8Array,
): Promise<void> {
  const nc = await connectTo();
  try {
    await jetstream(nc).publish(roomSubject(cluster, name), data);
  } finally {
    await nc.close();
  }
}

const isConflict = (e: unknown) =>
  e instanceof ProtocolError && e.code === "room-conflict";

Deno.test("JetStreamRoomStore, two nodes: a change of one room raced from both, one wins and the other gets room-conflict; the row is the winner's", async () => {
  await twoNodes(async (a, b) => {
    await a.create(row("ops", ["A", "B"]), entry("list", "A", bytes(1)));
    for (let epoch = 2; epoch <= 4; epoch++) {
      const viaA = listChange("ops", ["A", "B", `c${epoch}`], epoch);
      const viaB = listChange("ops", ["A", "B", `d${epoch}`], epoch);
      const got = await Promise.allSettled([a.change(viaA), b.change(viaB)]);
      const won = got.filter((g) => g.status === "fulfilled");
      const lost = got.filter((g) => g.status === "rejected");
      assert.equal(won.length, 1, JSON.stringify(got));
      assert.ok(isConflict(lost[0]!.reason), String(lost[0]!.reason));
      const winner = got[0]!.status === "fulfilled" ? viaA : viaB;
      assert.deepEqual(await b.room("ops"), winner.row);
      assert.deepEqual(await a.room("ops"), winner.row);
      assert.equal((won[0] as PromiseFulfilledResult<number>).value, epoch);
      const added = winner.added[0]!;
      assert.deepEqual(await a.position("ops", added), { upTo: epoch - 1 });
    }
  });
});

Deno.test("JetStreamRoomStore, two nodes: appends from both at once get distinct increasing seqs, every one read back in order, none lost", async () => {
  await twoNodes(async (a, b) => {
    await a.create(row("ops", ["A", "B"]), entry("list", "A", bytes(0)));
    const n = 15;
    const sent = (s: JetStreamRoomStore, tag: number) =>
      Promise.all(
        Array.from(
          { length: n },
          (_, i) => s.append("ops", entry("msg", "A", bytes(tag, i))),
        ),
      );
    // Each node's own appends run in order; the two nodes race.
    const [fromA, fromB] = await Promise.all([sent(a, 1), sent(b, 2)]);
    const seqs = [...fromA, ...fromB].sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: 2 * n }, (_, i) => i + 2));
    for (const got of [fromA, fromB]) {
      assert.ok(got.every((q, i) => i === 0 || q > got[i - 1]!), `${got}`);
    }
    const read = await b.read("ops", "B", { after: 1 });
    assert.deepEqual(read.map((e) => e.seq), seqs);
    for (const e of read) {
      const tag = fromA.includes(e.seq) ? 1 : 2;
      const i = (tag === 1 ? fromA : fromB).indexOf(e.seq);
      assert.deepEqual([...e.data], [tag, i]);
    }
    // An ack on one node and an append on the other race too.
    const [, next] = await Promise.all([
      a.ack("ops", "A", seqs.at(-1)!),
      b.append("ops", entry("msg", "B", bytes(9))),
    ]);
    assert.equal(next, seqs.at(-1)! + 1);
    assert.deepEqual(await b.position("ops", "A"), { upTo: seqs.at(-1) });
    assert.deepEqual((await a.read("ops", "A")).map((e) => e.seq), [next]);
  });
});

Deno.test("JetStreamRoomStore: a node dead between an ack's commit and its deletes leaves nothing a reader sees; the next ack deletes what it left", async () => {
  const cluster = freshCluster();
  let crash = false;
  const a = await openStore(cluster, {
    afterCommit: (m) => {
      if (crash && m === "ack") throw new Error("crashed");
    },
  });
  const b = await openStore(cluster);
  try {
    await a.create(row("ops", ["A", "B"]), entry("list", "A", bytes(1)));
    for (let i = 0; i < 3; i++) {
      await a.append("ops", entry("msg", "A", bytes(2, i)));
    }
    await a.ack("ops", "A", 4);
    const held = (await rawMessages(cluster, "ops")).length;
    crash = true;
    await assert.rejects(a.ack("ops", "B", 2), /crashed/);
    crash = false;
    // Committed: B's position moved, entries 1 and 2 are gone for readers.
    assert.deepEqual(await b.position("ops", "B"), { upTo: 2 });
    assert.deepEqual((await b.read("ops", "B")).map((e) => e.seq), [3, 4]);
    assert.deepEqual(await b.read("ops", "A", { after: 0 }), []);
    assert.equal(await b.bytes("ops"), 4);
    // ... but their messages are still there (and the replaced state).
    assert.equal((await rawMessages(cluster, "ops")).length, held + 1);
    // The next ack, on the other node, deletes them with its own.
    assert.equal(await b.ack("ops", "B", 3), 1);
    assert.equal(await b.bytes("ops"), 2);
    // Entry 4, the state the crash left (a walk stops at the first entry
    // still held: it goes with the ack that frees entry 4), and the state.
    assert.equal((await rawMessages(cluster, "ops")).length, 3);
    assert.equal(
      await b.append("ops", entry("msg", "A", bytes(5))),
      5,
    );
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("JetStreamRoomStore: a node dead between the commit that deletes a room and its purge: the room is gone, and one made under its name starts afresh, nothing of the old one seen", async () => {
  const cluster = freshCluster();
  let crash = false;
  const a = await openStore(cluster, {
    afterCommit: () => {
      if (crash) throw new Error("crashed");
    },
  });
  const b = await openStore(cluster);
  try {
    await a.create(row("solo", ["A"]), entry("list", "A", bytes(1)));
    await a.append("solo", entry("msg", "A", bytes(2, 2)));
    const l = bytes(0xa);
    const gone = await a.change({
      row: row("solo", [], 1, [l]),
      entry: entry("leave", "A", l),
      added: [],
      removed: ["A"],
    });
    crash = true;
    await assert.rejects(a.ack("solo", "A", gone), /crashed/);
    crash = false;
    assert.equal(await b.room("solo"), undefined);
    assert.deepEqual(await b.roomsOf("A"), []);
    assert.equal(await b.bytes("solo"), 0);
    assert.ok((await rawMessages(cluster, "solo")).length >= 4);
    assert.equal(
      await b.create(row("solo", ["A", "B"]), entry("list", "A", bytes(7))),
      1,
    );
    assert.deepEqual(
      (await a.read("solo", "A")).map((e) => [e.seq, e.kind, [...e.data]]),
      [[1, "list", [7]]],
    );
    assert.equal(await a.bytes("solo"), 1);
    assert.equal((await rawMessages(cluster, "solo")).length, 1);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("JetStreamRoomStore: sealed at rest: NATS holds no plaintext; a message moved from another room, or junk, is refused (counted) and never returned", async () => {
  const cluster = freshCluster();
  const logged: string[] = [];
  const s = await openStore(cluster, {
    log: (event, fields) => logged.push(`${event} ${fields?.code}`),
  });
  try {
    const secret = new TextEncoder().encode("the plan is at dawn");
    await s.create(row("ops", ["A", "B"]), entry("list", "A", bytes(1)));
    await s.create(row("dev", ["A", "B"]), entry("list", "A", bytes(2)));
    await s.append("ops", entry("msg", "A", secret));
    await s.append("dev", entry("msg", "A", bytes(3)));
    const ops = await rawMessages(cluster, "ops");
    const has = (hay: Uint8Array, needle: Uint8Array) =>
      hay.some((_, i) => needle.every((x, j) => hay[i + j] === x));
    for (const m of ops) assert.ok(!has(m.data, secret));
    assert.ok(!has(ops[0]!.data, new TextEncoder().encode("ops")));

    // ops's entry moved onto dev, on top: dev's last message does not open.
    const dev = await rawMessages(cluster, "dev");
    await publishRaw(cluster, "dev", ops.at(-1)!.data);
    assert.equal(await s.room("dev"), undefined);
    assert.equal(s.refusals()["store-forged"], 1);
    // NATS puts dev's own last message back on top: the room is back, the
    // moved one is skipped, never returned.
    await publishRaw(cluster, "dev", new Uint8Array(20)); // junk, too
    await publishRaw(cluster, "dev", dev.at(-1)!.data);
    // (a copy of entry 2: returned once)
    assert.deepEqual(
      (await s.read("dev", "B")).map((e) => [e.seq, [...e.data]]),
      [[1, [2]], [2, [3]]],
    );
    const refused = s.refusals();
    assert.ok((refused["store-forged"] ?? 0) >= 2, JSON.stringify(refused));
    assert.ok((refused["store-malformed"] ?? 0) >= 1, JSON.stringify(refused));
    assert.ok(
      logged.includes("cluster-store-refused store-forged"),
      `${logged}`,
    );
    // ops is untouched.
    assert.deepEqual((await s.read("ops", "B", { after: 1 }))[0]?.data, secret);
    // Another cluster key opens nothing.
    const other = await openStore(cluster, {
      keys: new StoreKeys(new Uint8Array(32).fill(4)),
    });
    try {
      assert.equal(await other.room("ops"), undefined);
      assert.equal(other.refusals()["store-forged"], 1);
    } finally {
      await other.close();
    }
  } finally {
    await s.close();
  }
});

Deno.test("nats-server answers a conditional publish sent again with its msg id with the first one's sequence, before it checks the expected sequence: a retried commit is not made twice", async () => {
  const cluster = freshCluster();
  const s = await openStore(cluster); // makes the stream
  const nc = await connectTo();
  try {
    const js = jetstream(nc);
    const subject = roomSubject(cluster, "ops");
    const opts = { msgID: "one", expect: { lastSubjectSequence: 0 } };
    const first = await js.publish(subject, bytes(1), opts);
    await js.publish(subject, bytes(2));
    const again = await js.publish(subject, bytes(1), opts);
    assert.equal(again.seq, first.seq);
    assert.ok(again.duplicate);
  } finally {
    await nc.close();
    await s.close();
  }
});

Deno.test({
  name: "JetStreamRoomStore: the file's nats-server stops",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () => nats.stop(),
});
