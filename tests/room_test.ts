/**
 * Rooms end to end through the client (PROTOCOL.md section 10): real
 * {@link ChatClient}s for users A to F and a real {@link ImServer} over a
 * {@link MemoryNetwork}, the server's room store within the test's reach to
 * play a malicious server (a list the creator did not sign, a message by a
 * non-member, a replay, a flipped byte, messages out of order). Each test
 * fails without the rule it names.
 * @module
 */

import assert from "node:assert/strict";
import { Room } from "../lib/client/room_state.ts";
import { deriveKeySync, generateEd25519, Label } from "../lib/crypto/mod.ts";
import { openRoomVault } from "../lib/keystore/mod.ts";
import {
  decodeRoomList,
  decodeRoomMessage,
  makeRoomList,
  openRoomMessage,
  sealRoomMessage,
  SenderChain,
} from "../lib/proto/mod.ts";
import type { RoomVault } from "../lib/proto/mod.ts";
import type { RoomEntry, RoomStore } from "../lib/server/mod.ts";
import { sleep } from "../lib/util/mod.ts";
import { isError } from "./_fixtures.ts";
import {
  eventually,
  type Member,
  roomChange,
  roomIn,
  withRoomWorld,
} from "./_room_world.ts";

type World = Parameters<Parameters<typeof withRoomWorld>[0]>[0];

/** Type a line; it acts before the next (a script's order). */
async function type(m: Member, line: string): Promise<void> {
  assert.ok(await m.c.handleLine(line));
}

/** The room's `msg` entries a member has yet to read, as the server stores them. */
async function storedMessages(
  w: World,
  room: string,
  member: string,
): Promise<RoomEntry[]> {
  return (await w.rooms.read(room, member)).filter((e) => e.kind === "msg");
}

/** What each member was shown of the room, in order. */
function shown(m: Member, room: string): string[] {
  return m.ui.events.flatMap((e) =>
    e.kind === "message" && e.direction === "in" && e.room === room
      ? [e.text]
      : []
  );
}

Deno.test("six users A-F: a room is created and grown, every message reaches every member online, and an offline member at its next login, in order; receipts count the members who have it", async () => {
  await withRoomWorld(async (w) => {
    const [a, b, c, d, e] = await Promise.all(
      (["A", "B", "C", "D", "E"] as const).map((u) => w.login(u)),
    );
    const f0 = await w.login("F"); // F's keys are on the server; F goes away
    await f0.quit();

    await type(a!, "!room create team B C");
    for (const m of [a!, b!, c!]) {
      await m.ui.waitFor(roomChange("team", "created"));
    }
    for (const u of ["D", "E", "F"]) await type(a!, `!room add team ${u}`);
    await b!.ui.waitFor((ev) =>
      roomChange("team", "added")(ev) && ev.kind === "room" &&
      ev.who.includes("F")
    );
    for (const m of [d!, e!]) await m.ui.waitFor(roomChange("team", "created"));
    assert.deepEqual(a!.c.roomNames, ["team"]);

    await type(a!, "#team hello all");
    for (const m of [b!, c!, d!, e!]) {
      const got = await m.ui.waitFor(roomIn("team", "hello all"));
      assert.ok(got.kind === "message" && got.from === "A");
    }
    // `delivered to 4 of 5`: F is offline.
    await a!.ui.waitFor((ev) =>
      ev.kind === "receipt" && ev.via === "room" && ev.delivered === 4 &&
      ev.members === 5
    );
    await type(b!, "#team from B");
    for (const m of [a!, c!, d!, e!]) {
      await m.ui.waitFor(roomIn("team", "from B"));
    }

    // F was offline for all of it: the room, then both messages, in order.
    const f = await w.login("F");
    await f.ui.waitFor(roomIn("team", "from B"));
    assert.deepEqual(shown(f, "team"), ["hello all", "from B"]);
    assert.ok(f.ui.events.some(roomChange("team", "created")));
    await a!.ui.waitFor((ev) =>
      ev.kind === "receipt" && ev.via === "room" && ev.delivered === 5 &&
      ev.members === 5
    );
    // Nobody was shown a message twice or a refusal.
    for (const m of [a!, b!, c!, d!, e!, f]) {
      assert.deepEqual(m.ui.since(isError()), []);
    }
    // Stored once: each message is one entry, not one per member.
    assert.ok(await w.rooms.bytes("team") < 2 * 5 * 1024);
  });
});

