/**
 * Client failover between the nodes of a cluster (PROTOCOL.md 11.7): real
 * {@link ImServer}s sharing one identity and client directory on different
 * ports of a {@link MemoryNetwork}, and a {@link ChatClient} given them all
 * as `servers`. The first login passes over a node that refuses or does not
 * answer, but not one that refuses the login or shows another key; a
 * dropped link goes to the next node after the one lost, says which, and
 * a direct peer session goes on through it.
 * @module
 */

import assert from "node:assert/strict";
import type { ServerAddress, UiEvent } from "../lib/client/mod.ts";
import { FIRST_CONNECT_ROUNDS } from "../lib/client/server_link.ts";
import { AuthError, NetError, ProtocolError, sleep } from "../lib/util/mod.ts";
import { MemoryNetwork, type Network } from "../lib/wire/mod.ts";
import {
  ended,
  isError,
  isList,
  type Scope,
  started,
  type TestClient,
  type TestServer,
  until,
  withScope,
} from "./_fixtures.ts";
import { assertRejectsIm, clientDirectory, identities } from "./_helpers.ts";

/** RFC 5737 TEST-NET-1: only the memory network is here. */
const HOST = "192.0.2.1";
/** Nobody listens at this address of the memory network. */
const NOBODY: ServerAddress = { host: "192.0.2.9", port: 4000 };

const FAST = { reconnectBaseMs: 10, reconnectMaxMs: 40 } as const;

const system = (re: RegExp) => (e: UiEvent) =>
  e.kind === "system" && re.test(e.text);

const at = (port: number): ServerAddress => ({ host: HOST, port });
const text = (a: ServerAddress) => `${a.host}:${a.port}`;

/** A memory network that records every connection attempt, in order. */
function countingNetwork(): { net: MemoryNetwork; tried: string[] } & {
  network: Network;
} {
  const net = new MemoryNetwork();
  const tried: string[] = [];
  const network: Network = {
    connect: (h, p, o) => {
      tried.push(`${h}:${p}`);
      return net.connect(h, p, o);
    },
    listen: (h, p, o) => net.listen(h, p, o),
  };
  return { net, tried, network };
}

/** `n` nodes on the memory network: same key, same users, own ports. */
async function nodes(
  s: Scope,
  net: MemoryNetwork,
  n: number,
): Promise<TestServer[]> {
  const out: TestServer[] = [];
  for (let i = 0; i < n; i++) {
    out.push(
      await s.server({
        network: net,
        hostname: HOST,
        // Some tests poll !list until a state shows.
        requestLimits: { list: { burst: 10_000, refillMs: 1 } },
      }),
    );
  }
  return out;
}

/** A client of `user` given `servers`, reconnecting fast. */
function client(
  s: Scope,
  network: Network,
  user: string,
  servers: ServerAddress[],
): Promise<TestClient> {
  return s.client(servers[0]!.port, user, {
    network,
    serverHost: servers[0]!.host,
    servers,
    reconnect: true,
    ...FAST,
  });
}

/** `!list` on `c`'s current node; the users and their states. */
async function list(c: TestClient): Promise<Record<string, string>> {
  const mark = c.ui.mark;
  await c.client.handleLine("!list");
  const ev = await c.ui.waitFor(isList, mark);
  assert.ok(ev.kind === "list");
  return Object.fromEntries(ev.users.map((u) => [u.name, u.state]));
}

const joined = (t: TestServer, user: string) =>
  t.log.some((l) => l.event === "join" && l.fields.user === user);

