/**
 * The server relay as a peer transport (PROTOCOL.md section 6.1): a
 * {@link FrameTransport} whose frames go out as `relay` messages on our
 * server channel and come in as `relayed` ones, with a bounded queue of
 * frames not read yet. The server sees only the peer handshake and sealed
 * peer records.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RelayTransport } from "./relay_transport.ts";
 * const t = new RelayTransport("B", () => Promise.resolve());
 * assert.equal(t.remote, "relay:B");
 * t.close();
 * assert.equal(await t.recv(), null);
 * ```
 * @module
 */

import { NetError } from "../util/mod.ts";
import { DEFAULT_MAX_FRAME_BYTES, type FrameTransport } from "../wire/mod.ts";

/** Most frames a {@link RelayTransport} holds unread before it closes. */
export const RELAY_QUEUE_MAX_FRAMES = 64;
/** Most bytes a {@link RelayTransport} holds unread before it closes. */
export const RELAY_QUEUE_MAX_BYTES = 1024 * 1024;

/**
 * A {@link FrameTransport} through the server (PROTOCOL.md section 6.1): frames go out as
 * `relay` messages on our server channel and come in as `relayed` ones. The
 * server sees only the peer handshake and sealed peer records. Frames that
 * arrive faster than they are read wait in a queue of at most
 * {@link RELAY_QUEUE_MAX_FRAMES} frames and {@link RELAY_QUEUE_MAX_BYTES}
 * bytes; past that the relay is closed, like a TCP peer that does not read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RelayTransport } from "./relay_transport.ts";
 * const sent: string[] = [];
 * const t = new RelayTransport("B", (d) => { sent.push(d); return Promise.resolve(); });
 * await t.send(new Uint8Array([1, 2]));
 * t.deliver("Aw==");
 * assert.deepEqual(sent, ["AQI="]);
 * assert.deepEqual(await t.recv(), new Uint8Array([3]));
 * t.close();
 * ```
 */
export class RelayTransport implements FrameTransport {
  /** `relay:<peer>`, for messages and logs. */
  readonly remote: string;
  /** `relay`: the peer is behind the server. */
  readonly remoteHost = "relay";
  /**
   * Largest peer frame that fits one relay record under the server's frame
   * limit (PROTOCOL.md section 6.1); set by whoever made the relay.
   */
  maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  #send: (data: string) => Promise<void>;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #wake: (() => void) | undefined;
  #closed = false;

  /**
   * @param peer the other user
   * @param send sends a `relay` message to the server
   */
  constructor(peer: string, send: (data: string) => Promise<void>) {
    this.remote = `relay:${peer}`;
    this.#send = send;
  }

  /** Sends are handed to the server channel at once. */
  get queuedBytes(): number {
    return 0;
  }

  /** Has the relay been closed (by us, or because its queue overflowed)? */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Feed a frame the server relayed from the peer. Data that is not base64
   * is dropped, like any garbage; a frame that would overflow the queue
   * closes the relay.
   * @param data base64 payload
   */
  deliver(data: string): void {
    if (this.#closed) return;
    let frame: Uint8Array;
    try {
      frame = Uint8Array.fromBase64(data);
    } catch {
      return; // Not base64: nothing a peer could have sealed; dropped like any garbage.
    }
    if (
      this.#queue.length >= RELAY_QUEUE_MAX_FRAMES ||
      this.#queuedBytes + frame.length > RELAY_QUEUE_MAX_BYTES
    ) {
      // The reader has fallen this far behind: close, and drop what waits.
      this.#queue = [];
      this.#queuedBytes = 0;
      this.close();
      return;
    }
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
    this.#wake?.();
  }

  /**
   * Send one payload to the peer through the server.
   * @param payload the frame payload
   * @returns resolves when handed to the server channel
   * @throws {NetError} `closed` (as a rejection) once the relay is closed;
   *   whatever the server channel's send throws
   */
  send(payload: Uint8Array): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new NetError("closed", "Relay is closed"));
    }
    return this.#send(payload.toBase64());
  }

  /**
   * The next relayed payload, in order. Only one `recv` may wait at a time.
   * @returns the payload, or null once the relay is closed
   */
  async recv(): Promise<Uint8Array | null> {
    while (this.#queue.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    const frame = this.#queue.shift()!;
    this.#queuedBytes -= frame.length;
    return frame;
  }

  /** Close; idempotent. Frames already queued can still be read; then `recv` gives null. */
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}
