/**
 * The messages of a logged-in client: {@link Requests} reads a
 * connection's channel until it closes (reading on while a message is
 * handled, PROTOCOL.md section 4), holds each request to the user's rate
 * limits (section 5.2) and hands it to the part whose job it is: the
 * mailbox (mailbox.ts), the rooms (rooms.ts), the key distribution centre
 * (kdc.ts), the relay (relay.ts, or to a partner on another node, 11.4)
 * and the `!list` cache (limits.ts). Every direct answer goes through the
 * request's {@link Reply} (5.1). What a leave does is the facade's
 * (server.ts): it is given as `leave`.
 * @module
 */

import { isImError, type Logger } from "../util/mod.ts";
import type { ClientToServer } from "../proto/mod.ts";
import type { Kdc } from "./kdc.ts";
import { isMailRequest, type Mailbox } from "./mailbox.ts";
import { isRoomRequest, type Rooms } from "./rooms.ts";
import type { ServerSettings } from "./options.ts";
import {
  type ClientSession,
  type Registry,
  type Reply,
  replyTo,
} from "./registry.ts";
import { type Relay, RELAY_QUEUE_BUDGET_BYTES } from "./relay.ts";
import { readAhead } from "./read_ahead.ts";
import {
  type LimitedRequest,
  LIST_QUEUE_BUDGET_BYTES,
  type ListCache,
  type RequestLimits,
} from "./limits.ts";
import type { Delivery, Presence } from "./seams.ts";

/** What {@link Requests} hands the messages to. */
export interface RequestsOptions {
  presence: Presence;
  delivery: Delivery;
  registry: Registry;
  kdc: Kdc;
  relay: Relay;
  limits: RequestLimits;
  listCache: ListCache;
  mailbox: Mailbox;
  rooms: Rooms;
  /** This node (PROTOCOL.md 11.4) and whether the cluster is cut off (11.5). */
  settings: Pick<ServerSettings, "node" | "partial">;
  log: Logger;
  /** The connection is gone (closed, or `bye`): the facade's leave. */
  leave: (s: ClientSession, reason: string) => void;
}

/** Handles a logged-in connection's messages, one connection a call. */
export class Requests {
  #presence: Presence;
  #delivery: Delivery;
  #registry: Registry;
  #kdc: Kdc;
  #relay: Relay;
  #limits: RequestLimits;
  #listCache: ListCache;
  #mailbox: Mailbox;
  #rooms: Rooms;
  #c: Pick<ServerSettings, "node" | "partial">;
  #log: Logger;
  #leave: (s: ClientSession, reason: string) => void;

  /** @param o the parts the messages go to, and the facade's leave */
  constructor(o: RequestsOptions) {
    this.#presence = o.presence;
    this.#delivery = o.delivery;
    this.#registry = o.registry;
    this.#kdc = o.kdc;
    this.#relay = o.relay;
    this.#limits = o.limits;
    this.#listCache = o.listCache;
    this.#mailbox = o.mailbox;
    this.#rooms = o.rooms;
    this.#c = o.settings;
    this.#log = o.log;
    this.#leave = o.leave;
  }

  /**
   * Handle the connection's messages until it closes; then it leaves.
   * @param s the logged-in connection
   */
  async serve(s: ClientSession): Promise<void> {
    const { user, channel } = s;
    let lastError = "";
    // Read on while a message is handled (PROTOCOL.md section 4): a slow
    // request must not make the client look silent to its channel.
    for await (const ev of readAhead(channel.events())) {
      if (ev.kind === "message") {
        const reply = replyTo(s, ev.msg);
        try {
          await this.#onMessage(s, ev.msg, reply);
        } catch (e) {
          if (!isImError(e)) {
            this.#log("internal-error", { user, error: (e as Error).message });
          } else if (!channel.closed) {
            await reply({ t: "error", code: e.code, message: e.message })
              .catch(() => {});
          }
        }
      } else if (ev.kind === "discarded") {
        this.#log("record-discarded", { user, reason: ev.error.code });
        await channel.send({
          t: "error",
          code: ev.error.code,
          message: ev.error.message,
        }).catch(() => {});
      } else if (ev.kind === "lost") {
        this.#log("records-lost", { user, count: Number(ev.count) });
        // Rule 3.5: a jump is reported, so the user knows a command vanished.
        await channel.send({
          t: "error",
          code: "lost",
          message:
            `${ev.count} of your messages to the server were lost on the way`,
        }).catch(() => {});
      } else if (ev.kind === "closed") {
        lastError = ev.error?.code ?? ev.reason;
      }
    }
    this.#leave(s, lastError);
  }

