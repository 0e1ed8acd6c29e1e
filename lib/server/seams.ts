/**
 * The server's seams: what it needs from the world beyond one connection,
 * as interfaces. Today one process implements each in memory
 * (`memory/`); a cluster implements {@link Presence} and {@link Delivery}
 * across nodes, and mailboxes put a {@link Store} on disk, without the
 * server's logic changing. The server reaches them only through these
 * interfaces.
 *
 * - {@link Presence}: who is online, in which state, on which node; change
 *   notifications. The one source of truth for `!list` (rule 2.10).
 * - {@link Delivery}: hand a message to a user wherever they are connected.
 * - {@link Store}: a durable, per-user, ordered log of records for mailboxes:
 *   append, read in order, acknowledge, expire.
 * - {@link Prekeys}: the users' published mailbox keys (PROTOCOL.md 9.1,
 *   9.9): certificates, and one-time prekeys each handed out once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LOCAL_NODE } from "./seams.ts";
 * import { MemoryPresence } from "./memory/mod.ts";
 * const presence = new MemoryPresence();
 * const seen: string[] = [];
 * const stop = presence.subscribe((c) => seen.push(`${c.kind} ${c.entry.name}`));
 * presence.join("A", LOCAL_NODE);
 * presence.update("A", { state: "HOSTING", addr: "127.0.0.1:5000" });
 * presence.leave("A");
 * stop();
 * assert.deepEqual(seen, ["join A", "update A", "leave A"]);
 * ```
 * @module
 */

import type { ImError } from "../util/mod.ts";
import type { ServerToClient, UserState } from "../proto/mod.ts";

/** The node id of a server that runs alone, in one process. */
export const LOCAL_NODE = "local";

/** What a user is doing, besides being online (rules 4.1, 4.2). */
export interface PresenceFields {
  state: UserState;
  /** HOSTING (and the host of a session): where it can be reached. */
  addr?: string;
  /** BUSY: the other user of its session. */
  partner?: string;
  /** BUSY: whether it is the host of its session. */
  isHost?: boolean;
  /** BUSY: the grant's ticket id (the host's and the joiner's; none for a session resumed by `busy`). */
  ticketId?: string;
}

/** One online user, as {@link Presence} knows it. Entries are never mutated: a change makes a new one. */
export interface PresenceEntry extends Readonly<PresenceFields> {
  readonly name: string;
  /** The node the user is connected to ({@link LOCAL_NODE} for one process). */
  readonly node: string;
}

/**
 * A change of {@link Presence}: a user came online (`join`), left
 * (`leave`, with its last entry) or changed state or details (`update`).
 */
export type PresenceChange =
  | { kind: "join"; entry: PresenceEntry }
  | { kind: "leave"; entry: PresenceEntry }
  | { kind: "update"; entry: PresenceEntry; previous: PresenceEntry };

/** Called with each change, in the order the changes happened. */
export type PresenceListener = (change: PresenceChange) => void;

/**
 * Who is online, in which state, on which node. Reads are of a local view
 * (a cluster's may lag the others by the time a change takes to travel);
 * writes apply to the local view at once.
 */
export interface Presence {
  /**
   * A user came online on `node`, IDLE. An entry of the same name is
   * replaced (a `leave` of it, then the `join`).
   * @param name the user
   * @param node where it is connected
   * @returns the new entry
   */
  join(name: string, node: string): PresenceEntry;
  /**
   * A user went offline.
   * @param name the user
   * @returns its last entry, or undefined when it was not online
   */
  leave(name: string): PresenceEntry | undefined;
  /**
   * Replace what an online user is doing (fields not given are cleared).
   * @param name the user
   * @param fields its new state and details
   * @returns the new entry, or undefined when the user is not online
   */
  update(name: string, fields: PresenceFields): PresenceEntry | undefined;
  /** @returns the user's entry, or undefined when offline */
  get(name: string): PresenceEntry | undefined;
  /** @returns every online user, sorted by name */
  list(): PresenceEntry[];
  /** Users online. */
  readonly size: number;
  /**
   * Be told of every change from now on.
   * @param listener called once per change; it may itself change presence
   *   (its change is told to every listener after the current one)
   * @returns a function that ends the subscription
   */
  subscribe(listener: PresenceListener): () => void;
}

