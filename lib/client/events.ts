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
    via?: "session" | "mail";
    at: number;
  }
  | { kind: "system"; text: string; at: number }
  | { kind: "error"; code: string; text: string; at: number }
  | {
    kind: "list";
    users: Array<{ name: string; state: PeerState }>;
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
