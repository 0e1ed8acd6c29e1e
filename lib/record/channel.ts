/**
 * A secure channel: a {@link FrameTransport} plus the two record states of a
 * finished handshake. It sends messages as DATA records, keeps the link
 * alive with HEARTBEAT records, notices a silent peer, and reports every
 * discarded record (rule 3.5) instead of dropping it silently.
 *
 * @example
 * ```ts ignore
 * const ch = new RecordChannel(transport, login.sealer, login.opener, codec, { heartbeatMs: 2000 });
 * await ch.send({ t: "list" });
 * for await (const ev of ch.events()) console.log(ev);
 * ```
 * @module
 */

import {
  fromUtf8,
  type ImError,
  NetError,
  ProtocolError,
  RecordError,
  utf8,
  withinRunTime,
} from "../util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  FRAME_HEADER_BYTES,
  FrameKind,
  type FrameTransport,
} from "../wire/mod.ts";
import { heartbeats, type HeartbeatScheduler } from "./scheduler.ts";
import { Liveness, type LivenessOptions } from "./liveness.ts";
import {
  RECORD_HEADER_BYTES,
  RECORD_MIN_BYTES,
  RECORD_TAG_BYTES,
  type RecordOpener,
  type RecordSealer,
  RecordType,
} from "./record.ts";

export {
  DEFAULT_HEARTBEAT_MS,
  HEARTBEATS_BEFORE_DEAD,
  IDLE_AFTER_MS,
  IDLE_HEARTBEAT_MS,
  MAX_ANNOUNCED_HEARTBEAT_MS,
  MAX_HEARTBEAT_MS,
  MIN_HEARTBEAT_MS,
} from "./liveness.ts";
export type { LivenessOptions } from "./liveness.ts";

/** Longest {@link RecordChannel.close} waits for its CLOSE record to be written, in this process's running time ({@link withinRunTime}). */
export const CLOSE_TIMEOUT_MS = 1000;

/**
 * How a channel turns what it sends into a DATA record's plaintext and a
 * DATA record's plaintext into what it reports. The record layer carries
 * bytes; the messages (PROTOCOL.md "Messages") belong to the protocol layer,
 * which injects this codec.
 *
 * The channel owns the bytes on both sides and zeroes them (PROTOCOL.md
 * section 4, "Wiping"): what `encode` returns is wiped once sealed, and the
 * plaintext `decode` is given is wiped as soon as it returns or throws. So
 * `encode` returns a fresh array, and `decode` keeps no reference to its
 * input (what it returns must not share its bytes).
 */
export interface RecordCodec<In, Out> {
  /**
   * @param m what to send
   * @param room the largest plaintext a DATA record may carry on this
   *   channel now (its record limit less {@link RECORD_MIN_BYTES}); a codec
   *   that pads stops there (PROTOCOL.md section 6, "Padding")
   * @returns the plaintext of one DATA record, a fresh array
   */
  encode(m: Out, room: number): Uint8Array;
  /** @throws {ProtocolError} when the plaintext is not a valid message (reported as discarded) */
  decode(plaintext: Uint8Array): In;
}

/** What a channel reports. */
export type ChannelEvent<In = unknown> =
  | { kind: "message"; msg: In }
  /** A record was discarded (tampered, replayed, stale, malformed): the user is told why. */
  | { kind: "discarded"; error: RecordError | ProtocolError }
  /** Sequence numbers jumped: this many records never arrived. */
  | { kind: "lost"; count: bigint }
  /** The channel ended; `reason` is the other side's CLOSE reason, or ours. */
  | { kind: "closed"; reason: string; error?: ImError };

/** Options of {@link RecordChannel}. */
export interface ChannelOptions extends LivenessOptions {
  /** The timer the heartbeats run on (default the process's {@link heartbeats}). */
  scheduler?: HeartbeatScheduler;
  /** Largest record payload the transport carries (default the 64 KiB frame limit, rule 1.1). */
  maxRecordBytes?: number;
}

/** A HEARTBEAT's body while it is sealed (sealing is synchronous; it is wiped after, as every body is). */
const HEARTBEAT_BODY = new Uint8Array(4);

