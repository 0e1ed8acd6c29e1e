/**
 * Usernames (rule 2.9): 1-32 characters of `A-Z a-z 0-9 _ -`, checked at
 * keygen and at login before a name is used in any file path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidUsername } from "./username.ts";
 * assert.ok(isValidUsername("alice_1") && !isValidUsername("../etc"));
 * ```
 * @module
 */

import { AuthError } from "../util/mod.ts";

/** The username rule (2.9) as a pattern. */
export const USERNAME_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;

/**
 * Does `name` follow rule 2.9?
 * @param name candidate
 * @returns true when it is 1-32 characters of `A-Z a-z 0-9 _ -`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidUsername } from "./username.ts";
 * assert.ok(isValidUsername("A"));
 * assert.ok(!isValidUsername(""));
 * ```
 */
export function isValidUsername(name: string): boolean {
  return USERNAME_PATTERN.test(name);
}

/**
 * Return `name` if it follows rule 2.9, else throw the error the server's
 * `BAD_USERNAME` answer becomes on the client (same class, same code), so a
 * name refused here or by the server reads alike. A front end that took the
 * name from its command line reports it as a usage error.
 * @param name candidate
 * @returns the same name
 * @throws {AuthError} `bad-username`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkUsername } from "./username.ts";
 * assert.ok(checkUsername("B") === "B");
 * assert.throws(() => checkUsername("../etc"), { name: "AuthError" });
 * ```
 */
export function checkUsername(name: string): string {
  if (!isValidUsername(name)) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}...` : name;
    throw new AuthError(
      "bad-username",
      `Invalid username "${shown}": expected 1-32 characters of A-Z a-z 0-9 _ -`,
    );
  }
  return name;
}
