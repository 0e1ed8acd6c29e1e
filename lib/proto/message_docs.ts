/**
 * The words of PROTOCOL.md section 5 beyond the types the decoder checks:
 * what each message means and answers, each field's encoding, units and
 * role ({@link MESSAGE_DOCS}), and how each checked type reads
 * ({@link FIELD_TYPE_DOCS}). Documentation only: decoding reads the schemas
 * of message_schemas.ts, never this. `deno task spec` renders section 5's
 * tables from the schemas and these words, and `tests/spec_tables_test.ts`
 * fails when PROTOCOL.md says otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FIELD_TYPE_DOCS, MESSAGE_DOCS } from "./message_docs.ts";
 * assert.equal(FIELD_TYPE_DOCS.name, "username, rule 2.9");
 * assert.deepEqual(Object.keys(MESSAGE_DOCS.PEER_TO_PEER), ["msg", "ack"]);
 * ```
 * @module
 */

import {
  type CLIENT_TO_SERVER,
  type FieldType,
  type MessageSchema,
  type PEER_TO_PEER,
  RECEIPT_STATUSES,
  REFUSAL_REASONS,
  type SERVER_TO_CLIENT,
  USER_STATES,
} from "./message_schemas.ts";

/** Documentation of one message (PROTOCOL.md section 5; no effect on decoding). */
export interface MessageDoc<F extends string> {
  /** What the message means and what answers it. */
  about: string;
  /** Per field: its encoding or role, shown after the checked type. */
  fields: Readonly<Record<F, string>>;
}

/** One {@link MessageDoc} for every message of a schema, naming exactly its fields. */
type DocsOf<S extends MessageSchema> = {
  readonly [T in keyof S]: MessageDoc<keyof S[T] & string>;
};

/**
 * What every message and field holds beyond the type the decoder checks:
 * base64 or hex, units, roles. Documentation only; decoding reads the
 * schemas of message_schemas.ts, never this. PROTOCOL.md section 5's tables are generated
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
          "a page of the users online that the `list` asked for, by name (section 5.3): at most its `limit` and the server's cap (`im serve`'s, default 1,000), and no more than fit one record at the server's frame limit",
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

/** The values a field may take, as the spec lists them: `"a", "b"`. */
function quoted(values: ReadonlySet<string>): string {
  return [...values].map((x) => `"${x}"`).join(", ");
}

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
      quoted(USER_STATES)
    }`,
  reason: `one of ${quoted(REFUSAL_REASONS)}`,
  strings: "array of strings",
  proofs: 'array of objects {"seq", "proof"}, `seq` a number, `proof` a string',
  status: `one of ${quoted(RECEIPT_STATUSES)}`,
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
