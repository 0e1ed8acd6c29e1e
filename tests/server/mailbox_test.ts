/**
 * The server's mailboxes (PROTOCOL.md section 9.7 to 9.9), end to end on the
 * real {@link ImServer} over a {@link MemoryNetwork}: bare logged-in links
 * send the raw messages a client would (`publish`, `fetch`, `keys`, `send`,
 * `mailbox`, `mail-ack`) and the tests read what the server answers and
 * pushes, and what its store holds.
 * @module
 */

import assert from "node:assert/strict";
import { loginToServer } from "../../lib/client/mod.ts";
import {
  type ClientToServer,
  encodeMessage,
  encodeOneTimePrekey,
  mailIdHex,
  makeIdentityCert,
  makePrekeyCert,
  sealMail,
  type ServerToClient,
} from "../../lib/proto/mod.ts";
import { generateX25519, type PrivateIdentity } from "../../lib/crypto/mod.ts";
import { RECORD_MIN_BYTES } from "../../lib/record/mod.ts";
import {
  DAY_MS,
  ImServer,
  MAIL_RECORD,
  mailRecord,
  MAX_UNACKED_BYTES,
  MemoryPrekeys,
  MemoryStore,
  receiptRecord,
  type ServerOptions,
  type Store,
  SWEEP_BATCH,
} from "../../lib/server/mod.ts";
import { ByteWriter, randomBytes, utf8 } from "../../lib/util/mod.ts";
import { MemoryNetwork } from "../../lib/wire/mod.ts";
import { clientDirectory, type Identities, identities } from "../_helpers.ts";
import { CaptureUi, EventLog, type LogLine, WAIT_MS } from "../_fixtures.ts";

/** RFC 5737 TEST-NET-1: no TCP listener could be here. */
const HOST = "192.0.2.1";

type User = "A" | "B" | "C";
type Answer<T extends ServerToClient["t"]> = Extract<ServerToClient, { t: T }>;

/** A bare login: what the server sent it, and requests with their answers. */
interface Link {
  user: User;
  got: EventLog<ServerToClient>;
  /** Send without waiting for anything. */
  send(m: ClientToServer): Promise<void>;
  /** Send with a fresh `req` and wait for the answer that names it. */
  request(m: ClientToServer): Promise<ServerToClient>;
  /** Messages of type `t` received so far. */
  all<T extends ServerToClient["t"]>(t: T): Answer<T>[];
  /** Wait for the `n`th message of type `t` (1-based). */
  nth<T extends ServerToClient["t"]>(t: T, n: number): Promise<Answer<T>>;
  /** A `list` round trip: everything the server sent before its answer has arrived. */
  roundTrip(): Promise<void>;
  close(): Promise<void>;
}

interface World {
  ids: Identities;
  server: ImServer;
  store: Store;
  prekeys: MemoryPrekeys;
  log: LogLine[];
  login(user: User): Promise<Link>;
  close(): Promise<void>;
}

async function world(
  over: Partial<ServerOptions> = {},
  shared?: { store: Store; prekeys: MemoryPrekeys },
): Promise<World> {
  const ids = await identities();
  const net = new MemoryNetwork();
  const store = over.store ?? shared?.store ?? new MemoryStore();
  const prekeys = shared?.prekeys ?? new MemoryPrekeys();
  const log: LogLine[] = [];
  const server = await ImServer.start({
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients: clientDirectory(ids),
    heartbeatMs: 0,
    log: (event, fields = {}) => log.push({ event, fields }),
    ...over,
    store,
    prekeys,
  });
  const links: Link[] = [];
  let req = 0;
  const login = async (user: User): Promise<Link> => {
    const { channel } = await loginToServer({
      user,
      identity: ids[user],
      pinnedServer: ids.serverPinned,
      serverHost: HOST,
      serverPort: server.port,
      ui: new CaptureUi(),
      network: net,
      heartbeatMs: 0,
      reconnect: false,
    });
    const got = new EventLog<ServerToClient>(
      "server message",
      (m) => JSON.stringify(m).slice(0, 120),
    );
    /** Answers awaited, by `req`. */
    const waiting = new Map<number, (m: ServerToClient) => void>();
    const reader = (async () => {
      for await (const ev of channel.events()) {
        if (ev.kind !== "message") continue;
        got.push(ev.msg);
        if (ev.msg.req !== undefined) waiting.get(ev.msg.req)?.(ev.msg);
      }
    })();
    let closed = false;
    const link: Link = {
      user,
      got,
      send: (m) => channel.send(m),
      async request(m) {
        const n = ++req;
        const answer = new Promise<ServerToClient>((resolve, reject) => {
          const timer = setTimeout(() => {
            waiting.delete(n);
            reject(new Error(`no answer to ${JSON.stringify(m).slice(0, 80)}`));
          }, WAIT_MS);
          waiting.set(n, (a) => {
            clearTimeout(timer);
            waiting.delete(n);
            resolve(a);
          });
        });
        await channel.send({ ...m, req: n });
        return await answer;
      },
      all: <T extends ServerToClient["t"]>(t: T) =>
        got.events.filter((m) => m.t === t) as Answer<T>[],
      async nth<T extends ServerToClient["t"]>(t: T, n: number) {
        for (;;) {
          const of = link.all(t);
          if (of.length >= n) return of[n - 1]!;
          await got.waitFor((m) => m.t === t, got.mark);
        }
      },
      async roundTrip() {
        const a = await link.request({ t: "list" });
        assert.equal(a.t, "users");
      },
      async close() {
        if (closed) return;
        closed = true;
        channel.abort("done");
        await reader;
      },
    };
    links.push(link);
    return link;
  };
  return {
    ids,
    server,
    store,
    prekeys,
    log,
    login,
    async close() {
      for (const l of links) await l.close();
      await server.close();
      if (!shared) {
        await store.close();
        await prekeys.close();
      }
    },
  };
}