Deno.test("the first listed node down, the second silent: the client logs in to the third and names it", async () => {
  await withScope(async (s) => {
    const { net, tried, network } = countingNetwork();
    const [up] = await nodes(s, net, 1);
    // Accepts connections and never answers them.
    const silent = net.listen(HOST, 0);
    s.defer(() => silent.close());
    const servers = [NOBODY, at(silent.port), at(up!.port)];
    const a = await s.client(up!.port, "A", {
      network,
      serverHost: NOBODY.host,
      servers,
      loginTimeoutMs: 3000, // the silent node costs this; a real login under load fits
      ...FAST,
    });
    await a.ui.waitFor(
      system(new RegExp(`^Logged in as A to ${HOST}:${up!.port} `)),
    );
    assert.deepEqual(tried, servers.map(text));
    assert.ok(joined(up!, "A"));
    assert.equal(a.ui.since(isError()).length, 0, JSON.stringify(a.ui.events));
    const mark = a.ui.mark;
    await a.client.handleLine("!whoami");
    await a.ui.waitFor(system(new RegExp(`server ${HOST}:${up!.port} `)), mark);
    assert.deepEqual(await list(a), { A: "IDLE" });
  });
});

Deno.test("the node in use closed: the client says so once, reconnects to the next node, says which, and !list works there", async () => {
  await withScope(async (s) => {
    const { net, network } = countingNetwork();
    const [n1, n2] = await nodes(s, net, 2);
    const servers = [at(n1!.port), at(n2!.port)];
    const a = await client(s, network, "A", servers);
    // B is on the second node from the start.
    const b = await client(s, network, "B", [at(n2!.port)]);
    await a.ui.waitFor(
      system(new RegExp(`^Logged in as A to ${HOST}:${n1!.port} `)),
    );
    const mark = a.ui.mark;
    await n1!.server.close();
    const back = await a.ui.waitFor(system(/^Reconnected to /), mark);
    assert.ok(back.kind === "system");
    assert.equal(back.text, `Reconnected to ${HOST}:${n2!.port}`);
    // One line for the drop, one for the return; nothing per attempt.
    assert.deepEqual(
      a.ui.events.slice(mark).map((e) =>
        e.kind === "error" ? `error ${e.code}` : e.kind
      ),
      ["error server-gone", "system"],
    );
    assert.deepEqual(await list(a), { A: "IDLE", B: "IDLE" });
    assert.deepEqual(await list(b), { A: "IDLE", B: "IDLE" });
    const wm = a.ui.mark;
    await a.client.handleLine("!whoami");
    await a.ui.waitFor(system(new RegExp(`server ${HOST}:${n2!.port} `)), wm);
    assert.equal(a.client.fatal, undefined);
  });
});

Deno.test("a reconnect starts with the node after the one lost, not the top of the list", async () => {
  await withScope(async (s) => {
    const { net, tried, network } = countingNetwork();
    const [n1, n2, n3] = await nodes(s, net, 3);
    const servers = [at(n1!.port), at(n2!.port), at(n3!.port)];
    const a = await client(s, network, "A", servers);
    let mark = a.ui.mark;
    await n1!.server.close();
    await a.ui.waitFor(system(/^Reconnected to /), mark);
    assert.ok(joined(n2!, "A"));
    // The first node is back on its port, before the second goes away.
    const again = await s.server({
      network: net,
      hostname: HOST,
      port: n1!.port,
    });
    mark = a.ui.mark;
    const t0 = tried.length;
    await n2!.server.close();
    const back = await a.ui.waitFor(system(/^Reconnected to /), mark);
    assert.ok(back.kind === "system");
    assert.equal(back.text, `Reconnected to ${HOST}:${n3!.port}`);
    assert.deepEqual(tried.slice(t0), [text(servers[2]!)]);
    assert.ok(!joined(again, "A"), "not the top of the list");
    assert.deepEqual(await list(a), { A: "IDLE" });
  });
});

