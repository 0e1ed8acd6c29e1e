/**
 * The in-memory {@link Network}: transports that are queues, so a client and
 * a server (or two peers) run in one test with no socket. What one end sends
 * the other receives, unless the test's `tap` changes it.
 * @module
 */

import { NetError, ProtocolError } from "../util/mod.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "./frame.ts";
import type {
  Farewell,
  FrameListener,
  FrameTransport,
  Network,
  TransportOptions,
} from "./transport.ts";

/** One end of a {@link memoryPair}. */
export class MemoryTransport implements FrameTransport, Farewell {
  readonly remote: string;
  readonly remoteHost: string;
  other: MemoryTransport | undefined;
  /** Sees every payload this end sends; returns the payloads to deliver instead. */
  tap: (payload: Uint8Array) => Uint8Array[] = (p) => [p];
  /** Everything this end sent, before the tap. */
  readonly sent: Uint8Array[] = [];
  /** Queues deliver whole payloads, so no framing error can happen; kept for the interface. */
  farewell: ((error: ProtocolError) => Uint8Array | undefined) | undefined;
  #maxFrame: number;
  #queue: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  /**
   * @param name the other end's address, for logs
   * @param maxFrameBytes payloads longer than this are refused (rule 1.1);
   *   a bare pair (tests of what a peer does with any bytes) has no limit
   */
  constructor(name: string, maxFrameBytes = Infinity) {
    this.remote = name;
    const colon = name.lastIndexOf(":");
    this.remoteHost = colon > 0 ? name.slice(0, colon) : name;
    this.#maxFrame = maxFrameBytes;
  }

  /** Deliver a payload to this end as if the other end sent it. */
  inject(p: Uint8Array): void {
    this.#queue.push(p);
    this.#wake?.();
  }

  send(payload: Uint8Array): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new NetError("closed", "Connection is closed"));
    }
    if (
      this.#maxFrame !== Infinity &&
      (payload.length === 0 || payload.length > this.#maxFrame)
    ) {
      return Promise.reject(
        new ProtocolError(
          payload.length === 0 ? "empty-frame" : "frame-too-large",
          `Frame of ${payload.length} bytes refused`,
        ),
      );
    }
    const copy = payload.slice();
    this.sent.push(copy);
    for (const p of this.tap(copy)) this.other?.inject(p);
    return Promise.resolve();
  }

  async recv(): Promise<Uint8Array | null> {
    while (this.#queue.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    return this.#queue.shift()!;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    this.other?.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Payloads longer than this are refused (Infinity: a bare pair, no limit). */
  get maxFrameBytes(): number {
    return this.#maxFrame;
  }

  set maxFrameBytes(n: number) {
    this.#maxFrame = n;
  }

  /** Delivery is immediate: nothing waits for the other end. */
  get queuedBytes(): number {
    return 0;
  }
}

/**
 * Two connected ends; closing one closes both, like a TCP connection.
 * @param a the name of the first end
 * @param b the name of the second end
 * @returns the two ends
 */
export function memoryPair(
  a = "memory:a",
  b = "memory:b",
): [MemoryTransport, MemoryTransport] {
  const endA = new MemoryTransport(a), endB = new MemoryTransport(b);
  endA.other = endB;
  endB.other = endA;
  return [endA, endB];
}

/** A {@link FrameListener} of a {@link MemoryNetwork}. */
class MemoryListener implements FrameListener {
  readonly hostname: string;
  readonly port: number;
  readonly opts: TransportOptions;
  #waiting: MemoryTransport[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  #onClose: () => void;

  constructor(
    hostname: string,
    port: number,
    opts: TransportOptions,
    onClose: () => void,
  ) {
    this.hostname = hostname;
    this.port = port;
    this.opts = opts;
    this.#onClose = onClose;
  }

  /** A connection arrives. */
  enqueue(t: MemoryTransport): void {
    this.#waiting.push(t);
    this.#wake?.();
  }

  async accept(): Promise<MemoryTransport> {
    while (this.#waiting.length === 0) {
      if (this.#closed) throw new NetError("closed", "Listener is closed");
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    return this.#waiting.shift()!;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#waiting.splice(0)) t.close();
    this.#onClose();
    this.#wake?.();
  }
}

/**
 * A network of queues: `listen` binds a name, `connect` reaches it. A test
 * builds one, hands it to a server and its clients, and no socket is opened.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryNetwork } from "./memory.ts";
 * const net = new MemoryNetwork();
 * const l = net.listen("127.0.0.1", 0);
 * const client = await net.from("10.0.0.2").connect("127.0.0.1", l.port);
 * const server = await l.accept();
 * await client.send(new Uint8Array([7]));
 * assert.deepEqual(await server.recv(), new Uint8Array([7]));
 * assert.equal(server.remoteHost, "10.0.0.2");
 * client.close(); l.close();
 * ```
 */
export class MemoryNetwork implements Network {
  #listeners = new Map<string, MemoryListener>();
  #nextPort = 40000;
  #nextSourcePort = 50000;
  #source: string;
  #shared: MemoryNetwork | undefined;

  /** @param sourceHost the address connections from this network appear to come from */
  constructor(sourceHost = "127.0.0.1") {
    this.#source = sourceHost;
  }

  /**
   * The same network, seen from another host: connections made through the
   * result appear to come from `sourceHost` (for the per-address limits).
   */
  from(sourceHost: string): MemoryNetwork {
    const view = new MemoryNetwork(sourceHost);
    view.#shared = this.#root;
    return view;
  }

  get #root(): MemoryNetwork {
    return this.#shared ?? this;
  }

  listen(
    hostname: string,
    port: number,
    opts: TransportOptions = {},
  ): FrameListener {
    const root = this.#root;
    const chosen = port === 0 ? root.#nextPort++ : port;
    const key = `${hostname}:${chosen}`;
    if (root.#listeners.has(key)) {
      throw new NetError(
        "port-in-use",
        `Cannot listen on ${hostname}:${port}: the port is in use`,
      );
    }
    const l = new MemoryListener(
      hostname,
      chosen,
      opts,
      () => root.#listeners.delete(key),
    );
    root.#listeners.set(key, l);
    return l;
  }

  connect(
    hostname: string,
    port: number,
    opts: TransportOptions = {},
  ): Promise<FrameTransport> {
    const root = this.#root;
    const l = root.#listeners.get(`${hostname}:${port}`);
    if (!l) {
      return Promise.reject(
        new NetError(
          "connect-failed",
          `Cannot connect to ${hostname}:${port}: connection refused`,
        ),
      );
    }
    const near = new MemoryTransport(
      `${hostname}:${port}`,
      opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    );
    const far = new MemoryTransport(
      `${this.#source}:${root.#nextSourcePort++}`,
      l.opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    );
    far.farewell = l.opts.farewell;
    near.other = far;
    far.other = near;
    l.enqueue(far);
    return Promise.resolve(near);
  }
}
