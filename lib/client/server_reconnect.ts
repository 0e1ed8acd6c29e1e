/**
 * Logging in over the nodes with backoff: the first login, which tries
 * each node in order and then again, {@link FIRST_CONNECT_ROUNDS} rounds in
 * all (PROTOCOL.md 11.7); and the reconnect after a drop (section 5.1.1),
 * which tries the nodes after the one lost, round the list, with the
 * backoff before each round and not between its nodes, until a login
 * lands or the user quits.
 * @module
 */

import type { LoginResult, ServerLink } from "../proto/mod.ts";
import { Backoff, NetError, sleep } from "../util/mod.ts";
import type { ClientOptions, ServerAddress } from "./options.ts";
import { loginToServer } from "./server_login.ts";
import {
  failureAt,
  FIRST_CONNECT_ROUNDS,
  isNodeFailure,
} from "./server_nodes.ts";

/**
 * The backoff between rounds of logins, from the settings (1 s doubling up
 * to 30 s by default, jittered: see {@link Backoff}).
 * @param o client settings
 * @returns a new backoff, at its first step
 */
export function reconnectBackoff(o: ClientOptions): Backoff {
  return new Backoff(o.reconnectBaseMs ?? 1000, o.reconnectMaxMs ?? 30_000);
}

/**
 * The first login: each node in order, then again with backoff, up to
 * {@link FIRST_CONNECT_ROUNDS} rounds (one try for a single server, whose
 * error is thrown as it is).
 * @param o client settings
 * @param nodes the nodes to try, at least one
 * @returns the channel, the login and which of `nodes` it is at
 * @throws the error of a login refused (not tried elsewhere); {@link NetError}
 *   `connect-failed` naming every node when none answered
 */
export async function firstLogin(
  o: ClientOptions,
  nodes: readonly ServerAddress[],
): Promise<{ channel: ServerLink; login: LoginResult; node: number }> {
  if (nodes.length === 1) {
    return { ...await loginToServer(o, nodes[0]), node: 0 };
  }
  const backoff = reconnectBackoff(o);
  const failures: string[] = [];
  for (let round = 0; round < FIRST_CONNECT_ROUNDS; round++) {
    if (round > 0) await sleep(backoff.next());
    for (let i = 0; i < nodes.length; i++) {
      try {
        return { ...await loginToServer(o, nodes[i]), node: i };
      } catch (e) {
        if (!isNodeFailure(e)) throw e;
        failures[i] = failureAt(nodes[i]!, e);
      }
    }
  }
  throw new NetError(
    "connect-failed",
    `None of the ${nodes.length} servers answered (each tried ${FIRST_CONNECT_ROUNDS} times): ${
      failures.join("; ")
    }`,
  );
}

/**
 * The reconnect after a drop: rounds over the nodes, each after a backoff
 * wait that {@link stop} cuts short.
 */
export class Reconnector {
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;

  /**
   * Try the nodes after `lost`, in order, that one last; the backoff
   * before each round, not between its nodes.
   * @param o client settings (the backoff's steps)
   * @param nodes how many nodes there are
   * @param lost the node the link was lost at
   * @param attempt one login at node `i`: true when it ended the
   *   reconnecting (logged in, quit, or a failure that ends the client)
   */
  async run(
    o: ClientOptions,
    nodes: number,
    lost: number,
    attempt: (i: number) => Promise<boolean>,
  ): Promise<void> {
    const backoff = reconnectBackoff(o);
    while (!this.#stopped) {
      // Jittered, so clients of a restarted server do not all return at once.
      const wait = backoff.next();
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, wait);
      });
      this.#wake = undefined;
      for (let k = 1; k <= nodes; k++) {
        if (this.#stopped) return;
        const done = await attempt((lost + k) % nodes);
        if (done) return;
      }
    }
  }

  /** The user quit: no more attempts, and a wait in progress ends now. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
  }
}
