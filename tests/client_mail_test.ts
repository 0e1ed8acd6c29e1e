/**
 * Mailboxes end to end through the client (PROTOCOL.md section 9): real
 * {@link ChatClient}s and a real {@link ImServer} over a
 * {@link MemoryNetwork}, the server's store and published keys within the
 * test's reach to play a malicious or clumsy server (a duplicated row, a
 * flipped byte, a forged certificate). Each user keeps one
 * {@link MemoryMailVault} and one pin store across its logins, as a key
 * directory would.
 * @module
 */

import assert from "node:assert/strict";
import {
  ChatClient,
  type ClientOptions,
  MemoryMailVault,
  type UiEvent,
} from "../lib/client/mod.ts";
import { MemoryPeerPins } from "../lib/client/pinning.ts";
import type { PrivateIdentity } from "../lib/crypto/mod.ts";
import { openMailVault } from "../lib/keystore/mod.ts";
import { KeyStoreError } from "../lib/keystore/mod.ts";
import {
  decodeIdentityCert,
  decodePrekeyCert,
  type MailVault,
  makeIdentityCert,
  makePrekeyCert,
  type PeerMailCerts,
  sealMail,
  verifyIdentityOnly,
} from "../lib/proto/mod.ts";
import {
  ImServer,
  MemoryPrekeys,
  MemoryStore,
  type ServerOptions,
} from "../lib/server/mod.ts";
import { eventToJson } from "../lib/ui/mod.ts";
import { concat, sleep, utf8 } from "../lib/util/mod.ts";
import { generateX25519 } from "../lib/crypto/mod.ts";
import { MemoryNetwork } from "../lib/wire/mod.ts";
import { clientDirectory, identities } from "./_helpers.ts";
import { CaptureUi, isError, until } from "./_fixtures.ts";

/** RFC 5737 TEST-NET-1: no TCP listener could be here. */
const HOST = "192.0.2.1";
type User = "A" | "B" | "C";

/**
 * @param over server options
 * @param openVault a user's vault at each login (a key directory's, read
 *   anew as by a restarted process); default one {@link MemoryMailVault} per
 *   user for the test
 */
async function world(
  over: Partial<ServerOptions> = {},
  openVault?: (user: User) => Promise<MailVault>,
) {
  const ids = await identities();
  const net = new MemoryNetwork();
  const store = new MemoryStore();
  const prekeys = over.prekeys ?? new MemoryPrekeys();
  const serverOptions: ServerOptions = {
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients: clientDirectory(ids),
    heartbeatMs: 0,
    store,
    prekeys,
    // The tests send hundreds of messages in a burst.
    mailRate: 100_000,
    ...over,
  };
  let server = await ImServer.start(serverOptions);
  /** A new server process on the same address, store and keys. */
  const restart = async () => {
    await server.close();
    server = await ImServer.start({ ...serverOptions, port: server.port });
  };
  const vaults = new Map<string, MailVault>();
  const pins = new Map<string, MemoryPeerPins>();
  const live = new Set<ChatClient>();
  const options = async (
    user: User,
    ui: CaptureUi,
    identity: PrivateIdentity,
    extra: Partial<ClientOptions>,
  ): Promise<ClientOptions> => {
    if (openVault) vaults.set(user, await openVault(user));
    if (!vaults.has(user)) vaults.set(user, new MemoryMailVault());
    if (!pins.has(user)) pins.set(user, new MemoryPeerPins());
    return {
      user,
      identity,
      pinnedServer: ids.serverPinned,
      serverHost: HOST,
      serverPort: server.port,
      ui,
      network: net,
      heartbeatMs: 0,
      reconnect: false,
      waitForReplies: true,
      mailVault: vaults.get(user)!,
      peerPins: pins.get(user)!,
      ...extra,
    };
  };
  /** Log `user` in; resolve once the server holds its identity key. */
  const login = async (
    user: User,
    identity: PrivateIdentity = ids[user],
    extra: Partial<ClientOptions> = {},
  ) => {
    const ui = new CaptureUi();
    const c = await ChatClient.start(
      await options(user, ui, identity, extra),
    );
    live.add(c);
    await eventually(async () => {
      const mine = await vaults.get(user)!.identity();
      const held = await prekeys.certs(user);
      return mine !== undefined && held !== undefined &&
        mine.cert.toHex() === held.identityCert.toHex() &&
        await verifyIdentityOnly({
          user,
          owner: identity.publicIdentity,
          identityCert: mine.cert,
        }).then(() => true, () => false);
    }, `${user}'s keys published`);
    return {
      c,
      ui,
      quit: async () => {
        live.delete(c);
        await c.quit();
      },
    };
  };
  const close = async () => {
    for (const c of live) await c.quit();
    await server.close();
    await store.close();
    await prekeys.close();
  };
  return {
    ids,
    get server() {
      return server;
    },
    restart,
    store,
    prekeys,
    vaults,
    pins,
    login,
    close,
  };
}

