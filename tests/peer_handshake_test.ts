/**
 * The peer handshake, rules 4.3 and 4.4: the joiner commits to its values
 * first, the host carries the joiner's ticket, an X25519 exchange
 * authenticated with the peer key, key confirmation both ways, the same
 * short authentication string (SAS) on both sides.
 */
import assert from "node:assert/strict";
import {
  AuthError,
  concat,
  ImError,
  ProtocolError,
  randomBytes,
  RecordError,
  TicketError,
  utf8,
} from "../lib/util/mod.ts";
import { FrameKind } from "../lib/wire/mod.ts";
import {
  deriveDirectionKeys,
  deriveKey,
  HmacSha256,
  Label,
  transcriptHash,
} from "../lib/crypto/mod.ts";
import {
  decodePeerCommit,
  decodePeerHello,
  decodePeerReply,
  encodePeerCommit,
  encodePeerHello,
  encodePeerReply,
  formatSas,
  PEER_VERSION,
  peerCommitment,
  PeerHostHandshake,
  PeerJoinHandshake,
  sealTicket,
  TicketReplayCache,
} from "../lib/proto/mod.ts";
import { RecordOpener, RecordSealer, RecordType } from "../lib/record/mod.ts";
import {
  assertRejectsIm,
  assertThrowsIm,
  captureEphemerals,
  flipBit,
  loginInMemory,
  type LoginPair,
  peerInMemory,
  peerSetup,
  seededRandom,
  x25519,
} from "./_helpers.ts";

let logins: Promise<{ a: LoginPair; b: LoginPair; c: LoginPair }> | undefined;

/** One login each for A, B and C, shared by the tests of this file. */
function users() {
  logins ??= (async () => {
    const [a, b, c] = await Promise.all(
      ["A", "B", "C"].map((u) => loginInMemory(u)),
    );
    return { a: a!, b: b!, c: c! };
  })();
  return logins;
}

/** A setup where the host A grants B. */
async function aToB() {
  const { b } = await users();
  return peerSetup("A", b, "B");
}

const SAS = /^\d{3} \d{3} \d{3} \d{3}$/;

/** The joiner of `s` commits to the host of `s`; the host's PEER_HELLO. */
async function commitAndHello(
  s: { host: PeerHostHandshake; join: PeerJoinHandshake },
): Promise<Uint8Array> {
  s.host.onCommit(await s.join.commit());
  return s.host.hello();
}

/** A fresh joiner B for host A with `cache`, already committed to `host`. */
async function committedJoiner(
  host: PeerHostHandshake,
  o: {
    self?: string;
    expectedHost?: string;
    keys?: LoginPair;
    cache?: TicketReplayCache;
    now?: () => number;
  } = {},
): Promise<PeerJoinHandshake> {
  const { b } = await users();
  const join = new PeerJoinHandshake({
    self: o.self ?? "B",
    expectedHost: o.expectedHost ?? "A",
    ticketKeys: (o.keys ?? b).client.ticketKeys,
    replayCache: o.cache ?? new TicketReplayCache(),
    ...(o.now ? { now: o.now } : {}),
  });
  host.onCommit(await join.commit());
  return join;
}

/** pth as PROTOCOL.md "Peer sessions" writes it. */
function pthOf(
  ticketId: Uint8Array,
  commit: Uint8Array,
  hello: { nonce: Uint8Array; ephemeral: Uint8Array },
  reply: { nonce: Uint8Array; ephemeral: Uint8Array },
): Promise<Uint8Array> {
  return transcriptHash(Label.PEER_TRANSCRIPT, [
    new Uint8Array([PEER_VERSION]),
    ticketId,
    utf8("A"),
    utf8("B"),
    commit,
    hello.nonce,
    hello.ephemeral,
    reply.nonce,
    reply.ephemeral,
  ]);
}

Deno.test("both peers finish with the same SAS and records flow h2j and j2h", async () => {
  const s = await aToB();
  const { host, joiner } = await peerInMemory(s);
  assert.match(host.sas, SAS);
  assert.equal(host.sas, joiner.sas);
  assert.equal(host.peer, "B");
  assert.equal(joiner.peer, "A");
  const h2j = host.sealer.seal(RecordType.DATA, utf8("hi B"));
  assert.deepEqual(joiner.opener.open(h2j).plaintext, utf8("hi B"));
  const j2h = joiner.sealer.seal(RecordType.DATA, utf8("hi A"));
  assert.deepEqual(host.opener.open(j2h).plaintext, utf8("hi A"));
  // Rule 2.6 for peers: a record reflected to its sender is refused.
  assertThrowsIm(
    () => host.opener.open(host.sealer.seal(RecordType.DATA, utf8("me"))),
    RecordError,
    "tampered",
  );
  assertThrowsIm(
    () => joiner.opener.open(joiner.sealer.seal(RecordType.DATA, utf8("me"))),
    RecordError,
    "tampered",
  );
  assert.equal(s.cache.size, 1, "the joiner recorded the ticket id");
});

