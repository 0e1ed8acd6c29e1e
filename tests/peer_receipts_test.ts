/**
 * Cumulative receipts in peer sessions (PROTOCOL.md section 6, "Receipts";
 * issue 15): the receiver answers a run of `msg`s with one `ack` naming the
 * last and how many; the sender still reports one `delivered` per message,
 * in order. The `ack` records are read back from the wire with a second
 * opener of the receiver's direction.
 *
 * Both ends run in this process over queues (and two {@link RelayTransport}s
 * for the relay), which hand records over in microtasks: a burst sent in one
 * turn is read before any timer can fire, so how the receipts group does not
 * depend on the machine's speed.
 */

import assert from "node:assert/strict";
import { RecordOpener, RecordSealer, RecordType } from "../lib/record/mod.ts";
import {
  decodePeerToPeer,
  type PeerToPeer,
  SecureChannel,
} from "../lib/proto/mod.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import { ProtocolError } from "../lib/util/mod.ts";
import { assertRejectsIm } from "./_helpers.ts";
import { type FrameTransport, memoryPair } from "../lib/wire/mod.ts";
import {
  ACK_MAX_DELAY_MS,
  ACK_QUIET_MS,
  ACK_RUN_MAX,
  MAX_MESSAGE_BYTES,
  type PeerEvent,
  PeerSession,
  ReceiptRun,
  RelayTransport,
} from "../lib/client/mod.ts";

