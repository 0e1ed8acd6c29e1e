/**
 * Messages carried inside DATA records (PROTOCOL.md "Messages"): UTF-8 JSON
 * objects with a `t` field naming the message. After login every one of them
 * travels encrypted (rule 3.6). The decoder checks every field's type, so
 * the rest of the program only ever sees well-formed values.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodeMessage } from "./messages.ts";
 * const m = decodeMessage(encodeMessage({ t: "session", peer: "A" }));
 * assert.ok(m.t === "session");
 * ```
 * @module
 */

import { fromUtf8, ProtocolError, utf8 } from "../util/mod.ts";
import { isValidUsername } from "./username.ts";

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
type Schema = Readonly<Record<string, Readonly<Record<string, FieldType>>>>;

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
} as const satisfies Schema;

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
} as const satisfies Schema;

/** Peer <-> peer, inside a peer session (PROTOCOL.md section 6). */
export const PEER_TO_PEER = {
  msg: { id: "string", text: "string" },
  ack: { id: "string", count: "count" },
} as const satisfies Schema;

/** Largest `limit` of a `list` (PROTOCOL.md 5.3). */
export const MAX_LIST_LIMIT = 1000;

/** A `list`'s `prefix`: 1 to 32 of the username characters (rule 2.9). */
const LIST_PREFIX = /^[A-Za-z0-9_-]{1,32}$/;

/** The kinds of field a message may lack (see {@link FieldType}). */
type OptionalField = "flag" | "count" | "prefix" | "after" | "limit";

/** Largest `count` of an `ack` (PROTOCOL.md section 6, "Receipts"). */
export const MAX_ACK_COUNT = 0xffff_ffff;

/** Documentation of one message (PROTOCOL.md section 5; no effect on decoding). */
export interface MessageDoc<F extends string> {
  /** What the message means and what answers it. */
  about: string;
  /** Per field: its encoding or role, shown after the checked type. */
  fields: Readonly<Record<F, string>>;
}

/** One {@link MessageDoc} for every message of a schema, naming exactly its fields. */
type DocsOf<S extends Schema> = {
  readonly [T in keyof S]: MessageDoc<keyof S[T] & string>;
};

/**
 * What every message and field holds beyond the type the decoder checks:
 * base64 or hex, units, roles. Documentation only; decoding reads the
 * schemas above, never this. PROTOCOL.md section 5's tables are generated
 * from the schemas and these words (`deno task spec`), and
 * `tests/spec_tables_test.ts` fails when the two differ, so the spec cannot
 * drift from what the code checks.
 */
