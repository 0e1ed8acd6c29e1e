/**
 * Rooms across the nodes of a cluster (PROTOCOL.md 10.4, 11.4 _Room
 * wake-ups_, 11.6 _Rooms_; lib/server/nats/room_store.ts, room_wake.ts,
 * node.ts) on one real nats-server (tests/_nats.ts), with two
 * {@link ImServer}s each a {@link ClusterNode} and real clients over TCP: a
 * room made through node 1 is pushed to a member streaming on node 2; its
 * messages written through node 2 reach a member on node 1 at once and a
 * member offline later, in order; its creator changes it through node 2;
 * two members leaving at once through two nodes both leave (the change
 * planned on the row before the other's commit is planned again); a key
 * mail sent again through the other node is not stored again; a node that
 * dies after it acknowledged a room message loses nothing. The room
 * wake-up's envelope: junk, another key, another subject and a replay
 * wake nobody; every stream is woken when NATS is back. Waits are generous
 * and no duration is asserted: the machine may be loaded.
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
import {
  ClusterKeys,
  makeRoomList,
  sealEnvelope,
  type ServerToClient,
} from "../../lib/proto/mod.ts";
import {
  roomKeyCiphertextBytes,
  type RoomStore,
} from "../../lib/server/mod.ts";
import {
  ClusterNode,
  type PresenceTiming,
  ROOM_WAKE_ROOMS,
  RoomWake,
  roomWakeSubject,
} from "../../lib/server/nats/mod.ts";
import { ByteWriter, randomBytes, sleep, utf8 } from "../../lib/util/mod.ts";
import {
  type BareLogin,
  isError,
  type Scope,
  type TestClient,
  type TestServer,
  withScope,
} from "../_fixtures.ts";
import { identities, userIdentity } from "../_helpers.ts";
import { type NatsServer, withNats } from "../_nats.ts";

const KEY = new Uint8Array(32).map((_, i) => i * 7 + 1);
/** The FAST timings of nats_delivery_test.ts: a loaded machine is not taken for a dead node. */
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
  rooms?: (node: ClusterNode) => RoomStore,
): Promise<TestNode> {
  const node = await ClusterNode.join({
    servers: [nats.url],
    node: name,
    clusterKey: KEY.slice(),
    cluster: "r",
    presenceTiming: FAST,
    reconnectTimeWaitMs: 50,
  });
  s.defer(() => node.close()); // after the server (cleanups run in reverse)
  const t = await s.server({
    ...node.serverOptions(),
    ...(rooms && { rooms: rooms(node) }),
    mailRate: 10_000,
  });
  node.attach(t.server);
  return { ...t, node };
}

/**
 * Users whose mail vault, room vault and pins live across their logins,
 * on whatever node, as their key directory would.
 */
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
      waitForReplies: true, // a line returns once the server answered it
    };
    const c = await s.client(port, user, over);
    await c.client.mailSynced();
    return c;
  };
}

/** A room message shown to its reader. */
const roomIn = (room: string, text?: string) => (e: UiEvent) =>
  e.kind === "message" && e.direction === "in" && e.room === room &&
  (text === undefined || e.text === text);

/** A room's membership change. */
const roomChange = (room: string, change?: string, who?: string) =>
(
  e: UiEvent,
) =>
  e.kind === "room" && e.room === room &&
  (change === undefined || e.change === change) &&
  (who === undefined || e.who.includes(who));

/** What a member was shown of the room, in order. */
function shown(c: TestClient, room: string): string[] {
  return c.ui.events.flatMap((e) =>
    e.kind === "message" && e.direction === "in" && e.room === room
      ? [e.text]
      : []
  );
}

/**
 * No client was shown an error; when one was, the message names the nodes'
 * log lines of failures (a store's error is logged, the client told only
 * that its stream stopped).
 */
