/**
 * {@link NodeRequests}: the asking side of the requests between nodes
 * (PROTOCOL.md 11.4): a request sealed to the other node's subject names a
 * reply subject under this node's own inbox; the answer settles it only
 * when it is sealed for exactly that subject by that node; no answer within
 * the timeout, NATS down, or this node leaving stands as
 * `cluster-unreachable`.
 * @module
 */

import {
  createInbox,
  type Msg,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import { type Logger, type NetError, ProtocolError } from "../../util/mod.ts";
import type { NodeEnvelopes } from "./_node_envelopes.ts";
import { type Answer, nodeSubject, unreachable } from "./_node_wire.ts";

/** Options of {@link NodeRequests}. */
export interface NodeRequestsOptions {
  nc: NatsConnection;
  cluster: string;
  /** This node's name, for the log. */
  node: string;
  envelopes: NodeEnvelopes;
  /** Whether NATS is down now (the presence view is partial). */
  partial: () => boolean;
  timeoutMs: number;
  log: Logger;
  /** Keeps a request's promise until it settles, for `close`. */
  track: <T>(p: Promise<T>) => Promise<T>;
}

/** The requests this node makes of others, and their answers. */
export class NodeRequests {
  readonly #o: NodeRequestsOptions;
  readonly #inbox = createInbox();
  #reqId = 0;
  #sub: Subscription | undefined;
  #waiting = new Map<
    string,
    { node: string; done: (a: Answer | NetError) => void }
  >();
  #closed = false;

  /** @param o the connection, names, envelopes; NATS state, timeout, logger, tracker */
  constructor(o: NodeRequestsOptions) {
    this.#o = o;
  }

  /** Subscribe to this node's inbox (the caller flushes). */
  subscribe(): void {
    this.#sub = this.#o.nc.subscribe(`${this.#inbox}.*`, {
      callback: (err, msg) => {
        if (!err) this.#answered(msg);
      },
    });
  }

  /**
   * Unsubscribe, and settle every request still waiting as unreachable.
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#sub?.unsubscribe();
    } catch { /* the connection closed first */ }
    for (const w of [...this.#waiting.values()]) {
      w.done(unreachable(w.node, "this node left the cluster"));
    }
  }

  /**
   * A request to `node`, its answer or the error that stands for none.
   * @param node the node asked
   * @param body the request (`t` and its fields)
   * @returns the answer, or a `cluster-unreachable` error
   */
  request(
    node: string,
    body: Record<string, unknown>,
  ): Promise<Answer | NetError> {
    const o = this.#o;
    if (this.#closed || o.nc.isClosed()) {
      return Promise.resolve(unreachable(node, "this node left the cluster"));
    }
    if (o.partial()) {
      return Promise.resolve(unreachable(node, "NATS is down"));
    }
    const subject = nodeSubject(o.cluster, node);
    // Our own reply subject, inside the sealed request: the answer must be
    // sealed for exactly it, and anything else arriving there is refused
    // (counted) while the request waits for the real one.
    const id = String(++this.#reqId);
    const reply = `${this.#inbox}.${id}`;
    let env: Uint8Array;
    try {
      env = o.envelopes.seal(subject, { ...body, to: node, reply });
    } catch (e) {
      return Promise.resolve(unreachable(node, (e as Error).message));
    }
    return o.track(
      new Promise<Answer | NetError>((resolve) => {
        const timer = setTimeout(() => {
          o.log("cluster-request-failed", {
            node: o.node,
            to: node,
            error: "timeout",
          });
          done(unreachable(node, "no answer within 2 s"));
        }, o.timeoutMs);
        const done = (a: Answer | NetError) => {
          clearTimeout(timer);
          this.#waiting.delete(id);
          resolve(a);
        };
        this.#waiting.set(id, { node, done });
        try {
          o.nc.publish(subject, env, { reply });
        } catch (e) {
          done(unreachable(node, e instanceof Error ? e.message : String(e)));
        }
      }),
    );
  }

  /** An answer on our inbox: settles its request only when it verifies. */
  #answered(m: Msg): void {
    const envelopes = this.#o.envelopes;
    const id = m.subject.slice(this.#inbox.length + 1);
    const w = this.#waiting.get(id);
    if (!w) {
      envelopes.refuse(
        new ProtocolError("cluster-malformed", "an answer nobody waits for"),
        "?",
      );
      return;
    }
    const got = envelopes.open(m.data, m.subject, w.node);
    if (!got) return;
    const a = got.body as Answer;
    if (got.node !== w.node || typeof a.ok !== "string") {
      envelopes.refuse(
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
}
