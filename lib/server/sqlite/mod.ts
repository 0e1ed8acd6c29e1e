/**
 * The durable server seams on SQLite (`node:sqlite`, built into Deno):
 * {@link SqliteStore} for mailboxes, {@link SqlitePrekeys} for the keys
 * users publish and {@link SqliteRoomStore} for rooms, in one file that
 * {@link SqliteMail} opens (PROTOCOL.md 9.9, 10.4).
 * @module
 */

export * from "./mail.ts";
export * from "./prekeys.ts";
export * from "./rooms.ts";
export * from "./store.ts";