function noErrors(nodes: TestNode[], ...cs: TestClient[]): void {
  for (const c of cs) {
    const errors = c.ui.since(isError());
    if (errors.length === 0) continue;
    const failed = nodes.flatMap((n, i) =>
      n.log.filter((l) => /fail|refused|conflict|error/.test(l.event))
        .map((l) => ({ node: i + 1, ...l }))
    );
    assert.deepEqual(
      errors,
      [],
      `${c.user}: no error; the nodes logged ${JSON.stringify(failed)}`,
    );
  }
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

Deno.test("cluster rooms: made through node 1, pushed to B on node 2; B's messages through node 2 reach A on node 1 at once and C, offline, later in order; the creator removes and adds through node 2", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const login = people(s);
      // C published its keys once, through node 2, and is offline.
      await (await login(n2.port, "C")).client.quit();
      const b = await login(n2.port, "B");
      const a = await login(n1.port, "A");

      await type(a, "!room create team B C");
      // B streams on node 2: the room made on node 1 is pushed to it.
      await b.ui.waitFor(roomChange("team", "created"), 0, GENEROUS_MS);
      assert.deepEqual(b.client.roomNames, ["team"]);
      assert.deepEqual(await n2.node.rooms.roomsOf("B"), ["team"]);

      await type(b, "#team hello from B");
      await a.ui.waitFor(roomIn("team", "hello from B"), 0, GENEROUS_MS);
      await type(b, "#team second");
      await a.ui.waitFor(roomIn("team", "second"), 0, GENEROUS_MS);
      await type(a, "#team from A");
      await b.ui.waitFor(roomIn("team", "from A"), 0, GENEROUS_MS);

      // C, back on node 1, gets the room and all three, in order, once.
      const c = await login(n1.port, "C");
      await c.ui.waitFor(roomIn("team", "from A"), 0, GENEROUS_MS);
      assert.deepEqual(shown(c, "team"), ["hello from B", "second", "from A"]);
      assert.deepEqual(shown(a, "team"), ["hello from B", "second"]);

      // A moves to node 2 and changes the room made on node 1 there.
      await a.client.quit();
      const a2 = await login(n2.port, "A");
      await type(a2, "!room remove team B");
      await b.ui.waitFor(roomChange("team", "removed"), 0, GENEROUS_MS);
      await c.ui.waitFor(roomChange("team", "removed", "B"), 0, GENEROUS_MS);
      const row = await n1.node.rooms.room("team");
      assert.deepEqual(row?.members, ["A", "C"]);
      const mark = b.ui.mark;
      await type(a2, "!room add team B");
      await b.ui.waitFor(roomChange("team"), mark, GENEROUS_MS);
      await c.ui.waitFor(roomChange("team", "added", "B"), 0, GENEROUS_MS);
      await type(c, "#team welcome back");
      await b.ui.waitFor(roomIn("team", "welcome back"), 0, GENEROUS_MS);
      noErrors([n1, n2], a2, b, c);
      assert.deepEqual(n1.node.rooms.refusals(), {});
      assert.deepEqual(n2.node.rooms.refusals(), {});
    });
  });
});

Deno.test("cluster rooms: two members leaving one room at once through two nodes both leave: the leave planned on the row before the other's commit is refused by the store and planned again", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      // Node 1's store holds its next change once armed, until released:
      // so B's leave is planned on the row before C's leave and committed
      // after it, whatever the machine's timing.
      const hold = {
        armed: false,
        held: Promise.withResolvers<void>(),
        release: Promise.withResolvers<void>(),
      };
      const n1 = await clusterNode(
        s,
        nats,
        "n1",
        (node) =>
          new Proxy(node.rooms, {
            get(target, prop) {
              const v = Reflect.get(target, prop, target);
              if (prop === "change" && typeof v === "function") {
                return async (...args: unknown[]) => {
                  if (hold.armed) {
                    hold.armed = false;
                    hold.held.resolve();
                    await hold.release.promise;
                  }
                  return await v.apply(target, args);
                };
              }
              return typeof v === "function" ? v.bind(target) : v;
            },
          }) as RoomStore,
      );
      const n2 = await clusterNode(s, nats, "n2");
      const login = people(s);
      const a = await login(n1.port, "A");
      const b = await login(n1.port, "B");
      const c = await login(n2.port, "C");
      await type(a, "!room create team B C");
      for (const m of [b, c]) {
        await m.ui.waitFor(roomChange("team", "created"), 0, GENEROUS_MS);
      }
      // The creator is away: its client would sign a list after each leave.
      await a.client.quit();

      hold.armed = true;
      const bLeaving = b.client.handleLine("!room leave team");
      await hold.held.promise; // B's leave, planned, waits to commit
      await type(c, "!room leave team"); // C's, through node 2, lands first
      assert.equal((await n2.node.rooms.room("team"))?.leaves.length, 1);
      hold.release.resolve();
      assert.ok(await bLeaving);
      await eventually(
        async () => (await n2.node.rooms.room("team"))?.leaves.length === 2,
        "both leaves stored",
      );
      const row = await n1.node.rooms.room("team");
      assert.deepEqual(row?.members, ["A"]);
      assert.equal(row?.epoch, 1);
      noErrors([n1, n2], b, c);
      assert.deepEqual(b.client.roomNames, []);
      assert.deepEqual(c.client.roomNames, []);
    });
  });
});

