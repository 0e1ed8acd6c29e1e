/**
 * {@link PresenceView}: the view of `NatsPresence` (PROTOCOL.md 11.3),
 * a part of it (presence.ts): this node's own users and the newest
 * snapshot of every other node merged into one entry per online user (a
 * user on two nodes resolves to the later `since`, ties to the greater
 * node name), each change told to the listeners in order as a `join`,
 * `leave` or `update`, and this node's users that lost told to
 * `onReplaced` once.
 * @module
 */

import { EnvelopeWindow } from "../../proto/mod.ts";
import type { Logger } from "../../util/mod.ts";
import type {
  PresenceChange,
  PresenceEntry,
  PresenceListener,
} from "../seams.ts";
import {
  type Held,
  type Newest,
  type Opened,
  sameFields,
  type Snapshot,
  wins,
} from "./presence_snapshot.ts";

/** The merged view of one node's presence, and its listeners. */
export class PresenceView {
  /** This node's users; `told`: `onReplaced` was called for this login. */
  readonly own = new Map<string, Held & { told: boolean }>();
  /** Per other node, its newest verified snapshot. */
  readonly remote = new Map<string, Snapshot>();
  /** The envelopes' replay window, per node (11.2). */
  readonly window = new EnvelopeWindow();
  /** Per other node, the newest envelope accepted; kept after it is dropped. */
  readonly newest = new Map<string, Newest>();
  /** Nodes dropped as dead, and when: their replay windows are forgotten later. */
  readonly #gone = new Map<string, number>();
  readonly #log: Logger;
  readonly #node: string;
  readonly #onReplaced: (name: string, by: PresenceEntry) => void;
  readonly #onListenerError: (error: unknown) => void;
  /** The resolved view: one entry per online user. */
  #view = new Map<string, PresenceEntry>();
  #listeners = new Set<PresenceListener>();
  #queue: PresenceChange[] = [];
  #telling = false;

  /**
   * @param node this node's name
   * @param onReplaced one of this node's users lost to another node's
   * @param onListenerError a listener (or `onReplaced`) threw
   * @param log where a node leaving the view is logged (`cluster-node-gone`)
   */
  constructor(
    node: string,
    onReplaced: (name: string, by: PresenceEntry) => void,
    onListenerError: (error: unknown) => void,
    log: Logger,
  ) {
    this.#log = log;
    this.#node = node;
    this.#onReplaced = onReplaced;
    this.#onListenerError = onListenerError;
  }

  /**
   * The `since` of a login here now: later than every other login of this
   * name we know of, whatever the clocks say (11.3).
   * @param name the user
   * @param now this node's clock
   */
  since(name: string, now: number): number {
    let since = now;
    for (const s of this.remote.values()) {
      const h = s.users.get(name);
      if (h && h.since >= since) since = h.since + 1;
    }
    return since;
  }

  /** The user's entry in the view, if online. */
  get(name: string): PresenceEntry | undefined {
    return this.#view.get(name);
  }

  /** Every online user, by name. */
  list(): PresenceEntry[] {
    return [...this.#view.values()].sort((a, b) =>
      a.name.localeCompare(b.name)
    );
  }

  /** Online users. */
  get size(): number {
    return this.#view.size;
  }

  /** Tell `listener` each change; returns the unsubscribe. */
  subscribe(listener: PresenceListener): () => void {
    const l: PresenceListener = (c) => listener(c);
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /**
   * A verified snapshot of another node (11.3): its users replace the
   * node's earlier ones; a leaving one drops the node.
   * @param node the node
   * @param opened the snapshot and its envelope's boot, seq and time
   * @param created the KV entry's server time (ms)
   * @param bytes the envelope, to know a copy of it from a replay
   * @param now this node's clock (when a leaving node is dropped)
   */
  accept(
    node: string,
    opened: Opened,
    created: number,
    bytes: Uint8Array,
    now: number,
  ): void {
    const { parsed, boot, seq, time } = opened;
    const held = this.remote.get(node);
    this.newest.set(node, { time, boot, seq });
    if (parsed.leaving) {
      this.#log("cluster-node-gone", { node, leaving: true });
      this.#drop(node, now);
      return;
    }
    const users = parsed.users;
    const names = new Set([...users.keys(), ...(held?.users.keys() ?? [])]);
    this.remote.set(node, { users, created, boot, seq, bytes });
    this.#gone.delete(node);
    this.apply(names);
  }

  /**
   * Drop the snapshots older than `staleMs` (their users leave), and
   * forget a node gone for long.
   * @param now this node's clock
   * @param staleMs the age of a dead node's snapshot
   */
  expire(now: number, staleMs: number): void {
    for (const [node, s] of this.remote) {
      if (now - s.created > staleMs) {
        this.#log("cluster-node-gone", { node, age: now - s.created });
        this.#drop(node, now);
      }
    }
    // A gone node's envelopes are refused as stale after 2 min anyway.
    for (const [node, at] of this.#gone) {
      if (now - at > 2 * 120_000 && !this.remote.has(node)) {
        this.window.forget(node);
        this.newest.delete(node);
        this.#gone.delete(node);
      }
    }
  }

  #drop(node: string, now: number): void {
    this.#gone.set(node, now);
    const s = this.remote.get(node);
    if (!s) return;
    this.remote.delete(node);
    this.apply(s.users.keys());
  }

  /** The winner for `name` among this node's user and the snapshots. */
  #resolve(name: string): PresenceEntry | undefined {
    let best: Held | undefined = this.own.get(name);
    for (const s of this.remote.values()) {
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
  apply(names: Iterable<string>, rejoin = false): void {
    const replaced: [string, PresenceEntry][] = [];
    for (const name of [...names].sort()) {
      const old = this.#view.get(name);
      const now = this.#resolve(name);
      // Told even when the view did not change (it showed the winner already).
      const own = this.own.get(name);
      if (own && !own.told && now && now.node !== this.#node) {
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
      } else if (old.node !== now.node || rejoin && now.node === this.#node) {
        this.#view.set(name, now);
        this.#tell({ kind: "leave", entry: old });
        this.#tell({ kind: "join", entry: now });
      } else if (now.node !== this.#node && sameFields(old, now)) {
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
}
