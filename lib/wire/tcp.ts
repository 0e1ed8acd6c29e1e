/**
 * The TCP {@link Network}: {@link TcpTransport} is the socket edge (rule 1.0:
 * TCP_NODELAY, one write per frame), {@link TcpListener} accepts them, and
 * {@link tcpNetwork} is what the client and the server are given by default.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TcpTransport } from "./tcp.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * const client = TcpTransport.wrap(await Deno.connect({ hostname: "127.0.0.1", port }));
 * const server = TcpTransport.wrap(await listener.accept());
 * await client.send(new Uint8Array([0x10, 42]));
 * assert.ok((await server.recv())?.[1] === 42);
 * client.close(); server.close(); listener.close();
 * ```
 * @module
 */

import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  FrameDecoder,
  frameInPlace,
} from "./frame.ts";
import { NetError, ProtocolError, withinRunTime } from "../util/mod.ts";
import type {
  Farewell,
  FrameListener,
  FrameTransport,
  Network,
  TransportOptions,
} from "./transport.ts";

/** Options of {@link TcpTransport}: those of every transport. */
export type TcpTransportOptions = TransportOptions;

/** Longest a farewell frame may take to write before the socket is closed anyway, in this process's running time ({@link withinRunTime}). */
export const FAREWELL_TIMEOUT_MS = 1000;

/**
 * Bytes read from the socket at once between frames and for small ones.
 * Small, because every connection holds one such buffer for its whole life
 * (an idle connection's pending read holds it); the rest of a larger frame
 * is read into a buffer of its size, dropped once the frame is whole
 * (PROTOCOL.md section 2).
 */
export const READ_BUFFER_BYTES = 1024;

/**
 * Bytes read at once while the channel is idle ({@link TcpTransport.setIdle};
 * PROTOCOL.md section 4): an idle link carries a HEARTBEAT frame (58 bytes)
 * every 60 s, and its pending read holds this buffer the whole time, so a
 * server with many idle clients keeps this much per connection, not
 * {@link READ_BUFFER_BYTES} (issue 15). A larger frame arriving then takes
 * one more read, into a buffer of its size, as any frame larger than the
 * buffer does.
 */
export const IDLE_READ_BUFFER_BYTES = 128;

/** Default cap on bytes waiting to be written to one socket. */
export const DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024;

/** Most bytes {@link TcpTransport} joins into one write. */
export const MAX_WRITE_BYTES = 256 * 1024;

const EMPTY = new Uint8Array(0);

/** A frame waiting to be written, and what to tell when it is (or fails). */
interface Outgoing {
  frame: Uint8Array;
  /** The promise of its `send`; undefined for a `post`. */
  sent: PromiseWithResolvers<void> | undefined;
  /** What a `post` calls when the write fails. */
  failed: ((error: Error) => void) | undefined;
}

/** A {@link FrameTransport} over one TCP connection. */
export class TcpTransport implements FrameTransport, Farewell {
  readonly remote: string;
  readonly remoteHost: string;
  readonly conn: Deno.Conn;
  #decoder: FrameDecoder;
  #maxFrame: number;
  #maxQueued: number;
  #queued = 0;
  #outbox: Outgoing[] = [];
  /** The batch being written ({@link #writeNext}), and how far. */
  #batch: Outgoing[] = [];
  #batchData: Uint8Array = EMPTY;
  #batchOff = 0;
  #writing = false;
  /** What {@link flush} waits on, made only when someone waits. */
  #drained: PromiseWithResolvers<void> | undefined;
  #ready: Uint8Array<ArrayBuffer>[] = [];
  /** {@link READ_BUFFER_BYTES}, or {@link IDLE_READ_BUFFER_BYTES} while idle. */
  #readBuf = new Uint8Array(READ_BUFFER_BYTES);
  #idle = false;
  /** The grown buffer, only while a frame larger than {@link READ_BUFFER_BYTES} arrives. */
  #bigBuf: Uint8Array | undefined;
  #farewell: ((error: ProtocolError) => Uint8Array | undefined) | undefined;
  #closed = false;
  #writeFailed = false;
  #eof = false;
  /** The pending {@link recv}, while a read is under way. */
  #reading: PromiseWithResolvers<Uint8Array | null> | undefined;

