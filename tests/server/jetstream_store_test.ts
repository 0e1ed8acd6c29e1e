/**
 * The cluster's mailbox seams on JetStream (PROTOCOL.md 11.6,
 * lib/server/nats/store.ts and prekeys.ts) on a real nats-server
 * (tests/_nats.ts), never a mock: the Store and Prekeys contracts the
 * memory and SQLite ones pass, then what only a cluster has: two nodes
 * (two connections) on one stream and bucket, two takers racing for one
 * user's prekeys, and a NATS process of three killed mid-traffic with
 * replicas 3, every acknowledged append read back; and what is sealed at
 * rest (11.6): NATS holds no plaintext, and a record moved to another
 * user's subject, altered or sealed with another key, a prekey value moved
 * to another key, is refused (counted) and never returned.
 * @module
 */

import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { StoreKeys } from "../../lib/proto/mod.ts";
import {
  JetStreamStore,
  mailStream,
  mailSubject,
} from "../../lib/server/nats/store.ts";
import { KvPrekeys, prekeysBucket } from "../../lib/server/nats/prekeys.ts";
import type { Prekeys, Store } from "../../lib/server/mod.ts";
import {
  type NatsServer,
  startNats,
  startNatsCluster,
  withNats,
} from "../_nats.ts";
import { storeContract } from "./store_contract.ts";
import { prekeysContract } from "./prekeys_contract.ts";

const CLUSTER = "team";
const KEYS = new StoreKeys(new Uint8Array(32).fill(3));

function connectTo(urls: string | string[]): Promise<NatsConnection> {
  return connect({
    servers: urls,
    reconnectTimeWait: 50,
    maxReconnectAttempts: -1,
  });
}

/** A store on its own nats-server; close() stops both. */
async function freshStore(clock: () => number): Promise<Store> {
  const nats = await startNats();
  const nc = await connectTo(nats.url);
  const s = await JetStreamStore.open({
    nc,
    cluster: CLUSTER,
    keys: KEYS,
    now: clock,
  });
  let done = false;
  return {
    append: (u, d, o) => s.append(u, d, o),
    appendMany: (e) => s.appendMany(e),
    read: (u, o) => s.read(u, o),
    ack: (u, q) => s.ack(u, q),
    expire: (b, o) => s.expire(b, o),
    usage: (u) => s.usage(u),
    close: async () => {
      await s.close();
      if (done) return;
      done = true;
      await nc.close();
      await nats.stop();
    },
  };
}

async function freshPrekeys(): Promise<Prekeys> {
  const nats = await startNats();
  const nc = await connectTo(nats.url);
  const p = await KvPrekeys.open({ nc, cluster: CLUSTER, keys: KEYS });
  let done = false;
  return {
    publish: (u, c, k) => p.publish(u, c, k),
    certs: (u) => p.certs(u),
    take: (u) => p.take(u),
    count: (u) => p.count(u),
    close: async () => {
      await p.close();
      if (done) return;
      done = true;
      await nc.close();
      await nats.stop();
    },
  };
}

storeContract("JetStreamStore", freshStore);
prekeysContract("KvPrekeys", freshPrekeys);

const bytes = (...v: number[]) => new Uint8Array(v);

/** Two nodes: each its own connection to `nats`, its store and prekeys. */
async function twoNodes(
  nats: NatsServer,
  fn: (
    a: { s: JetStreamStore; p: KvPrekeys },
    b: { s: JetStreamStore; p: KvPrekeys },
  ) => Promise<void>,
): Promise<void> {
  const ncs = [await connectTo(nats.url), await connectTo(nats.url)];
  const nodes = [];
  for (const nc of ncs) {
    nodes.push({
      s: await JetStreamStore.open({ nc, cluster: CLUSTER, keys: KEYS }),
      p: await KvPrekeys.open({ nc, cluster: CLUSTER, keys: KEYS }),
    });
  }
  try {
    await fn(nodes[0]!, nodes[1]!);
  } finally {
    for (const n of nodes) {
      await n.s.close();
      await n.p.close();
    }
    for (const nc of ncs) await nc.close();
  }
}