/** Run a test in a fresh {@link world}, closed afterwards, pass or fail. */
async function withWorld(
  body: (w: Awaited<ReturnType<typeof world>>) => Promise<void>,
  ...args: Parameters<typeof world>
): Promise<void> {
  const w = await world(...args);
  try {
    await body(w);
  } finally {
    await w.close();
  }
}

/** Poll an async condition until it holds. */
async function eventually(
  cond: () => Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const mailIn = (text?: string) => (e: UiEvent) =>
  e.kind === "mail" && e.direction === "in" &&
  (text === undefined || e.text === text);
const mailOut = (text: string) => (e: UiEvent) =>
  e.kind === "mail" && e.direction === "out" && e.text === text;
const receipt = (status: string, id?: string) => (e: UiEvent) =>
  e.kind === "receipt" && e.via === "mail" && e.status === status &&
  (id === undefined || e.id === id);
const system = (re: RegExp) => (e: UiEvent) =>
  e.kind === "system" && re.test(e.text);

/** The id of the mail `text` a user sent, from its echo. */
function sentId(ui: CaptureUi, text: string): string {
  const e = ui.events.find(mailOut(text));
  assert.ok(e?.kind === "mail", `no echo of ${JSON.stringify(text)}`);
  return e.id;
}

/** B has logged in once (its keys are on the server) and is offline. */
async function withOfflineB(w: Awaited<ReturnType<typeof world>>) {
  const b = await w.login("B");
  await b.quit();
  assert.equal(await w.prekeys.count("B"), 100);
}

Deno.test("mail to an offline user: stored at once, shown at its next login with its written time, delivered to the sender", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    const before = Date.now();
    await a.c.handleLine("!msg B hello while you were out");
    // Piped mode: the line returned once the server stored it.
    assert.ok(a.ui.events.some(receipt("stored")));
    assert.ok(
      a.ui.events.some(
        system(/^First message to B: B's key SHA256:\S+ is now pinned/),
      ),
    );
    await a.c.handleLine("@B  the short form");
    assert.equal(a.ui.since(receipt("stored")).length, 2);
    const id = sentId(a.ui, "hello while you were out");
    assert.match(id, /^[0-9a-f]{32}$/);

    const b = await w.login("B");
    const got = await b.ui.waitFor(mailIn("hello while you were out"));
    assert.ok(got.kind === "mail");
    assert.equal(got.from, "A");
    assert.equal(got.to, "B");
    assert.equal(got.id, id);
    assert.ok(got.written >= before - 1000 && got.written <= Date.now());
    await b.ui.waitFor(mailIn("the short form"));
    assert.ok(b.ui.events.some(system(/^First message from A: A's key/)));
    await b.ui.waitFor(system(/^2 mail messages arrived while you were away$/));
    // The delivered receipts reach A, which is online.
    await a.ui.waitFor(receipt("delivered", id));
    await a.ui.waitFor(receipt("delivered", sentId(a.ui, "the short form")));
    // Acknowledged: the log is empty, nothing is shown twice at a new login.
    await eventually(
      async () => (await w.store.usage("B")).count === 0,
      "B's ack",
    );
    await b.quit();
    const b2 = await w.login("B");
    await a.c.handleLine("!msg B one more");
    await b2.ui.waitFor(mailIn("one more"));
    assert.equal(b2.ui.since(mailIn()).length, 1);
    assert.ok(!b2.ui.events.some(isError()), JSON.stringify(b2.ui.events));
    assert.ok(!a.ui.events.some(isError()), JSON.stringify(a.ui.events));
  });
});

Deno.test("with vaults in a key directory, a restarted recipient opens mail with its saved keys and never shows a message twice", async () => {
  const dir = await Deno.makeTempDir();
  const w = await world({}, (user) => openMailVault(dir, user));
  try {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B one");
    await a.c.handleLine("!msg B two");
    const [first] = await w.store.read("B");
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("two"));
    await a.ui.waitFor(receipt("delivered", sentId(a.ui, "two")));
    await eventually(
      async () => (await w.store.usage("B")).count === 0,
      "B's acks",
    );
    await b.quit();
    // A replay of the first message after B's restart.
    await w.store.append("B", first!.data);
    await a.c.handleLine("!msg B three");
    const b2 = await w.login("B");
    await b2.ui.waitFor(mailIn("three"));
    assert.deepEqual(
      b2.ui.since(mailIn()).map((e) => e.kind === "mail" && e.text),
      ["three"],
    );
    assert.ok(!b2.ui.events.some(isError()), JSON.stringify(b2.ui.events));
    // A's pending receipts are on disk too.
    await a.ui.waitFor(receipt("delivered", sentId(a.ui, "three")));
    assert.ok(!a.ui.events.some(isError()), JSON.stringify(a.ui.events));
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("after a reconnect the client publishes again and the stream resumes after what it acknowledged", async () => {
  const w = await world();
  try {
    await withOfflineB(w);
    const b = await w.login("B", w.ids.B, {
      reconnect: true,
      reconnectBaseMs: 10,
      reconnectMaxMs: 50,
    });
    const a = await w.login("A");
    await a.c.handleLine("!msg B before the restart");
    await b.ui.waitFor(mailIn("before the restart"));
    await eventually(
      async () => (await w.store.usage("B")).count === 0,
      "B's ack",
    );
    await a.quit();
    const mark = b.ui.mark;
    await w.restart();
    await b.ui.waitFor(system(/^Reconnected to the server$/), mark);
    const a2 = await w.login("A");
    await a2.c.handleLine("!msg B after the restart");
    await b.ui.waitFor(mailIn("after the restart"));
    assert.equal(b.ui.since(mailIn("before the restart")).length, 1);
    await a2.ui.waitFor(
      receipt("delivered", sentId(a2.ui, "after the restart")),
    );
    assert.ok(
      !b.ui.since(isError(), mark).some((e) =>
        e.kind === "error" && e.code !== "server-gone"
      ),
      JSON.stringify(b.ui.since(isError(), mark)),
    );
  } finally {
    await w.close();
  }
});

Deno.test("a delivered receipt for a sender who was offline comes at its next login", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B read me later");
    const id = sentId(a.ui, "read me later");
    await a.quit();
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("read me later"));
    await eventually(
      async () => (await w.store.read("A")).length === 1,
      "the receipt in A's log",
    );
    const a2 = await w.login("A");
    await a2.ui.waitFor(receipt("delivered", id));
    // Acknowledged too.
    await eventually(
      async () => (await w.store.read("A")).length === 0,
      "A's ack",
    );
  });
});

