/**
 * Rooms, the member list and the leave of PROTOCOL.md section 10.1: the
 * layouts, the signatures over `list_th` and the leave's transcript
 * (recomputed here from the spec's text), every byte bound, the member
 * order decoders insist on, and `membersAt`.
 */
import assert from "node:assert/strict";
import { ByteWriter, concat, ProtocolError, utf8 } from "../lib/util/mod.ts";
import { transcriptHash, verifyPss } from "../lib/crypto/mod.ts";
import {
  decodeRoomLeave,
  decodeRoomList,
  DEFAULT_ROOM_MAX_MEMBERS,
  makeRoomLeave,
  makeRoomList,
  membersAt,
  ROOM_ID_BYTES,
  ROOM_MEMBERS_HARD_LIMIT,
  ROOM_VERSION,
  roomIdHex,
  type RoomLeave,
  type RoomList,
  verifyRoomLeave,
  verifyRoomList,
} from "../lib/proto/mod.ts";
import {
  assertRejectsIm,
  assertThrowsIm,
  flipBit,
  identities,
} from "./_helpers.ts";

const ids = await identities();
const ROOM_ID = new Uint8Array(16).map((_, i) => 0x10 + i);
const OTHER_ROOM_ID = new Uint8Array(16).fill(0xee);
const CREATED = 1_800_000_000_000;
const u8 = (...n: number[]) => new Uint8Array(n);

function list(over: Partial<Parameters<typeof makeRoomList>[0]> = {}) {
  return makeRoomList({
    roomId: ROOM_ID,
    name: "team",
    creator: ids.A,
    creatorName: "A",
    epoch: 4,
    created: CREATED,
    members: ["C", "B"],
    ...over,
  });
}

/** A ROOM_LIST laid out from the spec's text, with any signature. */
function encodeList(o: {
  version?: number;
  name?: string;
  creator?: string;
  epoch?: number;
  members: string[];
  sig?: Uint8Array;
}): Uint8Array {
  const w = new ByteWriter().u8(o.version ?? 1).bytes(ROOM_ID)
    .bytes8(utf8(o.name ?? "team")).bytes8(utf8(o.creator ?? "A"))
    .u32(o.epoch ?? 1).u64(BigInt(CREATED)).u16(o.members.length);
  for (const m of o.members) w.bytes8(utf8(m));
  return w.bytes16(o.sig ?? new Uint8Array(256)).finish();
}

Deno.test("constants of section 10.1", () => {
  assert.equal(ROOM_VERSION, 1);
  assert.equal(ROOM_ID_BYTES, 16);
  assert.equal(DEFAULT_ROOM_MAX_MEMBERS, 256);
  assert.equal(ROOM_MEMBERS_HARD_LIMIT, 1024);
});

Deno.test("a ROOM_LIST is the section 10.1 layout, signed with PSS over list_th recomputed from the spec's text", async () => {
  const l = await list();
  assert.deepEqual(l.members, ["A", "B", "C"]);
  assert.deepEqual(
    l.bytes,
    encodeList({ epoch: 4, members: ["A", "B", "C"], sig: l.sig }),
  );
  assert.equal(l.sig.length, 256);
  const u32 = new Uint8Array(4);
  new DataView(u32.buffer).setUint32(0, 4);
  const u64 = new Uint8Array(8);
  new DataView(u64.buffer).setBigUint64(0, BigInt(CREATED));
  const th = await transcriptHash("im v1 room list", [
    u8(1),
    ROOM_ID,
    utf8("team"),
    utf8("A"),
    ids.A.fingerprintBytes,
    u32,
    u64,
    utf8("A"),
    utf8("B"),
    utf8("C"),
  ]);
  assert.ok(
    await verifyPss(
      ids.A.publicIdentity.verify,
      l.sig,
      concat(utf8("im v1 room list signature"), u8(0), th),
    ),
  );
  const d = decodeRoomList(l.bytes);
  assert.deepEqual(d, l);
  await verifyRoomList(d, ids.A.publicIdentity);
});

