/**
 * Everything that makes a string from the network (or a typed line) safe
 * for a terminal. Text from a server or a peer can carry ANSI escape
 * sequences (window title, clipboard writes, screen clears), line breaks
 * that start a fake line, bidi controls that reorder the line on screen,
 * and invisible characters; {@link sanitizeText} turns any of it into one
 * line of printable text. Whoever prints a string that came from outside,
 * errors included, passes it through here first. Typed input is cleaned
 * by {@link sanitizeInput}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitizeText } from "./sanitize.ts";
 * assert.ok(sanitizeText("ok\x1b]0;pwned\x07\nim: hint: rm") === "ok im: hint: rm");
 * ```
 * @module
 */

// ECMA-48 section 5.6: control strings (OSC, DCS, SOS, PM, APC), 7-bit
// (ESC + letter) or 8-bit (C1) introducer, ended by ST (ESC \ or 0x9C) or,
// as xterm accepts for OSC, BEL. An unterminated one runs to the end, as a
// terminal would swallow it.
const CONTROL_STRING =
  // deno-lint-ignore no-control-regex -- matching controls is the point
  /(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^]*?(?:\x07|\x1b\\|\x9c|$)/g;
// ECMA-48 section 5.4: CSI (ESC [ or 0x9B), parameter bytes 0x30-0x3F,
// intermediate bytes 0x20-0x2F, final byte 0x40-0x7E.
// deno-lint-ignore no-control-regex -- matching controls is the point
const CSI = /(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?/g;
// ECMA-35: ESC, intermediate bytes 0x20-0x2F, final byte 0x30-0x7E
// (ESC c resets the terminal, ESC 7/8 save and restore the cursor).
// deno-lint-ignore no-control-regex -- matching controls is the point
const ESCAPE = /\x1b[\x20-\x2f]*[\x30-\x7e]?/g;
// Line breaks and tabs become one space each, so a peer cannot start a
// fake line: CR LF, CR, LF, VT, FF, NEL, LINE/PARAGRAPH SEPARATOR, TAB.
const BREAK = /\r\n|[\r\n\t\v\f\x85\u2028\u2029]/g;
// What is left of C0, DEL and C1.
// deno-lint-ignore no-control-regex -- matching controls is the point
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g;
// Bidirectional embeddings, overrides and isolates (Unicode UAX #9): they
// reorder the rest of the line on screen.
const BIDI = /[\u202a-\u202e\u2066-\u2069]/g;
// For input lines: C0 except TAB, DEL and C1.
// deno-lint-ignore no-control-regex -- matching controls is the point
const INPUT_CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

/**
 * Make text from the network safe to print on a terminal: remove ANSI
 * escape sequences (CSI, OSC, DCS, ... in 7-bit and 8-bit form), turn line
 * breaks and tabs into spaces, remove every other C0/C1 control and DEL,
 * remove bidi overrides, and replace lone surrogates with U+FFFD. Printable
 * Unicode (accents, CJK, emoji) is kept.
 * @param s untrusted text
 * @returns one line of printable text
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitizeText } from "./sanitize.ts";
 * assert.ok(sanitizeText("hi\x1b[2J\x1b]0;pwned\x07 there") === "hi there");
 * assert.ok(sanitizeText("a\rb\nc") === "a b c");
 * assert.ok(sanitizeText("héllo 👋") === "héllo 👋");
 * ```
 */
export function sanitizeText(s: string): string {
  return s.toWellFormed()
    .replace(CONTROL_STRING, "")
    .replace(CSI, "")
    .replace(ESCAPE, "")
    .replace(BREAK, " ")
    .replace(CONTROL, "")
    .replace(BIDI, "");
}

/**
 * Clean one line typed or piped in by the user: remove C0 controls except
 * TAB, DEL and C1 controls, and replace lone surrogates with U+FFFD.
 * @param line one input line without its line ending
 * @returns the cleaned line
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitizeInput } from "./sanitize.ts";
 * assert.ok(sanitizeInput("a\x00b\tc\x1b") === "ab\tc");
 * ```
 */
export function sanitizeInput(line: string): string {
  return line.toWellFormed().replace(INPUT_CONTROL, "");
}
