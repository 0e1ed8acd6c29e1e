/**
 * Key continuity (PROTOCOL.md section 6; issue 16 item 5), with real
 * clients and a real server in this process: the first session pins each
 * partner's key, later sessions with the same keys say nothing new, a
 * server that names another key for a pinned partner is refused before
 * any chat with both fingerprints, and removing the pin lets the new key
 * be pinned. The handshake's own checks (a FINISHED not signed by the
 * named key) are in `peer_handshake_test.ts`.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import type {
  ClientContext,
  ClientOptions,
  NewEvent,
  UiEvent,
} from "../lib/client/mod.ts";
import { Joining } from "../lib/client/joining.ts";
import { MemoryPeerPins } from "../lib/client/pinning.ts";
import type { ServerConnection } from "../lib/client/server_link.ts";
import { pemEncode, type PrivateIdentity } from "../lib/crypto/mod.ts";
import { peerPinStore } from "../lib/keystore/mod.ts";
import {
  type PeerPins,
  sealTicket,
  type ServerToClient,
  TicketReplayCache,
} from "../lib/proto/mod.ts";
import { randomBytes } from "../lib/util/mod.ts";
import type { Network } from "../lib/wire/mod.ts";
import {
  ended,
  isError,
  type Scope,
  started,
  type TestClient,
  withScope,
} from "./_fixtures.ts";
import { clientDirectory, identities } from "./_helpers.ts";

const posix = Deno.build.os !== "windows";

const system = (re: RegExp) => (e: UiEvent) =>
  e.kind === "system" && re.test(e.text);
const firstSession = system(/^First session with /);

/** A key directory for the pins of this test, removed with the scope. */
async function keyDir(s: Scope): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "im-pins-" });
  s.defer(() => Deno.remove(dir, { recursive: true }));
  return dir;
}

/** `user` logged in, pinning in `dir` (or in memory). */
function client(
  s: Scope,
  port: number,
  user: string,
  o: { dir?: string; identity?: PrivateIdentity; pins?: PeerPins } = {},
): Promise<TestClient> {
  const over: Partial<ClientOptions> = {};
  if (o.dir !== undefined) over.peerPins = peerPinStore(o.dir, user);
  if (o.pins) over.peerPins = o.pins;
  if (o.identity) over.identity = o.identity;
  return s.client(port, user, over);
}

async function host(a: TestClient): Promise<void> {
  const m = a.ui.mark;
  await a.client.handleLine("!session host");
  await a.ui.waitFor(system(/^Hosting/), m);
}

/** `b` joins the hosting `a`; both see the session start. */
async function session(a: TestClient, b: TestClient): Promise<void> {
  const am = a.ui.mark, bm = b.ui.mark;
  await b.client.handleLine(`!session ${a.user}`);
  await Promise.all([a.ui.waitFor(started, am), b.ui.waitFor(started, bm)]);
}

/** `b` leaves its session with `a`; `a` hosts on. */
async function leave(a: TestClient, b: TestClient): Promise<void> {
  const am = a.ui.mark, bm = b.ui.mark;
  await b.client.handleLine("!disconnect");
  await Promise.all([a.ui.waitFor(ended, am), b.ui.waitFor(ended, bm)]);
  await a.ui.waitFor(system(/still hosting|^Hosting/i), am);
}

async function fileMode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

