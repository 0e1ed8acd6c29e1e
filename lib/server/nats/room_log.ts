/**
 * {@link RoomLog}: the JetStream side of the cluster's room store
 * (PROTOCOL.md 11.6 _The room store_), a part of the `JetStreamRoomStore`
 * (room_store.ts): the room stream, made when there is none; reading a
 * room's messages (each opened, one that does not open refused and
 * counted) and its **view** (its last message and its state); and the
 * **commit**: every change of a room one publish conditional on the
 * subject's last message, planned again on the new view after a lost race,
 * the changes of one room on this node run one at a time, then the deletes
 * below the commit (`sweep`, a room's purge). The layout of what is
 * published is room_codec.ts's.
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
import {
  constantTimeEqual,
  type LogFields,
  type Logger,
  ProtocolError,
} from "../../util/mod.ts";
import type { RoomEntry } from "../seams.ts";
import { Refusals } from "./refusals.ts";
import { deleteIfStored, JS_RETRY_MS, retryTransient } from "./js_retry.ts";
import {
  decode,
  encode,
  type Msg,
  roomKeys,
  roomsStream,
  roomSubject,
  type View,
} from "./room_codec.ts";

/** Options of `JetStreamRoomStore.open`. */
export interface JetStreamRoomStoreOptions {
  /** A connected NATS client, with JetStream on the server; the caller closes it. */
  nc: NatsConnection;
  /** The cluster's name (rule 2.9). */
  cluster: string;
  /** The cluster key's store keys: the rooms' keys are derived from them (11.6). */
  keys: StoreKeys;
  /** Where refused messages are logged (`cluster-store-refused`). */
  log?: Logger;
  /** The stream's replicas when it is made (default 1). */
  replicas?: number;
  /** The store's clock (ms since the epoch): each entry's `at`. */
  now?: () => number;
  /** How long a call keeps retrying a JetStream that does not answer, or a lost race (default {@link JS_RETRY_MS}). */
  retryMs?: number;
  /**
   * Called after a commit and before what follows it (the deletes), with
   * the method's name; a throw ends the method there, as a crash would
   * (tests).
   */
  afterCommit?: (method: string) => void;
}

/** What a method commits: the message, and what it does once committed. */
export interface Plan<T> {
  /** The message to publish on top; none: nothing to commit. */
  readonly msg?: Msg;
  /** After the commit (at stream sequence `seq`; 0 when nothing was published). */
  after?(seq: number): Promise<void>;
  /** The method's result. */
  result(seq: number): T;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const lostRace = (e: unknown) => /wrong last sequence/i.test(String(e));

/** A cluster's room stream, read and changed one conditional publish at a time (11.6). */
export class RoomLog {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #cluster: string;
  readonly #stream: string;
  readonly #now: () => number;
  readonly #retryMs: number;
  readonly #keys: StoreKeys;
  readonly #refusals: Refusals;
  readonly #afterCommit: (method: string) => void;
  /** The changes of one room on this node run one at a time (fewer lost races). */
  readonly #locks = new Map<string, Promise<unknown>>();
  #closed = false;

  private constructor(
    js: JetStreamClient,
    jsm: JetStreamManager,
    o: JetStreamRoomStoreOptions,
  ) {
    this.#js = js;
    this.#jsm = jsm;
    this.#cluster = o.cluster;
    this.#stream = roomsStream(o.cluster);
    this.#now = o.now ?? Date.now;
    this.#retryMs = o.retryMs ?? JS_RETRY_MS;
    this.#keys = roomKeys(o.keys);
    this.#refusals = new Refusals(
      "cluster-store-refused",
      o.log ?? (() => {}),
    );
    this.#afterCommit = o.afterCommit ?? (() => {});
  }

  /** Messages refused so far (they did not open), by code (11.6). */
  refusals(): Record<string, number> {
    return this.#refusals.byCode();
  }

