/**
 * `im chat` on a real pseudo-terminal (issue 11): what a person types and
 * sees. Each test starts a server and piped clients with harness.ts and
 * one interactive client on a pty (_pty.ts); without Python 3 these tests
 * fail, naming what is missing.
 * @module
 */

import assert from "node:assert/strict";
import { HEARTBEAT_MS, sharedKeys, withProcs } from "./harness.ts";
import { hosting, incoming } from "./_chat.ts";
import { PtyProc, requirePty } from "./_pty.ts";

const keys = await sharedKeys();

/** `im chat --user USER` on a pty against `addr`. */
function ptyChat(addr: string, user: string, extra: string[] = []): PtyProc {
  return PtyProc.start([
    "chat",
    "--user",
    user,
    "--server",
    addr,
    "--keys",
    keys,
    "--heartbeat",
    String(HEARTBEAT_MS),
    ...extra,
  ]);
}

Deno.test("pty: a paste of 50,000 characters shows at once, capped at 32 KiB with a notice; Enter sends it and the session lives on (issue 11 item 1)", async () => {
  await requirePty();
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const b = await p.chat(server, "B");
    await b.send("!session host");
    await b.waitFor(hosting);
    const a = ptyChat(server.addr, "A");
    p.defer(() => a.close());
    await a.waitFor("Logged in as A", "the login");
    await a.type("!session B\r");
    await a.waitFor("== session with B started", "the session");
    const before = a.text.length;
    await a.type("x".repeat(50_000));
    await a.waitFor(
      "Input is limited to 32768 bytes; the rest was not added",
      "the notice of the cap",
      before,
    );
    await a.type("\r");
    const got = await b.waitFor(incoming("A"), 10_000);
    assert.equal(got.text, "x".repeat(32 * 1024));
    await a.waitFor(/delivered to B \(#1\)/, "the receipt", before);
    // The client kept its heartbeats: nobody saw the other stop answering.
    await a.type("hello after the paste\r");
    await b.waitFor(incoming("A", "hello after the paste"));
    assert.ok(
      !b.events.some((e) => e.type === "session" && e.state === "ended"),
    );
    // The input row was drawn once per chunk read, not once per character:
    // besides the sent message shown once (32 KiB), the terminal got a few
    // rows, far less than the paste's 50,000 characters.
    assert.ok(
      a.raw.length < 32 * 1024 + 10_000,
      `${a.raw.length} characters written`,
    );
  });
});
