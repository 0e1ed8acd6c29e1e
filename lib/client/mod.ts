/**
 * Layer 5, client: the chat client facade (client.ts) over its parts: the
 * server link (server_link.ts over server_login, server_nodes,
 * request_table with requests by id, server_welcome, and server_reconnect
 * with backoff), hosting
 * (hosting.ts), joining with relay fallback (joining.ts), peer sessions
 * (peer_session.ts over peer_connect, peer_chat, peer_receipts,
 * peer_unacked, peer_send_window and relay_transport; shown by
 * session_view.ts); mailboxes (mailbox.ts over
 * mail_keys, mail_peers, mail_send, mail_receive; mail_memory.ts the
 * in-memory vault); the commands a user types
 * and the events the client reports; the trace of a client process's
 * start (start.ts). May import: util, crypto, wire, record, proto.
 * @module
 */

export * from "./client.ts";
export * from "./commands.ts";
export * from "./events.ts";
export { MemoryMailVault } from "./mail_memory.ts";
export { MemoryRoomVault } from "./room_memory.ts";
export * from "./options.ts";
export * from "./peer_session.ts";
export { loginToServer, type PendingRequest } from "./server_link.ts";
export { traceStart } from "./start.ts";