  /** One message; every direct answer goes through `reply` (PROTOCOL.md 5.1). */
  #onMessage(s: ClientSession, m: ClientToServer, reply: Reply): Promise<void> {
    if (
      (m.t === "list" || m.t === "session" || m.t === "host") &&
      !this.#allowed(s, m.t)
    ) {
      return reply({
        t: "error",
        code: "rate-limited",
        message: `Too many ${
          m.t === "list"
            ? "!list"
            : m.t === "host"
            ? "!session host"
            : "!session"
        } requests; wait a moment and try again`,
      });
    }
    if (isMailRequest(m)) return this.#mailbox.handle(s, m, reply);
    if (isRoomRequest(m)) return this.#rooms.handle(s, m, reply);
    switch (m.t) {
      case "list":
        // Sections 5.2, 5.3: a page, never sorted per request.
        return reply({ t: "users", ...this.#listCache.answer(m) });
      case "host":
        return this.#kdc.host(s, m, reply);
      case "session":
        if (
          this.#c.partial?.() && m.peer !== s.user &&
          !this.#registry.has(m.peer)
        ) {
          // PROTOCOL.md 11.5: the peer may be on a node we cannot reach. A
          // refusal (every client leaves JOINING on one), its words saying why.
          return reply({
            t: "refused",
            peer: m.peer.slice(0, 40),
            reason: "offline",
            message: `Cannot reach ${
              m.peer.slice(0, 40)
            }: the other servers of the cluster cannot be reached now; only users on this server can start a session`,
          });
        }
        return this.#kdc.session(s, m, reply);
      case "relay":
        if (
          (this.#presence.get(m.peer)?.node ?? this.#c.node) !== this.#c.node
        ) {
          return this.#relayAcross(s, m, reply);
        }
        return this.#relay.forward(s, m, reply);
      case "unhost":
        this.#kdc.unhost(s);
        break;
      case "ended":
        this.#kdc.ended(s, m);
        break;
      case "busy":
        this.#kdc.busy(s, m);
        break;
      case "cancel":
        this.#kdc.cancel(s, m);
        break;
      case "bye":
        this.#leave(s, "logout");
        return s.channel.close("logout");
    }
    return Promise.resolve();
  }

  /**
   * A relay to a partner on another node (PROTOCOL.md 11.4): each node is
   * the authority on its own user's session, so this one checks the
   * sender's partner and the partner's node checks its user's (a `relayed`
   * for a user not in a session with the sender is dropped there). Refused
   * as {@link Relay.forward} refuses: `no-session`, `relay-busy`,
   * `relay-too-large`.
   */
  #relayAcross(
    s: ClientSession,
    m: Extract<ClientToServer, { t: "relay" }>,
    reply: Reply,
  ): Promise<void> {
    if (this.#presence.get(s.user)?.partner !== m.peer) {
      return reply({
        t: "error",
        code: "no-session",
        message: `No session with ${m.peer.slice(0, 40)} to relay to`,
      });
    }
    const r = this.#delivery.deliver(
      m.peer,
      { t: "relayed", peer: s.user, data: m.data },
      { maxQueuedBytes: RELAY_QUEUE_BUDGET_BYTES },
    );
    if (!r.delivered) return Promise.resolve();
    r.written.then((e) => {
      if (e?.code === "cluster-unreachable") {
        // 11.5: NATS is down or the partner's node does not answer.
        return reply({
          t: "error",
          code: "cluster-unreachable",
          message: `Cannot relay to ${m.peer}: ${e.message}`,
        });
      }
      if (e?.code === "busy") {
        return reply({
          t: "error",
          code: "relay-busy",
          message: `${m.peer} is not keeping up; relayed message not delivered`,
        });
      }
      if (e?.code === "message-too-large") {
        return reply({
          t: "error",
          code: "relay-too-large",
          message:
            `Cannot relay ${m.data.length} bytes to ${m.peer}: ${e.message}`,
        });
      }
    }).catch(() => {});
    return Promise.resolve();
  }

  /** Section 5.2: the user's bucket for this request, and for `list` its unsent bytes. */
  #allowed(s: ClientSession, kind: LimitedRequest): boolean {
    if (
      kind === "list" &&
      s.channel.transport.queuedBytes > LIST_QUEUE_BUDGET_BYTES
    ) return false;
    return this.#limits.take(s.user, kind);
  }
}
