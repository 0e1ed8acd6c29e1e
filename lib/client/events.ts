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
    kind: "receipt";
    id: string;
    status: "delivered" | "undelivered";
    peer: string;
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
