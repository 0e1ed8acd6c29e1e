/**
 * End to end: `im chat --server host:port,host:port` against two `im serve`
 * processes with the same keys (PROTOCOL.md 11.7). The first node killed,
 * the clients go on with the second and say so, their direct peer session
 * never stops; a first node that is down at the start is passed over; when
 * none answers, one line names them all.
 * @module
 */

import assert from "node:assert/strict";
import { runIm, sharedKeys, withProcs } from "./harness.ts";
import { ended, errorCode, incoming, outgoing, session } from "./_chat.ts";

const keys = await sharedKeys();

/** Short reconnect backoff for tests: 100 ms, 200 ms, ... (jittered). */
const FAST_RECONNECT = ["--reconnect-base", "100"];

/** A port on 127.0.0.1 that nobody listens on (just closed). */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("two nodes, the first killed: the clients reconnect to the second, say which, !list works there, and their direct session goes on", async () => {
  await withProcs(keys, async (p) => {
    // Each node its own copy of the same keys, and so its own data.
    const first = await p.server({ keys: await p.copyKeys() });
    const second = await p.server({ keys: await p.copyKeys() });
    const servers = `${first.addr},${second.addr}`;
    const [a, b] = await Promise.all(
      ["A", "B"].map((u) =>
        p.chat(null, u, { server: servers, args: FAST_RECONNECT })
      ),
    );
    for (const c of [a!, b!]) {
      assert.ok(
        c.events.some((e) =>
          e.type === "system" &&
          e.text?.startsWith(`Logged in as ${c.user} to ${first.addr} `)
        ),
        c.dump(),
      );
    }
    await session(a!, b!);
    const a0 = a!.events.length, b0 = b!.events.length;
    assert.equal((await first.kill()).signal, "SIGKILL");
    for (const [c, from] of [[a!, a0], [b!, b0]] as const) {
      await c.waitFor(errorCode("server-gone"), undefined, from);
      await c.waitFor(
        (e) =>
          e.type === "system" && e.text === `Reconnected to ${second.addr}`,
        8000,
        from,
      );
    }
    await second.waitForLog(/ join user=A/);
    await second.waitForLog(/ join user=B/);
    // The session never went through the server: it goes on.
    await a!.send("after the failover");
    await b!.waitFor(incoming("A", "after the failover"), undefined, b0);
    await a!.waitFor(outgoing("after the failover"), undefined, a0);
    assert.ok(!a!.events.slice(a0).some(ended("B")), a!.dump());
    assert.ok(!b!.events.slice(b0).some(ended("A")), b!.dump());
    // The second node learns they are in a session.
    await b!.listUntil((u) => u.A === "BUSY" && u.B === "BUSY");
    assert.equal(a!.exited, null);
    assert.equal(b!.exited, null);
  });
});

Deno.test("the first listed node down at the start: im chat logs in to the second and names it", async () => {
  await withProcs(keys, async (p) => {
    const up = await p.server({ keys: await p.copyKeys() });
    const down = `127.0.0.1:${closedPort()}`;
    const a = await p.chat(null, "A", { server: `${down},${up.addr}` });
    assert.ok(
      a.events.some((e) =>
        e.type === "system" &&
        e.text?.startsWith(`Logged in as A to ${up.addr} `)
      ),
      a.dump(),
    );
    assert.deepEqual(await a.list(), { A: "IDLE" });
  });
});

Deno.test("no listed node answers: im chat exits 1 with one line naming every node", async () => {
  const nodes = [closedPort(), closedPort()].map((p) => `127.0.0.1:${p}`);
  const r = await runIm([
    "chat",
    "--user",
    "A",
    "--keys",
    keys,
    "--server",
    nodes.join(","),
    "--reconnect-base",
    "10",
    "--json",
  ]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout.length, 1, r.stdout.join("\n"));
  const ev = JSON.parse(r.stdout[0]!);
  assert.equal(ev.code, "connect-failed");
  assert.match(ev.text, /^None of the 2 servers answered/);
  for (const n of nodes) assert.ok(ev.text.includes(n), ev.text);
  assert.equal(r.stderr[0], `im: error: ${ev.text}`);
});
