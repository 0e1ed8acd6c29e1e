/**
 * The durable server seams on SQLite (`node:sqlite`, built into Deno):
 * {@link SqliteStore} for mailboxes and {@link SqlitePrekeys} for the keys
 * users publish, in one file that {@link SqliteMail} opens (PROTOCOL.md 9.9).
 * @module
 */

export * from "./mail.ts";
export * from "./prekeys.ts";
export * from "./store.ts";
