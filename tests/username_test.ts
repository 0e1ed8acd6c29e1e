import assert from "node:assert/strict";
import { AuthError, UsageError } from "../lib/util/mod.ts";
import { checkUsername, isValidUsername } from "../lib/proto/mod.ts";

Deno.test("usernames of 1-32 characters of A-Z a-z 0-9 _ - are valid (rule 2.9)", () => {
  for (const n of ["A", "z", "0", "_", "-", "alice_B-9", "x".repeat(32)]) {
    assert.ok(isValidUsername(n), n);
    assert.equal(checkUsername(n), n);
  }
});

Deno.test("empty, too long, path-like, spaced, non-ASCII and control-character names are refused with AuthError bad-username, not a usage error (rule 2.9)", () => {
  const bad = [
    "",
    "x".repeat(33),
    "../etc",
    "a/b",
    "a\\b",
    ".",
    "a b",
    "é",
    "Ａ",
    "a\n",
    "a\0",
    "name;rm",
    "A\u202e",
  ];
  for (const n of bad) {
    assert.equal(isValidUsername(n), false, JSON.stringify(n));
    assert.throws(
      () => checkUsername(n),
      (e) =>
        e instanceof AuthError && !(e instanceof UsageError) &&
        e.code === "bad-username",
    );
  }
});

Deno.test("checkUsername() shortens a huge name in its message", () => {
  try {
    checkUsername("y".repeat(100_000));
    assert.fail("accepted");
  } catch (e) {
    assert.ok((e as Error).message.length < 200);
  }
});
