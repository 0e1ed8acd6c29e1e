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
 * A facade over parts with one job each: the membership
 * (room_membership.ts: `room-create`, `room-update`, `room-leave`,
 * `my-rooms`), the hand-out of sender keys (room_keys.ts: `member-keys`,
 * `room-keys`), the messages (room_messages.ts: `room-send`, `room-ack`
 * and its receipts), the streams of this node's connections
 * (room_streams.ts over room_stream.ts), the per-room lock (room_lock.ts)
 * and the answers and counts they share (room_replies.ts). This file
 * routes the requests and runs the retention sweep.
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
import { type ClientToServer, DEFAULT_ROOM_MAX_MEMBERS } from "../proto/mod.ts";
import { isImError, type Logger } from "../util/mod.ts";
import type { RequestLimits } from "./limits.ts";
import { SWEEP_BATCH, SWEEP_INTERVAL_MS } from "./mail_sweep.ts";
import { RoomKeys } from "./room_keys.ts";
import { RoomLocks } from "./room_lock.ts";
import { RoomMembership } from "./room_membership.ts";
import { RoomMessages } from "./room_messages.ts";
import { logCounts, type Msg, newCounts, RoomReplies } from "./room_replies.ts";
import { RoomStreams } from "./room_streams.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type { Prekeys, RoomStore, Store } from "./seams.ts";

export { roomKeyCiphertextBytes } from "./room_keys.ts";
export { MAX_RECEIPTS_PER_ACK } from "./room_messages.ts";

/** Rooms one user may be a member of, by default (`--room-max-rooms`). */
export const DEFAULT_ROOM_MAX_ROOMS = 100;

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
  /**
   * In a cluster (PROTOCOL.md 11.4 _Room wake-ups_): a change to `room` was
   * committed; the other nodes wake their streams of `users` (`made`: the
   * room was just made) and send the senders of `receipts` connected to
   * them their `room-receipt`s (11.4 _Room receipts between nodes_). This
   * node wakes its own itself.
   */
  wakeElsewhere?: (
    room: string,
    users: readonly string[],
    made: boolean,
    receipts?: readonly RoomReceiptNote[],
  ) => void;
  /**
   * Is `user` online, on any node (the presence view, PROTOCOL.md 11.3):
   * the `online` of `my-rooms` (11.6 _Online_). Default: connected here.
   */
  online?: (user: string) => boolean;
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

/** A sender's messages of a room acknowledged on another node (PROTOCOL.md 11.4 _Room receipts between nodes_). */
export interface RoomReceiptNote {
  from: string;
  seqs: readonly number[];
}

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

/** The room requests of this node's users. */
export class Rooms {
  #o: RoomsOptions;
  #closed = false;
  #counts = newCounts();
  #replies: RoomReplies;
  #streams: RoomStreams;
  #keys: RoomKeys;
  #membership: RoomMembership;
  #messages: RoomMessages;
  #timer: ReturnType<typeof setInterval> | undefined;
  #sweeping: Promise<void> | undefined;

