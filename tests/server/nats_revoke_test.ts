/**
 * Revocation across nodes (PROTOCOL.md 11.4 "Revocation"): two
 * {@link ImServer}s on a real nats-server (tests/_nats.ts), each a
 * {@link ClusterNode}, with real clients over TCP loopback. A reload of node
 * 1's client directory that removes B, who is on node 2, sends node 2 a
 * sealed `kick` (`revoked`): B is told its key was revoked and leaves
 * `!list` on both nodes, and both nodes log it. A key changed on node 1
 * closes a connection made with the old key elsewhere, and keeps one made
 * with the new key (`keep`).
 * @module
 */

import assert from "node:assert/strict";
import type { UiEvent } from "../../lib/client/mod.ts";
import type { PublicIdentity } from "../../lib/crypto/mod.ts";
import { sleep } from "../../lib/util/mod.ts";
import { ClusterNode, type PresenceTiming } from "../../lib/server/nats/mod.ts";
import {
  type LogLine,
  type Scope,
  type TestClient,
  type TestServer,
  withScope,
} from "../_fixtures.ts";
import { clientDirectory, identities } from "../_helpers.ts";
import { type NatsServer, withNats } from "../_nats.ts";

const KEY = new Uint8Array(32).map((_, i) => i * 7 + 1);
/** Short presence timings, with room for a loaded machine. */
const FAST: Partial<PresenceTiming> = {
  coalesceMs: 20,
  heartbeatMs: 200,
  staleMs: 2_000,
  checkMs: 100,
  putTimeoutMs: 2_000,
};

interface TestNode extends TestServer {
  node: ClusterNode;
  logs: LogLine[];
}

/** A node of the cluster: a ClusterNode and the ImServer that uses it. */
async function clusterNode(
  s: Scope,
  nats: NatsServer,
  name: string,
  clients?: Map<string, PublicIdentity>,
): Promise<TestNode> {
  const logs: LogLine[] = [];
  const node = await ClusterNode.join({
    servers: [nats.url],
    node: name,
    clusterKey: KEY,
    cluster: "t",
    presenceTiming: FAST,
    reconnectTimeWaitMs: 50,
    log: (event, fields = {}) => logs.push({ event, fields }),
  });
  s.defer(() => node.close()); // after the server (cleanups run in reverse)
  const t = await s.server({
    ...node.serverOptions(),
    ...(clients && { clients }),
    requestLimits: { list: { burst: 10_000, refillMs: 1 } },
  });
  node.attach(t.server);
  return { ...t, node, logs };
}

/** `!list` until the users match `pred`; the last answer. */
async function listUntil(
  c: TestClient,
  pred: (users: Record<string, string>) => boolean,
  ms = 10_000,
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

const revokedShown = (e: UiEvent) =>
  (e.kind === "error" || e.kind === "system") &&
  /revoked by the server operator/i.test(e.text);

const logged = (logs: LogLine[], event: string, user: string) =>
  logs.find((l) => l.event === event && l.fields.user === user);

Deno.test("cluster: node 1's reload removes B, who is on node 2: B is told its key was revoked and is gone from !list on both nodes; both nodes log it", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      const a = await s.client(n1.port, "A");
      const b = await s.client(n2.port, "B");
      const c = await s.client(n2.port, "C");
      await listUntil(a, (u) => u.B === "IDLE" && u.C === "IDLE");
      const ids = await identities();
      const withoutB = clientDirectory(ids);
      withoutB.delete("B");
      const bm = b.ui.mark;
      await n1.server.reloadClients(withoutB);
      await b.ui.waitFor(revokedShown, bm);
      await listUntil(a, (u) => u.B === undefined && u.C === "IDLE");
      await listUntil(c, (u) => u.B === undefined && u.A === "IDLE");
      assert.deepEqual(logged(n1.log, "revoke-sent", "B")?.fields, {
        user: "B",
        node: "n2",
        result: "closed",
      });
      assert.equal(
        logged(n2.logs, "cluster-kick", "B")?.fields.reason,
        "revoked",
      );
      // Node 2's own copy of keys/ still holds B's key: it says so.
      assert.deepEqual(logged(n2.log, "revoked", "B")?.fields, {
        user: "B",
        by: "cluster",
        keyHeld: true,
      });
      // Nobody else was touched.
      assert.equal(n1.log.filter((l) => l.event === "revoke-sent").length, 1);
      // The kick makes the logout immediate, not permanent (PROTOCOL.md
      // 11.4): node 2, not reloaded, admits B's key again.
      const again = await s.client(n2.port, "B");
      await listUntil(a, (u) => u.B === "IDLE");
      assert.equal(again.ui.since(revokedShown).length, 0);
      assert.equal(n1.node.delivery.refused + n2.node.delivery.refused, 0);
    });
  });
});

Deno.test("cluster: node 1's reload changes B's key: B on node 2 with the old key is closed; with the new key (keep) it stays", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const ids = await identities();
      // The new key of B: C's key pair stands in for it.
      const moved = clientDirectory(ids);
      moved.set("B", ids.C.publicIdentity);
      const n1 = await clusterNode(s, nats, "n1");
      // Node 2 was reloaded first: it holds B's new key already.
      const n2 = await clusterNode(s, nats, "n2", moved);
      const n3 = await clusterNode(s, nats, "n3");
      const a = await s.client(n1.port, "A");
      const bNew = await s.client(n2.port, "B", { identity: ids.C });
      await listUntil(a, (u) => u.B === "IDLE");
      let bm = bNew.ui.mark;
      await n1.server.reloadClients(moved);
      assert.equal(logged(n1.log, "revoke-sent", "B")?.fields.result, "absent");
      assert.equal(logged(n2.log, "revoked", "B"), undefined);
      await listUntil(a, (u) => u.B === "IDLE");
      assert.equal(bNew.ui.since(revokedShown, bm).length, 0);
      // The same change seen on node 3 while B is there with the old key.
      await bNew.client.quit();
      await listUntil(a, (u) => u.B === undefined);
      const bOld = await s.client(n3.port, "B");
      await listUntil(a, (u) => u.B === "IDLE");
      bm = bOld.ui.mark;
      const back = clientDirectory(ids);
      await n1.server.reloadClients(back); // B's key back to the old one
      await n1.server.reloadClients(moved); // and changed again
      await bOld.ui.waitFor(revokedShown, bm);
      await listUntil(a, (u) => u.B === undefined);
      assert.equal(
        n1.log.filter((l) =>
          l.event === "revoke-sent" && l.fields.node === "n3" &&
          l.fields.result === "closed"
        ).length,
        1,
      );
      assert.deepEqual(logged(n3.log, "revoked", "B")?.fields, {
        user: "B",
        by: "cluster",
        keyHeld: true,
      });
    });
  });
});
