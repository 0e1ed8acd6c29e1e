/**
 * Server log lines: a timestamp, an event name and fields, as text or as
 * JSON lines (`--log json`). Callers pass only names, addresses, states and
 * fingerprints: never a key, ticket or message body.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLogLine } from "./log.ts";
 * const line = formatLogLine("join", { user: "A" }, false, new Date(0));
 * assert.ok(line === "1970-01-01T00:00:00.000Z join user=A");
 * ```
 * @module
 */

/** Fields of a log line. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** Where log lines go. */
export type Logger = (event: string, fields?: LogFields) => void;

/**
 * Characters JSON.stringify leaves raw that a terminal acts on or hides:
 * DEL and the C1 controls, and the invisible and bidirectional marks that
 * can reorder or hide what an operator reads (U+00AD, U+061C, U+180E,
 * U+200B-200F, U+2028-202E, U+2060-2069, U+FEFF).
 */
const RAW_UNSAFE =
  /[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/** Values with these characters are quoted: white space, quotes, `=`, C0, and the {@link RAW_UNSAFE} ones. */
const NEEDS_QUOTES =
  // deno-lint-ignore no-control-regex
  /[\s"=\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;

/** Escape what JSON.stringify leaves raw and a terminal would act on or hide ({@link RAW_UNSAFE}). */
function escapeC1(json: string): string {
  return json.replace(
    RAW_UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Format one log line.
 * @param event event name, e.g. `login-failed`
 * @param fields extra fields
 * @param json JSON line instead of text
 * @param at time of the event
 * @returns the line, without newline
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatLogLine } from "./log.ts";
 * assert.ok(formatLogLine("x", {}, true, new Date(0)).startsWith("{"));
 * ```
 */
export function formatLogLine(
  event: string,
  fields: LogFields,
  json: boolean,
  at: Date = new Date(),
): string {
  const clean = Object.fromEntries(
    Object.entries(fields).filter(([, v]) => v !== undefined),
  );
  if (json) {
    return escapeC1(
      JSON.stringify({ time: at.toISOString(), event, ...clean }),
    );
  }
  const rest = Object.entries(clean).map(([k, v]) => {
    const s = String(v);
    // Quoted (and so escaped) when it could split the line or carry a
    // terminal escape sequence into the operator's terminal.
    return `${k}=${NEEDS_QUOTES.test(s) ? escapeC1(JSON.stringify(s)) : s}`;
  });
  return [at.toISOString(), event, ...rest].join(" ");
}

/**
 * A logger writing to stderr (text) or stdout (JSON lines).
 * @param json JSON lines
 * @param write where lines go (default: console.error)
 * @returns the logger
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createLogger } from "./log.ts";
 * const lines: string[] = [];
 * createLogger(false, (l) => lines.push(l))("start", { port: 1 });
 * assert.ok(lines[0]!.endsWith("start port=1"));
 * ```
 */
export function createLogger(
  json: boolean,
  write: (line: string) => void = console.error,
): Logger {
  return (event, fields = {}) => write(formatLogLine(event, fields, json));
}
