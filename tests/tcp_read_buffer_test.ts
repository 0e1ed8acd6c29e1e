/**
 * The read buffer of lib/wire/tcp.ts (PROTOCOL.md section 2; issue 15): 1 KiB
 * between frames and for small ones, grown to the rest of a larger frame
 * while it arrives and dropped once it is whole; frames around and above the
 * buffer's size split anywhere across reads come out whole, and the frame
 * limit holds. Over real sockets on 127.0.0.1.
 */

import assert from "node:assert/strict";
import { ProtocolError } from "../lib/util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  READ_BUFFER_BYTES,
  TcpTransport,
  type TcpTransportOptions,
} from "../lib/wire/mod.ts";
import { assertRejectsIm } from "./_helpers.ts";

/** A transport `t` facing a raw socket `raw` that the test writes by hand. */
async function rawPeer(opts: TcpTransportOptions = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const [conn, raw] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port }),
    listener.accept(),
  ]);
  raw.setNoDelay(true);
  const t = TcpTransport.wrap(conn, opts);
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

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("the read buffer is 1 KiB while idle, grows to the rest of a large frame while it arrives in parts, and is dropped when the frame is whole", async () => {
  const p = await rawPeer();
  try {
    const first = p.t.recv(); // pending on an idle connection
    assert.equal(p.t.readBufferBytes, READ_BUFFER_BYTES);
    const f = frame(20_000, 1);
    // The prefix and a few bytes: the length is known, the rest is to come.
    await p.write(f.subarray(0, 100));
    await until(
      "the grown buffer",
      () => p.t.readBufferBytes > READ_BUFFER_BYTES,
    );
    assert.ok(
      p.t.readBufferBytes <= READ_BUFFER_BYTES + 20_000,
      "the small buffer and the rest of the frame, no more",
    );
    for (let at = 100; at < f.length; at += 3_000) {
      await p.write(f.subarray(at, Math.min(at + 3_000, f.length)));
    }
    const got = await first;
    assert.deepEqual(got, f.subarray(4));
    // The next read is back on the small buffer.
    const second = p.t.recv();
    assert.equal(p.t.readBufferBytes, READ_BUFFER_BYTES);
    await p.write(frame(10, 2));
    assert.deepEqual(await second, frame(10, 2).subarray(4));
  } finally {
    p.done();
  }
});

Deno.test("frames around and above the read buffer's size, split anywhere across reads, come out whole and in order", async () => {
  const p = await rawPeer();
  try {
    const b = READ_BUFFER_BYTES;
    const sizes = [
      1,
      b - 5,
      b - 4,
      b - 3,
      b - 1,
      b,
      b + 1,
      b + 4,
      2 * b - 1,
      2 * b,
      2 * b + 1,
      3 * b + 7,
      16 * 1024,
      DEFAULT_MAX_FRAME_BYTES,
    ];
    const random = rng(15);
    for (let i = 0; i < 40; i++) sizes.push(1 + Math.floor(random() * 5 * b));
    const frames = sizes.map((n, i) => frame(n, i));
    const stream = new Uint8Array(frames.reduce((s, f) => s + f.length, 0));
    let at = 0;
    for (const f of frames) {
      stream.set(f, at);
      at += f.length;
    }
    // The reader runs while the writer sends the stream in pieces of random
    // sizes (1 byte to 3 KiB), so reads end anywhere: in a prefix, a body,
    // across frames.
    const reading = (async () => {
      const out: Uint8Array[] = [];
      while (out.length < frames.length) out.push((await p.t.recv())!);
      return out;
    })();
    for (let off = 0; off < stream.length;) {
      const n = Math.min(
        stream.length - off,
        1 + Math.floor(random() * 3 * b),
      );
      await p.write(stream.subarray(off, off + n));
      off += n;
      if (random() < 0.3) await new Promise((r) => setTimeout(r, 0));
    }
    const got = await reading;
    assert.equal(got.length, frames.length);
    got.forEach((g, i) => assert.deepEqual(g, frames[i]!.subarray(4), `#${i}`));
    const next = p.t.recv();
    assert.equal(p.t.readBufferBytes, READ_BUFFER_BYTES);
    p.raw.close();
    assert.equal(await next, null);
  } finally {
    p.done();
  }
});

Deno.test("the frame limit holds with the growing buffer: a frame of the limit arrives, one byte over is refused before anything is allocated for it", async () => {
  const p = await rawPeer({ maxFrameBytes: 4096 });
  try {
    const first = p.t.recv();
    const f = frame(4096, 3);
    await p.write(f.subarray(0, 10));
    await until("the grown buffer", () => p.t.readBufferBytes > 1024);
    assert.ok(p.t.readBufferBytes <= READ_BUFFER_BYTES + 4096);
    await p.write(f.subarray(10));
    assert.deepEqual(await first, f.subarray(4));
    const second = p.t.recv();
    await p.write(frame(4097, 4).subarray(0, 8));
    await assertRejectsIm(() => second, ProtocolError, "frame-too-large");
    assert.equal(p.t.readBufferBytes, READ_BUFFER_BYTES);
    assert.ok(p.t.closed);
  } finally {
    p.done();
  }
});

Deno.test("a length prefix of 4 GiB with the default limit is refused at once, the buffer never grown", async () => {
  const p = await rawPeer();
  try {
    const r = p.t.recv();
    await p.write(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x10, 0, 0]));
    await assertRejectsIm(() => r, ProtocolError, "frame-too-large");
    assert.equal(p.t.readBufferBytes, READ_BUFFER_BYTES);
  } finally {
    p.done();
  }
});
