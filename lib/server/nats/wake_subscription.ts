/**
 * The subscription under a wake-up subject (PROTOCOL.md 11.4): the mail
 * wake-ups (mail_wake.ts) and the room wake-ups (room_wake.ts) each hear
 * every envelope of their subject, and wake every stream of the node when
 * the NATS link comes back, since a wake-up sent while it was down was lost.
 * @module
 */

import type {
  Msg,
  NatsConnection,
  Subscription,
} from "@nats-io/transport-node";

/** A subscription to one wake-up subject, with the link's reconnects. */
export class WakeSubscription {
  readonly #sub: Subscription;
  readonly #status: { stop(): void };
  readonly #statusLoop: Promise<void>;
  #closed = false;

  private constructor(
    nc: NatsConnection,
    subject: string,
    heard: (m: Msg) => void,
    reconnected: () => void,
  ) {
    this.#sub = nc.subscribe(subject, {
      callback: (err, msg) => {
        if (!err) heard(msg);
      },
    });
    const status = nc.status();
    this.#status = status as unknown as { stop(): void };
    this.#statusLoop = (async () => {
      try {
        for await (const s of status) {
          if (this.#closed) break;
          // 11.4: a wake lost while the link was down is made good.
          if (s.type === "reconnect") reconnected();
        }
      } catch { /* the connection closed */ }
    })();
  }

  /**
   * Subscribe, and wait until NATS has the subscription.
   * @param nc the connection
   * @param subject the wake-up subject
   * @param heard called with each message of the subject
   * @param reconnected called each time the link to NATS is back
   * @returns the subscription
   */
  static async open(
    nc: NatsConnection,
    subject: string,
    heard: (m: Msg) => void,
    reconnected: () => void,
  ): Promise<WakeSubscription> {
    const w = new WakeSubscription(nc, subject, heard, reconnected);
    await nc.flush();
    return w;
  }

  /** Unsubscribe and stop following the link; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#sub.unsubscribe();
    } catch { /* the connection closed first */ }
    this.#status.stop();
    await this.#statusLoop;
  }
}