Deno.test("JetStreamStore and KvPrekeys: the names of 11.6", () => {
  assert.equal(mailStream("team"), "IM_MAIL_team");
  assert.equal(mailSubject("team", "bob"), "im.team.mail.bob");
  assert.equal(prekeysBucket("team"), "im_team_prekeys");
});

Deno.test("JetStreamStore: two nodes share the logs; usage follows the other node's appends, acks and expiry; seqs never reused", async () => {
  await withNats(async (nats) => {
    await twoNodes(nats, async (a, b) => {
      const s1 = await a.s.append("A", bytes(1, 2, 3));
      const s2 = await b.s.append("A", bytes(4, 5));
      await b.s.append("A", bytes(6), { counted: false });
      assert.ok(s2 > s1);
      assert.deepEqual(
        (await a.s.read("A")).map((r) => r.seq),
        (await b.s.read("A")).map((r) => r.seq),
      );
      assert.deepEqual(await a.s.usage("A"), { count: 2, bytes: 5 });
      assert.deepEqual(await b.s.usage("A"), { count: 2, bytes: 5 });
      assert.equal(await b.s.ack("A", s1), 1);
      assert.deepEqual(
        await a.s.usage("A"),
        { count: 1, bytes: 2 },
        "node a saw b's ack",
      );
      const s4 = await a.s.append("A", bytes(7, 7, 7, 7));
      assert.deepEqual(await b.s.usage("A"), { count: 2, bytes: 6 });
      // A removal that is not a prefix (b's expiry of the middle record).
      const gone = await b.s.expire(Date.now() + 1, { limit: 1 });
      assert.deepEqual(gone.map((r) => r.seq), [s2]);
      assert.deepEqual(await a.s.usage("A"), { count: 1, bytes: 4 });
      assert.equal(await a.s.ack("A", s4), 2);
      const s5 = await b.s.append("A", bytes(8));
      assert.ok(s5 > s4, "a purged subject's seqs go on");
      assert.deepEqual(await a.s.usage("A"), { count: 1, bytes: 1 });
    });
  });
});

Deno.test("JetStreamStore keeps records across a NATS restart (file storage), and an existing stream is reused", async () => {
  const nats = await startNats();
  try {
    let nc = await connectTo(nats.url);
    let s = await JetStreamStore.open({ nc, cluster: CLUSTER, keys: KEYS });
    const q = await s.append("A", bytes(9));
    await s.close();
    await nc.close();
    await nats.kill();
    await nats.restart();
    nc = await connectTo(nats.url);
    s = await JetStreamStore.open({ nc, cluster: CLUSTER, keys: KEYS });
    assert.deepEqual((await s.read("A")).map((r) => [r.seq, [...r.data]]), [[
      q,
      [9],
    ]]);
    assert.ok((await s.append("A", bytes(1))) > q);
    await s.close();
    await assert.rejects(s.read("A"), /closed/);
    await nc.close();
  } finally {
    await nats.stop();
  }
});

Deno.test("KvPrekeys: two nodes racing for one user's one-time prekeys never hand one out twice", async () => {
  await withNats(async (nats) => {
    await twoNodes(nats, async (a, b) => {
      const ids = Array.from({ length: 40 }, (_, i) => i + 1);
      const certs = {
        identityCert: bytes(1, 1),
        signedPrekeyCert: bytes(2, 1),
      };
      await a.p.publish(
        "B",
        certs,
        ids.map((id) => ({ id, opk: new Uint8Array(36).fill(id) })),
      );
      assert.equal(await b.p.count("B"), 40);
      const race = (p: KvPrekeys) =>
        Promise.all(Array.from({ length: 30 }, () => p.take("B")));
      const [fromA, fromB] = await Promise.all([race(a.p), race(b.p)]);
      const got = [...fromA, ...fromB].map((t) => t!.oneTime?.id).filter((id) =>
        id !== undefined
      );
      assert.equal(got.length, 40, "every key handed out");
      assert.deepEqual(
        [...new Set(got)].sort((x, y) => x - y),
        ids,
        "none twice",
      );
      assert.ok(
        fromA.some((t) => t!.oneTime) && fromB.some((t) => t!.oneTime),
        "both nodes won some",
      );
      for (const t of [...fromA, ...fromB]) {
        if (t!.oneTime) assert.equal(t!.oneTime.opk[0], t!.oneTime.id);
      }
      assert.equal(await a.p.count("B"), 0);
    });
  });
});

