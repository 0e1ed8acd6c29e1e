/**
 * Layer 5, server: the server (accepting and admitting logins, routing, the
 * relay, the key distribution centre) and its bookkeeping as plain data:
 * presence, admission caps, failure penalties. May import: util, crypto, wire,
 * record, proto.
 * @module
 */

export * from "./presence.ts";
export * from "./server.ts";