/** A message the server sends a user, not as an answer (`grant`, `cancelled`, `relayed`). */
export type Push = ServerToClient;

/** A user's connection on this node, as far as delivery needs it. */
export interface Outbox {
  /** Send a message; rejects when it cannot be sent. */
  send(msg: Push): Promise<void>;
  /** Bytes waiting to be written to the user. */
  readonly queuedBytes: number;
}

/** Options of {@link Delivery.deliver}. */
export interface DeliverOptions {
  /**
   * Refuse (`busy`) when more than this many bytes already wait to be
   * written to the user: a user who does not read holds up nobody else.
   */
  maxQueuedBytes?: number;
  /**
   * The ticket id of the session a `cancelled` ends: in a cluster, the
   * user's node drops it when its user is in another session by now
   * (PROTOCOL.md 11.4); one process checks the session where it decides.
   */
  session?: string;
}

/**
 * What became of a delivery, decided at once: `absent` (the user is not
 * connected) and `busy` (its queue is over the limit) sent nothing;
 * otherwise `written` settles once the message is written, with the error
 * if that failed (`message-too-large`, `closed`). It never rejects.
 * `hostAddr`, only for a `grant` to a host on another node (PROTOCOL.md
 * 11.4, the host's node gives the address): settles with `written`, with
 * the address the host's node has for its host when it applied the grant.
 */
export type DeliveryReceipt =
  | { delivered: false; reason: "absent" | "busy" }
  | {
    delivered: true;
    written: Promise<ImError | undefined>;
    hostAddr?: Promise<string | undefined>;
  };

/** Hands a message to a user wherever they are connected. */
export interface Delivery {
  /**
   * @param user who gets it
   * @param msg the message
   * @param opts limits
   * @returns whether it was taken, and when it is written
   */
  deliver(user: string, msg: Push, opts?: DeliverOptions): DeliveryReceipt;
  /**
   * Close a user's connection on the node it is on (a cluster's `kick`,
   * PROTOCOL.md 11.4); absent where every user is on this node.
   * @param user the user
   * @param reason why, told to the user
   * @param keep a key fingerprint: a connection that logged in with it is kept
   * @returns `closed`, `absent`, or the error that stands for no answer
   */
  kick?(
    user: string,
    reason: "replaced" | "revoked",
    keep?: string,
  ): Promise<"closed" | "absent" | ImError>;
}

/** One record of a {@link Store}. */
export interface StoredRecord {
  /** Its place in the user's log: greater than every earlier one, never reused. */
  readonly seq: number;
  readonly user: string;
  /** When it was appended (ms since the epoch, the store's clock). */
  readonly at: number;
  readonly data: Uint8Array;
}

/** Options of {@link Store.read}. */
export interface ReadOptions {
  /** Only records with a greater seq (default 0: from the start). */
  after?: number;
  /** At most this many (a positive integer; default all). */
  limit?: number;
}

/** Options of {@link Store.append}. */
export interface AppendOptions {
  /**
   * Whether the record counts in {@link Store.usage} (default true). Receipts
   * do not: they are appended whatever the log's fill (PROTOCOL.md 9.8).
   */
  counted?: boolean;
}

/** Options of {@link Store.expire}. */
export interface ExpireOptions {
  /** At most this many records, the oldest (default all). */
  limit?: number;
  /** The record to append, in the same transaction, for a removed one (or none). */
  replaceWith?: (removed: StoredRecord) => AppendEntry | undefined;
}

