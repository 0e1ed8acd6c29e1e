/**
 * The peer handshake (PROTOCOL.md "Peer sessions", rules 4.3 and 4.4): the
 * host carries the joiner's ticket; both add an ephemeral X25519 exchange
 * authenticated with the peer key, so the server, which made the peer key,
 * cannot read the chat by only recording it; both show the same short
 * authentication string (SAS).
 *
 * The joiner speaks first and commits to its nonce and ephemeral key before
 * it sees the host's (a hash commitment, as in ZRTP, RFC 6189 4.4.1.1): a
 * man in the middle, even one that holds the peer key, must fix its values
 * on one side before it learns the other side's, so it cannot try values
 * until the two SAS match; it gets one 2^-40 guess per session.
 *
 * ```
 * host A                                   joiner B
 *        <--  PEER_COMMIT  H(nonce_b, eph_b)
 * PEER_HELLO  ticket, nonce_a, eph_a  -->  openTicket (names, expiry, replay)
 *        <--  PEER_REPLY  nonce_b, eph_b, HMAC(authKey, "joiner" || pth)
 * check the commitment, then the joiner MAC (a stranger is dropped here)
 * FINISHED(h2j, pth)                  -->  check FINISHED
 *        <--  FINISHED(j2h, pth)
 * ```
 *
 * @example
 * ```ts ignore
 * const host = new PeerHostHandshake({ self: "A", joiner: "B", peerKey, ticket, ticketId });
 * host.onCommit(await transport.recv());
 * await transport.send(await host.hello());
 * ```
 * @module
 */

