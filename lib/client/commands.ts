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
  | { kind: "list"; prefix?: string; next?: true }
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
  "!room ",
  "!rooms",
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
  "  !list [<start>]    who is online and their state, 100 at a time (only names starting with <start>)",
  "  !list +            the next 100 of the last !list",
  "  !disconnect        end the current session (or stop hosting)",
  "  !whoami            your name, key fingerprints, mail keys and session",
  "  !msg <user> <text> mail <user>, end to end, online or not (short: @<user> <text>)",
  "  #<room> <text>     write <text> to <room>, a group chat, end to end",
  "  !room <room>       send plain lines to <room> from now on; !room alone: back to your peer",
  "  !room create <room> [user ...]  make <room> with these users, each named once; you are its creator",
  "  !room add <room> <user>         add <user> to a room you created",
  "  !room remove <room> <user>      remove <user> from a room you created",
  "  !room leave <room>              leave <room>",
  "  !rooms             your rooms, their members and who is online (*)",
  "  (after !room, create, add, remove and leave are these commands: !room #create targets a room named create)",
  "  !keys <user>       the key pinned for <user>, whether you verified it (and a changed one, if refused)",
  "  !trust <user>      pin the changed key of <user> (compare its fingerprint first)",
  "  !verify <user>     mark the key pinned for <user> verified, after comparing the code or fingerprint",
  "  !help              this help",
  "  !quit              log out",
  "Anything else is sent to your peer (or to the room of !room <room>); start with !!",
  "to send a line beginning with !, and with a space to send one beginning with @ or #",
].join("\n");

const COMMAND_LIST =
  "!session host, !session <user>, !list [<start> | +], !disconnect, !whoami, !msg <user> <text>, !keys <user>, !trust <user>, !verify <user>, !room ..., !rooms, !help, !quit";

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

function badRoom(text: string, room: string, more = ""): Command {
  return unknown(
    text,
    `Invalid room name "${
      room.slice(0, 40)
    }": expected 1-32 characters of A-Z a-z 0-9 _ -${more}`,
  );
}

/** `@<user> <text>`: a user name right after the `@`, one blank, then the text. */
const AT_MAIL = /^@(\S+)[ \t]+(\S[\s\S]*)$/;
const AT_HINT = "to send a line that begins with @, start it with a space";
/** `!msg <user> <text>`. */
const MSG_MAIL = /^!msg[ \t]+(\S+)[ \t]+(\S[\s\S]*)$/;
/** `#<room> <text>`: a room name right after the `#`, blanks, then the text. */
const HASH_ROOM = /^#(\S+)[ \t]+(\S[\s\S]*)$/;
const HASH_HINT = "to send a line that begins with #, start it with a space";

/**
 * The words of `!room` that are subcommands, not room names: a room
 * named like one is targeted as `!room #<name>` (see {@link parseCommand}).
 */
export const ROOM_SUBCOMMANDS: readonly string[] = [
  "create",
  "add",
  "remove",
  "leave",
];

const ROOM_USAGE =
  "Usage: !room <room> | !room | !room create <room> [user ...] | !room add <room> <user> | !room remove <room> <user> | !room leave <room>";

/** A room name as typed after `!room`: one leading `#` is allowed. */
function roomArg(arg: string): string {
  return arg.startsWith("#") ? arg.slice(1) : arg;
}

/** `!room ...`: `args` are the blank-separated words after `!room`. */
function parseRoom(text: string, args: string[]): Command {
  const [first, ...rest] = args;
  if (first === undefined) return { kind: "room-target", room: undefined };
  if (!ROOM_SUBCOMMANDS.includes(first)) {
    if (rest.length !== 0) return unknown(text, ROOM_USAGE);
    const room = roomArg(first);
    if (!isValidUsername(room)) return badRoom(text, room);
    return { kind: "room-target", room };
  }
  const usage = first === "create"
    ? "Usage: !room create <room> [user ...]"
    : first === "leave"
    ? "Usage: !room leave <room>"
    : `Usage: !room ${first} <room> <user>`;
  const want = first === "leave" ? 1 : 2;
  if (rest.length < 1 || (first !== "create" && rest.length !== want)) {
    return unknown(text, usage);
  }
  const room = roomArg(rest[0] ?? "");
  if (!isValidUsername(room)) return badRoom(text, room);
  const users = rest.slice(1);
  for (const [i, user] of users.entries()) {
    if (!isValidUsername(user)) return badName(text, user);
    if (users.indexOf(user) !== i) {
      return unknown(
        text,
        `Duplicate member "${user}" in !room create: name each user once`,
      );
    }
  }
  switch (first) {
    case "create":
      return { kind: "room-create", room, members: users };
    case "add":
      return { kind: "room-add", room, user: users[0] ?? "" };
    case "remove":
      return { kind: "room-remove", room, user: users[0] ?? "" };
    default:
      return { kind: "room-leave", room };
  }
}