/** One record of {@link Store.appendMany}. */
export interface AppendEntry extends AppendOptions {
  readonly user: string;
  readonly data: Uint8Array;
}

/**
 * A durable log of records per user, for mailboxes: appended in order,
 * read in order, removed when acknowledged or too old.
 */
export interface Store {
  /**
   * Append a record to the user's log.
   * @param user whose log
   * @param data the record (copied)
   * @param opts whether it counts in the usage
   * @returns its seq
   */
  append(
    user: string,
    data: Uint8Array,
    opts?: AppendOptions,
  ): Promise<number>;
  /**
   * Append several records, to one log or several, in one transaction: all
   * are durable when it resolves, or none was appended (the receipts of one
   * `mail-ack`, PROTOCOL.md 9.6, cost one commit, not one each).
   * @param entries each record's log, bytes (copied) and whether it counts
   * @returns their seqs, in order
   */
  appendMany(entries: readonly AppendEntry[]): Promise<number[]>;
  /**
   * The user's records in order of seq.
   * @param user whose log
   * @param opts where to start and how many
   * @returns the records
   * @throws {RangeError} a limit that is not a positive integer, a negative `after`
   */
  read(user: string, opts?: ReadOptions): Promise<StoredRecord[]>;
  /**
   * Remove the user's records up to and including `seq` (they were handed over).
   * @param user whose log
   * @param seq the last seq taken
   * @returns how many were removed
   */
  ack(user: string, seq: number): Promise<number>;
  /**
   * Remove the records, of any user, appended before `before`, oldest
   * first; with `replaceWith`, append what it returns for each in the same
   * transaction, so a crash never keeps the removal without its `expired`
   * receipt (PROTOCOL.md 9.8).
   * @param before a time (ms since the epoch, the store's clock)
   * @param opts at most `limit` records (a positive integer; default all),
   *   and the record to append for each removed one
   * @returns the records removed, oldest first
   */
  expire(before: number, opts?: ExpireOptions): Promise<StoredRecord[]>;
  /**
   * What the user's log holds now, for the quota (PROTOCOL.md 9.8): its
   * records appended `counted` (the default) that are still there.
   * @param user whose log
   * @returns those records and their total bytes of `data`
   */
  usage(user: string): Promise<{ count: number; bytes: number }>;
  /** Release what the store holds open; idempotent. */
  close(): Promise<void>;
}

/** A user's published certificates (PROTOCOL.md 9.1), as the server keeps them. */
export interface PublishedCerts {
  /** `IK_CERT` bytes. */
  readonly identityCert: Uint8Array;
  /** The newest `SPK_CERT` bytes. */
  readonly signedPrekeyCert: Uint8Array;
}

/** One one-time prekey as published: its id and the 36-byte `OPK` (`opk_id u32 || opk[32]`). */
export interface PublishedPrekey {
  readonly id: number;
  readonly opk: Uint8Array;
}

/**
 * The users' published mailbox keys (PROTOCOL.md 9.9): the newest
 * certificates per user and a pool of one-time prekeys of which each is
 * handed out once, atomically, even to two takers at once or across a crash.
 * It checks nothing: the mailbox verified the certificates first.
 */
export interface Prekeys {
  /**
   * Replace the user's certificates and add one-time prekeys (an id already
   * held is ignored). An `IK_CERT` other than the one held drops every
   * one-time prekey held first, in the same transaction: they were made by
   * a client that no longer has their private halves (its keys were lost or
   * replaced), and a message sealed to one could never be opened.
   * @returns how many one-time prekeys are held for the user now
   */
  publish(
    user: string,
    certs: PublishedCerts,
    oneTime: readonly PublishedPrekey[],
  ): Promise<number>;
  /** @returns the user's certificates, or undefined when it never published */
  certs(user: string): Promise<PublishedCerts | undefined>;
  /**
   * The user's certificates and its one-time prekey of lowest id, which is
   * removed in the same transaction.
   * @returns undefined when the user never published; `oneTime` undefined when none is left
   */
  take(
    user: string,
  ): Promise<
    { certs: PublishedCerts; oneTime: PublishedPrekey | undefined } | undefined
  >;
  /** @returns one-time prekeys held for the user */
  count(user: string): Promise<number>;
  /** Release what it holds open; idempotent. */
  close(): Promise<void>;
}

