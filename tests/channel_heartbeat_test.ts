/**
 * Heartbeats (PROTOCOL.md section 4, "Heartbeats", "The bound"): the idle
 * interval, its announcement, the way back to the active one, the bound on
 * noticing a silent peer, and that a peer keeping to its interval is never
 * dropped. The channels run on a {@link HeartbeatScheduler} with a clock the
 * test moves, so the bound is checked exactly, whatever the machine's load;
 * the records are real (sealed, opened), over in-memory transports.
 */

import assert from "node:assert/strict";
import {
  type ChannelEvent,
  RecordChannel,
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../lib/record/mod.ts";
import {
  HeartbeatScheduler,
  slackMs,
  STALL_MS,
} from "../lib/record/scheduler.ts";
import {
  IDLE_AFTER_MS,
  IDLE_HEARTBEAT_MS,
  MAX_RECHECKS,
  RECHECK_MS,
} from "../lib/record/liveness.ts";
import type { DirectionKeys } from "../lib/crypto/mod.ts";
import {
  type FrameTransport,
  memoryPair,
  TcpTransport,
} from "../lib/wire/mod.ts";
import { NetError } from "../lib/util/mod.ts";
import { assertRejectsIm } from "./_helpers.ts";
import { heartbeats } from "../lib/record/scheduler.ts";

function keys(seed: number): DirectionKeys {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

const text = {
  encode: (m: string) => new TextEncoder().encode(m),
  decode: (p: Uint8Array) => new TextDecoder().decode(p),
};

interface Opts {
  heartbeatMs: number;
  idleHeartbeatMs?: number;
  idleAfterMs?: number;
}

/**
 * Two channels on one virtual clock. `deliveredAt` is when (virtual) each
 * side last had a record delivered to it; `mute.a` drops what a sends.
 */
function world(opts: Opts) {
  const clock = { now: 1_000_000 };
  const s = new HeartbeatScheduler({ now: () => clock.now, timers: false });
  const [ta, tb] = memoryPair();
  const deliveredAt = { a: clock.now, b: clock.now };
  const mute = { a: false, b: false };
  ta.tap = (p) => {
    if (mute.a) return [];
    deliveredAt.b = clock.now;
    return [p];
  };
  tb.tap = (p) => {
    if (mute.b) return [];
    deliveredAt.a = clock.now;
    return [p];
  };
  const o = { ...opts, scheduler: s };
  const a = new RecordChannel(
    ta,
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    text,
    o,
  );
  const b = new RecordChannel(
    tb,
    new RecordSealer(keys(10)),
    new RecordOpener(keys(1)),
    text,
    o,
  );
  const events = {
    a: [] as ChannelEvent<string>[],
    b: [] as ChannelEvent<string>[],
  };
  const reading = Promise.all([
    (async () => {
      for await (const ev of a.events()) events.a.push(ev);
    })(),
    (async () => {
      for await (const ev of b.events()) events.b.push(ev);
    })(),
  ]);
  /**
   * Let the readers take what was sent: the in-memory transports and the
   * channels' readers run on promises alone, so one macrotask turn drains
   * them (no time passes on the virtual clock).
   */
  const drain = () => new Promise((r) => setTimeout(r, 0));
  /**
   * Move the clock to `t`, stopping at each time something is due: run it,
   * let the records it sent arrive, and go on.
   */
  const runTo = async (t: number) => {
    for (;;) {
      const next = s.nextDue;
      if (next > t) {
        clock.now = Math.max(clock.now, t);
        return;
      }
      clock.now = Math.max(clock.now, next);
      s.runDue();
      await drain();
    }
  };
  /** Run what comes due next, moving the clock to it. */
  const step = async () => {
    clock.now = Math.max(clock.now, s.nextDue);
    s.runDue();
    await drain();
  };
  const end = async () => {
    a.abort("test");
    b.abort("test");
    await reading;
    assert.equal(s.size, 0, "closed channels leave the scheduler");
  };
  return {
    clock,
    s,
    a,
    b,
    ta,
    tb,
    deliveredAt,
    mute,
    events,
    drain,
    runTo,
    step,
    end,
  };
}

Deno.test("idle channels announce the idle interval and keep to it; the next DATA record either way makes both active again and says so", async () => {
  const w = world({
    heartbeatMs: 100,
    idleHeartbeatMs: 2000,
    idleAfterMs: 1000,
  });
  try {
    await w.drain();
    assert.equal(w.a.deadAfterMs, 300, "each heard the other's 100 ms");
    await w.runTo(w.clock.now + 900);
    assert.equal(w.a.idle || w.b.idle, false, "active before 1 s without DATA");
    await w.runTo(w.clock.now + 200);
    assert.ok(w.a.idle && w.b.idle, "idle after 1 s without DATA");
    // Each heard the other announce 2 s: its bound grew before the silence.
    assert.equal(w.a.deadAfterMs, 6000);
    assert.equal(w.b.deadAfterMs, 6000);
    const before = w.ta.sent.length;
    await w.runTo(w.clock.now + 10_000);
    const idleRecords = w.ta.sent.length - before;
    // One every 2 s (rounded up by at most 1/8): 4 or 5 in 10 s, not 100.
    assert.ok(idleRecords >= 4 && idleRecords <= 5, `${idleRecords} records`);
    assert.equal(w.a.closed || w.b.closed, false);
    // b sends: both are active again, and each told the other at once.
    await w.b.send("hello");
    await w.drain();
    assert.equal(w.b.idle, false);
    assert.equal(w.a.idle, false, "a received DATA");
    assert.equal(w.a.deadAfterMs, 300, "b announced 100 ms again");
    assert.equal(w.b.deadAfterMs, 300, "a announced 100 ms again");
    assert.ok(
      w.events.a.some((e) => e.kind === "message" && e.msg === "hello"),
    );
    // And a's heartbeats are back at 100 ms.
    const n = w.ta.sent.length;
    await w.runTo(w.clock.now + 500);
    assert.ok(w.ta.sent.length - n >= 4, `${w.ta.sent.length - n} records`);
  } finally {
    await w.end();
  }
});

/** Silence `a` at a moment, then step until b notices: not before the bound, not after it plus its slack. */
async function silentWithin(opts: Opts, idle: boolean, boundMs: number) {
  const w = world(opts);
  try {
    await w.drain();
    if (idle) {
      await w.runTo(w.clock.now + (opts.idleAfterMs ?? IDLE_AFTER_MS) + 200);
      assert.ok(w.a.idle && w.b.idle);
    } else {
      await w.runTo(w.clock.now + 3 * opts.heartbeatMs);
      assert.equal(w.a.idle || w.b.idle, false);
    }
    const bound = w.b.deadAfterMs;
    assert.equal(bound, boundMs);
    w.mute.a = true;
    const last = w.deliveredAt.b;
    const late = slackMs(bound);
    while (!w.b.closed) await w.step();
    const silentFor = w.clock.now - last;
    assert.ok(
      silentFor >= bound,
      `declared gone after ${silentFor} ms, under ${bound}`,
    );
    assert.ok(
      silentFor <= bound + late,
      `declared gone after ${silentFor} ms of silence (bound ${bound} + ${late})`,
    );
    const closed = w.events.b.at(-1);
    assert.ok(
      closed?.kind === "closed" && closed.error?.code === "peer-silent",
    );
    assert.equal(closed.reason, "timeout");
  } finally {
    await w.end();
  }
}

Deno.test("a silent peer is declared gone within the bound: 3 x the active interval (+ at most 1/8) while active", async () => {
  await silentWithin(
    {
      heartbeatMs: 100,
      idleHeartbeatMs: 2000,
      idleAfterMs: 5000,
    },
    false,
    300,
  );
});

Deno.test("a silent peer is declared gone within the bound: 3 x the announced idle interval (+ at most 1 s) while idle, at the defaults' 60 s", async () => {
  // The defaults: idle after 10 s, then 60 s (PROTOCOL.md section 4, "Why
  // the idle interval is 60 s"), so 180 s of silence, never 90.
  await silentWithin({ heartbeatMs: 2000 }, true, 180_000);
});

Deno.test("an announced interval over 60000 ms is taken as 60000: a peer cannot stretch the bound past 3 x 60 s", async () => {
  const w = world({ heartbeatMs: 2000 });
  // Records as b's sealer would make them, after b's first HEARTBEAT (number
  // 0); the clock does not move, so b sends nothing else meanwhile.
  const forge = new RecordSealer(keys(10), 1n);
  const announce = async (ms: number) => {
    const body = new Uint8Array(4);
    new DataView(body.buffer).setUint32(0, ms);
    await w.tb.send(forge.seal(RecordType.HEARTBEAT, body));
    await w.drain();
  };
  try {
    await w.drain();
    assert.equal(w.a.deadAfterMs, 6000, "b announced 2 s");
    await announce(0xffff_ffff);
    assert.equal(w.a.deadAfterMs, 3 * 60_000, "clamped to 60 s");
    await announce(60_001);
    assert.equal(w.a.deadAfterMs, 3 * 60_000, "clamped to 60 s");
    await announce(45_000);
    assert.equal(w.a.deadAfterMs, 3 * 45_000, "taken as it is");
    assert.equal(w.a.closed, false);
  } finally {
    forge.wipe();
    await w.end();
  }
});

Deno.test("a busy peer is never dropped: DATA in bursts and pauses, idle spells and the way back, over 20 minutes of the defaults", async () => {
  const w = world({ heartbeatMs: 2000 });
  try {
    await w.drain();
    const start = w.clock.now;
    let turns = 0;
    // Pauses around the idle threshold and past the idle bound, both ways.
    const pauses = [
      500,
      3000,
      9_000,
      11_000,
      45_000,
      95_000,
      200,
      10_000,
      61_000,
      190_000,
      125_000,
    ];
    assert.equal(IDLE_HEARTBEAT_MS, 60_000, "the defaults of PROTOCOL.md");
    for (let i = 0; w.clock.now < start + 1_200_000; i++) {
      const sender = i % 3 === 0 ? w.a : w.b;
      await sender.send(`m${i}`);
      await w.runTo(w.clock.now + pauses[i % pauses.length]!);
      assert.equal(w.a.closed || w.b.closed, false, `dropped at turn ${i}`);
      turns++;
    }
    assert.ok(turns > 20);
    const got = w.events.a.concat(w.events.b).filter((e) =>
      e.kind === "message"
    );
    assert.equal(got.length, turns);
  } finally {
    await w.end();
  }
});

Deno.test("channels on the shared scheduler leave it when they close: no timer is left behind", async () => {
  const [ta, tb] = memoryPair();
  const before = heartbeats.size;
  const a = new RecordChannel(
    ta,
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    text,
    { heartbeatMs: 50 },
  );
  const b = new RecordChannel(
    tb,
    new RecordSealer(keys(10)),
    new RecordOpener(keys(1)),
    text,
    { heartbeatMs: 50 },
  );
  assert.equal(heartbeats.size, before + 2);
  assert.equal(heartbeats.armed, true);
  await a.close("done");
  for await (const ev of b.events()) if (ev.kind === "closed") break;
  assert.equal(heartbeats.size, before);
  if (before === 0) assert.equal(heartbeats.armed, false);
});

Deno.test("a late timer run does not call a peer silent: it looks again 100 ms later and the verdict stands only if nothing came; the third late run in a row gives it", async () => {
  const opts = { heartbeatMs: 100, idleHeartbeatMs: 2000, idleAfterMs: 5000 };
  const w = world(opts);
  try {
    await w.drain();
    await w.runTo(w.clock.now + 300);
    assert.equal(w.b.deadAfterMs, 300);
    // The process stalls 1.5 s: a's records are not read (muted), then the
    // timer fires 1.4 s late. b must not judge on that run.
    w.mute.a = true;
    w.clock.now += 1500;
    w.s.runDue(1400);
    await w.drain();
    assert.equal(w.b.closed, false, "no verdict on a run 1.4 s late");
    assert.equal(w.s.nextDue - w.clock.now >= RECHECK_MS, true);
    // What a sent meanwhile is read before the look again: b keeps a.
    w.mute.a = false;
    await w.a.send("was waiting");
    await w.drain();
    await w.step();
    assert.equal(w.b.closed, false, "a record read before the recheck");
    assert.ok(
      w.events.b.some((e) => e.kind === "message" && e.msg === "was waiting"),
    );
    // Silent for real: a late run puts the verdict off once, the run on
    // time after it gives it, RECHECK_MS (rounded) after.
    await w.runTo(w.clock.now + 200);
    w.mute.a = true;
    w.clock.now += 1000;
    w.s.runDue(STALL_MS + 1);
    await w.drain();
    assert.equal(w.b.closed, false);
    const late = w.clock.now;
    while (!w.b.closed) await w.step();
    assert.ok(
      w.clock.now - late >= RECHECK_MS &&
        w.clock.now - late <= RECHECK_MS + slackMs(RECHECK_MS),
      `${w.clock.now - late} ms after the late run`,
    );
    const closed = w.events.b.at(-1);
    assert.ok(
      closed?.kind === "closed" && closed.error?.code === "peer-silent",
    );
  } finally {
    await w.end();
  }
  // An idle b sends while it waits to look again: the DATA makes it active
  // and brings its entry forward to a run on time, which still leaves the
  // reads their 100 ms.
  const u = world({
    heartbeatMs: 100,
    idleHeartbeatMs: 2000,
    idleAfterMs: 500,
  });
  try {
    await u.drain();
    await u.runTo(u.clock.now + 800);
    assert.ok(u.a.idle && u.b.idle);
    u.mute.a = true;
    u.clock.now += u.b.deadAfterMs + 1000;
    u.s.runDue(1000);
    await u.drain();
    assert.equal(u.b.closed, false);
    const late = u.clock.now;
    await u.b.send("while waiting to look again");
    assert.ok(u.s.nextDue < late + RECHECK_MS, "brought forward");
    await u.step();
    assert.equal(u.b.closed, false, "no verdict before the recheck");
    while (!u.b.closed) await u.step();
    assert.ok(u.clock.now - late >= RECHECK_MS, `${u.clock.now - late} ms`);
  } finally {
    await u.end();
  }
  // A process late on every run still drops a silent peer: on the third.
  const v = world(opts);
  try {
    await v.drain();
    await v.runTo(v.clock.now + 300);
    v.mute.a = true;
    v.clock.now += 1000;
    let runs = 0;
    while (!v.b.closed && runs < 10) {
      runs++;
      v.s.runDue(STALL_MS + 50);
      await v.drain();
      v.clock.now = Math.max(v.clock.now, v.s.nextDue) + STALL_MS + 50;
    }
    assert.equal(runs, MAX_RECHECKS + 1, "given on the third late run");
    const closed = v.events.b.at(-1);
    assert.ok(
      closed?.kind === "closed" && closed.error?.code === "peer-silent",
    );
  } finally {
    await v.end();
  }
});

Deno.test("a stalled process keeps its channels: two channels over TCP on real timers, the process blocked 1.5 s against a bound of 600 ms, neither calls the other silent", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const [ca, cb] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port }),
    listener.accept(),
  ]);
  listener.close();
  const s = new HeartbeatScheduler();
  const o = { heartbeatMs: 200, idleHeartbeatMs: 2000, scheduler: s };
  const a = new RecordChannel(
    TcpTransport.wrap(ca),
    new RecordSealer(keys(1)),
    new RecordOpener(keys(10)),
    text,
    o,
  );
  const b = new RecordChannel(
    TcpTransport.wrap(cb),
    new RecordSealer(keys(10)),
    new RecordOpener(keys(1)),
    text,
    o,
  );
  const closed: string[] = [];
  const reading = Promise.all([a, b].map(async (c, i) => {
    for await (const ev of c.events()) {
      if (ev.kind === "closed") closed.push(`${"ab"[i]}: ${ev.error?.code}`);
    }
  }));
  try {
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(a.deadAfterMs, 600, "each heard the other's 200 ms");
    // The whole process stops running for 1.5 s (as in a long garbage
    // collection): nothing is read or sent, then the timer fires late.
    const until = performance.now() + 1500;
    while (performance.now() < until) { /* blocked */ }
    await new Promise((r) => setTimeout(r, 1200));
    assert.deepEqual(closed, [], "no channel called its peer silent");
    assert.equal(a.closed || b.closed, false);
  } finally {
    a.abort("test");
    b.abort("test");
    await reading;
  }
});