const NO_ARGS: Record<string, Command> = {
  "!disconnect": { kind: "disconnect" },
  "!whoami": { kind: "whoami" },
  "!help": { kind: "help" },
  "!quit": { kind: "quit" },
  "!rooms": { kind: "rooms" },
};

/**
 * Parse one input line. A line is a command only when `!` is its very first
 * character (blanks after it ignored, names case-sensitive); `!!` at the
 * start sends the rest, from the second `!`, as a message; a blank line is
 * `empty`; anything else is a message, sent as typed: `   !list` (a blank
 * first) is a message, not a command (issue 11 item 10). A line that
 * starts with `@<user>`, a blank and some text mails it to `<user>`
 * (PROTOCOL.md section 9), as `!msg <user> <text>` does; the text is kept
 * as typed after the blanks that follow the name. Likewise `#<room> <text>`
 * writes to a room (PROTOCOL.md section 10); a blank first sends the line
 * to the peer as typed.
 *
 * Rooms: `!room create <room> [user ...]` (each user once), `!room add
 * <room> <user>`, `!room remove <room> <user>`, `!room leave <room>`,
 * `!room <room>` (plain lines go to the room from now on), `!room` alone
 * (back to the peer), `!rooms`. Room names follow the username rule (2.9);
 * a room name after `!room` may be written with a leading `#`. The words
 * of {@link ROOM_SUBCOMMANDS} after `!room` are always the subcommand, so
 * a room named `create` is made the target with `!room #create`.
 * @param line one sanitized input line
 * @returns the command; `unknown` carries a hint for the user
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommand } from "./commands.ts";
 * assert.ok(parseCommand("!session bob").kind === "session");
 * assert.ok(parseCommand("!list").kind === "list");
 * const al = parseCommand("!list al");
 * assert.ok(al.kind === "list" && al.prefix === "al");
 * const next = parseCommand("!list +");
 * assert.ok(next.kind === "list" && next.next === true);
 * const m = parseCommand("!!hi");
 * assert.ok(m.kind === "message" && m.text === "!hi");
 * assert.ok(parseCommand("  !list").kind === "message");
 * assert.ok(parseCommand("!foo").kind === "unknown");
 * const mail = parseCommand("@bob see you at 5");
 * assert.ok(mail.kind === "mail" && mail.to === "bob" && mail.text === "see you at 5");
 * assert.ok(parseCommand("!msg bob hi").kind === "mail");
 * assert.ok(parseCommand(" @bob hi").kind === "message");
 * const say = parseCommand("#team  hello all");
 * assert.ok(say.kind === "room-say" && say.room === "team" && say.text === "hello all");
 * const made = parseCommand("!room create team bob carol");
 * assert.ok(made.kind === "room-create" && made.members.join() === "bob,carol");
 * const to = parseCommand("!room #create");
 * assert.ok(to.kind === "room-target" && to.room === "create");
 * assert.ok(parseCommand("!room create").kind === "unknown");
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
  if (line.startsWith("#")) {
    const m = HASH_ROOM.exec(line);
    if (m) {
      const room = m[1] ?? "";
      if (isValidUsername(room)) {
        return { kind: "room-say", room, text: m[2] ?? "" };
      }
      return badRoom(trimmed, room, `; ${HASH_HINT}`);
    }
    if (/^#\S+$/.test(trimmed)) {
      return unknown(trimmed, `Usage: #<room> <text>; ${HASH_HINT}`);
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
  if (word === "!list") {
    // PROTOCOL.md 5.3: a page of who is online.
    if (args.length === 0) return { kind: "list" };
    const arg = args[0] ?? "";
    if (args.length === 1 && arg === "+") return { kind: "list", next: true };
    if (args.length === 1 && /^[A-Za-z0-9_-]{1,32}$/.test(arg)) {
      return { kind: "list", prefix: arg };
    }
    return unknown(
      trimmed,
      "Usage: !list | !list <start of a name> (1-32 of A-Z a-z 0-9 _ -) | !list + (the next page)",
    );
  }
  if (word === "!room") return parseRoom(trimmed, args);
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
