/**
 * The server's rooms (PROTOCOL.md section 10.4), end to end on the real
 * {@link ImServer} over a {@link MemoryNetwork}: bare logged-in links send
 * the raw messages a client would (`room-create`, `room-update`,
 * `room-leave`, `member-keys`, `room-keys`, `room-send`, `my-rooms`,
 * `room-stream`, `room-ack`, and `mailbox`, `mail-ack` for the key gate) and
 * the tests read what the server answers and pushes, and what its stores
 * hold. The room messages and key mails are bytes of the right layout: the
 * server checks no more than that.
 * @module
 */

import assert from "node:assert/strict";
import { loginToServer } from "../../lib/client/mod.ts";
import {
  type ClientToServer,
  encodeMessage,
  makeIdentityCert,
  makePrekeyCert,
  makeRoomLeave,
  makeRoomList,
  type RoomList,
  type ServerToClient,
} from "../../lib/proto/mod.ts";
import type { PrivateIdentity } from "../../lib/crypto/mod.ts";
import {
  DAY_MS,
  ImServer,
  MemoryPrekeys,
  MemoryRoomStore,
  MemoryStore,
  RequestLimits,
  roomKeyCiphertextBytes,
  Rooms,
  type RoomStore,
  type ServerOptions,
} from "../../lib/server/mod.ts";
import { ByteWriter, randomBytes, utf8 } from "../../lib/util/mod.ts";
import { MemoryNetwork } from "../../lib/wire/mod.ts";
import { RECORD_MIN_BYTES } from "../../lib/record/mod.ts";
import {
  clientDirectory,
  type Identities,
  identities,
  userIdentity,
} from "../_helpers.ts";
import { CaptureUi, EventLog, type LogLine, WAIT_MS } from "../_fixtures.ts";

/** RFC 5737 TEST-NET-1: no TCP listener could be here. */
const HOST = "192.0.2.1";

/** A, B and C have keys of their own; D and E share the stranger's. */
type User = "A" | "B" | "C" | "D" | "E";
type Answer<T extends ServerToClient["t"]> = Extract<ServerToClient, { t: T }>;

/** A bare login: what the server sent it, and requests with their answers. */
interface Link {
  user: User;
  got: EventLog<ServerToClient>;
  /** Send without waiting for anything. */
  send(m: ClientToServer): Promise<void>;
  /** Send with a fresh `req` and wait for the answer that names it. */
  request(m: ClientToServer): Promise<ServerToClient>;
  /** Messages of type `t` received so far. */
  all<T extends ServerToClient["t"]>(t: T): Answer<T>[];
  /** Wait for the `n`th message of type `t` (1-based). */
  nth<T extends ServerToClient["t"]>(t: T, n: number): Promise<Answer<T>>;
  /** A `my-rooms` round trip: everything the server sent before its answer has arrived. */
  roundTrip(): Promise<Answer<"rooms">>;
  close(): Promise<void>;
}

interface World {
  ids: Identities;
  server: ImServer;
  rooms: RoomStore;
  mail: MemoryStore;
  prekeys: MemoryPrekeys;
  log: LogLine[];
  login(user: User): Promise<Link>;
  close(): Promise<void>;
}

async function world(over: Partial<ServerOptions> = {}): Promise<World> {
  const ids = await identities();
  const net = new MemoryNetwork();
  const mail = new MemoryStore();
  const prekeys = new MemoryPrekeys();
  const rooms = over.rooms ?? new MemoryRoomStore();
  const log: LogLine[] = [];
  const server = await ImServer.start({
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients: clientDirectory(ids, { D: ids.stranger, E: ids.stranger }),
    heartbeatMs: 0,
    log: (event, fields = {}) => log.push({ event, fields }),
    ...over,
    store: mail,
    prekeys,
    rooms,
  });
  const links: Link[] = [];
  let req = 0;
  const login = async (user: User): Promise<Link> => {
    const { channel } = await loginToServer({
      user,
      identity: userIdentity(ids, user),
      pinnedServer: ids.serverPinned,
      serverHost: HOST,
      serverPort: server.port,
      ui: new CaptureUi(),
      network: net,
      heartbeatMs: 0,
      reconnect: false,
    });
    const got = new EventLog<ServerToClient>(
      "server message",
      (m) => JSON.stringify(m).slice(0, 120),
    );
    const waiting = new Map<number, (m: ServerToClient) => void>();
    const reader = (async () => {
      for await (const ev of channel.events()) {
        if (ev.kind !== "message") continue;
        got.push(ev.msg);
        if (ev.msg.req !== undefined) waiting.get(ev.msg.req)?.(ev.msg);
      }
    })();
    let closed = false;
    const link: Link = {
      user,
      got,
      send: (m) => channel.send(m),
      async request(m) {
        const n = ++req;
        const answer = new Promise<ServerToClient>((resolve, reject) => {
          const timer = setTimeout(() => {
            waiting.delete(n);
            reject(new Error(`no answer to ${JSON.stringify(m).slice(0, 80)}`));
          }, WAIT_MS);
          waiting.set(n, (a) => {
            clearTimeout(timer);
            waiting.delete(n);
            resolve(a);
          });
        });
        await channel.send({ ...m, req: n });
        return await answer;
      },
      all: <T extends ServerToClient["t"]>(t: T) =>
        got.events.filter((m) => m.t === t) as Answer<T>[],
      async nth<T extends ServerToClient["t"]>(t: T, n: number) {
        for (;;) {
          const of = link.all(t);
          if (of.length >= n) return of[n - 1]!;
          await got.waitFor((m) => m.t === t, got.mark);
        }
      },
      async roundTrip() {
        const a = await link.request({ t: "my-rooms" });
        assert.equal(a.t, "rooms", JSON.stringify(a));
        return a as Answer<"rooms">;
      },
      async close() {
        if (closed) return;
        closed = true;
        channel.abort("done");
        await reader;
      },
    };
    links.push(link);
    return link;
  };
  return {
    ids,
    server,
    rooms,
    mail,
    prekeys,
    log,
    login,
    async close() {
      for (const l of links) await l.close();
      await server.close();
      await mail.close();
      await prekeys.close();
      await rooms.close();
    },
  };
}

