/**
 * Attacks on peer tickets and the peer handshake (requirements 4.2-4.4)
 * through real sockets: a man in the middle in front of the host's port
 * replays a recorded ticket, delays one past its expiry, hands one to a
 * third user, alters one, or presents another host's ticket; a stranger
 * connects to the host's port before the real peer, or commits for the
 * grant without its key; a commitment left over from an abandoned attempt
 * arrives before the next grant.
 */

import assert from "node:assert/strict";
import { FrameKind } from "../../lib/wire/mod.ts";
import {
  decodePeerCommit,
  decodePeerHello,
  encodePeerCommit,
  encodePeerHello,
  type JoinTicket,
  openJoinTicket,
  PeerJoinHandshake,
  TicketReplayCache,
} from "../../lib/proto/mod.ts";
import { randomBytes, sleep } from "../../lib/util/mod.ts";
import { flipBit, freePort, identities } from "../_helpers.ts";
import { type FrameMitm, type MitmFrame, rawFrame } from "../_fixtures_mitm.ts";
import {
  type BareLogin,
  ended,
  isError,
  type Scope,
  started,
  type TestClient,
  until,
  withScope,
} from "../_fixtures.ts";
import { isMsg, peerPair } from "./_setup.ts";

const isPeerHello = (f: MitmFrame) =>
  f.dir === "down" && f.payload[0] === FrameKind.PEER_HELLO;
const isPeerCommit = (f: MitmFrame) =>
  f.dir === "up" && f.payload[0] === FrameKind.PEER_COMMIT;

/**
 * End the session from the joiner's side and wait until both sides saw it
 * end and the host hosts on (issue 11 item 5).
 */
async function endSession(host: TestClient, joiner: TestClient): Promise<void> {
  const hm = host.ui.mark, jm = joiner.ui.mark;
  await joiner.client.handleLine("!disconnect");
  await Promise.all([host.ui.waitFor(ended, hm), joiner.ui.waitFor(ended, jm)]);
  await host.ui.waitFor(
    (e) => e.kind === "system" && e.text.startsWith("Still hosting"),
    hm,
  );
}

/**
 * The host hosts (behind its MITM), with `hook` on the MITM; after a
 * session it hosts on by itself.
 */
async function hostAgain(
  host: TestClient,
  mitm: FrameMitm,
  hook: FrameMitm["hook"],
) {
  mitm.hook = hook;
  if (host.client.mode === "hosting") return;
  const mark = host.ui.mark;
  await host.client.handleLine("!session host");
  await host.ui.waitFor(
    (e) => e.kind === "system" && e.text.startsWith("Hosting at"),
    mark,
  );
}

/** The host hosts on its own port (no MITM). */
async function hostAgainDirect(host: TestClient): Promise<void> {
  const mark = host.ui.mark;
  await host.client.handleLine("!session host");
  await host.ui.waitFor(
    (e) => e.kind === "system" && e.text.startsWith("Hosting at"),
    mark,
  );
}

/** Replace the PEER_HELLO of connection `conn` with `payload`. */
function replaceHello(conn: number, payload: Uint8Array) {
  return (f: MitmFrame) =>
    f.conn === conn && isPeerHello(f) ? [payload] : [f.payload];
}

/**
 * A bare login B asks host A for a session and opens the ticket of the
 * `join`, as a joiner does (PROTOCOL.md section 6).
 * @returns the opened ticket
 */
async function bareJoin(b: BareLogin, host = "A"): Promise<JoinTicket> {
  const mark = b.tap.mark;
  await b.channel.send({ t: "session", peer: host, req: 1 });
  const j = await b.tap.waitFor(isMsg("join"), mark);
  assert.ok(j.kind === "message" && j.msg.t === "join");
  return openJoinTicket(
    b.login.ticketKeys,
    Uint8Array.fromBase64(j.msg.ticket),
    {
      self: "B",
      expectedHost: host,
      ticketId: Uint8Array.fromHex(j.msg.ticketId),
    },
  );
}