Deno.test("makeRoomList() puts the creator first, then the rest in byte order of their UTF-8 names, without repeats", async () => {
  const l = await list({
    members: ["b", "B", "a", "_", "-", "0", "AB", "B", "A", "Ab"],
  });
  // Byte order, not locale order: '-' < '0' < 'A' < 'B' < '_' < 'a' < 'b'.
  assert.deepEqual(l.members, ["A", "-", "0", "AB", "Ab", "B", "_", "a", "b"]);
  assert.deepEqual(decodeRoomList(l.bytes).members, l.members);
  // The creator is added when absent; alone it makes a list of one.
  assert.deepEqual((await list({ members: [] })).members, ["A"]);
  assert.deepEqual(
    (await list({ creatorName: "B", creator: ids.B, members: ["A"] })).members,
    ["B", "A"],
  );
});

Deno.test("makeRoomList() refuses fields that would not decode as room-malformed", async () => {
  const cases: [string, Partial<Parameters<typeof makeRoomList>[0]>][] = [
    ["a room_id of 15 bytes", { roomId: new Uint8Array(15) }],
    ["epoch 0", { epoch: 0 }],
    ["epoch 2^32", { epoch: 2 ** 32 }],
    ["an invalid room name", { name: "a room" }],
    ["an invalid creator name", { creatorName: "" }],
    ["an invalid member", { members: ["../x"] }],
    ["a negative time", { created: -1 }],
    [
      "more than 1,024 members",
      { members: Array.from({ length: 1024 }, (_, i) => `m${i}`) },
    ],
  ];
  for (const [what, over] of cases) {
    await assertRejectsIm(
      () => list(over),
      ProtocolError,
      "room-malformed",
      what,
    );
  }
  // 1,024 with the creator is the most that decodes.
  const most = await list({
    members: Array.from({ length: 1023 }, (_, i) => `m${i}`),
  });
  assert.equal(decodeRoomList(most.bytes).members.length, 1024);
});

Deno.test("a flipped bit anywhere in a ROOM_LIST is refused, as room-malformed or room-forged", async () => {
  const l = await list();
  const outcomes = new Set<string>();
  for (let i = 0; i < l.bytes.length; i++) {
    for (const bit of [0, 7]) {
      const x = flipBit(l.bytes, i * 8 + bit);
      let d: RoomList;
      try {
        d = decodeRoomList(x);
      } catch (e) {
        assert.ok(e instanceof ProtocolError, `byte ${i}`);
        assert.equal(e.code, "room-malformed", `byte ${i}`);
        outcomes.add("room-malformed");
        continue;
      }
      await assertRejectsIm(
        () => verifyRoomList(d, ids.A.publicIdentity),
        ProtocolError,
        "room-forged",
        `byte ${i} bit ${bit}`,
      );
      outcomes.add("room-forged");
    }
  }
  assert.deepEqual([...outcomes].sort(), ["room-forged", "room-malformed"]);
});

Deno.test("verifyRoomList() refuses another key, and a list whose fields were changed after signing", async () => {
  const l = await list();
  await assertRejectsIm(
    () => verifyRoomList(l, ids.B.publicIdentity),
    ProtocolError,
    "room-forged",
  );
  // The same fields signed by B (as if B were the creator) do not pass for A's.
  const byB = await list({ creator: ids.B });
  await assertRejectsIm(
    () => verifyRoomList(byB, ids.A.publicIdentity),
    ProtocolError,
    "room-forged",
  );
  const changes: [string, Partial<RoomList>][] = [
    ["epoch", { epoch: 5 }],
    ["created", { created: CREATED + 1 }],
    ["room_id", { roomId: OTHER_ROOM_ID }],
    ["name", { name: "teams" }],
    ["a member less", { members: ["A", "B"] }],
    ["a member more", { members: ["A", "B", "C", "D"] }],
    ["version", { version: 2 }],
  ];
  for (const [what, over] of changes) {
    await assertRejectsIm(
      () => verifyRoomList({ ...l, ...over }, ids.A.publicIdentity),
      ProtocolError,
      "room-forged",
      what,
    );
  }
});