/** Run `body` in a fresh world, closed afterwards. */
async function inWorld(
  body: (w: World) => Promise<void>,
  over: Partial<ServerOptions> = {},
): Promise<void> {
  const w = await world(over);
  try {
    await body(w);
  } finally {
    await w.close();
  }
}

const NOW = () => Date.now();
const b64 = (b: Uint8Array) => b.toBase64();

/** What `publish` carries, signed by `signer` (default the user's own key). */
interface KeySet {
  ik: Uint8Array;
  identityKey: string;
  signedPrekey: string;
  oneTimePrekeys: string[];
}

const mailIdentities = new WeakMap<
  Identities,
  Map<string, { ik: Uint8Array; ic: Uint8Array }>
>();

async function keySet(
  ids: Identities,
  user: User,
  o: {
    signer?: PrivateIdentity;
    ik?: Uint8Array;
    spkCreated?: number;
    spkId?: number;
    opkIds?: number[];
    /** Sign the SPK_CERT over this identity key instead. */
    spkUnder?: Uint8Array;
  } = {},
): Promise<KeySet> {
  const signer = o.signer ?? ids[user];
  const created = o.spkCreated ?? NOW();
  // One identity per user and key set of ids, as a client keeps it: a new
  // IK_CERT would drop the one-time prekeys held (Prekeys.publish).
  const own = o.signer === undefined && o.ik === undefined;
  const cached = own ? mailIdentities.get(ids)?.get(user) : undefined;
  const ik = o.ik ?? cached?.ik ?? randomBytes(32);
  const ic = cached?.ic ?? await makeIdentityCert(signer, user, ik, created);
  if (own && !cached) {
    const m = mailIdentities.get(ids) ?? new Map();
    m.set(user, { ik, ic });
    mailIdentities.set(ids, m);
  }
  const pc = await makePrekeyCert(
    signer,
    user,
    o.spkUnder ?? ik,
    o.spkId ?? 1,
    randomBytes(32),
    created,
    created + 30 * DAY_MS,
  );
  return {
    ik,
    identityKey: b64(ic),
    signedPrekey: b64(pc),
    oneTimePrekeys: (o.opkIds ?? []).map((id) =>
      b64(encodeOneTimePrekey(id, randomBytes(32)))
    ),
  };
}

const publishOf = (
  k: Omit<KeySet, "ik">,
): Extract<ClientToServer, { t: "publish" }> => ({
  t: "publish",
  identityKey: k.identityKey,
  signedPrekey: k.signedPrekey,
  oneTimePrekeys: k.oneTimePrekeys,
});

const ids1 = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => from + i);

/**
 * `to` logs in once to publish its keys and leaves; then A logs in.
 * @returns A's link, ready to write to `to`, who is offline with a mailbox
 */
async function senderToOffline(w: World, to: User): Promise<Link> {
  const r = await w.login(to);
  await publish(w, r);
  await r.close();
  return await w.login("A");
}

/** Publish `user`'s keys through its link; asserts `published`. */
async function publish(
  w: World,
  l: Link,
  o: Parameters<typeof keySet>[2] = {},
): Promise<KeySet> {
  const k = await keySet(w.ids, l.user, o);
  const a = await l.request(publishOf(k));
  assert.equal(a.t, "published", JSON.stringify(a));
  return k;
}

/**
 * A `MAIL` with the layout of PROTOCOL.md 9.3 that the server can check
 * (it can check no more): a ciphertext of one bucket (64) and a tag of
 * random bytes. Byte 0 of the ciphertext carries `n`.
 */
function mailBytes(
  sender: string,
  recipient: string,
  n = 0,
  o: { msgId?: Uint8Array; bucket?: number } = {},
): { mail: Uint8Array; msgId: Uint8Array } {
  const msgId = o.msgId ?? randomBytes(16);
  const ciphertext = randomBytes(o.bucket ?? 64);
  new DataView(ciphertext.buffer).setUint32(0, n);
  const mail = new ByteWriter().u8(1).bytes8(utf8(sender)).bytes8(
    utf8(recipient),
  ).bytes(msgId).u64(BigInt(NOW())).u32(1).u32(0).bytes(randomBytes(32))
    .bytes(randomBytes(32)).bytes(ciphertext).bytes(randomBytes(32)).finish();
  return { mail, msgId };
}

