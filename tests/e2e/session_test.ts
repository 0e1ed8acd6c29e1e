/**
 * End to end, with real processes: logins, `!list`, peer sessions,
 * refusals, bursts and big messages, dead peers, replaced logins and
 * hostile stdin (issue 3 item 7). Every client runs `im chat --json`.
 * @module
 */

import assert from "node:assert/strict";
import { sleep } from "../../lib/util/mod.ts";
import {
  type ChatProc,
  type Procs,
  type ServerProc,
  sharedKeys,
  withProcs,
} from "./harness.ts";
import { ended, errorCode, hosting, incoming, session } from "./_chat.ts";

const keys = await sharedKeys();

async function loggedIn(
  p: Procs,
  users: string[],
): Promise<{ server: ServerProc; c: ChatProc[] }> {
  const server = await p.server();
  return { server, c: await p.chats(server, users) };
}

Deno.test("users A-F log in and !list shows all six IDLE; a user who quits by !quit or by EOF exits 0 and is gone from !list", async () => {
  await withProcs(keys, async (p) => {
    const { c } = await loggedIn(p, ["A", "B", "C", "D", "E", "F"]);
    const [a, , , , e, f] = c as [ChatProc, ...ChatProc[]];
    assert.deepEqual(await a.list(), {
      A: "IDLE",
      B: "IDLE",
      C: "IDLE",
      D: "IDLE",
      E: "IDLE",
      F: "IDLE",
    });
    await f!.send("!quit");
    assert.deepEqual(await f!.wait(), { code: 0, signal: null });
    await e!.closeStdin();
    assert.deepEqual(await e!.wait(), { code: 0, signal: null });
    // Rule 2.10: the first list after they left already lacks them.
    assert.deepEqual(await a.list(), {
      A: "IDLE",
      B: "IDLE",
      C: "IDLE",
      D: "IDLE",
    });
    assert.deepEqual(e!.stderr.lines, []);
    assert.deepEqual(f!.stderr.lines, []);
  });
});

Deno.test("a peer session: HOSTING, same SAS on both sides, both BUSY, messages both ways with receipts, !disconnect ends it on both sides and A hosts on, then B hosts and C joins B", async () => {
  await withProcs(keys, async (p) => {
    const { c } = await loggedIn(p, ["A", "B", "C"]);
    const [a, b, cc] = c as [ChatProc, ChatProc, ChatProc];
    await a.send("!session host");
    await a.waitFor(hosting);
    assert.deepEqual(await b.list(), { A: "HOSTING", B: "IDLE", C: "IDLE" });

    const { hostEv, joinEv } = await session(a, b, true);
    assert.match(hostEv.sas ?? "", /\S/);
    assert.equal(hostEv.sas, joinEv.sas, "both sides show the same SAS");
    assert.equal(hostEv.transport, "direct");
    assert.equal(joinEv.transport, "direct");
    assert.deepEqual(await cc.list(), { A: "BUSY", B: "BUSY", C: "IDLE" });

    const a0 = a.events.length, b0 = b.events.length;
    await a.send("hello B, from A");
    await b.send("hello A, from B: ünïcødé ✓");
    const atB = await b.waitFor(incoming("A"), undefined, b0);
    const atA = await a.waitFor(incoming("B"), undefined, a0);
    assert.equal(atB.text, "hello B, from A");
    assert.equal(atB.to, "B");
    assert.equal(atA.text, "hello A, from B: ünïcødé ✓");
    assert.equal(atA.to, "A");
    // Delivery receipts (issue 6 item 2) come back to each sender with its message id.
    const outA = await a.waitFor(
      (e) => e.type === "message" && e.direction === "out",
      undefined,
      a0,
    );
    const outB = await b.waitFor(
      (e) => e.type === "message" && e.direction === "out",
      undefined,
      b0,
    );
    assert.equal(outA.id, atB.id);
    assert.equal(outB.id, atA.id);
    const rA = await a.waitFor((e) => e.type === "receipt", undefined, a0);
    const rB = await b.waitFor((e) => e.type === "receipt", undefined, b0);
    assert.deepEqual([rA.status, rA.id, rA.peer], ["delivered", outA.id, "B"]);
    assert.deepEqual([rB.status, rB.id, rB.peer], ["delivered", outB.id, "A"]);

    await b.send("!disconnect");
    const [endA, endB] = await Promise.all([
      a.waitFor(ended("B"), undefined, a0),
      b.waitFor(ended("A"), undefined, b0),
    ]);
    assert.match(endA.reason ?? "", /B ended the session/);
    assert.match(endB.reason ?? "", /you ended the session/);
    // A hosted, so A hosts on (issue 11 item 5); B is IDLE.
    await a.waitFor(
      (e) => e.type === "system" && /^Still hosting at /.test(e.text ?? ""),
      undefined,
      a0,
    );
    await cc.listUntil((l) => l.A === "HOSTING" && l.B === "IDLE");
    // No receipt was reported undelivered: everything was acknowledged.
    assert.equal(
      a.events.filter((e) => e.status === "undelivered").length +
        b.events.filter((e) => e.status === "undelivered").length,
      0,
    );

    // A new session with another peer.
    const b1 = b.events.length, c1 = cc.events.length;
    const second = await session(b, cc);
    assert.equal(second.hostEv.sas, second.joinEv.sas);
    assert.notEqual(second.hostEv.sas, hostEv.sas, "a new session, a new SAS");
    await cc.send("hi B, it is C");
    await b.waitFor(incoming("C", "hi B, it is C"), undefined, b1);
    await b.send("hi C");
    await cc.waitFor(incoming("B", "hi C"), undefined, c1);
    assert.deepEqual(await a.list(), { A: "HOSTING", B: "BUSY", C: "BUSY" });
    // A message typed outside a session is refused, not lost silently.
    const a2 = a.events.length;
    await a.send("nobody to send to");
    await a.waitFor(errorCode("no-session"), undefined, a2);
  });
});

