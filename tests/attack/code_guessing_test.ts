/**
 * Guessing the security code through repeated grants (issue 16 item 1;
 * PROTOCOL.md section 6, "Why the joiner commits first"): whoever holds the
 * peer key, the server included, can spend a grant, read the host's
 * PEER_HELLO and drop the attempt, one guess at the code per grant. The host
 * shows each, and after three spent grants of one joiner failed in a row it
 * refuses that joiner's grants.
 * @module
 */

import assert from "node:assert/strict";
import { FrameKind } from "../../lib/wire/mod.ts";
import {
  openJoinTicket,
  PeerJoinHandshake,
  TicketReplayCache,
} from "../../lib/proto/mod.ts";
import { MAX_FAILED_GRANTS } from "../../lib/client/grant_guards.ts";
import { freePort, identities } from "../_helpers.ts";
import { rawFrame } from "../_fixtures_mitm.ts";
import {
  type BareLogin,
  isError,
  type Scope,
  started,
  type TestClient,
  until,
  withScope,
} from "../_fixtures.ts";
import { isMsg } from "./_setup.ts";

const system = (re: RegExp) => (e: { kind: string; text?: string }) =>
  e.kind === "system" && re.test(e.text ?? "");

/** Wait until the server lists `user` as HOSTING. */
function hostingAtServer(
  server: { list(): Array<{ name: string; state: string }> },
  user: string,
): Promise<void> {
  return until(
    () => server.list().some((u) => u.name === user && u.state === "HOSTING"),
    `${user} HOSTING at the server`,
  );
}

/**
 * B (a bare login, as a server playing B could be) asks A for a session,
 * commits with a valid MAC from its ticket, reads the PEER_HELLO (one code
 * it could compare) and drops the attempt.
 */
async function oneGuess(
  s: Scope,
  b: BareLogin,
  hostPort: number,
): Promise<void> {
  const mark = b.tap.mark;
  await b.channel.send({ t: "session", peer: "A", req: 1 });
  const j = await b.tap.waitFor(isMsg("join"), mark);
  assert.ok(j.kind === "message" && j.msg.t === "join");
  const ticket = openJoinTicket(
    b.login.ticketKeys,
    Uint8Array.fromBase64(j.msg.ticket),
    {
      self: "B",
      expectedHost: "A",
      ticketId: Uint8Array.fromHex(j.msg.ticketId),
    },
  );
  const conn = await s.raw(hostPort);
  await conn.write(
    rawFrame(
      await new PeerJoinHandshake({
        self: "B",
        expectedHost: "A",
        replayCache: new TicketReplayCache(),
        identity: (await identities()).B,
        peerIdentity: (await identities()).A.publicIdentity,
      }).commit(ticket),
    ),
  );
  const hello = await conn.frame();
  assert.equal(hello?.[0], FrameKind.PEER_HELLO, "this grant was spent");
  await conn.close();
}

async function hostOn(a: TestClient): Promise<void> {
  const mark = a.ui.mark;
  await a.client.handleLine("!session host");
  await a.ui.waitFor(system(/^Hosting at/), mark);
}

Deno.test("three spent grants of one joiner that fail in a row: the host says once, loudly, that someone may be guessing the code, then cancels that joiner's grants at once without a PEER_HELLO; another user still gets in", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    const hostPort = freePort();
    const a = await s.client(port, "A", { listenPort: hostPort });
    const b = await s.login(port, "B");
    const c = await s.client(port, "C");
    await hostOn(a);
    const start = a.ui.mark;
    for (let i = 0; i < MAX_FAILED_GRANTS; i++) {
      await hostingAtServer(server, "A");
      const mark = a.ui.mark;
      await oneGuess(s, b, hostPort);
      // Each guess is shown: a failed session, the grant cancelled.
      await a.ui.waitFor(
        system(/^B's session was cancelled; still hosting$/),
        mark,
      );
      assert.equal(a.ui.since(isError(), mark).length, i === 2 ? 2 : 1);
    }
    const loud = a.ui.since(isError("peer-guessing"), start);
    assert.equal(loud.length, 1, JSON.stringify(loud));
    assert.ok(loud[0]!.kind === "error");
    assert.equal(
      loud[0]!.text,
      "3 sessions with B in a row failed after the key exchange began: someone holding the session key (most likely the server) may be guessing the security code. Refusing sessions from B until you type !session host again",
    );
    // The next grants for B are cancelled at once: B is told, A shows no
    // new request and says nothing more.
    for (let i = 0; i < 2; i++) {
      await hostingAtServer(server, "A");
      const am = a.ui.mark, bm = b.tap.mark;
      await b.channel.send({ t: "session", peer: "A", req: 1 });
      await b.tap.waitFor(isMsg("join"), bm);
      const cancelled = await b.tap.waitFor(isMsg("cancelled"), bm);
      assert.ok(
        cancelled.kind === "message" && cancelled.msg.t === "cancelled",
      );
      assert.equal(cancelled.msg.peer, "A");
      assert.equal(a.ui.since(system(/asked for a session/), am).length, 0);
      assert.equal(a.ui.since(isError(), am).length, 0);
    }
    assert.equal(a.ui.since(isError("peer-guessing"), start).length, 1);
    // Other joiners are not affected.
    await hostingAtServer(server, "A");
    const am = a.ui.mark, cm = c.ui.mark;
    await c.client.handleLine("!session A");
    const [h, j] = await Promise.all([
      a.ui.waitFor(started, am),
      c.ui.waitFor(started, cm),
    ]);
    assert.ok(h.kind === "session" && j.kind === "session" && h.sas === j.sas);
  });
});

