/**
 * The commands a user types (README.md "Commands"): parsing one line into a
 * {@link Command}, the list Tab completion offers and the `!help` text. Pure;
 * the client acts on the result, the terminal completes with the list.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommand } from "./commands.ts";
 * assert.ok(parseCommand("!list").kind === "list");
 * ```
 * @module
 */

import { isValidUsername } from "../proto/mod.ts";

/** A parsed input line; see {@link parseCommand}. */
export type Command =
  | { kind: "host" }
  | { kind: "session"; peer: string }
  | { kind: "keys"; peer: string }
  | { kind: "trust"; peer: string }
  | { kind: "verify"; peer: string }
  | { kind: "mail"; to: string; text: string }
  | { kind: "room-create"; room: string; members: string[] }
  | { kind: "room-add"; room: string; user: string }
  | { kind: "room-remove"; room: string; user: string }
  | { kind: "room-leave"; room: string }
  | { kind: "room-target"; room: string | undefined }
  | { kind: "room-say"; room: string; text: string }
  | { kind: "rooms" }
  | { kind: "list" }
  | { kind: "disconnect" }
  | { kind: "whoami" }
  | { kind: "help" }
  | { kind: "quit" }
  | { kind: "message"; text: string }
  | { kind: "empty" }
  | { kind: "unknown"; text: string; hint: string };

/** Commands offered by Tab completion, in the order they are listed. */
export const COMMANDS: readonly string[] = [
  "!session host",
  "!session ",
  "!list",
  "!disconnect",
  "!whoami",
  "!msg ",
  "!keys ",
  "!trust ",
  "!verify ",
  "!help",
  "!quit",
];

/** The `!help` text: one command per line (PROTOCOL.md is silent on it: it is the terminal's). */
export const HELP_TEXT: string = [
  "Commands:",
  "  !session host      wait for a peer to connect to you",
  "  !session <user>    start an encrypted session with <user> (@host: a user named host)",
  "  !list              show who is online and their state",
  "  !disconnect        end the current session (or stop hosting)",
  "  !whoami            your name, key fingerprints, mail keys and session",
  "  !msg <user> <text> mail <user>, end to end, online or not (short: @<user> <text>)",
  "  !keys <user>       the key pinned for <user>, whether you verified it (and a changed one, if refused)",
  "  !trust <user>      pin the changed key of <user> (compare its fingerprint first)",
  "  !verify <user>     mark the key pinned for <user> verified, after comparing the code or fingerprint",
  "  !help              this help",
  "  !quit              log out",
  "Anything else is sent to your peer; start with !! to send a line beginning with !,",
  "and with a space to send one beginning with @",
].join("\n");

const COMMAND_LIST =
  "!session host, !session <user>, !list, !disconnect, !whoami, !msg <user> <text>, !keys <user>, !trust <user>, !verify <user>, !help, !quit";

function unknown(text: string, hint: string): Command {
  return { kind: "unknown", text, hint };
}

function badName(text: string, name: string): Command {
  return unknown(
    text,
    `Invalid username "${
      name.slice(0, 40)
    }": expected 1-32 characters of A-Z a-z 0-9 _ -`,
  );
}

/** `@<user> <text>`: a user name right after the `@`, one blank, then the text. */
const AT_MAIL = /^@(\S+)[ \t]+(\S[\s\S]*)$/;
const AT_HINT = "to send a line that begins with @, start it with a space";
/** `!msg <user> <text>`. */
const MSG_MAIL = /^!msg[ \t]+(\S+)[ \t]+(\S[\s\S]*)$/;

const NO_ARGS: Record<string, Command> = {
  "!list": { kind: "list" },
  "!disconnect": { kind: "disconnect" },
  "!whoami": { kind: "whoami" },
  "!help": { kind: "help" },
  "!quit": { kind: "quit" },
};

/**
 * Parse one input line. A line is a command only when `!` is its very first
 * character (blanks after it ignored, names case-sensitive); `!!` at the
 * start sends the rest, from the second `!`, as a message; a blank line is
 * `empty`; anything else is a message, sent as typed: `   !list` (a blank
 * first) is a message, not a command (issue 11 item 10). A line that
 * starts with `@<user>`, a blank and some text mails it to `<user>`
 * (PROTOCOL.md section 9), as `!msg <user> <text>` does; the text is kept
 * as typed after the blanks that follow the name.
 * @param line one sanitized input line
 * @returns the command; `unknown` carries a hint for the user
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommand } from "./commands.ts";
 * assert.ok(parseCommand("!session bob").kind === "session");
 * assert.ok(parseCommand("!list").kind === "list");
 * const m = parseCommand("!!hi");
 * assert.ok(m.kind === "message" && m.text === "!hi");
 * assert.ok(parseCommand("  !list").kind === "message");
 * assert.ok(parseCommand("!foo").kind === "unknown");
 * const mail = parseCommand("@bob see you at 5");
 * assert.ok(mail.kind === "mail" && mail.to === "bob" && mail.text === "see you at 5");
 * assert.ok(parseCommand("!msg bob hi").kind === "mail");
 * assert.ok(parseCommand(" @bob hi").kind === "message");
 * ```
 */
export function parseCommand(line: string): Command {
  const trimmed = line.trim();
  if (trimmed === "") return { kind: "empty" };
  if (line.startsWith("@")) {
    const m = AT_MAIL.exec(line);
    if (m) {
      const to = m[1] ?? "";
      if (isValidUsername(to)) return { kind: "mail", to, text: m[2] ?? "" };
      const bad = badName(trimmed, to) as { hint: string };
      return unknown(trimmed, `${bad.hint}; ${AT_HINT}`);
    }
    if (/^@\S+$/.test(trimmed)) {
      return unknown(trimmed, `Usage: @<user> <text>; ${AT_HINT}`);
    }
  }
  if (!line.startsWith("!")) return { kind: "message", text: line };
  if (line.startsWith("!!")) return { kind: "message", text: line.slice(1) };
  const [word = "", ...args] = trimmed.split(/\s+/);
  const plain = NO_ARGS[word];
  if (plain !== undefined) {
    return args.length === 0
      ? plain
      : unknown(trimmed, `${word} takes no arguments`);
  }
  if (word === "!session") {
    const usage = "Usage: !session host | !session <user>";
    if (args.length !== 1) return unknown(trimmed, usage);
    const arg = args[0] ?? "";
    if (arg === "host") return { kind: "host" };
    // `@name` names a user, so a user called "host" can be joined too.
    const peer = arg.startsWith("@") ? arg.slice(1) : arg;
    if (!isValidUsername(peer)) return badName(trimmed, peer);
    return { kind: "session", peer };
  }
  if (word === "!msg") {
    const m = MSG_MAIL.exec(line);
    if (!m) return unknown(trimmed, "Usage: !msg <user> <text>");
    const to = m[1] ?? "";
    if (!isValidUsername(to)) return badName(trimmed, to);
    return { kind: "mail", to, text: m[2] ?? "" };
  }
  if (word === "!keys" || word === "!trust" || word === "!verify") {
    const usage = `Usage: ${word} <user>`;
    if (args.length !== 1) return unknown(trimmed, usage);
    const peer = args[0] ?? "";
    if (!isValidUsername(peer)) return badName(trimmed, peer);
    return {
      kind: word === "!keys" ? "keys" : word === "!trust" ? "trust" : "verify",
      peer,
    };
  }
  return unknown(
    trimmed,
    `Unknown command "${
      word.slice(0, 40)
    }": try ${COMMAND_LIST} (start with !! to send a message beginning with !)`,
  );
}