Deno.test("the first session pins both sides' keys (users/<me>/peers/<peer>.pem, 0600 in a 0700 folder, the key the server named) and says so once on each side; a second session with the same keys says nothing new and rewrites nothing", async () => {
  await withScope(async (s) => {
    const ids = await identities();
    const dir = await keyDir(s);
    const { port } = await s.server();
    const a = await client(s, port, "A", { dir });
    const b = await client(s, port, "B", { dir });
    await host(a);
    await session(a, b);
    const aSaw = a.ui.since(firstSession);
    const bSaw = b.ui.since(firstSession);
    assert.equal(aSaw.length, 1, "A says it once");
    assert.equal(bSaw.length, 1, "B says it once");
    const aLine = aSaw[0]!, bLine = bSaw[0]!;
    assert.ok(aLine.kind === "system" && bLine.kind === "system");
    assert.equal(
      aLine.text,
      `First session with B: B's key ${ids.B.fingerprint} is now pinned; compare the code with B to be sure`,
    );
    assert.ok(bLine.text.includes(ids.A.fingerprint), bLine.text);
    // Said before the session started: before anyone could chat.
    const aStart = a.ui.events.findIndex(started);
    assert.ok(a.ui.events.indexOf(aLine) < aStart);
    const pinB = join(dir, "users/A/peers/B.pem");
    const pinA = join(dir, "users/B/peers/A.pem");
    assert.equal(
      await Deno.readTextFile(pinB),
      pemEncode("PUBLIC KEY", ids.B.publicDer),
    );
    assert.equal(
      await Deno.readTextFile(pinA),
      pemEncode("PUBLIC KEY", ids.A.publicDer),
    );
    if (posix) {
      for (const f of [pinA, pinB]) assert.equal(await fileMode(f), 0o600);
      for (const d of ["users/A/peers", "users/B/peers", "users/A", "users"]) {
        assert.equal(await fileMode(join(dir, d)), 0o700, d);
      }
    }
    const before = [
      (await Deno.stat(pinB)).mtime?.getTime(),
      (await Deno.stat(pinA)).mtime?.getTime(),
    ];
    await leave(a, b);
    const am = a.ui.mark, bm = b.ui.mark;
    await session(a, b);
    assert.deepEqual(a.ui.since(firstSession, am), []);
    assert.deepEqual(b.ui.since(firstSession, bm), []);
    assert.deepEqual(a.ui.since(isError(), am), []);
    assert.deepEqual(b.ui.since(isError(), bm), []);
    assert.deepEqual([
      (await Deno.stat(pinB)).mtime?.getTime(),
      (await Deno.stat(pinA)).mtime?.getTime(),
    ], before);
  });
});

/**
 * A and B had a session, so each pinned the other's real key; then the
 * server's directory names `changed`'s key as `newKey` (re-enrolled, or a
 * server that lies), and a new client of `changed` logs in with it.
 */
async function afterReenrolment(
  s: Scope,
  changed: "A" | "B",
  o: { dir?: string; pins?: { A: PeerPins; B: PeerPins } } = {},
) {
  const ids = await identities();
  const newKey = ids.stranger;
  const { server, port } = await s.server();
  const pinsOf = (u: "A" | "B"): { dir?: string; pins?: PeerPins } =>
    o.pins ? { pins: o.pins[u] } : o.dir === undefined ? {} : { dir: o.dir };
  const a = await client(s, port, "A", pinsOf("A"));
  const b = await client(s, port, "B", pinsOf("B"));
  await host(a);
  await session(a, b);
  await leave(a, b);
  const directory = clientDirectory(ids);
  directory.set(changed, newKey.publicIdentity);
  const old = changed === "A" ? a : b;
  const m = old.ui.mark;
  await server.reloadClients(directory);
  await old.ui.waitFor((e) => JSON.stringify(e).includes("revoked"), m);
  const renewed = await client(s, port, changed, {
    ...pinsOf(changed),
    identity: newKey,
  });
  return {
    ids,
    newKey,
    a: changed === "A" ? renewed : a,
    b: changed === "B" ? renewed : b,
  };
}

