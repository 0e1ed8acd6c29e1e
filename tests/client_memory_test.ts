/**
 * The client and the server on a {@link MemoryNetwork}, with network
 * permission revoked for the test: login, `!list`, hosting, joining, a
 * session with receipts, and request ids (PROTOCOL.md section 5.1), all
 * with no socket. A `Deno.listen` or `Deno.connect` anywhere on the way
 * would throw NotCapable and fail the test.
 * @module
 */

import assert from "node:assert/strict";
import {
  ChatClient,
  type ClientOptions,
  loginToServer,
  type UiEvent,
} from "../lib/client/mod.ts";
import type { ServerToClient } from "../lib/proto/mod.ts";
import {
  ImServer,
  LocalDelivery,
  type ServerOptions,
} from "../lib/server/mod.ts";
import { MemoryNetwork } from "../lib/wire/mod.ts";
import { clientDirectory, identities } from "./_helpers.ts";
import { CaptureUi, until } from "./_fixtures.ts";

/** RFC 5737 TEST-NET-1: no TCP listener could be here. */
const HOST = "192.0.2.1";

const NO_NET = {
  net: false,
  read: true,
  env: true,
  write: false,
  run: false,
  ffi: false,
  sys: false,
  import: false,
} as const;

async function world() {
  const ids = await identities();
  const net = new MemoryNetwork();
  const server = await ImServer.start({
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients: clientDirectory(ids),
    heartbeatMs: 0,
  });
  const clients: ChatClient[] = [];
  const options = (user: "A" | "B" | "C", ui: CaptureUi): ClientOptions => ({
    user,
    identity: ids[user],
    pinnedServer: ids.serverPinned,
    serverHost: HOST,
    serverPort: server.port,
    ui,
    network: net,
    listenHost: "198.51.100.7", // TEST-NET-2: hosting listens in memory too
    heartbeatMs: 0,
    reconnect: false,
    waitForReplies: true,
  });
  const client = async (user: "A" | "B" | "C") => {
    const ui = new CaptureUi();
    const c = await ChatClient.start(options(user, ui));
    clients.push(c);
    return { c, ui };
  };
  const close = async () => {
    for (const c of clients) await c.quit();
    await server.close();
  };
  return { net, server, client, options, close };
}

const started = (e: UiEvent) => e.kind === "session" && e.state === "started";

Deno.test({
  name:
    "a client runs over a MemoryNetwork with no socket: login, !list, host, join, a message and its receipt",
  permissions: NO_NET,
  fn: async () => {
    const w = await world();
    try {
      const a = await w.client("A");
      const b = await w.client("B");
      await b.c.handleLine("!list");
      const list = await b.ui.waitFor((e) => e.kind === "list");
      assert.ok(list.kind === "list");
      assert.deepEqual(list.users.map((u) => u.name).sort(), ["A", "B"]);
      await a.c.handleLine("!session host");
      await a.ui.waitFor((e) =>
        e.kind === "system" && e.text.startsWith("Hosting at 198.51.100.7:")
      );
      await b.c.handleLine("!session A");
      const sa = await a.ui.waitFor(started);
      const sb = await b.ui.waitFor(started);
      assert.ok(sa.kind === "session" && sb.kind === "session");
      assert.equal(sa.sas, sb.sas);
      assert.equal(sb.transport, "direct");
      await b.c.handleLine("hello over memory");
      await a.ui.waitFor((e) =>
        e.kind === "message" && e.text === "hello over memory"
      );
      await b.ui.waitFor((e) =>
        e.kind === "receipt" && e.status === "delivered"
      );
      assert.equal(a.c.requestsInFlight, 0);
      assert.equal(b.c.requestsInFlight, 0);
    } finally {
      await w.close();
    }
  },
});

