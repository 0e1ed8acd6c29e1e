/**
 * The contract of a {@link Delivery} (lib/server/seams.ts), as tests any
 * implementation runs with a harness that connects users:
 * `deliveryContract("LocalDelivery", makeHarness)`. The cluster's delivery
 * runs the same ones, with users connected to different nodes.
 * @module
 */

import assert from "node:assert/strict";
import { isImError } from "../../lib/util/mod.ts";
import type { Delivery, Push } from "../../lib/server/mod.ts";

/** A user connected for the test: what it received, and what the test may do to its connection. */
export interface Connected {
  /** Messages received, in order of arrival. */
  readonly received: Push[];
  /** Resolve once `n` messages have arrived (fail after a few seconds). */
  waitFor(n: number): Promise<void>;
  /** End the connection: the user is no longer reachable. */
  disconnect(): void | Promise<void>;
  /** Pretend this many bytes wait to be written to the user (where a backlog can be seen). */
  setBacklog?(bytes: number): void;
  /** Make the connection fail as a dead socket does, while it is still registered. */
  breakConnection?(): void;
}

/** A delivery and a way to connect users to it. */
export interface DeliveryHarness {
  delivery: Delivery;
  connect(user: string): Connected | Promise<Connected>;
  close?(): void | Promise<void>;
}

/** Makes a fresh {@link DeliveryHarness} per test. */
export type DeliveryFactory = () => DeliveryHarness | Promise<DeliveryHarness>;

const cancelled = (peer: string, message = "test"): Push => ({
  t: "cancelled",
  peer,
  message,
});

/** Let every message in flight arrive, so "nothing arrived" means something. */
const settle = () => new Promise((r) => setTimeout(r, 20));

/**
 * Register the contract's tests.
 * @param name the implementation, in each test's name
 * @param make a fresh harness per test
 */
export function deliveryContract(name: string, make: DeliveryFactory): void {
  const withHarness = (
    what: string,
    fn: (h: DeliveryHarness) => Promise<void>,
  ) =>
    Deno.test(`${name}: ${what}`, async () => {
      const h = await make();
      try {
        await fn(h);
      } finally {
        await h.close?.();
      }
    });

  withHarness(
    "deliver() to a connected user hands it the message; written resolves with no error",
    async (h) => {
      const a = await h.connect("A");
      const r = h.delivery.deliver("A", cancelled("B", "B went offline"));
      assert.ok(r.delivered);
      assert.equal(await r.written, undefined);
      await a.waitFor(1);
      assert.deepEqual(a.received, [cancelled("B", "B went offline")]);
    },
  );

  withHarness(
    "messages to one user arrive in the order they were delivered",
    async (h) => {
      const a = await h.connect("A");
      for (let i = 0; i < 20; i++) {
        assert.ok(h.delivery.deliver("A", cancelled("B", `#${i}`)).delivered);
      }
      await a.waitFor(20);
      assert.deepEqual(
        a.received.map((m) => m.t === "cancelled" && m.message),
        Array.from({ length: 20 }, (_, i) => `#${i}`),
      );
    },
  );

  withHarness("only the addressed user gets the message", async (h) => {
    const a = await h.connect("A");
    const b = await h.connect("B");
    assert.ok(h.delivery.deliver("B", cancelled("C")).delivered);
    await b.waitFor(1);
    await settle();
    assert.deepEqual(a.received, []);
  });

  withHarness(
    "deliver() to a user who never connected reports absent and hands nobody anything",
    async (h) => {
      const a = await h.connect("A");
      assert.deepEqual(h.delivery.deliver("B", cancelled("A")), {
        delivered: false,
        reason: "absent",
      });
      await settle();
      assert.deepEqual(a.received, []);
    },
  );

  withHarness(
    "a user who disconnected is absent; connected again, it is reached on the new connection",
    async (h) => {
      const first = await h.connect("A");
      await first.disconnect();
      assert.deepEqual(h.delivery.deliver("A", cancelled("B")), {
        delivered: false,
        reason: "absent",
      });
      const second = await h.connect("A");
      assert.ok(h.delivery.deliver("A", cancelled("B", "again")).delivered);
      await second.waitFor(1);
      assert.deepEqual(second.received, [cancelled("B", "again")]);
      assert.deepEqual(first.received, []);
    },
  );

  withHarness(
    "a user whose backlog is over maxQueuedBytes is busy and gets nothing; at the limit or with no limit it is reached",
    async (h) => {
      const a = await h.connect("A");
      if (!a.setBacklog) return; // this implementation cannot see a backlog
      a.setBacklog(1001);
      assert.deepEqual(
        h.delivery.deliver("A", cancelled("B", "over"), {
          maxQueuedBytes: 1000,
        }),
        { delivered: false, reason: "busy" },
      );
      assert.ok(h.delivery.deliver("A", cancelled("B", "no limit")).delivered);
      a.setBacklog(1000);
      const atLimit = h.delivery.deliver("A", cancelled("B", "at limit"), {
        maxQueuedBytes: 1000,
      });
      assert.ok(atLimit.delivered);
      await a.waitFor(2);
      assert.deepEqual(
        a.received.map((m) => m.t === "cancelled" && m.message),
        ["no limit", "at limit"],
      );
    },
  );

  withHarness(
    "a connection that fails while registered: written resolves with a typed error, it never rejects",
    async (h) => {
      const a = await h.connect("A");
      if (!a.breakConnection) return;
      a.breakConnection();
      const r = h.delivery.deliver("A", cancelled("B"));
      if (!r.delivered) {
        assert.equal(r.reason, "absent");
        return;
      }
      const e = await r.written;
      assert.ok(isImError(e), `written resolved with ${e}`);
    },
  );
}
