/**
 * The settings of `NatsPresence` (PROTOCOL.md 11.3), a part of it
 * (presence.ts): its timings and their defaults, its options, and the KV
 * bucket's name and settings.
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { ClusterKeys } from "../../proto/mod.ts";
import type { Logger } from "../../util/mod.ts";
import type { PresenceEntry } from "../seams.ts";

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

/** The timings of `NatsPresence`; tests shorten them. */
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

/** Options of `NatsPresence.open`. */
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
  /** `NatsPresence.partial` changed (`!list` says so). */
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

/** The bucket's settings (11.3). */
export const BUCKET = { history: 1, ttl: PRESENCE_MAX_AGE_MS };

/** Does this NATS error say the bucket's stream is not there? */
export function isGone(e: unknown): boolean {
  const m = e instanceof Error ? e.message : String(e);
  return /stream not found|bucket not found|no stream/i.test(m);
}

/** The timings, the defaults where not given. */
export function timingOf(t: Partial<PresenceTiming> = {}): PresenceTiming {
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