Deno.test("a server that names another key for B than the one A pinned (B re-enrolled with a new key) makes A refuse B's session with peer-key-changed, naming both fingerprints and the pin to remove: no session starts, no chat, the pin stays", async () => {
  await withScope(async (s) => {
    const dir = await keyDir(s);
    const { ids, newKey, a, b } = await afterReenrolment(s, "B", { dir });
    const pin = join(dir, "users/A/peers/B.pem");
    const pinned = await Deno.readTextFile(pin);
    const am = a.ui.mark, bm = b.ui.mark;
    await b.client.handleLine("!session A");
    const e = await a.ui.waitFor(isError("peer-key-changed"), am);
    assert.ok(e.kind === "error");
    assert.match(e.text, /^Session with B refused: WARNING: B's key changed/);
    assert.ok(e.text.includes(newKey.fingerprint), "the key named now");
    assert.ok(e.text.includes(ids.B.fingerprint), "the key pinned");
    assert.ok(
      e.text.includes(`if B really has a new key`) && e.text.includes(pin),
      e.text,
    );
    // B's attempt ends without a session; A hosts on.
    const end = await b.ui.waitFor(ended, bm);
    assert.ok(end.kind === "session");
    assert.equal(end.reason, "A gave up waiting for you");
    await a.ui.waitFor(system(/still hosting/i), am);
    assert.deepEqual(a.ui.since(started, am), []);
    assert.deepEqual(b.ui.since(started, bm), []);
    assert.equal(b.client.mode, "idle");
    await b.client.handleLine("no one reads this");
    assert.deepEqual(a.ui.since((ev) => ev.kind === "message", am), []);
    assert.equal(await Deno.readTextFile(pin), pinned, "the pin stays");
  });
});

Deno.test("removing the pin file lets the new key be pinned: the next session starts and says the new key is now pinned", async () => {
  await withScope(async (s) => {
    const dir = await keyDir(s);
    const { newKey, a, b } = await afterReenrolment(s, "B", { dir });
    const pin = join(dir, "users/A/peers/B.pem");
    let am = a.ui.mark;
    await b.client.handleLine("!session A");
    await a.ui.waitFor(isError("peer-key-changed"), am);
    await a.ui.waitFor(system(/still hosting/i), am);
    await b.ui.waitFor(ended);
    await Deno.remove(pin);
    am = a.ui.mark;
    const bm = b.ui.mark;
    await session(a, b);
    const said = a.ui.since(firstSession, am);
    assert.equal(said.length, 1);
    const line = said[0]!;
    assert.ok(line.kind === "system");
    assert.ok(line.text.includes(newKey.fingerprint), line.text);
    assert.deepEqual(b.ui.since(firstSession, bm), [], "B's pin of A held");
    assert.equal(
      await Deno.readTextFile(pin),
      pemEncode("PUBLIC KEY", newKey.publicDer),
    );
  });
});

Deno.test("a server that names another key for the host A than the one B pinned makes B give up before connecting, with peer-key-changed naming both fingerprints; A's grant is released and A hosts on", async () => {
  await withScope(async (s) => {
    const dir = await keyDir(s);
    const { ids, newKey, a, b } = await afterReenrolment(s, "A", { dir });
    await host(a);
    const am = a.ui.mark, bm = b.ui.mark;
    await b.client.handleLine("!session A");
    const e = await b.ui.waitFor(isError("peer-key-changed"), bm);
    assert.ok(e.kind === "error");
    assert.match(e.text, /^Session with A failed: WARNING: A's key changed/);
    assert.ok(e.text.includes(newKey.fingerprint));
    assert.ok(e.text.includes(ids.A.fingerprint));
    assert.ok(e.text.includes(join(dir, "users/B/peers/A.pem")), e.text);
    await a.ui.waitFor(system(/still hosting/i), am);
    assert.deepEqual(a.ui.since(started, am), []);
    assert.deepEqual(b.ui.since(started, bm), []);
    assert.deepEqual(
      b.ui.since((ev) => ev.kind === "system" && /relay/.test(ev.text), bm),
      [],
      "it never tried to connect",
    );
  });
});

Deno.test("a client without a key directory keeps its pins in memory for its life: first session pinned, a second says nothing, another key for B is refused, and the hint says the pins are in memory", async () => {
  await withScope(async (s) => {
    const pins = { A: new MemoryPeerPins(), B: new MemoryPeerPins() };
    const { newKey, a, b } = await afterReenrolment(s, "B", { pins });
    const am = a.ui.mark;
    await b.client.handleLine("!session A");
    const e = await a.ui.waitFor(isError("peer-key-changed"), am);
    assert.ok(e.kind === "error");
    assert.ok(e.text.includes(newKey.fingerprint));
    assert.match(e.text, /keeps its pins in memory until it quits/);
    // Forgetting it (as removing a file does) lets the new key in.
    pins.A.forget("B");
    await a.ui.waitFor(system(/still hosting/i), am);
    await b.ui.waitFor(ended);
    await session(a, b);
  });
});

Deno.test("a client given no pin store pins in memory on its own: the first session says so, the second does not", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const a = await s.client(port, "A");
    const b = await s.client(port, "B");
    await host(a);
    await session(a, b);
    assert.equal(a.ui.since(firstSession).length, 1);
    assert.equal(b.ui.since(firstSession).length, 1);
    await leave(a, b);
    const am = a.ui.mark;
    await session(a, b);
    assert.deepEqual(a.ui.since(firstSession, am), []);
  });
});

// ---------------------------------------------------------------------------
// The joiner's checks of `join`, before it dials (on fakes, as in
// joining_test.ts)