/** What a room entry is (PROTOCOL.md 10.4). */
export type RoomEntryKind = "list" | "leave" | "msg" | "keys";

/** One entry of a room's log (PROTOCOL.md 10.4): stored once for all members. */
export interface RoomEntry {
  /** Its place in the room's log: greater than every earlier one, never reused. */
  readonly seq: number;
  readonly kind: RoomEntryKind;
  /** The user whose request appended it. */
  readonly from: string;
  /** When it was appended (ms since the epoch, the store's clock). */
  readonly at: number;
  /**
   * `list`: a `ROOM_LIST`; `leave`: a `ROOM_LEAVE`; `msg`: a `ROOM_MSG`;
   * `keys`: UTF-8 JSON `{"epoch": e, "waits": {"<member>": <mail seq>}}`.
   */
  readonly data: Uint8Array;
}

/** A room as the server keeps it (PROTOCOL.md 10.4). */
export interface RoomRow {
  /** The room's name (rule 2.9), unique on the server. */
  readonly name: string;
  readonly roomId: Uint8Array;
  readonly creator: string;
  /** The newest list's epoch. */
  readonly epoch: number;
  /** The newest `ROOM_LIST`, as the creator signed it. */
  readonly list: Uint8Array;
  /** The `ROOM_LEAVE`s for this epoch, in the order they came. */
  readonly leaves: readonly Uint8Array[];
  /** The members now: the list's, minus those who left. */
  readonly members: readonly string[];
}

/** A member's place in a room's log. */
export interface RoomPosition {
  /** Every entry up to this seq was handled (0: none). */
  readonly upTo: number;
  /**
   * For a member removed or gone: the seq of the entry that said so; it is
   * pushed nothing after it, and its position is dropped once `upTo`
   * reaches it. Absent for a member.
   */
  readonly until?: number;
}

/** A change of a room's members: its new row, and the entry that says so. */
export interface RoomChange {
  /** The row after the change. */
  readonly row: RoomRow;
  /** The `list` or `leave` entry to append (its `seq` is the store's). */
  readonly entry: Omit<RoomEntry, "seq">;
  /** New members: their position starts just before the entry. */
  readonly added: readonly string[];
  /** Members removed or gone: their position ends at the entry (`until`). */
  readonly removed: readonly string[];
  /**
   * The row the change was planned on (PROTOCOL.md 10.4, 11.6): when given,
   * the store refuses the change as `room-conflict` unless its row is still
   * that one (the same `roomId`, `epoch` and number of `leaves`), so a
   * change planned on a row another node changed meanwhile is planned again.
   */
  readonly base?: Pick<RoomRow, "roomId" | "epoch" | "leaves">;
}

/** The key mails a `keys` entry stands for (PROTOCOL.md 10.4). */
export interface RoomKeyed {
  /** The room's epoch they are of. */
  readonly epoch: number;
  /** The members whose key mail from the entry's sender is stored now. */
  readonly recipients: readonly string[];
}

/**
 * The rooms and their logs (PROTOCOL.md 10.4): each message stored once,
 * with a read position per member; an entry is deleted once every position
 * has passed it, or by the retention. A room with no member left (all left
 * or were removed) and no position left (each removed or gone member
 * acknowledged its `until`) is deleted whole, its row, leaves, entries and
 * positions, by the `ack` or `change` that left it so, in its transaction:
 * its name is free again (a room made under it starts at seq 1). Every
 * method is one transaction.
 */
