/**
 * Layer 6, ui: the terminal of `im chat`. May import: util, proto, client.
 *
 * - sanitize.ts: makes network strings (and typed lines) safe to print.
 * - format.ts: the client's events as text or `--json` lines; the prompt.
 * - completion.ts: Tab completion of commands and online names.
 * - terminal.ts: the line editor and the terminal's input and output.
 * @module
 */

export * from "./sanitize.ts";
export * from "./format.ts";
export * from "./completion.ts";
export * from "./terminal.ts";
