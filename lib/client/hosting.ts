/**
 * HOSTING (PROTOCOL.md section 6): listen for joiners (or wait for them over
 * the relay), hold the server's grant, serve a few connections at once until
 * the granted joiner's peer handshake succeeds, and refuse everyone else
 * (rule 4.3): a grant is spent only by a PEER_COMMIT that names it and
 * carries a MAC from its peer key. After {@link MAX_FAILED_GRANTS} spent
 * grants of one joiner failed in a row, its grants are refused until the
 * user types `!session host` again ({@link Hosting.forgive}). A grant that
 * names another key for the joiner than the one pinned for it is cancelled
 * at once, loudly (key continuity). One {@link Hosting} is one `!session
 * host`; the facade drops it when it stops.
 * @module
 */

import { DEFAULT_HEARTBEAT_MS } from "../record/mod.ts";
import { isImError, Signal, waitUntil } from "../util/mod.ts";
import {
  checkPeerCommit,
  decodePeerCommit,
  grantCommitKey,
  PEER_KEY_BYTES,
  type PeerCommit,
  type ServerToClient,
  TICKET_ID_BYTES,
} from "../proto/mod.ts";
import {
  FrameKind,
  type FrameListener,
  type FrameTransport,
  tcpNetwork,
} from "../wire/mod.ts";
import {
  hostPeer,
  type PeerSession,
  readPeerCommit,
  RelayTransport,
  SpentHandshakeError,
} from "./peer_session.ts";
import {
  type ClientContext,
  GRANT_WAIT_MS,
  MAX_PENDING_PEER_CONNECTIONS,
} from "./options.ts";
import type { ServerConnection } from "./server_link.ts";
import { type NamedIdentity, namedIdentity, pinFirstUse } from "./pinning.ts";
import { failedGrants, MAX_FAILED_GRANTS, Refusals } from "./grant_guards.ts";

/** The server's grant of a session to a joiner, held until it connects. */
interface Grant {
  peer: string;
  key: Uint8Array;
  ticket: Uint8Array;
  ticketId: string;
  /** `ticketId` as bytes, which a PEER_COMMIT must name. */
  id: Uint8Array;
  /** The key PEER_COMMITs are checked with, derived once (PROTOCOL.md section 6). */
  commitKey: Promise<Uint8Array>;
  /**
   * The joiner's key as the server named it, checked against our pin; it
   * rejects when the pin differs (PROTOCOL.md section 6, key continuity).
   */
  identity: Promise<NamedIdentity>;
  expiresAt: number;
  timer: ReturnType<typeof setTimeout>;
  /** A handshake was taken for it: no other (PROTOCOL.md section 6, one commitment per grant). */
  spent: boolean;
  /**
   * The server called it off while its handshake ran: the handshake may
   * still finish (the joiner's end then follows); if it fails, this is why.
   */
  cancelled?: string;
  /** Connections refused while it was pending, shown as a summary. */
  refusals: Refusals;
}

/** What a {@link Hosting} reports to the facade. */
export interface HostingEvents {
  /** The granted joiner's handshake succeeded: the session starts. */
  started(session: PeerSession, relay: RelayTransport | null): void;
  /** The server refused to list us HOSTING again (the error was shown): hosting ends. */
  refused(): void;
}

/** One `!session host`, from the listener to the session it yields. */
export class Hosting {
  /** Where joiners reach us (`relay:0` when relayed only). */
  readonly addr: string;
  #ctx: ClientContext;
  #link: ServerConnection;
  #events: HostingEvents;
  #listener: FrameListener | null;
  #grant: Grant | null = null;
  /** The joiner's relayed connection while its peer handshake runs. */
  #relay: RelayTransport | null = null;
  #pending: Array<{ transport: FrameTransport; committed: boolean }> = [];
  /** Notified when a grant arrives or hosting stops. */
  #grantChanged = new Signal();
  #stopped = false;