/** A PEER_COMMIT with fresh values, bound to `ticket` as its joiner makes it. */
async function commitFor(
  ticket: JoinTicket,
  host = "A",
): Promise<Uint8Array> {
  const ids = await identities();
  return await new PeerJoinHandshake({
    self: "B",
    expectedHost: host,
    replayCache: new TicketReplayCache(),
    identity: ids.B,
    peerIdentity: ids.A.publicIdentity,
  }).commit(ticket);
}

/** A host (behind a MITM) and a joiner, logged in, not yet in a session. */
async function hostBehindMitm(s: Scope, port: number, user: string) {
  const hostPort = freePort();
  const mitm = s.mitm(hostPort);
  const host = await s.client(port, user, {
    listenPort: hostPort,
    advertise: `127.0.0.1:${mitm.port}`,
  });
  return { host, mitm, hostPort };
}

Deno.test("a ticket replayed to its joiner in a later session is refused: it is not the join's ticket (ticket-mismatch), and no session starts", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, joiner, mitm } = await peerPair(s, port);
    const recorded = mitm.frames.find(isPeerHello)!.payload;
    await endSession(host, joiner);
    await hostAgain(host, mitm, replaceHello(1, recorded));
    const mark = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    const err = await joiner.ui.waitFor(isError(), mark);
    assert.ok(
      err.kind === "error" && err.code === "ticket-mismatch",
      JSON.stringify(err),
    );
    assert.match(err.text, /not the one the server sent us/);
    assert.equal(joiner.ui.since(started, mark).length, 0);
  });
});

Deno.test("a ticket that arrives after its expiry is refused as expired", async () => {
  await withScope(async (s) => {
    const { port } = await s.server({ ticketLifetimeMs: 400 });
    const { host, mitm } = await hostBehindMitm(s, port, "A");
    // The host gives up at the expiry and the server tells the joiner; hold
    // that news back, so the joiner judges the late ticket itself.
    const serverLink = s.mitm(port);
    let holding = false;
    serverLink.hook = async (f) => {
      if (holding && f.dir === "down") await sleep(1000);
      return [f.payload];
    };
    const joiner = await s.client(serverLink.port, "B");
    await hostAgain(host, mitm, async (f) => {
      if (isPeerHello(f)) {
        holding = true;
        await sleep(700);
      }
      return [f.payload];
    });
    const mark = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    const err = await joiner.ui.waitFor(isError("expired"), mark);
    assert.ok(err.kind === "error");
    assert.match(err.text, /expired/);
    assert.equal(joiner.ui.since(started, mark).length, 0);
  });
});

Deno.test("a ticket presented to a third user is refused: it is not the one of its join (ticket-mismatch)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, joiner, mitm } = await peerPair(s, port);
    const recorded = mitm.frames.find(isPeerHello)!.payload; // sealed for B
    await endSession(host, joiner);
    const third = await s.client(port, "C");
    await hostAgain(host, mitm, replaceHello(1, recorded));
    const mark = third.ui.mark;
    await third.client.handleLine("!session A");
    const err = await third.ui.waitFor(isError(), mark);
    assert.ok(
      err.kind === "error" && err.code === "ticket-mismatch",
      JSON.stringify(err),
    );
    assert.equal(third.ui.since(started, mark).length, 0);
  });
});

for (
  const [what, at] of [["its first byte", 0], [
    "a name byte",
    32 + 1 + 16 + 8 + 1,
  ], ["its tag", -1]] as const
) {
  Deno.test(`a ticket with one bit flipped in ${what} is refused (ticket-mismatch)`, async () => {
    await withScope(async (s) => {
      const { port } = await s.server();
      const { host, mitm } = await hostBehindMitm(s, port, "A");
      const joiner = await s.client(port, "B");
      await hostAgain(host, mitm, (f) => {
        if (!isPeerHello(f)) return [f.payload];
        const hello = decodePeerHello(f.payload);
        const byte = at < 0 ? hello.ticket.length + at : at;
        return [
          encodePeerHello({
            ...hello,
            ticket: flipBit(hello.ticket, byte * 8 + 3),
          }),
        ];
      });
      const mark = joiner.ui.mark;
      await joiner.client.handleLine("!session A");
      const err = await joiner.ui.waitFor(isError(), mark);
      assert.ok(
        err.kind === "error" && err.code === "ticket-mismatch",
        JSON.stringify(err),
      );
      assert.equal(joiner.ui.since(started, mark).length, 0);
    });
  });
}

