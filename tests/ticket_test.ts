/**
 * Tickets, rules 4.2 and 4.3: sealed for the joiner with keys from the
 * joiner's own server session; names, expiry (at most 60 s) and a replay
 * cache that lives as long as the ticket.
 */
import assert from "node:assert/strict";
import {
  concat,
  constantTimeEqual,
  ImError,
  randomBytes,
  TicketError,
} from "../lib/util/mod.ts";
import {
  MAX_TICKET_LIFETIME_MS,
  openTicket,
  sealTicket,
  type Ticket,
  TICKET_ID_BYTES,
  type TicketKeys,
  TicketReplayCache,
} from "../lib/proto/mod.ts";
import {
  assertThrowsIm,
  flipBit,
  loginInMemory,
  seededRandom,
} from "./_helpers.ts";

const NOW = 1_700_000_000_000;

function keys(): TicketKeys {
  return { enc: randomBytes(32), mac: randomBytes(32) };
}

function ticket(over: Partial<Ticket> = {}): Ticket {
  return {
    id: randomBytes(TICKET_ID_BYTES),
    host: "A",
    joiner: "B",
    expiresAt: NOW + 30_000,
    peerKey: randomBytes(32),
    ...over,
  };
}

const asB = { self: "B", expectedHost: "A", now: NOW };

Deno.test("a sealed ticket opens to the same id, names, expiry and peer key", () => {
  const k = keys();
  const t = ticket();
  const got = openTicket(k, sealTicket(k, t), asB);
  assert.deepEqual(got.id, t.id);
  assert.equal(got.host, "A");
  assert.equal(got.joiner, "B");
  assert.equal(got.expiresAt, t.expiresAt);
  assert.deepEqual(got.peerKey, t.peerKey);
});

Deno.test("a ticket sealed twice gives different bytes and hides the peer key", () => {
  const k = keys();
  const t = ticket();
  const a = sealTicket(k, t);
  const b = sealTicket(k, t);
  assert.notDeepEqual(a, b);
  const hex = a.toHex();
  assert.ok(
    !hex.includes(t.peerKey.toHex().slice(0, 16)),
    "peer key not in clear",
  );
  assert.ok(!hex.includes(t.id.toHex()), "ticket id not in clear");
});

Deno.test("a ticket sealed by the server for B opens with B's client-side ticket keys from a real login", async () => {
  const b = await loginInMemory("B");
  const t = ticket({ expiresAt: Date.now() + 30_000 });
  const got = openTicket(
    b.client.ticketKeys,
    sealTicket(b.server.ticketKeys, t),
    {
      self: "B",
      expectedHost: "A",
    },
  );
  assert.deepEqual(got.peerKey, t.peerKey);
});

Deno.test("a ticket presented to a third user C (opened with C's ticket keys) is bad-ticket", async () => {
  const [b, c] = await Promise.all([loginInMemory("B"), loginInMemory("C")]);
  const sealed = sealTicket(
    b.server.ticketKeys,
    ticket({ expiresAt: Date.now() + 30_000 }),
  );
  // C cannot open it, whatever C claims to be.
  for (
    const check of [{ self: "C", expectedHost: "A" }, {
      self: "B",
      expectedHost: "A",
    }]
  ) {
    assertThrowsIm(
      () => openTicket(c.client.ticketKeys, sealed, check),
      TicketError,
      "bad-ticket",
    );
  }
  // Nor can the host A with its own session keys.
  const a = await loginInMemory("A");
  assertThrowsIm(
    () => openTicket(a.client.ticketKeys, sealed, asB),
    TicketError,
    "bad-ticket",
  );
});

