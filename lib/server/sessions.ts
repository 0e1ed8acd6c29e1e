/**
 * The key distribution centre's bookkeeping (requirements 4.1, 4.2, 4.5)
 * as plain rules over {@link Presence}, with no I/O: who may host, who may
 * join whom, and who is freed when a session ends, is cancelled or loses a
 * user. kdc.ts does the talking.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SessionBook } from "./sessions.ts";
 * import { MemoryPresence } from "./memory/mod.ts";
 * const presence = new MemoryPresence();
 * presence.join("A", "local");
 * presence.join("B", "local");
 * const book = new SessionBook(presence, (name) => ["A", "B"].includes(name));
 * book.host("A", "127.0.0.1:5000");
 * const r = book.requestSession("B", "A", 0, 30_000);
 * assert.ok(r.ok && presence.list().every((u) => u.state === "BUSY"));
 * ```
 * @module
 */

import type { RefusalReason } from "../proto/mod.ts";
import type { Presence, PresenceEntry } from "./seams.ts";

/** The answer to `!session <host>`. */
export type SessionDecision =
  | { ok: false; reason: RefusalReason; message: string }
  | {
    ok: true;
    host: string;
    joiner: string;
    /** The view's address: empty, or stale, for a host on another node (11.4). */
    addr: string;
    expiresAt: number;
  };

/**
 * May a `cancelled` (or a failure) of the session with ticket id `told`
 * end the session whose entry has ticket id `current`? Yes unless both are
 * known and differ (PROTOCOL.md 11.4): a session resumed by `busy` has
 * none, and a leave ends every session with the user who left.
 * @param current the ticket id in the user's entry now
 * @param told the ticket id the cancel names
 * @returns false when it is about another session
 */
export function sameSession(
  current: string | undefined,
  told: string | undefined,
): boolean {
  return current === undefined || told === undefined || current === told;
}

/** The rules of peer sessions, applied to {@link Presence}. */
export class SessionBook {
  #presence: Presence;
  #isKnown: (name: string) => boolean;

  /**
   * @param presence who is online (the book writes states, never joins or leaves)
   * @param isKnown is the name in the server's client directory?
   */
  constructor(presence: Presence, isKnown: (name: string) => boolean) {
    this.#presence = presence;
    this.#isKnown = isKnown;
  }

