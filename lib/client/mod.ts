/**
 * Layer 5, client: the chat client: the server link (login, reconnect, requests by id), hosting, joining, peer sessions, commands. Sockets only through the wire layer's Network. May import: util, crypto, wire, record, proto.
 * @module
 */

export * from "./client.ts";
export * from "./peer_session.ts";
