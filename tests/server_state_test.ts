/**
 * The key distribution centre's rules ({@link SessionBook}) over the
 * in-process {@link MemoryPresence}: states, refusals and who is freed.
 * @module
 */

import assert from "node:assert/strict";
import { LOCAL_NODE, MemoryPresence, SessionBook } from "../lib/server/mod.ts";

const KNOWN = new Set(["A", "B", "C", "D"]);

/** A book and the presence it writes, read as one; `online` have joined. */
function presence(...online: string[]) {
  const seen = new MemoryPresence();
  for (const u of online) seen.join(u, LOCAL_NODE);
  const book = new SessionBook(seen, (n) => KNOWN.has(n));
  return {
    host: (n: string, addr: string) => book.host(n, addr),
    unhost: (n: string) => book.unhost(n),
    requestSession: (j: string, h: string, now: number, life: number) =>
      book.requestSession(j, h, now, life),
    setTicket: (h: string, id: string) => book.setTicket(h, id),
    ended: (n: string, peer?: string) => book.ended(n, peer),
    resumeBusy: (n: string, peer: string) => book.resumeBusy(n, peer),
    cancel: (h: string, id: string) => book.cancel(h, id),
    /** What the registry does when a user's connection ends. */
    leave: (n: string) => {
      const gone = seen.leave(n);
      return gone && book.partnerLeft(gone);
    },
    get: (n: string) => seen.get(n),
    isOnline: (n: string) => seen.get(n) !== undefined,
    list: () => seen.list().map(({ name, state }) => ({ name, state })),
    get size() {
      return seen.size;
    },
  };
}

Deno.test("Presence.list() shows every online user IDLE, sorted, and never one who left (rule 2.10)", () => {
  const p = presence("C", "A", "B");
  assert.deepEqual(p.list(), [
    { name: "A", state: "IDLE" },
    { name: "B", state: "IDLE" },
    { name: "C", state: "IDLE" },
  ]);
  p.leave("B");
  assert.deepEqual(p.list().map((u) => u.name), ["A", "C"]);
  assert.equal(p.isOnline("B"), false);
});

Deno.test("SessionBook.host() marks a user HOSTING with its address (rule 4.1)", () => {
  const p = presence("A");
  assert.equal(p.host("A", "127.0.0.1:5000"), null);
  assert.equal(p.get("A")?.state, "HOSTING");
  assert.equal(p.get("A")?.addr, "127.0.0.1:5000");
  p.unhost("A");
  assert.equal(p.get("A")?.state, "IDLE");
  assert.equal(p.get("A")?.addr, undefined);
});

Deno.test("SessionBook.requestSession() refuses yourself, offline, not hosting and busy, each with its reason (rule 4.2)", () => {
  const p = presence("A", "B", "C");
  const r = (j: string, h: string) => p.requestSession(j, h, 0, 30_000);
  const self = r("A", "A");
  assert.ok(!self.ok && self.reason === "self");
  const offline = r("A", "D");
  assert.ok(!offline.ok && offline.reason === "offline");
  const notHosting = r("A", "B");
  assert.ok(!notHosting.ok && notHosting.reason === "not-hosting");
  p.host("B", "127.0.0.1:1");
  const granted = r("A", "B");
  assert.ok(granted.ok);
  const busyHost = r("C", "B");
  assert.ok(!busyHost.ok && busyHost.reason === "busy");
  p.host("C", "127.0.0.1:2");
  const busyJoiner = r("A", "C");
  assert.ok(!busyJoiner.ok && busyJoiner.reason === "busy");
  // Refusals change nobody's state.
  assert.equal(p.get("C")?.state, "HOSTING");
});

Deno.test("SessionBook.requestSession() marks both BUSY, partners of each other, with the host's address and an expiry", () => {
  const p = presence("A", "B");
  p.host("A", "127.0.0.1:7");
  const d = p.requestSession("B", "A", 1000, 30_000);
  assert.ok(d.ok);
  assert.deepEqual(d, {
    ok: true,
    host: "A",
    joiner: "B",
    addr: "127.0.0.1:7",
    expiresAt: 31_000,
  });
  assert.equal(p.get("A")?.partner, "B");
  assert.equal(p.get("B")?.partner, "A");
  assert.deepEqual(p.list().map((u) => u.state), ["BUSY", "BUSY"]);
});

