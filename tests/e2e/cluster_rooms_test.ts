/**
 * End to end: a room across two `im serve --cluster` processes on one real
 * nats-server (PROTOCOL.md 11.6 _Rooms_, 11.4 _Room wake-ups_): A, on node
 * 1, makes a room with B and C; B, on node 2, is pushed the room at once,
 * reads A's message and writes back through node 2, and A reads it on
 * node 1; C, offline, logs in on node 2 and reads both, in order. Neither
 * node has a data directory: the rooms are JetStream's.
 * @module
 */

import assert from "node:assert/strict";
import {
  type ChatEvent,
  type Procs,
  type ServerProc,
  sharedKeys,
  withProcs,
} from "./harness.ts";
import { withNats } from "../_nats.ts";

const keys = await sharedKeys();
/** A room's wait: a store on NATS takes its time on a busy machine. */
const WAIT_MS = 20_000;

const roomIn = (text: string) => (e: ChatEvent) =>
  e.type === "message" && e.direction === "in" && e.room === "team" &&
  e.text === text;

/** Log `user` in once (its mailbox keys go to the cluster), then out. */
async function publishThenLeave(
  p: Procs,
  server: ServerProc,
  user: string,
  keyDir: string,
): Promise<void> {
  const c = await p.chat(server, user, { keys: keyDir });
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const since = c.events.length;
    await c.send("!whoami");
    const who = await c.waitFor(
      (e) => e.type === "system" && /^You are /.test(e.text ?? ""),
      WAIT_MS,
      since,
    );
    if (/one-time prekeys on the server/.test(who.text ?? "")) break;
    if (Date.now() > deadline) assert.fail(`${user} never published`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await c.closeStdin();
  assert.equal((await c.wait()).code, 0);
}

Deno.test("two im serve --cluster nodes: a room made through node 1 is used through node 2, its messages both ways at once, and an offline member reads them later through node 2", async () => {
  await withNats(async (nats) => {
    await withProcs(keys, async (p) => {
      const cluster = ["--cluster", nats.url];
      const n1 = await p.server({
        keys: await p.copyKeys(),
        args: [...cluster, "--node", "node1"],
      });
      await n1.waitForLog(/ cluster .*nodes=node1( |$)/);
      const n2 = await p.server({
        keys: await p.copyKeys(),
        args: [...cluster, "--node", "node2"],
      });
      await n2.waitForLog(/ cluster .*nodes=node1,node2( |$)/);
      await n1.waitForLog(/ mail-store .*IM_ROOMS_im/);

      const keyDir = await p.copyKeys();
      await publishThenLeave(p, n2, "C", keyDir);
      const b = await p.chat(n2, "B", { keys: keyDir });
      const a = await p.chat(n1, "A", { keys: keyDir });
      await a.send("!room create team B C");
      await b.waitFor(
        (e) => e.type === "room" && e.room === "team" && e.change === "created",
        WAIT_MS,
      );
      await a.send("#team from node 1");
      await b.waitFor(roomIn("from node 1"), WAIT_MS);
      await b.send("#team from node 2");
      const got = await a.waitFor(roomIn("from node 2"), WAIT_MS);
      assert.equal(got.from, "B");

      const c = await p.chat(n2, "C", { keys: keyDir });
      await c.waitFor(roomIn("from node 2"), WAIT_MS);
      assert.deepEqual(
        c.events.filter((e) => e.type === "message" && e.room === "team")
          .map((e) => e.text),
        ["from node 1", "from node 2"],
      );
      for (const x of [a, b, c]) {
        assert.deepEqual(x.events.filter((e) => e.type === "error"), []);
      }
    });
  });
});
