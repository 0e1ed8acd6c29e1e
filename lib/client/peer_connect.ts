/**
 * A peer session's start (requirements section 4): the peer handshake of
 * PROTOCOL.md section 6 run over a transport (a direct TCP connection, or
 * the server relay, section 6.1), host side and joiner side, ending in a
 * {@link PeerSession} over a padded {@link SecureChannel}. A failure after
 * the key exchange spends the attempt ({@link SpentHandshakeError}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryPair } from "../wire/mod.ts";
 * import { readPeerCommit } from "./peer_connect.ts";
 * const [joiner, host] = memoryPair();
 * await joiner.send(new Uint8Array(81).fill(0x23, 0, 1));
 * assert.equal((await readPeerCommit(host, 100)).length, 81);
 * host.close();
 * ```
 * @module
 */

import type { ChannelOptions } from "../record/mod.ts";
import {
  decodePeerCommit,
  type JoinTicket,
  PeerHostHandshake,
  type PeerHostOptions,
  PeerJoinHandshake,
  type PeerJoinOptions,
  type PeerResult,
  SecureChannel,
} from "../proto/mod.ts";
import { AuthError, deadline, NetError, ProtocolError } from "../util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameKind,
  type FrameTransport,
} from "../wire/mod.ts";
import { PeerSession } from "./peer_chat.ts";

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
 * import { readPeerCommit } from "./peer_connect.ts";
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

/** Run the steps after the reveal: whatever fails in them spends the attempt. */
async function spending(steps: () => Promise<void>): Promise<void> {
  try {
    await steps();
  } catch (e) {
    throw spent(e);
  }
}

/**
 * The session a finished handshake opens over `t`: its keys, every record
 * padded (PROTOCOL.md section 6), none larger than `t` carries.
 */
function sessionOver(
  t: FrameTransport,
  self: string,
  r: PeerResult,
  channel: ChannelOptions,
  transport: "direct" | "relay",
): PeerSession {
  return new PeerSession(
    self,
    r.peer,
    r.sas,
    transport,
    new SecureChannel(t, r.sealer, r.opener, {
      ...peerChannelOptions(t, channel),
      pad: true,
    }),
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
  await spending(async () => {
    await t.send(finished);
    await hs.onFinished(
      await recvWithin(t, PEER_HANDSHAKE_TIMEOUT_MS, "peer handshake"),
    );
  });
  return sessionOver(t, o.self, hs.result, channel, transport);
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
  await spending(async () => {
    await t.send(reply);
    await t.send(
      await hs.onFinished(
        await recvWithin(t, PEER_HANDSHAKE_TIMEOUT_MS, "peer handshake"),
      ),
    );
  });
  return sessionOver(t, o.self, hs.result, channel, transport);
}
