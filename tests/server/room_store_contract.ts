/**
 * The contract of a {@link RoomStore} (lib/server/seams.ts, PROTOCOL.md
 * 10.4), as tests any implementation runs: `roomStoreContract(
 * "MemoryRoomStore", (clock) => new MemoryRoomStore(clock))`. The SQLite one
 * runs the same (tests/server/room_store_test.ts).
 * @module
 */

import assert from "node:assert/strict";
import type {
  RoomEntry,
  RoomEntryKind,
  RoomRow,
  RoomStore,
} from "../../lib/server/mod.ts";
import { ProtocolError } from "../../lib/util/mod.ts";

/** Makes a fresh, empty room store whose clock is `clock`. */
export type RoomStoreFactory = (
  clock: () => number,
) => RoomStore | Promise<RoomStore>;

const bytes = (...v: number[]) => new Uint8Array(v);

/** A room row: creator A, the members given, its list's bytes naming the epoch. */
function roomRow(
  name: string,
  members: readonly string[],
  epoch = 1,
  leaves: readonly Uint8Array[] = [],
): RoomRow {
  return {
    name,
    roomId: new Uint8Array(16).fill(name.length),
    creator: "A",
    epoch,
    list: bytes(0x4c, epoch, ...members.map((m) => m.charCodeAt(0))),
    leaves,
    members,
  };
}

/** An entry to append; `at` is the caller's, which the store replaces with its clock. */
const entry = (
  kind: RoomEntryKind,
  from: string,
  ...data: number[]
): Omit<RoomEntry, "seq"> => ({ kind, from, at: -1, data: bytes(...data) });

/** A `msg` entry. */
const msg = (from: string, ...data: number[]) => entry("msg", from, ...data);

/** The change to `members` at `epoch` by a new list. */
const listChange = (
  name: string,
  members: readonly string[],
  epoch: number,
  added: readonly string[],
  removed: readonly string[],
) => ({
  row: roomRow(name, members, epoch),
  entry: entry("list", "A", 0x4c, epoch),
  added,
  removed,
});