Deno.test("a genuine ticket naming another host is refused when presented for this host: it is not the join's (ticket-mismatch)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const c = await hostBehindMitm(s, port, "C");
    const a = await hostBehindMitm(s, port, "A");
    const joiner = await s.client(port, "B");
    // B joins C: the MITM in front of C records the ticket C -> B.
    await hostAgain(c.host, c.mitm, (f) => [f.payload]);
    let mark = joiner.ui.mark;
    await joiner.client.handleLine("!session C");
    await joiner.ui.waitFor(started, mark);
    const recorded = c.mitm.frames.find(isPeerHello)!.payload;
    await endSession(c.host, joiner);
    // B joins A: the MITM in front of A presents the ticket C -> B.
    await hostAgain(a.host, a.mitm, replaceHello(0, recorded));
    mark = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    const err = await joiner.ui.waitFor(isError(), mark);
    assert.ok(
      err.kind === "error" && err.code === "ticket-mismatch",
      JSON.stringify(err),
    );
    assert.equal(joiner.ui.since(started, mark).length, 0);
  });
});

Deno.test("a PEER_HELLO whose version is altered is refused by the joiner", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, mitm } = await hostBehindMitm(s, port, "A");
    const joiner = await s.client(port, "B");
    await hostAgain(
      host,
      mitm,
      (f) =>
        isPeerHello(f)
          ? [encodePeerHello({ ...decodePeerHello(f.payload), version: 2 })]
          : [f.payload],
    );
    const mark = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    const err = await joiner.ui.waitFor(isError(), mark);
    assert.ok(
      err.kind === "error" && err.code === "version",
      JSON.stringify(err),
    );
  });
});

// PROTOCOL.md section 6, one commitment per grant: only a PEER_COMMIT that
// names the grant and carries a MAC from its peer key spends it. A stranger
// cannot make that MAC, so it spends nothing and the joiner gets in on the
// same grant, with nothing to retry.
Deno.test("a stranger who commits first on the host's port, with the grant's ticket id and a random MAC, gets no PEER_HELLO and spends nothing; one that says nothing gets nothing at all; the joiner then gets in on the same grant", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, mitm, hostPort } = await hostBehindMitm(s, port, "A");
    const joiner = await s.client(port, "B");
    let forgerGot: Array<Uint8Array | null> | undefined;
    await hostAgain(host, mitm, async (f) => {
      if (!isPeerCommit(f) || forgerGot !== undefined) return [f.payload];
      // The joiner's PEER_COMMIT is held here. The ticket id and the
      // commitment in it are no secret; a stranger races ahead with them
      // and a MAC of its own, while the host has the grant.
      forgerGot = [];
      const real = decodePeerCommit(f.payload);
      const forger = await s.raw(hostPort);
      await forger.write(rawFrame(encodePeerCommit({
        ticketId: real.ticketId,
        commit: real.commit,
        mac: randomBytes(32),
      })));
      forgerGot.push(await forger.frame());
      return [f.payload];
    });
    const silent = await s.raw(hostPort);
    const hm = host.ui.mark, jm = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    const [h, j] = await Promise.all([
      host.ui.waitFor(started, hm),
      joiner.ui.waitFor(started, jm),
    ]);
    assert.ok(
      h.kind === "session" && j.kind === "session" && h.sas && h.sas === j.sas,
    );
    assert.equal(j.transport, "direct", "on the first try, not a retry");
    assert.deepEqual(
      forgerGot,
      [null],
      "the forger is closed without a byte, not even the ticket",
    );
    const refusals = host.ui.since(
      (e) => e.kind === "system" && /^Refused /.test(e.text),
      hm,
    );
    assert.equal(refusals.length, 1, JSON.stringify(refusals));
    assert.match(
      refusals[0]!.kind === "system" ? refusals[0]!.text : "",
      /^Refused a connection from 127\.0\.0\.1:\d+: PEER_COMMIT carries no proof of this session's ticket; still waiting for B$/,
    );
    assert.equal(host.ui.since(isError(), hm).length, 0, "no failed session");
    assert.equal(joiner.ui.since(isError(), jm).length, 0);
    assert.equal(
      host.ui.since(
        (e) => e.kind === "system" && /cancelled/.test(e.text),
        hm,
      ).length,
      0,
      "the grant was not spent",
    );
    // The silent stranger never saw a byte, not even the ticket; it is
    // closed once the session started.
    assert.deepEqual(await silent.untilEof(), []);
  });
});

