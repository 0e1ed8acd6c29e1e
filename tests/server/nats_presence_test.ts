/**
 * The cluster's presence (PROTOCOL.md 11.3, lib/server/nats/presence.ts)
 * on a real nats-server (tests/_nats.ts), never a mock: the Presence
 * contract on one node, then two nodes on one server: joins, updates and
 * leaves travel; a dead node's users go; a foreign, moved or replayed
 * envelope is refused and changes nothing; a user on both nodes is the
 * later login; NATS killed and restarted marks each node partial and the
 * views converge again. Timings are shortened through the constructor's
 * options except where a test says it runs the defaults.
 * @module
 */

import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { ClusterKeys, sealEnvelope } from "../../lib/proto/mod.ts";
import { utf8 } from "../../lib/util/mod.ts";
import type { PresenceChange } from "../../lib/server/mod.ts";
import {
  NatsPresence,
  type NatsPresenceOptions,
  PRESENCE_CHECK_MS,
  PRESENCE_COALESCE_MS,
  PRESENCE_HEARTBEAT_MS,
  PRESENCE_MAX_AGE_MS,
  PRESENCE_STALE_MS,
  presenceBucket,
  type PresenceTiming,
} from "../../lib/server/nats/mod.ts";
import { type NatsServer, startNats, withNats } from "../_nats.ts";
import { presenceContract } from "./presence_contract.ts";

const KEY = new Uint8Array(32).map((_, i) => i * 3 + 1);
const CLUSTER = "team";
/** Short timings: a dead node is dropped within about 0.5 s. */
const FAST: Partial<PresenceTiming> = {
  coalesceMs: 20,
  heartbeatMs: 100,
  staleMs: 400,
  checkMs: 50,
  putTimeoutMs: 300,
};

function connectTo(nats: NatsServer): Promise<NatsConnection> {
  return connect({
    servers: nats.url,
    reconnectTimeWait: 50,
    maxReconnectAttempts: -1,
  });
}

/** Poll `cond` until it holds, or fail after `ms` naming `what`. */
async function waitFor(
  what: string,
  cond: () => boolean,
  ms = 2_000,
): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}

const equal = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A node: its connection, its presence, what its listeners and logger saw. */
interface Node {
  nc: NatsConnection;
  p: NatsPresence;
  changes: string[];
  logs: string[];
  replaced: string[];
}

async function node(
  nats: NatsServer,
  name: string,
  o: Partial<NatsPresenceOptions> = {},
): Promise<Node> {
  const nc = await connectTo(nats);
  const changes: string[] = [], logs: string[] = [], replaced: string[] = [];
  const p = await NatsPresence.open({
    nc,
    cluster: CLUSTER,
    node: name,
    keys: new ClusterKeys(KEY),
    timing: FAST,
    log: (event, fields) => logs.push(`${event} ${fields?.code ?? ""}`.trim()),
    onReplaced: (user, by) => replaced.push(`${user} by ${by.node}`),
    ...o,
  });
  p.subscribe((c: PresenceChange) =>
    changes.push(`${c.kind} ${c.entry.name}@${c.entry.node} ${c.entry.state}`)
  );
  return { nc, p, changes, logs, replaced };
}

async function closeAll(...nodes: Node[]): Promise<void> {
  for (const n of nodes) {
    await n.p.close();
    await n.nc.close();
  }
}

const names = (n: Node) => n.p.list().map((e) => `${e.name}@${e.node}`);

// The contract, on one node: its local behaviour is MemoryPresence's.
presenceContract("NatsPresence", async () => {
  const nats = await startNats();
  const nc = await connectTo(nats);
  const presence = await NatsPresence.open({
    nc,
    cluster: CLUSTER,
    node: "n1",
    keys: new ClusterKeys(KEY),
  });
  return {
    presence,
    close: async () => {
      await presence.close();
      await nc.close();
      await nats.stop();
    },
  };
}, { nodes: ["n1"] });