/** The number a {@link mailBytes} mail carries, read back from a `mail` push. */
function numberOf(push: Answer<"mail">): number {
  const mail = Uint8Array.fromBase64(push.mail);
  const at = 1 + 1 + push.from.length + 1 + 1 + 16 + 8 + 4 + 4 + 32 + 32;
  return new DataView(mail.buffer).getUint32(at);
}

const sendOf = (to: string, mail: Uint8Array): ClientToServer => ({
  t: "send",
  to,
  mail: b64(mail),
});

function assertError(a: ServerToClient, code: string): void {
  assert.equal(a.t, "error", JSON.stringify(a));
  assert.equal((a as Answer<"error">).code, code, JSON.stringify(a));
}

/** Send `n` mails from `from` to `to`, pipelined; every answer is `stored`. */
async function sendMany(
  from: Link,
  to: string,
  n: number,
): Promise<Uint8Array[]> {
  const ids: Uint8Array[] = [];
  for (let start = 0; start < n; start += 100) {
    const answers: Promise<ServerToClient>[] = [];
    for (let i = start; i < Math.min(n, start + 100); i++) {
      const { mail, msgId } = mailBytes(from.user, to, i);
      ids.push(msgId);
      answers.push(from.request(sendOf(to, mail)));
    }
    for (const a of await Promise.all(answers)) {
      assert.equal(a.t, "receipt", JSON.stringify(a));
    }
  }
  return ids;
}

const proofOf = (seq: number) => b64(new Uint8Array(32).fill(seq & 0xff));

// ---------------------------------------------------------------- publish

Deno.test("publish: keys signed by the user's enrolled key are held, and keys answers them with the enrolled RSA key and no one-time prekey", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    const a = await w.login("A");
    const k = await keySet(w.ids, "B", { opkIds: [1, 2, 3] });
    const ans = await b.request(publishOf(k));
    assert.deepEqual({ ...ans, req: undefined }, {
      t: "published",
      oneTimePrekeys: 3,
      req: undefined,
    });
    const bundle = await a.request({ t: "keys", user: "B" });
    assert.equal(bundle.t, "bundle");
    const bd = bundle as Answer<"bundle">;
    assert.equal(bd.user, "B");
    assert.equal(bd.identity, b64(w.ids.B.publicIdentity.publicDer));
    assert.equal(bd.identityKey, k.identityKey);
    assert.equal(bd.signedPrekey, k.signedPrekey);
    assert.equal(bd.oneTimePrekey, "");
    assert.equal(await w.prekeys.count("B"), 3, "keys took none");
  });
});

Deno.test("publish is refused bad-keys, holding nothing new: a signature by another key, another user's certificates, a prekey under another identity key, an older signed prekey, bytes that do not decode", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    const a = await w.login("A");
    const first = await publish(w, b, { spkCreated: NOW(), opkIds: [1] });
    const refused: Array<[string, ClientToServer]> = [
      [
        "certificates naming B signed with A's key",
        publishOf(await keySet(w.ids, "B", { signer: w.ids.A })),
      ],
      [
        "A's own genuine certificates, published by B",
        publishOf(await keySet(w.ids, "A")),
      ],
      [
        "a signed prekey certified under another identity key",
        publishOf(await keySet(w.ids, "B", { spkUnder: randomBytes(32) })),
      ],
      [
        "a signed prekey older than the one held",
        publishOf(
          await keySet(w.ids, "B", { spkCreated: NOW() - DAY_MS, spkId: 2 }),
        ),
      ],
      ["an identity key that is not base64", {
        ...publishOf(first),
        identityKey: "@@@",
      }],
      ["a truncated identity certificate", {
        ...publishOf(first),
        identityKey: b64(Uint8Array.fromBase64(first.identityKey).slice(0, 40)),
      }],
      ["a one-time prekey of 35 bytes", {
        ...publishOf(first),
        oneTimePrekeys: [b64(new Uint8Array(35).fill(1))],
      }],
    ];
    for (const [what, m] of refused) {
      assertError(await b.request(m), "bad-keys");
      const held = await a.request({ t: "keys", user: "B" }) as Answer<
        "bundle"
      >;
      assert.equal(held.identityKey, first.identityKey, what);
      assert.equal(held.signedPrekey, first.signedPrekey, what);
    }
    assert.equal(await w.prekeys.count("B"), 1);
  });
});

Deno.test("publish is refused too-many-prekeys past 100 in one message or 200 held, and the count stays", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    const k = await keySet(w.ids, "B", { opkIds: ids1(1, 101) });
    assertError(await b.request(publishOf(k)), "too-many-prekeys");
    assert.equal(await w.prekeys.count("B"), 0);
    await publish(w, b, { opkIds: ids1(1, 100) });
    const full = await b.request(
      publishOf(await keySet(w.ids, "B", { opkIds: ids1(101, 100) })),
    );
    assert.deepEqual(full.t === "published" && full.oneTimePrekeys, 200);
    const over = await keySet(w.ids, "B", { opkIds: [201] });
    assertError(await b.request(publishOf(over)), "too-many-prekeys");
    assert.equal(await w.prekeys.count("B"), 200);
  });
});

// ------------------------------------------------------------ fetch, keys