Deno.test("decodeRoomList() refuses a list out of order, with repeats, without the creator first, and every malformed field", () => {
  // The reference decodes.
  assert.deepEqual(
    decodeRoomList(encodeList({ members: ["A", "B", "C"] })).members,
    ["A", "B", "C"],
  );
  const good = encodeList({ members: ["A", "B"] });
  const cases: [string, Uint8Array][] = [
    ["unsorted", encodeList({ members: ["A", "C", "B"] })],
    ["a repeat", encodeList({ members: ["A", "B", "B"] })],
    ["the creator not first", encodeList({ members: ["B", "A"] })],
    ["the creator missing", encodeList({ members: ["B", "C"] })],
    ["the creator twice", encodeList({ members: ["A", "B", "A"] })],
    ["the creator twice, in order", encodeList({ members: ["A", "A"] })],
    ["locale order", encodeList({ members: ["A", "a", "B"] })],
    ["no members", encodeList({ members: [] })],
    ["an invalid member", encodeList({ members: ["A", "b c"] })],
    ["an invalid name", encodeList({ name: "", members: ["A"] })],
    ["an invalid creator", encodeList({ creator: "A!", members: ["A!"] })],
    ["epoch 0", encodeList({ epoch: 0, members: ["A"] })],
    ["version 2", encodeList({ version: 2, members: ["A"] })],
    [
      "a short signature",
      encodeList({ members: ["A"], sig: new Uint8Array(255) }),
    ],
    [
      "a long signature",
      encodeList({ members: ["A"], sig: new Uint8Array(513) }),
    ],
    ["a trailing byte", concat(good, u8(0))],
    ["a byte less", good.subarray(0, good.length - 1)],
    ["empty", new Uint8Array(0)],
    [
      "1,025 members",
      encodeList({
        members: [
          "A",
          ...Array.from(
            { length: 1024 },
            (_, i) => `m${String(i).padStart(4, "0")}`,
          ),
        ],
      }),
    ],
  ];
  for (const [what, b] of cases) {
    assertThrowsIm(
      () => decodeRoomList(b),
      ProtocolError,
      "room-malformed",
      what,
    );
  }
  // A list of the hard limit decodes.
  const most = encodeList({
    members: [
      "A",
      ...Array.from(
        { length: 1023 },
        (_, i) => `m${String(i).padStart(4, "0")}`,
      ),
    ],
  });
  assert.equal(decodeRoomList(most).members.length, 1024);
});

// ---------------------------------------------------------------------------
// ROOM_LEAVE

function leave(over: Partial<Parameters<typeof makeRoomLeave>[0]> = {}) {
  return makeRoomLeave({
    roomId: ROOM_ID,
    member: "B",
    identity: ids.B,
    epoch: 4,
    ...over,
  });
}

Deno.test("a ROOM_LEAVE is the section 10.1 layout, signed with PSS over its transcript recomputed from the spec's text", async () => {
  const l = await leave();
  assert.deepEqual(
    l.bytes,
    new ByteWriter().u8(1).bytes(ROOM_ID).bytes8(utf8("B")).u32(4)
      .bytes16(l.sig).finish(),
  );
  const th = await transcriptHash("im v1 room leave", [
    u8(1),
    ROOM_ID,
    utf8("B"),
    ids.B.fingerprintBytes,
    u8(0, 0, 0, 4),
  ]);
  assert.ok(
    await verifyPss(
      ids.B.publicIdentity.verify,
      l.sig,
      concat(utf8("im v1 room leave signature"), u8(0), th),
    ),
  );
  const d = decodeRoomLeave(l.bytes);
  assert.deepEqual(d, l);
  await verifyRoomLeave(d, ids.B.publicIdentity);
});

