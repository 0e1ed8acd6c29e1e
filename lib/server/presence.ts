/**
 * The server's view of who is online and what they are doing, as plain data
 * with no I/O (requirements 2.10, 4.1, 4.2): the key distribution centre's
 * bookkeeping. `server.ts` owns the sockets and asks this module what to do.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Presence } from "./presence.ts";
 * const p = new Presence((name) => ["A", "B"].includes(name));
 * p.join("A"); p.join("B");
 * p.host("A", "127.0.0.1:5000");
 * const r = p.requestSession("B", "A", 0, 30_000);
 * assert.ok(r.ok && p.list().every((u) => u.state === "BUSY"));
 * ```
 * @module
 */

import type { RefusalReason, UserState } from "../proto/mod.ts";

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
   * @param peer the partner of the session that ended; another partner's session goes on
   */
  ended(name: string, peer?: string): void {
    const u = this.#online.get(name);
    // A stale "ended" for an earlier, abandoned session must not end the current one.
    if (u && u.state === "BUSY" && (peer === undefined || u.partner === peer)) {
      this.#idle(u);
    }
  }

  /**
   * A user who logged in again (after a server restart, say) says it is still
   * in a direct session with `peer`: it is BUSY again, so `!list` tells the
   * truth and nobody is sent to a user who cannot answer.
   * @param name the user
   * @param peer its partner in the session
   */
  resumeBusy(name: string, peer: string): void {
    const u = this.#online.get(name);
    if (!u || u.state === "BUSY" || peer === name) return;
    this.#idle(u);
    u.state = "BUSY";
    u.partner = peer;
    u.isHost = false;
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

/** Options of {@link LoginAdmission}. */
export interface AdmissionLimits {
  /** Unauthenticated connections at once, in total. */
  maxTotal: number;
  /** Unauthenticated connections at once from one address. */
  maxPerAddress: number;
}

/**
 * The caps on unauthenticated connections (rule 1.2), like OpenSSH
 * MaxStartups, as plain bookkeeping. A new connection is always admitted;
 * to make room, the oldest pending login of its own address goes when that
 * address is at its cap, and when the total is at its cap the oldest pending
 * login of the address that holds the most goes. So a flood from one
 * address only ever evicts its own connections, and a legitimate user who
 * has just connected is the last to go.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoginAdmission } from "./presence.ts";
 * const gate = new LoginAdmission<string>({ maxTotal: 3, maxPerAddress: 2 });
 * gate.admit("10.0.0.1", "a1");
 * gate.admit("10.0.0.1", "a2");
 * assert.deepEqual(gate.admit("10.0.0.1", "a3"), ["a1"]);
 * gate.admit("10.0.0.2", "b1");
 * assert.deepEqual(gate.admit("10.0.0.3", "c1"), ["a2"]);
 * ```
 */
export class LoginAdmission<T> {
  #limits: AdmissionLimits;
  #byAddress = new Map<string, T[]>();
  #size = 0;

  /** @param limits the two caps (each at least 1) */
  constructor(limits: AdmissionLimits) {
    this.#limits = {
      maxTotal: Math.max(1, limits.maxTotal),
      maxPerAddress: Math.max(1, limits.maxPerAddress),
    };
  }

  /** Pending connections held. */
  get size(): number {
    return this.#size;
  }

  /**
   * @param address a remote address
   * @returns how many pending connections it holds
   */
  countFor(address: string): number {
    return this.#byAddress.get(address)?.length ?? 0;
  }

  /**
   * Admit a new connection, evicting what the caps require.
   * @param address its remote address
   * @param item the connection
   * @returns the evicted connections, oldest first; the caller refuses and closes them
   */
  admit(address: string, item: T): T[] {
    const evicted: T[] = [];
    const own = this.#byAddress.get(address);
    while (own && own.length >= this.#limits.maxPerAddress) {
      evicted.push(own.shift()!);
      this.#size--;
    }
    while (this.#size >= this.#limits.maxTotal) {
      let busiest: T[] | undefined;
      for (const list of this.#byAddress.values()) {
        if (list.length > (busiest?.length ?? 0)) busiest = list;
      }
      if (!busiest) break;
      evicted.push(busiest.shift()!);
      this.#size--;
    }
    for (const [a, list] of this.#byAddress) {
      if (list.length === 0) this.#byAddress.delete(a);
    }
    const list = this.#byAddress.get(address) ?? [];
    list.push(item);
    this.#byAddress.set(address, list);
    this.#size++;
    return evicted;
  }

  /**
   * A connection finished its login, failed, or was closed.
   * @param address its remote address
   * @param item the connection
   * @returns whether it was held
   */
  remove(address: string, item: T): boolean {
    const list = this.#byAddress.get(address);
    const i = list?.indexOf(item) ?? -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    if (list.length === 0) this.#byAddress.delete(address);
    this.#size--;
    return true;
  }

  /** @returns every pending connection */
  all(): T[] {
    return [...this.#byAddress.values()].flat();
  }
}

/** Options of {@link FailurePenalty}. */
export interface PenaltyOptions {
  /** Failed logins from one address within {@link windowMs} before it is penalised. */
  limit: number;
  /** First penalty; doubled on each further failure up to {@link maxPenaltyMs}. */
  basePenaltyMs: number;
  /** Window in which failures are counted (default 60 s). */
  windowMs?: number;
  /** Longest penalty (default 5 min). */
  maxPenaltyMs?: number;
  /** Addresses remembered at most (default 10,000); the oldest are forgotten first. */
  maxEntries?: number;
}

interface FailureRecord {
  count: number;
  since: number;
  penaltyUntil: number;
  penaltyMs: number;
}

/**
 * Repeated failed logins from one address are slowed down (rule 2.4), like
 * OpenSSH PerSourcePenalties: after `limit` failures within a window, new
 * connections from that address are refused for a penalty that doubles with
 * each further failure. The table is bounded, so a flood of addresses
 * cannot grow it without limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FailurePenalty } from "./presence.ts";
 * const p = new FailurePenalty({ limit: 2, basePenaltyMs: 1000 });
 * p.recordFailure("10.0.0.1", 0);
 * assert.equal(p.penalty("10.0.0.1", 0), 0);
 * assert.equal(p.recordFailure("10.0.0.1", 0), 1000);
 * assert.equal(p.penalty("10.0.0.1", 400), 600);
 * assert.equal(p.penalty("10.0.0.2", 400), 0);
 * ```
 */
export class FailurePenalty {
  #o: Required<PenaltyOptions>;
  #table = new Map<string, FailureRecord>();

  /** @param o limit and penalty */
  constructor(o: PenaltyOptions) {
    this.#o = {
      limit: Math.max(1, o.limit),
      basePenaltyMs: o.basePenaltyMs,
      windowMs: o.windowMs ?? 60_000,
      maxPenaltyMs: o.maxPenaltyMs ?? 300_000,
      maxEntries: o.maxEntries ?? 10_000,
    };
  }

  /** Addresses remembered now. */
  get size(): number {
    return this.#table.size;
  }

  /**
   * @param address a remote address
   * @param now clock in ms
   * @returns milliseconds its penalty still runs, 0 when none
   */
  penalty(address: string, now: number): number {
    const f = this.#table.get(address);
    return f && f.penaltyUntil > now ? f.penaltyUntil - now : 0;
  }

  /**
   * Count one failed login.
   * @param address where it came from
   * @param now clock in ms
   * @returns the penalty it started, in ms, or 0
   */
  recordFailure(address: string, now: number): number {
    let f = this.#table.get(address);
    if (!f || (now - f.since > this.#o.windowMs && f.penaltyUntil <= now)) {
      f = { count: 0, since: now, penaltyUntil: 0, penaltyMs: 0 };
    }
    this.#table.delete(address); // re-insert: the table is kept in order of last failure
    this.#table.set(address, f);
    f.count++;
    let started = 0;
    if (f.count >= this.#o.limit) {
      f.penaltyMs = f.penaltyMs === 0
        ? this.#o.basePenaltyMs
        : Math.min(f.penaltyMs * 2, this.#o.maxPenaltyMs);
      f.penaltyUntil = now + f.penaltyMs;
      started = f.penaltyMs;
    }
    if (this.#table.size > this.#o.maxEntries) this.#prune(now);
    return started;
  }

  #prune(now: number): void {
    for (const [k, v] of this.#table) {
      if (v.penaltyUntil <= now && now - v.since > this.#o.windowMs) {
        this.#table.delete(k);
      }
    }
    // Still too many: forget the addresses whose last failure is oldest,
    // down to 90% so that the next new addresses do not prune again at once.
    const keep = Math.floor(this.#o.maxEntries * 0.9);
    for (const k of this.#table.keys()) {
      if (this.#table.size <= keep) break;
      this.#table.delete(k);
    }
  }
}
