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
  signPss,
  transcriptHash,
  verifyPss,
} from "../lib/crypto/mod.ts";
import {
  checkPeerCommit,
  decodePeerCommit,
  decodePeerHello,
  decodePeerReply,
  encodePeerCommit,
  encodePeerHello,
  encodePeerReply,
  formatSas,
  grantCommitKey,
  type JoinTicket,
  openJoinTicket,
  PEER_COMMIT_BODY_BYTES,
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
  identities,
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
  return await peerSetup("A", b, "B");
}

const SAS = /^\d{3} \d{3} \d{3} \d{3}$/;

/** The joiner of `s` commits to the host of `s`; the host's PEER_HELLO. */
async function commitAndHello(
  s: {
    host: PeerHostHandshake;
    join: PeerJoinHandshake;
    joinTicket: JoinTicket;
  },
): Promise<Uint8Array> {
  await s.host.onCommit(await s.join.commit(s.joinTicket));
  return s.host.hello();
}

/** A fresh joiner B of host A with `cache`, committed with `ticket` (not sent). */
async function committedJoiner(
  ticket: JoinTicket,
  o: { cache?: TicketReplayCache; now?: () => number } = {},
): Promise<PeerJoinHandshake> {
  const ids = await identities();
  const join = new PeerJoinHandshake({
    self: "B",
    expectedHost: "A",
    replayCache: o.cache ?? new TicketReplayCache(),
    identity: ids.B,
    peerIdentity: ids.A.publicIdentity,
    ...(o.now ? { now: o.now } : {}),
  });
  await join.commit(ticket);
  return join;
}

/**
 * PEER_COMMIT as PROTOCOL.md section 6 writes it, made from the outside:
 * `ticket_id || commit || HMAC(HKDF(peer_key, ticket_id, "im v1 peer commit
 * auth"), "joiner" || ticket_id || commit)`. Whoever holds the peer key
 * (the joiner, or the server that made it) can make one for any values.
 */
