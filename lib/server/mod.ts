/**
 * Layer 5, server: a small facade ({@link ImServer}, server.ts) over parts
 * with one job each: the edge (accepting and logging in), admission caps
 * and failure penalties, the registry of connected users, the key
 * distribution centre (kdc.ts, with its rules in sessions.ts), the relay,
 * the mailboxes (mailbox.ts) and the rooms (rooms.ts). Presence,
 * delivery, the mailbox store and the room store are interfaces
 * (seams.ts) with in-process implementations in memory/; the durable store
 * is SQLite (sqlite/, `node:sqlite`). May import: util, crypto, wire,
 * record, proto.
 * @module
 */

export * from "./admission.ts";
export * from "./limits.ts";
export {
  LOW_PREKEYS,
  MAX_HELD_PREKEYS,
  MAX_PUBLISHED_PREKEYS,
} from "./mail_keys.ts";
export * from "./mail_records.ts";
export { SWEEP_BATCH, SWEEP_INTERVAL_MS } from "./mail_sweep.ts";
export * from "./mailbox.ts";
export {
  MAX_MAILBOX_WINDOW,
  MAX_UNACKED_BYTES,
  STREAM_QUEUE_BUDGET_BYTES,
} from "./mailbox_stream.ts";
export * from "./memory/mod.ts";
export * from "./rooms.ts";
export {
  entryPush,
  type KeysEntryData,
  keysEntryData,
  MAX_ROOM_WINDOW,
} from "./room_stream.ts";
export * from "./seams.ts";
export * from "./sqlite/mod.ts";
export * from "./options.ts";
export * from "./server.ts";
export { SessionBook, type SessionDecision } from "./sessions.ts";
export {
  type ClientSession,
  Registry,
  type Reply,
  replyTo,
} from "./registry.ts";