/** Run `body` in a fresh world, closed afterwards. */
async function inWorld(
  body: (w: World) => Promise<void>,
  over: Partial<ServerOptions> = {},
): Promise<void> {
  const w = await world(over);
  try {
    await body(w);
  } finally {
    await w.close();
  }
}

const b64 = (b: Uint8Array) => b.toBase64();

/** Give `users` mailbox keys on the server, as a `publish` would (the seam checks nothing). */
async function withMailboxes(w: World, ...users: User[]): Promise<void> {
  for (const u of users) {
    const id = userIdentity(w.ids, u);
    const ik = randomBytes(32);
    const now = Date.now();
    await w.prekeys.publish(u, {
      identityCert: await makeIdentityCert(id, u, ik, now),
      signedPrekeyCert: await makePrekeyCert(
        id,
        u,
        ik,
        1,
        randomBytes(32),
        now,
        now + 30 * DAY_MS,
      ),
    }, []);
  }
}

/** A list of `name` by `creator`, signed by its key (or `signer`'s). */
function listOf(
  w: World,
  o: {
    name: string;
    creator: User;
    members: User[];
    epoch?: number;
    roomId?: Uint8Array;
    signer?: PrivateIdentity;
  },
): Promise<RoomList> {
  return makeRoomList({
    roomId: o.roomId ?? new Uint8Array(16).fill(o.name.length),
    name: o.name,
    creator: o.signer ?? userIdentity(w.ids, o.creator),
    creatorName: o.creator,
    epoch: o.epoch ?? 1,
    created: Date.now(),
    members: o.members,
  });
}

/**
 * A `ROOM_MSG` with the layout of PROTOCOL.md 10.3, which is all the server
 * checks: a ciphertext of one bucket, random tag and signature. Its first
 * ciphertext bytes carry `n`.
 */
function roomMsg(
  list: RoomList,
  sender: User,
  n = 0,
  o: { epoch?: number; bucket?: number; roomId?: Uint8Array } = {},
): Uint8Array {
  const ciphertext = randomBytes(o.bucket ?? 64);
  new DataView(ciphertext.buffer).setUint32(0, n);
  return new ByteWriter().u8(1).bytes(o.roomId ?? list.roomId)
    .bytes8(utf8(list.name)).bytes8(utf8(sender)).u32(o.epoch ?? list.epoch)
    .u32(n).u64(BigInt(Date.now())).bytes(ciphertext).bytes(randomBytes(32))
    .bytes(randomBytes(64)).finish();
}

/** The number a {@link roomMsg} carries, read back from its `room-msg` push. */
function numberOf(push: Answer<"room-msg">): number {
  const msg = Uint8Array.fromBase64(push.msg);
  const at = 1 + 16 + 1 + push.room.length + 1 + push.from.length + 4 + 4 + 8;
  return new DataView(msg.buffer).getUint32(at);
}

/**
 * A `MAIL` with the layout of PROTOCOL.md 9.3 (what the server checks of
 * it); by default a key mail's: 128 bytes of ciphertext, the padded size of
 * a `ROOM_KEY` of any room (10.4).
 */
function mailBytes(
  sender: string,
  recipient: string,
  ciphertext = 128,
): Uint8Array {
  return new ByteWriter().u8(1).bytes8(utf8(sender)).bytes8(utf8(recipient))
    .bytes(randomBytes(16)).u64(BigInt(Date.now())).u32(1).u32(0)
    .bytes(randomBytes(32)).bytes(randomBytes(32))
    .bytes(randomBytes(ciphertext)).bytes(randomBytes(32)).finish();
}

/** Poll an async condition until it holds (a stream settles on its own time). */
async function eventually(
  cond: () => Promise<boolean>,
  what: string,
): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function assertError(a: ServerToClient, code: string): Answer<"error"> {
  assert.equal(a.t, "error", JSON.stringify(a));
  assert.equal((a as Answer<"error">).code, code, JSON.stringify(a));
  return a as Answer<"error">;
}

/** Create the room through `l`; asserts the `room` answer. */
async function create(l: Link, list: RoomList): Promise<Answer<"room">> {
  const a = await l.request({ t: "room-create", list: b64(list.bytes) });
  assert.equal(a.t, "room", JSON.stringify(a));
  return a as Answer<"room">;
}

/** Send a room message through `l`; asserts its `room-receipt`. */
async function say(
  l: Link,
  list: RoomList,
  n: number,
): Promise<Answer<"room-receipt">> {
  const a = await l.request({
    t: "room-send",
    room: list.name,
    msg: b64(roomMsg(list, l.user, n)),
  });
  assert.equal(a.t, "room-receipt", JSON.stringify(a));
  return a as Answer<"room-receipt">;
}

/** Start `l`'s room stream and wait for its `room-synced`. */
async function stream(l: Link, window = 16): Promise<Answer<"room-synced">> {
  await l.send({ t: "room-stream", window });
  return await l.nth("room-synced", 1);
}

/** A, B and C logged in with mailboxes, A's room `team` of the three made, B and C streaming. */
async function team(w: World): Promise<{
  a: Link;
  b: Link;
  c: Link;
  list: RoomList;
}> {
  await withMailboxes(w, "A", "B", "C");
  const [a, b, c] = await Promise.all([
    w.login("A"),
    w.login("B"),
    w.login("C"),
  ]);
  const list = await listOf(w, {
    name: "team",
    creator: "A",
    members: ["B", "C"],
  });
  await create(a!, list);
  await Promise.all([stream(a!), stream(b!), stream(c!)]);
  return { a: a!, b: b!, c: c!, list };
}

// ---------------------------------------------------------------- create

