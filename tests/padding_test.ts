/**
 * Padding of peer messages to size buckets (PROTOCOL.md section 6,
 * "Padding"; issue 16 item 4): the buckets at their edges, the cap at what a
 * record may hold, and what the network sees of a real peer session.
 */
import assert from "node:assert/strict";
import { ProtocolError } from "../lib/util/mod.ts";
import {
  RECORD_MIN_BYTES,
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../lib/record/mod.ts";
import {
  bucketOf,
  decodePeerToPeer,
  encodeMessage,
  type Message,
  PAD_BYTE,
  padToBucket,
  SecureChannel,
  TicketReplayCache,
} from "../lib/proto/mod.ts";
import {
  hostPeer,
  joinPeer,
  MAX_MESSAGE_BYTES,
  type PeerEvent,
  type PeerSession,
} from "../lib/client/peer_session.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import {
  FrameKind,
  memoryPair,
  type MemoryTransport,
} from "../lib/wire/mod.ts";
import {
  assertRejectsIm,
  assertThrowsIm,
  loginInMemory,
  peerSetup,
} from "./_helpers.ts";
import { until } from "./_fixtures.ts";

// ---------------------------------------------------------------------------
// padToBucket

Deno.test("bucketOf() at the edges: 0..64 -> 64, 65 -> 128, powers of two up to 16384, then multiples of 4096", () => {
  const cases: Array<[number, number]> = [
    [0, 64],
    [1, 64],
    [63, 64],
    [64, 64],
    [65, 128],
    [128, 128],
    [129, 256],
    [4097, 8192],
    [16383, 16384],
    [16384, 16384],
    [16385, 20480],
    [20480, 20480],
    [20481, 24576],
    [46080, 49152],
    [65536, 65536],
  ];
  for (const [n, bucket] of cases) {
    assert.equal(bucketOf(n), bucket, `bucket of ${n}`);
  }
});

Deno.test("padToBucket() pads 63, 64, 65, 16384 and 16385 bytes to 64, 64, 128, 16384 and 20480 with spaces after the bytes", () => {
  const cases: Array<[number, number]> = [
    [63, 64],
    [64, 64],
    [65, 128],
    [16384, 16384],
    [16385, 20480],
  ];
  for (const [n, padded] of cases) {
    const bytes = new Uint8Array(n).fill(0x7b);
    const out = padToBucket(bytes, Infinity);
    assert.equal(out.length, padded, `${n} bytes`);
    assert.deepEqual(out.subarray(0, n), bytes);
    assert.ok(out.subarray(n).every((b) => b === PAD_BYTE), "spaces");
    assert.ok(bytes.every((b) => b === 0x7b), "its input is left alone");
  }
});

Deno.test("padToBucket() pads only up to the cap when the bucket would pass it, exactly to the cap when they meet, and never truncates", () => {
  const m = new Uint8Array(65).fill(0x7b); // bucket 128
  assert.equal(padToBucket(m, 127).length, 127);
  assert.equal(padToBucket(m, 128).length, 128);
  assert.equal(padToBucket(m, 129).length, 128);
  assert.equal(padToBucket(m, 66).length, 66);
  // At or past the cap: the bytes as they are, not cut.
  assert.equal(padToBucket(m, 65), m);
  assert.equal(padToBucket(m, 10), m);
  assert.equal(padToBucket(m, 0), m);
  const big = new Uint8Array(16385); // bucket 20480
  assert.equal(padToBucket(big, 20000).length, 20000);
  assert.equal(padToBucket(new Uint8Array(0), 20).length, 20);
});

Deno.test("padToBucket() refuses a cap that is negative, fractional or not a number, naming it", () => {
  for (const cap of [-1, 1.5, NaN, -Infinity]) {
    const e = assertThrowsIm(
      () => padToBucket(new Uint8Array(1), cap),
      ProtocolError,
      "bad-length",
    );
    assert.match(e.message, new RegExp(`got ${cap}`));
  }
  assertThrowsIm(() => bucketOf(-1), ProtocolError, "bad-length");
  assertThrowsIm(() => bucketOf(0.5), ProtocolError, "bad-length");
});

// ---------------------------------------------------------------------------
// On a channel

