import assert from "node:assert/strict";
import { RecordOpener, RecordSealer } from "../lib/record/mod.ts";
import { SecureChannel } from "../lib/proto/mod.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import { NetError, ProtocolError } from "../lib/util/mod.ts";
import { FrameKind, memoryPair } from "../lib/wire/mod.ts";
import {
  type PeerEvent,
  PeerSession,
  readPeerCommit,
  RELAY_QUEUE_MAX_BYTES,
  RELAY_QUEUE_MAX_FRAMES,
  RelayTransport,
} from "../lib/client/mod.ts";
import { assertRejectsIm } from "./_helpers.ts";

function keys(seed: number): DirectionKeys {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

function sessions() {
  const [ta, tb] = memoryPair();
  const h2j = keys(1), j2h = keys(7);
  const a = new PeerSession(
    "A",
    "B",
    "000 000 000 000",
    "direct",
    new SecureChannel(ta, new RecordSealer(h2j), new RecordOpener(j2h), {
      heartbeatMs: 0,
    }),
  );
  const b = new PeerSession(
    "B",
    "A",
    "000 000 000 000",
    "direct",
    new SecureChannel(tb, new RecordSealer(j2h), new RecordOpener(h2j), {
      heartbeatMs: 0,
    }),
  );
  return { a, b, ta, tb };
}

async function next(it: AsyncIterator<PeerEvent>): Promise<PeerEvent> {
  const r = await it.next();
  assert.ok(!r.done, "events ended early");
  return r.value;
}

Deno.test("PeerSession delivers a message and the sender gets its receipt (issue 6: delivery receipts)", async () => {
  const { a, b } = sessions();
  const ea = a.events(), eb = b.events();
  const id = await a.sendText("hello");
  assert.deepEqual(await next(eb), { kind: "text", id, text: "hello" });
  assert.deepEqual(await next(ea), { kind: "delivered", id });
  await a.close();
  assert.deepEqual(await next(eb), {
    kind: "ended",
    reason: "disconnect",
    undelivered: [],
  });
  assert.equal((await next(ea)).kind, "ended");
});

Deno.test("PeerSession lists messages without a receipt as undelivered when the session ends", async () => {
  const { a, b, ta } = sessions();
  const ea = a.events();
  ta.tap = () => []; // the link drops everything from here on
  const id = await a.sendText("lost in transit");
  b.channel.abort("test");
  const ended = await next(ea);
  assert.equal(ended.kind, "ended");
  assert.deepEqual(ended.kind === "ended" && ended.undelivered, [{
    id,
    text: "lost in transit",
  }]);
});

Deno.test("PeerSession gives every message a distinct id", async () => {
  const { a, b } = sessions();
  const ids = new Set<string>();
  for (let i = 0; i < 50; i++) ids.add(await a.sendText(`m${i}`));
  assert.equal(ids.size, 50);
  a.channel.abort("test");
  b.channel.abort("test");
});

Deno.test('PeerSession refuses a receipt for a message it never sent (bad-receipt, PROTOCOL.md section 6, "Receipts"), and reports an unexpected message', async () => {
  const { a, b } = sessions();
  const ea = a.events();
  await b.channel.send({ t: "ack", id: "never-sent" });
  await b.channel.send({ t: "list" });
  let ev = await next(ea);
  assert.equal(ev.kind === "problem" && ev.code, "bad-receipt");
  ev = await next(ea);
  assert.equal(ev.kind, "problem");
  assert.equal(ev.kind === "problem" && ev.code, "unexpected-message");
  a.channel.abort("test");
  b.channel.abort("test");
});

Deno.test("RelayTransport sends base64 through its sender and hands relayed frames back in order", async () => {
  const sent: string[] = [];
  const t = new RelayTransport("B", (d) => {
    sent.push(d);
    return Promise.resolve();
  });
  await t.send(new Uint8Array([0x21, 1, 2]));
  assert.deepEqual(sent, ["IQEC"]);
  t.deliver("AQ==");
  t.deliver("not base64!");
  t.deliver("Ag==");
  assert.deepEqual(await t.recv(), new Uint8Array([1]));
  assert.deepEqual(await t.recv(), new Uint8Array([2]));
  const pending = t.recv();
  t.close();
  assert.equal(await pending, null);
  await assert.rejects(() => t.send(new Uint8Array([1])));
  assert.equal(t.remote, "relay:B");
});

Deno.test("RelayTransport closes when more than RELAY_QUEUE_MAX_FRAMES frames wait unread, and drops them", async () => {
  const t = new RelayTransport("B", () => Promise.resolve());
  for (let i = 0; i < RELAY_QUEUE_MAX_FRAMES; i++) t.deliver("AQ==");
  assert.equal(t.closed, false, "a full queue is still open");
  t.deliver("AQ==");
  assert.equal(t.closed, true, "one more frame closes it");
  assert.equal(await t.recv(), null, "what waited is dropped");
  await assert.rejects(() => t.send(new Uint8Array([1])));
});

Deno.test("RelayTransport closes when more than RELAY_QUEUE_MAX_BYTES wait unread; frames read in time keep it open", async () => {
  const big = new Uint8Array(256 * 1024).toBase64();
  const t = new RelayTransport("B", () => Promise.resolve());
  for (let i = 0; i < 4; i++) t.deliver(big); // exactly 1 MiB
  assert.equal(t.closed, false);
  assert.equal((await t.recv())?.length, 256 * 1024); // one read: room again
  t.deliver(big);
  assert.equal(t.closed, false);
  t.deliver("AQ==");
  assert.equal(t.closed, true);
  assert.equal(RELAY_QUEUE_MAX_BYTES, 1024 * 1024);
  // A reader that keeps up can take any number of frames.
  const u = new RelayTransport("C", () => Promise.resolve());
  for (let i = 0; i < 10 * RELAY_QUEUE_MAX_FRAMES; i++) {
    u.deliver("AQ==");
    assert.deepEqual(await u.recv(), new Uint8Array([1]));
  }
  assert.equal(u.closed, false);
  u.close();
});

Deno.test("readPeerCommit() sends nothing to a connection that stays silent, and times out with peer-timeout", async () => {
  const [host, stranger] = memoryPair();
  await assertRejectsIm(
    () => readPeerCommit(host, 50),
    NetError,
    "peer-timeout",
  );
  assert.equal(host.sent.length, 0, "not even the ticket went out");
  assert.equal(await stranger.recv(), null, "and the connection is closed");
});

Deno.test("readPeerCommit() refuses a first frame that is not a PEER_COMMIT, and returns a well-formed one", async () => {
  for (
    const first of [
      new Uint8Array([FrameKind.PEER_HELLO, 1, 2]),
      new Uint8Array([FrameKind.PEER_COMMIT, 1]),
      // The 33 bytes of the former PEER_COMMIT, commit[32] alone.
      new Uint8Array(33).fill(FrameKind.PEER_COMMIT, 0, 1),
      new Uint8Array(82).fill(FrameKind.PEER_COMMIT, 0, 1),
    ]
  ) {
    const [host, stranger] = memoryPair();
    await stranger.send(first);
    await assertRejectsIm(() => readPeerCommit(host, 1000), ProtocolError);
    assert.equal(host.sent.length, 0);
    host.close();
  }
  const [host, joiner] = memoryPair();
  const commit = new Uint8Array(1 + 16 + 32 + 32).fill(7);
  commit[0] = FrameKind.PEER_COMMIT;
  await joiner.send(commit);
  assert.deepEqual(await readPeerCommit(host, 1000), commit);
  host.close();
});