Deno.test("NatsPresence: the spec's timings are the defaults (11.3)", async () => {
  assert.equal(PRESENCE_COALESCE_MS, 100);
  assert.equal(PRESENCE_HEARTBEAT_MS, 2_000);
  assert.equal(PRESENCE_STALE_MS, 6_000);
  assert.equal(PRESENCE_CHECK_MS, 1_000);
  assert.equal(PRESENCE_MAX_AGE_MS, 10_000);
  assert.equal(presenceBucket("team"), "im_team_presence");
  await withNats(async (nats) => {
    const n1 = await node(nats, "n1", { timing: {} });
    try {
      assert.deepEqual(n1.p.timing, {
        coalesceMs: 100,
        heartbeatMs: 2_000,
        staleMs: 6_000,
        checkMs: 1_000,
        putTimeoutMs: 2_000,
      });
      const status = await (await new Kvm(n1.nc).open("im_team_presence"))
        .status();
      assert.equal(status.history, 1);
      assert.equal(status.ttl, 10_000, "the bucket's max age");
      assert.equal(n1.p.partial, false);
    } finally {
      await closeAll(n1);
    }
  });
});

Deno.test("NatsPresence: a bad cluster or node name is refused; a join on another node is a RangeError", async () => {
  await withNats(async (nats) => {
    const nc = await connectTo(nats);
    try {
      const keys = new ClusterKeys(KEY);
      await assert.rejects(
        NatsPresence.open({ nc, cluster: "a.b", node: "n1", keys }),
        RangeError,
      );
      await assert.rejects(
        NatsPresence.open({ nc, cluster: CLUSTER, node: "n 1", keys }),
        RangeError,
      );
      const p = await NatsPresence.open({
        nc,
        cluster: CLUSTER,
        node: "n1",
        keys,
      });
      assert.throws(() => p.join("A", "n2"), RangeError);
      assert.equal(p.size, 0);
      await p.close();
    } finally {
      await nc.close();
    }
  });
});

Deno.test("NatsPresence, two nodes, default timings: a join, update and leave on node 1 reach node 2's list and listeners within 1 s", async () => {
  await withNats(async (nats) => {
    const n1 = await node(nats, "n1", { timing: {} });
    const n2 = await node(nats, "n2", { timing: {} });
    try {
      n1.p.join("A", "n1");
      assert.deepEqual(names(n1), ["A@n1"], "the local view at once");
      const joinMs = await waitFor(
        "A on n2",
        () => n2.p.get("A") !== undefined,
        1_000,
      );
      assert.deepEqual(names(n2), ["A@n1"]);
      assert.deepEqual(n2.changes, ["join A@n1 IDLE"]);
      n1.p.update("A", { state: "HOSTING", addr: "127.0.0.1:5000" });
      await waitFor(
        "A HOSTING on n2",
        () => n2.p.get("A")?.state === "HOSTING",
        1_000,
      );
      assert.equal(n2.p.get("A")?.addr, "127.0.0.1:5000");
      n2.p.join("B", "n2");
      await waitFor("B on n1", () => n1.p.get("B") !== undefined, 1_000);
      assert.deepEqual(names(n1), ["A@n1", "B@n2"]);
      assert.deepEqual(names(n2), ["A@n1", "B@n2"]);
      assert.equal(n2.p.size, 2);
      n1.p.leave("A");
      await waitFor("A gone from n2", () => n2.p.get("A") === undefined, 1_000);
      assert.deepEqual(n2.changes, [
        "join A@n1 IDLE",
        "update A@n1 HOSTING",
        "join B@n2 IDLE",
        "leave A@n1 HOSTING",
      ]);
      assert.deepEqual(n1.changes, [
        "join A@n1 IDLE",
        "update A@n1 HOSTING",
        "join B@n2 IDLE",
        "leave A@n1 HOSTING",
      ]);
      // Heartbeats of an unchanged snapshot tell nothing.
      await sleep(2_100);
      assert.equal(n2.changes.length, 4);
      assert.deepEqual(n1.p.nodes(), ["n2"]);
      assert.equal(n2.p.refused, 0);
      assert.ok(joinMs < 1_000);
    } finally {
      await closeAll(n1, n2);
    }
  });
});