Deno.test("a removed member is pushed nothing new, and cannot decrypt a new message with anything it held", async () => {
  await withRoomWorld(async (w) => {
    const [a, b, c] = await Promise.all(
      (["A", "B", "C"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B C");
    await c!.ui.waitFor(roomChange("team", "created"));
    await b!.ui.waitFor(roomChange("team", "created"));
    await type(a!, "#team before");
    await c!.ui.waitFor(roomIn("team", "before"));
    await c!.c.mailSynced();
    // Everything C holds of the room, as saved (chains, skipped keys).
    await sleep(50); // C's acknowledgement saved its chains
    const held = (await w.roomVaults.get("C")!.load()).rooms.get("team");
    assert.ok(held, "C saved the room");

    await type(a!, "!room remove team C");
    const gone = await c!.ui.waitFor(roomChange("team", "removed"));
    assert.ok(gone.kind === "room" && gone.who.includes("C"));
    await b!.ui.waitFor(roomChange("team", "removed"));
    assert.deepEqual(c!.c.roomNames, []);

    await b!.quit(); // B's position keeps the message in the store
    await type(a!, "#team after");
    const [captured] = await storedMessages(w, "team", "B");
    assert.ok(captured, "the message is stored for B");
    const b2 = await w.login("B");
    await b2.ui.waitFor(roomIn("team", "after"));
    await sleep(100);
    assert.deepEqual(shown(c!, "team"), ["before"]);

    // What C held opens nothing of the new epoch: its reader has no chain
    // for it, and no key C holds or can derive passes the tag.
    const room = await Room.fromJSON(held);
    await assert.rejects(
      room.reader.open(captured.data, {
        now: Date.now(),
        isMember: () => true,
      }),
      { code: "room-no-key" },
    );
    const msg = decodeRoomMessage(captured.data);
    assert.equal(msg.header.epoch, 2);
    const state = room.reader.toJSON();
    let tried = 0;
    for (const { chain } of state.chains) {
      const keys = chain.skipped.map(([, k]) => Uint8Array.fromBase64(k));
      if (chain.chainKey !== null) {
        let ck = Uint8Array.fromBase64(chain.chainKey);
        const roomId = Uint8Array.fromBase64(chain.roomId);
        for (let i = 0; i < 1100; i++) {
          keys.push(deriveKeySync(ck, roomId, Label.ROOM_MESSAGE));
          ck = deriveKeySync(ck, roomId, Label.ROOM_CHAIN);
        }
      }
      for (const mk of keys) {
        tried++;
        assert.throws(() => openRoomMessage(msg, mk), {
          code: "room-tampered",
        });
      }
    }
    assert.ok(tried >= 1100, `tried ${tried} keys`);
  });
});

Deno.test("a member list the creator did not sign is refused: the member keeps its list, and a listener the server added holds no room", async () => {
  await withRoomWorld(async (w) => {
    const [a, b] = await Promise.all(
      (["A", "B"] as const).map((u) => w.login(u)),
    );
    const c0 = await w.login("C");
    await c0.quit();
    await type(a!, "!room create team B");
    await b!.ui.waitFor(roomChange("team", "created"));
    await b!.quit();

    // The server adds C under a list B signed, in the creator's name.
    const row = (await w.rooms.room("team"))!;
    const list = decodeRoomList(row.list);
    const forged = await makeRoomList({
      roomId: list.roomId,
      name: "team",
      creator: w.ids.B,
      creatorName: "A",
      epoch: 2,
      created: list.created,
      members: ["A", "B", "C"],
    });
    await w.rooms.change({
      row: { ...row, epoch: 2, list: forged.bytes, members: forged.members },
      entry: { kind: "list", from: "A", at: Date.now(), data: forged.bytes },
      added: ["C"],
      removed: [],
    });
    const b2 = await w.login("B");
    await b2.ui.waitFor(isError("room-forged"));
    await type(b2, "!rooms");
    const listing = await b2.ui.waitFor((e) => e.kind === "rooms");
    assert.ok(listing.kind === "rooms");
    assert.deepEqual(listing.rooms[0]?.members, ["A", "B"]);

    const c = await w.login("C");
    await c.ui.waitFor(isError("room-forged"));
    assert.deepEqual(c.c.roomNames, []);
  });
});

Deno.test("a message by a non-member, one signed by another key, and a replay are refused; the rest of the room flows", async () => {
  await withRoomWorld(async (w) => {
    const [a, b] = await Promise.all(
      (["A", "B"] as const).map((u) => w.login(u)),
    );
    const c0 = await w.login("C");
    await c0.quit();
    await type(a!, "!room create team B");
    await b!.ui.waitFor(roomChange("team", "created"));
    await type(a!, "#team one");
    await b!.ui.waitFor(roomIn("team", "one"));
    await b!.quit();
    await type(a!, "#team two");
    const [two] = await storedMessages(w, "team", "B");
    assert.ok(two);
    const row = (await w.rooms.room("team"))!;
    const list = decodeRoomList(row.list);
    const forge = async (sender: string, index: number) =>
      await sealRoomMessage({
        roomId: list.roomId,
        name: "team",
        sender,
        epoch: row.epoch,
        index,
        time: Date.now(),
        messageKey: SenderChain.fresh(list.roomId).next().messageKey,
        signing: await generateEd25519(false),
        text: "forged",
      });
    const at = Date.now();
    // C is no member; "A" with a key that is not A's chain's.
    await w.rooms.append("team", {
      kind: "msg",
      from: "C",
      at,
      data: await forge("C", 0),
    });
    await w.rooms.append("team", {
      kind: "msg",
      from: "A",
      at,
      data: two.data,
    });
    await w.rooms.append("team", {
      kind: "msg",
      from: "A",
      at,
      data: await forge("A", 7),
    });
    await type(a!, "#team three");

    const b2 = await w.login("B");
    await b2.ui.waitFor(roomIn("team", "three"));
    assert.deepEqual(shown(b2, "team"), ["two", "three"]);
    const codes = b2.ui.since(isError()).map((e) =>
      e.kind === "error" ? e.code : ""
    );
    assert.deepEqual(codes, ["not-a-member", "room-replayed", "room-tampered"]);
  });
});

Deno.test("a flipped byte in a stored room message is reported as tampered, and the messages after it are shown", async () => {
  await withRoomWorld(async (w) => {
    const [a, b] = await Promise.all(
      (["A", "B"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B");
    await b!.ui.waitFor(roomChange("team", "created"));
    await b!.quit();
    await type(a!, "#team x1");
    await type(a!, "#team x2");
    const stored = await storedMessages(w, "team", "B");
    assert.equal(stored.length, 2);
    // The server serves B a copy with one byte of the ciphertext flipped.
    await w.rooms.ack("team", "B", stored[1]!.seq);
    for (const [i, e] of stored.entries()) {
      const data = new Uint8Array(e.data);
      if (i === 0) data[data.length - 100] = data[data.length - 100]! ^ 0x01;
      await w.rooms.append("team", { kind: "msg", from: "A", at: e.at, data });
    }
    const b2 = await w.login("B");
    await b2.ui.waitFor(roomIn("team", "x2"));
    assert.deepEqual(shown(b2, "team"), ["x2"]);
    await b2.ui.waitFor(isError("room-tampered"));
  });
});

Deno.test("messages out of order within the window are all shown; one beyond it is reported as a gap; a member offline for 1,002 messages catches up in order", async () => {
  await withRoomWorld(async (w) => {
    const [a, b, c] = await Promise.all(
      (["A", "B", "C"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B C");
    await b!.ui.waitFor(roomChange("team", "created"));
    await c!.ui.waitFor(roomChange("team", "created"));
    await b!.quit();
    await c!.quit();
    const n = 1002;
    for (let i = 0; i < n; i++) await type(a!, `#team m${i}`);

    // C: everything, in order, once.
    const c2 = await w.login("C");
    await c2.ui.waitFor(roomIn("team", `m${n - 1}`), 0, 60_000);
    assert.deepEqual(
      shown(c2, "team"),
      Array.from({ length: n }, (_, i) => `m${i}`),
    );
    assert.deepEqual(c2.ui.since(isError()), []);

    // B: the server serves m1001 first (1,001 past B's position: a gap),
    // then m2, m0, m1.
    const stored = await storedMessages(w, "team", "B");
    assert.equal(stored.length, n);
    await w.rooms.ack("team", "B", stored[n - 1]!.seq);
    for (const i of [n - 1, 2, 0, 1]) {
      const e = stored[i]!;
      await w.rooms.append("team", {
        kind: "msg",
        from: "A",
        at: e.at,
        data: e.data,
      });
    }
    const b2 = await w.login("B");
    await b2.ui.waitFor(roomIn("team", "m1"));
    assert.deepEqual(shown(b2, "team"), ["m2", "m0", "m1"]);
    await b2.ui.waitFor(isError("room-gap"));
  });
});

Deno.test("a member leaves by its own signed statement: the others are told, the creator's client signs the list without it, and it reads nothing written after", async () => {
  await withRoomWorld(async (w) => {
    const [a, b, c] = await Promise.all(
      (["A", "B", "C"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B C");
    await c!.ui.waitFor(roomChange("team", "created"));
    await b!.ui.waitFor(roomChange("team", "created"));
    await type(c!, "!room leave team");
    await c!.ui.waitFor(roomChange("team", "left"));
    assert.deepEqual(c!.c.roomNames, []);
    for (const m of [a!, b!]) {
      const left = await m.ui.waitFor(roomChange("team", "left"));
      assert.ok(left.kind === "room" && left.who.includes("C"));
    }
    await eventually(
      async () => (await w.rooms.room("team"))?.epoch === 2,
      "the creator's list without C",
    );
    await type(a!, "#team after C left");
    await b!.ui.waitFor(roomIn("team", "after C left"));
    await sleep(100);
    assert.deepEqual(shown(c!, "team"), []);
    // The server has nothing of the room for C to read, and C was shown
    // no refusal (nothing was pushed to it).
    assert.deepEqual(await storedMessages(w, "team", "C"), []);
    assert.deepEqual(c!.ui.since(isError()), []);
  });
});

Deno.test("room state in the key directory: after both restart, the receiver reads on and the sender's chain goes on where it was (no index reused)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await withRoomWorld(async (w) => {
      const vault = (u: string) => openRoomVault(dir, u);
      const a = await w.login("A", { roomVault: await vault("A") });
      const b = await w.login("B", { roomVault: await vault("B") });
      await type(a, "!room create team B");
      await b.ui.waitFor(roomChange("team", "created"));
      await type(a, "#team one");
      await b.ui.waitFor(roomIn("team", "one"));
      await sleep(50);
      await b.quit();
      await a.quit();
      const info = await Deno.stat(`${dir}/users/A/rooms/room-7465616d.json`);
      if (Deno.build.os !== "windows") assert.equal(info.mode! & 0o777, 0o600);

      const a2 = await w.login("A", { roomVault: await vault("A") });
      const b2 = await w.login("B", { roomVault: await vault("B") });
      assert.deepEqual(b2.c.roomNames, ["team"]);
      await type(a2, "#team two");
      await b2.ui.waitFor(roomIn("team", "two"));
      assert.deepEqual(b2.ui.since(isError()), []);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("limits: members per room and rooms per user, each one clear error", async () => {
  await withRoomWorld(async (w) => {
    const [a] = await Promise.all(
      (["A", "B", "C"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create big B C");
    await a!.ui.waitFor(isError("room-full"));
    await type(a!, "!room create one B");
    await a!.ui.waitFor(roomChange("one", "created"));
    await type(a!, "!room create two B");
    await a!.ui.waitFor(isError("too-many-rooms"));
    assert.deepEqual(a!.c.roomNames, ["one"]);
  }, { roomMaxMembers: 2, roomMaxRooms: 1 });
});

Deno.test("a room whose members' keys take several records: every member's key is handed out, over several answers and requests, and all read the room", async () => {
  const many = Array.from({ length: 24 }, (_, i) => `u${i}`);
  await withRoomWorld(
    async (w) => {
      const members = [];
      for (const u of ["A", ...many]) members.push(await w.login(u));
      const [a, ...rest] = members;
      await type(a!, `!room create team ${many.join(" ")}`);
      await type(a!, "#team to all");
      for (const m of rest) await m.ui.waitFor(roomIn("team", "to all"));
      await type(rest[0]!, "#team back");
      await a!.ui.waitFor(roomIn("team", "back"));
      for (const m of members) assert.deepEqual(m.ui.since(isError()), []);
    },
    { maxFrameBytes: 8192 },
    many,
  );
});

Deno.test("an older list (room-rollback) and another room's list under the same name (room-forged) are refused; the member keeps its list", async () => {
  await withRoomWorld(async (w) => {
    const [a, b] = await Promise.all(
      (["A", "B"] as const).map((u) => w.login(u)),
    );
    const c0 = await w.login("C");
    await c0.quit();
    await type(a!, "!room create team B");
    await b!.ui.waitFor(roomChange("team", "created"));
    const first = (await w.rooms.room("team"))!.list;
    await type(a!, "!room add team C");
    await b!.ui.waitFor(roomChange("team", "added"));
    await b!.quit();

    // The server serves B the creator's own list of epoch 1 again, then a
    // room "team" that B made itself, with another room_id.
    const row = (await w.rooms.room("team"))!;
    await w.rooms.change({
      row: { ...row, epoch: row.epoch + 1 },
      entry: { kind: "list", from: "A", at: Date.now(), data: first },
      added: [],
      removed: [],
    });
    const other = await makeRoomList({
      roomId: new Uint8Array(16).fill(7),
      name: "team",
      creator: w.ids.B,
      creatorName: "B",
      epoch: 9,
      created: Date.now(),
      members: ["A", "B", "C"],
    });
    await w.rooms.change({
      row: { ...row, epoch: row.epoch + 2 },
      entry: { kind: "list", from: "A", at: Date.now(), data: other.bytes },
      added: [],
      removed: [],
    });
    const b2 = await w.login("B");
    await b2.ui.waitFor(isError("room-forged"));
    const codes = b2.ui.since(isError()).map((e) =>
      e.kind === "error" ? e.code : ""
    );
    assert.deepEqual(codes, ["room-rollback", "room-forged"]);
    await type(b2, "!rooms");
    const listing = await b2.ui.waitFor((e) => e.kind === "rooms");
    assert.ok(listing.kind === "rooms");
    assert.deepEqual(listing.rooms[0]?.members, ["A", "B", "C"]);
    assert.equal(listing.rooms[0]?.creator, "A");
  });
});

Deno.test("our chain's new position is saved before a message sealed with it leaves: when the save fails, nothing is sent", async () => {
  await withRoomWorld(async (w) => {
    const [a, b] = await Promise.all(
      (["A", "B"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B");
    await b!.ui.waitFor(roomChange("team", "created"));
    await type(a!, "#team one");
    await b!.ui.waitFor(roomIn("team", "one"));
    // A's disk fails from now on.
    const vault = w.roomVaults.get("A")! as RoomVault;
    vault.saveRoom = () => Promise.reject(new Error("disk full"));
    await type(a!, "#team two");
    await a!.ui.waitFor(isError());
    await sleep(100);
    assert.deepEqual(shown(b!, "team"), ["one"]);
    assert.equal(
      (await w.rooms.read("team", "A")).filter((e) => e.kind === "msg").length,
      0,
    );
  });
});

Deno.test("the creator's client signs the list without a leaver again at its next login when the first try failed", async () => {
  await withRoomWorld(async (w) => {
    const [a, b, c] = await Promise.all(
      (["A", "B", "C"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B C");
    await c!.ui.waitFor(roomChange("team", "created"));
    await b!.ui.waitFor(roomChange("team", "created"));
    const store = w.rooms as RoomStore;
    const change = store.change.bind(store);
    let failOnce = true;
    store.change = (ch) => {
      if (ch.entry.kind === "list" && failOnce) {
        failOnce = false;
        return Promise.reject(new Error("disk"));
      }
      return change(ch);
    };
    await type(c!, "!room leave team");
    await a!.ui.waitFor(roomChange("team", "left"));
    await a!.ui.waitFor(isError("store-failed"));
    assert.equal((await w.rooms.room("team"))?.epoch, 1);
    await a!.quit();
    await w.login("A");
    await eventually(
      async () => (await w.rooms.room("team"))?.epoch === 2,
      "the list without C",
    );
    assert.deepEqual((await w.rooms.room("team"))?.members, ["A", "B"]);
  });
});

Deno.test("after being removed, an older list of the room that names us is a rollback: we do not hold the room again", async () => {
  await withRoomWorld(async (w) => {
    const [a, b] = await Promise.all(
      (["A", "B", "C"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B C");
    await b!.ui.waitFor(roomChange("team", "created"));
    const old = (await w.rooms.room("team"))!;
    await type(a!, "!room remove team B");
    await b!.ui.waitFor(roomChange("team", "removed"));
    assert.deepEqual(b!.c.roomNames, []);
    await b!.quit();
    // The server shows B the epoch-1 list again, as a room of B's.
    const store = w.rooms as RoomStore;
    const roomsOf = store.roomsOf.bind(store), room = store.room.bind(store);
    store.roomsOf = (u) => u === "B" ? Promise.resolve(["team"]) : roomsOf(u);
    store.room = (n) => n === "team" ? Promise.resolve(old) : room(n);
    try {
      const b2 = await w.login("B");
      await b2.ui.waitFor(isError("room-rollback"));
      assert.deepEqual(b2.c.roomNames, []);
    } finally {
      store.roomsOf = roomsOf;
      store.room = room;
    }
  });
});

Deno.test("a text typed while our key cannot be handed out is reported not sent, and quitting does not wait for it", async () => {
  // Two room requests per user, ever: B's my-rooms at login and its
  // member-keys take them, so its room-keys is refused (rate-limited), and
  // so is every later try.
  await withRoomWorld(async (w) => {
    const a = await w.login("A");
    const b = await w.login("B", { waitForReplies: false });
    await type(a, "!room create team B");
    await b.ui.waitFor(roomChange("team", "created"));
    await b.ui.waitFor(isError("rate-limited"));
    const typed = b.c.handleLine("#team hi");
    await b.ui.waitFor(isError("not-sent"));
    await typed;
    await b.quit();
    assert.deepEqual(
      (await w.rooms.read("team", "A")).filter((e) => e.kind === "msg"),
      [],
    );
  }, { requestLimits: { room: { burst: 2, refillMs: 3_600_000 } } });
});

Deno.test("a message handled just before the link dropped is not refused as a replay when it is pushed again", async () => {
  await withRoomWorld(async (w) => {
    const [a, b] = await Promise.all(
      (["A", "B"] as const).map((u) => w.login(u)),
    );
    await type(a!, "!room create team B");
    await b!.ui.waitFor(roomChange("team", "created"));
    await b!.quit();
    await type(a!, "#team once");
    const [entry] = await storedMessages(w, "team", "B");
    assert.ok(entry);
    const b2 = await w.login("B");
    await b2.ui.waitFor(roomIn("team", "once"));
    await sleep(100);
    await b2.quit();
    // The server lost B's acknowledgement and pushes the entry again at
    // its seq: B acknowledges it without a word.
    const pos = await w.rooms.position("team", "B");
    assert.ok(pos && pos.upTo >= entry.seq);
    const b3 = await w.login("B");
    await type(a!, "#team next");
    await b3.ui.waitFor(roomIn("team", "next"));
    assert.deepEqual(b3.ui.since(isError()), []);
  });
});
