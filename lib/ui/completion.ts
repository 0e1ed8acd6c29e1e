/**
 * Tab completion of the chat prompt: the commands after `!`, `host` or an
 * online username after `!session `, an online username after `!msg `,
 * `!keys `, `!trust `, `!verify ` and a leading `@`; room names after a
 * leading `#` and in the `!room` commands. Pure: the names come from the
 * caller (the client's last `!list`, the rooms it is in), the commands
 * from the client layer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeLine } from "./completion.ts";
 * assert.deepEqual(completeLine("!l", []), [["!list"], "!l"]);
 * assert.deepEqual(completeLine("#t", [], ["team"]), [["#team"], "#t"]);
 * ```
 * @module
 */

import { isValidUsername } from "../proto/mod.ts";
import { COMMANDS, ROOM_SUBCOMMANDS } from "../client/mod.ts";

/** Valid names, once each, sorted. */
function clean(list: string[]): string[] {
  return [...new Set(list.filter(isValidUsername))].sort();
}

/**
 * Tab completion in the shape `node:readline` wants: commands after `!`,
 * `host` or an online username after `!session `, an online username after
 * `!msg `, `!keys `, `!trust `, `!verify ` and a leading `@` (mail's short
 * form). Rooms (PROTOCOL.md section 10): a room name after a leading `#`
 * (as `#team`); the subcommands and the room names after `!room ` (a room
 * named like a subcommand as `#create`, the way `!room` takes it); a room
 * name after `!room add `, `!room remove ` and `!room leave `; online
 * usernames after `!room add <room> `, `!room remove <room> ` and after the
 * room of `!room create <room> ` (each user not named yet). Message text
 * is not completed. Names that break the username rule (2.9) are never
 * offered.
 * @param line the whole line up to the cursor
 * @param names usernames that are online now
 * @param rooms the rooms we are in (default none)
 * @returns `[candidates, the part of the line they replace]`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeLine } from "./completion.ts";
 * const [hits, part] = completeLine("!session b", ["bob", "carol"]);
 * assert.ok(hits.length === 1 && hits[0] === "bob" && part === "b");
 * assert.deepEqual(completeLine("@c", ["bob", "carol"]), [["@carol"], "@c"]);
 * assert.deepEqual(completeLine("!msg b", ["bob"]), [["bob"], "b"]);
 * assert.deepEqual(completeLine("!room l", [], ["lab"]), [["lab", "leave "], "l"]);
 * assert.deepEqual(completeLine("!room add lab c", ["carol"], ["lab"]), [["carol"], "c"]);
 * ```
 */
export function completeLine(
  line: string,
  names: string[],
  rooms: string[] = [],
): [string[], string] {
  const users = () => clean(names);
  const starting = (list: string[], part: string): [string[], string] => [
    list.filter((w) => w.startsWith(part)),
    part,
  ];
  const arg = /^!session +(\S*)$/.exec(line);
  if (arg !== null) return starting(["host", ...users()], arg[1] ?? "");
  const named = /^!(?:msg|keys|trust|verify) +(\S*)$/.exec(line);
  if (named !== null) return starting(users(), named[1] ?? "");
  if (/^@\S*$/.test(line)) {
    return starting(users().map((u) => `@${u}`), line);
  }
  if (/^#\S*$/.test(line)) {
    return starting(clean(rooms).map((r) => `#${r}`), line);
  }
  const room = /^!room +(\S*)$/.exec(line);
  if (room !== null) {
    const part = room[1] ?? "";
    if (part.startsWith("#")) {
      return starting(clean(rooms).map((r) => `#${r}`), part);
    }
    const targets = clean(rooms).map((r) =>
      ROOM_SUBCOMMANDS.includes(r) ? `#${r}` : r
    );
    return starting(
      [...targets, ...ROOM_SUBCOMMANDS.map((w) => `${w} `)].sort(),
      part,
    );
  }
  const which = /^!room +(?:add|remove|leave) +(\S*)$/.exec(line);
  if (which !== null) {
    const part = which[1] ?? "";
    const list = clean(rooms);
    return starting(
      part.startsWith("#") ? list.map((r) => `#${r}`) : list,
      part,
    );
  }
  const member = /^!room +(?:add|remove) +\S+ +(\S*)$/.exec(line);
  if (member !== null) return starting(users(), member[1] ?? "");
  const create = /^!room +create +\S+ +((?:\S+ +)*)(\S*)$/.exec(line);
  if (create !== null) {
    const named = new Set((create[1] ?? "").split(/ +/));
    return starting(users().filter((u) => !named.has(u)), create[2] ?? "");
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
