/**
 * Peer-to-peer messages: one-way latency p50/p99 and messages per second,
 * for one pair and for 50 pairs at once. Each pair is a real
 * {@link PeerSession} over loopback TCP (peer handshake, records, the
 * receiver's delivery receipts, heartbeats), set up with a ticket sealed
 * here as the server would. Both ends run in this process, so one clock
 * times the way from `sendText` to the receiver's `text` event.
 *
 * Peer records are padded to size buckets (PROTOCOL.md section 6,
 * "Padding"; issue 16 item 4): the 100-character text here encodes to about
 * 130 bytes and is sealed as 256, each receipt (20 bytes) as 64. Measured
 * with the record layer alone (one core, 20,000 records each), a seal and an
 * open take about 16 us for 130 bytes and 20 us for 256, 9 us for 20 and
 * 12 us for 64: some 6 us more per message and its receipt, which the
 * peer figures of BENCHMARKS.md, measured before padding, did not pay.
 *
 * @example
 * ```ts ignore
 * import { benchMessages } from "./messages.ts";
 * await benchMessages({ quick: true, report, limits });
 * ```
 * @module
 */

import { randomBytes } from "../lib/util/mod.ts";
import {
  generateRsaKeyPair,
  loadPrivateIdentity,
  type PrivateIdentity,
} from "../lib/crypto/mod.ts";
import { hostPeer, joinPeer, type PeerSession } from "../lib/client/mod.ts";
import {
  openJoinTicket,
  sealTicket,
  TicketReplayCache,
} from "../lib/proto/mod.ts";
import { TcpTransport } from "../lib/wire/mod.ts";
import { percentile, type Report } from "./_stats.ts";
import type { Limits } from "./limits.ts";

/** Options of {@link benchMessages}. */
export interface MessagesBenchOptions {
  quick: boolean;
  report: Report;
  limits: Limits;
}

/** A running pair with its event pumps. */
interface Pair {
  host: PeerSession;
  join: PeerSession;
  /** Called with each text the joiner receives. */
  onText: (text: string) => void;
  pumps: Promise<void>;
}

/** Chat text of about 100 bytes that starts with the send time. */
function stamped(): string {
  return `${performance.now()}|`.padEnd(100, "x");
}

async function pump(
  s: PeerSession,
  onText: (text: string) => void,
): Promise<void> {
  for await (const ev of s.events()) {
    if (ev.kind === "text") onText(ev.text);
  }
}

let pairIdentity: Promise<PrivateIdentity> | undefined;

/**
 * The one key every bench user signs its FINISHED with (PROTOCOL.md section
 * 6, key continuity), made once: the handshake is set-up, not what is timed.
 */
function benchIdentity(): Promise<PrivateIdentity> {
  pairIdentity ??= generateRsaKeyPair(2048).then((k) =>
    loadPrivateIdentity(k.privatePem)
  );
  return pairIdentity;
}

/** A host and a joiner in session over loopback TCP, as after `!session`. */
async function makePair(listener: Deno.TcpListener, i: number): Promise<Pair> {
  const identity = await benchIdentity();
  const peerIdentity = identity.publicIdentity;
  const port = (listener.addr as Deno.NetAddr).port;
  const ticketKeys = { enc: randomBytes(32), mac: randomBytes(32) };
  const peerKey = randomBytes(32);
  const ticketId = randomBytes(16);
  const host = `h${i}`, joiner = `j${i}`;
  const ticket = sealTicket(ticketKeys, {
    id: ticketId,
    host,
    joiner,
    expiresAt: Date.now() + 30_000,
    peerKey,
  });
  const accepted = listener.accept();
  const jt = await TcpTransport.connect("127.0.0.1", port);
  const ht = TcpTransport.wrap(await accepted);
  const [h, j] = await Promise.all([
    hostPeer(ht, {
      self: host,
      joiner,
      peerKey,
      ticket,
      ticketId,
      identity,
      peerIdentity,
    }),
    joinPeer(jt, {
      self: joiner,
      expectedHost: host,
      replayCache: new TicketReplayCache(),
      identity,
      peerIdentity,
      // As the joiner opens it from the server's `join`.
      ticket: openJoinTicket(ticketKeys, ticket, {
        self: joiner,
        expectedHost: host,
        ticketId,
      }),
    }),
  ]);
  const pair: Pair = {
    host: h,
    join: j,
    onText: () => {},
    pumps: Promise.resolve(),
  };
  pair.pumps = Promise.all([
    pump(h, () => {}),
    pump(j, (t) => pair.onText(t)),
  ]).then(() => {});
  return pair;
}

