/**
 * End to end, on the wire: a recording {@link TcpProxy} in front of the
 * server and of the host's peer port sees no sent message in clear (rules
 * 3.6, 4.4), and the server relay (issue 6 item 1) carries a session when
 * the host cannot be reached or `--relay` is given, still without a
 * message in clear.
 * @module
 */

import assert from "node:assert/strict";
import { TcpProxy } from "../../lib/wire/mod.ts";
import { freePort } from "../_helpers.ts";
import {
  type ChatEvent,
  type ChatProc,
  containsBytes,
  type Procs,
  sharedKeys,
  withProcs,
} from "./harness.ts";
import { incoming, session } from "./_chat.ts";

const keys = await sharedKeys();
const encoder = new TextEncoder();

function proxy(p: Procs, port: number): TcpProxy {
  const t = TcpProxy.start({ target: { hostname: "127.0.0.1", port } });
  p.defer(() => t.close());
  return t;
}

/** Each side says its lines; every line arrives and is acknowledged. */
async function talk(
  a: ChatProc,
  aSays: string[],
  b: ChatProc,
  bSays: string[],
): Promise<void> {
  const a0 = a.events.length, b0 = b.events.length;
  await a.send(...aSays);
  await b.send(...bSays);
  for (const t of aSays) await b.waitFor(incoming(a.user, t), undefined, b0);
  for (const t of bSays) await a.waitFor(incoming(b.user, t), undefined, a0);
  const delivered = (e: ChatEvent) =>
    e.type === "receipt" && e.status === "delivered";
  await a.waitForCount(delivered, aSays.length, undefined, a0);
  await b.waitForCount(delivered, bSays.length, undefined, b0);
}

/** No message, nor a long piece of one, appears in the recorded bytes. */
function assertNoClearText(taps: TcpProxy[], said: string[]): void {
  const wire = taps.flatMap((t) => [t.bytes("up"), t.bytes("down")]);
  const total = wire.reduce((n, b) => n + b.length, 0);
  assert.ok(total > 1000, `the taps recorded traffic (${total} bytes)`);
  for (const text of said) {
    // The whole message, and its first 12 bytes alone.
    for (const needle of [text, text.slice(0, 12)]) {
      const bytes = encoder.encode(needle);
      for (const w of wire) {
        assert.ok(!containsBytes(w, bytes), `"${needle}" crossed in clear`);
      }
    }
  }
}

const SAID_A = [
  "attack at dawn, the password is swordfish",
  "Meet me at the usual place at 9",
];
const SAID_B = [
  "Roger: dawn it is; bring the blue folder",
  "Zürich → Genève: ünïcødé survives",
];

Deno.test("a recording proxy in front of the server and of the host's peer port sees no message in clear, while every message arrives", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const serverTap = proxy(p, server.port);
    const peerPort = freePort();
    const peerTap = proxy(p, peerPort);
    const via = { server: `127.0.0.1:${serverTap.port}` };
    const [a, b] = await Promise.all([
      p.chat(null, "A", {
        ...via,
        args: [
          "--listen-port",
          String(peerPort),
          "--advertise",
          `127.0.0.1:${peerTap.port}`,
        ],
      }),
      p.chat(null, "B", via),
    ]);
    const { hostEv, joinEv } = await session(a, b);
    assert.equal(hostEv.transport, "direct");
    assert.equal(joinEv.transport, "direct");
    assert.equal(hostEv.sas, joinEv.sas);
    await talk(a, SAID_A, b, SAID_B);
    assert.deepEqual(await b.list(), { A: "BUSY", B: "BUSY" });
    assert.ok(peerTap.connections >= 1, "the session went through the tap");
    assert.ok(serverTap.connections >= 2, "both logins went through the tap");
    assertNoClearText([serverTap, peerTap], [...SAID_A, ...SAID_B]);
    // Nor the usernames' messages of the server channel (rule 3.6).
    assertNoClearText([serverTap], ['"t":"list"', '"users"']);
  });
});

Deno.test("relay: a host advertising an address where nothing listens (127.0.0.1:1) gets a relayed session; messages (one of 30 KB) arrive both ways and the server's tap sees none in clear", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const serverTap = proxy(p, server.port);
    const via = { server: `127.0.0.1:${serverTap.port}` };
    const [a, b] = await Promise.all([
      p.chat(null, "A", { ...via, args: ["--advertise", "127.0.0.1:1"] }),
      p.chat(null, "B", via),
    ]);
    const { hostEv, joinEv } = await session(a, b);
    assert.equal(hostEv.transport, "relay");
    assert.equal(joinEv.transport, "relay");
    assert.equal(hostEv.sas, joinEv.sas);
    assert.ok(
      b.events.some((e) =>
        e.type === "system" && /Cannot reach A .*server relay/.test(e.text!)
      ),
      "the joiner says it falls back to the relay",
    );
    await talk(a, SAID_A, b, SAID_B);
    // A 30 KB message still fits once relayed (base64 in a server record).
    let big = "";
    for (let i = 0; big.length < 30_000; i++) big += `relayed ${i} `;
    big = big.slice(0, 30_000);
    await talk(a, [big], b, []);
    assertNoClearText([serverTap], [...SAID_A, ...SAID_B, big]);
    // !disconnect over the relay ends it on both sides; B is IDLE and A,
    // which hosted, hosts on (issue 11 item 5).
    const a0 = a.events.length;
    await b.send("!disconnect");
    await a.waitFor(
      (e) => e.type === "session" && e.state === "ended",
      undefined,
      a0,
    );
    await b.listUntil((l) => l.A === "HOSTING" && l.B === "IDLE");
  });
});

Deno.test("relay: --relay on the host, and then --relay on the joiner, each force a relayed session", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const [a, b, c] = await Promise.all([
      p.chat(server, "A", { args: ["--relay"] }),
      p.chat(server, "B"),
      p.chat(server, "C", { args: ["--relay"] }),
    ]);
    // Host side: A --relay hosts, B (direct by default) joins.
    const { hostEv: h1, joinEv: j1 } = await session(a, b);
    assert.equal(h1.transport, "relay");
    assert.equal(j1.transport, "relay");
    await talk(a, ["via relay from A"], b, ["via relay from B"]);
    const b0 = b.events.length;
    await a.send("!disconnect");
    await b.waitFor(
      (e) => e.type === "session" && e.state === "ended",
      undefined,
      b0,
    );
    // A ended the session it hosted: it hosts on (issue 11 item 5).
    await b.listUntil((l) => l.A === "HOSTING" && l.B === "IDLE");
    // Joiner side: B hosts with a listener, C --relay joins through the server.
    const { hostEv: h2, joinEv: j2 } = await session(b, c);
    assert.equal(h2.transport, "relay");
    assert.equal(j2.transport, "relay");
    assert.equal(h2.sas, j2.sas);
    await talk(b, ["B to C"], c, ["C to B"]);
    // A relayed peer that dies is noticed at once: the server, which sees
    // its connection close, tells the other side.
    const b1 = b.events.length;
    await c.kill();
    const end = await b.waitFor(
      (e) => e.type === "session" && e.state === "ended" && e.peer === "C",
      3000,
      b1,
    );
    // Told by the server, not found out by the heartbeat timeout: the reason
    // says the peer's link is gone, not that it stopped answering.
    assert.doesNotMatch(end.reason ?? "", /stopped answering/);
    // Both hosted their last session: both host on.
    assert.deepEqual(
      await b.listUntil((l) => !("C" in l) && l.B === "HOSTING"),
      { A: "HOSTING", B: "HOSTING" },
    );
  });
});