Deno.test("1,000 messages queued while the recipient was offline arrive all, in order; one-time prekeys run out after 100 and the signed prekey carries on", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    const n = 1000;
    for (let i = 0; i < n; i++) await a.c.handleLine(`!msg B message ${i}`);
    assert.equal(a.ui.since(receipt("stored")).length, n);
    assert.equal(await w.prekeys.count("B"), 0);
    assert.equal((await w.store.usage("B")).count, n);
    const b = await w.login("B");
    await b.ui.waitFor(mailIn(`message ${n - 1}`), 0, 60_000);
    const texts = b.ui.since(mailIn()).map((e) =>
      e.kind === "mail" ? e.text : ""
    );
    assert.deepEqual(
      texts,
      Array.from({ length: n }, (_, i) => `message ${i}`),
    );
    assert.ok(!b.ui.events.some(isError()));
    await until(
      () => a.ui.since(receipt("delivered")).length === n,
      "1,000 delivered receipts",
      60_000,
    );
    await eventually(
      async () => (await w.store.usage("B")).count === 0,
      "B's acks",
    );
    // B, online, topped its one-time prekeys up when told they ran low.
    await eventually(async () => (await w.prekeys.count("B")) >= 100, "top-up");
  });
});

Deno.test("an online recipient tops its one-time prekeys up on prekeys-low", async () => {
  await withWorld(async (w) => {
    const b = await w.login("B");
    const a = await w.login("A");
    for (let i = 0; i < 85; i++) await a.c.handleLine(`@B n${i}`);
    await b.ui.waitFor(mailIn("n84"));
    await eventually(async () => (await w.prekeys.count("B")) >= 95, "top-up");
  });
});

