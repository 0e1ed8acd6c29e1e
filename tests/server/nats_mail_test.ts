/**
 * Mailboxes across the nodes of a cluster (PROTOCOL.md 11.4 `mail-wake`,
 * 11.6; lib/server/nats/store.ts, prekeys.ts, mail_wake.ts, node.ts) on
 * one real nats-server (tests/_nats.ts), with two {@link ImServer}s each a
 * {@link ClusterNode} and real clients over TCP: a mail sent through node 1
 * to a user offline reaches it when it logs in on node 2, in order and
 * once, and its sender on node 1 gets the receipts; a mail to a user
 * online on node 2 is pushed to it at once; a node that dies after it
 * acknowledged a mail loses nothing (the other node hands it over, and
 * the sender, back through the other node, gets its receipt). Waits are
 * generous and no duration is asserted: the machine may be loaded. The
 * wake-up's envelope: a forged, moved or junk one wakes nobody and is
 * counted; the users of one turn go in envelopes of at most 256.
 * @module
 */

import assert from "node:assert/strict";
import {
  type ClientOptions,
  MemoryMailVault,
  type UiEvent,
} from "../../lib/client/mod.ts";
import { MemoryPeerPins } from "../../lib/client/pinning.ts";
import { connect } from "@nats-io/transport-node";
import { ClusterKeys, sealEnvelope } from "../../lib/proto/mod.ts";
import { sleep, utf8 } from "../../lib/util/mod.ts";
import {
  ClusterNode,
  MAIL_WAKE_BATCH,
  MailWake,
  mailWakeSubject,
  type PresenceTiming,
} from "../../lib/server/nats/mod.ts";
import {
  isError,
  type Scope,
  type TestClient,
  type TestServer,
  withScope,
} from "../_fixtures.ts";
import { type NatsServer, withNats } from "../_nats.ts";

const KEY = new Uint8Array(32).map((_, i) => i * 7 + 1);
/** The FAST timings of nats_delivery_test.ts: a loaded machine is not taken for a dead node. */
const FAST: Partial<PresenceTiming> = {
  coalesceMs: 20,
  heartbeatMs: 200,
  staleMs: 2_000,
  checkMs: 100,
  putTimeoutMs: 2_000,
};
/** How long a mail may take to show on a loaded machine (never asserted as a duration). */
const GENEROUS_MS = 15_000;

interface TestNode extends TestServer {
  node: ClusterNode;
}

async function clusterNode(
  s: Scope,
  nats: NatsServer,
  name: string,
): Promise<TestNode> {
  const node = await ClusterNode.join({
    servers: [nats.url],
    node: name,
    clusterKey: KEY.slice(),
    cluster: "m",
    presenceTiming: FAST,
    reconnectTimeWaitMs: 50,
  });
  s.defer(() => node.close()); // after the server (cleanups run in reverse)
  const t = await s.server({ ...node.serverOptions(), mailRate: 10_000 });
  node.attach(t.server);
  return { ...t, node };
}

const mailIn = (text?: string) => (e: UiEvent) =>
  e.kind === "mail" && e.direction === "in" &&
  (text === undefined || e.text === text);
const mailOut = (text: string) => (e: UiEvent) =>
  e.kind === "mail" && e.direction === "out" && e.text === text;
const receipt = (status: string, id: string) => (e: UiEvent) =>
  e.kind === "receipt" && e.via === "mail" && e.status === status &&
  e.id === id;

/** The id of the mail `text` a client sent, from its echo. */
function sentId(c: TestClient, text: string): string {
  const e = c.ui.events.find(mailOut(text));
  assert.ok(e?.kind === "mail", `no echo of ${JSON.stringify(text)}`);
  return e.id;
}

function noErrors(...cs: TestClient[]): void {
  for (const c of cs) {
    assert.deepEqual(c.ui.since(isError()), [], `${c.user}: no error`);
  }
}

