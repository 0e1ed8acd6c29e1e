/**
 * Lines typed in a burst are sealed and queued without waiting for each
 * write (issue 15), over a real loopback TCP connection: their order, the
 * echo of each, a receipt each, errors per line, and the bound on what
 * waits to be written (PeerSession.room, MAX_SEND_AHEAD).
 * @module
 */

import assert from "node:assert/strict";
import { RecordOpener, RecordSealer } from "../lib/record/mod.ts";
import { SecureChannel } from "../lib/proto/mod.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import { TcpTransport } from "../lib/wire/mod.ts";
import {
  MAX_MESSAGE_BYTES,
  MAX_SEND_AHEAD,
  type NewEvent,
  type PeerEvent,
  PeerSession,
} from "../lib/client/mod.ts";
import type { ClientContext } from "../lib/client/options.ts";
import { sendText } from "../lib/client/session_view.ts";

function keys(seed: number): DirectionKeys {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

/** A (sender) and B over a real loopback TCP connection. */
async function tcpPair(): Promise<{ a: PeerSession; b: PeerSession }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const [ca, cb] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
      listener.accept(),
    ]);
    const s = (
      c: Deno.Conn,
      self: string,
      peer: string,
      o: number,
      i: number,
    ) =>
      new PeerSession(
        self,
        peer,
        "000 000 000 000",
        "direct",
        new SecureChannel(
          TcpTransport.wrap(c),
          new RecordSealer(keys(o)),
          new RecordOpener(keys(i)),
          { heartbeatMs: 0, pad: true },
        ),
      );
    return { a: s(ca, "A", "B", 1, 7), b: s(cb, "B", "A", 7, 1) };
  } finally {
    listener.close();
  }
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
  const waitFor = async (cond: () => boolean) => {
    while (!cond()) await new Promise<void>((r) => (wake = r));
  };
  return { evs, done, waitFor };
}

/** What the client shows, collected. */
function screen(user: string) {
  const shown: NewEvent[] = [];
  const ctx = { o: { user }, print: (ev: NewEvent) => shown.push(ev) };
  return { shown, ctx: ctx as unknown as ClientContext };
}

Deno.test("a burst of 1,000 lines typed into a TCP session, none waiting for its write: all arrive in order, each echoed, each with its receipt; a line too long is refused alone", async () => {
  const { a, b } = await tcpPair();
  const pa = pump(a), pb = pump(b);
  const { shown, ctx } = screen("A");
  const lines = Array.from({ length: 1000 }, (_, i) => `line ${i} `.repeat(10));
  for (const [i, line] of lines.entries()) {
    await sendText(ctx, a, line);
    if (i === 500) await sendText(ctx, a, "x".repeat(MAX_MESSAGE_BYTES));
  }
  const texts = () => pb.evs.filter((e) => e.kind === "text");
  await pb.waitFor(() => texts().length === 1000);
  assert.deepEqual(
    texts().map((e) => e.kind === "text" ? e.text : ""),
    lines,
    "every line, in order",
  );
  const ids = Array.from({ length: 1000 }, (_, i) => String(i + 1));
  assert.deepEqual(
    texts().map((e) => e.kind === "text" ? e.id : ""),
    ids,
  );
  await pa.waitFor(() =>
    pa.evs.filter((e) => e.kind === "delivered").length === 1000
  );
  assert.deepEqual(
    pa.evs.map((e) => e.kind === "delivered" ? e.id : e.kind),
    ids,
    "one receipt per message, in order, nothing else",
  );
  // The screen: each line's echo in order, the long one refused in its place.
  assert.equal(shown.length, 1001);
  assert.deepEqual(shown[501], {
    kind: "error",
    code: "message-too-large",
    text: shown[501]!.kind === "error" ? shown[501]!.text : "",
  });
  const echoes = shown.filter((e) => e.kind === "message");
  assert.deepEqual(
    echoes.map((e) => e.kind === "message" ? [e.id, e.text] : []),
    lines.map((l, i) => [ids[i], l]),
  );
  await a.close();
  await Promise.all([pa.done, pb.done]);
  assert.deepEqual(pa.evs.at(-1), {
    kind: "ended",
    reason: "local",
    undelivered: [],
  });
  // A session gone: the line is reported not sent, and not echoed.
  const before = shown.length;
  await sendText(ctx, a, "after the end");
  assert.equal(shown.length, before + 1);
  assert.equal(shown[before]!.kind, "error");
  assert.equal(
    shown[before]!.kind === "error" ? shown[before]!.code : "",
    "not-delivered",
  );
});

Deno.test("back-pressure: 8 MiB of lines to a peer that does not read yet: the sender waits once MAX_SEND_AHEAD waits to be written (the transport's 4 MiB queue never overflows), and all arrive in order once it reads", async () => {
  const { a, b } = await tcpPair();
  const pa = pump(a);
  const { shown, ctx } = screen("A");
  const line = "y".repeat(1024);
  const count = 8 * 1024;
  const bound = MAX_SEND_AHEAD + line.length * 6 + 64;
  let most = 0;
  const held = Promise.withResolvers<boolean>();
  const sender = (async () => {
    for (let i = 0; i < count; i++) {
      const room = sendText(ctx, a, line);
      most = Math.max(most, a.sendAhead);
      if (room) {
        held.resolve(true);
        await room;
      }
    }
    held.resolve(false);
  })();
  // B reads nothing until A is held (or, without the bound, has queued all).
  assert.ok(
    await held.promise,
    "the sender waits for room before queueing everything",
  );
  const pb = pump(b);
  await sender;
  const texts = () => pb.evs.filter((e) => e.kind === "text");
  await pb.waitFor(() => texts().length === count);
  assert.ok(
    texts().every((e, i) => e.kind === "text" && e.id === String(i + 1)),
    "in order",
  );
  assert.ok(most <= bound, `at most ${bound} bytes waited (${most})`);
  assert.equal(shown.filter((e) => e.kind === "error").length, 0);
  await pa.waitFor(() =>
    pa.evs.filter((e) => e.kind === "delivered").length === count
  );
  await a.close();
  await Promise.all([pa.done, pb.done]);
});
