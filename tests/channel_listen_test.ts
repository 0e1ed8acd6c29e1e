/**
 * RecordChannel.listen, the push mode a server reads its connections with
 * (issue 15: no suspended reader per idle connection): the same events as
 * events() for the same records, in the same order, the last always
 * `closed`; pause() stops reading until resume(); a close answers a
 * pending read once, never inside close() itself.
 */
import assert from "node:assert/strict";
import { RecordOpener, RecordSealer, RecordType } from "../lib/record/mod.ts";
import { type ChannelEvent, SecureChannel } from "../lib/proto/mod.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import {
  type FrameTransport,
  memoryPair,
  type MemoryTransport,
  TcpTransport,
} from "../lib/wire/mod.ts";

function keys(seed: number): DirectionKeys {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

/** A receiving channel on `t`, opening what a sender with keys(1) sealed. */
function receiver(t: FrameTransport): SecureChannel {
  return new SecureChannel(
    t,
    new RecordSealer(keys(10)),
    new RecordOpener(keys(1)),
    { heartbeatMs: 0 },
  );
}

/** What was reported, in order, as short strings. */
function summary(evs: ChannelEvent[]): string[] {
  return evs.map((e) =>
    e.kind === "message"
      ? `message ${(e.msg as { id: string }).id}`
      : e.kind === "discarded"
      ? `discarded ${e.error.code}`
      : e.kind === "lost"
      ? `lost ${e.count}`
      : `closed ${e.reason}${e.error ? ` ${e.error.code}` : ""}`
  );
}

function tamper(p: Uint8Array): Uint8Array {
  const x = new Uint8Array(p);
  x[x.length - 1]! ^= 1;
  return x;
}

/**
 * Payloads of every kind a channel reports on, as a sender with keys(1)
 * sealed them: messages, a tampered copy, a replay, a gap (lost), a
 * cleartext frame, a DATA record that is no message, a HEARTBEAT, an
 * unexpected record type, then a CLOSE and a message after it.
 */
async function payloads(): Promise<Uint8Array[]> {
  const [ta, tb] = memoryPair();
  ta.tap = () => [];
  const a = new SecureChannel(
    ta,
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    {
      heartbeatMs: 0,
    },
  );
  for (let k = 0; k < 6; k++) {
    await a.send({ t: "msg", id: String(k), text: `m${k}` });
  }
  await a.close("testing");
  tb.close();
  const [m0, m1, m2, m3, m4, m5, close] = ta.sent as [
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
  ];
  // Further records of the same sender, numbered after the close.
  const late = new RecordSealer(keys(1), 7n);
  const heartbeat = late.seal(
    RecordType.HEARTBEAT,
    new Uint8Array([0, 0, 7, 208]),
  );
  const bogus = late.seal(
    RecordType.DATA,
    new TextEncoder().encode("not json"),
  );
  return [
    m0,
    tamper(m1),
    m1,
    m1, // replayed
    new TextEncoder().encode('\x02{"t":"list"}'), // cleartext after login
    m3, // m2 never arrives: lost
    m4,
    heartbeat, // seq 7, after a gap: lost without an event of its own
    bogus,
    m5, // replayed (sequence number 5 is behind)
    m2, // replayed
    close, // seq 6: replayed too
    // A CLOSE with its own number after these, then a message after it.
    late.seal(RecordType.CLOSE, new TextEncoder().encode('{"reason":"done"}')),
    late.seal(
      RecordType.DATA,
      new TextEncoder().encode('{"t":"msg","id":"9","text":"after"}'),
    ),
  ];
}

async function viaEvents(input: Uint8Array[]): Promise<ChannelEvent[]> {
  const [x, y] = memoryPair();
  for (const p of input) y.inject(p.slice());
  const ch = receiver(y);
  const out: ChannelEvent[] = [];
  for await (const ev of ch.events()) out.push(ev);
  x.close();
  return out;
}

function viaListen(
  input: Uint8Array[],
  t?: (y: MemoryTransport) => FrameTransport,
): Promise<ChannelEvent[]> {
  const [x, y] = memoryPair();
  for (const p of input) y.inject(p.slice());
  const ch = receiver(t ? t(y) : y);
  const out: ChannelEvent[] = [];
  const { promise, resolve } = Promise.withResolvers<ChannelEvent[]>();
  ch.listen((ev) => {
    out.push(ev);
    if (ev.kind === "closed") {
      x.close();
      resolve(out);
    }
  });
  return promise;
}

Deno.test("listen() reports what events() reports for the same records, in the same order, closed last and once", async () => {
  const input = await payloads();
  const pulled = await viaEvents(input);
  const pushed = await viaListen(input);
  assert.deepEqual(summary(pushed), summary(pulled));
  assert.deepEqual(summary(pushed), [
    "message 0",
    "discarded tampered",
    "message 1",
    "discarded replayed",
    "discarded unexpected-frame",
    "lost 1",
    "message 3",
    "message 4",
    "lost 2",
    "discarded bad-message",
    "discarded replayed",
    "discarded replayed",
    "discarded replayed",
    "closed done",
  ]);
});

Deno.test("listen() ends with connection-lost at the end of the stream, and with protocol-error when the transport's read fails", async () => {
  const [x, y] = memoryPair();
  x.close();
  const ch = receiver(y);
  const evs: ChannelEvent[] = [];
  await new Promise<void>((resolve) =>
    ch.listen((ev) => {
      evs.push(ev);
      if (ev.kind === "closed") resolve();
    })
  );
  assert.deepEqual(summary(evs), ["closed connection-lost"]);

  const failing = await viaListen([], (t) => {
    const c = counting(t);
    c.recv = () => Promise.reject(new Error("broken"));
    return c;
  });
  assert.equal(failing.length, 1);
  assert.ok(failing[0]?.kind === "closed");
  assert.equal(failing[0].reason, "protocol-error");
});

/** A transport counting the reads asked of it. */
function counting(t: MemoryTransport): FrameTransport & { reads: number } {
  const c = {
    reads: 0,
    send: (p: Uint8Array) => t.send(p),
    recv: () => {
      c.reads++;
      return t.recv();
    },
    close: () => t.close(),
    get closed() {
      return t.closed;
    },
    get queuedBytes() {
      return t.queuedBytes;
    },
    remote: t.remote,
    remoteHost: t.remoteHost,
    maxFrameBytes: t.maxFrameBytes,
  };
  return c;
}

/** Let the pending callbacks and a timer turn run. */
function turns(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

Deno.test("pause() stops reading after the record being read; resume() reads on, in order; a close meanwhile is reported once resumed", async () => {
  const sender = new RecordSealer(keys(1));
  const msg = (id: string) =>
    sender.seal(
      RecordType.DATA,
      new TextEncoder().encode(JSON.stringify({ t: "msg", id, text: id })),
    );
  const [x, y] = memoryPair();
  const t = counting(y);
  const ch = receiver(t);
  const seen: string[] = [];
  let closedEvents = 0;
  ch.listen((ev) => {
    seen.push(...summary([ev]));
    if (ev.kind === "closed") closedEvents++;
    // Paused as a server's listener pauses, from onEvent: no read pending.
    if (
      ev.kind === "message" && ev.msg.t === "msg" &&
      (ev.msg.id === "1" || ev.msg.id === "3")
    ) {
      ch.pause();
    }
  });
  y.inject(msg("0"));
  y.inject(msg("1"));
  y.inject(msg("2"));
  y.inject(msg("3"));
  for (let i = 0; i < 5; i++) await turns();
  assert.deepEqual(seen, ["message 0", "message 1"]);
  const reads = t.reads;
  for (let i = 0; i < 5; i++) await turns();
  assert.equal(t.reads, reads, "no read while paused");
  ch.resume();
  ch.resume(); // a second resume starts no second read
  for (let i = 0; i < 5; i++) await turns();
  assert.deepEqual(seen, ["message 0", "message 1", "message 2", "message 3"]);
  // Paused after message 3, then closed: `closed` waits for resume(), and
  // comes once.
  const readsBeforeClose = t.reads;
  await ch.close("bye-test");
  await turns();
  assert.deepEqual(seen.length, 4);
  assert.equal(t.reads, readsBeforeClose);
  ch.resume();
  ch.resume();
  await turns();
  assert.deepEqual(seen.slice(4), ["closed bye-test"]);
  assert.equal(closedEvents, 1);
  x.close();
});

Deno.test("a close answers the listener's pending read once, after close() returned, and what the transport gives after is not read", async () => {
  const [x, y] = memoryPair();
  const ch = receiver(y);
  const seen: string[] = [];
  let inClose = false;
  let calledInClose = false;
  ch.listen((ev) => {
    if (inClose) calledInClose = true;
    seen.push(...summary([ev]));
  });
  await turns();
  inClose = true;
  ch.abort("aborted-test");
  inClose = false;
  assert.equal(calledInClose, false);
  for (let i = 0; i < 3; i++) await turns();
  assert.deepEqual(seen, ["closed aborted-test"]);
  x.close();
});

Deno.test("listen() cannot start on a channel that events() reads", async () => {
  const [x, y] = memoryPair();
  const ch = receiver(y);
  const it = ch.events();
  const first = it.next();
  assert.throws(() => ch.listen(() => {}), /read already/);
  ch.abort("test");
  assert.deepEqual((await first).value, { kind: "closed", reason: "test" });
  x.close();
});

Deno.test("listen() over TCP: messages from a real socket, then the peer's close, with no read left pending", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const [ct, st] = await Promise.all([
    TcpTransport.connect("127.0.0.1", port),
    listener.accept().then((c) => TcpTransport.wrap(c)),
  ]);
  listener.close();
  const client = new SecureChannel(
    ct,
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    { heartbeatMs: 0 },
  );
  const server = receiver(st);
  const seen: string[] = [];
  const done = Promise.withResolvers<void>();
  server.listen((ev) => {
    seen.push(...summary([ev]));
    if (ev.kind === "closed") done.resolve();
  });
  // A large message takes several reads of the socket.
  const big = "x".repeat(20_000);
  await client.send({ t: "msg", id: "0", text: "small" });
  await client.send({ t: "msg", id: "1", text: big });
  await client.send({ t: "msg", id: "2", text: "small" });
  await client.close("done");
  await done.promise;
  assert.deepEqual(seen, [
    "message 0",
    "message 1",
    "message 2",
    "closed done",
  ]);
});
