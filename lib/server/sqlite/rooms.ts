/**
 * {@link SqliteRoomStore}: the durable {@link RoomStore} (PROTOCOL.md 10.4),
 * in the SQLite file of the mailboxes (9.9). Each entry is stored once per
 * room, with a read position per member; every method is one transaction,
 * committed and synced (`synchronous=FULL`) before its promise resolves.
 * @module
 */

import { MailDatabase, run } from "./_db.ts";
import { ProtocolError } from "../../util/mod.ts";
import { checkBase, KeyedPairs, staleKeys } from "../room_store_checks.ts";
import type {
  ReadOptions,
  RoomChange,
  RoomEntry,
  RoomEntryKind,
  RoomKeyed,
  RoomPosition,
  RoomRow,
  RoomStore,
} from "../seams.ts";

const ROOM = `SELECT room_id, creator, epoch, list, members FROM rooms
  WHERE name = ?`;
const LEAVES = "SELECT statement FROM room_leaves WHERE room = ? ORDER BY i";
const EPOCH = "SELECT epoch, next_seq FROM rooms WHERE name = ?";
const INSERT_ROOM = `INSERT INTO rooms
  (name, room_id, creator, epoch, list, members, next_seq)
  VALUES (?, ?, ?, ?, ?, ?, 1)`;
const UPDATE_ROOM = `UPDATE rooms
  SET room_id = ?, creator = ?, epoch = ?, list = ?, members = ? WHERE name = ?`;
const DROP_LEAVES = "DELETE FROM room_leaves WHERE room = ?";
const INSERT_LEAVE =
  "INSERT INTO room_leaves (room, i, statement) VALUES (?, ?, ?)";
// The seq an entry gets; undefined when there is no such room.
const NEXT_SEQ = `UPDATE rooms SET next_seq = next_seq + 1 WHERE name = ?
  RETURNING next_seq - 1 AS seq`;
const INSERT_ENTRY =
  `INSERT INTO room_entries (room, seq, kind, sender, at, data)
  VALUES (?, ?, ?, ?, ?, ?)`;
// An added member: a new position, or a removed one's started afresh; a
// member's is left as it is.
const START = `INSERT INTO room_positions (room, user, up_to, until)
  VALUES (?1, ?2, ?3, NULL) ON CONFLICT (room, user)
  DO UPDATE SET up_to = ?3, until = NULL WHERE until IS NOT NULL`;
const END = `UPDATE room_positions SET until = ?3
  WHERE room = ?1 AND user = ?2 AND until IS NULL`;
const ROOMS_OF = "SELECT room FROM room_positions WHERE user = ? ORDER BY room";
const MEMBERSHIPS = `SELECT count(*) AS n FROM room_positions
  WHERE user = ? AND until IS NULL`;
// LIMIT -1 is "no limit" in SQLite.
const READ = `SELECT e.seq, e.kind, e.sender, e.at, e.data
  FROM room_positions AS p JOIN room_entries AS e ON e.room = p.room
  WHERE p.room = ?1 AND p.user = ?2 AND e.seq > max(?3, p.up_to)
    AND (p.until IS NULL OR e.seq <= p.until)
  ORDER BY e.seq LIMIT ?4`;
const POSITION = `SELECT up_to, until FROM room_positions
  WHERE room = ? AND user = ?`;
const MOVE =
  "UPDATE room_positions SET up_to = ?3 WHERE room = ?1 AND user = ?2";
const DROP = "DELETE FROM room_positions WHERE room = ? AND user = ?";
// The entries in (?2, ?3] no position needs any more: every position is past
// them or ended before them.
const FREE = `DELETE FROM room_entries
  WHERE room = ?1 AND seq > ?2 AND seq <= ?3 AND NOT EXISTS (
    SELECT 1 FROM room_positions AS p WHERE p.room = ?1
      AND p.up_to < room_entries.seq
      AND (p.until IS NULL OR room_entries.seq <= p.until))`;
const DELIVERED = `SELECT count(*) AS n FROM room_positions
  WHERE room = ? AND user <> ? AND until IS NULL AND up_to >= ?`;
// LIMIT -1 is "no limit"; the oldest first, one batch per transaction.
const EXPIRE = `DELETE FROM room_entries WHERE (room, seq) IN
  (SELECT room, seq FROM room_entries WHERE at < ? ORDER BY at, room, seq
  LIMIT ?)`;
const BYTES = `SELECT coalesce(sum(length(data)), 0) AS n FROM room_entries
  WHERE room = ?`;
