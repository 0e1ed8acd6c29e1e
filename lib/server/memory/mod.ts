/**
 * The in-process implementations of the server's seams (seams.ts): presence
 * as a map, delivery through this node's connections, a store, the
 * published mailbox keys and the rooms in memory.
 * @module
 */

export * from "./delivery.ts";
export * from "./prekeys.ts";
export * from "./presence.ts";
export * from "./rooms.ts";
export * from "./store.ts";