Deno.test("room-create: the creator is answered `room`, a member streaming gets the list pushed (its room started streaming when made), the creator's own list is not pushed back, my-rooms lists it", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B", "C");
    const a = await w.login("A");
    const b = await w.login("B");
    assert.deepEqual(await stream(b), { t: "room-synced", count: 0 });
    assert.deepEqual(await stream(a), { t: "room-synced", count: 0 });
    const list = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["C", "B"],
    });
    const answer = await create(a, list);
    assert.deepEqual({ ...answer, req: undefined }, {
      t: "room",
      room: "team",
      seq: 1,
      list: b64(list.bytes),
      req: undefined,
    });
    const pushed = await b.nth("room", 1);
    assert.deepEqual(pushed, {
      t: "room",
      room: "team",
      seq: 1,
      list: b64(list.bytes),
    });
    const mine = await a.roundTrip();
    assert.equal(a.all("room").length, 1, "only the answer, not a push");
    assert.deepEqual(mine.rooms, [{
      name: "team",
      list: b64(list.bytes),
      leaves: [],
      online: ["A", "B"],
    }]);
    const row = await w.rooms.room("team");
    assert.deepEqual(row?.members, ["A", "B", "C"]);
    // C, offline at the time, streams it at its login.
    const c = await w.login("C");
    assert.deepEqual(await stream(c), { t: "room-synced", count: 1 });
    assert.equal((await c.nth("room", 1)).seq, 1);
  });
});

Deno.test("room-create is refused, storing nothing: a list signed by another user's key (room-forged), naming another creator or at epoch 2 or not a list (bad-room), a member without a mailbox (no-mailbox), a name taken (room-exists)", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B");
    const a = await w.login("A");
    const forged = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
      signer: w.ids.B,
    });
    assertError(
      await a.request({ t: "room-create", list: b64(forged.bytes) }),
      "room-forged",
    );
    assert.equal(await w.rooms.room("team"), undefined, "nothing stored");
    assert.deepEqual(await w.rooms.roomsOf("B"), []);
    const bad: Array<[string, string]> = [
      [
        "B's list",
        b64(
          (await listOf(w, { name: "team", creator: "B", members: ["A"] }))
            .bytes,
        ),
      ],
      [
        "epoch 2",
        b64(
          (await listOf(w, {
            name: "team",
            creator: "A",
            members: ["B"],
            epoch: 2,
          })).bytes,
        ),
      ],
      ["not base64", "@@@"],
      ["three bytes", b64(new Uint8Array([1, 2, 3]))],
    ];
    for (const [what, list] of bad) {
      const e = assertError(
        await a.request({ t: "room-create", list }),
        "bad-room",
      );
      assert.match(e.message, /^Room refused: /, what);
    }
    const withC = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B", "C"],
    });
    const e = assertError(
      await a.request({ t: "room-create", list: b64(withC.bytes) }),
      "no-mailbox",
    );
    assert.match(e.message, /^C has no mailbox/);
    assert.equal(await w.rooms.room("team"), undefined);
    const ok = await listOf(w, { name: "team", creator: "A", members: ["B"] });
    await create(a, ok);
    assertError(
      await a.request({ t: "room-create", list: b64(ok.bytes) }),
      "room-exists",
    );
  });
});

Deno.test("limits: more members than --room-max-members is room-full; a user in --room-max-rooms rooms already is too-many-rooms, naming it", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B", "C");
    const a = await w.login("A");
    const c = await w.login("C");
    const three = await listOf(w, {
      name: "big",
      creator: "A",
      members: ["B", "C"],
    });
    const full = assertError(
      await a.request({ t: "room-create", list: b64(three.bytes) }),
      "room-full",
    );
    assert.match(full.message, /3 members, over the limit of 2/);
    await create(
      a,
      await listOf(w, { name: "one", creator: "A", members: ["B"] }),
    );
    const again = assertError(
      await a.request({
        t: "room-create",
        list: b64(
          (await listOf(w, { name: "two", creator: "A", members: [] })).bytes,
        ),
      }),
      "too-many-rooms",
    );
    assert.match(again.message, /^A is a member of 1 rooms already/);
    const byC = assertError(
      await c.request({
        t: "room-create",
        list: b64(
          (await listOf(w, { name: "three", creator: "C", members: ["B"] }))
            .bytes,
        ),
      }),
      "too-many-rooms",
    );
    assert.match(byC.message, /^B is a member/);
    assert.deepEqual(await w.rooms.roomsOf("C"), []);
  }, { roomMaxMembers: 2, roomMaxRooms: 1 });
});

// ---------------------------------------------------------------- update

Deno.test("room-update: only the creator (not-creator), at the next epoch (room-conflict), signed by it (room-forged); a removed member gets the list and no later room-msg, the others get both", async () => {
  await inWorld(async (w) => {
    const { a, b, c, list } = await team(w);
    const next = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
      epoch: 2,
    });
    assert.equal((await c.nth("room", 1)).list, b64(list.bytes));
    const otherId = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
      epoch: 2,
      roomId: randomBytes(16),
    });
    assertError(
      await a.request({ t: "room-update", list: b64(otherId.bytes) }),
      "bad-room",
    );
    assertError(
      await b.request({ t: "room-update", list: b64(next.bytes) }),
      "not-creator",
    );
    const skip = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
      epoch: 3,
    });
    assertError(
      await a.request({ t: "room-update", list: b64(skip.bytes) }),
      "room-conflict",
    );
    const forged = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
      epoch: 2,
      signer: w.ids.C,
    });
    assertError(
      await a.request({ t: "room-update", list: b64(forged.bytes) }),
      "room-forged",
    );
    assertError(
      await a.request({
        t: "room-update",
        list: b64(
          (await listOf(w, {
            name: "nope",
            creator: "A",
            members: [],
            epoch: 2,
          })).bytes,
        ),
      }),
      "no-room",
    );
    assert.equal((await w.rooms.room("team"))?.epoch, 1, "unchanged");
    const answer = await a.request({ t: "room-update", list: b64(next.bytes) });
    assert.equal(answer.t, "room");
    const seq = (answer as Answer<"room">).seq;
    assert.equal((await c.nth("room", 2)).seq, seq, "C is told it was removed");
    assert.equal((await b.nth("room", 2)).seq, seq);
    await c.send({ t: "room-ack", room: "team", upTo: seq });
    await c.roundTrip();
    // Now at epoch 2: A writes; B gets it, C gets nothing more.
    const r = await say(a, next, 7);
    assert.equal(r.members, 1);
    assert.equal(numberOf(await b.nth("room-msg", 1)), 7);
    await c.roundTrip();
    assert.deepEqual(c.all("room-msg"), []);
    assertError(
      await c.request({
        t: "room-send",
        room: "team",
        msg: b64(roomMsg(next, "C", 1)),
      }),
      "not-a-member",
    );
    assert.deepEqual((await w.rooms.room("team"))?.members, ["A", "B"]);
    assert.deepEqual(await w.rooms.roomsOf("C"), [], "C's position is gone");
    assert.deepEqual((await c.roundTrip()).rooms, []);
  });
});

