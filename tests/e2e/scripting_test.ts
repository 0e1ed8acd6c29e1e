/**
 * Scripting mode (stdin not a terminal): lines act in order, each command's
 * answer arrives before the next line, and end of input logs out only after
 * that, so `printf '...' | im chat --json` prints everything it caused.
 * @module
 */

import assert from "node:assert/strict";
import { type ChatEvent, sharedKeys, withProcs } from "./harness.ts";
import { hosting } from "./_chat.ts";

const keys = await sharedKeys();

Deno.test("piped !whoami and !list with stdin closed at once print the login, !whoami and the list, in that order, then exit 0", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const b = await p.chat(server, "B", { ready: false });
    await b.send("!whoami", "!list");
    await b.closeStdin();
    const st = await b.wait();
    assert.equal(st.code, 0);
    const kinds = b.events.map((e: ChatEvent) =>
      e.type === "system" ? (e.text ?? "").split(" ")[0] : e.type
    );
    assert.deepEqual(kinds, ["Logged", "You", "list"]);
  });
});

Deno.test("a piped !session A, a message and end of input: the session starts first, the message is delivered, exit 0", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const a = await p.chat(server, "A");
    await a.send("!session host");
    await a.waitFor(hosting);
    const b = await p.chat(server, "B", { ready: false });
    await b.send("!session A", "hello from a script", "!disconnect");
    await b.closeStdin();
    assert.equal((await b.wait()).code, 0);
    const types = b.events.map((e) => e.type);
    assert.ok(
      !b.events.some((e) => e.type === "error"),
      JSON.stringify(b.events),
    );
    assert.ok(
      types.indexOf("message") >
        types.findIndex((t, i) =>
          t === "session" && b.events[i]!.state === "started"
        ),
    );
    assert.ok(
      b.events.some((e) => e.type === "receipt" && e.status === "delivered"),
    );
    await a.waitFor((e) =>
      e.type === "message" && e.direction === "in" &&
      e.text === "hello from a script"
    );
  });
});