Deno.test("two peer sessions between the same users get different SAS and keys", async () => {
  const one = await peerInMemory(await aToB());
  const two = await peerInMemory(await aToB());
  assert.notEqual(one.host.sas, two.host.sas);
  const rec = one.host.sealer.seal(RecordType.DATA, utf8("x"));
  assertThrowsIm(() => two.joiner.opener.open(rec), RecordError, "tampered");
});

Deno.test("the commitment is TH(peer commit, nonce_b, eph_b), the peer keys are HKDF(peer key || X25519 secret, pth) with the commitment in pth, and the joiner's MAC is keyed from the peer key, as PROTOCOL.md says", async () => {
  const s = await aToB();
  const commitBytes = await s.join.commit();
  s.host.onCommit(commitBytes);
  const { value: helloBytes, pairs } = await captureEphemerals(() =>
    s.host.hello()
  );
  const hello = decodePeerHello(helloBytes);
  const replyBytes = await s.join.onHello(helloBytes);
  const reply = decodePeerReply(replyBytes);
  const commit = decodePeerCommit(commitBytes).commit;
  assert.deepEqual(
    commit,
    await transcriptHash(Label.PEER_COMMIT, [reply.nonce, reply.ephemeral]),
  );
  assert.equal(Label.PEER_COMMIT, "im v1 peer commit");
  const pth = await pthOf(s.ticketId, commit, hello, reply);
  const authKey = await deriveKey(s.peerKey, s.ticketId, Label.PEER_AUTH);
  assert.deepEqual(
    reply.mac,
    new HmacSha256(authKey).mac(concat(utf8("joiner"), pth)),
  );
  const dh = await x25519(pairs[0]!.privateKey, reply.ephemeral);
  const ikm = concat(s.peerKey, dh);
  const h2j = await deriveDirectionKeys(ikm, pth, "h2j");
  const hostFin = await s.host.onReply(replyBytes);
  const fin = new RecordOpener(h2j).open(hostFin);
  assert.equal(fin.type, RecordType.FINISHED);
  assert.deepEqual(fin.plaintext, pth);
  s.host.onFinished(s.join.onFinished(hostFin));
  const sasKey = await deriveKey(ikm, pth, Label.PEER_SAS);
  const sas = formatSas(sasKey);
  assert.equal(s.host.result.sas, sas);
  assert.equal(s.join.result.sas, sas);
  // PROTOCOL.md section 6: the first 8 bytes, big-endian, mod 10^12, 12 digits.
  const u64 = new DataView(sasKey.buffer, sasKey.byteOffset).getBigUint64(0);
  assert.equal(
    sas,
    (u64 % 10n ** 12n).toString().padStart(12, "0").replace(
      /(\d{3})(\d{3})(\d{3})(\d{3})/,
      "$1 $2 $3 $4",
    ),
  );
  // The commitment is bound into pth: with another commitment (or none, as
  // before PEER_COMMIT existed) the same values give another SAS.
  for (
    const other of [
      await pthOf(s.ticketId, flipBit(commit, 0), hello, reply),
      await transcriptHash(Label.PEER_TRANSCRIPT, [
        new Uint8Array([PEER_VERSION]),
        s.ticketId,
        utf8("A"),
        utf8("B"),
        hello.nonce,
        hello.ephemeral,
        reply.nonce,
        reply.ephemeral,
      ]),
    ]
  ) {
    assert.notDeepEqual(other, pth);
    assert.notEqual(
      formatSas(await deriveKey(ikm, other, Label.PEER_SAS)),
      sas,
      "the SAS depends on the commitment",
    );
  }
});

Deno.test("formatSas() reads the first 8 bytes as a big-endian u64, reduces it mod 10^12 and shows 12 zero-padded digits in groups of three", () => {
  assert.equal(formatSas(new Uint8Array(8)), "000 000 000 000");
  // 2^64 - 1 = 18 446 744 073 709 551 615
  assert.equal(formatSas(new Uint8Array(8).fill(0xff)), "073 709 551 615");
  // Big-endian: the last of the 8 bytes is the lowest.
  assert.equal(
    formatSas(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1)),
    "000 000 000 001",
  );
  assert.equal(
    formatSas(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0)), // 2^56
    "594 037 927 936",
  );
  // 10^12 - 1 and 10^12 (0x000000e8d4a51000): the reduction wraps to 0.
  assert.equal(
    formatSas(Uint8Array.of(0, 0, 0, 0xe8, 0xd4, 0xa5, 0x0f, 0xff)),
    "999 999 999 999",
  );
  assert.equal(
    formatSas(Uint8Array.of(0, 0, 0, 0xe8, 0xd4, 0xa5, 0x10, 0x00)),
    "000 000 000 000",
  );
  // Bytes past the eighth do not count, wherever the slice starts.
  const hkdfOut = new Uint8Array(32).fill(0xab);
  const sas = formatSas(hkdfOut);
  assert.equal(sas, formatSas(hkdfOut.subarray(0, 8)));
  assert.equal(formatSas(new Uint8Array(40).fill(0xab).subarray(3, 11)), sas);
  // 0xabababababababab = 12370169555311111083
  assert.equal(sas, "555 311 111 083");
});

