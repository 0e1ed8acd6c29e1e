/**
 * The joiner's side of the peer handshake (PROTOCOL.md section 6, "Peer
 * sessions"; rules 4.3, 4.4): {@link PeerJoinHandshake} commits to its
 * values before it sees the host's, opens and checks the ticket (names,
 * expiry, replay), reveals its values with its MAC, and checks the host's
 * FINISHED. Frames and shared pieces live in `peer_handshake.ts` and
 * `_peer.ts`.
 *
 * @example
 * ```ts ignore
 * const join = new PeerJoinHandshake({ self: "B", expectedHost: "A", ticketKeys, replayCache });
 * await transport.send(await join.commit());
 * await transport.send(await join.onHello(await transport.recv()));
 * ```
 * @module
 */

import { ProtocolError, randomBytes, wipe } from "../util/mod.ts";
import {
  type Ephemeral,
  generateEphemeral,
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
import { checkFinished, joinerMac, peerKeys, peerTranscript } from "./_peer.ts";
import { Steps } from "./steps.ts";
import { openTicket, type TicketKeys } from "./ticket.ts";

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
      const k = await peerKeys(t.peerKey, dh, pth, "joiner", this.#o.windowMs);
      wipe(t.peerKey);
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
