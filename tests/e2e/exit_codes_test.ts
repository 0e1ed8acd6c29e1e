/**
 * Exit codes of `im chat` with piped stdin (issue 11 item 6): 0 when every
 * line did its job, EXIT_SOME_FAILED (3) when some line failed: it was
 * answered with an error, skipped as longer than 32 KiB, or a message of
 * it was not delivered. The lines after a failed one still act.
 * @module
 */

import assert from "node:assert/strict";
import { EXIT_SOME_FAILED } from "../../cmd/chat.ts";
import { sharedKeys, withProcs } from "./harness.ts";
import { errorCode } from "./_chat.ts";

const keys = await sharedKeys();

Deno.test("piped: lines that all succeed exit 0", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const b = await p.chat(server, "B", { ready: false });
    await b.send("!whoami", "!list", "", "!help");
    await b.closeStdin();
    assert.equal((await b.wait()).code, 0);
  });
});

const FAILING: Array<[string, string[], string]> = [
  ["a refused !session (the user is offline)", ["!session F"], "refused-"],
  ["a message with no session (Not sent)", ["hello"], "no-session"],
  ["an unknown command", ["!frob"], "bad-command"],
  ["!disconnect with no session", ["!disconnect"], "no-session"],
];

for (const [what, lines, code] of FAILING) {
  Deno.test(`piped: ${what} makes the exit code ${EXIT_SOME_FAILED}, and the next line still acts`, async () => {
    await withProcs(keys, async (p) => {
      const server = await p.server();
      const b = await p.chat(server, "B", { ready: false });
      await b.send(...lines, "!whoami");
      await b.closeStdin();
      assert.equal((await b.wait()).code, EXIT_SOME_FAILED);
      assert.ok(
        b.events.some((e) => e.type === "error" && e.code?.startsWith(code)),
        JSON.stringify(b.events),
      );
      assert.match(b.events.at(-1)?.text ?? "", /^You are B /);
    });
  });
}

Deno.test(`piped: a line longer than 32 KiB is skipped, the rest acts, and the exit code is ${EXIT_SOME_FAILED}`, async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const b = await p.chat(server, "B", { ready: false });
    await b.send("x".repeat(32 * 1024 + 1), "!whoami");
    await b.closeStdin();
    assert.equal((await b.wait()).code, EXIT_SOME_FAILED);
    await b.waitFor(errorCode("line-too-long"));
    assert.match(b.events.at(-1)?.text ?? "", /^You are B /);
  });
});

Deno.test("piped: a line of exactly 32 KiB is not too long", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const b = await p.chat(server, "B", { ready: false });
    await b.send(`!!${"x".repeat(32 * 1024 - 2)}`, "!whoami");
    await b.closeStdin();
    await b.wait();
    // Not sent (no session), but read as a line: not line-too-long.
    assert.ok(!b.events.some((e) => e.code === "line-too-long"));
    assert.ok(b.events.some((e) => e.code === "no-session"));
  });
});