Deno.test("a joiner who was hosting stops hosting when it joins someone else", () => {
  const p = presence("A", "B");
  p.host("A", "127.0.0.1:7");
  p.host("B", "127.0.0.1:8");
  assert.ok(p.requestSession("B", "A", 0, 1000).ok);
  assert.equal(p.get("B")?.addr, undefined);
  assert.equal(p.get("B")?.state, "BUSY");
});

// PROTOCOL.md section 5.2: the enrolled names are not shown to logged-in users.
Deno.test("SessionBook.requestSession() answers a name the server does not know exactly as a known user who is offline", () => {
  const p = presence("A", "B", "C");
  const unknown = p.requestSession("A", "Zed", 0, 30_000);
  const offline = p.requestSession("A", "D", 0, 30_000);
  assert.ok(!unknown.ok && !offline.ok);
  assert.equal(unknown.reason, offline.reason);
  assert.equal(unknown.reason, "offline");
  assert.equal(
    unknown.message.replace("Zed", "X"),
    offline.message.replace("D", "X"),
  );
});

// PROTOCOL.md section 6 (rule 4.5): `ended` frees the partner too, so no host
// is held BUSY by a joiner that no longer waits.
Deno.test("SessionBook.ended() returns the sender and its partner to IDLE, and names the partner to tell (rule 4.5)", () => {
  const p = presence("A", "B");
  p.host("A", "x:1");
  p.requestSession("B", "A", 0, 1000);
  assert.equal(p.ended("B", "A"), "A");
  assert.deepEqual(p.list().map((u) => u.state), ["IDLE", "IDLE"]);
  // Once both are IDLE, the partner's own report changes nothing and names nobody.
  assert.equal(p.ended("A", "B"), undefined);
  assert.deepEqual(p.list().map((u) => u.state), ["IDLE", "IDLE"]);
});

Deno.test("SessionBook.ended() for another partner than the current one frees nobody", () => {
  const p = presence("A", "B", "C");
  p.host("A", "x:1");
  p.requestSession("B", "A", 0, 1000);
  assert.equal(p.ended("B", "C"), undefined);
  assert.deepEqual(p.list().map((u) => u.state), ["BUSY", "BUSY", "IDLE"]);
});

Deno.test("SessionBook.cancel() with the grant's ticket id frees both and names the joiner; a wrong id or a non-host changes nothing", () => {
  const p = presence("A", "B");
  p.host("A", "x:1");
  p.requestSession("B", "A", 0, 1000);
  p.setTicket("A", "abcd");
  assert.equal(p.cancel("A", "ffff"), undefined);
  assert.equal(p.cancel("B", "abcd"), undefined);
  assert.equal(p.get("A")?.state, "BUSY");
  assert.equal(p.cancel("A", "abcd"), "B");
  assert.deepEqual(p.list().map((u) => u.state), ["IDLE", "IDLE"]);
});

Deno.test("a user who leaves frees its partner (SessionBook.partnerLeft()), which is named", () => {
  const p = presence("A", "B", "C");
  p.host("A", "x:1");
  p.requestSession("B", "A", 0, 1000);
  assert.equal(p.leave("A"), "B");
  assert.equal(p.get("B")?.state, "IDLE");
  assert.equal(p.leave("C"), undefined);
  assert.equal(p.size, 1);
});

Deno.test("a user who hosts while BUSY is refused with a reason", () => {
  const p = presence("A", "B");
  p.host("A", "x:1");
  p.requestSession("B", "A", 0, 1000);
  assert.match(p.host("B", "x:2") ?? "", /session/);
  assert.match(p.host("Zed", "x:2") ?? "", /not online/);
});

Deno.test("SessionBook.resumeBusy() marks a user who came back in a live session BUSY until it reports the end", () => {
  const p = presence("A", "B");
  p.resumeBusy("A", "B");
  assert.equal(p.get("A")?.state, "BUSY");
  assert.equal(p.get("A")?.partner, "B");
  const refused = p.requestSession("B", "A", 0, 1000);
  assert.ok(!refused.ok && refused.reason === "busy");
  p.ended("A");
  assert.equal(p.get("A")?.state, "IDLE");
  p.resumeBusy("A", "A");
  assert.equal(
    p.get("A")?.state,
    "IDLE",
    "a session with yourself is not resumed",
  );
});
