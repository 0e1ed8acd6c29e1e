/**
 * A frame-aware man in the middle on loopback, for the attack suite and
 * the client tests (`Scope.mitm` in `_fixtures.ts` starts one).
 *
 * {@link FrameMitm} listens on 127.0.0.1, connects each accepted client to a
 * target, and reassembles both byte streams into frames with the project's
 * own {@link FrameDecoder}. Every frame goes through {@link FrameMitm.hook},
 * which decides what is forwarded instead: the frame unchanged, nothing
 * (drop), several frames (duplicate, inject), a changed copy (flip,
 * truncate, extend), a frame held back and sent later (reorder, delay) or a
 * frame recorded on another connection (replay). Raw bytes can be written
 * too (a zero-length frame, a frame cut short). Every frame seen is kept in
 * {@link FrameMitm.frames}, in order, so tests can replay from a recording
 * and prove what did (or did not) cross the wire.
 *
 * `up` is client to target, `down` target to client.
 *
 * @example
 * ```ts ignore
 * const mitm = FrameMitm.start({ target: { hostname: "127.0.0.1", port } });
 * mitm.hook = (f) => f.dir === "up" && f.payload[0] === 0x10 ? [flipBit(f.payload, 100)] : [f.payload];
 * await mitm.close();
 * ```
 * @module
 */

import { sleep } from "../lib/util/mod.ts";
import { FrameDecoder } from "../lib/wire/mod.ts";

/** Which way a frame went: `up` client to target, `down` target to client. */
export type Dir = "up" | "down";

/** One frame seen by the proxy. */
export interface MitmFrame {
  /** Connection number, from 0 in order of accept. */
  conn: number;
  dir: Dir;
  /** Index of this frame among the frames of its connection and direction. */
  index: number;
  /** The frame payload, without the length prefix. */
  payload: Uint8Array;
}

/** Something to write instead of a frame: a payload (framed here, any length, even 0) or raw bytes. */
export type Out = Uint8Array | { raw: Uint8Array };

/** Decides what to forward for each frame. */
export type Hook = (frame: MitmFrame) => Out[] | Promise<Out[]>;

/** Options of {@link FrameMitm.start}. */
export interface MitmOptions {
  /** Where to forward; a function is asked at each accept. */
  target:
    | { hostname: string; port: number }
    | (() => { hostname: string; port: number });
  /** Write upward bytes one at a time, yielding between them (default false). */
  dribbleUp?: boolean;
}

/**
 * Frame a payload of any length (0 and over-limit included, for attacks).
 * @param payload the bytes
 * @returns `u32 length || payload`
 */
export function rawFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

interface Side {
  conn: Deno.TcpConn;
  chain: Promise<void>;
}

interface Pair {
  id: number;
  client: Side;
  server: Side | undefined;
  closed: boolean;
}

/** A running frame-level proxy. */
export class FrameMitm {
  /** Every frame seen, in order of arrival. */
  readonly frames: MitmFrame[] = [];
  /** What to forward for each frame; default forwards it unchanged. */
  hook: Hook = (f) => [f.payload];
  #listener: Deno.TcpListener;
  #o: MitmOptions;
  #pairs = new Map<number, Pair>();
  #tasks = new Set<Promise<void>>();
  #count = 0;
  #loop: Promise<void>;
  #waiters: Array<() => void> = [];

  private constructor(listener: Deno.TcpListener, o: MitmOptions) {
    this.#listener = listener;
    this.#o = o;
    this.#loop = this.#accept();
  }

  /**
   * Listen on 127.0.0.1 on a free port.
   * @param o target and options
   * @returns the proxy
   */
  static start(o: MitmOptions): FrameMitm {
    return new FrameMitm(Deno.listen({ hostname: "127.0.0.1", port: 0 }), o);
  }

  /** The port clients should connect to. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.#count;
  }

  /**
   * Frames of one direction (and connection), in order.
   * @param dir which way
   * @param conn only this connection
   * @returns the frames
   */
  seen(dir: Dir, conn?: number): MitmFrame[] {
    return this.frames.filter((f) =>
      f.dir === dir && (conn === undefined || f.conn === conn)
    );
  }