Deno.test("a backlog from several new senders waits for the keys bucket rather than refusing their mail", async () => {
  // One `keys` at a time: B's second new sender meets rate-limited first.
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    const c = await w.login("C");
    await a.c.handleLine("!msg B from A");
    await c.c.handleLine("!msg B from C");
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("from C"));
    assert.deepEqual(
      b.ui.since(mailIn()).map((e) => e.kind === "mail" && e.from),
      ["A", "C"],
    );
    assert.ok(!b.ui.events.some(isError()), JSON.stringify(b.ui.events));
  }, {
    requestLimits: { keys: { burst: 1, refillMs: 50 } },
  });
});

Deno.test("the signed prekey rotates after 7 days by the server's clock; a retired one still opens mail and is dropped 31 days after it expired", async () => {
  const DAY = 86_400_000;
  let skew = 0;
  await withWorld(async (w) => {
    await withOfflineB(w);
    const vault = w.vaults.get("B")!;
    assert.deepEqual((await vault.signedPrekeys()).map((k) => k.id), [1]);
    const a = await w.login("A");
    await a.c.handleLine("!msg B sealed to the first signed prekey");
    await a.quit();
    skew = 8 * DAY;
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("sealed to the first signed prekey"));
    await eventually(
      async () =>
        decodePrekeyCert((await w.prekeys.certs("B"))!.signedPrekeyCert)
          .id === 2,
      "the new signed prekey published",
    );
    assert.deepEqual((await vault.signedPrekeys()).map((k) => k.id), [1, 2]);
    await b.quit();
    // #1 expired at day 30: kept to day 61. #2 (day 8) expires at day 38.
    skew = 62 * DAY;
    await w.login("B");
    await eventually(
      async () =>
        decodePrekeyCert((await w.prekeys.certs("B"))!.signedPrekeyCert)
          .id === 3,
      "the third signed prekey published",
    );
    assert.deepEqual((await vault.signedPrekeys()).map((k) => k.id), [2, 3]);
  }, { now: () => Date.now() + skew });
});

Deno.test("a row the server duplicated is shown once", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B only once");
    const [row] = await w.store.read("B");
    assert.ok(row);
    await w.store.append("B", row.data);
    await w.store.append("B", row.data);
    await a.c.handleLine("!msg B after the copies");
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("after the copies"));
    assert.equal(b.ui.since(mailIn("only once")).length, 1);
    assert.ok(!b.ui.events.some(isError()), "a duplicate is silent");
    await eventually(
      async () => (await w.store.usage("B")).count === 0,
      "all acked",
    );
  });
});

/** Rewrite B's log through `edit`, keeping the order. */
async function rewriteLog(
  w: Awaited<ReturnType<typeof world>>,
  user: string,
  edit: (data: Uint8Array, i: number) => Uint8Array[],
): Promise<void> {
  const rows = await w.store.read(user);
  await w.store.ack(user, rows.at(-1)!.seq);
  for (const [i, r] of rows.entries()) {
    for (const d of edit(r.data.slice(), i)) await w.store.append(user, d);
  }
}

Deno.test("a flipped byte in a stored row is refused as mail-tampered, the rest still delivered", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    for (const t of ["first", "second", "third"]) {
      await a.c.handleLine(`!msg B ${t}`);
    }
    await rewriteLog(w, "B", (d, i) => {
      if (i === 1) d[d.length - 40] = d[d.length - 40]! ^ 0x01; // "second"'s ciphertext
      return [d];
    });
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("third"));
    const err = await b.ui.waitFor(isError("mail-tampered"));
    assert.ok(err.kind === "error");
    assert.match(err.text, /^Mail from A \(unverified\) refused: /);
    assert.deepEqual(
      b.ui.since(mailIn()).map((e) => e.kind === "mail" && e.text),
      ["first", "third"],
    );
    await eventually(
      async () => (await w.store.usage("B")).count === 0,
      "acked",
    );
    await a.ui.waitFor(receipt("delivered", sentId(a.ui, "third")));
    assert.ok(!a.ui.events.some(receipt("delivered", sentId(a.ui, "second"))));
  });
});

