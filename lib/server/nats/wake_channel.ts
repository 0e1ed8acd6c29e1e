/**
 * {@link WakeChannel}: what the mail wake-ups (mail_wake.ts) and the room
 * wake-ups (room_wake.ts) of PROTOCOL.md 11.4 share: one subject every node
 * hears, sealed envelopes (11.2) of this node's boot sent on it, and those
 * heard opened in a replay window of one boot per node, a node's own
 * ignored (it woke its streams already) and what does not verify or parse
 * refused (`cluster-refused`, counted); a publish that fails is logged
 * (`cluster-wake-failed`), since the record is in the log and the stream's
 * next wake pushes it. What a payload holds, and how a turn's wake-ups are
 * batched, are each caller's.
 *
 * @example
 * ```ts ignore
 * const ch = new WakeChannel({ nc, cluster: "team", node: "n1", keys }, "im.team.mail-wake");
 * await ch.subscribe(parseMailWake, (users) => wakeLocal(users), () => wakeAll());
 * ch.publish({ t: "mail-wake", users: ["bob"] });
 * await ch.close();
 * ```
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
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

/** What a wake-up channel needs: the options of `MailWake.open` and `RoomWake.open`. */
export interface WakeChannelOptions {
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

/** The sealed envelopes of one wake-up subject, sent and heard. */
export class WakeChannel {
  readonly subject: string;
  readonly #o: WakeChannelOptions;
  readonly #now: () => number;
  readonly #boot = randomBytes(8);
  readonly #window = new LatestBootWindow();
  readonly #refusals: Refusals;
  readonly #failures: Refusals;
  #seq = 0;
  #sub: WakeSubscription | undefined;
  #closed = false;

  /**
   * @param o the connection, cluster, node and keys; clock, logger
   * @param subject the wake-up subject
   * @throws {RangeError} a cluster or node name not of rule 2.9
   */
  constructor(o: WakeChannelOptions, subject: string) {
    if (!isValidUsername(o.cluster)) {
      throw new RangeError(`cluster name "${o.cluster}" (rule 2.9)`);
    }
    if (!isValidUsername(o.node)) {
      throw new RangeError(`node name "${o.node}" (rule 2.9)`);
    }
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.subject = subject;
    const log = o.log ?? (() => {});
    this.#refusals = new Refusals("cluster-refused", log, this.#now);
    this.#failures = new Refusals("cluster-wake-failed", log, this.#now);
  }

  /**
   * Subscribe, and wait until NATS has the subscription.
   * @param parse a payload to what it says; throws a {@link ProtocolError}
   *   (`cluster-malformed`) for one that is not of the caller's kind
   * @param heard called with each parsed payload of another node
   * @param reconnected called each time the link to NATS is back (11.4:
   *   every stream woken, a wake-up was lost)
   */
  async subscribe<T>(
    parse: (payload: Uint8Array) => T,
    heard: (value: T) => void,
    reconnected: () => void,
  ): Promise<void> {
    this.#sub = await WakeSubscription.open(
      this.#o.nc,
      this.subject,
      (m) => {
        if (this.#closed) return;
        let value: T;
        let from = "?";
        try {
          const opened = openEnvelope(this.#o.keys, m.data, {
            subject: m.subject,
            now: this.#now(),
            window: this.#window,
          });
          from = opened.node;
          if (opened.node === this.#o.node) return; // our own: woken already
          value = parse(opened.payload);
        } catch (e) {
          const code = e instanceof ProtocolError
            ? e.code
            : "cluster-malformed";
          this.#refusals.refuse(code, {
            node: this.#o.node,
            from,
            reason: e instanceof Error ? e.message : String(e),
          });
          return;
        }
        heard(value);
      },
      reconnected,
    );
  }

  /** Whether envelopes can be sent: not closed, and the connection open. */
  get open(): boolean {
    return !this.#closed && !this.#o.nc.isClosed();
  }

  /** Whether {@link WakeChannel.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Seal a payload as JSON and publish it; a failure is logged and counted
   * (`cluster-wake-failed`, code `publish`), not thrown.
   * @param payload the wake-up
   */
  publish(payload: unknown): void {
    try {
      const env = sealEnvelope(this.#o.keys, {
        node: this.#o.node,
        boot: this.#boot,
        seq: ++this.#seq,
        time: this.#now(),
        subject: this.subject,
        payload: utf8(JSON.stringify(payload)),
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

  /** Envelopes refused so far, by code. */
  refusals(): Record<string, number> {
    return this.#refusals.byCode();
  }

  /** Unsubscribe; the connection stays the caller's. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#sub?.close();
  }
}

/**
 * A wake-up's payload as a JSON object whose `t` is `t`; its other fields
 * are the caller's to check.
 * @param payload the envelope's payload
 * @param t the kind expected (`mail-wake`, `room-wake`)
 * @returns the object
 * @throws {ProtocolError} `cluster-malformed`: not JSON, or not a `t`
 */
export function wakeBody(
  payload: Uint8Array,
  t: string,
): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(fromUtf8(payload, "cluster payload"));
  } catch {
    throw new ProtocolError("cluster-malformed", "payload is not JSON");
  }
  const b = body as { t?: unknown };
  if (typeof b !== "object" || b === null || b.t !== t) {
    throw new ProtocolError("cluster-malformed", `not a ${t}`);
  }
  return b as Record<string, unknown>;
}