  /**
   * Wait until a frame matching `pred` has been seen.
   * @param pred the test
   * @param timeoutMs how long to wait
   * @returns the first matching frame
   */
  async waitFrame(
    pred: (f: MitmFrame) => boolean,
    timeoutMs = 5000,
  ): Promise<MitmFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(pred);
      if (f) return f;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("FrameMitm.waitFrame: timed out");
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.#waiters.push(done);
      });
    }
  }

  /**
   * Write frames into a connection, as if they came from the other end.
   * @param conn the connection number
   * @param dir `up` writes to the target, `down` to the client
   * @param out what to write
   */
  async inject(conn: number, dir: Dir, out: Out[]): Promise<void> {
    const pair = this.#pairs.get(conn);
    const side = dir === "up" ? pair?.server : pair?.client;
    if (!pair || !side) throw new Error(`FrameMitm: no connection ${conn}`);
    await this.#write(side, out, false);
  }

  async #accept(): Promise<void> {
    for (;;) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return;
      }
      const id = this.#count++;
      const task = this.#pair(id, client).catch(() => {});
      this.#tasks.add(task);
      task.finally(() => this.#tasks.delete(task));
    }
  }

  async #pair(id: number, client: Deno.TcpConn): Promise<void> {
    client.setNoDelay(true);
    const pair: Pair = {
      id,
      client: { conn: client, chain: Promise.resolve() },
      server: undefined,
      closed: false,
    };
    this.#pairs.set(id, pair);
    const target = typeof this.#o.target === "function"
      ? this.#o.target()
      : this.#o.target;
    try {
      const server = await Deno.connect(target);
      server.setNoDelay(true);
      pair.server = { conn: server, chain: Promise.resolve() };
    } catch {
      this.#drop(pair);
      return;
    }
    await Promise.all([
      this.#pump(pair, "up", pair.client, pair.server),
      this.#pump(pair, "down", pair.server, pair.client),
    ]);
    this.#drop(pair);
  }

  async #pump(pair: Pair, dir: Dir, from: Side, to: Side): Promise<void> {
    const decoder = new FrameDecoder(16 * 1024 * 1024);
    const buf = new Uint8Array(64 * 1024);
    let index = 0;
    let raw = false; // After a framing error, bytes pass through unchanged.
    try {
      for (;;) {
        const n = await from.conn.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        if (raw) {
          await this.#write(to, [{ raw: chunk }], false);
          continue;
        }
        let payloads: Uint8Array[];
        try {
          payloads = decoder.push(chunk);
        } catch {
          raw = true;
          await this.#write(to, [{ raw: chunk }], false);
          continue;
        }
        for (const payload of payloads) {
          const frame: MitmFrame = {
            conn: pair.id,
            dir,
            index: index++,
            payload,
          };
          this.frames.push(frame);
          for (const w of this.#waiters.splice(0)) w();
          const out = await this.hook(frame);
          await this.#write(to, out, dir === "up" && !!this.#o.dribbleUp);
        }
      }
      // Pass a half-close on, so a frame cut by EOF reaches the other side as such.
      await to.chain;
      await to.conn.closeWrite().catch(() => {});
    } catch {
      // Either side went away: the pair is dropped by the caller.
    }
    if (dir === "down") this.#drop(pair);
  }

  #write(side: Side, out: Out[], dribble: boolean): Promise<void> {
    const bytes = out.map((o) => o instanceof Uint8Array ? rawFrame(o) : o.raw);
    const p = side.chain.then(async () => {
      for (const b of bytes) {
        if (dribble) {
          for (let i = 0; i < b.length; i++) {
            await side.conn.write(b.subarray(i, i + 1));
            await sleep(0);
          }
        } else {
          let off = 0;
          while (off < b.length) off += await side.conn.write(b.subarray(off));
        }
      }
    });
    side.chain = p.catch(() => {});
    return p;
  }

  #drop(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    for (const s of [pair.client, pair.server]) {
      try {
        s?.conn.close();
      } catch {
        // Already closed.
      }
    }
  }

  /**
   * Cut one connection (both sides).
   * @param conn the connection number
   */
  cut(conn: number): void {
    const pair = this.#pairs.get(conn);
    if (pair) this.#drop(pair);
  }

  /** Stop listening, cut every connection, wait for the pumps. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const p of this.#pairs.values()) this.#drop(p);
    for (const w of this.#waiters.splice(0)) w();
    await this.#loop;
    await Promise.all([...this.#tasks]);
  }
}