Deno.test("a re-addressed message fails its MAC; one sealed to B's keys under another name is misaddressed", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B for B only");
    // The server changes the header's recipient B (record byte 5) to C.
    await rewriteLog(w, "B", (d) => {
      assert.equal(d[5], "B".charCodeAt(0));
      d[5] = "C".charCodeAt(0);
      return [d];
    });
    // A sender (A's own keys) that names C but seals to B's keys.
    const certs = (await w.prekeys.certs("B"))!;
    const ikB = decodeIdentityCert(certs.identityCert).ik;
    const spkB = decodePrekeyCert(certs.signedPrekeyCert);
    const identityA = (await w.vaults.get("A")!.identity())!;
    const sealed = await sealMail({
      sender: "A",
      recipient: "C",
      senderFingerprint: w.ids.A.fingerprintBytes,
      recipientFingerprint: w.ids.B.fingerprintBytes,
      senderIdentity: identityA.pair,
      recipientIdentityKey: ikB,
      signedPrekey: { id: spkB.id, key: spkB.spk },
      text: "sealed for B, addressed to C",
      time: Date.now(),
    });
    await w.store.append("B", concat(new Uint8Array([1]), sealed.mail));
    await a.c.handleLine("!msg B last");
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("last"));
    const tampered = await b.ui.waitFor(isError("mail-tampered"));
    assert.ok(tampered.kind === "error");
    assert.match(tampered.text, /^Mail from A \(unverified\) refused: /);
    const err = await b.ui.waitFor(isError("misaddressed"));
    assert.ok(err.kind === "error");
    assert.match(
      err.text,
      /^Mail from A \(unverified\) refused: .*addressed to C, not to B/,
    );
    assert.deepEqual(
      b.ui.since(mailIn()).map((e) => e.kind === "mail" && e.text),
      ["last"],
    );
    await eventually(
      async () => (await w.store.usage("B")).count === 0,
      "every record acknowledged",
    );
  });
});

Deno.test("a bundle whose signatures do not verify with B's key is refused; nothing is sent", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    // The server hands out keys certified by C's RSA key in B's name.
    const [ik, spk] = await Promise.all([
      generateX25519(false),
      generateX25519(false),
    ]);
    const now = Date.now();
    await w.prekeys.publish("B", {
      identityCert: await makeIdentityCert(w.ids.C, "B", ik.publicRaw, now),
      signedPrekeyCert: await makePrekeyCert(
        w.ids.C,
        "B",
        ik.publicRaw,
        9,
        spk.publicRaw,
        now,
        now + 86_400_000,
      ),
    }, []);
    const a = await w.login("A");
    await a.c.handleLine("!msg B never sent");
    const err = await a.ui.waitFor(isError("bad-bundle"));
    assert.ok(err.kind === "error");
    assert.match(err.text, /^Mail to B not sent: /);
    assert.ok(!a.ui.events.some(mailOut("never sent")));
    assert.equal((await w.store.usage("B")).count, 0);
  });
});

Deno.test("a changed identity is refused both ways, with both fingerprints, until !trust", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B before");
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("before"));
    await b.quit();
    // B's key is replaced on the server (a new enrolment, or an attack).
    // B's mail identity key was certified by the old one: it makes another.
    await w.server.reloadClients(clientDirectory(w.ids, { B: w.ids.stranger }));
    const oldIk = (await w.vaults.get("B")!.identity())!.pair.publicRaw;
    const b2 = await w.login("B", w.ids.stranger);
    const newIk = (await w.vaults.get("B")!.identity())!.pair.publicRaw;
    assert.notEqual(newIk.toHex(), oldIk.toHex());

    await a.c.handleLine("!msg B after the change");
    const err = await a.ui.waitFor(isError("peer-key-changed"));
    assert.ok(err.kind === "error");
    assert.ok(err.text.includes(w.ids.B.fingerprint), err.text);
    assert.ok(err.text.includes(w.ids.stranger.fingerprint), err.text);
    assert.ok(!a.ui.events.some(mailOut("after the change")));

    // B2 writes to A: A refuses it, naming both keys, and says to !trust.
    await b2.c.handleLine("!msg A from the new key");
    const refused = await a.ui.waitFor(
      (e) =>
        isError("peer-key-changed")(e) && e.kind === "error" &&
        e.text.startsWith("Mail from B (unverified) refused"),
    );
    assert.ok(refused.kind === "error");
    assert.match(refused.text, /!trust B/);
    assert.match(refused.text, /B must send it again/);
    assert.ok(!a.ui.events.some(mailIn()));

    await a.c.handleLine("!trust B");
    await a.ui.waitFor(system(/now pinned in place of the old one/));
    await a.c.handleLine("!msg B after trust");
    await b2.ui.waitFor(mailIn("after trust"));
    await b2.c.handleLine("!msg A again from the new key");
    await a.ui.waitFor(mailIn("again from the new key"));
  });
});

