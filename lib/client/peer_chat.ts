/**
 * A running peer chat (requirements section 4), once the handshake of
 * peer_connect.ts is done: chat messages with delivery receipts over a
 * {@link SecureChannel}. {@link PeerSession} is a facade over its parts: the
 * receiver's receipts ({@link ReceiptRun}, peer_receipts.ts), the sender's
 * messages waiting for theirs ({@link UnackedTexts}, peer_unacked.ts) and
 * the back-pressure of sending ({@link SendWindow}, peer_send_window.ts).
 *
 * @example
 * ```ts ignore
 * const session = await joinPeer(transport, { self: "B", expectedHost: "A", replayCache, ticket, identity, peerIdentity });
 * await session.sendText("hello");
 * ```
 * @module
 */

import {
  type ChannelEvent,
  encodeMessage,
  type Message,
  type SecureChannel,
} from "../proto/mod.ts";
import { NetError, ProtocolError } from "../util/mod.ts";
import { ReceiptRun } from "./peer_receipts.ts";
import { SendWindow } from "./peer_send_window.ts";
import { UnackedTexts } from "./peer_unacked.ts";

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

/** A chat message sealed and queued: its id, and its write. */
export interface QueuedText {
  id: string;
  written: Promise<void>;
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
  #unacked = new UnackedTexts();
  #counter = 0;
  /** Our receipt of the `msg`s we read (PROTOCOL.md section 6, "Receipts"). */
  #run: ReceiptRun;
  /** Our messages queued for writing, and the senders waiting for room. */
  #window: SendWindow;

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
    this.#window = new SendWindow(() => channel.closed);
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
   * waits on {@link room} between them: at most `MAX_SEND_AHEAD`
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
    this.#unacked.add(id, text);
    const weight = Math.min(bound, MAX_MESSAGE_BYTES + 64);
    this.#window.add(weight);
    // Sealed and handed to the transport now (its queue keeps the order).
    const written = this.channel.send({ t: "msg", id, text }).then(() => {
      this.#window.done(weight);
    }, (e) => {
      this.#window.done(weight);
      // Reported once: by the session's end when that came first (its
      // `undelivered`), else by the caller now, and then not at the end.
      if (!this.#unacked.forget(id)) return;
      throw e;
    });
    return { id, written };
  }

  /**
   * Back-pressure for {@link queueText}: undefined while fewer than
   * `MAX_SEND_AHEAD` bytes wait to be written, else a promise that
   * resolves once they drop below it (or the session's writes end).
   */
  room(): Promise<void> | undefined {
    return this.#window.room();
  }

  /** Bytes (an upper bound) of our messages queued, their write not done. */
  get sendAhead(): number {
    return this.#window.bytes;
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
      await this.#unacked.settled(graceMs);
    }
    if (this.channel.closed) return;
    this.#closedLocally = true;
    // Our pending receipt goes before the CLOSE: what we read is delivered.
    await this.#run.flush();
    await this.channel.close(reason);
  }
  #closing: Promise<void> | undefined;
  #closedLocally = false;

  /**
   * Is a receipt of ours waiting for its quiet spell (a run read, its `ack`
   * not sent yet, the timer set)? False once the session's events ended.
   */
  get receiptPending(): boolean {
    return this.#run.pending;
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
            const ids = this.#unacked.covered(m.id, m.count ?? 1);
            if (ids === null) {
              yield {
                kind: "problem",
                code: "bad-receipt",
                message:
                  `${this.peer} sent a receipt for messages that are not waiting for one; ignored`,
              };
              continue;
            }
            this.#unacked.acknowledge(ids);
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
          const undelivered = this.#unacked.takeAll();
          // No more writes to wait for: a sender held by room() goes on.
          this.#window.done(0);
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
