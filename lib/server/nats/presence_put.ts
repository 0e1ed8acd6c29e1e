/**
 * {@link SnapshotPut}: putting this node's snapshot (PROTOCOL.md 11.3), a
 * part of `NatsPresence` (presence.ts): after each change of its users,
 * coalesced to at most one put every `coalesceMs`, and at least every
 * `heartbeatMs`; one put at a time (a change meanwhile puts again); each
 * sealed for the node's key with the next seq of this boot, the last few
 * remembered so the watch knows our own puts; nothing more once another
 * process was seen under this node's name. A failed put is logged once
 * (and again once one succeeds), makes the presence partial, and has the
 * bucket made again when it is gone.
 * @module
 */

import type { KV } from "@nats-io/kv";
import { type ClusterKeys, sealEnvelope } from "../../proto/mod.ts";
import { equalBytes } from "./presence_snapshot.ts";
import { snapshotPayload } from "./presence_snapshot.ts";
import type { Logger } from "../../util/mod.ts";
import type { PresenceEntry } from "../seams.ts";
import type { PresenceTiming } from "./presence_config.ts";

/** Own envelopes remembered, to know our puts when the watch shows them. */
const RECENT_OWN = 8;

/** One user as this node's snapshot carries it. */
export type SnapshotUser = Omit<PresenceEntry, "node"> & { since: number };

/** What {@link SnapshotPut} works with, of its presence. */
export interface SnapshotPutHooks {
  node: string;
  /** This boot's 8 random bytes. */
  boot: Uint8Array;
  /** The node's key's subject, `$KV.<bucket>.<node>`. */
  subject: string;
  keys: ClusterKeys;
  timing: PresenceTiming;
  now: () => number;
  log: Logger;
  /** The bucket now (it is replaced when made again). */
  kv(): KV;
  /** This node's users now. */
  users(): SnapshotUser[];
  /** The presence closed: nothing more is planned. */
  closed(): boolean;
  /** Another process puts under our name: nothing more is put. */
  duplicate(): boolean;
  /** The link to NATS is down (a failed put then does not remake the bucket). */
  linkDown(): boolean;
  /** A put succeeded: the watch should show it. */
  put(): void;
  /** Whether puts fail changed: the presence's `partial` again. */
  failingChanged(): void;
  /** The bucket may be gone: make it again. */
  remake(): Promise<void>;
}

/** The puts of this node's snapshot. */
export class SnapshotPut {
  readonly #h: SnapshotPutHooks;
  #seq = 0;
  #recent: Uint8Array[] = [];
  #lastPut = -Infinity;
  #putting: Promise<void> | undefined;
  #dirty = false;
  #putTimer: ReturnType<typeof setTimeout> | undefined;
  #putDue = Infinity;
  #failing = false;
  /** The KV revision of our first put in this bucket (a later foreign one is a duplicate). */
  ownRev: number | undefined;

  /** @param h the presence's side of it */
  constructor(h: SnapshotPutHooks) {
    this.#h = h;
  }

  /** True while puts fail. */
  get failing(): boolean {
    return this.#failing;
  }

  /** The put under way, if any. */
  get putting(): Promise<void> | undefined {
    return this.#putting;
  }

  /** Is `env` one of our last puts? */
  isOurs(env: Uint8Array): boolean {
    return this.#recent.some((b) => equalBytes(b, env));
  }

  /**
   * Our users changed, or our key must be put again: put the snapshot once
   * `coalesceMs` passed since the last put, whatever asked for it.
   */
  changed(): void {
    this.#dirty = true;
    this.#plan(this.#lastPut + this.#h.timing.coalesceMs);
  }

  /** No put is planned any more (closed, or a duplicate seen). */
  cancel(): void {
    clearTimeout(this.#putTimer);
    this.#putTimer = undefined;
  }

  /** Have the next put happen at `at` (Date.now() time), or earlier if already planned so. */
  #plan(at: number): void {
    if (this.#h.closed() || this.#h.duplicate()) return;
    if (this.#putTimer !== undefined && this.#putDue <= at) return;
    clearTimeout(this.#putTimer);
    this.#putDue = at;
    this.#putTimer = setTimeout(() => {
      this.#putTimer = undefined;
      this.#putDue = Infinity;
      this.flush();
    }, Math.max(0, at - Date.now()));
  }

  /** Put the snapshot (one put at a time; a change meanwhile puts again). */
  flush(): Promise<void> {
    if (this.#putting) {
      this.#dirty = true;
      return this.#putting;
    }
    if (this.#h.duplicate()) return Promise.resolve();
    this.#dirty = false;
    const t = this.#h.timing;
    const p = this.#put().finally(() => {
      this.#putting = undefined;
      if (this.#h.closed()) return;
      if (this.#dirty) this.#plan(this.#lastPut + t.coalesceMs);
      else this.#plan(this.#lastPut + t.heartbeatMs);
    });
    this.#putting = p;
    return p;
  }

  /** Seal a snapshot of `users` for our key (`leaving`: the last one). */
  seal(users: SnapshotUser[], leaving = false): Uint8Array {
    const h = this.#h;
    const payload = snapshotPayload(h.node, users, leaving);
    const env = sealEnvelope(h.keys, {
      node: h.node,
      boot: h.boot,
      seq: ++this.#seq,
      time: h.now(),
      subject: h.subject,
      payload,
    });
    this.#recent.push(env);
    if (this.#recent.length > RECENT_OWN) this.#recent.shift();
    return env;
  }

  async #put(): Promise<void> {
    const h = this.#h;
    const env = this.seal(h.users());
    this.#lastPut = Date.now();
    try {
      const rev = await h.kv().put(h.node, env, {
        timeout: h.timing.putTimeoutMs,
      });
      // The first in this bucket; lower: the bucket was made again.
      if (this.ownRev === undefined || rev < this.ownRev) this.ownRev = rev;
      h.put();
      if (this.#failing) {
        this.#failing = false;
        h.log("cluster-presence-put", { node: h.node, ok: true });
        h.failingChanged();
      }
    } catch (e) {
      // Put again at the next heartbeat, or once NATS is back; the bucket
      // made again if it is gone.
      if (!this.#failing) {
        this.#failing = true;
        h.log("cluster-presence-put-failed", {
          node: h.node,
          error: e instanceof Error ? e.message : String(e),
        });
        h.failingChanged();
      }
      if (!h.linkDown() && !h.closed()) await h.remake();
    }
  }
}
