/**
 * A loopback TCP proxy that forwards bytes both ways and lets its owner see
 * and change them: the wire tap of `im demo` and the man in the middle of
 * the attack tests. A `transform` hook receives each chunk and returns the
 * chunks to forward instead (none to drop, several to duplicate or inject).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TcpProxy } from "./proxy.ts";
 * const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const proxy = TcpProxy.start({ target: { hostname: "127.0.0.1", port: (echo.addr as Deno.NetAddr).port } });
 * const c = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
 * const s = await echo.accept();
 * await c.write(new Uint8Array([1, 2]));
 * const buf = new Uint8Array(2);
 * await s.read(buf);
 * assert.ok(buf[1] === 2 && proxy.recorded.length >= 1);
 * c.close(); s.close(); echo.close(); await proxy.close();
 * ```
 * @module
 */

/** Which way a chunk went. */
export type ProxyDirection = "up" | "down";

/** One recorded chunk: `up` is client to server, `down` server to client. */
export interface ProxyChunk {
  conn: number;
  dir: ProxyDirection;
  bytes: Uint8Array;
}

/** Options of {@link TcpProxy.start}. */
export interface ProxyOptions {
  /** Where to forward. */
  target: { hostname: string; port: number };
  /** Change what is forwarded; default forwards the chunk unchanged. */
  transform?: (chunk: ProxyChunk) => Uint8Array[] | Promise<Uint8Array[]>;
  /** Keep a copy of every chunk in {@link TcpProxy.recorded} (default true). */
  record?: boolean;
}

/** A running proxy. */
export class TcpProxy {
  readonly recorded: ProxyChunk[] = [];
  #listener: Deno.TcpListener;
  #o: ProxyOptions;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #count = 0;
  #loop: Promise<void>;

  private constructor(listener: Deno.TcpListener, o: ProxyOptions) {
    this.#listener = listener;
    this.#o = o;
    this.#loop = this.#accept();
  }

  /**
   * Listen on 127.0.0.1 on a free port.
   * @param o target and hooks
   * @returns the proxy
   */
  static start(o: ProxyOptions): TcpProxy {
    return new TcpProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }), o);
  }

  /** The port clients should connect to. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.#count;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let down: Deno.TcpConn;
      try {
        down = await this.#listener.accept();
      } catch {
        return;
      }
      const id = this.#count++;
      const task = this.#pair(id, down).catch(() => {});
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  async #pair(id: number, client: Deno.TcpConn): Promise<void> {
    client.setNoDelay(true);
    this.#conns.add(client);
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect({
        hostname: this.#o.target.hostname,
        port: this.#o.target.port,
      });
    } catch {
      this.#drop(client);
      return;
    }
    server.setNoDelay(true);
    this.#conns.add(server);
    await Promise.all([
      this.#pump(id, "up", client, server),
      this.#pump(id, "down", server, client),
    ]);
  }

  async #pump(
    conn: number,
    dir: ProxyDirection,
    from: Deno.Conn,
    to: Deno.Conn,
  ): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        const chunk = { conn, dir, bytes: buf.slice(0, n) };
        if (this.#o.record !== false) this.recorded.push(chunk);
        const out = this.#o.transform
          ? await this.#o.transform(chunk)
          : [chunk.bytes];
        for (const b of out) {
          let off = 0;
          while (off < b.length) off += await to.write(b.subarray(off));
        }
      }
    } catch {
      // Either side went away: close both below.
    }
    this.#drop(from);
    this.#drop(to);
  }

  #drop(c: Deno.Conn): void {
    if (!this.#conns.delete(c)) return;
    try {
      c.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * Everything recorded in one direction, concatenated.
   * @param dir which way
   * @param conn only this connection (default all)
   * @returns the bytes
   */
  bytes(dir?: ProxyDirection, conn?: number): Uint8Array {
    const parts = this.recorded.filter((c) =>
      (dir === undefined || c.dir === dir) &&
      (conn === undefined || c.conn === conn)
    );
    const out = new Uint8Array(parts.reduce((n, c) => n + c.bytes.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p.bytes, off);
      off += p.bytes.length;
    }
    return out;
  }

  /** Stop listening, cut every connection, wait for the pumps. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const c of [...this.#conns]) this.#drop(c);
    await this.#loop;
    await Promise.all([...this.#tasks]);
  }
}
