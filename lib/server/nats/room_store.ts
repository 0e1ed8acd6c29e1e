/**
 * {@link JetStreamRoomStore}: the {@link RoomStore} of a cluster (PROTOCOL.md
 * 10.4, 11.6), on NATS JetStream, so every node sees the same rooms. One
 * stream `IM_ROOMS_<cluster>` (file storage, limits retention, replicas
 * configurable) holds every room on a subject of its own,
 * `im.<cluster>.room.<name>`; on that subject lie the room's **state**
 * messages (its row, the seq its next entry gets, every member's position)
 * and its **entry** messages, each sealed with keys of the cluster key of
 * their own labels (`im v1 cluster rooms enc/iv/mac`, derived from the
 * store keys) for the subject (`sealStored`, lib/proto/cluster_store.ts).
 *
 * JetStream has no transaction across subjects, and a KV value and a
 * stream are two subjects: so a room's row and log share one subject, and
 * every method that changes a room is **one conditional publish** on it
 * (`Nats-Expected-Last-Subject-Sequence`: the compare-and-set a KV update
 * is made of), retried on a lost race after reading the room again:
 *
 * - `create`: a state with the `list` entry in it, on an empty subject (or
 *   on a deleted room's `gone` mark);
 * - `append`: an entry message naming the state it was appended under;
 * - `change`: a new state with the `list` or `leave` entry in it;
 * - `ack`: a new state with the position moved;
 * - a room left with no member and no position: a `gone` mark.
 *
 * The room as it is now is the subject's last message: a state, or an entry
 * whose state is the one it names (the next seq is the entry's plus one).
 * What follows a commit only deletes messages below it, never the last one
 * (nats-server 2.9 refuses every conditional publish on a subject whose last
 * message was deleted): the state it replaced, the entries no position holds
 * any more, a deleted room's messages (a purge). A node that dies between
 * the commit and those deletes leaves messages no reader returns (another
 * generation's, a replaced state's, an entry every position passed), which
 * the next `ack`, `create` or `expire` of the room deletes. So there is no
 * half-done change: the commit is one message, and nothing else is visible.
 *
 * A message that does not open is refused: counted, logged
 * `cluster-store-refused` (at most once per code per 10 s), never returned;
 * a room whose last message or state does not open is as none.
 *
 * Parts with one job each, behind this class: room_codec.ts (the sealed
 * layout: keys, subjects, the messages' bytes), room_log.ts (the stream,
 * a room's view, the conditional-publish commit), room_sweep.ts (the
 * deletes below a commit, and `expire`), room_reads.ts (the reads),
 * room_index.ts (each user's rooms, a KV value per user: 11.6 _The
 * index_); this file plans each change.
 *
 * @example
 * ```ts ignore
 * const rooms = await JetStreamRoomStore.open({ nc, cluster: "team", keys: new StoreKeys(clusterKey) });
 * await rooms.create(row, { kind: "list", from: "A", at: 0, data: list });  // 1
 * await rooms.append("ops", { kind: "msg", from: "A", at: 0, data });       // 2, on any node
 * ```
 * @module
 */

import { isValidUsername } from "../../proto/mod.ts";
import { ProtocolError, randomBytes } from "../../util/mod.ts";
import { checkBase, staleKeys } from "../room_store_checks.ts";
import type {
  ReadOptions,
  RoomChange,
  RoomEntry,
  RoomKeyed,
  RoomPosition,
  RoomRow,
  RoomStore,
} from "../seams.ts";
import {
  checkKind,
  checkName,
  checkSeq,
  copyRow,
  dropped,
  GEN_BYTES,
  type Held,
  noRoom,
  restate,
  sameBytes,
  type State,
} from "./room_codec.ts";
import {
  type JetStreamRoomStoreOptions,
  type Plan,
  RoomLog,
} from "./room_log.ts";
import { RoomIndex } from "./room_index.ts";
import * as reads from "./room_reads.ts";
import { expire, gonePlan, sweep } from "./room_sweep.ts";

export {
  ROOM_KEY_LABELS,
  roomKeys,
  roomsStream,
  roomSubject,
} from "./room_codec.ts";
export type { JetStreamRoomStoreOptions } from "./room_log.ts";

/** The RoomStore of a cluster, on JetStream (PROTOCOL.md 11.6). */
export class JetStreamRoomStore implements RoomStore {
  readonly #log: RoomLog;
  /** Each user's rooms (room_index.ts). */
  readonly #index: RoomIndex;

  private constructor(log: RoomLog, index: RoomIndex) {
    this.#log = log;
    this.#index = index;
  }

