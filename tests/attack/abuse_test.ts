/**
 * What one logged-in user, or anyone who can reach a host's port, may do to
 * the others (issue 10 items 2, 4, 5, 7, 8; PROTOCOL.md sections 2, 5.2, 6):
 * keep hosts BUSY, ask too often, send frames another user cannot read, or
 * open many connections on one grant.
 */

import assert from "node:assert/strict";
import { FrameKind } from "../../lib/wire/mod.ts";
import {
  openJoinTicket,
  PeerJoinHandshake,
  TicketReplayCache,
} from "../../lib/proto/mod.ts";
import { randomBytes, sleep } from "../../lib/util/mod.ts";
import { freePort, identities } from "../_helpers.ts";
import { rawFrame } from "../_fixtures_mitm.ts";
import {
  isError,
  started,
  type TestClient,
  until,
  withScope,
} from "../_fixtures.ts";
import { isMsg, isServerError } from "./_setup.ts";

const hosting = (e: { kind: string; text?: string }) =>
  e.kind === "system" && /^Hosting (at|through) /.test(e.text ?? "");

async function host(c: TestClient): Promise<void> {
  const mark = c.ui.mark;
  await c.client.handleLine("!session host");
  await c.ui.waitFor(hosting, mark);
}

Deno.test("a joiner that asks for a session and then says ended frees the host at once: it hosts again and a third user gets in", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    const a = await s.client(port, "A");
    const c = await s.client(port, "C");
    const b = await s.login(port, "B");
    await host(a);
    await b.channel.send({ t: "session", peer: "A", req: 1 });
    await b.tap.waitFor(isMsg("join"));
    await a.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("B asked for a session")
    );
    const mark = a.ui.mark;
    await b.channel.send({ t: "ended", peer: "A" });
    await a.ui.waitFor(
      (e) =>
        e.kind === "system" && e.text === "B left the session; still hosting",
      mark,
    );
    // Long before the 30 s ticket would have expired.
    await until(
      () => server.list().find((u) => u.name === "A")?.state === "HOSTING",
      "A HOSTING again",
    );
    await c.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started, mark), c.ui.waitFor(started)]);
  });
});

Deno.test("session requests are rate limited per user: the eleventh of a burst is refused rate-limited, naming its req, and grants nothing", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    await s.client(port, "A"); // online, not hosting
    const b = await s.login(port, "B");
    for (let req = 1; req <= 11; req++) {
      await b.channel.send({ t: "session", peer: "A", req });
    }
    const limited = await b.tap.waitFor(isServerError("rate-limited"));
    assert.ok(
      limited.kind === "message" &&
        (limited.msg as { req?: number }).req === 11,
    );
    await until(
      () => b.tap.since(isMsg("refused")).length === 10,
      "ten refusals",
    );
    assert.ok(server.list().every((u) => u.state === "IDLE"));
  });
});

Deno.test("!list is rate limited per user: the eleventh of a burst is refused rate-limited, and another user is still answered", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const b = await s.login(port, "B");
    const c = await s.login(port, "C");
    for (let req = 1; req <= 11; req++) {
      await b.channel.send({ t: "list", req });
    }
    const limited = await b.tap.waitFor(isServerError("rate-limited"));
    assert.ok(
      limited.kind === "message" &&
        (limited.msg as { req?: number }).req === 11,
    );
    assert.equal(b.tap.since(isMsg("users")).length, 10);
    await c.channel.send({ t: "list", req: 1 });
    await c.tap.waitFor(isMsg("users"));
  });
});

Deno.test("a server with --max-frame 262144: a partner's 100 KB relay reaches a client that keeps to the announced limit, and its link stays up", async () => {
  await withScope(async (s) => {
    const { port } = await s.server({ maxFrameBytes: 262144 });
    const a = await s.client(port, "A");
    const b = await s.login(port, "B");
    const welcome = await b.tap.waitFor(isMsg("welcome"));
    assert.ok(welcome.kind === "message" && welcome.msg.t === "welcome");
    assert.equal(welcome.msg.maxFrame, 262144, "the server tells its limit");
    await host(a);
    await b.channel.send({ t: "session", peer: "A", req: 1 });
    await b.tap.waitFor(isMsg("join"));
    // B, a raw client, keeps to the announced limit too.
    b.channel.maxRecordBytes = 262144;
    b.channel.transport.maxFrameBytes = 262144;
    const frame = randomBytes(100_000);
    frame[0] = FrameKind.RECORD; // not a PEER_COMMIT: dropped by the host
    await b.channel.send({ t: "relay", peer: "A", data: frame.toBase64() });
    await sleep(50);
    const mark = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor((e) => e.kind === "list", mark);
    assert.equal(a.ui.since(isError("server-gone")).length, 0);
    assert.equal(a.ui.since(isError("frame-too-large")).length, 0);
  });
});

