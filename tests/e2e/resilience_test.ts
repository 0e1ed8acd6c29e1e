/**
 * End to end: no message lost (issue 6 item 6). A message the peer never
 * acknowledged is reported undelivered; clients wait out a server restart
 * and log in again; a direct peer session survives the server going away;
 * SIGHUP revokes a removed key and admits a newly enrolled one.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { sleep } from "../../lib/util/mod.ts";
import { type ChatProc, runIm, sharedKeys, withProcs } from "./harness.ts";
import {
  ended,
  errorCode,
  incoming,
  outgoing,
  reconnected,
  session,
} from "./_chat.ts";

const keys = await sharedKeys();

/** Short reconnect backoff for tests: 100 ms, 200 ms, ... (jittered). */
const FAST_RECONNECT = ["--reconnect-base", "100"];

/** `from` says `text`; `to` gets it, `from` gets the delivered receipt. */
async function delivered(
  from: ChatProc,
  to: ChatProc,
  text: string,
): Promise<void> {
  const f0 = from.events.length, t0 = to.events.length;
  await from.send(text);
  await to.waitFor(incoming(from.user, text), undefined, t0);
  const out = await from.waitFor(outgoing(text), undefined, f0);
  await from.waitFor(
    (e) => e.type === "receipt" && e.id === out.id && e.status === "delivered",
    undefined,
    f0,
  );
}

Deno.test("a session killed mid-message reports the unacknowledged message to the sender as undelivered when the session ends", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const [a, b] = await p.chats(server, ["A", "B"]);
    await session(a!, b!);
    await delivered(a!, b!, "this one arrives");
    const a0 = a!.events.length;
    // Freeze B so that it cannot acknowledge, send, then kill it.
    b!.signal("SIGSTOP");
    await a!.send("last words");
    const out = await a!.waitFor(outgoing("last words"), undefined, a0);
    await b!.kill();
    const receipt = await a!.waitFor(
      (e) => e.type === "receipt" && e.id === out.id,
      3000,
      a0,
    );
    assert.equal(receipt.status, "undelivered");
    assert.equal(receipt.peer, "B");
    await a!.waitFor(ended("B"), undefined, a0);
    // Only that message: the first one was acknowledged.
    assert.equal(
      a!.events.filter((e) => e.status === "undelivered").length,
      1,
    );
    // A hosted: it hosts on (issue 11 item 5).
    assert.deepEqual(
      await a!.listUntil((l) => !("B" in l) && l.A === "HOSTING"),
      { A: "HOSTING" },
    );
  });
});

Deno.test("messages piped right before !disconnect, or right before the end of stdin, all arrive and are reported delivered, not undelivered", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const [a, b] = await p.chats(server, ["A", "B"]);
    const lines = (tag: string) =>
      Array.from({ length: 20 }, (_, i) => `${tag} ${i}`);
    for (
      const [tag, last] of [["then-disconnect", "!disconnect"], [
        "then-eof",
        null,
      ]] as const
    ) {
      const a0 = a!.events.length, b0 = b!.events.length;
      // After the first session A hosts on (issue 11 item 5).
      await session(a!, b!, tag === "then-eof");
      await b!.send(...lines(tag), ...(last === null ? [] : [last]));
      if (last === null) await b!.closeStdin();
      const end = await a!.waitFor(ended("B"), undefined, a0);
      const got = a!.events.slice(a0).filter((e) =>
        e.type === "message" && e.direction === "in"
      );
      assert.deepEqual(got.map((e) => e.text), lines(tag));
      assert.match(
        end.reason ?? "",
        last === null ? /B logged out/ : /B ended/,
      );
      await a!.waitFor(
        (e) => e.type === "system" && /^Still hosting/.test(e.text ?? ""),
        undefined,
        a0,
      );
      const receipts = await b!.waitForCount(
        (e) => e.type === "receipt",
        20,
        undefined,
        b0,
      );
      assert.ok(receipts.every((r) => r.status === "delivered"), tag);
    }
    assert.deepEqual(await b!.wait(), { code: 0, signal: null });
  });
});

