/**
 * Layer 5, client: the chat client (login to the server, reconnect, hosting,
 * joining with relay fallback), peer sessions, the commands a user types and
 * the events the client reports. May import: util, crypto, wire, record,
 * proto.
 * @module
 */

export * from "./client.ts";
export * from "./commands.ts";
export * from "./events.ts";
export * from "./peer_session.ts";