  private constructor(conn: Deno.Conn, opts: TcpTransportOptions) {
    this.conn = conn;
    this.#maxFrame = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#maxQueued = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.#decoder = new FrameDecoder(this.#maxFrame);
    this.#farewell = opts.farewell;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remoteHost = addr.hostname;
    this.remote = `${addr.hostname}:${addr.port}`;
    // Rule 1.0: Nagle's algorithm meeting delayed ACKs cost the seed ~40 ms per login.
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
  }

  /**
   * Wrap a connected socket.
   * @param conn from `Deno.connect` or `listener.accept()`
   * @param opts limits
   * @returns the transport, owning the socket
   */
  static wrap(conn: Deno.Conn, opts: TcpTransportOptions = {}): TcpTransport {
    return new TcpTransport(conn, opts);
  }

  /**
   * Connect to `host:port`.
   * @param hostname host name or address
   * @param port TCP port
   * @param opts limits
   * @returns the transport
   * @throws {NetError} `connect-failed` with a readable reason
   */
  static async connect(
    hostname: string,
    port: number,
    opts: TcpTransportOptions = {},
  ): Promise<TcpTransport> {
    try {
      return new TcpTransport(await Deno.connect({ hostname, port }), opts);
    } catch (e) {
      const refused = e instanceof Deno.errors.ConnectionRefused;
      throw new NetError(
        "connect-failed",
        `Cannot connect to ${hostname}:${port}: ${
          refused ? "connection refused" : (e as Error).message
        }`,
      );
    }
  }