/** A `MAIL` with the layout of PROTOCOL.md 9.3, all the server checks of it. */
function mailBytes(sender: string, recipient: string, ciphertext: number) {
  return new ByteWriter().u8(1).bytes8(utf8(sender)).bytes8(utf8(recipient))
    .bytes(randomBytes(16)).u64(BigInt(Date.now())).u32(1).u32(0)
    .bytes(randomBytes(32)).bytes(randomBytes(32))
    .bytes(randomBytes(ciphertext)).bytes(randomBytes(32)).finish();
}

/** Send `m` with a fresh `req` on a bare login; its answer. */
async function request(
  l: BareLogin,
  m: Record<string, unknown>,
): Promise<ServerToClient> {
  const req = Math.floor(Math.random() * 1e9) + 1;
  const mark = l.tap.mark;
  await l.channel.send({ ...m, req } as never);
  const e = await l.tap.waitFor(
    (e) => e.kind === "message" && (e.msg as { req?: number }).req === req,
    mark,
    GENEROUS_MS,
  );
  assert.ok(e.kind === "message");
  return e.msg as unknown as ServerToClient;
}

Deno.test("cluster rooms: a key mail sent again through the other node is not stored again (the pairs are in the room's state); node 1 dies after acknowledging a room message and nothing is lost", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const login = people(s);
      // A and B published their mailbox keys (through either node).
      await (await login(n1.port, "A")).client.quit();
      await (await login(n2.port, "B")).client.quit();
      const ids = await identities();
      const list = await makeRoomList({
        roomId: randomBytes(16),
        name: "ops",
        creator: userIdentity(ids, "A"),
        creatorName: "A",
        epoch: 1,
        created: Date.now(),
        members: ["B"],
      });
      const size = roomKeyCiphertextBytes("ops");
      const keys = () => ({
        t: "room-keys",
        room: "ops",
        epoch: 1,
        mails: [mailBytes("A", "B", size).toBase64()],
      });
      const a1 = await s.login(n1.port, "A");
      const made = await request(a1, {
        t: "room-create",
        list: list.bytes.toBase64(),
      });
      assert.equal(made.t, "room", JSON.stringify(made));
      const first = await request(a1, keys());
      assert.ok(first.t === "room-keyed", JSON.stringify(first));
      assert.equal(first.count, 1);
      a1.channel.abort("done");
      // A's hand-out again (after a crash, say), through node 2.
      const a2 = await s.login(n2.port, "A");
      const again = await request(a2, keys());
      assert.ok(again.t === "room-keyed", JSON.stringify(again));
      assert.equal(again.count, 0, "not stored again");
      assert.equal((await n1.node.store.read("B")).length, 1, "one key mail");
      assert.deepEqual(await n1.node.rooms.keyed("ops", 1, "A"), ["B"]);
      a2.channel.abort("done");

      // A real room: A on node 1 writes; node 1 answers and dies at once.
      const a = await login(n1.port, "A");
      const b = await login(n2.port, "B");
      await type(a, "!room create team B");
      await b.ui.waitFor(roomChange("team", "created"), 0, GENEROUS_MS);
      await type(a, "#team one");
      await b.ui.waitFor(roomIn("team", "one"), 0, GENEROUS_MS);
      await b.client.quit();
      await type(a, "#team two"); // answered: stored
      await n1.node.crash();
      await n1.server.close();
      const b2 = await login(n2.port, "B");
      await b2.ui.waitFor(roomIn("team", "two"), 0, GENEROUS_MS);
      assert.deepEqual(shown(b2, "team"), ["two"]);
      noErrors([n1, n2], b2);
      assert.deepEqual(n2.node.rooms.refusals(), {});
    });
  });
});

