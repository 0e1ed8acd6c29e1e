/**
 * How the client's events look: the human text format ({@link formatEvent}),
 * the `--json` lines ({@link eventToJson}), the prompt, and whether to use
 * colour. Pure: no streams, no clock, no environment. Every string of an
 * event may come from the network and goes through {@link sanitizeText}
 * (sanitize.ts); the events belong to the client layer.
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
import { HELP_TEXT, type UiEvent } from "../client/mod.ts";
import { sanitizeMessage, sanitizeText } from "./sanitize.ts";

/**
 * What follows the time on a line of {@link formatEvent}, by the kind of
 * line; a message has the sender's name and a colon instead.
 */
export const MARKS = {
  /** Notes: `system`, receipts, `!list`, a session waiting or ended. */
  note: "--",
  /** Errors and undelivered messages. */
  alarm: "!!",
  /**
   * The start of a peer session, with the short code to compare. No other
   * line carries it, and no text from the network can put it at the start
   * of a line.
   */
  sas: "==",
  /** A mail message, either way (PROTOCOL.md section 9.4 step 6), before its sender's name. */
  mail: "[mail]",
  /**
   * What starts the mark of a room (PROTOCOL.md section 10): `[#team]`
   * before a room message's sender, and after the note mark on the
   * room's notes (members, receipts).
   */
  room: "[#",
} as const;