  /** Count and log a value of the store's that did not open (the index's: room_index.ts). */
  refuse(code: string, fields: LogFields): void {
    this.#refusals.refuse(code, fields);
  }

  /** The store's clock. */
  now(): number {
    return this.#now();
  }

  /** The subjects' prefix: `im.<cluster>.room.` */
  get prefix(): string {
    return `im.${this.#cluster}.room.`;
  }

  /**
   * Open the room stream, making it when there is none (an existing one
   * is used as it is).
   * @throws {RangeError} a cluster name that is not a username
   */
  static async open(
    opts: JetStreamRoomStoreOptions,
  ): Promise<RoomLog> {
    if (!isValidUsername(opts.cluster)) {
      throw new RangeError(
        `not a cluster name: ${JSON.stringify(opts.cluster)}`,
      );
    }
    const replicas = opts.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
      throw new RangeError(`replicas ${replicas}: 1 to 5`);
    }
    const jsm = await jetstreamManager(opts.nc, {
      timeout: 5_000,
      checkAPI: false,
    });
    const s = new RoomLog(
      jetstream(opts.nc, { timeout: 5_000 }),
      jsm,
      opts,
    );
    await s.retry(async () => {
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
          subjects: [`im.${opts.cluster}.room.*`],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          num_replicas: replicas,
          duplicate_window: 120_000_000_000,
        });
      }
    });
    return s;
  }

  /** Closed: every call throws; the keys are wiped. Idempotent. */
  close(): void {
    if (!this.#closed) {
      this.#closed = true;
      this.#keys.wipe();
    }
  }

  /** @throws {Error} the store is closed */
  check(): void {
    if (this.#closed) {
      throw new Error("JetStreamRoomStore: the store is closed");
    }
  }

  /** Run `fn` again while JetStream answers a transient error, until the deadline. */
  retry<T>(fn: () => Promise<T>): Promise<T> {
    return retryTransient(
      fn,
      this.#retryMs,
      () => this.check(),
      () => this.#closed,
    );
  }

  subject(name: string): string {
    return roomSubject(this.#cluster, name);
  }

  /** Seal and publish `m` on the room's subject if its last message is `top`. */
  publish(name: string, m: Msg, top: number, at: number): Promise<number> {
    const subject = this.subject(name);
    const sealed = sealStored(this.#keys, { subject, at, value: encode(m) });
    const msgID = crypto.randomUUID();
    return this.retry(async () => {
      const ack = await this.#js.publish(subject, sealed, {
        msgID,
        expect: { lastSubjectSequence: top },
      });
      if (ack.stream !== this.#stream) {
        throw new Error(`JetStreamRoomStore: stored by stream ${ack.stream}`);
      }
      return ack.seq;
    });
  }

  get(query: Record<string, unknown>): Promise<StoredMsg | null> {
    return this.retry(() =>
      this.#jsm.streams.getMessage(
        this.#stream,
        // next_by_subj is served by nats-server 2.9's STREAM.MSG.GET.
        query as unknown as { seq: number },
      )
    );
  }

  /** Delete one message; false when it was gone already. */
  delete(seq: number): Promise<boolean> {
    return this.retry(() => deleteIfStored(this.#jsm, this.#stream, seq));
  }

  /** Purge the room's subject below `seq` (it and after are kept). */
  async purge(name: string, seq: number): Promise<void> {
    await this.retry(() =>
      this.#jsm.streams.purge(this.#stream, {
        filter: this.subject(name),
        seq,
      })
    );
  }

  /**
   * Open a message (11.6); one that does not open is refused (counted,
   * logged) and gives undefined.
   */
  openMsg(sm: StoredMsg): Msg | undefined {
    const prefix = this.prefix;
    const name = sm.subject.slice(prefix.length);
    try {
      if (!sm.subject.startsWith(prefix) || !isValidUsername(name)) {
        throw new ProtocolError("store-malformed", "not a room's subject");
      }
      const o = openStored(this.#keys, sm.data, sm.subject);
      return decode(o.value, o.at);
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : "store-malformed";
      this.#refusals.refuse(code, { room: name.slice(0, 40), seq: sm.seq });
      return undefined;
    }
  }

  /** The room's messages from stream sequence `from` on, in order. */
  async *walk(
    name: string,
    from = 1,
  ): AsyncGenerator<{ seq: number; time: number; msg: Msg | undefined }> {
    const subject = this.subject(name);
    let seq = from;
    for (;;) {
      const sm = await this.get({ seq, next_by_subj: subject });
      if (!sm) return;
      seq = sm.seq + 1;
      yield { seq: sm.seq, time: sm.time.getTime(), msg: this.openMsg(sm) };
    }
  }

  /** The room as it is now: its last message and its state. */
  async view(name: string): Promise<View> {
    const none = (top: number): View => ({
      top,
      stateSeq: 0,
      state: undefined,
      next: 1,
    });
    let seen = -1;
    for (;;) {
      const last = await this.get({ last_by_subj: this.subject(name) });
      if (!last) return none(0);
      const top = this.openMsg(last);
      if (!top || top.type === "gone") return none(last.seq);
      if (top.type === "state") {
        return {
          top: last.seq,
          stateSeq: last.seq,
          state: top,
          next: top.next,
        };
      }
      const sm = await this.get({ seq: top.state });
      const state = sm && sm.subject === last.subject
        ? this.openMsg(sm)
        : undefined;
      if (
        state?.type === "state" && constantTimeEqual(state.gen, top.gen)
      ) {
        return {
          top: last.seq,
          stateSeq: top.state,
          state,
          next: top.entry.seq + 1,
        };
      }
      // Replaced and deleted since the last message was read: read again.
      if (!sm && last.seq !== seen) {
        seen = last.seq;
        continue;
      }
      this.#refusals.refuse("store-malformed", {
        room: name,
        seq: last.seq,
        why: "its state is missing",
      });
      return none(last.seq);
    }
  }

  /**
   * Change the room: plan on its view, publish on top of it; a lost race
   * (another node published first) plans again on the new view.
   */
  mutate<T>(
    method: string,
    name: string,
    plan: (v: View) => Plan<T>,
  ): Promise<T> {
    const run = async (): Promise<T> => {
      const until = Date.now() + this.#retryMs;
      for (let attempt = 0;; attempt++) {
        this.check();
        const v = await this.view(name);
        const p = plan(v);
        if (!p.msg) return p.result(0);
        const m = p.msg;
        const at = m.type === "gone" ? this.#now() : m.entry?.at ?? this.#now();
        let seq: number;
        try {
          seq = await this.publish(name, m, v.top, at);
        } catch (e) {
          if (!lostRace(e) || Date.now() > until) throw e;
          await sleep(Math.random() * Math.min(5 * 2 ** attempt, 100));
          continue;
        }
        this.#afterCommit(method);
        if (p.after) await p.after(seq);
        return p.result(seq);
      }
    };
    const prev = this.#locks.get(name) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(run);
    const tail = next.catch(() => {});
    this.#locks.set(name, tail);
    tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return next;
  }

  /** An entry of seq `seq` at the store's clock. */
  entry(seq: number, e: Omit<RoomEntry, "seq">): RoomEntry {
    return {
      seq,
      kind: e.kind,
      from: e.from,
      at: this.#now(),
      data: e.data.slice(),
    };
  }

  /** The names of the rooms with a message in the stream, sorted (stream info with a subject filter). */
  async names(): Promise<string[]> {
    const prefix = this.prefix;
    const info = await this.retry(() =>
      this.#jsm.streams.info(this.#stream, { subjects_filter: `${prefix}*` })
    );
    return Object.keys(info.state.subjects ?? {})
      .map((s) => s.slice(prefix.length))
      .filter(isValidUsername)
      .sort();
  }
}
