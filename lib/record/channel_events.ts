/**
 * The shapes a `RecordChannel` (channel.ts) reads and reports: the codec it is
 * given for DATA records, the events it reports (to a reader of `events()`
 * or a listener, PROTOCOL.md section 4), and what one payload read turns
 * into before they are reported.
 * @module
 */

import type { ImError, ProtocolError, RecordError } from "../util/mod.ts";

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
   *   channel now (its record limit less `RECORD_MIN_BYTES`); a codec
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
 * What one payload read turns into (`RecordChannel`'s `#take`): the
 * events to report, and last, for a CLOSE record, its reason (the channel
 * closes once the events before it were reported, as it did when the
 * reading loop did all this itself).
 */
export type Taken<In> = ChannelEvent<In> | {
  kind: "close-record";
  reason: string;
};

/** What `RecordChannel.listen` calls. */
export type OnEvent<In> = (ev: ChannelEvent<In>) => void;
/** An {@link OnEvent} of any `In`, as a channel keeps it. */
export type Listener = (ev: never) => void;
