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
  type Push,
  type ServerOptions,
} from "../lib/server/mod.ts";
import { MemoryNetwork } from "../lib/wire/mod.ts";
import { clientDirectory, identities } from "./_helpers.ts";
import { CaptureUi, isError, until } from "./_fixtures.ts";

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

async function world(over: Partial<ServerOptions> = {}) {
  const ids = await identities();
  const net = new MemoryNetwork();
  const server = await ImServer.start({
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients: clientDirectory(ids),
    heartbeatMs: 0,
    ...over,
  });
  const clients: ChatClient[] = [];
  const bares: Array<() => Promise<void>> = [];
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
    // The mailbox keys a login publishes are out: the requests in flight
    // from now on are the test's own.
    await c.settled();
    return { c, ui };
  };
  /** A bare login: its channel, and every message the server sends it. */
  const bare = async (user: "A" | "B" | "C") => {
    const { channel } = await loginToServer(options(user, new CaptureUi()));
    const got: ServerToClient[] = [];
    const reader = (async () => {
      for await (const ev of channel.events()) {
        if (ev.kind === "message") got.push(ev.msg);
      }
    })();
    bares.push(async () => {
      channel.abort("done");
      await reader;
    });
    return { channel, got };
  };
  const close = async () => {
    for (const b of bares) await b();
    for (const c of clients) await c.quit();
    await server.close();
  };
  return { server, client, bare, options, close };
}

/** A Delivery over this node's that runs `also` before each delivery. */
function deliveryWith(
  also: (real: LocalDelivery, user: string, msg: Push) => void,
): NonNullable<ServerOptions["delivery"]> {
  return (local) => {
    const real = new LocalDelivery(local);
    return {
      deliver(user, msg, opts) {
        also(real, user, msg);
        return real.deliver(user, msg, opts);
      },
    };
  };
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
    try {
      const { channel, got } = await w.bare("C");
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
    } finally {
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
    const w = await world({
      requestLimits: { host: { burst: 1, refillMs: 600_000 } },
    });
    try {
      const { c, ui } = await w.client("A");
      await c.handleLine("!session host");
      await c.handleLine("!disconnect");
      assert.equal(c.mode, "idle");
      let mark = ui.mark;
      await c.handleLine("!session host");
      await ui.waitFor(isError("rate-limited"), mark);
      await until(() => c.mode === "idle", "not hosting after the refusal");
      mark = ui.mark;
      await c.handleLine("!session host");
      await ui.waitFor(isError("rate-limited"), mark);
      assert.equal(
        ui.since(
          (e) => e.kind === "system" && /^Already hosting/.test(e.text),
          mark,
        ).length,
        0,
      );
    } finally {
      await w.close();
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
    const w = await world({ ticketLifetimeMs: 300 });
    try {
      const a = await w.client("A");
      const b = await w.bare("B");
      await a.c.handleLine("!session host");
      await b.channel.send({ t: "session", peer: "A", req: 1 });
      await until(() => b.got.some((m) => m.t === "join"), "B's join");
      await a.ui.waitFor((e) =>
        e.kind === "system" &&
        e.text === "B did not connect in time; still hosting"
      );
      await until(() => b.got.some((m) => m.t === "cancelled"), "B told");
      await until(
        () => w.server.list().find((u) => u.name === "A")?.state === "HOSTING",
        "A HOSTING again",
      );
      assert.equal(
        w.server.list().find((u) => u.name === "B")?.state,
        "IDLE",
      );
    } finally {
      await w.close();
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
    let forged = false;
    const w = await world({
      delivery: deliveryWith((real, user, msg) => {
        if (msg.t !== "grant" || forged) return;
        forged = true;
        // Queued after the real grant, which is delivered next.
        queueMicrotask(() =>
          real.deliver(user, { ...msg, peer: "C", ticketId: "ab".repeat(16) })
        );
      }),
    });
    try {
      const a = await w.client("A");
      const b = await w.client("B");
      await a.c.handleLine("!session host");
      await b.c.handleLine("!session A");
      await a.ui.waitFor(isError("grant-refused"));
      // The grant B asked for stands: the session starts.
      await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
    } finally {
      await w.close();
    }
  },
});

// A refused re-announcement (rate-limited) ends hosting at the client too.
Deno.test({
  name:
    "a host the server refuses to list again after a grant ended (rate-limited) stops hosting, instead of believing it hosts",
  permissions: NO_NET,
  fn: async () => {
    const w = await world({
      requestLimits: { host: { burst: 1, refillMs: 600_000 } },
    });
    try {
      const a = await w.client("A");
      const b = await w.bare("B");
      await a.c.handleLine("!session host");
      await b.channel.send({ t: "session", peer: "A", req: 1 });
      await until(() => b.got.some((m) => m.t === "join"), "B's join");
      await b.channel.send({ t: "ended", peer: "A" });
      await a.ui.waitFor(isError("rate-limited"));
      await until(() => a.c.mode === "idle", "A not hosting");
      assert.equal(
        w.server.list().find((u) => u.name === "A")?.state,
        "IDLE",
      );
    } finally {
      await w.close();
    }
  },
});

// PROTOCOL.md section 6: a `cancelled` that reaches a joiner before its
// `join` is about an earlier session with that peer (its `ended` crossed the
// new request); the new attempt goes on.
Deno.test({
  name:
    "a cancelled for the peer that arrives before the join answer does not end the new attempt",
  permissions: NO_NET,
  fn: async () => {
    const w = await world({
      delivery: deliveryWith((real, user, msg) => {
        // The joiner hears of "the last session" just before its join.
        if (msg.t === "grant") {
          real.deliver(msg.peer, {
            t: "cancelled",
            peer: user,
            message: `${user} left the session`,
          });
        }
      }),
    });
    try {
      const a = await w.client("A");
      const b = await w.client("B");
      await a.c.handleLine("!session host");
      await b.c.handleLine("!session A");
      await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
      assert.equal(
        b.ui.since((e) => e.kind === "session" && e.state === "ended").length,
        0,
      );
    } finally {
      await w.close();
    }
  },
});
