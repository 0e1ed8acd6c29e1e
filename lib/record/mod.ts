/**
 * Layer 2, record: the record layer (PROTOCOL.md section 3): one sealer and
 * one opener per direction, and the record channel that carries them over a
 * transport with heartbeats. Bytes in, bytes out: the message codec is
 * injected by the protocol layer. May import: util, crypto, wire.
 * @module
 */

export * from "./channel.ts";
export * from "./record.ts";
