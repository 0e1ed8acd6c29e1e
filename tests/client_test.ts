/**
 * The chat client's bookkeeping with the server (lib/client.ts), in process
 * with the fixtures of the attack suite: a host that stops hosting releases
 * its grant; an abandoned join tells the server nothing; a peer whose
 * partner lost its server link says it is still busy; reconnects survive
 * forged refusals; the login has one deadline; long lists say what they
 * left out; a probe of the host's port leaves nothing behind.
 */

import assert from "node:assert/strict";
import { NetError, ProtocolError, sleep } from "../lib/util/mod.ts";
import { FrameKind } from "../lib/wire/mod.ts";
import {
  encodeErrorFrame,
  encodePeerCommit,
  ErrorCode,
} from "../lib/proto/mod.ts";
import { ChatClient, loginToServer, type UiEvent } from "../lib/client/mod.ts";
import { rawFrame } from "./_fixtures_mitm.ts";
import {
  ended,
  isError,
  type Scope,
  started,
  type TestClient,
  until,
  withScope,
} from "./_fixtures.ts";
import {
  assertRejectsIm,
  clientDirectory,
  freePort,
  identities,
} from "./_helpers.ts";

const system = (re: RegExp) => (e: UiEvent) =>
  e.kind === "system" && re.test(e.text);

/** Send `!list` until the answer satisfies `pred`; fail after `ms`. */
async function listUntil(
  c: TestClient,
  pred: (users: Record<string, string>) => boolean,
  ms = 2000,
): Promise<Record<string, string>> {
  const deadline = Date.now() + ms;
  let last: Record<string, string> = {};
  while (Date.now() < deadline) {
    const mark = c.ui.mark;
    await c.client.handleLine("!list");
    const ev = await c.ui.waitFor((e) => e.kind === "list", mark);
    if (ev.kind === "list") {
      last = Object.fromEntries(ev.users.map((u) => [u.name, u.state]));
    }
    if (pred(last)) return last;
    await sleep(20);
  }
  assert.fail(`!list never matched; last ${JSON.stringify(last)}`);
}

/** A client of A that hosts on a port behind a MITM (for holding frames). */
async function hostingA(s: Scope, port: number, serverPort = port) {
  const hostPort = freePort();
  const peerLink = s.mitm(hostPort);
  const host = await s.client(serverPort, "A", {
    listenPort: hostPort,
    advertise: `127.0.0.1:${peerLink.port}`,
  });
  await host.client.handleLine("!session host");
  await host.ui.waitFor(system(/^Hosting at/));
  return { host, peerLink, hostPort };
}

