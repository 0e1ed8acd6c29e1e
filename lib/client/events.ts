/**
 * What the client reports to whoever shows it (the terminal of the ui
 * layer, a test, the demo). Every string may come from the network and is
 * sanitized by whoever prints it.
 * @module
 */

import type { UserState } from "../proto/mod.ts";

/** What the server says a user is doing in a `!list` answer (rules 4.1, 4.5). */
export type PeerState = UserState;
/**
 * Something to show the user. `at` is milliseconds since the epoch; every
 * string may come from the network and is sanitized when formatted, each
 * event on one line: a line break in a string is not kept (the one
 * exception is a `system` event whose text is `HELP_TEXT` of commands.ts).
 */
export type UiEvent =
  | {
    kind: "message";
    from: string;
    to: string;
    text: string;
    at: number;
    id?: string;
    direction: "in" | "out";
    /**
     * A room message (PROTOCOL.md section 10): the room's name; `to` is
     * then the room too. `id` is the message's `seq` in the room's log.
     */
    room?: string;
  }
  | {
    /**
     * A mail message (PROTOCOL.md section 9): `in`, shown once its checks
     * passed (9.4); `out`, our own once sealed and handed to the server.
     * `id` is the `msg_id` in hex (32 digits); `written` the header's
     * `time` (ms, the sender's reading of the server's clock).
     */
    kind: "mail";
    direction: "in" | "out";
    from: string;
    to: string;
    text: string;
    id: string;
    written: number;
    at: number;
  }
  | {
    /**
     * What became of a message we sent. `via` is `session` (the default
     * when absent: a peer session's `msg`, PROTOCOL.md section 6) or
     * `mail` (section 9.6). A session's receipts are `delivered` and
     * `undelivered`; a mail's are `stored` (the server's word), `delivered`
     * (the recipient's proof checked), `expired` (the server deleted it
     * unread) and `undelivered` (no receipt within 31 days).
     */
    kind: "receipt";
    id: string;
    status: "delivered" | "undelivered" | "stored" | "expired";
    peer: string;
    via?: "session" | "mail" | "room";
    /**
     * `via: "room"` (PROTOCOL.md 10.4): the other members whose position
     * passed the message, of `members` (the server's count); `peer` is the
     * room and `id` the message's `seq`.
     */
    delivered?: number;
    members?: number;
    at: number;
  }
  | {
    /**
     * A room's members changed (PROTOCOL.md 10.1), each change verified
     * against the creator's (or the leaver's) signature: `created` (we are
     * in a new room), `added` and `removed` (`who`, by the creator `by`),
     * `left` (`who` left by their own statement). `members` are the
     * members after the change. We were removed or left when `who` holds
     * our own name.
     */
    kind: "room";
    room: string;
    change: "created" | "added" | "removed" | "left";
    by: string;
    who: string[];
    members: string[];
    at: number;
  }
  | {
    /** `!rooms`: each room we are in, its creator, members and who is online. */
    kind: "rooms";
    rooms: Array<
      { name: string; creator: string; members: string[]; online: string[] }
    >;
    at: number;
  }
  | { kind: "system"; text: string; at: number }
  | { kind: "error"; code: string; text: string; at: number }
  | {
    kind: "list";
    users: Array<{ name: string; state: PeerState }>;
    /** The start of the names asked for (`!list <start>`, PROTOCOL.md 5.3). */
    prefix?: string;
    at: number;
  }
  | {
    kind: "session";
    state: "started" | "ended" | "waiting";
    peer: string;
    sas?: string;
    transport?: "direct" | "relay";
    reason?: string;
    at: number;
  };
