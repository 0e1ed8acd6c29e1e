/**
 * The sealed layout of the cluster's rooms (PROTOCOL.md 11.6 _The room
 * store_), a part of the `JetStreamRoomStore` (room_store.ts): the
 * rooms' keys, stream and subjects; the messages on a room's subject (its
 * states, entries and `gone` mark) as opened, and their bytes inside the
 * seal (`encode`, `decode`); and the checks and rules on them every part
 * shares (a position holding an entry, an entry dropped).
 * @module
 */

import { deriveKeySync } from "../../crypto/mod.ts";
import { isValidUsername, type StoreKeys } from "../../proto/mod.ts";
import {
  ByteReader,
  ByteWriter,
  fromUtf8,
  ProtocolError,
  utf8,
  wipe,
} from "../../util/mod.ts";
import type { RoomEntry, RoomEntryKind, RoomRow } from "../seams.ts";

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

/** A position as held: `until` undefined for a member. */
export interface Held {
  upTo: number;
  until: number | undefined;
}

/** A room's state message, opened. */
export interface State {
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
export interface EntryMsg {
  readonly type: "entry";
  readonly gen: Uint8Array;
  readonly entry: RoomEntry;
  /** The stream sequence of the state it was appended under. */
  readonly state: number;
}

/** A deleted room's mark. */
export interface Gone {
  readonly type: "gone";
  readonly gen: Uint8Array;
}

export type Msg = State | EntryMsg | Gone;

/** A room as read: its last message, its state. */
export interface View {
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
/** Bytes of a room's generation. */
export const GEN_BYTES = 8;
export function checkName(name: string): void {
  if (!isValidUsername(name)) {
    throw new RangeError(
      `JetStreamRoomStore: not a room name: ${JSON.stringify(name)}`,
    );
  }
}

export function checkSeq(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what}: expected an integer >= 0, got ${n}`);
  }
}

export function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`limit: expected a positive integer, got ${limit}`);
  }
}

export function checkKind(
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

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export function noRoom(name: string): ProtocolError {
  return new ProtocolError("no-room", `No room "${name}"`);
}

export const copyRow = (r: RoomRow): RoomRow => ({
  name: r.name,
  roomId: r.roomId.slice(),
  creator: r.creator,
  epoch: r.epoch,
  list: r.list.slice(),
  leaves: r.leaves.map((l) => l.slice()),
  members: [...r.members],
});

/** Does a position hold entry `seq` (it has not passed it, and it is not past its end)? */
export function held(pos: ReadonlyMap<string, Held>, seq: number): boolean {
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
export function dropped(s: State, seq: number): boolean {
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

export function encode(m: Msg): Uint8Array {
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

export function decode(b: Uint8Array, at: number): Msg {
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

/** A state of `s`'s room with `change`s applied (no entry unless given). */
export function restate(
  s: State,
  next: number,
  change: Partial<Omit<State, "type" | "gen" | "next">>,
): State {
  const { entry: _, ...rest } = s;
  return { ...rest, ...change, next };
}