  /** Messages refused so far (they did not open), by code (11.6). */
  refusals(): Record<string, number> {
    return this.#log.refusals();
  }

  /**
   * Open the store, making its stream when there is none (an existing one
   * is used as it is).
   * @throws {RangeError} a cluster name that is not a username
   */
  static async open(
    opts: JetStreamRoomStoreOptions,
  ): Promise<JetStreamRoomStore> {
    const log = await RoomLog.open(opts);
    const index = await RoomIndex.open({
      nc: opts.nc,
      cluster: opts.cluster,
      keys: opts.keys,
      replicas: opts.replicas ?? 1,
      ...(opts.log && { log: opts.log }),
      refuse: (code, fields) => log.refuse(code, fields),
    });
    if (!index.built) {
      // 11.6: a stream from before the index: every position indexed once.
      for (const r of await reads.rooms(log)) {
        for (const user of r.state.pos.keys()) await index.add([user], r.name);
      }
      await index.markBuilt();
    }
    return new JetStreamRoomStore(log, index);
  }

  // --- changes: each one conditional publish (room_log.ts) ---

  async create(row: RoomRow, entry: Omit<RoomEntry, "seq">): Promise<number> {
    this.#log.check();
    checkName(row.name);
    checkKind(entry, ["list"], "create");
    // 11.6 _The index_: the members' index names the room before it exists.
    await this.#index.add(row.members, row.name);
    return await this.#log.mutate("create", row.name, (v) => {
      if (v.state) {
        throw new ProtocolError(
          "room-exists",
          `A room "${row.name}" exists already`,
        );
      }
      const pos = new Map<string, Held>();
      for (const m of row.members) pos.set(m, { upTo: 0, until: undefined });
      const first = this.#log.entry(1, entry);
      return {
        msg: {
          type: "state",
          gen: randomBytes(GEN_BYTES),
          row: copyRow(row),
          next: 2,
          acked: 0,
          pos,
          keyed: new Map(),
          entry: first,
        },
        // A deleted room's messages below it, if a crash left any.
        after: async (seq) => {
          if (v.top > 0) await this.#log.purge(row.name, seq);
        },
        result: () => 1,
      };
    });
  }

  async change(change: RoomChange): Promise<number> {
    this.#log.check();
    const name = change.row.name;
    checkName(name);
    checkKind(change.entry, ["list", "leave"], "change");
    const want = change.entry.kind === "list"
      ? change.row.epoch - 1
      : change.row.epoch;
    await this.#index.add(change.added, name); // 11.6 _The index_
    return await this.#log.mutate("change", name, (v) => {
      const s = v.state;
      if (!s) throw noRoom(name);
      if (s.row.epoch !== want) {
        throw new ProtocolError(
          "room-conflict",
          `Room "${name}" is at epoch ${s.row.epoch}, not ${want}: a concurrent change won`,
        );
      }
      const leaves = s.row.leaves, nextLeaves = change.row.leaves;
      if (
        change.entry.kind === "leave" &&
        !(nextLeaves.length === leaves.length + 1 &&
          leaves.every((l, i) => sameBytes(l, nextLeaves[i]!)))
      ) {
        throw new ProtocolError(
          "room-conflict",
          `Room "${name}" holds ${leaves.length} leaves, and the change does not add one to them: a concurrent change won`,
        );
      }
      // 11.6: planned on a row another node changed meanwhile: planned again.
      checkBase({ ...s.row, leaves: leaves.length }, change);
      const seq = v.next;
      const pos = new Map(s.pos);
      for (const m of change.added) {
        const p = pos.get(m);
        if (p !== undefined && p.until === undefined) continue; // a member already
        pos.set(m, { upTo: seq - 1, until: undefined });
      }
      for (const m of change.removed) {
        const p = pos.get(m);
        if (p && p.until === undefined) pos.set(m, { ...p, until: seq });
      }
      if (change.row.members.length === 0 && pos.size === 0) {
        return gonePlan(this.#log, name, v, () => seq);
      }
      const now: State = {
        ...restate(s, seq + 1, {
          row: copyRow(change.row),
          pos,
          // A new epoch's key mails are counted afresh (10.4).
          ...(change.entry.kind === "list" && { keyed: new Map() }),
        }),
        entry: this.#log.entry(seq, change.entry),
      };
      return {
        msg: now,
        after: async (top) => {
          await sweep(this.#log, name, now, top, v.stateSeq, s, undefined);
        },
        result: () => seq,
      };
    });
  }

  async append(name: string, entry: Omit<RoomEntry, "seq">): Promise<number> {
    this.#log.check();
    checkKind(entry, ["msg", "keys"], "append");
    if (!isValidUsername(name)) throw noRoom(name);
    return await this.#log.mutate("append", name, (v) => {
      const s = v.state;
      if (!s) throw noRoom(name);
      const seq = v.next;
      return {
        msg: {
          type: "entry",
          gen: s.gen,
          state: v.stateSeq,
          entry: this.#log.entry(seq, entry),
        },
        result: () => seq,
      };
    });
  }

  /**
   * A `keys` entry and its pairs in one state (PROTOCOL.md 10.4, 11.6): a
   * conditional publish, so the pairs a hand-out stored are known to every
   * node at once with its gate.
   */
  async appendKeys(
    name: string,
    entry: Omit<RoomEntry, "seq">,
    keyed: RoomKeyed,
  ): Promise<number> {
    this.#log.check();
    checkKind(entry, ["keys"], "appendKeys");
    if (!isValidUsername(name)) throw noRoom(name);
    return await this.#log.mutate("appendKeys", name, (v) => {
      const s = v.state;
      if (!s) throw noRoom(name);
      if (s.row.epoch !== keyed.epoch) {
        throw staleKeys(name, s.row.epoch, keyed.epoch);
      }
      const seq = v.next;
      const pairs = new Map(s.keyed);
      const mine = new Set(pairs.get(entry.from) ?? []);
      for (const u of keyed.recipients) mine.add(u);
      pairs.set(entry.from, [...mine].sort());
      const now: State = {
        ...restate(s, seq + 1, { keyed: pairs }),
        entry: this.#log.entry(seq, entry),
      };
      return {
        msg: now,
        after: async (top) => {
          await sweep(this.#log, name, now, top, v.stateSeq, s, undefined);
        },
        result: () => seq,
      };
    });
  }

  async ack(name: string, user: string, upTo: number): Promise<number> {
    this.#log.check();
    checkSeq("upTo", upTo);
    if (!isValidUsername(name)) return 0;
    let deleted = 0;
    return await this.#log.mutate("ack", name, (v): Plan<number> => {
      const s = v.state;
      const p = s?.pos.get(user);
      if (!s || !p) return { result: () => 0 };
      // Never past the newest entry, nor past its `until`.
      const to = Math.min(upTo, v.next - 1, p.until ?? Infinity);
      if (to <= p.upTo) return { result: () => 0 };
      const from = p.upTo;
      const pos = new Map(s.pos);
      if (p.until !== undefined && to >= p.until) pos.delete(user);
      else pos.set(user, { upTo: to, until: p.until });
      if (s.row.members.length === 0 && pos.size === 0) {
        return gonePlan(this.#log, name, v, () => deleted, (n) => deleted = n);
      }
      const now = restate(s, v.next, {
        pos,
        acked: Math.max(s.acked, to),
      });
      // Only the entries this position held can have been freed by it.
      let last = 0;
      for (let q = from + 1; q <= to; q++) if (dropped(now, q)) last = q;
      return {
        msg: now,
        after: async (top) => {
          deleted = await sweep(
            this.#log,
            name,
            now,
            top,
            v.stateSeq,
            s,
            last === 0 ? undefined : {
              upTo: last,
              count: (q) => q > from && q <= to,
            },
          );
        },
        result: () => deleted,
      };
    });
  }

  // --- reads (room_reads.ts) ---

  room(name: string): Promise<RoomRow | undefined> {
    return reads.room(this.#log, name);
  }

  roomsOf(user: string): Promise<string[]> {
    return reads.roomsOf(this.#log, this.#index, user);
  }

  memberships(user: string): Promise<number> {
    return reads.memberships(this.#log, this.#index, user);
  }

  keyed(name: string, epoch: number, sender: string): Promise<string[]> {
    return reads.keyed(this.#log, name, epoch, sender);
  }

  read(
    name: string,
    user: string,
    opts: ReadOptions = {},
  ): Promise<RoomEntry[]> {
    return reads.read(this.#log, name, user, opts);
  }

  position(name: string, user: string): Promise<RoomPosition | undefined> {
    return reads.position(this.#log, name, user);
  }

  delivered(name: string, seq: number, sender: string): Promise<number> {
    return reads.delivered(this.#log, name, seq, sender);
  }

  bytes(name: string): Promise<number> {
    return reads.bytes(this.#log, name);
  }

  expire(before: number, opts: { limit?: number } = {}): Promise<number> {
    return expire(this.#log, before, opts);
  }

  close(): Promise<void> {
    this.#log.close();
    this.#index.close();
    return Promise.resolve();
  }
}