import {
  AuthError,
  ByteReader,
  ByteWriter,
  concat,
  constantTimeEqual,
  ProtocolError,
  randomBytes,
  utf8,
  wipe,
} from "../util/mod.ts";
import { Steps } from "./steps.ts";
import { FrameKind } from "../wire/mod.ts";
import { NONCE_BYTES } from "./login_messages.ts";
import {
  deriveDirectionKeys,
  deriveKey,
  type Ephemeral,
  generateEphemeral,
  HmacSha256,
  Label,
  sharedSecret,
  transcriptHash,
  X25519_PUBLIC_BYTES,
} from "../crypto/mod.ts";
import {
  confirmFinished,
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../record/mod.ts";
import { openTicket, type TicketKeys } from "./ticket.ts";

/** Peer handshake version. */
export const PEER_VERSION = 1;
/** Bytes of the joiner's commitment in PEER_COMMIT. */
export const PEER_COMMIT_BYTES = 32;
const MAC_BYTES = 32;

/** PEER_COMMIT, joiner -> host: the joiner's commitment, sent first. */
export interface PeerCommit {
  /** `TH("im v1 peer commit", nonce_b, eph_b)`. */
  commit: Uint8Array;
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

/**
 * @param m the commitment
 * @returns frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodePeerCommit, encodePeerCommit } from "./peer_handshake.ts";
 * const m = { commit: new Uint8Array(32).fill(9) };
 * assert.deepEqual(decodePeerCommit(encodePeerCommit(m)).commit, m.commit);
 * ```
 */
export function encodePeerCommit(m: PeerCommit): Uint8Array {
  return new ByteWriter().u8(FrameKind.PEER_COMMIT).bytes(m.commit).finish();
}

/**
 * @param p frame payload
 * @returns the commitment
 * @throws {ProtocolError} when malformed (wrong kind, not exactly 32 bytes)
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
  const commit = r.bytes(PEER_COMMIT_BYTES);
  r.end();
  return { commit };
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

/**
 * Format SAS bytes as four groups of three digits (40 bits).
 * @param bytes at least 5 bytes
 * @returns e.g. `482 193 004 771`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSas } from "./peer_handshake.ts";
 * assert.ok(formatSas(new Uint8Array(5)) === "000 000 000 000");
 * ```
 */
export function formatSas(bytes: Uint8Array): string {
  let n = 0n;
  for (let i = 0; i < 5; i++) n = (n << 8n) | BigInt(bytes[i] ?? 0);
  const digits = (n % 1_000_000_000_000n).toString().padStart(12, "0");
  return digits.match(/.../g)!.join(" ");
}

interface TranscriptParts {
  ticketId: Uint8Array;
  host: string;
  joiner: string;
  commit: Uint8Array;
  hello: PeerHello;
  replyNonce: Uint8Array;
  replyEphemeral: Uint8Array;
}

/** pth: PROTOCOL.md "Peer sessions". */
function peerTranscript(p: TranscriptParts): Promise<Uint8Array> {
  return transcriptHash(Label.PEER_TRANSCRIPT, [
    new Uint8Array([p.hello.version]),
    p.ticketId,
    utf8(p.host),
    utf8(p.joiner),
    p.commit,
    p.hello.nonce,
    p.hello.ephemeral,
    p.replyNonce,
    p.replyEphemeral,
  ]);
}

async function joinerMac(
  peerKey: Uint8Array,
  ticketId: Uint8Array,
  pth: Uint8Array,
): Promise<Uint8Array> {
  const authKey = await deriveKey(peerKey, ticketId, Label.PEER_AUTH);
  const mac = new HmacSha256(authKey).mac(concat(utf8("joiner"), pth));
  wipe(authKey);
  return mac;
}

async function derivePeerKeys(
  peerKey: Uint8Array,
  dh: Uint8Array,
  pth: Uint8Array,
) {
  const ikm = concat(peerKey, dh);
  const [h2j, j2h, sas] = await Promise.all([
    deriveDirectionKeys(ikm, pth, "h2j"),
    deriveDirectionKeys(ikm, pth, "j2h"),
    deriveKey(ikm, pth, Label.PEER_SAS),
  ]);
  wipe(ikm);
  return { h2j, j2h, sas: formatSas(sas) };
}

function checkFinished(
  opener: RecordOpener,
  payload: Uint8Array,
  pth: Uint8Array,
  who: string,
): void {
  if (!confirmFinished(opener, payload, pth)) {
    throw new AuthError(
      "peer-auth-failed",
      `Peer session refused: ${who} could not prove it holds the peer key`,
    );
  }
}

/** Options of {@link PeerHostHandshake}. */
export interface PeerHostOptions {
  self: string;
  joiner: string;
  peerKey: Uint8Array;
  /** The sealed ticket for the joiner, as the server gave it. */
  ticket: Uint8Array;
  ticketId: Uint8Array;
  windowMs?: number;
}

/** States of {@link PeerHostHandshake}, in order. */
export type PeerHostState =
  | "await-commit"
  | "send-hello"
  | "await-reply"
  | "await-finished"
  | "done"
  | "failed";

/**
 * The host's side: {@link onCommit}, {@link hello}, {@link onReply},
 * {@link onFinished}, then {@link result}.
 */
export class PeerHostHandshake {
  #steps = new Steps<Exclude<PeerHostState, "failed">>(
    "await-commit",
    "Peer handshake",
  );
  #o: PeerHostOptions;
  #commit: Uint8Array | undefined;
  #eph: Ephemeral | undefined;
  #hello: PeerHello | undefined;
  #pth: Uint8Array | undefined;
  #result: PeerResult | undefined;

  /** @param o the grant from the server */
  constructor(o: PeerHostOptions) {
    this.#o = o;
  }

  /** Current state. */
  get state(): PeerHostState {
    return this.#steps.state;
  }

  /**
   * readPeerCommit: keep the joiner's commitment. Nothing is sent before it.
   * @param payload PEER_COMMIT
   * @throws {ProtocolError} when it is not a PEER_COMMIT of the right length
   */
  onCommit(payload: Uint8Array): void {
    this.#steps.run("await-commit", () => {
      this.#commit = decodePeerCommit(payload).commit;
      this.#steps.state = "send-hello";
    });
  }

  /**
   * sendPeerHello: the ticket, a fresh nonce and ephemeral key.
   * @returns PEER_HELLO payload
   */
  async hello(): Promise<Uint8Array> {
    return await this.#steps.run("send-hello", async () => {
      this.#eph = await generateEphemeral();
      this.#hello = {
        version: PEER_VERSION,
        ticket: this.#o.ticket,
        nonce: randomBytes(NONCE_BYTES),
        ephemeral: this.#eph.publicRaw,
      };
      this.#steps.state = "await-reply";
      return encodePeerHello(this.#hello);
    });
  }

  /**
   * readPeerReply: check the revealed values against the commitment, then
   * the joiner's MAC; derive keys; make our FINISHED.
   * @param payload PEER_REPLY
   * @returns our FINISHED record
   * @throws {AuthError} `commit-mismatch` when the revealed values are not
   *   the ones committed to; `peer-auth-failed` for anyone who does not hold
   *   the peer key
   */
  async onReply(payload: Uint8Array): Promise<Uint8Array> {
    return await this.#steps.run("await-reply", async () => {
      const m = decodePeerReply(payload);
      // Before anything else: values chosen after seeing ours are refused.
      const opened = await peerCommitment(m.nonce, m.ephemeral);
      if (!constantTimeEqual(opened, this.#commit!)) {
        throw new AuthError(
          "commit-mismatch",
          "Peer session refused: the joiner's PEER_REPLY does not match its PEER_COMMIT",
        );
      }
      const pth = await peerTranscript({
        ticketId: this.#o.ticketId,
        host: this.#o.self,
        joiner: this.#o.joiner,
        commit: this.#commit!,
        hello: this.#hello!,
        replyNonce: m.nonce,
        replyEphemeral: m.ephemeral,
      });
      const expected = await joinerMac(this.#o.peerKey, this.#o.ticketId, pth);
      if (!constantTimeEqual(expected, m.mac)) {
        throw new AuthError(
          "peer-auth-failed",
          "Peer session refused: the joiner could not prove it holds the ticket",
        );
      }
      const dh = await sharedSecret(this.#eph!, m.ephemeral);
      const k = await derivePeerKeys(this.#o.peerKey, dh, pth);
      wipe(dh);
      const windowOpts = this.#o.windowMs === undefined
        ? {}
        : { windowMs: this.#o.windowMs };
      this.#result = {
        peer: this.#o.joiner,
        sealer: new RecordSealer(k.h2j),
        opener: new RecordOpener(k.j2h, windowOpts),
        sas: k.sas,
      };
      this.#pth = pth;
      this.#steps.state = "await-finished";
      return this.#result.sealer.seal(RecordType.FINISHED, pth);
    });
  }

  /**
   * Check the joiner's FINISHED (key confirmation).
   * @param payload the joiner's first record
   * @throws {AuthError} `peer-auth-failed`
   */
  onFinished(payload: Uint8Array): void {
    this.#steps.run("await-finished", () => {
      checkFinished(this.#result!.opener, payload, this.#pth!, "the joiner");
      this.#steps.state = "done";
    });
  }

  /** @returns the session keys and SAS once done */
  get result(): PeerResult {
    if (this.state !== "done") {
      throw new ProtocolError("not-ready", "Peer handshake is not finished");
    }
    return this.#result!;
  }
}