async function keyedCommit(
  g: { peerKey: Uint8Array; ticketId: Uint8Array },
  commit: Uint8Array,
): Promise<Uint8Array> {
  const key = await deriveKey(g.peerKey, g.ticketId, Label.PEER_COMMIT_AUTH);
  const mac = new HmacSha256(key).mac(
    concat(utf8("joiner"), g.ticketId, commit),
  );
  return encodePeerCommit({ ticketId: g.ticketId, commit, mac });
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

Deno.test("the commitment is TH(peer commit, nonce_b, eph_b), PEER_COMMIT is ticket_id || commit || HMAC(HKDF(peer key, ticket id, peer commit auth), joiner || ticket_id || commit), the peer keys are HKDF(peer key || X25519 secret, pth) with the commitment in pth, and the joiner's MAC is keyed from the peer key, as PROTOCOL.md says", async () => {
  const s = await aToB();
  const commitBytes = await s.join.commit(s.joinTicket);
  await s.host.onCommit(commitBytes);
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
  // PEER_COMMIT names the ticket and is keyed from the peer key.
  assert.equal(Label.PEER_COMMIT_AUTH, "im v1 peer commit auth");
  assert.equal(commitBytes.length, 1 + 16 + 32 + 32);
  assert.equal(PEER_COMMIT_BODY_BYTES, 80);
  assert.equal(commitBytes[0], FrameKind.PEER_COMMIT);
  assert.deepEqual(commitBytes.subarray(1, 17), s.ticketId);
  assert.deepEqual(commitBytes.subarray(17, 49), commit);
  assert.deepEqual(commitBytes, await keyedCommit(s, commit));
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
  // Key continuity: FINISHED = pth || PSS(own key, label || 0x00 || pth),
  // the signature as long as the modulus (2048 bits here), no length field.
  assert.equal(fin.plaintext.length, 32 + 256);
  assert.deepEqual(fin.plaintext.subarray(0, 32), pth);
  assert.equal(Label.PEER_HOST_SIGNATURE, "im v1 peer host signature");
  assert.equal(Label.PEER_JOINER_SIGNATURE, "im v1 peer joiner signature");
  const signed = (label: string) =>
    concat(utf8(label), new Uint8Array([0]), pth);
  assert.equal(signed(Label.PEER_HOST_SIGNATURE).length, 58);
  assert.ok(
    await verifyPss(
      s.hostIdentity.publicIdentity.verify,
      fin.plaintext.subarray(32),
      signed(Label.PEER_HOST_SIGNATURE),
    ),
  );
  const joinFin = await s.join.onFinished(hostFin);
  await s.host.onFinished(joinFin);
  const jfin = new RecordOpener(await deriveDirectionKeys(ikm, pth, "j2h"))
    .open(joinFin);
  assert.equal(jfin.type, RecordType.FINISHED);
  assert.equal(jfin.plaintext.length, 32 + 256);
  assert.deepEqual(jfin.plaintext.subarray(0, 32), pth);
  assert.ok(
    await verifyPss(
      s.joinerIdentity.publicIdentity.verify,
      jfin.plaintext.subarray(32),
      signed(Label.PEER_JOINER_SIGNATURE),
    ),
  );
  // Neither signature passes for the other side's.
  assert.ok(
    !await verifyPss(
      s.hostIdentity.publicIdentity.verify,
      fin.plaintext.subarray(32),
      signed(Label.PEER_JOINER_SIGNATURE),
    ),
  );
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

Deno.test("a stranger's PEER_COMMIT with a random MAC is refused with commit-auth-failed, and the host sends no PEER_HELLO", async () => {
  for (let i = 0; i < 3; i++) {
    const s = await aToB();
    const commit = await peerCommitment(randomBytes(32), randomBytes(32));
    const forged = encodePeerCommit({
      ticketId: s.ticketId, // the id is no secret: it crosses the network
      commit,
      mac: randomBytes(32),
    });
    const err = await assertRejectsIm(
      () => s.host.onCommit(forged),
      AuthError,
      "commit-auth-failed",
    );
    assert.match(err.message, /no proof of this session's ticket/);
    assert.equal(s.host.state, "failed");
    await assertRejectsIm(
      () => s.host.hello(),
      AuthError,
      "commit-auth-failed",
    );
  }
});

Deno.test("a PEER_COMMIT naming another ticket id is refused with commit-wrong-ticket, even with a valid MAC for that id under the peer key", async () => {
  const s = await aToB();
  const other = randomBytes(16);
  const commit = await peerCommitment(randomBytes(32), randomBytes(32));
  const leftOver = await keyedCommit(
    { peerKey: s.peerKey, ticketId: other },
    commit,
  );
  const err = await assertRejectsIm(
    () => s.host.onCommit(leftOver),
    AuthError,
    "commit-wrong-ticket",
  );
  assert.match(err.message, /for another session/);
  assert.equal(s.host.state, "failed");
  await assert.rejects(() => s.host.hello());
});

Deno.test("checkPeerCommit() refuses one flipped bit anywhere in the ticket id, the commitment or the MAC, and accepts the joiner's own", async () => {
  const s = await aToB();
  const good = await s.join.commit(s.joinTicket);
  const key = await grantCommitKey(s.peerKey, s.ticketId);
  checkPeerCommit(decodePeerCommit(good), key, s.ticketId);
  for (let bit = 8; bit < good.length * 8; bit++) {
    const c = decodePeerCommit(flipBit(good, bit));
    assertThrowsIm(
      () => checkPeerCommit(c, key, s.ticketId),
      AuthError,
      bit < 8 + 16 * 8 ? "commit-wrong-ticket" : "commit-auth-failed",
      `bit ${bit}`,
    );
  }
  // Under another grant's key or id, the joiner's own commit is refused too.
  const c = decodePeerCommit(good);
  assertThrowsIm(
    () => checkPeerCommit(c, key, randomBytes(16)),
    AuthError,
    "commit-wrong-ticket",
  );
  assertThrowsIm(
    () => checkPeerCommit(c, new Uint8Array(32), s.ticketId),
    AuthError,
    "commit-auth-failed",
  );
});

Deno.test("the host refuses a grant whose peer key is not 32 bytes or whose ticket id is not 16 (bad-grant)", async () => {
  const ids = await identities();
  for (
    const [keyLen, idLen] of [[31, 16], [33, 16], [0, 16], [32, 15], [32, 17], [
      32,
      0,
    ]]
  ) {
    assertThrowsIm(
      () =>
        new PeerHostHandshake({
          self: "A",
          joiner: "B",
          peerKey: new Uint8Array(keyLen!),
          ticket: new Uint8Array(80),
          ticketId: new Uint8Array(idLen!),
          identity: ids.A,
          peerIdentity: ids.B.publicIdentity,
        }),
      ProtocolError,
      "bad-grant",
      `${keyLen} ${idLen}`,
    );
  }
});

Deno.test("a holder of the peer key who commits and reveals its values with a random mac_b is refused with peer-auth-failed", async () => {
  for (let i = 0; i < 3; i++) {
    const s = await aToB();
    const nonce = randomBytes(32), ephemeral = randomBytes(32);
    await s.host.onCommit(
      await keyedCommit(s, await peerCommitment(nonce, ephemeral)),
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

Deno.test("a joiner whose ticket holds another peer key cannot commit: the host refuses its PEER_COMMIT with commit-auth-failed and sends no PEER_HELLO", async () => {
  const { b } = await users();
  const s = await peerSetup("A", b, "B");
  // The host holds s.peerKey; the joiner's ticket holds a different key.
  const wrongTicket = sealTicket(b.server.ticketKeys, {
    id: s.ticketId,
    host: "A",
    joiner: "B",
    expiresAt: s.expiresAt,
    peerKey: randomBytes(32),
  });
  const opened = openJoinTicket(b.client.ticketKeys, wrongTicket, {
    self: "B",
    expectedHost: "A",
    ticketId: s.ticketId,
  });
  await assertRejectsIm(
    async () => s.host.onCommit(await s.join.commit(opened)),
    AuthError,
    "commit-auth-failed",
  );
  await assert.rejects(() => s.host.hello());
});

Deno.test("the joiner refuses a FINISHED from a host that does not hold the peer key (a stolen ticket raced ahead)", async () => {
  const s = await aToB();
  // An eavesdropper replays the ticket with its own ephemeral key before A does.
  await s.host.onCommit(await s.join.commit(s.joinTicket));
  const stolen = decodePeerHello(await s.host.hello());
  await s.join.onHello(encodePeerHello({
    version: PEER_VERSION,
    ticket: stolen.ticket,
    nonce: randomBytes(32),
    ephemeral: await strangerEphemeral(),
  }));
  // Whatever the thief sends as FINISHED, B refuses it.
  const fake = new RecordSealer({
    enc: randomBytes(32),
    iv: randomBytes(32),
    mac: randomBytes(32),
  })
    .seal(RecordType.FINISHED, randomBytes(32));
  await assertRejectsIm(
    () => s.join.onFinished(fake),
    AuthError,
    "peer-auth-failed",
  );
  assert.equal(s.join.state, "failed");
  assertThrowsIm(() => s.join.result, ProtocolError, "not-ready");
});

Deno.test("openJoinTicket() refuses a ticket for another joiner: C cannot open B's ticket (bad-ticket); one sealed for C naming B is misbound", async () => {
  const { b, c } = await users();
  const s = await peerSetup("A", b, "B");
  const check = { self: "C", expectedHost: "A", ticketId: s.ticketId };
  assertThrowsIm(
    () => openJoinTicket(c.client.ticketKeys, s.ticket, check),
    TicketError,
    "bad-ticket",
  );
  // Sealed with C's keys but naming B as the joiner.
  const t = await peerSetup("A", c, "B");
  assertThrowsIm(
    () =>
      openJoinTicket(c.client.ticketKeys, t.ticket, {
        ...check,
        ticketId: t.ticketId,
      }),
    TicketError,
    "misbound",
  );
});

Deno.test("openJoinTicket() refuses the ticket as misbound when the join names another host", async () => {
  const { b } = await users();
  const s = await peerSetup("A", b, "B");
  const err = assertThrowsIm(
    () =>
      openJoinTicket(b.client.ticketKeys, s.ticket, {
        self: "B",
        expectedHost: "C",
        ticketId: s.ticketId,
      }),
    TicketError,
    "misbound",
  );
  assert.match(err.message, /A -> B, expected C -> B/);
});

Deno.test("openJoinTicket() refuses a genuine ticket whose id is not the join's ticketId as misbound (issue 16 item 4)", async () => {
  const { b } = await users();
  const s = await peerSetup("A", b, "B");
  for (const other of [randomBytes(16), flipBit(s.ticketId, 127)]) {
    const err = assertThrowsIm(
      () =>
        openJoinTicket(b.client.ticketKeys, s.ticket, {
          self: "B",
          expectedHost: "A",
          ticketId: other,
        }),
      TicketError,
      "misbound",
    );
    assert.match(err.message, /is not the join's/);
  }
  const ok = openJoinTicket(b.client.ticketKeys, s.ticket, {
    self: "B",
    expectedHost: "A",
    ticketId: s.ticketId,
  });
  assert.deepEqual(ok.ticket.id, s.ticketId);
  assert.deepEqual(ok.ticket.peerKey, s.peerKey);
  assert.deepEqual(ok.sealed, s.ticket);
});

Deno.test("an expired ticket is refused when the join arrives, and one that expires before the PEER_HELLO is refused there", async () => {
  const { b } = await users();
  const s = await peerSetup("A", b, "B");
  assertThrowsIm(
    () =>
      openJoinTicket(b.client.ticketKeys, s.ticket, {
        self: "B",
        expectedHost: "A",
        ticketId: s.ticketId,
        now: s.expiresAt + 1,
      }),
    TicketError,
    "expired",
  );
  const cache = new TicketReplayCache();
  const join = await committedJoiner(s.joinTicket, {
    cache,
    now: () => s.expiresAt + 1,
  });
  await s.host.onCommit(await keyedCommit(s, new Uint8Array(32)));
  await assertRejectsIm(
    async () => join.onHello(await s.host.hello()),
    TicketError,
    "expired",
  );
  assert.equal(cache.size, 0, "an expired ticket is not recorded");
});

Deno.test("the joiner refuses a PEER_HELLO whose ticket is not the join's, byte for byte: another session's ticket for it, one flipped bit, a ticket for someone else (ticket-mismatch), and records nothing", async () => {
  const { b, c } = await users();
  const s = await peerSetup("A", b, "B");
  const other = await peerSetup("A", b, "B"); // another session's genuine ticket for B
  const forC = await peerSetup("A", c, "C");
  const hello = decodePeerHello(await commitAndHello(s));
  const cache = new TicketReplayCache();
  for (
    const [what, ticket] of [
      ["another session's ticket", other.ticket],
      ["its first byte flipped", flipBit(s.ticket, 0)],
      ["its last byte flipped", flipBit(s.ticket, s.ticket.length * 8 - 1)],
      ["one byte longer", concat(s.ticket, new Uint8Array(1))],
      ["one byte shorter", s.ticket.subarray(1)],
      ["a ticket for C", forC.ticket],
    ] as const
  ) {
    const join = await committedJoiner(s.joinTicket, { cache });
    const err = await assertRejectsIm(
      () => join.onHello(encodePeerHello({ ...hello, ticket })),
      TicketError,
      "ticket-mismatch",
      what,
    );
    assert.match(err.message, /not the one the server sent us/);
    assert.equal(join.state, "failed");
  }
  assert.equal(cache.size, 0);
  // Control: the join's own ticket is accepted.
  const join = await committedJoiner(s.joinTicket, { cache });
  await join.onHello(encodePeerHello(hello));
  assert.equal(cache.size, 1);
});

Deno.test("a replayed PEER_HELLO to the same joiner is refused as replayed", async () => {
  const { b } = await users();
  const s = await peerSetup("A", b, "B");
  const hello = await commitAndHello(s);
  await s.join.onHello(hello);
  const again = await committedJoiner(s.joinTicket, { cache: s.cache });
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
  const third = await committedJoiner(s.joinTicket, { cache: s.cache });
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
    commit?: (b: Uint8Array) => Uint8Array | Promise<Uint8Array>;
    hello?: (b: Uint8Array) => Uint8Array;
    reply?: (b: Uint8Array) => Uint8Array;
  },
): Promise<{ error: unknown } | { hostSas: string; joinSas: string }> {
  try {
    await s.host.onCommit(
      await (edit.commit ?? ((b) => b))(await s.join.commit(s.joinTicket)),
    );
    const hello = (edit.hello ?? ((b) => b))(await s.host.hello());
    const reply = (edit.reply ?? ((b) => b))(await s.join.onHello(hello));
    const hostFin = await s.host.onReply(reply);
    await s.host.onFinished(await s.join.onFinished(hostFin));
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

Deno.test("a man in the middle who swaps the joiner's revealed eph_b or nonce_b, or its commitment, is stopped by the commitment (commit-mismatch), or before it by the commit MAC (commit-auth-failed)", async () => {
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
  ];
  for (const [what, edit] of edits) {
    const outcome = await relay(await aToB(), edit);
    assertDetected(outcome, what, "commit-mismatch");
    assert.ok("error" in outcome, `${what}: the handshake stops`);
  }
  // The commitment changed by someone without the peer key: its MAC fails.
  const flipped = await relay(await aToB(), {
    commit: (b) => flipBit(b, (1 + 16) * 8 + 5),
  });
  assertDetected(flipped, "commit", "commit-auth-failed");
  // Changed by the server, which holds the peer key and makes a valid MAC:
  // the reveal does not open it.
  const t = await aToB();
  const reMaced = await relay(t, {
    commit: (b) => keyedCommit(t, flipBit(decodePeerCommit(b).commit, 5)),
  });
  assertDetected(reMaced, "commit under the peer key", "commit-mismatch");
  // Control: an untouched relay finishes with equal SAS.
  const clean = await relay(await aToB(), {});
  assert.ok(!("error" in clean) && clean.hostSas === clean.joinSas);
});

Deno.test("a joiner whose PEER_REPLY does not open its PEER_COMMIT is refused with commit-mismatch, even with a valid MAC for the values it reveals", async () => {
  // The joiner holds the peer key (a malicious server can seal itself a
  // ticket), so it can MAC any values; the commitment is what holds it to
  // the ones it chose before it saw PEER_HELLO.
  const s = await aToB();
  await s.host.onCommit(
    await keyedCommit(
      s,
      await peerCommitment(randomBytes(32), randomBytes(32)),
    ),
  );
  const hello = decodePeerHello(await s.host.hello());
  const nonce = randomBytes(32), ephemeral = await strangerEphemeral();
  const commit = await peerCommitment(nonce, ephemeral);
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
  const ids = await identities();
  // A first session: the server names its own key for A to B (nothing is
  // pinned yet), so it can sign as "A" towards B.
  const s = await peerSetup("A", b, "B", {
    hostNamed: ids.stranger.publicIdentity,
  });
  // The server made the peer key and can derive B's ticket keys: it can play
  // host towards B and joiner towards A, and MAC anything.
  const mitmHost = new PeerHostHandshake({
    self: "A",
    joiner: "B",
    peerKey: s.peerKey,
    ticket: s.ticket,
    ticketId: s.ticketId,
    identity: ids.stranger,
    peerIdentity: ids.B.publicIdentity,
  });
  // 1. server <-> B first: SAS_B is fixed.
  await mitmHost.onCommit(await s.join.commit(s.joinTicket));
  const toB = await s.join.onHello(await mitmHost.hello());
  await mitmHost.onFinished(
    await s.join.onFinished(await mitmHost.onReply(toB)),
  );
  const sasB = s.join.result.sas;
  // 2. server <-> A: it must commit before A's PEER_HELLO ...
  const committed = {
    nonce: randomBytes(32),
    ephemeral: await strangerEphemeral(),
  };
  const commit = await peerCommitment(committed.nonce, committed.ephemeral);
  await s.host.onCommit(await keyedCommit(s, commit));
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

/**
 * A server in the middle of a session between A (host) and B: it holds the
 * peer key, derives B's ticket keys, plays joiner towards A and host
 * towards B, and signs with `signer`, a key of its own. `named` is what it
 * tells A and B each other's keys are.
 */
async function serverInTheMiddle(named: "its own" | "the real ones") {
  const { b } = await users();
  const ids = await identities();
  const own = named === "its own";
  const s = await peerSetup("A", b, "B", {
    ...(own
      ? {
        hostNamed: ids.stranger.publicIdentity,
        joinerNamed: ids.stranger.publicIdentity,
      }
      : {}),
  });
  const mitmJoin = new PeerJoinHandshake({
    self: "B",
    expectedHost: "A",
    replayCache: new TicketReplayCache(),
    identity: ids.stranger,
    peerIdentity: ids.A.publicIdentity,
  });
  const mitmTicket = openJoinTicket(b.server.ticketKeys, s.ticket, {
    self: "B",
    expectedHost: "A",
    ticketId: s.ticketId,
  });
  const mitmHost = new PeerHostHandshake({
    self: "A",
    joiner: "B",
    peerKey: s.peerKey,
    ticket: s.ticket,
    ticketId: s.ticketId,
    identity: ids.stranger,
    peerIdentity: ids.B.publicIdentity,
  });
  // A <-> server
  await s.host.onCommit(await mitmJoin.commit(mitmTicket));
  const toA = await mitmJoin.onHello(await s.host.hello());
  const aFin = await s.host.onReply(toA);
  const towardsA = s.host.onFinished(await mitmJoin.onFinished(aFin)).then(
    () => null,
    (e: unknown) => e,
  );
  // server <-> B
  await mitmHost.onCommit(await s.join.commit(s.joinTicket));
  const toB = await s.join.onHello(await mitmHost.hello());
  const mFin = await mitmHost.onReply(toB);
  const towardsB = s.join.onFinished(mFin).then(
    async (fin) => {
      await mitmHost.onFinished(fin);
      return null;
    },
    (e: unknown) => e,
  );
  return { s, atA: await towardsA, atB: await towardsB };
}

Deno.test("a malicious server that knows the peer key and runs two handshakes in the middle of a first session, naming its own key for each, is exposed only by the code: the SAS differ", async () => {
  const { s, atA, atB } = await serverInTheMiddle("its own");
  assert.equal(atA, null);
  assert.equal(atB, null);
  assert.notEqual(
    s.host.result.sas,
    s.join.result.sas,
    "A and B see different SAS",
  );
});

Deno.test("key continuity: a server in the middle that names the real keys (the pinned ones) cannot sign as B towards A nor as A towards B: both refuse with peer-signature-failed, naming the key", async () => {
  const ids = await identities();
  const { s, atA, atB } = await serverInTheMiddle("the real ones");
  assert.ok(atA instanceof AuthError && atA.code === "peer-signature-failed");
  assert.ok(atB instanceof AuthError && atB.code === "peer-signature-failed");
  assert.match(atA.message, /^WARNING: /);
  assert.ok(atA.message.includes(ids.B.fingerprint), atA.message);
  assert.ok(atB.message.includes(ids.A.fingerprint), atB.message);
  assert.equal(s.host.state, "failed");
  assert.equal(s.join.state, "failed");
  assertThrowsIm(() => s.host.result, ProtocolError, "not-ready");
  assertThrowsIm(() => s.join.result, ProtocolError, "not-ready");
});

// ---------------------------------------------------------------------------
// Key confirmation

/** `pth || PSS(key, label || 0x00 || pth)`, as PROTOCOL.md section 6 writes a FINISHED's plaintext. */
async function signedFinished(
  key: { sign: CryptoKey },
  label: string,
  pth: Uint8Array,
  signedPth: Uint8Array = pth,
): Promise<Uint8Array> {
  return concat(
    pth,
    await signPss(
      key.sign,
      concat(utf8(label), new Uint8Array([0]), signedPth),
    ),
  );
}

Deno.test("the host refuses a joiner FINISHED with the wrong transcript, the wrong type, from another session, or with no valid signature by B (peer-signature-failed), and accepts B's own", async () => {
  const ids = await identities();
  const variants = [
    ["wrong transcript", "peer-auth-failed"],
    ["DATA type", "peer-auth-failed"],
    ["another session", "peer-auth-failed"],
    ["pth alone, unsigned", "peer-auth-failed"],
    ["pth and a signature by another key", "peer-signature-failed"],
    ["pth and B's signature under the host's label", "peer-signature-failed"],
    ["pth and B's signature of another pth", "peer-signature-failed"],
    ["pth and B's signature with a byte more", "peer-signature-failed"],
    ["pth and B's signature cut by a byte", "peer-signature-failed"],
    ["B's own", "ok"],
  ] as const;
  for (const [variant, code] of variants) {
    const s = await aToB();
    const commit = await s.join.commit(s.joinTicket);
    await s.host.onCommit(commit);
    const { value: helloBytes, pairs } = await captureEphemerals(() =>
      s.host.hello()
    );
    const reply = decodePeerReply(await s.join.onHello(helloBytes));
    const hostFin = await s.host.onReply(encodePeerReply(reply));
    await s.join.onFinished(hostFin);
    const r = s.join.result;
    const pth = await pthOf(
      s.ticketId,
      decodePeerCommit(commit).commit,
      decodePeerHello(helloBytes),
      reply,
    );
    assert.ok(pairs.length === 1);
    const J = Label.PEER_JOINER_SIGNATURE;
    const fin = (p: Uint8Array) => r.sealer.seal(RecordType.FINISHED, p);
    const own = await signedFinished(ids.B, J, pth);
    const bad: Uint8Array = variant === "wrong transcript"
      ? fin(randomBytes(32))
      : variant === "DATA type"
      ? r.sealer.seal(RecordType.DATA, utf8("finished?"))
      : variant === "another session"
      ? (await peerInMemory(await aToB())).joiner.sealer.seal(
        RecordType.FINISHED,
        own,
      )
      : variant === "pth alone, unsigned"
      ? fin(pth)
      : variant === "pth and a signature by another key"
      ? fin(await signedFinished(ids.stranger, J, pth))
      : variant === "pth and B's signature under the host's label"
      ? fin(await signedFinished(ids.B, Label.PEER_HOST_SIGNATURE, pth))
      : variant === "pth and B's signature of another pth"
      ? fin(await signedFinished(ids.B, J, pth, flipBit(pth, 9)))
      : variant === "pth and B's signature with a byte more"
      ? fin(concat(own, new Uint8Array([0])))
      : variant === "pth and B's signature cut by a byte"
      ? fin(own.subarray(0, own.length - 1))
      : fin(own);
    if (code === "ok") {
      await s.host.onFinished(bad);
      assert.equal(s.host.state, "done");
      continue;
    }
    await assertRejectsIm(
      () => s.host.onFinished(bad),
      AuthError,
      code,
      variant,
    );
    assert.equal(s.host.state, "failed");
  }
});

Deno.test("the joiner refuses a host FINISHED with the wrong transcript under the right keys, or one not signed by A's key (peer-signature-failed, and it sends no FINISHED of its own), and accepts the right one", async () => {
  const ids = await identities();
  const H = Label.PEER_HOST_SIGNATURE;
  const cases = [
    ["wrong transcript", "peer-auth-failed"],
    ["pth alone", "peer-auth-failed"],
    ["signed by the server's key", "peer-signature-failed"],
    ["A's signature under the joiner's label", "peer-signature-failed"],
    ["right", "ok"],
  ] as const;
  for (const [variant, code] of cases) {
    const s = await aToB();
    const commit = await s.join.commit(s.joinTicket);
    await s.host.onCommit(commit);
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
    const plaintext = variant === "wrong transcript"
      ? await signedFinished(ids.A, H, flipBit(pth, 3))
      : variant === "pth alone"
      ? pth
      : variant === "signed by the server's key"
      ? await signedFinished(ids.server, H, pth)
      : variant === "A's signature under the joiner's label"
      ? await signedFinished(ids.A, Label.PEER_JOINER_SIGNATURE, pth)
      : await signedFinished(ids.A, H, pth);
    const fin = new RecordSealer(h2j).seal(RecordType.FINISHED, plaintext);
    if (code === "ok") {
      assert.equal((await s.join.onFinished(fin))[0], FrameKind.RECORD);
      assert.equal(s.join.state, "done");
    } else {
      await assertRejectsIm(
        () => s.join.onFinished(fin),
        AuthError,
        code,
        variant,
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
  await assertRejectsIm(
    () => s.host.onFinished(new Uint8Array([0x10])),
    ProtocolError,
    "unexpected-frame",
  );
  await assertRejectsIm(
    () => s.join.onFinished(new Uint8Array([0x10])),
    ProtocolError,
    "unexpected-frame",
  );
  assertThrowsIm(() => s.host.result, ProtocolError, "not-ready");
  assertThrowsIm(() => s.join.result, ProtocolError, "not-ready");
  const commit = await s.join.commit(s.joinTicket);
  await assertRejectsIm(
    () => s.join.commit(s.joinTicket),
    ProtocolError,
    "unexpected-frame",
  );
  await s.host.onCommit(commit);
  await assertRejectsIm(
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
  const commit = await s.join.commit(s.joinTicket);
  await s.host.onCommit(commit);
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
  const s = await peerSetup("A", b, "B");
  const hello = await commitAndHello(s);
  const cache = new TicketReplayCache();
  for (const n of [0, 1, 2, 3, 50, hello.length - 33, hello.length - 1]) {
    const join = await committedJoiner(s.joinTicket, { cache });
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
  const s = await peerSetup("A", b, "B");
  const commit = await s.join.commit(s.joinTicket);
  await s.host.onCommit(commit);
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
    const join = await committedJoiner(s.joinTicket, { cache });
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
      () => s.host.onFinished(new Uint8Array([0x10])),
      () => s.host.onCommit(new Uint8Array(81)),
    ]
  ) {
    await assert.rejects(later, (e) => e === first);
  }
  assertThrowsIm(() => s.host.result, ProtocolError, "not-ready");
  // Joiner: a PEER_HELLO with another session's ticket.
  const t = await aToB();
  const joinB = await committedJoiner((await aToB()).joinTicket);
  const hello = await commitAndHello(t);
  const err = await assertRejectsIm(
    () => joinB.onHello(hello),
    TicketError,
    "ticket-mismatch",
  );
  await assert.rejects(() => joinB.onHello(hello), (e) => e === err);
  await assert.rejects(
    () => joinB.onFinished(new Uint8Array([0x10])),
    (e) => e === err,
  );
  assert.equal(joinB.state, "failed");
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
      concat(new Uint8Array([FrameKind.PEER_COMMIT]), randomBytes(32)),
      concat(new Uint8Array([FrameKind.PEER_COMMIT]), randomBytes(79)),
      concat(new Uint8Array([FrameKind.PEER_COMMIT]), randomBytes(81)),
      encodePeerReply({
        nonce: randomBytes(32),
        ephemeral: randomBytes(32),
        mac: randomBytes(32),
      }),
    ]
  ) {
    const s = await aToB();
    await assertRejectsIm(() => s.host.onCommit(bytes), ProtocolError);
    assert.equal(s.host.state, "failed");
    await assert.rejects(() => s.host.hello());
  }
});

Deno.test("sequence numbers start at 0 in both directions of a peer link: each FINISHED is record 0, the next record is 1 (PROTOCOL.md section 4)", async () => {
  const s = await aToB();
  await s.host.onCommit(await s.join.commit(s.joinTicket));
  const reply = await s.join.onHello(await s.host.hello());
  const hostFin = await s.host.onReply(reply);
  const joinFin = await s.join.onFinished(hostFin);
  await s.host.onFinished(joinFin);
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
