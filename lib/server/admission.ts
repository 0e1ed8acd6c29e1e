/**
 * The gate in front of the login (rules 1.2 and 2.4), as plain bookkeeping
 * with no I/O: {@link LoginAdmission} caps unauthenticated connections per
 * address and in total; {@link FailurePenalty} slows down an address that
 * keeps failing. The edge (edge.ts) asks them and does the refusing.
 * @module
 */

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
 * import { LoginAdmission } from "./admission.ts";
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
 * import { FailurePenalty } from "./admission.ts";
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