Deno.test("!trust with no refusal waiting asks the server, shows both fingerprints, and pins only at the second !trust", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!trust B");
    await a.ui.waitFor(
      system(/^No changed key was seen for B: nothing to trust/),
    );
    await a.c.handleLine("!msg B hi");
    await a.c.handleLine("!trust B");
    await a.ui.waitFor(
      system(/^No changed key was seen for B: nothing to trust/),
    );
    await w.server.reloadClients(clientDirectory(w.ids, { B: w.ids.stranger }));
    let mark = a.ui.mark;
    await a.c.handleLine("!trust B");
    const line = await a.ui.waitFor(
      system(/in a refusal, but the server now names/),
      mark,
    );
    assert.ok(line.kind === "system");
    assert.ok(line.text.includes(w.ids.B.fingerprint));
    assert.ok(line.text.includes(w.ids.stranger.fingerprint));
    assert.equal(
      (await w.pins.get("A")!.load("B"))?.fingerprint,
      w.ids.B.fingerprint,
      "not pinned yet",
    );
    mark = a.ui.mark;
    await a.c.handleLine("!trust B");
    await a.ui.waitFor(system(/is now pinned in place of the old one$/), mark);
    assert.equal(
      (await w.pins.get("A")!.load("B"))?.fingerprint,
      w.ids.stranger.fingerprint,
    );
  });
});

Deno.test("a full mailbox gives the sender a clear error and changes nothing", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B one");
    await a.c.handleLine("!msg B two");
    await a.c.handleLine("!msg B three");
    const err = await a.ui.waitFor(isError("mailbox-full"));
    assert.ok(err.kind === "error");
    assert.match(err.text, /^Mail to B \(#[0-9a-f]{8}\) not stored: /);
    assert.equal(a.ui.since(receipt("stored")).length, 2);
    assert.equal((await w.store.usage("B")).count, 2);
  }, { mailMaxCount: 2 });
});

Deno.test("mail to a user with no mailbox, or too long, is refused before anything is stored", async () => {
  await withWorld(async (w) => {
    const a = await w.login("A");
    await a.c.handleLine("!msg C anyone there?");
    await a.ui.waitFor(isError("no-mailbox"));
    await a.c.handleLine("!msg nobody hello");
    const unknown = await a.ui.waitFor(
      (e) =>
        isError("no-mailbox")(e) && e.kind === "error" &&
        e.text.includes("nobody"),
    );
    assert.ok(unknown);
    await a.c.handleLine(`!msg C ${"x".repeat(46_081)}`);
    await a.ui.waitFor(isError("message-too-large"));
    assert.ok(!a.ui.events.some((e) => e.kind === "mail"));
  });
});

Deno.test("the largest text the frame limit allows once sealed is sent and read; one byte more is refused before anything is fetched", async () => {
  // 8 KiB frames: 8,142 bytes of record plaintext. A text of 4,091 bytes
  // pads to the 4,096 bucket, its MAIL is 4,229 bytes, 5,640 in base64; a
  // text of 4,092 would take the 8,192 bucket.
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine(`!msg B ${"y".repeat(4092)}`);
    const err = await a.ui.waitFor(isError("message-too-large"));
    assert.ok(err.kind === "error");
    assert.match(err.text, /frame limit/);
    assert.equal(await w.prekeys.count("B"), 100, "no bundle was fetched");
    const text = "z".repeat(4091);
    await a.c.handleLine(`!msg B ${text}`);
    await a.ui.waitFor(receipt("stored"));
    const b = await w.login("B");
    await b.ui.waitFor(mailIn(text));
  }, { maxFrameBytes: 8192 });
});

