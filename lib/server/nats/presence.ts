/**
 * {@link NatsPresence}: the {@link Presence} of a cluster node (PROTOCOL.md
 * 11.3). Each node holds its own users in memory, authoritatively, and puts
 * them as one **snapshot** under its key of the KV bucket
 * `im_<cluster>_presence` (history 1, max age 10 s): a sealed envelope
 * (11.2) bound to the key's subject `$KV.<bucket>.<node>`, whose payload is
 * `{"t":"snapshot","node":N,"users":[{name,state,addr,partner,isHost,ticketId,since}]}`
 * (and `"leaving":true`, with no users, in the last one of a clean close).
 * It puts one after each change of its users (coalesced, at most every
 * 100 ms, whatever asks for the put) and at least every 2 s. It watches the
 * bucket and keeps, per other node, the newest snapshot that verified; its
 * view is its own users and those of the snapshots younger than 6 s (by the
 * KV entry's server time, checked every 1 s), and every change of that
 * view, remote ones included, is told to listeners as a `join`, `leave` or
 * `update`. A node leaves the view when its snapshot is stale or when its
 * verified leaving snapshot arrives; a DEL or PURGE of its key changes
 * nothing (anyone who can write to NATS can send one).
 *
 * A user in two places resolves to the later `since` (its login time on
 * that node), ties to the greater node name in byte order, on every node
 * alike. A local login takes `since = max(now, the greatest since another
 * node has for that user + 1)`, so the newer login wins whatever the
 * clocks. When one of this node's users loses, `onReplaced(name, by)` is
 * called once: the server closes that connection as rule 2.10's newer
 * login (`replaced`), which ends in `leave(name)` here.
 *
 * NATS routes and stores the snapshots but can neither read nor forge
 * them: an envelope that does not verify (another key, another subject,
 * stale, replayed), whose payload is not a snapshot of the node of its
 * key, or that is older (by its sealed time; by seq within one boot) than
 * the newest accepted of that node is refused: counted, logged
 * (`cluster-refused`), and it changes nothing. A verified envelope under
 * this node's own key from another boot, sealed after this one started and
 * written after its first put, is a second process with the same node
 * name: logged (`cluster-duplicate-node`), `onDuplicate` called, and this
 * node puts nothing more. When the bucket is gone (NATS came back without
 * its JetStream data) it is made again and watched again; `partial` is
 * true while NATS is down, a put fails or the watch fails.
 *
 * Parts with one job each, behind this class: presence_config.ts (the
 * timings, options and bucket), presence_snapshot.ts (the snapshot's
 * payload and envelope, read and checked), presence_view.ts (the merged
 * view and its listeners), presence_watch.ts (the bucket's watch loop);
 * this file joins them and puts this node's snapshot.
 *
 * @example
 * ```ts ignore
 * import { connect } from "@nats-io/transport-node";
 * const nc = await connect({ servers: "nats://127.0.0.1:4222" });
 * const presence = await NatsPresence.open({ nc, cluster: "team", node: "n1", keys });
 * presence.join("A", "n1");           // on n1's view at once, on the others' within ~100 ms
 * presence.list();                    // n1's users and the other nodes' fresh snapshots
 * await presence.close();             // a leaving snapshot: the others drop its users
 * await nc.close();
 * ```
 * @module
 */

import type { NatsConnection, Status } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import { type ClusterKeys, isValidUsername } from "../../proto/mod.ts";
import { type Logger, ProtocolError, randomBytes } from "../../util/mod.ts";
import type {
  Presence,
  PresenceEntry,
  PresenceFields,
  PresenceListener,
} from "../seams.ts";
import {
  BUCKET,
  isGone,
  type NatsPresenceOptions,
  presenceBucket,
  type PresenceTiming,
  timingOf,
} from "./presence_config.ts";
import {
  equalBytes,
  makeEntry,
  type Opened,
  openSnapshot,
} from "./presence_snapshot.ts";
import { PresenceView } from "./presence_view.ts";
import { PresenceWatch } from "./presence_watch.ts";
import { SnapshotPut } from "./presence_put.ts";