Deno.test("a PEER_COMMIT naming another ticket id while a grant is pending is refused without spending it, even from the joiner with a valid MAC: the joiner's own commitment then gets the PEER_HELLO", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const hostPort = freePort();
    const a = await s.client(port, "A", { listenPort: hostPort });
    const b = await s.login(port, "B");
    await hostAgainDirect(a);
    const am = a.ui.mark;
    const ticket = await bareJoin(b);
    await a.ui.waitFor(
      (e) => e.kind === "system" && /^B asked for a session/.test(e.text),
      am,
    );
    // B holds the peer key: it binds a commitment to a made-up id.
    const other = {
      ...ticket,
      ticket: { ...ticket.ticket, id: randomBytes(16) },
    };
    const wrong = await s.raw(hostPort);
    await wrong.write(rawFrame(await commitFor(other)));
    assert.equal(await wrong.frame(), null, "closed without a PEER_HELLO");
    const right = await s.raw(hostPort);
    await right.write(rawFrame(await commitFor(ticket)));
    const hello = await right.frame();
    assert.equal(hello?.[0], FrameKind.PEER_HELLO, "the grant was not spent");
    assert.deepEqual(
      decodePeerHello(hello!).ticket,
      ticket.sealed,
      "the join's ticket, byte for byte",
    );
    const refusals = a.ui.since(
      (e) => e.kind === "system" && /^Refused /.test(e.text),
      am,
    );
    assert.equal(refusals.length, 1);
    assert.match(
      refusals[0]!.kind === "system" ? refusals[0]!.text : "",
      /: PEER_COMMIT is for another session; still waiting for B$/,
    );
  });
});

// The flaky race this replaces (issue 16 item 1): a commitment from an
// attempt that was given up must not take the next grant.
Deno.test("a commitment left over from an abandoned attempt does not take the next grant: it is refused, and the next joiner gets in", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const hostPort = freePort();
    const a = await s.client(port, "A", { listenPort: hostPort });
    const b = await s.login(port, "B");
    const c = await s.client(port, "C");
    await hostAgainDirect(a);
    let am = a.ui.mark;
    // B asks, gets its ticket, and walks away before connecting.
    const ticket = await bareJoin(b);
    await b.channel.send({ t: "ended", peer: "A" });
    await a.ui.waitFor(
      (e) => e.kind === "system" && /still hosting$/.test(e.text),
      am,
    );
    // Its commitment, valid for its grant, arrives after: no grant is
    // pending, so it waits for one.
    const leftOver = await s.raw(hostPort);
    await leftOver.write(rawFrame(await commitFor(ticket)));
    await until(() => a.client.grantWaiters > 0, "the left-over waits");
    am = a.ui.mark;
    const cm = c.ui.mark;
    await c.client.handleLine("!session A");
    const [h, j] = await Promise.all([
      a.ui.waitFor(started, am),
      c.ui.waitFor(started, cm),
    ]);
    assert.ok(h.kind === "session" && j.kind === "session" && h.sas === j.sas);
    assert.equal(h.peer, "C");
    assert.equal(await leftOver.frame(), null, "no PEER_HELLO for it");
    const refusals = a.ui.since(
      (e) => e.kind === "system" && /^Refused /.test(e.text),
      am,
    );
    assert.equal(refusals.length, 1, JSON.stringify(refusals));
    assert.match(
      refusals[0]!.kind === "system" ? refusals[0]!.text : "",
      /: PEER_COMMIT is for another session; still waiting for C$/,
    );
    assert.equal(c.ui.since(isError(), cm).length, 0);
  });
});