Deno.test("NatsPresence: node 1 crashed (its key left behind) is dropped from node 2's view once its snapshot is stale; closed, at once", async () => {
  await withNats(async (nats) => {
    const n1 = await node(nats, "n1");
    const n2 = await node(nats, "n2");
    const n3 = await node(nats, "n3");
    try {
      n1.p.join("A", "n1");
      n1.p.join("C", "n1");
      n3.p.join("D", "n3");
      await waitFor("A, C, D on n2", () => n2.p.size === 3);
      await n1.p.crash();
      const crashed = Date.now();
      await waitFor("A and C gone", () => n2.p.size === 1, 2_000);
      const took = Date.now() - crashed;
      assert.ok(took >= 250, `not before the snapshot is stale (${took} ms)`);
      assert.deepEqual(names(n2), ["D@n3"]);
      assert.deepEqual(n2.changes.filter((c) => c.startsWith("leave")), [
        "leave A@n1 IDLE",
        "leave C@n1 IDLE",
      ]);
      assert.ok(n2.logs.includes("cluster-node-gone"));
      // A clean close deletes the key: gone without waiting for age.
      await n3.p.close();
      const t = await waitFor("D gone", () => n2.p.size === 0, 300);
      assert.ok(t < FAST.staleMs!, `${t} ms`);
    } finally {
      await closeAll(n1, n2, n3);
    }
  });
});

Deno.test("NatsPresence: a snapshot sealed with another cluster key, moved to another node's key, replayed or not a snapshot is refused, counted, and changes nothing", async () => {
  await withNats(async (nats) => {
    const n1 = await node(nats, "n1");
    const n2 = await node(nats, "n2");
    try {
      n1.p.join("A", "n1");
      await waitFor("A on n2", () => n2.p.size === 1);
      const kv = await new Kvm(n1.nc).open(presenceBucket(CLUSTER));
      const seal = (
        o: {
          key?: ClusterKeys;
          node?: string;
          subjectNode?: string;
          seq?: number;
          payload?: string;
        } = {},
      ) =>
        sealEnvelope(o.key ?? new ClusterKeys(KEY), {
          node: o.node ?? "evil",
          boot: new Uint8Array(8).fill(9),
          seq: o.seq ?? 1,
          time: Date.now(),
          subject: `$KV.${presenceBucket(CLUSTER)}.${
            o.subjectNode ?? o.node ?? "evil"
          }`,
          payload: utf8(
            o.payload ??
              JSON.stringify({
                t: "snapshot",
                node: o.node ?? "evil",
                users: [{ name: "Mallory", state: "IDLE", since: Date.now() }],
              }),
          ),
        });
      const settle = () => sleep(150);
      // Another cluster's key.
      await kv.put(
        "evil",
        seal({ key: new ClusterKeys(new Uint8Array(32).fill(1)) }),
      );
      await settle();
      // Sealed for key "evil" but put under "n9": the subject differs.
      await kv.put("n9", seal({ node: "n9", subjectNode: "evil" }));
      await settle();
      // Under our key, but saying it is another node's snapshot.
      await kv.put(
        "n8",
        seal({
          node: "n8",
          payload: '{"t":"snapshot","node":"n1","users":[]}',
        }),
      );
      await settle();
      // Not a snapshot at all.
      await kv.put("n7", seal({ node: "n7", payload: "[1,2" }));
      await settle();
      // A valid one, then the same envelope again (a replay, under another put).
      const good = seal({ node: "n6", seq: 5 });
      await kv.put("n6", good);
      await waitFor("Mallory from n6", () => n2.p.get("Mallory") !== undefined);
      await kv.put(
        "n6",
        seal({
          node: "n6",
          seq: 6,
          payload: '{"t":"snapshot","node":"n6","users":[]}',
        }),
      );
      await waitFor("n6 empty", () => n2.p.get("Mallory") === undefined);
      await kv.put("n6", good);
      await settle();
      for (const n of [n1, n2]) {
        assert.equal(n.p.get("Mallory"), undefined);
        assert.deepEqual(names(n), ["A@n1"]);
        assert.deepEqual(n.p.refusals(), {
          "cluster-forged": 2,
          "cluster-malformed": 2,
          "cluster-replayed": 1,
        });
        assert.equal(n.p.refused, 5);
        assert.equal(
          n.logs.filter((l) => l.startsWith("cluster-refused")).length,
          5,
        );
      }
      // Someone without the key overwrote n1's own key: n2 refuses it,
      // and n1 puts its snapshot again at once.
      const foreign = seal({
        key: new ClusterKeys(new Uint8Array(32).fill(1)),
        node: "n1",
      });
      await kv.put("n1", foreign);
      const until = Date.now() + 1_000;
      while (equal((await kv.get("n1"))?.value, foreign)) {
        if (Date.now() > until) {
          assert.fail("n1 did not put its snapshot again");
        }
        await sleep(10);
      }
      assert.equal(n2.p.refusals()["cluster-forged"], 3);
      assert.deepEqual(names(n2), ["A@n1"], "A never went");
      assert.ok(!n2.changes.some((c) => c.startsWith("leave A")));
    } finally {
      await closeAll(n1, n2);
    }
  });
});

