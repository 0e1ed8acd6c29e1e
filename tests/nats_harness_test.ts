/**
 * The test harness of a real `nats-server` (tests/_nats.ts): it starts,
 * carries a message, restarts on its port, stops and leaves nothing behind;
 * without the binary it fails saying how to install it.
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { startNats, withNats } from "./_nats.ts";

Deno.test("nats harness: a started nats-server carries a publish to a subscriber, and is gone after stop()", async () => {
  let dir = "";
  let port = 0;
  await withNats(async (nats) => {
    dir = nats.dir;
    port = nats.port;
    assert.equal(nats.url, `nats://127.0.0.1:${nats.port}`);
    assert.ok(nats.running);
    const nc = await connect({ servers: nats.url });
    try {
      const sub = nc.subscribe("im.test");
      const got = (async () => {
        for await (const m of sub) return m.string();
      })();
      nc.publish("im.test", "hello");
      assert.equal(await got, "hello");
      assert.ok(nc.info?.jetstream, "JetStream is on");
    } finally {
      await nc.close();
    }
  });
  await assert.rejects(
    Deno.stat(dir),
    Deno.errors.NotFound,
    "data dir removed",
  );
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    "nothing listens any more",
  );
});

Deno.test("nats harness: kill() then restart() serves again on the same port with the same data", async () => {
  const nats = await startNats();
  try {
    const port = nats.port;
    await nats.kill();
    assert.equal(nats.running, false);
    await nats.restart();
    assert.equal(nats.port, port);
    const nc = await connect({ servers: nats.url });
    await nc.flush();
    await nc.close();
  } finally {
    await nats.stop();
    await nats.stop();
  }
});

/** The error a missing binary must give. */
function saysHowToInstall(message: string): void {
  assert.match(message, /\/nonexistent\/nats-server/);
  assert.match(message, /apt-get install -y nats-server/);
  assert.match(message, /IM_NATS_SERVER/);
}

Deno.test("nats harness: a missing binary is an error that says how to install nats-server, never a skip", async () => {
  await assert.rejects(
    startNats({ binary: "/nonexistent/nats-server" }),
    (e: Error) => (saysHowToInstall(e.message), true),
  );
});

Deno.test("nats harness: IM_NATS_SERVER names the binary; a missing one fails the same way", async () => {
  // In a child process: the environment is shared by the test files that run in parallel.
  const code = `
    import { startNats } from ${
    JSON.stringify(new URL("./_nats.ts", import.meta.url).href)
  };
    try { await startNats(); console.log("started"); } catch (e) { console.log(e.message); }
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", code],
    env: { IM_NATS_SERVER: "/nonexistent/nats-server", NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  saysHowToInstall(text);
});
