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

/** Every message, client <-> server and peer <-> peer. */
export type Message =
  // client -> server
  | { t: "list" }
  | { t: "host"; addr: string }
  | { t: "unhost" }
  | { t: "session"; peer: string }
  | { t: "ended"; peer: string }
  | { t: "busy"; peer: string }
  | { t: "cancel"; ticketId: string }
  | { t: "relay"; peer: string; data: string }
  | { t: "bye" }
  // server -> client
  | { t: "welcome"; user: string; serverFingerprint: string }
  | {
    t: "users";
    users: Array<{ name: string; state: UserState }>;
    /** Users online beyond those listed (the list is capped to fit a record). */
    more: number;
  }
  | { t: "hosting"; addr: string }
  | {
    t: "grant";
    peer: string;
    key: string;
    ticket: string;
    ticketId: string;
    expiresAt: number;
  }
  | {
    t: "join";
    peer: string;
    addr: string;
    ticketId: string;
    expiresAt: number;
  }
  | { t: "refused"; peer: string; reason: RefusalReason; message: string }
  | { t: "cancelled"; peer: string; message: string }
  | { t: "error"; code: string; message: string }
  | { t: "closing"; reason: string; message: string }
  | { t: "relayed"; peer: string; data: string }
  // peer <-> peer
  | { t: "msg"; id: string; text: string }
  | { t: "ack"; id: string };

/** Names of all messages. */
export type MessageType = Message["t"];

/** `name` is a string that follows the username rule (2.9). */
type FieldType = "string" | "name" | "number" | "users";
const SCHEMA: Record<MessageType, Record<string, FieldType>> = {
  list: {},
  host: { addr: "string" },
  unhost: {},
  session: { peer: "name" },
  ended: { peer: "name" },
  busy: { peer: "name" },
  cancel: { ticketId: "string" },
  relay: { peer: "name", data: "string" },
  bye: {},
  welcome: { user: "name", serverFingerprint: "string" },
  users: { users: "users", more: "number" },
  hosting: { addr: "string" },
  grant: {
    peer: "name",
    key: "string",
    ticket: "string",
    ticketId: "string",
    expiresAt: "number",
  },
  join: {
    peer: "name",
    addr: "string",
    ticketId: "string",
    expiresAt: "number",
  },
  refused: { peer: "name", reason: "string", message: "string" },
  cancelled: { peer: "name", message: "string" },
  error: { code: "string", message: "string" },
  closing: { reason: "string", message: "string" },
  relayed: { peer: "name", data: "string" },
  msg: { id: "string", text: "string" },
  ack: { id: "string" },
};

const REFUSALS = new Set(["unknown", "offline", "not-hosting", "busy", "self"]);
const STATES = new Set(["IDLE", "HOSTING", "BUSY"]);

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
 * Decode and check a message.
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
  if (typeof t !== "string" || !Object.hasOwn(SCHEMA, t)) {
    throw bad(`unknown type ${JSON.stringify(t)?.slice(0, 40)}`);
  }
  const fields = SCHEMA[t as MessageType];
  const out: Record<string, unknown> = { t };
  for (const [name, type] of Object.entries(fields)) {
    const f = o[name];
    if (type === "users") {
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
    } else if (
      typeof f !== type || (type === "number" && !Number.isFinite(f))
    ) {
      throw bad(`"${name}" must be a ${type}`);
    } else out[name] = f;
  }
  if (t === "refused" && !REFUSALS.has(out.reason as string)) {
    throw bad("unknown refusal reason");
  }
  return out as Message;
}