Deno.test("the server stopped with SIGTERM and restarted on the same port: clients report the loss, then Reconnected, and !list works again; a --no-reconnect client exits 1", async () => {
  await withProcs(keys, async (p) => {
    const first = await p.server();
    const [a, b] = await p.chats(first, ["A", "B"], { args: FAST_RECONNECT });
    // C would rather exit than wait.
    const c = await p.chat(first, "C", { args: ["--no-reconnect"] });
    const a0 = a!.events.length, b0 = b!.events.length;
    first.signal("SIGTERM");
    assert.deepEqual(await first.wait(), { code: 0, signal: null });
    const gone = await c.waitFor(errorCode("server-gone"));
    assert.doesNotMatch(gone.text ?? "", /reconnecting/);
    const cs = await c.wait();
    assert.equal(cs.code, 1);
    for (const c of [a!, b!]) {
      const lost = await c.waitFor(
        errorCode("server-gone"),
        undefined,
        c === a ? a0 : b0,
      );
      assert.match(lost.text ?? "", /shutting down; reconnecting/);
    }
    // While the server is down a command gets a clear answer, not silence.
    const a1 = a!.events.length;
    await a!.send("!list");
    await a!.waitFor(errorCode("offline"), undefined, a1);

    const second = await p.server({ port: first.port });
    assert.equal(second.port, first.port);
    await a!.waitFor(reconnected, WAIT_LONG, a0);
    await b!.waitFor(reconnected, WAIT_LONG, b0);
    assert.deepEqual(await a!.list(), { A: "IDLE", B: "IDLE" });
    // And a session works through the new server.
    await session(b!, a!);
    await delivered(a!, b!, "after the restart");
    // The processes never died.
    assert.equal(a!.exited, null);
    assert.equal(b!.exited, null);
  });
});

const WAIT_LONG = 8000;

Deno.test("a direct peer session survives the server being killed and restarted: messages keep flowing while the server is down", async () => {
  await withProcs(keys, async (p) => {
    const first = await p.server();
    const [a, b] = await p.chats(first, ["A", "B"], { args: FAST_RECONNECT });
    await session(a!, b!);
    await delivered(a!, b!, "before the outage");
    const a0 = a!.events.length, b0 = b!.events.length;
    // Abruptly this time: no "closing" message, the sockets just close.
    const st = await first.kill();
    assert.equal(st.signal, "SIGKILL");
    await a!.waitFor(errorCode("server-gone"), undefined, a0);
    await b!.waitFor(errorCode("server-gone"), undefined, b0);
    // The server is gone; the peers still talk, with receipts, both ways.
    await delivered(a!, b!, "while the server is down, from A");
    await delivered(b!, a!, "while the server is down, from B");
    assert.ok(!a!.events.slice(a0).some(ended("B")), "session not ended");
    // Wait past several heartbeat timeouts: the session is still alive.
    await sleep(800);
    await delivered(a!, b!, "still here after 800 ms");

    const second = await p.server({ port: first.port });
    await a!.waitFor(reconnected, WAIT_LONG, a0);
    await b!.waitFor(reconnected, WAIT_LONG, b0);
    await delivered(b!, a!, "after the server came back");
    // The new server learns that both are still in their session.
    await a!.listUntil((u) => u.A === "BUSY" && u.B === "BUSY");
    assert.ok(!a!.events.some(ended("B")));
    assert.ok(!b!.events.some(ended("A")));
    // !disconnect still ends it on both sides.
    const a1 = a!.events.length;
    await b!.send("!disconnect");
    await a!.waitFor(ended("B"), undefined, a1);
    await second.waitForLog(/ join user=B/);
    // A hosted that session: it hosts on (issue 11 item 5).
    await a!.listUntil((u) => u.A === "HOSTING" && u.B === "IDLE");
  });
});

