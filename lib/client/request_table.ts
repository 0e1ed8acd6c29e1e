/**
 * The table of requests in flight (PROTOCOL.md section 5.1): the next id,
 * 1, 2, 3, ... for the client's life and wrapping after
 * {@link MAX_REQUEST_ID}; each request's answer, matched by that id, never
 * by counting answers; and the end of every request still waiting when the
 * link ends or its {@link REQUEST_TIMEOUT_MS} passes.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RequestTable } from "./request_table.ts";
 * const table = new RequestTable();
 * const { req, answer } = table.add({ t: "list" }, false);
 * assert.equal(req, 1);
 * table.answer({ t: "users", users: [], more: 0, req: 1 });
 * assert.equal((await answer)?.t, "users");
 * assert.equal(table.size, 0);
 * ```
 * @module
 */

import {
  type ClientToServer,
  MAX_REQUEST_ID,
  type ServerToClient,
} from "../proto/mod.ts";
import { REQUEST_TIMEOUT_MS } from "./options.ts";

/** A request in flight (PROTOCOL.md section 5.1). */
export interface PendingRequest {
  readonly req: number;
  readonly message: ClientToServer;
  /** Answered without being shown (Tab completion's `list`). */
  readonly quiet: boolean;
}

interface InFlight extends PendingRequest {
  resolve(answer: ServerToClient | null): void;
  timer: ReturnType<typeof setTimeout>;
}

/** Requests sent and not yet answered, by id, across reconnects. */
export class RequestTable {
  #nextReq = 1;
  #inFlight = new Map<number, InFlight>();

  /** Requests sent and not yet answered. */
  get size(): number {
    return this.#inFlight.size;
  }

  /**
   * Number a request with the next id and wait for its answer.
   * @param m the request
   * @param quiet its answer is not to be shown
   * @returns `req`: its id; `message`: the request with that id, to send;
   *   `answer`: the answer, or null when it ended unanswered
   */
  add(m: ClientToServer, quiet: boolean): {
    req: number;
    message: ClientToServer;
    answer: Promise<ServerToClient | null>;
  } {
    const req = this.#nextReq;
    this.#nextReq = req >= MAX_REQUEST_ID ? 1 : req + 1;
    const message = { ...m, req };
    const answer = new Promise<ServerToClient | null>((resolve) => {
      const timer = setTimeout(
        () => this.#settle(req, null),
        REQUEST_TIMEOUT_MS,
      );
      this.#inFlight.set(req, { req, message, quiet, resolve, timer });
    });
    return { req, message, answer };
  }

  /**
   * A message from the server: if it names a request in flight, that
   * request is answered by it.
   * @param m the message
   * @returns the request it answers, if any
   */
  answer(m: ServerToClient): PendingRequest | undefined {
    return m.req === undefined ? undefined : this.#settle(m.req, m);
  }

  /**
   * A request ends unanswered (its send failed).
   * @param req its id
   */
  drop(req: number): void {
    this.#settle(req, null);
  }

  /** The link's channel ended: no request in flight will be answered. */
  dropAll(): void {
    for (const req of [...this.#inFlight.keys()]) this.#settle(req, null);
  }

  #settle(req: number, answer: ServerToClient | null): InFlight | undefined {
    const r = this.#inFlight.get(req);
    if (!r) return undefined;
    this.#inFlight.delete(req);
    clearTimeout(r.timer);
    r.resolve(answer);
    return r;
  }
}
