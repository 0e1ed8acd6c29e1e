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
  within,
} from "../util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameKind,
  type FrameTransport,
} from "../wire/mod.ts";
import {
  heartbeats,
  type HeartbeatScheduler,
  type ScheduledTask,
} from "./scheduler.ts";
import {
  RECORD_HEADER_BYTES,
  RECORD_MIN_BYTES,
  RECORD_TAG_BYTES,
  type RecordOpener,
  type RecordSealer,
  RecordType,
} from "./record.ts";

/** Default active heartbeat interval (PROTOCOL.md section 4, "Heartbeats"). */
export const DEFAULT_HEARTBEAT_MS = 2000;
/** Longest active heartbeat interval a side may choose (`--heartbeat`): until the other side announces its own, each assumes this. */
export const MAX_HEARTBEAT_MS = 2000;
/** Shortest heartbeat interval. */
export const MIN_HEARTBEAT_MS = 50;
/** Default interval of an idle channel: one with no DATA record either way for {@link IDLE_AFTER_MS}. */
export const IDLE_HEARTBEAT_MS = 30_000;
/** Longest interval a HEARTBEAT may announce; a receiver clamps to it. */
export const MAX_ANNOUNCED_HEARTBEAT_MS = 30_000;
/** A channel with no DATA record sent or received for this long is idle. */
export const IDLE_AFTER_MS = 10_000;
/** A side is gone after this many of the slower side's heartbeat intervals without a valid record. */
export const HEARTBEATS_BEFORE_DEAD = 3;

/** Longest {@link RecordChannel.close} waits for its CLOSE record to be written. */
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
export interface ChannelOptions {
  /** Send a heartbeat after this long without sending, while active; 0 turns heartbeats off. */
  heartbeatMs?: number;
  /**
   * The interval once idle (default {@link IDLE_HEARTBEAT_MS}, at most
   * {@link MAX_ANNOUNCED_HEARTBEAT_MS}); one not longer than `heartbeatMs`
   * means no idle mode.
   */
  idleHeartbeatMs?: number;
  /** Idle after this long with no DATA record either way (default {@link IDLE_AFTER_MS}). */
  idleAfterMs?: number;
  /**
   * Declare the peer gone after this long without a valid record. Default:
   * 3 x the slower of our active interval and the one the other side last
   * announced in a HEARTBEAT (assumed {@link MAX_HEARTBEAT_MS} until the
   * first one arrives).
   */
  deadAfterMs?: number;
  /** The timer the heartbeats run on (default the process's {@link heartbeats}). */
  scheduler?: HeartbeatScheduler;
  /** Largest record payload the transport carries (default the 64 KiB frame limit, rule 1.1). */
  maxRecordBytes?: number;
}

