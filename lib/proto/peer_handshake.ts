/**
 * The peer handshake (PROTOCOL.md section 6, "Peer sessions"; rules 4.3 and
 * 4.4): the host carries the joiner's ticket; both add an ephemeral X25519
 * exchange authenticated with the peer key, so the server, which made the
 * peer key, cannot read the chat by only recording it; both show the same
 * short authentication string (SAS).
 *
 * The handshake is split by side:
 * - this file: the version, the three frames and their codecs, the
 *   commitment, the SAS format, the {@link PeerResult} both sides give and
 *   the {@link PeerPins} a client keeps its partners' keys in;
 * - `_peer.ts`: the transcript `pth`, the joiner's MAC, the key schedule,
 *   the signed FINISHED and its check, which both sides share;
 * - `peer_host.ts`: `PeerHostHandshake`;
 * - `peer_join.ts`: `PeerJoinHandshake`.
 *
 * The joiner speaks first and commits to its nonce and ephemeral key before
 * it sees the host's (a hash commitment, as in ZRTP, RFC 6189 4.4.1.1): a
 * man in the middle, even one that holds the peer key, must fix its values
 * on one side before it learns the other side's, so it cannot try values
 * until the two SAS match; it gets one guess per session, which matches
 * with probability about 10^-12 (the SAS has 12 decimal digits).
 *
 * The commitment names its grant's ticket id and carries a MAC keyed from
 * the peer key, so only the grant's joiner can spend the grant, and a
 * commitment left over from one grant is refused for the next.
 *
 * Each FINISHED carries its sender's RSA-PSS signature over pth, checked
 * with the key the server named for it, which each client pins on first
 * use (key continuity): a server that was honest at the first session
 * cannot sit in the middle of a later one without an alarm.
 *
 * ```
 * host A                                   joiner B (opened its ticket from `join`)
 *        <--  PEER_COMMIT  ticket id, H(nonce_b, eph_b), commit MAC
 * check the ticket id and the commit MAC against the grant; spend it
 * PEER_HELLO  ticket, nonce_a, eph_a  -->  the join's ticket? (expiry, replay)
 *        <--  PEER_REPLY  nonce_b, eph_b, HMAC(authKey, "joiner" || pth)
 * check the commitment, then the joiner MAC
 * FINISHED(h2j, pth || sig_a)         -->  check pth, then sig_a with A's key
 *        <--  FINISHED(j2h, pth || sig_b)
 * check pth, then sig_b with B's key
 * ```
 *
 * @example
 * ```ts ignore
 * const host = new PeerHostHandshake({ self: "A", joiner: "B", peerKey, ticket, ticketId, identity, peerIdentity });
 * await host.onCommit(await transport.recv());
 * await transport.send(await host.hello());
 * ```
 * @module
 */

import { ByteReader, ByteWriter, ProtocolError } from "../util/mod.ts";
import { FrameKind } from "../wire/mod.ts";
import {
  Label,
  type PublicIdentity,
  transcriptHash,
  X25519_PUBLIC_BYTES,
} from "../crypto/mod.ts";
import type { RecordOpener, RecordSealer } from "../record/mod.ts";
import { NONCE_BYTES } from "./login_messages.ts";
import { TICKET_ID_BYTES } from "./ticket.ts";

/** Peer handshake version. */
export const PEER_VERSION = 1;
/** Bytes of the joiner's commitment `commit` in PEER_COMMIT. */
export const PEER_COMMIT_BYTES = 32;
const MAC_BYTES = 32;
/** Bytes of a PEER_COMMIT after its kind: `ticket_id[16] || commit[32] || commit_mac[32]`. */
export const PEER_COMMIT_BODY_BYTES = TICKET_ID_BYTES + PEER_COMMIT_BYTES +
  MAC_BYTES;

/**
 * PEER_COMMIT, joiner -> host: the joiner's commitment, sent first, bound
 * to its grant (PROTOCOL.md section 6, one commitment per grant).
 */
export interface PeerCommit {
  /** The id of the ticket (and grant) it is for, 16 bytes. */
  ticketId: Uint8Array;
  /** `TH("im v1 peer commit", nonce_b, eph_b)`. */
  commit: Uint8Array;
  /** `HMAC(commit_key, "joiner" || ticket_id || commit)`, `commit_key` from the peer key. */
  mac: Uint8Array;
}

/** PEER_HELLO, host -> joiner. */
export interface PeerHello {
  version: number;
  ticket: Uint8Array;
  nonce: Uint8Array;
  ephemeral: Uint8Array;
}

/** PEER_REPLY, joiner -> host: the values committed to, and the joiner's MAC. */
export interface PeerReply {
  nonce: Uint8Array;
  ephemeral: Uint8Array;
  mac: Uint8Array;
}

/** What a finished peer handshake gives each side. */
export interface PeerResult {
  peer: string;
  sealer: RecordSealer;
  opener: RecordOpener;
  /** Short authentication string, e.g. `482 193 004 771`. */
  sas: string;
}