/** Options of {@link PeerJoinHandshake}. */
export interface PeerJoinOptions {
  self: string;
  /** The host the server told us to join. */
  expectedHost: string;
  /** Our ticket keys from our own login. */
  ticketKeys: TicketKeys;
  /** Ticket ids already used (rule 4.3). */
  replayCache: ReplayGuard;
  windowMs?: number;
  now?: () => number;
}

/** States of {@link PeerJoinHandshake}, in order. */
export type PeerJoinState =
  | "start"
  | "await-hello"
  | "await-finished"
  | "done"
  | "failed";

/**
 * The joiner's side: {@link commit}, {@link onHello}, {@link onFinished},
 * then {@link result}.
 */
export class PeerJoinHandshake {
  #steps = new Steps<Exclude<PeerJoinState, "failed">>(
    "start",
    "Peer handshake",
  );
  #o: PeerJoinOptions;
  #eph: Ephemeral | undefined;
  #nonce: Uint8Array | undefined;
  #commit: Uint8Array | undefined;
  #pth: Uint8Array | undefined;
  #result: PeerResult | undefined;

  /** @param o who we are, whom we expect, our ticket keys */
  constructor(o: PeerJoinOptions) {
    this.#o = o;
  }

  /** Current state. */
  get state(): PeerJoinState {
    return this.#steps.state;
  }

  /**
   * sendPeerCommit: choose our nonce and ephemeral key now, before we see
   * the host's, and commit to them.
   * @returns PEER_COMMIT payload
   */
  async commit(): Promise<Uint8Array> {
    return await this.#steps.run("start", async () => {
      this.#eph = await generateEphemeral();
      this.#nonce = randomBytes(NONCE_BYTES);
      this.#commit = await peerCommitment(this.#nonce, this.#eph.publicRaw);
      this.#steps.state = "await-hello";
      return encodePeerCommit({ commit: this.#commit });
    });
  }

  /**
   * readPeerHello: open and check the ticket, reveal our values with our MAC.
   * @param payload PEER_HELLO
   * @returns PEER_REPLY payload
   * @throws {TicketError} bad, misbound, expired or replayed ticket
   */
  async onHello(payload: Uint8Array): Promise<Uint8Array> {
    return await this.#steps.run("await-hello", async () => {
      const hello = decodePeerHello(payload);
      if (hello.version !== PEER_VERSION) {
        throw new ProtocolError(
          "version",
          `Peer speaks version ${hello.version}, we speak ${PEER_VERSION}`,
        );
      }
      const now = this.#o.now?.() ?? Date.now();
      const t = openTicket(this.#o.ticketKeys, hello.ticket, {
        self: this.#o.self,
        expectedHost: this.#o.expectedHost,
        now,
      });
      this.#o.replayCache.use(t.id, t.expiresAt, now);
      const eph = this.#eph!, nonce = this.#nonce!;
      const pth = await peerTranscript({
        ticketId: t.id,
        host: t.host,
        joiner: t.joiner,
        commit: this.#commit!,
        hello,
        replyNonce: nonce,
        replyEphemeral: eph.publicRaw,
      });
      const mac = await joinerMac(t.peerKey, t.id, pth);
      const dh = await sharedSecret(eph, hello.ephemeral);
      const k = await derivePeerKeys(t.peerKey, dh, pth);
      wipe(dh, t.peerKey);
      const windowOpts = this.#o.windowMs === undefined
        ? {}
        : { windowMs: this.#o.windowMs };
      this.#result = {
        peer: t.host,
        sealer: new RecordSealer(k.j2h),
        opener: new RecordOpener(k.h2j, windowOpts),
        sas: k.sas,
      };
      this.#pth = pth;
      this.#steps.state = "await-finished";
      return encodePeerReply({ nonce, ephemeral: eph.publicRaw, mac });
    });
  }

  /**
   * Check the host's FINISHED and make ours.
   * @param payload the host's first record
   * @returns our FINISHED record
   * @throws {AuthError} `peer-auth-failed`
   */
  onFinished(payload: Uint8Array): Uint8Array {
    return this.#steps.run("await-finished", () => {
      checkFinished(this.#result!.opener, payload, this.#pth!, "the host");
      this.#steps.state = "done";
      return this.#result!.sealer.seal(RecordType.FINISHED, this.#pth!);
    });
  }

  /** @returns the session keys and SAS once done */
  get result(): PeerResult {
    if (this.state !== "done") {
      throw new ProtocolError("not-ready", "Peer handshake is not finished");
    }
    return this.#result!;
  }
}
