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
import {
  type ClusterKeys,
  EnvelopeWindow,
  isValidUsername,
  openEnvelope,
  sealEnvelope,
  type UserState,
} from "../../proto/mod.ts";
import {
  fromUtf8,
  type Logger,
  ProtocolError,
  randomBytes,
  utf8,
} from "../../util/mod.ts";
import type {
  Presence,
  PresenceChange,
  PresenceEntry,
  PresenceFields,
  PresenceListener,
} from "../seams.ts";

/** A node's snapshot is put at most this often (ms; changes in between are coalesced). */
export const PRESENCE_COALESCE_MS = 100;
/** A node's snapshot is put at least this often (ms): its heartbeat. */
export const PRESENCE_HEARTBEAT_MS = 2_000;
/** A snapshot older than this (ms, by its KV entry's server time) is a dead node's. */
export const PRESENCE_STALE_MS = 6_000;
/** How often snapshots are checked for age (ms). */
export const PRESENCE_CHECK_MS = 1_000;
/** The bucket's max age (ms): NATS drops a key not put for this long. */
export const PRESENCE_MAX_AGE_MS = 10_000;

/** The timings of {@link NatsPresence}; tests shorten them. */
export interface PresenceTiming {
  /** Default {@link PRESENCE_COALESCE_MS}. */
  coalesceMs: number;
  /** Default {@link PRESENCE_HEARTBEAT_MS}. */
  heartbeatMs: number;
  /** Default {@link PRESENCE_STALE_MS}. */
  staleMs: number;
  /** Default {@link PRESENCE_CHECK_MS}. */
  checkMs: number;
  /** How long a put may take before it is given up (default the heartbeat). */
  putTimeoutMs: number;
}

/** Options of {@link NatsPresence.open}. */
export interface NatsPresenceOptions {
  /** A connected NATS client, with JetStream on the server; the caller closes it. */
  nc: NatsConnection;
  /** The cluster's name (rule 2.9): the bucket is `im_<cluster>_presence`. */
  cluster: string;
  /** This node's name (rule 2.9): its key in the bucket. */
  node: string;
  /** The cluster key's keys (11.1, 11.2). */
  keys: ClusterKeys;
  /** The clock (ms since the epoch): `since`, envelope times, snapshot ages. */
  now?: () => number;
  /** Where refusals and NATS trouble are logged. */
  log?: Logger;
  /**
   * One of this node's users lost to the same user on another node (a later
   * login there): close its connection here (`replaced`, rule 2.10). Called
   * once per `join`, after the listeners were told.
   */
  onReplaced?: (name: string, by: PresenceEntry) => void;
  /** {@link NatsPresence.partial} changed (`!list` says so). */
  onPartialChange?: (partial: boolean) => void;
  /**
   * Another process puts snapshots under this node's name (two started
   * with one `--node`): this one has stopped putting; the caller should
   * stop it. Called once, after `cluster-duplicate-node` is logged.
   */
  onDuplicate?: (other: { boot: string; time: number }) => void;
  /** Told when a listener throws; the other listeners are still called. */
  onListenerError?: (error: unknown) => void;
  /** Shorter timings, for tests. */
  timing?: Partial<PresenceTiming>;
  /**
   * The bucket's replicas when it is made (1 to 5, default 1); one already
   * there with another count is used as it is and logged
   * `cluster-replicas-differ` (11.1, 11.6).
   */
  replicas?: number;
}

/** One user of a node, as its snapshot carries it. */
interface Held {
  entry: PresenceEntry;
  /** When it logged in on that node (ms, that node's clock). */
  since: number;
}

/** A snapshot's payload, read. */
interface Parsed {
  users: Map<string, Held>;
  /** The node's last snapshot: it closed. */
  leaving: boolean;
}

/** The newest envelope accepted of a node: an older one is refused (11.3). */
interface Newest {
  time: number;
  boot: string;
  seq: number;
}

/** The newest verified snapshot of another node. */
interface Snapshot {
  users: Map<string, Held>;
  /** The KV entry's server time (ms). */
  created: number;
  boot: string;
  seq: number;
  /** The envelope, to know a copy of it from a replay. */
  bytes: Uint8Array;
}

