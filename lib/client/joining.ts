/**
 * JOINING (PROTOCOL.md sections 6 and 7): after `!session <host>`, wait for
 * the server's `join`, open its ticket and check the host's key against our
 * pin at once, connect to the host directly, and fall back to the server
 * relay when the direct path fails for a network reason; a ticket or
 * authentication failure is final. Once the host's signature verified, its
 * key is pinned if it was not (key continuity). One {@link Joining} is one
 * attempt: once the user or the server moved on, its late results touch
 * nothing.
 * @module
 */

import { DEFAULT_HEARTBEAT_MS } from "../record/mod.ts";
import {
  type JoinTicket,
  openJoinTicket,
  type ServerToClient,
  type TicketReplayCache,
} from "../proto/mod.ts";
import {
  isImError,
  NetError,
  ProtocolError,
  TicketError,
  wipe,
  within,
} from "../util/mod.ts";
import { type FrameTransport, tcpNetwork } from "../wire/mod.ts";
import {
  joinPeer,
  type PeerSession,
  type RelayTransport,
  SpentHandshakeError,
} from "./peer_session.ts";
import { type ClientContext, DIRECT_CONNECT_TIMEOUT_MS } from "./options.ts";
import type { ServerConnection } from "./server_link.ts";
import { newRelay } from "./hosting.ts";
import { type NamedIdentity, namedIdentity, pinFirstUse } from "./pinning.ts";

/** What a {@link Joining} reports to the facade. */
export interface JoiningEvents {
  /** The session started. */
  started(session: PeerSession, relay: RelayTransport | null): void;
  /** The attempt failed (the reason was shown). */
  failed(): Promise<void>;
}

/** One `!session <host>` attempt. */
export class Joining {
  readonly peer: string;
  #ctx: ClientContext;
  #link: ServerConnection;
  #events: JoiningEvents;
  #replayCache: TicketReplayCache;
  /** The server's `join` for this attempt has been acted on. */
  #started = false;
  /** The direct connection while its peer handshake runs. */
  #direct: FrameTransport | null = null;
  #relay: RelayTransport | null = null;
  #abandoned = false;

  constructor(
    ctx: ClientContext,
    link: ServerConnection,
    events: JoiningEvents,
    replayCache: TicketReplayCache,
    peer: string,
  ) {
    this.#ctx = ctx;
    this.#link = link;
    this.#events = events;
    this.#replayCache = replayCache;
    this.peer = peer;
  }

  /**
   * Has the server answered this attempt with its `join`? Until then, a
   * `cancelled` naming the same peer is about an earlier session (the server
   * answers a `session` before it can cancel its grant, PROTOCOL.md 6).
   */
  get answered(): boolean {
    return this.#started;
  }

  /** Leave the attempt: close its connections, so its task ends soon. */
  abandon(): void {
    this.#abandoned = true;
    this.#direct?.close();
    this.#relay?.close();
  }

