/**
 * Layer 1, wire: frames (PROTOCOL.md section 1) and the transports that carry
 * them: the {@link FrameTransport} and {@link Network} interfaces, TCP, an
 * in-memory network for tests, and the recording proxy of the demo and the
 * attack tests. Knows nothing of what a frame means. May import: util.
 * @module
 */

export * from "./frame.ts";
export * from "./memory.ts";
export * from "./proxy.ts";
export * from "./tcp.ts";
export * from "./transport.ts";
