/**
 * {@link RoomStream}: one connection's stream of its user's rooms
 * (PROTOCOL.md 10.4), from `room-stream` to the end of the connection. For
 * each room the user has a position in, it reads the room's log after that
 * position and pushes the entries in `seq` order: a `list` as `room`, a
 * `leave` as `room-left`, a `msg` as `room-msg`, at most `window` entries
 * (and {@link MAX_UNACKED_BYTES}) of one room pushed and not yet covered by
 * a `room-ack`, and writing only while fewer than
 * {@link STREAM_QUEUE_BUDGET_BYTES} wait on the connection.
 *
 * Some entries are passed silently, never pushed: a `keys` entry, and the
 * user's own entries (its requests were answered directly: `room`,
 * `room-left`, `room-receipt`). A `keys` entry is also a gate (PROTOCOL.md
 * 10.4): nothing of the room past it is pushed to a member it names until
 * that member's mail log holds no record up to the seq of the mail that
 * carried the sender's key, so a member always holds a sender's chain
 * before that sender's messages reach it. Silent entries are handled with
 * the pushed entry before them (a `room-ack` of it covers them), or, with
 * nothing pushed and unacknowledged, by the stream itself.
 *
 * Once every room it started with has caught up (its log read to the end,
 * or stopped at a gate), it sends `room-synced` once. The stream holds
 * nothing the store does not: what it pushed and was not acknowledged is
 * pushed again by the next connection's stream.
 * @module
 */

import type { ServerToClient } from "../proto/mod.ts";
import { fromUtf8, type Logger, sleep, utf8 } from "../util/mod.ts";
import {
  MAX_UNACKED_BYTES,
  STREAM_QUEUE_BUDGET_BYTES,
  type StreamChannel,
} from "./mailbox_stream.ts";
import type { RoomEntry, RoomEntryKind, RoomStore, Store } from "./seams.ts";

/** The largest `window` of `room-stream` (PROTOCOL.md 10.4). */
export const MAX_ROOM_WINDOW = 1024;
/** How often a stream looks again at a queue that other messages fill. */
const DRAIN_POLL_MS = 20;

/** Settings of a {@link RoomStream}. */
export interface RoomStreamOptions {
  /** Whose rooms. */
  user: string;
  store: RoomStore;
  /** The mailbox logs: the key gates look at the user's (PROTOCOL.md 10.4). */
  mailStore: Store;
  channel: StreamChannel;
  /** Entries of one room pushed and not acknowledged, at most: 1 to {@link MAX_ROOM_WINDOW}. */
  window: number;
  /** Counts only, never an entry's content. */
  log: Logger;
  /** Called with the number of entries each push wrote. */
  onPushed?: (n: number) => void;
  /**
   * The stream stopped on its own (the store failed, or an entry could not
   * be written to an open connection): what was not acknowledged stays in
   * the rooms' logs, and the caller tells the user.
   */
  onFailed?: (why: string) => void;
}

/** An entry pushed and not yet acknowledged. */
export interface PushedEntry {
  readonly seq: number;
  readonly kind: RoomEntryKind;
  /** Who appended it (the sender of a `msg`). */
  readonly from: string;
  readonly bytes: number;
}

/** The result of {@link RoomStream.ack}. */
export type RoomAckResult =
  | {
    ok: true;
    /** The position before the acknowledgement. */
    from: number;
    /** The position now: `upTo`, or past the silent entries that follow it. */
    to: number;
    /** The pushed entries it covers, in seq order. */
    handled: PushedEntry[];
  }
  | { ok: false; message: string };

/** Where the stream is in one room. */
interface Cursor {
  readonly name: string;
  /** The highest seq pushed or passed silently. */
  cursor: number;
  /** The highest seq pushed (0: none). */
  pushed: number;
  /** The position as the stream last set it: every entry up to it handled. */
  acked: number;
  /** The highest `upTo` the client sent (0: none yet). */
  clientAcked: number;
  inflight: PushedEntry[];
  inflightBytes: number;
  /** Stopped at a `keys` entry whose mail the user has not acknowledged. */
  gated: boolean;
}

/**
 * The rooms of a stream that follows none, shared by every such stream and
 * never written (a stream makes its own map for its first room): a server
 * holds a stream per connection, idle or not, and an empty `Map` costs
 * about 170 bytes (issue 15, BENCHMARKS.md "Idle connections").
 */
const NO_ROOMS: ReadonlyMap<string, Cursor> = new Map();
/** The backlog of a stream past its first load and caught up: likewise shared. */
const NO_BACKLOG: ReadonlySet<string> = new Set();

