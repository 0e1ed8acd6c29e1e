import assert from "node:assert/strict";
import { SecureChannel } from "../lib/channel.ts";
import type { DirectionKeys } from "../lib/kdf.ts";
import { type PeerEvent, PeerSession, RelayTransport } from "../lib/peer.ts";
import { RecordOpener, RecordSealer } from "../lib/record.ts";
import { memoryPair } from "./_memory_transport.ts";

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

Deno.test("PeerSession ignores a receipt for a message it never sent, and reports an unexpected message", async () => {
  const { a, b } = sessions();
  const ea = a.events();
  await b.channel.send({ t: "ack", id: "never-sent" });
  await b.channel.send({ t: "list" });
  const ev = await next(ea);
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
