/**
 * The joiner's side of the peer handshake (PROTOCOL.md section 6, "Peer
 * sessions"; rules 4.3, 4.4): {@link openJoinTicket} opens the ticket of
 * the server's `join` at once (names, expiry, its id); then
 * {@link PeerJoinHandshake} commits to its values before it sees the
 * host's, bound to that ticket, checks that the host's PEER_HELLO carries
 * the same ticket (expiry, replay), reveals its values with its MAC, and
 * checks the host's FINISHED: pth, then the host's signature under the key
 * the server named (key continuity); only then does it sign its own.
 * Frames and shared pieces live in `peer_handshake.ts` and `_peer.ts`.
 *
 * @example
 * ```ts ignore
 * const ticket = openJoinTicket(ticketKeys, sealed, { self: "B", expectedHost: "A", ticketId });
 * const join = new PeerJoinHandshake({ self: "B", expectedHost: "A", replayCache, identity, peerIdentity });
 * await transport.send(await join.commit(ticket));
 * await transport.send(await join.onHello(await transport.recv()));
 * ```
 * @module
 */

import {
  constantTimeEqual,
  ProtocolError,
  randomBytes,
  TicketError,
  wipe,
} from "../util/mod.ts";
import {
  type Ephemeral,
  generateEphemeral,
  type PrivateIdentity,
  type PublicIdentity,
  sharedSecret,
} from "../crypto/mod.ts";
import { RecordType } from "../record/mod.ts";
import { NONCE_BYTES } from "./login_messages.ts";
import {
  decodePeerHello,
  encodePeerCommit,
  encodePeerReply,
  PEER_VERSION,
  peerCommitment,
  type PeerResult,
  type ReplayGuard,
} from "./peer_handshake.ts";
import {
  checkFinished,
  commitKey,
  commitMac,
  finishedPlaintext,
  joinerMac,
  peerKeys,
  peerTranscript,
} from "./_peer.ts";
import { Steps } from "./steps.ts";
import {
  openTicket,
  type Ticket,
  type TicketCheck,
  type TicketKeys,
} from "./ticket.ts";

/**
 * The joiner's ticket, from the server's `join`, opened and checked by
 * {@link openJoinTicket}. Its peer key belongs to whoever opened it, who
 * wipes it when the attempt ends (a direct try and its relay retry share it).
 */
export interface JoinTicket {
  /** The sealed bytes: the host's PEER_HELLO must carry exactly these. */
  sealed: Uint8Array;
  /** What it says. */
  ticket: Ticket;
}

/** What {@link openJoinTicket} checks besides {@link TicketCheck}. */
export interface JoinTicketCheck extends TicketCheck {
  /** The `join`'s `ticketId`: the ticket's id must be this one. */
  ticketId: Uint8Array;
}

/**
 * Open the ticket of the server's `join` at once, before connecting
 * (PROTOCOL.md section 6): the tag, the names `expected host -> me`, the
 * expiry, and that its id is the `join`'s `ticketId`.
 * @param keys our ticket keys, from our own login
 * @param sealed the ticket as the `join` gave it
 * @param check who we are, whom we expect, the `join`'s ticket id, the
 *   server's clock
 * @returns the sealed bytes and what they say
 * @throws {TicketError} `bad-ticket`, `misbound` (names, or another id),
 *   `expired`, `bad-expiry`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openJoinTicket, sealTicket } from "./mod.ts";
 * const keys = { enc: new Uint8Array(32).fill(7), mac: new Uint8Array(32).fill(8) };
 * const id = new Uint8Array(16).fill(1);
 * const sealed = sealTicket(keys, { id, host: "A", joiner: "B", expiresAt: Date.now() + 30_000, peerKey: new Uint8Array(32) });
 * assert.equal(openJoinTicket(keys, sealed, { self: "B", expectedHost: "A", ticketId: id }).ticket.host, "A");
 * assert.throws(() => openJoinTicket(keys, sealed, { self: "B", expectedHost: "A", ticketId: new Uint8Array(16) }), { name: "TicketError" });
 * ```
 */
export function openJoinTicket(
  keys: TicketKeys,
  sealed: Uint8Array,
  check: JoinTicketCheck,
): JoinTicket {
  const ticket = openTicket(keys, sealed, check);
  if (!constantTimeEqual(ticket.id, check.ticketId)) {
    wipe(ticket.peerKey);
    throw new TicketError(
      "misbound",
      `Ticket rejected: its id ${ticket.id.toHex()} is not the join's ${check.ticketId.toHex()}`,
    );
  }
  return { sealed, ticket };
}

