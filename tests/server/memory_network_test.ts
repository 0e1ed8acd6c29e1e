/**
 * The server on a {@link MemoryNetwork}: logins, the per-address caps and
 * the failure penalty all work with no socket. The listen address is in
 * TEST-NET-1 (RFC 5737), where no TCP listener could bind, and the tests
 * run without permission to reach it: a socket would fail the test.
 * @module
 */

import assert from "node:assert/strict";
import { NetError } from "../../lib/util/mod.ts";
import {
  ClientHandshake,
  decodeErrorFrame,
  ErrorCode,
  type Message,
  SecureChannel,
} from "../../lib/proto/mod.ts";
import {
  FrameKind,
  type FrameTransport,
  MemoryNetwork,
} from "../../lib/wire/mod.ts";
import type { PrivateIdentity, PublicIdentity } from "../../lib/crypto/mod.ts";
import { ImServer, type ServerOptions } from "../../lib/server/mod.ts";
import { identities } from "../_helpers.ts";

/** Nothing listens here over TCP (RFC 5737 TEST-NET-1). */
const HOST = "192.0.2.1";
const WAIT_MS = 5000;

async function memoryServer(
  net: MemoryNetwork,
  over: Partial<ServerOptions> = {},
): Promise<ImServer> {
  const ids = await identities();
  return ImServer.start({
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients: new Map<string, PublicIdentity>(
      (["A", "B", "C"] as const).map((u) => [u, ids[u].publicIdentity]),
    ),
    heartbeatMs: 0,
    ...over,
  });
}

