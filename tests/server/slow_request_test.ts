/**
 * A request the server is slow to answer does not end the client's link
 * (PROTOCOL.md section 4 "Heartbeats", 5.1, 11.6; lib/server/read_ahead.ts):
 * the server reads the client's records on while it awaits the request, so
 * the client's HEARTBEATs keep it alive, and the request's answer comes
 * when it is ready. Seen in tests/e2e/cluster_faults_test.ts: while
 * JetStream elected a stream leader (about 5 s) a node awaited a mail's
 * store, stopped reading A, declared A silent after 3 s (3 x its 1 s
 * interval) and closed the link: A was told "it may not arrive".
 * @module
 */

import assert from "node:assert/strict";
import { MemoryPrekeys, MemoryStore } from "../../lib/server/mod.ts";
import { READ_AHEAD_MESSAGES, readAhead } from "../../lib/server/read_ahead.ts";
import { sleep } from "../../lib/util/mod.ts";
import type { UiEvent } from "../../lib/client/mod.ts";
import { until, withScope } from "../_fixtures.ts";

/** The server's heartbeat: a client silent for 3 s is gone. */
const SERVER_HEARTBEAT_MS = 1_000;
/** How long the store takes to commit: past that bound, with room. */
const STORE_MS = 6_000;

/** A MemoryStore whose appends take {@link STORE_MS} once `slow` is set. */
class SlowStore extends MemoryStore {
  slow = false;
  appending = 0;
  override async append(
    ...a: Parameters<MemoryStore["append"]>
  ): ReturnType<MemoryStore["append"]> {
    if (this.slow) {
      this.appending++;
      await sleep(STORE_MS);
    }
    return await super.append(...a);
  }
}

const storedReceipt = (e: UiEvent) =>
  e.kind === "receipt" && e.status === "stored";

Deno.test("a store that takes 6 s to commit a mail: the client's link stays up and the mail is reported stored", async () => {
  const store = new SlowStore();
  await withScope(async (s) => {
    const t = await s.server({
      heartbeatMs: SERVER_HEARTBEAT_MS,
      store,
      prekeys: new MemoryPrekeys(),
    });
    // B publishes its mailbox keys, then leaves.
    const b = await s.client(t.port, "B", { heartbeatMs: 200 });
    await b.client.quit();
    const a = await s.client(t.port, "A", { heartbeatMs: 200 });
    await a.client.handleLine("!msg B a first one");
    await a.ui.waitFor(storedReceipt);
    const mark = a.ui.mark;
    store.slow = true;
    await a.client.handleLine("!msg B while the store is slow");
    await until(() => store.appending === 1, "the append under way");
    const receipt = await a.ui.waitFor(storedReceipt, mark, STORE_MS * 3);
    const sent = a.ui.events.slice(mark).find((e) =>
      e.kind === "mail" && e.direction === "out"
    );
    assert.ok(sent?.kind === "mail" && receipt.kind === "receipt");
    assert.equal(receipt.id, sent.id);
    // No "Disconnected", no "it may not arrive": the link never dropped.
    assert.deepEqual(
      a.ui.events.slice(mark).filter((e) => e.kind === "error"),
      [],
    );
    assert.ok(!t.log.some((l) => l.event === "leave" && l.fields.user === "A"));
    // And it still answers.
    store.slow = false;
    const m2 = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor((e) => e.kind === "list", m2);
  });
});

Deno.test("readAhead: items in order, the source read while the consumer is busy, at most max waiting", async () => {
  let pulled = 0;
  let ended = false;
  async function* source() {
    try {
      for (let i = 0; i < 100; i++) {
        pulled++;
        yield i;
        await Promise.resolve();
      }
    } finally {
      ended = true;
    }
  }
  const seen: number[] = [];
  for await (const n of readAhead(source(), 4)) {
    if (n === 0) {
      // Busy with the first: the rest is read meanwhile, up to 4 waiting.
      await until(() => pulled >= 5, "read ahead");
      await sleep(20);
      assert.equal(pulled, 5);
    }
    seen.push(n);
  }
  assert.deepEqual(seen, Array.from({ length: 100 }, (_, i) => i));
  assert.ok(ended);
  assert.ok(READ_AHEAD_MESSAGES >= 8);
});

Deno.test("readAhead: the source's error comes after the items read before it", async () => {
  async function* source() {
    yield 1;
    yield 2;
    throw new Error("boom");
  }
  const seen: number[] = [];
  await assert.rejects(async () => {
    for await (const n of readAhead(source())) seen.push(n);
  }, /boom/);
  assert.deepEqual(seen, [1, 2]);
});
