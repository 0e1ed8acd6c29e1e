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
 * Invisible characters, decided one by one (issue 10). "Escaped" means
 * shown as `\u{XXXX}`, so the reader sees that something was there;
 * removing it would hide the trick, keeping it would hide the character.
 *
 * | character                          | names, system, errors | message text                  |
 * | ---------------------------------- | --------------------- | ----------------------------- |
 * | U+200B zero width space            | escaped               | escaped                       |
 * | U+200C ZWNJ, U+200D ZWJ            | escaped               | kept once, between two        |
 * |                                    |                       | visible characters            |
 * | U+200E LRM, U+200F RLM, U+061C ALM | escaped               | escaped (bidi: always)        |
 * | U+202A-202E, U+2066-2069 (bidi)    | escaped               | escaped (bidi: always)        |
 * | U+FEFF BOM, zero width no-break sp | escaped               | escaped                       |
 * | U+00AD soft hyphen                 | escaped               | escaped                       |
 * | U+2060 word joiner, U+2061-2064    | escaped               | escaped                       |
 * | U+FE00-FE0F variation selectors,   | escaped               | kept once, after a visible    |
 * | U+180B-180D, U+180F Mongolian FVS  |                       | character                     |
 * | U+E0020-E007F tags                 | escaped               | kept as a subdivision flag's  |
 * |                                    |                       | tag sequence after U+1F3F4    |
 * | any other default-ignorable or Cf  | escaped               | escaped                       |
 *
 * (The last row: U+034F, the Hangul fillers U+115F, U+1160, U+3164,
 * U+FFA0, U+17B4-17B5, U+180E, U+FFF0-FFFB, U+1D173-1D17A, U+E0000-E0FFF,
 * the Arabic number signs U+0600-0605, and code points not yet assigned
 * that Unicode already reserves as ignorable.)
 *
 * White space that shows as a gap (U+00A0, U+2000-200A, U+3000) and
 * combining marks are kept: they are visible, if only as a space.
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
// Invisible characters (Unicode "Default_Ignorable_Code_Point", UAX #44,
// and every format character, general category Cf): zero-width spaces and
// joiners, bidi marks, embeddings, overrides and isolates (UAX #9; they
// reorder the line on screen), the soft hyphen, the BOM, fillers, tags,
// variation selectors. Each is shown as a visible escape, `\u{200B}`; see
// the table in the module doc.
const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{Cf}]/gu;
const INVISIBLE_RUN = /[\p{Default_Ignorable_Code_Point}\p{Cf}]+/gu;
// What message text may keep, right after a visible character: one
// variation selector (VS1-VS16: emoji or text presentation, CJK variants;
// Mongolian FVS1-FVS4), then one joiner (ZWNJ, ZWJ) before another
// visible character: emoji ZWJ sequences, Indic and Persian text.
const SELECTOR_JOINER =
  /^(?:[\ufe00-\ufe0f\u180b-\u180d\u180f])?(?<joiner>[\u200c\u200d])?$/u;
// An emoji tag sequence (UTS #51 2.8) after U+1F3F4 WAVING BLACK FLAG:
// a subdivision flag such as England's, "gbeng" in tag letters, then
// CANCEL TAG.
const FLAG_TAGS =
  /^[\u{e0061}-\u{e007a}]{2}[\u{e0030}-\u{e0039}\u{e0061}-\u{e007a}]{1,4}\u{e007f}$/u;
const BLACK_FLAG = "\u{1f3f4}";
// Neither side of a kept selector or joiner may be white space.
const VISIBLE = /^\S$/u;

// Printable ASCII only: nothing above is in it (no control, no escape, no
// line break, no invisible character, no lone surrogate), so such a string
// is already safe as it is; most text is, and it skips every pass below
// (issue 15: a line's cost on its way to the screen).
const PLAIN = /^[\x20-\x7e]*$/;

// For input lines: C0 except TAB, DEL and C1.
// deno-lint-ignore no-control-regex -- matching controls is the point
const INPUT_CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

