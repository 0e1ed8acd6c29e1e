/**
 * The child process of the `heartbeats` section (bench/heartbeats.ts): `n`
 * connection pairs over loopback in this one process, every side sending a
 * heartbeat-sized frame every `intervalMs`, and the CPU this process used
 * over `seconds` once they run.
 *
 * - `im`: each side a {@link RecordChannel} (the record layer, the shared
 *   heartbeat scheduler and {@link TcpTransport}), heartbeats only: what a
 *   server does for an idle client, both ends of it;
 * - `bare`: the floor on this runtime, each side a bare `Deno.Conn` that
 *   writes the same 58 bytes (a HEARTBEAT record's frame) from one shared
 *   timer and reads with one pending read of 128 bytes (the idle read
 *   buffer): the system calls and promises a record needs with nothing of
 *   ours around them.
 *
 * It answers with one JSON line: `{ "records": ..., "cpuMs": ... }`, the
 * records (frames) received while measured and the CPU time (user + system).
 *
 * `deno run --allow-net=127.0.0.1 bench/_heartbeats.ts <im|bare> <n> <intervalMs> <seconds>`
 * @module
 */

import process from "node:process";
import {
  RecordChannel,
  type RecordCodec,
  RecordOpener,
  RecordSealer,
} from "../lib/record/mod.ts";
import { TcpTransport } from "../lib/wire/mod.ts";
import { sleep } from "../lib/util/mod.ts";

/** A HEARTBEAT record's frame: length prefix, kind, header, 4-byte body, tag. */
const FRAME_BYTES = 4 + 1 + 17 + 4 + 32;
/** The idle read buffer of lib/wire/tcp.ts. */
const READ_BYTES = 128;
/** How long the pairs run before the measurement starts (every side beating). */
const SETTLE_MS = 2000;

const [mode, nArg, intervalArg, secondsArg] = Deno.args;
const n = Number(nArg), intervalMs = Number(intervalArg);
const seconds = Number(secondsArg);
if (
  (mode !== "im" && mode !== "bare") || !(n > 0) || !(intervalMs > 0) ||
  !(seconds > 0)
) {
  console.error(
    "usage: _heartbeats.ts <im|bare> <pairs> <intervalMs> <seconds>",
  );
  Deno.exit(2);
}

/** Heartbeats only: nothing is ever encoded or decoded. */
const codec: RecordCodec<Uint8Array, Uint8Array> = {
  encode: (m) => m.slice(),
  decode: (p) => p.slice(),
};

function keys(seed: number) {
  return {
    enc: new Uint8Array(32).fill(seed),
    iv: new Uint8Array(32).fill(seed + 1),
    mac: new Uint8Array(32).fill(seed + 2),
  };
}

let records = 0;
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = (listener.addr as Deno.NetAddr).port;
const readers: Promise<void>[] = [];
const stops: (() => void)[] = [];

async function connectPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const [a, b] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port }),
    listener.accept(),
  ]);
  a.setNoDelay(true);
  b.setNoDelay(true);
  return [a, b];
}

if (mode === "im") {
  // Every side active at this interval and never idle: the interval is the
  // rate, the records are heartbeats all the same.
  const opts = {
    heartbeatMs: intervalMs,
    idleHeartbeatMs: intervalMs,
    deadAfterMs: 600_000,
  };
  for (let i = 0; i < n; i++) {
    const [ca, cb] = await connectPair();
    const a = new RecordChannel(
      TcpTransport.wrap(ca),
      new RecordSealer(keys(1)),
      new RecordOpener(keys(10)),
      codec,
      opts,
    );
    const b = new RecordChannel(
      TcpTransport.wrap(cb),
      new RecordSealer(keys(10)),
      new RecordOpener(keys(1)),
      codec,
      opts,
    );
    for (const ch of [a, b]) {
      readers.push((async () => {
        // Heartbeats are no events: the records are counted where they are
        // opened (below). Anything else here (a discarded record) is a fault.
        for await (const ev of ch.events()) {
          if (ev.kind !== "closed") {
            throw new Error(`unexpected channel event: ${ev.kind}`);
          }
        }
      })());
      stops.push(() => ch.abort("done"));
    }
  }
  // Heartbeats are not events: count the records opened instead.
  const open = RecordOpener.prototype.open;
  RecordOpener.prototype.open = function (payload, now) {
    records++;
    return open.call(this, payload, now);
  };
} else {
  const frame = new Uint8Array(FRAME_BYTES);
  new DataView(frame.buffer).setUint32(0, FRAME_BYTES - 4);
  frame[4] = 0x10;
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < n; i++) conns.push(...await connectPair());
  for (const conn of conns) {
    readers.push((async () => {
      const buf = new Uint8Array(READ_BYTES);
      let have = 0;
      try {
        for (;;) {
          const got = await conn.read(buf);
          if (got === null) return;
          have += got;
          while (have >= FRAME_BYTES) {
            have -= FRAME_BYTES;
            records++;
          }
        }
      } catch {
        // closed at the end
      }
    })());
    stops.push(() => conn.close());
  }
  // One timer for all, as the scheduler has: every side once an interval.
  const TICK_MS = 50;
  const ticks = Math.max(1, Math.round(intervalMs / TICK_MS));
  let tick = 0;
  const timer = setInterval(() => {
    for (let i = tick % ticks; i < conns.length; i += ticks) {
      conns[i]!.write(frame).catch(() => {});
    }
    tick++;
  }, TICK_MS);
  stops.push(() => clearInterval(timer));
}

await sleep(SETTLE_MS);
const before = records;
const cpu0 = process.cpuUsage();
await sleep(seconds * 1000);
const cpu = process.cpuUsage(cpu0);
const measured = records - before;
console.log(JSON.stringify({
  records: measured,
  cpuMs: (cpu.user + cpu.system) / 1000,
}));
for (const stop of stops) stop();
await Promise.allSettled(readers);
listener.close();
