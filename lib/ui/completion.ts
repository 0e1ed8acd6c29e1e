/**
 * Tab completion of the chat prompt: the commands after `!`, `host` or an
 * online username after `!session `, an online username after `!msg `,
 * `!keys `, `!trust `, `!verify ` and a leading `@`. Pure: the names come from the
 * caller (the client's last `!list`), the commands from the client layer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeLine } from "./completion.ts";
 * assert.deepEqual(completeLine("!l", []), [["!list"], "!l"]);
 * ```
 * @module
 */

import { isValidUsername } from "../proto/mod.ts";
import { COMMANDS } from "../client/mod.ts";

/**
 * Tab completion in the shape `node:readline` wants: commands after `!`,
 * `host` or an online username after `!session `, an online username after
 * `!msg `, `!keys `, `!trust `, `!verify ` and a leading `@` (mail's short
 * form). Message text is not completed. Names that break the username rule (2.9) are never offered.
 * @param line the whole line up to the cursor
 * @param names usernames that are online now
 * @returns `[candidates, the part of the line they replace]`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completeLine } from "./completion.ts";
 * const [hits, part] = completeLine("!session b", ["bob", "carol"]);
 * assert.ok(hits.length === 1 && hits[0] === "bob" && part === "b");
 * assert.deepEqual(completeLine("@c", ["bob", "carol"]), [["@carol"], "@c"]);
 * assert.deepEqual(completeLine("!msg b", ["bob"]), [["bob"], "b"]);
 * ```
 */
export function completeLine(
  line: string,
  names: string[],
): [string[], string] {
  const arg = /^!session +(\S*)$/.exec(line);
  const users = () => [...new Set(names.filter(isValidUsername))].sort();
  if (arg !== null) {
    const part = arg[1] ?? "";
    return [["host", ...users()].filter((w) => w.startsWith(part)), part];
  }
  const named = /^!(?:msg|keys|trust|verify) +(\S*)$/.exec(line);
  if (named !== null) {
    const part = named[1] ?? "";
    return [users().filter((w) => w.startsWith(part)), part];
  }
  if (/^@\S*$/.test(line)) {
    return [
      users().map((u) => `@${u}`).filter((w) => w.startsWith(line)),
      line,
    ];
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
