/**
 * The read buffer of an idle channel (lib/wire/tcp.ts `setIdle`; PROTOCOL.md
 * section 4, "Heartbeats"; issue 15): while the channel is idle the reads
 * after the pending one use {@link IDLE_READ_BUFFER_BYTES} and the 1 KiB
 * buffer is dropped; a frame of any size still comes out whole; once active
 * again the reads use {@link READ_BUFFER_BYTES}. And a channel tells its
 * transport when it goes idle and active. Over real sockets on 127.0.0.1.
 */

import assert from "node:assert/strict";
import {
  IDLE_READ_BUFFER_BYTES,
  READ_BUFFER_BYTES,
  TcpTransport,
} from "../lib/wire/mod.ts";
import {
  RecordChannel,
  RecordOpener,
  RecordSealer,
} from "../lib/record/mod.ts";
import { HeartbeatScheduler } from "../lib/record/scheduler.ts";
import { randomBytes } from "../lib/util/mod.ts";

/** A transport `t` facing a raw socket `raw` that the test writes by hand. */
async function rawPeer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const [conn, raw] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port }),
    listener.accept(),
  ]);
  raw.setNoDelay(true);
  const t = TcpTransport.wrap(conn);
  return {
    t,
    raw,
    async write(b: Uint8Array) {
      let off = 0;
      while (off < b.length) off += await raw.write(b.subarray(off));
    },
    done() {
      t.close();
      try {
        raw.close();
      } catch {
        // already closed by the test
      }
      listener.close();
    },
  };
}

function frame(n: number, seed: number): Uint8Array {
  const f = new Uint8Array(4 + n);
  new DataView(f.buffer).setUint32(0, n);
  for (let i = 0; i < n; i++) f[4 + i] = (i * 31 + seed) & 0xff;
  return f;
}

Deno.test("an idle transport reads into the small buffer after its pending read, frames of every size still come out whole, and an active one is back on 1 KiB", async () => {
  const p = await rawPeer();
  try {
    assert.ok(IDLE_READ_BUFFER_BYTES < READ_BUFFER_BYTES);
    const first = p.t.recv();
    p.t.setIdle(true);
    // The pending read keeps the buffer it was given.
    assert.equal(p.t.readBufferBytes, READ_BUFFER_BYTES);
    await p.write(frame(10, 1));
    assert.deepEqual(await first, frame(10, 1).subarray(4));
    // Frames below, at, around and far above the small buffer's size, one
    // at a time and several in one write.
    const sizes = [1, 54, 123, 124, 125, 128, 129, 500, 1019, 1020, 5000];
    for (const [i, n] of sizes.entries()) {
      const next = p.t.recv();
      assert.equal(p.t.readBufferBytes, IDLE_READ_BUFFER_BYTES, `before ${n}`);
      await p.write(frame(n, i));
      assert.deepEqual(await next, frame(n, i).subarray(4), `${n} bytes`);
    }
    const burst = sizes.map((n, i) => frame(n, 100 + i));
    const all = new Uint8Array(burst.reduce((a, f) => a + f.length, 0));
    let at = 0;
    for (const f of burst) {
      all.set(f, at);
      at += f.length;
    }
    await p.write(all);
    for (const [i, f] of burst.entries()) {
      assert.deepEqual(await p.t.recv(), f.subarray(4), `burst frame ${i}`);
    }
    const pending = p.t.recv();
    assert.equal(p.t.readBufferBytes, IDLE_READ_BUFFER_BYTES);
    p.t.setIdle(false);
    await p.write(frame(3, 7));
    assert.deepEqual(await pending, frame(3, 7).subarray(4));
    const active = p.t.recv();
    assert.equal(p.t.readBufferBytes, READ_BUFFER_BYTES);
    await p.write(frame(900, 8));
    assert.deepEqual(await active, frame(900, 8).subarray(4));
  } finally {
    p.done();
  }
});

Deno.test("a channel tells its transport when it goes idle and when it is active again", async () => {
  let now = 0;
  const scheduler = new HeartbeatScheduler({ now: () => now, timers: false });
  const idle: boolean[] = [];
  const sent: Uint8Array[] = [];
  const transport = {
    send: (p: Uint8Array) => (sent.push(p), Promise.resolve()),
    recv: () => new Promise<Uint8Array | null>(() => {}),
    close() {},
    closed: false,
    queuedBytes: 0,
    remote: "test:1",
    remoteHost: "test",
    maxFrameBytes: 65536,
    setIdle: (on: boolean) => idle.push(on),
  };
  const keys = {
    enc: randomBytes(32),
    iv: randomBytes(32),
    mac: randomBytes(32),
  };
  const codec = {
    encode: (m: string) => new TextEncoder().encode(m),
    decode: (b: Uint8Array) => new TextDecoder().decode(b),
  };
  const ch = new RecordChannel<string, string>(
    transport,
    new RecordSealer(keys),
    new RecordOpener(keys),
    codec,
    { heartbeatMs: 1000, idleAfterMs: 5000, deadAfterMs: 1e9, scheduler },
  );
  try {
    for (now = 0; now <= 6000; now += 100) scheduler.runDue();
    assert.ok(ch.idle);
    assert.deepEqual(idle, [true]);
    await ch.send("hello");
    assert.ok(!ch.idle);
    assert.deepEqual(idle, [true, false]);
  } finally {
    ch.abort("test");
  }
});
