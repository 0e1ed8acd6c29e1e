/**
 * The pure half of the chat terminal: sanitizing, the human and `--json`
 * formats of the client's events, and Tab completion. No streams, no clock,
 * no environment. The events and the commands belong to the client layer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatEvent } from "./format.ts";
 * const at = new Date(2024, 0, 1, 9, 5).getTime();
 * const ev = { kind: "system", text: "Logged in", at } as const;
 * assert.ok(formatEvent(ev, { color: false, self: "A" }) === "09:05 -- Logged in");
 * ```
 * @module
 */

import { isValidUsername } from "../proto/mod.ts";
import { COMMANDS, type UiEvent } from "../client/mod.ts";

/** Options of {@link formatEvent}. */
export interface FormatOptions {
  /** Use ANSI colours (see {@link shouldUseColor}). */
  color: boolean;
  /** Our own username; it is shown bold instead of in a name colour. */
  self: string;
}

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
 * import { sanitizeText } from "./format.ts";
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
 * import { sanitizeInput } from "./format.ts";
 * assert.ok(sanitizeInput("a\x00b\tc\x1b") === "ab\tc");
 * ```
 */
export function sanitizeInput(line: string): string {
  return line.toWellFormed().replace(INPUT_CONTROL, "");
}

/**
 * Should output be coloured? Only on a terminal, and not when the user set
 * `NO_COLOR` (https://no-color.org: present and not empty).
 * @param env `noColor`: NO_COLOR is set and not empty; `isTty`: stdout is a terminal
 * @returns true when ANSI colours may be written
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shouldUseColor } from "./format.ts";
 * assert.ok(shouldUseColor({ noColor: false, isTty: true }));
 * assert.ok(!shouldUseColor({ noColor: true, isTty: true }));
 * assert.ok(!shouldUseColor({ noColor: false, isTty: false }));
 * ```
 */
export function shouldUseColor(
  env: { noColor: boolean; isTty: boolean },
): boolean {
  return env.isTty && !env.noColor;
}

const NAME_COLORS = [32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96] as const;

function sgr(on: boolean, code: string, s: string): string {
  return on ? `\x1b[${code}m${s}\x1b[0m` : s;
}

function nameColor(name: string): number {
  // FNV-1a: a stable colour per name across runs.
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  }
  return NAME_COLORS[(h >>> 0) % NAME_COLORS.length] ?? 36;
}

function name(n: string, opts: FormatOptions): string {
  const clean = sanitizeText(n);
  if (n === opts.self) return sgr(opts.color, "1", clean);
  return sgr(opts.color, String(nameColor(clean)), clean);
}

function clock(at: number): string {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return "--:--";
  const hh = String(d.getHours()).padStart(2, "0");
  const mm = String(d.getMinutes()).padStart(2, "0");
  return `${hh}:${mm}`;
}

/**
 * Format an event as human text: `HH:MM` local time, then the event.
 * Every string field is sanitized with {@link sanitizeText}; a `system`
 * event keeps its own line breaks (the help text) and sanitizes each line.
 * @param ev the event
 * @param opts colour on or off, and our own name
 * @returns one line, or several for a multi-line `system` event, without a final newline
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatEvent } from "./format.ts";
 * const at = new Date(2024, 0, 1, 13, 7).getTime();
 * const line = formatEvent(
 *   { kind: "message", from: "B", to: "A", text: "hi", at, direction: "in" },
 *   { color: false, self: "A" },
 * );
 * assert.ok(line === "13:07 B: hi");
 * ```
 */
export function formatEvent(ev: UiEvent, opts: FormatOptions): string {
  const c = opts.color;
  const t = sgr(c, "2", clock(ev.at));
  const note = (s: string) => `${t} ${sgr(c, "2", "--")} ${s}`;
  const alarm = (s: string) => `${t} ${sgr(c, "1;31", "!!")} ${s}`;
  switch (ev.kind) {
    case "message": {
      // Our own messages carry their number, so a receipt can be matched to them.
      const num = ev.direction === "out" && ev.id !== undefined
        ? sgr(c, "2", ` #${sanitizeText(ev.id)}`)
        : "";
      return `${t} ${name(ev.from, opts)}: ${sanitizeText(ev.text)}${num}`;
    }
    case "receipt": {
      const id = sanitizeText(ev.id);
      return ev.status === "delivered"
        ? note(`delivered to ${name(ev.peer, opts)} (#${id})`)
        : alarm(`not delivered to ${name(ev.peer, opts)} (#${id})`);
    }
    case "system":
      return ev.text.split(/\r?\n/).map(sanitizeText)
        .map((line, i) => i === 0 ? note(line) : `         ${line}`).join("\n");
    case "error":
      return alarm(
        `${sgr(c, "31", "error:")} ${sanitizeText(ev.text)} (${
          sanitizeText(ev.code)
        })`,
      );
    case "list": {
      const users = ev.users.map((u) =>
        `${name(u.name, opts)} (${sanitizeText(u.state)})`
      );
      return note(
        `online: ${users.length === 0 ? "nobody" : users.join(", ")}`,
      );
    }
    case "session": {
      const peer = ev.peer === "" ? "" : name(ev.peer, opts);
      if (ev.state === "waiting") {
        return note(
          peer === ""
            ? "hosting: waiting for a peer to connect"
            : `waiting for ${peer} to answer`,
        );
      }
      if (ev.state === "ended") {
        const why = ev.reason === undefined || ev.reason === ""
          ? ""
          : `: ${sanitizeText(ev.reason)}`;
        return note(`session with ${peer} ended${why}`);
      }
      const how = ev.transport === undefined
        ? ""
        : ` (${sanitizeText(ev.transport)})`;
      const sas = ev.sas === undefined
        ? ""
        : `; compare the code ${
          sgr(c, "1", sanitizeText(ev.sas))
        } with ${peer} out of band`;
      return note(`session with ${peer} started${how}${sas}`);
    }
  }
}