Deno.test("while every node is down the client tries them all round, with backoff between rounds, and logs in to the first one back", async () => {
  await withScope(async (s) => {
    const { net, tried, network } = countingNetwork();
    const [n1, n2] = await nodes(s, net, 2);
    const servers = [at(n1!.port), at(n2!.port)];
    const a = await client(s, network, "A", servers);
    const mark = a.ui.mark;
    const t0 = tried.length;
    await n2!.server.close();
    await n1!.server.close();
    await a.ui.waitFor(isError("server-gone"), mark);
    // Several rounds, each the second node then the first.
    await until(() => tried.length - t0 >= 6, "three rounds");
    const rounds = tried.slice(t0, t0 + 6);
    assert.deepEqual(rounds, [1, 0, 1, 0, 1, 0].map((i) => text(servers[i]!)));
    const asked = a.ui.mark;
    await a.client.handleLine("!list");
    const offline = await a.ui.waitFor(isError("offline"), asked);
    assert.ok(
      offline.kind === "error" &&
        /reconnecting \(last try: .*192\.0\.2\.1:\d+/.test(offline.text),
      JSON.stringify(offline),
    );
    const n2b = await s.server({
      network: net,
      hostname: HOST,
      port: n2!.port,
    });
    const back = await a.ui.waitFor(system(/^Reconnected to /), mark);
    assert.ok(back.kind === "system");
    assert.equal(back.text, `Reconnected to ${HOST}:${n2!.port}`);
    assert.ok(joined(n2b, "A"));
    assert.deepEqual(await list(a), { A: "IDLE" });
  });
});

Deno.test("every node down at the start: after the rounds, one error naming them all", async () => {
  await withScope(async (s) => {
    const { tried, network } = countingNetwork();
    const servers = [at(4001), at(4002), { host: "192.0.2.7", port: 9 }];
    const e = await assertRejectsIm(
      () =>
        s.client(4001, "A", {
          network,
          serverHost: HOST,
          servers,
          ...FAST,
        }),
      NetError,
      "connect-failed",
    );
    assert.equal(tried.length, servers.length * FIRST_CONNECT_ROUNDS);
    assert.deepEqual(
      tried,
      Array.from({ length: FIRST_CONNECT_ROUNDS }, () => servers.map(text))
        .flat(),
    );
    for (const a of servers) assert.ok(e.message.includes(text(a)), e.message);
    assert.match(
      e.message,
      new RegExp(
        `^None of the 3 servers answered \\(each tried ${FIRST_CONNECT_ROUNDS} times\\): `,
      ),
    );
    assert.ok(!e.message.includes("\n"));
  });
});

Deno.test("one server, as before clusters: tried once, its own error", async () => {
  await withScope(async (s) => {
    const { tried, network } = countingNetwork();
    await assertRejectsIm(
      () =>
        s.client(4001, "A", {
          network,
          serverHost: HOST,
          servers: [at(4001)],
          ...FAST,
        }),
      NetError,
      "connect-failed",
    );
    assert.deepEqual(tried, [`${HOST}:4001`]);
  });
});

Deno.test("a node with another server key in the list ends the first login (pin mismatch), the next node untried", async () => {
  await withScope(async (s) => {
    const { net, tried, network } = countingNetwork();
    const ids = await identities();
    const impostor = await s.server({
      network: net,
      hostname: HOST,
      identity: ids.otherServer,
    });
    const [good] = await nodes(s, net, 1);
    const servers = [NOBODY, at(impostor.port), at(good!.port)];
    const e = await assertRejectsIm(
      () =>
        s.client(NOBODY.port, "A", {
          network,
          serverHost: NOBODY.host,
          servers,
          ...FAST,
        }),
      AuthError,
      "server-key-mismatch",
    );
    assert.match(e.message, /server key mismatch/);
    assert.deepEqual(tried, servers.slice(0, 2).map(text));
    assert.ok(!joined(good!, "A") && !joined(impostor, "A"));
  });
});

Deno.test("a refused login ends the first login; the other nodes are not tried", async () => {
  await withScope(async (s) => {
    const { net, tried, network } = countingNetwork();
    const ids = await identities();
    // A node whose directory does not know A refuses it.
    const dir = clientDirectory(ids);
    dir.delete("A");
    const refusing = await s.server({
      network: net,
      hostname: HOST,
      clients: dir,
    });
    const [good] = await nodes(s, net, 1);
    await assertRejectsIm(
      () =>
        s.client(refusing.port, "A", {
          network,
          serverHost: HOST,
          servers: [at(refusing.port), at(good!.port)],
          ...FAST,
        }),
      AuthError,
      "login-failed",
    );
    assert.deepEqual(tried, [`${HOST}:${refusing.port}`]);
    assert.ok(!joined(good!, "A"));
  });
});

Deno.test("a reconnect that meets a node with another key stops the client (rule 2.2): the node after it is not tried", async () => {
  await withScope(async (s) => {
    const { net, tried, network } = countingNetwork();
    const ids = await identities();
    const [n1] = await nodes(s, net, 1);
    const impostor = await s.server({
      network: net,
      hostname: HOST,
      identity: ids.otherServer,
    });
    const [n3] = await nodes(s, net, 1);
    const servers = [at(n1!.port), at(impostor.port), at(n3!.port)];
    const a = await client(s, network, "A", servers);
    let fatal: string | undefined;
    a.client.onFatal = (e) => (fatal = e.code);
    const t0 = tried.length;
    await n1!.server.close();
    await until(() => fatal !== undefined, "the client to stop");
    assert.equal(fatal, "server-key-mismatch");
    assert.deepEqual(tried.slice(t0), [text(servers[1]!)]);
    assert.ok(!joined(n3!, "A") && !joined(impostor, "A"));
  });
});

Deno.test("a direct peer session goes on while both users fail over to another node, and that node learns they are busy", async () => {
  await withScope(async (s) => {
    const { net, network } = countingNetwork();
    const [n1, n2] = await nodes(s, net, 2);
    const servers = [at(n1!.port), at(n2!.port)];
    const a = await client(s, network, "A", servers);
    const b = await client(s, network, "B", servers);
    await a.client.handleLine("!session host");
    await a.ui.waitFor(system(/^Hosting at/));
    await b.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
    const am = a.ui.mark, bm = b.ui.mark;
    await n1!.server.close();
    await Promise.all([
      a.ui.waitFor(system(/^Reconnected to /), am),
      b.ui.waitFor(system(/^Reconnected to /), bm),
    ]);
    await a.client.handleLine("after the failover");
    const got = await b.ui.waitFor(
      (e) => e.kind === "message" && e.direction === "in",
      bm,
    );
    assert.ok(got.kind === "message" && got.text === "after the failover");
    assert.equal(a.ui.since(ended, am).length, 0);
    assert.equal(b.ui.since(ended, bm).length, 0);
    await until(
      () => joined(n2!, "A") && joined(n2!, "B"),
      "both on the second node",
    );
    let users: Record<string, string> = {};
    // The node learns it from each client's `busy` after its login: on a
    // busy machine that can take a while.
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      users = await list(b);
      if (users.A === "BUSY" && users.B === "BUSY") break;
      await sleep(100);
    }
    assert.deepEqual(users, { A: "BUSY", B: "BUSY" });
  });
});

Deno.test("a node that is full, of several: the client passes over it to the next node (a single full server still ends the client)", async () => {
  await withScope(async (s) => {
    const { net, tried, network } = countingNetwork();
    const full = await s.server({
      network: net,
      hostname: HOST,
      maxClients: 1,
    });
    const [other] = await nodes(s, net, 1);
    await client(s, network, "B", [at(full.port)]);
    const servers = [at(full.port), at(other!.port)];
    const a = await client(s, network, "A", servers);
    await a.ui.waitFor(
      system(new RegExp(`^Reconnected to ${HOST}:${other!.port}$`)),
    );
    assert.deepEqual(tried.slice(-2), servers.map(text));
    assert.ok(joined(other!, "A"));
    assert.ok(
      !a.ui.events.some((e) => e.kind === "error" && e.code === "full"),
    );
    assert.deepEqual(await list(a), { A: "IDLE" });
    // One server: a full one ends the client, as before clusters.
    await assertRejectsIm(
      () => client(s, network, "C", [at(full.port)]),
      ProtocolError,
      "full",
    );
  });
});
