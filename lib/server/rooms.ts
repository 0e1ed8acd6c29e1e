/**
 * {@link Rooms}: the room requests of logged-in users (PROTOCOL.md section
 * 10): make a room and change its members (`room-create`, `room-update`,
 * `room-leave`, each the creator's or the member's signed statement, checked
 * against the enrolled RSA keys), hand the other members a sender key
 * (`member-keys`, then `room-keys`: sealed mails to their mailboxes, and a
 * `keys` entry that gates the room's stream), write to a room
 * (`room-send`: each message stored once for every member), list one's
 * rooms (`my-rooms`), stream them (`room-stream`, room_stream.ts) and
 * acknowledge them (`room-ack`, with receipts to the senders), and the
 * retention sweep. The server reads no room message and holds no key: it
 * checks lists, leaves and the messages' headers, and keeps the rest
 * opaque. Its log holds counts, never a message, a list or a key. Rooms are
 * reached only through the {@link RoomStore} seam, mail through the
 * mailbox's {@link Store}.
 *
 * @example
 * ```ts ignore
 * const rooms = new Rooms({ store, prekeys, clients, session, limits, mailStore, notifyMail, ... });
 * rooms.start();                          // the retention sweep, now and every hour
 * await rooms.handle(s, m, reply);        // from the server's message switch
 * rooms.wake("B");                        // B acknowledged mail: its key gates look again
 * rooms.leave(s);                         // the connection ended: its stream too
 * await rooms.close();
 * ```
 * @module
 */

import type { PublicIdentity } from "../crypto/mod.ts";
import {
  bucketOf,
  type ClientToServer,
  decodeMail,
  decodeRoomLeave,
  decodeRoomList,
  decodeRoomMessage,
  DEFAULT_ROOM_MAX_MEMBERS,
  encodeMessage,
  MAX_REQUEST_ID,
  membersAt,
  type RoomBundle,
  type RoomLeave,
  type RoomList,
  type RoomSummary,
  verifyRoomLeave,
  verifyRoomList,
} from "../proto/mod.ts";
import { RECORD_MIN_BYTES } from "../record/mod.ts";
import { isImError, type Logger, ProtocolError, utf8 } from "../util/mod.ts";
import type { RequestLimits } from "./limits.ts";
import { fromBase64, noMailbox, type Refuse } from "./mail_keys.ts";
import { mailRecord } from "./mail_records.ts";
import { SWEEP_BATCH, SWEEP_INTERVAL_MS } from "./mail_sweep.ts";
import { keysEntryData, MAX_ROOM_WINDOW, RoomStream } from "./room_stream.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type {
  AppendEntry,
  Prekeys,
  RoomRow,
  RoomStore,
  Store,
} from "./seams.ts";

/** Rooms one user may be a member of, by default (`--room-max-rooms`). */
export const DEFAULT_ROOM_MAX_ROOMS = 100;
/** Receipts one `room-ack` sends one sender, at most: those of its newest messages (PROTOCOL.md 10.4). */
export const MAX_RECEIPTS_PER_ACK = 64;

/** Settings of {@link Rooms}. */
export interface RoomsOptions {
  store: RoomStore;
  /** The published mailbox keys: `member-keys`, and who has a mailbox. */
  prekeys: Prekeys;
  /** The client directory as it is now (it changes on a reload). */
  clients: () => Map<string, PublicIdentity>;
  /** A user's connection on this node, if any. */
  session: (user: string) => ClientSession | undefined;
  /** The per-user buckets: `room`. */
  limits: RequestLimits;
  /** The mailbox logs: `room-keys` appends to them, the key gates read them. */
  mailStore: Store;
  /** Records were committed to `user`'s mail log: its mail stream pushes them. */
  notifyMail: (user: string) => void;
  /** Members of one room, at most (default {@link DEFAULT_ROOM_MAX_MEMBERS}). */
  maxMembers?: number;
  /** Rooms one user may be a member of (default {@link DEFAULT_ROOM_MAX_ROOMS}). */
  maxRooms?: number;
  /** An entry older than this is deleted by the sweep. */
  retentionMs: number;
  /** The server's frame limit: every push and answer must fit one record under it. */
  maxFrameBytes: number;
  /** The server's clock. */
  now: () => number;
  log: Logger;
}

/**
 * The key mails one room's current epoch stored, per sender and recipient
 * (PROTOCOL.md 10.4): a second `room-keys` mail for a pair is not stored.
 * Held in memory only (lost on restart), forgotten when the epoch moves on.
 */
interface KeyedPairs {
  readonly roomId: Uint8Array;
  readonly epoch: number;
  /** Sender to the recipients its mails of this epoch were stored for. */
  readonly sent: Map<string, Set<string>>;
}

/** What the rooms keep of one connection; it ends with it. */
interface Connection {
  stream?: RoomStream;
}

type Msg<T extends ClientToServer["t"]> = Extract<ClientToServer, { t: T }>;

/** The requests {@link Rooms} answers (PROTOCOL.md 10.4). */
export type RoomRequest = Msg<
  | "room-create"
  | "room-update"
  | "room-leave"
  | "member-keys"
  | "room-keys"
  | "room-send"
  | "my-rooms"
  | "room-stream"
  | "room-ack"
>;

const ROOM_REQUESTS: ReadonlySet<string> = new Set([
  "room-create",
  "room-update",
  "room-leave",
  "member-keys",
  "room-keys",
  "room-send",
  "my-rooms",
  "room-stream",
  "room-ack",
]);

