/**
 * Fixtures of the tests of the server's parts: a session with a fake
 * channel that records what it is sent, and a {@link Delivery} that records
 * what it is given and answers as the test says.
 * @module
 */

import { NetError } from "../../lib/util/mod.ts";
import type { ClientLink, ServerToClient } from "../../lib/proto/mod.ts";
import type {
  ClientSession,
  DeliverOptions,
  Delivery,
  DeliveryReceipt,
  Push,
  Reply,
} from "../../lib/server/mod.ts";

/** A session whose channel records what it is sent; `queuedBytes` is settable. */
export interface FakeSession extends ClientSession {
  readonly sent: ServerToClient[];
  queuedBytes: number;
}

/**
 * @param user the user
 * @param fingerprint the key it logged in with
 * @returns the session
 */
export function fakeSession(user: string, fingerprint = "fp"): FakeSession {
  const sent: ServerToClient[] = [];
  const s = {
    user,
    remote: `10.0.0.1:${user.charCodeAt(0)}`,
    fingerprint,
    ticketKeys: {
      enc: new Uint8Array(32).fill(1),
      mac: new Uint8Array(32).fill(2),
    },
    sent,
    queuedBytes: 0,
    channel: undefined as unknown as ClientLink,
  };
  const channel = {
    send: (m: ServerToClient) => (sent.push(m), Promise.resolve()),
    transport: {
      get queuedBytes() {
        return s.queuedBytes;
      },
    },
  };
  s.channel = channel as unknown as ClientLink;
  return s;
}

/** The answers a handler gave through its {@link Reply}. */
export function replies(): { reply: Reply; answers: ServerToClient[] } {
  const answers: ServerToClient[] = [];
  return {
    answers,
    reply: (a) => (answers.push(a), Promise.resolve()),
  };
}

/** A {@link Delivery} that records; `answer` decides each receipt (default: written at once). */
export class RecordingDelivery implements Delivery {
  readonly given: Array<{ user: string; msg: Push; opts?: DeliverOptions }> =
    [];
  answer: (user: string) => DeliveryReceipt = () => ({
    delivered: true,
    written: Promise.resolve(undefined),
  });

  deliver(user: string, msg: Push, opts?: DeliverOptions): DeliveryReceipt {
    const r = this.answer(user);
    if (r.delivered) this.given.push({ user, msg, ...(opts && { opts }) });
    return r;
  }

  /** The messages delivered to `user`. */
  to(user: string): Push[] {
    return this.given.filter((g) => g.user === user).map((g) => g.msg);
  }
}

/** A receipt whose write failed with `code`. */
export function failedWrite(code: string): DeliveryReceipt {
  return {
    delivered: true,
    written: Promise.resolve(new NetError(code, `failed: ${code}`)),
  };
}
