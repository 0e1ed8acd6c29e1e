/**
 * Requests between nodes (PROTOCOL.md 11.4, 11.5; lib/server/nats/delivery.ts,
 * node.ts) on a real nats-server (tests/_nats.ts): two {@link ImServer}s in
 * this process, each a {@link ClusterNode} (NatsPresence + NatsDelivery),
 * with real clients over TCP loopback. `!list` shows every node's users; a
 * session between users on different nodes starts, its messages and
 * receipts flow, directly and through the relay; a login on node 2
 * replaces the older one on node 1; a killed node's users leave; with NATS
 * down each node serves its own users, `!list` says partial and a session
 * with a user elsewhere is refused clearly, and the views converge when
 * NATS is back. The envelope's refusals are counted and change nothing.
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import type { UiEvent } from "../../lib/client/mod.ts";
import { ClusterKeys, sealEnvelope } from "../../lib/proto/mod.ts";
import { sleep, utf8 } from "../../lib/util/mod.ts";
import {
  ClusterNode,
  DELIVERY_TIMEOUT_MS,
  NatsDelivery,
  NatsPresence,
  nodeSubject,
  type PresenceTiming,
} from "../../lib/server/nats/mod.ts";
import type { Push } from "../../lib/server/seams.ts";
import {
  ended,
  isError,
  type LogLine,
  type Scope,
  started,
  type TestClient,
  type TestServer,
  until,
  withScope,
} from "../_fixtures.ts";
import { type NatsServer, withNats } from "../_nats.ts";

const KEY = new Uint8Array(32).map((_, i) => i * 5 + 2);
/**
 * Short presence timings: a dead node is dropped within about 2 s; a live
 * node stalled by a loaded machine is not taken for dead, nor do its
 * JetStream requests time out.
 */
const FAST: Partial<PresenceTiming> = {
  coalesceMs: 20,
  heartbeatMs: 200,
  staleMs: 2_000,
  checkMs: 100,
  putTimeoutMs: 2_000,
};

const system = (re: RegExp) => (e: UiEvent) =>
  e.kind === "system" && re.test(e.text);

interface TestNode extends TestServer {
  node: ClusterNode;
  logs: LogLine[];
}

/** A node of the cluster: a ClusterNode and the ImServer that uses it. */
async function clusterNode(
  s: Scope,
  nats: NatsServer,
  name: string,
  deliveryTimeoutMs?: number,
): Promise<TestNode> {
  const logs: LogLine[] = [];
  const node = await ClusterNode.join({
    servers: [nats.url],
    node: name,
    clusterKey: KEY,
    cluster: "t",
    presenceTiming: FAST,
    reconnectTimeWaitMs: 50,
    ...(deliveryTimeoutMs !== undefined && { deliveryTimeoutMs }),
    log: (event, fields = {}) => logs.push({ event, fields }),
  });
  s.defer(() => node.close()); // after the server (cleanups run in reverse)
  const t = await s.server({
    ...node.serverOptions(),
    // The tests poll !list until the other node's view arrives.
    requestLimits: { list: { burst: 10_000, refillMs: 1 } },
  });
  node.attach(t.server);
  return { ...t, node, logs };
}

/** `!list` until the users and states match `pred`; the last answer. */
async function listUntil(
  c: TestClient,
  pred: (users: Record<string, string>) => boolean,
  ms = 5_000,
): Promise<Record<string, string>> {
  const deadline = Date.now() + ms;
  let last: Record<string, string> = {};
  while (Date.now() < deadline) {
    const mark = c.ui.mark;
    await c.client.handleLine("!list");
    const ev = await c.ui.waitFor((e) => e.kind === "list", mark);
    if (ev.kind === "list") {
      last = Object.fromEntries(ev.users.map((u) => [u.name, u.state]));
    }
    if (pred(last)) return last;
    await sleep(50);
  }
  assert.fail(`!list never matched; last ${JSON.stringify(last)}`);
}

const message = (dir: "in" | "out", text: string) => (e: UiEvent) =>
  e.kind === "message" && e.direction === dir && e.text === text;

/** A hosts on node 1, B on node 2 joins; both see the session start. */
async function crossSession(
  a: TestClient,
  b: TestClient,
): Promise<void> {
  await a.client.handleLine("!session host");
  await a.ui.waitFor(system(/^Hosting /));
  await listUntil(b, (u) => u.A === "HOSTING");
  const am = a.ui.mark, bm = b.ui.mark;
  await b.client.handleLine("!session A");
  await Promise.all([a.ui.waitFor(started, am), b.ui.waitFor(started, bm)]);
}

