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

import type { UiEvent } from "../client/mod.ts";
import { sanitizeText } from "./sanitize.ts";

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
