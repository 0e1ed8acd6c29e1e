import assert from "node:assert/strict";
import { NetError, ProtocolError, U64_MAX, utf8 } from "../lib/util/mod.ts";
import {
  RecordChannel,
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../lib/record/mod.ts";
import { type ChannelEvent, SecureChannel } from "../lib/proto/mod.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import { type FrameTransport, memoryPair } from "../lib/wire/mod.ts";
import { heartbeats } from "../lib/record/scheduler.ts";
import { assertRejectsIm, assertThrowsIm } from "./_helpers.ts";

function keys(seed: number): DirectionKeys {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

function channels(
  opts: { heartbeatMs?: number; deadAfterMs?: number } = {},
  firstSeq = 0n,
) {
  const [ta, tb] = memoryPair();
  const ab = keys(1), ba = keys(10);
  const o = {
    heartbeatMs: opts.heartbeatMs ?? 0,
    ...(opts.deadAfterMs ? { deadAfterMs: opts.deadAfterMs } : {}),
  };
  const a = new SecureChannel(
    ta,
    new RecordSealer(ab, firstSeq),
    new RecordOpener(ba),
    o,
  );
  const b = new SecureChannel(
    tb,
    new RecordSealer(ba),
    new RecordOpener(ab),
    o,
  );
  return { a, b, ta, tb };
}

async function collect(
  ch: SecureChannel,
  until: (ev: ChannelEvent) => boolean,
): Promise<ChannelEvent[]> {
  const out: ChannelEvent[] = [];
  for await (const ev of ch.events()) {
    out.push(ev);
    if (until(ev)) break;
  }
  return out;
}

Deno.test("SecureChannel carries messages both ways as records, and close() ends both sides with the reason", async () => {
  const { a, b } = channels();
  await a.send({ t: "msg", id: "1", text: "hello" });
  await b.send({ t: "ack", id: "1" });
  const [evB] = await collect(b, () => true);
  assert.deepEqual(evB, {
    kind: "message",
    msg: { t: "msg", id: "1", text: "hello" },
  });
  const [evA] = await collect(a, () => true);
  assert.deepEqual(evA, { kind: "message", msg: { t: "ack", id: "1" } });
  await a.close("disconnect");
  const rest = await collect(b, (e) => e.kind === "closed");
  assert.deepEqual(rest.at(-1), { kind: "closed", reason: "disconnect" });
  assert.ok(a.closed && b.closed);
});

Deno.test("SecureChannel reports a tampered record as discarded and still accepts the next genuine one (rule 3.5)", async () => {
  const { a, b, ta } = channels();
  let n = 0;
  ta.tap = (p) => {
    if (n++ === 0) p[p.length - 1]! ^= 1;
    return [p];
  };
  await a.send({ t: "msg", id: "1", text: "forged" });
  await a.send({ t: "msg", id: "2", text: "genuine" });
  const evs = await collect(b, (e) => e.kind === "message");
  assert.equal(evs[0]?.kind, "discarded");
  assert.equal(evs[0]?.kind === "discarded" && evs[0].error.code, "tampered");
  // The discarded record was reported once; its hole is not reported again as lost.
  assert.deepEqual(evs[1], {
    kind: "message",
    msg: { t: "msg", id: "2", text: "genuine" },
  });
  a.abort("test");
  await collect(b, (e) => e.kind === "closed");
});

Deno.test("SecureChannel reports a duplicated record as replayed and delivers the message once", async () => {
  const { a, b, ta } = channels();
  ta.tap = (p) => [p, p];
  await a.send({ t: "msg", id: "1", text: "once" });
  const evs = await collect(b, (e) => e.kind === "discarded");
  assert.equal(evs.filter((e) => e.kind === "message").length, 1);
  const last = evs.at(-1);
  assert.ok(last?.kind === "discarded" && last.error.code === "replayed");
  a.abort("test");
  await collect(b, (e) => e.kind === "closed");
});

Deno.test("SecureChannel reports dropped records as lost with their count", async () => {
  const { a, b, ta } = channels();
  let n = 0;
  ta.tap = (p) => (n++ < 2 ? [] : [p]);
  for (const id of ["1", "2", "3"]) await a.send({ t: "msg", id, text: id });
  const evs = await collect(b, (e) => e.kind === "message");
  assert.deepEqual(evs[0], { kind: "lost", count: 2n });
  assert.deepEqual(evs[1], {
    kind: "message",
    msg: { t: "msg", id: "3", text: "3" },
  });
  a.abort("test");
  await collect(b, (e) => e.kind === "closed");
});

Deno.test("SecureChannel discards a cleartext frame after login instead of acting on it (rule 3.6)", async () => {
  const { a, b, tb } = channels();
  tb.inject(new TextEncoder().encode('\x02{"t":"list"}'));
  const evs = await collect(b, () => true);
  assert.equal(evs[0]?.kind, "discarded");
  a.abort("test");
  await collect(b, (e) => e.kind === "closed");
});

Deno.test("SecureChannel discards a DATA record that is not a valid message", async () => {
  const { a, b, tb } = channels();
  // A record sealed with the right keys whose body is not JSON.
  const bogus = new RecordSealer(keys(1)).seal(
    0x02,
    new TextEncoder().encode("not json"),
  );
  tb.inject(bogus);
  const evs = await collect(b, () => true);
  assert.ok(
    evs[0]?.kind === "discarded" && evs[0].error.code === "bad-message",
  );
  a.abort("test");
  await collect(b, (e) => e.kind === "closed");
});

Deno.test("heartbeats keep an idle channel open, and a silent peer is declared gone (peer-silent)", async () => {
  const { a, b, ta } = channels({ heartbeatMs: 40, deadAfterMs: 200 });
  // Both sides idle for 400 ms: heartbeats flow, nothing closes.
  const bEvents = collect(b, (e) => e.kind === "closed");
  const aEvents = collect(a, (e) => e.kind === "closed");
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(a.closed || b.closed, false);
  assert.ok(
    ta.sent.length >= 3,
    `expected heartbeats, got ${ta.sent.length} records`,
  );
  // Now a goes silent: its records no longer reach b.
  ta.tap = () => [];
  const evs = await bEvents;
  const last = evs.at(-1);
  assert.ok(last?.kind === "closed" && last.error?.code === "peer-silent");
  a.abort("test");
  await aEvents;
});

Deno.test("a channel whose sequence numbers are exhausted refuses to send and closes (rule 3.5: never wraps)", async () => {
  const { a, b } = channels({}, U64_MAX);
  await a.send({ t: "ack", id: "last" });
  await assert.rejects(
    () => a.send({ t: "ack", id: "wrapped" }),
    (e: Error & { code?: string }) => e.code === "sequence-exhausted",
  );
  assert.equal(a.closed, true);
  const evs = await collect(b, (e) => e.kind === "closed");
  assert.deepEqual(evs[0], { kind: "lost", count: U64_MAX }); // the opener started at 0
  assert.deepEqual(evs[1], { kind: "message", msg: { t: "ack", id: "last" } });
});

Deno.test("HEARTBEAT records announce the sender's interval; the silence allowed is 3x the slower side's", async () => {
  const { a, b, ta } = channels({ heartbeatMs: 50 });
  // Until b has heard from a, it assumes the slowest legal interval (2 s).
  assert.equal(b.deadAfterMs, 6000);
  const bEvents = collect(b, (e) => e.kind === "closed");
  const aEvents = collect(a, (e) => e.kind === "closed");
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(a.deadAfterMs, 150);
  assert.equal(b.deadAfterMs, 150);
  const body = ta.sent.at(-1)!;
  assert.equal(body[1], 0x03, "an idle channel sends HEARTBEAT records");
  ta.tap = () => []; // a falls silent
  // Noticed by b's deadline of a few of a's intervals (deadAfterMs, 150 ms
  // above), not by the 6 s of its own: the close is peer-silent.
  const last = (await bEvents).at(-1);
  assert.ok(last?.kind === "closed" && last.error?.code === "peer-silent");
  a.abort("test");
  await aEvents;
});

Deno.test("a side with a short heartbeat does not call a side with the default interval dead before it announced itself", () => {
  const [ta] = memoryPair();
  const fast = new SecureChannel(
    ta,
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    { heartbeatMs: 50 },
  );
  try {
    assert.equal(fast.deadAfterMs, 6000);
  } finally {
    fast.abort("test");
  }
});

Deno.test("RecordChannel carries whatever its injected codec writes: the record layer knows no message format", async () => {
  const [ta, tb] = memoryPair();
  const ab = keys(1), ba = keys(10);
  const bytes = {
    encode: (m: Uint8Array) => m,
    // A copy: the channel wipes the plaintext once decode returns.
    decode: (p: Uint8Array) => {
      if (p.length === 0) throw new ProtocolError("empty", "Empty record");
      return p.slice();
    },
  };
  const a = new RecordChannel(
    ta,
    new RecordSealer(ab),
    new RecordOpener(ba),
    bytes,
    { heartbeatMs: 0 },
  );
  const b = new RecordChannel(
    tb,
    new RecordSealer(ba),
    new RecordOpener(ab),
    bytes,
    { heartbeatMs: 0 },
  );
  // Not JSON, and not a message SecureChannel would accept.
  await a.send(new Uint8Array([0xff, 0x00, 0x7b]));
  await a.send(new Uint8Array(0));
  const events = [];
  for await (const ev of b.events()) {
    events.push(ev);
    if (events.length === 2) break;
  }
  const [first, second] = events;
  assert.ok(first?.kind === "message");
  assert.deepEqual([...first.msg], [0xff, 0x00, 0x7b]);
  assert.ok(second?.kind === "discarded" && second.error.code === "empty");
  await a.close("done");
  await b.close("done");
});

// ---------------------------------------------------------------------------
// Wiping (PROTOCOL.md section 4, "Wiping"; issue 16 item 4)

/** Two raw channels whose sealers and openers the test keeps. */
function keptChannels() {
  const [ta, tb] = memoryPair();
  const ab = keys(1), ba = keys(10);
  const aSealer = new RecordSealer(ab), aOpener = new RecordOpener(ba);
  const bSealer = new RecordSealer(ba), bOpener = new RecordOpener(ab);
  const a = new SecureChannel(ta, aSealer, aOpener, { heartbeatMs: 0 });
  const b = new SecureChannel(tb, bSealer, bOpener, { heartbeatMs: 0 });
  return { a, b, aSealer, aOpener, bSealer, bOpener };
}

/** Both refuse to work: their keyed states are gone. */
function assertWiped(sealer: RecordSealer, opener: RecordOpener): void {
  assert.ok(sealer.wiped && opener.wiped);
  assertThrowsIm(
    () => sealer.seal(RecordType.DATA, utf8("after close")),
    ProtocolError,
    "closed",
  );
  const genuine = new RecordSealer(keys(10)).seal(RecordType.DATA, utf8("x"));
  assertThrowsIm(() => opener.open(genuine), ProtocolError, "closed");
}

Deno.test("close() wipes the channel's sealer and opener, on both sides: afterwards they refuse with closed instead of working with zeroed keys", async () => {
  const { a, b, aSealer, aOpener, bSealer, bOpener } = keptChannels();
  await a.send({ t: "msg", id: "1", text: "hello" });
  await a.close("disconnect");
  assertWiped(aSealer, aOpener);
  // b wipes its own when it reads the CLOSE record.
  const evs = await collect(b, (e) => e.kind === "closed");
  assert.deepEqual(evs.at(-1), { kind: "closed", reason: "disconnect" });
  assertWiped(bSealer, bOpener);
});

Deno.test("abort() and a silent peer wipe the channel's sealer and opener too", async () => {
  const { a, aSealer, aOpener } = keptChannels();
  a.abort("test");
  assertWiped(aSealer, aOpener);
  const [t] = memoryPair();
  const sealer = new RecordSealer(keys(1)), opener = new RecordOpener(keys(10));
  const silent = new SecureChannel(t, sealer, opener, {
    heartbeatMs: 50,
    deadAfterMs: 150,
  });
  const evs = await collect(silent, (e) => e.kind === "closed");
  const last = evs.at(-1);
  assert.ok(last?.kind === "closed" && last.error?.code === "peer-silent");
  assertWiped(sealer, opener);
});

Deno.test("a DATA record's plaintext is zeroed as soon as the codec decoded it, before the message is reported; a plaintext the codec refused too", async () => {
  const [ta, tb] = memoryPair();
  const ab = keys(1), ba = keys(10);
  const given: Uint8Array[] = [];
  const keeper = {
    encode: (m: string) => utf8(m),
    decode: (p: Uint8Array) => {
      given.push(p); // a reference to the channel's own buffer
      const text = new TextDecoder().decode(p);
      if (text === "refuse me") throw new ProtocolError("bad-message", "No");
      return text;
    },
  };
  const a = new RecordChannel(
    ta,
    new RecordSealer(ab),
    new RecordOpener(ba),
    keeper,
    { heartbeatMs: 0 },
  );
  const b = new RecordChannel(
    tb,
    new RecordSealer(ba),
    new RecordOpener(ab),
    keeper,
    { heartbeatMs: 0 },
  );
  await a.send("the secret text");
  await a.send("refuse me");
  const seen: string[] = [];
  for await (const ev of b.events()) {
    // Checked at the moment each event is reported.
    const p = given.at(-1)!;
    assert.ok(p.length > 0 && p.every((x) => x === 0), "plaintext zeroed");
    seen.push(ev.kind === "message" ? ev.msg : ev.kind);
    if (seen.length === 2) break;
  }
  assert.deepEqual(seen, ["the secret text", "discarded"]);
  assert.equal(given.length, 2);
  a.abort("test");
  b.abort("test");
});

Deno.test("what the codec encoded for a DATA record is zeroed once sealed, and when it is refused as too large", async () => {
  const [ta] = memoryPair();
  const made: Uint8Array[] = [];
  const keeper = {
    encode: (m: string) => {
      const b = utf8(m);
      made.push(b);
      return b;
    },
    decode: (p: Uint8Array) => new TextDecoder().decode(p),
  };
  const a = new RecordChannel(
    ta,
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    keeper,
    { heartbeatMs: 0, maxRecordBytes: 100 },
  );
  await a.send("the secret text");
  await assertRejectsIm(
    () => a.send("x".repeat(51)),
    ProtocolError,
    "message-too-large",
  );
  assert.equal(made.length, 2);
  for (const b of made) assert.ok(b.every((x) => x === 0), "encoding zeroed");
  // The frame on the wire is the sealed record, not the zeroed buffer.
  assert.equal(ta.sent.length, 1);
  assert.ok(ta.sent[0]!.some((x) => x !== 0));
  a.abort("test");
});

// ---------------------------------------------------------------------------
// Loss accounting (PROTOCOL.md section 4, "Loss accounting"; issue 17 item 3)

/** What the receiving channel reported, in order, as short strings. */
function summary(evs: ChannelEvent[]): string[] {
  return evs.map((e) =>
    e.kind === "message"
      ? `message ${(e.msg as { id: string }).id}`
      : e.kind === "discarded"
      ? `discarded ${e.error.code}`
      : e.kind === "lost"
      ? `lost ${e.count}`
      : `closed ${e.reason}`
  );
}

/** A tampered copy of a record: its last tag bit flipped. */
function tamper(p: Uint8Array): Uint8Array {
  const x = new Uint8Array(p);
  x[x.length - 1]! ^= 1;
  return x;
}

/**
 * Send records 0..n-1 from a to b (no heartbeats, so record i is message
 * `i`) through `fate`, which says what b receives for record i; then the
 * events b reports up to the last message.
 */
async function lossCase(
  n: number,
  fate: (i: number, p: Uint8Array) => Uint8Array[],
): Promise<string[]> {
  const { a, b, ta } = channels();
  let i = 0;
  ta.tap = (p) => fate(i++, p);
  for (let k = 0; k < n; k++) {
    await a.send({ t: "msg", id: String(k), text: `m${k}` });
  }
  const evs = await collect(
    b,
    (e) => e.kind === "message" && e.msg.t === "msg" && e.msg.id === `${n - 1}`,
  );
  a.abort("test");
  await collect(b, (e) => e.kind === "closed");
  return summary(evs);
}

Deno.test("issue 17 examples: 2 tampered records and a valid one at the skipped-ahead number report no loss; 1 tampered record and a skip of 3 report 3 lost, not 4", async () => {
  // Example 1: records 0 and 1 arrive tampered, record 2 intact.
  // gap = 2, d = 2: no loss.
  assert.deepEqual(
    await lossCase(3, (i, p) => (i < 2 ? [tamper(p)] : [p])),
    ["discarded tampered", "discarded tampered", "message 2"],
  );
  // Example 2: record 0 arrives tampered, records 1, 2, 3 never arrive,
  // record 4 intact. gap = 4, d = 1: lost 3.
  assert.deepEqual(
    await lossCase(
      5,
      (i, p) => (i === 0 ? [tamper(p)] : i <= 3 ? [] : [p]),
    ),
    ["discarded tampered", "lost 3", "message 4"],
  );
  // The opener itself reports the raw gap; the channel subtracts the refusals.
  const k = keys(1);
  const sealer = new RecordSealer(k), opener = new RecordOpener(k);
  const recs = [0, 1, 2, 3, 4].map(() =>
    sealer.seal(0x02, new TextEncoder().encode("{}"))
  );
  assert.equal(opener.open(recs[2]!).lost, 2n, "example 1: gap 2");
  const fresh = new RecordOpener(k);
  assert.equal(fresh.open(recs[4]!).lost, 4n, "example 2: gap 4");
});

Deno.test("loss accounting: stale and malformed refusals fill holes like tampered ones; replayed copies and cleartext frames do not", async () => {
  // A stale copy of record 0 (right keys and number, old timestamp), then
  // record 2: gap 2, d = 1 (the stale refusal), lost 1.
  const stale = (seq: number) =>
    new RecordSealer(keys(1), BigInt(seq)).seal(
      0x02,
      new TextEncoder().encode('{"t":"msg","id":"old","text":"x"}'),
      Date.now() - 10 * 60_000,
    );
  assert.deepEqual(
    await lossCase(3, (i, p) => (i === 0 ? [stale(0)] : i === 1 ? [] : [p])),
    ["discarded stale", "lost 1", "message 2"],
  );
  // A record cut below 50 bytes is malformed and fills one hole.
  assert.deepEqual(
    await lossCase(2, (i, p) => (i === 0 ? [p.slice(0, 20)] : [p])),
    ["discarded malformed", "message 1"],
  );
  // Record 0 delivered twice, record 1 lost, record 2 intact: the replayed
  // copy explains nothing, so gap 1 is reported in full.
  assert.deepEqual(
    await lossCase(3, (i, p) => (i === 0 ? [p, p] : i === 1 ? [] : [p])),
    ["message 0", "discarded replayed", "lost 1", "message 2"],
  );
  // A cleartext frame in place of record 0 is unexpected-frame, not a
  // refused record: record 1 arrives with gap 1, reported in full.
  assert.deepEqual(
    await lossCase(
      2,
      (i, p) => (i === 0 ? [Uint8Array.of(0x0e, 2, 0, 0)] : [p]),
    ),
    ["discarded unexpected-frame", "lost 1", "message 1"],
  );
});

Deno.test("loss accounting: surplus refusals are forgotten at the next accepted record, and the count starts again from zero", async () => {
  // Two forged records (tampered) with nothing missing: record 0 arrives
  // with gap 0, no loss. Then record 1 is lost and record 2 arrives: the
  // earlier surplus does not hide that loss.
  assert.deepEqual(
    await lossCase(
      3,
      (i, p) => i === 0 ? [tamper(p), tamper(p), p] : i === 1 ? [] : [p],
    ),
    [
      "discarded tampered",
      "discarded tampered",
      "message 0",
      "lost 1",
      "message 2",
    ],
  );
});

Deno.test("a send that fails while the channel is being read does not end it at once: the records the peer sent before it went are still reported, then the end", async () => {
  const { a, b, tb } = channels();
  await a.send({ t: "msg", id: "1", text: "one" });
  await a.send({ t: "closing", reason: "shutdown", message: "bye" });
  // The socket under b refuses writes (the peer reset it), as TcpTransport
  // does once a write failed; reading goes on.
  tb.send = () => Promise.reject(new NetError("closed", "Connection lost"));
  const seen: ChannelEvent[] = [];
  for await (const ev of b.events()) {
    seen.push(ev);
    if (ev.kind === "message" && seen.length === 1) {
      await assertRejectsIm(
        () => b.send({ t: "ack", id: "1" }),
        NetError,
        "closed",
      );
      assert.ok(!b.closed, "a failed send ended a channel still being read");
      await a.close("shutdown");
    }
  }
  assert.deepEqual(seen.map((e) => e.kind), ["message", "message", "closed"]);
  assert.deepEqual(seen[1], {
    kind: "message",
    msg: { t: "closing", reason: "shutdown", message: "bye" },
  });
  assert.equal(seen[2]?.kind === "closed" && seen[2].reason, "shutdown");
});

Deno.test("a send that fails while no one reads the channel ends it at once with connection-lost", async () => {
  const { a, b, tb } = channels();
  tb.send = () => Promise.reject(new NetError("closed", "Connection lost"));
  await assertRejectsIm(
    () => b.send({ t: "ack", id: "1" }),
    NetError,
    "closed",
  );
  assert.ok(b.closed);
  await a.close();
});

Deno.test("a heartbeat that cannot be written ends the channel with connection-lost, through the transport's post() or, without one, its send()", async () => {
  for (const via of ["post", "send"] as const) {
    const scheduled = heartbeats.size;
    const [ta, tb] = memoryPair();
    const lost = new NetError("closed", "Connection lost");
    const posted: Uint8Array[] = [];
    if (via === "post") {
      (tb as FrameTransport).post = (payload, failed) => {
        posted.push(payload);
        failed(lost);
      };
    } else tb.send = () => Promise.reject(lost);
    const o = { heartbeatMs: 1000 };
    const a = new SecureChannel(
      ta,
      new RecordSealer(keys(1)),
      new RecordOpener(keys(10)),
      o,
    );
    // Its first heartbeat, announcing its interval, goes at once.
    const b = new SecureChannel(
      tb,
      new RecordSealer(keys(10)),
      new RecordOpener(keys(1)),
      o,
    );
    if (via === "post") {
      assert.equal(posted.length, 1, "the heartbeat went through post()");
      // The record after the 4 bytes the transport frames it with.
      assert.equal(posted[0]![4], 0x10);
      assert.equal(posted[0]![5], RecordType.HEARTBEAT);
      assert.ok(b.closed, `${via}: a failed heartbeat left the channel open`);
    } else {
      await new Promise((r) => setTimeout(r, 0));
      assert.ok(b.closed, `${via}: a failed heartbeat left the channel open`);
    }
    const events = await collect(b, () => false);
    assert.deepEqual(events.map((e) => e.kind), ["closed"]);
    assert.equal(
      events[0]?.kind === "closed" && events[0].reason,
      "connection-lost",
    );
    await a.close();
    assert.equal(
      heartbeats.size,
      scheduled,
      `${via}: a channel stayed in the scheduler`,
    );
  }
});
