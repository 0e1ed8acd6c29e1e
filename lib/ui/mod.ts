/**
 * Layer 6, ui: the terminal of `im chat`: reading lines, formatting the
 * client's events as text or JSON, sanitizing, Tab completion. May import:
 * util, proto, client.
 * @module
 */

export * from "./format.ts";
export * from "./terminal.ts";