export {
  type NatsPresenceOptions,
  PRESENCE_CHECK_MS,
  PRESENCE_COALESCE_MS,
  PRESENCE_HEARTBEAT_MS,
  PRESENCE_MAX_AGE_MS,
  PRESENCE_STALE_MS,
  presenceBucket,
  type PresenceTiming,
} from "./presence_config.ts";
/**
 * The presence of one node of a cluster: its own users, and every other
 * node's as their snapshots in the KV bucket say (PROTOCOL.md 11.3).
 *
 * Writes are of this node's users only: `join(name, node)` takes this
 * node's name (another is a `RangeError`: another node's users come by its
 * snapshot); `leave` and `update` of a user not connected here return
 * undefined and change nothing, even when another node has it online.
 * Reads and listeners are of the whole view. Open it with
 * {@link NatsPresence.open}; {@link NatsPresence.close} puts a leaving
 * snapshot, then deletes its key.
 */
export class NatsPresence implements Presence {
  readonly node: string;
  readonly bucket: string;
  readonly #kvm: Kvm;
  /** The bucket's replicas when it is made again (11.1). */
  readonly #replicas: number;
  #kv: KV;
  readonly #nc: NatsConnection;
  readonly #keys: ClusterKeys;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #onReplaced: (name: string, by: PresenceEntry) => void;
  readonly #onPartialChange: (partial: boolean) => void;
  readonly #onDuplicate: (other: { boot: string; time: number }) => void;
  readonly #onListenerError: (error: unknown) => void;
  readonly #t: PresenceTiming;
  readonly #subject: string;
  readonly #boot = randomBytes(8);
  readonly #bootHex = this.#boot.toHex();
  /** When this boot started (this node's clock). */
  readonly #started: number;

  /** Our users and the other nodes' snapshots, merged (presence_view.ts). */
  readonly #v: PresenceView;

  /** The puts of our snapshot (presence_put.ts). */
  readonly #puts: SnapshotPut;
  /** Another process puts under our name: nothing more is put. */
  #duplicate = false;
  #remaking: Promise<void> | undefined;
  #checkTimer: ReturnType<typeof setInterval>;

  /** The bucket's watch (presence_watch.ts). */
  readonly #watch: PresenceWatch;
  #statusIter: { stop(): void } | undefined;
  #statusLoop: Promise<void>;
  #partial = false;
  #linkDown = false;
  #watchFailing = false;
  #closed = false;
  #refused = 0;
  #refusedByCode = new Map<string, number>();

