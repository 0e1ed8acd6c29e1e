/**
 * The messages of PROTOCOL.md section 5 as data: for each direction a
 * schema naming every message and the checked type of each of its fields
 * (client -> server, server -> client, peer <-> peer), the values a field may
 * take, the limits, and the TypeScript types of the messages, derived from
 * the schemas so that the decoder and the program can never disagree. The
 * decoder (message_decode.ts) and the spec's tables (message_docs.ts) read
 * these schemas.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PEER_TO_PEER } from "./message_schemas.ts";
 * assert.deepEqual(PEER_TO_PEER.msg, { id: "string", text: "string" });
 * ```
 * @module
 */

/** What `!list` shows for a user. */
export type UserState = "IDLE" | "HOSTING" | "BUSY";

/** Why the server refused `!session <user>` (rule 4.2). */
export type RefusalReason =
  | "unknown"
  | "offline"
  | "not-hosting"
  | "busy"
  | "self";

/** One entry of `users`. */
export interface UserEntry {
  name: string;
  state: UserState;
}

/** What a mail receipt says (PROTOCOL.md 9.6). */
export type ReceiptStatus = "stored" | "delivered" | "expired";

/** One entry of an `ack`'s `delivered`: a record shown, with its proof (PROTOCOL.md 9.6). */
export interface DeliveredProof {
  seq: number;
  proof: string;
}

/** One member's mailbox keys in a `room-bundles` (PROTOCOL.md 10.4): a `bundle` without a one-time prekey. */
export interface RoomBundle {
  user: string;
  identity: string;
  identityKey: string;
  signedPrekey: string;
}

/** One room of a `rooms` answer (PROTOCOL.md 10.4). */
export interface RoomSummary {
  name: string;
  /** base64 of the newest `ROOM_LIST`. */
  list: string;
  /** base64 of each `ROOM_LEAVE` of its epoch. */
  leaves: string[];
  /** The members online now. */
  online: string[];
}

/**
 * How a field is checked: `name` is a string that follows the username rule
 * (2.9), `reason` a {@link RefusalReason}, `users` a list of
 * {@link UserEntry}; `number` is finite; `strings` a list of strings,
 * `proofs` a list of {@link DeliveredProof}, `status` a
 * {@link ReceiptStatus}, `bundles` a list of {@link RoomBundle}, `rooms` a
 * list of {@link RoomSummary}; `count` is an integer from 1 to
 * {@link MAX_ACK_COUNT} or absent (1: an `ack` of a single message,
 * PROTOCOL.md section 6, "Receipts"); `flag` is `true` or absent (false);
 * `prefix` 1 to 32 username characters or absent, `after` a username or
 * absent, `limit` an integer from 1 to {@link MAX_LIST_LIMIT} or absent (the
 * page of a `list`, PROTOCOL.md 5.3). These last five are the kinds of field
 * a message may lack, so that a field added later leaves older peers'
 * messages valid.
 */
export type FieldType =
  | "string"
  | "name"
  | "number"
  | "users"
  | "reason"
  | "strings"
  | "proofs"
  | "status"
  | "bundles"
  | "rooms"
  | "count"
  | "flag"
  | "prefix"
  | "after"
  | "limit";

/** A direction's schema: per message type, its fields and their {@link FieldType}. */
export type MessageSchema = Readonly<
  Record<string, Readonly<Record<string, FieldType>>>
>;

/**
 * Client -> server (PROTOCOL.md section 5). Each may carry a request id
 * `req`, which the server's answer repeats (section 5.1).
 */
export const CLIENT_TO_SERVER = {
  /** A page of who is online (PROTOCOL.md 5.3); every field may be absent. */
  list: { prefix: "prefix", after: "after", limit: "limit" },
  host: { addr: "string" },
  unhost: {},
  session: { peer: "name" },
  ended: { peer: "name" },
  busy: { peer: "name" },
  cancel: { ticketId: "string" },
  relay: { peer: "name", data: "string" },
  bye: {},
  publish: {
    identityKey: "string",
    signedPrekey: "string",
    oneTimePrekeys: "strings",
  },
  fetch: { user: "name" },
  keys: { user: "name" },
  send: { to: "name", mail: "string" },
  mailbox: { window: "number" },
  "mail-ack": { upTo: "number", delivered: "proofs" },
  "room-create": { list: "string" },
  "room-update": { list: "string" },
  "room-leave": { statement: "string" },
  "member-keys": { room: "name" },
  "room-keys": { room: "name", epoch: "number", mails: "strings" },
  "room-send": { room: "name", msg: "string" },
  "my-rooms": {},
  "room-stream": { window: "number" },
  "room-ack": { room: "name", upTo: "number" },
} as const satisfies MessageSchema;