Deno.test("cluster mail: through node 1 to B offline, read on node 2 in order and once with A's receipts; to B online on node 2 pushed at once; node 1 dies after acknowledging a mail and nothing is lost", async () => {
  await withNats(async (nats) => {
    await withScope(async (s) => {
      const n1 = await clusterNode(s, nats, "n1");
      const n2 = await clusterNode(s, nats, "n2");
      // Each user keeps its mail keys, seen ids and pending receipts across
      // its logins (as its key directory would), on whatever node.
      const vaults = new Map<string, MemoryMailVault>();
      const pins = new Map<string, MemoryPeerPins>();
      const login = (port: number, user: string) => {
        if (!vaults.has(user)) vaults.set(user, new MemoryMailVault());
        if (!pins.has(user)) pins.set(user, new MemoryPeerPins());
        const over: Partial<ClientOptions> = {
          mailVault: vaults.get(user)!,
          peerPins: pins.get(user)!,
          waitForReplies: true, // a line returns once the server stored the mail
        };
        return s.client(port, user, over);
      };

      // B published its keys on node 2 once, and is offline.
      await (await login(n2.port, "B")).client.quit();
      const a = await login(n1.port, "A");
      for (const t of ["one", "two", "three"]) {
        await a.client.handleLine(`!msg B ${t}`);
      }
      assert.equal(
        a.ui.since((e) => e.kind === "receipt" && e.status === "stored")
          .length,
        3,
      );

      // B logs in on node 2: the three, in order, once; A's receipts on node 1.
      const b = await login(n2.port, "B");
      await b.ui.waitFor(mailIn("three"), 0, GENEROUS_MS);
      for (const t of ["one", "two", "three"]) {
        await a.ui.waitFor(
          receipt("delivered", sentId(a, t)),
          0,
          GENEROUS_MS,
        );
      }
      // B online on node 2: A's next mail through node 1 is pushed to it.
      const mark = b.ui.mark;
      await a.client.handleLine("!msg B four");
      await b.ui.waitFor(mailIn("four"), mark, GENEROUS_MS);
      await a.ui.waitFor(
        receipt("delivered", sentId(a, "four")),
        0,
        GENEROUS_MS,
      );
      assert.deepEqual(
        b.ui.since(mailIn()).map((e) => e.kind === "mail" && e.text),
        ["one", "two", "three", "four"],
      );
      noErrors(a, b);

      // B goes offline; node 1 acknowledges A's mail and dies at once, no goodbye.
      await b.client.quit();
      await a.client.handleLine("!msg B five");
      const fiveId = sentId(a, "five");
      await n1.node.crash();
      await n1.server.close();
      // B, back on node 2, gets it once (and nothing it had before);
      // A, back through node 2, gets its receipt.
      const b2 = await login(n2.port, "B");
      await b2.ui.waitFor(mailIn("five"), 0, GENEROUS_MS);
      const a2 = await login(n2.port, "A");
      await a2.ui.waitFor(receipt("delivered", fiveId), 0, GENEROUS_MS);
      assert.deepEqual(
        b2.ui.since(mailIn()).map((e) => e.kind === "mail" && e.text),
        ["five"],
      );
      noErrors(b2, a2);
      assert.deepEqual(n2.node.store.refusals(), {});
    });
  });
});

Deno.test("mail-wake (11.4): the users of one turn reach the other node in envelopes of at most 256, not the sender's own; junk, another key, another subject and a replay wake nobody and are counted; a node whose NATS link comes back wakes every stream", async () => {
  await withNats(async (nats) => {
    const opts = {
      servers: nats.url,
      reconnectTimeWait: 50,
      maxReconnectAttempts: -1,
    };
    const nc1 = await connect(opts);
    const nc2 = await connect(opts);
    const keys = new ClusterKeys(KEY);
    const w1 = await MailWake.open({ nc: nc1, cluster: "m", node: "n1", keys });
    const w2 = await MailWake.open({ nc: nc2, cluster: "m", node: "n2", keys });
    try {
      const woken1: string[] = [], woken2: string[] = [];
      let everyone = 0;
      w1.attach((u) => woken1.push(u));
      w2.attach((u) => woken2.push(u), () => everyone++);
      const envelopes: Uint8Array[] = [];
      const tap = nc2.subscribe(mailWakeSubject("m"), {
        callback: (_e, m) => {
          envelopes.push(m.data.slice());
        },
      });
      await nc2.flush(); // the tap is in place before the first wake-up
      const users = Array.from({ length: 300 }, (_, i) => `u${i}`);
      for (const u of [...users, "u1", "u2"]) w1.tell(u);
      const deadline = Date.now() + GENEROUS_MS;
      while (woken2.length < 300 && Date.now() < deadline) await sleep(10);
      assert.deepEqual(woken2, users, "each once, in order");
      assert.equal(envelopes.length, Math.ceil(300 / MAIL_WAKE_BATCH));
      assert.deepEqual(woken1, [], "a node ignores its own");

      const subject = mailWakeSubject("m");
      const seal = (k: ClusterKeys, on: string, seq: number) =>
        sealEnvelope(k, {
          node: "n9",
          boot: new Uint8Array(8).fill(9),
          seq,
          time: Date.now(),
          subject: on,
          payload: utf8(JSON.stringify({ t: "mail-wake", users: ["B"] })),
        });
      nc1.publish(subject, new Uint8Array([1, 2, 3]));
      nc1.publish(
        subject,
        seal(new ClusterKeys(new Uint8Array(32)), subject, 1),
      );
      nc1.publish(subject, seal(keys, "im.m.node.n2", 2));
      nc1.publish(subject, envelopes[0]!); // n1's, replayed
      const good = seal(keys, subject, 3);
      nc1.publish(subject, good);
      nc1.publish(subject, good); // replayed
      await nc1.flush();
      while (!woken2.includes("B") && Date.now() < deadline) await sleep(10);
      await nc2.flush();
      await sleep(50);
      assert.deepEqual(woken2.slice(300), ["B"], "only the good one, once");
      assert.deepEqual(w2.refusals(), {
        "cluster-malformed": 1,
        "cluster-forged": 2,
        "cluster-replayed": 2,
      });
      tap.unsubscribe();

      // NATS restarts: a wake-up may have been lost meanwhile.
      assert.equal(everyone, 0);
      await nats.kill();
      await nats.restart();
      const back = Date.now() + GENEROUS_MS;
      while (everyone === 0 && Date.now() < back) await sleep(20);
      assert.equal(everyone, 1, "every stream woken once the link is back");
    } finally {
      await w1.close();
      await w2.close();
      await nc1.close();
      await nc2.close();
    }
  });
});
