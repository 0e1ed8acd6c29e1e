/**
 * The in-process implementations of the server's seams (seams.ts): presence
 * as a map, delivery through this node's connections, a store and the
 * published mailbox keys in memory.
 * @module
 */

export * from "./delivery.ts";
export * from "./prekeys.ts";
export * from "./presence.ts";
export * from "./store.ts";