/** A promise and the function that resolves it. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open = () => {};
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

Deno.test("a host that types !disconnect while a grant is pending cancels it: both users are IDLE at once and the host can host again", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, peerLink } = await hostingA(s, port);
    const joiner = await s.client(port, "B");
    const observer = await s.client(port, "C");
    // The joiner's connection waits at the MITM: it never gets to A.
    const held = gate();
    s.defer(held.open);
    peerLink.hook = async (f) => {
      if (f.dir === "up") await held.opened;
      return [f.payload];
    };
    const jm = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    await host.ui.waitFor(system(/asked for a session/));
    await host.client.handleLine("!disconnect");
    // Well before the 30 s ticket expiry.
    await listUntil(observer, (u) => u.A === "IDLE" && u.B === "IDLE");
    const end = await joiner.ui.waitFor(ended, jm);
    assert.ok(
      end.kind === "session" && /gave up waiting/.test(end.reason ?? ""),
    );
    assert.equal(joiner.client.mode, "idle");
    const hm = host.ui.mark;
    await host.client.handleLine("!session host");
    await host.ui.waitFor(system(/^Hosting at/), hm);
    assert.equal(host.ui.since(isError(), hm).length, 0);
  });
});

Deno.test("a grant that reaches a client that has stopped hosting is cancelled at once: both users are IDLE again", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const serverLink = s.mitm(port);
    let hold = false;
    const held = gate();
    s.defer(held.open);
    serverLink.hook = async (f) => {
      if (hold && f.dir === "down") await held.opened;
      return [f.payload];
    };
    const { host } = await hostingA(s, port, serverLink.port);
    const joiner = await s.client(port, "B");
    const observer = await s.client(port, "C");
    hold = true; // the grant will be late
    const jm = joiner.ui.mark;
    await joiner.client.handleLine("!session A");
    await joiner.ui.waitFor(
      (e) => e.kind === "session" && e.state === "waiting",
      jm,
    );
    await host.client.handleLine("!disconnect");
    held.open();
    await listUntil(observer, (u) => u.A === "IDLE" && u.B === "IDLE");
    assert.equal(host.client.mode, "idle");
    assert.equal(
      host.ui.since(system(/asked for a session/)).length,
      0,
      "the late grant is not offered to the user",
    );
    await joiner.ui.waitFor(ended, jm);
  });
});

for (const via of ["direct", "relay"] as const) {
  Deno.test(`a ${via} join abandoned with !disconnect tells the server nothing when it fails later, and leaves the next session alone`, async () => {
    await withScope(async (s) => {
      const { port, log } = await s.server();
      const held = gate();
      s.defer(held.open);
      // A never answers B's first attempt: over the relay its server link
      // holds everything back; directly, the connection waits at the MITM
      // and is then cut.
      const serverLink = s.mitm(port);
      let hold = false;
      serverLink.hook = async (f) => {
        if (hold && f.dir === "down") await held.opened;
        return [f.payload];
      };
      const { peerLink } = await hostingA(s, port, serverLink.port);
      peerLink.hook = async (f) => {
        if (f.dir === "up" && f.payload[0] === FrameKind.PEER_COMMIT) {
          await held.opened;
          peerLink.cut(f.conn);
          return [];
        }
        return [f.payload];
      };
      const joiner = await s.client(port, "B", { relay: via === "relay" });
      const other = await s.client(port, "C");
      await other.client.handleLine("!session host");
      await other.ui.waitFor(system(/^Hosting at/));
      hold = via === "relay";
      let mark = joiner.ui.mark;
      await joiner.client.handleLine("!session A");
      await joiner.ui.waitFor(
        (e) => e.kind === "session" && e.state === "waiting",
        mark,
      );
      if (via === "direct") {
        await peerLink.waitFrame((f) =>
          f.dir === "up" && f.payload[0] === FrameKind.PEER_COMMIT
        );
      } else {
        await sleep(50); // B's PEER_COMMIT is on its way through the server
      }
      await joiner.client.handleLine("!disconnect");
      await joiner.ui.waitFor(system(/^Stopped joining A/), mark);
      mark = joiner.ui.mark;
      await joiner.client.handleLine("!session C");
      await joiner.ui.waitFor(started, mark);
      held.open(); // whatever is left of the abandoned attempt ends now
      await sleep(300);
      const endedBA = log.filter((l) =>
        l.event === "session-ended" && l.fields.user === "B" &&
        l.fields.peer === "A"
      );
      assert.equal(endedBA.length, 1, "only the !disconnect said ended");
      assert.equal(
        joiner.ui.since(isError(), mark).length,
        0,
        JSON.stringify(joiner.ui.since(isError(), mark)),
      );
      assert.equal(joiner.client.mode, "session");
      await listUntil(other, (u) => u.B === "BUSY" && u.C === "BUSY");
    });
  });
}

Deno.test("when the partner of a direct session loses its server connection, the other side tells the server it is still BUSY", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const serverLink = s.mitm(port);
    const { host } = await hostingA(s, port, serverLink.port);
    const joiner = await s.client(port, "B");
    const observer = await s.client(port, "C");
    await joiner.client.handleLine("!session A");
    await Promise.all([host.ui.waitFor(started), joiner.ui.waitFor(started)]);
    await listUntil(observer, (u) => u.A === "BUSY" && u.B === "BUSY");
    serverLink.cut(0); // only A's server link goes
    await listUntil(observer, (u) => !("A" in u) && u.B === "BUSY");
    // The direct session itself goes on.
    assert.equal(joiner.client.mode, "session");
    const mark = host.ui.mark;
    await joiner.client.handleLine("still there?");
    await host.ui.waitFor(
      (e) => e.kind === "message" && e.text === "still there?",
      mark,
    );
  });
});

Deno.test("a reconnect refused by forged login-failed ERROR frames is retried quietly until the real server answers: one line when lost, one when back, the last failure told only to a command that needs the server (issue 11 item 9)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    // A forger that answers every login with a cleartext "login failed".
    const forger = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let forged = 0;
    const forgerTask = (async () => {
      for await (const conn of forger) {
        forged++;
        await conn.write(
          rawFrame(encodeErrorFrame({
            code: ErrorCode.AUTH_FAILED,
            message: "login failed",
          })),
        ).catch(() => {});
        conn.close();
      }
    })();
    s.defer(async () => {
      forger.close();
      await forgerTask;
    });
    let target = port;
    const link = s.mitm(0, {
      target: () => ({ hostname: "127.0.0.1", port: target }),
    });
    const a = await s.client(link.port, "A", {
      reconnect: true,
      reconnectBaseMs: 20,
      reconnectMaxMs: 40,
    });
    await a.ui.waitFor(system(/^Logged in as A/));
    const mark = a.ui.mark;
    target = (forger.addr as Deno.NetAddr).port;
    link.cut(link.connections - 1);
    await until(() => forged >= 3, "3 refused attempts");
    // One line for the drop; nothing for the attempts.
    const lost = a.ui.events.slice(mark);
    assert.equal(lost.length, 1, JSON.stringify(lost));
    assert.ok(
      lost[0]!.kind === "error" && lost[0]!.code === "server-gone" &&
        /reconnecting$/.test(lost[0]!.text),
      JSON.stringify(lost[0]),
    );
    assert.equal(a.client.fatal, undefined, "not given up");
    // A command that needs the server says why the last try failed.
    const asked = a.ui.mark;
    await a.client.handleLine("!list");
    const offline = await a.ui.waitFor(isError("offline"), asked);
    assert.ok(
      offline.kind === "error" &&
        /^Not connected to the server; reconnecting \(last try: .*refused the login/
          .test(offline.text) &&
        !offline.text.includes("\n"),
      JSON.stringify(offline),
    );
    target = port;
    const back = await a.ui.waitFor(system(/^Reconnected to the server/), mark);
    assert.ok(back.kind === "system");
    assert.deepEqual(
      a.ui.events.slice(mark).map((e) =>
        e.kind === "error" ? `error ${e.code}` : e.kind
      ),
      ["error server-gone", "error offline", "system"],
    );
    const mark2 = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor((e) => e.kind === "list", mark2);
  });
});

Deno.test("a reconnect that meets a server with another key stops the client with both fingerprints (rule 2.2), and never logs in there", async () => {
  await withScope(async (s) => {
    const { port, ids } = await s.server();
    const impostor = await s.server({ identity: ids.otherServer });
    let target = port;
    const link = s.mitm(0, {
      target: () => ({ hostname: "127.0.0.1", port: target }),
    });
    const a = await s.client(link.port, "A", {
      reconnect: true,
      reconnectBaseMs: 20,
      reconnectMaxMs: 40,
    });
    let fatal: string | undefined;
    a.client.onFatal = (e) => (fatal = e.code);
    await a.ui.waitFor(system(/^Logged in as A/));
    target = impostor.port;
    link.cut(link.connections - 1);
    await until(() => fatal !== undefined, "the client to stop");
    assert.equal(fatal, "server-key-mismatch");
    const e = a.client.fatal!;
    assert.match(
      e.message,
      new RegExp(ids.otherServer.fingerprint.replace(/[+/]/g, "\\$&")),
    );
    assert.match(
      e.message,
      new RegExp(ids.serverPinned.fingerprint.replace(/[+/]/g, "\\$&")),
    );
    assert.ok(
      !impostor.log.some((l) => l.event === "join"),
      "no login at the impostor",
    );
  });
});

Deno.test("loginToServer() reports login-timeout, not a closed connection, when the server accepts and says nothing", async () => {
  await withScope(async (s) => {
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conns: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const c of silent) conns.push(c);
    })();
    s.defer(async () => {
      silent.close();
      for (const c of conns) c.close();
      await accepting;
    });
    const silentPort = (silent.addr as Deno.NetAddr).port;
    const o = await s.clientOptions(silentPort, "A", { loginTimeoutMs: 300 });
    const e = await assertRejectsIm(
      () => loginToServer(o),
      NetError,
      "login-timeout",
    );
    assert.equal(
      e.message,
      `Server at 127.0.0.1:${silentPort} did not answer within 0.3 s`,
    );
  });
});

Deno.test("loginToServer() gives up a TCP connect that hangs at the login deadline, with login-timeout", async () => {
  await withScope(async (s) => {
    const o = await s.clientOptions(9, "A", { loginTimeoutMs: 200 });
    const real = Deno.connect;
    // A black-holed address: the connect never completes.
    (Deno as { connect: unknown }).connect = () => new Promise(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const e = await Promise.race([
        assertRejectsIm(() => loginToServer(o), NetError, "login-timeout"),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("still hanging")), 3000);
        }),
      ]);
      assert.match(
        e.message,
        /^Server at 127\.0\.0\.1:9 did not answer within 0\.2 s$/,
      );
    } finally {
      clearTimeout(timer);
      (Deno as { connect: unknown }).connect = real;
    }
  });
});

Deno.test("a connection to the host's port that commits but gets no grant leaves no waiter behind", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const hostPort = freePort();
    const host = await s.client(port, "A", {
      listenPort: hostPort,
      grantWaitMs: 300,
    });
    await host.client.handleLine("!session host");
    await host.ui.waitFor(system(/^Hosting at/));
    const probes = [];
    for (let i = 0; i < 5; i++) {
      const p = await s.raw(hostPort);
      await p.write(rawFrame(encodePeerCommit({
        ticketId: new Uint8Array(16),
        commit: new Uint8Array(32),
        mac: new Uint8Array(32),
      })));
      probes.push(p);
    }
    await until(() => host.client.grantWaiters > 0, "waiters");
    for (const p of probes) assert.equal(await p.frame(), null, "closed");
    assert.equal(host.client.grantWaiters, 0);
  });
});

Deno.test("a !list cut by the server at its limit says how many more users are online", async () => {
  await withScope(async (s) => {
    const { port } = await s.server({ listMax: 2 });
    const a = await s.client(port, "A");
    await s.client(port, "B");
    await s.client(port, "C");
    const mark = a.ui.mark;
    await a.client.handleLine("!list");
    const list = await a.ui.waitFor((e) => e.kind === "list", mark);
    assert.ok(list.kind === "list" && list.users.length === 2);
    const more = await a.ui.waitFor(system(/more online/), mark);
    assert.ok(more.kind === "system");
    assert.equal(
      more.text,
      "... and 1 more online (!list + for more, !list <start of a name> for some)",
    );
    assert.ok(a.ui.events.indexOf(more) > a.ui.events.indexOf(list));
  });
});

// PROTOCOL.md 5.3: `!list +` shows the page after the last one shown,
// `!list <start>` only names starting with it, each page in name order.
Deno.test("!list pages: !list + continues after the last name shown until nothing is left; !list <start> only those names", async () => {
  await withScope(async (s) => {
    const ids = await identities();
    const { port } = await s.server({
      listMax: 2,
      clients: clientDirectory(ids, { b1: ids.stranger, b2: ids.stranger }),
    });
    const a = await s.client(port, "A");
    for (const n of ["B", "b1", "b2", "C"]) await s.client(port, n);
    const page = async (line: string) => {
      const mark = a.ui.mark;
      await a.client.handleLine(line);
      const ev = await a.ui.waitFor((e) => e.kind === "list", mark);
      assert.ok(ev.kind === "list");
      // The line after a page is shown in the same step as the page.
      const more = a.ui.events.slice(mark).find((e) =>
        e.kind === "system" && /more online/.test(e.text)
      );
      return {
        names: ev.users.map((u) => u.name),
        prefix: ev.prefix,
        more: more?.kind === "system" ? more.text : undefined,
      };
    };
    const everyone = ["A", "B", "b1", "b2", "C"].sort((x, y) =>
      x.localeCompare(y)
    );
    const seen: string[] = [];
    let p = await page("!list");
    seen.push(...p.names);
    assert.match(p.more ?? "", /^\.\.\. and 3 more online/);
    p = await page("!list +");
    seen.push(...p.names);
    assert.match(p.more ?? "", /^\.\.\. and 1 more online/);
    p = await page("!list +");
    seen.push(...p.names);
    assert.equal(p.more, undefined, "the last page says nothing more");
    assert.deepEqual(seen, everyone);
    const mark = a.ui.mark;
    await a.client.handleLine("!list +");
    await a.ui.waitFor(
      system(/^Nothing more to list: !list starts again$/),
      mark,
    );
    p = await page("!list b");
    assert.deepEqual(p.names, ["b1", "b2"]);
    assert.equal(p.prefix, "b");
    assert.equal(p.more, undefined);
    p = await page("!list z");
    assert.deepEqual(p.names, []);
  });
});

Deno.test("Tab completion's names are refreshed quietly: a user who logs in later is offered without !list, and nothing is printed", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const a = await s.client(port, "A", { namesRefreshMs: 100 });
    await s.client(port, "B");
    await until(() => a.client.names.includes("B"), "B among A's names");
    assert.equal(a.ui.events.filter((e) => e.kind === "list").length, 0);
    // A list the user asks for is still shown.
    await a.client.handleLine("!list");
    await a.ui.waitFor((e) => e.kind === "list");
  });
});

Deno.test("a login the server closes at once (server full) fails ChatClient.start() with that reason instead of starting a dead client", async () => {
  await withScope(async (s) => {
    const { port } = await s.server({ maxClients: 1 });
    await s.client(port, "A");
    const o = await s.clientOptions(port, "B", { loginTimeoutMs: 1000 });
    const e = await assertRejectsIm(
      () => ChatClient.start(o),
      ProtocolError,
      "full",
    );
    assert.match(e.message, /full/);
  });
});

for (const relay of [false, true]) {
  Deno.test(
    `a login replaced during a ${
      relay ? "relayed" : "direct"
    } session says so on both sides (issue 11 item 7): the old client's session ends 'replaced by a newer login of A' before it stops, and the peer is told why`,
    async () => {
      await withScope(async (s) => {
        const { port } = await s.server();
        const a1 = await s.client(port, "A", { relay });
        const b = await s.client(port, "B", { relay });
        await a1.client.handleLine("!session host");
        await a1.ui.waitFor(system(/^Hosting/));
        await b.client.handleLine("!session A");
        await Promise.all([a1.ui.waitFor(started), b.ui.waitFor(started)]);
        let shownAtFatal = -1;
        a1.client.onFatal = () => (shownAtFatal = a1.ui.events.length);
        const am = a1.ui.mark, bm = b.ui.mark;
        await s.client(port, "A"); // the newer login
        const replaced = await a1.ui.waitFor(isError("replaced"), am);
        assert.match(
          replaced.kind === "error" ? replaced.text : "",
          /another place/,
        );
        const endA = await a1.ui.waitFor(ended, am);
        assert.ok(endA.kind === "session");
        assert.equal(endA.reason, "replaced by a newer login of A");
        assert.ok(!/you ended/.test(endA.reason ?? ""));
        await until(() => shownAtFatal >= 0, "onFatal");
        assert.ok(
          a1.ui.events.indexOf(endA) < shownAtFatal,
          "the end is shown before the program is told to stop",
        );
        assert.equal(a1.client.fatal?.code, "replaced");
        const endB = await b.ui.waitFor(ended, bm);
        assert.ok(endB.kind === "session");
        assert.equal(
          endB.reason,
          relay
            ? "A logged in again from another place" // the server's words
            : "replaced by a newer login of A", // A's CLOSE record
        );
        assert.ok(!/left \(quit\)/.test(endB.reason ?? ""));
        assert.equal(b.client.mode, "idle");
      });
    },
  );
}

Deno.test("a key revoked during a direct session: the revoked client's session ends 'your key was revoked ...', and the peer is told whose key it was", async () => {
  await withScope(async (s) => {
    const { server, port, ids } = await s.server();
    const a = await s.client(port, "A");
    const b = await s.client(port, "B");
    await a.client.handleLine("!session host");
    await a.ui.waitFor(system(/^Hosting/));
    await b.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
    const am = a.ui.mark, bm = b.ui.mark;
    const directory = clientDirectory(ids);
    directory.delete("B");
    await server.reloadClients(directory);
    const endB = await b.ui.waitFor(ended, bm);
    assert.ok(endB.kind === "session");
    assert.equal(endB.reason, "your key was revoked by the server operator");
    const endA = await a.ui.waitFor(ended, am);
    assert.ok(endA.kind === "session");
    assert.equal(
      endA.reason,
      "the key of B was revoked by the server operator",
    );
  });
});

for (const relay of [false, true]) {
  Deno.test(
    `a host keeps hosting after each session (issue 11 item 5, ${
      relay ? "relayed" : "direct"
    }): B joins and leaves, then C joins without A typing anything; !disconnect in a session returns to hosting, and !disconnect while hosting stops it`,
    async () => {
      await withScope(async (s) => {
        const { port } = await s.server();
        const a = await s.client(port, "A", { relay });
        const b = await s.client(port, "B");
        const c = await s.client(port, "C");
        await a.client.handleLine("!session host");
        const hostingLine = await a.ui.waitFor(system(/^Hosting/));
        assert.ok(hostingLine.kind === "system");
        if (relay) {
          // Not "Hosting at relay:0" (issue 11 item 10).
          assert.equal(
            hostingLine.text,
            "Hosting through the server relay; others can now type !session A",
          );
        }
        const still = relay
          ? /^Still hosting through the server relay; others can type !session A \(!disconnect stops hosting\)$/
          : /^Still hosting at 127\.0\.0\.1:\d+; others can type !session A/;

        // B joins, and B ends the session.
        let am = a.ui.mark;
        await b.client.handleLine("!session A");
        await Promise.all([a.ui.waitFor(started, am), b.ui.waitFor(started)]);
        await b.client.handleLine("!disconnect");
        await a.ui.waitFor(ended, am);
        await a.ui.waitFor(system(still), am);
        assert.equal(a.client.mode, "hosting");
        assert.equal(b.client.mode, "idle");
        await listUntil(c, (u) => u.A === "HOSTING" && u.B === "IDLE");

        // C joins with nothing typed at A; this time A ends the session.
        am = a.ui.mark;
        const cm = c.ui.mark;
        await c.client.handleLine("!session A");
        const [startA] = await Promise.all([
          a.ui.waitFor(started, am),
          c.ui.waitFor(started, cm),
        ]);
        assert.ok(startA.kind === "session" && startA.peer === "C");
        await a.client.handleLine("!disconnect");
        await c.ui.waitFor(ended, cm);
        await a.ui.waitFor(system(still), am);
        assert.equal(a.client.mode, "hosting");
        await listUntil(b, (u) => u.A === "HOSTING" && u.C === "IDLE");
        assert.equal(a.ui.since(isError(), am).length, 0);

        // !disconnect while hosting with no session stops hosting.
        am = a.ui.mark;
        await a.client.handleLine("!disconnect");
        await a.ui.waitFor(system(/^Stopped hosting$/), am);
        assert.equal(a.client.mode, "idle");
        await listUntil(b, (u) => u.A === "IDLE");
        const bm = b.ui.mark;
        await b.client.handleLine("!session A");
        await b.ui.waitFor(isError("refused-not-hosting"), bm);
      });
    },
  );
}

Deno.test("a host that asks for a session of its own after a hosted session stops hosting (issue 11 item 5)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const a = await s.client(port, "A");
    const b = await s.client(port, "B");
    const c = await s.client(port, "C");
    await c.client.handleLine("!session host");
    await c.ui.waitFor(system(/^Hosting/));
    await a.client.handleLine("!session host");
    await a.ui.waitFor(system(/^Hosting/));
    await b.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
    const am = a.ui.mark;
    await b.client.handleLine("!disconnect");
    await a.ui.waitFor(system(/^Still hosting/), am);
    await a.client.handleLine("!session C");
    await a.ui.waitFor(started, am);
    assert.equal(a.client.mode, "session");
    // The session A joined ends: A is IDLE, not hosting.
    await a.client.handleLine("!disconnect");
    await a.ui.waitFor(ended, am);
    await listUntil(b, (u) => u.A === "IDLE");
    assert.equal(a.client.mode, "idle");
  });
});

Deno.test("a line with blanks before its ! is a message, sent as typed, not a command (issue 11 item 10)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const a = await s.client(port, "A");
    const b = await s.client(port, "B");
    await a.client.handleLine("!session host");
    await a.ui.waitFor(system(/^Hosting/));
    await b.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started), b.ui.waitFor(started)]);
    const am = a.ui.mark, bm = b.ui.mark;
    await b.client.handleLine("   !list");
    const got = await a.ui.waitFor((e) => e.kind === "message", am);
    assert.ok(got.kind === "message" && got.text === "   !list");
    assert.equal(b.ui.since((e) => e.kind === "list", bm).length, 0);
  });
});

Deno.test("a host whose server link drops hosts again once it is back, and says so; a joiner then gets in (issue 11 item 5)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const link = s.mitm(port);
    const a = await s.client(link.port, "A", {
      reconnect: true,
      reconnectBaseMs: 20,
      reconnectMaxMs: 40,
    });
    const b = await s.client(port, "B");
    await a.client.handleLine("!session host");
    await a.ui.waitFor(system(/^Hosting at/));
    const am = a.ui.mark;
    link.cut(link.connections - 1);
    await a.ui.waitFor(system(/^Reconnected to the server/), am);
    await a.ui.waitFor(system(/^Still hosting at/), am);
    assert.equal(a.client.mode, "hosting");
    await listUntil(b, (u) => u.A === "HOSTING");
    const bm = b.ui.mark;
    await b.client.handleLine("!session A");
    await Promise.all([a.ui.waitFor(started, am), b.ui.waitFor(started, bm)]);
  });
});