Deno.test({
  name:
    "JetStreamStore on a 3-process NATS cluster, replicas 3: a process killed mid-traffic loses no acknowledged append",
  fn: async () => {
    const cluster = await startNatsCluster(3);
    const start = Date.now();
    let nc: NatsConnection | undefined;
    try {
      nc = await connectTo(cluster.urls);
      const s = await JetStreamStore.open({
        nc,
        cluster: CLUSTER,
        keys: KEYS,
        replicas: 3,
        retryMs: 15_000,
      });
      const acked = new Map<number, Uint8Array>();
      let failed = 0;
      const errors = new Set<string>();
      let stop = false;
      const writer = async (w: number) => {
        for (let i = 0; !stop; i++) {
          const data = bytes(w, i & 0xff, (i >> 8) & 0xff);
          try {
            acked.set(await s.append(`U${w}`, data), data);
          } catch (e) {
            errors.add(String(e));
            failed++;
          }
        }
      };
      const writers = [0, 1, 2, 3].map(writer);
      while (acked.size < 200) await new Promise((r) => setTimeout(r, 10));
      // Kill the stream's leader: the harshest of the three to lose.
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      const leader = (await jsm.streams.info(mailStream(CLUSTER))).cluster
        ?.leader;
      const victim = cluster.servers[Number(leader?.slice(1)) - 1];
      assert.ok(victim, `the leader is ${leader}`);
      const atKill = acked.size;
      const killedAt = Date.now();
      const before = killedAt - start;
      let resumed = 0;
      await victim.kill();
      while (Date.now() - killedAt < 1_500 || acked.size < atKill + 200) {
        await new Promise((r) => setTimeout(r, 20));
        if (!resumed && acked.size > atKill + 4) {
          resumed = Date.now() - killedAt;
        }
        // A leader election takes about 5 s; on a busy machine (CI runs
        // two suites at once) more. The budget counts from the kill, not
        // from the cluster's start, which a loaded machine makes slow.
        if (Date.now() - killedAt > 30_000) break;
      }
      stop = true;
      await Promise.all(writers);
      assert.ok(
        acked.size >= atKill + 200,
        `appends went on after the kill (${acked.size - atKill})`,
      );
      let read = 0;
      for (let w = 0; w < 4; w++) {
        const recs = await s.read(`U${w}`);
        read += recs.length;
        for (const r of recs) {
          const want = acked.get(r.seq);
          if (want) assert.deepEqual([...r.data], [...want]);
        }
        const seqs = new Set(recs.map((r) => r.seq));
        for (const [seq, data] of acked) {
          if (data[0] === w) {
            assert.ok(seqs.has(seq), `acknowledged seq ${seq} of U${w} kept`);
          }
        }
      }
      assert.ok(read >= acked.size);
      console.log(
        `leader ${leader} killed; acknowledged ${acked.size} (${atKill} before the kill), failed ${failed}, started and ran ${before} ms, appends resumed ${resumed} ms after the kill, read ${read}, ${
          Date.now() - start
        } ms; ${[...errors].join(" | ")}`,
      );
      await s.close();
    } finally {
      await nc?.close();
      await cluster.stop();
    }
  },
});