/** Messages both ways, each with its delivery receipt. */
async function talk(a: TestClient, b: TestClient, tag: string): Promise<void> {
  for (const [from, to] of [[a, b], [b, a]] as const) {
    const text = `${tag} from ${from.user}`;
    const fm = from.ui.mark, tm = to.ui.mark;
    await from.client.handleLine(text);
    await to.ui.waitFor(message("in", text), tm);
    await from.ui.waitFor(
      (e) => e.kind === "receipt" && e.status === "delivered",
      fm,
    );
  }
}

Deno.test("cluster: !list on node 1 shows a user on node 2, with its state", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a = await s.client(n1.port, "A");
      const b = await s.client(n2.port, "B");
      assert.deepEqual(
        await listUntil(a, (u) => u.B === "IDLE"),
        { A: "IDLE", B: "IDLE" },
      );
      await b.client.handleLine("!session host");
      await listUntil(a, (u) => u.B === "HOSTING");
      assert.deepEqual(n1.node.nodes(), ["n2"]);
      assert.deepEqual(n2.node.nodes(), ["n1"]);
    });
  });
});

for (const via of ["direct", "relay"] as const) {
  Deno.test(`cluster: a session between users on different nodes (${via}): the grant reaches the host's node, messages and receipts flow, the end frees both`, async () => {
    await withNats(async (nats) => {
      await withScope(async (s) => {
        const n1 = await clusterNode(s, nats, "n1");
        const n2 = await clusterNode(s, nats, "n2");
        const a = await s.client(n1.port, "A");
        const b = await s.client(n2.port, "B", { relay: via === "relay" });
        const c = await s.client(n1.port, "C");
        await crossSession(a, b);
        assert.ok(
          n1.log.some((l) => l.event === "session-granted") === false &&
            n2.log.some((l) =>
              l.event === "session-granted" && l.fields.host === "A"
            ),
          "granted by the joiner's node",
        );
        // Each node made its user BUSY; the other node sees it.
        await listUntil(c, (u) => u.A === "BUSY" && u.B === "BUSY");
        await talk(a, b, via);
        if (via === "relay") {
          assert.ok(
            n2.log.some((l) => l.event === "join" && l.fields.user === "B"),
          );
        }
        assert.equal(
          a.ui.since(isError()).length,
          0,
          JSON.stringify(a.ui.events),
        );
        assert.equal(
          b.ui.since(isError()).length,
          0,
          JSON.stringify(b.ui.events),
        );
        const bm = b.ui.mark;
        await a.client.handleLine("!disconnect");
        await b.ui.waitFor(ended, bm);
        // The host hosts again by itself after a session.
        await listUntil(c, (u) => u.A !== "BUSY" && u.B === "IDLE");
        assert.equal(n1.node.delivery.refused + n2.node.delivery.refused, 0);
      });
    });
  });
}

Deno.test("cluster: a login on node 2 replaces the same user's older connection on node 1 (replaced)", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a1 = await s.client(n1.port, "A");
      const c = await s.client(n1.port, "C");
      await listUntil(c, (u) => u.A === "IDLE");
      const m = a1.ui.mark;
      const a2 = await s.client(n2.port, "A");
      const closing = await a1.ui.waitFor(
        (e) =>
          (e.kind === "error" || e.kind === "system") &&
          /logged in from another place/i.test(e.text),
        m,
      );
      assert.ok(closing);
      await until(
        () => n1.log.some((l) => l.event === "leave" && l.fields.user === "A"),
        "A left node 1",
      );
      await listUntil(c, (u) => u.A === "IDLE" && u.C === "IDLE");
      assert.ok(n1.node.presence.get("A")?.node === "n2");
      assert.deepEqual(await listUntil(a2, (u) => u.C === "IDLE"), {
        A: "IDLE",
        C: "IDLE",
      });
    });
  });
});

Deno.test("cluster: a node killed without goodbye: its users leave node 1's !list within 10 s", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a = await s.client(n1.port, "A");
      await s.client(n2.port, "B");
      await listUntil(a, (u) => u.B === "IDLE");
      const t0 = Date.now();
      await n2.node.crash();
      await listUntil(a, (u) => u.B === undefined, 10_000);
      assert.ok(Date.now() - t0 < 10_000);
      await until(
        () => n1.logs.some((l) => l.event === "cluster-node-gone"),
        "the node logged as gone",
      );
    });
  });
});

