/**
 * {@link MemoryRoomStore}: the {@link RoomStore} of one process, lost when
 * it stops; for tests and for a server without a disk. The SQLite one
 * follows the same contract (tests/server/room_store_contract.ts).
 * @module
 */

import { ProtocolError } from "../../util/mod.ts";
import { checkBase, KeyedPairs, staleKeys } from "../room_store_checks.ts";
import type {
  ReadOptions,
  RoomChange,
  RoomEntry,
  RoomKeyed,
  RoomPosition,
  RoomRow,
  RoomStore,
} from "../seams.ts";

/** A position as held: `until` undefined for a member. */
interface Held {
  upTo: number;
  until: number | undefined;
}

interface Room {
  row: RoomRow;
  /** The seq the next entry gets: one past every seq given (PROTOCOL.md 10.4). */
  nextSeq: number;
  /** The log, in order of seq. */
  entries: RoomEntry[];
  positions: Map<string, Held>;
}

const copyRow = (r: RoomRow): RoomRow =>
  Object.freeze({
    name: r.name,
    roomId: r.roomId.slice(),
    creator: r.creator,
    epoch: r.epoch,
    list: r.list.slice(),
    leaves: Object.freeze(r.leaves.map((l) => l.slice())),
    members: Object.freeze([...r.members]),
  });