/**
 * Make text from the network safe to print on a terminal: remove ANSI
 * escape sequences (CSI, OSC, DCS, ... in 7-bit and 8-bit form), turn line
 * breaks and tabs into spaces, remove every other C0/C1 control and DEL,
 * show every invisible character (zero-width, bidi, soft hyphen, BOM, ...)
 * as a visible escape such as `\u{200B}`, and replace lone surrogates
 * with U+FFFD. Printable Unicode (accents, CJK, emoji) is kept. For names,
 * system text, errors and hints; message text goes through
 * {@link sanitizeMessage}, which keeps what emoji and some scripts need.
 * @param s untrusted text
 * @returns one line of printable text
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitizeText } from "./sanitize.ts";
 * assert.ok(sanitizeText("hi\x1b[2J\x1b]0;pwned\x07 there") === "hi there");
 * assert.ok(sanitizeText("a\rb\nc") === "a b c");
 * assert.ok(sanitizeText("héllo 👋") === "héllo 👋");
 * assert.ok(sanitizeText("ad\u200Bmin") === "ad\\u{200B}min");
 * ```
 */
export function sanitizeText(s: string): string {
  if (PLAIN.test(s)) return s;
  return stripControls(s).replace(INVISIBLE, escapeCodePoint);
}

/**
 * Like {@link sanitizeText}, for the text of a chat message: the same,
 * except that what emoji and some scripts need stays, when it sits where
 * they put it. After a visible character: one variation selector, then one
 * zero-width joiner or non-joiner before another visible character
 * (`👨‍👩‍👧`, `🏳️‍🌈`, Devanagari, Persian); after U+1F3F4, a subdivision
 * flag's tag sequence. Anything else invisible is escaped, bidi controls
 * always, and so is a run of them.
 * @param s untrusted message text
 * @returns one line of printable text
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sanitizeMessage } from "./sanitize.ts";
 * assert.ok(sanitizeMessage("👨\u200D👩") === "👨\u200D👩");
 * assert.ok(sanitizeMessage("a\u200D\u200Db") === "a\\u{200D}\\u{200D}b");
 * assert.ok(sanitizeMessage("abc\u202Etxt") === "abc\\u{202E}txt");
 * ```
 */
export function sanitizeMessage(s: string): string {
  if (PLAIN.test(s)) return s;
  return stripControls(s).replace(
    INVISIBLE_RUN,
    (run: string, at: number, all: string) =>
      keptInMessage(
          run,
          lastCodePoint(all, at),
          firstCodePoint(all, at + run.length),
        )
        ? run
        : run.replace(INVISIBLE, escapeCodePoint),
  );
}

/** Escape sequences removed, line breaks and tabs made spaces, other controls removed. */
function stripControls(s: string): string {
  return s.toWellFormed()
    .replace(CONTROL_STRING, "")
    .replace(CSI, "")
    .replace(ESCAPE, "")
    .replace(BREAK, " ")
    .replace(CONTROL, "");
}

/** `\u{200B}`: the code point in hex, at least four digits. */
function escapeCodePoint(c: string): string {
  const hex = (c.codePointAt(0) ?? 0).toString(16).toUpperCase();
  return `\\u{${hex.padStart(4, "0")}}`;
}

/** May a message keep this run of invisible characters between `before` and `after`? */
function keptInMessage(run: string, before: string, after: string): boolean {
  if (before === BLACK_FLAG) return FLAG_TAGS.test(run);
  if (!VISIBLE.test(before)) return false;
  const m = SELECTOR_JOINER.exec(run);
  if (m === null) return false;
  return m.groups?.joiner === undefined || VISIBLE.test(after);
}

/** The code point that ends at `end` in `s`, or "" at the start. */
function lastCodePoint(s: string, end: number): string {
  const low = s.charCodeAt(end - 1);
  const start = low >= 0xdc00 && low <= 0xdfff && end >= 2 ? end - 2 : end - 1;
  return start < 0 ? "" : s.slice(start, end);
}

/** The code point that starts at `at` in `s`, or "" at the end. */
function firstCodePoint(s: string, at: number): string {
  const c = s.codePointAt(at);
  return c === undefined ? "" : String.fromCodePoint(c);
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
  if (PLAIN.test(line)) return line;
  return line.toWellFormed().replace(INPUT_CONTROL, "");
}
