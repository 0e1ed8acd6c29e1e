import assert from "node:assert/strict";
import { ProtocolError, U64_MAX } from "../lib/util/mod.ts";
import {
  RecordChannel,
  RecordOpener,
  RecordSealer,
} from "../lib/record/mod.ts";
import { type ChannelEvent, SecureChannel } from "../lib/proto/mod.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import { memoryPair } from "../lib/wire/mod.ts";

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
  const started = Date.now();
  ta.tap = () => []; // a falls silent
  const last = (await bEvents).at(-1);
  assert.ok(last?.kind === "closed" && last.error?.code === "peer-silent");
  assert.ok(
    Date.now() - started < 2000,
    "a silent fast peer is noticed after a few of its intervals",
  );
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
    decode: (p: Uint8Array) => {
      if (p.length === 0) throw new ProtocolError("empty", "Empty record");
      return p;
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
