/**
 * Layer 2, record: the record layer (PROTOCOL.md section 3): one sealer and one opener per direction, and the secure channel that carries records over a transport with heartbeats. Bytes in, bytes out: the message codec is injected. May import: util, crypto, wire.
 * @module
 */

export * from "./channel.ts";
export * from "./record.ts";