  /** A frame the host sent through the relay, during our handshake. */
  onRelayed(m: Extract<ServerToClient, { t: "relayed" }>): void {
    if (this.#relay?.remote === `relay:${m.peer}`) this.#relay.deliver(m.data);
  }

  /**
   * The server said where the host is, with our ticket: open the ticket,
   * connect, directly or relayed, and run the peer handshake.
   */
  async run(m: Extract<ServerToClient, { t: "join" }>): Promise<void> {
    if (m.peer !== this.peer || this.#started || this.#abandoned) return;
    this.#started = true;
    this.#ctx.print({ kind: "session", state: "waiting", peer: m.peer });
    let ticket: JoinTicket | undefined;
    let named: NamedIdentity;
    try {
      ticket = this.#openTicket(m);
      // The host's key, checked against our pin before any connection
      // (PROTOCOL.md section 6, key continuity).
      named = await namedIdentity(this.#ctx, m.peer, m.identity);
    } catch (e) {
      if (ticket) wipe(ticket.ticket.peerKey);
      // Before any connection: nothing was spent, the host is released.
      this.#ctx.print({
        kind: "error",
        code: isImError(e) ? e.code : "bad-ticket",
        text: `Session with ${m.peer} failed: ${(e as Error).message}`,
      });
      await this.#events.failed();
      return;
    }
    try {
      await this.#connect(m, ticket, named);
    } finally {
      // The direct try and its relay retry share the key; neither needs it now.
      wipe(ticket.ticket.peerKey);
    }
  }

  /**
   * Our ticket from the `join`, opened at once with our own login's ticket
   * keys: the names, the expiry by the server's clock, its id the `join`'s
   * (PROTOCOL.md section 6). It keys our PEER_COMMIT, and the host's
   * PEER_HELLO must carry the same bytes.
   */
  #openTicket(m: Extract<ServerToClient, { t: "join" }>): JoinTicket {
    let sealed: Uint8Array, ticketId: Uint8Array;
    try {
      sealed = Uint8Array.fromBase64(m.ticket);
      ticketId = Uint8Array.fromHex(m.ticketId);
    } catch {
      throw new TicketError(
        "bad-ticket",
        "Ticket rejected: the server's join carries no readable ticket",
      );
    }
    return openJoinTicket(this.#link.login.ticketKeys, sealed, {
      self: this.#ctx.o.user,
      expectedHost: m.peer,
      ticketId,
      now: this.#link.serverNow(),
    });
  }

  async #connect(
    m: Extract<ServerToClient, { t: "join" }>,
    ticket: JoinTicket,
    named: NamedIdentity,
  ): Promise<void> {
    const ctx = this.#ctx, o = ctx.o;
    // The replay cache marks the ticket's id used when a PEER_HELLO is
    // accepted; a failure after that is final or spent, so a relay retry
    // never finds its ticket used (PROTOCOL.md section 6.1).
    const opts = {
      self: o.user,
      expectedHost: m.peer,
      replayCache: this.#replayCache,
      ticket,
      identity: o.identity,
      peerIdentity: named.identity,
      ...(o.windowMs === undefined ? {} : { windowMs: o.windowMs }),
      // The ticket's expiry is a server time (PROTOCOL.md section 6).
      now: () => this.#link.serverNow(),
    };
    const channelOpts = { heartbeatMs: o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS };
    let session: PeerSession | undefined;
    let failure: unknown;
    if (!o.relay && !m.addr.startsWith("relay:")) {
      const direct = await this.#connectDirect(m.addr);
      if (this.#abandoned) {
        direct?.close();
        return;
      }
      if (direct) {
        this.#direct = direct;
        try {
          session = await joinPeer(direct, opts, channelOpts, "direct");
        } catch (e) {
          direct.close();
          if (this.#abandoned) return;
          if (isNetworkFailure(e) && !(e instanceof SpentHandshakeError)) {
            // Closed, reset or silent (an eviction, a middlebox): try the
            // relay once. A ticket or authentication failure is final.
            ctx.system(
              `Direct connection to ${m.peer} failed (${
                (e as Error).message
              }); using the server relay`,
            );
          } else {
            failure = e;
          }
        }
        this.#direct = null;
      } else {
        ctx.system(
          `Cannot reach ${m.peer} at ${m.addr} directly; using the server relay`,
        );
      }
    }
    let relay: RelayTransport | null = null;
    if (!session && failure === undefined) {
      relay = newRelay(this.#link, m.peer);
      this.#relay = relay;
      try {
        // Our relayed PEER_COMMIT is what starts the host's handshake.
        session = await joinPeer(relay, opts, channelOpts, "relay");
      } catch (e) {
        relay.close();
        failure = e;
      }
    }
    if (this.#abandoned) {
      await session?.close("cancelled");
      return;
    }
    if (session) {
      // The host's signature verified: pin its key if this is our first
      // session with it (PROTOCOL.md section 6, key continuity).
      try {
        await pinFirstUse(ctx, named);
      } catch (e) {
        await session.close("peer-key-changed");
        session = undefined;
        failure = e;
      }
    }
    if (!session) {
      ctx.print({
        kind: "error",
        code: isImError(failure) ? failure.code : "peer-failed",
        text: `Session with ${m.peer} failed: ${(failure as Error).message}`,
      });
      await this.#events.failed();
      return;
    }
    if (this.#abandoned) {
      await session.close("cancelled");
      return;
    }
    this.#events.started(session, relay);
  }

  async #connectDirect(addr: string): Promise<FrameTransport | null> {
    const i = addr.lastIndexOf(":");
    const host = addr.slice(0, i).replace(/^\[|\]$/g, "");
    const port = Number(addr.slice(i + 1));
    if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) {
      return null;
    }
    try {
      // A connection that completes after we gave up is closed at once.
      return await within(
        (this.#ctx.o.network ?? tcpNetwork).connect(host, port),
        DIRECT_CONNECT_TIMEOUT_MS,
        null,
        (late) => late.close(),
      );
    } catch {
      return null;
    }
  }
}

/** A failure of the connection itself, not of the ticket or authentication. */
function isNetworkFailure(e: unknown): boolean {
  return e instanceof NetError ||
    (e instanceof ProtocolError && e.code === "truncated-frame");
}