  #idle(name: string): void {
    this.#presence.update(name, { state: "IDLE" });
  }

  /**
   * `!session host` (rule 4.1).
   * @param name the user
   * @param addr where the user listens
   * @returns null, or the reason it cannot host now
   */
  host(name: string, addr: string): string | null {
    const u = this.#presence.get(name);
    if (!u) return "not online";
    if (u.state === "BUSY") return "you are in a session; !disconnect first";
    this.#presence.update(name, { state: "HOSTING", addr });
    return null;
  }

  /**
   * Stop hosting.
   * @param name the user
   */
  unhost(name: string): void {
    if (this.#presence.get(name)?.state === "HOSTING") this.#idle(name);
  }

  /**
   * `!session <host>` from `joiner` (rule 4.2): refuse with a clear reason, or
   * mark both BUSY and say where to connect.
   * @param joiner who asks
   * @param host whom they want to talk to
   * @param now clock in ms
   * @param lifetimeMs ticket lifetime (<= 60 s)
   * @returns the decision
   */
  requestSession(
    joiner: string,
    host: string,
    now: number,
    lifetimeMs: number,
  ): SessionDecision {
    if (host === joiner) {
      return {
        ok: false,
        reason: "self",
        message: "You cannot start a session with yourself",
      };
    }
    const h = this.#isKnown(host) ? this.#presence.get(host) : undefined;
    if (!h) {
      // PROTOCOL.md section 5.2: a name the server does not know is answered
      // as a known user who is offline, so the directory is not shown.
      return { ok: false, reason: "offline", message: `${host} is not online` };
    }
    const j = this.#presence.get(joiner);
    if (!j) {
      return { ok: false, reason: "offline", message: "You are not online" };
    }
    if (j.state === "BUSY") {
      return {
        ok: false,
        reason: "busy",
        message: "You are already in a session; !disconnect first",
      };
    }
    // A host on another node (PROTOCOL.md 11.4): its node decides on its
    // state and gives its address; this view of it may lag.
    const remote = h.node !== j.node;
    if (!remote && h.state === "BUSY") {
      return {
        ok: false,
        reason: "busy",
        message: `${host} is busy in another session`,
      };
    }
    if (!remote && (h.state !== "HOSTING" || !h.addr)) {
      return {
        ok: false,
        reason: "not-hosting",
        message: `${host} is not hosting; ask them to type !session host`,
      };
    }
    const addr = h.addr ?? "";
    // The joiner stops hosting; the host keeps its address for the session
    // (a host on another node: its node does, on the grant).
    if (!remote) {
      this.#presence.update(host, {
        state: "BUSY",
        addr,
        partner: joiner,
        isHost: true,
      });
    }
    this.#presence.update(joiner, {
      state: "BUSY",
      partner: host,
      isHost: false,
    });
    return { ok: true, host, joiner, addr, expiresAt: now + lifetimeMs };
  }

  /**
   * Remember the ticket id of a granted session in a user's entry: the
   * host's, for `cancel`; both users', so that a `cancelled` of an earlier
   * session is told from one of this session (PROTOCOL.md 11.4).
   * @param name the host or the joiner
   * @param ticketId hex id
   */
  setTicket(name: string, ticketId: string): void {
    const u = this.#presence.get(name);
    if (u) this.#presence.update(name, { ...u, ticketId });
  }

  /**
   * A user says its session ended (`!disconnect`, peer gone, a join given
   * up): it is IDLE again (rule 4.5), and so is its partner when the
   * partner's entry still names it (PROTOCOL.md section 6: no host is held by
   * a joiner that no longer waits).
   * @param name the user
   * @param peer the partner of the session that ended; another partner's session goes on
   * @returns the partner freed, to be told
   */
  ended(name: string, peer?: string): string | undefined {
    const u = this.#presence.get(name);
    // A stale "ended" for an earlier, abandoned session must not end the current one.
    if (
      !u || u.state !== "BUSY" || (peer !== undefined && u.partner !== peer)
    ) {
      return undefined;
    }
    this.#idle(name);
    const p = u.partner === undefined
      ? undefined
      : this.#presence.get(u.partner);
    if (!p || p.state !== "BUSY" || p.partner !== name) return undefined;
    this.#idle(p.name);
    return p.name;
  }

  /**
   * A user who logged in again (after a server restart, say) says it is still
   * in a direct session with `peer`: it is BUSY again, so `!list` tells the
   * truth and nobody is sent to a user who cannot answer.
   * @param name the user
   * @param peer its partner in the session
   */
  resumeBusy(name: string, peer: string): void {
    const u = this.#presence.get(name);
    if (!u || u.state === "BUSY" || peer === name) return;
    this.#presence.update(name, {
      state: "BUSY",
      partner: peer,
      isHost: false,
    });
  }

  /**
   * The host's ticket expired with nobody joining (rule 4.3): both IDLE.
   * @param host the host
   * @param ticketId the grant's id
   * @returns the joiner to tell, if the grant matched
   */
  cancel(host: string, ticketId: string): string | undefined {
    const h = this.#presence.get(host);
    if (!h || !h.isHost || h.ticketId !== ticketId || !h.partner) {
      return undefined;
    }
    const joiner = h.partner;
    this.#idle(host);
    if (this.#presence.get(joiner)?.partner === host) this.#idle(joiner);
    return joiner;
  }

  /**
   * A user of another node left: every user of `node` still BUSY with it
   * is IDLE again.
   * @param name the user who left
   * @param node this node
   * @returns the users freed, to be told
   */
  partnersOf(name: string, node: string): string[] {
    const freed: string[] = [];
    for (const u of this.#presence.list()) {
      if (u.node !== node || u.state !== "BUSY" || u.partner !== name) continue;
      this.#idle(u.name);
      freed.push(u.name);
    }
    return freed;
  }

  /**
   * A grant that did not reach the host (PROTOCOL.md 11.4): the joiner, if
   * still BUSY with that host as the joiner of that grant, is IDLE again.
   * @param joiner the joiner of the grant
   * @param host its host
   * @param ticketId the grant's ticket id: a joiner in a later session
   *   with the same host (another ticket) is not freed
   * @returns true when the joiner was freed (to be told)
   */
  grantFailed(joiner: string, host: string, ticketId?: string): boolean {
    const j = this.#presence.get(joiner);
    if (!j || j.state !== "BUSY" || j.partner !== host || j.isHost) {
      return false;
    }
    if (!sameSession(j.ticketId, ticketId)) return false;
    this.#idle(joiner);
    return true;
  }

  /**
   * Is `joiner` still BUSY as the joiner of this grant (PROTOCOL.md 11.4:
   * a `cancelled` of it may have freed it while its node waited for the
   * host's node)?
   * @param joiner the joiner of the grant
   * @param host its host
   * @param ticketId the grant's ticket id
   * @returns true while it waits for this grant
   */
  isJoining(joiner: string, host: string, ticketId: string): boolean {
    const j = this.#presence.get(joiner);
    return j?.state === "BUSY" && j.partner === host && !j.isHost &&
      j.ticketId === ticketId;
  }

  /**
   * A user left (its entry is gone from presence): its partner, if the
   * session was still theirs, is IDLE again.
   * @param gone the last entry of the user who left
   * @returns the partner whose session was cut, to be told
   */
  partnerLeft(gone: PresenceEntry): string | undefined {
    if (!gone.partner) return undefined;
    const p = this.#presence.get(gone.partner);
    if (!p || p.partner !== gone.name) return undefined;
    this.#idle(p.name);
    return p.name;
  }
}