Deno.test("a delivered receipt with a wrong proof is shown as bad-receipt and the message stays undelivered", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B prove it");
    const id = sentId(a.ui, "prove it");
    await a.quit();
    // The server forges B's delivered receipt: 0x02 || msg_id || 1 || bytes8("B") || proof.
    await w.store.append(
      "A",
      concat(
        new Uint8Array([2]),
        Uint8Array.fromHex(id),
        new Uint8Array([1, 1]),
        utf8("B"),
        new Uint8Array(32).fill(7),
      ),
    );
    const a2 = await w.login("A");
    await a2.ui.waitFor(isError("bad-receipt"));
    assert.ok(!a2.ui.events.some(receipt("delivered")));
    // The real one still counts.
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("prove it"));
    await a2.ui.waitFor(receipt("delivered", id));
  });
});

Deno.test("an expired receipt says the server deleted the mail unread; a pending entry 31 days old says it was never delivered", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B too late");
    const id = sentId(a.ui, "too late");
    await a.quit();
    // The server's sweep: 0x02 || msg_id || 2 (expired) || bytes8("B") || zeros.
    const expired = concat(
      new Uint8Array([2]),
      Uint8Array.fromHex(id),
      new Uint8Array([2, 1]),
      utf8("B"),
      new Uint8Array(32),
    );
    await w.store.append("A", expired);
    await w.store.append("A", expired); // told once
    const old = new Uint8Array(16).fill(0xab);
    await w.vaults.get("A")!.addPending({
      msgId: old,
      rk: new Uint8Array(32),
      time: Date.now() - 32 * 86_400_000,
      to: "C",
    });
    const a2 = await w.login("A");
    await a2.ui.waitFor(receipt("expired", id));
    await a2.ui.waitFor(receipt("undelivered", old.toHex()));
    await eventually(
      async () => (await w.store.read("A")).length === 0,
      "acked",
    );
    assert.equal(a2.ui.since(receipt("expired")).length, 1);
    const u = a2.ui.events.find(receipt("undelivered"));
    assert.ok(u?.kind === "receipt" && u.peer === "C");
    assert.equal(await w.vaults.get("A")!.pending(old), undefined);
  });
});

Deno.test("!keys shows whether the pinned key was verified; !verify marks it; !whoami shows the mail keys", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!verify B");
    await a.ui.waitFor(isError("not-pinned"));
    await a.c.handleLine("!msg B pin it");
    await a.c.handleLine("!keys B");
    const before = await a.ui.waitFor(system(/^B's pinned key: /));
    assert.ok(before.kind === "system");
    assert.ok(before.text.includes(w.ids.B.fingerprint));
    assert.match(before.text, /not verified/);
    const mark = a.ui.mark;
    await a.c.handleLine("!verify B");
    const said = await a.ui.waitFor(system(/now marked verified/), mark);
    assert.ok(said.kind === "system");
    assert.match(said.text, /only after comparing/);
    await a.c.handleLine("!keys B");
    const after = await a.ui.waitFor(system(/verified by you$/), mark);
    assert.ok(
      after.kind === "system" && after.text.includes(w.ids.B.fingerprint),
    );
    await a.c.handleLine("!whoami");
    await a.ui.waitFor(
      system(
        /mail identity key [0-9a-f]{16} made \d{4}-\d\d-\d\d, signed prekey #1 until/,
      ),
    );
  });
});

Deno.test("--json: mail and receipt objects of a conversation", async () => {
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B in json");
    const b = await w.login("B");
    await b.ui.waitFor(mailIn("in json"));
    await a.ui.waitFor(receipt("delivered"));
    const id = sentId(a.ui, "in json");
    const objs = [...a.ui.events, ...b.ui.events].map((e) =>
      JSON.parse(eventToJson(e))
    );
    const out = objs.find((o) => o.type === "mail" && o.direction === "out");
    const inn = objs.find((o) => o.type === "mail" && o.direction === "in");
    assert.deepEqual(Object.keys(inn), [
      "type",
      "direction",
      "from",
      "to",
      "text",
      "id",
      "written",
      "time",
    ]);
    assert.deepEqual(
      [inn.from, inn.to, inn.text, inn.id],
      ["A", "B", "in json", id],
    );
    assert.equal(out.id, id);
    assert.equal(inn.written, out.written);
    assert.match(inn.written, /^\d{4}-\d\d-\d\dT/);
    const receipts = objs.filter((o) => o.type === "receipt").map((
      o,
    ) => [o.status, o.via, o.peer, o.id]);
    assert.deepEqual(receipts, [["stored", "mail", "B", id], [
      "delivered",
      "mail",
      "B",
      id,
    ]]);
  });
});