  /** @param o the seams, limits and clock */
  constructor(o: RoomsOptions) {
    this.#o = o;
    const counts = this.#counts;
    const locks = new RoomLocks();
    const replies = new RoomReplies({
      store: o.store,
      limits: o.limits,
      counts,
    });
    this.#replies = replies;
    this.#streams = new RoomStreams(o, { replies, counts });
    this.#keys = new RoomKeys(o, { replies, locks, counts });
    this.#membership = new RoomMembership(o, {
      replies,
      locks,
      counts,
      streams: this.#streams,
      maxMembers: o.maxMembers ?? DEFAULT_ROOM_MAX_MEMBERS,
      maxRooms: o.maxRooms ?? DEFAULT_ROOM_MAX_ROOMS,
    });
    this.#messages = new RoomMessages(o, {
      replies,
      counts,
      streams: this.#streams,
    });
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
        await this.#replies.refuse(reply, e.code, e.message).catch(() => {});
        return;
      }
      this.#o.log("room-store-failed", {
        user: s.user,
        request: m.t,
        error: (e as Error).message,
      });
      await this.#replies.refuse(
        reply,
        "store-failed",
        "The server could not reach its room store; try again later",
      ).catch(() => {});
    }
  }

  /**
   * `room-create`: {@link RoomMembership.create}.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room`, or `error`
   */
  create(s: ClientSession, m: Msg<"room-create">, reply: Reply): Promise<void> {
    return this.#membership.create(s, m, reply);
  }

  /**
   * `room-update`: {@link RoomMembership.update}.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room`, or `error`
   */
  update(s: ClientSession, m: Msg<"room-update">, reply: Reply): Promise<void> {
    return this.#membership.update(s, m, reply);
  }

  /**
   * `room-leave`: {@link RoomMembership.leaveRoom}.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-left`, or `error`
   */
  leaveRoom(
    s: ClientSession,
    m: Msg<"room-leave">,
    reply: Reply,
  ): Promise<void> {
    return this.#membership.leaveRoom(s, m, reply);
  }

  /**
   * `member-keys`: {@link RoomKeys.memberKeys}.
   * @param s the connection
   * @param m the message
   * @param reply its answers: `room-bundles`, or `error`
   */
  memberKeys(
    s: ClientSession,
    m: Msg<"member-keys">,
    reply: Reply,
  ): Promise<void> {
    return this.#keys.memberKeys(s, m, reply);
  }

  /**
   * `room-keys`: {@link RoomKeys.roomKeys}.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-keyed`, or `error`
   */
  roomKeys(s: ClientSession, m: Msg<"room-keys">, reply: Reply): Promise<void> {
    return this.#keys.roomKeys(s, m, reply);
  }

  /**
   * `room-send`: {@link RoomMessages.send}.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-receipt`, or `error`
   */
  send(s: ClientSession, m: Msg<"room-send">, reply: Reply): Promise<void> {
    return this.#messages.send(s, m, reply);
  }

  /**
   * `my-rooms`: {@link RoomMembership.myRooms}.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `rooms`, or `error` `rate-limited`
   */
  myRooms(s: ClientSession, m: Msg<"my-rooms">, reply: Reply): Promise<void> {
    return this.#membership.myRooms(s, m, reply);
  }

  /**
   * `room-stream`: {@link RoomStreams.open}.
   * @param s the connection
   * @param m the message
   * @param reply errors only; the stream is the answer
   */
  stream(s: ClientSession, m: Msg<"room-stream">, reply: Reply): Promise<void> {
    return this.#streams.open(s, m, reply);
  }

  /**
   * `room-ack`: {@link RoomMessages.ack}.
   * @param s the connection
   * @param m the message
   * @param reply errors only
   */
  ack(s: ClientSession, m: Msg<"room-ack">, reply: Reply): Promise<void> {
    return this.#messages.ack(s, m, reply);
  }

  /**
   * The user acknowledged mail (PROTOCOL.md 10.4): its room stream on this
   * node looks again at the rooms stopped at a key gate.
   * @param user the user
   */
  wake(user: string): void {
    this.#streams.wake(user);
  }

  /**
   * A change to `room` committed on another node (PROTOCOL.md 11.4 _Room
   * wake-ups_): the streams of `users` on this node read it again.
   * @param room the room
   * @param users whose streams
   * @param made the room was just made: an earlier one of its name is
   *   forgotten first
   * @param receipts senders whose messages a member acknowledged there:
   *   those connected here get their `room-receipt`s (11.4 _Room receipts
   *   between nodes_)
   */
  wakeLocal(
    room: string,
    users: readonly string[],
    made: boolean,
    receipts: readonly RoomReceiptNote[] = [],
  ): void {
    this.#streams.wakeLocal(room, users, made);
    if (receipts.length === 0 || this.#closed) return;
    this.#messages.receipts(room, receipts).catch((e) =>
      this.#o.log("room-store-failed", {
        request: "room-receipt",
        error: (e as Error).message,
      })
    );
  }

  /** NATS came back (PROTOCOL.md 11.4): every room stream here reads its rooms again. */
  wakeAll(): void {
    this.#streams.wakeAll();
  }

  /**
   * A connection ended: its stream stops (what it pushed and was not
   * acknowledged stays in the logs).
   * @param s the connection
   */
  leave(s: ClientSession): void {
    this.#streams.leave(s);
  }

  /**
   * The retention sweep (PROTOCOL.md 10.4, 9.8): delete the entries of
   * every room older than the retention, in batches of `SWEEP_BATCH`
   * (one transaction each). Logs the counts.
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
    logCounts(this.#o.log, this.#counts);
  }

  /** Stop the sweep and every stream; the store is the caller's to close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#streams.close();
    await this.#sweeping;
    logCounts(this.#o.log, this.#counts);
  }

  #sweepInBackground(): void {
    if (this.#sweeping || this.#closed) return;
    this.#sweeping = this.sweep()
      .catch((e) =>
        this.#o.log("room-sweep-failed", { error: (e as Error).message })
      )
      .finally(() => (this.#sweeping = undefined));
  }
}