/** The peer of the next test, in a process of its own: it sends a heartbeat every 200 ms and reports how its channel ended. */
const STEADY_PEER = (lib: string) => `
import { RecordChannel, RecordOpener, RecordSealer } from "${lib}/record/mod.ts";
import { TcpTransport } from "${lib}/wire/mod.ts";
const keys = (seed) => ({
  enc: new Uint8Array(32).fill(seed),
  iv: new Uint8Array(32).fill(seed + 1),
  mac: new Uint8Array(32).fill(seed + 2),
});
const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(Deno.args[0]) });
const channel = new RecordChannel(
  TcpTransport.wrap(conn),
  new RecordSealer(keys(10)),
  new RecordOpener(keys(1)),
  { encode: (m) => new TextEncoder().encode(m), decode: (p) => new TextDecoder().decode(p) },
  // It keeps to 200 ms itself but waits out the other side's stall.
  { heartbeatMs: 200, idleHeartbeatMs: 2000, deadAfterMs: 30_000 },
);
for await (const ev of channel.events()) {
  if (ev.kind === "closed") console.log(JSON.stringify({ reason: ev.reason }));
}
`;

Deno.test("a stalled process reads what its peer sent meanwhile before it judges: a peer in another process keeps sending every 200 ms while this one is blocked 1.5 s against a bound of 600 ms, and the channel stays", async () => {
  const dir = await Deno.makeTempDir({ prefix: "im-stall-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const script = `${dir}/peer.js`;
  await Deno.writeTextFile(
    script,
    STEADY_PEER(new URL("../lib", import.meta.url).href),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", script, String(port)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const output = new Response(child.stdout).text();
  let a: RecordChannel<string, string> | undefined;
  let reading: Promise<void> = Promise.resolve();
  const closed: string[] = [];
  try {
    const conn = await listener.accept();
    a = new RecordChannel(
      TcpTransport.wrap(conn),
      new RecordSealer(keys(1)),
      new RecordOpener(keys(10)),
      text,
      {
        heartbeatMs: 200,
        idleHeartbeatMs: 2000,
        scheduler: new HeartbeatScheduler(),
      },
    );
    const channel = a;
    reading = (async () => {
      for await (const ev of channel.events()) {
        if (ev.kind === "closed") closed.push(`${ev.error?.code}`);
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(a.deadAfterMs, 600, "the peer announced 200 ms");
    // This process stops for 1.5 s; the peer's heartbeats wait unread.
    const until = performance.now() + 1500;
    while (performance.now() < until) { /* blocked */ }
    await new Promise((r) => setTimeout(r, 1200));
    assert.deepEqual(closed, [], "the peer was not called silent");
    assert.equal(a.closed, false);
    await a.close("test");
  } finally {
    a?.abort("test");
    await reading;
    listener.close();
    if (!a) child.kill();
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
  // The peer saw the channel end only when this side closed it.
  assert.deepEqual(JSON.parse((await output).trim()), { reason: "test" });
});

Deno.test("an idle channel whose DATA makes it active, and whose heartbeat saying so cannot be written, ends and leaves the scheduler (the failure comes back at once through post())", async () => {
  const w = world({
    heartbeatMs: 100,
    idleHeartbeatMs: 2000,
    idleAfterMs: 1000,
  });
  try {
    await w.runTo(w.clock.now + 1500);
    assert.ok(w.a.idle && w.b.idle, "both idle");
    const tries: number[] = [];
    (w.ta as FrameTransport).post = (frame, failed) => {
      // As TcpTransport does for a peer that stopped reading: closed, and
      // the failure told at once.
      tries.push(frame[5]!);
      w.ta.close();
      failed(new NetError("send-queue-full", "Peer is not reading"));
    };
    // The DATA itself is refused: the channel ended before it was sealed.
    await assertRejectsIm(() => w.a.send("hi"), NetError, "closed");
    assert.deepEqual(
      tries,
      [RecordType.HEARTBEAT],
      "the active interval, announced",
    );
    assert.ok(w.a.closed, "the failed heartbeat ended the channel");
    await w.drain();
    // a left the scheduler, and so did b, whose link a's close ended.
    assert.ok(w.b.closed);
    assert.equal(w.s.size, 0, "a stayed in the scheduler");
  } finally {
    await w.end();
  }
});