const copyEntry = (e: RoomEntry): RoomEntry => ({ ...e, data: e.data.slice() });

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
  kinds: readonly string[],
  method: string,
): void {
  if (!kinds.includes(entry.kind)) {
    throw new RangeError(
      `${method}: expected a ${kinds.join(" or ")} entry, got "${entry.kind}"`,
    );
  }
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

function noRoom(name: string): ProtocolError {
  return new ProtocolError("no-room", `No room "${name}"`);
}

/**
 * The epoch a room must be at for `change` (PROTOCOL.md 10.1): the one
 * before a new list's, the leave's own.
 * @throws {RangeError} an entry other than `list` or `leave`
 */
function expectedEpoch(change: RoomChange): number {
  checkKind(change.entry, ["list", "leave"], "change");
  return change.entry.kind === "list" ? change.row.epoch - 1 : change.row.epoch;
}

/**
 * Rooms in memory. Each call completes in one turn of the event loop, so
 * each is atomic. Entries are stored once per room; each member has a
 * position in the log (PROTOCOL.md 10.4). The `at` of an entry is the
 * store's clock when it is appended (the caller's `at` is not used).
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
 * import { MemoryRoomStore } from "./rooms.ts";
 * const rooms = new MemoryRoomStore(() => 5);
 * const row = {
 *   name: "ops", roomId: new Uint8Array(16), creator: "A", epoch: 1,
 *   list: new Uint8Array([1]), leaves: [], members: ["A", "B"],
 * };
 * const data = new Uint8Array([1]);
 * await rooms.create(row, { kind: "list", from: "A", at: 0, data });
 * const seq = await rooms.append("ops", { kind: "msg", from: "A", at: 0, data });
 * assert.equal(await rooms.delivered("ops", seq, "A"), 0);
 * assert.deepEqual((await rooms.read("ops", "B")).map((e) => e.kind), ["list", "msg"]);
 * await rooms.ack("ops", "B", seq);
 * assert.equal(await rooms.delivered("ops", seq, "A"), 1);
 * ```
 */
export class MemoryRoomStore implements RoomStore {
  #rooms = new Map<string, Room>();
  /** The key mails stored, per room at its epoch (PROTOCOL.md 10.4). */
  #keyed = new KeyedPairs();
  #now: () => number;

  /** @param clock the clock of the entries' `at` (default `Date.now`) */
  constructor(clock: () => number = Date.now) {
    this.#now = clock;
  }

  create(row: RoomRow, entry: Omit<RoomEntry, "seq">): Promise<number> {
    return attempt(() => {
      checkKind(entry, ["list"], "create");
      if (this.#rooms.has(row.name)) {
        throw new ProtocolError(
          "room-exists",
          `A room "${row.name}" exists already`,
        );
      }
      const room: Room = {
        row: copyRow(row),
        nextSeq: 1,
        entries: [],
        positions: new Map(),
      };
      const seq = this.#push(room, entry);
      for (const m of row.members) {
        room.positions.set(m, { upTo: seq - 1, until: undefined });
      }
      this.#rooms.set(row.name, room);
      this.#keyed.forget(row.name);
      return seq;
    });
  }

  room(name: string): Promise<RoomRow | undefined> {
    const room = this.#rooms.get(name);
    return Promise.resolve(room && copyRow(room.row));
  }

  roomsOf(user: string): Promise<string[]> {
    const names = [...this.#rooms]
      .filter(([, room]) => room.positions.has(user))
      .map(([name]) => name)
      .sort();
    return Promise.resolve(names);
  }

  memberships(user: string): Promise<number> {
    let n = 0;
    for (const room of this.#rooms.values()) {
      const p = room.positions.get(user);
      if (p && p.until === undefined) n++;
    }
    return Promise.resolve(n);
  }

  change(change: RoomChange): Promise<number> {
    return attempt(() => {
      const name = change.row.name;
      const want = expectedEpoch(change);
      const room = this.#rooms.get(name);
      if (!room) throw noRoom(name);
      if (room.row.epoch !== want) {
        throw new ProtocolError(
          "room-conflict",
          `Room "${name}" is at epoch ${room.row.epoch}, not ${want}: a concurrent change won`,
        );
      }
      if (
        change.entry.kind === "leave" &&
        !oneMoreLeave(room.row.leaves, change.row.leaves)
      ) {
        throw new ProtocolError(
          "room-conflict",
          `Room "${name}" holds ${room.row.leaves.length} leaves, and the change does not add one to them: a concurrent change won`,
        );
      }
      checkBase({ ...room.row, leaves: room.row.leaves.length }, change);
      const seq = this.#push(room, change.entry);
      if (change.entry.kind === "list") this.#keyed.forget(name);
      room.row = copyRow(change.row);
      for (const m of change.added) {
        const p = room.positions.get(m);
        if (p !== undefined && p.until === undefined) continue; // a member already
        room.positions.set(m, { upTo: seq - 1, until: undefined });
      }
      for (const m of change.removed) {
        const p = room.positions.get(m);
        if (p && p.until === undefined) p.until = seq;
      }
      this.#dropIfEmpty(room);
      return seq;
    });
  }

  append(name: string, entry: Omit<RoomEntry, "seq">): Promise<number> {
    return attempt(() => {
      checkKind(entry, ["msg", "keys"], "append");
      const room = this.#rooms.get(name);
      if (!room) throw noRoom(name);
      return this.#push(room, entry);
    });
  }

  keyed(name: string, epoch: number, sender: string): Promise<string[]> {
    return Promise.resolve(
      this.#rooms.get(name)?.row.epoch === epoch
        ? this.#keyed.get(name, epoch, sender)
        : [],
    );
  }

  appendKeys(
    name: string,
    entry: Omit<RoomEntry, "seq">,
    keyed: RoomKeyed,
  ): Promise<number> {
    return attempt(() => {
      checkKind(entry, ["keys"], "appendKeys");
      const room = this.#rooms.get(name);
      if (!room) throw noRoom(name);
      if (room.row.epoch !== keyed.epoch) {
        throw staleKeys(name, room.row.epoch, keyed.epoch);
      }
      const seq = this.#push(room, entry);
      this.#keyed.add(name, keyed.epoch, entry.from, keyed.recipients);
      return seq;
    });
  }

  read(
    name: string,
    user: string,
    opts: ReadOptions = {},
  ): Promise<RoomEntry[]> {
    return attempt(() => {
      const after = opts.after ?? 0;
      checkSeq("after", after);
      if (opts.limit !== undefined) checkLimit(opts.limit);
      const limit = opts.limit ?? Infinity;
      const p = this.#rooms.get(name)?.positions.get(user);
      if (!p) return [];
      const from = Math.max(after, p.upTo);
      const out: RoomEntry[] = [];
      for (const e of this.#rooms.get(name)!.entries) {
        if (out.length >= limit) break;
        if (p.until !== undefined && e.seq > p.until) break;
        if (e.seq > from) out.push(copyEntry(e));
      }
      return out;
    });
  }

  position(name: string, user: string): Promise<RoomPosition | undefined> {
    const p = this.#rooms.get(name)?.positions.get(user);
    if (!p) return Promise.resolve(undefined);
    return Promise.resolve(
      p.until === undefined
        ? { upTo: p.upTo }
        : { upTo: p.upTo, until: p.until },
    );
  }

  ack(name: string, user: string, upTo: number): Promise<number> {
    return attempt(() => {
      checkSeq("upTo", upTo);
      const room = this.#rooms.get(name);
      const p = room?.positions.get(user);
      if (!room || !p) return 0;
      // Never past the newest entry, nor past its `until`.
      const to = Math.min(upTo, room.nextSeq - 1, p.until ?? Infinity);
      if (to <= p.upTo) return 0;
      const from = p.upTo;
      p.upTo = to;
      if (p.until !== undefined && to >= p.until) room.positions.delete(user);
      // Only the entries this position held can have been freed by it.
      const held = (e: RoomEntry) =>
        [...room.positions.values()].some((q) =>
          q.upTo < e.seq && (q.until === undefined || e.seq <= q.until)
        );
      const before = room.entries.length;
      room.entries = room.entries.filter((e) =>
        e.seq <= from || e.seq > to || held(e)
      );
      this.#dropIfEmpty(room);
      return before - room.entries.length;
    });
  }

  delivered(name: string, seq: number, sender: string): Promise<number> {
    let n = 0;
    for (const [user, p] of this.#rooms.get(name)?.positions ?? []) {
      if (user !== sender && p.until === undefined && p.upTo >= seq) n++;
    }
    return Promise.resolve(n);
  }

  expire(before: number, opts: { limit?: number } = {}): Promise<number> {
    return attempt(() => {
      if (opts.limit !== undefined) checkLimit(opts.limit);
      const old: { room: Room; entry: RoomEntry }[] = [];
      for (const room of this.#rooms.values()) {
        for (const entry of room.entries) {
          if (entry.at < before) old.push({ room, entry });
        }
      }
      // The oldest first, as the mailbox store does (PROTOCOL.md 9.8).
      old.sort((a, b) =>
        a.entry.at - b.entry.at ||
        compare(a.room.row.name, b.room.row.name) ||
        a.entry.seq - b.entry.seq
      );
      const gone = new Set(
        old.slice(0, opts.limit ?? old.length)
          .map((o) => o.entry),
      );
      for (const room of this.#rooms.values()) {
        room.entries = room.entries.filter((e) => !gone.has(e));
      }
      return gone.size;
    });
  }

  bytes(name: string): Promise<number> {
    const entries = this.#rooms.get(name)?.entries ?? [];
    return Promise.resolve(entries.reduce((n, e) => n + e.data.length, 0));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Delete the room when no member and no position is left (PROTOCOL.md
   * 10.4): its row, leaves, entries and positions; its name is free.
   * Whatever entries it held count as deleted by the caller (cleared here).
   */
  #dropIfEmpty(room: Room): void {
    if (room.row.members.length > 0 || room.positions.size > 0) return;
    this.#rooms.delete(room.row.name);
    this.#keyed.forget(room.row.name);
    room.entries = [];
  }

  /** Append an entry with the next seq and the store's clock. */
  #push(room: Room, entry: Omit<RoomEntry, "seq">): number {
    const seq = room.nextSeq++;
    room.entries.push(Object.freeze({
      seq,
      kind: entry.kind,
      from: entry.from,
      at: this.#now(),
      data: entry.data.slice(),
    }));
    return seq;
  }
}

const compare = (a: string, b: string) => a < b ? -1 : a > b ? 1 : 0;

/** `fn`'s result or throw as a promise. */
function attempt<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}
