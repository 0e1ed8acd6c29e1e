/**
 * Layer 6, ui: the terminal of `im chat`. May import: util, proto, client.
 *
 * - sanitize.ts: makes network strings (and typed lines) safe to print.
 * - format.ts: the client's events as text or `--json` lines; the prompt.
 * - completion.ts: Tab completion of commands and online names.
 * - line_editor.ts: the one-row line editor (keys in, one redraw out).
 * - terminal.ts: the terminal's input and output, interactive
 *   (interactive_terminal.ts) or piped (piped_terminal.ts), over
 *   base_terminal.ts and line_queue.ts.
 * - terminal_guard.ts: the terminal restored on signals and crashes.
 * - ask.ts: one question on the terminal (the username), Tab completing.
 * - stdio.ts: stdin and stdout on Deno's handles, for a script's terminal.
 * @module
 */

export * from "./sanitize.ts";
export * from "./format.ts";
export * from "./completion.ts";
export * from "./line_editor.ts";
export * from "./terminal.ts";
export * from "./terminal_guard.ts";
export * from "./ask.ts";
export * from "./stdio.ts";