Deno.test("JetStreamStore and KvPrekeys seal what NATS keeps (11.6): no plaintext in NATS; a record moved to another user's subject, altered, of another key or junk is refused, counted, logged once and never returned; expire removes it", async () => {
  await withNats(async (nats) => {
    const nc = await connectTo(nats.url);
    const logs: Array<{ event: string; fields: Record<string, unknown> }> = [];
    const log = (event: string, fields = {}) => logs.push({ event, fields });
    const s = await JetStreamStore.open({
      nc,
      cluster: CLUSTER,
      keys: KEYS,
      log,
    });
    const p = await KvPrekeys.open({ nc, cluster: CLUSTER, keys: KEYS, log });
    try {
      const secret = new TextEncoder().encode("plaintext-marker-1234");
      const seq = await s.append("B", secret);
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      const raw = (await jsm.streams.getMessage(mailStream(CLUSTER), { seq }))!;
      const text = new TextDecoder().decode(raw.data);
      assert.ok(!text.includes("plaintext-marker"), "sealed at rest");
      assert.deepEqual(
        [...(raw.header?.keys() ?? [])],
        ["Nats-Msg-Id"],
        "no plain header of at or counted",
      );
      const js = jetstream(nc);
      const put = (user: string, data: Uint8Array) =>
        js.publish(mailSubject(CLUSTER, user), data);
      // Moved (copied) into A's log, altered in B's, another key, junk.
      await put("A", raw.data);
      const altered = raw.data.slice();
      altered[30] = altered[30]! ^ 1;
      await put("B", altered);
      const other = await JetStreamStore.open({
        nc,
        cluster: CLUSTER,
        keys: new StoreKeys(new Uint8Array(32).fill(4)),
      });
      await other.append("B", secret);
      await put("B", new Uint8Array([1, 2, 3]));
      assert.deepEqual(await s.read("A"), [], "the moved record is refused");
      assert.deepEqual(await s.usage("A"), { count: 0, bytes: 0 });
      const b = await s.read("B");
      assert.deepEqual(b.map((r) => r.seq), [seq], "only B's own record");
      assert.deepEqual(b[0]!.data, secret);
      assert.deepEqual(await s.usage("B"), { count: 1, bytes: secret.length });
      assert.deepEqual(s.refusals()["store-malformed"], 2, "junk, twice read");
      assert.ok(s.refusals()["store-forged"]! >= 3);
      const lines = logs.filter((l) => l.event === "cluster-store-refused");
      assert.deepEqual(
        lines.map((l) => l.fields.code).sort(),
        ["store-forged", "store-malformed"],
        "one line per code per 10 s",
      );
      assert.ok(!JSON.stringify(logs).includes("plaintext"));
      // The sweep removes the refused ones (NATS's time is old enough), no receipt for them.
      const gone = await s.expire(Date.now() + 1_000, {
        replaceWith: (r) => ({ user: "Z", data: r.data, counted: false }),
      });
      assert.deepEqual(gone.map((r) => r.seq), [seq]);
      const info = await jsm.streams.info(mailStream(CLUSTER), {
        subjects_filter: `im.${CLUSTER}.mail.*`,
      });
      assert.deepEqual(info.state.subjects, { [mailSubject(CLUSTER, "Z")]: 1 });
      await other.close();

      // Prekeys: certificates moved to another user, a one-time prekey to another key.
      const certs = { identityCert: bytes(1, 1), signedPrekeyCert: bytes(2) };
      await p.publish("B", certs, [{ id: 2, opk: new Uint8Array(36).fill(2) }]);
      const kv = await new Kvm(nc).open(prekeysBucket(CLUSTER));
      const keys: string[] = [];
      for await (const k of await kv.keys()) keys.push(k);
      const opkKey = keys.find((k) => k.startsWith("opk.B."))!;
      const certsValue = (await kv.get("certs.B"))!.value;
      await kv.put("certs.C", certsValue);
      await kv.put(
        opkKey.replace(/\d{10}$/, "0000000001"),
        (await kv.get(opkKey))!.value,
      );
      assert.equal(await p.certs("C"), undefined, "as no certificates");
      assert.deepEqual(await p.certs("B"), certs);
      const t = await p.take("B");
      assert.equal(t?.oneTime?.id, 2, "the moved prekey passed over");
      assert.equal((await p.take("B"))?.oneTime, undefined);
      assert.equal(p.refusals()["store-forged"], 3);
    } finally {
      await s.close();
      await p.close();
      await nc.close();
    }
  });
});
