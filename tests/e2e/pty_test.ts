/**
 * `im chat` on a real pseudo-terminal (issue 11): what a person types and
 * sees. Each test starts a server and piped clients with harness.ts and
 * one interactive client on a pty (_pty.ts); without Python 3 these tests
 * fail, naming what is missing.
 * @module
 */

import assert from "node:assert/strict";
import {
  HEARTBEAT_MS,
  type Procs,
  runIm,
  sharedKeys,
  withProcs,
} from "./harness.ts";
import { hosting, incoming } from "./_chat.ts";
import { type PtyModes, PtyProc, requirePty } from "./_pty.ts";

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

/** The modes `stty sane` gives: line editing, echo, signals. */
function assertSane(m: PtyModes, after: string): void {
  assert.deepEqual(
    { icanon: m.icanon, echo: m.echo, isig: m.isig },
    { icanon: true, echo: true, isig: true },
    `terminal modes after ${after}`,
  );
}

/** Start A on a pty, wait for the prompt, type half a line; the pty is raw. */
async function rawChat(addr: string, p: Procs, o: { module?: string } = {}) {
  const a = PtyProc.start([
    "chat",
    "--user",
    "A",
    "--server",
    addr,
    "--keys",
    keys,
    "--heartbeat",
    String(HEARTBEAT_MS),
  ], o);
  p.defer(() => a.close());
  await a.waitFor("Logged in as A", "the login");
  await a.type("half a line");
  await a.waitFor("A> half a line", "the typed text");
  const raw = await a.modes();
  assert.equal(raw.icanon, false, "im chat runs the terminal raw");
  assert.equal(raw.echo, false, "im chat runs the terminal raw");
  return a;
}

for (const [sig, code] of [["SIGTERM", 143], ["SIGHUP", 129]] as const) {
  Deno.test(`pty: ${sig} to im chat restores the terminal (icanon, echo), logs out and exits ${code} (issue 11 item 4)`, async () => {
    await requirePty();
    await withProcs(keys, async (p) => {
      const server = await p.server();
      const a = await rawChat(server.addr, p);
      await a.signal(sig);
      const exit = await a.waitExit();
      assert.deepEqual(exit, { code, signal: null });
      assertSane(await a.modes(), sig);
      await server.waitForLog(/ leave user=A reason=(logout|bye)/);
    });
  });
}

Deno.test("pty: a fatal error (the login replaced by a newer one) restores the terminal and exits 1 (issue 11 item 4)", async () => {
  await requirePty();
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const a = await rawChat(server.addr, p);
    await p.chat(server, "A"); // a newer login of A
    const exit = await a.waitExit();
    assert.deepEqual(exit, { code: 1, signal: null });
    assertSane(await a.modes(), "the fatal error");
    assert.match(a.text, /replaced|another/i);
  });
});

Deno.test("pty: a crash (an uncaught exception) restores the terminal and ends in one error line, exit 1 (issue 11 item 4)", async () => {
  await requirePty();
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const a = await rawChat(server.addr, p, {
      module: new URL("./_crash_main.ts", import.meta.url).pathname,
    });
    await a.signal("SIGUSR1"); // _crash_main.ts throws from a timer
    const exit = await a.waitExit();
    assert.deepEqual(exit, { code: 1, signal: null });
    assertSane(await a.modes(), "the crash");
    assert.match(a.text, /im: error: internal error: injected crash/);
  });
});

Deno.test("pty: Ctrl-C clears a half-typed line, which is never sent; a second Ctrl-C on the empty line quits with a goodbye, exit 0 (issue 11 item 8)", async () => {
  await requirePty();
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const a = await rawChat(server.addr, p); // "half a line" typed
    let at = a.text.length;
    await a.type("\x03");
    await a.waitFor(
      "Line cleared; Ctrl-C again or Ctrl-D quits",
      "the hint",
      at,
    );
    // Still logged in; the cleared text is gone: the next line is only this.
    at = a.text.length;
    await a.type("!whoami\r");
    await a.waitFor("You are A (", "the answer to !whoami", at);
    assert.doesNotMatch(a.text.slice(at), /Unknown command|Not sent|half/);
    at = a.text.length;
    await a.type("\x03");
    await a.waitFor("Ctrl-C again or Ctrl-D quits", "the hint", at);
    assert.equal(a.exited, null, "one Ctrl-C on an empty line does not quit");
    await a.type("\x03");
    assert.deepEqual(await a.waitExit(), { code: 0, signal: null });
    await a.waitFor("Logged out. Bye!", "the goodbye", at);
    assertSane(await a.modes(), "Ctrl-C twice");
    await server.waitForLog(/ leave user=A /);
  });
});