const STATES: ReadonlySet<string> = new Set(["IDLE", "HOSTING", "BUSY"]);
/** Longest `addr` and `ticketId` a snapshot may carry. */
const MAX_DETAIL = 300;
/** Own envelopes remembered, to know our puts when the watch shows them. */
const RECENT_OWN = 8;

function makeEntry(
  name: string,
  node: string,
  fields: PresenceFields,
): PresenceEntry {
  const e: PresenceEntry = { name, node, state: fields.state };
  const more: Partial<PresenceFields> = {};
  if (fields.addr !== undefined) more.addr = fields.addr;
  if (fields.partner !== undefined) more.partner = fields.partner;
  if (fields.isHost !== undefined) more.isHost = fields.isHost;
  if (fields.ticketId !== undefined) more.ticketId = fields.ticketId;
  return Object.freeze({ ...e, ...more });
}

function sameFields(a: PresenceEntry, b: PresenceEntry): boolean {
  return a.node === b.node && a.state === b.state && a.addr === b.addr &&
    a.partner === b.partner && a.isHost === b.isHost &&
    a.ticketId === b.ticketId;
}

/** Does `a` win over `b` (later since, then the greater node name)? */
function wins(a: Held, b: Held): boolean {
  if (a.since !== b.since) return a.since > b.since;
  return a.entry.node > b.entry.node;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function malformed(why: string): ProtocolError {
  return new ProtocolError("cluster-malformed", `Snapshot refused: ${why}`);
}

/**
 * Read a snapshot's payload (11.3).
 * @throws {ProtocolError} `cluster-malformed`
 */
function parseSnapshot(payload: Uint8Array, node: string): Parsed {
  let msg: unknown;
  try {
    msg = JSON.parse(fromUtf8(payload, "snapshot"));
  } catch {
    throw malformed("not JSON");
  }
  const m = msg as {
    t?: unknown;
    node?: unknown;
    users?: unknown;
    leaving?: unknown;
  };
  if (typeof msg !== "object" || msg === null || m.t !== "snapshot") {
    throw malformed("not a snapshot");
  }
  if (m.node !== node) throw malformed(`node "${m.node}" under key ${node}`);
  if (!Array.isArray(m.users)) throw malformed("no users");
  if (m.leaving !== undefined && m.leaving !== true) throw malformed("leaving");
  const leaving = m.leaving === true;
  if (leaving && m.users.length > 0) throw malformed("users while leaving");
  const users = new Map<string, Held>();
  for (const u of m.users as unknown[]) {
    const x = u as Record<string, unknown>;
    if (typeof u !== "object" || u === null) throw malformed("a user");
    const { name, state, addr, partner, isHost, ticketId, since } = x;
    if (typeof name !== "string" || !isValidUsername(name)) {
      throw malformed("a user's name");
    }
    if (users.has(name)) throw malformed(`${name} twice`);
    if (typeof state !== "string" || !STATES.has(state)) {
      throw malformed(`${name}'s state`);
    }
    if (
      typeof since !== "number" || !Number.isSafeInteger(since) || since < 0
    ) {
      throw malformed(`${name}'s since`);
    }
    const fields: PresenceFields = { state: state as UserState };
    if (addr !== undefined) {
      if (typeof addr !== "string" || addr.length > MAX_DETAIL) {
        throw malformed(`${name}'s addr`);
      }
      fields.addr = addr;
    }
    if (partner !== undefined) {
      if (typeof partner !== "string" || !isValidUsername(partner)) {
        throw malformed(`${name}'s partner`);
      }
      fields.partner = partner;
    }
    if (isHost !== undefined) {
      if (typeof isHost !== "boolean") throw malformed(`${name}'s isHost`);
      fields.isHost = isHost;
    }
    if (ticketId !== undefined) {
      if (typeof ticketId !== "string" || ticketId.length > MAX_DETAIL) {
        throw malformed(`${name}'s ticketId`);
      }
      fields.ticketId = ticketId;
    }
    users.set(name, { entry: makeEntry(name, node, fields), since });
  }
  return { users, leaving };
}

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
  readonly #window = new EnvelopeWindow();
  /** When this boot started (this node's clock). */
  readonly #started: number;

  #own = new Map<string, Held & { told: boolean }>();
  #remote = new Map<string, Snapshot>();
  /** Per other node, the newest envelope accepted; kept after it is dropped. */
  #newest = new Map<string, Newest>();
  /** The resolved view: one entry per online user. */
  #view = new Map<string, PresenceEntry>();
  /** Nodes dropped as dead, and when: their replay windows are forgotten later. */
  #gone = new Map<string, number>();

  #listeners = new Set<PresenceListener>();
  #queue: PresenceChange[] = [];
  #telling = false;

  #seq = 0;
  #recent: Uint8Array[] = [];
  #lastPut = -Infinity;
  #putting: Promise<void> | undefined;
  #dirty = false;
  #putTimer: ReturnType<typeof setTimeout> | undefined;
  #putDue = Infinity;
  #putFailing = false;
  /** The KV revision of our first put in this bucket (a later foreign one is a duplicate). */
  #ownRev: number | undefined;
  /** Another process puts under our name: nothing more is put. */
  #duplicate = false;
  #remaking: Promise<void> | undefined;
  #checkTimer: ReturnType<typeof setInterval>;

  #watcher: { stop(): void } | undefined;
  /** Since when (Date.now()) a put succeeded that the watch has not shown yet. */
  #echoSince: number | undefined;
  #watching: Promise<void>;
  #rewatchTimer: ReturnType<typeof setTimeout> | undefined;
  #rewatchWake: (() => void) | undefined;
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
    this.#t = timingOf(o.timing);
    this.#started = this.#now();
    this.#subject = `$KV.${this.bucket}.${this.node}`;
    this.#checkTimer = setInterval(() => this.#expire(), this.#t.checkMs);
    const status = o.nc.status();
    this.#statusIter = status as unknown as { stop(): void };
    this.#statusLoop = this.#followStatus(status);
    this.#watching = this.#watchLoop();
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
    p.#dirty = true;
    await p.#flush();
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
    return [...this.#remote.keys()].sort();
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
    let since = this.#now();
    for (const s of this.#remote.values()) {
      const h = s.users.get(name);
      if (h && h.since >= since) since = h.since + 1;
    }
    this.#own.set(name, { entry: e, since, told: false });
    this.#changed();
    this.#apply([name], true);
    return e;
  }

  leave(name: string): PresenceEntry | undefined {
    const held = this.#own.get(name);
    if (!held) return undefined;
    this.#own.delete(name);
    this.#changed();
    this.#apply([name]);
    return held.entry;
  }

  update(name: string, fields: PresenceFields): PresenceEntry | undefined {
    const held = this.#own.get(name);
    if (!held) return undefined;
    const e = makeEntry(name, this.node, fields);
    this.#own.set(name, { ...held, entry: e });
    this.#changed();
    this.#apply([name]);
    return e;
  }

  /**
   * Put the snapshot again soon (as after a change of our users): the
   * cluster key was replaced (11.1), so the others hear us under the new key
   * before the next heartbeat.
   */
  reseal(): void {
    this.#changed();
  }

  get(name: string): PresenceEntry | undefined {
    return this.#view.get(name);
  }

  list(): PresenceEntry[] {
    return [...this.#view.values()].sort((a, b) =>
      a.name.localeCompare(b.name)
    );
  }

  get size(): number {
    return this.#view.size;
  }

  subscribe(listener: PresenceListener): () => void {
    const l: PresenceListener = (c) => listener(c);
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
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
    await this.#putting;
    await this.#watching;
    await this.#statusLoop;
    if (!this.#nc.isClosed() && !this.#duplicate) {
      try {
        // The JetStream timeout of both: putTimeoutMs.
        await this.#kv.put(this.node, this.#seal([], true), {
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
    await this.#putting?.catch(() => {});
    await this.#watching;
    await this.#statusLoop;
  }

  #stop(): void {
    this.#closed = true;
    clearInterval(this.#checkTimer);
    clearTimeout(this.#putTimer);
    this.#putTimer = undefined;
    clearTimeout(this.#rewatchTimer);
    this.#rewatchWake?.();
    this.#watcher?.stop();
    this.#statusIter?.stop();
  }

  // --- the view -----------------------------------------------------------

  /** The winner for `name` among this node's user and the snapshots. */
  #resolve(name: string): PresenceEntry | undefined {
    let best: Held | undefined = this.#own.get(name);
    for (const s of this.#remote.values()) {
      const h = s.users.get(name);
      if (h && (!best || wins(h, best))) best = h;
    }
    return best?.entry;
  }

  /**
   * Bring the view of `names` up to date and tell the listeners what
   * changed; then tell `onReplaced` of this node's users that lost.
   * @param rejoin a local join: an entry already there is told as left
   */
  #apply(names: Iterable<string>, rejoin = false): void {
    const replaced: [string, PresenceEntry][] = [];
    for (const name of [...names].sort()) {
      const old = this.#view.get(name);
      const now = this.#resolve(name);
      // Told even when the view did not change (it showed the winner already).
      const own = this.#own.get(name);
      if (own && !own.told && now && now.node !== this.node) {
        own.told = true;
        replaced.push([name, now]);
      }
      if (now === old) continue;
      if (!now) {
        this.#view.delete(name);
        this.#tell({ kind: "leave", entry: old! });
      } else if (!old) {
        this.#view.set(name, now);
        this.#tell({ kind: "join", entry: now });
      } else if (old.node !== now.node || rejoin && now.node === this.node) {
        this.#view.set(name, now);
        this.#tell({ kind: "leave", entry: old });
        this.#tell({ kind: "join", entry: now });
      } else if (now.node !== this.node && sameFields(old, now)) {
        // A heartbeat of the same user: the entry read before stays.
        continue;
      } else {
        this.#view.set(name, now);
        this.#tell({ kind: "update", entry: now, previous: old });
      }
    }
    for (const [name, by] of replaced) {
      try {
        this.#onReplaced(name, by);
      } catch (e) {
        this.#onListenerError(e);
      }
    }
  }

  /** Tell every listener, in order; a change made by a listener waits for the current one. */
  #tell(change: PresenceChange): void {
    this.#queue.push(change);
    if (this.#telling) return;
    this.#telling = true;
    try {
      for (let c = this.#queue.shift(); c; c = this.#queue.shift()) {
        for (const l of [...this.#listeners]) {
          try {
            l(c);
          } catch (e) {
            this.#onListenerError(e);
          }
        }
      }
    } finally {
      this.#telling = false;
    }
  }

  /** Drop the snapshots too old to be of a live node (their users leave). */
  #expire(): void {
    // A watch that does not show our own put is dead (its stream was
    // deleted under it): watch again.
    if (
      this.#echoSince !== undefined && this.#watcher &&
      Date.now() - this.#echoSince > this.#t.staleMs / 2
    ) {
      this.#echoSince = undefined;
      this.#log("cluster-presence-watch-stalled", { node: this.node });
      this.#watcher.stop();
    }
    const now = this.#now();
    for (const [node, s] of this.#remote) {
      if (now - s.created > this.#t.staleMs) {
        this.#log("cluster-node-gone", { node, age: now - s.created });
        this.#drop(node);
      }
    }
    // A gone node's envelopes are refused as stale after 2 min anyway.
    for (const [node, at] of this.#gone) {
      if (now - at > 2 * 120_000 && !this.#remote.has(node)) {
        this.#window.forget(node);
        this.#newest.delete(node);
        this.#gone.delete(node);
      }
    }
  }

  #drop(node: string): void {
    this.#gone.set(node, this.#now());
    const s = this.#remote.get(node);
    if (!s) return;
    this.#remote.delete(node);
    this.#apply(s.users.keys());
  }

  // --- the watch ----------------------------------------------------------

  /** Watch the bucket; watch again when the watch ends (NATS back, or an error). */
  async #watchLoop(): Promise<void> {
    let delay = 100;
    while (!this.#closed) {
      try {
        const w = await this.#kv.watch();
        if (this.#closed) {
          w.stop();
          break;
        }
        this.#watcher = w;
        this.#watchFailing = false;
        this.#refreshPartial();
        delay = 100;
        for await (const e of w) this.#onEntry(e);
      } catch (e) {
        if (this.#closed) break;
        this.#watchFailing = true;
        this.#refreshPartial();
        this.#log("cluster-presence-watch-failed", {
          node: this.node,
          error: e instanceof Error ? e.message : String(e),
        });
        if (isGone(e)) await this.#remake();
      }
      this.#watcher = undefined;
      if (this.#closed || this.#nc.isClosed()) break;
      await new Promise<void>((r) => {
        this.#rewatchWake = r;
        this.#rewatchTimer = setTimeout(r, delay);
      });
      this.#rewatchWake = undefined;
      delay = Math.min(delay * 2, this.#t.heartbeatMs);
    }
  }

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
        this.#ownRev = undefined; // revisions start again
        this.#log("cluster-presence-bucket-made", {
          node: this.node,
          bucket: this.bucket,
        });
        this.#watcher?.stop();
        this.#rewatchWake?.();
        this.#changed();
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
      if (own) this.#changed(); // ours is put again
      return;
    }
    if (own && this.#recent.some((b) => equalBytes(b, e.value))) {
      this.#echoSince = undefined; // the watch is alive
      return;
    }
    const created = e.created.getTime();
    const held = this.#remote.get(node);
    if (held && equalBytes(held.bytes, e.value)) return; // seen (a watch again)
    if (!own && this.#now() - created > this.#t.staleMs) return; // a dead node's
    let parsed: Parsed;
    let boot: string, seq: number, time: number;
    try {
      const opened = openEnvelope(this.#keys, e.value, {
        subject: `$KV.${this.bucket}.${node}`,
        now: this.#now(),
        window: this.#window,
      });
      if (opened.node !== node) {
        throw malformed(`node ${opened.node}'s envelope under key ${node}`);
      }
      parsed = parseSnapshot(opened.payload, node);
      boot = opened.boot.toHex();
      seq = opened.seq;
      time = opened.time;
      const last = own ? undefined : this.#newest.get(node);
      if (
        last &&
        (last.boot === boot ? seq < last.seq : time < last.time)
      ) {
        throw new ProtocolError(
          "cluster-replayed",
          `Snapshot refused: older than the newest of ${node} (sealed at ${time}, boot ${boot} seq ${seq}; the newest at ${last.time}, boot ${last.boot} seq ${last.seq})`,
        );
      }
    } catch (err) {
      this.#refuse(node, err);
      if (own) this.#changed(); // whatever it was, ours is put again
      return;
    }
    if (own) {
      this.#onOwnKey(e, boot, time);
      return;
    }
    this.#newest.set(node, { time, boot, seq });
    if (parsed.leaving) {
      this.#log("cluster-node-gone", { node, leaving: true });
      this.#drop(node);
      return;
    }
    const users = parsed.users;
    const names = new Set([...users.keys(), ...(held?.users.keys() ?? [])]);
    this.#remote.set(node, { users, created, boot, seq, bytes: e.value });
    this.#gone.delete(node);
    this.#apply(names);
  }

  /**
   * A verified envelope under our own key that is not one of our puts: an
   * earlier envelope of ours, a copy left by an earlier boot (put over now),
   * or another process running with our node name.
   */
  #onOwnKey(e: KvEntry, boot: string, time: number): void {
    const duplicate = boot !== this.#bootHex && time >= this.#started &&
      this.#ownRev !== undefined && e.revision > this.#ownRev;
    if (!duplicate) {
      this.#changed();
      return;
    }
    if (this.#duplicate) return;
    this.#duplicate = true;
    clearTimeout(this.#putTimer);
    this.#putTimer = undefined;
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
          this.#watcher?.stop();
          this.#rewatchWake?.();
          this.#changed();
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
    const partial = this.#linkDown || this.#putFailing || this.#watchFailing;
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

  // --- putting our snapshot -----------------------------------------------

  /**
   * Our users changed, or our key must be put again: put the snapshot once
   * `coalesceMs` passed since the last put, whatever asked for it.
   */
  #changed(): void {
    this.#dirty = true;
    this.#plan(this.#lastPut + this.#t.coalesceMs);
  }

  /** Have the next put happen at `at` (Date.now() time), or earlier if already planned so. */
  #plan(at: number): void {
    if (this.#closed || this.#duplicate) return;
    if (this.#putTimer !== undefined && this.#putDue <= at) return;
    clearTimeout(this.#putTimer);
    this.#putDue = at;
    this.#putTimer = setTimeout(() => {
      this.#putTimer = undefined;
      this.#putDue = Infinity;
      this.#flush();
    }, Math.max(0, at - Date.now()));
  }

  /** Put the snapshot (one put at a time; a change meanwhile puts again). */
  #flush(): Promise<void> {
    if (this.#putting) {
      this.#dirty = true;
      return this.#putting;
    }
    if (this.#duplicate) return Promise.resolve();
    this.#dirty = false;
    const p = this.#put().finally(() => {
      this.#putting = undefined;
      if (this.#closed) return;
      if (this.#dirty) this.#plan(this.#lastPut + this.#t.coalesceMs);
      else this.#plan(this.#lastPut + this.#t.heartbeatMs);
    });
    this.#putting = p;
    return p;
  }

  /** Seal a snapshot of `users` for our key. */
  #seal(
    users: (Omit<PresenceEntry, "node"> & { since: number })[],
    leaving = false,
  ): Uint8Array {
    const payload = utf8(
      JSON.stringify({
        t: "snapshot",
        node: this.node,
        users,
        ...(leaving && { leaving: true }),
      }),
    );
    const env = sealEnvelope(this.#keys, {
      node: this.node,
      boot: this.#boot,
      seq: ++this.#seq,
      time: this.#now(),
      subject: this.#subject,
      payload,
    });
    this.#recent.push(env);
    if (this.#recent.length > RECENT_OWN) this.#recent.shift();
    return env;
  }

  async #put(): Promise<void> {
    const env = this.#seal(
      [...this.#own.values()].map(({ entry, since }) => {
        const { node: _, ...u } = entry;
        return { ...u, since };
      }),
    );
    this.#lastPut = Date.now();
    try {
      const rev = await this.#kv.put(this.node, env, {
        timeout: this.#t.putTimeoutMs,
      });
      // The first in this bucket; lower: the bucket was made again.
      if (this.#ownRev === undefined || rev < this.#ownRev) this.#ownRev = rev;
      this.#echoSince ??= Date.now();
      if (this.#putFailing) {
        this.#putFailing = false;
        this.#log("cluster-presence-put", { node: this.node, ok: true });
        this.#refreshPartial();
      }
    } catch (e) {
      // Put again at the next heartbeat, or once NATS is back; the bucket
      // made again if it is gone.
      if (!this.#putFailing) {
        this.#putFailing = true;
        this.#log("cluster-presence-put-failed", {
          node: this.node,
          error: e instanceof Error ? e.message : String(e),
        });
        this.#refreshPartial();
      }
      if (!this.#linkDown && !this.#closed) await this.#remake();
    }
  }
}

/** The bucket's settings (11.3). */
const BUCKET = { history: 1, ttl: PRESENCE_MAX_AGE_MS };

/** Does this NATS error say the bucket's stream is not there? */
function isGone(e: unknown): boolean {
  const m = e instanceof Error ? e.message : String(e);
  return /stream not found|bucket not found|no stream/i.test(m);
}

/** The timings, the defaults where not given. */
function timingOf(t: Partial<PresenceTiming> = {}): PresenceTiming {
  const heartbeatMs = t.heartbeatMs ?? PRESENCE_HEARTBEAT_MS;
  return {
    coalesceMs: t.coalesceMs ?? PRESENCE_COALESCE_MS,
    heartbeatMs,
    staleMs: t.staleMs ?? PRESENCE_STALE_MS,
    checkMs: t.checkMs ?? PRESENCE_CHECK_MS,
    putTimeoutMs: t.putTimeoutMs ?? heartbeatMs,
  };
}

/**
 * The presence bucket of a cluster (11.3).
 * @param cluster the cluster's name
 * @returns `im_<cluster>_presence`
 */
export function presenceBucket(cluster: string): string {
  return `im_${cluster}_presence`;
}
