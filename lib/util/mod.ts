/**
 * Layer 0, util: bytes and their encodings, typed errors, time and concurrency
 * helpers, log lines. It imports nothing of `im`.
 * @module
 */

export * from "./async.ts";
export * from "./bytes.ts";
export * from "./errors.ts";
export * from "./log.ts";