Deno.test("cluster: a kick closes a user's connection on its node; a forged or moved request is refused and changes nothing", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a = await s.client(n1.port, "A");
      const b = await s.client(n2.port, "B");
      await listUntil(a, (u) => u.B === "IDLE");
      const nc = await connect({ servers: nats.url });
      try {
        const subject = nodeSubject("t", "n2");
        const env = (key: Uint8Array, to: string, seq: number) =>
          sealEnvelope(new ClusterKeys(key), {
            node: "n1",
            boot: new Uint8Array(8).fill(9),
            seq,
            time: Date.now(),
            subject: to,
            payload: utf8(
              JSON.stringify({ t: "kick", user: "B", reason: "revoked" }),
            ),
          });
        // Another key; the right key for another subject.
        nc.publish(subject, env(new Uint8Array(32).fill(1), subject, 1));
        nc.publish(subject, env(KEY, nodeSubject("t", "n3"), 2));
        await until(
          () => n2.node.delivery.refused === 2,
          "two refusals on node 2",
        );
        assert.deepEqual(n2.node.delivery.refusals(), { "cluster-forged": 2 });
        assert.equal(b.client.mode, "idle");
        await listUntil(a, (u) => u.B === "IDLE");
      } finally {
        await nc.close();
      }
      const bm = b.ui.mark;
      assert.equal(await n1.node.delivery.kick("B", "revoked"), "closed");
      await b.ui.waitFor(
        (e) =>
          (e.kind === "error" || e.kind === "system") && /revoked/.test(e.text),
        bm,
      );
      await listUntil(a, (u) => u.B === undefined);
      assert.equal(await n1.node.delivery.kick("B", "revoked"), "absent");
    });
  });
});

Deno.test("cluster: NATS down: each node serves its own users, !list says partial, a session with a user elsewhere is refused saying why; NATS back: the views converge", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a = await s.client(n1.port, "A");
      const b = await s.client(n2.port, "B");
      const c = await s.client(n1.port, "C");
      await b.client.handleLine("!session host");
      await listUntil(a, (u) => u.B === "HOSTING" && u.C === "IDLE");
      await nats.kill();
      await until(() => n1.node.partial && n2.node.partial, "both partial");
      // The other node's users go once their snapshot is too old.
      await listUntil(a, (u) => u.B === undefined);
      let mark = a.ui.mark;
      await a.client.handleLine("!list");
      await a.ui.waitFor(
        system(/^\(partial: the cluster cannot be reached\)$/),
        mark,
      );
      mark = a.ui.mark;
      await a.client.handleLine("!session B");
      const refused = await a.ui.waitFor(isError("refused-offline"), mark);
      assert.ok(refused.kind === "error" && !refused.text.includes("\n"));
      assert.match(
        refused.text,
        /^Session refused: Cannot reach B: the other servers of the cluster cannot be reached now/,
      );
      // Sessions between users of one node go on.
      await c.client.handleLine("!session host");
      await c.ui.waitFor(system(/^Hosting /));
      mark = a.ui.mark;
      const cm = c.ui.mark;
      await a.client.handleLine("!session C");
      await Promise.all([
        a.ui.waitFor(started, mark),
        c.ui.waitFor(started, cm),
      ]);
      await talk(c, a, "partial");
      // NATS back: no restart, the views converge.
      await nats.restart();
      await until(
        () => !n1.node.partial && !n2.node.partial,
        "both reachable",
        10_000,
      );
      await listUntil(
        b,
        (u) => u.A === "BUSY" && u.C === "BUSY" && u.B === "HOSTING",
        10_000,
      );
      await listUntil(a, (u) => u.B === "HOSTING", 10_000);
      mark = a.ui.mark;
      await a.client.handleLine("!list");
      await a.ui.waitFor((e) => e.kind === "list", mark);
      await sleep(50);
      assert.equal(
        a.ui.since(system(/partial/), mark).length,
        0,
        "not partial any more",
      );
      assert.ok(DELIVERY_TIMEOUT_MS === 2_000);
    });
  });
});

/** A bare node (NatsPresence + NatsDelivery) whose users' pushes are kept. */
async function bareNode(nats: NatsServer, name: string, writeMs = 0) {
  const nc = await connect({ servers: nats.url });
  const keys = new ClusterKeys(KEY);
  const p = await NatsPresence.open({
    nc,
    cluster: "t",
    node: name,
    keys,
    timing: FAST,
  });
  const d = await NatsDelivery.open({
    nc,
    cluster: "t",
    node: name,
    keys,
    presence: p,
  });
  const got: Push[] = [];
  d.attach((u) =>
    p.get(u)?.node === name
      ? {
        send: async (m: Push) => {
          got.push(m);
          if (writeMs > 0) await sleep(writeMs);
        },
        queuedBytes: 0,
      }
      : undefined
  );
  return {
    nc,
    p,
    d,
    got,
    close: async () => {
      await d.close();
      await p.close();
      await nc.close();
    },
  };
}

