/**
 * {@link NatsDelivery}: the {@link Delivery} of a cluster node (PROTOCOL.md
 * 11.4). A user connected to this node is reached through its connection
 * here, as {@link LocalDelivery} does; a user whose presence entry names
 * another node by a request to that node's subject `im.<cluster>.node.<node>`:
 * a sealed envelope (11.2) bound to the subject, answered by an envelope
 * bound to the request's reply subject.
 *
 * | payload `t` | does                                                           | answer                                               |
 * | ----------- | -------------------------------------------------------------- | ---------------------------------------------------- |
 * | `deliver`   | `{user, msg, max?, session?}`: write `msg` to the user's link | `{ok: "written" \| "absent" \| "busy" \| "failed"}` |
 * | `kick`      | `{user, reason, keep?}`: close the user's connection           | `{ok: "closed" \| "absent"}`                         |
 *
 * A remote delivery is `{delivered: true, written}` at once; `written`
 * settles with the answer: `undefined` for `written`, an error otherwise
 * (`cluster-unreachable` when no answer came within 2 s, or at once when
 * NATS is down). Each node is the authority on its own users' states, so
 * the node that writes a session's pushes applies them to its user first:
 * a `grant` makes the host BUSY with the joiner and is answered with the
 * address the host hosts at, which the joiner is sent to (`hostAddr`; a
 * host that is not HOSTING is `busy` or `not-hosting`, nothing applied); a
 * `cancelled` makes the user IDLE, and is written only when the user is
 * still BUSY with that peer in the session it names by its ticket id
 * (`session`, when the sender knew it: the same cut told twice, by the
 * peer's node and by presence, reaches the user once, and one of an earlier
 * session, which can cross the next grant, none).
 *
 * An envelope that does not verify, or whose payload is not one of the
 * above, is refused: counted, logged (`cluster-refused`), not answered.
 *
 * The delivery is split by job; {@link NatsDelivery} composes the parts:
 * - `_node_wire.ts`: the node subject, the answers, the request fields'
 *   patterns;
 * - `_node_envelopes.ts`: sealing and opening the envelopes, the replay
 *   window with one boot per node, the refusals counted and logged;
 * - `_node_requests.ts`: the requests this node makes and their answers;
 * - `_request_server.ts`: the answers this node gives.
 *
 * @example
 * ```ts ignore
 * const d = await NatsDelivery.open({ nc, cluster: "team", node: "n1", keys, presence });
 * d.attach((user) => registry.outbox(user), { kick: (user, reason) => server.kick(user, reason) });
 * d.deliver("B", { t: "cancelled", peer: "A", message: "A left" }); // B on n2: a request to n2
 * await d.close();
 * ```
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { type ClusterKeys, isValidUsername } from "../../proto/mod.ts";
import { type ImError, type Logger, NetError } from "../../util/mod.ts";
import { LocalDelivery } from "../memory/delivery.ts";
import type {
  DeliverOptions,
  Delivery,
  DeliveryReceipt,
  Outbox,
  Presence,
  Push,
} from "../seams.ts";
import { NodeEnvelopes } from "./_node_envelopes.ts";
import { NodeRequests } from "./_node_requests.ts";
import {
  HOST_ADDR,
  type KickHandler,
  type KickReason,
  nodeSubject,
} from "./_node_wire.ts";
import { RequestServer } from "./_request_server.ts";

export { REFUSAL_LOG_INTERVAL_MS } from "./_node_envelopes.ts";
export {
  type KickHandler,
  type KickReason,
  nodeSubject,
} from "./_node_wire.ts";

/** How long a node waits for another's answer (ms, 11.4). */
export const DELIVERY_TIMEOUT_MS = 2_000;

/** Options of {@link NatsDelivery.open}. */
export interface NatsDeliveryOptions {
  /** A connected NATS client; the caller closes it. */
  nc: NatsConnection;
  /** The cluster's name (rule 2.9). */
  cluster: string;
  /** This node's name (rule 2.9). */
  node: string;
  /** The cluster key's keys (11.2). */
  keys: ClusterKeys;
  /**
   * Where users are (their entry's `node`), and this node's users' states,
   * which a `grant` or `cancelled` from another node changes. `partial`,
   * when it has one, says NATS is down.
   */
  presence: Presence & { readonly partial?: boolean };
  /** Answer wait (default {@link DELIVERY_TIMEOUT_MS}). */
  timeoutMs?: number;
  /** The clock for envelope times (default `Date.now`). */
  now?: () => number;
  /** Where refusals and failures are logged. */
  log?: Logger;
}

/**
 * Delivery across the nodes of a cluster (PROTOCOL.md 11.4). Open it with
 * {@link NatsDelivery.open}, give it this node's connections with
 * {@link NatsDelivery.attach}, close it with {@link NatsDelivery.close}.
 */
export class NatsDelivery implements Delivery {
  readonly node: string;
  readonly subject: string;
  readonly #nc: NatsConnection;
  readonly #presence: Presence & { readonly partial?: boolean };
  readonly #envelopes: NodeEnvelopes;
  readonly #requests: NodeRequests;
  readonly #server: RequestServer;
  /** This node's start: a request sealed before it is refused (11.4). */
  readonly startedAt: number;
  #local: LocalDelivery = new LocalDelivery(() => undefined);
  #kick: KickHandler = () => false;
  #closed = false;
  #pending = new Set<Promise<unknown>>();