// PROTOCOL.md section 5.1: answers name their request. Several requests in
// flight at once each get their own answer, whatever the order of sending.
Deno.test({
  name:
    "the server's answers carry the request's req: users to list, hosting or error to host, refused to session; pushes carry none",
  permissions: NO_NET,
  fn: async () => {
    const w = await world();
    const ui = new CaptureUi();
    const { channel } = await loginToServer(w.options("C", ui));
    try {
      const got: ServerToClient[] = [];
      const reader = (async () => {
        for await (const ev of channel.events()) {
          if (ev.kind === "message") got.push(ev.msg);
        }
      })();
      await until(() => got.some((m) => m.t === "welcome"), "welcome");
      assert.equal(got[0]?.t, "welcome");
      assert.equal(got[0]?.req, undefined, "a push names no request");
      // Sent back to back, before any answer arrives.
      await channel.send({ t: "host", addr: "not an address", req: 41 });
      await channel.send({ t: "session", peer: "A", req: 42 });
      await channel.send({ t: "list", req: 43 });
      await channel.send({ t: "unhost", req: 44 });
      await channel.send({ t: "host", addr: "relay:0", req: 45 });
      await channel.send({ t: "list" });
      await until(() => got.length >= 6, "five answers");
      const byReq = new Map(got.map((m) => [m.req, m]));
      assert.equal(byReq.get(41)?.t, "error");
      assert.equal(
        (byReq.get(41) as { code?: string }).code,
        "bad-address",
      );
      assert.equal(byReq.get(42)?.t, "refused");
      assert.equal(byReq.get(43)?.t, "users");
      assert.equal(byReq.has(44), false, "unhost has no answer");
      assert.equal(byReq.get(45)?.t, "hosting");
      const last = got.at(-1)!;
      assert.equal(last.t, "users");
      assert.equal(
        "req" in last,
        false,
        "a request without req gets an answer without one",
      );
      await channel.close("done");
      await reader;
    } finally {
      channel.abort("done");
      await w.close();
    }
  },
});