/** Where the joiner records ticket ids it has used (a {@link TicketReplayCache} fits). */
export interface ReplayGuard {
  /**
   * Record `id` as used.
   * @throws {TicketError} `replayed` when it was used before
   */
  use(id: Uint8Array, expiresAt: number, now?: number): void;
}

/** What {@link PeerPins.pin} did: pinned a key, or found that same key pinned. */
export type PinAction = "pinned" | "kept";

/**
 * Where a client keeps its partners' keys, pinned on first use (PROTOCOL.md
 * section 6, key continuity): in the key directory (the keystore's
 * `peerPinStore`, `users/<me>/peers/<peer>.pem`), or in memory for the life
 * of a client that has no key directory. Mailboxes pin the keys they
 * encrypt to in the same store.
 */
export interface PeerPins {
  /**
   * The key pinned for `peer`, read anew on each call (removing a pin takes
   * effect at once).
   * @param peer a username (rule 2.9)
   * @returns the key, or undefined when none is pinned
   * @throws {KeyError} when the pin cannot be read or is not a valid key
   */
  load(peer: string): Promise<PublicIdentity | undefined>;
  /**
   * Pin `identity` for `peer` unless a key is pinned already; a pin is never
   * overwritten.
   * @param peer a username (rule 2.9)
   * @param identity the key to pin
   * @returns `pinned`, or `kept` when this same key was pinned
   * @throws {KeyError} `peer-key-changed` when another key is pinned;
   *   `key-write-failed`
   */
  pin(peer: string, identity: PublicIdentity): Promise<PinAction>;
  /**
   * Replace the pin of `peer` with `identity`: only on the user's word
   * (`!trust`, after it compared the new fingerprint out of band).
   * @param peer a username (rule 2.9)
   * @param identity the new key
   * @throws {KeyError} `key-write-failed`
   */
  replace(peer: string, identity: PublicIdentity): Promise<void>;
  /**
   * Where the pin of `peer` lives, for a hint: a path, or undefined when
   * pins are kept in memory.
   * @param peer a username (rule 2.9)
   */
  where(peer: string): string | undefined;
}

/**
 * @param m the commitment
 * @returns frame payload: `0x23 || ticket_id[16] || commit[32] || commit_mac[32]`
 * @throws {ProtocolError} `bad-length` when a part has another length
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerCommit, encodePeerCommit } from "./peer_handshake.ts";
 * const m = { ticketId: new Uint8Array(16).fill(1), commit: new Uint8Array(32).fill(9), mac: new Uint8Array(32).fill(2) };
 * assert.deepEqual(decodePeerCommit(encodePeerCommit(m)), m);
 * ```
 */
export function encodePeerCommit(m: PeerCommit): Uint8Array {
  expectBytes("PEER_COMMIT ticket id", m.ticketId, TICKET_ID_BYTES);
  expectBytes("PEER_COMMIT commit", m.commit, PEER_COMMIT_BYTES);
  expectBytes("PEER_COMMIT mac", m.mac, MAC_BYTES);
  return new ByteWriter().u8(FrameKind.PEER_COMMIT).bytes(m.ticketId).bytes(
    m.commit,
  ).bytes(m.mac).finish();
}

/**
 * @param p frame payload
 * @returns the commitment, its ticket id and its MAC (not checked here)
 * @throws {ProtocolError} when malformed (wrong kind, not exactly 80 bytes after it)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerCommit } from "./peer_handshake.ts";
 * assert.throws(() => decodePeerCommit(new Uint8Array([0x23, 1])), { name: "ProtocolError" });
 * ```
 */
export function decodePeerCommit(p: Uint8Array): PeerCommit {
  const r = new ByteReader(p, "PEER_COMMIT");
  if (r.u8() !== FrameKind.PEER_COMMIT) {
    throw new ProtocolError("unexpected-frame", "Expected PEER_COMMIT");
  }
  const ticketId = r.bytes(TICKET_ID_BYTES);
  const commit = r.bytes(PEER_COMMIT_BYTES);
  const mac = r.bytes(MAC_BYTES);
  r.end();
  return { ticketId, commit, mac };
}

function expectBytes(what: string, b: Uint8Array, n: number): void {
  if (b.length !== n) {
    throw new ProtocolError(
      "bad-length",
      `${what}: expected ${n} bytes, got ${b.length}`,
    );
  }
}

/**
 * @param m the hello
 * @returns frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerHello, encodePeerHello } from "./peer_handshake.ts";
 * const m = { version: 1, ticket: new Uint8Array(80), nonce: new Uint8Array(32), ephemeral: new Uint8Array(32) };
 * assert.ok(decodePeerHello(encodePeerHello(m)).ticket.length === 80);
 * ```
 */
export function encodePeerHello(m: PeerHello): Uint8Array {
  return new ByteWriter().u8(FrameKind.PEER_HELLO).u8(m.version).bytes16(
    m.ticket,
  ).bytes(m.nonce)
    .bytes(m.ephemeral).finish();
}