/** One connection's stream of its user's rooms. */
export class RoomStream {
  #o: RoomStreamOptions;
  /** {@link NO_ROOMS} until the stream follows a room. */
  #rooms: ReadonlyMap<string, Cursor> = NO_ROOMS;
  /** Re-read which rooms the user is in (a room was made or joined). */
  #refresh = true;
  /** Rooms to read again; made when there is one (issue 15: an idle connection holds none). */
  #dirty: Set<string> | undefined;
  /**
   * The rooms of the first load not yet caught up; undefined before it,
   * {@link NO_BACKLOG} once none is left.
   */
  #backlog: ReadonlySet<string> | undefined;
  #synced = false;
  #count = 0;
  #running: Promise<void> | undefined;
  #closed = false;
  /** The last push's send; set by the first one (`#unsent` counts them). */
  #lastSend: Promise<void> | undefined;
  /** Pushes sent and not yet written. */
  #unsent = 0;
  /**
   * Ends a wait for the queue to drain when the stream closes; made by the
   * first such wait (issue 15: an AbortController costs about 400 bytes,
   * and an idle connection's stream never waits).
   */
  #stop: AbortController | undefined;

  /** @param o the settings */
  constructor(o: RoomStreamOptions) {
    this.#o = o;
  }

  /** Has the backlog been pushed (`room-synced` sent)? */
  get synced(): boolean {
    return this.#synced;
  }