Deno.test("a flood of idle strangers on the host's port is capped: the oldest are cut off and the real peer still gets in", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const hostPort = freePort();
    const host = await s.client(port, "A", { listenPort: hostPort });
    const joiner = await s.client(port, "B");
    await host.client.handleLine("!session host");
    await host.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Hosting at")
    );
    const strangers = [];
    for (let i = 0; i < 20; i++) strangers.push(await s.raw(hostPort));
    await sleep(50);
    // The first 12 were cut off to keep at most 8 waiting.
    // Closed at once, not after the 5 s a connection may wait for a grant.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cut = await Promise.race([
      strangers[0]!.frame(),
      new Promise<string>((
        r,
      ) => (timer = setTimeout(() => r("still open"), 1000))),
    ]);
    clearTimeout(timer);
    assert.equal(cut, null, "the oldest stranger is closed at once");
    const mark = host.ui.mark;
    await joiner.client.handleLine("!session A");
    const [h, j] = await Promise.all([
      host.ui.waitFor(started, mark),
      joiner.ui.waitFor(started),
    ]);
    assert.ok(h.kind === "session" && j.kind === "session" && h.sas === j.sas);
    for (const st of strangers) await st.close();
  });
});

Deno.test("strangers who flood the host's port after the real joiner connected, before the host's grant arrived, cannot evict it: the session is direct", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    // The host's grant is held back on its server link, so the joiner
    // arrives first and waits for it.
    const serverLink = s.mitm(port);
    let hold = false;
    let release = () => {};
    const released = new Promise<void>((r) => (release = r));
    s.defer(() => release());
    serverLink.hook = async (f) => {
      if (hold && f.dir === "down") await released;
      return [f.payload];
    };
    const { host, mitm, hostPort } = await hostBehindMitm(
      s,
      serverLink.port,
      "A",
    );
    const joiner = await s.client(port, "B");
    await hostAgain(host, mitm, (f) => [f.payload]);
    hold = true;
    const mark = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    await mitm.waitFrame((f) =>
      f.dir === "up" && f.payload[0] === FrameKind.PEER_COMMIT
    );
    await sleep(20); // the host has read it
    const strangers = [];
    for (let i = 0; i < 20; i++) strangers.push(await s.raw(hostPort));
    await sleep(50);
    release();
    const [h, j] = await Promise.all([
      host.ui.waitFor(started),
      joiner.ui.waitFor(started, mark),
    ]);
    assert.ok(h.kind === "session" && j.kind === "session" && h.sas === j.sas);
    assert.equal(j.transport, "direct", "the joiner was not evicted");
    for (const st of strangers) await st.close();
  });
});

for (
  const [what, cutAt] of [
    ["before its commitment reached the host", isPeerCommit],
  ] as const
) {
  Deno.test(`a direct peer connection cut ${what} falls back to the relay once, and the session starts there`, async () => {
    await withScope(async (s) => {
      const { port } = await s.server();
      const { host, mitm } = await hostBehindMitm(s, port, "A");
      const joiner = await s.client(port, "B");
      await hostAgain(host, mitm, (f) => {
        if (cutAt(f)) {
          mitm.cut(f.conn);
          return [];
        }
        return [f.payload];
      });
      const mark = joiner.ui.mark;
      await joiner.client.handleLine("!session A");
      const [h, j] = await Promise.all([
        host.ui.waitFor(started),
        joiner.ui.waitFor(started, mark),
      ]);
      assert.ok(
        h.kind === "session" && j.kind === "session" && h.sas === j.sas,
      );
      assert.equal(j.transport, "relay");
      assert.equal(
        joiner.ui.since(
          (e) =>
            e.kind === "system" &&
            /^Direct connection to A failed/.test(e.text),
          mark,
        ).length,
        1,
      );
      assert.equal(joiner.ui.since(isError(), mark).length, 0);
      // The session works.
      const hm = host.ui.mark;
      await joiner.client.handleLine("over the relay");
      await host.ui.waitFor(
        (e) => e.kind === "message" && e.text === "over the relay",
        hm,
      );
    });
  });
}

