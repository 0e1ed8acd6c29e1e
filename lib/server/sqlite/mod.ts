/**
 * The durable server seams on SQLite (`node:sqlite`, built into Deno):
 * {@link SqliteStore} for mailboxes.
 * @module
 */

export * from "./store.ts";