  /**
   * Start, or go on after an acknowledgement or a change.
   * @param room the room that changed; undefined (or a room the stream does
   *   not follow yet) re-reads which rooms the user is in
   */
  wake(room?: string): void {
    if (this.#closed) return;
    if (room !== undefined && this.#rooms.has(room)) this.#mark(room);
    else this.#refresh = true;
    // #pump clears #running in the step its loop ends, so a wake() after
    // that starts a new pump and none is lost.
    this.#running ??= this.#pump();
  }

  /** The user's mail log was acknowledged: the rooms stopped at a key gate look again. */
  wakeGates(): void {
    if (this.#closed) return;
    let any = false;
    // A pump under way may be deciding a gate on a read of the mail log
    // made before this acknowledgement (and set `gated` after it): every
    // room looks again then, or that gate would wait for the next wake.
    const racing = this.#running !== undefined;
    for (const c of this.#rooms.values()) {
      if (c.gated || racing) {
        this.#mark(c.name);
        any = true;
      }
    }
    if (any) this.#running ??= this.#pump();
  }

  /**
   * A room of this name was just made: the stream forgets where it was in
   * an earlier room of the name (deleted once nobody had a position in it,
   * PROTOCOL.md 10.4), whose seqs the new room's start again below. The
   * next {@link wake} of the room reads the user's position in the new one.
   * @param room the room's name
   */
  reset(room: string): void {
    if (!this.#forget(room)) return;
    this.#dirty?.delete(room);
  }

  /** End the stream; what is in flight stays in the logs. */
  close(): void {
    this.#closed = true;
    this.#stop?.abort();
  }

  /** Read `room` again at the next turn of the pump. */
  #mark(room: string): void {
    (this.#dirty ??= new Set()).add(room);
  }

  /**
   * Stop following `room` (its backlog too).
   * @returns whether it was followed
   */
  #forget(room: string): boolean {
    if (!(this.#rooms as Map<string, Cursor>).delete(room)) return false;
    (this.#backlog as Set<string> | undefined)?.delete(room);
    return true;
  }

  /**
   * Wait for the pushing in progress, if any, to stop.
   * @returns when it stopped
   */
  async done(): Promise<void> {
    await this.#running;
  }

  /**
   * Check a `room-ack` and take the entries it covers out of flight
   * (PROTOCOL.md 10.4): `upTo` at most the highest seq pushed of the room
   * and not below an earlier `upTo`. The position moves to `upTo`, and on
   * past the entries passed silently after it (up to the next pushed entry,
   * or to all passed when none is in flight after it). A refused one
   * changes nothing; the caller writes the position to the store.
   * @param room the room
   * @param upTo the last seq handled
   * @returns the positions before and after, and the pushed entries covered
   */
  ack(room: string, upTo: number): RoomAckResult {
    const c = this.#rooms.get(room);
    if (!c) {
      return upTo === 0 ? { ok: true, from: 0, to: 0, handled: [] } : {
        ok: false,
        message:
          `Acknowledgement of room ${room} up to ${upTo} refused: nothing of it was pushed`,
      };
    }
    const top = Math.max(c.pushed, c.acked);
    if (!Number.isSafeInteger(upTo) || upTo > top) {
      return {
        ok: false,
        message:
          `Acknowledgement of room ${room} up to ${upTo} refused: only up to ${top} was pushed`,
      };
    }
    if (upTo < c.clientAcked) {
      return {
        ok: false,
        message:
          `Acknowledgement of room ${room} up to ${upTo} refused: below the earlier ${c.clientAcked}`,
      };
    }
    let n = 0;
    for (const p of c.inflight) {
      if (p.seq > upTo) break;
      n++;
      c.inflightBytes -= p.bytes;
    }
    const handled = c.inflight.splice(0, n);
    c.clientAcked = upTo;
    const next = c.inflight[0];
    const from = c.acked;
    c.acked = Math.max(c.acked, next ? next.seq - 1 : c.cursor, upTo);
    return { ok: true, from, to: c.acked, handled };
  }

  async #pump(): Promise<void> {
    try {
      while (
        !this.#closed && (this.#refresh || (this.#dirty?.size ?? 0) > 0)
      ) {
        if (this.#refresh) {
          this.#refresh = false;
          await this.#load();
        }
        const names = this.#dirty === undefined ? [] : [...this.#dirty];
        this.#dirty = undefined;
        for (const name of names) {
          const c = this.#rooms.get(name);
          if (c) await this.#fill(c);
          if (this.#closed) return;
        }
        this.#checkSynced();
      }
    } catch (e) {
      // The store failed: the stream stops; the entries stay in the logs
      // for the next `room-stream`.
      this.#fail((e as Error).message);
    } finally {
      this.#running = undefined;
    }
  }

  /** Follow the rooms the user has a position in now; read each again. */
  async #load(): Promise<void> {
    const { store, user } = this.#o;
    const names = await store.roomsOf(user);
    const now = new Set(names);
    for (const [name, c] of this.#rooms) {
      // Its position is gone (a removed member handled its last entry).
      if (!now.has(name) && c.inflight.length === 0) this.#forget(name);
    }
    for (const name of names) {
      if (!this.#rooms.has(name)) {
        const p = await store.position(name, user);
        if (p === undefined || this.#closed) continue;
        if (this.#rooms === NO_ROOMS) this.#rooms = new Map();
        (this.#rooms as Map<string, Cursor>).set(name, {
          name,
          cursor: p.upTo,
          pushed: 0,
          acked: p.upTo,
          clientAcked: 0,
          inflight: [],
          inflightBytes: 0,
          gated: false,
        });
      }
      this.#mark(name);
    }
    this.#backlog ??= this.#rooms.size === 0
      ? NO_BACKLOG
      : new Set(this.#rooms.keys());
  }

  /** Push what the room's window allows, reading its log after the cursor. */
  async #fill(c: Cursor): Promise<void> {
    const { store, user, window } = this.#o;
    c.gated = false;
    for (;;) {
      const space = window - c.inflight.length;
      if (
        this.#closed || space <= 0 || c.inflightBytes >= MAX_UNACKED_BYTES
      ) {
        return; // an acknowledgement wakes the room again
      }
      const page = await store.read(c.name, user, {
        after: c.cursor,
        limit: space,
      });
      for (const entry of page) {
        // Closed, or the room was made afresh meanwhile (reset).
        if (this.#closed || this.#rooms.get(c.name) !== c) return;
        if (entry.seq <= c.cursor) continue;
        if (entry.kind === "keys") {
          const wait = waitOf(entry, user);
          if (wait !== undefined && !(await this.#keyHandled(wait))) {
            if (this.#rooms.get(c.name) !== c) return;
            // The gate: nothing past it until the key mail is handled.
            c.gated = true;
            this.#caughtUp(c);
            return await this.#settle(c);
          }
          c.cursor = entry.seq;
          continue;
        }
        if (entry.from === user) {
          // The user's own: answered when it was made.
          c.cursor = entry.seq;
          continue;
        }
        const bytes = entry.data.length;
        if (
          c.inflight.length > 0 && c.inflightBytes + bytes > MAX_UNACKED_BYTES
        ) return;
        await this.#drained();
        if (this.#closed || this.#rooms.get(c.name) !== c) return;
        this.#push(c, entry, bytes);
      }
      if (page.length < space) {
        this.#caughtUp(c);
        return await this.#settle(c);
      }
    }
  }

  /**
   * With nothing pushed and unacknowledged, the entries passed silently are
   * handled: the stream moves the position past them itself, so a member
   * whose last entries were silent (its own leave, a `keys` entry) does not
   * hold them in the log.
   */
  async #settle(c: Cursor): Promise<void> {
    if (c.inflight.length > 0 || c.cursor <= c.acked) return;
    if (this.#rooms.get(c.name) !== c) return; // reset: another room now
    const to = c.cursor;
    await this.#o.store.ack(c.name, this.#o.user, to);
    c.acked = Math.max(c.acked, to);
  }

  /** Is the mail up to `seq` of the user's log handled (none of it left)? */
  async #keyHandled(seq: number): Promise<boolean> {
    const [first] = await this.#o.mailStore.read(this.#o.user, { limit: 1 });
    return first === undefined || first.seq > seq;
  }

  #caughtUp(c: Cursor): void {
    (this.#backlog as Set<string> | undefined)?.delete(c.name);
  }

  #checkSynced(): void {
    if (this.#synced || this.#closed || this.#backlog === undefined) return;
    if (this.#backlog.size > 0) return;
    this.#backlog = NO_BACKLOG;
    this.#synced = true;
    this.#send({ t: "room-synced", count: this.#count });
  }

  /** Wait while the connection holds {@link STREAM_QUEUE_BUDGET_BYTES} or more unsent. */
  async #drained(): Promise<void> {
    while (
      !this.#closed &&
      this.#o.channel.transport.queuedBytes >= STREAM_QUEUE_BUDGET_BYTES
    ) {
      if (this.#unsent > 0) {
        // Our last push settles once written: the queue before it is gone.
        await this.#lastSend;
      } else {
        // Other messages fill the queue: look again a little later.
        this.#stop ??= new AbortController();
        await sleep(DRAIN_POLL_MS, this.#stop.signal);
      }
    }
  }

  #push(c: Cursor, entry: RoomEntry, bytes: number): void {
    c.inflight.push({
      seq: entry.seq,
      kind: entry.kind,
      from: entry.from,
      bytes,
    });
    c.inflightBytes += bytes;
    c.cursor = entry.seq;
    c.pushed = entry.seq;
    if (!this.#synced) this.#count++;
    this.#o.onPushed?.(1);
    this.#send(entryPush(c.name, entry));
  }

  #send(msg: ServerToClient): void {
    this.#unsent++;
    this.#lastSend = this.#o.channel.send(msg).catch((e) => {
      // The connection is gone (its end stops the stream), or the entry no
      // longer fits the frame limit (a server restarted with a smaller
      // --max-frame): then the stream stops, so no acknowledgement past the
      // entry can skip it unhandled.
      this.#o.log("room-push-failed", {
        user: this.#o.user,
        error: (e as Error).message,
      });
      if (!this.#o.channel.closed) this.#fail((e as Error).message);
    }).finally(() => this.#unsent--);
  }

  #fail(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop?.abort();
    this.#o.log("room-stream-failed", { user: this.#o.user, error: why });
    this.#o.onFailed?.(why);
  }
}

/**
 * The push of a room entry (PROTOCOL.md 10.4): `room`, `room-left` or
 * `room-msg`. A `keys` entry is never pushed.
 * @param room the room's name
 * @param entry a `list`, `leave` or `msg` entry
 * @returns the message
 */
export function entryPush(room: string, entry: RoomEntry): ServerToClient {
  const b64 = entry.data.toBase64();
  switch (entry.kind) {
    case "list":
      return { t: "room", room, seq: entry.seq, list: b64 };
    case "leave":
      return { t: "room-left", room, seq: entry.seq, statement: b64 };
    default:
      return {
        t: "room-msg",
        room,
        seq: entry.seq,
        from: entry.from,
        at: entry.at,
        msg: b64,
      };
  }
}

/**
 * What a `keys` entry is (PROTOCOL.md 10.4): UTF-8 JSON
 * `{"epoch": e, "waits": {"<member>": <mail seq>}}`.
 */
export interface KeysEntryData {
  epoch: number;
  waits: Record<string, number>;
}

/**
 * The bytes of a `keys` entry.
 * @param d the epoch and, per recipient, the seq of its key mail
 * @returns UTF-8 JSON
 */
export function keysEntryData(d: KeysEntryData): Uint8Array {
  return utf8(JSON.stringify({ epoch: d.epoch, waits: d.waits }));
}

/**
 * The mail seq a `keys` entry makes `user` wait for, if any.
 * @param entry a `keys` entry
 * @param user the reader
 * @returns the seq, or undefined when it names no mail for `user` (or
 *   does not decode: then it gates nobody)
 */
function waitOf(entry: RoomEntry, user: string): number | undefined {
  try {
    const d = JSON.parse(fromUtf8(entry.data, "keys entry")) as unknown;
    const waits = (d as { waits?: unknown })?.waits;
    if (typeof waits !== "object" || waits === null) return undefined;
    if (!Object.hasOwn(waits, user)) return undefined;
    const seq = (waits as Record<string, unknown>)[user];
    return typeof seq === "number" && Number.isSafeInteger(seq)
      ? seq
      : undefined;
  } catch {
    return undefined;
  }
}
