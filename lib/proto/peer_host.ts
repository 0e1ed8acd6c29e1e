/**
 * The host's side of the peer handshake (PROTOCOL.md section 6, "Peer
 * sessions"; rules 4.3, 4.4): {@link PeerHostHandshake} sends nothing before
 * a PEER_COMMIT that names its grant and carries a valid commit MAC
 * ({@link checkPeerCommit}), then PEER_HELLO with the ticket; it checks the
 * revealed values against the commitment before the joiner's MAC; its
 * FINISHED carries its signature over pth, and the joiner's FINISHED must
 * carry pth and the joiner's signature under the key the server named
 * (key continuity). Frames and shared pieces live in `peer_handshake.ts`
 * and `_peer.ts`.
 *
 * @example
 * ```ts ignore
 * const host = new PeerHostHandshake({ self: "A", joiner: "B", peerKey, ticket, ticketId, identity, peerIdentity });
 * await host.onCommit(await transport.recv());
 * await transport.send(await host.hello());
 * ```
 * @module
 */

import {
  AuthError,
  constantTimeEqual,
  ProtocolError,
  randomBytes,
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
  decodePeerCommit,
  decodePeerReply,
  encodePeerHello,
  PEER_VERSION,
  type PeerCommit,
  peerCommitment,
  type PeerHello,
  type PeerResult,
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
import { PEER_KEY_BYTES, TICKET_ID_BYTES } from "./ticket.ts";

/**
 * The key a grant's PEER_COMMIT is checked with (PROTOCOL.md section 6):
 * `HKDF(peer_key, ticket id, "im v1 peer commit auth")`. A host derives it
 * once per grant, so a flood of commitments costs one HMAC each.
 * @param peerKey the grant's peer key
 * @param ticketId the grant's ticket id
 * @returns 32 bytes; the caller wipes them when the grant ends
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { grantCommitKey } from "./peer_host.ts";
 * const k = await grantCommitKey(new Uint8Array(32), new Uint8Array(16));
 * assert.equal(k.length, 32);
 * ```
 */
export function grantCommitKey(
  peerKey: Uint8Array,
  ticketId: Uint8Array,
): Promise<Uint8Array> {
  return commitKey(peerKey, ticketId);
}

/**
 * Check a PEER_COMMIT against a grant (PROTOCOL.md section 6, one
 * commitment per grant): its ticket id must be the grant's, then its MAC
 * must verify under the grant's commit key, both compared in constant
 * time. Nothing about the grant changes here; the caller spends it only
 * after this passed.
 * @param c the decoded PEER_COMMIT
 * @param key the grant's commit key, from {@link grantCommitKey}
 * @param ticketId the grant's ticket id
 * @throws {AuthError} `commit-wrong-ticket` when it names another ticket
 *   (a left-over commitment); `commit-auth-failed` when its MAC fails (a
 *   stranger, who does not hold the peer key)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkPeerCommit, grantCommitKey } from "./peer_host.ts";
 * const id = new Uint8Array(16), key = await grantCommitKey(new Uint8Array(32), id);
 * const forged = { ticketId: id, commit: new Uint8Array(32), mac: new Uint8Array(32) };
 * assert.throws(() => checkPeerCommit(forged, key, id), { name: "AuthError" });
 * ```
 */
export function checkPeerCommit(
  c: PeerCommit,
  key: Uint8Array,
  ticketId: Uint8Array,
): void {
  if (!constantTimeEqual(c.ticketId, ticketId)) {
    throw new AuthError(
      "commit-wrong-ticket",
      "PEER_COMMIT is for another session",
    );
  }
  if (!constantTimeEqual(commitMac(key, c.ticketId, c.commit), c.mac)) {
    throw new AuthError(
      "commit-auth-failed",
      "PEER_COMMIT carries no proof of this session's ticket",
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
  /** Our own key pair, which signs our FINISHED (PROTOCOL.md section 6, key continuity). */
  identity: PrivateIdentity;
  /**
   * The joiner's key as the server named it in the grant (and the client
   * checked against its pin): the joiner's FINISHED must be signed by it.
   */
  peerIdentity: PublicIdentity;
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
    () => this.#wipeKeys(),
  );
  #o: PeerHostOptions;
  #commit: Uint8Array | undefined;
  #eph: Ephemeral | undefined;
  #hello: PeerHello | undefined;
  #pth: Uint8Array | undefined;
  #result: PeerResult | undefined;

  /** The first failure: the record keys derived so far go (PROTOCOL.md section 4, "Wiping"). */
  #wipeKeys(): void {
    this.#result?.sealer.wipe();
    this.#result?.opener.wipe();
  }

  /**
   * @param o the grant from the server
   * @throws {ProtocolError} `bad-grant` when the peer key is not 32 bytes or
   *   the ticket id not 16
   */
  constructor(o: PeerHostOptions) {
    if (
      o.peerKey.length !== PEER_KEY_BYTES ||
      o.ticketId.length !== TICKET_ID_BYTES
    ) {
      throw new ProtocolError(
        "bad-grant",
        `Grant: expected a ${PEER_KEY_BYTES}-byte peer key and a ${TICKET_ID_BYTES}-byte ticket id, got ${o.peerKey.length} and ${o.ticketId.length}`,
      );
    }
    this.#o = o;
  }

  /** Current state. */
  get state(): PeerHostState {
    return this.#steps.state;
  }

  /**
   * readPeerCommit: check the joiner's commitment against our grant
   * ({@link checkPeerCommit}) and keep it. Nothing is sent before it.
   * @param payload PEER_COMMIT
   * @throws {ProtocolError} when it is not a PEER_COMMIT of the right length;
   *   {@link AuthError} `commit-wrong-ticket`, `commit-auth-failed`
   */
  async onCommit(payload: Uint8Array): Promise<void> {
    await this.#steps.run("await-commit", async () => {
      const c = decodePeerCommit(payload);
      const key = await commitKey(this.#o.peerKey, this.#o.ticketId);
      try {
        checkPeerCommit(c, key, this.#o.ticketId);
      } finally {
        wipe(key);
      }
      this.#commit = c.commit;
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
   * the joiner's MAC; derive keys; make our FINISHED, `pth || sig_a`.
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
      const k = await peerKeys(
        this.#o.peerKey,
        dh,
        pth,
        "host",
        this.#o.windowMs,
      );
      this.#result = {
        peer: this.#o.joiner,
        sealer: k.sealer,
        opener: k.opener,
        sas: k.sas,
      };
      this.#pth = pth;
      const plaintext = await finishedPlaintext(this.#o.identity, "host", pth);
      this.#steps.state = "await-finished";
      return this.#result.sealer.seal(RecordType.FINISHED, plaintext);
    });
  }

  /**
   * Check the joiner's FINISHED: key confirmation (pth), then the joiner's
   * signature under the key the server named.
   * @param payload the joiner's first record
   * @throws {AuthError} `peer-auth-failed`, `peer-signature-failed`, `clock-skew`
   */
  async onFinished(payload: Uint8Array): Promise<void> {
    await this.#steps.run("await-finished", async () => {
      await checkFinished(
        this.#result!.opener,
        payload,
        this.#pth!,
        "joiner",
        this.#o.peerIdentity,
        this.#o.joiner,
      );
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