Deno.test("host for a minute, as README shows (issue 11 item 5): A types !session host once; B joins, says hello and logs out at the end of its input; then C does the same, with nothing typed at A", async () => {
  await withProcs(keys, async (p) => {
    const { server, c } = await loggedIn(p, ["A"]);
    const [a] = c as [ChatProc];
    await a.send("!session host");
    await a.waitFor(hosting);
    for (const user of ["B", "C"]) {
      const a0 = a.events.length;
      const j = await p.chat(server, user);
      await j.send("!session A", `hello from ${user}`);
      await a.waitFor(incoming(user, `hello from ${user}`), 10_000, a0);
      await j.closeStdin();
      assert.deepEqual(await j.wait(), { code: 0, signal: null });
      const end = await a.waitFor(ended(user), undefined, a0);
      assert.equal(end.reason, `${user} logged out`);
      await a.waitFor(
        (e) => e.type === "system" && /^Still hosting at /.test(e.text ?? ""),
        undefined,
        a0,
      );
      assert.ok(
        !j.events.some((e) => e.code === "refused-not-hosting"),
        `${user} was not told "A is not hosting"`,
      );
    }
    assert.deepEqual(await a.list(), { A: "HOSTING" });
  });
});

Deno.test("every refusal of !session has its own code and text: offline (a name the server does not know alike), not hosting, busy, yourself", async () => {
  await withProcs(keys, async (p) => {
    // F is enrolled but never started: offline.
    const { c } = await loggedIn(p, ["A", "B", "C"]);
    const [a, b, cc] = c as [ChatProc, ChatProc, ChatProc];
    const refusal = async (who: ChatProc, line: string, code: string) => {
      const since = who.events.length;
      await who.send(line);
      const ev = await who.waitFor(
        (e) => e.type === "error" && (e.code ?? "").startsWith("refused-"),
        undefined,
        since,
      );
      assert.equal(ev.code, code, `${line}: ${ev.text}`);
      return ev.text ?? "";
    };
    const texts = [
      // PROTOCOL.md 5.2: not enrolled is answered as enrolled and offline.
      await refusal(cc, "!session Zed", "refused-offline"),
      await refusal(cc, "!session F", "refused-offline"),
      await refusal(cc, "!session A", "refused-not-hosting"),
      await refusal(cc, "!session C", "refused-self"),
    ];
    await session(a, b);
    texts.push(await refusal(cc, "!session A", "refused-busy"));
    texts.push(await refusal(cc, "!session B", "refused-busy"));
    assert.match(texts[0]!, /Zed is not online/);
    assert.match(texts[1]!, /F is not online/);
    assert.match(texts[2]!, /not hosting/);
    assert.match(texts[3]!, /yourself/);
    assert.match(texts[4]!, /busy/);
    assert.equal(new Set(texts.slice(0, 5)).size, 5, "five distinct texts");
    // After all of that C is still IDLE and can host.
    assert.deepEqual(await cc.list(), { A: "BUSY", B: "BUSY", C: "IDLE" });
    // A user in a session who asks for another is told so by its client.
    const b0 = b.events.length;
    await b.send("!session C");
    await b.waitFor(errorCode("busy"), undefined, b0);
    // And the session still works.
    const a0 = a.events.length;
    await b.send("still here");
    await a.waitFor(incoming("B", "still here"), undefined, a0);
  });
});

