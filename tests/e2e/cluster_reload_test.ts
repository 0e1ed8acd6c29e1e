/**
 * End to end: `im serve --cluster` re-reads `server/cluster.key` on SIGHUP
 * (PROTOCOL.md 11.1 "Keys on SIGHUP"), on a real nats-server. A node of
 * the test holding the new key cannot hear the server until its key file is
 * changed and it gets SIGHUP; then it can (`cluster-key-replaced`). A file
 * that is not a key keeps the key in use: one log line, and the server goes
 * on.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ClusterNode } from "../../lib/server/nats/mod.ts";
import { until } from "../_fixtures.ts";
import { withNats } from "../_nats.ts";
import { sharedKeys, withProcs } from "./harness.ts";

const keys = await sharedKeys();
const NEW = new Uint8Array(32).fill(0x5a);

Deno.test("im serve --cluster: SIGHUP after server/cluster.key changed seals under the new key (a node with it sees the server); a bad file is one log line and the server goes on", async () => {
  await withNats(async (nats) => {
    await withProcs(keys, async (p) => {
      const dir = await p.copyKeys();
      const n1 = await p.server({
        keys: dir,
        // Only the signal re-reads the keys here.
        args: ["--cluster", nats.url, "--node", "node1", "--no-watch"],
      });
      await n1.waitForLog(/ cluster .*nodes=node1( |$)/);
      const probe = await ClusterNode.join({
        servers: [nats.url],
        node: "probe",
        clusterKey: new Uint8Array(NEW),
      });
      p.defer(() => probe.close());
      await until(
        () => (probe.presence.refusals()["cluster-forged"] ?? 0) >= 1,
        "the probe refused node1's snapshot (another key)",
        10_000,
      );
      assert.ok(!probe.nodes().includes("node1"));
      const path = join(dir, "server", "cluster.key");
      await Deno.writeTextFile(path, `${NEW.toBase64()}\n`, { mode: 0o600 });
      n1.signal("SIGHUP");
      await n1.waitForLog(
        / cluster-key-replaced old=SHA256:\S+ new=SHA256:\S+/,
        10_000,
      );
      await until(
        () => probe.nodes().includes("node1"),
        "the probe hears node1 under the new key",
        10_000,
      );
      await Deno.writeTextFile(path, "not a key\n", { mode: 0o600 });
      n1.signal("SIGHUP");
      const failed = await n1.waitForLog(/ cluster-key-failed /, 10_000);
      assert.match(failed, /expected 32 bytes as base64 on one line/);
      assert.equal(
        n1.stderr.lines.filter((l) => / cluster-key-failed /.test(l)).length,
        1,
      );
      // Still running, still sealing under the new key.
      assert.equal(n1.exited, null);
      await n1.waitForLog(/ node-joined node=probe/, 10_000);
      assert.ok(probe.nodes().includes("node1"));
    });
  });
});