/**
 * @param p frame payload
 * @returns the hello
 * @throws {ProtocolError} when malformed
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerHello } from "./peer_handshake.ts";
 * assert.throws(() => decodePeerHello(new Uint8Array([0x21])), { name: "ProtocolError" });
 * ```
 */
export function decodePeerHello(p: Uint8Array): PeerHello {
  const r = new ByteReader(p, "PEER_HELLO");
  if (r.u8() !== FrameKind.PEER_HELLO) {
    throw new ProtocolError("unexpected-frame", "Expected PEER_HELLO");
  }
  const version = r.u8();
  const ticket = r.bytes16();
  const nonce = r.bytes(NONCE_BYTES);
  const ephemeral = r.bytes(X25519_PUBLIC_BYTES);
  r.end();
  return { version, ticket, nonce, ephemeral };
}

/**
 * @param m the reply
 * @returns frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerReply, encodePeerReply } from "./peer_handshake.ts";
 * const m = { nonce: new Uint8Array(32), ephemeral: new Uint8Array(32), mac: new Uint8Array(32) };
 * assert.ok(decodePeerReply(encodePeerReply(m)).mac.length === 32);
 * ```
 */
export function encodePeerReply(m: PeerReply): Uint8Array {
  return new ByteWriter().u8(FrameKind.PEER_REPLY).bytes(m.nonce).bytes(
    m.ephemeral,
  ).bytes(m.mac)
    .finish();
}

/**
 * @param p frame payload
 * @returns the reply
 * @throws {ProtocolError} when malformed
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerReply } from "./peer_handshake.ts";
 * assert.throws(() => decodePeerReply(new Uint8Array([0x22, 1])), { name: "ProtocolError" });
 * ```
 */
export function decodePeerReply(p: Uint8Array): PeerReply {
  const r = new ByteReader(p, "PEER_REPLY");
  if (r.u8() !== FrameKind.PEER_REPLY) {
    throw new ProtocolError("unexpected-frame", "Expected PEER_REPLY");
  }
  const nonce = r.bytes(NONCE_BYTES);
  const ephemeral = r.bytes(X25519_PUBLIC_BYTES);
  const mac = r.bytes(MAC_BYTES);
  r.end();
  return { nonce, ephemeral, mac };
}

/**
 * The joiner's commitment to its values (PROTOCOL.md "Peer sessions"):
 * `TH("im v1 peer commit", nonce_b, eph_b)`. The 32-byte random nonce
 * hides the ephemeral key until the reveal; SHA-256 binds both.
 * @param nonce the joiner's nonce
 * @param ephemeral the joiner's X25519 public key
 * @returns 32 bytes
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerCommitment } from "./peer_handshake.ts";
 * const a = await peerCommitment(new Uint8Array(32), new Uint8Array(32));
 * const b = await peerCommitment(new Uint8Array(32).fill(1), new Uint8Array(32));
 * assert.ok(a.length === 32 && a.toHex() !== b.toHex());
 * ```
 */
export function peerCommitment(
  nonce: Uint8Array,
  ephemeral: Uint8Array,
): Promise<Uint8Array> {
  return transcriptHash(Label.PEER_COMMIT, [nonce, ephemeral]);
}

/** Bytes of the SAS key material {@link formatSas} reads: one u64. */
export const SAS_INPUT_BYTES = 8;
/** The SAS has 12 decimal digits: codes 000 000 000 000 to 999 999 999 999. */
const SAS_MODULUS = 1_000_000_000_000n;

/**
 * Format SAS key material as twelve decimal digits in four groups of three
 * (PROTOCOL.md section 6, "SAS"): the first 8 bytes as a big-endian u64,
 * reduced mod 10^12, zero-padded. 2^64 is not a multiple of 10^12, so some
 * codes are one part in 18,446,744 (< 2^-24) more likely than others; the
 * 40-bit value this replaced made 9% of the codes twice as likely.
 * @param bytes at least 8 bytes (HKDF(ikm, pth, "im v1 peer sas")); the rest is ignored
 * @returns e.g. `482 193 004 771`
 * @throws {ProtocolError} `bad-sas-input` when fewer than 8 bytes are given
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSas } from "./peer_handshake.ts";
 * assert.ok(formatSas(new Uint8Array(8)) === "000 000 000 000");
 * assert.ok(formatSas(new Uint8Array(8).fill(0xff)) === "073 709 551 615");
 * ```
 */
export function formatSas(bytes: Uint8Array): string {
  if (bytes.length < SAS_INPUT_BYTES) {
    throw new ProtocolError(
      "bad-sas-input",
      `SAS input: expected at least ${SAS_INPUT_BYTES} bytes, got ${bytes.length}`,
    );
  }
  const n = new DataView(bytes.buffer, bytes.byteOffset, SAS_INPUT_BYTES)
    .getBigUint64(0); // big-endian
  const digits = (n % SAS_MODULUS).toString().padStart(12, "0");
  return digits.match(/.../g)!.join(" ");
}