/** Options of {@link formatEvent}. */
export interface FormatOptions {
  /** Use ANSI colours (see {@link shouldUseColor}). */
  color: boolean;
  /** Our own username; it is shown bold instead of in a name colour. */
  self: string;
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

/**
 * A username as shown. A name that breaks rule 2.9 (it can only come from a
 * misbehaving server or peer) is quoted, so it can never pass for a mark
 * or for part of the line around it.
 */
function name(n: string, opts: FormatOptions): string {
  const clean = isValidUsername(n) ? n : JSON.stringify(sanitizeText(n));
  if (n === opts.self) return sgr(opts.color, "1", clean);
  return sgr(opts.color, String(nameColor(clean)), clean);
}

/** A mail's written time, local: `2026-12-02 12:00`. */
function dateTime(at: number): string {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return "---------- --:--";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${
    clock(at)
  }`;
}

/** A mail's id as shown to people: its first 8 hex digits (`--json` has all 32). */
function shortId(id: string): string {
  return sanitizeText(id.slice(0, 8));
}

/**
 * A room's name as shown, `#team`. A name that breaks rule 2.9 (it can
 * only come from a misbehaving server) is quoted after the `#`.
 */
function roomName(n: string, opts: FormatOptions): string {
  const clean = isValidUsername(n) ? n : JSON.stringify(sanitizeText(n));
  return sgr(opts.color, "1;35", `#${clean}`);
}

/** A room's mark, `[#team]`, before its messages and in its notes. */
function roomMark(n: string, opts: FormatOptions): string {
  const clean = isValidUsername(n) ? n : JSON.stringify(sanitizeText(n));
  return sgr(opts.color, "1;35", `${MARKS.room}${clean}]`);
}

/** Names as a list, `A, B, C`, or `nobody`. */
function names(ns: string[], opts: FormatOptions): string {
  return ns.length === 0 ? "nobody" : ns.map((n) => name(n, opts)).join(", ");
}

function clock(at: number): string {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return "--:--";
  const hh = String(d.getHours()).padStart(2, "0");
  const mm = String(d.getMinutes()).padStart(2, "0");
  return `${hh}:${mm}`;
}

/**
 * Format an event as human text: `HH:MM` local time, then the event's mark
 * (see {@link MARKS}) or, for a message, the sender's name and a colon; a
 * mail is `[mail] B (written 2026-12-02 12:00): text` coming in and
 * `[mail] A to B: text #1a2b3c4d` going out (the first 8 hex digits of its
 * id, which its receipts repeat).
 * A room's message is `[#team] B: text` (ours with its number, `[#team] A:
 * text #12`); a room's notes are `-- [#team] A created the room: A, B, C`,
 * `-- [#team] A added D`, `-- [#team] A removed C`, `-- [#team] C left`,
 * `-- You were removed from #team by A`, `-- You left #team`, and its
 * receipts `-- [#team] message #12 delivered to 4 of 5` (the server's
 * count of the other members that have it) or `stored`. `!rooms` is one
 * line per room, each with the time and the note mark:
 * `-- #team (creator A): A*, B, C* — 2 of 3 online` (`*`: online).
 * Every string field is sanitized with {@link sanitizeText} (message text
 * with {@link sanitizeMessage}), so an event is one line: text from a
 * server or a peer cannot start a line of its own (issue 10 item 6). The
 * one exception is a `system` event whose text is the client's own
 * {@link HELP_TEXT}: it keeps its lines, the later ones indented.
 * Only a `session` event that `started` is shown with the mark
 * {@link MARKS}.sas, so nothing else can imitate the line with the short
 * code to compare: every other line starts with its own mark, or with a
 * name, which is a valid username or is quoted.
 * @param ev the event
 * @param opts colour on or off, and our own name
 * @returns one line (several only for the help text, and for `!rooms` one per
 *   room, each starting with the time and the note mark), without a final newline
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
 * const fake = formatEvent(
 *   { kind: "system", text: "x\n13:07 == session with B started", at },
 *   { color: false, self: "A" },
 * );
 * assert.ok(fake === "13:07 -- x 13:07 == session with B started");
 * ```
 */
export function formatEvent(ev: UiEvent, opts: FormatOptions): string {
  const c = opts.color;
  const t = sgr(c, "2", clock(ev.at));
  const note = (s: string) => `${t} ${sgr(c, "2", MARKS.note)} ${s}`;
  const alarm = (s: string) => `${t} ${sgr(c, "1;31", MARKS.alarm)} ${s}`;
  const sas = (s: string) => `${t} ${sgr(c, "1;32", MARKS.sas)} ${s}`;
  switch (ev.kind) {
    case "message": {
      // Our own messages carry their number, so a receipt can be matched to them.
      const num = ev.direction === "out" && ev.id !== undefined
        ? sgr(c, "2", ` #${sanitizeText(ev.id)}`)
        : "";
      const where = ev.room === undefined ? "" : `${roomMark(ev.room, opts)} `;
      return `${t} ${where}${name(ev.from, opts)}: ${
        sanitizeMessage(ev.text)
      }${num}`;
    }
    case "mail": {
      const mark = sgr(c, "1;36", MARKS.mail);
      const text = sanitizeMessage(ev.text);
      if (ev.direction === "in") {
        return `${t} ${mark} ${name(ev.from, opts)} (written ${
          dateTime(ev.written)
        }): ${text}`;
      }
      return `${t} ${mark} ${name(ev.from, opts)} to ${
        name(ev.to, opts)
      }: ${text}${sgr(c, "2", ` #${shortId(ev.id)}`)}`;
    }
    case "receipt": {
      if (ev.via === "room") {
        const msg = `${roomMark(ev.peer, opts)} message #${
          sanitizeText(ev.id)
        }`;
        const count = (n: number | undefined) =>
          Number.isSafeInteger(n) ? String(n) : "?";
        const of = ev.delivered === undefined && ev.members === undefined
          ? ""
          : ` to ${count(ev.delivered)} of ${count(ev.members)}`;
        switch (ev.status) {
          case "stored":
            return note(`${msg} stored by the server`);
          case "delivered":
            return note(`${msg} delivered${of}`);
          case "expired":
            return alarm(
              `${msg} deleted by the server after its retention, delivered${of}`,
            );
          case "undelivered":
            return alarm(`${msg} not delivered${of}`);
        }
      }
      const peer = name(ev.peer, opts);
      if (ev.via === "mail") {
        const id = shortId(ev.id);
        // A vault on disk may not know a pending message's recipient.
        const mail = ev.peer === "" ? "mail" : `mail to ${peer}`;
        switch (ev.status) {
          case "stored":
            return note(`${mail} stored by the server (#${id})`);
          case "delivered":
            return note(`${mail} delivered (#${id})`);
          case "expired":
            return alarm(
              `${mail} not delivered: the server deleted it unread after its retention (#${id})`,
            );
          case "undelivered":
            return alarm(
              `${mail} not delivered: no delivery receipt within 31 days (#${id})`,
            );
        }
      }
      const id = sanitizeText(ev.id);
      return ev.status === "delivered"
        ? note(`delivered to ${peer} (#${id})`)
        : alarm(`not delivered to ${peer} (#${id})`);
    }
    case "system":
      if (ev.text !== HELP_TEXT) return note(sanitizeText(ev.text));
      return ev.text.split("\n").map(sanitizeText)
        .map((line, i) => i === 0 ? note(line) : `         ${line}`).join("\n");
    case "error":
      return alarm(
        `${sgr(c, "31", "error:")} ${sanitizeText(ev.text)} (${
          sanitizeText(ev.code)
        })`,
      );
    case "room": {
      const mark = roomMark(ev.room, opts);
      const by = name(ev.by, opts);
      const self = ev.who.includes(opts.self);
      switch (ev.change) {
        case "created":
          return note(
            `${mark} ${by} created the room: ${names(ev.members, opts)}`,
          );
        case "added":
          return note(
            self
              ? `${mark} ${by} added you; members: ${names(ev.members, opts)}`
              : `${mark} ${by} added ${names(ev.who, opts)}`,
          );
        case "removed":
          return note(
            self
              ? `You were removed from ${roomName(ev.room, opts)} by ${by}`
              : `${mark} ${by} removed ${names(ev.who, opts)}`,
          );
        case "left":
          return note(
            self
              ? `You left ${roomName(ev.room, opts)}`
              : `${mark} ${names(ev.who, opts)} left`,
          );
      }
      // A change this version does not know (a newer client's).
      return note(`${mark} ${sanitizeText(String(ev.change))}`);
    }
    case "rooms": {
      if (ev.rooms.length === 0) return note("rooms: you are in none");
      return ev.rooms.map((r) => {
        const online = new Set(r.online);
        const shown = r.members.map((m) =>
          online.has(m) ? `${name(m, opts)}*` : name(m, opts)
        );
        const on = r.members.filter((m) => online.has(m)).length;
        return note(
          `${roomName(r.name, opts)} (creator ${name(r.creator, opts)}): ${
            shown.length === 0 ? "nobody" : shown.join(", ")
          } — ${on} of ${r.members.length} online`,
        );
      }).join("\n");
    }
    case "list": {
      const users = ev.users.map((u) =>
        `${name(u.name, opts)} (${sanitizeText(u.state)})`
      );
      // The prefix is one the user typed, checked (rule 2.9's characters).
      const which = ev.prefix === undefined
        ? ""
        : ` (names starting with ${sanitizeText(ev.prefix)})`;
      return note(
        `online${which}: ${users.length === 0 ? "nobody" : users.join(", ")}`,
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
      const code = ev.sas === undefined
        ? ""
        : `; compare the code ${
          sgr(c, "1", sanitizeText(ev.sas))
        } with ${peer} out of band`;
      return sas(`session with ${peer} started${how}${code}`);
    }
  }
}

let isoAt = NaN;
let isoText: string | null = null;

/**
 * `at` as ISO 8601, or null when it is no time. The last one is kept: the
 * events of a burst share their millisecond, and `toISOString` cost a
 * typed line 4% of `im chat`'s CPU (issue 15).
 */
function iso(at: number): string | null {
  if (at === isoAt) return isoText;
  const d = new Date(at);
  isoText = Number.isNaN(d.getTime()) ? null : d.toISOString();
  isoAt = at;
  return isoText;
}

/**
 * Format an event as one line of JSON for `--json`. The schema is stable:
 * `type` first, then every field of that kind in a fixed order (an absent
 * optional field is `null`), then `time` as an ISO 8601 UTC string (`null`
 * if `at` is not a valid time). Strings are sanitized like
 * {@link sanitizeText} (message text like {@link sanitizeMessage}); none
 * holds a line break but the help text's; fields not in the schema are
 * dropped. A room's message and a room's receipt (PROTOCOL.md section
 * 10) have the keys of the rows marked so: the others' lines are as they
 * were before rooms, without a `room` key (`null` to `jq .room`).
 *
 * | type    | keys                                                    |
 * |---------|---------------------------------------------------------|
 * | message | type, direction, from, to, text, id, time               |
 * | message | type, direction, from, to, text, id, room, time (a room)|
 * | mail    | type, direction, from, to, text, id, written, time      |
 * | receipt | type, id, status, peer, via, time                       |
 * | receipt | type, id, status, peer, via, room, delivered, members,  |
 * |         | time (`via` `room`)                                     |
 * | room    | type, room, change, by, who, members, time              |
 * | rooms   | type, rooms [{name, creator, members, online}], time    |
 * | system  | type, text, time                                        |
 * | error   | type, code, text, time                                  |
 * | list    | type, users [{name, state}], prefix, time               |
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
  const count = (n: number | undefined) =>
    n !== undefined && Number.isSafeInteger(n) ? n : null;
  let body: Record<string, unknown>;
  switch (ev.kind) {
    case "message":
      body = {
        direction: ev.direction,
        from: s(ev.from),
        to: s(ev.to),
        text: sanitizeMessage(ev.text),
        id: opt(ev.id),
        ...(ev.room === undefined ? {} : { room: s(ev.room) }),
      };
      break;
    case "mail":
      body = {
        direction: ev.direction,
        from: s(ev.from),
        to: s(ev.to),
        text: sanitizeMessage(ev.text),
        id: s(ev.id),
        written: iso(ev.written),
      };
      break;
    case "receipt":
      body = {
        id: s(ev.id),
        status: ev.status,
        peer: s(ev.peer),
        via: ev.via ?? "session",
        ...(ev.via === "room"
          ? {
            room: s(ev.peer),
            delivered: count(ev.delivered),
            members: count(ev.members),
          }
          : {}),
      };
      break;
    case "room":
      body = {
        room: s(ev.room),
        change: s(ev.change),
        by: s(ev.by),
        who: ev.who.map(s),
        members: ev.members.map(s),
      };
      break;
    case "rooms":
      body = {
        rooms: ev.rooms.map((r) => ({
          name: s(r.name),
          creator: s(r.creator),
          members: r.members.map(s),
          online: r.online.map(s),
        })),
      };
      break;
    case "system":
      // Only the help text keeps its line breaks (JSON escapes them);
      // text from the network never has any.
      body = {
        text: ev.text === HELP_TEXT
          ? ev.text.split("\n").map(s).join("\n")
          : s(ev.text),
      };
      break;
    case "error":
      body = { code: s(ev.code), text: s(ev.text) };
      break;
    case "list":
      body = {
        users: ev.users.map((u) => ({ name: s(u.name), state: s(u.state) })),
        prefix: opt(ev.prefix),
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
 * The prompt: `A> ` when talking to the server, `A→B> ` in a session,
 * `A#team> ` when a room is the target of plain lines (`!room team`,
 * PROTOCOL.md section 10): the room wins over the peer, since that is
 * where a plain line goes.
 * @param self our username
 * @param peer the session peer, or null
 * @param color make the names bold
 * @param room the room plain lines go to, or null (the default)
 * @returns the prompt string
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatPrompt } from "./format.ts";
 * assert.ok(formatPrompt("A", null, false) === "A> ");
 * assert.ok(formatPrompt("A", "B", false) === "A→B> ");
 * assert.ok(formatPrompt("A", "B", false, "team") === "A#team> ");
 * ```
 */
export function formatPrompt(
  self: string,
  peer: string | null,
  color: boolean,
  room: string | null = null,
): string {
  const me = sgr(color, "1", sanitizeText(self));
  if (room !== null) return `${me}#${sgr(color, "1", sanitizeText(room))}> `;
  return peer === null
    ? `${me}> `
    : `${me}→${sgr(color, "1", sanitizeText(peer))}> `;
}
