import assert from "node:assert/strict";
import { TcpProxy } from "../lib/wire/mod.ts";

async function readSome(c: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await c.read(out.subarray(off));
    if (got === null) break;
    off += got;
  }
  return out.subarray(0, off);
}

Deno.test("TcpProxy forwards both ways and records each direction", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxy = TcpProxy.start({
    target: { hostname: "127.0.0.1", port: (server.addr as Deno.NetAddr).port },
  });
  const c = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const s = await server.accept();
  try {
    await c.write(new Uint8Array([1, 2, 3]));
    assert.deepEqual(await readSome(s, 3), new Uint8Array([1, 2, 3]));
    await s.write(new Uint8Array([9]));
    assert.deepEqual(await readSome(c, 1), new Uint8Array([9]));
    assert.deepEqual(proxy.bytes("up"), new Uint8Array([1, 2, 3]));
    assert.deepEqual(proxy.bytes("down"), new Uint8Array([9]));
    assert.equal(proxy.connections, 1);
  } finally {
    c.close();
    s.close();
    server.close();
    await proxy.close();
  }
});

Deno.test("TcpProxy transform can drop, duplicate and change chunks", async () => {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxy = TcpProxy.start({
    target: { hostname: "127.0.0.1", port: (server.addr as Deno.NetAddr).port },
    transform: (ch) =>
      ch.bytes[0] === 0 ? [] : [ch.bytes.map((b) => b + 1), ch.bytes],
  });
  const c = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  const s = await server.accept();
  try {
    await c.write(new Uint8Array([0]));
    await new Promise((r) => setTimeout(r, 50));
    await c.write(new Uint8Array([5]));
    assert.deepEqual(await readSome(s, 2), new Uint8Array([6, 5]));
  } finally {
    c.close();
    s.close();
    server.close();
    await proxy.close();
  }
});
