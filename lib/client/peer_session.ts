/**
 * Peer sessions (requirements section 4): run the peer handshake over a
 * transport (a direct TCP connection, or the server relay, PROTOCOL.md section 6.1), then
 * carry chat messages with delivery receipts over a {@link SecureChannel}.
 *
 * @example
 * ```ts ignore
 * const ticket = openJoinTicket(ticketKeys, sealed, { self: "B", expectedHost: "A", ticketId });
 * const session = await joinPeer(transport, { self: "B", expectedHost: "A", replayCache, ticket, identity, peerIdentity });
 * await session.sendText("hello");
 * ```
 * @module
 */

import type { ChannelOptions } from "../record/mod.ts";
import {
  type ChannelEvent,
  decodePeerCommit,
  encodeMessage,
  type JoinTicket,
  type Message,
  PeerHostHandshake,
  type PeerHostOptions,
  PeerJoinHandshake,
  type PeerJoinOptions,
  SecureChannel,
} from "../proto/mod.ts";
import { AuthError, deadline, NetError, ProtocolError } from "../util/mod.ts";
import { ReceiptRun } from "./peer_receipts.ts";

export {
  ACK_MAX_DELAY_MS,
  ACK_QUIET_MS,
  ACK_RUN_MAX,
  ReceiptRun,
} from "./peer_receipts.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameKind,
  type FrameTransport,
} from "../wire/mod.ts";

/**
 * A peer channel seals no record larger than its transport carries: over the
 * relay, what fits the server's limit (PROTOCOL.md sections 2 and 6.1).
 */
function peerChannelOptions(
  t: FrameTransport,
  channel: ChannelOptions,
): ChannelOptions {
  return {
    ...channel,
    maxRecordBytes: Math.min(
      channel.maxRecordBytes ?? DEFAULT_MAX_FRAME_BYTES,
      t.maxFrameBytes,
    ),
  };
}

/**
 * Largest chat message, in bytes of its encoded `msg` message. Chosen so
 * that the record still fits a default 64 KiB frame when it is relayed
 * (base64 inside a `relay` message inside a server record: 45 KiB * 4/3
 * plus headers is about 61.5 KiB). A longer message is refused before it
 * is sealed, so it costs no sequence number and never breaks the session.
 */
export const MAX_MESSAGE_BYTES = 45 * 1024;

/** How long {@link PeerSession.close} waits for receipts of messages in flight. */
export const CLOSE_GRACE_MS = 1000;

/**
 * Most bytes of our chat messages (counted as their upper bound, 6 per
 * UTF-16 unit and 32 more) queued for writing before the sender waits
 * ({@link PeerSession.room}): a peer that does not read holds at most this
 * (plus one message) of ours, well below the transport's own limit.
 */
export const MAX_SEND_AHEAD = 256 * 1024;

/** A chat message sealed and queued: its id, and its write. */
export interface QueuedText {
  id: string;
  written: Promise<void>;
}

/** How long a peer handshake may take once connected. */
export const PEER_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * How long a host waits for a new connection's PEER_COMMIT, which a real
 * joiner sends as soon as it is connected. A stranger who says nothing is
 * dropped after this, and never sees the ticket.
 */
export const PEER_COMMIT_TIMEOUT_MS = 5000;

async function recvWithin(
  t: FrameTransport,
  ms: number,
  what: string,
): Promise<Uint8Array> {
  const p = await deadline(t.recv(), ms, () => {
    t.close();
    return new NetError(
      "peer-timeout",
      `Peer did not answer the ${what} in time`,
    );
  });
  if (p === null) {
    throw new NetError(
      "peer-closed",
      `Peer closed the connection during the ${what}`,
    );
  }
  return p;
}