Deno.test("SIGHUP re-reads the client keys: a removed user's live connection gets error 'revoked' and exits non-zero; a user enrolled before the SIGHUP can log in after it", async () => {
  await withProcs(keys, async (p) => {
    const dir = await p.copyKeys();
    // --no-watch: only the signal may make the server re-read its keys.
    const server = await p.server({ keys: dir, args: ["--no-watch"] });
    const [a, c] = await p.chats(server, ["A", "C"], { keys: dir });
    // Enroll G (a new key pair, enrolled and pinned) while the server runs.
    const kg = await runIm([
      "keygen",
      "--bits",
      "2048",
      "--dir",
      dir,
      "--user",
      "G",
    ]);
    assert.equal(kg.code, 0, kg.stderr.join("\n"));
    assert.match(kg.stdout.join("\n"), /enrolled\s+server\/clients\/G\.pem/);
    await Deno.remove(join(dir, "server/clients/C.pem"));

    // Before the SIGHUP the server does not know G yet.
    const early = await runIm([
      "chat",
      "--user",
      "G",
      "--server",
      server.addr,
      "--keys",
      dir,
    ]);
    assert.equal(early.code, 1);
    assert.match(early.stderr[0] ?? "", /^im: error: .*refused the login/);

    const c0 = c!.events.length;
    server.signal("SIGHUP");
    const revoked = await c!.waitFor(errorCode("revoked"), undefined, c0);
    assert.match(revoked.text ?? "", /revoked/);
    const st = await c!.wait();
    assert.notEqual(st.code, 0);
    assert.equal(st.signal, null);
    assert.ok(!c!.stderr.lines.some((l) => /^\s+at /.test(l)), "no stack");
    await server.waitForLog(/ revoked user=C/);

    const g = await p.chat(server, "G", { keys: dir });
    assert.deepEqual(await g.list(), { A: "IDLE", G: "IDLE" });
    // A, whose key did not change, was not disturbed.
    assert.equal(a!.exited, null);
    assert.ok(!a!.events.some((e) => e.type === "error"));
    // C cannot come back.
    const again = await runIm([
      "chat",
      "--user",
      "C",
      "--server",
      server.addr,
      "--keys",
      dir,
    ]);
    assert.equal(again.code, 1);
  });
});

Deno.test("an enrollment by im keygen takes effect without a signal, and removing a key revokes its live connection", async () => {
  await withProcs(keys, async (p) => {
    const dir = await p.copyKeys();
    const server = await p.server({ keys: dir });
    const [a, d] = await p.chats(server, ["A", "D"], { keys: dir });
    const kg = await runIm([
      "keygen",
      "--bits",
      "2048",
      "--dir",
      dir,
      "--user",
      "H",
    ]);
    assert.equal(kg.code, 0, kg.stderr.join("\n"));
    await server.waitForLog(/ reload users=7/);
    const h = await p.chat(server, "H", { keys: dir });
    assert.deepEqual(await h.list(), { A: "IDLE", D: "IDLE", H: "IDLE" });
    const d0 = d!.events.length;
    await Deno.remove(join(dir, "server/clients/D.pem"));
    await d!.waitFor(errorCode("revoked"), undefined, d0);
    assert.notEqual((await d!.wait()).code, 0);
    assert.equal(a!.exited, null);
  });
});

Deno.test("a client key directory that cannot be read on reload keeps the current keys: nobody is revoked", async () => {
  await withProcs(keys, async (p) => {
    const dir = await p.copyKeys();
    const server = await p.server({ keys: dir, args: ["--no-watch"] });
    const [a] = await p.chats(server, ["A"], { keys: dir });
    await Deno.rename(
      join(dir, "server/clients"),
      join(dir, "server/clients.moved"),
    );
    server.signal("SIGHUP");
    await server.waitForLog(/ reload-failed /);
    assert.deepEqual(await a!.list(), { A: "IDLE" });
    assert.ok(!a!.events.some(errorCode("revoked")));
    // Put it back, or the next SIGHUP would fail the same way.
    await Deno.rename(
      join(dir, "server/clients.moved"),
      join(dir, "server/clients"),
    );
  });
});