Deno.test("formatSas() refuses fewer than 8 bytes instead of padding them", () => {
  for (const n of [0, 5, 7]) {
    assertThrowsIm(
      () => formatSas(new Uint8Array(n)),
      ProtocolError,
      "bad-sas-input",
    );
  }
});

Deno.test("the SAS is no longer biased: the 40-bit reduction of the old code would give other digits for the same bytes", () => {
  // The former code read 5 bytes (up to 1 099 511 627 775) mod 10^12, so the
  // codes below 099 511 627 776 were twice as likely as the others. The new
  // code reads a u64: its codes differ by at most 1 in 18 446 744.
  const b = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0);
  const old = (BigInt("0xffffffffff") % 10n ** 12n).toString().padStart(
    12,
    "0",
  );
  assert.equal(old, "099511627775");
  assert.equal(formatSas(b), "073 692 774 400");
  const counts = 2n ** 64n / 10n ** 12n;
  assert.equal(counts, 18_446_744n);
  assert.ok(1 / Number(counts) < 2 ** -24);
});

// ---------------------------------------------------------------------------
// Strangers and wrong keys (rule 4.3, 4.4)

Deno.test("a stranger who commits to its values and reveals them with a random MAC is refused with peer-auth-failed", async () => {
  for (let i = 0; i < 3; i++) {
    const s = await aToB();
    const nonce = randomBytes(32), ephemeral = randomBytes(32);
    s.host.onCommit(
      encodePeerCommit({ commit: await peerCommitment(nonce, ephemeral) }),
    );
    await s.host.hello();
    const reply = encodePeerReply({ nonce, ephemeral, mac: randomBytes(32) });
    await assertRejectsIm(
      () => s.host.onReply(reply),
      AuthError,
      "peer-auth-failed",
    );
    assert.equal(s.host.state, "failed");
    assertThrowsIm(() => s.host.result, ProtocolError, "not-ready");
  }
});

Deno.test("a stranger's garbage PEER_REPLY is a ProtocolError, never a crash", async () => {
  const kind = (n: number) =>
    concat(new Uint8Array([FrameKind.PEER_REPLY]), randomBytes(n - 1));
  const wrongKind = concat(new Uint8Array([0x99]), randomBytes(96));
  for (
    const bytes of [new Uint8Array(0), kind(1), kind(96), kind(98), wrongKind]
  ) {
    const s = await aToB();
    await commitAndHello(s);
    await assertRejectsIm(() => s.host.onReply(bytes), ProtocolError);
  }
});

Deno.test("a joiner whose ticket holds another peer key cannot authenticate: the host refuses with peer-auth-failed", async () => {
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  // The host holds s.peerKey; the ticket it carries holds a different key.
  const wrongTicket = sealTicket(b.server.ticketKeys, {
    id: s.ticketId,
    host: "A",
    joiner: "B",
    expiresAt: s.expiresAt,
    peerKey: randomBytes(32),
  });
  const host = new PeerHostHandshake({
    self: "A",
    joiner: "B",
    peerKey: s.peerKey,
    ticket: wrongTicket,
    ticketId: s.ticketId,
  });
  host.onCommit(await s.join.commit());
  const reply = await s.join.onHello(await host.hello());
  await assertRejectsIm(
    () => host.onReply(reply),
    AuthError,
    "peer-auth-failed",
  );
});

Deno.test("the joiner refuses a FINISHED from a host that does not hold the peer key (a stolen ticket raced ahead)", async () => {
  const s = await aToB();
  // An eavesdropper replays the ticket with its own ephemeral key before A does.
  const commit = await s.join.commit();
  s.host.onCommit(commit);
  const stolen = decodePeerHello(await s.host.hello());
  const thief = new PeerHostHandshake({
    self: "A",
    joiner: "B",
    peerKey: randomBytes(32),
    ticket: stolen.ticket,
    ticketId: s.ticketId,
  });
  thief.onCommit(commit);
  const reply = await s.join.onHello(await thief.hello());
  await assertRejectsIm(
    () => thief.onReply(reply),
    AuthError,
    "peer-auth-failed",
  );
  // Whatever the thief sends as FINISHED, B refuses it.
  const fake = new RecordSealer({
    enc: randomBytes(32),
    iv: randomBytes(32),
    mac: randomBytes(32),
  })
    .seal(RecordType.FINISHED, randomBytes(32));
  assertThrowsIm(() => s.join.onFinished(fake), AuthError, "peer-auth-failed");
  assert.equal(s.join.state, "failed");
  assertThrowsIm(() => s.join.result, ProtocolError, "not-ready");
});