/**
 * Host side, first step: wait for the joiner's PEER_COMMIT (rule 4.4). The
 * host sends nothing, not even the ticket, to a connection before it, and
 * spends no grant before its ticket id and MAC were checked against the
 * grant (`checkPeerCommit`, PROTOCOL.md section 6).
 * @param t a connection a joiner opened (or a relay)
 * @param ms how long to wait
 * @returns the PEER_COMMIT payload, checked to be well formed (not yet
 *   against a grant)
 * @throws {NetError} `peer-timeout`, `peer-closed`; {@link ProtocolError}
 *   when the first frame is not a PEER_COMMIT
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryPair } from "../wire/mod.ts";
 * import { readPeerCommit } from "./peer_session.ts";
 * const [joiner, host] = memoryPair();
 * await joiner.send(new Uint8Array(81).fill(0x23, 0, 1));
 * assert.equal((await readPeerCommit(host, 100)).length, 81);
 * host.close();
 * ```
 */
export async function readPeerCommit(
  t: FrameTransport,
  ms: number = PEER_COMMIT_TIMEOUT_MS,
): Promise<Uint8Array> {
  const p = await recvWithin(t, ms, "peer handshake");
  decodePeerCommit(p);
  return p;
}

/**
 * A peer handshake that failed after both sides had revealed their values
 * (the host's PEER_REPLY check passed, or the joiner sent its PEER_REPLY):
 * the SAS of that attempt is spent. Such an attempt is never retried on the
 * same grant, or a man in the middle holding the peer key could try again
 * and again until the two codes match (rule 4.4: one guess per session).
 */
export class SpentHandshakeError extends AuthError {}

function spent(e: unknown): SpentHandshakeError {
  if (e instanceof AuthError && e.code === "peer-signature-failed") {
    // Spent as well, but said as it is: not the user the server named
    // (PROTOCOL.md section 6, key continuity).
    return new SpentHandshakeError(e.code, e.message, e.hint);
  }
  return new SpentHandshakeError(
    "peer-handshake-spent",
    `Peer handshake failed after the key exchange (${
      (e as Error)?.message ?? e
    }); the session is cancelled, not retried`,
    "if this repeats, someone may be in the middle: compare the codes when a session starts",
  );
}

/**
 * Host side: read the joiner's commitment (unless given) and check it
 * against the grant, send the ticket, check the joiner, confirm keys.
 * @param t the connection a joiner opened
 * @param o the grant
 * @param channel heartbeat settings for the session
 * @param transport how the connection runs, for the session's record
 * @param commit the PEER_COMMIT already read by {@link readPeerCommit}
 * @returns the session
 * @throws {AuthError} a PEER_COMMIT for another grant or without a valid MAC
 *   (`commit-wrong-ticket`, `commit-auth-failed`), a stranger
 *   (`peer-auth-failed`) or a joiner that changed its values
 *   (`commit-mismatch`); {@link SpentHandshakeError} after the reveal,
 *   `peer-signature-failed` when the joiner's FINISHED is not signed by
 *   the key the server named; {@link NetError} timeouts
 * @example
 * ```ts ignore
 * const session = await hostPeer(transport, grant, { heartbeatMs: 2000 });
 * ```
 */
export async function hostPeer(
  t: FrameTransport,
  o: PeerHostOptions,
  channel: ChannelOptions = {},
  transport: "direct" | "relay" = "direct",
  commit?: Uint8Array,
): Promise<PeerSession> {
  const hs = new PeerHostHandshake(o);
  await hs.onCommit(
    commit ??
      await recvWithin(t, PEER_HANDSHAKE_TIMEOUT_MS, "peer handshake"),
  );
  await t.send(await hs.hello());
  const finished = await hs.onReply(
    await recvWithin(t, PEER_HANDSHAKE_TIMEOUT_MS, "peer handshake"),
  );
  // The joiner proved it holds the peer key: from here on, a failure spends
  // this grant (see SpentHandshakeError).
  try {
    await t.send(finished);
    await hs.onFinished(
      await recvWithin(t, PEER_HANDSHAKE_TIMEOUT_MS, "peer handshake"),
    );
  } catch (e) {
    throw spent(e);
  }
  const r = hs.result;
  return new PeerSession(
    o.self,
    r.peer,
    r.sas,
    transport,
    new SecureChannel(t, r.sealer, r.opener, {
      ...peerChannelOptions(t, channel),
      pad: true,
    }),
  );
}

/** Options of {@link joinPeer}: the handshake's, and our opened ticket. */
export interface JoinPeerOptions extends PeerJoinOptions {
  /** Our ticket from the `join`, opened by `openJoinTicket`; its peer key is not wiped here. */
  ticket: JoinTicket;
}