/**
 * Is `m` a request for {@link Rooms}?
 * @param m a client message
 * @returns true for `room-create`, `room-update`, `room-leave`,
 *   `member-keys`, `room-keys`, `room-send`, `my-rooms`, `room-stream`,
 *   `room-ack`
 */
export function isRoomRequest(m: ClientToServer): m is RoomRequest {
  return ROOM_REQUESTS.has(m.t);
}

/** Counts for the log (PROTOCOL.md 9.9, 10.4): never a message, a list or a key. */
interface Counts {
  created: number;
  changed: number;
  left: number;
  stored: number;
  keyed: number;
  pushed: number;
  deleted: number;
  receipts: number;
  expired: number;
  refused: Record<string, number>;
}

const newCounts = (): Counts => ({
  created: 0,
  changed: 0,
  left: 0,
  stored: 0,
  keyed: 0,
  pushed: 0,
  deleted: 0,
  receipts: 0,
  expired: 0,
  refused: {},
});

/** The room requests of this node's users. */
export class Rooms {
  #o: RoomsOptions;
  #maxMembers: number;
  #maxRooms: number;
  #conns = new WeakMap<ClientSession, Connection>();
  #streams = new Set<RoomStream>();
  #closed = false;
  #counts = newCounts();
  #refuseCounted: Refuse = (reply, code, message) =>
    this.#refuse(reply, code, message);
  #timer: ReturnType<typeof setInterval> | undefined;
  #sweeping: Promise<void> | undefined;
  /**
   * Per room name, the tail of its chain of room-changing requests
   * (`room-create`, `room-update`, `room-leave`, `room-keys`): each runs
   * alone; an entry is removed when its chain is idle.
   */
  #locks = new Map<string, Promise<void>>();
  /** Per room name, the key mails of its epoch stored (`room-keys`). */
  #keyed = new Map<string, KeyedPairs>();

  /** @param o the seams, limits and clock */
  constructor(o: RoomsOptions) {
    this.#o = o;
    this.#maxMembers = o.maxMembers ?? DEFAULT_ROOM_MAX_MEMBERS;
    this.#maxRooms = o.maxRooms ?? DEFAULT_ROOM_MAX_ROOMS;
  }

  /**
   * Run the retention sweep now and then every hour (`SWEEP_INTERVAL_MS`),
   * until {@link close}.
   * @returns when the first sweep is done (a failure is logged, not thrown)
   */
  start(): Promise<void> {
    if (this.#closed || this.#timer !== undefined) return Promise.resolve();
    this.#timer = setInterval(
      () => this.#sweepInBackground(),
      SWEEP_INTERVAL_MS,
    );
    this.#sweepInBackground();
    return this.#sweeping ?? Promise.resolve();
  }

