/**
 * Cumulative receipts through the server's relay (PROTOCOL.md section 6,
 * "Receipts", and 6.1): two real clients in a relayed session on an
 * in-process server; the receiver's server link runs through a frame MITM
 * that counts what it sends. The server forwards a sealed `ack` like any
 * record, so the relay behaves as a direct link does: one receipt shown per
 * message, in order, from fewer `ack` records than messages.
 */

import assert from "node:assert/strict";
import type { UiEvent } from "../lib/client/mod.ts";
import { started, until, withScope } from "./_fixtures.ts";

const system = (re: RegExp) => (e: UiEvent) =>
  e.kind === "system" && re.test(e.text);

const isReceipt = (e: UiEvent) => e.kind === "receipt";

Deno.test("through the server's relay: 100 messages sent in bursts show 100 receipts in order, from fewer ack records than messages, and none is reported undelivered", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const a = await s.client(port, "A", { relay: true });
    await a.client.handleLine("!session host");
    await a.ui.waitFor(system(/^Hosting/));
    // B's server link through a MITM: what B sends is counted there.
    const bLink = s.mitm(port);
    const b = await s.client(bLink.port, "B", { relay: true });
    const aMark = a.ui.mark, bMark = b.ui.mark;
    await b.client.handleLine("!session A");
    await b.ui.waitFor(started, bMark);
    await a.ui.waitFor(started, aMark);
    const upBefore = bLink.seen("up").length;
    const texts: string[] = [];
    // Bursts of 20: a relay holds at most 64 frames its session has not read.
    for (let burst = 0; burst < 5; burst++) {
      const lines = Array.from({ length: 20 }, (_, i) => `m${burst * 20 + i}`);
      texts.push(...lines);
      await Promise.all(lines.map((l) => a.client.handleLine(l)));
      await until(
        () =>
          b.ui.since((e) => e.kind === "message" && e.direction === "in", bMark)
            .length === texts.length,
        "B to show the burst",
      );
    }
    await until(
      () => a.ui.since(isReceipt, aMark).length === 100,
      "A's 100 receipts",
    );
    const sent = a.ui.since(
      (e) => e.kind === "message" && e.direction === "out",
      aMark,
    );
    assert.deepEqual(
      sent.map((e) => e.kind === "message" && e.text),
      texts,
    );
    const ids = sent.map((e) => e.kind === "message" && e.id);
    const receipts = a.ui.since(isReceipt, aMark);
    assert.deepEqual(
      receipts.map((e) => e.kind === "receipt" && [e.id, e.status]),
      ids.map((id) => [id, "delivered"]),
      "one delivered receipt per message, in order",
    );
    // Every frame B sent meanwhile is a relayed `ack` (nothing else is due):
    // at least 2 (a run is at most 64), fewer than the messages.
    const acks = bLink.seen("up").length - upBefore;
    assert.ok(acks >= 2 && acks < 100, `${acks} ack records for 100 messages`);
    const mark = a.ui.mark;
    await b.client.handleLine("!disconnect");
    await a.ui.waitFor(
      (e) => e.kind === "session" && e.state === "ended",
      mark,
    );
    assert.deepEqual(a.ui.since(isReceipt, mark), [], "nothing undelivered");
  });
});