// ---------------------------------------------------------------- leave

Deno.test("room-leave: the member is answered room-left, the others get it pushed, it is no member any more; a statement of another epoch is room-conflict, one signed by another key room-forged", async () => {
  await inWorld(async (w) => {
    const { a, b, c, list } = await team(w);
    const stale = await makeRoomLeave({
      roomId: list.roomId,
      member: "B",
      identity: w.ids.B,
      epoch: 2,
    });
    assertError(
      await b.request({ t: "room-leave", statement: b64(stale.bytes) }),
      "room-conflict",
    );
    const forged = await makeRoomLeave({
      roomId: list.roomId,
      member: "B",
      identity: w.ids.C,
      epoch: 1,
    });
    assertError(
      await b.request({ t: "room-leave", statement: b64(forged.bytes) }),
      "room-forged",
    );
    assertError(
      await c.request({ t: "room-leave", statement: b64(forged.bytes) }),
      "bad-room",
    );
    const leave = await makeRoomLeave({
      roomId: list.roomId,
      member: "B",
      identity: w.ids.B,
      epoch: 1,
    });
    const answer = await b.request({
      t: "room-leave",
      statement: b64(leave.bytes),
    });
    assert.equal(answer.t, "room-left", JSON.stringify(answer));
    const left = answer as Answer<"room-left">;
    assert.equal(left.room, "team");
    assert.equal((await a.nth("room-left", 1)).seq, left.seq);
    assert.equal((await c.nth("room-left", 1)).statement, b64(leave.bytes));
    assert.deepEqual((await w.rooms.room("team"))?.members, ["A", "C"]);
    assertError(
      await b.request({
        t: "room-send",
        room: "team",
        msg: b64(roomMsg(list, "B", 1)),
      }),
      "not-a-member",
    );
    assertError(
      await b.request({ t: "room-leave", statement: b64(leave.bytes) }),
      "not-a-member",
    );
    // B's own leave is passed silently: once B handled the list before
    // it, its position is let go.
    await b.send({ t: "room-ack", room: "team", upTo: 1 });
    await eventually(
      async () => (await w.rooms.roomsOf("B")).length === 0,
      "B's position to go",
    );
    await b.roundTrip();
    assert.equal(b.all("room-left").length, 1, "only the answer");
    const row = (await a.roundTrip()).rooms[0]!;
    assert.deepEqual(row.leaves, [b64(leave.bytes)]);
  });
});

Deno.test("members leaving at once all leave: each leave is built from the row as it is when it is stored, none replaces another", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B", "C", "D", "E");
    const links = await Promise.all(
      (["A", "B", "C", "D", "E"] as const).map((u) => w.login(u)),
    );
    const list = await listOf(w, {
      name: "five",
      creator: "A",
      members: ["B", "C", "D", "E"],
    });
    await create(links[0]!, list);
    const leavers = links.slice(1);
    const statements = await Promise.all(
      leavers.map(async (l) =>
        (await makeRoomLeave({
          roomId: list.roomId,
          member: l.user,
          identity: userIdentity(w.ids, l.user),
          epoch: 1,
        })).bytes
      ),
    );
    const answers = await Promise.all(
      leavers.map((l, i) =>
        l.request({ t: "room-leave", statement: b64(statements[i]!) })
      ),
    );
    for (const a of answers) assert.equal(a.t, "room-left", JSON.stringify(a));
    const row = await w.rooms.room("five");
    assert.deepEqual(row?.members, ["A"]);
    assert.deepEqual(
      row?.leaves.map(b64).sort(),
      statements.map(b64).sort(),
      "every leave kept",
    );
    for (const l of leavers) {
      assert.equal(await w.rooms.memberships(l.user), 0, l.user);
      assertError(
        await l.request({
          t: "room-send",
          room: "five",
          msg: b64(roomMsg(list, l.user, 1)),
        }),
        "not-a-member",
      );
    }
    const seqs = answers.map((a) => (a as Answer<"room-left">).seq);
    assert.equal(new Set(seqs).size, 4, "four entries");
  });
});

