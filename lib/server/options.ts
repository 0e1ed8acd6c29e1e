/**
 * The settings of the server ({@link ServerOptions}) and the one place for
 * each default ({@link SERVER_DEFAULTS}); `im serve` takes its flag
 * defaults from here too.
 * @module
 */

import type { Logger } from "../util/mod.ts";
import type { PrivateIdentity, PublicIdentity } from "../crypto/mod.ts";
import { DEFAULT_HEARTBEAT_MS, DEFAULT_WINDOW_MS } from "../record/mod.ts";
import {
  DEFAULT_ROOM_MAX_MEMBERS,
  LOGIN_TIMEOUT_MS,
  MAX_TICKET_LIFETIME_MS,
} from "../proto/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_QUEUED_BYTES,
  type Network,
  tcpNetwork,
} from "../wire/mod.ts";
import {
  type Delivery,
  LOCAL_NODE,
  type Outbox,
  type Prekeys,
  type Presence,
  type RoomStore,
  type Store,
} from "./seams.ts";
import { DEFAULT_IPV6_PREFIX_BITS } from "./admission.ts";
import { DEFAULT_ROOM_MAX_ROOMS, type RoomReceiptNote } from "./rooms.ts";
import {
  type BucketShape,
  DEFAULT_MAIL_RATE,
  type LimitedRequest,
  MAIL_BURST,
  ROOM_BURST,
} from "./limits.ts";

/** Most users in one `!list` answer by default; the rest are counted (`more`), so the answer always fits a record. */
export const LIST_MAX = 1000;

/**
 * Most `!list` entries that fit one record under a frame limit: each entry
 * is at most `{"name":"<32>","state":"HOSTING"},` (62 bytes), and 200 bytes
 * cover the record's header and tag and the answer's other fields.
 * @param maxFrameBytes the frame limit
 * @returns how many users one answer may list
 */
export function listFitting(maxFrameBytes: number): number {
  return Math.floor((maxFrameBytes - 200) / 62);
}