  private constructor(o: NatsPresenceOptions, kvm: Kvm, kv: KV) {
    this.node = o.node;
    this.bucket = presenceBucket(o.cluster);
    this.#kvm = kvm;
    this.#replicas = o.replicas ?? 1;
    this.#kv = kv;
    this.#nc = o.nc;
    this.#keys = o.keys;
    this.#now = o.now ?? Date.now;
    this.#log = o.log ?? (() => {});
    this.#onReplaced = o.onReplaced ?? (() => {});
    this.#onPartialChange = o.onPartialChange ?? (() => {});
    this.#onDuplicate = o.onDuplicate ?? (() => {});
    this.#onListenerError = o.onListenerError ?? (() => {});
    this.#v = new PresenceView(
      o.node,
      (name, by) => this.#onReplaced(name, by),
      (e) => this.#onListenerError(e),
      this.#log,
    );
    this.#t = timingOf(o.timing);
    this.#started = this.#now();
    this.#subject = `$KV.${this.bucket}.${this.node}`;
    this.#puts = new SnapshotPut({
      node: this.node,
      boot: this.#boot,
      subject: this.#subject,
      keys: this.#keys,
      timing: this.#t,
      now: this.#now,
      log: this.#log,
      kv: () => this.#kv,
      users: () =>
        [...this.#v.own.values()].map(({ entry, since }) => {
          const { node: _, ...u } = entry;
          return { ...u, since };
        }),
      closed: () => this.#closed,
      duplicate: () => this.#duplicate,
      linkDown: () => this.#linkDown,
      put: () => this.#watch.put(),
      failingChanged: () => this.#refreshPartial(),
      remake: () => this.#remake(),
    });
    this.#checkTimer = setInterval(() => this.#expire(), this.#t.checkMs);
    const status = o.nc.status();
    this.#statusIter = status as unknown as { stop(): void };
    this.#statusLoop = this.#followStatus(status);
    this.#watch = new PresenceWatch({
      node: this.node,
      kv: () => this.#kv,
      closed: () => this.#closed,
      ncClosed: () => this.#nc.isClosed(),
      onEntry: (e) => this.#onEntry(e),
      failing: (failing) => {
        this.#watchFailing = failing;
        this.#refreshPartial();
      },
      remake: () => this.#remake(),
      maxDelayMs: this.#t.heartbeatMs,
      log: this.#log,
    });
  }

  /**
   * Join the cluster's presence: create (or open) the bucket, put this
   * node's first snapshot, and start watching the others'.
   * @param o the connection, cluster, node, keys; clock, logger, callbacks, timings
   * @returns the presence, this node's snapshot put
   * @throws {RangeError} a cluster or node name not of rule 2.9
   * @throws the NATS client's error when the bucket cannot be made
   */
  static async open(o: NatsPresenceOptions): Promise<NatsPresence> {
    if (!isValidUsername(o.cluster)) {
      throw new RangeError(`cluster name "${o.cluster}" (rule 2.9)`);
    }
    if (!isValidUsername(o.node)) {
      throw new RangeError(`node name "${o.node}" (rule 2.9)`);
    }
    const replicas = o.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
      throw new RangeError(`replicas ${replicas}: 1 to 5`);
    }
    const js = jetstream(o.nc, { timeout: timingOf(o.timing).putTimeoutMs });
    const kvm = new Kvm(js);
    const kv = await kvm.create(presenceBucket(o.cluster), {
      ...BUCKET,
      replicas,
    });
    const had = (await kv.status()).replicas;
    if (had !== replicas) {
      o.log?.("cluster-replicas-differ", {
        stream: `KV_${presenceBucket(o.cluster)}`,
        replicas: had,
        wanted: replicas,
      });
    }
    const p = new NatsPresence(o, kvm, kv);
    await p.#puts.flush();
    return p;
  }

  /**
   * True while NATS cannot be reached, our snapshot cannot be put or the
   * bucket cannot be watched: the view may lack other nodes' users.
   */
  get partial(): boolean {
    return this.#partial;
  }

  /** The timings in force (the defaults, or the test's). */
  get timing(): Readonly<PresenceTiming> {
    return { ...this.#t };
  }

  /** Envelopes refused so far (11.2's checks, or not a snapshot of its key's node). */
  get refused(): number {
    return this.#refused;
  }

  /** Refusals so far by code (`cluster-forged`, `cluster-stale`, ...). */
  refusals(): Record<string, number> {
    return Object.fromEntries(this.#refusedByCode);
  }

  /** True once another process was seen putting under this node's name (nothing is put since). */
  get duplicate(): boolean {
    return this.#duplicate;
  }

  /** The other nodes whose snapshot is in the view now, sorted. */
  nodes(): string[] {
    return [...this.#v.remote.keys()].sort();
  }

  join(name: string, node: string): PresenceEntry {
    if (node !== this.node) {
      throw new RangeError(
        `NatsPresence of node ${this.node}: a join on node ${node} comes by that node's snapshot`,
      );
    }
    const e = makeEntry(name, node, { state: "IDLE" });
    // Later than every other login of this name we know of, whatever the
    // clocks say: the newer login wins on every node (11.3).
    const since = this.#v.since(name, this.#now());
    this.#v.own.set(name, { entry: e, since, told: false });
    this.#puts.changed();
    this.#v.apply([name], true);
    return e;
  }

  leave(name: string): PresenceEntry | undefined {
    const held = this.#v.own.get(name);
    if (!held) return undefined;
    this.#v.own.delete(name);
    this.#puts.changed();
    this.#v.apply([name]);
    return held.entry;
  }

  update(name: string, fields: PresenceFields): PresenceEntry | undefined {
    const held = this.#v.own.get(name);
    if (!held) return undefined;
    const e = makeEntry(name, this.node, fields);
    this.#v.own.set(name, { ...held, entry: e });
    this.#puts.changed();
    this.#v.apply([name]);
    return e;
  }

  /**
   * Put the snapshot again soon (as after a change of our users): the
   * cluster key was replaced (11.1), so the others hear us under the new key
   * before the next heartbeat.
   */
  reseal(): void {
    this.#puts.changed();
  }

  get(name: string): PresenceEntry | undefined {
    return this.#v.get(name);
  }

  list(): PresenceEntry[] {
    return this.#v.list();
  }

  get size(): number {
    return this.#v.size;
  }

  subscribe(listener: PresenceListener): () => void {
    return this.#v.subscribe(listener);
  }

  /**
   * Leave the cluster: stop the timers and the watch, wait for a put under
   * way, put a leaving snapshot (the others drop this node's users at once)
   * and delete this node's key. Nothing is put or deleted once another
   * process was seen under this node's name. The connection stays the
   * caller's. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#stop();
    await this.#puts.putting;
    await this.#watch.done;
    await this.#statusLoop;
    if (!this.#nc.isClosed() && !this.#duplicate) {
      try {
        // The JetStream timeout of both: putTimeoutMs.
        await this.#kv.put(this.node, this.#puts.seal([], true), {
          timeout: this.#t.putTimeoutMs,
        });
        await this.#kv.delete(this.node);
      } catch (e) {
        this.#log("cluster-presence-delete-failed", {
          node: this.node,
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }

  /**
   * For fault tests: stop as a killed process would, its key left in the
   * bucket until it is too old. Nothing is put or deleted after it.
   */
  async crash(): Promise<void> {
    if (this.#closed) return;
    this.#stop();
    await this.#puts.putting?.catch(() => {});
    await this.#watch.done;
    await this.#statusLoop;
  }

  #stop(): void {
    this.#closed = true;
    clearInterval(this.#checkTimer);
    this.#puts.cancel();
    this.#watch.stop();
    this.#statusIter?.stop();
  }

  /** Drop the snapshots too old to be of a live node (their users leave). */
  #expire(): void {
    // A watch that does not show our own put is dead (its stream was
    // deleted under it): watch again.
    this.#watch.check(this.#t.staleMs);
    this.#v.expire(this.#now(), this.#t.staleMs);
  }

  // --- the watch ----------------------------------------------------------

  /**
   * The bucket is gone (NATS came back without its JetStream data): make it
   * again, watch it again and put our snapshot. One at a time; nothing when
   * it is there.
   */
  #remake(): Promise<void> {
    this.#remaking ??= (async () => {
      try {
        try {
          await this.#kv.status();
          return; // there: the trouble is elsewhere
        } catch (e) {
          if (!isGone(e)) return;
        }
        if (this.#closed) return;
        this.#kv = await this.#kvm.create(this.bucket, {
          ...BUCKET,
          replicas: this.#replicas,
        });
        this.#puts.ownRev = undefined; // revisions start again
        this.#log("cluster-presence-bucket-made", {
          node: this.node,
          bucket: this.bucket,
        });
        this.#watch.again();
        this.#puts.changed();
      } catch (e) {
        this.#log("cluster-presence-bucket-failed", {
          node: this.node,
          error: e instanceof Error ? e.message : String(e),
        });
      } finally {
        this.#remaking = undefined;
      }
    })();
    return this.#remaking;
  }

  /** Count and log a refused envelope. */
  #refuse(from: string, err: unknown): void {
    const code = err instanceof ProtocolError ? err.code : "cluster-malformed";
    this.#refused++;
    this.#refusedByCode.set(code, (this.#refusedByCode.get(code) ?? 0) + 1);
    this.#log("cluster-refused", {
      node: this.node,
      from,
      code,
      reason: err instanceof Error ? err.message : String(err),
    });
  }

  /** One entry of the bucket, as the watch shows it. */
  #onEntry(e: KvEntry): void {
    if (this.#closed) return;
    const node = e.key;
    const own = node === this.node;
    if (e.operation !== "PUT") {
      // Anyone who can write to NATS can delete a key: a node leaves the
      // view by its leaving snapshot or by age, never by a delete (11.3).
      if (own) this.#puts.changed(); // ours is put again
      return;
    }
    if (own && this.#puts.isOurs(e.value)) {
      this.#watch.echoed(); // the watch is alive
      return;
    }
    const created = e.created.getTime();
    const held = this.#v.remote.get(node);
    if (held && equalBytes(held.bytes, e.value)) return; // seen (a watch again)
    if (!own && this.#now() - created > this.#t.staleMs) return; // a dead node's
    let opened: Opened;
    try {
      opened = openSnapshot(this.#keys, e.value, {
        bucket: this.bucket,
        node,
        now: this.#now(),
        window: this.#v.window,
        newest: own ? undefined : this.#v.newest.get(node),
      });
    } catch (err) {
      this.#refuse(node, err);
      if (own) this.#puts.changed(); // whatever it was, ours is put again
      return;
    }
    if (own) {
      this.#onOwnKey(e, opened.boot, opened.time);
      return;
    }
    this.#v.accept(node, opened, created, e.value, this.#now());
  }

  /**
   * A verified envelope under our own key that is not one of our puts: an
   * earlier envelope of ours, a copy left by an earlier boot (put over now),
   * or another process running with our node name.
   */
  #onOwnKey(e: KvEntry, boot: string, time: number): void {
    const duplicate = boot !== this.#bootHex && time >= this.#started &&
      this.#puts.ownRev !== undefined && e.revision > this.#puts.ownRev;
    if (!duplicate) {
      this.#puts.changed();
      return;
    }
    if (this.#duplicate) return;
    this.#duplicate = true;
    this.#puts.cancel();
    this.#log("cluster-duplicate-node", {
      node: this.node,
      boot: this.#bootHex,
      other: boot,
      error:
        `another process puts presence as node ${this.node} (two processes started with one node name): this one puts nothing more`,
    });
    try {
      this.#onDuplicate({ boot, time });
    } catch (err) {
      this.#onListenerError(err);
    }
  }

  // --- the connection -----------------------------------------------------

  async #followStatus(status: AsyncIterable<Status>): Promise<void> {
    try {
      for await (const s of status) {
        if (this.#closed) break;
        if (s.type === "disconnect") {
          this.#linkDown = true;
          this.#refreshPartial();
        } else if (s.type === "reconnect") {
          this.#linkDown = false;
          // Partial until the bucket is watched again (the view is old).
          this.#watchFailing = true;
          this.#refreshPartial();
          // Read every node's snapshot again, and put ours (11.5).
          this.#watch.again();
          this.#puts.changed();
        } else if (s.type === "close") {
          this.#linkDown = true;
          this.#refreshPartial();
        }
      }
    } catch { /* the connection closed */ }
    if (!this.#closed && this.#nc.isClosed()) {
      this.#linkDown = true;
      this.#refreshPartial();
    }
  }

  /** Partial while the link is down, a put fails or the watch fails. */
  #refreshPartial(): void {
    const partial = this.#linkDown || this.#puts.failing ||
      this.#watchFailing;
    if (this.#partial === partial || this.#closed) return;
    this.#partial = partial;
    this.#log(partial ? "cluster-unreachable" : "cluster-reachable", {
      node: this.node,
    });
    try {
      this.#onPartialChange(partial);
    } catch (e) {
      this.#onListenerError(e);
    }
  }
}