/** `n` messages host to joiner, each sent once the previous one arrived. */
async function pingLatencies(p: Pair, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const arrived = new Promise<void>((resolve) => {
      p.onText = (text) => {
        out.push(performance.now() - Number(text.slice(0, text.indexOf("|"))));
        resolve();
      };
    });
    await p.host.sendText(stamped());
    await arrived;
  }
  return out;
}

/** `n` messages host to joiner as fast as the sender can queue them; resolves when all arrived. */
async function blast(p: Pair, n: number): Promise<void> {
  let got = 0;
  const all = new Promise<void>((resolve) => {
    p.onText = () => {
      if (++got === n) resolve();
    };
  });
  const text = "x".repeat(100);
  let last: Promise<string> = Promise.resolve("");
  for (let i = 0; i < n; i++) {
    last = p.host.sendText(text);
    // Await every 256th send: writes are chained, so this bounds the queue.
    if ((i & 255) === 255) await last;
  }
  await last;
  await all;
}

/**
 * Run the messages section.
 * @param opts quick mode, report, limits
 * @returns the one-pair p50 one-way latency in ms
 * @example
 * ```ts ignore
 * import { benchMessages } from "./messages.ts";
 * const p50 = await benchMessages({ quick: true, report, limits });
 * ```
 */
export async function benchMessages(
  opts: MessagesBenchOptions,
): Promise<number> {
  const { report, limits, quick } = opts;
  const sec = "messages";
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const oneWay = limits.echoRttP50Ms / 2;
  const oneWay99 = limits.echoRttP99Ms / 2;
  const echoSrc = "half the bare tcp echo rtt";

  // One pair.
  const p = await makePair(listener, 0);
  await pingLatencies(p, 50); // warm-up
  const lat = await pingLatencies(p, quick ? 500 : 5000);
  const p50 = percentile(lat, 50);
  report.add(sec, "peer one-way latency p50, 1 pair", p50 * 1000, "us", {
    limit: oneWay * 1000,
    limitSource: echoSrc,
    note: `${lat.length} messages of 100 chars, one in flight`,
  });
  report.add(
    sec,
    "peer one-way latency p99, 1 pair",
    percentile(lat, 99) * 1000,
    "us",
    { limit: oneWay99 * 1000, limitSource: "half the tcp echo rtt p99" },
  );
  const n1 = quick ? 10_000 : 50_000;
  await blast(p, 1000); // warm-up
  let t0 = performance.now();
  await blast(p, n1);
  const rate1 = n1 / ((performance.now() - t0) / 1000);
  report.add(sec, "peer msgs/s, 1 pair", rate1, "msg/s", {
    limit: limits.bareMsgsPerSec1,
    limitSource: "bare tcp, one awaited write per message",
    note: `${n1} messages of 100 chars, receipts included`,
  });

  // 50 pairs at once.
  const pairs: Pair[] = [p];
  for (let i = 1; i < 50; i++) pairs.push(await makePair(listener, i));
  const per = quick ? 20 : 100;
  const lats = (await Promise.all(pairs.map((q) => pingLatencies(q, per))))
    .flat();
  report.add(
    sec,
    "peer one-way latency p50, 50 pairs",
    percentile(lats, 50) * 1000,
    "us",
    {
      limit: oneWay * 1000,
      limitSource: echoSrc,
      note: `${lats.length} messages, one in flight per pair`,
    },
  );
  report.add(
    sec,
    "peer one-way latency p99, 50 pairs",
    percentile(lats, 99) * 1000,
    "us",
  );
  const n50 = quick ? 20_000 : 100_000;
  t0 = performance.now();
  await Promise.all(pairs.map((q) => blast(q, Math.ceil(n50 / 50))));
  const rate50 = (Math.ceil(n50 / 50) * 50) / ((performance.now() - t0) / 1000);
  report.add(sec, "peer msgs/s, 50 pairs", rate50, "msg/s", {
    limit: limits.bareMsgsPerSec50,
    limitSource: "bare tcp, 50 pairs",
    note: "all pairs sending at once",
  });

  for (const q of pairs) {
    await q.host.close("disconnect");
    await q.join.close("disconnect");
  }
  await Promise.all(pairs.map((q) => q.pumps));
  listener.close();
  return p50;
}