Deno.test("fewer failed grants than the limit refuse nothing: after two failed guesses the real joiner still gets in, and its session clears the count", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    const hostPort = freePort();
    const a = await s.client(port, "A", { listenPort: hostPort });
    const b = await s.login(port, "B");
    await hostOn(a);
    const start = a.ui.mark;
    for (let i = 0; i < MAX_FAILED_GRANTS - 1; i++) {
      await hostingAtServer(server, "A");
      const mark = a.ui.mark;
      await oneGuess(s, b, hostPort);
      await a.ui.waitFor(
        system(/^B's session was cancelled; still hosting$/),
        mark,
      );
    }
    assert.equal(a.ui.since(isError("peer-guessing"), start).length, 0);
    // B's own client, a real joiner, logs in again (replacing the bare login).
    const real = await s.client(port, "B");
    await hostingAtServer(server, "A");
    let am = a.ui.mark, bm = real.ui.mark;
    await real.client.handleLine("!session A");
    await Promise.all([
      a.ui.waitFor(started, am),
      real.ui.waitFor(started, bm),
    ]);
    await real.client.handleLine("!disconnect");
    await a.ui.waitFor(system(/^Still hosting/), am);
    // The session cleared the count: two more failures still refuse nothing.
    const raw = await s.login(port, "B");
    for (let i = 0; i < MAX_FAILED_GRANTS - 1; i++) {
      await hostingAtServer(server, "A");
      const mark = a.ui.mark;
      await oneGuess(s, raw, hostPort);
      await a.ui.waitFor(
        system(/^B's session was cancelled; still hosting$/),
        mark,
      );
    }
    assert.equal(a.ui.since(isError("peer-guessing"), start).length, 0);
    am = a.ui.mark;
    bm = raw.tap.mark;
    await hostingAtServer(server, "A");
    await raw.channel.send({ t: "session", peer: "A", req: 1 });
    await raw.tap.waitFor(isMsg("join"), bm);
    await a.ui.waitFor(system(/^B asked for a session/), am);
  });
});

Deno.test("the count outlives a hosting that starts again by itself: two failed guesses, a session with C after which A hosts on, one more failed guess, and B is refused", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    const hostPort = freePort();
    const a = await s.client(port, "A", { listenPort: hostPort });
    const b = await s.login(port, "B");
    const c = await s.client(port, "C");
    await hostOn(a);
    const start = a.ui.mark;
    const guess = async () => {
      await hostingAtServer(server, "A");
      const mark = a.ui.mark;
      await oneGuess(s, b, hostPort);
      await a.ui.waitFor(
        system(/^B's session was cancelled; still hosting$/),
        mark,
      );
    };
    for (let i = 0; i < MAX_FAILED_GRANTS - 1; i++) await guess();
    // A session with C; when it ends, A hosts on by itself (a new hosting).
    await hostingAtServer(server, "A");
    let am = a.ui.mark;
    const cm = c.ui.mark;
    await c.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started, am), c.ui.waitFor(started, cm)]);
    await c.client.handleLine("!disconnect");
    await a.ui.waitFor(system(/^Still hosting/), am);
    assert.equal(a.ui.since(isError("peer-guessing"), start).length, 0);
    await guess();
    assert.equal(a.ui.since(isError("peer-guessing"), start).length, 1);
    am = a.ui.mark;
    const bm = b.tap.mark;
    await hostingAtServer(server, "A");
    await b.channel.send({ t: "session", peer: "A", req: 1 });
    await b.tap.waitFor(isMsg("cancelled"), bm);
    assert.equal(a.ui.since(system(/asked for a session/), am).length, 0);
  });
});
Deno.test("!session host typed again lets a refused joiner try again", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    const hostPort = freePort();
    const a = await s.client(port, "A", { listenPort: hostPort });
    const b = await s.login(port, "B");
    await hostOn(a);
    for (let i = 0; i < MAX_FAILED_GRANTS; i++) {
      await hostingAtServer(server, "A");
      const mark = a.ui.mark;
      await oneGuess(s, b, hostPort);
      await a.ui.waitFor(
        system(/^B's session was cancelled; still hosting$/),
        mark,
      );
    }
    let am = a.ui.mark;
    await a.client.handleLine("!session host"); // "Already hosting ..."
    await a.ui.waitFor(system(/^Already hosting/), am);
    await hostingAtServer(server, "A");
    am = a.ui.mark;
    await b.channel.send({ t: "session", peer: "A", req: 1 });
    await a.ui.waitFor(system(/^B asked for a session/), am);
  });
});
