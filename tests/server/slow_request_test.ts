/**
 * A request the server is slow to answer does not end the client's link
 * (PROTOCOL.md section 4 "Heartbeats", 5.1, 11.6; lib/server/requests.ts):
 * the server reads the client's records on while it awaits the request, so
 * the client's HEARTBEATs keep it alive, and the request's answer comes
 * when it is ready. It reads on only so far: at most
 * {@link READ_AHEAD_MESSAGES} messages wait, past which it stops reading
 * until one is handled. Seen in tests/e2e/cluster_faults_test.ts: while
 * JetStream elected a stream leader (about 5 s) a node awaited a mail's
 * store, stopped reading A, declared A silent after 3 s (3 x its 1 s
 * interval) and closed the link: A was told "it may not arrive".
 * @module
 */

import assert from "node:assert/strict";
import { MemoryPrekeys, MemoryStore } from "../../lib/server/mod.ts";
import { READ_AHEAD_MESSAGES } from "../../lib/server/requests.ts";
import { ByteWriter, randomBytes, sleep, utf8 } from "../../lib/util/mod.ts";
import {
  type FrameListener,
  type FrameTransport,
  type Network,
  tcpNetwork,
} from "../../lib/wire/mod.ts";
import type { UiEvent } from "../../lib/client/mod.ts";
import type { ChannelEvent } from "../../lib/proto/mod.ts";
import { until, withScope } from "../_fixtures.ts";

/** The server's heartbeat: a client silent for 3 s is gone. */
const SERVER_HEARTBEAT_MS = 1_000;
/** How long the store takes to commit: past that bound, with room. */
const STORE_MS = 6_000;

/**
 * A MemoryStore whose appends take {@link STORE_MS} once `slow` is set, or
 * wait for {@link gate} while one is set.
 */
class SlowStore extends MemoryStore {
  slow = false;
  appending = 0;
  /** While set, a slow append waits for it rather than for {@link STORE_MS}. */
  gate: Promise<void> | undefined;
  override async append(
    ...a: Parameters<MemoryStore["append"]>
  ): ReturnType<MemoryStore["append"]> {
    if (this.slow) {
      this.appending++;
      await (this.gate ?? sleep(STORE_MS));
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

/** One accepted connection of {@link CountingTcp}: the frames the server took from it. */
interface Taken {
  frames: number;
}

/**
 * Real TCP for the server, with a count of the frames it took from each
 * connection it accepted (the payloads its channel's `recv()` got, in the
 * order accepted): what the server read, not what the kernel holds for it.
 */
class CountingTcp implements Network {
  readonly accepted: Taken[] = [];
  connect = tcpNetwork.connect;

  listen(...a: Parameters<Network["listen"]>): FrameListener {
    const l = tcpNetwork.listen(...a);
    return {
      accept: async () => {
        const t = await l.accept();
        this.#count(t);
        return t;
      },
      close: () => l.close(),
      get hostname() {
        return l.hostname;
      },
      get port() {
        return l.port;
      },
    };
  }

  #count(t: FrameTransport): void {
    const taken: Taken = { frames: 0 };
    this.accepted.push(taken);
    const recv = t.recv.bind(t);
    t.recv = () =>
      recv().then((p) => {
        if (p !== null) taken.frames++;
        return p;
      });
  }
}

/**
 * A `MAIL` with the layout of PROTOCOL.md 9.3 that the server can check (it
 * can check no more): random keys, one bucket (64) of random ciphertext.
 */
function mailBytes(sender: string, recipient: string): Uint8Array {
  return new ByteWriter().u8(1).bytes8(utf8(sender)).bytes8(utf8(recipient))
    .bytes(randomBytes(16)).u64(BigInt(Date.now())).u32(1).u32(0)
    .bytes(randomBytes(32)).bytes(randomBytes(32)).bytes(randomBytes(64))
    .bytes(randomBytes(32)).finish();
}

/** The `req` of an answer the bare channel got, if it is one. */
const reqOf = (e: ChannelEvent): number | undefined =>
  e.kind === "message" ? (e.msg as { req?: number }).req : undefined;

Deno.test("a stalled request: the server reads READ_AHEAD_MESSAGES more of the client's records and no further until it is answered; then all of them, in order, on the same link", async () => {
  const store = new SlowStore();
  const tcp = new CountingTcp();
  const LISTS = 40;
  await withScope(async (s) => {
    const t = await s.server({
      store,
      prekeys: new MemoryPrekeys(),
      network: tcp,
      // Every `!list` answered with a page, none refused (PROTOCOL.md 5.2).
      requestLimits: { list: { burst: LISTS, refillMs: 1000 } },
    });
    // B publishes its mailbox keys and stays, for a round trip below.
    const b = await s.client(t.port, "B");
    // A bare login: the test says every record A sends (its heartbeats are
    // 60 s apart, so none comes meanwhile).
    const a = await s.login(t.port, "A");
    const taken = tcp.accepted.at(-1)!;
    assert.equal(tcp.accepted.length, 2);

    const gate = Promise.withResolvers<void>();
    store.gate = gate.promise;
    // Released before the server closes, should an assertion fail first.
    s.defer(() => gate.resolve());
    store.slow = true;
    await a.channel.send({
      t: "send",
      to: "B",
      mail: mailBytes("A", "B").toBase64(),
      req: 1,
    });
    await until(() => store.appending === 1, "the mail's append under way");
    const before = taken.frames;
    const mark = a.tap.mark;
    for (let req = 2; req <= LISTS + 1; req++) {
      await a.channel.send({ t: "list", req });
    }
    await until(
      () => taken.frames - before >= READ_AHEAD_MESSAGES,
      `the server reading ${READ_AHEAD_MESSAGES} of the lists`,
    );
    // Every list is in the server's socket. Let it read what it would: a
    // round trip of B's through the same server, and a moment more.
    const mb = b.ui.mark;
    await b.client.handleLine("!list");
    await b.ui.waitFor((e) => e.kind === "list", mb);
    await sleep(200);
    // The mail is being handled; 16 lists wait behind it, the other 24 are
    // not read: the server stopped reading A at the bound.
    assert.equal(store.appending, 1);
    assert.equal(taken.frames - before, READ_AHEAD_MESSAGES);
    assert.deepEqual(a.tap.since((e) => reqOf(e) !== undefined, mark), []);

    // The store commits: everything is read and answered, in order.
    gate.resolve();
    await until(
      () =>
        a.tap.since((e) => reqOf(e) !== undefined, mark).length >= LISTS + 1,
      "every request answered",
    );
    const answers = a.tap.since((e) => reqOf(e) !== undefined, mark);
    assert.deepEqual(
      answers.map(reqOf),
      Array.from({ length: LISTS + 1 }, (_, i) => i + 1),
    );
    const [stored, ...lists] = answers;
    assert.ok(
      stored?.kind === "message" && stored.msg.t === "receipt" &&
        stored.msg.status === "stored",
      JSON.stringify(stored),
    );
    assert.ok(lists.every((e) => e.kind === "message" && e.msg.t === "users"));
    assert.equal(taken.frames - before, LISTS);
    // The link stayed up all along, and still answers.
    assert.ok(!a.tap.events.some((e) => e.kind === "closed"));
    assert.ok(!t.log.some((l) => l.event === "leave" && l.fields.user === "A"));
    await a.channel.send({ t: "list", req: LISTS + 2 });
    await a.tap.waitFor((e) => reqOf(e) === LISTS + 2, mark);
  });
});
