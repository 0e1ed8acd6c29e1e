/**
 * Layer 5, server: the server: the edge (accept, login), admission, the registry of who is online, the key distribution centre, the relay; presence, delivery and the store as interfaces with in-memory implementations. May import: util, crypto, wire, record, proto.
 * @module
 */

export * from "./presence.ts";
export * from "./server.ts";
