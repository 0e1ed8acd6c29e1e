/**
 * Layer 3, proto: the protocol as pure state machines and codecs, sans I/O:
 * usernames, the login handshake (section 2), tickets and the peer handshake
 * (section 4), the messages and the channel that carries them. May import:
 * util, crypto, wire, record.
 * @module
 */

export * from "./cluster.ts";
export * from "./cluster_store.ts";
export * from "./login.ts";
export * from "./login_client.ts";
export * from "./login_decoys.ts";
export * from "./login_server.ts";
export * from "./login_messages.ts";
export * from "./mail.ts";
export * from "./mail_bundle.ts";
export * from "./mail_certs.ts";
export * from "./mail_vault.ts";
export * from "./room_vault.ts";
export * from "./messages.ts";
export * from "./padding.ts";
export * from "./peer_handshake.ts";
export * from "./peer_host.ts";
export * from "./peer_join.ts";
export * from "./room_chain.ts";
export * from "./room_list.ts";
export * from "./room_msg.ts";
export * from "./room_reader.ts";
export * from "./steps.ts";
export * from "./ticket.ts";
export * from "./username.ts";
export * from "./message_channel.ts";