Deno.test("fetch hands out each one-time prekey once, to two fetches at once too, then none while the signed prekey carries on", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    const k = await publish(w, b, { opkIds: [1, 2, 3] });
    const a = await w.login("A");
    const c = await w.login("C");
    const [fa, fc] = await Promise.all([
      a.request({ t: "fetch", user: "B" }),
      c.request({ t: "fetch", user: "B" }),
    ]) as Answer<"bundle">[];
    assert.equal(fa!.t, "bundle");
    assert.equal(fc!.t, "bundle");
    assert.notEqual(fa!.oneTimePrekey, fc!.oneTimePrekey);
    const third = await a.request({ t: "fetch", user: "B" }) as Answer<
      "bundle"
    >;
    const handed = [fa!, fc!, third].map((x) => x.oneTimePrekey);
    assert.deepEqual(new Set(handed), new Set(k.oneTimePrekeys));
    for (let i = 0; i < 2; i++) {
      const none = await c.request({ t: "fetch", user: "B" }) as Answer<
        "bundle"
      >;
      assert.equal(none.t, "bundle");
      assert.equal(none.oneTimePrekey, "");
      assert.equal(none.signedPrekey, k.signedPrekey);
      assert.equal(none.identity, b64(w.ids.B.publicIdentity.publicDer));
    }
  });
});

Deno.test("fetch, keys and send answer no-mailbox alike for a user who never published and a name the server does not know", async () => {
  await inWorld(async (w) => {
    const a = await w.login("A");
    for (const m of [{ t: "fetch" }, { t: "keys" }, { t: "send" }] as const) {
      const answers = [];
      for (const user of ["C", "Zed"]) {
        const msg: ClientToServer = m.t === "send"
          ? sendOf(user, mailBytes("A", user).mail)
          : { t: m.t, user };
        const ans = await a.request(msg);
        assertError(ans, "no-mailbox");
        answers.push({
          ...ans,
          req: 0,
          message: (ans as Answer<"error">).message.replace(user, "X"),
        });
      }
      assert.deepEqual(answers[0], answers[1], m.t);
    }
  });
});

Deno.test("prekeys-low is pushed once when the one-time prekeys drop below 20, and again only after a publish lifted them", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b, { opkIds: ids1(1, 21) });
    const a = await w.login("A");
    await a.request({ t: "fetch", user: "B" }); // 20 left
    await b.roundTrip();
    assert.equal(b.all("prekeys-low").length, 0, "20 is not low");
    await a.request({ t: "fetch", user: "B" }); // 19
    assert.deepEqual((await b.nth("prekeys-low", 1)).left, 19);
    await a.request({ t: "fetch", user: "B" }); // 18
    await b.roundTrip();
    assert.equal(b.all("prekeys-low").length, 1, "once per drop");
    await publish(w, b, { opkIds: ids1(100, 10), spkCreated: NOW() + 1 });
    for (let i = 0; i < 9; i++) await a.request({ t: "fetch", user: "B" });
    assert.deepEqual((await b.nth("prekeys-low", 2)).left, 19);
  });
});

// ------------------------------------------------------------------- send

Deno.test("send: a sealed mail is stored, answered stored with its id, and its record is 0x01 || MAIL in the recipient's log", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    const ikB = await generateX25519(false), spkB = await generateX25519(false);
    await publish(w, b, { ik: ikB.publicRaw });
    const a = await w.login("A");
    const sealed = await sealMail({
      sender: "A",
      recipient: "B",
      senderFingerprint: w.ids.A.fingerprintBytes,
      recipientFingerprint: w.ids.B.fingerprintBytes,
      senderIdentity: await generateX25519(false),
      recipientIdentityKey: ikB.publicRaw,
      signedPrekey: { id: 1, key: spkB.publicRaw },
      text: "hello, later",
      time: NOW(),
    });
    const before = NOW();
    const ans = await a.request(sendOf("B", sealed.mail));
    assert.equal(ans.t, "receipt", JSON.stringify(ans));
    const r = ans as Answer<"receipt">;
    assert.deepEqual({ ...r, at: 0 }, {
      t: "receipt",
      seq: 0,
      id: mailIdHex(sealed.msgId),
      to: "B",
      status: "stored",
      at: 0,
      proof: "",
      req: r.req,
    });
    assert.ok(r.at >= before);
    const [rec] = await w.store.read("B");
    assert.equal(rec!.data[0], MAIL_RECORD);
    assert.deepEqual(rec!.data.subarray(1), sealed.mail);
  });
});

/** A {@link MemoryStore} whose disk is full: every append fails. */
class FullDisk extends MemoryStore {
  override append(): Promise<number> {
    return Promise.reject(new Error("database or disk is full"));
  }
}

Deno.test("send is answered stored only once the append committed: when the store cannot commit, the sender gets store-failed and no receipt, and its link goes on", async () => {
  const store = new FullDisk();
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    const a = await w.login("A");
    const ans = await a.request(sendOf("B", mailBytes("A", "B").mail));
    assertError(ans, "store-failed");
    assert.equal(a.all("receipt").length, 0);
    assert.equal((await a.request({ t: "keys", user: "B" })).t, "bundle");
    assert.ok(w.log.some((l) => l.event === "mail-store-failed"));
  }, { store });
  await store.close();
});