/** Records both ways over one transport; `In` and `Out` are what its codec reads and writes. */
export class RecordChannel<In, Out> {
  readonly transport: FrameTransport;
  #sealer: RecordSealer;
  #opener: RecordOpener;
  #heartbeatMs: number;
  #idleHeartbeatMs: number;
  #idleAfterMs: number;
  /** Is the channel idle (PROTOCOL.md section 4, "Heartbeats")? */
  #idle = false;
  #fixedDeadAfterMs: number | undefined;
  #discardedSinceAccepted = 0;
  /** The other side's heartbeat interval, once it announced it. */
  #peerHeartbeatMs: number | undefined;
  #maxRecordBytes: number;
  #scheduler: HeartbeatScheduler;
  #lastSent: number;
  #lastReceived: number;
  /** When a DATA record last went either way. */
  #lastData: number;
  /** Our entry in {@link #scheduler}, while heartbeats run. */
  #task: ScheduledTask | undefined;
  #closed = false;
  #closeReason: string | undefined;
  #closeError: ImError | undefined;
  #wake: (() => void) | undefined;
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
    this.#heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.#idleHeartbeatMs = Math.min(
      opts.idleHeartbeatMs ?? IDLE_HEARTBEAT_MS,
      MAX_ANNOUNCED_HEARTBEAT_MS,
    );
    this.#idleAfterMs = opts.idleAfterMs ?? IDLE_AFTER_MS;
    this.#fixedDeadAfterMs = opts.deadAfterMs;
    this.#maxRecordBytes = opts.maxRecordBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#scheduler = opts.scheduler ?? heartbeats;
    this.#lastSent = this.#lastReceived = this.#lastData = this.#scheduler
      .now();
    if (this.#heartbeatMs > 0) {
      // Announce our interval at once: until the other side hears it, it
      // must assume the slowest one and would notice our death late.
      this.#heartbeat();
      this.#task = { run: (now) => this.#tick(now) };
      this.#scheduler.schedule(this.#task, this.#nextDue());
    }
  }

  /** Has the channel ended? */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * How long the other side may stay silent before it is declared gone: 3 x
   * the longer of our active interval and the other side's announced one
   * (our own idle interval does not count: PROTOCOL.md section 4).
   */
  get deadAfterMs(): number {
    return this.#fixedDeadAfterMs ??
      HEARTBEATS_BEFORE_DEAD *
        Math.max(this.#heartbeatMs, this.#peerHeartbeatMs ?? MAX_HEARTBEAT_MS);
  }

  /** Is the channel idle, sending heartbeats at the idle interval? */
  get idle(): boolean {
    return this.#idle;
  }

  /** The interval we announce and keep now: the idle one while idle. */
  get heartbeatMs(): number {
    return this.#idle ? this.#idleHeartbeatMs : this.#heartbeatMs;
  }

  /** Can this channel go idle at all? */
  get #idles(): boolean {
    return this.#idleHeartbeatMs > this.#heartbeatMs;
  }

  /** When {@link #tick} has something to do next: a heartbeat, the deadline, or going idle. */
  #nextDue(): number {
    let due = Math.min(
      this.#lastSent + this.heartbeatMs,
      this.#lastReceived + this.deadAfterMs,
    );
    if (!this.#idle && this.#idles) {
      due = Math.min(due, this.#lastData + this.#idleAfterMs);
    }
    return due;
  }

  /** The scheduler's call: the deadline, going idle, a heartbeat; then when next. */
  #tick(now: number): number | undefined {
    if (this.#closed) return undefined;
    if (now - this.#lastReceived >= this.deadAfterMs) {
      this.#finish(
        "timeout",
        new NetError(
          "peer-silent",
          `No sign of life for ${
            Math.round((now - this.#lastReceived) / 1000)
          } s`,
        ),
      );
      return undefined;
    }
    if (
      !this.#idle && this.#idles && now - this.#lastData >= this.#idleAfterMs
    ) {
      // Announce the longer interval before keeping to it (PROTOCOL.md
      // section 4): the other side's bound grows before our silence does.
      this.#idle = true;
      this.#heartbeat();
    } else if (now - this.#lastSent >= this.heartbeatMs) this.#heartbeat();
    return this.#nextDue();
  }

  /** A DATA record went one way or the other: an idle channel is active again, and says so at once. */
  #dataPassed(now: number): void {
    this.#lastData = now;
    if (!this.#idle || this.#task === undefined) return;
    this.#idle = false;
    this.#heartbeat();
    this.#scheduler.advance(this.#task, this.#nextDue());
  }

  /** Largest record this channel seals (rule 1.1; PROTOCOL.md section 2). */
  get maxRecordBytes(): number {
    return this.#maxRecordBytes;
  }

  set maxRecordBytes(n: number) {
    this.#maxRecordBytes = n;
  }

  /** Send a HEARTBEAT; its body announces our current interval, so the other side knows how long our silence may last (PROTOCOL.md section 4, "Heartbeats"). */
  #heartbeat(): void {
    const body = new Uint8Array(4);
    new DataView(body.buffer).setUint32(0, this.heartbeatMs);
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
    this.#lastSent = this.#scheduler.now();
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
    if (!this.#closed) this.#dataPassed(this.#scheduler.now());
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
    await within(
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
    if (this.#task !== undefined) this.#scheduler.cancel(this.#task);
    this.#task = undefined;
    clearTimeout(this.#lostTimer);
    this.transport.close();
    this.#sealer.wipe();
    this.#opener.wipe();
    this.#wake?.();
  }

  /**
   * Everything that arrives, until the channel closes. The last event is
   * always `closed`.
   * @returns the events
   */
  async *events(): AsyncGenerator<ChannelEvent<In>> {
    this.#reading = true;
    try {
      yield* this.#read();
    } finally {
      this.#reading = false;
    }
  }

  async *#read(): AsyncGenerator<ChannelEvent<In>> {
    while (!this.#closed) {
      let payload: Uint8Array | null;
      try {
        payload = await this.#recvOrClose();
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
      this.#lastReceived = this.#scheduler.now();
      // Rule 3.5: a jump is reported as lost, except the part that records
      // discarded (and reported) above explain.
      const explained = BigInt(this.#discardedSinceAccepted);
      this.#discardedSinceAccepted = 0;
      if (rec.lost > explained) {
        yield { kind: "lost", count: rec.lost - explained };
      }
      if (rec.type === RecordType.HEARTBEAT) {
        if (rec.plaintext.length === 4) {
          const ms = new DataView(
            rec.plaintext.buffer,
            rec.plaintext.byteOffset,
            4,
          ).getUint32(0);
          const was = this.#peerHeartbeatMs ?? MAX_HEARTBEAT_MS;
          this.#peerHeartbeatMs = Math.min(
            Math.max(ms, MIN_HEARTBEAT_MS),
            MAX_ANNOUNCED_HEARTBEAT_MS,
          );
          // A shorter interval brings the deadline nearer than our entry.
          if (
            this.#task !== undefined && this.#peerHeartbeatMs < was
          ) this.#scheduler.advance(this.#task, this.#nextDue());
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
      this.#dataPassed(this.#lastReceived);
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
  }

  #recvOrClose(): Promise<Uint8Array | null> {
    return new Promise((resolve, reject) => {
      this.#wake = () => resolve(null);
      this.transport.recv().then(resolve, reject).finally(() => {
        this.#wake = undefined;
      });
    });
  }
}
