/**
 * What the server's `welcome` tells a client and what follows from it: the
 * server's frame limit (PROTOCOL.md section 2), held within the bounds of
 * `im serve --max-frame`, and so the room for a record's plaintext (section
 * 9.8) and for a relayed peer frame (section 6.1); and the server's clock,
 * which ticket and grant expiries are read by (section 6).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clampFrameLimit, ServerWelcome } from "./server_welcome.ts";
 * assert.equal(clampFrameLimit(70), 1024);
 * const terms = new ServerWelcome();
 * assert.ok(terms.relayFrameLimit < terms.recordRoom);
 * ```
 * @module
 */

import { RECORD_HEADER_BYTES, RECORD_TAG_BYTES } from "../record/mod.ts";
import type { ServerLink, ServerToClient } from "../proto/mod.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/mod.ts";

/** The bounds of `im serve --max-frame`, which a client holds the announced limit to. */
export const MIN_FRAME_LIMIT = 1024;
export const MAX_FRAME_LIMIT = 16 * 1024 * 1024;

/** JSON around the base64 of a relayed frame: `{"t":"relayed","peer":"<32>","data":""}`. */
const RELAY_JSON_BYTES = 35 + 32;

/**
 * A frame limit held within what `im serve --max-frame` allows.
 * @param maxFrame the limit a `welcome` announced
 * @returns it, within {@link MIN_FRAME_LIMIT} and {@link MAX_FRAME_LIMIT}
 */
export function clampFrameLimit(maxFrame: number): number {
  return Math.min(
    Math.max(Math.floor(maxFrame), MIN_FRAME_LIMIT),
    MAX_FRAME_LIMIT,
  );
}

/** The terms of the last `welcome`, across reconnects. */
export class ServerWelcome {
  /** The server's frame limit, from its `welcome` (PROTOCOL.md section 2). */
  #maxFrame = DEFAULT_MAX_FRAME_BYTES;
  /** The server's clock minus ours, from its `welcome` (PROTOCOL.md section 6). */
  #clockOffset = 0;

  /**
   * Keep a `welcome`'s terms: the channel reads and seals up to the
   * server's frame limit (PROTOCOL.md section 2), and expiries are server
   * times (section 6).
   * @param channel the channel the welcome came on
   * @param m the welcome
   */
  keep(
    channel: ServerLink,
    m: Extract<ServerToClient, { t: "welcome" }>,
  ): void {
    const n = clampFrameLimit(m.maxFrame);
    this.#maxFrame = n;
    channel.transport.maxFrameBytes = n;
    channel.maxRecordBytes = n;
    this.#clockOffset = m.now - Date.now();
  }

  /**
   * Now by the server's clock, as far as its `welcome` told it: what ticket
   * and grant expiries are read by (PROTOCOL.md section 6).
   */
  serverNow(): number {
    return Date.now() + this.#clockOffset;
  }

  /**
   * The largest DATA record's plaintext the server takes and sends: its
   * frame limit (from `welcome`) less a record's own bytes. What a mail's
   * `send` and its `mail` push must fit (PROTOCOL.md section 9.8).
   */
  get recordRoom(): number {
    return this.#maxFrame - 1 - RECORD_HEADER_BYTES - RECORD_TAG_BYTES;
  }

  /**
   * Largest peer frame the relay can carry (PROTOCOL.md section 6.1): base64
   * inside a `relay` (and then `relayed`) message of at most 67 bytes of
   * JSON around it, inside one record under the server's frame limit.
   */
  get relayFrameLimit(): number {
    const room = this.recordRoom - RELAY_JSON_BYTES;
    return Math.max(0, Math.floor(room / 4) * 3);
  }
}
