/**
 * The contract of a {@link Presence} (lib/server/seams.ts), as tests any
 * implementation runs: `presenceContract("MemoryPresence", () => new
 * MemoryPresence())`. The cluster's presence (`NatsPresence`, one node on a
 * real nats-server) runs the same ones: its local behaviour is the same,
 * except that it takes joins on its own node only, so it names its node
 * for both of the nodes the tests join users on ({@link ContractOptions}).
 * @module
 */

import assert from "node:assert/strict";
import type {
  Presence,
  PresenceChange,
  PresenceEntry,
} from "../../lib/server/mod.ts";

/** A fresh presence with nobody online, and how to release it. */
export interface PresenceHarness {
  presence: Presence;
  close?: () => void | Promise<void>;
}

/** Makes a fresh {@link PresenceHarness} per test. */
export type PresenceFactory = () => PresenceHarness | Promise<PresenceHarness>;

/** What an implementation tells the contract of itself. */
export interface ContractOptions {
  /**
   * The node names `join()` is called with: two, or one for an
   * implementation that holds one node's users (default
   * `["local", "node-2"]`).
   */
  nodes?: readonly [string] | readonly [string, string];
}

/** A change as a short line, to compare sequences of them. */
function line(c: PresenceChange): string {
  const e = c.entry;
  const base = `${c.kind} ${e.name}@${e.node} ${e.state}`;
  return c.kind === "update" ? `${base} (was ${c.previous.state})` : base;
}

/**
 * Register the contract's tests.
 * @param name the implementation, in each test's name
 * @param make a fresh presence per test
 * @param opts the node names to join users on
 */