// ------------------------------------------ failures that are ours, not the mail's

/** A vault whose next peer-certificate write or sync fails, as a full disk would. */
class FlakyVault extends MemoryMailVault {
  failPeerSave = false;
  failSync = false;
  override savePeerCerts(peer: string, c: PeerMailCerts): Promise<void> {
    if (this.failPeerSave) {
      this.failPeerSave = false;
      return Promise.reject(
        new KeyStoreError("key-write-failed", "No space left on device", "x"),
      );
    }
    return super.savePeerCerts(peer, c);
  }
  override sync(): Promise<void> {
    if (this.failSync) {
      this.failSync = false;
      return Promise.reject(
        new KeyStoreError("key-write-failed", "Cannot sync: EIO", "x"),
      );
    }
    return super.sync();
  }
}

/** Prekeys whose next read of one user's certificates fails, as a busy store would. */
class FlakyPrekeys extends MemoryPrekeys {
  failFor: string | undefined;
  override certs(user: string) {
    if (user === this.failFor) {
      this.failFor = undefined;
      return Promise.reject(new Error("SQLITE_BUSY: database is locked"));
    }
    return super.certs(user);
  }
}

Deno.test("a failure to check a new sender's keys on our side (the disk) is not the mail's fault: the mail stays on the server and is shown at the next login", async () => {
  const vB = new FlakyVault();
  await withWorld(
    async (w) => {
      await withOfflineB(w);
      const a = await w.login("A");
      await a.c.handleLine("!msg B important");
      vB.failPeerSave = true;
      const b = await w.login("B");
      await b.ui.waitFor((e) =>
        e.kind === "error" && /Cannot handle the mailbox/.test(e.text)
      );
      assert.equal((await w.store.read("B")).length, 1, "still on the server");
      assert.ok(!b.ui.events.some(isError("unknown-identity-key")));
      await b.quit();
      const b2 = await w.login("B");
      await b2.ui.waitFor(mailIn("important"));
    },
    {},
    (u) => Promise.resolve(u === "B" ? vB : new MemoryMailVault()),
  );
});

Deno.test("a failure of the server's store while the recipient checks a sender's keys keeps the mail on the server", async () => {
  const prekeys = new FlakyPrekeys();
  await withWorld(async (w) => {
    await withOfflineB(w);
    const a = await w.login("A");
    await a.c.handleLine("!msg B important");
    prekeys.failFor = "A";
    const b = await w.login("B");
    await b.ui.waitFor((e) =>
      e.kind === "error" && /Cannot handle the mailbox/.test(e.text)
    );
    assert.equal((await w.store.read("B")).length, 1, "still on the server");
    await b.quit();
    const b2 = await w.login("B");
    await b2.ui.waitFor(mailIn("important"));
  }, { prekeys });
});

Deno.test("a mail shown with a one-time prekey whose acknowledgement was lost is acknowledged with its proof when pushed again: the sender gets delivered, the prekey is gone", async () => {
  const vB = new FlakyVault();
  await withWorld(
    async (w) => {
      await withOfflineB(w);
      const a = await w.login("A");
      await a.c.handleLine("!msg B read me");
      const id = sentId(a.ui, "read me");
      vB.failSync = true; // the acknowledgement after showing is not sent
      const b = await w.login("B");
      await b.ui.waitFor(mailIn("read me"));
      await b.ui.waitFor((e) =>
        e.kind === "error" && /Cannot handle the mailbox/.test(e.text)
      );
      await b.quit();
      const b2 = await w.login("B");
      await a.ui.waitFor(receipt("delivered", id));
      assert.equal(b2.ui.events.filter(mailIn("read me")).length, 0);
      await eventually(
        async () => (await w.store.read("B")).length === 0,
        "B's log acknowledged",
      );
    },
    {},
    (u) => Promise.resolve(u === "B" ? vB : new MemoryMailVault()),
  );
});