/** A store whose reads fail while `broken` is set. */
class BadReads extends MemoryStore {
  broken = false;
  override read(...a: Parameters<MemoryStore["read"]>) {
    return this.broken
      ? Promise.reject(new Error("disk I/O error"))
      : super.read(...a);
  }
}

Deno.test("a stream whose store fails stops with mailbox-failed, keeps the log, and a new mailbox on the same link streams it", async () => {
  const store = new BadReads();
  await inWorld(async (w) => {
    const a = await senderToOffline(w, "B");
    await sendMany(a, "B", 3);
    const b = await w.login("B");
    store.broken = true;
    await b.send({ t: "mailbox", window: 256 });
    const e = await b.nth("error", 1);
    assert.ok(
      e.t === "error" && e.code === "mailbox-failed",
      JSON.stringify(e),
    );
    store.broken = false;
    assert.equal((await store.read("B")).length, 3, "the log is kept");
    await b.send({ t: "mailbox", window: 256 });
    assert.equal((await b.nth("synced", 1)).count, 3);
    assert.equal(b.all("mail").length, 3);
  }, { store });
  await store.close();
});

Deno.test("send is refused bad-mail, storing nothing, for a header naming another sender, another recipient than to, and bytes that are not a MAIL", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    const c = await w.login("C");
    await publish(w, c);
    const a = await w.login("A");
    const cases: ClientToServer[] = [
      sendOf("B", mailBytes("C", "B").mail), // spoofed sender
      sendOf("B", mailBytes("A", "C").mail), // sealed for C, sent to B
      sendOf("C", mailBytes("A", "B").mail), // sealed for B, sent to C
      { t: "send", to: "B", mail: "not base64!" },
      sendOf("B", mailBytes("A", "B").mail.slice(0, 120)), // truncated
      sendOf("B", mailBytes("A", "B", 0, { bucket: 100 }).mail), // no bucket
    ];
    for (const m of cases) assertError(await a.request(m), "bad-mail");
    assert.deepEqual(await w.store.usage("B"), { count: 0, bytes: 0 });
    assert.deepEqual(await w.store.usage("C"), { count: 0, bytes: 0 });
  });
});

Deno.test("send is refused mailbox-full at the recipient's record count or bytes, the recipient's log unchanged", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    const a = await w.login("A");
    await sendMany(a, "B", 2);
    const before = await w.store.read("B");
    assertError(
      await a.request(sendOf("B", mailBytes("A", "B").mail)),
      "mailbox-full",
    );
    assert.deepEqual(await w.store.read("B"), before);
  }, { mailMaxCount: 2 });
  const one = 1 + mailBytes("A", "B").mail.length;
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    const a = await w.login("A");
    await sendMany(a, "B", 2);
    assertError(
      await a.request(sendOf("B", mailBytes("A", "B").mail)),
      "mailbox-full",
    );
    assert.deepEqual(await w.store.usage("B"), { count: 2, bytes: 2 * one });
  }, { mailMaxBytes: 3 * one - 1 });
});

Deno.test("receipts waiting in a log do not count towards mailbox-full, and are appended to a full one", async () => {
  await inWorld(async (w) => {
    const a = await w.login("A");
    await publish(w, a);
    const b = await w.login("B");
    await publish(w, b);
    await sendMany(b, "A", 2);
    await a.send({ t: "mailbox", window: 16 });
    await a.nth("synced", 1);
    const [m1, m2] = a.all("mail");
    await a.send({
      t: "mail-ack",
      upTo: m2!.seq,
      delivered: [
        { seq: m1!.seq, proof: proofOf(1) },
        { seq: m2!.seq, proof: proofOf(2) },
      ],
    });
    await a.roundTrip();
    assert.equal((await w.store.read("B")).length, 2, "two receipts for B");
    await sendMany(a, "B", 2);
    assertError(
      await a.request(sendOf("B", mailBytes("A", "B").mail)),
      "mailbox-full",
    );
    // B's log is full of mail: a receipt for B is still appended.
    await sendMany(b, "A", 1);
    await a.nth("mail", 3);
    const m3 = a.all("mail")[2]!;
    await a.send({
      t: "mail-ack",
      upTo: m3.seq,
      delivered: [{ seq: m3.seq, proof: proofOf(3) }],
    });
    await a.roundTrip();
    const inB = await w.store.read("B");
    assert.equal(inB.length, 5);
    assert.deepEqual(inB.map((r) => r.data[0]), [2, 2, 1, 1, 2]);
  }, { mailMaxCount: 2 });
});

Deno.test("send and fetch share one bucket: past it both are rate-limited while keys still answers", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b, { opkIds: [1] });
    const a = await w.login("A");
    await sendMany(a, "B", 1);
    assert.equal((await a.request({ t: "fetch", user: "B" })).t, "bundle");
    assertError(
      await a.request(sendOf("B", mailBytes("A", "B").mail)),
      "rate-limited",
    );
    assertError(await a.request({ t: "fetch", user: "B" }), "rate-limited");
    assert.equal((await a.request({ t: "keys", user: "B" })).t, "bundle");
    assert.equal((await w.store.read("B")).length, 1);
  }, { requestLimits: { send: { burst: 2, refillMs: 3_600_000 } } });
});