Deno.test("a leave verifies only with its member's key, and no flipped bit passes", async () => {
  const l = await leave();
  await assertRejectsIm(
    () => verifyRoomLeave(l, ids.A.publicIdentity),
    ProtocolError,
    "room-forged",
  );
  for (let i = 0; i < l.bytes.length; i++) {
    const x = flipBit(l.bytes, i * 8 + (i % 8));
    let d: RoomLeave;
    try {
      d = decodeRoomLeave(x);
    } catch (e) {
      assert.ok(e instanceof ProtocolError && e.code === "room-malformed");
      continue;
    }
    await assertRejectsIm(
      () => verifyRoomLeave(d, ids.B.publicIdentity),
      ProtocolError,
      "room-forged",
      `byte ${i}`,
    );
  }
  // Every field is under the signature.
  for (
    const over of [{ epoch: 5 }, { member: "C" }, { roomId: OTHER_ROOM_ID }]
  ) {
    await assertRejectsIm(
      () => verifyRoomLeave({ ...l, ...over }, ids.B.publicIdentity),
      ProtocolError,
      "room-forged",
    );
  }
  const bad: [string, Uint8Array][] = [
    ["version 2", concat(u8(2), l.bytes.subarray(1))],
    [
      "epoch 0",
      new ByteWriter().u8(1).bytes(ROOM_ID).bytes8(utf8("B")).u32(0).bytes16(
        l.sig,
      ).finish(),
    ],
    [
      "an invalid member",
      new ByteWriter().u8(1).bytes(ROOM_ID).bytes8(utf8("B B")).u32(1).bytes16(
        l.sig,
      ).finish(),
    ],
    ["a trailing byte", concat(l.bytes, u8(0))],
    ["truncated", l.bytes.subarray(0, 30)],
  ];
  for (const [what, b] of bad) {
    assertThrowsIm(
      () => decodeRoomLeave(b),
      ProtocolError,
      "room-malformed",
      what,
    );
  }
  await assertRejectsIm(
    () => leave({ epoch: 0 }),
    ProtocolError,
    "room-malformed",
  );
});

Deno.test("membersAt() drops every member with a leave of this room for the list's epoch or later, and nothing else", async () => {
  const l = await list({ members: ["B", "C", "D", "E"] });
  assert.equal(l.epoch, 4);
  const lv = (member: string, epoch: number, roomId = ROOM_ID) =>
    ({ version: 1, roomId, member, epoch }) as RoomLeave;
  assert.deepEqual(membersAt(l, []), ["A", "B", "C", "D", "E"]);
  assert.deepEqual(
    membersAt(l, [
      lv("B", 3), // before this list: the creator named B again since
      lv("C", 4), // at this epoch
      lv("D", 9), // later
      lv("E", 4, OTHER_ROOM_ID), // another room
      lv("Z", 4), // not a member
    ]),
    ["A", "B", "E"],
  );
  // A real, verified leave does the same.
  const real = await leave({ epoch: 4 });
  await verifyRoomLeave(real, ids.B.publicIdentity);
  assert.deepEqual(membersAt(l, [real]), ["A", "C", "D", "E"]);
  // The creator's own leave drops it too: the room keeps the others.
  assert.deepEqual(membersAt(l, [lv("A", 4)]), ["B", "C", "D", "E"]);
});

Deno.test("roomIdHex() is 32 lowercase hex digits; another length is bad-length", () => {
  assert.equal(roomIdHex(ROOM_ID), "101112131415161718191a1b1c1d1e1f");
  assertThrowsIm(
    () => roomIdHex(new Uint8Array(15)),
    ProtocolError,
    "bad-length",
  );
});
