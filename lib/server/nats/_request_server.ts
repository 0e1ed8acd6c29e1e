/**
 * {@link RequestServer}: the answering side of the requests between nodes
 * (PROTOCOL.md 11.4). A request on this node's subject is opened, checked
 * (sealed after this node started, for this node, with a reply subject),
 * and applied as the authority on this node's users: a `kick` closes a
 * connection; a `deliver` applies a `grant` or `cancelled` to the user's
 * state first, then writes the push to its link here. The answer is sealed
 * for the request's reply subject.
 * @module
 */

import type {
  Msg,
  NatsConnection,
  Subscription,
} from "@nats-io/transport-node";
import { isValidUsername } from "../../proto/mod.ts";
import { type Logger, ProtocolError } from "../../util/mod.ts";
import { LocalDelivery } from "../memory/delivery.ts";
import type { DeliverOptions, Presence, Push } from "../seams.ts";
import { sameSession } from "../sessions.ts";
import type { NodeEnvelopes } from "./_node_envelopes.ts";
import {
  type Answer,
  FINGERPRINT,
  type KickHandler,
  type KickReason,
  PUSHES,
  REASONS,
  REPLY_SUBJECT,
  TICKET_ID,
} from "./_node_wire.ts";

/** Options of {@link RequestServer}. */
export interface RequestServerOptions {
  nc: NatsConnection;
  /** This node's name. */
  node: string;
  /** The subject this node answers on. */
  subject: string;
  envelopes: NodeEnvelopes;
  /** This node's users' states, which a `grant` or `cancelled` changes. */
  presence: Presence;
  /** This node's start: a request sealed before it is refused. */
  startedAt: number;
  log: Logger;
  /** Keeps a request being served until it is answered, for `close`. */
  track: <T>(p: Promise<T>) => Promise<T>;
}

/** What this node answers to the others' requests. */
export class RequestServer {
  readonly #o: RequestServerOptions;
  #sub: Subscription | undefined;
  #local: LocalDelivery = new LocalDelivery(() => undefined);
  #kick: KickHandler = () => false;
  #closed = false;

  /** @param o the connection, names, envelopes, presence, start; logger, tracker */
  constructor(o: RequestServerOptions) {
    this.#o = o;
  }

  /**
   * This node's connections, and what to do with a `kick`.
   * @param local writes to the users connected here
   * @param kick closes a user's connection here
   */
  attach(local: LocalDelivery, kick: KickHandler): void {
    this.#local = local;
    this.#kick = kick;
  }

  /** Subscribe to this node's subject (the caller flushes). */
  subscribe(): void {
    this.#sub = this.#o.nc.subscribe(this.#o.subject, {
      callback: (err, msg) => {
        if (!err) this.#o.track(this.#serve(msg));
      },
    });
  }

  /** Unsubscribe; requests that arrive after are not served. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#sub?.unsubscribe();
    } catch { /* the connection closed first */ }
  }

  async #serve(m: Msg): Promise<void> {
    if (this.#closed) return;
    const { envelopes, nc } = this.#o;
    const got = envelopes.open(m.data, m.subject, "?");
    if (!got) return;
    // 11.4: a request sealed before this node started was recorded off
    // NATS from an earlier run of this node (whose window is gone), and
    // one for another node was redirected here: both refused.
    if (got.time < this.#o.startedAt) {
      envelopes.refuse(
        new ProtocolError(
          "cluster-stale",
          "request sealed before this node started",
        ),
        got.node,
      );
      return;
    }
    const reply = got.body.reply;
    if (got.body.to !== this.#o.node) {
      envelopes.refuse(
        new ProtocolError("cluster-malformed", "request for another node"),
        got.node,
      );
      return;
    }
    if (
      typeof reply !== "string" || reply.length > 200 ||
      !REPLY_SUBJECT.test(reply)
    ) {
      envelopes.refuse(
        new ProtocolError("cluster-malformed", "no reply subject"),
        got.node,
      );
      return;
    }
    let answer: Answer | undefined;
    try {
      answer = await this.#handle(got.node, got.body);
    } catch (e) {
      envelopes.refuse(e, got.node);
      return;
    }
    if (!answer || nc.isClosed()) return;
    try {
      nc.publish(reply, envelopes.seal(reply, answer));
    } catch (e) {
      this.#o.log("cluster-answer-failed", {
        node: this.#o.node,
        to: got.node,
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  async #handle(
    from: string,
    b: Record<string, unknown>,
  ): Promise<Answer | undefined> {
    const user = b.user;
    if (typeof user !== "string" || !isValidUsername(user)) {
      throw new ProtocolError("cluster-malformed", "no user");
    }
    if (b.t === "kick") {
      if (typeof b.reason !== "string" || !REASONS.has(b.reason)) {
        throw new ProtocolError("cluster-malformed", "kick reason");
      }
      const keep = b.keep;
      if (
        keep !== undefined &&
        (typeof keep !== "string" || !FINGERPRINT.test(keep))
      ) {
        throw new ProtocolError("cluster-malformed", "kick keep");
      }
      this.#o.log("cluster-kick", {
        node: this.#o.node,
        from,
        user,
        reason: b.reason,
      });
      return {
        ok: this.#kick(user, b.reason as KickReason, keep)
          ? "closed"
          : "absent",
      };
    }
    if (b.t !== "deliver") {
      throw new ProtocolError("cluster-malformed", `unknown request`);
    }
    const msg = b.msg as Push | undefined;
    if (
      typeof msg !== "object" || msg === null || !PUSHES.has(msg.t) ||
      (b.max !== undefined && typeof b.max !== "number") ||
      (b.session !== undefined &&
        (typeof b.session !== "string" || !TICKET_ID.test(b.session)))
    ) {
      throw new ProtocolError("cluster-malformed", "not a push");
    }
    const opts: DeliverOptions = b.max === undefined
      ? {}
      : { maxQueuedBytes: b.max as number };
    const presence = this.#o.presence;
    const own = presence.get(user);
    if (!own || own.node !== this.#o.node) return { ok: "absent" };
    let addr: string | undefined;
    if (msg.t === "grant") {
      // Another joiner's grant got here first, or the host stopped hosting
      // (the joiner's node's view lags): void, and the joiner's node tells
      // its joiner (11.4).
      if (own.state !== "HOSTING") {
        return { ok: own.state === "BUSY" ? "busy" : "not-hosting" };
      }
      addr = own.addr;
      presence.update(user, {
        state: "BUSY",
        ...(own.addr !== undefined && { addr: own.addr }),
        partner: msg.peer,
        isHost: true,
        ticketId: msg.ticketId,
      });
    } else if (msg.t === "relayed") {
      // The sender's node checked the sender's side; this one checks ours.
      if (own.state !== "BUSY" || own.partner !== msg.peer) {
        return { ok: "absent" };
      }
    } else if (msg.t === "cancelled") {
      // Only the session it names: the peer's node may have sent it as
      // its user ended the last session, and crossed the grant of a newer
      // one between the same two users (sent by this node's KDC at once,
      // on a view of the peer that lags).
      if (
        own.state !== "BUSY" || own.partner !== msg.peer ||
        !sameSession(own.ticketId, b.session as string | undefined)
      ) {
        return { ok: "absent" };
      }
      presence.update(user, { state: "IDLE" });
    }
    const r = this.#local.deliver(user, msg, opts);
    if (!r.delivered) return { ok: r.reason };
    const e = await r.written;
    if (e) return { ok: "failed", code: e.code, message: e.message };
    return addr === undefined ? { ok: "written" } : { ok: "written", addr };
  }
}