Deno.test("an expired ticket is refused: expired 1 ms after expiresAt, accepted exactly at it", () => {
  const k = keys();
  const t = ticket({ expiresAt: NOW });
  const sealed = sealTicket(k, t);
  assert.equal(openTicket(k, sealed, { ...asB, now: NOW }).expiresAt, NOW);
  const e = assertThrowsIm(
    () => openTicket(k, sealed, { ...asB, now: NOW + 1 }),
    TicketError,
    "expired",
  );
  assert.match(e.message, /expired/);
  assertThrowsIm(
    () => openTicket(k, sealed, { ...asB, now: NOW + 3_600_000 }),
    TicketError,
    "expired",
  );
});

Deno.test("a ticket whose expiry is more than 60 s ahead is refused (rule 4.2)", () => {
  assert.equal(MAX_TICKET_LIFETIME_MS, 60_000);
  const k = keys();
  const ok = sealTicket(k, ticket({ expiresAt: NOW + 60_000 }));
  assert.equal(openTicket(k, ok, asB).expiresAt, NOW + 60_000);
  for (const ahead of [60_001, 120_000, 86_400_000]) {
    const far = sealTicket(k, ticket({ expiresAt: NOW + ahead }));
    assertThrowsIm(
      () => openTicket(k, far, asB),
      TicketError,
      "bad-expiry",
      `ahead ${ahead}`,
    );
  }
});

Deno.test("a ticket whose names do not match is misbound: another joiner, another host, swapped names", () => {
  const k = keys();
  const sealed = sealTicket(k, ticket());
  for (
    const check of [
      { self: "C", expectedHost: "A" },
      { self: "B", expectedHost: "C" },
      { self: "A", expectedHost: "B" },
      { self: "b", expectedHost: "A" },
    ]
  ) {
    const e = assertThrowsIm(
      () => openTicket(k, sealed, { ...check, now: NOW }),
      TicketError,
      "misbound",
      JSON.stringify(check),
    );
    assert.match(e.message, /A -> B/);
  }
  // A ticket sealed with B's keys but naming C as the joiner is misbound for B.
  const forC = sealTicket(k, ticket({ joiner: "C" }));
  assertThrowsIm(() => openTicket(k, forC, asB), TicketError, "misbound");
});

Deno.test("every single-bit flip of a sealed ticket is bad-ticket", () => {
  const k = keys();
  const sealed = sealTicket(k, ticket());
  for (let bit = 0; bit < sealed.length * 8; bit++) {
    assertThrowsIm(
      () => openTicket(k, flipBit(sealed, bit), asB),
      TicketError,
      "bad-ticket",
      `bit ${bit}`,
    );
  }
  assert.equal(openTicket(k, sealed, asB).host, "A");
});

Deno.test("a ticket under the right encryption key but another MAC key, or vice versa, is bad-ticket", () => {
  const k = keys();
  const sealed = sealTicket(k, ticket());
  assertThrowsIm(
    () => openTicket({ enc: k.enc, mac: randomBytes(32) }, sealed, asB),
    TicketError,
    "bad-ticket",
  );
  assertThrowsIm(
    () => openTicket({ enc: randomBytes(32), mac: k.mac }, sealed, asB),
    TicketError,
    "bad-ticket",
  );
});

Deno.test("the bad-ticket error is one opaque message for every cryptographic failure", () => {
  const k = keys();
  const sealed = sealTicket(k, ticket());
  const msgs = new Set<string>();
  for (
    const bad of [
      flipBit(sealed, 0),
      flipBit(sealed, sealed.length * 8 - 1),
      sealed.subarray(0, 10),
      concat(sealed, new Uint8Array(1)),
    ]
  ) {
    msgs.add(
      assertThrowsIm(() => openTicket(k, bad, asB), TicketError, "bad-ticket")
        .message,
    );
  }
  msgs.add(
    assertThrowsIm(
      () => openTicket(keys(), sealed, asB),
      TicketError,
      "bad-ticket",
    ).message,
  );
  assert.equal(msgs.size, 1);
});