Deno.test("cluster: a request recorded off NATS and replayed to a node restarted under the same name is refused (cluster-stale); one for another node is refused", async () => {
  await withNats(async (nats) => {
    const n1 = await bareNode(nats, "n1");
    let n2 = await bareNode(nats, "n2");
    const spy = await connect({ servers: nats.url });
    let captured: Uint8Array | undefined;
    spy.subscribe(nodeSubject("t", "n2"), {
      callback: (_e, m) => {
        captured ??= m.data.slice();
      },
    });
    await spy.flush();
    try {
      n1.p.join("J", "n1");
      n2.p.join("H", "n2");
      n2.p.update("H", { state: "HOSTING", addr: "127.0.0.1:1" });
      await until(() => n1.p.get("H")?.state === "HOSTING", "H hosting");
      const grant = {
        t: "grant",
        peer: "J",
        key: "k",
        ticket: "t",
        ticketId: "aa",
        expiresAt: Date.now() + 60_000,
        identity: "i",
      } as unknown as Push;
      const r = n1.d.deliver("H", grant);
      assert.ok(r.delivered);
      assert.equal(await r.written, undefined);
      assert.ok(captured);
      // n2 restarts under the same name; H logs in again and hosts.
      await n2.close();
      await sleep(5);
      n2 = await bareNode(nats, "n2");
      n2.p.join("H", "n2");
      n2.p.update("H", { state: "HOSTING", addr: "127.0.0.1:2" });
      spy.publish(nodeSubject("t", "n2"), captured!, { reply: "_INBOX.x.y" });
      // A request sealed now, with the cluster key, for n3 but sent to n2.
      spy.publish(
        nodeSubject("t", "n2"),
        sealEnvelope(new ClusterKeys(KEY), {
          node: "n1",
          boot: new Uint8Array(8).fill(3),
          seq: 1,
          time: Date.now() + 1,
          subject: nodeSubject("t", "n2"),
          payload: utf8(JSON.stringify({
            t: "kick",
            user: "H",
            reason: "revoked",
            to: "n3",
            reply: "_INBOX.x.z",
          })),
        }),
      );
      await until(() => n2.d.refused === 2, "two refusals");
      assert.deepEqual(n2.d.refusals(), {
        "cluster-stale": 1,
        "cluster-malformed": 1,
      });
      assert.equal(n2.p.get("H")?.state, "HOSTING");
      assert.equal(n2.got.length, 0);
    } finally {
      await spy.close();
      await n1.close();
      await n2.close();
    }
  });
});

Deno.test("cluster: another subscriber answering a request first with junk or a forged answer does not settle it; the real answer does", async () => {
  await withNats(async (nats) => {
    const n1 = await bareNode(nats, "n1");
    // n2's answer comes 200 ms late: the junk is there first.
    const n2 = await bareNode(nats, "n2", 200);
    const evil = await connect({ servers: nats.url });
    evil.subscribe(nodeSubject("t", "n2"), {
      callback: (_e, m) => {
        m.respond(new Uint8Array(60));
        // Sealed with the key, for another subject than the reply's.
        m.respond(sealEnvelope(new ClusterKeys(KEY), {
          node: "n2",
          boot: new Uint8Array(8).fill(4),
          seq: 1,
          time: Date.now(),
          subject: "_INBOX.other",
          payload: utf8(JSON.stringify({ ok: "absent" })),
        }));
      },
    });
    await evil.flush();
    try {
      n1.p.join("A", "n1");
      n2.p.join("B", "n2");
      n2.p.update("B", { state: "BUSY", partner: "A", isHost: true });
      await until(() => n1.p.get("B")?.state === "BUSY", "B busy on n1");
      const r = n1.d.deliver("B", {
        t: "relayed",
        peer: "A",
        data: "eA==",
      } as Push);
      assert.ok(r.delivered);
      assert.equal(await r.written, undefined);
      assert.equal(n2.got.length, 1);
      await until(() => n1.d.refused >= 2, "the junk refused");
      assert.equal(n1.d.refusals()["cluster-malformed"], 1);
      assert.equal(n1.d.refusals()["cluster-forged"], 1);
    } finally {
      await evil.close();
      await n1.close();
      await n2.close();
    }
  });
});

