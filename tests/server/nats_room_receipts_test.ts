/**
 * Room receipts and the `online` of `my-rooms` across the nodes of a
 * cluster (PROTOCOL.md 11.4 _Room receipts between nodes_, 11.6 _Receipts_
 * and _Online_; lib/server/nats/room_wake.ts, lib/server/room_messages.ts,
 * lib/server/room_membership.ts) on one real nats-server (tests/_nats.ts),
 * with two {@link ImServer}s each a {@link ClusterNode} and real clients
 * over TCP: a sender on node 1 whose message two members acknowledge
 * through node 2 sees `delivered` grow to 2 of 2; a member online on node
 * 2 is named online to a member asking node 1. The envelope's `receipts`:
 * carried to the other node, batched at 64, and a malformed one refused.
 * Waits are generous and no duration is asserted: the machine may be
 * loaded.
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import {
  type ClientOptions,
  MemoryMailVault,
  MemoryRoomVault,
  type UiEvent,
} from "../../lib/client/mod.ts";
import { MemoryPeerPins } from "../../lib/client/pinning.ts";
import { ClusterKeys, sealEnvelope } from "../../lib/proto/mod.ts";
import {
  ClusterNode,
  type PresenceTiming,
  ROOM_WAKE_RECEIPTS,
  RoomWake,
  type RoomWakeReceipt,
  roomWakeSubject,
} from "../../lib/server/nats/mod.ts";
import { sleep, utf8 } from "../../lib/util/mod.ts";
import {
  isError,
  type Scope,
  type TestClient,
  type TestServer,
  withScope,
} from "../_fixtures.ts";
import { type NatsServer, withNats } from "../_nats.ts";

const KEY = new Uint8Array(32).map((_, i) => i * 5 + 3);
/** The FAST timings of nats_rooms_test.ts: a loaded machine is not taken for a dead node. */
const FAST: Partial<PresenceTiming> = {
  coalesceMs: 20,
  heartbeatMs: 200,
  staleMs: 2_000,
  checkMs: 100,
  putTimeoutMs: 2_000,
};
/** How long a room event may take to show on a loaded machine (never asserted as a duration). */
const GENEROUS_MS = 20_000;

interface TestNode extends TestServer {
  node: ClusterNode;
}

async function clusterNode(
  s: Scope,
  nats: NatsServer,
  name: string,
): Promise<TestNode> {
  const node = await ClusterNode.join({
    servers: [nats.url],
    node: name,
    clusterKey: KEY.slice(),
    cluster: "rr",
    presenceTiming: FAST,
    reconnectTimeWaitMs: 50,
  });
  s.defer(() => node.close()); // after the server (cleanups run in reverse)
  const t = await s.server({ ...node.serverOptions(), mailRate: 10_000 });
  node.attach(t.server);
  return { ...t, node };
}

/** Users whose vaults and pins live across their logins, on whatever node. */
function people(s: Scope) {
  const mail = new Map<string, MemoryMailVault>();
  const rooms = new Map<string, MemoryRoomVault>();
  const pins = new Map<string, MemoryPeerPins>();
  return async (port: number, user: string): Promise<TestClient> => {
    if (!mail.has(user)) mail.set(user, new MemoryMailVault());
    if (!rooms.has(user)) rooms.set(user, new MemoryRoomVault());
    if (!pins.has(user)) pins.set(user, new MemoryPeerPins());
    const over: Partial<ClientOptions> = {
      mailVault: mail.get(user)!,
      roomVault: rooms.get(user)!,
      peerPins: pins.get(user)!,
      waitForReplies: true,
    };
    const c = await s.client(port, user, over);
    await c.client.mailSynced();
    return c;
  };
}

async function type(c: TestClient, line: string): Promise<void> {
  assert.ok(await c.client.handleLine(line), line);
}

/** Poll until `cond` holds. */
async function eventually(
  cond: () => Promise<boolean> | boolean,
  what: string,
): Promise<void> {
  const deadline = Date.now() + GENEROUS_MS;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The room receipts `c` was shown for `room`'s message `seq`: `delivered/members`. */
function receipts(c: TestClient, room: string, seq: string): string[] {
  return c.ui.events.flatMap((e) =>
    e.kind === "receipt" && e.via === "room" && e.peer === room &&
      e.id === seq
      ? [`${e.status} ${e.delivered}/${e.members}`]
      : []
  );
}

/** The `online` of `room` in the last `!rooms` shown to `c`. */
function onlineShown(c: TestClient, room: string): string[] | undefined {
  const last = c.ui.events.findLast((e) => e.kind === "rooms");
  if (last?.kind !== "rooms") return undefined;
  return last.rooms.find((r) => r.name === room)?.online.toSorted();
}

const roomIn = (room: string, text: string) => (e: UiEvent) =>
  e.kind === "message" && e.direction === "in" && e.room === room &&
  e.text === text;

Deno.test("cluster room receipts (11.4): a sender on node 1 whose message two members acknowledge through node 2 sees delivered grow to 2 of 2", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const login = people(s);
      const members = [];
      for (const u of ["B", "C"]) members.push(await login(n2.port, u));
      const a = await login(n1.port, "A");
      await type(a, "!room create team B C");
      for (const m of members) {
        await m.ui.waitFor(
          (e) => e.kind === "room" && e.room === "team",
          0,
          GENEROUS_MS,
        );
      }
      await type(a, "#team hello");
      const out = a.ui.events.findLast((e) =>
        e.kind === "message" && e.direction === "out" && e.room === "team"
      );
      assert.ok(out?.kind === "message" && out.id !== undefined);
      const seq = out.id;
      for (const m of members) {
        await m.ui.waitFor(roomIn("team", "hello"), 0, GENEROUS_MS);
      }
      // Each member's client acknowledges what it was shown, through node 2.
      await eventually(
        () => receipts(a, "team", seq).includes("delivered 2/2"),
        "A's receipt: delivered to 2 of 2",
      );
      const counts = receipts(a, "team", seq);
      assert.equal(counts[0], "stored 0/2", "the answer to room-send");
      const delivered = counts.slice(1).map((r) => Number(r.split(/[ /]/)[1]));
      assert.deepEqual(
        delivered,
        delivered.toSorted((x, y) => x - y),
        "the count only grows",
      );
      for (const c of [a, ...members]) {
        assert.deepEqual(c.ui.since(isError()), [], `${c.user}: no error`);
      }
    });
  });
});