function keys(seed: number): DirectionKeys {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

const H2J = keys(1), J2H = keys(7);

function session(
  t: FrameTransport,
  self: string,
  peer: string,
  out: DirectionKeys,
  inn: DirectionKeys,
  transport: "direct" | "relay",
): PeerSession {
  return new PeerSession(
    self,
    peer,
    "000 000 000 000",
    transport,
    new SecureChannel(t, new RecordSealer(out), new RecordOpener(inn), {
      heartbeatMs: 0,
      pad: true,
    }),
  );
}

/** A (sender) and B (receiver) over queues; `bSent` is every payload B sent. */
function direct() {
  const [ta, tb] = memoryPair();
  const a = session(ta, "A", "B", H2J, J2H, "direct");
  const b = session(tb, "B", "A", J2H, H2J, "direct");
  return { a, b, ta, tb, bSent: tb.sent };
}

/** A and B through two relays that hand each frame to the other at once, as base64. */
function relayed() {
  const bSent: Uint8Array[] = [];
  // deno-lint-ignore prefer-const
  let ra: RelayTransport, rb: RelayTransport;
  ra = new RelayTransport("B", (d) => {
    rb.deliver(d);
    return Promise.resolve();
  });
  rb = new RelayTransport("A", (d) => {
    bSent.push(Uint8Array.fromBase64(d));
    ra.deliver(d);
    return Promise.resolve();
  });
  const a = session(ra, "A", "B", H2J, J2H, "relay");
  const b = session(rb, "B", "A", J2H, H2J, "relay");
  return { a, b, bSent };
}

/** The DATA messages among `payloads` sealed with `k`, and how many CLOSE records. */
function readWire(payloads: Uint8Array[], k: DirectionKeys) {
  const opener = new RecordOpener(k);
  const data: PeerToPeer[] = [];
  const types: RecordType[] = [];
  for (const p of payloads) {
    const rec = opener.open(p);
    types.push(rec.type);
    if (rec.type === RecordType.DATA) {
      data.push(decodePeerToPeer(rec.plaintext));
    }
  }
  return { data, types };
}

async function next(it: AsyncIterator<PeerEvent>): Promise<PeerEvent> {
  const r = await it.next();
  assert.ok(!r.done, "events ended early");
  return r.value;
}

/** Collect a session's events in the background. */
function pump(s: PeerSession) {
  const evs: PeerEvent[] = [];
  let wake = () => {};
  const done = (async () => {
    for await (const ev of s.events()) {
      evs.push(ev);
      wake();
    }
    wake();
  })();
  const waitFor = async (cond: (evs: PeerEvent[]) => boolean) => {
    while (!cond(evs)) {
      await new Promise<void>((r) => (wake = r));
    }
  };
  return { evs, done, waitFor };
}

const delivered = (evs: PeerEvent[]) =>
  evs.filter((e) => e.kind === "delivered").map((e) =>
    e.kind === "delivered" ? e.id : ""
  );
const texts = (evs: PeerEvent[]) => evs.filter((e) => e.kind === "text").length;

for (
  const [via, make] of [["directly", direct], [
    "through two relays",
    relayed,
  ]] as const
) {
  Deno.test(`a burst of 100 messages ${via}: 100 receipts in order from 2 ack records on the wire (64, then 36 after the quiet spell)`, async () => {
    assert.equal(ACK_RUN_MAX, 64);
    const { a, b, bSent } = make();
    const pa = pump(a), pb = pump(b);
    const ids: string[] = [];
    // Two halves of 50: a relay holds at most 64 frames unread.
    for (let half = 0; half < 2; half++) {
      const sends = [];
      for (let i = 0; i < 50; i++) sends.push(a.sendText(`m${half * 50 + i}`));
      ids.push(...await Promise.all(sends));
      await pb.waitFor((evs) => texts(evs) === (half + 1) * 50);
    }
    await pa.waitFor((evs) => delivered(evs).length === 100);
    assert.deepEqual(
      delivered(pa.evs),
      ids,
      "one receipt per message, in order",
    );
    assert.equal(pa.evs.length, 100, "nothing else reported");
    const wire = readWire(bSent, J2H);
    assert.deepEqual(wire.data, [
      { t: "ack", id: ids[63], count: 64 },
      { t: "ack", id: ids[99], count: 36 },
    ]);
    await a.close();
    await Promise.all([pa.done, pb.done]);
    assert.deepEqual(pa.evs.at(-1), {
      kind: "ended",
      reason: "local",
      undelivered: [],
    });
  });
}

Deno.test("an ack without count acknowledges the named message alone: the receipt of earlier versions", async () => {
  const { a, b } = direct();
  const ea = a.events();
  const [m1, m2, m3] = await Promise.all([
    a.sendText("1"),
    a.sendText("2"),
    a.sendText("3"),
  ]);
  // B's events are not read: B sends only what the test sends.
  await b.channel.send({ t: "ack", id: m1! });
  await b.channel.send({ t: "ack", id: m3! });
  assert.deepEqual(await next(ea), { kind: "delivered", id: m1 });
  assert.deepEqual(await next(ea), { kind: "delivered", id: m3 });
  await a.close("disconnect", 0);
  assert.deepEqual(await next(ea), {
    kind: "ended",
    reason: "local",
    undelivered: [{ id: m2, text: "2" }],
  });
  b.channel.abort("test");
});

Deno.test("an ack naming a message never sent, one acknowledged already, or counting more than wait marks nothing and is shown as bad-receipt", async () => {
  const { a, b } = direct();
  const ea = a.events();
  const [m1, m2, m3] = await Promise.all([
    a.sendText("1"),
    a.sendText("2"),
    a.sendText("3"),
  ]);
  const badReceipt = async () => {
    const ev = await next(ea);
    assert.equal(ev.kind, "problem");
    assert.equal(ev.kind === "problem" && ev.code, "bad-receipt");
  };
  await b.channel.send({ t: "ack", id: "never-sent", count: 1 });
  await badReceipt();
  await b.channel.send({ t: "ack", id: m2!, count: 3 }); // only 2 wait up to m2
  await badReceipt();
  await b.channel.send({ t: "ack", id: m2!, count: 2 });
  assert.deepEqual(await next(ea), { kind: "delivered", id: m1 });
  assert.deepEqual(await next(ea), { kind: "delivered", id: m2 });
  await b.channel.send({ t: "ack", id: m2! }); // acknowledged already
  await badReceipt();
  await b.channel.send({ t: "ack", id: m3!, count: 2 }); // m2 no longer waits
  await badReceipt();
  await b.channel.send({ t: "ack", id: m3! });
  assert.deepEqual(await next(ea), { kind: "delivered", id: m3 });
  await b.close("disconnect", 0);
  assert.deepEqual(await next(ea), {
    kind: "ended",
    reason: "disconnect",
    undelivered: [],
  });
});

Deno.test("a lost record ends the run: the messages around it are acknowledged, the lost one alone is reported not delivered", async () => {
  const { a, b, ta, bSent } = direct();
  let n = 0;
  ta.tap = (p) => (++n === 3 ? [] : [p]); // A's third record never arrives
  const pa = pump(a), pb = pump(b);
  const ids = await Promise.all(
    ["1", "2", "3", "4", "5"].map((t) => a.sendText(t)),
  );
  await pa.waitFor((evs) => delivered(evs).length === 4);
  assert.deepEqual(delivered(pa.evs), [ids[0], ids[1], ids[3], ids[4]]);
  assert.ok(pb.evs.some((e) => e.kind === "problem" && e.code === "lost"));
  assert.deepEqual(readWire(bSent, J2H).data, [
    { t: "ack", id: ids[1], count: 2 },
    { t: "ack", id: ids[4], count: 2 },
  ]);
  await a.close("disconnect", 0);
  await Promise.all([pa.done, pb.done]);
  assert.deepEqual(pa.evs.at(-1), {
    kind: "ended",
    reason: "local",
    undelivered: [{ id: ids[2], text: "3" }],
  });
});

Deno.test("a session that ends with messages unacknowledged reports exactly those as not delivered", async () => {
  const { a, b, tb } = direct();
  const pa = pump(a), pb = pump(b);
  const first = await Promise.all(["1", "2", "3"].map((t) => a.sendText(t)));
  await pa.waitFor((evs) => delivered(evs).length === 3);
  tb.tap = () => []; // B's receipts vanish from here on
  const later = await Promise.all(["4", "5"].map((t) => a.sendText(t)));
  await pb.waitFor((evs) => texts(evs) === 5);
  b.channel.abort("test");
  await Promise.all([pa.done, pb.done]);
  assert.deepEqual(delivered(pa.evs), first);
  const ended = pa.evs.at(-1);
  assert.equal(ended?.kind, "ended");
  assert.deepEqual(ended?.kind === "ended" && ended.undelivered, [
    { id: later[0], text: "4" },
    { id: later[1], text: "5" },
  ]);
});

Deno.test("a receiver that ends the session sends its pending receipt before its CLOSE", async () => {
  const { a, b, bSent } = direct();
  const ea = a.events(), eb = b.events();
  const ids = await Promise.all(["1", "2", "3"].map((t) => a.sendText(t)));
  for (let i = 0; i < 3; i++) assert.equal((await next(eb)).kind, "text");
  await b.close(); // before the quiet spell's timer could fire
  for (const id of ids) {
    assert.deepEqual(await next(ea), { kind: "delivered", id });
  }
  assert.deepEqual(await next(ea), {
    kind: "ended",
    reason: "disconnect",
    undelivered: [],
  });
  const wire = readWire(bSent, J2H);
  assert.deepEqual(wire.data, [{ t: "ack", id: ids[2], count: 3 }]);
  assert.deepEqual(wire.types, [RecordType.DATA, RecordType.CLOSE]);
  assert.equal((await next(eb)).kind, "ended");
});

Deno.test("no receipt timer outlives a session's events: ended by the peer (nothing sent), or a reader that stops (the receipt sent at once)", async () => {
  {
    const { a, b } = direct();
    const eb = b.events();
    await a.sendText("1");
    assert.equal((await next(eb)).kind, "text");
    assert.ok(b.receiptPending, "the run's timer is set");
    a.channel.abort("test");
    assert.equal((await next(eb)).kind, "ended");
    assert.equal(b.receiptPending, false);
  }
  {
    const { a, b, bSent } = direct();
    const id = await a.sendText("1");
    for await (const ev of b.events()) {
      assert.equal(ev.kind, "text");
      assert.ok(b.receiptPending, "the run's timer is set");
      break; // then the reader stops
    }
    assert.equal(b.receiptPending, false);
    // What it read is acknowledged at once.
    assert.deepEqual(readWire(bSent, J2H).data, [{ t: "ack", id }]);
    a.channel.abort("test");
    b.channel.abort("test");
  }
});

/** A clock the test turns by hand: one pending tick at most, as the run keeps. */
function handClock() {
  let pending: (() => void) | undefined;
  const periods: number[] = [];
  return {
    periods,
    get set() {
      return pending !== undefined;
    },
    clock: {
      set: (f: () => void, ms: number) => {
        assert.equal(pending, undefined, "one timer at a time");
        periods.push(ms);
        pending = f;
        return 1;
      },
      clear: () => {
        pending = undefined;
      },
    },
    tick() {
      const f = pending;
      pending = undefined;
      f?.();
    },
  };
}

Deno.test("the quiet spell and the longest wait, on a hand-turned clock: the receipt goes after a tick with no msg, or once the run is ACK_MAX_DELAY_MS old while msgs keep coming", async () => {
  const sent: PeerToPeer[] = [];
  const h = handClock();
  const run = new ReceiptRun((ack) => {
    sent.push(ack);
    return Promise.resolve();
  }, h.clock);
  // One msg, then a tick with nothing: the quiet spell.
  run.add("1");
  assert.ok(h.set && run.pending);
  h.tick();
  assert.deepEqual(sent, [{ t: "ack", id: "1" }]);
  assert.equal(run.pending, false);
  // A msg in every tick: no quiet spell, so the longest wait decides.
  const ticks = ACK_MAX_DELAY_MS / ACK_QUIET_MS;
  run.add("2");
  for (let i = 1; i <= ticks; i++) {
    run.add(String(2 + i));
    h.tick();
    if (i < ticks) assert.equal(sent.length, 1, `no receipt after tick ${i}`);
  }
  assert.deepEqual(sent[1], {
    t: "ack",
    id: String(2 + ticks),
    count: ticks + 1,
  });
  assert.equal(run.pending, false);
  assert.ok(h.periods.every((ms) => ms === ACK_QUIET_MS));
  // A msg after a busy tick, then a quiet one.
  run.add("a");
  run.add("b");
  h.tick(); // "b" came during this tick: not quiet yet
  assert.equal(sent.length, 2);
  h.tick();
  assert.deepEqual(sent[2], { t: "ack", id: "b", count: 2 });
  // flush() sends at once and clears the tick; drop() forgets the run.
  run.add("c");
  await run.flush();
  assert.deepEqual(sent[3], { t: "ack", id: "c" });
  assert.equal(h.set, false);
  run.add("d");
  run.drop();
  assert.equal(h.set, false);
  h.tick();
  await run.flush();
  assert.equal(sent.length, 4, "a dropped run sends nothing");
});

Deno.test("sendText() refuses a message over MAX_MESSAGE_BYTES, one long by its JSON escapes included, sending nothing, and the session goes on", async () => {
  const { a, b, ta } = direct();
  const eb = b.events();
  const escapes = "\u0001".repeat(7700); // 7,700 characters, 46,200 bytes as JSON
  await assertRejectsIm(
    () => a.sendText(escapes),
    ProtocolError,
    "message-too-large",
  );
  await assertRejectsIm(
    () => a.sendText("x".repeat(MAX_MESSAGE_BYTES)),
    ProtocolError,
    "message-too-large",
  );
  assert.equal(ta.sent.length, 0, "nothing sealed or sent");
  const long = "é".repeat(15_000); // 30,000 bytes: sent
  const id = await a.sendText(long);
  assert.deepEqual(await next(eb), { kind: "text", id, text: long });
  a.channel.abort("test");
  b.channel.abort("test");
  // B's events to their end: the closed channel drops B's receipt run and
  // its quiet-spell timer (else the timer may outlive the test on a busy
  // machine, which the sanitizer reports).
  let last: unknown;
  for await (const ev of eb) last = ev;
  assert.equal((last as { kind?: string } | undefined)?.kind, "ended");
  assert.equal(b.receiptPending, false);
});
