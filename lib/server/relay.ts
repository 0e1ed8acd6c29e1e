/**
 * The relay (PROTOCOL.md section 6.1): when two peers cannot reach
 * each other directly, the server forwards their sealed peer frames between
 * their server channels. It forwards only between the two users of one
 * session, and never lets a partner that does not read hold up the sender
 * or grow the server's memory: past {@link RELAY_QUEUE_BUDGET_BYTES}
 * waiting for the partner, more relays are refused to their sender
 * (`relay-busy`).
 * @module
 */

import type { ClientToServer } from "../proto/mod.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type { Delivery, Presence } from "./seams.ts";

/** Relayed bytes a partner may have waiting before more relays to it are refused (`relay-busy`). */
export const RELAY_QUEUE_BUDGET_BYTES = 1024 * 1024;

/** Forwards `relay` messages to the sender's partner. */
export class Relay {
  #presence: Presence;
  #delivery: Delivery;
  #budget: number;

  /**
   * @param presence who is in a session with whom
   * @param delivery how the partner is reached
   * @param budgetBytes queued bytes past which the partner counts as not keeping up
   */
  constructor(
    presence: Presence,
    delivery: Delivery,
    budgetBytes = RELAY_QUEUE_BUDGET_BYTES,
  ) {
    this.#presence = presence;
    this.#delivery = delivery;
    this.#budget = budgetBytes;
  }

  /**
   * Forward one frame. Not awaited past the hand-off: a partner that does
   * not read must not stall this client. A frame too large to forward is
   * refused to its sender (`relay-too-large`) once the partner's channel
   * says so; neither refusal ends the partner's connection.
   * @param s the sender
   * @param m the message
   * @param reply the answer to it (errors only; a relay has no other answer)
   */
  forward(
    s: ClientSession,
    m: Extract<ClientToServer, { t: "relay" }>,
    reply: Reply,
  ): Promise<void> {
    const user = s.user;
    if (
      this.#presence.get(user)?.partner !== m.peer ||
      this.#presence.get(m.peer)?.partner !== user
    ) {
      return reply({
        t: "error",
        code: "no-session",
        message: `No session with ${m.peer.slice(0, 40)} to relay to`,
      });
    }
    const r = this.#delivery.deliver(
      m.peer,
      { t: "relayed", peer: user, data: m.data },
      { maxQueuedBytes: this.#budget },
    );
    if (!r.delivered) {
      if (r.reason === "absent") return Promise.resolve();
      return reply({
        t: "error",
        code: "relay-busy",
        message: `${m.peer} is not keeping up; relayed message not delivered`,
      });
    }
    r.written.then((e) => {
      if (e?.code !== "message-too-large") return;
      reply({
        t: "error",
        code: "relay-too-large",
        message:
          `Cannot relay ${m.data.length} bytes to ${m.peer}: ${e.message}`,
      }).catch(() => {});
    });
    return Promise.resolve();
  }
}
