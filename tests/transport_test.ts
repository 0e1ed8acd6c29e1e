/**
 * The socket edge, rules 1.0 and 1.1, over real sockets on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { NetError, ProtocolError } from "../lib/util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  TcpTransport,
  type TcpTransportOptions,
} from "../lib/wire/mod.ts";
import { assertRejectsIm } from "./_helpers.ts";

/** Spies on one connection's writes and setNoDelay calls. */
interface Spy {
  writes: number[];
  noDelay: boolean[];
}

function spyOn(conn: Deno.Conn): Spy {
  const spy: Spy = { writes: [], noDelay: [] };
  const write = conn.write.bind(conn);
  conn.write = (p: Uint8Array) => {
    spy.writes.push(p.length);
    return write(p);
  };
  const tcp = conn as Deno.TcpConn;
  const setNoDelay = tcp.setNoDelay.bind(tcp);
  tcp.setNoDelay = (v?: boolean) => {
    spy.noDelay.push(v ?? true);
    return setNoDelay(v);
  };
  return spy;
}

/** A connected pair: `a` and `b` are transports; everything is closed by `done`. */
async function pair(opts: TcpTransportOptions = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [rawA, rawB] = await Promise.all([
    connectTo(listener),
    listener.accept(),
  ]);
  const spyA = spyOn(rawA);
  const spyB = spyOn(rawB);
  const a = TcpTransport.wrap(rawA, opts);
  const b = TcpTransport.wrap(rawB, opts);
  return {
    a,
    b,
    spyA,
    spyB,
    done() {
      a.close();
      b.close();
      listener.close();
    },
  };
}