/** A channel as the module's hooks see it (any `In` and `Out`). */
type AnyChannel = RecordChannel<never, never>;
// Set by RecordChannel's static block: they reach its private methods.
let heartbeatOf: (c: AnyChannel, intervalMs: number) => void;
let silentOf: (c: AnyChannel, silentMs: number) => void;

/**
 * What a channel's {@link Liveness} calls: one small object with methods,
 * not an object of two closures and their context (a server keeps one per
 * connection, idle or not: issue 15, BENCHMARKS.md "Idle connections").
 */
class ChannelHooks {
  readonly #channel: AnyChannel;
  constructor(channel: AnyChannel) {
    this.#channel = channel;
  }
  beat(intervalMs: number): void {
    heartbeatOf(this.#channel, intervalMs);
  }
  dead(silentMs: number): void {
    silentOf(this.#channel, silentMs);
  }
  /** An idle link's pending read may hold less (issue 15). */
  idle(idle: boolean): void {
    this.#channel.transport.setIdle?.(idle);
  }
}

/** Records both ways over one transport; `In` and `Out` are what its codec reads and writes. */
export class RecordChannel<In, Out> {
  static {
    heartbeatOf = (c, ms) => c.#heartbeat(ms);
    silentOf = (c, silentMs) =>
      c.#finish(
        "timeout",
        new NetError(
          "peer-silent",
          `No sign of life for ${Math.round(silentMs / 1000)} s`,
        ),
      );
  }

  readonly transport: FrameTransport;
  #sealer: RecordSealer;
  #opener: RecordOpener;
  /** When to send heartbeats, and when the other side is gone (PROTOCOL.md section 4, "Heartbeats"). */
  #liveness: Liveness;
  #discardedSinceAccepted = 0;
  #maxRecordBytes: number;
  #closed = false;
  #closeReason: string | undefined;
  #closeError: ImError | undefined;
  /** Is {@link events} reading? Then it, not a failed send, ends the channel. */
  #reading = false;
  #lostTimer: ReturnType<typeof setTimeout> | undefined;
  #codec: RecordCodec<In, Out>;

  /**
   * @param transport the link
   * @param sealer our direction
   * @param opener the other direction
   * @param codec what DATA records carry
   * @param opts heartbeat settings
   */
  constructor(
    transport: FrameTransport,
    sealer: RecordSealer,
    opener: RecordOpener,
    codec: RecordCodec<In, Out>,
    opts: ChannelOptions = {},
  ) {
    this.transport = transport;
    this.#codec = codec;
    this.#sealer = sealer;
    this.#opener = opener;
    this.#maxRecordBytes = opts.maxRecordBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#liveness = new Liveness(
      opts,
      opts.scheduler ?? heartbeats,
      new ChannelHooks(this as unknown as AnyChannel),
    );
    this.#liveness.start();
  }

  /** Has the channel ended? */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * How long the other side may stay silent before it is declared gone: 3 x
   * the longer of our active interval and the other side's announced one.
   */
  get deadAfterMs(): number {
    return this.#liveness.deadAfterMs;
  }

  /** Is the channel idle, sending heartbeats at the idle interval? */
  get idle(): boolean {
    return this.#liveness.idle;
  }

  /** The interval we announce and keep now: the idle one while idle. */
  get heartbeatMs(): number {
    return this.#liveness.heartbeatMs;
  }

  /** Largest record this channel seals (rule 1.1; PROTOCOL.md section 2). */
  get maxRecordBytes(): number {
    return this.#maxRecordBytes;
  }

  set maxRecordBytes(n: number) {
    this.#maxRecordBytes = n;
  }

