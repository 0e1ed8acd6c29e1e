/**
 * {@link JetStreamStore}: the mailbox {@link Store} of a cluster node
 * (PROTOCOL.md 11.6), on NATS JetStream, so whichever node a user reaches
 * has its mail. One stream `IM_MAIL_<cluster>` (file storage, replicas
 * configurable) holds every user's log, a subject per user
 * (`im.<cluster>.mail.<user>`); a record's `seq` is its stream sequence
 * (greater than every earlier one, never reused, even after a purge), and
 * the message's payload is its `data` sealed with the cluster key for the
 * user's subject, its `at` and `counted` in the sealed header
 * (`sealStored`, lib/proto/cluster_store.ts). A message that does not open
 * (moved from another user's subject, altered, another key) is refused:
 * counted, logged `cluster-store-refused` (at most once per code per 10 s),
 * skipped by `read` and `usage`, removed by `expire` once its JetStream
 * time is older than `before`; never returned.
 *
 * - `append` publishes with a `Nats-Msg-Id` (a retry within the stream's
 *   2-minute duplicate window is the same record) and resolves only with
 *   JetStream's acknowledgement, sent once the record is stored on the
 *   replicas' quorum.
 * - `read` gets the user's next message by subject from a start sequence,
 *   one request each, from the stream's leader (never a replica that may
 *   lag: the stream has no direct get).
 * - `ack` purges the user's subject below `seq + 1`.
 * - `expire` walks the stream in order of seq, stopping at the first record
 *   appended at or after `before` + {@link EXPIRE_SKEW_MS} (the nodes'
 *   clocks agree within that, 11.2); for each record it removes, oldest
 *   first, it publishes the replacement first, then deletes the record.
 * - `usage` keeps, per user and per node, the seqs and sizes of the user's
 *   records it has seen, brought up to date on each call: the records after
 *   the newest seen are read, and the subject's message count (stream info)
 *   must match what is kept once the records before the subject's first are
 *   dropped; otherwise the user's log is read again whole.
 * - `appendMany` publishes its records one after another, each awaited: not
 *   one transaction (JetStream 2.9 has none across subjects); a crash in
 *   the middle keeps the records published so far (11.6).
 *
 * @example
 * ```ts ignore
 * const nc = await connect({ servers: "nats://127.0.0.1:4222" });
 * const store = await JetStreamStore.open({ nc, cluster: "team", keys: new StoreKeys(clusterKey) });
 * const seq = await store.append("bob", new Uint8Array([1, 2]));
 * await store.read("bob");         // [{ seq, user: "bob", at, data }]
 * await store.ack("bob", seq);     // 1
 * await store.close();
 * await nc.close();
 * ```
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StoredMsg,
} from "@nats-io/jetstream";
import {
  isValidUsername,
  openStored,
  sealStored,
  type StoreKeys,
} from "../../proto/mod.ts";
import { type Logger, ProtocolError } from "../../util/mod.ts";
import { deleteIfStored, JS_RETRY_MS, retryTransient } from "./js_retry.ts";
import { Refusals } from "./refusals.ts";
import type {
  AppendEntry,
  AppendOptions,
  ExpireOptions,
  ReadOptions,
  Store,
  StoredRecord,
} from "../seams.ts";

export { JS_RETRY_MS } from "./js_retry.ts";
/** `expire` stops at the first record appended this much (ms) after `before`. */
export const EXPIRE_SKEW_MS = 120_000;
/** Users whose usage a node keeps (least recently used dropped). */
const USAGE_USERS = 1024;

/** The stream of a cluster's mailboxes. */
export function mailStream(cluster: string): string {
  return `IM_MAIL_${cluster}`;
}

/** The subject of a user's log. */
export function mailSubject(cluster: string, user: string): string {
  return `im.${cluster}.mail.${user}`;
}