Deno.test("send is refused mail-too-large when the mail push would not fit one record at the frame limit, though the send itself did", async () => {
  const { mail } = mailBytes("A", "B", 0, { bucket: 16_384 });
  // The frame limit leaves room for this `send` but not for its push.
  const sendBytes = RECORD_MIN_BYTES +
    encodeMessage({ ...sendOf("B", mail), req: 99 } as ClientToServer).length;
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    const a = await w.login("A");
    assertError(await a.request(sendOf("B", mail)), "mail-too-large");
    assert.deepEqual(await w.store.usage("B"), { count: 0, bytes: 0 });
    const small = mailBytes("A", "B").mail;
    assert.equal((await a.request(sendOf("B", small))).t, "receipt");
  }, { maxFrameBytes: sendBytes + 8 });
});

// ---------------------------------------------------------------- stream

Deno.test("mailbox streams 1,000 queued mails in order under its window, then synced with the count, then live ones", async () => {
  await inWorld(async (w) => {
    const a = await senderToOffline(w, "B");
    await sendMany(a, "B", 1000);
    const b = await w.login("B");
    const window = 256;
    await b.send({ t: "mailbox", window });
    let acked = 0, handled = 0, maxOutstanding = 0;
    const numbers: number[] = [], seqs: number[] = [];
    while (handled < 1000) {
      const m = await b.nth("mail", handled + 1);
      handled++;
      numbers.push(numberOf(m));
      seqs.push(m.seq);
      assert.equal(m.from, "A");
      maxOutstanding = Math.max(maxOutstanding, handled - acked);
      if (handled - acked >= window / 2) {
        await b.send({ t: "mail-ack", upTo: m.seq, delivered: [] });
        acked = handled;
      }
    }
    assert.deepEqual(numbers, ids1(0, 1000), "in the order sent");
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!);
    assert.ok(maxOutstanding <= window, `outstanding ${maxOutstanding}`);
    const synced = await b.nth("synced", 1);
    assert.equal(synced.count, 1000);
    const syncedAt = b.got.events.indexOf(synced);
    assert.equal(
      b.got.events.slice(0, syncedAt).filter((m) => m.t === "mail").length,
      1000,
      "synced comes after the backlog",
    );
    await b.send({ t: "mail-ack", upTo: seqs.at(-1)!, delivered: [] });
    await sendMany(a, "B", 1);
    const live = await b.nth("mail", 1001);
    assert.ok(live.seq > seqs.at(-1)!);
    assert.equal(b.all("synced").length, 1, "synced once");
  }, { requestLimits: { send: { burst: 2000, refillMs: 1000 } } });
});

Deno.test("mailbox keeps at most window records pushed and not acknowledged: each acknowledgement lets as many more out", async () => {
  await inWorld(async (w) => {
    const a = await senderToOffline(w, "B");
    await sendMany(a, "B", 10);
    const b = await w.login("B");
    await b.send({ t: "mailbox", window: 3 });
    const third = await b.nth("mail", 3);
    await b.roundTrip();
    await b.roundTrip();
    assert.equal(b.all("mail").length, 3, "the window is full");
    assert.equal(b.all("synced").length, 0);
    const first = b.all("mail")[0]!;
    await b.send({ t: "mail-ack", upTo: first.seq, delivered: [] });
    await b.nth("mail", 4);
    await b.roundTrip();
    assert.equal(b.all("mail").length, 4, "one acknowledged, one more");
    await b.send({ t: "mail-ack", upTo: third.seq, delivered: [] });
    await b.nth("mail", 6);
    await b.roundTrip();
    assert.equal(b.all("mail").length, 6);
    for (let n = 6; n < 10; n += 3) {
      const last = b.all("mail").at(-1)!;
      await b.send({ t: "mail-ack", upTo: last.seq, delivered: [] });
      await b.nth("mail", Math.min(10, n + 3));
    }
    assert.equal((await b.nth("synced", 1)).count, 10);
    assert.deepEqual(b.all("mail").map(numberOf), ids1(0, 10));
  });
});

Deno.test("mailbox keeps at most 1 MiB pushed and not acknowledged, whatever the window", async () => {
  await inWorld(async (w) => {
    const a = await senderToOffline(w, "B");
    const sent: Promise<ServerToClient>[] = [];
    for (let i = 0; i < 80; i++) {
      const { mail } = mailBytes("A", "B", i, { bucket: 16_384 });
      sent.push(a.request(sendOf("B", mail)));
    }
    for (const r of await Promise.all(sent)) assert.equal(r.t, "receipt");
    const b = await w.login("B");
    await b.send({ t: "mailbox", window: 256 });
    await b.nth("mail", 1);
    await b.roundTrip();
    await b.roundTrip();
    const out = b.all("mail");
    const bytes = out.reduce(
      (n, m) => n + 1 + Uint8Array.fromBase64(m.mail).length,
      0,
    );
    assert.ok(bytes <= MAX_UNACKED_BYTES, `${bytes} bytes unacknowledged`);
    assert.ok(out.length < 80, `${out.length} pushed`);
    assert.equal(b.all("synced").length, 0);
    await b.send({ t: "mail-ack", upTo: out.at(-1)!.seq, delivered: [] });
    assert.equal((await b.nth("synced", 1)).count, 80);
    assert.deepEqual(b.all("mail").map(numberOf), ids1(0, 80));
  });
});

