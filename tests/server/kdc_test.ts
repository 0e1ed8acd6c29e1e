/**
 * The key distribution centre as a part: answers go only to the asker's
 * reply, other users are reached only through the {@link Delivery}, and the
 * grant's ticket opens for the joiner.
 * @module
 */

import assert from "node:assert/strict";
import { openTicket } from "../../lib/proto/mod.ts";
import { MemoryPresence } from "../../lib/server/mod.ts";
import { Kdc } from "../../lib/server/kdc.ts";
import { fakeSession, RecordingDelivery, replies } from "./_parts.ts";

/** Stand-ins for the SPKI DER of each enrolled user (the KDC passes them on unread). */
function fakeKeys(): Map<string, Uint8Array> {
  return new Map(
    ["A", "B", "C"].map((u, i) => [u, new Uint8Array(40).fill(i + 1)]),
  );
}

function setup(...online: string[]) {
  const presence = new MemoryPresence();
  for (const u of online) presence.join(u, "local");
  const delivery = new RecordingDelivery();
  const log: string[] = [];
  const directory = fakeKeys();
  const kdc = new Kdc({
    presence,
    delivery,
    identityOf: (n) => directory.get(n),
    ticketLifetimeMs: 30_000,
    log: (event) => log.push(event),
  });
  return { presence, delivery, kdc, log, directory };
}

Deno.test("Kdc.host() answers hosting and marks the user HOSTING; a bad address or a BUSY user gets an error answer; nobody else is told", async () => {
  const { presence, delivery, kdc } = setup("A", "B");
  const a = fakeSession("A");
  const r = replies();
  await kdc.host(a, { t: "host", addr: "127.0.0.1:5000" }, r.reply);
  await kdc.host(a, { t: "host", addr: "no port" }, r.reply);
  assert.deepEqual(r.answers.map((x) => x.t === "error" ? x.code : x.t), [
    "hosting",
    "bad-address",
  ]);
  assert.equal(presence.get("A")?.addr, "127.0.0.1:5000");
  presence.update("B", { state: "BUSY", partner: "C" });
  const rb = replies();
  await kdc.host(fakeSession("B"), { t: "host", addr: "x:1" }, rb.reply);
  assert.ok(
    rb.answers[0]?.t === "error" && rb.answers[0].code === "cannot-host",
  );
  assert.deepEqual(delivery.given, []);
});

Deno.test("Kdc.session() grants: the host is delivered the key and a ticket the joiner can open; the joiner's answer is join with the same ticket, byte for byte, and its id", async () => {
  const { presence, delivery, kdc, log } = setup("A", "B");
  presence.update("A", { state: "HOSTING", addr: "127.0.0.1:7" });
  const b = fakeSession("B");
  const r = replies();
  await kdc.session(b, { t: "session", peer: "A" }, r.reply);
  const [grant] = delivery.to("A");
  assert.ok(grant?.t === "grant");
  assert.equal(grant.peer, "B");
  const [join] = r.answers;
  assert.ok(join?.t === "join");
  assert.equal(join.peer, "A");
  assert.equal(join.addr, "127.0.0.1:7");
  assert.equal(join.ticketId, grant.ticketId);
  assert.equal(join.expiresAt, grant.expiresAt);
  // PROTOCOL.md section 6: the joiner's own copy of its ticket, the same
  // bytes the host passes on in PEER_HELLO; its id is the join's ticketId.
  assert.equal(join.ticket, grant.ticket);
  const own = openTicket(b.ticketKeys, Uint8Array.fromBase64(join.ticket), {
    self: "B",
    expectedHost: "A",
  });
  assert.equal(own.id.toHex(), join.ticketId);
  const ticket = openTicket(
    b.ticketKeys,
    Uint8Array.fromBase64(grant.ticket),
    { self: "B", expectedHost: "A" },
  );
  assert.deepEqual(ticket.peerKey, Uint8Array.fromBase64(grant.key));
  assert.equal(ticket.id.toHex(), grant.ticketId);
  assert.equal(presence.get("A")?.ticketId, grant.ticketId);
  assert.deepEqual(presence.list().map((e) => e.state), ["BUSY", "BUSY"]);
  assert.deepEqual(delivery.to("B"), [], "the joiner hears only its answer");
  assert.ok(log.includes("session-granted"));
  // Key continuity (PROTOCOL.md section 6): each side is told the other's
  // key as the directory holds it, base64 of the SPKI DER.
  assert.equal(grant.identity, fakeKeys().get("B")!.toBase64());
  assert.equal(join.identity, fakeKeys().get("A")!.toBase64());
});