Deno.test("a room with no member and no position left is deleted: made alone and left 30 times over, nothing is kept and the names are free, streaming or not", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B", "C");
    const a = await w.login("A");
    await stream(a);
    const leave = async (l: Link, list: RoomList) => {
      const statement = await makeRoomLeave({
        roomId: list.roomId,
        member: l.user,
        identity: userIdentity(w.ids, l.user),
        epoch: list.epoch,
      });
      const r = await l.request({
        t: "room-leave",
        statement: b64(statement.bytes),
      });
      assert.equal(r.t, "room-left", JSON.stringify(r));
      return r as Answer<"room-left">;
    };
    for (let i = 0; i < 30; i++) {
      const name = `r${i % 5}`;
      const list = await listOf(w, {
        name,
        creator: "A",
        members: [],
        roomId: randomBytes(16),
      });
      // Its own list and leave are passed silently: the leaver has
      // nothing left to read, and its position goes with its leave.
      assert.equal((await create(a, list)).seq, 1, `${name} starts afresh`);
      await leave(a, list);
      assert.equal(await w.rooms.room(name), undefined, name);
    }
    assert.deepEqual(await w.rooms.roomsOf("A"), []);
    assert.equal(await w.rooms.memberships("A"), 0);
    for (let i = 0; i < 5; i++) {
      assert.equal(await w.rooms.bytes(`r${i}`), 0);
    }
    // One who does not stream at all leaves nothing behind either.
    const c = await w.login("C");
    const alone = await listOf(w, { name: "alone", creator: "C", members: [] });
    await create(c, alone);
    await leave(c, alone);
    assert.equal(await w.rooms.room("alone"), undefined);
  }, { roomMaxRooms: 1 });
});

Deno.test("a room whose members all left is deleted once the last of them acknowledged what was left for it to read; a room made again under its name is streamed from its start", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B");
    const [a, b] = await Promise.all([w.login("A"), w.login("B")]);
    const list = await listOf(w, {
      name: "pair",
      creator: "A",
      members: ["B"],
    });
    await create(a, list);
    await Promise.all([stream(a), stream(b)]);
    const leaveOf = async (l: Link) =>
      b64(
        (await makeRoomLeave({
          roomId: list.roomId,
          member: l.user,
          identity: userIdentity(w.ids, l.user),
          epoch: 1,
        })).bytes,
      );
    // B has A's list to read: its position waits for it.
    await b.request({ t: "room-leave", statement: await leaveOf(b) });
    assert.deepEqual(await w.rooms.position("pair", "B"), {
      upTo: 0,
      until: 2,
    });
    await b.send({ t: "room-ack", room: "pair", upTo: 1 });
    await eventually(
      async () => (await w.rooms.position("pair", "B")) === undefined,
      "B's position to go",
    );
    // A has B's leave to read.
    const left = await a.nth("room-left", 1);
    await a.request({ t: "room-leave", statement: await leaveOf(a) });
    const row = await w.rooms.room("pair");
    assert.deepEqual(row?.members, [], "no member, one position");
    assert.ok(await w.rooms.position("pair", "A"));
    await a.send({ t: "room-ack", room: "pair", upTo: left.seq });
    await eventually(
      async () => (await w.rooms.room("pair")) === undefined,
      "the room to go",
    );
    assert.equal(await w.rooms.bytes("pair"), 0);
    assert.deepEqual(await w.rooms.roomsOf("A"), []);
    // B makes a room of the name with A: A's stream, which was at the
    // old room's end, reads the new one from seq 1.
    const again = await listOf(w, {
      name: "pair",
      creator: "B",
      members: ["A"],
      roomId: randomBytes(16),
    });
    const rooms = a.all("room").length; // its own create's answer
    assert.equal((await create(b, again)).seq, 1);
    assert.deepEqual(await a.nth("room", rooms + 1), {
      t: "room",
      room: "pair",
      seq: 1,
      list: b64(again.bytes),
    });
    await say(b, again, 9);
    const msg = await a.nth("room-msg", 1);
    assert.equal(msg.seq, 2);
    assert.equal(numberOf(msg), 9);
  });
});

// ---------------------------------------------------------------- send

Deno.test("room-send is refused: by a non-member (not-a-member), to no room (no-room), a header of another sender or room (bad-room-msg), of an old epoch (room-stale-epoch); nothing is stored", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B");
    const a = await w.login("A");
    const c = await w.login("C");
    const list = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
    });
    await create(a, list);
    const before = await w.rooms.bytes("team");
    const cases: Array<[string, Link, ClientToServer, string]> = [
      ["C is no member", c, {
        t: "room-send",
        room: "team",
        msg: b64(roomMsg(list, "C")),
      }, "not-a-member"],
      ["no such room", a, {
        t: "room-send",
        room: "other",
        msg: b64(roomMsg(list, "A")),
      }, "no-room"],
      ["a header naming B", a, {
        t: "room-send",
        room: "team",
        msg: b64(roomMsg(list, "B")),
      }, "bad-room-msg"],
      ["another room id", a, {
        t: "room-send",
        room: "team",
        msg: b64(roomMsg(list, "A", 0, { roomId: randomBytes(16) })),
      }, "bad-room-msg"],
      ["not a ROOM_MSG", a, {
        t: "room-send",
        room: "team",
        msg: b64(new Uint8Array(40)),
      }, "bad-room-msg"],
      ["epoch 2", a, {
        t: "room-send",
        room: "team",
        msg: b64(roomMsg(list, "A", 0, { epoch: 2 })),
      }, "room-stale-epoch"],
    ];
    for (const [what, l, m, code] of cases) {
      const e = assertError(await l.request(m), code);
      assert.ok(e.message.length > 0 && !e.message.includes("\n"), what);
    }
    assert.equal(await w.rooms.bytes("team"), before, "nothing stored");
  });
});

Deno.test("room-send is room-msg-too-large when its room-msg push would not fit a record at the server's frame limit, though the request did", async () => {
  const ids = await identities();
  const list = await makeRoomList({
    roomId: new Uint8Array(16).fill(4),
    name: "team",
    creator: ids.A,
    creatorName: "A",
    epoch: 1,
    created: Date.now(),
    members: ["B"],
  });
  const msg = b64(roomMsg(list, "A", 0, { bucket: 16_384 }));
  const request = encodeMessage({
    t: "room-send",
    room: "team",
    msg,
    req: 99,
  }).length;
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B");
    const a = await w.login("A");
    await create(a, list);
    const e = assertError(
      await a.request({ t: "room-send", room: "team", msg }),
      "room-msg-too-large",
    );
    assert.match(e.message, /over the limit of \d+$/);
    assert.equal(await w.rooms.bytes("team"), list.bytes.length);
  }, { maxFrameBytes: RECORD_MIN_BYTES + request + 8 });
});