Deno.test("a ticket for another joiner is refused: C cannot open B's ticket; a ticket naming B is misbound for C", async () => {
  const { b, c } = await users();
  const s = peerSetup("A", b, "B");
  const joinC = await committedJoiner(s.host, { self: "C", keys: c });
  await assertRejectsIm(
    async () => joinC.onHello(await s.host.hello()),
    TicketError,
    "bad-ticket",
  );
  assert.equal(joinC.state, "failed");

  // Sealed with C's keys but naming B as the joiner.
  const t = peerSetup("A", c, "B");
  const joinC2 = await committedJoiner(t.host, { self: "C", keys: c });
  await assertRejectsIm(
    async () => joinC2.onHello(await t.host.hello()),
    TicketError,
    "misbound",
  );
});

Deno.test("a joiner told to join another host refuses the ticket as misbound", async () => {
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  const join = await committedJoiner(s.host, { expectedHost: "C", keys: b });
  await assertRejectsIm(
    async () => join.onHello(await s.host.hello()),
    TicketError,
    "misbound",
  );
});

Deno.test("an expired ticket is refused by the joiner", async () => {
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  const join = await committedJoiner(s.host, {
    keys: b,
    now: () => s.expiresAt + 1,
  });
  await assertRejectsIm(
    async () => join.onHello(await s.host.hello()),
    TicketError,
    "expired",
  );
});

Deno.test("a replayed PEER_HELLO to the same joiner is refused as replayed", async () => {
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  const hello = await commitAndHello(s);
  await s.join.onHello(hello);
  const again = new PeerJoinHandshake({
    self: "B",
    expectedHost: "A",
    ticketKeys: b.client.ticketKeys,
    replayCache: s.cache,
  });
  await again.commit();
  await assertRejectsIm(() => again.onHello(hello), TicketError, "replayed");
  assert.equal(again.state, "failed");
  // The same ticket with a fresh nonce and ephemeral key is a replay too.
  const m = decodePeerHello(hello);
  const otherEph =
    decodePeerHello(await commitAndHello(await aToB())).ephemeral;
  const fresh = encodePeerHello({
    ...m,
    nonce: randomBytes(32),
    ephemeral: otherEph,
  });
  const third = new PeerJoinHandshake({
    self: "B",
    expectedHost: "A",
    ticketKeys: b.client.ticketKeys,
    replayCache: s.cache,
  });
  await third.commit();
  await assertRejectsIm(() => third.onHello(fresh), TicketError, "replayed");
});

// ---------------------------------------------------------------------------
// Man in the middle (rule 4.4)

/**
 * Relay a whole peer handshake through `edit`, which may change the
 * joiner's commitment, the host's hello or the joiner's reply. Returns how
 * it ended: the first error, or both SAS when both sides finished.
 */
async function relay(
  s: Awaited<ReturnType<typeof aToB>>,
  edit: {
    commit?: (b: Uint8Array) => Uint8Array;
    hello?: (b: Uint8Array) => Uint8Array;
    reply?: (b: Uint8Array) => Uint8Array;
  },
): Promise<{ error: unknown } | { hostSas: string; joinSas: string }> {
  try {
    s.host.onCommit((edit.commit ?? ((b) => b))(await s.join.commit()));
    const hello = (edit.hello ?? ((b) => b))(await s.host.hello());
    const reply = (edit.reply ?? ((b) => b))(await s.join.onHello(hello));
    const hostFin = await s.host.onReply(reply);
    s.host.onFinished(s.join.onFinished(hostFin));
    return { hostSas: s.host.result.sas, joinSas: s.join.result.sas };
  } catch (error) {
    return { error };
  }
}

/** Rule 4.4: a changed value either stops the handshake or shows in the SAS. */
function assertDetected(
  outcome: Awaited<ReturnType<typeof relay>>,
  what: string,
  code?: string,
): void {
  if ("error" in outcome) {
    assert.ok(outcome.error instanceof AuthError, `${what}: ${outcome.error}`);
    if (code) assert.equal(outcome.error.code, code, what);
  } else {
    assert.notEqual(
      outcome.hostSas,
      outcome.joinSas,
      `${what}: both finished with the same SAS`,
    );
  }
}

/** An X25519 public key nobody in the test holds the private half of. */
async function strangerEphemeral(): Promise<Uint8Array> {
  return decodePeerHello(await commitAndHello(await aToB())).ephemeral;
}

