/**
 * {@link Mailbox}: the mail requests of logged-in users (PROTOCOL.md section
 * 9): `publish` their keys, `fetch` and `keys` another's, `send` a sealed
 * mail to a user's log, stream their own log (`mailbox`, mailbox_stream.ts)
 * and acknowledge it (`mail-ack`), with receipts to senders and the
 * retention sweep. The server reads no mail: it checks what it can (the
 * certificates against the enrolled RSA keys, a mail's layout and its
 * addressing) and keeps the rest opaque. Its log holds counts, never a
 * message, a `msg_id` or a key. Logs and keys are reached only through the
 * {@link Store} and {@link Prekeys} seams. It is the facade of parts with one
 * job each: the key requests (`publish`, `fetch`, `keys`: mail_keys.ts), the
 * stream of a log (mailbox_stream.ts) and the retention sweep
 * (mail_sweep.ts); it keeps `send`, `mail-ack` and the counts.
 *
 * @example
 * ```ts ignore
 * const mailbox = new Mailbox({ store, prekeys, clients, session, limits, ...limits });
 * mailbox.start();                   // the retention sweep, now and every hour
 * await mailbox.send(s, m, reply);   // from the server's message switch
 * mailbox.leave(s);                  // the connection ended: its stream too
 * await mailbox.close();
 * ```
 * @module
 */

import type { PublicIdentity } from "../crypto/mod.ts";
import {
  type ClientToServer,
  decodeMail,
  encodeMessage,
  mailIdHex,
} from "../proto/mod.ts";
import { RECORD_MIN_BYTES } from "../record/mod.ts";
import { isImError, type Logger } from "../util/mod.ts";
import type { RequestLimits } from "./limits.ts";
import {
  fromBase64,
  noMailbox,
  PublishedKeys,
  type Refuse,
} from "./mail_keys.ts";
import { mailRecord, receiptRecord, recordMail } from "./mail_records.ts";
import { MailSweep } from "./mail_sweep.ts";
import { MailStream, MAX_MAILBOX_WINDOW } from "./mailbox_stream.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type { AppendEntry, Prekeys, Store } from "./seams.ts";

/** One day, the unit of `--mail-retention`. */
export const DAY_MS = 24 * 60 * 60 * 1000;

/** Settings of a {@link Mailbox}. */
export interface MailboxOptions {
  store: Store;
  prekeys: Prekeys;
  /** The client directory as it is now (it changes on a reload). */
  clients: () => Map<string, PublicIdentity>;
  /** A user's connection on this node, if any. */
  session: (user: string) => ClientSession | undefined;
  /** The per-user buckets: `send` (shared by `fetch`), `keys`, `publish`. */
  limits: RequestLimits;
  /** Records a recipient's log may hold before `mailbox-full`. */
  maxCount: number;
  /** Bytes a recipient's log may hold before `mailbox-full`. */
  maxBytes: number;
  /** A record older than this is deleted by the sweep. */
  retentionMs: number;
  /** The server's frame limit: a `mail` push must fit one record under it. */
  maxFrameBytes: number;
  /** The server's clock. */
  now: () => number;
  log: Logger;
  /**
   * In a cluster (PROTOCOL.md 11.4): tell the other nodes that records were
   * committed to `user`'s log, so its stream wherever it runs pushes them.
   */
  wakeElsewhere?: (user: string) => void;
  /**
   * The user acknowledged records of its log (a `mail-ack` with `upTo` above
   * 0 was applied): the room stream's key gates of PROTOCOL.md 10.4 look
   * again.
   */
  onAcked?: (user: string) => void;
}

/** What the mailbox keeps of one connection; it ends with it. */
type Msg<T extends ClientToServer["t"]> = Extract<ClientToServer, { t: T }>;

/** The requests a {@link Mailbox} answers (PROTOCOL.md 9.7). */
export type MailRequest = Msg<
  "publish" | "fetch" | "keys" | "send" | "mailbox" | "mail-ack"
>;

/**
 * Is `m` a request for the {@link Mailbox}?
 * @param m a client message
 * @returns true for `publish`, `fetch`, `keys`, `send`, `mailbox`, `mail-ack`
 */
export function isMailRequest(m: ClientToServer): m is MailRequest {
  return MAIL_REQUESTS.has(m.t);
}

const MAIL_REQUESTS: ReadonlySet<string> = new Set([
  "publish",
  "fetch",
  "keys",
  "send",
  "mailbox",
  "mail-ack",
]);