/** A transport `t` facing a raw socket `raw` that the test drives by hand. */
async function rawPeer(opts: TcpTransportOptions = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [conn, raw] = await Promise.all([
    connectTo(listener),
    listener.accept(),
  ]);
  const t = TcpTransport.wrap(conn, opts);
  return {
    t,
    raw,
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

function connectTo(listener: Deno.Listener): Promise<Deno.TcpConn> {
  const { port } = listener.addr as Deno.NetAddr;
  return Deno.connect({ hostname: "127.0.0.1", port });
}

function frameOf(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 31 + seed) & 0xff;
  p[0] = 0x10;
  return p;
}

function prefix(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

Deno.test("TcpTransport delivers a 100-frame burst whole and in order", async () => {
  const p = await pair();
  try {
    const sent = Array.from(
      { length: 100 },
      (_, i) => frameOf(1 + (i * 37) % 900, i),
    );
    const sending = Promise.all(sent.map((f) => p.a.send(f)));
    for (let i = 0; i < 100; i++) {
      const got = await p.b.recv();
      assert.ok(got !== null, `frame ${i} missing`);
      assert.deepEqual(got, sent[i], `frame ${i}`);
    }
    await sending;
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport delivers a 60 KB frame whole", async () => {
  const p = await pair();
  try {
    const big = frameOf(60 * 1024, 7);
    await p.a.send(big);
    const got = await p.b.recv();
    assert.deepEqual(got, big);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport delivers a frame of exactly the 64 KiB limit", async () => {
  const p = await pair();
  try {
    const big = frameOf(DEFAULT_MAX_FRAME_BYTES, 3);
    await p.a.send(big);
    assert.deepEqual(await p.b.recv(), big);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport writes each frame with exactly one conn.write call, prefix included (rule 1.0)", async () => {
  const p = await pair();
  try {
    const sizes = [1, 2, 100, 1400, 1500, 9000, 60 * 1024];
    for (const n of sizes) await p.a.send(frameOf(n, n));
    assert.deepEqual(p.spyA.writes, sizes.map((n) => n + 4));
    for (const n of sizes) assert.equal((await p.b.recv())?.length, n);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport: frames sent while a write is pending go out together in the next write, each whole and in order (rule 1.0, issue 15)", async () => {
  const p = await pair();
  try {
    const sizes = [100, 1, 2, 1400, 9000, 60 * 1024, 7];
    await Promise.all(sizes.map((n, i) => p.a.send(frameOf(n, i))));
    // The first frame is written alone; the six that queued behind it in
    // one write: a write boundary never falls inside a frame.
    assert.deepEqual(p.spyA.writes, [
      sizes[0]! + 4,
      sizes.slice(1).reduce((a, n) => a + n + 4, 0),
    ]);
    for (const [i, n] of sizes.entries()) {
      assert.deepEqual(await p.b.recv(), frameOf(n, i));
    }
    assert.equal(p.a.queuedBytes, 0);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport sets TCP_NODELAY on both accepted and connected sockets (rule 1.0)", async () => {
  const p = await pair();
  try {
    assert.deepEqual(p.spyA.noDelay, [true]);
    assert.deepEqual(p.spyB.noDelay, [true]);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.connect() sets TCP_NODELAY too", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const probe = await Promise.all([
    connectTo(listener),
    listener.accept(),
  ]);
  const proto = Object.getPrototypeOf(probe[0]) as Deno.TcpConn;
  probe[0].close();
  probe[1].close();
  const original = proto.setNoDelay;
  const calls: (boolean | undefined)[] = [];
  proto.setNoDelay = function (this: Deno.TcpConn, v?: boolean) {
    calls.push(v);
    return original.call(this, v);
  };
  let t: TcpTransport | undefined;
  let server: Deno.Conn | undefined;
  try {
    const addr = listener.addr as Deno.NetAddr;
    [t, server] = await Promise.all([
      TcpTransport.connect("127.0.0.1", addr.port),
      listener.accept(),
    ]);
    assert.deepEqual(calls, [true]);
    assert.equal(t.remote, `127.0.0.1:${addr.port}`);
  } finally {
    proto.setNoDelay = original;
    t?.close();
    server?.close();
    listener.close();
  }
});

Deno.test("TcpTransport.connect() to a closed port throws NetError connect-failed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const e = await assertRejectsIm(
    () => TcpTransport.connect("127.0.0.1", port),
    NetError,
    "connect-failed",
  );
  assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
});

Deno.test("TcpTransport: an oversized frame from the peer makes recv() throw ProtocolError and closes the socket", async () => {
  const p = await rawPeer();
  try {
    await p.raw.write(prefix(DEFAULT_MAX_FRAME_BYTES + 1));
    await assertRejectsIm(() => p.t.recv(), ProtocolError, "frame-too-large");
    assert.ok(p.t.closed);
    // The peer sees the connection end.
    const buf = new Uint8Array(16);
    let n: number | null;
    try {
      n = await p.raw.read(buf);
    } catch (e) {
      assert.ok(e instanceof Deno.errors.ConnectionReset, String(e));
      n = null;
    }
    assert.equal(n, null);
    assert.equal(await p.t.recv(), null, "nothing is read after the error");
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport: a frame over a configured limit is refused", async () => {
  const p = await rawPeer({ maxFrameBytes: 100 });
  try {
    await p.raw.write(new Uint8Array([...prefix(101), 1, 2, 3]));
    await assertRejectsIm(() => p.t.recv(), ProtocolError, "frame-too-large");
    assert.ok(p.t.closed);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport: a zero-length frame from the peer is a ProtocolError", async () => {
  const p = await rawPeer();
  try {
    await p.raw.write(prefix(0));
    await assertRejectsIm(() => p.t.recv(), ProtocolError, "empty-frame");
    assert.ok(p.t.closed);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport: EOF in the middle of a frame is a ProtocolError truncated-frame", async () => {
  const p = await rawPeer();
  try {
    await p.raw.write(new Uint8Array([...prefix(10), 1, 2, 3]));
    p.raw.close();
    await assertRejectsIm(() => p.t.recv(), ProtocolError, "truncated-frame");
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.recv() resolves null at a clean EOF, and again after it", async () => {
  const p = await pair();
  try {
    await p.a.send(new Uint8Array([0x10, 1]));
    p.a.close();
    assert.deepEqual(await p.b.recv(), new Uint8Array([0x10, 1]));
    assert.equal(await p.b.recv(), null);
    assert.equal(await p.b.recv(), null);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.recv() resolves null after close(), including a pending recv", async () => {
  const p = await pair();
  try {
    const pending = p.b.recv();
    p.b.close();
    assert.equal(await pending, null);
    assert.equal(await p.b.recv(), null);
    p.b.close(); // idempotent
    assert.ok(p.b.closed);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.send() after close() rejects with NetError closed", async () => {
  const p = await pair();
  try {
    p.a.close();
    await assertRejectsIm(
      () => p.a.send(new Uint8Array([1])),
      NetError,
      "closed",
    );
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.send() of an oversized payload rejects (not throws) with ProtocolError and writes nothing", async () => {
  const p = await pair();
  try {
    let promise: Promise<void> | undefined;
    assert.doesNotThrow(() => {
      promise = p.a.send(new Uint8Array(DEFAULT_MAX_FRAME_BYTES + 1));
    });
    await assertRejectsIm(() => promise!, ProtocolError, "frame-too-large");
    assert.deepEqual(p.spyA.writes, []);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport: a peer that never reads makes send() reject with send-queue-full instead of growing memory", async () => {
  const maxQueuedBytes = 1024 * 1024;
  const p = await rawPeer({ maxQueuedBytes });
  const frame = frameOf(32 * 1024, 1);
  const sends: Promise<void>[] = [];
  try {
    // Try to push 128 MiB at a peer that reads nothing.
    for (let i = 0; i < 4096 && !p.t.closed; i++) {
      sends.push(p.t.send(frame));
      if (i % 16 === 15) await new Promise((r) => setTimeout(r, 1));
    }
    assert.ok(p.t.closed, "the transport gave up and closed the connection");
    assert.ok(sends.length < 4096, `stopped after ${sends.length} sends`);
    const results = await Promise.allSettled(sends);
    const last = results.at(-1)!;
    assert.equal(last.status, "rejected");
    const e = (last as PromiseRejectedResult).reason;
    assert.ok(e instanceof NetError, String(e));
    assert.equal(e.code, "send-queue-full");
    // Everything still queued when it gave up fails as closed; nothing else.
    for (const r of results.slice(0, -1)) {
      if (r.status === "rejected") {
        assert.ok(
          r.reason instanceof NetError && r.reason.code === "closed",
          String(r.reason),
        );
      }
    }
    await assertRejectsIm(() => p.t.send(frame), NetError, "closed");
  } finally {
    p.done();
    await Promise.allSettled(sends);
  }
});

Deno.test("TcpTransport.remote names the peer address", async () => {
  const p = await pair();
  try {
    assert.match(p.a.remote, /^127\.0\.0\.1:\d+$/);
    assert.match(p.b.remote, /^127\.0\.0\.1:\d+$/);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport: a send that fails because the peer reset the connection leaves the frames the peer wrote before it readable (a server's goodbye is not lost), then recv() ends with null", async () => {
  const p = await rawPeer();
  try {
    // Our frame lands in the peer's socket and is never read, so the
    // peer's close resets the connection (RST) instead of ending it.
    await p.t.send(frameOf(10, 1));
    const goodbye = frameOf(20, 7);
    await p.raw.write(new Uint8Array([...prefix(goodbye.length), ...goodbye]));
    await new Promise((r) => setTimeout(r, 50));
    p.raw.close();
    // The reset reaches us; a write then fails (sometimes the first one
    // after the reset is still taken by the kernel).
    let failed = false;
    for (let i = 0; i < 50 && !failed; i++) {
      await new Promise((r) => setTimeout(r, 20));
      await p.t.send(frameOf(10, 2)).catch((e) => {
        assert.ok(e instanceof NetError && e.code === "closed", String(e));
        failed = true;
      });
    }
    assert.ok(failed, "no send failed after the peer's reset");
    await assertRejectsIm(() => p.t.send(frameOf(10, 3)), NetError, "closed");
    assert.deepEqual(await p.t.recv(), goodbye);
    assert.equal(await p.t.recv(), null);
  } finally {
    p.done();
  }
});

/** `payload` after 4 free bytes, as post() takes it. */
function unframed(payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(4 + payload.length);
  f.set(payload, 4);
  return f;
}

Deno.test("TcpTransport.post() sends a frame nobody waits for, its length written into the 4 bytes left free (no copy), in order with send(), and calls nothing on success (issue 15: a heartbeat makes no promise)", async () => {
  const p = await pair();
  try {
    const failures: unknown[] = [];
    const fail = (e: Error) => failures.push(e);
    const first = unframed(frameOf(30, 1));
    p.a.post(first, fail);
    assert.deepEqual(first.subarray(0, 4), prefix(30), "framed in place");
    const sent = p.a.send(frameOf(40, 2));
    p.a.post(unframed(frameOf(50, 3)), fail);
    await sent;
    await p.a.flush();
    assert.deepEqual(await p.b.recv(), frameOf(30, 1));
    assert.deepEqual(await p.b.recv(), frameOf(40, 2));
    assert.deepEqual(await p.b.recv(), frameOf(50, 3));
    assert.deepEqual(failures, []);
    assert.equal(p.a.queuedBytes, 0);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.post() tells its failure callback what send() would reject with: closed, frame-too-large, send-queue-full", async () => {
  const p = await rawPeer({ maxQueuedBytes: 1000 });
  try {
    const failures: Error[] = [];
    const fail = (e: Error) => failures.push(e);
    p.t.post(unframed(frameOf(DEFAULT_MAX_FRAME_BYTES + 1, 1)), fail);
    assert.ok(failures[0] instanceof ProtocolError, String(failures[0]));
    assert.equal((failures[0] as ProtocolError).code, "frame-too-large");
    p.t.post(unframed(frameOf(2000, 2)), fail); // over the 1000 bytes allowed queued
    assert.ok(failures[1] instanceof NetError, String(failures[1]));
    assert.equal((failures[1] as NetError).code, "send-queue-full");
    assert.ok(p.t.closed);
    p.t.post(unframed(frameOf(10, 3)), fail);
    assert.equal((failures[2] as NetError).code, "closed");
    assert.equal(failures.length, 3);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.post(): a write that fails because the peer reset the connection calls the failure callback with closed", async () => {
  const p = await rawPeer();
  try {
    await p.t.send(frameOf(10, 1)); // left unread: the close below resets
    await new Promise((r) => setTimeout(r, 50));
    p.raw.close();
    const failures: Error[] = [];
    for (let i = 0; i < 50 && failures.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      p.t.post(unframed(frameOf(10, 2)), (e) => failures.push(e));
      await p.t.flush();
    }
    assert.equal(failures.length, 1, "no post failed after the peer's reset");
    assert.ok(
      failures[0] instanceof NetError && failures[0].code === "closed",
      String(failures[0]),
    );
    assert.equal(p.t.queuedBytes, 0);
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport.flush() resolves at once with nothing queued, and otherwise once every frame queued behind a pending write is written", async () => {
  const p = await pair();
  try {
    await p.a.flush();
    const sends = [1, 2, 3].map((i) => p.a.send(frameOf(100 * i, i)));
    p.a.post(unframed(frameOf(50, 4)), () => {});
    assert.ok(p.a.queuedBytes > 0);
    await p.a.flush();
    assert.equal(p.a.queuedBytes, 0, "flush() resolved before the writes");
    await Promise.all(sends);
    for (const [n, seed] of [[100, 1], [200, 2], [300, 3], [50, 4]]) {
      assert.deepEqual(await p.b.recv(), frameOf(n!, seed!));
    }
  } finally {
    p.done();
  }
});

Deno.test("TcpTransport: a whole frame and a bad length in the same read: recv() throws the ProtocolError, and the frame before it goes with the connection (recv() then gives null)", async () => {
  const p = await rawPeer();
  try {
    const good = frameOf(10, 1);
    await p.raw.write(
      new Uint8Array([...prefix(good.length), ...good, 0, 0, 0, 0]),
    );
    await assertRejectsIm(() => p.t.recv(), ProtocolError, "empty-frame");
    assert.equal(await p.t.recv(), null);
  } finally {
    p.done();
  }
});