/** Rejects with a {@link ProtocolError} of `code`. */
async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected a ProtocolError: ${e}`);
    assert.equal(e.code, code);
    return true;
  });
}

const seqsOf = (entries: readonly RoomEntry[]) => entries.map((e) => e.seq);

/**
 * Register the contract's tests.
 * @param name the implementation, in each test's name
 * @param make a fresh store per test
 */
export function roomStoreContract(name: string, make: RoomStoreFactory): void {
  /** Run `fn` on a fresh store whose clock the test moves; always closed. */
  const withRooms = (
    what: string,
    fn: (s: RoomStore, clock: { now: number }) => Promise<void>,
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

  withRooms(
    "create() stores the row and the list entry at seq 1, with a position just before it for each member",
    async (s, clock) => {
      const row = roomRow("ops", ["A", "B", "C"], 1, [bytes(9, 9)]);
      clock.now = 1_234;
      assert.equal(await s.create(row, entry("list", "A", 1, 2, 3)), 1);
      assert.deepEqual(await s.room("ops"), row);
      assert.equal(await s.room("nope"), undefined);
      for (const m of ["A", "B", "C"]) {
        assert.deepEqual(await s.roomsOf(m), ["ops"]);
        assert.equal(await s.memberships(m), 1);
        assert.deepEqual(await s.position("ops", m), { upTo: 0 });
      }
      assert.deepEqual(await s.roomsOf("D"), []);
      assert.equal(await s.memberships("D"), 0);
      assert.equal(await s.position("ops", "D"), undefined);
      assert.deepEqual(await s.read("ops", "B"), [
        { seq: 1, kind: "list", from: "A", at: 1_234, data: bytes(1, 2, 3) },
      ]);
    },
  );

  withRooms(
    "create() of a name taken throws room-exists and leaves the room as it was",
    async (s) => {
      const row = roomRow("ops", ["A", "B"]);
      await s.create(row, entry("list", "A", 1));
      await rejectsWith(
        s.create(roomRow("ops", ["A", "C"]), entry("list", "A", 2)),
        "room-exists",
      );
      assert.deepEqual(await s.room("ops"), row);
      assert.deepEqual(await s.roomsOf("C"), []);
      assert.deepEqual(seqsOf(await s.read("ops", "A")), [1]);
    },
  );

  withRooms(
    "roomsOf() lists a user's rooms by name, memberships() counts them",
    async (s) => {
      await s.create(roomRow("zeta", ["A", "B"]), entry("list", "A"));
      await s.create(roomRow("alpha", ["A", "B", "C"]), entry("list", "A"));
      await s.create(roomRow("mid", ["A", "C"]), entry("list", "A"));
      assert.deepEqual(await s.roomsOf("A"), ["alpha", "mid", "zeta"]);
      assert.deepEqual(await s.roomsOf("B"), ["alpha", "zeta"]);
      assert.equal(await s.memberships("A"), 3);
      assert.equal(await s.memberships("C"), 2);
    },
  );

  withRooms(
    "the store keeps its own copies of what it is given and hands out",
    async (s) => {
      const row = roomRow("ops", ["A", "B"]);
      const list = entry("list", "A", 7);
      await s.create(row, list);
      (row.list as Uint8Array)[0] = 99;
      (row.roomId as Uint8Array)[0] = 99;
      list.data[0] = 99;
      const got = await s.room("ops");
      assert.deepEqual(got, roomRow("ops", ["A", "B"]));
      got!.list[1] = 99;
      assert.deepEqual(await s.room("ops"), roomRow("ops", ["A", "B"]));
      const [read] = await s.read("ops", "A");
      assert.deepEqual(read!.data, bytes(7));
      read!.data[0] = 99;
      assert.deepEqual((await s.read("ops", "A"))[0]!.data, bytes(7));
    },
  );

  withRooms(
    "append() gives increasing seqs with the store's time; no-room for a room that does not exist",
    async (s, clock) => {
      await s.create(roomRow("ops", ["A", "B"]), entry("list", "A"));
      const seqs: number[] = [];
      for (let i = 0; i < 4; i++) {
        clock.now = 2_000 + i;
        seqs.push(
          await s.append("ops", i % 2 ? entry("keys", "B", i) : msg("A", i)),
        );
      }
      assert.deepEqual(seqs, [2, 3, 4, 5]);
      const got = await s.read("ops", "B", { after: 1 });
      assert.deepEqual(
        got.map((e) => [e.seq, e.kind, e.from, e.at, [...e.data]]),
        [
          [2, "msg", "A", 2_000, [0]],
          [3, "keys", "B", 2_001, [1]],
          [4, "msg", "A", 2_002, [2]],
          [5, "keys", "B", 2_003, [3]],
        ],
      );
      await rejectsWith(s.append("nope", msg("A", 1)), "no-room");
      assert.equal(await s.room("nope"), undefined);
    },
  );

  withRooms(
    "read() returns the entries after `after`, at most `limit`, in order of seq; a bad argument is a RangeError",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B"]), entry("list", "A"));
      for (let i = 0; i < 5; i++) await s.append("ops", msg("A", i));
      assert.deepEqual(seqsOf(await s.read("ops", "B")), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(seqsOf(await s.read("ops", "B", { after: 3 })), [
        4,
        5,
        6,
      ]);
      assert.deepEqual(seqsOf(await s.read("ops", "B", { limit: 2 })), [1, 2]);
      assert.deepEqual(
        seqsOf(await s.read("ops", "B", { after: 2, limit: 3 })),
        [3, 4, 5],
      );
      assert.deepEqual(await s.read("ops", "B", { after: 6 }), []);
      await assert.rejects(s.read("ops", "B", { limit: 0 }), RangeError);
      await assert.rejects(s.read("ops", "B", { after: -1 }), RangeError);
      await assert.rejects(s.read("ops", "B", { limit: 1.5 }), RangeError);
    },
  );

  withRooms(
    "read() returns nothing to a user with no position in the room, nor of a room that does not exist",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B"]), entry("list", "A"));
      await s.append("ops", msg("A", 1));
      assert.deepEqual(await s.read("ops", "C"), []);
      assert.deepEqual(await s.read("nope", "A"), []);
    },
  );

  withRooms(
    "read() starts after the reader's position: nothing it acknowledged",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      for (let i = 0; i < 3; i++) await s.append("ops", msg("A", i));
      await s.ack("ops", "B", 3);
      // C has not read 2 and 3: they are kept, but B is past them.
      assert.deepEqual(seqsOf(await s.read("ops", "B")), [4]);
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [1, 2, 3, 4]);
    },
  );

  withRooms(
    "change() with a new list replaces the row; an added member's position starts just before the entry: it reads the entry and what follows, nothing before",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B"]), entry("list", "A"));
      await s.append("ops", msg("A", 1));
      const change = listChange("ops", ["A", "B", "C"], 2, ["C"], []);
      const seq = await s.change(change);
      assert.equal(seq, 3);
      assert.deepEqual(await s.room("ops"), change.row);
      assert.deepEqual(await s.position("ops", "C"), { upTo: seq - 1 });
      assert.deepEqual(await s.roomsOf("C"), ["ops"]);
      assert.equal(await s.memberships("C"), 1);
      const after = await s.append("ops", msg("B", 2));
      const got = await s.read("ops", "C");
      assert.deepEqual(seqsOf(got), [seq, after]);
      assert.deepEqual(got[0]!.kind, "list");
      // The members' positions did not move.
      assert.deepEqual(await s.position("ops", "B"), { upTo: 0 });
      assert.deepEqual(seqsOf(await s.read("ops", "B")), [1, 2, 3, 4]);
    },
  );

  withRooms(
    "change() removing a member ends its position at the entry: it reads up to the entry, nothing after; once it acknowledges the entry its position is dropped",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      const m = await s.append("ops", msg("A", 1));
      const seq = await s.change(listChange("ops", ["A", "B"], 2, [], ["C"]));
      await s.append("ops", msg("A", 2));
      assert.deepEqual(await s.position("ops", "C"), { upTo: 0, until: seq });
      assert.equal(await s.memberships("C"), 0);
      assert.deepEqual(await s.roomsOf("C"), ["ops"]); // entries still to read
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [1, m, seq]);
      assert.deepEqual(seqsOf(await s.read("ops", "C", { after: seq })), []);
      assert.deepEqual(await s.room("ops"), roomRow("ops", ["A", "B"], 2));

      await s.ack("ops", "C", m);
      assert.deepEqual(await s.position("ops", "C"), { upTo: m, until: seq });
      await s.ack("ops", "C", seq + 5); // no further than its `until`
      assert.equal(await s.position("ops", "C"), undefined);
      assert.deepEqual(await s.roomsOf("C"), []);
      assert.deepEqual(await s.read("ops", "C"), []);
      assert.deepEqual(await s.roomsOf("B"), ["ops"]);
    },
  );

  withRooms(
    "change() with a leave: the member that left reads up to its leave and is no longer counted; the epoch stays",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      const statement = bytes(0x4c, 0x45, 1);
      const row = roomRow("ops", ["A", "C"], 1, [statement]);
      const seq = await s.change({
        row,
        entry: { kind: "leave", from: "B", at: 0, data: statement },
        added: [],
        removed: ["B"],
      });
      assert.equal(seq, 2);
      assert.deepEqual(await s.room("ops"), row);
      assert.deepEqual(await s.position("ops", "B"), { upTo: 0, until: 2 });
      assert.equal(await s.memberships("B"), 0);
      const after = await s.append("ops", msg("A", 1));
      const got = await s.read("ops", "B");
      assert.deepEqual(seqsOf(got), [1, 2]);
      assert.equal(got[1]!.kind, "leave");
      assert.equal(await s.delivered("ops", after, "A"), 0);
      await s.ack("ops", "C", after);
      assert.equal(await s.delivered("ops", after, "A"), 1);

      // A second leave: the row keeps the leaves in the order they came.
      const second = bytes(0xff);
      const both = roomRow("ops", ["A"], 1, [statement, second]);
      await s.change({
        row: both,
        entry: { kind: "leave", from: "C", at: 0, data: second },
        added: [],
        removed: ["C"],
      });
      assert.deepEqual(await s.room("ops"), both);
      // The creator's next list starts the epoch with no leaves.
      await s.change(listChange("ops", ["A"], 2, [], []));
      assert.deepEqual(await s.room("ops"), roomRow("ops", ["A"], 2));
    },
  );

  withRooms(
    "change() throws room-conflict for a list not of the epoch after the stored one, or a leave not of the stored epoch, and changes nothing",
    async (s) => {
      const row = roomRow("ops", ["A", "B"]);
      await s.create(row, entry("list", "A"));
      for (const epoch of [1, 3]) {
        await rejectsWith(
          s.change(listChange("ops", ["A", "B", "C"], epoch, ["C"], [])),
          "room-conflict",
        );
      }
      const leave = (epoch: number) => ({
        row: roomRow("ops", ["A"], epoch, [bytes(epoch)]),
        entry: entry("leave", "B", epoch),
        added: [],
        removed: ["B"],
      });
      await rejectsWith(s.change(leave(2)), "room-conflict");
      assert.deepEqual(await s.room("ops"), row);
      assert.equal(await s.position("ops", "C"), undefined);
      assert.deepEqual(await s.position("ops", "B"), { upTo: 0 });
      assert.deepEqual(seqsOf(await s.read("ops", "A")), [1]);

      assert.equal(await s.change(leave(1)), 2);
      await rejectsWith(s.change(leave(2)), "room-conflict");
      assert.equal(
        await s.change(listChange("ops", ["A", "C"], 2, ["C"], [])),
        3,
      );
      // The list of epoch 2 won: a second one for epoch 2 lost.
      await rejectsWith(
        s.change(listChange("ops", ["A", "D"], 2, ["D"], [])),
        "room-conflict",
      );
      assert.equal((await s.room("ops"))?.epoch, 2);
      assert.deepEqual(await s.roomsOf("D"), []);
    },
  );

  withRooms(
    "change() with a leave throws room-conflict unless its leaves are the stored ones and exactly one more: a leave built from an older row would drop one, and changes nothing",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C", "D"]), entry("list", "A"));
      const [lb, lc, ld] = [bytes(0xb), bytes(0xc), bytes(0xd)];
      const leave = (who: string, leaves: Uint8Array[], members: string[]) => ({
        row: roomRow("ops", members, 1, leaves),
        entry: {
          kind: "leave" as const,
          from: who,
          at: 0,
          data: leaves.at(-1)!,
        },
        added: [],
        removed: [who],
      });
      const afterB = leave("B", [lb], ["A", "C", "D"]);
      assert.equal(await s.change(afterB), 2);
      // C's leave built from the row before B's: it would make B a member again.
      await rejectsWith(
        s.change(leave("C", [lc], ["A", "B", "D"])),
        "room-conflict",
      );
      // Two more, or the stored one replaced, are no better.
      await rejectsWith(
        s.change(leave("C", [lb, ld, lc], ["A"])),
        "room-conflict",
      );
      await rejectsWith(
        s.change(leave("C", [ld, lc], ["A", "B"])),
        "room-conflict",
      );
      await rejectsWith(
        s.change(leave("C", [lb], ["A", "D"])),
        "room-conflict",
      );
      assert.deepEqual(await s.room("ops"), afterB.row);
      assert.deepEqual(await s.position("ops", "C"), { upTo: 0 });
      assert.equal(await s.memberships("C"), 1);
      assert.deepEqual(seqsOf(await s.read("ops", "A")), [1, 2]);

      const afterC = leave("C", [lb, lc], ["A", "D"]);
      assert.equal(await s.change(afterC), 3);
      assert.deepEqual(await s.room("ops"), afterC.row);
      assert.deepEqual(await s.position("ops", "C"), { upTo: 0, until: 3 });
    },
  );

  withRooms(
    "a room with no member and no position left is deleted whole by the ack that drops its last position: row, leaves, entries, positions; its name is free and a room made under it starts at seq 1",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      await s.create(roomRow("other", ["A", "B"]), entry("list", "A", 5));
      const m = await s.append("ops", msg("B", 1, 2));
      // The creator removes C, then B and A leave: no member is left.
      const out = await s.change(listChange("ops", ["A", "B"], 2, [], ["C"]));
      const [lb, la] = [bytes(0xb), bytes(0xa)];
      const goneB = await s.change({
        row: roomRow("ops", ["A"], 2, [lb]),
        entry: { kind: "leave", from: "B", at: 0, data: lb },
        added: [],
        removed: ["B"],
      });
      const goneA = await s.change({
        row: roomRow("ops", [], 2, [lb, la]),
        entry: { kind: "leave", from: "A", at: 0, data: la },
        added: [],
        removed: ["A"],
      });
      // Each still has entries to read: the room stays until they are read.
      assert.deepEqual((await s.room("ops"))?.members, []);
      assert.equal(await s.ack("ops", "A", goneA), 1); // its leave
      assert.equal(await s.position("ops", "A"), undefined);
      assert.deepEqual(await s.roomsOf("A"), ["other"]);
      assert.equal(await s.ack("ops", "B", goneB), 1);
      assert.ok(await s.room("ops"), "C has not read up to its removal");
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [1, m, out]);
      assert.equal(await s.ack("ops", "C", m), 2);
      assert.ok(await s.room("ops"));
      // C's ack drops the last position: the room goes.
      assert.equal(await s.ack("ops", "C", out), 1);
      assert.equal(await s.room("ops"), undefined);
      for (const u of ["A", "B", "C"]) {
        assert.equal(await s.position("ops", u), undefined);
        assert.deepEqual(await s.read("ops", u), []);
        assert.equal(await s.memberships(u), u === "C" ? 0 : 1);
      }
      assert.deepEqual(await s.roomsOf("C"), []);
      assert.equal(await s.bytes("ops"), 0);
      await rejectsWith(s.append("ops", msg("A", 1)), "no-room");
      // The other room is untouched.
      assert.deepEqual(seqsOf(await s.read("other", "B")), [1]);
      assert.deepEqual(await s.roomsOf("B"), ["other"]);

      // The name is free: a new room under it starts afresh.
      const again = roomRow("ops", ["B", "C"]);
      assert.equal(await s.create(again, entry("list", "B", 7)), 1);
      assert.deepEqual(await s.room("ops"), again);
      assert.deepEqual(await s.position("ops", "C"), { upTo: 0 });
      assert.deepEqual(
        (await s.read("ops", "C")).map((e) => [e.seq, e.kind, [...e.data]]),
        [[1, "list", [7]]],
      );
    },
  );

  withRooms(
    "a room whose members all left with nothing left to read is deleted by the last one's ack; a room with a member left is kept with no entries",
    async (s) => {
      await s.create(roomRow("solo", ["A"]), entry("list", "A"));
      const l = bytes(0xa);
      const gone = await s.change({
        row: roomRow("solo", [], 1, [l]),
        entry: { kind: "leave", from: "A", at: 0, data: l },
        added: [],
        removed: ["A"],
      });
      assert.ok(await s.room("solo"), "A's position ends at its leave");
      // An entry past every position's end goes with the room too.
      await s.append("solo", entry("keys", "A", 1));
      assert.equal(await s.bytes("solo"), 2);
      assert.equal(await s.ack("solo", "A", gone), 3);
      assert.equal(await s.bytes("solo"), 0);
      assert.equal(await s.room("solo"), undefined);
      assert.deepEqual(await s.roomsOf("A"), []);

      await s.create(roomRow("kept", ["A", "B"]), entry("list", "A"));
      await s.ack("kept", "A", 1);
      assert.equal(await s.ack("kept", "B", 1), 1);
      assert.equal(await s.bytes("kept"), 0);
      assert.deepEqual(await s.room("kept"), roomRow("kept", ["A", "B"]));
    },
  );

  withRooms(
    "change() of a room that does not exist throws no-room",
    async (s) => {
      await rejectsWith(
        s.change(listChange("nope", ["A", "B"], 2, ["B"], [])),
        "no-room",
      );
      assert.equal(await s.room("nope"), undefined);
      assert.deepEqual(await s.roomsOf("B"), []);
    },
  );

  withRooms(
    "a member removed and added again before it read its `until` starts afresh just before the entry that adds it; one added who is a member already keeps its position",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      await s.append("ops", msg("A", 1));
      const out = await s.change(listChange("ops", ["A", "B"], 2, [], ["C"]));
      await s.append("ops", msg("A", 2));
      const back = await s.change(
        listChange("ops", ["A", "B", "C"], 3, ["B", "C"], []),
      );
      assert.ok(back > out);
      assert.deepEqual(await s.position("ops", "C"), { upTo: back - 1 });
      assert.deepEqual(await s.position("ops", "B"), { upTo: 0 });
      assert.equal(await s.memberships("C"), 1);
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [back]);
    },
  );

  withRooms(
    "ack() moves a position forward only, never past the newest entry; a bad seq is a RangeError",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      for (let i = 0; i < 3; i++) await s.append("ops", msg("A", i));
      await s.ack("ops", "B", 3);
      assert.deepEqual(await s.position("ops", "B"), { upTo: 3 });
      assert.equal(await s.ack("ops", "B", 1), 0);
      assert.deepEqual(await s.position("ops", "B"), { upTo: 3 });
      assert.equal(await s.ack("ops", "B", 3), 0);
      // Acknowledging entries not appended yet skips none of them.
      await s.ack("ops", "C", 100);
      assert.deepEqual(await s.position("ops", "C"), { upTo: 4 });
      const next = await s.append("ops", msg("A", 9));
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [next]);
      assert.equal(await s.ack("ops", "D", 3), 0);
      assert.equal(await s.ack("nope", "B", 3), 0);
      assert.equal(await s.position("ops", "D"), undefined);
      await assert.rejects(s.ack("ops", "B", -1), RangeError);
      await assert.rejects(s.ack("ops", "B", 2.5), RangeError);
    },
  );

  withRooms(
    "ack() deletes the entries every position passed and returns how many; an entry one member has not read survives",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      for (let i = 0; i < 4; i++) await s.append("ops", msg("A", i, i)); // 2..5
      assert.equal(await s.bytes("ops"), 8);
      assert.equal(await s.ack("ops", "A", 5), 0);
      assert.equal(await s.ack("ops", "B", 3), 0);
      assert.equal(await s.ack("ops", "C", 2), 2); // 1, 2: everyone past them
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [3, 4, 5]);
      assert.equal(await s.bytes("ops"), 6);
      assert.equal(await s.ack("ops", "B", 5), 0); // C has not read 3..5
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [3, 4, 5]);
      assert.equal(await s.ack("ops", "C", 3), 1);
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [4, 5]);
      assert.equal(await s.ack("ops", "C", 5), 2);
      assert.deepEqual(await s.read("ops", "C", { after: 0 }), []);
      assert.equal(await s.bytes("ops"), 0);
      // The positions stay: a member's is kept with nothing left to read.
      assert.deepEqual(await s.position("ops", "C"), { upTo: 5 });
    },
  );

  withRooms(
    "a removed member holds back only the entries up to its `until`; when it lets go of them, they are deleted",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      const m = await s.append("ops", msg("A", 1));
      const out = await s.change(listChange("ops", ["A", "B"], 2, [], ["C"]));
      const later = await s.append("ops", msg("A", 2));
      await s.ack("ops", "A", later);
      // 1..out wait for C; `later` is not for C, so it goes.
      assert.equal(await s.ack("ops", "B", later), 1);
      assert.deepEqual(seqsOf(await s.read("ops", "A", { after: 0 })), []);
      assert.deepEqual(seqsOf(await s.read("ops", "C")), [1, m, out]);
      assert.equal(await s.ack("ops", "C", out), 3);
      assert.equal(await s.bytes("ops"), 0);
      assert.equal(await s.position("ops", "C"), undefined);
    },
  );

  withRooms(
    "delivered() counts the members other than the sender whose position is at or past the seq; removed members are not counted",
    async (s) => {
      await s.create(
        roomRow("ops", ["A", "B", "C", "D", "E"]),
        entry("list", "A"),
      );
      const seq = await s.append("ops", msg("A", 1));
      assert.equal(await s.delivered("ops", seq, "A"), 0);
      await s.ack("ops", "A", seq); // the sender
      await s.ack("ops", "B", seq);
      await s.ack("ops", "C", seq - 1); // before it
      assert.equal(await s.delivered("ops", seq, "A"), 1);
      assert.equal(await s.delivered("ops", seq, "C"), 2);
      assert.equal(await s.delivered("ops", seq - 1, "A"), 2);
      await s.ack("ops", "D", seq);
      assert.equal(await s.delivered("ops", seq, "A"), 2);
      // E is removed; D, past the message, too: neither counts.
      await s.change(listChange("ops", ["A", "B", "C"], 2, [], ["D", "E"]));
      assert.equal(await s.delivered("ops", seq, "A"), 1);
      const next = await s.append("ops", msg("B", 2));
      await s.ack("ops", "D", next);
      await s.ack("ops", "A", next);
      assert.equal(await s.delivered("ops", next, "B"), 1);
      assert.equal(await s.delivered("nope", 1, "A"), 0);
    },
  );

  withRooms(
    "expire() deletes the entries of every room appended before `before`, the oldest first, at most `limit`",
    async (s, clock) => {
      clock.now = 100;
      await s.create(roomRow("one", ["A", "B"]), entry("list", "A")); // at 100
      clock.now = 150;
      await s.create(roomRow("two", ["A", "C"]), entry("list", "A")); // at 150
      clock.now = 200;
      await s.append("one", msg("A", 1)); // one 2 at 200
      clock.now = 250;
      await s.append("two", msg("A", 2)); // two 2 at 250
      clock.now = 300;
      await s.append("one", msg("A", 3)); // one 3 at 300
      assert.equal(await s.expire(250, { limit: 2 }), 2); // one 1, two 1
      assert.deepEqual(seqsOf(await s.read("one", "B")), [2, 3]);
      assert.deepEqual(seqsOf(await s.read("two", "C")), [2]);
      assert.equal(await s.expire(250), 1); // one 2
      assert.deepEqual(seqsOf(await s.read("one", "B")), [3]);
      assert.equal(await s.expire(250), 0);
      assert.equal(await s.expire(1_000), 2);
      assert.deepEqual(await s.read("one", "B"), []);
      assert.deepEqual(await s.read("two", "C"), []);
      // The rooms and positions stay.
      assert.deepEqual(await s.roomsOf("A"), ["one", "two"]);
      await assert.rejects(s.expire(1_000, { limit: 0 }), RangeError);
    },
  );

  withRooms("bytes() sums the data the room's log holds", async (s) => {
    await s.create(roomRow("ops", ["A", "B"]), entry("list", "A", 1, 2, 3));
    await s.create(roomRow("other", ["A"]), entry("list", "A", 1));
    assert.equal(await s.bytes("ops"), 3);
    await s.append("ops", msg("A", ...new Array(100).fill(7)));
    await s.append("ops", entry("keys", "B", 1, 2));
    assert.equal(await s.bytes("ops"), 105);
    assert.equal(await s.bytes("other"), 1);
    assert.equal(await s.bytes("nope"), 0);
  });

  withRooms(
    "a seq is never reused, once entries were acknowledged or expired",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B"]), entry("list", "A"));
      const a = await s.append("ops", msg("A", 1));
      await s.ack("ops", "A", a);
      assert.equal(await s.ack("ops", "B", a), 2);
      assert.equal(await s.bytes("ops"), 0);
      const b = await s.append("ops", msg("A", 2));
      assert.equal(b, a + 1);
      assert.equal(await s.expire(Number.MAX_SAFE_INTEGER), 1);
      const c = await s.change(
        listChange("ops", ["A", "B", "C"], 2, ["C"], []),
      );
      assert.equal(c, b + 1);
      assert.deepEqual(seqsOf(await s.read("ops", "B")), [c]);
    },
  );

  withRooms(
    "appendKeys() stores the keys entry and its pairs together: keyed() names them at that epoch only, a list empties them, another epoch is room-stale-epoch",
    async (s) => {
      await s.create(roomRow("ops", ["A", "B", "C"]), entry("list", "A"));
      assert.deepEqual(await s.keyed("ops", 1, "A"), []);
      const k = await s.appendKeys("ops", entry("keys", "A", 1), {
        epoch: 1,
        recipients: ["C"],
      });
      assert.equal(k, 2);
      await s.appendKeys("ops", entry("keys", "A", 2), {
        epoch: 1,
        recipients: ["B"],
      });
      assert.deepEqual(await s.keyed("ops", 1, "A"), ["B", "C"]);
      assert.deepEqual(await s.keyed("ops", 1, "B"), []);
      assert.deepEqual(await s.keyed("ops", 2, "A"), []);
      assert.deepEqual(await s.keyed("nope", 1, "A"), []);
      assert.deepEqual(
        (await s.read("ops", "B")).map((e) => [e.seq, e.kind]),
        [[1, "list"], [2, "keys"], [3, "keys"]],
      );
      await rejectsWith(
        s.appendKeys("ops", entry("keys", "B", 3), {
          epoch: 2,
          recipients: ["A"],
        }),
        "room-stale-epoch",
      );
      await rejectsWith(
        s.appendKeys("nope", entry("keys", "B", 3), {
          epoch: 1,
          recipients: ["A"],
        }),
        "no-room",
      );
      // A leave keeps the epoch and its pairs; a list starts the next afresh.
      await s.change({
        row: roomRow("ops", ["A", "B"], 1, [bytes(7)]),
        entry: entry("leave", "C", 7),
        added: [],
        removed: ["C"],
      });
      assert.deepEqual(await s.keyed("ops", 1, "A"), ["B", "C"]);
      await s.change(listChange("ops", ["A", "B"], 2, [], []));
      assert.deepEqual(await s.keyed("ops", 1, "A"), []);
      assert.deepEqual(await s.keyed("ops", 2, "A"), []);
    },
  );

  withRooms(
    "change() with a base the stored row no longer is (another epoch, room id or count of leaves) is room-conflict and changes nothing",
    async (s) => {
      const first = roomRow("ops", ["A", "B", "C"]);
      await s.create(first, entry("list", "A"));
      // A leave lands meanwhile: a list planned on the row before it is stale.
      const left = roomRow("ops", ["A", "B"], 1, [bytes(7)]);
      await s.change({
        row: left,
        entry: entry("leave", "C", 7),
        added: [],
        removed: ["C"],
        base: first,
      });
      await rejectsWith(
        s.change({
          ...listChange("ops", ["A", "B", "C"], 2, [], []),
          base: first,
        }),
        "room-conflict",
      );
      await rejectsWith(
        s.change({
          ...listChange("ops", ["A", "B", "C"], 2, [], []),
          base: { ...left, roomId: new Uint8Array(16) },
        }),
        "room-conflict",
      );
      assert.deepEqual(await s.room("ops"), left);
      // Planned again on the row as it is, it lands, and C starts again.
      await s.change({
        ...listChange("ops", ["A", "B", "C"], 2, ["C"], []),
        base: left,
      });
      assert.equal((await s.room("ops"))?.epoch, 2);
      assert.deepEqual(await s.position("ops", "C"), { upTo: 2 });
    },
  );
}