Deno.test("a burst of 100 messages written to stdin at once arrives whole and in order, a 30,000-character message arrives intact, and one too large for a record is refused without ending the session", async () => {
  await withProcs(keys, async (p) => {
    const { c } = await loggedIn(p, ["A", "B"]);
    const [a, b] = c as [ChatProc, ChatProc];
    await session(a, b);
    const a0 = a.events.length, b0 = b.events.length;
    const burst = Array.from(
      { length: 100 },
      (_, i) => `burst ${String(i).padStart(3, "0")} ${"·".repeat(i % 7)}`,
    );
    await b.send(...burst);
    const got = await a.waitForCount(incoming("B"), 100, 10_000, a0);
    assert.deepEqual(got.map((e) => e.text), burst);
    const receipts = await b.waitForCount(
      (e) => e.type === "receipt" && e.status === "delivered",
      100,
      10_000,
      b0,
    );
    assert.equal(new Set(receipts.map((r) => r.id)).size, 100);

    let big = "";
    for (let i = 0; big.length < 30_000; i++) big += `${i},`;
    big = big.slice(0, 30_000);
    await a.send(big);
    const at = await b.waitFor(incoming("A"), 10_000, b0);
    assert.equal(at.text?.length, 30_000);
    assert.ok(at.text === big, "the 30 KB message arrived byte for byte");
    await a.waitFor(
      (e) => e.type === "receipt" && e.status === "delivered",
      undefined,
      a0,
    );
    // A line that fits the input limit but not one message (30,000 quotes
    // are 60,000 bytes escaped) is refused on its own; the session goes on.
    const b1 = b.events.length;
    await b.send('"'.repeat(30_000), "after the refused one");
    const refused = await b.waitFor(
      (e) => e.type === "error" && e.code === "message-too-large",
      undefined,
      b1,
    );
    assert.match(refused.text ?? "", /exceeds the limit/);
    await a.waitFor(incoming("B", "after the refused one"), undefined, a0);
    assert.ok(!a.events.some((e) => e.text?.startsWith('""')));
  });
});

Deno.test("a peer killed with SIGKILL is detected within seconds: the other side gets a session end and is IDLE again, and the dead one is gone from !list", async () => {
  await withProcs(keys, async (p) => {
    const { c } = await loggedIn(p, ["A", "B"]);
    const [a, b] = c as [ChatProc, ChatProc];
    await session(a, b);
    const b0 = b.events.length;
    const st = await a.kill();
    assert.equal(st.signal, "SIGKILL");
    // Within the 3 s wait: long before any heartbeat deadline would fire.
    const end = await b.waitFor(ended("A"), 3000, b0);
    assert.match(end.reason ?? "", /A/);
    assert.deepEqual(await b.listUntil((l) => !("A" in l)), { B: "IDLE" });
    // B is free for a new session right away.
    const b1 = b.events.length;
    await b.send("!session host");
    await b.waitFor(
      (e) => e.type === "system" && /^Hosting/.test(e.text!),
      undefined,
      b1,
    );
  });
});

Deno.test("a peer that stops answering (SIGSTOP, socket still open) is detected by heartbeats within about a second", async () => {
  await withProcs(keys, async (p) => {
    const { c } = await loggedIn(p, ["A", "B"]);
    const [a, b] = c as [ChatProc, ChatProc];
    await session(a, b);
    const b0 = b.events.length;
    a.signal("SIGSTOP");
    try {
      // Heartbeat 200 ms: dead after 600 ms without a record, so well within
      // the 3 s wait (the default 2 s heartbeat would take 6 s); the reason
      // says the heartbeat found it.
      const end = await b.waitFor(ended("A"), 3000, b0);
      assert.match(end.reason ?? "", /stopped answering/);
      const l = await b.listUntil((l) => l.B === "IDLE");
      assert.equal(l.B, "IDLE");
    } finally {
      a.signal("SIGCONT");
    }
  });
});

Deno.test("a client with --heartbeat 200 stays logged in to a server that sends heartbeats every 2 s (the default)", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server({ args: ["--heartbeat", "2000"] });
    const a = await p.chat(server, "A");
    await sleep(1500);
    assert.deepEqual(await a.list(), { A: "IDLE" });
    assert.deepEqual(a.ofType("error"), []);
    assert.ok(!server.stderr.lines.some((l) => / leave /.test(l)));
  });
});

// Found by this suite: the server declared a client dead after 3 of its own
// intervals, whatever the client's; lib/server.ts now waits for 3 x max(own,
// default) like lib/client.ts does for the server.
Deno.test("a client with the default 2 s heartbeat stays logged in to a server started with --heartbeat 200", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server({ args: ["--heartbeat", "200"] });
    const a = await p.chat(server, "A", { args: ["--heartbeat", "2000"] });
    await sleep(1500);
    assert.deepEqual(a.ofType("error"), []);
    assert.deepEqual(
      server.stderr.lines.filter((l) => / leave /.test(l)),
      [],
    );
  });
});