Deno.test("a man in the middle who swaps the host's ephemeral key (eph_a) or nonce is detected: the joiner's MAC stops it", async () => {
  const mallory = await strangerEphemeral();
  for (
    const [what, hello] of [
      [
        "eph_a",
        (b: Uint8Array) =>
          encodePeerHello({ ...decodePeerHello(b), ephemeral: mallory }),
      ],
      [
        "nonce_a",
        (b: Uint8Array) =>
          encodePeerHello({ ...decodePeerHello(b), nonce: randomBytes(32) }),
      ],
    ] as const
  ) {
    const outcome = await relay(await aToB(), { hello });
    assertDetected(outcome, what, "peer-auth-failed");
    assert.ok("error" in outcome, `${what}: the handshake stops`);
  }
});

Deno.test("a man in the middle who swaps the joiner's revealed eph_b or nonce_b, or its commitment, is stopped by the commitment (commit-mismatch)", async () => {
  const mallory = await strangerEphemeral();
  const edits: [string, Parameters<typeof relay>[1]][] = [
    ["eph_b", {
      reply: (b) =>
        encodePeerReply({ ...decodePeerReply(b), ephemeral: mallory }),
    }],
    ["nonce_b", {
      reply: (b) =>
        encodePeerReply({ ...decodePeerReply(b), nonce: randomBytes(32) }),
    }],
    ["commit", { commit: (b) => flipBit(b, 8 + 5) }],
  ];
  for (const [what, edit] of edits) {
    const outcome = await relay(await aToB(), edit);
    assertDetected(outcome, what, "commit-mismatch");
    assert.ok("error" in outcome, `${what}: the handshake stops`);
  }
  // Control: an untouched relay finishes with equal SAS.
  const clean = await relay(await aToB(), {});
  assert.ok(!("error" in clean) && clean.hostSas === clean.joinSas);
});

Deno.test("a joiner whose PEER_REPLY does not open its PEER_COMMIT is refused with commit-mismatch, even with a valid MAC for the values it reveals", async () => {
  // The joiner holds the peer key (a malicious server can seal itself a
  // ticket), so it can MAC any values; the commitment is what holds it to
  // the ones it chose before it saw PEER_HELLO.
  const s = await aToB();
  s.host.onCommit(
    encodePeerCommit({
      commit: await peerCommitment(randomBytes(32), randomBytes(32)),
    }),
  );
  const hello = decodePeerHello(await s.host.hello());
  const nonce = randomBytes(32), ephemeral = await strangerEphemeral();
  const commit = decodePeerCommit(
    encodePeerCommit({ commit: await peerCommitment(nonce, ephemeral) }),
  ).commit;
  const authKey = await deriveKey(s.peerKey, s.ticketId, Label.PEER_AUTH);
  const mac = new HmacSha256(authKey).mac(
    concat(
      utf8("joiner"),
      await pthOf(s.ticketId, commit, hello, { nonce, ephemeral }),
    ),
  );
  const err = await assertRejectsIm(
    () => s.host.onReply(encodePeerReply({ nonce, ephemeral, mac })),
    AuthError,
    "commit-mismatch",
  );
  assert.match(err.message, /does not match its PEER_COMMIT/);
  assert.equal(s.host.state, "failed");
});

Deno.test("SAS grinding: a malicious server that finishes with B first, then tries new PEER_REPLY values towards A after seeing A's PEER_HELLO, is refused by the commitment", async () => {
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  // The server made the peer key and can derive B's ticket keys: it can play
  // host towards B and joiner towards A, and MAC anything.
  const mitmHost = new PeerHostHandshake({
    self: "A",
    joiner: "B",
    peerKey: s.peerKey,
    ticket: s.ticket,
    ticketId: s.ticketId,
  });
  // 1. server <-> B first: SAS_B is fixed.
  mitmHost.onCommit(await s.join.commit());
  const toB = await s.join.onHello(await mitmHost.hello());
  mitmHost.onFinished(s.join.onFinished(await mitmHost.onReply(toB)));
  const sasB = s.join.result.sas;
  // 2. server <-> A: it must commit before A's PEER_HELLO ...
  const committed = {
    nonce: randomBytes(32),
    ephemeral: await strangerEphemeral(),
  };
  const commit = await peerCommitment(committed.nonce, committed.ephemeral);
  s.host.onCommit(encodePeerCommit({ commit }));
  const hello = decodePeerHello(await s.host.hello());
  // ... and only then could it search for values whose SAS_A equals SAS_B.
  // Any such values differ from the committed ones; A refuses them before
  // it looks at the MAC, so the search is worthless.
  const authKey = await deriveKey(s.peerKey, s.ticketId, Label.PEER_AUTH);
  const ground = { nonce: randomBytes(32), ephemeral: committed.ephemeral };
  const mac = new HmacSha256(authKey).mac(
    concat(utf8("joiner"), await pthOf(s.ticketId, commit, hello, ground)),
  );
  await assertRejectsIm(
    () => s.host.onReply(encodePeerReply({ ...ground, mac })),
    AuthError,
    "commit-mismatch",
  );
  // A will not take a second try in this handshake either: the first error stays.
  const honest = new HmacSha256(authKey).mac(
    concat(utf8("joiner"), await pthOf(s.ticketId, commit, hello, committed)),
  );
  await assertRejectsIm(
    () => s.host.onReply(encodePeerReply({ ...committed, mac: honest })),
    AuthError,
    "commit-mismatch",
  );
  assert.match(sasB, SAS);
});