/** Options of {@link JetStreamStore.open}. */
export interface JetStreamStoreOptions {
  /** A connected NATS client, with JetStream on the server; the caller closes it. */
  nc: NatsConnection;
  /** The cluster's name (rule 2.9). */
  cluster: string;
  /** The cluster key's store keys: every record is sealed with them (11.6). */
  keys: StoreKeys;
  /** Where refused records are logged (`cluster-store-refused`). */
  log?: Logger;
  /**
   * The stream's replicas when it is made (1 to 5, default 1; 3 on a
   * three-node NATS); a stream already there with another count is used as
   * it is and logged `cluster-replicas-differ` (11.6).
   */
  replicas?: number;
  /** The store's clock (ms since the epoch): each record's `at`. */
  now?: () => number;
  /** How long a call keeps retrying a JetStream that does not answer (default {@link JS_RETRY_MS}). */
  retryMs?: number;
}

/** What a node keeps of a user's log for {@link JetStreamStore.usage}. */
interface Tally {
  /** The newest seq read. */
  last: number;
  /** Each record seen and still thought there: its bytes, or -1 when not counted. */
  sizes: Map<number, number>;
}

function checkUser(user: string): void {
  if (!isValidUsername(user)) {
    throw new RangeError(
      `JetStreamStore: not a username: ${JSON.stringify(user)}`,
    );
  }
}

function checkData(data: Uint8Array): void {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError("JetStreamStore: data must be a Uint8Array");
  }
}

function checkLimit(limit: number | undefined): void {
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new RangeError(
      `JetStreamStore: limit ${limit} is not a positive integer`,
    );
  }
}

/** The Store of a cluster, on JetStream (PROTOCOL.md 11.6). */
export class JetStreamStore implements Store {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #cluster: string;
  readonly #stream: string;
  readonly #now: () => number;
  readonly #retryMs: number;
  readonly #keys: StoreKeys;
  readonly #refusals: Refusals;
  readonly #tallies = new Map<string, Tally>();
  #closed = false;