/** Options of {@link PeerJoinHandshake}. */
export interface PeerJoinOptions {
  self: string;
  /** The host the server told us to join. */
  expectedHost: string;
  /** Ticket ids already used (rule 4.3). */
  replayCache: ReplayGuard;
  /** Our own key pair, which signs our FINISHED (PROTOCOL.md section 6, key continuity). */
  identity: PrivateIdentity;
  /**
   * The host's key as the server named it in the `join` (and the client
   * checked against its pin): the host's FINISHED must be signed by it.
   */
  peerIdentity: PublicIdentity;
  windowMs?: number;
  /** The server's clock, for the ticket's expiry (PROTOCOL.md section 6, "Whose clock"). */
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
    () => this.#wipeKeys(),
  );
  #o: PeerJoinOptions;
  #eph: Ephemeral | undefined;
  #nonce: Uint8Array | undefined;
  #commit: Uint8Array | undefined;
  #ticket: JoinTicket | undefined;
  #pth: Uint8Array | undefined;
  #result: PeerResult | undefined;

  /** The first failure: the record keys derived so far go (PROTOCOL.md section 4, "Wiping"). */
  #wipeKeys(): void {
    this.#result?.sealer.wipe();
    this.#result?.opener.wipe();
  }

  /** @param o who we are, whom we expect, our replay cache */
  constructor(o: PeerJoinOptions) {
    this.#o = o;
  }

  /** Current state. */
  get state(): PeerJoinState {
    return this.#steps.state;
  }

  /**
   * sendPeerCommit: choose our nonce and ephemeral key now, before we see
   * the host's, and commit to them, bound to our ticket: its id and a MAC
   * keyed from its peer key (PROTOCOL.md section 6).
   * @param ticket our ticket from the `join`, opened by {@link openJoinTicket}
   * @returns PEER_COMMIT payload
   * @throws {TicketError} `misbound` when the ticket is not `expected host -> self`
   */
  async commit(ticket: JoinTicket): Promise<Uint8Array> {
    return await this.#steps.run("start", async () => {
      const t = ticket.ticket;
      if (t.joiner !== this.#o.self || t.host !== this.#o.expectedHost) {
        throw new TicketError(
          "misbound",
          `Ticket rejected: it is for ${t.host} -> ${t.joiner}, expected ${this.#o.expectedHost} -> ${this.#o.self}`,
        );
      }
      this.#ticket = ticket;
      this.#eph = await generateEphemeral();
      this.#nonce = randomBytes(NONCE_BYTES);
      this.#commit = await peerCommitment(this.#nonce, this.#eph.publicRaw);
      const key = await commitKey(t.peerKey, t.id);
      const mac = commitMac(key, t.id, this.#commit);
      wipe(key);
      this.#steps.state = "await-hello";
      return encodePeerCommit({ ticketId: t.id, commit: this.#commit, mac });
    });
  }

  /**
   * readPeerHello: the ticket must be the one of our `join`, byte for byte,
   * unexpired and unused; reveal our values with our MAC.
   * @param payload PEER_HELLO
   * @returns PEER_REPLY payload
   * @throws {TicketError} `ticket-mismatch`, `expired`, `replayed`;
   *   {@link ProtocolError} `version`, malformed
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
      const joinTicket = this.#ticket!;
      if (!constantTimeEqual(hello.ticket, joinTicket.sealed)) {
        // Replayed from another session, altered, or sealed for someone
        // else: not the ticket the server gave us for this session.
        throw new TicketError(
          "ticket-mismatch",
          "Ticket rejected: the host's ticket is not the one the server sent us for this session",
        );
      }
      const t = joinTicket.ticket;
      const now = this.#o.now?.() ?? Date.now();
      if (now > t.expiresAt) {
        throw new TicketError("expired", "Ticket rejected: it has expired");
      }
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
      const k = await peerKeys(t.peerKey, dh, pth, "joiner", this.#o.windowMs);
      this.#result = {
        peer: t.host,
        sealer: k.sealer,
        opener: k.opener,
        sas: k.sas,
      };
      this.#pth = pth;
      this.#steps.state = "await-finished";
      return encodePeerReply({ nonce, ephemeral: eph.publicRaw, mac });
    });
  }

  /**
   * Check the host's FINISHED (pth, then the host's signature under the key
   * the server named), and only then make ours, `pth || sig_b`.
   * @param payload the host's first record
   * @returns our FINISHED record
   * @throws {AuthError} `peer-auth-failed`, `peer-signature-failed`, `clock-skew`
   */
  async onFinished(payload: Uint8Array): Promise<Uint8Array> {
    return await this.#steps.run("await-finished", async () => {
      const pth = this.#pth!;
      await checkFinished(
        this.#result!.opener,
        payload,
        pth,
        "host",
        this.#o.peerIdentity,
        this.#o.expectedHost,
      );
      const plaintext = await finishedPlaintext(
        this.#o.identity,
        "joiner",
        pth,
      );
      this.#steps.state = "done";
      return this.#result!.sealer.seal(RecordType.FINISHED, plaintext);
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