function iso(at: number): string | null {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/**
 * Format an event as one line of JSON for `--json`. The schema is stable:
 * `type` first, then every field of that kind in a fixed order (an absent
 * optional field is `null`), then `time` as an ISO 8601 UTC string (`null`
 * if `at` is not a valid time). Strings are sanitized like
 * {@link sanitizeText}; fields not in the schema are dropped.
 *
 * | type    | keys                                                    |
 * |---------|---------------------------------------------------------|
 * | message | type, direction, from, to, text, id, time               |
 * | receipt | type, id, status, peer, time                            |
 * | system  | type, text, time                                        |
 * | error   | type, code, text, time                                  |
 * | list    | type, users [{name, state}], time                       |
 * | session | type, state, peer, sas, transport, reason, time         |
 *
 * @param ev the event
 * @returns one line of JSON without a final newline
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { eventToJson } from "./format.ts";
 * const line = eventToJson({ kind: "system", text: "Logged in", at: 0 });
 * assert.ok(line === '{"type":"system","text":"Logged in","time":"1970-01-01T00:00:00.000Z"}');
 * ```
 */
export function eventToJson(ev: UiEvent): string {
  const s = sanitizeText;
  const opt = (v: string | undefined) => v === undefined ? null : s(v);
  let body: Record<string, unknown>;
  switch (ev.kind) {
    case "message":
      body = {
        direction: ev.direction,
        from: s(ev.from),
        to: s(ev.to),
        text: s(ev.text),
        id: opt(ev.id),
      };
      break;
    case "receipt":
      body = { id: s(ev.id), status: ev.status, peer: s(ev.peer) };
      break;
    case "system":
      // Keep line breaks (help text): JSON escapes them, one line stays one line.
      body = { text: ev.text.split(/\r?\n/).map(s).join("\n") };
      break;
    case "error":
      body = { code: s(ev.code), text: s(ev.text) };
      break;
    case "list":
      body = {
        users: ev.users.map((u) => ({ name: s(u.name), state: s(u.state) })),
      };
      break;
    case "session":
      body = {
        state: ev.state,
        peer: s(ev.peer),
        sas: opt(ev.sas),
        transport: opt(ev.transport),
        reason: opt(ev.reason),
      };
      break;
  }
  return JSON.stringify({ type: ev.kind, ...body, time: iso(ev.at) });
}

/**
 * The prompt: `A> ` when talking to the server, `A→B> ` in a session.
 * @param self our username
 * @param peer the session peer, or null
 * @param color make the names bold
 * @returns the prompt string
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatPrompt } from "./format.ts";
 * assert.ok(formatPrompt("A", null, false) === "A> ");
 * assert.ok(formatPrompt("A", "B", false) === "A→B> ");
 * ```
 */
export function formatPrompt(
  self: string,
  peer: string | null,
  color: boolean,
): string {
  const me = sgr(color, "1", sanitizeText(self));
  return peer === null
    ? `${me}> `
    : `${me}→${sgr(color, "1", sanitizeText(peer))}> `;
}

/**
 * Tab completion in the shape `node:readline` wants: commands after `!`,
 * and `host` or an online username after `!session `. Message text is not
 * completed. Names that break the username rule (2.9) are never offered.
 * @param line the whole line up to the cursor
 * @param names usernames that are online now
 * @returns `[candidates, the part of the line they replace]`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeLine } from "./format.ts";
 * const [hits, part] = completeLine("!session b", ["bob", "carol"]);
 * assert.ok(hits.length === 1 && hits[0] === "bob" && part === "b");
 * ```
 */
export function completeLine(
  line: string,
  names: string[],
): [string[], string] {
  const arg = /^!session +(\S*)$/.exec(line);
  if (arg !== null) {
    const part = arg[1] ?? "";
    const users = [...new Set(names.filter(isValidUsername))].sort();
    return [["host", ...users].filter((w) => w.startsWith(part)), part];
  }
  if (line === "" || /^!\S*$/.test(line)) {
    const hits = COMMANDS.filter((cmd) => cmd.startsWith(line));
    // "!session host" is reached through "!session "; offer it alone
    // only when the user has typed past "!session".
    return [
      hits.length > 1 ? hits.filter((h) => h !== "!session host") : hits,
      line,
    ];
  }
  return [[], line];
}
