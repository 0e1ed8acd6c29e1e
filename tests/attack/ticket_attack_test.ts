/**
 * Attacks on peer tickets and the peer handshake (requirements 4.2-4.4)
 * through real sockets: a man in the middle in front of the host's port
 * replays a recorded ticket, delays one past its expiry, hands one to a
 * third user, alters one, or presents another host's ticket; a stranger
 * connects to the host's port before the real peer.
 */

import assert from "node:assert/strict";
import { FrameKind } from "../../lib/frame.ts";
import {
  decodePeerHello,
  encodePeerHello,
  encodePeerReply,
} from "../../lib/peer_handshake.ts";
import { openTicket } from "../../lib/ticket.ts";
import { randomBytes } from "../../lib/bytes.ts";
import { TicketError } from "../../lib/errors.ts";
import type { UiEvent } from "../../lib/ui.ts";
import { assertThrowsIm, flipBit } from "../_helpers.ts";
import { type FrameMitm, type MitmFrame, rawFrame } from "./_mitm.ts";
import {
  freePort,
  isError,
  peerPair,
  type Scope,
  sleep,
  type TestClient,
  withScope,
} from "./_setup.ts";

const isPeerHello = (f: MitmFrame) =>
  f.dir === "down" && f.payload[0] === FrameKind.PEER_HELLO;
const started = (e: UiEvent) => e.kind === "session" && e.state === "started";
const ended = (e: UiEvent) => e.kind === "session" && e.state === "ended";

/** End the session from the joiner's side and wait until both sides saw it end. */
async function endSession(host: TestClient, joiner: TestClient): Promise<void> {
  const hm = host.ui.mark, jm = joiner.ui.mark;
  await joiner.client.handleLine("!disconnect");
  await Promise.all([host.ui.waitFor(ended, hm), joiner.ui.waitFor(ended, jm)]);
}

/** The host hosts again (behind its MITM), with `hook` on the MITM. */
async function hostAgain(
  host: TestClient,
  mitm: FrameMitm,
  hook: FrameMitm["hook"],
) {
  mitm.hook = hook;
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

Deno.test("a ticket replayed to its joiner in a later session is refused as replayed, and no session starts", async () => {
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
      err.kind === "error" && err.code === "replayed",
      JSON.stringify(err),
    );
    assert.match(err.text, /already used/);
    assert.equal(joiner.ui.since(started, mark).length, 0);
  });
});

Deno.test("a ticket that arrives after its expiry is refused as expired", async () => {
  await withScope(async (s) => {
    const { port } = await s.server({ ticketLifetimeMs: 400 });
    const { host, mitm } = await hostBehindMitm(s, port, "A");
    const joiner = await s.client(port, "B");
    await hostAgain(host, mitm, async (f) => {
      if (isPeerHello(f)) await sleep(700);
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

Deno.test("a ticket presented to a third user cannot be opened by it (bad-ticket)", async () => {
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
      err.kind === "error" && err.code === "bad-ticket",
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
  Deno.test(`a ticket with one bit flipped in ${what} is refused (bad-ticket)`, async () => {
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
        err.kind === "error" && err.code === "bad-ticket",
        JSON.stringify(err),
      );
      assert.equal(joiner.ui.since(started, mark).length, 0);
    });
  });
}

Deno.test("a genuine ticket naming another host is refused as misbound when presented for this host", async () => {
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
      err.kind === "error" && err.code === "misbound",
      JSON.stringify(err),
    );
    assert.match(err.text, /C -> B, expected A -> B/);
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

Deno.test("strangers who connect to the host's port first get nothing usable and are dropped; the real peer still gets in before the expiry", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const hostPort = freePort();
    const host = await s.client(port, "A", { listenPort: hostPort });
    const joiner = await s.client(port, "B");
    const c = await s.login(port, "C"); // a logged-in user with ticket keys of its own
    await host.client.handleLine("!session host");
    await host.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Hosting at")
    );
    const forger = await s.raw(hostPort);
    const silent = await s.raw(hostPort);
    await sleep(20); // both are accepted and waiting for the grant
    const mark = host.ui.mark;
    await joiner.client.handleLine("!session A");
    // The forger gets the PEER_HELLO: a ticket it cannot open.
    const hello = decodePeerHello((await forger.frame())!);
    assertThrowsIm(
      () =>
        openTicket(c.login.ticketKeys, hello.ticket, {
          self: "C",
          expectedHost: "A",
        }),
      TicketError,
      "bad-ticket",
    );
    // Without the ticket it cannot make the joiner's MAC: the host drops it.
    await forger.write(
      rawFrame(
        encodePeerReply({
          nonce: randomBytes(32),
          ephemeral: randomBytes(32),
          mac: randomBytes(32),
        }),
      ),
    );
    assert.equal(
      await forger.frame(),
      null,
      "the forger is cut off with nothing more",
    );
    const refused = await host.ui.waitFor(
      (e) => e.kind === "system" && e.text.startsWith("Refused a connection"),
      mark,
    );
    assert.ok(
      refused.kind === "system" && /still waiting for B/.test(refused.text),
    );
    // The real peer gets in; both show the same SAS.
    const [h, j] = await Promise.all([
      host.ui.waitFor(started, mark),
      joiner.ui.waitFor(started),
    ]);
    assert.ok(
      h.kind === "session" && j.kind === "session" && h.sas && h.sas === j.sas,
    );
    await silent.close();
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
