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
 * @example
 * ```ts ignore
 * const rooms = await JetStreamRoomStore.open({ nc, cluster: "team", keys: new StoreKeys(clusterKey) });
 * await rooms.create(row, { kind: "list", from: "A", at: 0, data: list });  // 1
 * await rooms.append("ops", { kind: "msg", from: "A", at: 0, data });       // 2, on any node
 * ```
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StoredMsg,
} from "@nats-io/jetstream";
import { deriveKeySync } from "../../crypto/mod.ts";
import {
  isValidUsername,
  openStored,
  sealStored,
  type StoreKeys,
} from "../../proto/mod.ts";
import {
  ByteReader,
  ByteWriter,
  constantTimeEqual,
  fromUtf8,
  type Logger,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../../util/mod.ts";
import { Refusals } from "./refusals.ts";
import { EXPIRE_SKEW_MS, JS_RETRY_MS } from "./store.ts";
import { checkBase, staleKeys } from "../room_store_checks.ts";
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

/** The labels of the rooms' keys, derived from the cluster's store keys (11.6). */
export const ROOM_KEY_LABELS = {
  enc: "im v1 cluster rooms enc",
  iv: "im v1 cluster rooms iv",
  mac: "im v1 cluster rooms mac",
} as const;

/** The stream of a cluster's rooms. */
export function roomsStream(cluster: string): string {
  return `IM_ROOMS_${cluster}`;
}

/** The subject of a room's states and entries. */
export function roomSubject(cluster: string, name: string): string {
  return `im.${cluster}.room.${name}`;
}

/** The keys the rooms' messages are sealed with: the store keys', relabelled. */
export function roomKeys(keys: StoreKeys): StoreKeys {
  const empty = new Uint8Array(0);
  const enc = deriveKeySync(keys.enc, empty, ROOM_KEY_LABELS.enc);
  const ivk = deriveKeySync(keys.ivk, empty, ROOM_KEY_LABELS.iv);
  const mac = deriveKeySync(keys.mac, empty, ROOM_KEY_LABELS.mac);
  return { enc, ivk, mac, wipe: () => wipe(enc, ivk, mac) };
}

/** Options of {@link JetStreamRoomStore.open}. */
export interface JetStreamRoomStoreOptions {
  /** A connected NATS client, with JetStream on the server; the caller closes it. */
  nc: NatsConnection;
  /** The cluster's name (rule 2.9). */
  cluster: string;
  /** The cluster key's store keys: the rooms' keys are derived from them (11.6). */
  keys: StoreKeys;
  /** Where refused messages are logged (`cluster-store-refused`). */
  log?: Logger;
  /** The stream's replicas when it is made (default 1). */
  replicas?: number;
  /** The store's clock (ms since the epoch): each entry's `at`. */
  now?: () => number;
  /** How long a call keeps retrying a JetStream that does not answer, or a lost race (default {@link JS_RETRY_MS}). */
  retryMs?: number;
  /**
   * Called after a commit and before what follows it (the deletes), with
   * the method's name; a throw ends the method there, as a crash would
   * (tests).
   */
  afterCommit?: (method: string) => void;
}

/** A position as held: `until` undefined for a member. */
interface Held {
  upTo: number;
  until: number | undefined;
}

/** A room's state message, opened. */
interface State {
  readonly type: "state";
  /** The room's generation: 8 random bytes per `create`. */
  readonly gen: Uint8Array;
  readonly row: RoomRow;
  /** The seq the next entry gets, as of this state. */
  readonly next: number;
  /** The greatest seq any `ack` moved a position to. */
  readonly acked: number;
  readonly pos: ReadonlyMap<string, Held>;
  /**
   * The key mails stored at the row's epoch (PROTOCOL.md 10.4): sender to
   * the members its mail was stored for.
   */
  readonly keyed: ReadonlyMap<string, readonly string[]>;
  /** The entry committed with this state (`create`, `change`, `appendKeys`), if any. */
  readonly entry?: RoomEntry;
}

/** An entry message, opened. */
interface EntryMsg {
  readonly type: "entry";
  readonly gen: Uint8Array;
  readonly entry: RoomEntry;
  /** The stream sequence of the state it was appended under. */
  readonly state: number;
}

/** A deleted room's mark. */
interface Gone {
  readonly type: "gone";
  readonly gen: Uint8Array;
}

type Msg = State | EntryMsg | Gone;

/** A room as read: its last message, its state. */
interface View {
  /** The subject's last message (0: none). */
  readonly top: number;
  /** The stream sequence of the state (0: no room). */
  readonly stateSeq: number;
  /** Undefined when no room has this name (none, gone, or refused). */
  readonly state: State | undefined;
  /** The seq the next entry gets. */
  readonly next: number;
}

const KINDS: readonly RoomEntryKind[] = ["list", "leave", "msg", "keys"];
const T_STATE = 1, T_ENTRY = 2, T_GONE = 3;
const GEN_BYTES = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Is this error one JetStream may stop giving once a leader is elected? */
function transient(e: unknown): boolean {
  const s = String(e instanceof Error ? `${e.name} ${e.message}` : e);
  return /timeout|no responders|not enabled|503|not available|leader|unavailable|disconnect|reconnect|closed connection|cancel/i
    .test(s) && !/connection closed|CLOSED/.test(s);
}

const lostRace = (e: unknown) => /wrong last sequence/i.test(String(e));

function checkName(name: string): void {
  if (!isValidUsername(name)) {
    throw new RangeError(
      `JetStreamRoomStore: not a room name: ${JSON.stringify(name)}`,
    );
  }
}

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

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function noRoom(name: string): ProtocolError {
  return new ProtocolError("no-room", `No room "${name}"`);
}

const copyRow = (r: RoomRow): RoomRow => ({
  name: r.name,
  roomId: r.roomId.slice(),
  creator: r.creator,
  epoch: r.epoch,
  list: r.list.slice(),
  leaves: r.leaves.map((l) => l.slice()),
  members: [...r.members],
});

/** Does a position hold entry `seq` (it has not passed it, and it is not past its end)? */
function held(pos: ReadonlyMap<string, Held>, seq: number): boolean {
  for (const q of pos.values()) {
    if (q.upTo < seq && (q.until === undefined || seq <= q.until)) return true;
  }
  return false;
}

/**
 * Is entry `seq` deleted as of `s`: no position holds it, and an `ack`
 * went past it (an entry past every position's end before any ack passed
 * it stays, as in the memory store, until the room goes)?
 */
function dropped(s: State, seq: number): boolean {
  return seq <= s.acked && !held(s.pos, seq);
}

// --- the messages' bytes (inside the seal) ---

const w32 = (w: ByteWriter, b: Uint8Array) => w.u32(b.length).bytes(b);
const r32 = (r: ByteReader) => r.bytes(r.u32());
const wstr = (w: ByteWriter, s: string) => w.bytes8(utf8(s));
const rstr = (r: ByteReader) => fromUtf8(r.bytes8(), "room store string");
const wnum = (w: ByteWriter, n: number) => w.u64(BigInt(n));
function rnum(r: ByteReader): number {
  const n = Number(r.u64());
  if (!Number.isSafeInteger(n)) {
    throw new ProtocolError("store-malformed", "room store number");
  }
  return n;
}

function writeEntry(w: ByteWriter, e: RoomEntry): void {
  wnum(w, e.seq);
  w.u8(KINDS.indexOf(e.kind));
  wstr(w, e.from);
  w.bytes(e.data);
}

function readEntry(r: ByteReader, at: number): RoomEntry {
  const seq = rnum(r);
  const kind = KINDS[r.u8()];
  if (!kind) throw new ProtocolError("store-malformed", "room entry kind");
  const from = rstr(r);
  return { seq, kind, from, at, data: r.rest() };
}

function encode(m: Msg): Uint8Array {
  const w = new ByteWriter();
  if (m.type === "gone") return w.u8(T_GONE).bytes(m.gen).finish();
  if (m.type === "entry") {
    w.u8(T_ENTRY).bytes(m.gen);
    wnum(w, m.state);
    writeEntry(w, m.entry);
    return w.finish();
  }
  w.u8(T_STATE).bytes(m.gen);
  wnum(w, m.next);
  wnum(w, m.acked);
  const row = m.row;
  wstr(w, row.name);
  w32(w, row.roomId);
  wstr(w, row.creator);
  wnum(w, row.epoch);
  w32(w, row.list);
  w.u32(row.leaves.length);
  for (const l of row.leaves) w32(w, l);
  w.u32(row.members.length);
  for (const u of row.members) wstr(w, u);
  w.u32(m.pos.size);
  for (const [u, p] of m.pos) {
    wstr(w, u);
    wnum(w, p.upTo);
    wnum(w, p.until === undefined ? 0 : p.until + 1);
  }
  w.u32(m.keyed.size);
  for (const [u, to] of m.keyed) {
    wstr(w, u);
    w.u32(to.length);
    for (const t of to) wstr(w, t);
  }
  w.u8(m.entry ? 1 : 0);
  if (m.entry) writeEntry(w, m.entry);
  return w.finish();
}

function decode(b: Uint8Array, at: number): Msg {
  const r = new ByteReader(b, "room store message");
  const type = r.u8();
  const gen = r.bytes(GEN_BYTES);
  if (type === T_GONE) {
    r.end();
    return { type: "gone", gen };
  }
  if (type === T_ENTRY) {
    const state = rnum(r);
    return { type: "entry", gen, state, entry: readEntry(r, at) };
  }
  if (type !== T_STATE) {
    throw new ProtocolError("store-malformed", `room message type ${type}`);
  }
  const next = rnum(r), acked = rnum(r);
  const name = rstr(r), roomId = r32(r), creator = rstr(r);
  const epoch = rnum(r), list = r32(r);
  const leaves: Uint8Array[] = [];
  for (let n = r.u32(); n > 0; n--) leaves.push(r32(r));
  const members: string[] = [];
  for (let n = r.u32(); n > 0; n--) members.push(rstr(r));
  const pos = new Map<string, Held>();
  for (let n = r.u32(); n > 0; n--) {
    const u = rstr(r), upTo = rnum(r), until = rnum(r);
    pos.set(u, { upTo, until: until === 0 ? undefined : until - 1 });
  }
  const keyed = new Map<string, string[]>();
  for (let n = r.u32(); n > 0; n--) {
    const u = rstr(r), to: string[] = [];
    for (let k = r.u32(); k > 0; k--) to.push(rstr(r));
    keyed.set(u, to);
  }
  const row = { name, roomId, creator, epoch, list, leaves, members };
  if (r.u8() === 1) {
    return {
      type: "state",
      gen,
      row,
      next,
      acked,
      pos,
      keyed,
      entry: readEntry(r, at),
    };
  }
  r.end();
  return { type: "state", gen, row, next, acked, pos, keyed };
}

/** What a method commits: the message, and what it does once committed. */
interface Plan<T> {
  /** The message to publish on top; none: nothing to commit. */
  readonly msg?: Msg;
  /** After the commit (at stream sequence `seq`; 0 when nothing was published). */
  after?(seq: number): Promise<void>;
  /** The method's result. */
  result(seq: number): T;
}

/** The RoomStore of a cluster, on JetStream (PROTOCOL.md 11.6). */
export class JetStreamRoomStore implements RoomStore {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #cluster: string;
  readonly #stream: string;
  readonly #now: () => number;
  readonly #retryMs: number;
  readonly #keys: StoreKeys;
  readonly #refusals: Refusals;
  readonly #afterCommit: (method: string) => void;
  /** The changes of one room on this node run one at a time (fewer lost races). */
  readonly #locks = new Map<string, Promise<unknown>>();
  #closed = false;

  private constructor(
    js: JetStreamClient,
    jsm: JetStreamManager,
    o: JetStreamRoomStoreOptions,
  ) {
    this.#js = js;
    this.#jsm = jsm;
    this.#cluster = o.cluster;
    this.#stream = roomsStream(o.cluster);
    this.#now = o.now ?? Date.now;
    this.#retryMs = o.retryMs ?? JS_RETRY_MS;
    this.#keys = roomKeys(o.keys);
    this.#refusals = new Refusals(
      "cluster-store-refused",
      o.log ?? (() => {}),
    );
    this.#afterCommit = o.afterCommit ?? (() => {});
  }

  /** Messages refused so far (they did not open), by code (11.6). */
  refusals(): Record<string, number> {
    return this.#refusals.byCode();
  }

  /**
   * Open the store, making its stream when there is none (an existing one
   * is used as it is).
   * @throws {RangeError} a cluster name that is not a username
   */
  static async open(
    opts: JetStreamRoomStoreOptions,
  ): Promise<JetStreamRoomStore> {
    if (!isValidUsername(opts.cluster)) {
      throw new RangeError(
        `not a cluster name: ${JSON.stringify(opts.cluster)}`,
      );
    }
    const replicas = opts.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
      throw new RangeError(`replicas ${replicas}: 1 to 5`);
    }
    const jsm = await jetstreamManager(opts.nc, {
      timeout: 5_000,
      checkAPI: false,
    });
    const s = new JetStreamRoomStore(
      jetstream(opts.nc, { timeout: 5_000 }),
      jsm,
      opts,
    );
    await s.#retry(async () => {
      try {
        const had = (await jsm.streams.info(s.#stream)).config.num_replicas;
        // 11.6: one already there is used as it is; another count is said.
        if (had !== replicas) {
          opts.log?.("cluster-replicas-differ", {
            stream: s.#stream,
            replicas: had,
            wanted: replicas,
          });
        }
      } catch (e) {
        if (!/not found/i.test(String(e))) throw e;
        await jsm.streams.add({
          name: s.#stream,
          subjects: [`im.${opts.cluster}.room.*`],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          num_replicas: replicas,
          duplicate_window: 120_000_000_000,
        });
      }
    });
    return s;
  }

  // --- JetStream ---

  #open(): void {
    if (this.#closed) {
      throw new Error("JetStreamRoomStore: the store is closed");
    }
  }

  /** Run `fn` again while JetStream answers a transient error, until the deadline. */
  async #retry<T>(fn: () => Promise<T>): Promise<T> {
    const until = Date.now() + this.#retryMs;
    let delay = 50;
    for (;;) {
      this.#open();
      try {
        return await fn();
      } catch (e) {
        if (!transient(e) || Date.now() + delay > until || this.#closed) {
          throw e;
        }
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 500);
    }
  }

  #subject(name: string): string {
    return roomSubject(this.#cluster, name);
  }

  /** Seal and publish `m` on the room's subject if its last message is `top`. */
  #publish(name: string, m: Msg, top: number, at: number): Promise<number> {
    const subject = this.#subject(name);
    const sealed = sealStored(this.#keys, { subject, at, value: encode(m) });
    const msgID = crypto.randomUUID();
    return this.#retry(async () => {
      const ack = await this.#js.publish(subject, sealed, {
        msgID,
        expect: { lastSubjectSequence: top },
      });
      if (ack.stream !== this.#stream) {
        throw new Error(`JetStreamRoomStore: stored by stream ${ack.stream}`);
      }
      return ack.seq;
    });
  }

  #get(query: Record<string, unknown>): Promise<StoredMsg | null> {
    return this.#retry(() =>
      this.#jsm.streams.getMessage(
        this.#stream,
        // next_by_subj is served by nats-server 2.9's STREAM.MSG.GET.
        query as unknown as { seq: number },
      )
    );
  }

  /** Delete one message; false when it was gone already. */
  #delete(seq: number): Promise<boolean> {
    return this.#retry(async () => {
      try {
        return await this.#jsm.streams.deleteMessage(this.#stream, seq, false);
      } catch (e) {
        if (/not found/i.test(String(e))) return false;
        throw e;
      }
    });
  }

  /** Purge the room's subject below `seq` (it and after are kept). */
  async #purge(name: string, seq: number): Promise<void> {
    await this.#retry(() =>
      this.#jsm.streams.purge(this.#stream, {
        filter: this.#subject(name),
        seq,
      })
    );
  }

  /**
   * Open a message (11.6); one that does not open is refused (counted,
   * logged) and gives undefined.
   */
  #openMsg(sm: StoredMsg): Msg | undefined {
    const prefix = `im.${this.#cluster}.room.`;
    const name = sm.subject.slice(prefix.length);
    try {
      if (!sm.subject.startsWith(prefix) || !isValidUsername(name)) {
        throw new ProtocolError("store-malformed", "not a room's subject");
      }
      const o = openStored(this.#keys, sm.data, sm.subject);
      return decode(o.value, o.at);
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : "store-malformed";
      this.#refusals.refuse(code, { room: name.slice(0, 40), seq: sm.seq });
      return undefined;
    }
  }

  /** The room's messages from stream sequence `from` on, in order. */
  async *#walk(
    name: string,
    from = 1,
  ): AsyncGenerator<{ seq: number; time: number; msg: Msg | undefined }> {
    const subject = this.#subject(name);
    let seq = from;
    for (;;) {
      const sm = await this.#get({ seq, next_by_subj: subject });
      if (!sm) return;
      seq = sm.seq + 1;
      yield { seq: sm.seq, time: sm.time.getTime(), msg: this.#openMsg(sm) };
    }
  }

  /** The room as it is now: its last message and its state. */
  async #view(name: string): Promise<View> {
    const none = (top: number): View => ({
      top,
      stateSeq: 0,
      state: undefined,
      next: 1,
    });
    let seen = -1;
    for (;;) {
      const last = await this.#get({ last_by_subj: this.#subject(name) });
      if (!last) return none(0);
      const top = this.#openMsg(last);
      if (!top || top.type === "gone") return none(last.seq);
      if (top.type === "state") {
        return {
          top: last.seq,
          stateSeq: last.seq,
          state: top,
          next: top.next,
        };
      }
      const sm = await this.#get({ seq: top.state });
      const state = sm && sm.subject === last.subject
        ? this.#openMsg(sm)
        : undefined;
      if (
        state?.type === "state" && constantTimeEqual(state.gen, top.gen)
      ) {
        return {
          top: last.seq,
          stateSeq: top.state,
          state,
          next: top.entry.seq + 1,
        };
      }
      // Replaced and deleted since the last message was read: read again.
      if (!sm && last.seq !== seen) {
        seen = last.seq;
        continue;
      }
      this.#refusals.refuse("store-malformed", {
        room: name,
        seq: last.seq,
        why: "its state is missing",
      });
      return none(last.seq);
    }
  }

  /**
   * Change the room: plan on its view, publish on top of it; a lost race
   * (another node published first) plans again on the new view.
   */
  #mutate<T>(
    method: string,
    name: string,
    plan: (v: View) => Plan<T>,
  ): Promise<T> {
    const run = async (): Promise<T> => {
      const until = Date.now() + this.#retryMs;
      for (let attempt = 0;; attempt++) {
        this.#open();
        const v = await this.#view(name);
        const p = plan(v);
        if (!p.msg) return p.result(0);
        const m = p.msg;
        const at = m.type === "gone" ? this.#now() : m.entry?.at ?? this.#now();
        let seq: number;
        try {
          seq = await this.#publish(name, m, v.top, at);
        } catch (e) {
          if (!lostRace(e) || Date.now() > until) throw e;
          await sleep(Math.random() * Math.min(5 * 2 ** attempt, 100));
          continue;
        }
        this.#afterCommit(method);
        if (p.after) await p.after(seq);
        return p.result(seq);
      }
    };
    const prev = this.#locks.get(name) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(run);
    const tail = next.catch(() => {});
    this.#locks.set(name, tail);
    tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return next;
  }

  /** A state of `s`'s room with `change`s applied (no entry unless given). */
  #state(
    s: State,
    next: number,
    change: Partial<Omit<State, "type" | "gen" | "next">>,
  ): State {
    const { entry: _, ...rest } = s;
    return { ...rest, ...change, next };
  }

  /**
   * After a new state at `top` replaced `old` (at `oldSeq`): delete the old
   * one unless its entry is still held, and, when `walk`, every message
   * below `top` no reader returns (another generation's, a replaced state
   * without a held entry, a deleted entry), up to entry `upTo`.
   * @returns the entries deleted that `count` says to count
   */
  async #sweep(
    name: string,
    now: State,
    top: number,
    oldSeq: number,
    old: State,
    walk: { upTo: number; count: (seq: number) => boolean } | undefined,
  ): Promise<number> {
    let n = 0;
    if (!old.entry || dropped(now, old.entry.seq)) {
      if (
        (await this.#delete(oldSeq)) && old.entry && walk?.count(old.entry.seq)
      ) n++;
    }
    if (!walk) return n;
    for await (const m of this.#walk(name)) {
      if (m.seq >= top) break;
      const msg = m.msg;
      if (!msg) continue; // refused: left for expire
      if (!constantTimeEqual(msg.gen, now.gen) || msg.type === "gone") {
        await this.#delete(m.seq);
        continue;
      }
      const e = msg.entry;
      if (e && e.seq > walk.upTo) break;
      if (e ? dropped(now, e.seq) : msg.type === "state") {
        if ((await this.#delete(m.seq)) && e && walk.count(e.seq)) n++;
      }
    }
    return n;
  }

  /** The entries of the room's generation below `top` not dropped as of `s`. */
  async #entries(name: string, s: State, top: number): Promise<RoomEntry[]> {
    const out: RoomEntry[] = [];
    for await (const m of this.#walk(name)) {
      if (m.seq > top) break;
      const msg = m.msg;
      if (!msg || msg.type === "gone" || !msg.entry) continue;
      const e = msg.entry;
      if (!constantTimeEqual(msg.gen, s.gen) || dropped(s, e.seq)) continue;
      if (e.seq > (out.at(-1)?.seq ?? 0)) out.push(e); // not a copy twice
    }
    return out;
  }

  /** Mark the room gone on top of `v`, then purge its subject. */
  #gonePlan<T>(
    name: string,
    v: View,
    result: (seq: number) => T,
    count?: (n: number) => void,
  ): Plan<T> {
    const s = v.state!;
    return {
      msg: { type: "gone", gen: s.gen },
      after: async (seq) => {
        if (count) count((await this.#entries(name, s, v.top)).length);
        await this.#purge(name, seq + 1);
      },
      result,
    };
  }

  // --- RoomStore ---

  async create(row: RoomRow, entry: Omit<RoomEntry, "seq">): Promise<number> {
    this.#open();
    checkName(row.name);
    checkKind(entry, ["list"], "create");
    return await this.#mutate("create", row.name, (v) => {
      if (v.state) {
        throw new ProtocolError(
          "room-exists",
          `A room "${row.name}" exists already`,
        );
      }
      const pos = new Map<string, Held>();
      for (const m of row.members) pos.set(m, { upTo: 0, until: undefined });
      const first = this.#entry(1, entry);
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
          if (v.top > 0) await this.#purge(row.name, seq);
        },
        result: () => 1,
      };
    });
  }

  /** An entry of seq `seq` at the store's clock. */
  #entry(seq: number, e: Omit<RoomEntry, "seq">): RoomEntry {
    return {
      seq,
      kind: e.kind,
      from: e.from,
      at: this.#now(),
      data: e.data.slice(),
    };
  }

  async room(name: string): Promise<RoomRow | undefined> {
    this.#open();
    if (!isValidUsername(name)) return undefined;
    const s = (await this.#view(name)).state;
    return s && copyRow(s.row);
  }

  /** Every room now: its name and state. */
  async #rooms(): Promise<{ name: string; state: State }[]> {
    const prefix = `im.${this.#cluster}.room.`;
    const info = await this.#retry(() =>
      this.#jsm.streams.info(this.#stream, { subjects_filter: `${prefix}*` })
    );
    const names = Object.keys(info.state.subjects ?? {})
      .map((s) => s.slice(prefix.length))
      .filter(isValidUsername)
      .sort();
    const out: { name: string; state: State }[] = [];
    for (const name of names) {
      const s = (await this.#view(name)).state;
      if (s) out.push({ name, state: s });
    }
    return out;
  }

  async roomsOf(user: string): Promise<string[]> {
    this.#open();
    return (await this.#rooms())
      .filter((r) => r.state.pos.has(user))
      .map((r) => r.name);
  }

  async memberships(user: string): Promise<number> {
    this.#open();
    return (await this.#rooms())
      .filter((r) => {
        const p = r.state.pos.get(user);
        return p !== undefined && p.until === undefined;
      }).length;
  }

  async change(change: RoomChange): Promise<number> {
    this.#open();
    const name = change.row.name;
    checkName(name);
    checkKind(change.entry, ["list", "leave"], "change");
    const want = change.entry.kind === "list"
      ? change.row.epoch - 1
      : change.row.epoch;
    return await this.#mutate("change", name, (v) => {
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
        return this.#gonePlan(name, v, () => seq);
      }
      const now: State = {
        ...this.#state(s, seq + 1, {
          row: copyRow(change.row),
          pos,
          // A new epoch's key mails are counted afresh (10.4).
          ...(change.entry.kind === "list" && { keyed: new Map() }),
        }),
        entry: this.#entry(seq, change.entry),
      };
      return {
        msg: now,
        after: async (top) => {
          await this.#sweep(name, now, top, v.stateSeq, s, undefined);
        },
        result: () => seq,
      };
    });
  }

  async append(name: string, entry: Omit<RoomEntry, "seq">): Promise<number> {
    this.#open();
    checkKind(entry, ["msg", "keys"], "append");
    if (!isValidUsername(name)) throw noRoom(name);
    return await this.#mutate("append", name, (v) => {
      const s = v.state;
      if (!s) throw noRoom(name);
      const seq = v.next;
      return {
        msg: {
          type: "entry",
          gen: s.gen,
          state: v.stateSeq,
          entry: this.#entry(seq, entry),
        },
        result: () => seq,
      };
    });
  }

  async keyed(name: string, epoch: number, sender: string): Promise<string[]> {
    this.#open();
    if (!isValidUsername(name)) return [];
    const s = (await this.#view(name)).state;
    if (!s || s.row.epoch !== epoch) return [];
    return [...(s.keyed.get(sender) ?? [])].sort();
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
    this.#open();
    checkKind(entry, ["keys"], "appendKeys");
    if (!isValidUsername(name)) throw noRoom(name);
    return await this.#mutate("appendKeys", name, (v) => {
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
        ...this.#state(s, seq + 1, { keyed: pairs }),
        entry: this.#entry(seq, entry),
      };
      return {
        msg: now,
        after: async (top) => {
          await this.#sweep(name, now, top, v.stateSeq, s, undefined);
        },
        result: () => seq,
      };
    });
  }

  async read(
    name: string,
    user: string,
    opts: ReadOptions = {},
  ): Promise<RoomEntry[]> {
    this.#open();
    const after = opts.after ?? 0;
    checkSeq("after", after);
    if (opts.limit !== undefined) checkLimit(opts.limit);
    const limit = opts.limit ?? Infinity;
    if (!isValidUsername(name)) return [];
    const v = await this.#view(name);
    const p = v.state?.pos.get(user);
    if (!v.state || !p) return [];
    const from = Math.max(after, p.upTo);
    const end = Math.min(p.until ?? Infinity, v.next - 1);
    const out: RoomEntry[] = [];
    if (from >= end) return out;
    for await (const m of this.#walk(name)) {
      if (out.length >= limit || m.seq > v.top) break;
      const msg = m.msg;
      if (!msg || msg.type === "gone" || !msg.entry) continue;
      if (!constantTimeEqual(msg.gen, v.state.gen)) continue;
      const e = msg.entry;
      if (e.seq > end) break;
      // A copy NATS put back (it can) is not returned twice.
      if (e.seq > from && e.seq > (out.at(-1)?.seq ?? 0)) {
        out.push({ ...e, data: e.data.slice() });
      }
    }
    return out;
  }

  async position(
    name: string,
    user: string,
  ): Promise<RoomPosition | undefined> {
    this.#open();
    if (!isValidUsername(name)) return undefined;
    const p = (await this.#view(name)).state?.pos.get(user);
    if (!p) return undefined;
    return p.until === undefined
      ? { upTo: p.upTo }
      : { upTo: p.upTo, until: p.until };
  }

  async ack(name: string, user: string, upTo: number): Promise<number> {
    this.#open();
    checkSeq("upTo", upTo);
    if (!isValidUsername(name)) return 0;
    let deleted = 0;
    return await this.#mutate("ack", name, (v): Plan<number> => {
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
        return this.#gonePlan(name, v, () => deleted, (n) => deleted = n);
      }
      const now = this.#state(s, v.next, {
        pos,
        acked: Math.max(s.acked, to),
      });
      // Only the entries this position held can have been freed by it.
      let last = 0;
      for (let q = from + 1; q <= to; q++) if (dropped(now, q)) last = q;
      return {
        msg: now,
        after: async (top) => {
          deleted = await this.#sweep(
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

  async delivered(name: string, seq: number, sender: string): Promise<number> {
    this.#open();
    if (!isValidUsername(name)) return 0;
    let n = 0;
    for (const [user, p] of (await this.#view(name)).state?.pos ?? []) {
      if (user !== sender && p.until === undefined && p.upTo >= seq) n++;
    }
    return n;
  }

  async expire(
    before: number,
    opts: { limit?: number } = {},
  ): Promise<number> {
    this.#open();
    if (opts.limit !== undefined) checkLimit(opts.limit);
    const limit = opts.limit ?? Infinity;
    interface Old {
      name: string;
      seq: number;
      entry: RoomEntry;
      gen: Uint8Array;
    }
    const found: Old[] = [];
    const junk: { name: string; seq: number }[] = [];
    const prefix = `im.${this.#cluster}.room.`;
    let seq = 1;
    for (;;) {
      const sm = await this.#get({ seq, next_by_subj: `${prefix}*` });
      if (!sm) break;
      seq = sm.seq + 1;
      const name = sm.subject.slice(prefix.length);
      const msg = this.#openMsg(sm);
      if (!msg) {
        // No `at` to trust: gone once NATS's own time says it is old.
        if (sm.time.getTime() < before) junk.push({ name, seq: sm.seq });
        continue;
      }
      if (msg.type === "gone" || !msg.entry) continue;
      if (msg.entry.at < before) {
        found.push({ name, seq: sm.seq, entry: msg.entry, gen: msg.gen });
      } else if (msg.entry.at >= before + EXPIRE_SKEW_MS) break;
    }
    // Those no reader returns go, uncounted.
    const views = new Map<string, View>();
    const view = async (name: string) => {
      let v = views.get(name);
      if (!v) views.set(name, v = await this.#view(name));
      return v;
    };
    const live: Old[] = [];
    for (const o of found) {
      const s = (await view(o.name)).state;
      if (s && constantTimeEqual(s.gen, o.gen) && !dropped(s, o.entry.seq)) {
        live.push(o);
      } else junk.push(o);
    }
    for (const j of junk) {
      if (isValidUsername(j.name) && j.seq !== (await view(j.name)).top) {
        await this.#delete(j.seq);
      }
    }
    // The oldest first, as the mailbox store does (PROTOCOL.md 9.8).
    live.sort((a, b) =>
      a.entry.at - b.entry.at ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
      a.entry.seq - b.entry.seq
    );
    let n = 0;
    for (const o of live.slice(0, limit)) {
      await this.#uncover(o.name, o.seq);
      if (await this.#delete(o.seq)) n++;
    }
    return n;
  }

  /**
   * Make message `seq` of the room neither its last message nor its state:
   * a copy of the state (without its entry) is put on top when it is.
   */
  #uncover(name: string, seq: number): Promise<void> {
    return this.#mutate("expire", name, (v): Plan<void> => {
      const s = v.state;
      if (!s || (seq !== v.top && seq !== v.stateSeq)) {
        return { result: () => {} };
      }
      return { msg: this.#state(s, v.next, {}), result: () => {} };
    });
  }

  async bytes(name: string): Promise<number> {
    this.#open();
    if (!isValidUsername(name)) return 0;
    const v = await this.#view(name);
    if (!v.state) return 0;
    return (await this.#entries(name, v.state, v.top))
      .reduce((n, e) => n + e.data.length, 0);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#keys.wipe();
    }
    return Promise.resolve();
  }
}