export function presenceContract(
  name: string,
  make: PresenceFactory,
  opts: ContractOptions = {},
): void {
  const [N1, N2 = N1] = opts.nodes ?? ["local", "node-2"];
  const withPresence = (
    what: string,
    fn: (p: Presence) => void | Promise<void>,
  ) =>
    Deno.test(`${name}: ${what}`, async () => {
      const h = await make();
      try {
        await fn(h.presence);
      } finally {
        await h.close?.();
      }
    });

  withPresence(
    "join() puts a user online IDLE on its node; get(), list() sorted by name and size agree",
    (p) => {
      assert.equal(p.size, 0);
      assert.deepEqual(p.list(), []);
      const c = p.join("C", N2);
      assert.deepEqual({ ...c }, { name: "C", node: N2, state: "IDLE" });
      p.join("A", N1);
      p.join("B", N1);
      assert.equal(p.size, 3);
      assert.deepEqual(p.list().map((e) => `${e.name}@${e.node} ${e.state}`), [
        `A@${N1} IDLE`,
        `B@${N1} IDLE`,
        `C@${N2} IDLE`,
      ]);
      assert.equal(p.get("C")?.node, N2);
      assert.equal(p.get("Zed"), undefined);
    },
  );

  withPresence(
    "leave() takes a user offline and returns its last entry; leaving twice or unknown returns undefined",
    (p) => {
      p.join("A", N1);
      p.update("A", { state: "HOSTING", addr: "127.0.0.1:5000" });
      const last = p.leave("A");
      assert.equal(last?.state, "HOSTING");
      assert.equal(last?.addr, "127.0.0.1:5000");
      assert.equal(p.get("A"), undefined);
      assert.equal(p.size, 0);
      assert.deepEqual(p.list(), [], "never a user who left (rule 2.10)");
      assert.equal(p.leave("A"), undefined);
      assert.equal(p.leave("Zed"), undefined);
    },
  );

  withPresence(
    "update() replaces the state and details; details not given are cleared; the node stays",
    (p) => {
      p.join("A", N1);
      const busy = p.update("A", {
        state: "BUSY",
        addr: "x:1",
        partner: "B",
        isHost: true,
        ticketId: "ab",
      });
      assert.deepEqual({ ...busy }, {
        name: "A",
        node: N1,
        state: "BUSY",
        addr: "x:1",
        partner: "B",
        isHost: true,
        ticketId: "ab",
      });
      const idle = p.update("A", { state: "IDLE" });
      assert.deepEqual({ ...idle }, {
        name: "A",
        node: N1,
        state: "IDLE",
      });
      assert.deepEqual({ ...p.get("A") }, { ...idle });
    },
  );

  withPresence(
    "update() of a user who is not online changes nothing and returns undefined",
    (p) => {
      assert.equal(p.update("A", { state: "HOSTING", addr: "x:1" }), undefined);
      assert.equal(p.get("A"), undefined);
      assert.equal(p.size, 0);
    },
  );

  withPresence(
    "an entry once read does not change: a later update makes a new one",
    (p) => {
      const before = p.join("A", N1);
      p.update("A", { state: "HOSTING", addr: "x:1" });
      assert.equal(before.state, "IDLE");
      assert.equal(before.addr, undefined);
      assert.equal(p.get("A")?.state, "HOSTING");
    },
  );

  withPresence(
    "join() of a user already online replaces its entry (new node, IDLE), telling a leave then a join",
    (p) => {
      p.join("A", N1);
      p.update("A", { state: "HOSTING", addr: "x:1" });
      const seen: string[] = [];
      p.subscribe((c) => seen.push(line(c)));
      p.join("A", N2);
      assert.deepEqual({ ...p.get("A") }, {
        name: "A",
        node: N2,
        state: "IDLE",
      });
      assert.equal(p.size, 1);
      assert.deepEqual(seen, [`leave A@${N1} HOSTING`, `join A@${N2} IDLE`]);
    },
  );

  withPresence(
    "subscribe() is told every join, state change and leave, in order, with the entries",
    (p) => {
      const changes: PresenceChange[] = [];
      p.subscribe((c) => changes.push(c));
      p.join("A", N1);
      p.join("B", N1);
      p.update("A", { state: "HOSTING", addr: "x:1" });
      p.update("A", { state: "BUSY", addr: "x:1", partner: "B", isHost: true });
      p.update("B", { state: "BUSY", partner: "A", isHost: false });
      p.leave("A");
      p.update("B", { state: "IDLE" });
      p.leave("B");
      assert.deepEqual(changes.map(line), [
        `join A@${N1} IDLE`,
        `join B@${N1} IDLE`,
        `update A@${N1} HOSTING (was IDLE)`,
        `update A@${N1} BUSY (was HOSTING)`,
        `update B@${N1} BUSY (was IDLE)`,
        `leave A@${N1} BUSY`,
        `update B@${N1} IDLE (was BUSY)`,
        `leave B@${N1} IDLE`,
      ]);
      const hosting = changes[2]!;
      assert.equal(hosting.entry.addr, "x:1");
      assert.equal(
        changes[5]!.entry.partner,
        "B",
        "a leave carries the last entry",
      );
    },
  );

  withPresence(
    "nothing is told for a leave or update of a user who is not online",
    (p) => {
      const seen: string[] = [];
      p.subscribe((c) => seen.push(line(c)));
      p.leave("A");
      p.update("A", { state: "IDLE" });
      assert.deepEqual(seen, []);
    },
  );

  withPresence(
    "the function subscribe() returns ends that subscription only",
    (p) => {
      const first: string[] = [], second: string[] = [];
      const stop = p.subscribe((c) => first.push(line(c)));
      p.subscribe((c) => second.push(line(c)));
      p.join("A", N1);
      stop();
      stop();
      p.leave("A");
      assert.deepEqual(first, [`join A@${N1} IDLE`]);
      assert.deepEqual(second, [`join A@${N1} IDLE`, `leave A@${N1} IDLE`]);
    },
  );

  withPresence(
    "a change made by a listener is told to every listener after the change that caused it",
    (p) => {
      // A partner is freed when a user leaves, from inside the listener.
      p.join("A", N1);
      p.join("B", N1);
      p.update("A", { state: "BUSY", partner: "B" });
      p.update("B", { state: "BUSY", partner: "A" });
      const first: string[] = [], second: string[] = [];
      p.subscribe((c) => {
        first.push(line(c));
        if (c.kind === "leave" && c.entry.partner) {
          p.update(c.entry.partner, { state: "IDLE" });
        }
      });
      p.subscribe((c) => second.push(line(c)));
      p.leave("A");
      const want = [`leave A@${N1} BUSY`, `update B@${N1} IDLE (was BUSY)`];
      assert.deepEqual(first, want);
      assert.deepEqual(second, want);
      assert.equal(p.get("B")?.state, "IDLE");
    },
  );

  withPresence(
    "list() is a copy: changing it changes nobody's presence",
    (p) => {
      p.join("A", N1);
      const l: PresenceEntry[] = p.list();
      l.length = 0;
      assert.equal(p.list().length, 1);
    },
  );
}