  /**
   * Send one payload as one frame, whole in one write (rule 1.0). Writes are
   * queued so concurrent senders never interleave bytes; the frames that
   * queue behind a pending write go out together in the next write.
   * @param payload the frame payload
   * @throws {NetError} `closed` or `send-queue-full`; {@link ProtocolError}
   *   `frame-too-large` or `empty-frame`; all as rejections, never synchronously
   */
  send(payload: Uint8Array): Promise<void> {
    const frame = this.#enqueue(payload);
    if (!(frame instanceof Uint8Array)) return Promise.reject(frame);
    const sent = Promise.withResolvers<void>();
    this.#outbox.push({ frame, sent, failed: undefined });
    if (!this.#writing) this.#writeNext();
    return sent.promise;
  }

  /**
   * {@link send} for a frame nobody waits for (a heartbeat): `failed` is
   * called instead of a rejection, and no promise is made. The payload
   * comes after the 4 free bytes (`FRAME_HEADER_BYTES`) of `frame`, where its
   * length is written: no copy (FrameTransport.post).
   * @param frame the payload after 4 free bytes
   * @param failed told what {@link send} would reject with
   */
  post(frame: Uint8Array, failed: (error: Error) => void): void {
    const framed = this.#enqueue(frame, true);
    if (!(framed instanceof Uint8Array)) return failed(framed);
    this.#outbox.push({ frame: framed, sent: undefined, failed });
    if (!this.#writing) this.#writeNext();
  }

  /**
   * The frame of `payload` (or `payload` itself, given as a frame with its
   * prefix free), counted as queued; or the error that refuses it.
   */
  #enqueue(payload: Uint8Array, framed = false): Uint8Array | Error {
    if (this.#closed || this.#writeFailed) {
      return new NetError("closed", "Connection is closed");
    }
    let frame: Uint8Array;
    try {
      frame = framed
        ? frameInPlace(payload, this.#maxFrame)
        : encodeFrame(payload, this.#maxFrame);
    } catch (e) {
      return e as Error; // fail the same way as every other send error
    }
    if (this.#queued + frame.length > this.#maxQueued) {
      this.close();
      return new NetError(
        "send-queue-full",
        `Peer ${this.remote} is not reading; connection closed`,
      );
    }
    this.#queued += frame.length;
    return frame;
  }

  /**
   * Write what is queued, in order, until nothing is (rule 1.0): one frame
   * alone in one write, and the frames that queued behind a pending write
   * together in the next one, each whole (a frame is never split between
   * writes by us, only by a short write of the kernel, which is continued).
   * One system call for a burst instead of one per frame.
   *
   * A loop of callbacks, not an `async` function: a server sends a
   * heartbeat on every idle connection, and an async function's frame per
   * write was the largest garbage of an idle server (issue 15,
   * BENCHMARKS.md "Where an idle server's CPU goes").
   */
  #writeNext(): void {
    if (this.#outbox.length === 0) {
      this.#writing = false;
      this.#drained?.resolve();
      this.#drained = undefined;
      return;
    }
    this.#writing = true;
    const batch = this.#batch;
    let bytes = 0;
    while (
      this.#outbox.length > 0 &&
      (batch.length === 0 ||
        bytes + this.#outbox[0]!.frame.length <= MAX_WRITE_BYTES)
    ) {
      const o = this.#outbox.shift()!;
      batch.push(o);
      bytes += o.frame.length;
    }
    let data: Uint8Array;
    if (batch.length === 1) data = batch[0]!.frame;
    else {
      data = new Uint8Array(bytes);
      let at = 0;
      for (let i = 0; i < batch.length; i++) {
        const f = batch[i]!.frame;
        data.set(f, at);
        at += f.length;
      }
    }
    this.#batchData = data;
    this.#batchOff = 0;
    this.#writeSome();
  }

  /** One write of what is left of the batch; a short one is continued. */
  #writeSome(): void {
    const data = this.#batchData, off = this.#batchOff;
    this.conn.write(off === 0 ? data : data.subarray(off)).then(
      (n) => {
        this.#batchOff += n;
        if (this.#batchOff < this.#batchData.length) return this.#writeSome();
        const batch = this.#batch;
        this.#queued -= this.#batchData.length;
        this.#batchData = EMPTY;
        for (let i = 0; i < batch.length; i++) batch[i]!.sent?.resolve();
        batch.length = 0;
        this.#writeNext();
      },
      (e) => this.#writeFailedWith(e as Error),
    );
  }

  /**
   * The peer is gone (a reset, most often: it closed with our bytes unread).
   * What it wrote before it went, a server's goodbye say, is still in the
   * socket: a pending or later recv() gets it, then the end. So the socket
   * stays open for reading; sends are refused from now on, and the owner
   * closes it (rule 1.0's "nothing lost").
   */
  #writeFailedWith(e: Error): void {
    this.#writeFailed = true;
    const err = new NetError(
      "closed",
      `Connection to ${this.remote} lost: ${e.message}`,
    );
    const failed = [...this.#batch, ...this.#outbox.splice(0)];
    this.#batch.length = 0;
    this.#batchData = EMPTY;
    this.#writing = false;
    const drained = this.#drained;
    this.#drained = undefined;
    // The state is settled before anyone is told: a callback that throws
    // cannot leave the others untold or a flush() waiting.
    for (const o of failed) {
      this.#queued -= o.frame.length;
      if (o.sent) o.sent.reject(err);
      else {
        try {
          o.failed?.(err);
        } catch {
          // Its owner's error, not the transport's.
        }
      }
    }
    drained?.resolve();
  }

  /** The frame limit both ways (rule 1.1). */
  get maxFrameBytes(): number {
    return this.#maxFrame;
  }

  set maxFrameBytes(n: number) {
    this.#maxFrame = n;
    this.#decoder.maxBytes = n;
  }

  /** Bytes queued for writing that the peer has not taken yet. */
  get queuedBytes(): number {
    return this.#queued;
  }

  /**
   * Resolve when every queued frame has been written (or the socket failed).
   * @returns a promise
   */
  flush(): Promise<void> {
    if (!this.#writing) return Promise.resolve();
    this.#drained ??= Promise.withResolvers<void>();
    return this.#drained.promise;
  }

  /**
   * Next payload. Only one `recv` may be pending at a time.
   * @returns the payload, or null at end of stream or after close
   * @throws {ProtocolError} malformed framing (the transport is closed first)
   */
  recv(): Promise<Uint8Array | null> {
    if (this.#reading) {
      // A bug in the caller, not the peer: still a typed error, as a rejection.
      return Promise.reject(
        new ProtocolError(
          "recv-pending",
          "Cannot read: a read is already pending on this connection",
        ),
      );
    }
    if (this.#ready.length > 0) return Promise.resolve(this.#ready.shift()!);
    if (this.#closed || this.#eof) return Promise.resolve(null);
    this.#reading = Promise.withResolvers<Uint8Array | null>();
    const p = this.#reading.promise;
    this.#readSome();
    return p;
  }

  /**
   * Read from the socket for the pending {@link recv} until a frame is
   * whole. Callbacks, not an `async` function (whose frame per read was
   * garbage on every idle connection: issue 15).
   */
  #readSome(): void {
    const buf = this.#readBuffer();
    this.#readingInto = buf;
    this.conn.read(buf).then(this.#onReadDone, this.#onReadFailed);
  }

  /**
   * What a read settles with: made once per connection, not per read (an
   * idle connection's pending read lives until its next heartbeat, and
   * what it holds outlives a young-generation collection: issue 15).
   */
  readonly #onReadDone = (n: number | null): void =>
    this.#onRead(this.#readingInto, n);
  readonly #onReadFailed = (): void => this.#onRead(this.#readingInto, null);
  #readingInto: Uint8Array = EMPTY;

  #onRead(buf: Uint8Array, n: number | null): void {
    const waiter = this.#reading!;
    if (this.#closed) return this.#settleRead(waiter, null);
    try {
      if (n === null) {
        this.#eof = true;
        this.#decoder.end();
        return this.#settleRead(waiter, null);
      }
      this.#decoder.push(buf, n, this.#ready);
    } catch (e) {
      // Frames whole before the bad one in the same read go with the
      // connection (none was ready before this read: it reads only then).
      this.#ready.length = 0;
      if (e instanceof ProtocolError) this.#closeWithFarewell(e);
      this.#reading = undefined;
      waiter.reject(e);
      return;
    }
    if (this.#ready.length === 0) return this.#readSome();
    this.#settleRead(waiter, this.#ready.shift()!);
  }

  #settleRead(
    waiter: PromiseWithResolvers<Uint8Array | null>,
    payload: Uint8Array | null,
  ): void {
    this.#reading = undefined;
    waiter.resolve(payload);
  }

  /**
   * Where the next read goes: the small buffer, unless more than its size of
   * a frame is still to come; then a buffer of that size, kept until the
   * frame is whole (at most the frame limit: the decoder refused a longer
   * length before its body was ever allocated).
   */
  #readBuffer(): Uint8Array {
    const missing = this.#decoder.missing;
    const size = this.#idle ? IDLE_READ_BUFFER_BYTES : READ_BUFFER_BYTES;
    if (missing <= size) {
      this.#bigBuf = undefined;
      // The other size is dropped: an idle connection holds the small one only.
      if (this.#readBuf.length !== size) this.#readBuf = new Uint8Array(size);
      return this.#readBuf;
    }
    if (this.#bigBuf === undefined || this.#bigBuf.length < missing) {
      this.#bigBuf = new Uint8Array(missing);
    }
    return this.#bigBuf;
  }

  /**
   * The channel went idle or active (PROTOCOL.md section 4): the reads after
   * the one pending use {@link IDLE_READ_BUFFER_BYTES} while idle, and
   * {@link READ_BUFFER_BYTES} again once active.
   * @param idle is it idle?
   */
  setIdle(idle: boolean): void {
    this.#idle = idle;
  }

  /** Bytes of read buffer this connection holds now (the small one, and a grown one while a large frame arrives). */
  get readBufferBytes(): number {
    return this.#readBuf.length + (this.#bigBuf?.length ?? 0);
  }

  /**
   * The frame sent when the peer breaks the framing (see
   * {@link TcpTransportOptions.farewell}); set `undefined` to send nothing,
   * e.g. once cleartext is no longer allowed (rule 3.6).
   */
  set farewell(
    f: ((error: ProtocolError) => Uint8Array | undefined) | undefined,
  ) {
    this.#farewell = f;
  }

  get farewell():
    | ((error: ProtocolError) => Uint8Array | undefined)
    | undefined {
    return this.#farewell;
  }

  /** Mark closed at once, write the farewell frame if there is one, then close the socket. */
  #closeWithFarewell(e: ProtocolError): void {
    if (this.#closed) return;
    let frame: Uint8Array | undefined;
    try {
      const payload = this.#farewell?.(e);
      if (payload) frame = encodeFrame(payload, this.#maxFrame);
    } catch {
      frame = undefined; // A farewell that cannot be built is not sent.
    }
    if (!frame) {
      this.close();
      return;
    }
    this.#closed = true;
    const bytes = frame;
    const write = this.flush().then(async () => {
      let off = 0;
      while (off < bytes.length) {
        off += await this.conn.write(bytes.subarray(off));
      }
    }).catch(() => {});
    withinRunTime(write, FAREWELL_TIMEOUT_MS, undefined).finally(() => {
      try {
        this.conn.close();
      } catch {
        // Already closed by the runtime: nothing to release.
      }
    });
  }

  /** Close the socket; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed by the runtime: nothing to release.
    }
  }

  /** Has {@link close} been called (or the socket failed)? */
  get closed(): boolean {
    return this.#closed;
  }
}

/** A {@link FrameListener} on a TCP port. */
export class TcpListener implements FrameListener {
  readonly hostname: string;
  readonly port: number;
  #listener: Deno.TcpListener;
  #opts: TransportOptions;
  #closed = false;

  constructor(listener: Deno.TcpListener, opts: TransportOptions) {
    this.#listener = listener;
    this.#opts = opts;
    const addr = listener.addr as Deno.NetAddr;
    this.hostname = addr.hostname;
    this.port = addr.port;
  }

  async accept(): Promise<TcpTransport> {
    let conn: Deno.TcpConn;
    try {
      conn = await this.#listener.accept();
    } catch (e) {
      if (this.#closed || e instanceof Deno.errors.BadResource) {
        throw new NetError("closed", "Listener is closed");
      }
      throw new NetError("accept-failed", (e as Error).message);
    }
    return TcpTransport.wrap(conn, this.#opts);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed by the runtime.
    }
  }
}

/** Listen on a TCP port; the errors of {@link Network.listen}. */
function listenTcp(
  hostname: string,
  port: number,
  opts: TransportOptions = {},
): TcpListener {
  try {
    return new TcpListener(
      Deno.listen({ hostname, port, transport: "tcp" }),
      opts,
    );
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new NetError(
        "port-in-use",
        `Cannot listen on ${hostname}:${port}: the port is in use`,
      );
    }
    throw new NetError(
      "listen-failed",
      `Cannot listen on ${hostname}:${port}: ${(e as Error).message}`,
    );
  }
}

/** Real sockets: the {@link Network} of `im serve` and `im chat`. */
export const tcpNetwork: Network = {
  connect: (hostname, port, opts) => TcpTransport.connect(hostname, port, opts),
  listen: listenTcp,
};