/** Counts for the log (PROTOCOL.md 9.9): never a message, an id or a key. */
interface Counts {
  stored: number;
  pushed: number;
  acknowledged: number;
  delivered: number;
  expired: number;
  refused: Record<string, number>;
}

const newCounts = (): Counts => ({
  stored: 0,
  pushed: 0,
  acknowledged: 0,
  delivered: 0,
  expired: 0,
  refused: {},
});

/** The mail requests of this node's users. */
export class Mailbox {
  #o: MailboxOptions;
  /**
   * Each connection's stream, if it asked for one: the stream itself is the
   * value, and its push count one function for all (issue 15: an object and
   * a closure fewer per connection).
   */
  #conns = new WeakMap<ClientSession, MailStream>();
  #streams = new Set<MailStream>();
  #closed = false;
  #counts = newCounts();
  #onPushed = (n: number): void => {
    this.#counts.pushed += n;
  };
  #refuseCounted: Refuse = (reply, code, message) =>
    this.#refuse(reply, code, message);
  #keys: PublishedKeys;
  #sweep: MailSweep;

  /** @param o the seams, limits and clock */
  constructor(o: MailboxOptions) {
    this.#o = o;
    this.#keys = new PublishedKeys({
      prekeys: o.prekeys,
      clients: o.clients,
      session: o.session,
      limits: o.limits,
      log: o.log,
      refuse: this.#refuseCounted,
    });
    this.#sweep = new MailSweep({
      store: o.store,
      retentionMs: o.retentionMs,
      now: o.now,
      log: o.log,
      notify: (user) => this.#notify(user),
      swept: (mails) => {
        this.#counts.expired += mails;
        this.#logCounts();
      },
    });
  }

  /**
   * Run the retention sweep now and then every hour (`SWEEP_INTERVAL_MS`,
   * mail_sweep.ts), until {@link close}.
   * @returns when the first sweep is done (a failure is logged, not thrown)
   */
  start(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#sweep.start();
  }

  /**
   * One mail request, to its handler below. A failure of the store or the
   * prekeys (a disk error) is answered `store-failed`: nothing was stored,
   * and the sender is told so rather than left waiting.
   * @param s the connection
   * @param m the message
   * @param reply its answer
   */
  async handle(s: ClientSession, m: MailRequest, reply: Reply): Promise<void> {
    try {
      switch (m.t) {
        case "publish":
          return await this.publish(s, m, reply);
        case "fetch":
          return await this.fetch(s, m, reply);
        case "keys":
          return await this.keys(s, m, reply);
        case "send":
          return await this.send(s, m, reply);
        case "mailbox":
          return await this.mailbox(s, m, reply);
        case "mail-ack":
          return await this.ack(s, m, reply);
      }
    } catch (e) {
      if (isImError(e)) throw e;
      this.#o.log("mail-store-failed", {
        user: s.user,
        request: m.t,
        error: (e as Error).message,
      });
      await this.#refuse(
        reply,
        "store-failed",
        "The server could not reach its mail store; try again later",
      );
    }
  }

  /**
   * `publish` (PROTOCOL.md 9.1, 9.8): both certificates decode, name the
   * user and verify with its enrolled RSA key; the signed prekey is not
   * older than the one held; the one-time prekeys decode, at most 100 of
   * them and 200 held in all (mail_keys.ts).
   * @param s the connection
   * @param m the message
   * @param reply its answer: `published`, or `error` `bad-keys`,
   *   `too-many-prekeys`, `rate-limited`
   */
  publish(s: ClientSession, m: Msg<"publish">, reply: Reply): Promise<void> {
    return this.#keys.publish(s, m, reply);
  }

  /**
   * `fetch`: the user's bundle with one of its one-time prekeys, which is
   * now removed (or `""` once none is left); its owner is told when few
   * are left (mail_keys.ts).
   * @param s the connection
   * @param m the message
   * @param reply its answer: `bundle`, or `error` `no-mailbox`, `rate-limited`
   */
  fetch(s: ClientSession, m: Msg<"fetch">, reply: Reply): Promise<void> {
    return this.#keys.fetch(s, m, reply);
  }

  /**
   * `keys`: the user's certificates, no one-time prekey (mail_keys.ts).
   * @param s the connection
   * @param m the message
   * @param reply its answer: `bundle` with `oneTimePrekey` `""`, or `error`
   *   `no-mailbox`, `rate-limited`
   */
  keys(s: ClientSession, m: Msg<"keys">, reply: Reply): Promise<void> {
    return this.#keys.keys(s, m, reply);
  }

  /**
   * `send` (PROTOCOL.md 9.8), checked in order: `rate-limited`,
   * `no-mailbox`, `bad-mail`, `mail-too-large`, `mailbox-full`. Then the
   * record is appended, and only once the append resolved (committed) is
   * the `stored` receipt sent and the record pushed to its recipient.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `receipt` (`stored`) or `error`
   */
  async send(s: ClientSession, m: Msg<"send">, reply: Reply): Promise<void> {
    const o = this.#o;
    if (!o.limits.take(s.user, "send")) {
      return this.#refuse(
        reply,
        "rate-limited",
        "Too many mails; wait a moment and try again",
      );
    }
    if (!o.clients().has(m.to) || !(await o.prekeys.certs(m.to))) {
      return noMailbox(this.#refuseCounted, reply, m.to);
    }
    let mail: Uint8Array;
    let header;
    try {
      mail = fromBase64(m.mail, "mail");
      header = decodeMail(mail).header;
    } catch (e) {
      return this.#refuse(
        reply,
        "bad-mail",
        `Mail refused: ${(e as Error).message}`,
      );
    }
    if (header.sender !== s.user) {
      return this.#refuse(
        reply,
        "bad-mail",
        "Mail refused: its header names another sender than you",
      );
    }
    if (header.recipient !== m.to) {
      return this.#refuse(
        reply,
        "bad-mail",
        `Mail refused: its header names another recipient than ${m.to}`,
      );
    }
    const pushBytes = RECORD_MIN_BYTES + encodeMessage({
      t: "mail",
      seq: Number.MAX_SAFE_INTEGER,
      from: s.user,
      at: Number.MAX_SAFE_INTEGER,
      mail: mail.toBase64(),
    }).length;
    if (pushBytes > o.maxFrameBytes) {
      return this.#refuse(
        reply,
        "mail-too-large",
        `Mail of ${mail.length} bytes refused: delivered, it would need a record of ${pushBytes} bytes, over the limit of ${o.maxFrameBytes}`,
      );
    }
    const record = mailRecord(mail);
    const usage = await o.store.usage(m.to);
    if (usage.count >= o.maxCount || usage.bytes + record.length > o.maxBytes) {
      return this.#refuse(
        reply,
        "mailbox-full",
        `The mailbox of ${m.to} is full; try again later`,
      );
    }
    await o.store.append(m.to, record);
    this.#counts.stored++;
    // Committed: now the sender is told, and the recipient's stream pushes
    // it even when the sender is gone by then.
    const answered = reply({
      t: "receipt",
      seq: 0,
      id: mailIdHex(header.msgId),
      to: m.to,
      status: "stored",
      at: o.now(),
      proof: "",
    });
    this.#notify(m.to);
    await answered;
  }

  /**
   * `mailbox`: start streaming the user's log on this connection
   * (PROTOCOL.md 9.8). A `window` that is not an integer from 1 to
   * {@link MAX_MAILBOX_WINDOW}, or a second `mailbox` on one connection, is
   * `bad-mailbox`.
   * @param s the connection
   * @param m the message
   * @param reply errors only; the stream is the answer
   */
  mailbox(s: ClientSession, m: Msg<"mailbox">, reply: Reply): Promise<void> {
    if (
      !Number.isInteger(m.window) || m.window < 1 ||
      m.window > MAX_MAILBOX_WINDOW
    ) {
      return this.#refuse(
        reply,
        "bad-mailbox",
        `Mailbox window ${m.window} refused: expected an integer from 1 to ${MAX_MAILBOX_WINDOW}`,
      );
    }
    if (this.#conns.has(s) || s.channel.closed || this.#closed) {
      return this.#refuse(
        reply,
        "bad-mailbox",
        "Your mailbox is already streaming on this connection",
      );
    }
    const stream = new MailStream({
      user: s.user,
      store: this.#o.store,
      channel: s.channel,
      window: m.window,
      log: this.#o.log,
      onPushed: this.#onPushed,
      onFailed: () => {
        if (this.#conns.get(s) === stream) this.#conns.delete(s);
        this.#streams.delete(stream);
        s.channel.send({
          t: "error",
          code: "mailbox-failed",
          message:
            "The server could not push your mailbox; it keeps your mail until you log in again",
        }).catch(() => {});
      },
    });
    this.#conns.set(s, stream);
    this.#streams.add(stream);
    stream.wake();
    return Promise.resolve();
  }

  /**
   * `mail-ack` (PROTOCOL.md 9.8, 9.6): a receipt for each delivered mail
   * goes to its sender's log (and is pushed if the sender streams), then the
   * records up to `upTo` are deleted and the stream goes on.
   * @param s the connection
   * @param m the message
   * @param reply errors only (`bad-ack`, which changes nothing)
   */
  async ack(s: ClientSession, m: Msg<"mail-ack">, reply: Reply): Promise<void> {
    const stream = this.#conns.get(s);
    const r = stream?.ack(m.upTo, m.delivered) ??
      (m.upTo === 0 && m.delivered.length === 0
        ? { ok: true as const, delivered: [] }
        : {
          ok: false as const,
          message:
            `Acknowledgement up to ${m.upTo} refused: nothing was pushed`,
        });
    if (!r.ok) return this.#refuse(reply, "bad-ack", r.message);
    const receipts: AppendEntry[] = [];
    for (const { record, proof } of r.delivered) {
      const header = recordMail(record.data)?.header;
      if (!header) continue; // a receipt record, or a mail that does not decode
      receipts.push({
        user: header.sender,
        data: receiptRecord({
          msgId: header.msgId,
          status: "delivered",
          recipient: s.user,
          proof,
        }),
        counted: false, // PROTOCOL.md 9.8: receipts are never refused
      });
    }
    // One commit for the receipts of one acknowledgement.
    await this.#o.store.appendMany(receipts);
    this.#counts.delivered += receipts.length;
    for (const senders of new Set(receipts.map((e) => e.user))) {
      this.#notify(senders);
    }
    if (m.upTo > 0) {
      this.#counts.acknowledged += await this.#o.store.ack(s.user, m.upTo);
      this.#o.onAcked?.(s.user);
    }
    stream?.wake();
  }

  /**
   * Records were committed to `user`'s log by another part of the server
   * (a room's sender keys, PROTOCOL.md 10.4): its stream on this node
   * pushes them, and in a cluster its stream on another node (11.4).
   * @param user whose log
   */
  wake(user: string): void {
    this.#notify(user);
  }

  /**
   * Another node committed records to `user`'s log (PROTOCOL.md 11.4
   * `mail-wake`): its stream on this node, if any, pushes them.
   * @param user whose log
   */
  wakeLocal(user: string): void {
    const s = this.#o.session(user);
    if (s) this.#conns.get(s)?.wake();
  }

  /** Wake every stream of this node (a cluster's NATS link came back, 11.4). */
  wakeAll(): void {
    for (const s of this.#streams) s.wake();
  }

  /**
   * A connection ended: its stream stops (what it pushed and was not
   * acknowledged stays in the log).
   * @param s the connection
   */
  leave(s: ClientSession): void {
    const stream = this.#conns.get(s);
    if (!stream) return;
    stream.close();
    this.#streams.delete(stream);
  }

  /**
   * The retention sweep (PROTOCOL.md 9.8, mail_sweep.ts): delete the records
   * older than the retention; each expired mail appends an `expired` receipt
   * to its sender's log. Receipts expire without a receipt. Logs the counts.
   * @returns when it is done
   */
  sweep(): Promise<void> {
    return this.#sweep.sweep();
  }

  /** Stop the sweep and every stream; the store is the caller's to close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const swept = this.#sweep.stop();
    for (const s of this.#streams) s.close();
    await Promise.all([...this.#streams].map((s) => s.done()));
    this.#streams.clear();
    await swept;
    this.#logCounts();
  }

  #logCounts(): void {
    const c = this.#counts;
    const refused = Object.fromEntries(
      Object.entries(c.refused).map(([code, n]) => [`refused-${code}`, n]),
    );
    this.#o.log("mail-counts", {
      stored: c.stored,
      pushed: c.pushed,
      acknowledged: c.acknowledged,
      delivered: c.delivered,
      expired: c.expired,
      ...refused,
    });
  }

  /**
   * A record was committed to `user`'s log: its stream on this node pushes
   * it, and in a cluster the other nodes are told (PROTOCOL.md 11.4).
   */
  #notify(user: string): void {
    this.wakeLocal(user);
    this.#o.wakeElsewhere?.(user);
  }

  #refuse(reply: Reply, code: string, message: string): Promise<void> {
    this.#counts.refused[code] = (this.#counts.refused[code] ?? 0) + 1;
    return reply({ t: "error", code, message });
  }
}
