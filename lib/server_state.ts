/**
 * The server's view of who is online and what they are doing, as plain data
 * with no I/O (requirements 2.10, 4.1, 4.2): the key distribution centre's
 * bookkeeping. `server.ts` owns the sockets and asks this module what to do.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Presence } from "./server_state.ts";
 * const p = new Presence((name) => ["A", "B"].includes(name));
 * p.join("A"); p.join("B");
 * p.host("A", "127.0.0.1:5000");
 * const r = p.requestSession("B", "A", 0, 30_000);
 * assert.ok(r.ok && p.list().every((u) => u.state === "BUSY"));
 * ```
 * @module
 */

import type { RefusalReason, UserState } from "./messages.ts";

/** One logged-in user. */
export interface OnlineUser {
  name: string;
  state: UserState;
  /** Where a HOSTING user can be reached (rule 4.1). */
  addr?: string;
  /** The other user of a BUSY user's session. */
  partner?: string;
  /** The pending grant of a BUSY user, until the host reports the session ended or cancelled. */
  ticketId?: string;
  /** Whether this user is the host of its session. */
  isHost?: boolean;
}

/** The answer to `!session <host>`. */
export type SessionDecision =
  | { ok: false; reason: RefusalReason; message: string }
  | { ok: true; host: string; joiner: string; addr: string; expiresAt: number };

/** Who is online and in which state. */
export class Presence {
  #online = new Map<string, OnlineUser>();
  #isKnown: (name: string) => boolean;

  /** @param isKnown is the name in the server's client directory? */
  constructor(isKnown: (name: string) => boolean) {
    this.#isKnown = isKnown;
  }

  /**
   * A user finished login. The caller has already closed any older
   * connection of the same user (rule 2.10) and called {@link leave}.
   * @param name the user
   */
  join(name: string): void {
    this.#online.set(name, { name, state: "IDLE" });
  }

  /**
   * A user left. Their partner, if any, is set back to IDLE.
   * @param name the user
   * @returns the partner whose session was cut, to be told
   */
  leave(name: string): string | undefined {
    const u = this.#online.get(name);
    this.#online.delete(name);
    if (!u?.partner) return undefined;
    const p = this.#online.get(u.partner);
    if (p && p.partner === name) {
      this.#idle(p);
      return p.name;
    }
    return undefined;
  }

  /** @returns is the user online? */
  isOnline(name: string): boolean {
    return this.#online.has(name);
  }

  /** @returns the user's entry */
  get(name: string): Readonly<OnlineUser> | undefined {
    return this.#online.get(name);
  }

  #idle(u: OnlineUser): void {
    u.state = "IDLE";
    delete u.addr;
    delete u.partner;
    delete u.ticketId;
    delete u.isHost;
  }

  /**
   * `!session host` (rule 4.1).
   * @param name the user
   * @param addr where the user listens
   * @returns null, or the reason it cannot host now
   */
  host(name: string, addr: string): string | null {
    const u = this.#online.get(name);
    if (!u) return "not online";
    if (u.state === "BUSY") return "you are in a session; !disconnect first";
    u.state = "HOSTING";
    u.addr = addr;
    return null;
  }

  /**
   * Stop hosting.
   * @param name the user
   */
  unhost(name: string): void {
    const u = this.#online.get(name);
    if (u?.state === "HOSTING") this.#idle(u);
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
    if (!this.#isKnown(host)) {
      return {
        ok: false,
        reason: "unknown",
        message: `No user "${host}" is known to this server`,
      };
    }
    const h = this.#online.get(host);
    if (!h) {
      return { ok: false, reason: "offline", message: `${host} is not online` };
    }
    const j = this.#online.get(joiner);
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
    if (h.state === "BUSY") {
      return {
        ok: false,
        reason: "busy",
        message: `${host} is busy in another session`,
      };
    }
    if (h.state !== "HOSTING" || !h.addr) {
      return {
        ok: false,
        reason: "not-hosting",
        message: `${host} is not hosting; ask them to type !session host`,
      };
    }
    const addr = h.addr;
    this.#idle(j);
    h.state = j.state = "BUSY";
    h.partner = joiner;
    j.partner = host;
    h.isHost = true;
    j.isHost = false;
    return { ok: true, host, joiner, addr, expiresAt: now + lifetimeMs };
  }

  /**
   * Remember the ticket id of a granted session, for `cancel`.
   * @param host the host
   * @param ticketId hex id
   */
  setTicket(host: string, ticketId: string): void {
    const h = this.#online.get(host);
    if (h) h.ticketId = ticketId;
  }

  /**
   * A user says its session ended (`!disconnect`, peer gone): it is IDLE again (rule 4.5).
   * @param name the user
   */
  ended(name: string): void {
    const u = this.#online.get(name);
    if (u && u.state === "BUSY") this.#idle(u);
  }

  /**
   * The host's ticket expired with nobody joining (rule 4.3): both IDLE.
   * @param host the host
   * @param ticketId the grant's id
   * @returns the joiner to tell, if the grant matched
   */
  cancel(host: string, ticketId: string): string | undefined {
    const h = this.#online.get(host);
    if (!h || !h.isHost || h.ticketId !== ticketId || !h.partner) {
      return undefined;
    }
    const joiner = h.partner;
    this.#idle(h);
    const j = this.#online.get(joiner);
    if (j && j.partner === host) this.#idle(j);
    return joiner;
  }

  /** @returns every online user and state, by name (never one who left, rule 2.10) */
  list(): Array<{ name: string; state: UserState }> {
    return [...this.#online.values()]
      .map((u) => ({ name: u.name, state: u.state }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** @returns how many users are online */
  get size(): number {
    return this.#online.size;
  }
}