function keys(seed: number): DirectionKeys {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

/** Sizes of the DATA records an end sent, in order. */
function dataRecordSizes(t: MemoryTransport): number[] {
  return t.sent
    .filter((p) => p[0] === FrameKind.RECORD && p[1] === RecordType.DATA)
    .map((p) => p.length);
}

function channelPair(opts: { pad?: boolean; maxRecordBytes?: number }) {
  const [ta, tb] = memoryPair();
  const o = { heartbeatMs: 0, ...opts };
  const a = new SecureChannel(
    ta,
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    o,
  );
  const b = new SecureChannel(
    tb,
    new RecordSealer(keys(10)),
    new RecordOpener(keys(1)),
    o,
  );
  return { a, b, ta, tb };
}

/** The first `n` messages `ch` reports. */
async function messages(ch: SecureChannel, n: number): Promise<Message[]> {
  const out: Message[] = [];
  for await (const ev of ch.events()) {
    if (ev.kind === "message") out.push(ev.msg);
    else assert.fail(`unexpected ${ev.kind}`);
    if (out.length === n) break;
  }
  return out;
}

Deno.test("a padded channel seals a message whose bucket passes the room only up to the room: the record is exactly the limit, and it arrives", async () => {
  const { a, b, ta } = channelPair({ pad: true, maxRecordBytes: 1000 });
  const m: Message = { t: "msg", id: "1", text: "x".repeat(600) };
  assert.ok(encodeMessage(m).length < 950 && bucketOf(620) === 1024);
  await a.send(m);
  assert.deepEqual(dataRecordSizes(ta), [1000]);
  assert.deepEqual(await messages(b, 1), [m]);
  a.abort("test");
  b.abort("test");
});

Deno.test("a padded channel still refuses a message that does not fit unpadded (message-too-large), using no sequence number", async () => {
  const { a, b, ta } = channelPair({ pad: true, maxRecordBytes: 1000 });
  const m: Message = { t: "msg", id: "1", text: "x".repeat(1000) };
  await assertRejectsIm(() => a.send(m), ProtocolError, "message-too-large");
  assert.equal(ta.sent.length, 0);
  assert.equal(a.closed, false);
  a.abort("test");
  b.abort("test");
});

Deno.test("a server link's channel is not padded: two short messages give records of different lengths", async () => {
  const { a, b, ta } = channelPair({});
  await a.send({ t: "session", peer: "A" });
  await a.send({ t: "session", peer: "ABCDEFGHIJ" });
  const [x, y] = dataRecordSizes(ta);
  assert.equal(y! - x!, 9);
  a.abort("test");
  b.abort("test");
});

// ---------------------------------------------------------------------------
// A real peer session (lib/client/peer_session.ts)

/** A host A and a joiner B after a real peer handshake over memory. */
async function peerSessions(maxFrameBytes?: number) {
  const joinerLogin = await loginInMemory("B");
  const s = await peerSetup("A", joinerLogin, "B");
  const [ta, tb] = memoryPair("memory:b", "memory:a");
  if (maxFrameBytes !== undefined) {
    ta.maxFrameBytes = maxFrameBytes;
    tb.maxFrameBytes = maxFrameBytes;
  }
  const [host, joiner] = await Promise.all([
    hostPeer(ta, {
      self: "A",
      joiner: "B",
      peerKey: s.peerKey,
      ticket: s.ticket,
      ticketId: s.ticketId,
      identity: s.hostIdentity,
      peerIdentity: s.joinerIdentity.publicIdentity,
    }, { heartbeatMs: 0 }),
    joinPeer(tb, {
      self: "B",
      expectedHost: "A",
      replayCache: new TicketReplayCache(),
      ticket: s.joinTicket,
      identity: s.joinerIdentity,
      peerIdentity: s.hostIdentity.publicIdentity,
    }, { heartbeatMs: 0 }),
  ]);
  return { host, joiner, ta, tb };
}

/** The first `n` texts `s` reports (reading them sends their receipts). */
async function texts(s: PeerSession, n: number): Promise<string[]> {
  const out: string[] = [];
  for await (const ev of s.events() as AsyncGenerator<PeerEvent>) {
    if (ev.kind === "text") out.push(ev.text);
    else assert.fail(`unexpected ${ev.kind}`);
    if (out.length === n) break;
  }
  return out;
}

Deno.test("a peer session pads: two messages of different lengths in one bucket give DATA records of equal length on the wire, and arrive unpadded", async () => {
  const { host, joiner, ta, tb } = await peerSessions();
  try {
    await host.sendText("hi"); // 32 bytes encoded
    await host.sendText("a longer one, in the same bucket"); // 62 bytes
    await host.sendText("x".repeat(60)); // 90 bytes encoded: the 128-byte bucket
    const [short, long, next] = dataRecordSizes(ta);
    assert.equal(short, long);
    assert.equal(short, RECORD_MIN_BYTES + 64);
    assert.equal(next, RECORD_MIN_BYTES + 128);
    assert.deepEqual(await texts(joiner, 3), [
      "hi",
      "a longer one, in the same bucket",
      "x".repeat(60),
    ]);
    // The joiner's receipt, one `ack` for the run of three after the quiet
    // spell (PROTOCOL.md section 6, "Receipts"), is padded to 64 like any
    // small message.
    await until(() => dataRecordSizes(tb).length === 1, "the joiner's receipt");
    await joiner.sendText("ok");
    assert.deepEqual(dataRecordSizes(tb), Array(2).fill(RECORD_MIN_BYTES + 64));
  } finally {
    await host.close("test", 0);
    await joiner.close("test", 0);
  }
});

Deno.test("a message of MAX_MESSAGE_BYTES on a peer session over a relay's frame limit is padded only to the record limit, and still sent and read", async () => {
  // What RelayTransport.maxFrameBytes is under a 64 KiB server: the peer
  // frame, base64 in a relay message, must fit one server record
  // (lib/client/server_link.ts relayFrameLimit). Its bucket, 49152, does not.
  const relayLimit = Math.floor((65536 - RECORD_MIN_BYTES - 67) / 4) * 3;
  assert.equal(relayLimit, 49062);
  const { host, joiner, ta } = await peerSessions(relayLimit);
  try {
    const overhead = encodeMessage({ t: "msg", id: "1", text: "" }).length;
    const text = "y".repeat(MAX_MESSAGE_BYTES - overhead);
    assert.equal(
      encodeMessage({ t: "msg", id: "1", text }).length,
      MAX_MESSAGE_BYTES,
    );
    assert.ok(bucketOf(MAX_MESSAGE_BYTES) + RECORD_MIN_BYTES > relayLimit);
    await host.sendText(text);
    assert.deepEqual(dataRecordSizes(ta), [relayLimit]);
    assert.deepEqual(await texts(joiner, 1), [text]);
  } finally {
    await host.close("test", 0);
    await joiner.close("test", 0);
  }
});

Deno.test("what a peer decodes from a padded record is the message, whatever the padding", () => {
  const m: Message = { t: "msg", id: "7", text: "héllo ✓" };
  for (const cap of [Infinity, 64, 40, 0]) {
    assert.deepEqual(decodePeerToPeer(padToBucket(encodeMessage(m), cap)), m);
  }
});
