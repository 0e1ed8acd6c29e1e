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
 * @example
 * ```ts ignore
 * const d = await NatsDelivery.open({ nc, cluster: "team", node: "n1", keys, presence });
 * d.attach((user) => registry.outbox(user), { kick: (user, reason) => server.kick(user, reason) });
 * d.deliver("B", { t: "cancelled", peer: "A", message: "A left" }); // B on n2: a request to n2
 * await d.close();
 * ```
 * @module
 */

import {
  createInbox,
  type Msg,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import {
  type ClusterKeys,
  EnvelopeWindow,
  isValidUsername,
  openEnvelope,
  sealEnvelope,
} from "../../proto/mod.ts";
import {
  fromUtf8,
  type ImError,
  type Logger,
  NetError,
  ProtocolError,
  randomBytes,
  utf8,
} from "../../util/mod.ts";
import { LocalDelivery } from "../memory/delivery.ts";
import type {
  DeliverOptions,
  Delivery,
  DeliveryReceipt,
  Outbox,
  Presence,
  Push,
} from "../seams.ts";
import { sameSession } from "../sessions.ts";

/** How long a node waits for another's answer (ms, 11.4). */
export const DELIVERY_TIMEOUT_MS = 2_000;

/** At most one refusal log line per code per this many ms (11.4). */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** How long a node's earlier boot is remembered after a newer one is seen (ms). */
const RETIRED_BOOT_MS = 5 * 60_000;

/** A reply subject a request may name: NATS subject tokens, no wildcards. */
const REPLY_SUBJECT = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,15}$/;

/**
 * The replay window, one boot per node: once a node's newer boot is seen,
 * its earlier boots' windows are forgotten and their envelopes refused
 * (`cluster-replayed`) while they could still pass the time check.
 */
class BootWindow extends EnvelopeWindow {
  #current = new Map<string, string>();
  #retired = new Map<string, number>();
  readonly #now: () => number;

  constructor(now: () => number) {
    super();
    this.#now = now;
  }

