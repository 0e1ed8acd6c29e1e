/**
 * {@link MailWake}: the mail wake-ups of a cluster (PROTOCOL.md 11.4). The
 * mailboxes are one store for every node (11.6), but a user's mail stream
 * (9.8) runs on the node it is connected to, and pushes a new record only
 * when woken. After a node committed records to users' logs, it wakes its
 * own streams of those users at once and publishes one sealed envelope
 * (11.2) on `im.<cluster>.mail-wake`, `{"t":"mail-wake","users":[...]}`,
 * the users of one turn of the event loop (at most 256 per envelope). Every
 * node subscribes and wakes the streams of the users connected to it. A
 * notification, to every node: it needs no answer, and reaches a user
 * who logged in elsewhere a moment ago, before this node's presence view
 * shows where. A node whose link to NATS comes back wakes every stream it
 * runs (a wake lost meanwhile is so made good). The envelopes, their
 * window and refusals are wake_channel.ts's, shared with the room wake-ups.
 *
 * @example
 * ```ts ignore
 * const wake = await MailWake.open({ nc, cluster: "team", node: "n1", keys });
 * wake.attach((user) => mailbox.wakeLocal(user), () => mailbox.wakeAll());
 * wake.tell("bob");   // bob's stream on the other nodes (this node wakes its own)
 * await wake.close();
 * ```
 * @module
 */

import { isValidUsername } from "../../proto/mod.ts";
import { ProtocolError } from "../../util/mod.ts";
import {
  wakeBody,
  WakeChannel,
  type WakeChannelOptions,
} from "./wake_channel.ts";

export { LatestBootWindow } from "./wake_channel.ts";

/** Users named in one `mail-wake` envelope, at most. */
export const MAIL_WAKE_BATCH = 256;

/** The subject every node of a cluster hears mail wake-ups on (11.4). */
export function mailWakeSubject(cluster: string): string {
  return `im.${cluster}.mail-wake`;
}

/** Options of {@link MailWake.open}. */
export type MailWakeOptions = WakeChannelOptions;

/** Mail wake-ups between the nodes of a cluster (PROTOCOL.md 11.4). */
export class MailWake {
  readonly subject: string;
  readonly #ch: WakeChannel;
  #local: (user: string) => void = () => {};
  #everyone: () => void = () => {};
  #batch = new Set<string>();

  private constructor(o: MailWakeOptions) {
    this.subject = mailWakeSubject(o.cluster);
    this.#ch = new WakeChannel(o, this.subject);
  }

  /**
   * Subscribe to the cluster's wake-ups, and wait until NATS has the
   * subscription.
   * @param o the connection, cluster, node and keys; clock, logger
   * @returns the wake-ups
   * @throws {RangeError} a cluster or node name not of rule 2.9
   */
  static async open(o: MailWakeOptions): Promise<MailWake> {
    const w = new MailWake(o);
    // 11.4: every stream woken when the link is back (a wake-up was lost).
    await w.#ch.subscribe(
      parseMailWake,
      (users) => {
        for (const u of users) w.#local(u);
      },
      () => w.#everyone(),
    );
    return w;
  }

  /**
   * What a wake-up does on this node.
   * @param local wake the stream of a user connected here, if any
   * @param everyone wake every stream this node runs (NATS came back)
   */
  attach(local: (user: string) => void, everyone: () => void = () => {}): void {
    this.#local = local;
    this.#everyone = everyone;
  }

  /** Envelopes refused so far, by code. */
  refusals(): Record<string, number> {
    return this.#ch.refusals();
  }

  /**
   * Records were committed to `user`'s log: the other nodes are told, with
   * the users of this turn in one envelope. (This node wakes its own
   * stream itself, at once.)
   * @param user whose log
   */
  tell(user: string): void {
    if (this.#ch.closed) return;
    if (this.#batch.size === 0) queueMicrotask(() => this.#flush());
    this.#batch.add(user);
  }

  #flush(): void {
    const users = [...this.#batch];
    this.#batch.clear();
    if (!this.#ch.open) return;
    for (let i = 0; i < users.length; i += MAIL_WAKE_BATCH) {
      this.#ch.publish({
        t: "mail-wake",
        users: users.slice(i, i + MAIL_WAKE_BATCH),
      });
    }
  }

  /** Unsubscribe; the connection stays the caller's. Idempotent. */
  async close(): Promise<void> {
    if (this.#ch.closed) return;
    this.#batch.clear();
    await this.#ch.close();
  }
}

/**
 * A `mail-wake` payload, checked: at most {@link MAIL_WAKE_BATCH} user
 * names of rule 2.9.
 * @throws {ProtocolError} `cluster-malformed`
 */
function parseMailWake(payload: Uint8Array): string[] {
  const b = wakeBody(payload, "mail-wake");
  if (
    !Array.isArray(b.users) || b.users.length > MAIL_WAKE_BATCH ||
    !b.users.every((u) => typeof u === "string" && isValidUsername(u))
  ) {
    throw new ProtocolError("cluster-malformed", "not a mail-wake");
  }
  return b.users as string[];
}