Deno.test("cluster: a session asked of a host whose node just died: the joiner is freed and refused", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      // The grant's answer is awaited longer than presence takes to call
      // n1 dead, so the joiner is freed by the death (went offline), not
      // by the request's timeout (the next test).
      const slow = FAST.staleMs! * 4;
      const n1 = await clusterNode(s, nats, "n1", slow);
      const n2 = await clusterNode(s, nats, "n2", slow);
      const a = await s.client(n1.port, "A");
      const b = await s.client(n2.port, "B");
      await a.client.handleLine("!session host");
      await until(
        () => n2.node.presence.get("A")?.state === "HOSTING",
        "A hosting on n2",
      );
      await n1.node.crash();
      const bm = b.ui.mark;
      await b.client.handleLine("!session A");
      await until(
        () => n2.node.presence.get("B")?.state === "IDLE",
        "B freed",
        slow,
      );
      // A's last entry (HOSTING) names no partner: B is freed as BUSY with
      // it, and its `session`, which waited for A's node, refused at once.
      await b.ui.waitFor(
        (e) =>
          e.kind === "error" && e.code === "refused-offline" &&
          /went offline/.test(e.text),
        bm,
      );
    });
  });
});

Deno.test("cluster: a grant its host's node does not answer: the joiner is freed and refused, the server cannot be reached", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a = await s.client(n1.port, "A");
      const b = await s.client(n2.port, "B");
      await a.client.handleLine("!session host");
      await until(
        () => n2.node.presence.get("A")?.state === "HOSTING",
        "A hosting on n2",
      );
      // n1 stays in presence but no longer answers requests.
      await n1.node.delivery.close();
      const bm = b.ui.mark;
      await b.client.handleLine("!session A");
      await until(
        () => n2.node.presence.get("B")?.state === "IDLE",
        "B freed",
        DELIVERY_TIMEOUT_MS + 3_000,
      );
      await b.ui.waitFor(
        (e) =>
          e.kind === "error" && e.code === "refused-offline" &&
          /server cannot be reached/.test(e.text),
        bm,
      );
      assert.ok(
        n2.log.some((l) =>
          l.event === "session-refused" &&
          l.fields.reason === "cluster-unreachable"
        ),
      );
    });
  });
});

Deno.test("cluster: NATS down: a relay to a partner on another node is answered cluster-unreachable", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a = await s.client(n1.port, "A");
      const b = await s.client(n2.port, "B", { relay: true });
      await crossSession(a, b);
      await talk(a, b, "before");
      await nats.kill();
      await until(() => n2.node.partial, "n2 partial");
      const bm = b.ui.mark;
      await b.client.handleLine("lost in the cluster");
      await b.ui.waitFor(isError("cluster-unreachable"), bm);
    });
  });
});

Deno.test("cluster: refusals are all counted but logged at most once per code per 10 s; a node's older boot is refused once a newer one is seen", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n2 = await clusterNode(s, nats, "n2");
      const nc = await connect({ servers: nats.url });
      s.defer(() => nc.close());
      const subject = nodeSubject("t", "n2");
      for (let i = 0; i < 5; i++) nc.publish(subject, new Uint8Array(60));
      await until(() => n2.node.delivery.refused === 5, "five refusals");
      const lines = () =>
        n2.logs.filter((l) => l.event === "cluster-refused").length;
      assert.equal(lines(), 1);
      // Kicks of a user nobody has, from boots 1, 2, then 1 again.
      const inbox = `_INBOX.test${Date.now()}`;
      const answers: string[] = [];
      const sub = nc.subscribe(`${inbox}.*`, {
        callback: (_e, m) => {
          answers.push(m.subject);
        },
      });
      s.defer(() => sub.unsubscribe());
      const kick = (boot: number, seq: number) =>
        nc.publish(
          subject,
          sealEnvelope(new ClusterKeys(KEY), {
            node: "n1",
            boot: new Uint8Array(8).fill(boot),
            seq,
            time: Date.now(),
            subject,
            payload: utf8(JSON.stringify({
              t: "kick",
              user: "Z",
              reason: "revoked",
              to: "n2",
              reply: `${inbox}.${boot}-${seq}`,
            })),
          }),
        );
      kick(1, 1);
      await until(() => answers.length === 1, "boot 1 answered");
      kick(2, 1);
      await until(() => answers.length === 2, "boot 2 answered");
      kick(1, 2);
      await until(() => n2.node.delivery.refused === 6, "boot 1 refused");
      assert.equal(n2.node.delivery.refusals()["cluster-replayed"], 1);
      await sleep(50);
      assert.deepEqual(answers, [`${inbox}.1-1`, `${inbox}.2-1`]);
      assert.equal(lines(), 2, "one line per code");
    });
  });
});