  /**
   * One room request, to its handler below. Nothing escapes: a refusal the
   * store raises (`room-exists`, `room-conflict`, `no-room` when a change
   * raced another) is answered with its code, any other failure of the
   * store (a disk error) `store-failed`, and nothing was changed or
   * acknowledged by it.
   * @param s the connection
   * @param m the message
   * @param reply its answer
   */
  async handle(s: ClientSession, m: RoomRequest, reply: Reply): Promise<void> {
    try {
      switch (m.t) {
        case "room-create":
          return await this.create(s, m, reply);
        case "room-update":
          return await this.update(s, m, reply);
        case "room-leave":
          return await this.leaveRoom(s, m, reply);
        case "member-keys":
          return await this.memberKeys(s, m, reply);
        case "room-keys":
          return await this.roomKeys(s, m, reply);
        case "room-send":
          return await this.send(s, m, reply);
        case "my-rooms":
          return await this.myRooms(s, m, reply);
        case "room-stream":
          return await this.stream(s, m, reply);
        case "room-ack":
          return await this.ack(s, m, reply);
      }
    } catch (e) {
      if (s.channel.closed) return;
      if (isImError(e)) {
        await this.#refuse(reply, e.code, e.message).catch(() => {});
        return;
      }
      this.#o.log("room-store-failed", {
        user: s.user,
        request: m.t,
        error: (e as Error).message,
      });
      await this.#refuse(
        reply,
        "store-failed",
        "The server could not reach its room store; try again later",
      ).catch(() => {});
    }
  }

  /**
   * `room-create` (PROTOCOL.md 10.1, 10.4), checked in order:
   * `rate-limited`; the list decodes, names the user as creator and is at
   * epoch 1 (`bad-room`); `room-full`; it verifies with the user's
   * enrolled key (`room-forged`); the name is free (`room-exists`); every
   * member has a mailbox (`no-mailbox`) and room for one more room
   * (`too-many-rooms`). Then the room is stored, the creator answered and
   * the other members' streams woken.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room`, or `error`
   */
  async create(
    s: ClientSession,
    m: Msg<"room-create">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#take(s)) return this.#rateLimited(reply);
    let list: RoomList;
    try {
      list = decodeRoomList(fromBase64(m.list, "member list"));
    } catch (e) {
      return this.#refuse(
        reply,
        "bad-room",
        `Room refused: ${(e as Error).message}`,
      );
    }
    if (list.creator !== s.user) {
      return this.#refuse(
        reply,
        "bad-room",
        `Room refused: its list names ${list.creator} as its creator, not you`,
      );
    }
    if (list.epoch !== 1) {
      return this.#refuse(
        reply,
        "bad-room",
        `Room refused: a new room's list is at epoch 1, not ${list.epoch}`,
      );
    }
    if (list.members.length > this.#maxMembers) return this.#full(reply, list);
    await this.#verifyList(list, s.user);
    // The answer is written after the lock is let go: a client slow to
    // read holds up no one else's change of the room.
    const answered = await this.#locked(list.name, async () => {
      if (await this.#o.store.room(list.name)) {
        return later(this.#refuse(
          reply,
          "room-exists",
          `A room named ${list.name} exists already; choose another name`,
        ));
      }
      const refused = await this.#checkJoining(reply, list.members);
      if (refused) return refused;
      const row: RoomRow = {
        name: list.name,
        roomId: list.roomId,
        creator: list.creator,
        epoch: 1,
        list: list.bytes,
        leaves: [],
        members: [...list.members],
      };
      const seq = await this.#o.store.create(row, {
        kind: "list",
        from: s.user,
        at: this.#o.now(),
        data: list.bytes,
      });
      this.#counts.created++;
      // The name may have been a room's that was deleted (PROTOCOL.md
      // 10.4): nothing of that one is remembered under it any more.
      this.#keyed.delete(list.name);
      for (const stream of this.#streams) stream.reset(list.name);
      const answer = reply({
        t: "room",
        room: list.name,
        seq,
        list: list.bytes.toBase64(),
      });
      this.#notify(list.members, list.name);
      return later(answer);
    });
    await answered.done;
  }

  /**
   * `room-update`: the creator's next list (PROTOCOL.md 10.1, 10.4):
   * `rate-limited`; it decodes (`bad-room`); the room exists (`no-room`);
   * the user is its creator (`not-creator`) and still a member
   * (`not-a-member`); same room id, name and creator (`bad-room`); its
   * epoch is the stored one plus one (`room-conflict`); `room-full`;
   * `room-forged`; the members it adds have a mailbox and room for one
   * more room. Members added start just before the new entry, members
   * removed get it and nothing after.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room`, or `error`
   */
  async update(
    s: ClientSession,
    m: Msg<"room-update">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#take(s)) return this.#rateLimited(reply);
    let list: RoomList;
    try {
      list = decodeRoomList(fromBase64(m.list, "member list"));
    } catch (e) {
      return this.#refuse(
        reply,
        "bad-room",
        `Room change refused: ${(e as Error).message}`,
      );
    }
    const first = await this.#updatable(s, list, reply);
    if (!first.ok) return first.refused.done;
    if (list.members.length > this.#maxMembers) return this.#full(reply, list);
    await this.#verifyList(list, s.user);
    // Checked again on the row as it is now, alone among the room's
    // changes (PROTOCOL.md 10.4): a change that came meanwhile is seen.
    const answered = await this.#locked(list.name, async () => {
      const now = await this.#updatable(s, list, reply);
      if (!now.ok) return now.refused;
      const row = now.row;
      const current = new Set(row.members);
      const next = new Set(list.members);
      const added = list.members.filter((u) => !current.has(u));
      const removed = row.members.filter((u) => !next.has(u));
      const refused = await this.#checkJoining(reply, added);
      if (refused) return refused;
      const seq = await this.#o.store.change({
        row: {
          ...row,
          epoch: list.epoch,
          list: list.bytes,
          leaves: [],
          members: [...list.members],
        },
        entry: {
          kind: "list",
          from: s.user,
          at: this.#o.now(),
          data: list.bytes,
        },
        added,
        removed,
      });
      this.#counts.changed++;
      // A new epoch: its key mails are counted afresh.
      this.#keyed.delete(row.name);
      const answer = reply({
        t: "room",
        room: row.name,
        seq,
        list: list.bytes.toBase64(),
      });
      this.#notify([...list.members, ...removed], row.name);
      return later(answer);
    });
    await answered.done;
  }

  /**
   * The checks of `room-update` on the room's row as stored now, in order:
   * `no-room`, `not-creator`, `not-a-member`, `bad-room`, `room-conflict`.
   * @returns the row, or the refusal being written (not awaited)
   */
  async #updatable(
    s: ClientSession,
    list: RoomList,
    reply: Reply,
  ): Promise<{ ok: true; row: RoomRow } | { ok: false; refused: Later }> {
    const no = (p: Promise<void>) => ({
      ok: false as const,
      refused: later(p),
    });
    const row = await this.#o.store.room(list.name);
    if (!row) return no(this.#noRoom(reply, list.name));
    if (s.user !== row.creator) {
      return no(this.#refuse(
        reply,
        "not-creator",
        `Only ${row.creator}, who made room ${row.name}, can change its members`,
      ));
    }
    if (!row.members.includes(s.user)) {
      return no(this.#refuse(
        reply,
        "not-a-member",
        `You left room ${row.name}; its members can no longer change`,
      ));
    }
    if (list.creator !== row.creator || !sameBytes(list.roomId, row.roomId)) {
      return no(this.#refuse(
        reply,
        "bad-room",
        `Room change refused: the list is not of room ${row.name} (another room id or creator)`,
      ));
    }
    if (list.epoch !== row.epoch + 1) {
      return no(this.#refuse(
        reply,
        "room-conflict",
        `Room change refused: room ${row.name} is at epoch ${row.epoch}, so its next list is at ${
          row.epoch + 1
        }, not ${list.epoch}`,
      ));
    }
    return { ok: true, row };
  }

  /**
   * `room-leave` (PROTOCOL.md 10.1, 10.4): `rate-limited`; the statement
   * decodes and names the user (`bad-room`); it names a room the user is a
   * member of (`not-a-member`), at its epoch (`room-conflict`); it
   * verifies with the user's enrolled key (`room-forged`). The user gets
   * nothing of the room after it; a creator that leaves leaves a room
   * whose members can no longer change. The membership and epoch are
   * checked again, alone among the room's changes, on the row as it is
   * then, and the new leaves and members are made from that row (two
   * members leaving at once both leave). A leaver with nothing of the
   * others left to read has its position dropped at once.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-left`, or `error`
   */
  async leaveRoom(
    s: ClientSession,
    m: Msg<"room-leave">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#take(s)) return this.#rateLimited(reply);
    let leave: RoomLeave;
    try {
      leave = decodeRoomLeave(fromBase64(m.statement, "leave statement"));
    } catch (e) {
      return this.#refuse(
        reply,
        "bad-room",
        `Leave refused: ${(e as Error).message}`,
      );
    }
    if (leave.member !== s.user) {
      return this.#refuse(
        reply,
        "bad-room",
        `Leave refused: the statement names ${leave.member}, not you`,
      );
    }
    let found: RoomRow | undefined;
    for (const name of await this.#o.store.roomsOf(s.user)) {
      const r = await this.#o.store.room(name);
      if (r && sameBytes(r.roomId, leave.roomId)) {
        found = r;
        break;
      }
    }
    const first = this.#leavable(found, leave, reply);
    if (!first.ok) return first.refused.done;
    const name = first.row.name;
    const key = this.#o.clients().get(s.user);
    if (!key) throw forgedBy(s.user);
    await verifyRoomLeave(leave, key);
    const answered = await this.#locked(name, async () => {
      const stored = await this.#o.store.room(name);
      const now = this.#leavable(
        stored && sameBytes(stored.roomId, leave.roomId) ? stored : undefined,
        leave,
        reply,
      );
      if (!now.ok) return now.refused;
      const row = now.row;
      const leaves = [...row.leaves, leave.bytes];
      const members = membersAt(
        decodeRoomList(row.list),
        leaves.map((b) => decodeRoomLeave(b)),
      );
      const seq = await this.#o.store.change({
        row: { ...row, leaves, members },
        entry: {
          kind: "leave",
          from: s.user,
          at: this.#o.now(),
          data: leave.bytes,
        },
        added: [],
        removed: [s.user],
      });
      this.#counts.left++;
      await this.#letGo(name, s.user, seq);
      const answer = reply({
        t: "room-left",
        room: name,
        seq,
        statement: leave.bytes.toBase64(),
      });
      // Its own stream too: it moves past its own leave, and lets the room go.
      this.#notify([...members, s.user], name);
      return later(answer);
    });
    await answered.done;
  }

  /**
   * The checks of `room-leave` on a room's row, in order: the user is a
   * member (`not-a-member`), the leave of its epoch (`room-conflict`).
   * @param row the room whose `room_id` the leave names, if any
   * @returns the row, or the refusal being written (not awaited)
   */
  #leavable(
    row: RoomRow | undefined,
    leave: RoomLeave,
    reply: Reply,
  ): { ok: true; row: RoomRow } | { ok: false; refused: Later } {
    if (!row || !row.members.includes(leave.member)) {
      return {
        ok: false,
        refused: later(this.#refuse(
          reply,
          "not-a-member",
          "Leave refused: you are not a member of the room it names",
        )),
      };
    }
    if (leave.epoch !== row.epoch) {
      return {
        ok: false,
        refused: later(this.#refuse(
          reply,
          "room-conflict",
          `Leave refused: room ${row.name} is at epoch ${row.epoch}, not ${leave.epoch}`,
        )),
      };
    }
    return { ok: true, row };
  }

  /**
   * A member just left at `until`: if nothing of the others is left for it
   * to read before its leave (only its own entries and `keys` entries,
   * neither ever pushed to it), its position is dropped now, as its stream
   * would drop it passing those silently (room_stream.ts): so a room whose
   * members all left is deleted (PROTOCOL.md 10.4) without waiting for a
   * leaver to stream again. Else its stream hands it the rest first. Its
   * leave is stored already: a store that fails here is logged, and the
   * position left for its stream to move.
   */
  async #letGo(name: string, user: string, until: number): Promise<void> {
    try {
      const limit = SWEEP_BATCH;
      let after = 0;
      for (;;) {
        const page = await this.#o.store.read(name, user, { after, limit });
        if (page.some((e) => e.from !== user && e.kind !== "keys")) return;
        if (page.length < limit) break;
        after = page.at(-1)!.seq;
      }
      this.#counts.deleted += await this.#o.store.ack(name, user, until);
    } catch (e) {
      this.#o.log("room-store-failed", {
        user,
        request: "room-leave",
        error: (e as Error).message,
      });
    }
  }

  /**
   * `member-keys` (PROTOCOL.md 10.2, 10.4): the mailbox keys of the room's
   * other members, as `keys` gives them, to seal a sender key to each.
   * Answered by one `room-bundles` per as many bundles as fit a frame, all
   * naming the request, together one entry per other member (empty strings
   * for one whose keys are gone).
   * @param s the connection
   * @param m the message
   * @param reply its answers: `room-bundles`, or `error` `rate-limited`,
   *   `no-room`, `not-a-member`
   */
  async memberKeys(
    s: ClientSession,
    m: Msg<"member-keys">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#take(s)) return this.#rateLimited(reply);
    const row = await this.#memberRoom(s, m.room, reply);
    if (!row) return;
    const bundles: RoomBundle[] = [];
    for (const user of row.members) {
      if (user === s.user) continue;
      const identity = this.#o.clients().get(user);
      const certs = identity && (await this.#o.prekeys.certs(user));
      bundles.push({
        user,
        identity: certs ? identity.publicDer.toBase64() : "",
        identityKey: certs?.identityCert.toBase64() ?? "",
        signedPrekey: certs?.signedPrekeyCert.toBase64() ?? "",
      });
    }
    const empty = this.#answerBytes({
      t: "room-bundles",
      room: row.name,
      epoch: row.epoch,
      bundles: [],
    });
    for (const page of pages(bundles, empty, this.#o.maxFrameBytes)) {
      await reply({
        t: "room-bundles",
        room: row.name,
        epoch: row.epoch,
        bundles: page,
      });
    }
  }

  /**
   * `room-keys` (PROTOCOL.md 10.2, 10.4): the user's sender key, one
   * sealed mail per other member: `rate-limited`; a member
   * (`no-room`, `not-a-member`); the room's epoch (`room-stale-epoch`); at
   * most one mail per other member, each a `MAIL` from the user to another
   * member whose ciphertext is exactly as long as a padded `ROOM_KEY` of
   * this room ({@link roomKeyCiphertextBytes}), none twice (`bad-mail`),
   * each fitting a `mail` push (`mail-too-large`). A mail for a member
   * whose key mail from the user this epoch was stored already is not
   * stored again (a hand-out sent again after a crash), and is no error.
   * The other mails go to the recipients' logs in one transaction
   * (outside their quota), then a `keys` entry that holds the room's later
   * entries back from each recipient until it acknowledged its mail. Run
   * alone among the room's changes, so one epoch's mails are counted once.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-keyed` whose `count` is the mails stored
   *   now, or `error`
   */
  async roomKeys(
    s: ClientSession,
    m: Msg<"room-keys">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#take(s)) return this.#rateLimited(reply);
    const answered = await this.#locked(m.room, async () => {
      const refuse = (code: string, message: string) =>
        later(this.#refuse(reply, code, message));
      const row = await this.#o.store.room(m.room);
      if (!row) return later(this.#noRoom(reply, m.room));
      if (!row.members.includes(s.user)) {
        return refuse("not-a-member", `You are not a member of room ${m.room}`);
      }
      if (m.epoch !== row.epoch) {
        return later(this.#stale(reply, row, m.epoch));
      }
      const others = new Set(row.members.filter((u) => u !== s.user));
      if (m.mails.length > others.size) {
        return refuse(
          "bad-mail",
          `Keys refused: ${m.mails.length} mails for ${others.size} other members of room ${row.name}`,
        );
      }
      const keySize = roomKeyCiphertextBytes(row.name);
      const mails: { recipient: string; mail: Uint8Array }[] = [];
      for (const [i, text] of m.mails.entries()) {
        let mail: Uint8Array;
        let decoded;
        try {
          mail = fromBase64(text, "mail");
          decoded = decodeMail(mail);
        } catch (e) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${i + 1}: ${(e as Error).message}`,
          );
        }
        const { header } = decoded;
        if (header.sender !== s.user) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${i + 1} names another sender than you`,
          );
        }
        if (!others.has(header.recipient)) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${
              i + 1
            } is for ${header.recipient}, not another member of room ${row.name}`,
          );
        }
        if (decoded.ciphertext.length !== keySize) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${
              i + 1
            } has a ciphertext of ${decoded.ciphertext.length} bytes, not the ${keySize} of a room key of room ${row.name}`,
          );
        }
        if (mails.some((x) => x.recipient === header.recipient)) {
          return refuse(
            "bad-mail",
            `Keys refused: two mails for ${header.recipient}`,
          );
        }
        const pushBytes = this.#answerBytes({
          t: "mail",
          seq: Number.MAX_SAFE_INTEGER,
          from: s.user,
          at: Number.MAX_SAFE_INTEGER,
          mail: mail.toBase64(),
        });
        if (pushBytes > this.#o.maxFrameBytes) {
          return refuse(
            "mail-too-large",
            `Keys refused: mail ${
              i + 1
            } would need a record of ${pushBytes} bytes, over the limit of ${this.#o.maxFrameBytes}`,
          );
        }
        mails.push({ recipient: header.recipient, mail });
      }
      // One key mail per sender and recipient at this epoch: a repeat is
      // not stored again (PROTOCOL.md 10.4).
      let keyed = this.#keyed.get(row.name);
      if (
        keyed &&
        (keyed.epoch !== row.epoch || !sameBytes(keyed.roomId, row.roomId))
      ) keyed = undefined;
      const sent = keyed?.sent.get(s.user);
      const fresh = mails.filter((x) => !sent?.has(x.recipient));
      if (fresh.length > 0) {
        const entries: AppendEntry[] = fresh.map((x) => ({
          user: x.recipient,
          data: mailRecord(x.mail),
          counted: false,
        }));
        const seqs = await this.#o.mailStore.appendMany(entries);
        // Committed: the recipients' mail streams push them now.
        for (const x of fresh) this.#o.notifyMail(x.recipient);
        const waits = Object.fromEntries(
          fresh.map((x, i) => [x.recipient, seqs[i]!]),
        );
        await this.#o.store.append(row.name, {
          kind: "keys",
          from: s.user,
          at: this.#o.now(),
          data: keysEntryData({ epoch: row.epoch, waits }),
        });
        // Remembered once its gate is stored too: a request that failed
        // before (store-failed) is taken whole when sent again.
        if (!keyed) {
          keyed = { roomId: row.roomId, epoch: row.epoch, sent: new Map() };
          this.#keyed.set(row.name, keyed);
        }
        const mine = keyed.sent.get(s.user) ?? new Set();
        for (const x of fresh) mine.add(x.recipient);
        keyed.sent.set(s.user, mine);
        this.#counts.keyed += fresh.length;
      }
      return later(reply({
        t: "room-keyed",
        room: row.name,
        epoch: row.epoch,
        count: fresh.length,
      }));
    });
    await answered.done;
  }

  /**
   * `room-send` (PROTOCOL.md 10.3, 10.4), checked in order:
   * `rate-limited`; a member (`no-room`, `not-a-member`); a `ROOM_MSG` whose
   * header names this room and the user (`bad-room-msg`) at the room's
   * epoch (`room-stale-epoch`); its push fits a frame
   * (`room-msg-too-large`). Stored once; the answer is its `room-receipt`
   * (`delivered` 0), and the other members' streams push it.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-receipt`, or `error`
   */
  async send(
    s: ClientSession,
    m: Msg<"room-send">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#take(s)) return this.#rateLimited(reply);
    const row = await this.#memberRoom(s, m.room, reply);
    if (!row) return;
    let msg: Uint8Array;
    let header;
    try {
      msg = fromBase64(m.msg, "room message");
      header = decodeRoomMessage(msg).header;
    } catch (e) {
      return this.#refuse(
        reply,
        "bad-room-msg",
        `Room message refused: ${(e as Error).message}`,
      );
    }
    if (header.name !== row.name || !sameBytes(header.roomId, row.roomId)) {
      return this.#refuse(
        reply,
        "bad-room-msg",
        `Room message refused: its header names another room than ${row.name}`,
      );
    }
    if (header.sender !== s.user) {
      return this.#refuse(
        reply,
        "bad-room-msg",
        "Room message refused: its header names another sender than you",
      );
    }
    if (header.epoch !== row.epoch) {
      return this.#stale(reply, row, header.epoch);
    }
    const pushBytes = this.#answerBytes({
      t: "room-msg",
      room: row.name,
      seq: Number.MAX_SAFE_INTEGER,
      from: s.user,
      at: Number.MAX_SAFE_INTEGER,
      msg: msg.toBase64(),
    });
    if (pushBytes > this.#o.maxFrameBytes) {
      return this.#refuse(
        reply,
        "room-msg-too-large",
        `Room message of ${msg.length} bytes refused: delivered, it would need a record of ${pushBytes} bytes, over the limit of ${this.#o.maxFrameBytes}`,
      );
    }
    const seq = await this.#o.store.append(row.name, {
      kind: "msg",
      from: s.user,
      at: this.#o.now(),
      data: msg,
    });
    this.#counts.stored++;
    const answered = reply({
      t: "room-receipt",
      room: row.name,
      seq,
      delivered: 0,
      members: row.members.filter((u) => u !== s.user).length,
    });
    this.#notify(row.members, row.name);
    await answered;
  }

  /**
   * `my-rooms`: every room the user is a member of, with its newest list,
   * the leaves of its epoch and its members online on this node; as many
   * rooms as fit one record (by name), the rest left out and counted in
   * the log.
   * @param s the connection
   * @param _m the message
   * @param reply its answer: `rooms`, or `error` `rate-limited`
   */
  async myRooms(
    s: ClientSession,
    _m: Msg<"my-rooms">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#take(s)) return this.#rateLimited(reply);
    const rooms: RoomSummary[] = [];
    let bytes = this.#answerBytes({ t: "rooms", rooms: [] });
    let left = 0;
    for (const name of await this.#o.store.roomsOf(s.user)) {
      const row = await this.#o.store.room(name);
      if (!row || !row.members.includes(s.user)) continue;
      const summary: RoomSummary = {
        name: row.name,
        list: row.list.toBase64(),
        leaves: row.leaves.map((l) => l.toBase64()),
        online: row.members.filter((u) => this.#o.session(u) !== undefined),
      };
      const more = JSON.stringify(summary).length + 1;
      if (bytes + more > this.#o.maxFrameBytes) {
        left++;
        continue;
      }
      bytes += more;
      rooms.push(summary);
    }
    if (left > 0) this.#o.log("rooms-truncated", { left });
    await reply({ t: "rooms", rooms });
  }

  /**
   * `room-stream`: start streaming the user's rooms on this connection
   * (PROTOCOL.md 10.4, room_stream.ts). A `window` that is not an integer
   * from 1 to {@link MAX_ROOM_WINDOW}, or a second `room-stream` on one
   * connection, is `bad-room-stream`.
   * @param s the connection
   * @param m the message
   * @param reply errors only; the stream is the answer
   */
  stream(s: ClientSession, m: Msg<"room-stream">, reply: Reply): Promise<void> {
    if (
      !Number.isInteger(m.window) || m.window < 1 || m.window > MAX_ROOM_WINDOW
    ) {
      return this.#refuse(
        reply,
        "bad-room-stream",
        `Room stream window ${m.window} refused: expected an integer from 1 to ${MAX_ROOM_WINDOW}`,
      );
    }
    const conn = this.#conn(s);
    if (conn.stream || s.channel.closed || this.#closed) {
      return this.#refuse(
        reply,
        "bad-room-stream",
        "Your rooms are already streaming on this connection",
      );
    }
    const stream = new RoomStream({
      user: s.user,
      store: this.#o.store,
      mailStore: this.#o.mailStore,
      channel: s.channel,
      window: m.window,
      log: this.#o.log,
      onPushed: (n) => (this.#counts.pushed += n),
      onFailed: () => {
        if (conn.stream === stream) delete conn.stream;
        this.#streams.delete(stream);
        s.channel.send({
          t: "error",
          code: "room-stream-failed",
          message:
            "The server could not push your rooms; it keeps their messages until you log in again",
        }).catch(() => {});
      },
    });
    conn.stream = stream;
    this.#streams.add(stream);
    stream.wake();
    return Promise.resolve();
  }

  /**
   * `room-ack` (PROTOCOL.md 10.4): the user's position in the room moves
   * to `upTo` (and past the entries passed silently after it); an `upTo`
   * above what was pushed of the room, or below an earlier one, is
   * `bad-ack` (no effect). Each sender online here gets a `room-receipt`
   * with the count now, for each of its messages the acknowledgement
   * covers, at most {@link MAX_RECEIPTS_PER_ACK} (its newest) per
   * acknowledgement.
   * @param s the connection
   * @param m the message
   * @param reply errors only
   */
  async ack(s: ClientSession, m: Msg<"room-ack">, reply: Reply): Promise<void> {
    const stream = this.#conn(s).stream;
    const r = stream?.ack(m.room, m.upTo) ??
      (m.upTo === 0 ? { ok: true as const, from: 0, to: 0, handled: [] } : {
        ok: false as const,
        message:
          `Acknowledgement of room ${m.room} up to ${m.upTo} refused: nothing was pushed`,
      });
    if (!r.ok) return this.#refuse(reply, "bad-ack", r.message);
    if (r.to > r.from) {
      this.#counts.deleted += await this.#o.store.ack(m.room, s.user, r.to);
    }
    const bySender = new Map<string, number[]>();
    for (const e of r.handled) {
      if (e.kind !== "msg" || e.from === s.user) continue;
      if (!this.#o.session(e.from)) continue;
      const seqs = bySender.get(e.from) ?? [];
      seqs.push(e.seq);
      bySender.set(e.from, seqs);
    }
    if (bySender.size > 0) {
      const row = await this.#o.store.room(m.room);
      for (const [sender, seqs] of bySender) {
        const members = row?.members.filter((u) => u !== sender).length ?? 0;
        for (const seq of seqs.slice(-MAX_RECEIPTS_PER_ACK)) {
          const delivered = await this.#o.store.delivered(m.room, seq, sender);
          const to = this.#o.session(sender);
          if (!to) break;
          this.#counts.receipts++;
          to.channel.send({
            t: "room-receipt",
            room: m.room,
            seq,
            delivered,
            members,
          }).catch(() => {});
        }
      }
    }
    stream?.wake(m.room);
  }

  /**
   * The user acknowledged mail (PROTOCOL.md 10.4): its room stream on this
   * node looks again at the rooms stopped at a key gate.
   * @param user the user
   */
  wake(user: string): void {
    const s = this.#o.session(user);
    if (s) this.#conns.get(s)?.stream?.wakeGates();
  }

  /**
   * A connection ended: its stream stops (what it pushed and was not
   * acknowledged stays in the logs).
   * @param s the connection
   */
  leave(s: ClientSession): void {
    const stream = this.#conns.get(s)?.stream;
    if (!stream) return;
    stream.close();
    this.#streams.delete(stream);
  }

  /**
   * The retention sweep (PROTOCOL.md 10.4, 9.8): delete the entries of
   * every room older than the retention, in batches of `SWEEP_BATCH`
   * (one transaction each), and forget the key mails remembered of rooms
   * deleted or of epochs gone by. Logs the counts.
   * @returns when it is done
   */
  async sweep(): Promise<void> {
    const before = this.#o.now() - this.#o.retentionMs;
    let entries = 0;
    for (;;) {
      const n = await this.#o.store.expire(before, { limit: SWEEP_BATCH });
      entries += n;
      if (n < SWEEP_BATCH) break;
    }
    this.#counts.expired += entries;
    this.#o.log("room-expired", { entries });
    // The key mails remembered of a room deleted, or of an epoch gone by,
    // are no longer needed.
    for (const name of [...this.#keyed.keys()]) {
      await this.#locked(name, async () => {
        const k = this.#keyed.get(name);
        const row = await this.#o.store.room(name);
        if (
          k &&
          (!row || row.epoch !== k.epoch || !sameBytes(row.roomId, k.roomId))
        ) this.#keyed.delete(name);
      });
    }
    this.#logCounts();
  }

  /** Stop the sweep and every stream; the store is the caller's to close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const s of this.#streams) s.close();
    await Promise.all([...this.#streams].map((s) => s.done()));
    this.#streams.clear();
    await this.#sweeping;
    this.#logCounts();
  }

  #sweepInBackground(): void {
    if (this.#sweeping || this.#closed) return;
    this.#sweeping = this.sweep()
      .catch((e) =>
        this.#o.log("room-sweep-failed", { error: (e as Error).message })
      )
      .finally(() => (this.#sweeping = undefined));
  }

  #logCounts(): void {
    const c = this.#counts;
    const refused = Object.fromEntries(
      Object.entries(c.refused).map(([code, n]) => [`refused-${code}`, n]),
    );
    this.#o.log("room-counts", {
      created: c.created,
      changed: c.changed,
      left: c.left,
      stored: c.stored,
      keyed: c.keyed,
      pushed: c.pushed,
      deleted: c.deleted,
      receipts: c.receipts,
      expired: c.expired,
      ...refused,
    });
  }

  /** The room `name` if the user is a member of it now; else refused. */
  async #memberRoom(
    s: ClientSession,
    name: string,
    reply: Reply,
  ): Promise<RoomRow | undefined> {
    const row = await this.#o.store.room(name);
    if (!row) {
      await this.#noRoom(reply, name);
      return undefined;
    }
    if (!row.members.includes(s.user)) {
      await this.#refuse(
        reply,
        "not-a-member",
        `You are not a member of room ${name}`,
      );
      return undefined;
    }
    return row;
  }

  /** The list verifies with the enrolled key of `user`, its creator; else `room-forged`. */
  async #verifyList(list: RoomList, user: string): Promise<void> {
    const key = this.#o.clients().get(user);
    if (!key) throw forgedBy(user);
    await verifyRoomList(list, key);
  }

  /**
   * Users about to join a room: each has a mailbox (`no-mailbox`) and is a
   * member of fewer than the most rooms (`too-many-rooms`).
   * @returns undefined when all may join, else the refusal being written
   *   (not awaited: the caller may hold the room's lock)
   */
  async #checkJoining(
    reply: Reply,
    users: readonly string[],
  ): Promise<Later | undefined> {
    for (const u of users) {
      if (!this.#o.clients().has(u) || !(await this.#o.prekeys.certs(u))) {
        return later(noMailbox(this.#refuseCounted, reply, u));
      }
    }
    for (const u of users) {
      if ((await this.#o.store.memberships(u)) >= this.#maxRooms) {
        return later(this.#refuse(
          reply,
          "too-many-rooms",
          `${u} is a member of ${this.#maxRooms} rooms already, the most one user may be in`,
        ));
      }
    }
    return undefined;
  }

  /**
   * Run `fn` alone among the room-changing requests of the room `name`
   * (PROTOCOL.md 10.4): `room-create`, `room-update`, `room-leave` and
   * `room-keys` of one room wait for each other, so each reads the row the
   * one before it wrote. The chain's entry goes once nothing waits on it.
   * @param name the room's name
   * @param fn the work, which re-reads the row it changes
   * @returns what `fn` returns
   */
  async #locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#locks.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = before.then(() => mine);
    this.#locks.set(name, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    }
  }

  /** Bytes of the record that carries `msg` with a `req`, at most. */
  #answerBytes(msg: Parameters<Reply>[0]): number {
    return RECORD_MIN_BYTES +
      encodeMessage({ ...msg, req: MAX_REQUEST_ID }).length;
  }

  #conn(s: ClientSession): Connection {
    let c = this.#conns.get(s);
    if (!c) {
      c = {};
      this.#conns.set(s, c);
    }
    return c;
  }

  /**
   * The room changed for `users`: their streams on this node look again
   * (the author's too: it passes its own entry silently, room_stream.ts).
   */
  #notify(users: Iterable<string>, room: string): void {
    for (const u of new Set(users)) {
      const s = this.#o.session(u);
      if (s) this.#conns.get(s)?.stream?.wake(room);
    }
  }

  #take(s: ClientSession): boolean {
    return this.#o.limits.take(s.user, "room");
  }

  #rateLimited(reply: Reply): Promise<void> {
    return this.#refuse(
      reply,
      "rate-limited",
      "Too many room requests; wait a moment and try again",
    );
  }

  #noRoom(reply: Reply, name: string): Promise<void> {
    return this.#refuse(reply, "no-room", `There is no room named ${name}`);
  }

  #full(reply: Reply, list: RoomList): Promise<void> {
    return this.#refuse(
      reply,
      "room-full",
      `Room ${list.name} refused: ${list.members.length} members, over the limit of ${this.#maxMembers}`,
    );
  }

  #stale(reply: Reply, row: RoomRow, epoch: number): Promise<void> {
    return this.#refuse(
      reply,
      "room-stale-epoch",
      `Room ${row.name} is at epoch ${row.epoch}, not ${epoch}: take its new member list and try again`,
    );
  }

  #refuse(reply: Reply, code: string, message: string): Promise<void> {
    this.#counts.refused[code] = (this.#counts.refused[code] ?? 0) + 1;
    return reply({ t: "error", code, message });
  }
}