Deno.test("records not acknowledged are pushed again, in order and with their seqs, at the next mailbox; acknowledged ones never", async () => {
  await inWorld(async (w) => {
    const a = await senderToOffline(w, "B");
    await sendMany(a, "B", 5);
    const b1 = await w.login("B");
    await b1.send({ t: "mailbox", window: 256 });
    assert.equal((await b1.nth("synced", 1)).count, 5);
    const first = b1.all("mail");
    await b1.send({ t: "mail-ack", upTo: first[1]!.seq, delivered: [] });
    await b1.roundTrip();
    await b1.close();

    const b2 = await w.login("B");
    await b2.send({ t: "mailbox", window: 256 });
    assert.equal((await b2.nth("synced", 1)).count, 3);
    assert.deepEqual(
      b2.all("mail").map((m) => [m.seq, m.mail]),
      first.slice(2).map((m) => [m.seq, m.mail]),
    );
    await b2.send({ t: "mail-ack", upTo: first[4]!.seq, delivered: [] });
    await b2.roundTrip();
    await b2.close();

    const b3 = await w.login("B");
    await b3.send({ t: "mailbox", window: 256 });
    assert.equal((await b3.nth("synced", 1)).count, 0);
    await b3.roundTrip();
    assert.equal(b3.all("mail").length, 0);
    assert.deepEqual(await w.store.usage("B"), { count: 0, bytes: 0 });
  });
});

Deno.test("mail-ack is refused bad-ack, with no effect, above what was pushed, below an earlier one, or with a delivered entry out of range or a proof not of 32 bytes", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    assertError(
      await b.request({ t: "mail-ack", upTo: 1, delivered: [] }),
      "bad-ack",
    );
    const a = await w.login("A");
    await sendMany(a, "B", 3);
    await b.send({ t: "mailbox", window: 256 });
    await b.nth("synced", 1);
    const [m1, m2, m3] = b.all("mail");
    assertError(
      await b.request({ t: "mail-ack", upTo: m3!.seq + 1, delivered: [] }),
      "bad-ack",
    );
    assert.equal((await w.store.usage("B")).count, 3, "no effect");
    await b.send({ t: "mail-ack", upTo: m2!.seq, delivered: [] });
    assertError(
      await b.request({ t: "mail-ack", upTo: m1!.seq, delivered: [] }),
      "bad-ack",
    );
    for (
      const delivered of [
        [{ seq: m2!.seq, proof: proofOf(2) }], // acknowledged before
        [{ seq: m3!.seq, proof: b64(new Uint8Array(31)) }],
        [{ seq: m3!.seq, proof: "not base64" }],
        [{ seq: m3!.seq + 1, proof: proofOf(3) }],
      ]
    ) {
      assertError(
        await b.request({ t: "mail-ack", upTo: m3!.seq, delivered }),
        "bad-ack",
      );
    }
    assert.equal((await w.store.usage("B")).count, 1, "m3 is still held");
    await a.roundTrip();
    assert.equal(a.all("receipt").filter((r) => r.seq > 0).length, 0);
    await b.send({ t: "mail-ack", upTo: m3!.seq, delivered: [] });
    await b.roundTrip();
    assert.equal((await w.store.usage("B")).count, 0);
  });
});

Deno.test("mailbox is refused bad-mailbox for a window outside 1..1024 and for a second stream on one link", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    for (const window of [0, 1025, 1.5, -1]) {
      assertError(await b.request({ t: "mailbox", window }), "bad-mailbox");
    }
    await b.send({ t: "mailbox", window: 1 });
    await b.nth("synced", 1);
    assertError(await b.request({ t: "mailbox", window: 1 }), "bad-mailbox");
  });
});

// -------------------------------------------------------------- receipts

Deno.test("a delivered mail-ack puts a receipt in the sender's log: pushed at once to a sender streaming, with the recipient's proof", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    await b.send({ t: "mailbox", window: 16 });
    const a = await w.login("A");
    await a.send({ t: "mailbox", window: 16 });
    await a.nth("synced", 1);
    const [id] = await sendMany(a, "B", 1);
    const m = await b.nth("mail", 1);
    await b.send({
      t: "mail-ack",
      upTo: m.seq,
      delivered: [{ seq: m.seq, proof: proofOf(7) }],
    });
    const r = await a.got.waitFor((x) =>
      x.t === "receipt" && x.status === "delivered"
    ) as Answer<"receipt">;
    assert.deepEqual({ ...r, seq: 1, at: 1 }, {
      t: "receipt",
      seq: 1,
      id: mailIdHex(id!),
      to: "B",
      status: "delivered",
      at: 1,
      proof: proofOf(7),
    });
    assert.ok(r.seq > 0);
    assert.equal((await w.store.usage("B")).count, 0, "B's mail is deleted");
    await a.send({ t: "mail-ack", upTo: r.seq, delivered: [] });
    await a.roundTrip();
    assert.equal((await w.store.usage("A")).count, 0);
  });
});