/**
 * Joiner side: commit (bound to our ticket), check the host's ticket,
 * reveal, confirm keys. Over the relay, the PEER_COMMIT is also what starts
 * the host's handshake.
 * @param t the connection to the host
 * @param o who we are, whom we expect, our ticket
 * @param channel heartbeat settings for the session
 * @param transport how the connection runs, for the session's record
 * @returns the session
 * @throws {TicketError} or {@link AuthError} when the host is not who the
 *   server said; {@link NetError} when the connection fails or times out
 * @example
 * ```ts ignore
 * const session = await joinPeer(transport, { self: "B", expectedHost: "A", replayCache, ticket, identity, peerIdentity });
 * ```
 */
export async function joinPeer(
  t: FrameTransport,
  o: JoinPeerOptions,
  channel: ChannelOptions = {},
  transport: "direct" | "relay" = "direct",
): Promise<PeerSession> {
  const hs = new PeerJoinHandshake(o);
  await t.send(await hs.commit(o.ticket));
  const hello = await recvWithin(
    t,
    PEER_HANDSHAKE_TIMEOUT_MS,
    "peer handshake",
  );
  if (hello[0] !== FrameKind.PEER_HELLO) {
    throw new ProtocolError(
      "unexpected-frame",
      `Expected PEER_HELLO from the host, got frame kind ${hello[0]}`,
    );
  }
  const reply = await hs.onHello(hello);
  // Our values are about to be revealed: from here on, a failure spends the
  // attempt (see SpentHandshakeError).
  try {
    await t.send(reply);
    await t.send(
      await hs.onFinished(
        await recvWithin(t, PEER_HANDSHAKE_TIMEOUT_MS, "peer handshake"),
      ),
    );
  } catch (e) {
    throw spent(e);
  }
  const r = hs.result;
  return new PeerSession(
    o.self,
    r.peer,
    r.sas,
    transport,
    new SecureChannel(t, r.sealer, r.opener, {
      ...peerChannelOptions(t, channel),
      pad: true,
    }),
  );
}

/** What a peer session reports to the client. */
export type PeerEvent =
  | { kind: "text"; id: string; text: string }
  | { kind: "delivered"; id: string }
  | { kind: "problem"; code: string; message: string }
  | {
    kind: "ended";
    reason: string;
    undelivered: Array<{ id: string; text: string }>;
  };

/**
 * A running peer chat. Receipts are cumulative (PROTOCOL.md section 6,
 * "Receipts"): the receiver answers a run of `msg`s with one `ack` naming
 * the last and how many; the sender shows one `delivered` per message.
 */
export class PeerSession {
  readonly self: string;
  readonly peer: string;
  readonly sas: string;
  readonly transport: "direct" | "relay";
  readonly channel: SecureChannel;
  /** Our messages without a receipt, in the order they were sealed. */
  #unacked = new Map<string, string>();
  #counter = 0;
  /** Our receipt of the `msg`s we read (PROTOCOL.md section 6, "Receipts"). */
  #run: ReceiptRun;