Deno.test("a server with --max-frame 16384: a 20 KB relayed chat message is refused to its sender before it is sent; the session and both links go on", async () => {
  await withScope(async (s) => {
    const { port } = await s.server({ maxFrameBytes: 16384 });
    const a = await s.client(port, "A", { relay: true });
    const b = await s.client(port, "B", { relay: true });
    await host(a);
    await b.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
    const mark = b.ui.mark;
    await b.client.handleLine("x".repeat(20_000));
    const refused = await b.ui.waitFor(isError("message-too-large"), mark);
    assert.match(refused.kind === "error" ? refused.text : "", /Not delivered/);
    const am = a.ui.mark;
    await b.client.handleLine("still here");
    await a.ui.waitFor(
      (e) => e.kind === "message" && e.text === "still here",
      am,
    );
    await b.ui.waitFor(
      (e) => e.kind === "receipt" && e.status === "delivered",
      mark,
    );
    assert.equal(b.ui.since(isError("server-gone")).length, 0);
    assert.equal(a.ui.since(isError("server-gone")).length, 0);
    assert.equal(b.ui.since(isError("lost"), mark).length, 0);
    assert.equal(a.ui.since(isError("lost"), am).length, 0);
  });
});

// PROTOCOL.md section 6, one commitment per grant. The attacker is the
// joiner itself (or the server, which made the key): it holds the peer key,
// so each of its commitments carries a valid MAC, and each PEER_HELLO would
// give it one more code to compare offline. Only the first gets one.
Deno.test("one commitment per grant: of six connections that commit on one grant, each with a valid MAC from the joiner's ticket, only the first gets a PEER_HELLO; the host shows two lines, not six", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const hostPort = freePort();
    const a = await s.client(port, "A", { listenPort: hostPort });
    const b = await s.login(port, "B");
    await host(a);
    const mark = a.ui.mark;
    await b.channel.send({ t: "session", peer: "A", req: 1 });
    const j = await b.tap.waitFor(isMsg("join"));
    assert.ok(j.kind === "message" && j.msg.t === "join");
    // B opens its ticket from the join, as a joiner does.
    const ticket = openJoinTicket(
      b.login.ticketKeys,
      Uint8Array.fromBase64(j.msg.ticket),
      {
        self: "B",
        expectedHost: "A",
        ticketId: Uint8Array.fromHex(j.msg.ticketId),
      },
    );
    await a.ui.waitFor(
      (e) => e.kind === "system" && /^B asked for a session/.test(e.text),
      mark,
    );
    const conns = [];
    for (let i = 0; i < 6; i++) {
      const commit = await new PeerJoinHandshake({
        self: "B",
        expectedHost: "A",
        replayCache: new TicketReplayCache(),
        identity: (await identities()).B,
        peerIdentity: (await identities()).A.publicIdentity,
      }).commit(ticket); // fresh values each time, each with a valid MAC
      const c = await s.raw(hostPort);
      await c.write(rawFrame(commit));
      conns.push(c);
      await sleep(5); // in order: the first is the first to be checked
    }
    const firsts = await Promise.all(conns.map((c) => c.frame()));
    const hellos = firsts.filter((f) => f?.[0] === FrameKind.PEER_HELLO);
    assert.equal(hellos.length, 1, "exactly one PEER_HELLO");
    assert.equal(firsts[0]?.[0], FrameKind.PEER_HELLO, "to the first");
    assert.deepEqual(firsts.slice(1), [null, null, null, null, null]);
    // The one that got it cannot finish: the grant is spent, the host says
    // so and hosts again; its refusals are one line and one summary.
    await conns[0]!.close();
    await a.ui.waitFor(
      (e) =>
        e.kind === "system" &&
        /session was cancelled; still hosting/.test(e.text),
      mark,
    );
    const refusals = a.ui.since(
      (e) => e.kind === "system" && /^Refused /.test(e.text),
      mark,
    );
    assert.equal(refusals.length, 2, JSON.stringify(refusals));
    assert.match(
      refusals[0]!.kind === "system" ? refusals[0]!.text : "",
      /: this session's one handshake is taken; still waiting for B$/,
    );
    assert.match(
      refusals[1]!.kind === "system" ? refusals[1]!.text : "",
      /^Refused 4 more connection\(s\) while waiting for B$/,
    );
  });
});
