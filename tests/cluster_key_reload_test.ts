/**
 * The cluster key on SIGHUP (PROTOCOL.md 11.1 "Keys on SIGHUP"):
 * `ClusterKeys.replace()` swaps the keys in place, so what the old key
 * sealed no longer opens; `ClusterNode.replaceKey()` on a real nats-server
 * (tests/_nats.ts): a node with the new key and one with the old cannot
 * hear each other (snapshots and requests refused, `cluster-forged`) until
 * both changed, then the views converge; `reloadClusterKey()` (what
 * `im serve` runs on SIGHUP) with a changed, the same, a missing, a bad and
 * a too open file: a failure keeps the key in use and logs one line.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ClusterKeys,
  EnvelopeWindow,
  openEnvelope,
  sealEnvelope,
} from "../lib/proto/mod.ts";
import { NetError } from "../lib/util/mod.ts";
import { clusterKeyId, ensureClusterKey } from "../lib/keystore/mod.ts";
import { ClusterNode, type PresenceTiming } from "../lib/server/nats/mod.ts";
import { reloadClusterKey } from "../cmd/serve.ts";
import { type LogLine, until } from "./_fixtures.ts";
import { withNats } from "./_nats.ts";

const OLD = new Uint8Array(32).fill(0x11);
const NEW = new Uint8Array(32).fill(0x22);
const posix = Deno.build.os !== "windows";

const envelope = (keys: ClusterKeys, seq: number) =>
  sealEnvelope(keys, {
    node: "n1",
    boot: new Uint8Array(8).fill(1),
    seq,
    time: 1_000,
    subject: "im.t.node.n2",
    payload: new TextEncoder().encode("{}"),
  });

const open = (keys: ClusterKeys, env: Uint8Array) =>
  openEnvelope(keys, env, {
    subject: "im.t.node.n2",
    now: 1_000,
    window: new EnvelopeWindow(),
  });

Deno.test("ClusterKeys.replace(): what the old key sealed is refused (cluster-forged), what is sealed after opens under the new key only", () => {
  const keys = new ClusterKeys(OLD);
  const before = envelope(keys, 1);
  open(keys, before);
  keys.replace(NEW);
  assert.throws(() => open(keys, before), { code: "cluster-forged" });
  const after = envelope(keys, 2);
  open(new ClusterKeys(NEW), after);
  assert.throws(() => open(new ClusterKeys(OLD), after), {
    code: "cluster-forged",
  });
});

Deno.test("ClusterKeys.replace() refuses a key of another length and changes nothing", () => {
  const keys = new ClusterKeys(OLD);
  const before = envelope(keys, 1);
  assert.throws(() => keys.replace(new Uint8Array(31)), {
    code: "bad-length",
  });
  open(keys, before);
});

/** Presence timings with room for a loaded machine: stale after 3 s. */
const TIMING: Partial<PresenceTiming> = {
  coalesceMs: 20,
  heartbeatMs: 200,
  staleMs: 3_000,
  checkMs: 100,
  putTimeoutMs: 2_000,
};

Deno.test("ClusterNode.replaceKey(): the old key's snapshots and requests are refused by a node with the new one, and the other way; once both changed the views converge", async () => {
  await withNats(async (nats) => {
    const join = (node: string) =>
      ClusterNode.join({
        servers: [nats.url],
        node,
        clusterKey: new Uint8Array(OLD),
        cluster: "t",
        presenceTiming: TIMING,
        deliveryTimeoutMs: 1_000,
        reconnectTimeWaitMs: 50,
      });
    const n1 = await join("n1");
    try {
      const n2 = await join("n2");
      try {
        n2.presence.join("B", "n2");
        await until(
          () => n1.presence.get("B")?.node === "n2",
          "B on n2 in n1's view",
          10_000,
        );
        assert.equal(n1.replaceKey(new Uint8Array(NEW)), true);
        assert.equal(n1.replaceKey(new Uint8Array(NEW)), false, "the same key");
        // A request sealed under the new key: n2, on the old one, refuses it.
        const r = await n1.delivery.kick("B", "revoked");
        assert.ok(r instanceof NetError && r.code === "cluster-unreachable");
        await until(
          () => (n2.delivery.refusals()["cluster-forged"] ?? 0) >= 1,
          "n2 refused n1's request",
          10_000,
        );
        // Snapshots both ways are refused: each drops the other as stale.
        await until(
          () =>
            (n2.presence.refusals()["cluster-forged"] ?? 0) >= 1 &&
            (n1.presence.refusals()["cluster-forged"] ?? 0) >= 1,
          "snapshots refused both ways",
          10_000,
        );
        await until(
          () => !n2.nodes().includes("n1") && !n1.nodes().includes("n2"),
          "each dropped the other",
          15_000,
        );
        // n2 changes too: the views converge, requests are answered.
        assert.equal(n2.replaceKey(new Uint8Array(NEW)), true);
        await until(
          () =>
            n1.presence.get("B")?.node === "n2" && n2.nodes().includes("n1"),
          "the views converged",
          10_000,
        );
        assert.equal(await n1.delivery.kick("B", "revoked"), "absent");
      } finally {
        await n2.close();
      }
    } finally {
      await n1.close();
    }
  });
});

