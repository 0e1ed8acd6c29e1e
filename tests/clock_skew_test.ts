/**
 * Clocks further apart than the record window (PROTOCOL.md section 4): an
 * authentic FINISHED outside the window is reported as clock skew, naming
 * how far apart and which way, not as a failed key confirmation.
 */

import assert from "node:assert/strict";
import { ClientHandshake, ServerHandshake } from "../lib/proto/mod.ts";
import {
  RecordOpener,
  RecordSealer,
  RecordType,
  StaleRecordError,
  verifyFinished,
} from "../lib/record/mod.ts";
import { AuthError } from "../lib/util/mod.ts";
import { ChatClient } from "../lib/client/mod.ts";
import { ImServer } from "../lib/server/mod.ts";
import { MemoryNetwork } from "../lib/wire/mod.ts";
import { clientDirectory, directory, identities } from "./_helpers.ts";
import { CaptureUi, started } from "./_fixtures.ts";

const SKEW_MS = 200_000;

async function pair(skews: { client?: number; server?: number }, windows: {
  client?: number;
  server?: number;
} = {}) {
  const ids = await identities();
  const client = new ClientHandshake({
    user: "A",
    identity: ids.A,
    pinnedServer: ids.serverPinned,
    now: () => Date.now() + (skews.client ?? 0),
    ...(windows.client === undefined ? {} : { windowMs: windows.client }),
  });
  const server = new ServerHandshake({
    identity: ids.server,
    lookupUser: directory(ids),
    decoy: ids.server.publicIdentity,
    now: () => Date.now() + (skews.server ?? 0),
    ...(windows.server === undefined ? {} : { windowMs: windows.server }),
  });
  const hello = await server.onClientHello(await client.start());
  const [key, fin] = await server.onClientAuth(
    await client.onServerHello(hello),
  );
  await client.onServerKey(key!);
  return { client, server, fin: fin! };
}

Deno.test("a server clock 200 s ahead: the client refuses its FINISHED with clock-skew, naming 200 s and that the server's is ahead", async () => {
  const { client, fin } = await pair({ server: SKEW_MS });
  await assert.rejects(
    () => client.onServerFinished(fin),
    (e) =>
      e instanceof AuthError && e.code === "clock-skew" &&
      /differ by 200 s \(the server's is ahead\)/.test(e.message) &&
      /set the clock/.test(e.message),
  );
});

Deno.test("a client clock 200 s ahead with a server of the usual window: the server's refusal says it is the clocks", async () => {
  // The client accepts the server's FINISHED (its window is wide), the
  // server refuses the client's.
  const { client, server, fin } = await pair({ client: SKEW_MS }, {
    client: 10 * SKEW_MS,
  });
  const finished = await client.onServerFinished(fin);
  await assert.rejects(
    () => server.onClientFinished(finished),
    (e) =>
      e instanceof AuthError && e.code === "key-confirmation-failed" &&
      /The server's clock and the client's differ by 200 s \(the client's is ahead\)/
        .test(e.message),
  );
});

Deno.test("clocks within the window log in as before", async () => {
  const { client, server, fin } = await pair({ server: 60_000 });
  await server.onClientFinished(await client.onServerFinished(fin));
  assert.equal(client.state, "done");
  assert.equal(server.state, "done");
});

Deno.test("verifyFinished: a FINISHED under other keys is a plain failure, never clock skew; a stale one carries the offset", () => {
  const keys = {
    enc: new Uint8Array(32).fill(1),
    iv: new Uint8Array(32).fill(2),
    mac: new Uint8Array(32).fill(3),
  };
  const other = { ...keys, mac: new Uint8Array(32).fill(4) };
  const th = new Uint8Array(32).fill(7);
  const now = 1_000_000_000;
  const stale = new RecordSealer(keys).seal(
    RecordType.FINISHED,
    th,
    now + SKEW_MS,
  );
  const v = verifyFinished(new RecordOpener(keys), stale, th, now);
  assert.deepEqual(v, { ok: false, clockOffsetMs: SKEW_MS, windowMs: 120_000 });
  const forged = new RecordSealer(other).seal(
    RecordType.FINISHED,
    th,
    now + SKEW_MS,
  );
  assert.deepEqual(verifyFinished(new RecordOpener(keys), forged, th, now), {
    ok: false,
  });
  assert.throws(
    () => new RecordOpener(keys).open(stale, now),
    (e) =>
      e instanceof StaleRecordError && e.code === "stale" &&
      e.offsetMs === SKEW_MS,
  );
});

// PROTOCOL.md section 6, "Whose clock": expiries are server times, read by
// the client's estimate of the server's clock from the welcome.
Deno.test({
  name:
    "a server whose clock is 40 s behind the users' (more than the 30 s ticket lifetime): sessions still start, the ticket read by the server's clock",
  permissions: {
    net: false,
    read: true,
    env: true,
    write: false,
    run: false,
    ffi: false,
    sys: false,
    import: false,
  },
  fn: async () => {
    const ids = await identities();
    const net = new MemoryNetwork();
    const server = await ImServer.start({
      network: net,
      hostname: "192.0.2.1",
      port: 0,
      identity: ids.server,
      clients: clientDirectory(ids),
      heartbeatMs: 0,
      now: () => Date.now() - 40_000,
    });
    const clients: ChatClient[] = [];
    try {
      const start = async (user: "A" | "B") => {
        const ui = new CaptureUi();
        const c = await ChatClient.start({
          user,
          identity: ids[user],
          pinnedServer: ids.serverPinned,
          serverHost: "192.0.2.1",
          serverPort: server.port,
          ui,
          network: net,
          heartbeatMs: 0,
          reconnect: false,
          waitForReplies: true,
        });
        clients.push(c);
        return { c, ui };
      };
      const a = await start("A");
      const b = await start("B");
      await a.c.handleLine("!session host");
      await b.c.handleLine("!session A");
      await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
      assert.equal(b.ui.since((e) => e.kind === "error").length, 0);
    } finally {
      for (const c of clients) await c.quit();
      await server.close();
    }
  },
});
