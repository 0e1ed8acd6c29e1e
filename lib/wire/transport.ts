/**
 * The seams of the wire layer: a {@link FrameTransport} carries whole frame
 * payloads both ways; a {@link Network} makes them, by connecting or by
 * listening. TCP ({@link tcpNetwork} in tcp.ts) is the one for users; the
 * in-memory {@link MemoryNetwork} (memory.ts) lets the client and the server
 * run in a test with no socket, as wireguard-go's conn/bindtest does. The
 * relay (PROTOCOL.md section 6.1) is a third transport, over a server channel.
 * @module
 */

import type { ProtocolError } from "../util/mod.ts";

/** Carries frame payloads (without the length prefix) both ways. */
export interface FrameTransport {
  /** Send one payload; rejects when the transport is closed. */
  send(payload: Uint8Array): Promise<void>;
  /**
   * Send one frame nobody waits for (a heartbeat): as {@link send}, with
   * `failed` called instead of a rejection. `frame` is the payload after
   * 4 free bytes (`FRAME_HEADER_BYTES`), which the transport fills with
   * its length. Unlike `send`, it may fail at once: `failed` can run before
   * `post` returns. Optional: it saves an idle connection's heartbeat a
   * promise or two and a copy (issue 15).
   */
  post?(frame: Uint8Array, failed: (error: Error) => void): void;
  /** Next payload; `null` at a clean end of stream. Throws ProtocolError on malformed framing. */
  recv(): Promise<Uint8Array | null>;
  /** Close; idempotent. Pending `recv` calls resolve with `null`. */
  close(): void;
  /** Has {@link close} been called (or the connection failed)? */
  readonly closed: boolean;
  /** Bytes sent but not yet taken by the other end (0 where nothing queues). */
  readonly queuedBytes: number;
  /** Where the other end is, for logs (`127.0.0.1:5555`). */
  readonly remote: string;
  /** The other end's host alone, the unit of the login limits (rule 1.2). */
  readonly remoteHost: string;
  /**
   * The frame limit both ways (rule 1.1). A client raises or lowers it to the
   * server's once the server announced it (PROTOCOL.md section 2).
   */
  maxFrameBytes: number;
  /**
   * The channel over this transport went idle (no DATA either way for a
   * while, PROTOCOL.md section 4, "Heartbeats") or active again: an idle one
   * may hold less for its pending read (optional; issue 15).
   */
  setIdle?(idle: boolean): void;
}

/** Options of a transport made by a {@link Network}. */
export interface TransportOptions {
  /** Frame limit, rule 1.1. */
  maxFrameBytes?: number;
  /**
   * Most bytes queued for a peer that does not read; past it the connection
   * is closed, so a client that never reads cannot grow our memory.
   */
  maxQueuedBytes?: number;
  /**
   * The last frame to send when the peer breaks the framing (rule 1.1: "that
   * connection gets an error frame where possible and is closed"): called
   * with the error, it returns a payload that is written, best effort, before
   * the connection closes. Changed later through {@link Farewell.farewell}.
   */
  farewell?: (error: ProtocolError) => Uint8Array | undefined;
}

/** A transport whose framing-error farewell can be changed (rule 3.6: none once sealed). */
export interface Farewell {
  farewell: ((error: ProtocolError) => Uint8Array | undefined) | undefined;
}

/** An accepting endpoint of a {@link Network}. */
export interface FrameListener {
  /**
   * The next connection.
   * @throws {NetError} `closed` once the listener is closed; anything else
   *   (out of descriptors, say) is passing and the caller may accept again
   */
  accept(): Promise<FrameTransport & Farewell>;
  /** Stop listening; idempotent. Connections already accepted stay open. */
  close(): void;
  /** The address bound, with the port chosen when 0 was asked for. */
  readonly hostname: string;
  readonly port: number;
}

/** Makes transports: the socket seam of the client and the server. */
export interface Network {
  /**
   * Connect to `hostname:port`.
   * @throws {NetError} `connect-failed` with a readable reason
   */
  connect(
    hostname: string,
    port: number,
    opts?: TransportOptions,
  ): Promise<FrameTransport>;
  /**
   * Listen on `hostname:port` (0 picks a free port); each accepted transport
   * gets `opts`.
   * @throws {NetError} `port-in-use` or `listen-failed`
   */
  listen(
    hostname: string,
    port: number,
    opts?: TransportOptions,
  ): FrameListener;
}
