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
 * runs (a wake lost meanwhile is so made good).
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

import type { Msg, NatsConnection } from "@nats-io/transport-node";
import {
  type ClusterKeys,
  EnvelopeWindow,
  isValidUsername,
  openEnvelope,
  sealEnvelope,
} from "../../proto/mod.ts";
import {
  fromUtf8,
  type Logger,
  ProtocolError,
  randomBytes,
  utf8,
} from "../../util/mod.ts";
import { Refusals } from "./refusals.ts";
import { WakeSubscription } from "./wake_subscription.ts";

/** Users named in one `mail-wake` envelope, at most. */
export const MAIL_WAKE_BATCH = 256;

/** The subject every node of a cluster hears mail wake-ups on (11.4). */
export function mailWakeSubject(cluster: string): string {
  return `im.${cluster}.mail-wake`;
}

/** Options of {@link MailWake.open}. */
export interface MailWakeOptions {
  /** A connected NATS client; the caller closes it. */
  nc: NatsConnection;
  /** The cluster's name (rule 2.9). */
  cluster: string;
  /** This node's name (rule 2.9). */
  node: string;
  /** The cluster key's keys (11.2). */
  keys: ClusterKeys;
  /** The clock for envelope times (default `Date.now`). */
  now?: () => number;
  log?: Logger;
}

/** The replay window, one boot per node (a node's newer boot ends its older). */
export class LatestBootWindow extends EnvelopeWindow {
  #boots = new Map<string, string>();
  override take(node: string, boot: Uint8Array, seq: number): boolean {
    const b = boot.toHex();
    if (this.#boots.get(node) !== b) {
      this.forget(node);
      this.#boots.set(node, b);
    }
    return super.take(node, boot, seq);
  }
}

/** Mail wake-ups between the nodes of a cluster (PROTOCOL.md 11.4). */
export class MailWake {
  readonly subject: string;
  readonly #o: MailWakeOptions;
  readonly #now: () => number;
  readonly #boot = randomBytes(8);
  readonly #window = new LatestBootWindow();
  readonly #refusals: Refusals;
  readonly #failures: Refusals;
  #seq = 0;
  #sub: WakeSubscription | undefined;
  #local: (user: string) => void = () => {};
  #everyone: () => void = () => {};
  #batch = new Set<string>();
  #closed = false;

  private constructor(o: MailWakeOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.subject = mailWakeSubject(o.cluster);
    const log = o.log ?? (() => {});
    this.#refusals = new Refusals("cluster-refused", log, this.#now);
    this.#failures = new Refusals("cluster-wake-failed", log, this.#now);
  }

  /**
   * Subscribe to the cluster's wake-ups, and wait until NATS has the
   * subscription.
   * @param o the connection, cluster, node and keys; clock, logger
   * @returns the wake-ups
   * @throws {RangeError} a cluster or node name not of rule 2.9
   */
  static async open(o: MailWakeOptions): Promise<MailWake> {
    if (!isValidUsername(o.cluster)) {
      throw new RangeError(`cluster name "${o.cluster}" (rule 2.9)`);
    }
    if (!isValidUsername(o.node)) {
      throw new RangeError(`node name "${o.node}" (rule 2.9)`);
    }
    const w = new MailWake(o);
    // 11.4: every stream woken when the link is back (a wake-up was lost).
    w.#sub = await WakeSubscription.open(
      o.nc,
      w.subject,
      (m) => w.#heard(m),
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
    return this.#refusals.byCode();
  }

  /**
   * Records were committed to `user`'s log: the other nodes are told, with
   * the users of this turn in one envelope. (This node wakes its own
   * stream itself, at once.)
   * @param user whose log
   */
  tell(user: string): void {
    if (this.#closed) return;
    if (this.#batch.size === 0) queueMicrotask(() => this.#flush());
    this.#batch.add(user);
  }

  #flush(): void {
    const users = [...this.#batch];
    this.#batch.clear();
    if (this.#closed || this.#o.nc.isClosed()) return;
    for (let i = 0; i < users.length; i += MAIL_WAKE_BATCH) {
      try {
        const env = sealEnvelope(this.#o.keys, {
          node: this.#o.node,
          boot: this.#boot,
          seq: ++this.#seq,
          time: this.#now(),
          subject: this.subject,
          payload: utf8(JSON.stringify({
            t: "mail-wake",
            users: users.slice(i, i + MAIL_WAKE_BATCH),
          })),
        });
        this.#o.nc.publish(this.subject, env);
      } catch (e) {
        // The record is in the log: the stream's next wake pushes it.
        this.#failures.refuse("publish", {
          node: this.#o.node,
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }

  #heard(m: Msg): void {
    if (this.#closed) return;
    let users: string[];
    let from = "?";
    try {
      const opened = openEnvelope(this.#o.keys, m.data, {
        subject: m.subject,
        now: this.#now(),
        window: this.#window,
      });
      from = opened.node;
      if (opened.node === this.#o.node) return; // our own: woken already
      let body: unknown;
      try {
        body = JSON.parse(fromUtf8(opened.payload, "cluster payload"));
      } catch {
        throw new ProtocolError("cluster-malformed", "payload is not JSON");
      }
      const b = body as { t?: unknown; users?: unknown };
      if (
        typeof b !== "object" || b === null || b.t !== "mail-wake" ||
        !Array.isArray(b.users) || b.users.length > MAIL_WAKE_BATCH ||
        !b.users.every((u) => typeof u === "string" && isValidUsername(u))
      ) {
        throw new ProtocolError("cluster-malformed", "not a mail-wake");
      }
      users = b.users as string[];
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : "cluster-malformed";
      this.#refusals.refuse(code, {
        node: this.#o.node,
        from,
        reason: e instanceof Error ? e.message : String(e),
      });
      return;
    }
    for (const u of users) this.#local(u);
  }

  /** Unsubscribe; the connection stays the caller's. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#batch.clear();
    await this.#sub?.close();
  }
}