// PROTOCOL.md section 6, one commitment per grant: once the host sent a
// PEER_HELLO, a code could be computed from it; no other connection gets one.
Deno.test("a direct peer connection cut after the host sent its PEER_HELLO spends the grant: the relay retry gets nothing, the host hosts again, and the joiner's next try gets in", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    const { host, mitm } = await hostBehindMitm(s, port, "A");
    const joiner = await s.client(port, "B");
    let cuts = 0;
    await hostAgain(host, mitm, (f) => {
      if (isPeerHello(f) && cuts === 0) {
        cuts++;
        mitm.cut(f.conn);
        return [];
      }
      return [f.payload];
    });
    const hm = host.ui.mark, jm = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    await host.ui.waitFor(
      (e) =>
        e.kind === "system" &&
        /session was cancelled; still hosting$/.test(e.text),
      hm,
    );
    await joiner.ui.waitFor(
      (e) => e.kind === "session" && e.state === "ended",
      jm,
    );
    assert.equal(host.ui.since(started, hm).length, 0);
    assert.equal(joiner.ui.since(started, jm).length, 0);
    // The host is listed HOSTING again (it says "still hosting" once).
    await until(
      () => server.list().find((u) => u.name === "A")?.state === "HOSTING",
      "A HOSTING again",
    );
    const again = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    const [h, j] = await Promise.all([
      host.ui.waitFor(started, hm),
      joiner.ui.waitFor(started, again),
    ]);
    assert.ok(h.kind === "session" && j.kind === "session" && h.sas === j.sas);
  });
});

Deno.test("a peer handshake cut after both sides revealed their values spends the grant: no second try, no relay retry, both IDLE (rule 4.4: one guess per session)", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server();
    const hostPort = freePort();
    const mitm = s.mitm(hostPort);
    mitm.hook = (f) => {
      // Drop the host's FINISHED and cut the link: both have revealed.
      if (f.dir === "down" && f.payload[0] === FrameKind.RECORD) {
        mitm.cut(f.conn);
        return [];
      }
      return [f.payload];
    };
    const host = await s.client(port, "A", {
      listenPort: hostPort,
      advertise: `127.0.0.1:${mitm.port}`,
    });
    const joiner = await s.client(port, "B");
    await host.client.handleLine("!session host");
    await host.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Hosting at")
    );
    await joiner.client.handleLine("!session A");
    await host.ui.waitFor((e) =>
      e.kind === "error" && e.code === "peer-handshake-spent"
    );
    await joiner.ui.waitFor((e) =>
      e.kind === "error" && e.code === "peer-handshake-spent"
    );
    await until(
      () => server.list().every((u) => u.state !== "BUSY"),
      "both users out of BUSY",
    );
    await sleep(300);
    for (const c of [host, joiner]) {
      assert.equal(
        c.ui.since((e) => e.kind === "session" && e.state === "started").length,
        0,
      );
    }
    assert.ok(
      !joiner.ui.events.some((e) =>
        e.kind === "system" && /relay/.test(e.text)
      ),
      "no relay retry",
    );
    assert.equal(mitm.connections, 1, "one direct attempt only");
  });
});

Deno.test("a direct peer connection cut after the joiner revealed its values is not retried over the relay: that attempt's guess is spent (rule 4.4)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, mitm } = await hostBehindMitm(s, port, "A");
    const joiner = await s.client(port, "B");
    await hostAgain(host, mitm, (f) => {
      if (f.dir === "up" && f.payload[0] === FrameKind.PEER_REPLY) {
        mitm.cut(f.conn);
        return [];
      }
      return [f.payload];
    });
    const mark = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    await joiner.ui.waitFor(isError("peer-handshake-spent"), mark);
    await sleep(300);
    assert.equal(joiner.ui.since(started, mark).length, 0);
    assert.equal(
      joiner.ui.since(
        (e) => e.kind === "system" && /relay/.test(e.text),
        mark,
      ).length,
      0,
      "no relay retry",
    );
  });
});