/** A node stand-in: keeps the keys it is given (copies) and says whether each changed. */
function holder(first: Uint8Array) {
  const given: Uint8Array[] = [];
  const seen: Uint8Array[] = [];
  let inUse = new Uint8Array(first);
  return {
    given,
    seen,
    replaceKey(k: Uint8Array): boolean {
      seen.push(k);
      given.push(new Uint8Array(k));
      if (k.every((b, i) => b === inUse[i])) return false;
      inUse = new Uint8Array(k);
      return true;
    },
  };
}

Deno.test("reloadClusterKey(): a changed file replaces the key (cluster-key-replaced with both ids), the same file changes nothing, the bytes are wiped after", async () => {
  const dir = await Deno.makeTempDir({ prefix: "im-cluster-reload-" });
  try {
    const made = await ensureClusterKey(dir);
    const path = join(dir, "server", "cluster.key");
    const first = Uint8Array.fromBase64((await Deno.readTextFile(path)).trim());
    const node = holder(first);
    const logs: LogLine[] = [];
    const log = (event: string, fields = {}) => logs.push({ event, fields });
    assert.equal(
      await reloadClusterKey(dir, node, made.fingerprint, log),
      made.fingerprint,
    );
    assert.deepEqual(logs, [], "the same key: nothing logged");
    await Deno.writeTextFile(path, `${NEW.toBase64()}\n`, { mode: 0o600 });
    const id = await reloadClusterKey(dir, node, made.fingerprint, log);
    assert.equal(id, clusterKeyId(NEW));
    assert.deepEqual(logs, [{
      event: "cluster-key-replaced",
      fields: { old: made.fingerprint, new: id },
    }]);
    assert.deepEqual(node.given.at(-1), NEW);
    assert.ok(node.seen.every((k) => k.every((b) => b === 0)), "wiped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reloadClusterKey(): a missing, malformed or too open file keeps the key in use and logs one line (cluster-key-failed); it never throws", async () => {
  const dir = await Deno.makeTempDir({ prefix: "im-cluster-reload-" });
  try {
    const made = await ensureClusterKey(dir);
    const path = join(dir, "server", "cluster.key");
    const node = holder(new Uint8Array(32));
    const cases: Array<[string, () => Promise<void>, RegExp]> = [
      ["missing", () => Promise.resolve(), /no such file/],
      [
        "malformed",
        () => Deno.writeTextFile(path, "not a key\n", { mode: 0o600 }),
        /expected 32 bytes as base64 on one line/,
      ],
    ];
    if (posix) {
      cases.push([
        "too open",
        async () => {
          await Deno.writeTextFile(path, `${NEW.toBase64()}\n`);
          await Deno.chmod(path, 0o644);
        },
        /lets group or others read it/,
      ]);
    }
    for (const [what, breakIt, why] of cases) {
      await Deno.remove(path).catch(() => {});
      await breakIt();
      const logs: LogLine[] = [];
      const id = await reloadClusterKey(
        dir,
        node,
        made.fingerprint,
        (event, fields = {}) => logs.push({ event, fields }),
      );
      assert.equal(id, made.fingerprint, what);
      assert.equal(logs.length, 1, what);
      assert.equal(logs[0]!.event, "cluster-key-failed", what);
      assert.equal(logs[0]!.fields.kept, made.fingerprint, what);
      const error = String(logs[0]!.fields.error);
      assert.match(error, why, what);
      assert.ok(!error.includes("\n"), what);
    }
    assert.equal(node.given.length, 0, "the node was given no key");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