/** Settings of the server; every limit has a default ({@link SERVER_DEFAULTS}). */
export interface ServerOptions {
  hostname?: string;
  port?: number;
  /** Where connections come from (default {@link tcpNetwork}; tests pass a `MemoryNetwork`). */
  network?: Network;
  identity: PrivateIdentity;
  /** The server's directory of client public keys. */
  clients: Map<string, PublicIdentity>;
  log?: Logger;
  /** This server's node id in {@link Presence} (default {@link LOCAL_NODE}). */
  node?: string;
  /** Who is online (default a `MemoryPresence` of this process). */
  presence?: Presence;
  /** How other users are reached, given this node's connections (default `LocalDelivery`). */
  delivery?: (local: (user: string) => Outbox | undefined) => Delivery;
  /**
   * In a cluster (PROTOCOL.md 11.5): true while the other nodes cannot be
   * reached (NATS is down). `!list` then says it is partial (`partial:
   * true`), a `session` with a user not on this node is refused with reason
   * `offline` and words saying the cluster cannot be reached, and a `relay`
   * to a user of another node is answered by an `error`
   * `cluster-unreachable`.
   */
  partial?: () => boolean;
  /**
   * In a cluster (PROTOCOL.md 11.4 `mail-wake`): given how this node wakes
   * the mail stream of one of its users and every stream it runs, what
   * tells the other nodes that records were committed to a user's log
   * (this node wakes its own stream itself). Default: nothing to tell.
   */
  mailWake?: (
    local: (user: string) => void,
    everyone: () => void,
  ) => (user: string) => void;
  /**
   * In a cluster (PROTOCOL.md 11.4 _Room wake-ups_): given how this node
   * wakes the room streams of its users for a room (`made`: the room was
   * just made, an earlier one of its name is forgotten first) and every
   * room stream it runs, what tells the other nodes that a room changed
   * (this node wakes its own streams itself). Both carry the receipts of
   * 11.4 _Room receipts between nodes_: senders and the `seq`s of theirs
   * a member acknowledged. Default: nothing to tell.
   */
  roomWake?: (
    local: (
      room: string,
      users: readonly string[],
      made: boolean,
      receipts?: readonly RoomReceiptNote[],
    ) => void,
    everyone: () => void,
  ) => (
    room: string,
    users: readonly string[],
    made: boolean,
    receipts?: readonly RoomReceiptNote[],
  ) => void;
  /** Rule 1.2: a login must finish within this (default {@link LOGIN_TIMEOUT_MS}). */
  loginTimeoutMs?: number;
  /** Unauthenticated connections at once, in total (default 256). */
  maxUnauthenticated?: number;
  /** Unauthenticated connections at once from one address (default 64). */
  maxUnauthenticatedPerAddress?: number;
  /**
   * What "one address" is for the per-address caps and the failure
   * penalty: IPv6 clients are counted per this prefix length, 1..128
   * (default 64; 128 counts each address). IPv4 is counted per address, and
   * every loopback address as one host (`addressKey`, admission.ts).
   */
  ipv6PrefixBits?: number;
  /** Logged-in clients at once (default 10,000). */
  maxClients?: number;
  /** Most users in one `!list` answer (default {@link LIST_MAX}); the rest are counted. */
  listMax?: number;
  /** Rule 1.1 (default 64 KiB). */
  maxFrameBytes?: number;
  /** Heartbeat interval of client channels (default 2 s; dead after 3). */
  heartbeatMs?: number;
  /** Rule 3.5 freshness window (default 120 s). */
  windowMs?: number;
  /** Rule 4.2 ticket lifetime (default 30 s, at most 60 s). */
  ticketLifetimeMs?: number;
  /** Failed logins from one address within a minute before it is slowed down (default 5). */
  authFailureLimit?: number;
  /** First penalty after the limit, doubled on each further failure up to 5 min (default 5 s). */
  authPenaltyMs?: number;
  /**
   * The server's clock (ms), for ticket expiries and the `welcome`'s `now`
   * (PROTOCOL.md section 6); tests skew it. Default `Date.now`.
   */
  now?: () => number;
  /** Section 5.2: per-user request limits, over `REQUEST_LIMITS` (limits.ts). */
  requestLimits?: Partial<Record<LimitedRequest, BucketShape>>;
  /**
   * Most bytes queued for one client that does not read; past it that
   * client is disconnected (default 4 MiB), so it cannot grow our memory.
   */
  maxQueuedBytes?: number;
  /**
   * The mailboxes' logs (PROTOCOL.md 9.9). Default a `MemoryStore` of this
   * process, which the server closes with itself; one given here is the
   * caller's to close, after the server (`SqliteMail` for `im serve`).
   */
  store?: Store;
  /** The users' published mailbox keys; default and ownership as for {@link ServerOptions.store}. */
  prekeys?: Prekeys;
  /**
   * Mails (and bundle fetches) a user may send a second once its burst of
   * 100 is spent (default 20; `--mail-rate`). `requestLimits.send`, when set,
   * overrides it.
   */
  mailRate?: number;
  /** Records a recipient's log may hold before `mailbox-full` (default 10,000). */
  mailMaxCount?: number;
  /** Bytes a recipient's log may hold before `mailbox-full` (default 64 MiB). */
  mailMaxBytes?: number;
  /** Days a record is kept before the sweep deletes it, 1..30 (default 30). */
  mailRetentionDays?: number;
  /**
   * The rooms and their logs (PROTOCOL.md 10.4); default and ownership as
   * for {@link ServerOptions.store} (a `MemoryRoomStore`; `SqliteMail`'s
   * `rooms` for `im serve`). Room entries are kept as long as mail
   * (`mailRetentionDays`).
   */
  rooms?: RoomStore;
  /**
   * Workers that sign the logins' transcripts (PROTOCOL.md 2.2) with the
   * server's key, a `SignPool` (issue 15); 0, the default here, signs on the
   * main thread. `im serve --sign-workers` defaults to one per core
   * (BENCHMARKS.md, Capacity (issue 15)).
   */
  signWorkers?: number;
  /** Members one room may have (default 256; `--room-max-members`). */
  roomMaxMembers?: number;
  /** Rooms one user may be a member of (default 100; `--room-max-rooms`). */
  roomMaxRooms?: number;
}

/** The defaults of the settings that have one. */
export const SERVER_DEFAULTS = {
  hostname: "127.0.0.1",
  port: 9876,
  node: LOCAL_NODE,
  loginTimeoutMs: LOGIN_TIMEOUT_MS,
  maxUnauthenticated: 256,
  maxUnauthenticatedPerAddress: 64,
  ipv6PrefixBits: DEFAULT_IPV6_PREFIX_BITS,
  maxClients: 10_000,
  listMax: LIST_MAX,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  heartbeatMs: DEFAULT_HEARTBEAT_MS,
  windowMs: DEFAULT_WINDOW_MS,
  ticketLifetimeMs: 30_000,
  authFailureLimit: 5,
  authPenaltyMs: 5_000,
  maxQueuedBytes: DEFAULT_MAX_QUEUED_BYTES,
  mailRate: DEFAULT_MAIL_RATE,
  mailMaxCount: 10_000,
  mailMaxBytes: 64 * 1024 * 1024,
  mailRetentionDays: 30,
  roomMaxMembers: DEFAULT_ROOM_MAX_MEMBERS,
  roomMaxRooms: DEFAULT_ROOM_MAX_ROOMS,
  signWorkers: 0,
} as const;