Deno.test("store once: a message to a room of five is one copy in the store, and each of the four others gets it", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B", "C", "D", "E");
    const links = await Promise.all(
      (["A", "B", "C", "D", "E"] as const).map((u) => w.login(u)),
    );
    const [a, ...others] = links;
    const list = await listOf(w, {
      name: "five",
      creator: "A",
      members: ["B", "C", "D", "E"],
    });
    await create(a!, list);
    await Promise.all(links.map((l) => stream(l)));
    const msg = roomMsg(list, "A", 42, { bucket: 4096 });
    const r = await a!.request({ t: "room-send", room: "five", msg: b64(msg) });
    assert.equal((r as Answer<"room-receipt">).members, 4);
    for (const l of others) {
      assert.equal(numberOf(await l.nth("room-msg", 1)), 42, l.user);
    }
    assert.equal(
      await w.rooms.bytes("five"),
      list.bytes.length + msg.length,
      "the list and one copy of the message",
    );
  });
});

// ---------------------------------------------------------------- receipts, acks, deletion

Deno.test("room-ack: the sender gets a room-receipt with the count of members past its message, and the message is deleted once every member acknowledged it", async () => {
  await inWorld(async (w) => {
    const { a, b, c, list } = await team(w);
    const listBytes = await w.rooms.bytes("team");
    const sent = await say(a, list, 1);
    assert.deepEqual({ ...sent, req: undefined }, {
      t: "room-receipt",
      room: "team",
      seq: sent.seq,
      delivered: 0,
      members: 2,
      req: undefined,
    });
    const msg = await b.nth("room-msg", 1);
    assert.equal(msg.seq, sent.seq);
    assert.equal(msg.from, "A");
    await b.send({ t: "room-ack", room: "team", upTo: msg.seq });
    const first = await a.nth("room-receipt", 2);
    assert.deepEqual(first, {
      t: "room-receipt",
      room: "team",
      seq: sent.seq,
      delivered: 1,
      members: 2,
    });
    assert.ok(await w.rooms.bytes("team") > listBytes, "C has not read it");
    await c.nth("room-msg", 1);
    await c.send({ t: "room-ack", room: "team", upTo: msg.seq });
    assert.equal((await a.nth("room-receipt", 3)).delivered, 2);
    // A passed its own message silently; all three positions are past it.
    await c.roundTrip();
    assert.equal(await w.rooms.bytes("team"), 0, "deleted, the list too");
    await a.roundTrip();
    assert.deepEqual(a.all("room-msg"), [], "A's own is not pushed back");
  });
});

Deno.test("room-ack is bad-ack above what was pushed, below an earlier one, or before room-stream (upTo 0 is accepted there); a bad one changes nothing", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B");
    const a = await w.login("A");
    const b = await w.login("B");
    const list = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
    });
    await create(a, list);
    await b.send({ t: "room-ack", room: "team", upTo: 0 });
    assertError(
      await b.request({ t: "room-ack", room: "team", upTo: 1 }),
      "bad-ack",
    );
    await stream(b);
    await say(a, list, 1);
    await say(a, list, 2);
    const second = await b.nth("room-msg", 2);
    assertError(
      await b.request({ t: "room-ack", room: "team", upTo: second.seq + 1 }),
      "bad-ack",
    );
    assert.equal((await w.rooms.position("team", "B"))?.upTo, 0);
    await b.send({ t: "room-ack", room: "team", upTo: second.seq });
    await b.roundTrip();
    assertError(
      await b.request({ t: "room-ack", room: "team", upTo: second.seq - 1 }),
      "bad-ack",
    );
    assert.equal((await w.rooms.position("team", "B"))?.upTo, second.seq);
    assertError(
      await b.request({ t: "room-ack", room: "other", upTo: 1 }),
      "bad-ack",
    );
  });
});

Deno.test("room-stream: a window outside 1..1024 or a second stream on the connection is bad-room-stream; at most `window` entries of a room await an acknowledgement", async () => {
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B");
    const a = await w.login("A");
    const b = await w.login("B");
    const list = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
    });
    await create(a, list);
    for (let i = 1; i <= 5; i++) await say(a, list, i);
    for (const window of [0, 1025, 1.5]) {
      assertError(
        await b.request({ t: "room-stream", window }),
        "bad-room-stream",
      );
    }
    await b.send({ t: "room-stream", window: 2 });
    assertError(
      await b.request({ t: "room-stream", window: 2 }),
      "bad-room-stream",
    );
    assert.equal(numberOf(await b.nth("room-msg", 1)), 1);
    await b.roundTrip();
    assert.equal(b.all("room").length, 1);
    assert.equal(b.all("room-msg").length, 1, "the list and one message");
    assert.deepEqual(b.all("room-synced"), [], "the backlog is not out yet");
    await b.send({ t: "room-ack", room: "team", upTo: 1 });
    assert.equal(numberOf(await b.nth("room-msg", 2)), 2);
    await b.roundTrip();
    assert.equal(b.all("room-msg").length, 2, "one freed, one more pushed");
    await b.send({ t: "room-ack", room: "team", upTo: 3 });
    assert.equal((await b.nth("room-msg", 4)).seq, 5);
    await b.send({ t: "room-ack", room: "team", upTo: 5 });
    assert.equal(numberOf(await b.nth("room-msg", 5)), 5);
    assert.deepEqual(await b.nth("room-synced", 1), {
      t: "room-synced",
      count: 6,
    });
  });
});

// ---------------------------------------------------------------- keys and the gate