Deno.test({
  name:
    "a quiet list (Tab completion) in flight with the user's !list: only the user's answer is shown, by its id",
  permissions: NO_NET,
  fn: async () => {
    const w = await world();
    try {
      const ui = new CaptureUi();
      const c = await ChatClient.start({
        ...w.options("A", ui),
        namesRefreshMs: 5,
      });
      try {
        for (let i = 0; i < 5; i++) await c.handleLine("!list");
        await until(
          () => ui.since((e) => e.kind === "list").length >= 5,
          "5 lists",
        );
        await new Promise((r) => setTimeout(r, 50)); // quiet refreshes go on
        assert.equal(ui.since((e) => e.kind === "list").length, 5);
      } finally {
        await c.quit();
      }
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name:
    "a host's own refused !session <user> leaves it IDLE on the server, not HOSTING at the listener it closed",
  permissions: NO_NET,
  fn: async () => {
    const w = await world();
    try {
      const a = await w.client("A");
      await a.c.handleLine("!session host");
      await until(
        () => w.server.list().find((u) => u.name === "A")?.state === "HOSTING",
        "A HOSTING",
      );
      const mark = a.ui.mark;
      await a.c.handleLine("!session Zed");
      await a.ui.waitFor(
        (e) => e.kind === "error" && e.code === "refused-offline",
        mark,
      );
      await until(
        () => w.server.list().find((u) => u.name === "A")?.state === "IDLE",
        "A IDLE on the server",
      );
      assert.equal(a.c.mode, "idle");
    } finally {
      await w.close();
    }
  },
});

Deno.test({
  name:
    "a refused host request (rate-limited) leaves the client not hosting: the next !session host asks the server again",
  permissions: NO_NET,
  fn: async () => {
    const ids = await identities();
    const net = new MemoryNetwork();
    const server = await memoryServer(ids, net, {
      requestLimits: { host: { burst: 1, refillMs: 600_000 } },
    });
    const ui = new CaptureUi();
    const c = await ChatClient.start({
      ...optionsFor(ids, "A", server.port, net),
      ui,
    });
    try {
      await c.handleLine("!session host");
      await c.handleLine("!disconnect");
      assert.equal(c.mode, "idle");
      let mark = ui.mark;
      await c.handleLine("!session host");
      await ui.waitFor(
        (e) => e.kind === "error" && e.code === "rate-limited",
        mark,
      );
      await until(() => c.mode === "idle", "not hosting after the refusal");
      mark = ui.mark;
      await c.handleLine("!session host");
      await ui.waitFor(
        (e) => e.kind === "error" && e.code === "rate-limited",
        mark,
      );
      assert.equal(
        ui.since(
          (e) => e.kind === "system" && /^Already hosting/.test(e.text),
          mark,
        )
          .length,
        0,
      );
    } finally {
      await c.quit();
      await server.close();
    }
  },
});

// Rule 4.3: a grant nobody uses expires at the host: it cancels (both IDLE
// on the server, the joiner told) and hosts again.
Deno.test({
  name:
    "a grant whose joiner never connects expires at the host: cancel, both IDLE, the joiner told, and the host HOSTING again",
  permissions: NO_NET,
  fn: async () => {
    const ids = await identities();
    const net = new MemoryNetwork();
    const server = await memoryServer(ids, net, {
      ticketLifetimeMs: 300,
    });
    const ui = new CaptureUi();
    const host = await ChatClient.start({
      ...optionsFor(ids, "A", server.port, net),
      ui,
    });
    const { channel } = await loginToServer({
      user: "B",
      identity: ids.B,
      pinnedServer: ids.serverPinned,
      serverHost: HOST,
      serverPort: server.port,
      ui: new CaptureUi(),
      network: net,
      heartbeatMs: 0,
    });
    const got: ServerToClient[] = [];
    const reader = (async () => {
      for await (const ev of channel.events()) {
        if (ev.kind === "message") got.push(ev.msg);
      }
    })();
    try {
      await host.handleLine("!session host");
      await channel.send({ t: "session", peer: "A", req: 1 });
      await until(() => got.some((m) => m.t === "join"), "B's join");
      await ui.waitFor((e) =>
        e.kind === "system" &&
        e.text === "B did not connect in time; still hosting"
      );
      await until(() => got.some((m) => m.t === "cancelled"), "B told");
      await until(
        () => server.list().find((u) => u.name === "A")?.state === "HOSTING",
        "A HOSTING again",
      );
      assert.equal(server.list().find((u) => u.name === "B")?.state, "IDLE");
    } finally {
      await channel.close("done");
      await reader;
      await host.quit();
      await server.close();
    }
  },
});

// A malicious server (here: a Delivery that forges a second grant) cannot
// replace a pending grant, whose handshake may be running, with another:
// that would be an uncounted guess at the code (PROTOCOL.md section 6).
Deno.test({
  name:
    "a second grant while one is pending is refused and cancelled at once; the pending one stands",
  permissions: NO_NET,
  fn: async () => {
    const ids = await identities();
    const net = new MemoryNetwork();
    const server = await memoryServer(ids, net, {
      delivery: (local) => {
        const real = new LocalDelivery(local);
        return {
          deliver(user, msg, opts) {
            const r = real.deliver(user, msg, opts);
            if (msg.t === "grant") {
              real.deliver(user, {
                ...msg,
                peer: "C",
                ticketId: "ab".repeat(16),
              });
            }
            return r;
          },
        };
      },
    });
    const clients: ChatClient[] = [];
    try {
      const start = async (user: "A" | "B") => {
        const ui = new CaptureUi();
        const c = await ChatClient.start({
          ...optionsFor(ids, user, server.port, net),
          ui,
        });
        clients.push(c);
        return { c, ui };
      };
      const a = await start("A");
      const b = await start("B");
      await a.c.handleLine("!session host");
      await b.c.handleLine("!session A");
      await a.ui.waitFor((e) =>
        e.kind === "error" && e.code === "grant-refused"
      );
      // The grant B asked for stands: the session starts.
      await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
    } finally {
      for (const c of clients) await c.quit();
      await server.close();
    }
  },
});

// A refused re-announcement (rate-limited) ends hosting at the client too.
Deno.test({
  name:
    "a host the server refuses to list again after a grant ended (rate-limited) stops hosting, instead of believing it hosts",
  permissions: NO_NET,
  fn: async () => {
    const ids = await identities();
    const net = new MemoryNetwork();
    const server = await memoryServer(ids, net, {
      requestLimits: { host: { burst: 1, refillMs: 600_000 } },
    });
    const ui = new CaptureUi();
    const a = await ChatClient.start({
      ...optionsFor(ids, "A", server.port, net),
      ui,
    });
    const { channel } = await loginToServer({
      ...optionsFor(ids, "B", server.port, net),
      ui: new CaptureUi(),
    });
    const got: ServerToClient[] = [];
    const reader = (async () => {
      for await (const ev of channel.events()) {
        if (ev.kind === "message") got.push(ev.msg);
      }
    })();
    try {
      await a.handleLine("!session host");
      await channel.send({ t: "session", peer: "A", req: 1 });
      await until(() => got.some((m) => m.t === "join"), "B's join");
      await channel.send({ t: "ended", peer: "A" });
      await ui.waitFor((e) => e.kind === "error" && e.code === "rate-limited");
      await until(() => a.mode === "idle", "A not hosting");
      assert.equal(server.list().find((u) => u.name === "A")?.state, "IDLE");
    } finally {
      await channel.close("done");
      await reader;
      await a.quit();
      await server.close();
    }
  },
});

function optionsFor(
  ids: Awaited<ReturnType<typeof identities>>,
  user: "A" | "B" | "C",
  port: number,
  net: MemoryNetwork,
) {
  return {
    user,
    identity: ids[user],
    pinnedServer: ids.serverPinned,
    serverHost: HOST,
    serverPort: port,
    network: net,
    listenHost: "198.51.100.7",
    heartbeatMs: 0,
    reconnect: false,
    waitForReplies: true,
  };
}

/** A server on `net` for A, B and C, quiet heartbeats, `over` on top. */
function memoryServer(
  ids: Awaited<ReturnType<typeof identities>>,
  net: MemoryNetwork,
  over: Partial<ServerOptions> = {},
): Promise<ImServer> {
  return ImServer.start({
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients: clientDirectory(ids),
    heartbeatMs: 0,
    ...over,
  });
}

// PROTOCOL.md section 6: a `cancelled` that reaches a joiner before its
// `join` is about an earlier session with that peer (its `ended` crossed the
// new request); the new attempt goes on.
Deno.test({
  name:
    "a cancelled for the peer that arrives before the join answer does not end the new attempt",
  permissions: NO_NET,
  fn: async () => {
    const ids = await identities();
    const net = new MemoryNetwork();
    const server = await memoryServer(ids, net, {
      delivery: (local) => {
        const real = new LocalDelivery(local);
        return {
          deliver(user, msg, opts) {
            if (msg.t === "grant") {
              // The joiner hears of "the last session" just before its join.
              real.deliver(msg.peer, {
                t: "cancelled",
                peer: user,
                message: `${user} left the session`,
              });
            }
            return real.deliver(user, msg, opts);
          },
        };
      },
    });
    const clients: ChatClient[] = [];
    try {
      const start = async (user: "A" | "B") => {
        const ui = new CaptureUi();
        const c = await ChatClient.start({
          ...optionsFor(ids, user, server.port, net),
          ui,
        });
        clients.push(c);
        return { c, ui };
      };
      const a = await start("A");
      const b = await start("B");
      await a.c.handleLine("!session host");
      await b.c.handleLine("!session A");
      await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
      assert.equal(
        b.ui.since((e) => e.kind === "session" && e.state === "ended").length,
        0,
      );
    } finally {
      for (const c of clients) await c.quit();
      await server.close();
    }
  },
});