  private constructor(
    ctx: ClientContext,
    link: ServerConnection,
    events: HostingEvents,
    listener: FrameListener | null,
    addr: string,
  ) {
    this.#ctx = ctx;
    this.#link = link;
    this.#events = events;
    this.#listener = listener;
    this.addr = addr;
    if (listener) ctx.track(this.#acceptPeers(listener));
  }

  /**
   * Listen for joiners (unless relayed only).
   * @param quiet do not show a failure to listen (the caller tries again)
   * @returns the hosting, or null when we cannot listen (an error was
   *   shown, unless `quiet`)
   */
  static start(
    ctx: ClientContext,
    link: ServerConnection,
    events: HostingEvents,
    quiet = false,
  ): Hosting | null {
    const o = ctx.o;
    if (o.relay) return new Hosting(ctx, link, events, null, "relay:0");
    let listener: FrameListener;
    try {
      listener = (o.network ?? tcpNetwork).listen(
        o.listenHost ?? "127.0.0.1",
        o.listenPort ?? 0,
      );
    } catch (e) {
      if (quiet) return null;
      ctx.print({
        kind: "error",
        code: "listen-failed",
        text: `Cannot listen for peers: ${(e as Error).message}`,
      });
      return null;
    }
    const addr = o.advertise ?? `${listener.hostname}:${listener.port}`;
    return new Hosting(ctx, link, events, listener, addr);
  }

  /**
   * The user typed `!session host`: joiners whose grants were refused after
   * {@link MAX_FAILED_GRANTS} failed handshakes may try again.
   * @param ctx the client
   */
  static forgive(ctx: ClientContext): void {
    failedGrants(ctx).clear();
  }

  /** The joiner the pending grant is for, if any. */
  get grantedPeer(): string | undefined {
    return this.#grant?.peer;
  }

  /** Waiters for a grant, for tests: each probe's waiter is gone once it gave up. */
  get grantWaiters(): number {
    return this.#grantChanged.waiting;
  }

  /**
   * Stop: a grant still pending is cancelled, so the server does not keep us
   * (and the joiner) BUSY until the ticket expires; connections still
   * waiting for their handshake are closed.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#grant) {
      release(this.#grant);
      this.#link.sendQuietly({ t: "cancel", ticketId: this.#grant.ticketId });
    }
    this.#relay?.close();
    this.#listener?.close();
    for (const p of this.#pending.splice(0)) p.transport.close();
    this.#grantChanged.notify();
  }

  /** The server granted a session to a joiner. */
  onGrant(g: Extract<ServerToClient, { t: "grant" }>): void {
    let key: Uint8Array, ticket: Uint8Array, id: Uint8Array;
    try {
      key = Uint8Array.fromBase64(g.key);
      ticket = Uint8Array.fromBase64(g.ticket);
      id = Uint8Array.fromHex(g.ticketId);
    } catch {
      key = ticket = id = new Uint8Array(0);
    }
    if (key.length !== PEER_KEY_BYTES || id.length !== TICKET_ID_BYTES) {
      key.fill(0);
      this.#ctx.print({
        kind: "error",
        code: "bad-grant",
        text: "Server sent a malformed session grant",
      });
      return;
    }
    if (this.#grant) {
      // An honest server sends no grant while one is pending (a joiner that
      // leaves frees us first, with `cancelled`). Taking it would replace a
      // grant whose handshake may be running, uncounted: one more silent
      // guess at the code (PROTOCOL.md section 6, "The real bound").
      key.fill(0);
      this.#ctx.print({
        kind: "error",
        code: "grant-refused",
        text:
          `Refused a second session grant (for ${g.peer}) while ${this.#grant.peer}'s is pending`,
      });
      this.#link.sendQuietly({ t: "cancel", ticketId: g.ticketId });
      return;
    }
    if (failedGrants(this.#ctx).of(g.peer) >= MAX_FAILED_GRANTS) {
      // Someone may be guessing codes (shown when it reached the limit):
      // no PEER_HELLO for this joiner, and the grant is released at once.
      key.fill(0);
      this.#ctx.track(
        this.#link.send({ t: "cancel", ticketId: g.ticketId }).then(() =>
          this.#reannounce()
        ),
      );
      return;
    }
    const commitKey = grantCommitKey(key, id);
    commitKey.catch(() => {}); // Awaited by each PEER_COMMIT, if any comes.
    // Checked against our pin before anything is spent; a failure cancels
    // the grant (#checkIdentity), and a PEER_COMMIT waits for it.
    const identity = namedIdentity(this.#ctx, g.peer, g.identity);
    identity.catch(() => {});
    // The expiry is a server time (PROTOCOL.md section 6).
    const lifetime = Math.max(
      0,
      Math.min(g.expiresAt - this.#link.serverNow(), 60_000),
    );
    const grant: Grant = {
      peer: g.peer,
      key,
      ticket,
      ticketId: g.ticketId,
      id,
      commitKey,
      identity,
      expiresAt: g.expiresAt,
      timer: setTimeout(
        () =>
          this.#dropGrant(
            grant,
            `${grant.peer} did not connect in time; still hosting`,
          ),
        lifetime,
      ),
      spent: false,
      refusals: new Refusals(this.#ctx, g.peer),
    };
    this.#grant = grant;
    this.#ctx.system(
      `${g.peer} asked for a session; waiting for ${g.peer} to connect`,
    );
    this.#grantChanged.notify();
    this.#ctx.track(this.#checkIdentity(grant));
  }

  /**
   * A grant whose key for the joiner is not the one pinned for it (or is
   * no key) is cancelled at once, loudly: no PEER_HELLO is sent for it
   * (PROTOCOL.md section 6, key continuity).
   */
  async #checkIdentity(grant: Grant): Promise<void> {
    try {
      await grant.identity;
    } catch (e) {
      if (this.#stopped || this.#grant !== grant) return;
      this.#ctx.print({
        kind: "error",
        code: isImError(e) ? e.code : "bad-identity",
        text: `Session with ${grant.peer} refused: ${(e as Error).message}`,
      });
      this.#dropGrant(
        grant,
        `${grant.peer}'s session was cancelled; still hosting`,
      );
    }
  }

  /** The server called off the pending grant (the joiner left): host on. */
  onCancelled(m: Extract<ServerToClient, { t: "cancelled" }>): void {
    const grant = this.#grant;
    if (!grant || grant.peer !== m.peer) return;
    if (grant.spent) {
      // Its handshake is under way: a joiner that finished it and ended the
      // session at once sent its `ended` before our handshake saw its
      // FINISHED. Let it finish or fail on its own.
      grant.cancelled = m.message;
      return;
    }
    release(grant);
    this.#grant = null;
    this.#relay?.close();
    this.#relay = null;
    this.#ctx.system(`${m.message}; still hosting`);
    this.#ctx.track(this.#reannounce());
  }

  /** A frame the granted joiner sent through the relay. */
  onRelayed(m: Extract<ServerToClient, { t: "relayed" }>): void {
    if (this.#grant?.peer !== m.peer) return;
    let payload: Uint8Array;
    try {
      payload = Uint8Array.fromBase64(m.data);
    } catch {
      return;
    }
    if (payload[0] === FrameKind.PEER_COMMIT) {
      // A (new) relayed connection from the joiner: the handshake starts over.
      this.#relay?.close();
      const relay = newRelay(this.#link, m.peer);
      this.#relay = relay;
      relay.deliver(m.data);
      this.#ctx.track(this.#hostOne(relay, "relay"));
    } else if (this.#relay) {
      // The joiner's part of the peer handshake, before the session starts.
      this.#relay.deliver(m.data);
    }
  }

  async #waitForGrant(ms: number): Promise<Grant | null> {
    await waitUntil(
      () => this.#stopped || this.#grant !== null,
      this.#grantChanged,
      ms,
    );
    return this.#stopped ? null : this.#grant;
  }

  async #acceptPeers(listener: FrameListener): Promise<void> {
    for (;;) {
      let transport: FrameTransport;
      try {
        transport = await listener.accept();
      } catch {
        return; // Listener closed: hosting ended.
      }
      // Strangers may connect to a host's port too (rule 4.3); each costs a
      // socket until its handshake fails. Only a few are served at once. A
      // real joiner sends its PEER_COMMIT as soon as it is connected, so
      // those that have not are evicted first: idle strangers cannot keep
      // it out, whether they came before it or after.
      if (this.#pending.length >= MAX_PENDING_PEER_CONNECTIONS) {
        const i = this.#pending.findIndex((p) => !p.committed);
        this.#pending.splice(Math.max(i, 0), 1)[0]?.transport.close();
      }
      const pending = { transport, committed: false };
      this.#pending.push(pending);
      this.#ctx.track(
        this.#hostOne(transport, "direct", pending).finally(() => {
          const i = this.#pending.indexOf(pending);
          if (i >= 0) this.#pending.splice(i, 1);
        }),
      );
    }
  }

  /**
   * A joiner connected (or its relayed PEER_COMMIT arrived): read its
   * commitment, wait for our grant (the seed's race), check that the
   * commitment is for it and from a holder of its peer key, spend the
   * grant, then run the handshake (PROTOCOL.md section 6).
   */
  async #hostOne(
    t: FrameTransport,
    via: "direct" | "relay",
    pending?: { committed: boolean },
  ): Promise<void> {
    let payload: Uint8Array, commit: PeerCommit;
    try {
      payload = await readPeerCommit(t);
      commit = decodePeerCommit(payload);
    } catch (e) {
      t.close();
      this.#refused(t, e);
      return;
    }
    if (pending) pending.committed = true;
    // The server sends the grant to us and the ticket to the joiner at the
    // same time; a fast joiner can arrive before our grant. Wait for it.
    const grant = await this.#waitForGrant(
      this.#ctx.o.grantWaitMs ?? GRANT_WAIT_MS,
    );
    if (!grant) {
      t.close();
      return;
    }
    const key = await grant.commitKey;
    if (this.#stopped || this.#grant !== grant) {
      t.close();
      return;
    }
    // Nothing is spent before the commitment names this grant (one left
    // over from an earlier attempt names another) and its MAC proves the
    // peer key (a stranger's cannot).
    try {
      checkPeerCommit(commit, key, grant.id);
    } catch (e) {
      t.close();
      this.#refused(t, e);
      return;
    }
    // Nor before the joiner's key passed our pin (#checkIdentity says why not).
    let named: NamedIdentity;
    try {
      named = await grant.identity;
    } catch {
      t.close();
      return;
    }
    if (this.#stopped || this.#grant !== grant) {
      t.close();
      return;
    }
    if (grant.spent) {
      // One commitment per grant (PROTOCOL.md section 6): no PEER_HELLO, so
      // no second code to compare offline.
      t.close();
      this.#refused(t, new Error("this session's one handshake is taken"));
      return;
    }
    grant.spent = true;
    const o = this.#ctx.o;
    let session: PeerSession;
    try {
      session = await hostPeer(
        t,
        {
          self: o.user,
          joiner: grant.peer,
          peerKey: grant.key,
          ticket: grant.ticket,
          ticketId: grant.id,
          identity: o.identity,
          peerIdentity: named.identity,
          ...(o.windowMs === undefined ? {} : { windowMs: o.windowMs }),
        },
        { heartbeatMs: o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS },
        via,
        payload,
      );
    } catch (e) {
      t.close();
      if (this.#relay === t) this.#relay = null;
      this.#failed(grant, t, e);
      return;
    }
    // The joiner's signature verified: pin its key if this is our first
    // session with it (PROTOCOL.md section 6, key continuity).
    try {
      await pinFirstUse(this.#ctx, named);
    } catch (e) {
      await session.close("peer-key-changed");
      if (this.#relay === t) this.#relay = null;
      this.#failed(grant, t, e);
      return;
    }
    if (this.#stopped || this.#grant !== grant) {
      await session.close("cancelled");
      return;
    }
    failedGrants(this.#ctx).succeeded(grant.peer);
    release(grant);
    this.#grant = null;
    this.#stopped = true;
    this.#listener?.close();
    for (const p of this.#pending.splice(0)) {
      if (p.transport !== t) p.transport.close();
    }
    this.#grantChanged.notify();
    this.#events.started(
      session,
      via === "relay" ? (t as RelayTransport) : null,
    );
  }

  /**
   * The handshake of a spent grant failed (or the joiner's key could not be
   * pinned): one guess spent, shown, and the grant dropped.
   */
  #failed(grant: Grant, t: FrameTransport, e: unknown): void {
    // One guess spent, whoever failed it and however (even when hosting
    // stopped meanwhile: a server can cut our link to hide a failure).
    this.#countFailure(grant.peer);
    if (this.#stopped || this.#grant !== grant) return;
    // The grant is spent (rule 4.4, one guess per session): it is not
    // offered again, whoever failed it. A joiner that gave up is no news.
    if (grant.cancelled === undefined) {
      this.#ctx.print({
        kind: "error",
        code: isImError(e) ? e.code : "peer-failed",
        text: e instanceof SpentHandshakeError ||
            (isImError(e) && e.code === "peer-key-changed")
          ? `Session with ${grant.peer}: ${(e as Error).message}`
          : `Session with ${grant.peer} failed: the connection from ${t.remote} that took it failed (${
            (e as Error).message
          })`,
      });
    }
    this.#dropGrant(
      grant,
      grant.cancelled === undefined
        ? `${grant.peer}'s session was cancelled; still hosting`
        : `${grant.cancelled}; still hosting`,
    );
  }

  /**
   * A spent grant of `peer` failed; at {@link MAX_FAILED_GRANTS} in a row,
   * say once, loudly, that its grants are refused from now on and why.
   */
  #countFailure(peer: string): void {
    if (failedGrants(this.#ctx).failed(peer) !== MAX_FAILED_GRANTS) return;
    this.#ctx.print({
      kind: "error",
      code: "peer-guessing",
      text:
        `${MAX_FAILED_GRANTS} sessions with ${peer} in a row failed after the key exchange began: someone holding the session key (most likely the server) may be guessing the security code. Refusing sessions from ${peer} until you type !session host again`,
    });
  }

  /**
   * Ask to be listed HOSTING again after a grant ended (PROTOCOL.md section
   * 6). Quiet: the grant's end was said already. A refusal (rate-limited,
   * cannot-host) is shown like any error, and ends this hosting, so that
   * the client does not believe it hosts while the server lists it IDLE.
   */
  #reannounce(): Promise<unknown> {
    const { sent, answer } = this.#link.request(
      { t: "host", addr: this.addr },
      true,
    );
    answer.then((a) => {
      if (a?.t === "error" && !this.#stopped) this.#events.refused();
    });
    return sent;
  }

  /** Rule 4.3: anyone else who connects gets nothing usable; shown as a summary. */
  #refused(t: FrameTransport, e: unknown): void {
    if (this.#stopped || !this.#grant) return;
    this.#grant.refusals.add(t.remote, (e as Error).message);
  }

  /** Give up a grant: tell the server (both IDLE), then host again. */
  #dropGrant(grant: Grant, why: string): void {
    if (this.#stopped || this.#grant !== grant) return;
    release(grant);
    this.#grant = null;
    this.#relay?.close();
    this.#relay = null;
    this.#ctx.system(why);
    this.#ctx.track(
      this.#link.send({ t: "cancel", ticketId: grant.ticketId }).then(() =>
        this.#reannounce()
      ),
    );
  }
}

/** A grant ends: its timer stops, its keys are wiped, its refusals summed up. */
function release(grant: Grant): void {
  clearTimeout(grant.timer);
  grant.key.fill(0);
  grant.commitKey.then((k) => k.fill(0), () => {});
  grant.refusals.flush();
}

/** A {@link RelayTransport} to `peer` over the server link (PROTOCOL.md section 6.1). */
export function newRelay(link: ServerConnection, peer: string): RelayTransport {
  const relay = new RelayTransport(peer, async (data) => {
    await link.post({ t: "relay", peer, data });
  });
  relay.maxFrameBytes = link.relayFrameLimit;
  return relay;
}
