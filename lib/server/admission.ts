/**
 * The gate in front of the login (rules 1.2 and 2.4), as plain bookkeeping
 * with no I/O: {@link LoginAdmission} caps unauthenticated connections per
 * address and in total; {@link FailurePenalty} slows down an address that
 * keeps failing. What counts as one address is {@link addressKey}: IPv4 per
 * address, IPv6 per prefix (a /64 by default), loopback as one host. The
 * edge (edge.ts) keys each connection, asks them, and does the refusing.
 * @module
 */

/**
 * IPv6 clients are counted per this prefix by default: a /64 is the
 * smallest subnet a site is given (RFC 4291 2.5.1, RFC 7421), so one client
 * may hold every address in it.
 */
export const DEFAULT_IPV6_PREFIX_BITS = 64;

/** The key every loopback address (127.0.0.0/8, ::1) is counted under: one host. */
export const LOOPBACK_KEY = "loopback";

/** `a.b.c.d`, each 0-255 in decimal without leading zeros; undefined otherwise. */
function parseIpv4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out.push(Number(p));
  }
  return out;
}

/**
 * The eight 16-bit groups of an IPv6 address in the text forms of
 * RFC 4291 2.2 (`::` once at most; a dotted IPv4 tail); undefined otherwise.
 */
function parseIpv6(text: string): number[] | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const items = part.split(":");
    for (const [i, item] of items.entries()) {
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIpv4(item);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-f]{1,4}$/.test(item)) {
        out.push(parseInt(item, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const zeros = 8 - head.length - tail.length;
  if (zeros < 1) return undefined;
  return [...head, ...new Array<number>(zeros).fill(0), ...tail];
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero groups (the first of equals) as `::`. */
function formatIpv6(g: readonly number[]): string {
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j > i ? j : i + 1;
  }
  const hex = (a: readonly number[]) => a.map((x) => x.toString(16)).join(":");
  return best < 0
    ? hex(g)
    : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** The key of an IPv4 address: itself, or {@link LOOPBACK_KEY} in 127.0.0.0/8. */
function ipv4Key(v4: readonly number[]): string {
  return v4[0] === 127 ? LOOPBACK_KEY : v4.join(".");
}

/**
 * What the per-address caps and penalties count a remote address as, so
 * that one host, or one IPv6 client with a whole prefix, cannot pass for
 * many: an IPv4 address as it is; an IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4) as that
 * IPv4 address; any other IPv6 address (brackets, zone and case ignored)
 * truncated to its first `ipv6PrefixBits` bits, written `prefix/bits`; and
 * every loopback address, 127.0.0.0/8 and `::1`, as {@link LOOPBACK_KEY},
 * one host however it connects. Anything that is not an IP address (a
 * memory network's name) is its own key.
 * @param host the remote host as the transport reports it
 * @param ipv6PrefixBits IPv6 prefix length counted as one client, 1..128 (clamped; default {@link DEFAULT_IPV6_PREFIX_BITS})
 * @returns the key
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { addressKey } from "./admission.ts";
 * assert.equal(addressKey("2001:db8:0:1::7"), "2001:db8:0:1::/64");
 * assert.equal(addressKey("[2001:DB8:0:1:a:b:c:d%eth0]"), "2001:db8:0:1::/64");
 * assert.equal(addressKey("::ffff:192.0.2.7"), "192.0.2.7");
 * assert.equal(addressKey("::1"), addressKey("127.0.0.1"));
 * ```
 */
export function addressKey(
  host: string,
  ipv6PrefixBits: number = DEFAULT_IPV6_PREFIX_BITS,
): string {
  const v4 = parseIpv4(host);
  if (v4) return ipv4Key(v4);
  let text = host.toLowerCase();
  if (text.startsWith("[") && text.endsWith("]")) text = text.slice(1, -1);
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const g = parseIpv6(text);
  if (!g) return host;
  if (g.slice(0, 5).every((x) => x === 0)) {
    // RFC 4291 2.5.5.2: ::ffff:a.b.c.d is an IPv4 host.
    if (g[5] === 0xffff) {
      return ipv4Key([g[6]! >> 8, g[6]! & 0xff, g[7]! >> 8, g[7]! & 0xff]);
    }
    // RFC 4291 2.5.3: ::1.
    if (g[5] === 0 && g[6] === 0 && g[7] === 1) return LOOPBACK_KEY;
  }
  const bits = Math.min(128, Math.max(1, Math.trunc(ipv6PrefixBits) || 1));
  const masked = g.map((x, i) => {
    const keep = Math.min(16, Math.max(0, bits - 16 * i));
    return keep === 0 ? 0 : x & (0xffff << (16 - keep)) & 0xffff;
  });
  return `${formatIpv6(masked)}/${bits}`;
}

/** Options of {@link LoginAdmission}. */
export interface AdmissionLimits {
  /** Unauthenticated connections at once, in total. */
  maxTotal: number;
  /** Unauthenticated connections at once from one address ({@link addressKey}). */
  maxPerAddress: number;
}

/**
 * The caps on unauthenticated connections (rule 1.2), like OpenSSH
 * MaxStartups, as plain bookkeeping. A new connection is always admitted;
 * to make room, the oldest pending login of its own address goes when that
 * address is at its cap, and when the total is at its cap the oldest pending
 * login of the address that holds the most goes. So a flood from one
 * address only ever evicts its own connections, and a legitimate user who
 * has just connected is the last to go. An address here is whatever key
 * the caller counts by; the edge passes {@link addressKey}.
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
 * cannot grow it without limit. As for {@link LoginAdmission}, an address
 * is the caller's key; the edge passes {@link addressKey}.
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