Deno.test("Kdc.session() names each side's key from the directory as it is now: a key re-enrolled since is the one named; a user the directory lost is refused offline, both freed", async () => {
  const { presence, delivery, kdc, directory } = setup("A", "B");
  presence.update("A", { state: "HOSTING", addr: "127.0.0.1:7" });
  const renewed = new Uint8Array(40).fill(9);
  directory.set("B", renewed);
  const r = replies();
  await kdc.session(fakeSession("B"), { t: "session", peer: "A" }, r.reply);
  const [grant] = delivery.to("A");
  assert.ok(grant?.t === "grant");
  assert.equal(grant.identity, renewed.toBase64());
  kdc.cancel(fakeSession("A"), { t: "cancel", ticketId: grant.ticketId });
  presence.update("A", { state: "HOSTING", addr: "127.0.0.1:7" });
  const identityOfA = directory.get("A")!;
  const lookups: string[] = [];
  const lost = new Kdc({
    presence,
    delivery,
    // Known when the request is checked, gone when the grant is made.
    identityOf: (n) => {
      lookups.push(n);
      return n === "A" && lookups.filter((x) => x === "A").length > 1
        ? undefined
        : n === "A"
        ? identityOfA
        : directory.get(n);
    },
    ticketLifetimeMs: 30_000,
    log: () => {},
  });
  const r2 = replies();
  await lost.session(fakeSession("B"), { t: "session", peer: "A" }, r2.reply);
  assert.ok(
    r2.answers[0]?.t === "refused" && r2.answers[0].reason === "offline",
    JSON.stringify(r2.answers),
  );
  assert.equal(delivery.to("A").length, 1, "no second grant");
  assert.deepEqual(presence.list().map((e) => e.state), ["IDLE", "IDLE"]);
});

Deno.test("Kdc.session() refused (not hosting, offline, not enrolled, self) answers refused with the reason, delivers nothing, changes no state", async () => {
  const { presence, delivery, kdc } = setup("A", "B");
  const cases: Array<[string, string]> = [
    ["A", "not-hosting"],
    ["C", "offline"],
    ["Zed", "offline"], // PROTOCOL.md 5.2: as a known user who is offline
    ["B", "self"],
  ];
  for (const [peer, reason] of cases) {
    const r = replies();
    await kdc.session(fakeSession("B"), { t: "session", peer }, r.reply);
    assert.ok(r.answers.length === 1 && r.answers[0]?.t === "refused");
    assert.equal(r.answers[0].reason, reason);
  }
  assert.deepEqual(delivery.given, []);
  assert.deepEqual(presence.list().map((e) => e.state), ["IDLE", "IDLE"]);
});

Deno.test("Kdc.session() when the host is online in presence but cannot be reached: refused offline, and both are freed", async () => {
  const { presence, delivery, kdc } = setup("A", "B");
  presence.update("A", { state: "HOSTING", addr: "x:1" });
  delivery.answer = () => ({ delivered: false, reason: "absent" });
  const r = replies();
  await kdc.session(fakeSession("B"), { t: "session", peer: "A" }, r.reply);
  assert.ok(r.answers[0]?.t === "refused" && r.answers[0].reason === "offline");
  assert.equal(presence.get("A")?.state, "IDLE");
  assert.equal(presence.get("B")?.state, "IDLE");
});

Deno.test("Kdc.cancel() with the grant's id frees both and delivers cancelled to the joiner; a wrong id does nothing", async () => {
  const { presence, delivery, kdc } = setup("A", "B");
  presence.update("A", { state: "HOSTING", addr: "x:1" });
  await kdc.session(
    fakeSession("B"),
    { t: "session", peer: "A" },
    replies().reply,
  );
  const grant = delivery.to("A")[0]!;
  assert.ok(grant.t === "grant");
  kdc.cancel(fakeSession("A"), { t: "cancel", ticketId: "00".repeat(16) });
  assert.equal(presence.get("A")?.state, "BUSY");
  assert.deepEqual(delivery.to("B"), []);
  kdc.cancel(fakeSession("A"), { t: "cancel", ticketId: grant.ticketId });
  assert.deepEqual(delivery.to("B"), [{
    t: "cancelled",
    peer: "A",
    message: "A gave up waiting for you",
  }]);
  assert.deepEqual(presence.list().map((e) => e.state), ["IDLE", "IDLE"]);
});

