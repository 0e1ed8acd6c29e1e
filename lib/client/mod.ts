/**
 * Layer 5, client: the chat client facade (client.ts) over its parts: the
 * server link with requests by id and reconnect (server_link.ts), hosting
 * (hosting.ts), joining with relay fallback (joining.ts), peer sessions
 * (peer_session.ts, shown by session_view.ts); the commands a user types
 * and the events the client reports. May import: util, crypto, wire,
 * record, proto.
 * @module
 */

export * from "./client.ts";
export * from "./commands.ts";
export * from "./events.ts";
export * from "./options.ts";
export * from "./peer_session.ts";
export { loginToServer, type PendingRequest } from "./server_link.ts";