export interface RoomStore {
  /**
   * Create a room: its row, its first `list` entry, a position just before
   * it for each member.
   * @param row the room at epoch 1
   * @param entry the `list` entry
   * @returns the entry's seq
   * @throws {ProtocolError} `room-exists` when the name is taken
   */
  create(row: RoomRow, entry: Omit<RoomEntry, "seq">): Promise<number>;
  /** @returns the room, or undefined when no room has this name */
  room(name: string): Promise<RoomRow | undefined>;
  /**
   * The rooms a user has a position in (a member, or removed with entries
   * still to read), by name.
   */
  roomsOf(user: string): Promise<string[]>;
  /** @returns how many rooms the user is a member of now (not `until`) */
  memberships(user: string): Promise<number>;
  /**
   * Change the members: replace the row, append the entry, start the added
   * members' positions just before it and end the removed ones' at it;
   * then delete the room if no member and no position is left.
   * @returns the entry's seq
   * @throws {ProtocolError} `no-room`; `room-conflict` when the stored
   *   epoch is not `change.row.epoch - 1` for a `list` (or not
   *   `change.row.epoch` for a `leave`), or for a `leave` when
   *   `change.row.leaves` is not the stored leaves, in order, plus exactly
   *   one, or the stored row is not `change.base`: a concurrent change won
   *   (a leave built from an older row would drop one stored meanwhile)
   */
  change(change: RoomChange): Promise<number>;
  /**
   * Append a `msg` or `keys` entry.
   * @returns its seq
   * @throws {ProtocolError} `no-room`
   */
  append(name: string, entry: Omit<RoomEntry, "seq">): Promise<number>;
  /**
   * The members whose key mail from `sender` of the room's epoch `epoch` is
   * stored (PROTOCOL.md 10.4: at most one per room, epoch, sender and
   * member); none when the room is gone or at another epoch.
   */
  keyed(name: string, epoch: number, sender: string): Promise<string[]>;
  /**
   * Append a `keys` entry and remember, in the same transaction, that the
   * key mails of its sender (`entry.from`) to `keyed.recipients` at
   * `keyed.epoch` are stored ({@link keyed} names them from then on, until
   * a `list` moves the epoch).
   * @returns its seq
   * @throws {ProtocolError} `no-room`; `room-stale-epoch` when the room is
   *   not at `keyed.epoch`
   */
  appendKeys(
    name: string,
    entry: Omit<RoomEntry, "seq">,
    keyed: RoomKeyed,
  ): Promise<number>;
  /**
   * The entries a user may read after `after`, in order of seq: none past
   * its `until`, none of a room it has no position in.
   * @param opts `after` (default 0) and `limit` (a positive integer)
   */
  read(name: string, user: string, opts?: ReadOptions): Promise<RoomEntry[]>;
  /** @returns the user's position in the room, or undefined */
  position(name: string, user: string): Promise<RoomPosition | undefined>;
  /**
   * The user handled every entry up to `upTo`: its position moves there
   * (never back), is dropped when it reaches its `until`, and the entries
   * every remaining position has passed are deleted; the room too, when
   * that dropped its last position and it has no member.
   * @returns how many entries were deleted
   */
  ack(name: string, user: string, upTo: number): Promise<number>;
  /**
   * How many members now, other than `sender`, have a position at or past
   * `seq` (the `delivered to 4 of 5` of PROTOCOL.md 10.4).
   */
  delivered(name: string, seq: number, sender: string): Promise<number>;
  /**
   * Delete the entries of every room appended before `before`.
   * @param opts at most `limit` (default all)
   * @returns how many were deleted
   */
  expire(before: number, opts?: { limit?: number }): Promise<number>;
  /** Bytes of `data` the room's log holds now (the bench's bytes per message). */
  bytes(name: string): Promise<number>;
  /** Release what the store holds open; idempotent. */
  close(): Promise<void>;
}
