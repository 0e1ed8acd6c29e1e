/**
 * {@link SecureChannel}: the record layer's channel carrying the messages of
 * PROTOCOL.md "Messages" as DATA records. The record layer moves bytes; this
 * is where the protocol layer injects its message codec.
 *
 * @example
 * ```ts ignore
 * const ch = new SecureChannel(transport, login.sealer, login.opener, { heartbeatMs: 2000 });
 * await ch.send({ t: "list" });
 * ```
 * @module
 */

import {
  type ChannelEvent as RecordChannelEvent,
  type ChannelOptions,
  RecordChannel,
  type RecordCodec,
  type RecordOpener,
  type RecordSealer,
} from "../record/mod.ts";
import type { FrameTransport } from "../wire/mod.ts";
import {
  type ClientToServer,
  decodeClientToServer,
  decodeMessage,
  decodePeerToPeer,
  decodeServerToClient,
  encodeMessage,
  type Message,
  type PeerToPeer,
  type ServerToClient,
} from "./messages.ts";

/** The codec of every `im` channel: UTF-8 JSON messages, checked field by field. */
export const MESSAGE_CODEC: RecordCodec<Message, Message> = {
  encode: encodeMessage,
  decode: decodeMessage,
};

/** The server's codec: reads what clients send, writes what the server sends. */
export const CLIENT_LINK_CODEC: RecordCodec<ClientToServer, ServerToClient> = {
  encode: encodeMessage,
  decode: decodeClientToServer,
};

/** A client's codec: reads what the server sends, writes what clients send. */
export const SERVER_LINK_CODEC: RecordCodec<ServerToClient, ClientToServer> = {
  encode: encodeMessage,
  decode: decodeServerToClient,
};

/** A peer session's codec. */
export const PEER_LINK_CODEC: RecordCodec<PeerToPeer, PeerToPeer> = {
  encode: encodeMessage,
  decode: decodePeerToPeer,
};

/** What a message channel reports. */
export type ChannelEvent<In = Message> = RecordChannelEvent<In>;

/** A record channel whose DATA records are {@link Message}s. */
export class SecureChannel extends RecordChannel<Message, Message> {
  /**
   * @param transport the link
   * @param sealer our direction
   * @param opener the other direction
   * @param opts heartbeat settings
   */
  constructor(
    transport: FrameTransport,
    sealer: RecordSealer,
    opener: RecordOpener,
    opts: ChannelOptions = {},
  ) {
    super(transport, sealer, opener, MESSAGE_CODEC, opts);
  }
}

/** The server's end of a client's connection: reads {@link ClientToServer}. */
export class ClientLink extends RecordChannel<ClientToServer, ServerToClient> {
  constructor(
    transport: FrameTransport,
    sealer: RecordSealer,
    opener: RecordOpener,
    opts: ChannelOptions = {},
  ) {
    super(transport, sealer, opener, CLIENT_LINK_CODEC, opts);
  }
}

/** A client's connection to the server: reads {@link ServerToClient}. */
export class ServerLink extends RecordChannel<ServerToClient, ClientToServer> {
  constructor(
    transport: FrameTransport,
    sealer: RecordSealer,
    opener: RecordOpener,
    opts: ChannelOptions = {},
  ) {
    super(transport, sealer, opener, SERVER_LINK_CODEC, opts);
  }
}

/** A peer session's channel: {@link PeerToPeer} both ways. */
export class PeerLink extends RecordChannel<PeerToPeer, PeerToPeer> {
  constructor(
    transport: FrameTransport,
    sealer: RecordSealer,
    opener: RecordOpener,
    opts: ChannelOptions = {},
  ) {
    super(transport, sealer, opener, PEER_LINK_CODEC, opts);
  }
}
