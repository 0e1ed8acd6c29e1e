/**
 * {@link SecureChannel}: the record layer's channel carrying the messages of
 * PROTOCOL.md "Messages" as DATA records. The record layer moves bytes; this
 * is where the protocol layer injects its message codec. A peer session's
 * channel pads each message to a size bucket (`pad: true`, PROTOCOL.md
 * section 6, "Padding"); a server link's does not.
 *
 * @example
 * ```ts ignore
 * const ch = new SecureChannel(transport, login.sealer, login.opener, { heartbeatMs: 2000 });
 * await ch.send({ t: "list" });
 * const peer = new SecureChannel(t, r.sealer, r.opener, { heartbeatMs: 2000, pad: true });
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
import { bucketOf, PAD_BYTE, padToBucket } from "./padding.ts";
import { utf8 } from "../util/mod.ts";

const ENCODER = new TextEncoder();

/** The codec of every `im` channel: UTF-8 JSON messages, checked field by field. */
export const MESSAGE_CODEC: RecordCodec<Message, Message> = {
  encode: encodeMessage,
  decode: decodeMessage,
};

/**
 * Encode `m` and pad it with spaces to its size bucket, at most to `room`
 * (PROTOCOL.md section 6, "Padding"). The unpadded copy is wiped.
 * @param m the message
 * @param room the most the record may carry
 * @returns the padded plaintext
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodePadded } from "./mod.ts";
 * const p = encodePadded({ t: "ack", id: "1" }, 1000);
 * assert.equal(p.length, 64);
 * assert.deepEqual(decodeMessage(p), { t: "ack", id: "1" });
 * ```
 */
export function encodePadded(m: Message, room: number): Uint8Array {
  const json = JSON.stringify(m);
  // UTF-8 takes at least a byte per UTF-16 unit, so the bucket of the
  // JSON's length is the smallest the message can have: encoded straight
  // into it when it fits, with no unpadded copy (issue 15).
  const target = Math.min(bucketOf(json.length), room);
  if (target > json.length) {
    const out = new Uint8Array(target);
    const { read, written } = ENCODER.encodeInto(json, out);
    if (read === json.length) return out.fill(PAD_BYTE, written);
    out.fill(0);
  }
  const bytes = utf8(json);
  const padded = padToBucket(bytes, room);
  if (padded !== bytes) bytes.fill(0);
  return padded;
}

/**
 * {@link MESSAGE_CODEC} with every message padded to its size bucket: the
 * codec of a peer session's {@link SecureChannel} (`pad: true`). Decoding
 * needs no change: JSON allows the trailing spaces.
 */
export const PADDED_MESSAGE_CODEC: RecordCodec<Message, Message> = {
  encode: encodePadded,
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

/** A peer session's codec: each message padded to its size bucket. */
export const PEER_LINK_CODEC: RecordCodec<PeerToPeer, PeerToPeer> = {
  encode: encodePadded,
  decode: decodePeerToPeer,
};

/** What a message channel reports. */
export type ChannelEvent<In = Message> = RecordChannelEvent<In>;

/** Options of {@link SecureChannel}. */
export interface SecureChannelOptions extends ChannelOptions {
  /**
   * Pad each DATA record's message to its size bucket (peer sessions,
   * PROTOCOL.md section 6, "Padding"). Default false: server links are not
   * padded.
   */
  pad?: boolean;
}

/** A record channel whose DATA records are {@link Message}s. */
export class SecureChannel extends RecordChannel<Message, Message> {
  /**
   * @param transport the link
   * @param sealer our direction
   * @param opener the other direction
   * @param opts heartbeat settings, record limit, padding
   */
  constructor(
    transport: FrameTransport,
    sealer: RecordSealer,
    opener: RecordOpener,
    opts: SecureChannelOptions = {},
  ) {
    const { pad = false, ...channel } = opts;
    super(
      transport,
      sealer,
      opener,
      pad ? PADDED_MESSAGE_CODEC : MESSAGE_CODEC,
      channel,
    );
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

/** A peer session's channel: {@link PeerToPeer} both ways, padded like a `pad: true` {@link SecureChannel}. */
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
