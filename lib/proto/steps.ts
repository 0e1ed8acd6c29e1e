/**
 * Internal: {@link Steps}, the step discipline both handshakes share (login,
 * `login_client.ts` and `login_server.ts`; peer, `peer_host.ts` and
 * `peer_join.ts`): PROTOCOL.md sections 3 and 6, "the first error of a
 * handshake is final, and every later step throws it again".
 * @module
 */

import { ProtocolError } from "../util/mod.ts";

/**
 * Runs the steps of one side of a handshake in order and keeps the first
 * error: once a step failed, every later call throws that error again; a
 * step called out of order, or while another is running, throws
 * `unexpected-frame` and changes nothing. A step that returns a promise
 * settles the same way when it settles.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Steps } from "./steps.ts";
 * const steps = new Steps<"hello" | "done">("hello", "Example handshake");
 * steps.run("hello", () => (steps.state = "done"));
 * assert.throws(() => steps.run("hello", () => 0), { name: "ProtocolError" });
 * ```
 */
export class Steps<S extends string> {
  /** The current state; a step moves it on itself. */
  state: S | "failed";
  #failure: unknown;
  #busy = false;
  #what: string;
  #onFail: (() => void) | undefined;

  /**
   * @param initial the first state
   * @param what the handshake's name, for messages ("Login", "Peer handshake")
   * @param onFail run once, when the first step fails: the handshake wipes
   *   the keys it derived, which no channel will ever wipe
   */
  constructor(initial: S, what: string, onFail?: () => void) {
    this.state = initial;
    this.#what = what;
    this.#onFail = onFail;
  }

  /**
   * Run the step that belongs to state `expected`.
   * @param expected the state this step needs
   * @param fn the step
   * @returns what the step returns
   * @throws the first error of this handshake, or {@link ProtocolError} `unexpected-frame`
   */
  run<T>(expected: S, fn: () => T): T {
    if (this.state === "failed") throw this.#failure;
    if (this.#busy || this.state !== expected) {
      throw new ProtocolError(
        "unexpected-frame",
        `${this.#what} step out of order in state ${this.state}`,
      );
    }
    this.#busy = true;
    let out: T;
    try {
      out = fn();
    } catch (e) {
      this.#busy = false;
      throw this.#fail(e);
    }
    if (out instanceof Promise) {
      return out.then(
        (v) => {
          this.#busy = false;
          return v;
        },
        (e) => {
          this.#busy = false;
          throw this.#fail(e);
        },
      ) as T;
    }
    this.#busy = false;
    return out;
  }

  #fail(e: unknown): unknown {
    const first = this.state !== "failed";
    this.state = "failed";
    this.#failure = e;
    if (first) this.#onFail?.();
    return e;
  }
}
