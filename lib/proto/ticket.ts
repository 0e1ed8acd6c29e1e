/**
 * Tickets (PROTOCOL.md "Tickets", rules 4.2 and 4.3): the server, as key
 * distribution centre, seals the peer key for the joiner under keys derived
 * from the joiner's own server session. The host carries the ticket to the
 * joiner but cannot open it; the joiner checks the names, the expiry, and
 * that the ticket id was not used before.
 *
 * Sealed ticket: `iv[32] || MD-CFB(encKey, iv, body) || HMAC(macKey, iv || ct)[32]`
 * Body: `version u8 || id[16] || expiresAt u64 ms || host (u8 len) || joiner (u8 len) || peerKey[32]`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openTicket, sealTicket } from "./ticket.ts";
 * const keys = { enc: new Uint8Array(32).fill(7), mac: new Uint8Array(32).fill(8) };
 * const t = { id: new Uint8Array(16), host: "A", joiner: "B", expiresAt: Date.now() + 30_000, peerKey: new Uint8Array(32) };
 * const opened = openTicket(keys, sealTicket(keys, t), { self: "B", expectedHost: "A" });
 * assert.ok(opened.host === "A");
 * ```
 * @module
 */

import {
  ByteReader,
  ByteWriter,
  concat,
  constantTimeEqual,
  fromUtf8,
  randomBytes,
  TicketError,
  utf8,
  wipe,
} from "../util/mod.ts";
import { hmacSha256, mdcfbDecrypt, mdcfbEncrypt } from "../crypto/mod.ts";

/** Ticket format version. */
export const TICKET_VERSION = 1;
/** Bytes of a ticket id. */
export const TICKET_ID_BYTES = 16;
/** Bytes of a peer key. */
export const PEER_KEY_BYTES = 32;
/** Longest a ticket may live, rule 4.2. */
export const MAX_TICKET_LIFETIME_MS = 60_000;
const IV_BYTES = 32;
const TAG_BYTES = 32;

/** The two ticket keys, derived at login (labels `im v1 ticket enc`, `im v1 ticket mac`). */
export interface TicketKeys {
  enc: Uint8Array;
  mac: Uint8Array;
}

/** What a ticket says. */
export interface Ticket {
  id: Uint8Array;
  host: string;
  joiner: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  peerKey: Uint8Array;
}

/** What the joiner expects. */
export interface TicketCheck {
  /** Our own username: the ticket must name us as joiner. */
  self: string;
  /** The host the server told us to join. */
  expectedHost: string;
  /** Clock in ms; default now. */
  now?: number;
}

/**
 * Seal a ticket for the joiner (the server does this).
 * @param keys the joiner's ticket keys
 * @param t contents
 * @returns the sealed ticket
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sealTicket } from "./ticket.ts";
 * const keys = { enc: new Uint8Array(32), mac: new Uint8Array(32) };
 * const s = sealTicket(keys, { id: new Uint8Array(16), host: "A", joiner: "B", expiresAt: 1, peerKey: new Uint8Array(32) });
 * assert.ok(s.length > 64);
 * ```
 */
export function sealTicket(keys: TicketKeys, t: Ticket): Uint8Array {
  const body = new ByteWriter().u8(TICKET_VERSION).bytes(t.id).u64(
    BigInt(t.expiresAt),
  )
    .bytes8(utf8(t.host)).bytes8(utf8(t.joiner)).bytes(t.peerKey).finish();
  const iv = randomBytes(IV_BYTES);
  const ct = mdcfbEncrypt(keys.enc, iv, body); // wipes its keyed state
  body.fill(0);
  const tag = hmacSha256(keys.mac, concat(iv, ct)); // likewise
  return concat(iv, ct, tag);
}