/**
 * The ciphertext length of a key mail for room `name` (PROTOCOL.md 10.2,
 * 10.4): its plaintext is `u8 0x02 || u32 len || ROOM_KEY` padded to its
 * bucket, `ROOM_KEY` being `1 + 16 + 1 + len(utf8(name)) + 4 + 4 + 32 + 32`
 * bytes, and MD-CFB keeps the length.
 * @param name the room's name
 * @returns the only length `room-keys` accepts for the room
 */
export function roomKeyCiphertextBytes(name: string): number {
  const roomKey = 1 + 16 + 1 + utf8(name).length + 4 + 4 + 32 + 32;
  return bucketOf(5 + roomKey);
}

/**
 * An answer being written, to await once a room's lock is let go (a bare
 * promise returned from an async function would be awaited inside it).
 */
interface Later {
  readonly done: Promise<void>;
}

/** Wrap `p` to await later; a failure before then is not unhandled. */
function later(p: Promise<void>): Later {
  p.catch(() => {});
  return { done: p };
}

/** A list or leave by a user the directory no longer holds: nothing can verify it. */
function forgedBy(user: string): ProtocolError {
  return new ProtocolError(
    "room-forged",
    `No enrolled key of ${user} to check the signature with`,
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Split bundles into answers that each fit a record: `base` bytes for an
 * answer with none, plus each bundle's JSON and a comma. Always at least
 * one answer (an empty one for a room of one).
 */
function pages(
  bundles: readonly RoomBundle[],
  base: number,
  maxFrameBytes: number,
): RoomBundle[][] {
  const out: RoomBundle[][] = [[]];
  let bytes = base;
  for (const b of bundles) {
    const more = JSON.stringify(b).length + 1;
    if (out.at(-1)!.length > 0 && bytes + more > maxFrameBytes) {
      out.push([]);
      bytes = base;
    }
    out.at(-1)!.push(b);
    bytes += more;
  }
  return out;
}