Deno.test("a malicious server that knows the peer key and runs two handshakes in the middle is exposed: the SAS differ", async () => {
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  // The server made the peer key and can derive B's ticket keys: it can play
  // joiner towards A and host towards B.
  const mitmJoin = new PeerJoinHandshake({
    self: "B",
    expectedHost: "A",
    ticketKeys: b.server.ticketKeys,
    replayCache: new TicketReplayCache(),
  });
  const mitmHost = new PeerHostHandshake({
    self: "A",
    joiner: "B",
    peerKey: s.peerKey,
    ticket: s.ticket,
    ticketId: s.ticketId,
  });
  // A <-> server
  s.host.onCommit(await mitmJoin.commit());
  const toA = await mitmJoin.onHello(await s.host.hello());
  const aFin = await s.host.onReply(toA);
  s.host.onFinished(mitmJoin.onFinished(aFin));
  // server <-> B
  mitmHost.onCommit(await s.join.commit());
  const toB = await s.join.onHello(await mitmHost.hello());
  const mFin = await mitmHost.onReply(toB);
  mitmHost.onFinished(s.join.onFinished(mFin));
  assert.notEqual(
    s.host.result.sas,
    s.join.result.sas,
    "A and B see different SAS",
  );
});

// ---------------------------------------------------------------------------
// Key confirmation

Deno.test("the host refuses a joiner FINISHED with the wrong transcript, the wrong type or from another session", async () => {
  for (
    const variant of [
      "wrong transcript",
      "DATA type",
      "another session",
    ] as const
  ) {
    const s = await aToB();
    const hostFin = await s.host.onReply(
      await s.join.onHello(await commitAndHello(s)),
    );
    s.join.onFinished(hostFin);
    const r = s.join.result;
    let bad: Uint8Array;
    if (variant === "wrong transcript") {
      bad = r.sealer.seal(RecordType.FINISHED, randomBytes(32));
    } else if (variant === "DATA type") {
      bad = r.sealer.seal(RecordType.DATA, utf8("finished?"));
    } else {bad = (await peerInMemory(await aToB())).joiner.sealer.seal(
        RecordType.FINISHED,
        randomBytes(32),
      );}
    assertThrowsIm(
      () => s.host.onFinished(bad),
      AuthError,
      "peer-auth-failed",
      variant,
    );
    assert.equal(s.host.state, "failed");
  }
});

Deno.test("the joiner refuses a host FINISHED with the wrong transcript under the right keys, and accepts the right one", async () => {
  for (const good of [false, true]) {
    const s = await aToB();
    const commit = await s.join.commit();
    s.host.onCommit(commit);
    const { value: helloBytes, pairs } = await captureEphemerals(() =>
      s.host.hello()
    );
    const hello = decodePeerHello(helloBytes);
    const reply = decodePeerReply(await s.join.onHello(helloBytes));
    const pth = await pthOf(
      s.ticketId,
      decodePeerCommit(commit).commit,
      hello,
      reply,
    );
    const dh = await x25519(pairs[0]!.privateKey, reply.ephemeral);
    const h2j = await deriveDirectionKeys(concat(s.peerKey, dh), pth, "h2j");
    const fin = new RecordSealer(h2j).seal(
      RecordType.FINISHED,
      good ? pth : flipBit(pth, 3),
    );
    if (good) {
      assert.equal(s.join.onFinished(fin)[0], FrameKind.RECORD);
      assert.equal(s.join.state, "done");
    } else {
      assertThrowsIm(
        () => s.join.onFinished(fin),
        AuthError,
        "peer-auth-failed",
      );
      assert.equal(s.join.state, "failed");
    }
  }
});

// ---------------------------------------------------------------------------
// Order, versions, malformed input

