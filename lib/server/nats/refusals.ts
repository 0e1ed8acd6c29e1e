/**
 * {@link Refusals}: what a node refused from NATS, counted per code and
 * logged at most once per code per 10 s (PROTOCOL.md 11.2, 11.6), the line
 * carrying `suppressed`, how many of that code were refused since the line
 * before: a flood of junk cannot flood the log, and the counters count it
 * all. Never the refused bytes.
 *
 * @example
 * ```ts ignore
 * const refusals = new Refusals("cluster-store-refused", log);
 * refusals.refuse("store-forged", { user: "bob", seq: 7 });
 * refusals.count("store-forged"); // 1
 * ```
 * @module
 */

import type { LogFields, Logger } from "../../util/mod.ts";

/** At most one log line per code per this many ms. */
export const REFUSAL_LOG_MS = 10_000;

/** Refusals of one kind, counted and logged sparingly. */
export class Refusals {
  readonly #event: string;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #byCode = new Map<string, number>();
  readonly #logged = new Map<string, { at: number; since: number }>();

  /**
   * @param event the log line's event (`cluster-store-refused`)
   * @param log where it goes
   * @param now the clock
   */
  constructor(event: string, log: Logger, now: () => number = Date.now) {
    this.#event = event;
    this.#log = log;
    this.#now = now;
  }

  /**
   * Count a refusal and log it unless a line of its code went out in the last 10 s.
   * @param code why (`store-forged`)
   * @param fields what was refused (a user, a key, a seq; never the bytes)
   */
  refuse(code: string, fields: LogFields = {}): void {
    this.#byCode.set(code, (this.#byCode.get(code) ?? 0) + 1);
    const now = this.#now();
    const l = this.#logged.get(code);
    if (l && now - l.at < REFUSAL_LOG_MS) {
      l.since++;
      return;
    }
    this.#logged.set(code, { at: now, since: 0 });
    this.#log(this.#event, {
      code,
      ...fields,
      ...(l && l.since > 0 && { suppressed: l.since }),
    });
  }

  /** Refusals so far, of one code or of all. */
  count(code?: string): number {
    if (code !== undefined) return this.#byCode.get(code) ?? 0;
    let n = 0;
    for (const c of this.#byCode.values()) n += c;
    return n;
  }

  /** Refusals so far by code. */
  byCode(): Record<string, number> {
    return Object.fromEntries(this.#byCode);
  }
}