  override take(node: string, boot: Uint8Array, seq: number): boolean {
    const id = `${node}\0${boot.toHex()}`;
    const now = this.#now();
    for (const [old, at] of this.#retired) {
      if (now - at > RETIRED_BOOT_MS) this.#retired.delete(old);
    }
    if (this.#retired.has(id)) return false;
    const current = this.#current.get(node);
    if (current !== id) {
      if (current !== undefined) {
        this.#retired.set(current, now);
        this.forget(node);
      }
      this.#current.set(node, id);
    }
    return super.take(node, boot, seq);
  }

  /** Boots remembered (for tests). */
  get boots(): number {
    return this.#current.size + this.#retired.size;
  }
}

/** Why a connection is closed by a `kick`. */
export type KickReason = "replaced" | "revoked";

/**
 * What a node does with a `kick` for one of its users: true when it closed
 * a connection (none, or one that logged in with the key `keep` names: false).
 */
export type KickHandler = (
  user: string,
  reason: KickReason,
  keep?: string,
) => boolean;

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

const PUSHES: ReadonlySet<string> = new Set(["grant", "cancelled", "relayed"]);
const REASONS: ReadonlySet<string> = new Set(["replaced", "revoked"]);
/** A session a `cancelled` may name: a ticket id, hex (11.4). */
const TICKET_ID = /^[0-9a-f]{1,128}$/;
/** A host's address in a grant's answer (11.4), as `host` takes it (6). */
const HOST_ADDR = /^[A-Za-z0-9.:\[\]_-]{1,80}:\d{1,5}$/;
/** A key fingerprint a `kick` may name in `keep`: printable, no spaces. */
const FINGERPRINT = /^[\x21-\x7e]{1,128}$/;

type Answer =
  | { ok: "written"; addr?: string }
  | { ok: "absent" | "busy" | "closed" | "not-hosting" }
  | { ok: "failed"; code: string; message: string };

/** The subject a node answers on (11.4). */
export function nodeSubject(cluster: string, node: string): string {
  return `im.${cluster}.node.${node}`;
}

function unreachable(node: string, why: string): NetError {
  return new NetError(
    "cluster-unreachable",
    `Node ${node} cannot be reached (${why})`,
  );
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
  readonly #cluster: string;
  readonly #keys: ClusterKeys;
  readonly #presence: Presence & { readonly partial?: boolean };
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #boot = randomBytes(8);
  readonly #window: BootWindow;
  /** This node's start: a request sealed before it is refused (11.4). */
  readonly startedAt: number;
  readonly #inbox = createInbox();
  #seq = 0;
  #reqId = 0;
  #sub: Subscription | undefined;
  #inboxSub: Subscription | undefined;
  #waiting = new Map<
    string,
    { node: string; done: (a: Answer | NetError) => void }
  >();
  #logged = new Map<string, { at: number; since: number }>();
  #local: LocalDelivery = new LocalDelivery(() => undefined);
  #kick: KickHandler = () => false;
  #refused = 0;
  #refusedByCode = new Map<string, number>();
  #closed = false;
  #pending = new Set<Promise<unknown>>();

  private constructor(o: NatsDeliveryOptions) {
    this.node = o.node;
    this.#nc = o.nc;
    this.#cluster = o.cluster;
    this.#keys = o.keys;
    this.#presence = o.presence;
    this.#timeoutMs = o.timeoutMs ?? DELIVERY_TIMEOUT_MS;
    this.#now = o.now ?? Date.now;
    this.#log = o.log ?? (() => {});
    this.subject = nodeSubject(o.cluster, o.node);
    this.#window = new BootWindow(this.#now);
    this.startedAt = this.#now();
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
    d.#sub = o.nc.subscribe(d.subject, {
      callback: (err, msg) => {
        if (!err) d.#track(d.#serve(msg));
      },
    });
    d.#inboxSub = o.nc.subscribe(`${d.#inbox}.*`, {
      callback: (err, msg) => {
        if (!err) d.#answered(msg);
      },
    });
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
  }

  /** Envelopes refused so far. */
  get refused(): number {
    return this.#refused;
  }

  /** Refusals so far by code. */
  refusals(): Record<string, number> {
    return Object.fromEntries(this.#refusedByCode);
  }

  deliver(user: string, msg: Push, opts: DeliverOptions = {}): DeliveryReceipt {
    const entry = this.#presence.get(user);
    if (!entry || entry.node === this.node) {
      return this.#local.deliver(user, msg, opts);
    }
    const body: Record<string, unknown> = { t: "deliver", user, msg };
    if (opts.maxQueuedBytes !== undefined) body.max = opts.maxQueuedBytes;
    if (opts.session !== undefined) body.session = opts.session;
    const answered = this.#request(entry.node, body);
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
    const a = await this.#request(entry.node, {
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
    try {
      this.#sub?.unsubscribe();
      this.#inboxSub?.unsubscribe();
    } catch { /* the connection closed first */ }
    for (const w of [...this.#waiting.values()]) {
      w.done(unreachable(w.node, "this node left the cluster"));
    }
    await Promise.allSettled([...this.#pending]);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#pending.add(p);
    p.finally(() => this.#pending.delete(p)).catch(() => {});
    return p;
  }

  #seal(subject: string, payload: unknown): Uint8Array {
    return sealEnvelope(this.#keys, {
      node: this.node,
      boot: this.#boot,
      seq: ++this.#seq,
      time: this.#now(),
      subject,
      payload: utf8(JSON.stringify(payload)),
    });
  }

  /** Open an envelope; a refusal is counted and logged, and gives undefined. */
  #open(
    bytes: Uint8Array,
    subject: string,
    from: string,
  ): { node: string; time: number; body: Record<string, unknown> } | undefined {
    try {
      const opened = openEnvelope(this.#keys, bytes, {
        subject,
        now: this.#now(),
        window: this.#window,
      });
      let body: unknown;
      try {
        body = JSON.parse(fromUtf8(opened.payload, "cluster payload"));
      } catch {
        throw new ProtocolError("cluster-malformed", "payload is not JSON");
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new ProtocolError("cluster-malformed", "payload not an object");
      }
      return {
        node: opened.node,
        time: opened.time,
        body: body as Record<string, unknown>,
      };
    } catch (e) {
      this.#refuse(e, from);
      return undefined;
    }
  }

  #refuse(e: unknown, from: string): void {
    const code = e instanceof ProtocolError ? e.code : "cluster-malformed";
    this.#refused++;
    this.#refusedByCode.set(code, (this.#refusedByCode.get(code) ?? 0) + 1);
    // One line per code per 10 s, with how many since the last line: a
    // flood of junk cannot flood the log (the counters count them all).
    const now = this.#now();
    const l = this.#logged.get(code);
    if (l && now - l.at < REFUSAL_LOG_INTERVAL_MS) {
      l.since++;
      return;
    }
    this.#logged.set(code, { at: now, since: 0 });
    this.#log("cluster-refused", {
      node: this.node,
      from,
      code,
      reason: e instanceof Error ? e.message : String(e),
      ...(l && l.since > 0 && { suppressed: l.since }),
    });
  }

  /** A request to `node`, its answer or the error that stands for none. */
  #request(
    node: string,
    body: Record<string, unknown>,
  ): Promise<Answer | NetError> {
    if (this.#closed || this.#nc.isClosed()) {
      return Promise.resolve(unreachable(node, "this node left the cluster"));
    }
    if (this.#presence.partial) {
      return Promise.resolve(unreachable(node, "NATS is down"));
    }
    const subject = nodeSubject(this.#cluster, node);
    // Our own reply subject, inside the sealed request: the answer must be
    // sealed for exactly it, and anything else arriving there is refused
    // (counted) while the request waits for the real one.
    const id = String(++this.#reqId);
    const reply = `${this.#inbox}.${id}`;
    let env: Uint8Array;
    try {
      env = this.#seal(subject, { ...body, to: node, reply });
    } catch (e) {
      return Promise.resolve(unreachable(node, (e as Error).message));
    }
    return this.#track(
      new Promise<Answer | NetError>((resolve) => {
        const timer = setTimeout(() => {
          this.#log("cluster-request-failed", {
            node: this.node,
            to: node,
            error: "timeout",
          });
          done(unreachable(node, "no answer within 2 s"));
        }, this.#timeoutMs);
        const done = (a: Answer | NetError) => {
          clearTimeout(timer);
          this.#waiting.delete(id);
          resolve(a);
        };
        this.#waiting.set(id, { node, done });
        try {
          this.#nc.publish(subject, env, { reply });
        } catch (e) {
          done(unreachable(node, e instanceof Error ? e.message : String(e)));
        }
      }),
    );
  }

  /** An answer on our inbox: settles its request only when it verifies. */
  #answered(m: Msg): void {
    const id = m.subject.slice(this.#inbox.length + 1);
    const w = this.#waiting.get(id);
    if (!w) {
      this.#refuse(
        new ProtocolError("cluster-malformed", "an answer nobody waits for"),
        "?",
      );
      return;
    }
    const got = this.#open(m.data, m.subject, w.node);
    if (!got) return;
    const a = got.body as Answer;
    if (got.node !== w.node || typeof a.ok !== "string") {
      this.#refuse(
        new ProtocolError("cluster-malformed", "not an answer"),
        w.node,
      );
      return;
    }
    if (a.ok === "failed") {
      w.done({
        ok: "failed",
        code: typeof a.code === "string" ? a.code : "closed",
        message: typeof a.message === "string" ? a.message : "",
      });
      return;
    }
    w.done(a);
  }

  // --- serving other nodes' requests ---------------------------------------

  async #serve(m: Msg): Promise<void> {
    if (this.#closed) return;
    const got = this.#open(m.data, m.subject, "?");
    if (!got) return;
    // 11.4: a request sealed before this node started was recorded off
    // NATS from an earlier run of this node (whose window is gone), and
    // one for another node was redirected here: both refused.
    if (got.time < this.startedAt) {
      this.#refuse(
        new ProtocolError(
          "cluster-stale",
          "request sealed before this node started",
        ),
        got.node,
      );
      return;
    }
    const reply = got.body.reply;
    if (got.body.to !== this.node) {
      this.#refuse(
        new ProtocolError("cluster-malformed", "request for another node"),
        got.node,
      );
      return;
    }
    if (
      typeof reply !== "string" || reply.length > 200 ||
      !REPLY_SUBJECT.test(reply)
    ) {
      this.#refuse(
        new ProtocolError("cluster-malformed", "no reply subject"),
        got.node,
      );
      return;
    }
    let answer: Answer | undefined;
    try {
      answer = await this.#handle(got.node, got.body);
    } catch (e) {
      this.#refuse(e, got.node);
      return;
    }
    if (!answer || this.#nc.isClosed()) return;
    try {
      this.#nc.publish(reply, this.#seal(reply, answer));
    } catch (e) {
      this.#log("cluster-answer-failed", {
        node: this.node,
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
      this.#log("cluster-kick", {
        node: this.node,
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
    const own = this.#presence.get(user);
    if (!own || own.node !== this.node) return { ok: "absent" };
    let addr: string | undefined;
    if (msg.t === "grant") {
      // Another joiner's grant got here first, or the host stopped hosting
      // (the joiner's node's view lags): void, and the joiner's node tells
      // its joiner (11.4).
      if (own.state !== "HOSTING") {
        return { ok: own.state === "BUSY" ? "busy" : "not-hosting" };
      }
      addr = own.addr;
      this.#presence.update(user, {
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
      this.#presence.update(user, { state: "IDLE" });
    }
    const r = this.#local.deliver(user, msg, opts);
    if (!r.delivered) return { ok: r.reason };
    const e = await r.written;
    if (e) return { ok: "failed", code: e.code, message: e.message };
    return addr === undefined ? { ok: "written" } : { ok: "written", addr };
  }
}