Deno.test("Kdc.partnerLeft() frees the partner and delivers it the message; a user with no partner tells nobody", () => {
  const { presence, delivery, kdc } = setup("A", "B", "C");
  presence.update("A", { state: "BUSY", partner: "B", isHost: true });
  presence.update("B", { state: "BUSY", partner: "A", isHost: false });
  kdc.partnerLeft(presence.leave("A")!, "A went offline");
  assert.deepEqual(delivery.given.map((g) => [g.user, g.msg]), [[
    "B",
    { t: "cancelled", peer: "A", message: "A went offline" },
  ]]);
  assert.equal(presence.get("B")?.state, "IDLE");
  kdc.partnerLeft(presence.leave("C")!, "C went offline");
  assert.equal(delivery.given.length, 1);
});

Deno.test("Kdc.ended() and busy() change only the asker's state and answer nothing", () => {
  const { presence, delivery, kdc } = setup("A", "B");
  kdc.busy(fakeSession("A"), { t: "busy", peer: "B" });
  assert.equal(presence.get("A")?.partner, "B");
  kdc.ended(fakeSession("A"), { t: "ended", peer: "C" });
  assert.equal(presence.get("A")?.state, "BUSY", "another partner's end");
  kdc.ended(fakeSession("A"), { t: "ended", peer: "B" });
  assert.equal(presence.get("A")?.state, "IDLE");
  assert.equal(presence.get("B")?.state, "IDLE");
  assert.deepEqual(delivery.given, []);
});

// PROTOCOL.md section 6 (issue of a joiner that walks away): the host is
// freed at once and told, so it drops the grant and hosts again.
Deno.test("Kdc.ended() from a joiner whose grant is pending frees the host too and delivers cancelled to it", async () => {
  const { presence, delivery, kdc } = setup("A", "B");
  presence.update("A", { state: "HOSTING", addr: "x:1" });
  await kdc.session(
    fakeSession("B"),
    { t: "session", peer: "A" },
    replies().reply,
  );
  assert.equal(presence.get("A")?.state, "BUSY");
  kdc.ended(fakeSession("B"), { t: "ended", peer: "A" });
  assert.equal(presence.get("A")?.state, "IDLE");
  assert.equal(presence.get("B")?.state, "IDLE");
  const toHost = delivery.to("A");
  assert.equal(toHost.at(-1)?.t, "cancelled");
  assert.equal((toHost.at(-1) as { peer?: string }).peer, "B");
});

// A host that does not read must not stall the joiner's messages: the
// joiner's answer goes out in the same turn as the grant, never after its write.
Deno.test("Kdc.session() answers the joiner even when the host's grant is never written (a host that does not read)", async () => {
  const { presence, delivery, kdc } = setup("A", "B");
  presence.update("A", { state: "HOSTING", addr: "x:1" });
  delivery.answer = () => ({
    delivered: true,
    written: new Promise<undefined>((resolve) => {
      // Written only long after the bound (and never, as far as the test
      // cares); released at the end so no timer is left behind.
      timer = setTimeout(() => resolve(undefined), 60_000);
    }),
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const r = replies();
    await kdc.session(fakeSession("B"), { t: "session", peer: "A" }, r.reply);
    assert.equal(r.answers[0]?.t, "join");
  } finally {
    clearTimeout(timer);
  }
});

// One user cannot write a log line per message: ended and busy that change
// nothing log nothing.
Deno.test("Kdc.ended() and busy() log only when they change a state", () => {
  const { kdc, log } = setup("A", "B");
  for (let i = 0; i < 5; i++) {
    kdc.ended(fakeSession("A"), { t: "ended", peer: "B" });
  }
  assert.deepEqual(log, []);
  kdc.busy(fakeSession("A"), { t: "busy", peer: "B" });
  kdc.busy(fakeSession("A"), { t: "busy", peer: "B" });
  assert.deepEqual(log, ["session-resumed"]);
  kdc.ended(fakeSession("A"), { t: "ended", peer: "B" });
  kdc.ended(fakeSession("A"), { t: "ended", peer: "B" });
  assert.deepEqual(log, ["session-resumed", "session-ended"]);
});