Deno.test("the key gate: a room-msg after a sender's room-keys reaches a member only once it acknowledged the mail carrying the key; the keys entry is never pushed", async () => {
  await inWorld(async (w) => {
    const { a, b, c, list } = await team(w);
    await b.send({ t: "mailbox", window: 16 });
    await b.nth("synced", 1);
    const keyed = await a.request({
      t: "room-keys",
      room: "team",
      epoch: 1,
      mails: [b64(mailBytes("A", "B")), b64(mailBytes("A", "C"))],
    });
    assert.deepEqual({ ...keyed, req: undefined }, {
      t: "room-keyed",
      room: "team",
      epoch: 1,
      count: 2,
      req: undefined,
    });
    const mail = await b.nth("mail", 1);
    assert.equal(mail.from, "A");
    assert.deepEqual(
      await w.mail.usage("B"),
      { count: 0, bytes: 0 },
      "outside the quota",
    );
    await say(a, list, 5);
    await b.roundTrip();
    await c.roundTrip();
    assert.deepEqual(b.all("room-msg"), [], "B has not acknowledged its key");
    assert.deepEqual(c.all("room-msg"), []);
    await b.send({ t: "mail-ack", upTo: mail.seq, delivered: [] });
    assert.equal(numberOf(await b.nth("room-msg", 1)), 5);
    await c.roundTrip();
    assert.deepEqual(c.all("room-msg"), [], "C still holds its key mail");
    // C reads its mail at its next login, then the room.
    await c.send({ t: "mailbox", window: 16 });
    const cm = await c.nth("mail", 1);
    await c.send({ t: "mail-ack", upTo: cm.seq, delivered: [] });
    const atC = await c.nth("room-msg", 1);
    assert.equal(numberOf(atC), 5);
    // The list is 1, the keys entry 2, the message 3: 2 was never pushed.
    assert.equal(atC.seq, 3);
    for (const l of [a, b, c]) {
      const seqs = l.got.events.flatMap((m) =>
        m.t === "room" || m.t === "room-left" || m.t === "room-msg"
          ? [m.seq]
          : []
      );
      assert.ok(!seqs.includes(2), `${l.user}: ${seqs}`);
      assert.deepEqual(l.all("error"), []);
    }
  });
});

Deno.test("the key gate: a mail-ack that lands while the stream is reading the mail log for the gate still opens it (no wake is lost)", async () => {
  await inWorld(async (w) => {
    const { a, b, list } = await team(w);
    await b.send({ t: "mailbox", window: 16 });
    await b.nth("synced", 1);
    await a.request({
      t: "room-keys",
      room: "team",
      epoch: 1,
      mails: [b64(mailBytes("A", "B")), b64(mailBytes("A", "C"))],
    });
    const mail = await b.nth("mail", 1);
    // The stream's gate check reads B's mail log before B's mail-ack
    // deletes the key mail, and learns the answer only after it.
    const read = w.mail.read.bind(w.mail);
    const gateRead = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    w.mail.read = async (user, opts) => {
      const got = await read(user, opts);
      if (user === "B" && opts?.limit === 1 && opts.after === undefined) {
        w.mail.read = read;
        gateRead.resolve();
        await release.promise;
      }
      return got;
    };
    await say(a, list, 5);
    await gateRead.promise;
    await b.send({ t: "mail-ack", upTo: mail.seq, delivered: [] });
    await b.roundTrip(); // the acknowledgement was handled (and woke the gates)
    release.resolve();
    assert.equal(numberOf(await b.nth("room-msg", 1)), 5);
  });
});

Deno.test("room-keys is refused, appending nothing: for another epoch (room-stale-epoch), a mail to a non-member, from another sender, two for one member or more mails than members (bad-mail)", async () => {
  await inWorld(async (w) => {
    const { a, list } = await team(w);
    const keys = (epoch: number, ...mails: Uint8Array[]): ClientToServer => ({
      t: "room-keys",
      room: list.name,
      epoch,
      mails: mails.map(b64),
    });
    assertError(
      await a.request(keys(2, mailBytes("A", "B"))),
      "room-stale-epoch",
    );
    const bad: Array<[string, ClientToServer]> = [
      ["to D", keys(1, mailBytes("A", "D"))],
      ["to A itself", keys(1, mailBytes("A", "A"))],
      ["from B", keys(1, mailBytes("B", "C"))],
      ["two to B", keys(1, mailBytes("A", "B"), mailBytes("A", "B"))],
      [
        "three",
        keys(1, mailBytes("A", "B"), mailBytes("A", "C"), mailBytes("A", "C")),
      ],
      ["not base64", { ...keys(1), mails: ["@@"] } as ClientToServer],
    ];
    for (const [what, m] of bad) {
      const e = assertError(await a.request(m), "bad-mail");
      assert.match(e.message, /^Keys refused: /, what);
    }
    assert.deepEqual(await w.mail.read("B"), []);
    assert.deepEqual(await w.mail.read("C"), []);
    assertError(
      await w.login("D").then((d) => d.request(keys(1, mailBytes("D", "A")))),
      "not-a-member",
    );
  });
});

