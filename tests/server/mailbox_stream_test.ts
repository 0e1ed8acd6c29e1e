/**
 * `MailStream` alone (PROTOCOL.md 9.8): no wake-up is lost however it
 * lands against the pump's end, and a stream that cannot go on stops and
 * says so instead of skipping records.
 * @module
 */

import assert from "node:assert/strict";
import {
  MailStream,
  type StreamChannel,
} from "../../lib/server/mailbox_stream.ts";
import { MemoryStore, type Store } from "../../lib/server/mod.ts";
import type { ServerToClient } from "../../lib/proto/mod.ts";
import { sleep } from "../../lib/util/mod.ts";

/** A channel that keeps what it is sent; `fail` makes each send reject. */
class Sink implements StreamChannel {
  readonly sent: ServerToClient[] = [];
  readonly transport = { queuedBytes: 0 };
  closed = false;
  fail: Error | undefined;
  send(msg: ServerToClient): Promise<void> {
    if (this.fail) return Promise.reject(this.fail);
    this.sent.push(msg);
    return Promise.resolve();
  }
}

/** Poll until `cond` holds (a lost wake-up never makes it hold). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`never: ${what}`);
    await sleep(2);
  }
}

/** A mail record the stream can push: `0x01 || MAIL` with a readable header. */
function mailRecord(): Uint8Array {
  const name = (n: string) => [n.length, ...new TextEncoder().encode(n)];
  const header = [
    1,
    ...name("A"),
    ...name("B"),
    ...new Array(16).fill(7), // msg_id
    ...new Array(8).fill(0), // time
    0,
    0,
    0,
    1, // spk_id
    0,
    0,
    0,
    0, // opk_id
    ...new Array(64).fill(9), // ik, ek
  ];
  return new Uint8Array([1, ...header, ...new Array(64 + 32).fill(5)]);
}

Deno.test("a wake() at any point around the end of the pump is never lost: a record committed then is pushed", async () => {
  for (let depth = 0; depth < 12; depth++) {
    const mem = new MemoryStore();
    let release!: () => void;
    let first = true;
    // The first read waits, so the test can land its wake at a chosen
    // number of microtasks after the pump's last read.
    const store: Store = Object.assign(Object.create(mem), {
      read: async (u: string, o: { after?: number; limit?: number }) => {
        if (first) {
          first = false;
          await new Promise<void>((r) => (release = r));
        }
        return await mem.read(u, o);
      },
    });
    const sink = new Sink();
    const stream = new MailStream({
      user: "B",
      store,
      channel: sink,
      window: 8,
      log: () => {},
    });
    stream.wake();
    await Promise.resolve();
    release();
    let p = Promise.resolve();
    for (let i = 0; i < depth; i++) p = p.then(() => {});
    await p.then(async () => {
      await mem.append("B", mailRecord());
      stream.wake();
    });
    await until(
      () => sink.sent.some((m) => m.t === "mail"),
      `the record pushed (wake at microtask depth ${depth})`,
    );
    stream.close();
    await stream.done();
  }
});

Deno.test("a push the open connection refuses stops the stream and tells the mailbox, so no later acknowledgement can delete the record unhandled", async () => {
  const store = new MemoryStore();
  await store.append("B", mailRecord());
  const sink = new Sink();
  sink.fail = new Error("message-too-large");
  const failed: string[] = [];
  const stream = new MailStream({
    user: "B",
    store,
    channel: sink,
    window: 8,
    log: () => {},
    onFailed: (why) => failed.push(why),
  });
  stream.wake();
  await until(() => failed.length === 1, "the stream reported its failure");
  assert.match(failed[0]!, /message-too-large/);
  await stream.done();
  assert.equal((await store.read("B")).length, 1, "the record stays");
});

Deno.test("a store that fails while pushing stops the stream and tells the mailbox", async () => {
  const mem = new MemoryStore();
  const store: Store = Object.assign(Object.create(mem), {
    read: () => Promise.reject(new Error("disk I/O error")),
  });
  const failed: string[] = [];
  const stream = new MailStream({
    user: "B",
    store,
    channel: new Sink(),
    window: 8,
    log: () => {},
    onFailed: (why) => failed.push(why),
  });
  stream.wake();
  await until(() => failed.length === 1, "the stream reported its failure");
  assert.match(failed[0]!, /disk I\/O error/);
  await stream.done();
});
