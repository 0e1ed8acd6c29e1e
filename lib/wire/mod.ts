/**
 * Layer 1, wire: frames (PROTOCOL.md section 1) and the transports that carry them: the {@link FrameTransport} and {@link Network} interfaces, TCP for users, memory for tests, and the recording proxy. Knows nothing of what a frame means. May import: util.
 * @module
 */

export * from "./frame.ts";
export * from "./memory.ts";
export * from "./proxy.ts";
export * from "./tcp.ts";