Deno.test("peer handshake steps out of order throw ProtocolError and change nothing: no PEER_HELLO before a PEER_COMMIT, no PEER_REPLY before a commit", async () => {
  const s = await aToB();
  await assertRejectsIm(
    () => s.host.hello(),
    ProtocolError,
    "unexpected-frame",
  );
  assert.equal(s.host.state, "await-commit");
  await assertRejectsIm(
    () => s.join.onHello(new Uint8Array([FrameKind.PEER_HELLO])),
    ProtocolError,
    "unexpected-frame",
  );
  assert.equal(s.join.state, "start");
  await assertRejectsIm(
    () => s.host.onReply(new Uint8Array([FrameKind.PEER_REPLY])),
    ProtocolError,
    "unexpected-frame",
  );
  assertThrowsIm(
    () => s.host.onFinished(new Uint8Array([0x10])),
    ProtocolError,
    "unexpected-frame",
  );
  assertThrowsIm(
    () => s.join.onFinished(new Uint8Array([0x10])),
    ProtocolError,
    "unexpected-frame",
  );
  assertThrowsIm(() => s.host.result, ProtocolError, "not-ready");
  assertThrowsIm(() => s.join.result, ProtocolError, "not-ready");
  const commit = await s.join.commit();
  await assertRejectsIm(
    () => s.join.commit(),
    ProtocolError,
    "unexpected-frame",
  );
  s.host.onCommit(commit);
  assertThrowsIm(
    () => s.host.onCommit(commit),
    ProtocolError,
    "unexpected-frame",
  );
  const hello = await s.host.hello();
  await assertRejectsIm(
    () => s.host.hello(),
    ProtocolError,
    "unexpected-frame",
  );
  await s.join.onHello(hello);
  await assertRejectsIm(
    () => s.join.onHello(hello),
    ProtocolError,
    "unexpected-frame",
  );
});

Deno.test("a PEER_HELLO of another version is refused with ProtocolError version", async () => {
  const s = await aToB();
  const m = decodePeerHello(await commitAndHello(s));
  await assertRejectsIm(
    () => s.join.onHello(encodePeerHello({ ...m, version: PEER_VERSION + 1 })),
    ProtocolError,
    "version",
  );
});

Deno.test("a PEER_HELLO with a low-order ephemeral key is refused with a typed error", async () => {
  const s = await aToB();
  const m = decodePeerHello(await commitAndHello(s));
  await assertRejectsIm(
    () =>
      s.join.onHello(encodePeerHello({ ...m, ephemeral: new Uint8Array(32) })),
    ProtocolError,
    "bad-ephemeral",
  );
});

Deno.test("decodePeerCommit(), decodePeerHello() and decodePeerReply() throw ProtocolError at every truncation and for trailing bytes", async () => {
  const s = await aToB();
  const commit = await s.join.commit();
  s.host.onCommit(commit);
  const hello = await s.host.hello();
  const reply = await s.join.onHello(hello);
  for (
    const [bytes, decode] of [
      [commit, decodePeerCommit],
      [hello, decodePeerHello],
      [reply, decodePeerReply],
    ] as const
  ) {
    for (let n = 0; n < bytes.length; n++) {
      assertThrowsIm(
        () => decode(bytes.subarray(0, n)),
        ProtocolError,
        undefined,
        `length ${n}`,
      );
    }
    assertThrowsIm(
      () => decode(concat(bytes, new Uint8Array(1))),
      ProtocolError,
      "trailing-bytes",
    );
    const wrongKind = new Uint8Array(bytes);
    wrongKind[0] = 0x99;
    assertThrowsIm(() => decode(wrongKind), ProtocolError, "unexpected-frame");
  }
});

Deno.test("a truncated PEER_HELLO sent to the joiner is a ProtocolError and burns nothing", async () => {
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  const hello = await commitAndHello(s);
  const cache = new TicketReplayCache();
  for (const n of [0, 1, 2, 3, 50, hello.length - 33, hello.length - 1]) {
    const join = new PeerJoinHandshake({
      self: "B",
      expectedHost: "A",
      ticketKeys: b.client.ticketKeys,
      replayCache: cache,
    });
    await join.commit();
    await assertRejectsIm(
      () => join.onHello(hello.subarray(0, n)),
      ProtocolError,
      undefined,
      `length ${n}`,
    );
  }
  assert.equal(cache.size, 0);
});

Deno.test("peer decoders and the joiner throw only ImError for seeded random and mutated input", async () => {
  const rnd = seededRandom(4242);
  const { b } = await users();
  const s = peerSetup("A", b, "B");
  const commit = await s.join.commit();
  s.host.onCommit(commit);
  const hello = await s.host.hello();
  const reply = await s.join.onHello(hello);
  const cache = new TicketReplayCache();
  let thrown = 0;
  for (let i = 0; i < 2000; i++) {
    for (
      const [name, good, decode] of [
        ["commit", commit, decodePeerCommit],
        ["hello", hello, decodePeerHello],
        ["reply", reply, decodePeerReply],
      ] as const
    ) {
      const input = new Uint8Array(good);
      for (let k = 0; k < 1 + rnd.int(4); k++) {
        input[rnd.int(input.length)] = rnd.int(256);
      }
      const cut = rnd.int(3) === 0
        ? input.subarray(0, rnd.int(input.length))
        : input;
      try {
        decode(cut);
      } catch (e) {
        assert.ok(e instanceof ImError, `${name} ${i}: ${e}`);
        thrown++;
      }
    }
  }
  for (let i = 0; i < 200; i++) {
    const input = new Uint8Array(hello);
    for (let k = 0; k < 1 + rnd.int(4); k++) {
      input[rnd.int(input.length)] = rnd.int(256);
    }
    const join = new PeerJoinHandshake({
      self: "B",
      expectedHost: "A",
      ticketKeys: b.client.ticketKeys,
      replayCache: cache,
    });
    await join.commit();
    try {
      await join.onHello(input);
    } catch (e) {
      assert.ok(e instanceof ImError, `onHello ${i}: ${e}`);
      thrown++;
    }
  }
  assert.ok(thrown > 1000, `thrown ${thrown}`);
});