// A room with no member and no position left is deleted (PROTOCOL.md 10.4).
const MEMBERS = "SELECT members FROM rooms WHERE name = ?";
const ANY_POSITION = "SELECT 1 AS x FROM room_positions WHERE room = ? LIMIT 1";
const DELETE_ENTRIES = "DELETE FROM room_entries WHERE room = ?";
const DELETE_POSITIONS = "DELETE FROM room_positions WHERE room = ?";
const DELETE_ROOM = "DELETE FROM rooms WHERE name = ?";

function checkSeq(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what}: expected an integer >= 0, got ${n}`);
  }
}

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`limit: expected a positive integer, got ${limit}`);
  }
}

function checkKind(
  entry: Omit<RoomEntry, "seq">,
  kinds: readonly RoomEntryKind[],
  method: string,
): void {
  if (!kinds.includes(entry.kind)) {
    throw new RangeError(
      `${method}: expected a ${kinds.join(" or ")} entry, got "${entry.kind}"`,
    );
  }
}

function noRoom(name: string): ProtocolError {
  return new ProtocolError("no-room", `No room "${name}"`);
}

/**
 * Are `next` the leaves of `held` and exactly one more (PROTOCOL.md 10.4)?
 * A leave built from an older row would drop a leave stored meanwhile.
 */
function oneMoreLeave(
  held: readonly Uint8Array[],
  next: readonly Uint8Array[],
): boolean {
  return next.length === held.length + 1 &&
    held.every((l, i) => sameBytes(l, next[i]!));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** @throws {Error} a `members` column that is not a JSON array of names */
function membersOf(text: unknown): string[] {
  const v: unknown = JSON.parse(String(text));
  if (!Array.isArray(v) || !v.every((m) => typeof m === "string")) {
    throw new Error(`Room members: expected a JSON array of names`);
  }
  return v;
}

/**
 * Rooms in SQLite. Seqs come from each room's `next_seq`: they start at 1
 * and are never reused, even once entries are deleted. The `at` of an entry
 * is the store's clock when it is appended (the caller's `at` is not used).
 * {@link SqliteMail} opens it on the file of the {@link SqliteStore}.
 *
 * Reads start after the reader's position as well as after `after`: a
 * member added later reads nothing before the entry that added it, and
 * nothing it acknowledged. A member removed and added again before it
 * acknowledged its `until` starts afresh just before the entry that adds
 * it: the entries of its earlier membership it had not read are skipped
 * (one position per member). A room with no member and no position left
 * is deleted whole, in the `ack` or `change` that left it so: its name is
 * free again, and a room made under it starts its seqs at 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqliteRoomStore } from "./rooms.ts";
 * const dir = await Deno.makeTempDir();
 * const rooms = await SqliteRoomStore.open(`${dir}/mail.db`);
 * const row = {
 *   name: "ops", roomId: new Uint8Array(16), creator: "A", epoch: 1,
 *   list: new Uint8Array([1]), leaves: [], members: ["A", "B"],
 * };
 * const data = new Uint8Array([1]);
 * await rooms.create(row, { kind: "list", from: "A", at: 0, data });
 * const seq = await rooms.append("ops", { kind: "msg", from: "A", at: 0, data });
 * await rooms.ack("ops", "B", seq);
 * assert.equal(await rooms.delivered("ops", seq, "A"), 1);
 * assert.deepEqual(await rooms.roomsOf("B"), ["ops"]);
 * await rooms.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SqliteRoomStore implements RoomStore {
  #db: MailDatabase;
  #now: () => number;
  #closed = false;
  /**
   * The key mails stored, per room at its epoch (PROTOCOL.md 10.4): in
   * memory, as one process kept them before (a restart forgets them).
   */
  #keyed = new KeyedPairs();

  /**
   * The rooms of an open database; it takes a reference to it. Use
   * {@link SqliteRoomStore.open} or {@link SqliteMail.open}.
   * @param db the database
   * @param clock the clock of the entries' `at` (default `Date.now`)
   */
  constructor(db: MailDatabase, clock: () => number = Date.now) {
    this.#db = db.retain();
    this.#now = clock;
  }

  /** The database file. */
  get path(): string {
    return this.#db.path;
  }

  /**
   * Open (or create) the rooms at `path`, alone on their connection.
   * @param path the database file; its directory is created 0700 and the
   *   file 0600 when missing
   * @param clock the clock of the entries' `at` (default `Date.now`)
   * @returns the open store
   * @throws {Error} as {@link MailDatabase.open}
   */
  static async open(
    path: string,
    clock: () => number = Date.now,
  ): Promise<SqliteRoomStore> {
    return new SqliteRoomStore(await MailDatabase.open(path), clock);
  }

  create(row: RoomRow, entry: Omit<RoomEntry, "seq">): Promise<number> {
    return this.#run(() => {
      checkKind(entry, ["list"], "create");
      const db = this.#db;
      return db.transaction(() => {
        if (db.statement(EPOCH).get(row.name)) {
          throw new ProtocolError(
            "room-exists",
            `A room "${row.name}" exists already`,
          );
        }
        db.statement(INSERT_ROOM).run(
          row.name,
          row.roomId,
          row.creator,
          row.epoch,
          row.list,
          JSON.stringify(row.members),
        );
        this.#putLeaves(row);
        const seq = this.#insert(row.name, entry);
        for (const m of row.members) {
          db.statement(START).run(row.name, m, seq - 1);
        }
        this.#keyed.forget(row.name);
        return seq;
      });
    });
  }

  room(name: string): Promise<RoomRow | undefined> {
    return this.#run(() => {
      const db = this.#db;
      return db.transaction(() => {
        const r = db.statement(ROOM).get(name);
        if (!r) return undefined;
        const leaves = db.statement(LEAVES).all(name).map((l) =>
          new Uint8Array(l.statement as Uint8Array)
        );
        return {
          name,
          roomId: new Uint8Array(r.room_id as Uint8Array),
          creator: String(r.creator),
          epoch: Number(r.epoch),
          list: new Uint8Array(r.list as Uint8Array),
          leaves,
          members: membersOf(r.members),
        };
      });
    });
  }

  roomsOf(user: string): Promise<string[]> {
    return this.#run(() =>
      this.#db.statement(ROOMS_OF).all(user).map((r) => String(r.room))
    );
  }

  memberships(user: string): Promise<number> {
    return this.#run(() =>
      Number(this.#db.statement(MEMBERSHIPS).get(user)?.n ?? 0)
    );
  }

  change(change: RoomChange): Promise<number> {
    return this.#run(() => {
      checkKind(change.entry, ["list", "leave"], "change");
      const { row } = change;
      // PROTOCOL.md 10.1: a list follows the epoch before it; a leave is of the epoch.
      const want = change.entry.kind === "list" ? row.epoch - 1 : row.epoch;
      const db = this.#db;
      return db.transaction(() => {
        const held = db.statement(EPOCH).get(row.name);
        if (!held) throw noRoom(row.name);
        const before = db.statement(ROOM).get(row.name)!;
        checkBase({
          name: row.name,
          roomId: before.room_id as Uint8Array,
          epoch: Number(before.epoch),
          leaves: db.statement(LEAVES).all(row.name).length,
        }, change);
        if (Number(held.epoch) !== want) {
          throw new ProtocolError(
            "room-conflict",
            `Room "${row.name}" is at epoch ${held.epoch}, not ${want}: a concurrent change won`,
          );
        }
        if (change.entry.kind === "leave") {
          const leaves = db.statement(LEAVES).all(row.name).map((l) =>
            l.statement as Uint8Array
          );
          if (!oneMoreLeave(leaves, row.leaves)) {
            throw new ProtocolError(
              "room-conflict",
              `Room "${row.name}" holds ${leaves.length} leaves, and the change does not add one to them: a concurrent change won`,
            );
          }
        }
        db.statement(UPDATE_ROOM).run(
          row.roomId,
          row.creator,
          row.epoch,
          row.list,
          JSON.stringify(row.members),
          row.name,
        );
        this.#putLeaves(row);
        const seq = this.#insert(row.name, change.entry);
        if (change.entry.kind === "list") this.#keyed.forget(row.name);
        for (const m of change.added) {
          db.statement(START).run(row.name, m, seq - 1);
        }
        for (const m of change.removed) {
          db.statement(END).run(row.name, m, seq);
        }
        this.#dropIfEmpty(row.name);
        return seq;
      });
    });
  }

  append(name: string, entry: Omit<RoomEntry, "seq">): Promise<number> {
    return this.#run(() => {
      checkKind(entry, ["msg", "keys"], "append");
      return this.#db.transaction(() => this.#insert(name, entry));
    });
  }

  keyed(name: string, epoch: number, sender: string): Promise<string[]> {
    return this.#run(() => {
      const held = this.#db.statement(EPOCH).get(name);
      return held && Number(held.epoch) === epoch
        ? this.#keyed.get(name, epoch, sender)
        : [];
    });
  }

  appendKeys(
    name: string,
    entry: Omit<RoomEntry, "seq">,
    keyed: RoomKeyed,
  ): Promise<number> {
    return this.#run(() => {
      checkKind(entry, ["keys"], "appendKeys");
      const db = this.#db;
      const seq = db.transaction(() => {
        const held = db.statement(EPOCH).get(name);
        if (!held) throw noRoom(name);
        if (Number(held.epoch) !== keyed.epoch) {
          throw staleKeys(name, Number(held.epoch), keyed.epoch);
        }
        return this.#insert(name, entry);
      });
      this.#keyed.add(name, keyed.epoch, entry.from, keyed.recipients);
      return seq;
    });
  }

  read(
    name: string,
    user: string,
    opts: ReadOptions = {},
  ): Promise<RoomEntry[]> {
    return this.#run(() => {
      const after = opts.after ?? 0;
      checkSeq("after", after);
      if (opts.limit !== undefined) checkLimit(opts.limit);
      const rows = this.#db.statement(READ).all(
        name,
        user,
        after,
        opts.limit ?? -1,
      );
      return rows.map((r) => ({
        seq: Number(r.seq),
        kind: String(r.kind) as RoomEntryKind,
        from: String(r.sender),
        at: Number(r.at),
        data: new Uint8Array(r.data as Uint8Array),
      }));
    });
  }

  position(name: string, user: string): Promise<RoomPosition | undefined> {
    return this.#run(() => {
      const p = this.#db.statement(POSITION).get(name, user);
      if (!p) return undefined;
      const upTo = Number(p.up_to);
      return p.until === null ? { upTo } : { upTo, until: Number(p.until) };
    });
  }

  ack(name: string, user: string, upTo: number): Promise<number> {
    return this.#run(() => {
      checkSeq("upTo", upTo);
      const db = this.#db;
      return db.transaction(() => {
        const p = db.statement(POSITION).get(name, user);
        const room = db.statement(EPOCH).get(name);
        if (!p || !room) return 0;
        const from = Number(p.up_to);
        const until = p.until === null ? Infinity : Number(p.until);
        // Never past the newest entry, nor past its `until`.
        const to = Math.min(upTo, Number(room.next_seq) - 1, until);
        if (to <= from) return 0;
        if (to >= until) db.statement(DROP).run(name, user);
        else db.statement(MOVE).run(name, user, to);
        // Only the entries this position held can have been freed by it.
        const freed = Number(db.statement(FREE).run(name, from, to).changes);
        return freed + this.#dropIfEmpty(name);
      });
    });
  }

  delivered(name: string, seq: number, sender: string): Promise<number> {
    return this.#run(() =>
      Number(this.#db.statement(DELIVERED).get(name, sender, seq)?.n ?? 0)
    );
  }

  expire(before: number, opts: { limit?: number } = {}): Promise<number> {
    return this.#run(() => {
      if (opts.limit !== undefined) checkLimit(opts.limit);
      const db = this.#db;
      return db.transaction(() =>
        Number(db.statement(EXPIRE).run(before, opts.limit ?? -1).changes)
      );
    });
  }

  bytes(name: string): Promise<number> {
    return this.#run(() => Number(this.#db.statement(BYTES).get(name)?.n ?? 0));
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#db.release();
    }
    return Promise.resolve();
  }

  /**
   * Delete the room when no member and no position is left (PROTOCOL.md
   * 10.4): its row, leaves, entries and positions, inside the caller's
   * transaction; its name is free.
   * @returns how many entries that deleted
   */
  #dropIfEmpty(name: string): number {
    const db = this.#db;
    const r = db.statement(MEMBERS).get(name);
    if (!r || membersOf(r.members).length > 0) return 0;
    if (db.statement(ANY_POSITION).get(name)) return 0;
    const entries = Number(db.statement(DELETE_ENTRIES).run(name).changes);
    db.statement(DELETE_POSITIONS).run(name);
    db.statement(DROP_LEAVES).run(name);
    db.statement(DELETE_ROOM).run(name);
    this.#keyed.forget(name);
    return entries;
  }

  /** Replace the room's leaves with the row's, inside the caller's transaction. */
  #putLeaves(row: RoomRow): void {
    this.#db.statement(DROP_LEAVES).run(row.name);
    row.leaves.forEach((l, i) =>
      this.#db.statement(INSERT_LEAVE).run(row.name, i, l)
    );
  }

  /**
   * Append an entry with the room's next seq and the store's clock, inside
   * the caller's transaction.
   * @throws {ProtocolError} `no-room`
   */
  #insert(name: string, entry: Omit<RoomEntry, "seq">): number {
    const db = this.#db;
    const next = db.statement(NEXT_SEQ).get(name);
    if (!next) throw noRoom(name);
    const seq = Number(next.seq);
    db.statement(INSERT_ENTRY).run(
      name,
      seq,
      entry.kind,
      entry.from,
      this.#now(),
      entry.data,
    );
    return seq;
  }

  #run<T>(fn: () => T): Promise<T> {
    return run(this.#db.path, this.#closed, fn);
  }
}