  private constructor(
    js: JetStreamClient,
    jsm: JetStreamManager,
    o: JetStreamStoreOptions,
    retryMs: number,
  ) {
    this.#js = js;
    this.#jsm = jsm;
    this.#cluster = o.cluster;
    this.#stream = mailStream(o.cluster);
    this.#now = o.now ?? Date.now;
    this.#retryMs = retryMs;
    this.#keys = o.keys;
    this.#refusals = new Refusals(
      "cluster-store-refused",
      o.log ?? (() => {}),
    );
  }

  /** Records refused so far (they did not open), by code (11.6). */
  refusals(): Record<string, number> {
    return this.#refusals.byCode();
  }

  /**
   * Open the store, making its stream when there is none (an existing one
   * is used as it is).
   * @throws {RangeError} a cluster name that is not a username
   */
  static async open(opts: JetStreamStoreOptions): Promise<JetStreamStore> {
    if (!isValidUsername(opts.cluster)) {
      throw new RangeError(
        `not a cluster name: ${JSON.stringify(opts.cluster)}`,
      );
    }
    const replicas = opts.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
      throw new RangeError(`replicas ${replicas}: 1 to 5`);
    }
    const retryMs = opts.retryMs ?? JS_RETRY_MS;
    const jsm = await jetstreamManager(opts.nc, {
      timeout: 5_000,
      checkAPI: false,
    });
    const s = new JetStreamStore(
      jetstream(opts.nc, { timeout: 5_000 }),
      jsm,
      opts,
      retryMs,
    );
    await s.#retry(async () => {
      try {
        const had = (await jsm.streams.info(s.#stream)).config.num_replicas;
        // 11.6: one already there is used as it is; another count is said.
        if (had !== replicas) {
          opts.log?.("cluster-replicas-differ", {
            stream: s.#stream,
            replicas: had,
            wanted: replicas,
          });
        }
      } catch (e) {
        if (!/not found/i.test(String(e))) throw e;
        await jsm.streams.add({
          name: s.#stream,
          subjects: [`im.${opts.cluster}.mail.>`],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          num_replicas: replicas,
          duplicate_window: 120_000_000_000,
        });
      }
    });
    return s;
  }

  /** Run `fn` again while JetStream answers a transient error, until the deadline. */
  #retry<T>(fn: () => Promise<T>): Promise<T> {
    return retryTransient(
      fn,
      this.#retryMs,
      () => this.#open(),
      () => this.#closed,
    );
  }

  #open(): void {
    if (this.#closed) throw new Error("JetStreamStore: the store is closed");
  }

  /** Publish one record; resolves with its seq once JetStream acknowledged it. */
  #publish(
    user: string,
    data: Uint8Array,
    counted: boolean,
    msgID: string = crypto.randomUUID(),
  ): Promise<number> {
    const subject = mailSubject(this.#cluster, user);
    // 11.6: sealed for the user's subject, `at` and `counted` inside.
    const sealed = sealStored(this.#keys, {
      subject,
      at: this.#now(),
      counted,
      value: data,
    });
    return this.#retry(async () => {
      const ack = await this.#js.publish(subject, sealed, { msgID });
      if (ack.stream !== this.#stream) {
        throw new Error(`JetStreamStore: stored by stream ${ack.stream}`);
      }
      return ack.seq;
    });
  }

  /** The next message of `filter` at or after `seq`, from the stream's leader. */
  #next(filter: string, seq: number): Promise<StoredMsg | null> {
    return this.#retry(() =>
      this.#jsm.streams.getMessage(
        this.#stream,
        // next_by_subj is served by nats-server 2.9's STREAM.MSG.GET.
        { seq, next_by_subj: filter } as unknown as { seq: number },
      )
    );
  }

  /**
   * Open a message of the stream (11.6); one that does not open is refused
   * (counted, logged) and gives undefined: it is never returned.
   */
  #record(
    sm: StoredMsg,
  ): (StoredRecord & { counted: boolean }) | undefined {
    const prefix = `im.${this.#cluster}.mail.`;
    const user = sm.subject.slice(prefix.length);
    try {
      if (!sm.subject.startsWith(prefix) || !isValidUsername(user)) {
        throw new ProtocolError("store-malformed", "not a user's subject");
      }
      const o = openStored(this.#keys, sm.data, sm.subject);
      return { seq: sm.seq, user, at: o.at, data: o.value, counted: o.counted };
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : "store-malformed";
      this.#refusals.refuse(code, { user: user.slice(0, 40), seq: sm.seq });
      return undefined;
    }
  }

  async append(
    user: string,
    data: Uint8Array,
    opts: AppendOptions = {},
  ): Promise<number> {
    this.#open();
    checkUser(user);
    checkData(data);
    return await this.#publish(user, data, opts.counted ?? true);
  }

  async appendMany(entries: readonly AppendEntry[]): Promise<number[]> {
    this.#open();
    for (const e of entries) {
      checkUser(e.user);
      checkData(e.data);
    }
    const seqs: number[] = [];
    for (const e of entries) {
      seqs.push(await this.#publish(e.user, e.data, e.counted ?? true));
    }
    return seqs;
  }

  async read(user: string, opts: ReadOptions = {}): Promise<StoredRecord[]> {
    this.#open();
    checkUser(user);
    const after = opts.after ?? 0;
    if (!(after >= 0)) throw new RangeError(`JetStreamStore: after ${after}`);
    checkLimit(opts.limit);
    const limit = opts.limit ?? Infinity;
    const subject = mailSubject(this.#cluster, user);
    const out: StoredRecord[] = [];
    let seq = Math.floor(after) + 1;
    while (out.length < limit) {
      const sm = await this.#next(subject, seq);
      if (!sm) break;
      seq = sm.seq + 1;
      const opened = this.#record(sm);
      if (!opened) continue; // refused: never delivered
      const { counted: _, ...rec } = opened;
      out.push(rec);
    }
    return out;
  }

  async ack(user: string, seq: number): Promise<number> {
    this.#open();
    checkUser(user);
    if (!(seq >= 0)) throw new RangeError(`JetStreamStore: seq ${seq}`);
    const upTo = Math.floor(seq);
    // Seqs start at 1; and a purge from seq 1 would be one without a seq.
    if (upTo === 0) return 0;
    const r = await this.#retry(() =>
      this.#jsm.streams.purge(this.#stream, {
        filter: mailSubject(this.#cluster, user),
        seq: upTo + 1, // purge keeps seq and after
      })
    );
    const t = this.#tallies.get(user);
    if (t) { for (const q of t.sizes.keys()) if (q <= upTo) t.sizes.delete(q); }
    return r.purged;
  }

  async expire(
    before: number,
    opts: ExpireOptions = {},
  ): Promise<StoredRecord[]> {
    this.#open();
    checkLimit(opts.limit);
    const limit = opts.limit ?? Infinity;
    const byAge = (a: StoredRecord, b: StoredRecord) =>
      a.at - b.at || a.seq - b.seq;
    let found: StoredRecord[] = [];
    const refused: number[] = [];
    let seq = 1;
    for (;;) {
      const sm = await this.#next(`im.${this.#cluster}.mail.>`, seq);
      if (!sm) break;
      seq = sm.seq + 1;
      const opened = this.#record(sm);
      if (!opened) {
        // No `at` to trust, no sender to tell: gone once NATS's own time
        // says it is old.
        if (sm.time.getTime() < before) refused.push(sm.seq);
        continue;
      }
      const { counted: _, ...rec } = opened;
      if (rec.at < before) {
        found.push(rec);
        if (found.length > 2 * limit + 64) {
          found = found.sort(byAge).slice(0, limit);
        }
      } else if (rec.at >= before + EXPIRE_SKEW_MS) break;
    }
    found = found.sort(byAge).slice(0, limit);
    for (const q of refused) await this.#delete(q);
    const removed: StoredRecord[] = [];
    for (const rec of found) {
      const add = opts.replaceWith?.(rec);
      if (add) {
        checkUser(add.user);
        // Replacement first: a crash never keeps the removal without it;
        // its msg id makes a second try within 2 minutes the same record.
        await this.#publish(
          add.user,
          add.data,
          add.counted ?? true,
          `expired-${this.#stream}-${rec.seq}`,
        );
      }
      if (!(await this.#delete(rec.seq))) continue; // acknowledged meanwhile
      this.#tallies.get(rec.user)?.sizes.delete(rec.seq);
      removed.push(rec);
    }
    return removed;
  }

  /** Delete one message; false when it was gone already. */
  #delete(seq: number): Promise<boolean> {
    return this.#retry(() => deleteIfStored(this.#jsm, this.#stream, seq));
  }

  async usage(user: string): Promise<{ count: number; bytes: number }> {
    this.#open();
    checkUser(user);
    const subject = mailSubject(this.#cluster, user);
    let t = this.#tallies.get(user);
    this.#tallies.delete(user);
    if (!t) t = await this.#scan(subject, { last: 0, sizes: new Map() });
    else t = await this.#scan(subject, t);
    if ((await this.#held(subject)) !== t.sizes.size) {
      // Some were removed by another node: drop those before the first one.
      const first = await this.#next(subject, 1);
      for (const q of t.sizes.keys()) {
        if (!first || q < first.seq) t.sizes.delete(q);
      }
      if ((await this.#held(subject)) !== t.sizes.size) {
        t = await this.#scan(subject, { last: 0, sizes: new Map() });
      }
    }
    this.#tallies.set(user, t);
    if (this.#tallies.size > USAGE_USERS) {
      this.#tallies.delete(this.#tallies.keys().next().value!);
    }
    let count = 0, bytes = 0;
    for (const size of t.sizes.values()) {
      if (size >= 0) {
        count++;
        bytes += size;
      }
    }
    return { count, bytes };
  }

  /** Add the records of `subject` after `t.last` to `t`. */
  async #scan(subject: string, t: Tally): Promise<Tally> {
    for (;;) {
      const sm = await this.#next(subject, t.last + 1);
      if (!sm) return t;
      const rec = this.#record(sm);
      // A refused record is kept as one not counted: the subject holds it.
      t.sizes.set(sm.seq, rec?.counted ? rec.data.length : -1);
      t.last = sm.seq;
    }
  }

  /** How many messages the subject holds now. */
  async #held(subject: string): Promise<number> {
    const info = await this.#retry(() =>
      this.#jsm.streams.info(this.#stream, { subjects_filter: subject })
    );
    return info.state.subjects?.[subject] ?? 0;
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#tallies.clear();
    return Promise.resolve();
  }
}