Deno.test("room-keys takes only key mails, one per sender and member at an epoch: a ciphertext of another size than a padded ROOM_KEY is bad-mail; a mail for a member served already is not stored again, and count is what was stored now", async () => {
  await inWorld(async (w) => {
    const { a, b, list } = await team(w);
    const keys = (
      epoch: number,
      ...mails: Uint8Array[]
    ): ClientToServer => ({
      t: "room-keys",
      room: list.name,
      epoch,
      mails: mails.map(b64),
    });
    const keyed = async (l: Link, m: ClientToServer) => {
      const r = await l.request(m);
      assert.equal(r.t, "room-keyed", JSON.stringify(r));
      return (r as Answer<"room-keyed">).count;
    };
    // u8 0x02 || u32 len || ROOM_KEY of "team" (1+16+1+4+4+4+32+32 = 94
    // bytes): 99 bytes, padded to 128.
    assert.equal(roomKeyCiphertextBytes("team"), 128);
    assert.equal(roomKeyCiphertextBytes("a".repeat(32)), 128);
    for (const size of [64, 256, 40_960]) {
      const e = assertError(
        await a.request(keys(1, mailBytes("A", "B", size))),
        "bad-mail",
      );
      assert.match(
        e.message,
        new RegExp(`ciphertext of ${size} bytes, not the 128 of a room key`),
      );
    }
    assert.deepEqual(await w.mail.read("B"), [], "nothing stored");

    assert.equal(await keyed(a, keys(1, mailBytes("A", "B"))), 1);
    const bytes = await w.rooms.bytes("team");
    // Sent again (a hand-out after a crash): B is served already, C is not.
    assert.equal(
      await keyed(a, keys(1, mailBytes("A", "B"), mailBytes("A", "C"))),
      1,
    );
    assert.ok(await w.rooms.bytes("team") > bytes, "a keys entry for C");
    const after = await w.rooms.bytes("team");
    for (let i = 0; i < 20; i++) {
      assert.equal(
        await keyed(a, keys(1, mailBytes("A", "B"), mailBytes("A", "C"))),
        0,
      );
    }
    assert.equal(await w.rooms.bytes("team"), after, "no keys entry either");
    assert.equal((await w.mail.read("B")).length, 1, "one key mail for B");
    assert.equal((await w.mail.read("C")).length, 1);
    // Another sender's mail to B is its own pair.
    assert.equal(await keyed(b, keys(1, mailBytes("B", "A"))), 1);
    assert.equal(await keyed(b, keys(1, mailBytes("B", "C"))), 1);
    assert.equal(await keyed(b, keys(1, mailBytes("B", "A"))), 0);

    // A new epoch takes a key mail per pair again.
    const next = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B", "C"],
      epoch: 2,
    });
    assert.equal(
      (await a.request({ t: "room-update", list: b64(next.bytes) })).t,
      "room",
    );
    assert.equal(await keyed(a, keys(2, mailBytes("A", "B"))), 1);
    assert.equal(await keyed(a, keys(2, mailBytes("A", "B"))), 0);
    assert.equal((await w.mail.read("B")).length, 2);
    assert.deepEqual(await w.mail.usage("B"), { count: 0, bytes: 0 });
  });
});

Deno.test("member-keys: a member gets the other members' mailbox keys with their enrolled RSA keys; a non-member is refused", async () => {
  await inWorld(async (w) => {
    const { b, list } = await team(w);
    const a = await b.request({ t: "member-keys", room: list.name });
    assert.equal(a.t, "room-bundles", JSON.stringify(a));
    const bundles = a as Answer<"room-bundles">;
    assert.equal(bundles.epoch, 1);
    assert.deepEqual(bundles.bundles.map((x) => x.user), ["A", "C"]);
    for (const x of bundles.bundles) {
      const certs = await w.prekeys.certs(x.user);
      assert.equal(x.identityKey, b64(certs!.identityCert));
      assert.equal(x.signedPrekey, b64(certs!.signedPrekeyCert));
      assert.equal(
        x.identity,
        b64(userIdentity(w.ids, x.user).publicIdentity.publicDer),
      );
    }
    const d = await w.login("D");
    assertError(
      await d.request({ t: "member-keys", room: list.name }),
      "not-a-member",
    );
    assertError(await d.request({ t: "member-keys", room: "none" }), "no-room");
  });
});

// ---------------------------------------------------------------- failures and the sweep

Deno.test("a room store that fails is store-failed: no receipt, nothing stored, and the connection goes on", async () => {
  const inner = new MemoryRoomStore();
  let failing = false;
  const rooms = new Proxy(inner, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (prop === "append" && typeof v === "function") {
        return (...args: unknown[]) =>
          failing
            ? Promise.reject(new Error("disk full"))
            : v.apply(target, args);
      }
      return typeof v === "function" ? v.bind(target) : v;
    },
  }) as RoomStore;
  await inWorld(async (w) => {
    await withMailboxes(w, "A", "B");
    const a = await w.login("A");
    const list = await listOf(w, {
      name: "team",
      creator: "A",
      members: ["B"],
    });
    await create(a, list);
    const before = await w.rooms.bytes("team");
    failing = true;
    assertError(
      await a.request({
        t: "room-send",
        room: "team",
        msg: b64(roomMsg(list, "A")),
      }),
      "store-failed",
    );
    assert.equal(await w.rooms.bytes("team"), before);
    assert.deepEqual(a.all("room-receipt"), []);
    failing = false;
    await say(a, list, 2);
    assert.ok(
      w.log.some((l) => l.event === "room-store-failed"),
      "logged, without content",
    );
    const logged = JSON.stringify(w.log);
    assert.ok(!logged.includes(b64(list.bytes)), "no list in the log");
  }, { rooms });
});

Deno.test("the retention sweep deletes every room's entries older than the retention, in batches", async () => {
  let now = Date.now();
  const clock = () => now;
  const store = new MemoryRoomStore(clock);
  const ids = await identities();
  const log: LogLine[] = [];
  const rooms = new Rooms({
    store,
    prekeys: new MemoryPrekeys(),
    clients: () => clientDirectory(ids),
    session: () => undefined,
    limits: new RequestLimits(),
    mailStore: new MemoryStore(),
    notifyMail: () => {},
    retentionMs: DAY_MS,
    maxFrameBytes: 65_536,
    now: clock,
    log: (event, fields = {}) => log.push({ event, fields }),
  });
  const data = new Uint8Array([1, 2, 3]);
  await store.create({
    name: "old",
    roomId: new Uint8Array(16),
    creator: "A",
    epoch: 1,
    list: data,
    leaves: [],
    members: ["A", "B"],
  }, { kind: "list", from: "A", at: now, data });
  for (let i = 0; i < 300; i++) {
    await store.append("old", { kind: "msg", from: "A", at: now, data });
  }
  now += DAY_MS + 1;
  await store.append("old", { kind: "msg", from: "A", at: now, data });
  await rooms.sweep();
  assert.equal(await store.bytes("old"), data.length, "only the new one left");
  assert.deepEqual(
    log.find((l) => l.event === "room-expired")?.fields,
    { entries: 301 },
  );
  await rooms.close();
});