for (
  const [how, keysTyped] of [["Ctrl-D on an empty line", "\x15\x04"], [
    "!quit",
    "\x15!quit\r",
  ]] as const
) {
  Deno.test(`pty: ${how} quits with a goodbye, exit 0 (issue 11 item 8)`, async () => {
    await requirePty();
    await withProcs(keys, async (p) => {
      const server = await p.server();
      const a = await rawChat(server.addr, p);
      const at = a.text.length;
      await a.type(keysTyped); // Ctrl-U empties the half-typed line first
      assert.deepEqual(await a.waitExit(), { code: 0, signal: null });
      await a.waitFor("Logged out. Bye!", "the goodbye", at);
      assertSane(await a.modes(), how);
    });
  });
}

Deno.test("pty: im chat without --user asks Username:, Tab completes the users of the key directory, and logs in as the answer (issue 11 item 11)", async () => {
  await requirePty();
  await withProcs(keys, async (p) => {
    const dir = await p.copyKeys();
    const kg = await runIm([
      "keygen",
      "--users",
      "carol",
      "--bits",
      "2048",
      "--dir",
      dir,
    ]);
    assert.equal(kg.code, 0, kg.stderr.join("\n"));
    const server = await p.server({ keys: dir });
    const a = PtyProc.start([
      "chat",
      "--server",
      server.addr,
      "--keys",
      dir,
      "--heartbeat",
      String(HEARTBEAT_MS),
    ]);
    p.defer(() => a.close());
    await a.waitFor("Username: ", "the question");
    let at = a.text.length;
    await a.type("\t"); // every user with a key
    await a.waitFor("A  B  C  D  E  F  carol", "the list of users", at);
    at = a.text.length;
    await a.type("no way\r");
    await a.waitFor(
      /Invalid username "no way"[^\n]*\n[^]*Username: /,
      "asked again",
      at,
    );
    at = a.text.length;
    await a.type("ca\t"); // completes to carol
    await a.waitFor("Username: carol", "the completion", at);
    await a.type("\r");
    await a.waitFor("Logged in as carol", "the login", at);
    await a.waitFor("carol> ", "the prompt", at);
    await a.type("\x04");
    assert.deepEqual(await a.waitExit(), { code: 0, signal: null });
    assertSane(await a.modes(), "the login after the question");
  });
});

Deno.test("pty: Ctrl-C at the Username: question gives up with exit 1 and the terminal restored (issue 11 item 11)", async () => {
  await requirePty();
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const a = PtyProc.start([
      "chat",
      "--server",
      server.addr,
      "--keys",
      keys,
    ]);
    p.defer(() => a.close());
    await a.waitFor("Username: ", "the question");
    const raw = await a.modes();
    assert.equal(raw.icanon, false, "the question reads keys raw");
    await a.type("B\x03");
    assert.deepEqual(await a.waitExit(), { code: 1, signal: null });
    assertSane(await a.modes(), "Ctrl-C at the question");
    assert.ok(!server.stderr.lines.some((l) => / join /.test(l)));
  });
});

Deno.test("im chat without --user and stdin not a terminal keeps the clear error, exit 2 (issue 11 item 11)", async () => {
  const r = await runIm(["chat", "--keys", keys]);
  assert.equal(r.code, 2);
  assert.deepEqual(r.stderr, [
    'im: error: Missing "--user NAME"',
    'im: hint: run "im chat --help"',
  ]);
});