  private constructor(o: NatsDeliveryOptions) {
    this.node = o.node;
    this.#nc = o.nc;
    this.#presence = o.presence;
    const now = o.now ?? Date.now;
    const log = o.log ?? (() => {});
    const track = <T>(p: Promise<T>) => this.#track(p);
    this.subject = nodeSubject(o.cluster, o.node);
    this.#envelopes = new NodeEnvelopes({
      node: o.node,
      keys: o.keys,
      now,
      log,
    });
    this.startedAt = now();
    this.#requests = new NodeRequests({
      nc: o.nc,
      cluster: o.cluster,
      node: o.node,
      envelopes: this.#envelopes,
      partial: () => this.#presence.partial === true,
      timeoutMs: o.timeoutMs ?? DELIVERY_TIMEOUT_MS,
      log,
      track,
    });
    this.#server = new RequestServer({
      nc: o.nc,
      node: o.node,
      subject: this.subject,
      envelopes: this.#envelopes,
      presence: o.presence,
      startedAt: this.startedAt,
      log,
      track,
    });
  }

  /**
   * Subscribe to this node's subject, and wait until NATS has the
   * subscription (so a request right after finds it).
   * @param o the connection, cluster, node, keys, presence; timeout, clock, logger
   * @returns the delivery
   * @throws {RangeError} a cluster or node name not of rule 2.9
   */
  static async open(o: NatsDeliveryOptions): Promise<NatsDelivery> {
    if (!isValidUsername(o.cluster)) {
      throw new RangeError(`cluster name "${o.cluster}" (rule 2.9)`);
    }
    if (!isValidUsername(o.node)) {
      throw new RangeError(`node name "${o.node}" (rule 2.9)`);
    }
    const d = new NatsDelivery(o);
    d.#server.subscribe();
    d.#requests.subscribe();
    await o.nc.flush();
    return d;
  }

  /**
   * This node's connections, and what to do with a `kick`.
   * @param local a user's connection here, if any (the registry's)
   * @param hooks `kick`: close a user's connection here
   */
  attach(
    local: (user: string) => Outbox | undefined,
    hooks: { kick?: KickHandler } = {},
  ): void {
    this.#local = new LocalDelivery(local);
    if (hooks.kick) this.#kick = hooks.kick;
    this.#server.attach(this.#local, this.#kick);
  }

  /** Envelopes refused so far. */
  get refused(): number {
    return this.#envelopes.refused;
  }

  /** Refusals so far by code. */
  refusals(): Record<string, number> {
    return this.#envelopes.refusals();
  }

  deliver(user: string, msg: Push, opts: DeliverOptions = {}): DeliveryReceipt {
    const entry = this.#presence.get(user);
    if (!entry || entry.node === this.node) {
      return this.#local.deliver(user, msg, opts);
    }
    const body: Record<string, unknown> = { t: "deliver", user, msg };
    if (opts.maxQueuedBytes !== undefined) body.max = opts.maxQueuedBytes;
    if (opts.session !== undefined) body.session = opts.session;
    const answered = this.#requests.request(entry.node, body);
    const written = answered.then(
      (a): ImError | undefined => {
        if (a instanceof NetError) return a;
        switch (a.ok) {
          case "written":
            return undefined;
          case "failed":
            return new NetError(a.code, a.message);
          case "busy":
            return new NetError(
              "busy",
              msg.t === "grant"
                ? `${user} is busy in another session`
                : `${user} is not keeping up (node ${entry.node})`,
            );
          case "not-hosting":
            return new NetError("not-hosting", `${user} is not hosting`);
          default:
            return new NetError(
              "closed",
              `${user} is no longer connected to node ${entry.node}`,
            );
        }
      },
    );
    if (msg.t !== "grant") return { delivered: true, written };
    // 11.4: the host's node gives the address its host hosts at now.
    const hostAddr = answered.then((a) =>
      !(a instanceof NetError) && a.ok === "written" &&
        typeof a.addr === "string" && HOST_ADDR.test(a.addr)
        ? a.addr
        : undefined
    );
    return { delivered: true, written, hostAddr };
  }

  /**
   * Close a user's connection wherever it is (11.4 `kick`).
   * @param user the user
   * @param reason told to the user
   * @param keep a key fingerprint: a connection that logged in with it is
   *   kept (a revocation of a key replaced by this one)
   * @returns `closed`, `absent`, or the error when its node did not answer
   */
  async kick(
    user: string,
    reason: KickReason,
    keep?: string,
  ): Promise<"closed" | "absent" | NetError> {
    const entry = this.#presence.get(user);
    if (!entry || entry.node === this.node) {
      return this.#kick(user, reason, keep) ? "closed" : "absent";
    }
    const a = await this.#requests.request(entry.node, {
      t: "kick",
      user,
      reason,
      ...(keep !== undefined && { keep }),
    });
    if (a instanceof NetError) return a;
    return a.ok === "closed" ? "closed" : "absent";
  }

  /**
   * Unsubscribe and wait for the requests being served. The connection
   * stays the caller's. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    this.#requests.close();
    await Promise.allSettled([...this.#pending]);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p)).catch(() => {});
    return p;
  }
}
