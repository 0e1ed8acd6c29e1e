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
 * // or, with no suspended reader (a server's connections, issue 15):
 * // ch.listen((ev) => console.log(ev));
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

/**
 * What one payload read turns into ({@link RecordChannel}'s `#take`): the
 * events to report, and last, for a CLOSE record, its reason (the channel
 * closes once the events before it were reported, as it did when the
 * reading loop did all this itself).
 */
type Taken<In> = ChannelEvent<In> | { kind: "close-record"; reason: string };

/** What {@link RecordChannel.listen} calls. */
type OnEvent<In> = (ev: ChannelEvent<In>) => void;
/** An {@link OnEvent} of any `In`, as a channel keeps it. */
type Listener = (ev: never) => void;

/** Options of {@link RecordChannel}. */
export interface ChannelOptions extends LivenessOptions {
  /** The timer the heartbeats run on (default the process's {@link heartbeats}). */
  scheduler?: HeartbeatScheduler;
  /** Largest record payload the transport carries (default the 64 KiB frame limit, rule 1.1). */
  maxRecordBytes?: number;
}

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
  #wake: (() => void) | undefined;
  /** Is {@link events} or {@link listen} reading? Then it, not a failed send, ends the channel. */
  #reading = false;
  /** {@link listen}'s `onEvent`, until it was given `closed`. */
  // Stored without its `In` (a field of type `In => void` would make a
  // channel of messages no longer a channel of some of them to TypeScript).
  #onEvent: Listener | undefined;
  /** {@link listen}'s callbacks of the transport's read, made once per channel. */
  #listenGot: ((payload: Uint8Array | null) => void) | undefined;
  #listenFailed: ((e: unknown) => void) | undefined;
  /** The listener's read is pending: a close answers it (as {@link #wake} does for {@link events}). */
  #recvPending = false;
  /** The listener is being given the events of one payload. */
  #delivering = false;
  /** {@link pause}d: the listener reads no further. */
  #paused = false;
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

  /** Send a HEARTBEAT; its body announces our current interval, so the other side knows how long our silence may last (PROTOCOL.md section 4, "Heartbeats"). */
  #heartbeat(intervalMs: number): void {
    const body = new Uint8Array(4);
    new DataView(body.buffer).setUint32(0, intervalMs);
    this.#sendRecord(RecordType.HEARTBEAT, body).catch(() => {});
  }

  /**
   * Seal `body` as one record and send it. `body` is ours: it is wiped once
   * sealed, or refused (PROTOCOL.md section 4, "Wiping").
   */
  async #sendRecord(type: RecordType, body: Uint8Array): Promise<void> {
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
        payload = this.#sealer.seal(type, body);
      } catch (e) {
        // Rule 3.5: the sequence number never wraps; the sender closes first.
        this.#finish("sequence-exhausted", e as ImError);
        throw e;
      }
    } finally {
      body.fill(0);
    }
    this.#liveness.sent();
    try {
      await this.transport.send(payload);
    } catch (e) {
      if (this.#reading && !this.#closed && !this.transport.closed) {
        // Records the peer sent before it went (a CLOSE, the server's
        // `closing`) are still to be read from a transport that only
        // failed to write (one that closed itself, `send-queue-full`, has
        // nothing more to give): the reader ends the channel at
        // the end of the stream, or this timer does if the end never comes.
        this.#lostTimer ??= setTimeout(
          () => this.#finish("connection-lost", e as ImError),
          CLOSE_TIMEOUT_MS,
        );
      } else {
        this.#finish("connection-lost", e as ImError);
      }
      throw e;
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
    this.#wake?.();
    // The listener's pending read is answered with the end, as #wake
    // answers events()'s: in a later microtask, never inside close().
    if (this.#recvPending) queueMicrotask(() => this.#listened(null));
  }

  /**
   * Everything that arrives, until the channel closes. The last event is
   * always `closed`. {@link listen} gives the same events without a
   * suspended reader.
   * @returns the events
   */
  async *events(): AsyncGenerator<ChannelEvent<In>> {
    // The reading loop itself, not a wrapper delegating to another
    // generator: a reader holds one suspended frame per channel, idle or
    // not (issue 15, BENCHMARKS.md "Idle connections").
    this.#reading = true;
    try {
      while (!this.#closed) {
        let payload: Uint8Array | null;
        try {
          payload = await this.#recvOrClose();
        } catch (e) {
          this.#wake = undefined;
          this.#finish("protocol-error", e as ImError);
          break;
        }
        this.#wake = undefined;
        if (payload === null || this.#closed) {
          // Closed while the payload was on its way: the keys are wiped, and
          // nothing is read after the end.
          this.#finish(
            this.#closed ? this.#closeReason ?? "closed" : "connection-lost",
          );
          break;
        }
        for (const ev of this.#take(payload)) {
          if (ev.kind === "close-record") {
            this.#closedBy(ev.reason);
            break;
          }
          yield ev;
        }
      }
      yield this.#closedEvent();
    } finally {
      this.#reading = false;
    }
  }

  /**
   * Push mode: the events of {@link events}, the same ones in the same
   * order, the last always `closed`, each handed to `onEvent` as it is
   * read. Nothing waits between records but the transport's pending read
   * and its `then` callbacks: no suspended async frame or generator per
   * channel (issue 15, BENCHMARKS.md "The heap of an idle connection"). A
   * server reads every logged-in connection this way.
   *
   * `onEvent` is called from the read's callback; it must not throw. It
   * may {@link pause} reading (the events of the record being read still
   * come) and {@link resume} it later; a channel closed meanwhile reports
   * `closed` once resumed, as a reader of {@link events} that stopped
   * pulling learns it at its next pull.
   * @param onEvent gets every event
   * @throws {Error} when the channel is read already ({@link events} or a listener)
   */
  listen(onEvent: (ev: ChannelEvent<In>) => void): void {
    if (this.#reading) {
      throw new Error("Cannot listen: this channel is read already");
    }
    this.#reading = true;
    this.#onEvent = onEvent;
    // Made once per channel, not per read.
    this.#listenGot = (payload) => this.#listened(payload);
    this.#listenFailed = (e) => {
      if (!this.#recvPending) return;
      this.#recvPending = false;
      this.#finish("protocol-error", e as ImError);
      this.#listenNext();
    };
    this.#listenNext();
  }

  /** Stop reading after the record being read, until {@link resume} (a listener's backpressure). */
  pause(): void {
    this.#paused = true;
  }

  /** Read again after {@link pause}. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#listenNext();
  }

  /** Start the listener's next read, unless one is pending, it is paused, or the channel ended (then `closed`, once). */
  #listenNext(): void {
    const onEvent = this.#onEvent as OnEvent<In> | undefined;
    if (onEvent === undefined || this.#recvPending || this.#delivering) return;
    if (this.#closed) {
      this.#onEvent = this.#listenGot = this.#listenFailed = undefined;
      this.#reading = false;
      onEvent(this.#closedEvent());
      return;
    }
    if (this.#paused) return;
    this.#recvPending = true;
    this.transport.recv().then(this.#listenGot, this.#listenFailed);
  }

  /** The listener's read gave `payload` (null: the end, or {@link #finish} woke it). */
  #listened(payload: Uint8Array | null): void {
    // A wake answered already: what the transport gives after is not read.
    if (!this.#recvPending) return;
    this.#recvPending = false;
    if (payload === null || this.#closed) {
      this.#finish(
        this.#closed ? this.#closeReason ?? "closed" : "connection-lost",
      );
    } else {
      let evs: Taken<In>[];
      try {
        evs = this.#take(payload);
      } catch (e) {
        // Not a RecordError: a reader of events() would get it thrown.
        evs = [];
        this.#finish("protocol-error", e as ImError);
      }
      this.#delivering = true;
      try {
        for (const ev of evs) {
          if (ev.kind === "close-record") {
            this.#closedBy(ev.reason);
            break;
          }
          (this.#onEvent as OnEvent<In>)(ev);
        }
      } finally {
        this.#delivering = false;
      }
    }
    this.#listenNext();
  }

  /** The other side's CLOSE record, read after the events before it were reported. */
  #closedBy(reason: string): void {
    this.#finish(reason);
    this.#closeReason = reason;
  }

  #closedEvent(): ChannelEvent<In> {
    return {
      kind: "closed",
      reason: this.#closeReason ?? "closed",
      ...(this.#closeError ? { error: this.#closeError } : {}),
    };
  }

  /**
   * One payload read, turned into what is reported of it: at most two
   * events (`lost`, then `discarded` or `message`), or, for a CLOSE
   * record, `lost` perhaps and then a `close-record` (the caller
   * closes once the events before it were reported). Liveness is updated
   * and the plaintext wiped here, so {@link events} and {@link listen}
   * behave the same.
   * @throws what {@link RecordOpener.open} throws that is not a RecordError
   */
  #take(payload: Uint8Array): Taken<In>[] {
    if (payload[0] !== FrameKind.RECORD) {
      return [{
        kind: "discarded",
        error: new ProtocolError(
          "unexpected-frame",
          `Frame of kind ${
            payload[0]
          } discarded: only records are allowed after login`,
        ),
      }];
    }
    let rec;
    try {
      rec = this.#opener.open(payload);
    } catch (e) {
      if (e instanceof RecordError) {
        // A discarded record that is not a replay left a hole in the
        // sequence numbers; the user was told about it already.
        if (e.code !== "replayed") this.#discardedSinceAccepted++;
        return [{ kind: "discarded", error: e }];
      }
      throw e;
    }
    const evs: Taken<In>[] = [];
    const now = this.#liveness.received();
    // Rule 3.5: a jump is reported as lost, except the part that records
    // discarded (and reported) above explain.
    const explained = BigInt(this.#discardedSinceAccepted);
    this.#discardedSinceAccepted = 0;
    if (rec.lost > explained) {
      evs.push({ kind: "lost", count: rec.lost - explained });
    }
    if (rec.type === RecordType.HEARTBEAT) {
      if (rec.plaintext.length === 4) {
        const ms = new DataView(
          rec.plaintext.buffer,
          rec.plaintext.byteOffset,
          4,
        ).getUint32(0);
        this.#liveness.announced(ms);
      }
      return evs;
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
      evs.push({ kind: "close-record", reason });
      return evs;
    }
    if (rec.type !== RecordType.DATA) {
      rec.plaintext.fill(0);
      evs.push({
        kind: "discarded",
        error: new ProtocolError(
          "unexpected-record",
          `Record of type ${rec.type} discarded: not expected now`,
        ),
      });
      return evs;
    }
    this.#liveness.data(now);
    try {
      evs.push({ kind: "message", msg: this.#codec.decode(rec.plaintext) });
    } catch (e) {
      evs.push({ kind: "discarded", error: e as ProtocolError });
    } finally {
      // The decrypted bytes go as soon as the codec is done with them,
      // before anyone sees the message (PROTOCOL.md section 4, "Wiping");
      // the strings the codec made cannot be wiped.
      rec.plaintext.fill(0);
    }
    return evs;
  }

  /**
   * The next payload, or null once {@link #finish} wakes the reader. The
   * reader clears {@link #wake} when this settles (no `finally` here: one
   * promise and two closures fewer per pending read, issue 15).
   */
  #recvOrClose(): Promise<Uint8Array | null> {
    return new Promise((resolve, reject) => {
      this.#wake = () => resolve(null);
      this.transport.recv().then(resolve, reject);
    });
  }
}