Deno.test("room-wake (11.4): the rooms of one turn reach the other node, each once with its users and `made`, not the sender's own; junk, another key, another subject and a replay wake nobody and are counted; a node whose NATS link comes back wakes every stream", async () => {
  await withNats(async (nats) => {
    const opts = {
      servers: nats.url,
      reconnectTimeWait: 50,
      maxReconnectAttempts: -1,
    };
    const nc1 = await connect(opts);
    const nc2 = await connect(opts);
    const keys = new ClusterKeys(KEY);
    const w1 = await RoomWake.open({ nc: nc1, cluster: "r", node: "n1", keys });
    const w2 = await RoomWake.open({ nc: nc2, cluster: "r", node: "n2", keys });
    try {
      const woken1: string[] = [];
      const woken2: { room: string; users: string; made: boolean }[] = [];
      let everyone = 0;
      w1.attach((room) => woken1.push(room));
      w2.attach(
        (room, users, made) =>
          woken2.push({ room, users: users.join(","), made }),
        () => everyone++,
      );
      const subject = roomWakeSubject("r");
      const envelopes: Uint8Array[] = [];
      const tap = nc2.subscribe(subject, {
        callback: (_e, m) => {
          envelopes.push(m.data.slice());
        },
      });
      await nc2.flush(); // the tap is in place before the first wake-up
      const rooms = Array.from({ length: 70 }, (_, i) => `r${i}`);
      for (const r of rooms) w1.tell(r, ["A"]);
      w1.tell("r1", ["B", "A"]);
      w1.tell("r2", ["C"], true);
      const deadline = Date.now() + GENEROUS_MS;
      while (woken2.length < 70 && Date.now() < deadline) await sleep(10);
      assert.equal(woken2.length, 70, "each room once");
      assert.deepEqual(woken2.slice(0, 3), [
        { room: "r0", users: "A", made: false },
        { room: "r1", users: "A,B", made: false },
        { room: "r2", users: "A,C", made: true },
      ]);
      assert.equal(envelopes.length, Math.ceil(70 / ROOM_WAKE_ROOMS));
      assert.deepEqual(woken1, [], "a node ignores its own");

      const seal = (k: ClusterKeys, on: string, seq: number, body: unknown) =>
        sealEnvelope(k, {
          node: "n9",
          boot: new Uint8Array(8).fill(9),
          seq,
          time: Date.now(),
          subject: on,
          payload: utf8(JSON.stringify(body)),
        });
      const wake = { t: "room-wake", rooms: [{ room: "ops", users: ["B"] }] };
      nc1.publish(subject, new Uint8Array([1, 2, 3]));
      nc1.publish(
        subject,
        seal(new ClusterKeys(new Uint8Array(32)), subject, 1, wake),
      );
      nc1.publish(subject, seal(keys, "im.r.mail-wake", 2, wake));
      nc1.publish(
        subject,
        seal(keys, subject, 3, { t: "room-wake", rooms: [{ room: "a b" }] }),
      );
      nc1.publish(subject, envelopes[0]!); // n1's, replayed
      const good = seal(keys, subject, 4, wake);
      nc1.publish(subject, good);
      nc1.publish(subject, good); // replayed
      await nc1.flush();
      while (woken2.length < 71 && Date.now() < deadline) await sleep(10);
      await nc2.flush();
      await sleep(50);
      assert.deepEqual(woken2.slice(70), [
        { room: "ops", users: "B", made: false },
      ], "only the good one, once");
      assert.deepEqual(w2.refusals(), {
        "cluster-malformed": 2,
        "cluster-forged": 2,
        "cluster-replayed": 2,
      });
      tap.unsubscribe();

      // NATS restarts: a wake-up may have been lost meanwhile.
      assert.equal(everyone, 0);
      await nats.kill();
      await nats.restart();
      const back = Date.now() + GENEROUS_MS;
      while (everyone === 0 && Date.now() < back) await sleep(20);
      assert.equal(everyone, 1, "every stream woken once the link is back");
    } finally {
      await w1.close();
      await w2.close();
      await nc1.close();
      await nc2.close();
    }
  });
});
