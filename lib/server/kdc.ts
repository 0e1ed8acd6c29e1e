/**
 * The key distribution centre (PROTOCOL.md section 6, requirements 4.1 to
 * 4.5): it answers `host`, `session`, `unhost`, `ended`, `busy` and
 * `cancel` by the rules of {@link SessionBook}, issues the peer key and the
 * ticket for a granted session, and tells a user whose session was cut.
 * Other users are reached only through {@link Delivery}; the asker only
 * through its {@link Reply}.
 * @module
 */

import { type Logger, randomBytes } from "../util/mod.ts";
import {
  type ClientToServer,
  sealTicket,
  TICKET_ID_BYTES,
} from "../proto/mod.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type { Delivery, Presence, PresenceEntry } from "./seams.ts";
import { SessionBook } from "./sessions.ts";

type Msg<T extends ClientToServer["t"]> = Extract<ClientToServer, { t: T }>;

/** What the {@link Kdc} needs. */
export interface KdcOptions {
  presence: Presence;
  delivery: Delivery;
  /**
   * The user's public key in the server's client directory, as it is now
   * (SPKI DER), or undefined for a name it does not hold. A granted
   * session tells each side the other's (PROTOCOL.md section 6, key
   * continuity).
   */
  identityOf: (name: string) => Uint8Array | undefined;
  /** Rule 4.2 ticket lifetime (at most 60 s). */
  ticketLifetimeMs: number;
  /** The server's clock, for expiries (default `Date.now`). */
  now?: () => number;
  log: Logger;
}

/** Grants peer sessions and keeps their states. */
export class Kdc {
  #book: SessionBook;
  #identityOf: (name: string) => Uint8Array | undefined;
  #delivery: Delivery;
  #lifetimeMs: number;
  #now: () => number;
  #log: Logger;
  /**
   * Joiners waiting for the answer of a grant to a host on another node,
   * and how to end that wait when a leave frees them (PROTOCOL.md 11.4).
   */
  #joining = new Map<string, (why: string) => void>();