Deno.test("a delivered receipt for a sender who is offline waits in its log and is pushed at its next mailbox; no receipt without a proof", async () => {
  await inWorld(async (w) => {
    const b = await w.login("B");
    await publish(w, b);
    const a1 = await w.login("A");
    const [id1, id2] = await sendMany(a1, "B", 2);
    await a1.close();
    await b.send({ t: "mailbox", window: 16 });
    await b.nth("synced", 1);
    const [m1, m2] = b.all("mail");
    await b.send({
      t: "mail-ack",
      upTo: m2!.seq,
      delivered: [{ seq: m2!.seq, proof: proofOf(9) }], // m1 was not shown
    });
    await b.roundTrip();
    const a2 = await w.login("A");
    await a2.send({ t: "mailbox", window: 16 });
    assert.equal((await a2.nth("synced", 1)).count, 1);
    const [r] = a2.all("receipt");
    assert.equal(r!.status, "delivered");
    assert.equal(r!.id, mailIdHex(id2!));
    assert.notEqual(r!.id, mailIdHex(id1!));
    assert.equal(r!.proof, proofOf(9));
    assert.ok(m1);
  });
});

Deno.test("the retention sweep at start deletes old records, tells each mail's sender expired, and logs counts, never an id", async () => {
  const clock = { now: Date.now() };
  const now = () => clock.now;
  const shared = {
    store: new MemoryStore({ now }),
    prekeys: new MemoryPrekeys(),
  };
  try {
    const w1 = await world({ now }, shared);
    let id: Uint8Array;
    try {
      const b = await w1.login("B");
      await publish(w1, b);
      const a = await w1.login("A");
      [id] = await sendMany(a, "B", 1) as [Uint8Array];
      // A receipt record in A's own log: it expires without a receipt.
      await shared.store.append(
        "A",
        receiptRecord({
          msgId: randomBytes(16),
          status: "expired",
          recipient: "C",
        }),
      );
    } finally {
      await w1.close();
    }
    clock.now += 31 * DAY_MS;
    const w2 = await world({ now }, shared);
    try {
      const a = await w2.login("A");
      await a.send({ t: "mailbox", window: 16 });
      assert.equal((await a.nth("synced", 1)).count, 1);
      const [r] = a.all("receipt");
      assert.deepEqual({ ...r, seq: 0 }, {
        t: "receipt",
        seq: 0,
        id: mailIdHex(id),
        to: "B",
        status: "expired",
        at: clock.now,
        proof: "",
      });
      assert.deepEqual(await shared.store.usage("B"), { count: 0, bytes: 0 });
      const line = w2.log.find((l) => l.event === "mail-expired");
      assert.deepEqual(line?.fields, { mails: 1, receipts: 1, unreadable: 0 });
      const all = JSON.stringify([...w1.log, ...w2.log]);
      assert.ok(!all.includes(mailIdHex(id)), "no msg_id in the log");
      assert.ok(!all.includes(b64(id)), "no msg_id in the log");
    } finally {
      await w2.close();
    }
  } finally {
    await shared.store.close();
    await shared.prekeys.close();
  }
});

Deno.test("the sweep expires more mail than one batch holds, every one with its expired receipt", async () => {
  const clock = { now: Date.now() };
  const now = () => clock.now;
  const shared = {
    store: new MemoryStore({ now }),
    prekeys: new MemoryPrekeys(),
  };
  try {
    const n = SWEEP_BATCH * 2 + 10;
    await shared.store.appendMany(
      Array.from({ length: n }, (_, i) => ({
        user: "B",
        data: mailRecord(mailBytes("A", "B", i).mail),
      })),
    );
    clock.now += 31 * DAY_MS;
    const w = await world({ now }, shared);
    try {
      const line = w.log.find((l) => l.event === "mail-expired");
      assert.deepEqual(line?.fields, { mails: n, receipts: 0, unreadable: 0 });
      assert.equal((await shared.store.read("B")).length, 0);
      assert.equal((await shared.store.read("A")).length, n);
    } finally {
      await w.close();
    }
  } finally {
    await shared.store.close();
    await shared.prekeys.close();
  }
});

Deno.test("records within the retention survive the sweep at start", async () => {
  const clock = { now: Date.now() };
  const now = () => clock.now;
  const shared = {
    store: new MemoryStore({ now }),
    prekeys: new MemoryPrekeys(),
  };
  try {
    const w1 = await world({ now, mailRetentionDays: 2 }, shared);
    try {
      const b = await w1.login("B");
      await publish(w1, b);
      await sendMany(await w1.login("A"), "B", 1);
    } finally {
      await w1.close();
    }
    clock.now += DAY_MS;
    const w2 = await world({ now, mailRetentionDays: 2 }, shared);
    try {
      const b = await w2.login("B");
      await b.send({ t: "mailbox", window: 16 });
      assert.equal((await b.nth("synced", 1)).count, 1);
      assert.equal(b.all("mail").length, 1);
    } finally {
      await w2.close();
    }
  } finally {
    await shared.store.close();
    await shared.prekeys.close();
  }
});