/** {@link ServerOptions} with every default filled in and every limit clamped. */
export type ServerSettings =
  & Required<
    Omit<
      ServerOptions,
      | "log"
      | "presence"
      | "delivery"
      | "partial"
      | "mailWake"
      | "roomWake"
      | "requestLimits"
      | "now"
      | "store"
      | "prekeys"
      | "rooms"
    >
  >
  & Pick<
    ServerOptions,
    | "presence"
    | "delivery"
    | "partial"
    | "mailWake"
    | "roomWake"
    | "requestLimits"
    | "store"
    | "prekeys"
    | "rooms"
  >
  & { now: () => number }
  & { log: Logger };

/**
 * Fill in the defaults.
 * @param o what the caller set
 * @returns every setting
 */
export function serverSettings(o: ServerOptions): ServerSettings {
  const d = SERVER_DEFAULTS;
  return {
    hostname: o.hostname ?? d.hostname,
    port: o.port ?? d.port,
    network: o.network ?? tcpNetwork,
    identity: o.identity,
    clients: o.clients,
    log: o.log ?? (() => {}),
    node: o.node ?? d.node,
    ...(o.presence && { presence: o.presence }),
    ...(o.delivery && { delivery: o.delivery }),
    ...(o.partial && { partial: o.partial }),
    ...(o.mailWake && { mailWake: o.mailWake }),
    ...(o.roomWake && { roomWake: o.roomWake }),
    ...(o.store && { store: o.store }),
    ...(o.prekeys && { prekeys: o.prekeys }),
    ...(o.rooms && { rooms: o.rooms }),
    // PROTOCOL.md 9.8: the mail bucket is 100, then --mail-rate a second;
    // 10.4: the room bucket alike.
    requestLimits: {
      send: { burst: MAIL_BURST, refillMs: 1000 / (o.mailRate ?? d.mailRate) },
      room: { burst: ROOM_BURST, refillMs: 1000 / (o.mailRate ?? d.mailRate) },
      ...o.requestLimits,
    },
    now: o.now ?? Date.now,
    loginTimeoutMs: o.loginTimeoutMs ?? d.loginTimeoutMs,
    maxUnauthenticated: o.maxUnauthenticated ?? d.maxUnauthenticated,
    maxUnauthenticatedPerAddress: o.maxUnauthenticatedPerAddress ??
      d.maxUnauthenticatedPerAddress,
    ipv6PrefixBits: Math.min(
      128,
      Math.max(1, o.ipv6PrefixBits ?? d.ipv6PrefixBits),
    ),
    maxClients: o.maxClients ?? d.maxClients,
    // PROTOCOL.md 5: the `users` answer fits one record whatever the frame
    // limit; the rest are counted in `more`.
    listMax: Math.max(
      1,
      Math.min(
        o.listMax ?? d.listMax,
        listFitting(o.maxFrameBytes ?? d.maxFrameBytes),
      ),
    ),
    maxFrameBytes: o.maxFrameBytes ?? d.maxFrameBytes,
    heartbeatMs: o.heartbeatMs ?? d.heartbeatMs,
    windowMs: o.windowMs ?? d.windowMs,
    ticketLifetimeMs: Math.min(
      o.ticketLifetimeMs ?? d.ticketLifetimeMs,
      MAX_TICKET_LIFETIME_MS,
    ),
    authFailureLimit: o.authFailureLimit ?? d.authFailureLimit,
    authPenaltyMs: o.authPenaltyMs ?? d.authPenaltyMs,
    maxQueuedBytes: o.maxQueuedBytes ?? d.maxQueuedBytes,
    mailRate: o.mailRate ?? d.mailRate,
    mailMaxCount: o.mailMaxCount ?? d.mailMaxCount,
    mailMaxBytes: o.mailMaxBytes ?? d.mailMaxBytes,
    mailRetentionDays: Math.min(
      30,
      Math.max(1, o.mailRetentionDays ?? d.mailRetentionDays),
    ),
    roomMaxMembers: Math.max(1, o.roomMaxMembers ?? d.roomMaxMembers),
    roomMaxRooms: Math.max(1, o.roomMaxRooms ?? d.roomMaxRooms),
    signWorkers: o.signWorkers ?? d.signWorkers,
  };
}