/** B's attempt to join A with `pins`, on fakes that record what it shows and dials. */
function attempt(pins: PeerPins) {
  const keys = { enc: randomBytes(32), mac: randomBytes(32) };
  const events: NewEvent[] = [];
  const dialled: string[] = [];
  let failed = 0;
  const network = {
    connect(host: string, port: number) {
      dialled.push(`${host}:${port}`);
      return Promise.reject(new Error("no network in this test"));
    },
  } as unknown as Network;
  const ctx: ClientContext = {
    o: { user: "B", network, peerPins: pins } as unknown as ClientOptions,
    print: (ev) => events.push(ev),
    system: (text) => events.push({ kind: "system", text }),
    error: (e) => assert.fail(`unexpected error ${e}`),
    track: () => {},
  };
  const link = {
    login: { ticketKeys: keys },
    serverNow: () => Date.now(),
  } as unknown as ServerConnection;
  const joining = new Joining(
    ctx,
    link,
    {
      started: () => assert.fail("no session may start"),
      failed: () => {
        failed++;
        return Promise.resolve();
      },
    },
    new TicketReplayCache(),
    "A",
  );
  const id = randomBytes(16);
  const expiresAt = Date.now() + 30_000;
  const join = (identity: string): Extract<ServerToClient, { t: "join" }> => ({
    t: "join",
    peer: "A",
    addr: "127.0.0.1:1",
    ticket: sealTicket(keys, {
      id,
      host: "A",
      joiner: "B",
      expiresAt,
      peerKey: randomBytes(32),
    }).toBase64(),
    ticketId: id.toHex(),
    expiresAt,
    identity,
  });
  return { joining, join, events, dialled, failed: () => failed };
}

Deno.test("a join whose host key is not the one pinned for A, or is no key at all, is refused before the joiner dials (peer-key-changed, bad-identity), and the attempt ends", async () => {
  const ids = await identities();
  const pinned = new MemoryPeerPins();
  await pinned.pin("A", ids.A.publicIdentity);
  const cases: Array<[string, string, PeerPins]> = [
    [ids.stranger.publicDer.toBase64(), "peer-key-changed", pinned],
    ["not base64!", "bad-identity", new MemoryPeerPins()],
    [randomBytes(64).toBase64(), "bad-identity", new MemoryPeerPins()],
    [
      ids.A.publicDer.subarray(0, 100).toBase64(),
      "bad-identity",
      new MemoryPeerPins(),
    ],
  ];
  for (const [identity, code, pins] of cases) {
    const t = attempt(pins);
    await t.joining.run(t.join(identity));
    const errors = t.events.filter((e) => e.kind === "error");
    assert.equal(errors.length, 1, JSON.stringify(t.events));
    const e = errors[0]!;
    assert.ok(e.kind === "error");
    assert.equal(e.code, code);
    assert.deepEqual(t.dialled, [], "nothing was dialled");
    assert.equal(t.failed(), 1, "the attempt ended (the host is released)");
    if (code === "peer-key-changed") {
      assert.ok(e.text.includes(ids.stranger.fingerprint));
      assert.ok(e.text.includes(ids.A.fingerprint));
    }
  }
  // Control: the pinned key itself passes these checks, and B dials.
  const t = attempt(pinned);
  await t.joining.run(t.join(ids.A.publicDer.toBase64()));
  assert.deepEqual(t.dialled, ["127.0.0.1:1"]);
});

// PROTOCOL.md section 6, key continuity: `!trust` replaces a pin only with
// the key the warning named, on the user's word; `!keys` shows both.
Deno.test("!keys shows the pinned key and the refused one; !trust B pins the key the warning named, and the next session starts", async () => {
  await withScope(async (s) => {
    const dir = await keyDir(s);
    const { ids, newKey, a, b } = await afterReenrolment(s, "B", { dir });
    const pin = join(dir, "users/A/peers/B.pem");
    let am = a.ui.mark;
    // Nothing to trust before a refusal.
    await a.client.handleLine("!trust B");
    await a.ui.waitFor(system(/^No changed key was seen for B/), am);
    await b.client.handleLine("!session A");
    const e = await a.ui.waitFor(isError("peer-key-changed"), am);
    assert.ok(e.kind === "error" && e.text.includes("type !trust B"));
    await a.ui.waitFor(system(/still hosting/i), am);
    await b.ui.waitFor(ended);
    am = a.ui.mark;
    await a.client.handleLine("!keys B");
    const keys = await a.ui.waitFor(system(/^B's pinned key: /), am);
    assert.ok(keys.kind === "system");
    assert.ok(keys.text.includes(ids.B.fingerprint), keys.text);
    assert.ok(keys.text.includes(newKey.fingerprint), keys.text);
    await a.client.handleLine("!trust B");
    await a.ui.waitFor(system(/is now pinned in place of the old one$/), am);
    assert.equal(
      await Deno.readTextFile(pin),
      pemEncode("PUBLIC KEY", newKey.publicDer),
    );
    am = a.ui.mark;
    await session(a, b);
    assert.deepEqual(a.ui.since(isError(), am), []);
  });
});