Deno.test("a second login of the same user replaces the first: the first gets error 'replaced' and exits non-zero, !list shows the user once", async () => {
  await withProcs(keys, async (p) => {
    const { server, c } = await loggedIn(p, ["A", "B"]);
    const [a1, b] = c as [ChatProc, ChatProc];
    const a2 = await p.chat(server, "A");
    const ev = await a1.waitFor(errorCode("replaced"));
    assert.match(ev.text ?? "", /another place/);
    const st = await a1.wait();
    assert.notEqual(st.code, 0);
    assert.equal(st.signal, null);
    assert.deepEqual(await b.list(), { A: "IDLE", B: "IDLE" });
    // The new login is the one that works.
    assert.deepEqual(await a2.list(), { A: "IDLE", B: "IDLE" });
    assert.ok(
      !a1.stderr.lines.some((l) => /^\s+at /.test(l)),
      "no stack trace",
    );
  });
});

Deno.test("a login replaced during a session (issue 11 item 7): the old client shows the session ended 'replaced by a newer login of A' and exits 1, the peer sees the same reason, not 'A left (quit)'", async () => {
  await withProcs(keys, async (p) => {
    const { server, c } = await loggedIn(p, ["A", "B"]);
    const [a1, b] = c as [ChatProc, ChatProc];
    await session(a1, b);
    const a0 = a1.events.length, b0 = b.events.length;
    await p.chat(server, "A");
    const [endA, endB] = await Promise.all([
      a1.waitFor(ended("B"), undefined, a0),
      b.waitFor(ended("A"), undefined, b0),
    ]);
    assert.equal(endA.reason, "replaced by a newer login of A");
    assert.equal(endB.reason, "replaced by a newer login of A");
    const st = await a1.wait();
    assert.equal(st.code, 1);
    // The error line came first, then the session's end.
    const replaced = a1.events.findIndex(errorCode("replaced"));
    assert.ok(replaced >= 0 && replaced < a1.events.indexOf(endA));
  });
});

Deno.test("garbage on stdin (NUL bytes, invalid UTF-8, escape sequences, a 20 KB line) never crashes the client; end of stdin logs out, with exit 3 for the skipped line", async () => {
  await withProcs(keys, async (p) => {
    const { c } = await loggedIn(p, ["A", "B"]);
    const [a, b] = c as [ChatProc, ChatProc];
    await session(a, b);
    const a0 = a.events.length;
    const garbage = [
      new Uint8Array([0x00, 0x00, 0x41, 0x00, 0x0a]),
      new Uint8Array([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0x0a]),
      new TextEncoder().encode(
        "\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m\x9b6n\r\n",
      ),
      new TextEncoder().encode(`${"z".repeat(20_000)}\n`),
      new TextEncoder().encode(`${"y".repeat(40_000)}\n`),
      new TextEncoder().encode("!session \x00\x01\x02\n!\x1b\n!!\n\n\n"),
      new Uint8Array(4096), // NULs without a newline, then more
      new TextEncoder().encode("\nafter the garbage\n"),
    ];
    for (const g of garbage) await b.write(g);
    await a.waitFor(incoming("B", "after the garbage"), 10_000, a0);
    const got = a.events.slice(a0).filter(incoming("B")).map((e) => e.text!);
    // Controls are removed on input and on output; nothing raw reaches A.
    for (const t of got) {
      // deno-lint-ignore no-control-regex -- looking for controls is the point
      assert.doesNotMatch(t, /[\x00-\x08\x0a-\x1f\x7f-\x9f]/);
    }
    assert.ok(got.includes("A"), JSON.stringify(got.slice(0, 3)));
    assert.ok(got.some((t) => t.includes("\ufffd")), "invalid UTF-8 -> U+FFFD");
    assert.ok(got.some((t) => t === "z".repeat(20_000)), "20 KB line sent");
    // A line past the input limit is skipped with its own error.
    const skipped = await b.waitFor(errorCode("line-too-long"));
    assert.match(skipped.text ?? "", /40000 bytes/);
    assert.ok(!got.some((t) => t.startsWith("yyy")));
    // The client still answers commands.
    assert.deepEqual(await b.list(), { A: "BUSY", B: "BUSY" });
    await b.closeStdin();
    // Exit 3: a line was skipped (issue 11 item 6), but no crash.
    assert.deepEqual(await b.wait(), { code: 3, signal: null });
    assert.deepEqual(b.stderr.lines, []);
    await a.waitFor(ended("B"), undefined, a0);
    // A hosted: it hosts on.
    assert.deepEqual(
      await a.listUntil((l) => !("B" in l) && l.A === "HOSTING"),
      { A: "HOSTING" },
    );
  });
});