Deno.test("cluster rooms (11.6 Online): the online of my-rooms names a member connected to another node, and no longer once it left", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const login = people(s);
      const b = await login(n2.port, "B");
      const a = await login(n1.port, "A");
      await type(a, "!room create team B");
      await b.ui.waitFor(
        (e) => e.kind === "room" && e.room === "team",
        0,
        GENEROUS_MS,
      );
      // Node 1's presence view shows B (11.3); then node 1 answers my-rooms.
      await eventually(
        () => n1.node.presence.get("B") !== undefined,
        "B in node 1's view",
      );
      await type(a, "!rooms");
      assert.deepEqual(onlineShown(a, "team"), ["A", "B"]);
      await b.client.quit();
      await eventually(
        () => n1.node.presence.get("B") === undefined,
        "B gone from node 1's view",
      );
      await type(a, "!rooms");
      assert.deepEqual(onlineShown(a, "team"), ["A"]);
    });
  });
});

Deno.test("room-wake receipts (11.4): carried to the other node with the room, 64 senders an envelope, not to the sender's own node; a malformed receipts refused cluster-malformed", async () => {
  await withNats(async (nats) => {
    const opts = { servers: nats.url };
    const nc1 = await connect(opts);
    const nc2 = await connect(opts);
    const keys = new ClusterKeys(KEY);
    const w1 = await RoomWake.open({
      nc: nc1,
      cluster: "rr",
      node: "n1",
      keys,
    });
    const w2 = await RoomWake.open({
      nc: nc2,
      cluster: "rr",
      node: "n2",
      keys,
    });
    try {
      const heard1: string[] = [];
      const heard2: { room: string; receipts: RoomWakeReceipt[] }[] = [];
      w1.attach((room) => heard1.push(room));
      w2.attach((room, _users, _made, receipts) =>
        heard2.push({ room, receipts: [...(receipts ?? [])] })
      );
      const subject = roomWakeSubject("rr");
      let envelopes = 0;
      const tap = nc2.subscribe(subject, {
        callback: () => {
          envelopes++;
        },
      });
      await nc2.flush();
      const senders = Array.from({ length: 70 }, (_, i) => `s${i}`);
      w1.tell("team", [], false, senders.map((from) => ({ from, seqs: [3] })));
      w1.tell("team", [], false, [{ from: "s0", seqs: [1, 2] }]);
      await eventually(
        () => heard2.flatMap((h) => h.receipts).length === 70,
        "70 receipts",
      );
      assert.equal(envelopes, Math.ceil(70 / ROOM_WAKE_RECEIPTS));
      assert.ok(heard2.every((h) => h.room === "team"));
      assert.deepEqual(heard2[0]!.receipts[0], { from: "s0", seqs: [1, 2, 3] });
      assert.deepEqual(heard1, [], "a node ignores its own");

      const seal = (seq: number, body: unknown) =>
        sealEnvelope(keys, {
          node: "n9",
          boot: new Uint8Array(8).fill(9),
          seq,
          time: Date.now(),
          subject,
          payload: utf8(JSON.stringify(body)),
        });
      const item = (receipts: unknown) => ({
        t: "room-wake",
        rooms: [{ room: "ops", users: ["B"], receipts }],
      });
      const bad = [
        item({ from: "A", seqs: [1] }), // not a list
        item([{ from: "a b", seqs: [1] }]),
        item([{ from: "A", seqs: [0] }]),
        item([{ from: "A", seqs: [] }]),
        item([{ from: "A", seqs: [1.5] }]),
        item([{
          from: "A",
          seqs: Array.from({ length: 65 }, (_, i) => i + 1),
        }]),
        item(
          Array.from({ length: 65 }, (_, i) => ({ from: `u${i}`, seqs: [1] })),
        ),
      ];
      bad.forEach((b, i) => nc1.publish(subject, seal(i + 1, b)));
      nc1.publish(subject, seal(99, item([{ from: "A", seqs: [7] }])));
      await eventually(() => heard2.length === 3, "the good one");
      assert.deepEqual(heard2[2], {
        room: "ops",
        receipts: [{ from: "A", seqs: [7] }],
      });
      assert.deepEqual(w2.refusals(), { "cluster-malformed": bad.length });
      tap.unsubscribe();
    } finally {
      await w1.close();
      await w2.close();
      await nc1.close();
      await nc2.close();
    }
  });
});