  /**
   * @param self our name
   * @param peer theirs
   * @param sas short authentication string
   * @param transport direct or relayed
   * @param channel the secure channel
   */
  constructor(
    self: string,
    peer: string,
    sas: string,
    transport: "direct" | "relay",
    channel: SecureChannel,
  ) {
    this.self = self;
    this.peer = peer;
    this.sas = sas;
    this.transport = transport;
    this.channel = channel;
    this.#run = new ReceiptRun((ack) =>
      channel.closed ? Promise.resolve() : channel.send(ack).catch(() => {
        // The session is ending: what it was owed is reported there.
      })
    );
  }

  /**
   * Send a chat message; it stays "unacknowledged" until the peer's receipt arrives.
   * @param text the message
   * @returns its id, once its record is written
   * @throws {ProtocolError} `message-too-large` past {@link MAX_MESSAGE_BYTES} (nothing is sent);
   *   {@link NetError} when the session is closed
   */
  sendText(text: string): Promise<string> {
    let q: QueuedText;
    try {
      q = this.queueText(text);
    } catch (e) {
      return Promise.reject(e);
    }
    return q.written.then(() => q.id);
  }

  /**
   * Seal a chat message and queue its record without waiting for the write
   * (issue 15: a burst of lines goes out in a few writes, not one each). The
   * records leave in the order they were queued. A caller that queues many
   * waits on {@link room} between them: at most {@link MAX_SEND_AHEAD}
   * (an upper bound of the bytes) wait to be written.
   * @param text the message
   * @returns its id, and when its record is written (a rejection: it was
   *   not sent, and the session's end does not report it again; it
   *   resolves instead when that end reported it first, as undelivered)
   * @throws {ProtocolError} `message-too-large` past {@link MAX_MESSAGE_BYTES}
   *   (nothing is sent); {@link NetError} `closed` when the session is
   *   closed; both synchronously, before anything is queued
   */
  queueText(text: string): QueuedText {
    if (this.channel.closed) {
      throw new NetError("closed", "Connection is closed");
    }
    // Numbered from 1 per session: short enough to show beside the message
    // and in its receipt ("#3"); receipts never cross sessions.
    const id = String(this.#counter + 1);
    // A JSON string takes at most 6 bytes per UTF-16 unit (`\u0000`), so a
    // text this short needs no trial encoding (each costs a JSON.stringify
    // and a UTF-8 encoding: issue 15).
    const bound = (text.length + id.length) * 6 + 32;
    const size = bound <= MAX_MESSAGE_BYTES
      ? 0
      : encodeMessage({ t: "msg", id, text }).length;
    if (size > MAX_MESSAGE_BYTES) {
      throw new ProtocolError(
        "message-too-large",
        `Message of ${size} bytes exceeds the limit of ${MAX_MESSAGE_BYTES}; split it into shorter ones`,
      );
    }
    this.#counter++;
    this.#unacked.set(id, text);
    const weight = Math.min(bound, MAX_MESSAGE_BYTES + 64);
    this.#ahead += weight;
    // Sealed and handed to the transport now (its queue keeps the order).
    const written = this.channel.send({ t: "msg", id, text }).then(() => {
      this.#wrote(weight);
    }, (e) => {
      this.#wrote(weight);
      // Reported once: by the session's end when that came first (its
      // `undelivered`), else by the caller now, and then not at the end.
      if (!this.#unacked.delete(id)) return;
      if (this.#unacked.size === 0) this.#wakeSettled();
      throw e;
    });
    return { id, written };
  }

  /**
   * Back-pressure for {@link queueText}: undefined while fewer than
   * {@link MAX_SEND_AHEAD} bytes wait to be written, else a promise that
   * resolves once they drop below it (or the session's writes end).
   */
  room(): Promise<void> | undefined {
    if (this.#ahead < MAX_SEND_AHEAD || this.channel.closed) return undefined;
    const w = Promise.withResolvers<void>();
    this.#roomWaiters.push(w.resolve);
    return w.promise;
  }

  /** Bytes (an upper bound) of our messages queued, their write not done. */
  get sendAhead(): number {
    return this.#ahead;
  }
  #ahead = 0;
  #roomWaiters: Array<() => void> = [];

  #wrote(weight: number): void {
    this.#ahead -= weight;
    if (
      (this.#ahead < MAX_SEND_AHEAD || this.channel.closed) &&
      this.#roomWaiters.length > 0
    ) {
      const ws = this.#roomWaiters;
      this.#roomWaiters = [];
      for (const w of ws) w();
    }
  }

  /**
   * End the session (`!disconnect`, rule 4.5); its `ended` event then has
   * the reason `local`. Messages still waiting for their receipt get up to
   * `graceMs` to be acknowledged first, so that a `!disconnect` typed (or
   * piped) right after a message neither cuts it off nor reports it
   * undelivered when it did arrive. The first call's reason is the one
   * sent; later calls wait for it.
   * @param reason sent to the peer in the CLOSE record (`disconnect`,
   *   `quit`, `replaced`, ...; PROTOCOL.md section 6)
   * @param graceMs longest wait for outstanding receipts
   */
  close(reason = "disconnect", graceMs = CLOSE_GRACE_MS): Promise<void> {
    // The first close says why; a later one (a quit while the session is
    // closed for a replaced login) waits for it and changes nothing.
    this.#closing ??= this.#close(reason, graceMs);
    return this.#closing;
  }

  async #close(reason: string, graceMs: number): Promise<void> {
    if (this.#unacked.size > 0 && graceMs > 0 && !this.channel.closed) {
      await this.#settled(graceMs);
    }
    if (this.channel.closed) return;
    this.#closedLocally = true;
    // Our pending receipt goes before the CLOSE: what we read is delivered.
    await this.#run.flush();
    await this.channel.close(reason);
  }
  #closing: Promise<void> | undefined;
  #closedLocally = false;
  #settleWaiters = new Set<() => void>();

  /** Resolve when nothing is unacknowledged, the channel closed, or after `ms`. */
  #settled(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#settleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#settleWaiters.add(done);
    });
  }

  #wakeSettled(): void {
    for (const w of [...this.#settleWaiters]) w();
  }

  /**
   * Is a receipt of ours waiting for its quiet spell (a run read, its `ack`
   * not sent yet, the timer set)? False once the session's events ended.
   */
  get receiptPending(): boolean {
    return this.#run.pending;
  }

  /**
   * The messages an `ack` covers: the `count` waiting ones that end at `id`,
   * oldest first; null when it names none waiting or counts more than wait
   * up to it (PROTOCOL.md section 6, "Receipts").
   */
  #covered(id: string, count: number): string[] | null {
    if (!this.#unacked.has(id)) return null;
    const upTo: string[] = [];
    for (const k of this.#unacked.keys()) {
      upTo.push(k);
      if (k === id) break;
    }
    return count > upTo.length ? null : upTo.slice(upTo.length - count);
  }

  /**
   * The session's events until it ends; the last is always `ended`.
   * @returns the events
   */
  async *events(): AsyncGenerator<PeerEvent> {
    try {
      for await (
        const ev of this.channel.events() as AsyncGenerator<ChannelEvent>
      ) {
        if (ev.kind === "message") {
          const m: Message = ev.msg;
          if (m.t === "msg") {
            this.#run.add(m.id);
            yield { kind: "text", id: m.id, text: m.text };
          } else if (m.t === "ack") {
            const ids = this.#covered(m.id, m.count ?? 1);
            if (ids === null) {
              yield {
                kind: "problem",
                code: "bad-receipt",
                message:
                  `${this.peer} sent a receipt for messages that are not waiting for one; ignored`,
              };
              continue;
            }
            for (const id of ids) this.#unacked.delete(id);
            if (this.#unacked.size === 0) this.#wakeSettled();
            for (const id of ids) yield { kind: "delivered", id };
          } else {
            yield {
              kind: "problem",
              code: "unexpected-message",
              message: `Peer sent an unexpected "${m.t}" message`,
            };
          }
        } else if (ev.kind === "discarded") {
          // A refused record may have been a `msg`: the run ends before it.
          void this.#run.flush();
          yield {
            kind: "problem",
            code: ev.error.code,
            message: ev.error.message,
          };
        } else if (ev.kind === "lost") {
          // A missing record may have been a `msg`: the run ends before it.
          void this.#run.flush();
          yield {
            kind: "problem",
            code: "lost",
            message:
              `${ev.count} message(s) from ${this.peer} were lost on the way`,
          };
        } else if (ev.kind === "closed") {
          this.#run.drop();
          const undelivered = [...this.#unacked].map(([id, text]) => ({
            id,
            text,
          }));
          this.#unacked.clear();
          this.#wakeSettled();
          // No more writes to wait for: a sender held by room() goes on.
          this.#wrote(0);
          yield {
            kind: "ended",
            // `local` when we ended it: the reason we sent is not the peer's.
            reason: this.#closedLocally
              ? "local"
              : ev.error?.code === "peer-silent"
              ? "peer-silent"
              : ev.reason,
            undelivered,
          };
        }
      }
    } finally {
      // No receipt timer outlives the events: a reader that stops reading
      // them has read the run, whose receipt goes now (none once closed).
      void this.#run.flush();
    }
  }
}

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
 * import { RelayTransport } from "./peer_session.ts";
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
