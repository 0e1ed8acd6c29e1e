/**
 * {@link LocalDelivery}: the {@link Delivery} of one process. A user is
 * reached through its connection on this node, found by a lookup (the
 * registry's); a user with none is absent.
 * @module
 */

import { type ImError, isImError, NetError } from "../../util/mod.ts";
import type {
  DeliverOptions,
  Delivery,
  DeliveryReceipt,
  Outbox,
  Push,
} from "../seams.ts";

/**
 * Delivery to users connected to this process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LocalDelivery } from "./delivery.ts";
 * import type { Outbox } from "../seams.ts";
 * const got: unknown[] = [];
 * const a: Outbox = { send: (m) => (got.push(m), Promise.resolve()), queuedBytes: 0 };
 * const d = new LocalDelivery((user) => (user === "A" ? a : undefined));
 * const r = d.deliver("A", { t: "cancelled", peer: "B", message: "B went offline" });
 * assert.ok(r.delivered && (await r.written) === undefined && got.length === 1);
 * assert.deepEqual(d.deliver("B", { t: "cancelled", peer: "A", message: "" }), { delivered: false, reason: "absent" });
 * ```
 */
export class LocalDelivery implements Delivery {
  #outbox: (user: string) => Outbox | undefined;

  /** @param outbox the connection of a user on this node, if any */
  constructor(outbox: (user: string) => Outbox | undefined) {
    this.#outbox = outbox;
  }

  deliver(user: string, msg: Push, opts: DeliverOptions = {}): DeliveryReceipt {
    const box = this.#outbox(user);
    if (!box) return { delivered: false, reason: "absent" };
    if (
      opts.maxQueuedBytes !== undefined && box.queuedBytes > opts.maxQueuedBytes
    ) {
      return { delivered: false, reason: "busy" };
    }
    let sent: Promise<void>;
    try {
      sent = box.send(msg);
    } catch (e) {
      sent = Promise.reject(e);
    }
    const written = sent.then(
      () => undefined,
      (e: unknown): ImError =>
        isImError(e)
          ? e
          : new NetError("closed", (e as Error)?.message ?? String(e)),
    );
    return { delivered: true, written };
  }
}
