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
import { decodeMessage, encodeMessage, type Message } from "./messages.ts";

/** The codec of every `im` channel: UTF-8 JSON messages, checked field by field. */
export const MESSAGE_CODEC: RecordCodec<Message, Message> = {
  encode: encodeMessage,
  decode: decodeMessage,
};

/** What a {@link SecureChannel} reports. */
export type ChannelEvent = RecordChannelEvent<Message>;

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