Deno.test("NatsPresence: a user on both nodes is the later login on both; the older node is told to close its connection", async () => {
  await withNats(async (nats) => {
    const n1 = await node(nats, "n1");
    const n2 = await node(nats, "n2");
    try {
      n1.p.join("A", "n1");
      await waitFor("A on n2", () => n2.p.get("A")?.node === "n1");
      await sleep(5);
      n2.p.join("A", "n2");
      assert.equal(n2.p.get("A")?.node, "n2", "n2's own login, later");
      await waitFor("n1 sees A on n2", () => n1.p.get("A")?.node === "n2");
      assert.deepEqual(n1.replaced, ["A by n2"]);
      assert.deepEqual(n2.replaced, []);
      assert.deepEqual(n1.changes, [
        "join A@n1 IDLE",
        "leave A@n1 IDLE",
        "join A@n2 IDLE",
      ]);
      assert.deepEqual(n2.changes, [
        "join A@n1 IDLE",
        "leave A@n1 IDLE",
        "join A@n2 IDLE",
      ]);
      // n1's update of its stale A changes nobody's view; its leave neither.
      n1.p.update("A", { state: "HOSTING", addr: "x:1" });
      assert.equal(n1.p.get("A")?.node, "n2");
      n1.p.leave("A");
      await sleep(200);
      assert.deepEqual(names(n1), ["A@n2"]);
      assert.deepEqual(names(n2), ["A@n2"]);
      assert.equal(n1.changes.length, 3);
      assert.equal(n2.changes.length, 3);
      assert.deepEqual(n1.replaced, ["A by n2"], "told once");
    } finally {
      await closeAll(n1, n2);
    }
  });
});

Deno.test("NatsPresence: NATS killed and restarted: each node is partial while it is down, keeps its own users, and the views converge when it returns", async () => {
  const nats = await startNats();
  const partials: string[] = [];
  const n1 = await node(nats, "n1", {
    onPartialChange: (p) => partials.push(`n1 ${p}`),
  });
  const n2 = await node(nats, "n2");
  try {
    n1.p.join("A", "n1");
    n2.p.join("B", "n2");
    await waitFor("both see both", () => n1.p.size === 2 && n2.p.size === 2);
    await nats.kill();
    await waitFor("both partial", () => n1.p.partial && n2.p.partial);
    assert.deepEqual(partials, ["n1 true"]);
    n1.p.join("C", "n1");
    n2.p.leave("B");
    await waitFor(
      "the other node's users age out",
      () => n1.p.get("B") === undefined && n2.p.get("A") === undefined,
    );
    assert.deepEqual(names(n1), ["A@n1", "C@n1"], "its own users stay");
    assert.deepEqual(names(n2), []);
    n2.p.join("E", "n2");
    await nats.restart();
    await waitFor("back", () => !n1.p.partial && !n2.p.partial, 5_000);
    await waitFor(
      "views converge",
      () =>
        names(n1).join() === "A@n1,C@n1,E@n2" &&
        names(n2).join() === "A@n1,C@n1,E@n2",
      3_000,
    );
    assert.deepEqual(partials, ["n1 true", "n1 false"]);
    assert.ok(n1.logs.includes("cluster-unreachable"));
    assert.ok(n1.logs.includes("cluster-reachable"));
    assert.equal(n1.p.refused + n2.p.refused, 0);
  } finally {
    await closeAll(n1, n2);
    await nats.stop();
  }
});