Deno.test("a failed peer handshake keeps its first error: every later step throws that same error, on both sides", async () => {
  // Host: the joiner's reveal does not open its commitment.
  const s = await aToB();
  await commitAndHello(s);
  const bad = encodePeerReply({
    nonce: randomBytes(32),
    ephemeral: randomBytes(32),
    mac: randomBytes(32),
  });
  const first = await assertRejectsIm(
    () => s.host.onReply(bad),
    AuthError,
    "commit-mismatch",
  );
  assert.equal(s.host.state, "failed");
  for (
    const later of [
      () => s.host.onReply(bad),
      () => s.host.hello(),
      () =>
        Promise.resolve().then(() => s.host.onFinished(new Uint8Array([0x10]))),
      () => Promise.resolve().then(() => s.host.onCommit(new Uint8Array(33))),
    ]
  ) {
    await assert.rejects(later, (e) => e === first);
  }
  assertThrowsIm(() => s.host.result, ProtocolError, "not-ready");
  // Joiner: a ticket it cannot open.
  const { c } = await users();
  const t = await aToB();
  const joinC = await committedJoiner(t.host, { self: "C", keys: c });
  const hello = await t.host.hello();
  const err = await assertRejectsIm(
    () => joinC.onHello(hello),
    TicketError,
    "bad-ticket",
  );
  await assert.rejects(() => joinC.onHello(hello), (e) => e === err);
  assert.throws(
    () => joinC.onFinished(new Uint8Array([0x10])),
    (e) => e === err,
  );
  assert.equal(joinC.state, "failed");
});

Deno.test("the state of a peer handshake cannot be set from outside", async () => {
  const s = await aToB();
  for (const hs of [s.host, s.join]) {
    const before = hs.state;
    assert.throws(() => {
      (hs as unknown as { state: string }).state = "done";
    }, TypeError);
    assert.equal(hs.state, before);
    assertThrowsIm(() => hs.result, ProtocolError, "not-ready");
  }
});

Deno.test("the host refuses a first frame that is not a well-formed PEER_COMMIT and sends nothing", async () => {
  const hello = await commitAndHello(await aToB());
  for (
    const bytes of [
      hello,
      new Uint8Array([FrameKind.PEER_COMMIT]),
      concat(new Uint8Array([FrameKind.PEER_COMMIT]), randomBytes(31)),
      concat(new Uint8Array([FrameKind.PEER_COMMIT]), randomBytes(33)),
      encodePeerReply({
        nonce: randomBytes(32),
        ephemeral: randomBytes(32),
        mac: randomBytes(32),
      }),
    ]
  ) {
    const s = await aToB();
    assertThrowsIm(() => s.host.onCommit(bytes), ProtocolError);
    assert.equal(s.host.state, "failed");
    await assert.rejects(() => s.host.hello());
  }
});

Deno.test("sequence numbers start at 0 in both directions of a peer link: each FINISHED is record 0, the next record is 1 (PROTOCOL.md section 4)", async () => {
  const s = await aToB();
  s.host.onCommit(await s.join.commit());
  const reply = await s.join.onHello(await s.host.hello());
  const hostFin = await s.host.onReply(reply);
  const joinFin = s.join.onFinished(hostFin);
  s.host.onFinished(joinFin);
  const seqOf = (rec: Uint8Array) => new DataView(rec.buffer).getBigUint64(2);
  assert.equal(hostFin[1], RecordType.FINISHED);
  assert.equal(seqOf(hostFin), 0n, "h2j FINISHED");
  assert.equal(joinFin[1], RecordType.FINISHED);
  assert.equal(seqOf(joinFin), 0n, "j2h FINISHED");
  for (const r of [s.host.result, s.join.result]) {
    assert.equal(r.opener.nextSeq, 1n);
    assert.equal(r.sealer.nextSeq, 1n);
  }
  const next = s.join.result.sealer.seal(RecordType.DATA, utf8("{}"));
  assert.equal(seqOf(next), 1n);
  assert.equal(s.host.result.opener.open(next).lost, 0n);
});