/**
 * Open and check a ticket (the joiner does this; rule 4.3).
 * @param keys our ticket keys
 * @param sealed the ticket the host sent
 * @param check who we are and whom we expect
 * @returns the contents
 * @throws {TicketError} `bad-ticket` (tampered, or sealed for someone else's keys), `misbound`, `expired`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openTicket } from "./ticket.ts";
 * const keys = { enc: new Uint8Array(32), mac: new Uint8Array(32) };
 * assert.throws(() => openTicket(keys, new Uint8Array(10), { self: "B", expectedHost: "A" }), { name: "TicketError" });
 * ```
 */
export function openTicket(
  keys: TicketKeys,
  sealed: Uint8Array,
  check: TicketCheck,
): Ticket {
  const now = check.now ?? Date.now();
  // One opaque error for every cryptographic failure: the reason is not the attacker's to learn.
  const bad = new TicketError(
    "bad-ticket",
    "Ticket rejected: it was not sealed for us or was altered",
  );
  if (sealed.length < IV_BYTES + TAG_BYTES + 1) throw bad;
  const iv = sealed.subarray(0, IV_BYTES);
  const ct = sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  if (
    !constantTimeEqual(
      hmacSha256(keys.mac, sealed.subarray(0, sealed.length - TAG_BYTES)),
      tag,
    )
  ) {
    throw bad;
  }
  const body = mdcfbDecrypt(keys.enc, iv, ct);
  let t: Ticket;
  try {
    const r = new ByteReader(body, "ticket");
    if (r.u8() !== TICKET_VERSION) throw bad;
    const id = r.bytes(TICKET_ID_BYTES);
    const expiresAt = Number(r.u64());
    const host = fromUtf8(r.bytes8(), "ticket host");
    const joiner = fromUtf8(r.bytes8(), "ticket joiner");
    const peerKey = r.bytes(PEER_KEY_BYTES);
    r.end();
    t = { id, host, joiner, expiresAt, peerKey };
  } catch {
    throw bad;
  } finally {
    body.fill(0);
  }
  // A refused ticket's peer key is nobody's: it goes before the error.
  if (t.joiner !== check.self || t.host !== check.expectedHost) {
    wipe(t.peerKey);
    throw new TicketError(
      "misbound",
      `Ticket rejected: it is for ${t.host} -> ${t.joiner}, expected ${check.expectedHost} -> ${check.self}`,
    );
  }
  if (now > t.expiresAt) {
    wipe(t.peerKey);
    throw new TicketError("expired", "Ticket rejected: it has expired");
  }
  if (t.expiresAt - now > MAX_TICKET_LIFETIME_MS) {
    wipe(t.peerKey);
    throw new TicketError(
      "bad-expiry",
      "Ticket rejected: its expiry is too far in the future",
    );
  }
  return t;
}

/**
 * Ticket ids already used, each kept until its ticket expires (rule 4.3):
 * a replay cache that lives exactly as long as the ticket could be accepted.
 */
export class TicketReplayCache {
  #seen = new Map<string, number>();

  /**
   * Record a ticket id as used.
   * @param id the ticket id
   * @param expiresAt when the ticket stops being acceptable
   * @param now clock in ms
   * @throws {TicketError} `replayed` when the id was used before
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TicketReplayCache } from "./ticket.ts";
   * const cache = new TicketReplayCache();
   * cache.use(new Uint8Array(16), Date.now() + 1000);
   * assert.throws(() => cache.use(new Uint8Array(16), Date.now() + 1000), { name: "TicketError" });
   * ```
   */
  use(id: Uint8Array, expiresAt: number, now: number = Date.now()): void {
    this.#prune(now);
    const key = id.toHex();
    if (this.#seen.has(key)) {
      throw new TicketError(
        "replayed",
        "Ticket rejected: it was already used (replayed)",
      );
    }
    this.#seen.set(key, expiresAt);
  }

  /** How many ids are held. */
  get size(): number {
    return this.#seen.size;
  }

  #prune(now: number): void {
    for (const [k, exp] of this.#seen) if (exp < now) this.#seen.delete(k);
  }
}