/** Server -> client (PROTOCOL.md section 5); an answer repeats its request's `req`. */
export const SERVER_TO_CLIENT = {
  /**
   * `maxFrame`: the server's frame limit, which the client keeps to (section
   * 2); `now`: the server's clock, from which the client reads ticket expiries
   * (section 6).
   */
  welcome: {
    user: "name",
    serverFingerprint: "string",
    maxFrame: "number",
    now: "number",
  },
  /**
   * `more`: users the `list` asked for beyond this page (PROTOCOL.md 5.3;
   * a page is also capped to fit a record); `partial`: in a cluster, the
   * other nodes cannot be reached (PROTOCOL.md 11.5), so the list holds this
   * node's users only.
   */
  users: { users: "users", more: "number", partial: "flag" },
  hosting: { addr: "string" },
  /** `identity`: the joiner's public key, which the host pins (section 6, "Key continuity"). */
  grant: {
    peer: "name",
    key: "string",
    ticket: "string",
    ticketId: "string",
    expiresAt: "number",
    identity: "string",
  },
  /** `identity`: the host's public key, which the joiner pins (section 6, "Key continuity"). */
  join: {
    peer: "name",
    addr: "string",
    ticket: "string",
    ticketId: "string",
    expiresAt: "number",
    identity: "string",
  },
  refused: { peer: "name", reason: "reason", message: "string" },
  cancelled: { peer: "name", message: "string" },
  error: { code: "string", message: "string" },
  closing: { reason: "string", message: "string" },
  relayed: { peer: "name", data: "string" },
  published: { oneTimePrekeys: "number" },
  bundle: {
    user: "name",
    identity: "string",
    identityKey: "string",
    signedPrekey: "string",
    oneTimePrekey: "string",
  },
  mail: { seq: "number", from: "name", at: "number", mail: "string" },
  receipt: {
    seq: "number",
    id: "string",
    to: "name",
    status: "status",
    at: "number",
    proof: "string",
  },
  synced: { count: "number" },
  "prekeys-low": { left: "number" },
  room: { room: "name", seq: "number", list: "string" },
  "room-left": { room: "name", seq: "number", statement: "string" },
  "room-msg": {
    room: "name",
    seq: "number",
    from: "name",
    at: "number",
    msg: "string",
  },
  "room-receipt": {
    room: "name",
    seq: "number",
    delivered: "number",
    members: "number",
  },
  "room-bundles": { room: "name", epoch: "number", bundles: "bundles" },
  "room-keyed": { room: "name", epoch: "number", count: "number" },
  rooms: { rooms: "rooms" },
  "room-synced": { count: "number" },
} as const satisfies MessageSchema;

/** Peer <-> peer, inside a peer session (PROTOCOL.md section 6). */
export const PEER_TO_PEER = {
  msg: { id: "string", text: "string" },
  ack: { id: "string", count: "count" },
} as const satisfies MessageSchema;

/** Largest `limit` of a `list` (PROTOCOL.md 5.3). */
export const MAX_LIST_LIMIT = 1000;

/** The kinds of field a message may lack (see {@link FieldType}). */
type OptionalField = "flag" | "count" | "prefix" | "after" | "limit";

/** Largest `count` of an `ack` (PROTOCOL.md section 6, "Receipts"). */
export const MAX_ACK_COUNT = 0xffff_ffff;

/** The values of a `state` in `users` (a {@link UserState}). */
export const USER_STATES: ReadonlySet<string> = new Set<UserState>([
  "IDLE",
  "HOSTING",
  "BUSY",
]);

/** The values of a `reason` field (a {@link RefusalReason}). */
export const REFUSAL_REASONS: ReadonlySet<string> = new Set<RefusalReason>([
  "unknown",
  "offline",
  "not-hosting",
  "busy",
  "self",
]);

/** The values of a `status` field (a {@link ReceiptStatus}). */
export const RECEIPT_STATUSES: ReadonlySet<string> = new Set<ReceiptStatus>([
  "stored",
  "delivered",
  "expired",
]);

/** What a decoded field of each {@link FieldType} holds. */
type FieldValue<F> = F extends "flag" ? boolean
  : F extends "number" | "count" | "limit" ? number
  : F extends "users" ? UserEntry[]
  : F extends "reason" ? RefusalReason
  : F extends "strings" ? string[]
  : F extends "proofs" ? DeliveredProof[]
  : F extends "status" ? ReceiptStatus
  : F extends "bundles" ? RoomBundle[]
  : F extends "rooms" ? RoomSummary[]
  : string;

/** The message types a schema describes, one object type per entry. */
type MessagesOf<S extends MessageSchema, Extra> = {
  [T in keyof S & string]:
    & { t: T }
    & {
      -readonly [
        K in keyof S[T] as S[T][K] extends OptionalField ? never : K
      ]: FieldValue<S[T][K]>;
    }
    & {
      -readonly [
        K in keyof S[T] as S[T][K] extends OptionalField ? K : never
      ]?: FieldValue<S[T][K]>;
    }
    & Extra;
}[keyof S & string];

/** The request id of PROTOCOL.md section 5.1: an integer 1..{@link MAX_REQUEST_ID}. */
export interface RequestId {
  req?: number;
}

/** Largest request id; the client wraps to 1 after it. */
export const MAX_REQUEST_ID = 0xffff_ffff;

/** What a client sends the server. */
export type ClientToServer = MessagesOf<typeof CLIENT_TO_SERVER, RequestId>;
/** What the server sends a client. */
export type ServerToClient = MessagesOf<typeof SERVER_TO_CLIENT, RequestId>;
/** What peers send each other. */
export type PeerToPeer = MessagesOf<typeof PEER_TO_PEER, unknown>;
/** Every message, in any direction. */
export type Message = ClientToServer | ServerToClient | PeerToPeer;

/** Names of all messages. */
export type MessageType = Message["t"];