async function recv(t: FrameTransport): Promise<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const p = await Promise.race([
    t.recv(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no frame")), WAIT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
  assert.ok(p, "the server closed the connection");
  return p;
}

/** Log in as `user` over `t` by driving the handshake frame by frame. */
async function rawLogin(
  t: FrameTransport,
  user: string,
  identity?: PrivateIdentity,
): Promise<SecureChannel> {
  const ids = await identities();
  const own = (ids as unknown as Record<string, PrivateIdentity>)[user];
  const hs = new ClientHandshake({
    user,
    identity: identity ?? own ?? ids.stranger,
    pinnedServer: ids.serverPinned,
  });
  await t.send(await hs.start());
  await t.send(await hs.onServerHello(await recv(t)));
  await hs.onServerKey(await recv(t));
  await t.send(await hs.onServerFinished(await recv(t)));
  return new SecureChannel(t, hs.result.sealer, hs.result.opener, {
    heartbeatMs: 0,
  });
}

async function nextMessage(ch: SecureChannel): Promise<Message> {
  for await (const ev of ch.events()) {
    if (ev.kind === "message") return ev.msg;
    if (ev.kind === "closed") break;
  }
  assert.fail("channel closed before a message");
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("ImServer on a MemoryNetwork logs a user in and answers !list with no socket", async () => {
  const net = new MemoryNetwork();
  const server = await memoryServer(net);
  try {
    assert.ok(server.port > 0);
    const t = await net.from("10.0.0.2").connect(HOST, server.port);
    const ch = await rawLogin(t, "A");
    const welcome = await nextMessage(ch);
    assert.equal(welcome.t, "welcome");
    await ch.send({ t: "list" });
    assert.deepEqual(await nextMessage(ch), {
      t: "users",
      users: [{ name: "A", state: "IDLE" }],
      more: 0,
    });
    assert.deepEqual(server.list(), [{ name: "A", state: "IDLE" }]);
    await ch.close("logout");
    await until(() => server.list().length === 0, "A to leave");
  } finally {
    await server.close();
  }
});

Deno.test("ImServer.start() on a taken MemoryNetwork port rejects with NetError port-in-use and no flag in the hint", async () => {
  const net = new MemoryNetwork();
  const first = await memoryServer(net);
  try {
    const err = await memoryServer(net, { port: first.port }).then(
      () => assert.fail("a second server started on the same port"),
      (e) => e,
    );
    assert.ok(err instanceof NetError && err.code === "port-in-use");
    assert.ok(!/--/.test(err.hint ?? ""), `hint names a flag: ${err.hint}`);
  } finally {
    await first.close();
  }
});

Deno.test("the per-address cap counts transport.remoteHost: a flood from one address evicts its own, not another's (rule 1.2)", async () => {
  const net = new MemoryNetwork();
  const server = await memoryServer(net, { maxUnauthenticatedPerAddress: 2 });
  const open: FrameTransport[] = [];
  try {
    const user = await net.from("10.0.0.2").connect(HOST, server.port);
    open.push(user);
    const flood = net.from("10.0.0.9");
    for (let i = 0; i < 3; i++) {
      open.push(await flood.connect(HOST, server.port));
      await until(() => server.pendingCount === Math.min(i + 2, 3), "admit");
    }
    // The first flood connection was told why and closed; the user's stays.
    const refused = await recv(open[1]!);
    assert.equal(refused[0], FrameKind.ERROR);
    assert.equal(decodeErrorFrame(refused).code, ErrorCode.TOO_MANY);
    assert.equal(server.pendingCount, 3);
    const ch = await rawLogin(user, "A");
    assert.equal((await nextMessage(ch)).t, "welcome");
    await ch.close("logout");
  } finally {
    for (const t of open) t.close();
    await server.close();
  }
});

Deno.test("the failure penalty is per transport.remoteHost: the failing address is refused, another is served (rule 2.4)", async () => {
  const ids = await identities();
  const net = new MemoryNetwork();
  const server = await memoryServer(net, {
    authFailureLimit: 1,
    authPenaltyMs: 60_000,
  });
  const open: FrameTransport[] = [];
  try {
    const bad = net.from("10.0.0.3");
    const t1 = await bad.connect(HOST, server.port);
    open.push(t1);
    const failed = await rawLogin(t1, "A", ids.B).then(
      () => assert.fail("a wrong key logged in"),
      (e) => e,
    );
    assert.equal(failed.code, "login-failed");
    const t2 = await bad.connect(HOST, server.port);
    open.push(t2);
    const refused = await recv(t2);
    assert.equal(decodeErrorFrame(refused).code, ErrorCode.RATE_LIMITED);
    const t3 = await net.from("10.0.0.4").connect(HOST, server.port);
    open.push(t3);
    const ch = await rawLogin(t3, "A");
    assert.equal((await nextMessage(ch)).t, "welcome");
    await ch.close("logout");
  } finally {
    for (const t of open) t.close();
    await server.close();
  }
});

/** Open a connection from each address in turn, each admitted (none evicted) before the next. */
async function connectEach(
  net: MemoryNetwork,
  server: ImServer,
  addrs: readonly string[],
): Promise<FrameTransport[]> {
  const out: FrameTransport[] = [];
  for (const a of addrs) {
    const before = server.pendingCount;
    out.push(await net.from(a).connect(HOST, server.port));
    await until(() => server.pendingCount === before + 1, `${a} admitted`);
  }
  return out;
}

/** The first frame of `t` is an ERROR frame TOO_MANY: it was evicted. */
async function assertEvicted(t: FrameTransport, what: string): Promise<void> {
  const f = await recv(t);
  assert.equal(f[0], FrameKind.ERROR, `${what}: an ERROR frame`);
  assert.equal(decodeErrorFrame(f).code, ErrorCode.TOO_MANY, what);
}

Deno.test("the per-address cap counts IPv6 per /64: two addresses of one /64 share it, a third evicts the first; another /64 is counted apart (issue 10 item 10)", async () => {
  const net = new MemoryNetwork();
  const server = await memoryServer(net, { maxUnauthenticatedPerAddress: 2 });
  const open: FrameTransport[] = [];
  try {
    open.push(
      ...await connectEach(net, server, [
        "2001:db8:0:1::1",
        "2001:db8:0:1::2",
        "2001:db8:0:2::1",
      ]),
    );
    assert.equal(server.pendingCount, 3);
    // A fresh address in the first /64 counts as that /64's third.
    open.push(
      await net.from("2001:db8:0:1:ffff::9").connect(HOST, server.port),
    );
    await assertEvicted(open[0]!, "the /64's oldest");
    await until(() => server.pendingCount === 3, "three pending");
    // The other /64's connection is untouched and logs in.
    const ch = await rawLogin(open[2]!, "A");
    assert.equal((await nextMessage(ch)).t, "welcome");
    await ch.close("logout");
  } finally {
    for (const t of open) t.close();
    await server.close();
  }
});

Deno.test("the per-address cap counts 127.0.0.1, ::ffff:127.0.0.1 and ::1 as one host (issue 10 item 10)", async () => {
  const net = new MemoryNetwork();
  const server = await memoryServer(net, { maxUnauthenticatedPerAddress: 2 });
  const open: FrameTransport[] = [];
  try {
    open.push(
      ...await connectEach(net, server, ["127.0.0.1", "::ffff:127.0.0.1"]),
    );
    open.push(await net.from("::1").connect(HOST, server.port));
    await assertEvicted(open[0]!, "the loopback host's oldest");
    await until(() => server.pendingCount === 2, "two pending");
  } finally {
    for (const t of open) t.close();
    await server.close();
  }
});

Deno.test("the failure penalty counts IPv6 per /64: a fresh address in the failing /64 is refused, another /64 is served (issue 10 item 10)", async () => {
  const ids = await identities();
  const net = new MemoryNetwork();
  const server = await memoryServer(net, {
    authFailureLimit: 1,
    authPenaltyMs: 60_000,
  });
  const open: FrameTransport[] = [];
  try {
    const t1 = await net.from("2001:db8:0:1::1").connect(HOST, server.port);
    open.push(t1);
    const failed = await rawLogin(t1, "A", ids.B).then(
      () => assert.fail("a wrong key logged in"),
      (e) => e,
    );
    assert.equal(failed.code, "login-failed");
    const t2 = await net.from("2001:db8:0:1:9::9").connect(HOST, server.port);
    open.push(t2);
    assert.equal(decodeErrorFrame(await recv(t2)).code, ErrorCode.RATE_LIMITED);
    const t3 = await net.from("2001:db8:0:2::1").connect(HOST, server.port);
    open.push(t3);
    const ch = await rawLogin(t3, "A");
    assert.equal((await nextMessage(ch)).t, "welcome");
    await ch.close("logout");
  } finally {
    for (const t of open) t.close();
    await server.close();
  }
});

Deno.test("ServerOptions.ipv6PrefixBits sets what one IPv6 client is: /128 counts each address apart, /48 joins /64s (issue 10 item 10)", async () => {
  for (
    const [bits, third, evicted] of [
      [128, "2001:db8:0:1::3", false],
      [48, "2001:db8:0:2::1", true],
    ] as const
  ) {
    const net = new MemoryNetwork();
    const server = await memoryServer(net, {
      maxUnauthenticatedPerAddress: 2,
      ipv6PrefixBits: bits,
    });
    const open: FrameTransport[] = [];
    try {
      open.push(
        ...await connectEach(net, server, [
          "2001:db8:0:1::1",
          "2001:db8:0:1::2",
        ]),
      );
      open.push(await net.from(third).connect(HOST, server.port));
      if (evicted) {
        await assertEvicted(open[0]!, `/${bits}: the prefix's oldest`);
        await until(() => server.pendingCount === 2, "two pending");
      } else {
        await until(() => server.pendingCount === 3, `/${bits}: three pending`);
      }
    } finally {
      for (const t of open) t.close();
      await server.close();
    }
  }
});