  /**
   * Send a HEARTBEAT; its body announces our current interval, so the other
   * side knows how long our silence may last (PROTOCOL.md section 4,
   * "Heartbeats"). Nobody waits for it: no promise of its own, and the body
   * is module scratch (sealing is synchronous), so an idle connection's
   * heartbeat makes little garbage (issue 15).
   */
  #heartbeat(intervalMs: number): void {
    const body = HEARTBEAT_BODY;
    body[0] = intervalMs >>> 24;
    body[1] = intervalMs >>> 16;
    body[2] = intervalMs >>> 8;
    body[3] = intervalMs;
    const t = this.transport;
    // Sealed after the frame's length prefix where the transport frames it
    // in place (post), as a bare payload otherwise.
    let payload: Uint8Array;
    try {
      payload = this.#seal(
        RecordType.HEARTBEAT,
        body,
        t.post ? FRAME_HEADER_BYTES : 0,
      );
    } catch {
      return; // closed, or sequence numbers exhausted (the channel ended)
    }
    this.#failed ??= (e: Error) => this.#sendFailed(e as ImError);
    if (t.post) t.post(payload, this.#failed);
    else t.send(payload).then(undefined, this.#failed);
  }

  /** {@link #sendFailed} as a function, made at the first heartbeat: one per channel, not one per heartbeat. */
  #failed: ((e: Error) => void) | undefined;

  /**
   * Seal `body` as one record and send it. `body` is ours: it is wiped once
   * sealed, or refused (PROTOCOL.md section 4, "Wiping").
   * @returns resolves once written; rejects as {@link send} says
   */
  #sendRecord(type: RecordType, body: Uint8Array): Promise<void> {
    let payload: Uint8Array;
    try {
      payload = this.#seal(type, body);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.transport.send(payload).then(undefined, (e) => {
      this.#sendFailed(e as ImError);
      throw e;
    });
  }

  /**
   * Seal `body` as the next record (wiped once sealed, or refused), and
   * count it as sent.
   * @throws {NetError} `closed`; {@link ProtocolError} `message-too-large`
   *   (nothing used up) or `sequence-exhausted` (the channel ends)
   */
  #seal(type: RecordType, body: Uint8Array, at = 0): Uint8Array {
    let payload: Uint8Array;
    try {
      if (this.#closed) throw new NetError("closed", "Connection is closed");
      // Checked before sealing: a message that cannot be sent must neither
      // use up a sequence number nor end the channel.
      const size = 1 + RECORD_HEADER_BYTES + body.length + RECORD_TAG_BYTES;
      if (size > this.#maxRecordBytes) {
        throw new ProtocolError(
          "message-too-large",
          `Cannot send: the message needs a record of ${size} bytes, over the limit of ${this.#maxRecordBytes}`,
          "send it in smaller parts",
        );
      }
      try {
        payload = this.#sealer.seal(type, body, Date.now(), at);
      } catch (e) {
        // Rule 3.5: the sequence number never wraps; the sender closes first.
        this.#finish("sequence-exhausted", e as ImError);
        throw e;
      }
    } finally {
      body.fill(0);
    }
    this.#liveness.sent();
    return payload;
  }

  /** A sealed record could not be written: the channel ends (now, or once what the peer sent is read). */
  #sendFailed(e: ImError): void {
    if (this.#reading && !this.#closed && !this.transport.closed) {
      // Records the peer sent before it went (a CLOSE, the server's
      // `closing`) are still to be read from a transport that only
      // failed to write (one that closed itself, `send-queue-full`, has
      // nothing more to give): the reader ends the channel at
      // the end of the stream, or this timer does if the end never comes.
      this.#lostTimer ??= setTimeout(
        () => this.#finish("connection-lost", e),
        CLOSE_TIMEOUT_MS,
      );
    } else {
      this.#finish("connection-lost", e);
    }
  }

  /**
   * Send one message as a DATA record.
   * @param msg the message
   * @throws {NetError} when the channel is closed; {@link ProtocolError}
   *   `message-too-large` when it would not fit one record (nothing is sent,
   *   the channel stays open)
   */
  send(msg: Out): Promise<void> {
    if (!this.#closed) this.#liveness.data();
    return this.#sendRecord(
      RecordType.DATA,
      this.#codec.encode(msg, this.#maxRecordBytes - RECORD_MIN_BYTES),
    );
  }

  /**
   * Send a CLOSE record with a reason and close the transport.
   * @param reason short kebab code, e.g. `disconnect`
   */
  async close(reason = "closed"): Promise<void> {
    if (this.#closed) return;
    // A peer that does not read must not stall the close: the CLOSE record
    // gets a bounded time to be written, then the transport is closed anyway.
    await withinRunTime(
      this.#sendRecord(RecordType.CLOSE, utf8(JSON.stringify({ reason })))
        .catch(() => {
          // The other side is gone already: nothing more to tell it.
        }),
      CLOSE_TIMEOUT_MS,
      undefined,
    );
    this.#finish(reason);
  }

  /**
   * Drop the link without telling the other side.
   * @param reason why
   * @param error the failure, if any
   */
  abort(reason: string, error?: ImError): void {
    this.#finish(reason, error);
  }

  #finish(reason: string, error?: ImError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    this.#closeError = error;
    this.#liveness.stop();
    clearTimeout(this.#lostTimer);
    this.transport.close();
    this.#sealer.wipe();
    this.#opener.wipe();
    // A pending read ends too: closing the transport resolves it with null
    // (FrameTransport.close).
  }

  /**
   * Everything that arrives, until the channel closes. The last event is
   * always `closed`.
   * @returns the events
   */
  async *events(): AsyncGenerator<ChannelEvent<In>> {
    // The reading loop itself, not a wrapper delegating to another
    // generator: a server holds one suspended reader per connection, idle
    // or not (issue 15, BENCHMARKS.md "Idle connections").
    this.#reading = true;
    try {
      while (!this.#closed) {
        let payload: Uint8Array | null;
        try {
          payload = await this.transport.recv();
        } catch (e) {
          this.#finish("protocol-error", e as ImError);
          break;
        }
        if (payload === null || this.#closed) {
          // Closed while the payload was on its way: the keys are wiped, and
          // nothing is read after the end.
          this.#finish(
            this.#closed ? this.#closeReason ?? "closed" : "connection-lost",
          );
          break;
        }
        if (payload[0] !== FrameKind.RECORD) {
          yield {
            kind: "discarded",
            error: new ProtocolError(
              "unexpected-frame",
              `Frame of kind ${
                payload[0]
              } discarded: only records are allowed after login`,
            ),
          };
          continue;
        }
        let rec;
        try {
          rec = this.#opener.open(payload);
        } catch (e) {
          if (e instanceof RecordError) {
            // A discarded record that is not a replay left a hole in the
            // sequence numbers; the user was told about it already.
            if (e.code !== "replayed") this.#discardedSinceAccepted++;
            yield { kind: "discarded", error: e };
            continue;
          }
          throw e;
        }
        const now = this.#liveness.received();
        if (rec.lost !== 0n) {
          // Rule 3.5: a jump is reported as lost, except the part that
          // records discarded (and reported) above explain.
          const explained = BigInt(this.#discardedSinceAccepted);
          if (rec.lost > explained) {
            yield { kind: "lost", count: rec.lost - explained };
          }
        }
        this.#discardedSinceAccepted = 0;
        if (rec.type === RecordType.HEARTBEAT) {
          const b = rec.plaintext;
          if (b.length === 4) {
            this.#liveness.announced(
              ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0,
            );
          }
          continue;
        }
        if (rec.type === RecordType.CLOSE) {
          let reason = "closed";
          try {
            const o = JSON.parse(fromUtf8(rec.plaintext, "close reason"));
            if (typeof o?.reason === "string") reason = o.reason.slice(0, 64);
          } catch {
            // A close with an unreadable reason is still a close.
          } finally {
            rec.plaintext.fill(0);
          }
          this.#finish(reason);
          this.#closeReason = reason;
          break;
        }
        if (rec.type !== RecordType.DATA) {
          rec.plaintext.fill(0);
          yield {
            kind: "discarded",
            error: new ProtocolError(
              "unexpected-record",
              `Record of type ${rec.type} discarded: not expected now`,
            ),
          };
          continue;
        }
        this.#liveness.data(now);
        let decoded: { msg: In } | { error: ProtocolError };
        try {
          decoded = { msg: this.#codec.decode(rec.plaintext) };
        } catch (e) {
          decoded = { error: e as ProtocolError };
        } finally {
          // The decrypted bytes go as soon as the codec is done with them,
          // before anyone sees the message (PROTOCOL.md section 4, "Wiping");
          // the strings the codec made cannot be wiped.
          rec.plaintext.fill(0);
        }
        if ("error" in decoded) {
          yield { kind: "discarded", error: decoded.error };
          continue;
        }
        yield { kind: "message", msg: decoded.msg };
      }
      yield {
        kind: "closed",
        reason: this.#closeReason ?? "closed",
        ...(this.#closeError ? { error: this.#closeError } : {}),
      };
    } finally {
      this.#reading = false;
    }
  }
}
