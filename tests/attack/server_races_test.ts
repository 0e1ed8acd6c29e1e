/**
 * Races and abuse at the server that the review found: a key revoked while
 * its owner logs in, two logins of one user at once, a loop of abandoned
 * logins that only make the server sign, a relay partner that does not
 * read, a `!list` larger than a record, and records lost on the way up.
 * @module
 */

import assert from "node:assert/strict";
import {
  ClientHandshake,
  encodeClientHello,
  ErrorCode,
  type Message,
  SecureChannel,
} from "../../lib/proto/mod.ts";
import { encodeFrame, FrameKind, TcpTransport } from "../../lib/wire/mod.ts";
import { loginToServer } from "../../lib/client/mod.ts";
import { sleep } from "../../lib/util/mod.ts";
import { clientDirectory } from "../_helpers.ts";
import { until, withScope } from "../_fixtures.ts";
import { expectErrorFrame, isMsg, isServerError } from "./_setup.ts";

Deno.test("a key revoked while its owner is logging in is refused at the end of the login, not admitted", async () => {
  await withScope(async (s) => {
    const { server, port, ids, log } = await s.server();
    const t = await TcpTransport.connect("127.0.0.1", port);
    s.defer(() => t.close());
    const hs = new ClientHandshake({
      user: "A",
      identity: ids.A,
      pinnedServer: ids.serverPinned,
    });
    await t.send(await hs.start());
    await t.send(await hs.onServerHello((await t.recv())!));
    await hs.onServerKey((await t.recv())!);
    const finished = await hs.onServerFinished((await t.recv())!);
    // The operator removes A's key before A sends its FINISHED.
    const without = clientDirectory(ids);
    without.delete("A");
    await server.reloadClients(without);
    await t.send(finished);
    const ch = new SecureChannel(t, hs.result.sealer, hs.result.opener, {
      heartbeatMs: 0,
    });
    const seen: Message[] = [];
    // A server that admitted A would keep the link open: give up after 3 s.
    const stop = setTimeout(() => ch.abort("test-timeout"), 3000);
    for await (const ev of ch.events()) {
      if (ev.kind === "message") seen.push(ev.msg);
    }
    clearTimeout(stop);
    assert.deepEqual(seen.map((m) => m.t), ["closing"]);
    assert.equal(seen[0]?.t === "closing" && seen[0].reason, "revoked");
    assert.ok(
      !server.list().some((u) => u.name === "A"),
      "A never appears online",
    );
    assert.ok(log.some((l) => l.event === "revoked" && l.fields.user === "A"));
    assert.ok(!log.some((l) => l.event === "join" && l.fields.user === "A"));
  });
});

Deno.test("two logins of one user at the same moment leave exactly one online, and the other is told it was replaced (rule 2.10)", async () => {
  await withScope(async (s) => {
    const { server, port } = await s.server();
    const [x, y] = await Promise.all([s.login(port, "A"), s.login(port, "A")]);
    const told = () =>
      [x, y].filter((l) => l.tap.events.some(isMsg("closing")));
    await until(() => told().length > 0, "one login to be replaced");
    await sleep(50);
    assert.equal(told().length, 1);
    assert.equal(server.list().filter((u) => u.name === "A").length, 1);
    const survivor = told()[0] === x ? y : x;
    assert.ok(!survivor.channel.closed);
  });
});

Deno.test("logins abandoned after the server signed its hello count as failures: a loop from one address is cut off", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server({ authFailureLimit: 3 });
    const hello = encodeFrame(encodeClientHello({
      version: 1,
      user: "A",
      nonce: new Uint8Array(32),
      ephemeral: crypto.getRandomValues(new Uint8Array(32)),
    }));
    for (let i = 0; i < 3; i++) {
      const r = await s.raw(port);
      await r.write(hello);
      const reply = await r.frame();
      assert.equal(reply?.[0], FrameKind.SERVER_HELLO);
      await r.close();
    }
    await until(() => log.some((l) => l.event === "penalty"), "the penalty");
    const late = await s.raw(port);
    const refused = expectErrorFrame(await late.frame());
    assert.equal(refused.code, ErrorCode.RATE_LIMITED);
  });
});

Deno.test("a relay to a partner who does not read is refused with relay-busy; the partner stays online", async () => {
  await withScope(async (s) => {
    const { server, port } = await s.server();
    const a = await s.login(port, "A");
    // B logs in and then never reads its socket.
    const b = await loginToServer(await s.clientOptions(port, "B"));
    s.defer(() => b.channel.abort("test-end"));
    await a.channel.send({ t: "host", addr: "127.0.0.1:1" });
    await a.tap.waitFor(isMsg("hosting"));
    await b.channel.send({ t: "session", peer: "A" });
    await a.tap.waitFor(isMsg("grant"));
    const data = "A".repeat(40_000);
    let sent = 0;
    while (!a.tap.events.some(isServerError("relay-busy")) && sent < 2000) {
      await a.channel.send({ t: "relay", peer: "B", data });
      sent++;
      if (sent % 20 === 0) await sleep(1);
    }
    await a.tap.waitFor(isServerError("relay-busy"));
    assert.ok(server.list().some((u) => u.name === "B"), "B is still online");
    assert.equal(b.channel.closed, false);
  });
});

Deno.test("!list is capped to fit one record and says how many more are online", async () => {
  await withScope(async (s) => {
    const { port, server } = await s.server({ listMax: 2 });
    const a = await s.login(port, "A");
    await s.login(port, "B");
    await s.login(port, "C");
    // The server joins a user once it has read its FINISHED, a moment after
    // the client's login returns.
    await until(() => server.list().length === 3, "three users online");
    await a.channel.send({ t: "list" });
    const ev = await a.tap.waitFor(isMsg("users"));
    assert.ok(ev.kind === "message" && ev.msg.t === "users");
    assert.deepEqual(ev.msg.users.map((u) => u.name), ["A", "B"]);
    assert.equal(ev.msg.more, 1);
  });
});

Deno.test("records a client sent that never reached the server are reported back to it as lost (rule 3.5)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const mitm = s.mitm(port);
    let dropped = 0;
    mitm.hook = (f) => {
      // Drop the first two application records after the login's FINISHED.
      if (
        f.dir === "up" && f.payload[0] === FrameKind.RECORD && f.index >= 4 &&
        dropped < 2
      ) {
        dropped++;
        return [];
      }
      return [f.payload];
    };
    const a = await s.login(mitm.port, "A");
    await a.channel.send({ t: "list" });
    await a.channel.send({ t: "list" });
    await a.channel.send({ t: "list" });
    const lost = await a.tap.waitFor(isServerError("lost"));
    assert.ok(
      lost.kind === "message" && lost.msg.t === "error" &&
        /2 of your messages/.test(lost.msg.message),
    );
  });
});