Deno.test("openTicket() throws only TicketError bad-ticket for a ticket truncated at every length or extended", () => {
  const k = keys();
  const sealed = sealTicket(k, ticket());
  for (let n = 0; n < sealed.length; n++) {
    assertThrowsIm(
      () => openTicket(k, sealed.subarray(0, n), asB),
      TicketError,
      "bad-ticket",
      `length ${n}`,
    );
  }
  for (const extra of [1, 32, 100_000]) {
    assertThrowsIm(
      () => openTicket(k, concat(sealed, randomBytes(extra)), asB),
      TicketError,
      "bad-ticket",
    );
  }
});

Deno.test("TicketReplayCache refuses a ticket id used twice", () => {
  const cache = new TicketReplayCache();
  const id = randomBytes(16);
  cache.use(id, NOW + 30_000, NOW);
  const e = assertThrowsIm(
    () => cache.use(id, NOW + 30_000, NOW + 1),
    TicketError,
    "replayed",
  );
  assert.ok(e instanceof ImError);
  // A copy of the id (another array, same bytes) is the same id.
  assertThrowsIm(
    () => cache.use(new Uint8Array(id), NOW + 30_000, NOW + 2),
    TicketError,
    "replayed",
  );
  // Another id is fine.
  cache.use(randomBytes(16), NOW + 30_000, NOW + 3);
  assert.equal(cache.size, 2);
});

Deno.test("TicketReplayCache forgets an id only after its ticket expired", () => {
  const cache = new TicketReplayCache();
  const id = randomBytes(16);
  const exp = NOW + 30_000;
  cache.use(id, exp, NOW);
  // Until and including the expiry, when openTicket() would still accept it, the id is held.
  for (const t of [NOW + 1, NOW + 29_999, exp]) {
    assertThrowsIm(
      () => cache.use(id, exp, t),
      TicketError,
      "replayed",
      `at +${t - NOW}`,
    );
  }
  assert.equal(cache.size, 1);
  // After the expiry openTicket() refuses the ticket anyway, and the cache may forget it.
  cache.use(randomBytes(16), exp + 60_000, exp + 1);
  assert.equal(cache.size, 1, "the expired id was pruned, the new one is held");
  cache.use(id, exp + 60_000, exp + 1);
  assert.equal(cache.size, 2);
});

Deno.test("the replay cache outlives every ticket it covers: a replay is refused at every moment openTicket() accepts", () => {
  const k = keys();
  const cache = new TicketReplayCache();
  const t = ticket({ expiresAt: NOW + 60_000 });
  const sealed = sealTicket(k, t);
  const first = openTicket(k, sealed, asB);
  cache.use(first.id, first.expiresAt, NOW);
  for (let now = NOW; now <= NOW + 60_000; now += 5_000) {
    const again = openTicket(k, sealed, { ...asB, now });
    assertThrowsIm(
      () => cache.use(again.id, again.expiresAt, now),
      TicketError,
      "replayed",
      `at ${now - NOW}`,
    );
  }
  assertThrowsIm(
    () => openTicket(k, sealed, { ...asB, now: NOW + 60_001 }),
    TicketError,
    "expired",
  );
});

Deno.test("openTicket() throws only TicketError for 2000 seeded random and mutated inputs", () => {
  const rnd = seededRandom(9001);
  const k = keys();
  const sealed = sealTicket(k, ticket());
  for (let i = 0; i < 2000; i++) {
    let input: Uint8Array;
    if (i % 2 === 0) input = rnd.bytes(rnd.int(200));
    else {
      input = new Uint8Array(sealed);
      for (let j = 0; j < 1 + rnd.int(4); j++) {
        const at = rnd.int(input.length);
        input[at] = input[at]! ^ (1 + rnd.int(255)); // always a change
      }
      // Two changes of one byte may cancel out: such an input is the ticket itself.
      if (constantTimeEqual(input, sealed)) continue;
    }
    try {
      openTicket(k, input, asB);
      assert.fail(`input ${i} was accepted`);
    } catch (e) {
      assert.ok(e instanceof TicketError, `input ${i}: ${e}`);
      assert.equal(e.code, "bad-ticket");
    }
  }
});
