/**
 * What guards a host's grants (PROTOCOL.md section 6): the count of failed
 * grants per joiner, after which the host refuses that joiner ("The real
 * bound"), and the summary of refused connections, so a flood of them
 * cannot fill the screen.
 * @module
 */

import type { ClientContext } from "./options.ts";

/**
 * Spent grants of one joiner whose handshake failed in a row, after which
 * the host refuses that joiner's grants (PROTOCOL.md section 6, "Why the
 * joiner commits first"): each is one guess at the code for whoever holds
 * the peer key, the server included.
 */
export const MAX_FAILED_GRANTS = 3;

/**
 * Per joiner, the spent grants whose handshake failed since its last
 * session started. Kept per client, across hostings: a hosting that starts
 * again by itself (after a session, after a reconnect, both of which a
 * server can cause) keeps the count; only `!session host` typed by the user
 * clears it ({@link Hosting.forgive}).
 */
export class FailedGrants {
  #counts = new Map<string, number>();

  /** @returns how many of `peer`'s spent grants failed in a row */
  of(peer: string): number {
    return this.#counts.get(peer) ?? 0;
  }

  /** @returns the count after this failure */
  failed(peer: string): number {
    const n = this.of(peer) + 1;
    this.#counts.set(peer, n);
    return n;
  }

  succeeded(peer: string): void {
    this.#counts.delete(peer);
  }

  clear(): void {
    this.#counts.clear();
  }
}

const FAILED_GRANTS = new WeakMap<ClientContext, FailedGrants>();

export function failedGrants(ctx: ClientContext): FailedGrants {
  let f = FAILED_GRANTS.get(ctx);
  if (!f) FAILED_GRANTS.set(ctx, f = new FailedGrants());
  return f;
}

/** How often, at most, a host shows a summary of refused connections. */
export const REFUSAL_SUMMARY_MS = 10_000;

/**
 * The refused connections of one grant: the first is shown, the rest are
 * counted and summed up at most every {@link REFUSAL_SUMMARY_MS} and when
 * the grant ends, so a flood cannot fill the screen (PROTOCOL.md section 6).
 */
export class Refusals {
  #ctx: ClientContext;
  #peer: string;
  #shown = false;
  #count = 0;
  #since = 0;

  constructor(ctx: ClientContext, peer: string) {
    this.#ctx = ctx;
    this.#peer = peer;
  }

  add(from: string, why: string, now = Date.now()): void {
    if (!this.#shown) {
      this.#shown = true;
      this.#since = now;
      this.#ctx.system(
        `Refused a connection from ${from}: ${why}; still waiting for ${this.#peer}`,
      );
      return;
    }
    this.#count++;
    if (now - this.#since >= REFUSAL_SUMMARY_MS) this.flush(now);
  }

  /** Show the count not shown yet, if any. */
  flush(now = Date.now()): void {
    if (this.#count === 0) return;
    this.#ctx.system(
      `Refused ${this.#count} more connection(s) while waiting for ${this.#peer}`,
    );
    this.#count = 0;
    this.#since = now;
  }
}
