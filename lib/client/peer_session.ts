/**
 * Peer sessions (requirements section 4): run the peer handshake over a
 * transport (a direct TCP connection, or the server relay, PROTOCOL.md
 * section 6.1), then carry chat messages with delivery receipts over a
 * `SecureChannel`.
 *
 * A facade over its parts, each with one job:
 * - peer_connect.ts: the handshake, host side and joiner side, and the
 *   session it opens;
 * - peer_chat.ts: the running session (`PeerSession`) over
 *   peer_receipts.ts (the receiver's receipts), peer_unacked.ts (the
 *   sender's messages waiting for theirs) and peer_send_window.ts (the
 *   back-pressure of sending);
 * - relay_transport.ts: the server relay as a peer transport.
 *
 * @example
 * ```ts ignore
 * const ticket = openJoinTicket(ticketKeys, sealed, { self: "B", expectedHost: "A", ticketId });
 * const session = await joinPeer(transport, { self: "B", expectedHost: "A", replayCache, ticket, identity, peerIdentity });
 * await session.sendText("hello");
 * ```
 * @module
 */

export {
  ACK_MAX_DELAY_MS,
  ACK_QUIET_MS,
  ACK_RUN_MAX,
  ReceiptRun,
} from "./peer_receipts.ts";
export {
  hostPeer,
  joinPeer,
  type JoinPeerOptions,
  PEER_COMMIT_TIMEOUT_MS,
  PEER_HANDSHAKE_TIMEOUT_MS,
  readPeerCommit,
  SpentHandshakeError,
} from "./peer_connect.ts";
export {
  CLOSE_GRACE_MS,
  MAX_MESSAGE_BYTES,
  type PeerEvent,
  PeerSession,
  type QueuedText,
} from "./peer_chat.ts";
export { MAX_SEND_AHEAD } from "./peer_send_window.ts";
export {
  RELAY_QUEUE_MAX_BYTES,
  RELAY_QUEUE_MAX_FRAMES,
  RelayTransport,
} from "./relay_transport.ts";
