/**
 * End to end: two `im serve --cluster` processes on one real nats-server
 * (PROTOCOL.md 11; tests/_nats.ts), each with its own copy of the same
 * keys (cluster.key included). Each says at start which nodes it sees and
 * logs the other's arrival and departure; A on node 1 and B on node 2 see
 * each other in `!list` and have a session; A mails C, who is offline,
 * through node 1 and sees each mail `stored`; node 1 killed with SIGKILL
 * (issue 14's first fault), A (started with `--server node1,node2`)
 * reconnects to node 2, its direct session with B goes on, node 2 logs
 * node 1 as gone, and C, logging in on node 2, reads every stored mail
 * once and in order (JetStream held them, PROTOCOL.md 11.6) while A gets
 * their `delivered` receipts there.
 * @module
 */

import assert from "node:assert/strict";
import {
  type ChatEvent,
  type ChatProc,
  type Procs,
  type ServerProc,
  sharedKeys,
  withProcs,
} from "./harness.ts";
import { hosting, incoming, session } from "./_chat.ts";
import { withNats } from "../_nats.ts";

const keys = await sharedKeys();
/** A mail's wait: a failover and a store on NATS take their time on a busy machine. */
const MAIL_WAIT_MS = 20_000;

const mailIn = (e: ChatEvent) => e.type === "mail" && e.direction === "in";
const receipt = (status: string) => (e: ChatEvent) =>
  e.type === "receipt" && e.via === "mail" && e.status === status;

/**
 * Log `user` in once on `server` so that its client publishes its mailbox
 * keys (`!whoami` names the one-time prekeys the server holds), then log
 * it out: from then on it is offline, with a mailbox.
 */
async function publishThenLeave(
  p: Procs,
  server: ServerProc,
  user: string,
): Promise<void> {
  const c = await p.chat(server, user);
  const deadline = Date.now() + MAIL_WAIT_MS;
  for (;;) {
    const since = c.events.length;
    await c.send("!whoami");
    const who = await c.waitFor(
      (e) => e.type === "system" && /^You are /.test(e.text ?? ""),
      MAIL_WAIT_MS,
      since,
    );
    if (/one-time prekeys on the server/.test(who.text ?? "")) break;
    if (Date.now() > deadline) assert.fail(`${user} never published`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await c.closeStdin();
  assert.equal((await c.wait()).code, 0);
}

/** `!list` every 300 ms (under the rate limit) until `pred` holds. */
async function listUntil(
  c: ChatProc,
  pred: (u: Record<string, string>) => boolean,
  ms = 8_000,
): Promise<Record<string, string>> {
  const deadline = Date.now() + ms;
  let last: Record<string, string> = {};
  while (Date.now() < deadline) {
    last = await c.list();
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(
    `!list never matched; last ${JSON.stringify(last)}\n${c.dump()}`,
  );
}

Deno.test("two im serve --cluster nodes on one NATS: users on both see each other and have a session; node 1 killed after storing mail for an offline user, its user reconnects to node 2, the session goes on, and the mail is read through node 2, none lost", async () => {
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
      await n1.waitForLog(/ node-joined node=node2/);

      const a = await p.chat(null, "A", {
        server: `${n1.addr},${n2.addr}`,
        args: ["--reconnect-base", "100"],
      });
      const b = await p.chat(n2, "B");
      await listUntil(a, (u) => u.A === "IDLE" && u.B === "IDLE");
      await listUntil(b, (u) => u.A === "IDLE" && u.B === "IDLE");

      // A's HOSTING reaches node 2 within its snapshot's 100 ms.
      const h0 = a.events.length;
      await a.send("!session host");
      await a.waitFor(hosting, undefined, h0);
      await listUntil(b, (u) => u.A === "HOSTING");
      await session(a, b, true);
      const b0 = b.events.length;
      await a.send("across the cluster");
      await b.waitFor(incoming("A", "across the cluster"), undefined, b0);
      await listUntil(b, (u) => u.A === "BUSY" && u.B === "BUSY");

      // C publishes its mailbox keys through node 1 and leaves; A mails it
      // through node 1 and sees each mail stored (JetStream acknowledged it).
      await publishThenLeave(p, n1, "C");
      const texts = ["kept one", "kept two", "kept three"];
      const m0 = a.events.length;
      await a.send(...texts.map((t) => `!msg C ${t}`));
      await a.waitForCount(receipt("stored"), 3, MAIL_WAIT_MS, m0);

      const a0 = a.events.length;
      assert.equal((await n1.kill()).signal, "SIGKILL");
      await a.waitFor(
        (e) => e.type === "system" && e.text === `Reconnected to ${n2.addr}`,
        10_000,
        a0,
      );
      await n2.waitForLog(/ join user=A/);
      // The session never went through a server: it goes on.
      const b1 = b.events.length;
      await a.send("after node 1 died");
      await b.waitFor(incoming("A", "after node 1 died"), undefined, b1);
      // Node 2 drops node 1's snapshot within the 10 s of the issue.
      await n2.waitForLog(/ node-left node=node1/, 12_000);
      await listUntil(a, (u) => u.A === "BUSY" && u.B === "BUSY");

      // No stored mail was lost with node 1: C reads it through node 2,
      // once and in order, and A (now on node 2) gets the proofs.
      const c = await p.chat(n2, "C");
      const shown = await c.waitForCount(mailIn, 3, MAIL_WAIT_MS);
      assert.deepEqual(shown.map((e) => e.text), texts);
      assert.ok(shown.every((e) => e.from === "A" && e.to === "C"));
      await a.waitForCount(receipt("delivered"), 3, MAIL_WAIT_MS, m0);
      await c.closeStdin();
      assert.equal((await c.wait()).code, 0);
      assert.deepEqual(c.events.filter(mailIn).map((e) => e.text), texts);
      assert.equal(a.exited, null);
      assert.equal(b.exited, null);
    });
  });
});
