/**
 * The decoder of PROTOCOL.md section 5's messages: a DATA record's
 * plaintext, UTF-8 JSON, read against one direction's schema
 * (message_schemas.ts). Every field's type is checked, one check per
 * {@link FieldType}, so the rest of the program only ever sees well-formed
 * values; anything else is one `bad-message` error saying what was wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerToPeer } from "./message_decode.ts";
 * const m = decodePeerToPeer(new TextEncoder().encode('{"t":"ack","id":"3"}'));
 * assert.deepEqual(m, { t: "ack", id: "3" });
 * ```
 * @module
 */

import { fromUtf8, ProtocolError } from "../util/mod.ts";
import {
  CLIENT_TO_SERVER,
  type ClientToServer,
  type FieldType,
  MAX_ACK_COUNT,
  MAX_LIST_LIMIT,
  MAX_REQUEST_ID,
  type Message,
  type MessageSchema,
  PEER_TO_PEER,
  type PeerToPeer,
  RECEIPT_STATUSES,
  REFUSAL_REASONS,
  SERVER_TO_CLIENT,
  type ServerToClient,
  USER_STATES,
} from "./message_schemas.ts";
import { isValidUsername } from "./username.ts";

/** A `list`'s `prefix`: 1 to 32 of the username characters (rule 2.9). */
const LIST_PREFIX = /^[A-Za-z0-9_-]{1,32}$/;

function bad(why: string): ProtocolError {
  return new ProtocolError("bad-message", `Cannot read message: ${why}`);
}

/**
 * Checks one field: its value as the message arrived, and its name for the
 * error. Returns the value to keep (a copy of a list), or undefined to leave
 * the field absent; throws `bad-message`.
 */
type FieldCheck = (f: unknown, name: string) => unknown;

/** A list of entries, each checked and rebuilt by `entry`. */
// deno-lint-ignore no-explicit-any -- an entry is any JSON value until checked
function listOf(entry: (x: any) => unknown): FieldCheck {
  return (f, name) => {
    if (!Array.isArray(f)) throw bad(`"${name}" must be a list`);
    return f.map(entry);
  };
}

/** A field whose value is one of `values`; `what` names it in the error. */
function oneOf(values: ReadonlySet<string>, what: string): FieldCheck {
  return (f) => {
    if (typeof f !== "string" || !values.has(f)) throw bad(`unknown ${what}`);
    return f;
  };
}

/** The check of each {@link FieldType}. */
const FIELD_CHECKS: Readonly<Record<FieldType, FieldCheck>> = {
  string: (f, name) => {
    if (typeof f !== "string") throw bad(`"${name}" must be a string`);
    return f;
  },
  // Rule 2.9 for every name that arrives: it may end up in a log line or on
  // a terminal.
  name: (f, name) => {
    if (typeof f !== "string" || !isValidUsername(f)) {
      throw bad(`"${name}" must be a username`);
    }
    return f;
  },
  number: (f, name) => {
    if (typeof f !== "number" || !Number.isFinite(f)) {
      throw bad(`"${name}" must be a number`);
    }
    return f;
  },
  users: listOf((u) => {
    if (
      typeof u !== "object" || u === null || typeof u.name !== "string" ||
      !isValidUsername(u.name) || typeof u.state !== "string" ||
      !USER_STATES.has(u.state)
    ) throw bad("bad user entry");
    return { name: u.name, state: u.state };
  }),
  reason: oneOf(REFUSAL_REASONS, "refusal reason"),
  strings: (f, name) => {
    if (!Array.isArray(f) || !f.every((x) => typeof x === "string")) {
      throw bad(`"${name}" must be a list of strings`);
    }
    return [...f];
  },
  proofs: listOf((d) => {
    if (
      typeof d !== "object" || d === null ||
      typeof d.seq !== "number" || !Number.isFinite(d.seq) ||
      typeof d.proof !== "string"
    ) throw bad("bad delivered entry");
    return { seq: d.seq, proof: d.proof };
  }),
  status: oneOf(RECEIPT_STATUSES, "receipt status"),
  bundles: listOf((b) => {
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
  }),
  rooms: listOf((r) => {
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
  }),
  // Absent is 1 (PROTOCOL.md section 6, "Receipts"): kept absent.
  count: (f, name) => {
    if (f === undefined) return undefined;
    if (
      typeof f !== "number" || !Number.isInteger(f) || f < 1 ||
      f > MAX_ACK_COUNT
    ) throw bad(`"${name}" must be an integer from 1 to ${MAX_ACK_COUNT}`);
    return f;
  },
  // Absent is false; a decoded message carries only `true`.
  flag: (f, name) => {
    if (f === undefined || f === false) return undefined;
    if (f !== true) throw bad(`"${name}" must be true or absent`);
    return true;
  },
  // PROTOCOL.md 5.3: a page of `list`; absent is kept absent.
  prefix: (f, name) => {
    if (f === undefined) return undefined;
    if (typeof f !== "string" || !LIST_PREFIX.test(f)) {
      throw bad(`"${name}" must be 1 to 32 username characters`);
    }
    return f;
  },
  after: (f, name) => {
    if (f === undefined) return undefined;
    if (typeof f !== "string" || !isValidUsername(f)) {
      throw bad(`"${name}" must be a username`);
    }
    return f;
  },
  limit: (f, name) => {
    if (f === undefined) return undefined;
    if (
      typeof f !== "number" || !Number.isInteger(f) || f < 1 ||
      f > MAX_LIST_LIMIT
    ) {
      throw bad(`"${name}" must be an integer from 1 to ${MAX_LIST_LIMIT}`);
    }
    return f;
  },
};

interface Entry {
  /** The fields and their checks, listed once rather than per message. */
  fields: ReadonlyArray<readonly [string, FieldCheck]>;
  /** May the message carry a request id? */
  req: boolean;
}

function entries(schema: MessageSchema, req: boolean): Array<[string, Entry]> {
  return Object.entries(schema).map(([t, fields]) => [t, {
    fields: Object.entries(fields).map(([name, type]) =>
      [name, FIELD_CHECKS[type]] as const
    ),
    req,
  }]);
}

const CLIENT_ENTRIES = new Map(entries(CLIENT_TO_SERVER, true));
const SERVER_ENTRIES = new Map(entries(SERVER_TO_CLIENT, true));
const PEER_ENTRIES = new Map(entries(PEER_TO_PEER, false));
const ALL_ENTRIES = new Map([
  ...CLIENT_ENTRIES,
  ...SERVER_ENTRIES,
  ...PEER_ENTRIES,
]);

/**
 * Decode and check a message of any direction.
 * @param bytes a DATA record's plaintext
 * @returns the message, every field of the right type
 * @throws {ProtocolError} `bad-message` (or `bad-utf8`)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage } from "./message_decode.ts";
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
  for (const [name, check] of entry.fields) {
    const value = check(o[name], name);
    if (value !== undefined) out[name] = value;
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