export const MESSAGE_DOCS = {
  CLIENT_TO_SERVER: {
    list: {
      about:
        "`!list`: a page of who is online (section 5.3); answered by `users`",
      fields: {
        prefix: "only names starting with it",
        after: "only names sorting after it: the next page",
        limit: "at most this many users",
      },
    },
    host: {
      about:
        "`!session host`: I am HOSTING, reachable at `addr`; answered by `hosting` or `error` (`bad-address`, `cannot-host`)",
      fields: {
        addr:
          "`host:port` as the joiner dials it (1 to 80 of `A-Z a-z 0-9 . : [ ] _ -`, a colon, 1 to 5 digits), or `relay:0` for relay only",
      },
    },
    unhost: { about: "stop hosting: IDLE again; no answer", fields: {} },
    session: {
      about:
        "`!session <peer>`: ask for a session with the host `peer`; answered by `join`, `refused` or `error`",
      fields: { peer: "the host" },
    },
    ended: {
      about:
        "my session with `peer`, or my attempt at one, ended; I am IDLE; no answer",
      fields: { peer: "the partner" },
    },
    busy: {
      about:
        "after a reconnect: still in a direct session with `peer` (BUSY); no answer",
      fields: { peer: "the partner" },
    },
    cancel: {
      about:
        "host: nobody used the grant with this ticket id before its expiry, or I stopped hosting; no answer",
      fields: {
        ticketId: "hex, 32 lowercase digits: the `ticketId` of the `grant`",
      },
    },
    relay: {
      about:
        "forward one peer frame to `peer` (section 6.1); answered only by an `error` (`no-session`, `relay-busy`, `relay-too-large`)",
      fields: {
        peer: "the partner of a granted session",
        data:
          "base64 (RFC 4648 section 4, padded) of one peer frame's payload, `kind || body`, without the frame's u32 length",
      },
    },
    bye: {
      about: "log out; no answer, the server closes the link",
      fields: {},
    },
    publish: {
      about:
        "publish my mailbox keys (section 9.1); answered by `published` or `error` (`bad-keys`, `too-many-prekeys`)",
      fields: {
        identityKey: "base64 (padded) of my `IK_CERT`",
        signedPrekey: "base64 of my newest `SPK_CERT`",
        oneTimePrekeys: "base64 of one `OPK` each, at most 100",
      },
    },
    fetch: {
      about:
        "a bundle to write to `user`; takes one of its one-time prekeys; answered by `bundle` or `error` (`no-mailbox`)",
      fields: { user: "the recipient" },
    },
    keys: {
      about:
        "`user`'s mailbox keys, no one-time prekey (a sender's identity key, `!keys`, `!trust`); answered by `bundle` or `error` (`no-mailbox`)",
      fields: { user: "whose keys" },
    },
    send: {
      about:
        "store a message for `to` (section 9.8); answered by `receipt` (`stored`) or `error`",
      fields: {
        to: "the recipient",
        mail: "base64 (padded) of `MAIL` (section 9.3)",
      },
    },
    mailbox: {
      about:
        "start streaming my log (section 9.8); no answer but the stream and `synced`",
      fields: {
        window:
          "an integer, 1 to 1,024: how many pushed records may await my `mail-ack` (`im` sends 256)",
      },
    },
    "mail-ack": {
      about:
        "the records up to `upTo` are handled and may be deleted; no answer (`bad-ack` when `upTo` is above what was pushed or below an earlier one)",
      fields: {
        upTo:
          "an integer, the `seq` of the last record handled, every earlier one handled too",
        delivered:
          "the records among them that were shown, with their proofs (section 9.6): `proof` base64 of 32 bytes",
      },
    },
    "room-create": {
      about:
        "`!room create`: make a room (section 10.1); answered by `room` or `error` (`room-exists`, `room-forged`, `room-full`, `too-many-rooms`, `no-mailbox`, `bad-room`)",
      fields: { list: "base64 (padded) of the `ROOM_LIST` at epoch 1" },
    },
    "room-update": {
      about:
        "`!room add`, `!room remove`: the creator's next list (section 10.1); answered by `room` or `error` (`no-room`, `not-creator`, `room-conflict`, ...)",
      fields: {
        list: "base64 of the `ROOM_LIST` at the room's epoch plus one",
      },
    },
    "room-leave": {
      about:
        "`!room leave`: I leave the room (section 10.1); answered by `room-left` or `error`",
      fields: { statement: "base64 of my `ROOM_LEAVE` for the room's epoch" },
    },
    "member-keys": {
      about:
        "the mailbox keys of the room's other members, to hand them my sender key (section 10.2); answered by `room-bundles` or `error`",
      fields: { room: "the room's name" },
    },
    "room-keys": {
      about:
        "my sender key, one sealed mail per other member (section 10.2); answered by `room-keyed` or `error` (`room-stale-epoch`, `bad-mail`)",
      fields: {
        room: "the room's name",
        epoch: "an integer, the room's epoch the keys are for",
        mails:
          "base64 of one `MAIL` (plaintext type 2, `ROOM_KEY`) per other member",
      },
    },
    "room-send": {
      about:
        "`#room text`: store a room message once for every member (section 10.3); answered by `room-receipt` (`delivered` 0) or `error` (`not-a-member`, `room-stale-epoch`, `bad-room-msg`)",
      fields: {
        room: "the room's name",
        msg: "base64 of `ROOM_MSG`",
      },
    },
    "my-rooms": {
      about: "`!rooms`: the rooms I am in; answered by `rooms`",
      fields: {},
    },
    "room-stream": {
      about:
        "start streaming my rooms' logs (section 10.4); no answer but the stream and `room-synced`",
      fields: {
        window:
          "an integer, 1 to 1,024: how many pushed entries of one room may await my `room-ack`",
      },
    },
    "room-ack": {
      about:
        "the room's entries up to `upTo` are handled; no answer (`bad-ack` when `upTo` is above what was pushed or below an earlier one)",
      fields: {
        room: "the room's name",
        upTo: "an integer, the `seq` of the last entry handled",
      },
    },
  } satisfies DocsOf<typeof CLIENT_TO_SERVER>,
  SERVER_TO_CLIENT: {
    welcome: {
      about: "logged in: the first message of the link, unasked",
      fields: {
        user: "the user logged in",
        serverFingerprint:
          "`SHA256:` and the unpadded base64 of the SHA-256 of the server's SPKI DER",
        maxFrame:
          "an integer, the server's frame limit in bytes (section 2), which the client keeps to",
        now:
          "the server's clock when it sent this, ms since 1970-01-01 UTC: the client keeps its offset and reads `expiresAt` by it (section 6)",
      },
    },
    users: {
      about: "answer to `list`",
      fields: {
        users:
          "a page of the users online that the `list` asked for, by name (section 5.3): at most its `limit` and `--list-max` (default 1,000), and no more than fit one record at the server's frame limit",
        more:
          "an integer, the users online the `list` asked for beyond those listed (0 on the last page)",
        partial:
          "a server of a cluster whose other nodes it cannot reach now (section 11.5): the list holds its own users only, and it says so",
      },
    },
    hosting: {
      about: "answer to `host`: you are HOSTING",
      fields: { addr: "the `addr` of the `host` message" },
    },
    grant: {
      about:
        "to the host, unasked: `peer` asked for a session; the peer key for the host and the ticket for the joiner (section 6)",
      fields: {
        peer: "the joiner",
        key: "base64 (padded) of the 32-byte peer key",
        ticket:
          "base64 (padded) of the joiner's sealed ticket (section 6), which the host sends in PEER_HELLO",
        ticketId: "hex, 32 lowercase digits: the ticket's 16-byte id",
        expiresAt:
          "an integer, the ticket's expiry in ms since the Unix epoch by the server's clock",
        identity:
          "base64 (padded) of the joiner's public key, SPKI DER, as enrolled in the server's client directory: its FINISHED must be signed by it, and the host pins it on first use (section 6, key continuity)",
      },
    },
    join: {
      about: "answer to `session`: where the host is",
      fields: {
        peer: "the host",
        addr:
          "the host's `addr` from its `host` message (`relay:0`: relay only)",
        ticket:
          "base64 (padded) of the joiner's sealed ticket, the same bytes as in the host's `grant`: the joiner opens it at once and keys its PEER_COMMIT with it (section 6)",
        ticketId: "hex, 32 lowercase digits: as in the host's `grant`",
        expiresAt: "an integer, as in the host's `grant`",
        identity:
          "base64 (padded) of the host's public key, SPKI DER, as enrolled in the server's client directory: its FINISHED must be signed by it, and the joiner pins it on first use (section 6, key continuity)",
      },
    },
    refused: {
      about: "answer to `session`: no session",
      fields: {
        peer: "the name asked for",
        reason:
          "`offline` also for a name the server does not know (section 5.2), `unknown` is no longer sent",
        message: "one line for the user",
      },
    },
    cancelled: {
      about: "a pending session, or the session, with `peer` was called off",
      fields: { peer: "the partner", message: "one line for the user" },
    },
    error: {
      about:
        "a request failed, or a record or frame was discarded (section 4); `req` names the request, when there was one",
      fields: {
        code: "a kebab-case code from the table of error codes below",
        message: "one line for the user",
      },
    },
    closing: {
      about: "the server closes this link",
      fields: {
        reason: "`replaced`, `revoked`, `shutdown` or `full`",
        message: "one line for the user",
      },
    },
    relayed: {
      about: "a peer frame from `peer`, relayed (section 6.1)",
      fields: {
        peer: "the partner who sent it",
        data: "as in `relay`: base64 of the frame's payload, `kind || body`",
      },
    },
    published: {
      about: "answer to `publish`",
      fields: {
        oneTimePrekeys:
          "an integer, how many one-time prekeys the server now holds for me",
      },
    },
    bundle: {
      about:
        "answer to `fetch` (the one-time prekey in it is now removed from the server) and to `keys` (with no one-time prekey)",
      fields: {
        user: "the recipient",
        identity:
          "base64 of `user`'s RSA key, SPKI DER, from the client directory",
        identityKey: "base64 of its `IK_CERT`",
        signedPrekey: "base64 of its newest `SPK_CERT`",
        oneTimePrekey: 'base64 of one `OPK`, or `""` when none is left',
      },
    },
    mail: {
      about: "a message from my log, pushed in `seq` order (section 9.8)",
      fields: {
        seq: "an integer, the record's place in my log",
        from:
          "the sender the server authenticated (the recipient trusts only the sealed header)",
        at: "an integer, when it was stored (ms, the server's clock)",
        mail: "base64 of `MAIL` (section 9.3)",
      },
    },
    receipt: {
      about:
        "`stored`: answer to `send`; `delivered`, `expired`: a record of my log, pushed like `mail`",
      fields: {
        seq: "an integer, its place in my log, or 0 when it answers `send`",
        id: "hex, 32 lowercase digits: the `msg_id`",
        to: "the recipient of the message",
        status: "what became of it",
        at: "an integer, ms, the server's clock",
        proof: 'base64 of 32 bytes for `delivered` (section 9.6), else `""`',
      },
    },
    synced: {
      about:
        "the backlog waiting at `mailbox` has been pushed; live records follow",
      fields: { count: "an integer, how many records the backlog held" },
    },
    "prekeys-low": {
      about:
        "fewer than 20 one-time prekeys left: publish more; unasked, at most once per login and drop below 20",
      fields: {
        left: "an integer, one-time prekeys the server still holds for me",
      },
    },
    room: {
      about:
        "a new member list of a room I am in (or was removed from): an entry of its log, or the answer to `room-create` and `room-update`",
      fields: {
        room: "the room's name",
        seq: "an integer, the entry's place in the room's log",
        list: "base64 of the creator's `ROOM_LIST`",
      },
    },
    "room-left": {
      about:
        "a member left a room I am in: an entry of its log, or the answer to `room-leave`",
      fields: {
        room: "the room's name",
        seq: "an integer, the entry's place in the room's log",
        statement: "base64 of the member's `ROOM_LEAVE`",
      },
    },
    "room-msg": {
      about: "a room message: an entry of the room's log",
      fields: {
        room: "the room's name",
        seq: "an integer, the entry's place in the room's log",
        from: "the member who sent it, as the server authenticated it",
        at: "an integer, when the server stored it, ms since the epoch",
        msg: "base64 of the `ROOM_MSG`",
      },
    },
    "room-receipt": {
      about:
        "how many members have a room message of mine: the answer to `room-send` (`delivered` 0), and unasked when the count grows",
      fields: {
        room: "the room's name",
        seq: "an integer, the message's place in the room's log",
        delivered:
          "an integer, the other members whose position passed it (the server's word)",
        members: "an integer, the other members of the room now",
      },
    },
    "room-bundles": {
      about: "answer to `member-keys`",
      fields: {
        room: "the room's name",
        epoch: "an integer, the room's epoch now",
        bundles:
          "the other members' keys, as in `bundle` without a one-time prekey",
      },
    },
    "room-keyed": {
      about: "answer to `room-keys`: the mails are stored",
      fields: {
        room: "the room's name",
        epoch: "an integer, the epoch they are for",
        count: "an integer, the mails stored",
      },
    },
    rooms: {
      about: "answer to `my-rooms`",
      fields: { rooms: "the rooms I am a member of" },
    },
    "room-synced": {
      about:
        "the entries waiting in my rooms at `room-stream` were pushed; unasked, once per `room-stream`",
      fields: { count: "an integer, how many were pushed" },
    },
  } satisfies DocsOf<typeof SERVER_TO_CLIENT>,
  PEER_TO_PEER: {
    msg: {
      about: "a chat message",
      fields: {
        id:
          "opaque to the receiver, which echoes it in the `ack` (`im` sends `1`, `2`, `3`, ... per session)",
        text:
          "the text (`im` sends no `msg` longer than 45 KiB, 46,080 bytes, encoded)",
      },
    },
    ack: {
      about:
        'the delivery receipt of the `count` `msg`s received last, the last of them `id` (section 6, "Receipts")',
      fields: {
        id: "the `id` of the last `msg` it acknowledges",
        count:
          "how many `msg`s it acknowledges: the one named and those received just before it, in a run with no record missing (`im` leaves it out when it is 1)",
      },
    },
  } satisfies DocsOf<typeof PEER_TO_PEER>,
} as const;

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
type MessagesOf<S extends Schema, Extra> = {
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

/**
 * The server's answer to a request, naming it: `req` is copied from the
 * request when it has one (PROTOCOL.md section 5.1).
 * @param request what the client sent
 * @param answer the answer
 * @returns the answer, with the request's id
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { answerTo } from "./messages.ts";
 * const a = answerTo({ t: "list", req: 7 }, { t: "users", users: [], more: 0 });
 * assert.equal(a.req, 7);
 * ```
 */
export function answerTo(
  request: ClientToServer,
  answer: ServerToClient,
): ServerToClient {
  return request.req === undefined ? answer : { ...answer, req: request.req };
}

interface Entry {
  /** The fields and their kinds, listed once rather than per message. */
  fields: ReadonlyArray<readonly [string, FieldType]>;
  /** May the message carry a request id? */
  req: boolean;
}

function entries(schema: Schema, req: boolean): Array<[string, Entry]> {
  return Object.entries(schema).map((
    [t, fields],
  ) => [t, { fields: Object.entries(fields), req }]);
}

const REFUSALS = new Set(["unknown", "offline", "not-hosting", "busy", "self"]);
const STATES = new Set(["IDLE", "HOSTING", "BUSY"]);
const RECEIPT_STATUSES = new Set(["stored", "delivered", "expired"]);

/**
 * How each checked type reads in PROTOCOL.md section 5 (documentation
 * only; built from the same sets the decoder checks against).
 */
export const FIELD_TYPE_DOCS: Readonly<Record<FieldType, string>> = {
  string: "string",
  name: "username, rule 2.9",
  number: "number",
  users:
    `array of objects {"name", "state"}, \`name\` a username, \`state\` one of ${
      [...STATES].map((x) => `"${x}"`).join(", ")
    }`,
  reason: `one of ${[...REFUSALS].map((x) => `"${x}"`).join(", ")}`,
  strings: "array of strings",
  proofs: 'array of objects {"seq", "proof"}, `seq` a number, `proof` a string',
  status: `one of ${[...RECEIPT_STATUSES].map((x) => `"${x}"`).join(", ")}`,
  bundles:
    'array of objects {"user", "identity", "identityKey", "signedPrekey"}, `user` a username, the others strings',
  rooms:
    'array of objects {"name", "list", "leaves", "online"}, `name` a username, `list` a string, `leaves` an array of strings, `online` an array of usernames',
  count: "an integer from 1 to 4294967295, or absent for 1",
  flag: "`true`, or absent for false",
  prefix: "1 to 32 of `A-Z a-z 0-9 _ -`, or absent",
  after: "username, rule 2.9, or absent",
  limit: "an integer from 1 to 1000, or absent",
};

const CLIENT_ENTRIES = new Map(entries(CLIENT_TO_SERVER, true));
const SERVER_ENTRIES = new Map(entries(SERVER_TO_CLIENT, true));
const PEER_ENTRIES = new Map(entries(PEER_TO_PEER, false));
const ALL_ENTRIES = new Map([
  ...CLIENT_ENTRIES,
  ...SERVER_ENTRIES,
  ...PEER_ENTRIES,
]);

/**
 * Encode a message as UTF-8 JSON.
 * @param m the message
 * @returns bytes for a DATA record
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMessage } from "./messages.ts";
 * assert.equal(encodeMessage({ t: "list" }).length, 12);
 * ```
 */
export function encodeMessage(m: Message): Uint8Array {
  return utf8(JSON.stringify(m));
}

function bad(why: string): ProtocolError {
  return new ProtocolError("bad-message", `Cannot read message: ${why}`);
}

/**
 * Decode and check a message of any direction.
 * @param bytes a DATA record's plaintext
 * @returns the message, every field of the right type
 * @throws {ProtocolError} `bad-message` (or `bad-utf8`)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage } from "./messages.ts";
 * assert.throws(() => decodeMessage(new TextEncoder().encode("{}")), { name: "ProtocolError" });
 * ```
 */
export function decodeMessage(bytes: Uint8Array): Message {
  return decodeWith(ALL_ENTRIES, bytes) as unknown as Message;
}

/**
 * Decode what a client may send the server; any other type is `bad-message`.
 * @param bytes a DATA record's plaintext
 * @returns the message
 * @throws {ProtocolError} `bad-message` (or `bad-utf8`)
 */
export function decodeClientToServer(bytes: Uint8Array): ClientToServer {
  return decodeWith(CLIENT_ENTRIES, bytes) as unknown as ClientToServer;
}

/**
 * Decode what the server may send a client; any other type is `bad-message`.
 * @param bytes a DATA record's plaintext
 * @returns the message
 * @throws {ProtocolError} `bad-message` (or `bad-utf8`)
 */
export function decodeServerToClient(bytes: Uint8Array): ServerToClient {
  return decodeWith(SERVER_ENTRIES, bytes) as unknown as ServerToClient;
}

/**
 * Decode what a peer may send a peer; any other type is `bad-message`.
 * @param bytes a DATA record's plaintext
 * @returns the message
 * @throws {ProtocolError} `bad-message` (or `bad-utf8`)
 */
export function decodePeerToPeer(bytes: Uint8Array): PeerToPeer {
  return decodeWith(PEER_ENTRIES, bytes) as unknown as PeerToPeer;
}

function decodeWith(
  table: ReadonlyMap<string, Entry>,
  bytes: Uint8Array,
): Record<string, unknown> {
  const text = fromUtf8(bytes, "message");
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw bad("not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw bad("not an object");
  }
  const o = v as Record<string, unknown>;
  const t = o.t;
  const entry = typeof t === "string" ? table.get(t) : undefined;
  if (!entry) {
    throw bad(`unknown type ${JSON.stringify(t)?.slice(0, 40)}`);
  }
  const out: Record<string, unknown> = { t };
  for (const [name, type] of entry.fields) {
    const f = o[name];
    if (type === "flag") {
      // Absent is false; a decoded message carries only `true`.
      if (f === undefined || f === false) continue;
      if (f !== true) throw bad(`"${name}" must be true or absent`);
      out[name] = true;
    } else if (type === "count") {
      // Absent is 1 (PROTOCOL.md section 6, "Receipts"): kept absent.
      if (f === undefined) continue;
      if (
        typeof f !== "number" || !Number.isInteger(f) || f < 1 ||
        f > MAX_ACK_COUNT
      ) throw bad(`"${name}" must be an integer from 1 to ${MAX_ACK_COUNT}`);
      out[name] = f;
    } else if (type === "prefix" || type === "after" || type === "limit") {
      // PROTOCOL.md 5.3: a page of `list`; absent is kept absent.
      if (f === undefined) continue;
      if (type === "limit") {
        if (
          typeof f !== "number" || !Number.isInteger(f) || f < 1 ||
          f > MAX_LIST_LIMIT
        ) {
          throw bad(`"${name}" must be an integer from 1 to ${MAX_LIST_LIMIT}`);
        }
      } else if (
        typeof f !== "string" ||
        !(type === "after" ? isValidUsername(f) : LIST_PREFIX.test(f))
      ) {
        throw bad(
          `"${name}" must be ${
            type === "after" ? "a username" : "1 to 32 username characters"
          }`,
        );
      }
      out[name] = f;
    } else if (type === "users") {
      if (!Array.isArray(f)) throw bad(`"${name}" must be a list`);
      out[name] = f.map((u) => {
        if (
          typeof u !== "object" || u === null || typeof u.name !== "string" ||
          !isValidUsername(u.name) || typeof u.state !== "string" ||
          !STATES.has(u.state)
        ) throw bad("bad user entry");
        return { name: u.name, state: u.state };
      });
    } else if (type === "name") {
      // Rule 2.9 for every name that arrives: it may end up in a log line
      // or on a terminal.
      if (typeof f !== "string" || !isValidUsername(f)) {
        throw bad(`"${name}" must be a username`);
      }
      out[name] = f;
    } else if (type === "strings") {
      if (!Array.isArray(f) || !f.every((x) => typeof x === "string")) {
        throw bad(`"${name}" must be a list of strings`);
      }
      out[name] = [...f];
    } else if (type === "proofs") {
      if (!Array.isArray(f)) throw bad(`"${name}" must be a list`);
      out[name] = f.map((d) => {
        if (
          typeof d !== "object" || d === null ||
          typeof d.seq !== "number" || !Number.isFinite(d.seq) ||
          typeof d.proof !== "string"
        ) throw bad("bad delivered entry");
        return { seq: d.seq, proof: d.proof };
      });
    } else if (type === "bundles") {
      if (!Array.isArray(f)) throw bad(`"${name}" must be a list`);
      out[name] = f.map((b) => {
        if (
          typeof b !== "object" || b === null ||
          typeof b.user !== "string" || !isValidUsername(b.user) ||
          typeof b.identity !== "string" ||
          typeof b.identityKey !== "string" ||
          typeof b.signedPrekey !== "string"
        ) throw bad("bad bundle entry");
        return {
          user: b.user,
          identity: b.identity,
          identityKey: b.identityKey,
          signedPrekey: b.signedPrekey,
        };
      });
    } else if (type === "rooms") {
      if (!Array.isArray(f)) throw bad(`"${name}" must be a list`);
      out[name] = f.map((r) => {
        if (
          typeof r !== "object" || r === null ||
          typeof r.name !== "string" || !isValidUsername(r.name) ||
          typeof r.list !== "string" || !Array.isArray(r.leaves) ||
          !r.leaves.every((x: unknown) => typeof x === "string") ||
          !Array.isArray(r.online) ||
          !r.online.every((x: unknown) =>
            typeof x === "string" && isValidUsername(x)
          )
        ) throw bad("bad room entry");
        return {
          name: r.name,
          list: r.list,
          leaves: [...r.leaves],
          online: [...r.online],
        };
      });
    } else if (type === "status") {
      if (typeof f !== "string" || !RECEIPT_STATUSES.has(f)) {
        throw bad("unknown receipt status");
      }
      out[name] = f;
    } else if (type === "reason") {
      if (typeof f !== "string" || !REFUSALS.has(f)) {
        throw bad("unknown refusal reason");
      }
      out[name] = f;
    } else if (
      typeof f !== type || (type === "number" && !Number.isFinite(f))
    ) {
      throw bad(`"${name}" must be a ${type}`);
    } else out[name] = f;
  }
  if (o.req !== undefined) {
    // Section 5.1: an id the answer can name, never anything else.
    const r = o.req;
    if (
      !entry.req || typeof r !== "number" || !Number.isInteger(r) || r < 1 ||
      r > MAX_REQUEST_ID
    ) throw bad('"req" must be an integer from 1 to 4294967295');
    out.req = r;
  }
  return out;
}