  /** @param o the seams it works through, and the ticket lifetime */
  #presence: Presence;
  constructor(o: KdcOptions) {
    this.#presence = o.presence;
    this.#identityOf = o.identityOf;
    this.#book = new SessionBook(
      o.presence,
      (name) => o.identityOf(name) !== undefined,
    );
    this.#delivery = o.delivery;
    this.#lifetimeMs = o.ticketLifetimeMs;
    this.#now = o.now ?? Date.now;
    this.#log = o.log;
  }

  /**
   * `host` (rule 4.1): HOSTING at an address, or an error.
   * @param s the asker
   * @param m the message
   * @param reply the answer to it
   */
  host(s: ClientSession, m: Msg<"host">, reply: Reply): Promise<void> {
    if (!/^[A-Za-z0-9.:\[\]_-]{1,80}:\d{1,5}$/.test(m.addr)) {
      return reply({
        t: "error",
        code: "bad-address",
        message: `Cannot host at "${m.addr.slice(0, 80)}": not host:port`,
      });
    }
    const why = this.#book.host(s.user, m.addr);
    if (why) {
      return reply({
        t: "error",
        code: "cannot-host",
        message: `Cannot host: ${why}`,
      });
    }
    this.#log("hosting", { user: s.user, addr: m.addr });
    return reply({ t: "hosting", addr: m.addr });
  }

  /**
   * `unhost`: IDLE again (no answer).
   * @param s the asker
   */
  unhost(s: ClientSession): void {
    this.#book.unhost(s.user);
  }

  /**
   * `ended` (rule 4.5): the asker's session with `peer` is over (no answer).
   * @param s the asker
   * @param m the message
   */
  ended(s: ClientSession, m: Msg<"ended">): void {
    const before = this.#presence.get(s.user);
    const wasBusy = before?.state === "BUSY";
    const partner = this.#book.ended(s.user, m.peer);
    // Logged only when it ended something: a user cannot write a log line
    // per message it sends (ended and busy are not rate limited).
    if (wasBusy && this.#presence.get(s.user)?.state !== "BUSY") {
      this.#log("session-ended", { user: s.user, peer: m.peer });
    }
    if (!partner) return;
    // Its grant, if still pending, is void: the host drops it and hosts again.
    // Named by its ticket: on another node the partner may be in a newer
    // session with this user by the time it arrives (PROTOCOL.md 11.4).
    this.#delivery.deliver(partner, {
      t: "cancelled",
      peer: s.user,
      message: `${s.user} left the session`,
    }, before?.ticketId === undefined ? {} : { session: before.ticketId });
  }

  /**
   * `busy`: after a new login, the asker is still in a session (no answer).
   * @param s the asker
   * @param m the message
   */
  busy(s: ClientSession, m: Msg<"busy">): void {
    const wasBusy = this.#presence.get(s.user)?.state === "BUSY";
    this.#book.resumeBusy(s.user, m.peer);
    if (!wasBusy && this.#presence.get(s.user)?.state === "BUSY") {
      this.#log("session-resumed", { user: s.user, peer: m.peer });
    }
  }

  /**
   * `cancel` (rule 4.3): the host's ticket expired unused; the joiner is told.
   * @param s the host
   * @param m the message
   */
  cancel(s: ClientSession, m: Msg<"cancel">): void {
    const joiner = this.#book.cancel(s.user, m.ticketId);
    if (!joiner) return;
    this.#log("session-cancelled", {
      host: s.user,
      joiner,
      reason: "ticket expired",
    });
    this.#delivery.deliver(joiner, {
      t: "cancelled",
      peer: s.user,
      message: `${s.user} gave up waiting for you`,
    }, { session: m.ticketId });
  }

  /**
   * A user left or was replaced: its partner, if any, is IDLE again and told.
   * @param gone the user's last presence entry
   * @param message what the partner is told
   */
  partnerLeft(gone: PresenceEntry, message: string): void {
    const partner = this.#book.partnerLeft(gone);
    if (!partner) return;
    this.#joining.get(partner)?.(message);
    this.#delivery.deliver(partner, {
      t: "cancelled",
      peer: gone.name,
      message,
    });
  }

  /**
   * A user of another node left (PROTOCOL.md 11.4): as
   * {@link Kdc.partnerLeft}, and also every user of `node` still BUSY with
   * it (its last entry may not name them: a grant that never reached it).
   * @param gone the user's last presence entry
   * @param node this node: only its users are freed here
   * @param message what each freed user is told
   */
  remoteLeft(gone: PresenceEntry, node: string, message: string): void {
    this.partnerLeft(gone, message);
    for (const partner of this.#book.partnersOf(gone.name, node)) {
      this.#joining.get(partner)?.(message);
      this.#delivery.deliver(partner, {
        t: "cancelled",
        peer: gone.name,
        message,
      });
    }
  }

  /**
   * `session <host>` (rule 4.2): refused with a reason, or granted: the host
   * gets the peer key, the joiner's ticket and the joiner's public key, then
   * the joiner is told where to connect, with the same ticket and the host's
   * public key (PROTOCOL.md section 6, key continuity).
   * @param s the joiner
   * @param m the message
   * @param reply the answer to it
   */
  async session(
    s: ClientSession,
    m: Msg<"session">,
    reply: Reply,
  ): Promise<void> {
    const d = this.#book.requestSession(
      s.user,
      m.peer,
      this.#now(),
      this.#lifetimeMs,
    );
    if (!d.ok) {
      this.#log("session-refused", {
        joiner: s.user,
        host: m.peer.slice(0, 40),
        reason: d.reason,
      });
      return reply({
        t: "refused",
        peer: m.peer.slice(0, 40),
        reason: d.reason,
        message: d.message,
      });
    }
    // Each side's key as the directory holds it now; a name it lost since
    // the check above (a reload) is refused like one it never held.
    const hostIdentity = this.#identityOf(d.host);
    const joinerIdentity = this.#identityOf(d.joiner);
    if (!hostIdentity || !joinerIdentity) {
      this.#book.ended(d.host, d.joiner);
      this.#book.ended(d.joiner, d.host);
      const gone = hostIdentity ? d.joiner : d.host;
      return reply({
        t: "refused",
        peer: d.host,
        reason: "offline",
        message: `${gone} is not online`,
      });
    }
    const peerKey = randomBytes(32);
    const id = randomBytes(TICKET_ID_BYTES);
    const ticket = sealTicket(s.ticketKeys, {
      id,
      host: d.host,
      joiner: d.joiner,
      expiresAt: d.expiresAt,
      peerKey,
    });
    const ticketId = id.toHex();
    // Seed section 3: the host gets the key for itself and the ticket for the joiner.
    const grant = this.#delivery.deliver(d.host, {
      t: "grant",
      peer: d.joiner,
      key: peerKey.toBase64(),
      ticket: ticket.toBase64(),
      ticketId,
      expiresAt: d.expiresAt,
      identity: joinerIdentity.toBase64(),
    });
    peerKey.fill(0);
    if (!grant.delivered) {
      // Presence and the connections disagree (the host is leaving right now): undo.
      this.#book.ended(d.host, d.joiner);
      this.#book.ended(d.joiner, d.host);
      return reply({
        t: "refused",
        peer: d.host,
        reason: "offline",
        message: `${d.host} is not online`,
      });
    }
    this.#book.setTicket(d.host, ticketId);
    // The joiner's entry names the grant too: a `cancelled` of its last
    // session that crossed this request is told apart (PROTOCOL.md 11.4).
    this.#book.setTicket(d.joiner, ticketId);
    let addr = d.addr;
    if (grant.hostAddr) {
      // A host on another node (PROTOCOL.md 11.4, the host's node gives the
      // address): its node's answer says whether the grant got there, and
      // where the host hosts now (this node's view may name an earlier
      // address). Nothing is answered before it.
      const hostAddr = grant.hostAddr;
      let left: string | undefined;
      const [e, at] = await new Promise<
        [Awaited<typeof grant.written>, string | undefined]
      >((resolve) => {
        // A leave that frees the joiner (the host's node died) ends the wait.
        this.#joining.set(d.joiner, (why) => {
          left = why;
          resolve([undefined, undefined]);
        });
        Promise.all([grant.written, hostAddr]).then(resolve);
      }).finally(() => this.#joining.delete(d.joiner));
      // Still waiting: not freed by a `cancelled` of this grant meanwhile.
      const waiting = left === undefined &&
        this.#book.isJoining(d.joiner, d.host, ticketId);
      if (e || !at || !waiting) {
        this.#book.grantFailed(d.joiner, d.host, ticketId);
        if (waiting && (!e || e.code === "cluster-unreachable")) {
          // The host may hold the grant (an answer too late, or without
          // an address): freed by name of this grant, not left waiting.
          this.#delivery.deliver(d.host, {
            t: "cancelled",
            peer: d.joiner,
            message: `${d.joiner} could not be told where to connect`,
          }, { session: ticketId });
        }
        const reason = e?.code === "busy" || e?.code === "not-hosting"
          ? e.code
          : "offline";
        this.#log("session-refused", {
          joiner: d.joiner,
          host: d.host,
          reason: e?.code ??
            (left !== undefined
              ? "left"
              : waiting
              ? "no-address"
              : "cancelled"),
        });
        return reply({
          t: "refused",
          peer: d.host,
          reason,
          message: left !== undefined
            ? left
            : reason === "busy"
            ? `${d.host} is busy in another session`
            : reason === "not-hosting"
            ? `${d.host} is not hosting; ask them to type !session host`
            : e?.code === "cluster-unreachable"
            ? `${d.host}'s server cannot be reached; the session was cancelled`
            : `${d.host} is no longer online; the session was cancelled`,
        });
      }
      addr = at;
    }
    this.#log("session-granted", {
      host: d.host,
      joiner: d.joiner,
      ticket: ticketId.slice(0, 8),
    });
    // Answered in the same turn as the grant's hand-off (a host on another
    // node: its node's answer, in at most 2 s): a host that does not read
    // cannot stall this joiner's messages, and the `join` is on the joiner's channel before any
    // `cancelled` of this grant can be (the host must receive the grant to
    // cancel it; PROTOCOL.md section 6). A joiner that reaches the host first
    // waits there for the grant. The joiner's own copy of its ticket, over
    // its own authenticated channel: it keys the PEER_COMMIT that binds the
    // joiner to this grant, and the host's PEER_HELLO must carry the same
    // bytes (PROTOCOL.md section 6, one commitment per grant).
    await reply({
      t: "join",
      peer: d.host,
      addr,
      ticket: ticket.toBase64(),
      ticketId,
      expiresAt: d.expiresAt,
      identity: hostIdentity.toBase64(),
    });
  }
}
