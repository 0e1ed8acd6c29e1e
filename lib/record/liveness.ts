/**
 * The heartbeat rule of one channel (PROTOCOL.md section 4, "Heartbeats",
 * "The bound"): when to send a HEARTBEAT and what interval it announces,
 * active or idle, and when the other side is gone. {@link RecordChannel}
 * tells it what passes and sends what it asks for; it runs on the shared
 * {@link HeartbeatScheduler}.
 * @module
 */

import {
  type HeartbeatScheduler,
  type ScheduledTask,
  STALL_MS,
} from "./scheduler.ts";

/** Default active heartbeat interval (PROTOCOL.md section 4, "Heartbeats"). */
export const DEFAULT_HEARTBEAT_MS = 2000;
/** Longest active heartbeat interval a side may choose (`--heartbeat`): until the other side announces its own, each assumes this. */
export const MAX_HEARTBEAT_MS = 2000;
/** Shortest heartbeat interval. */
export const MIN_HEARTBEAT_MS = 50;
/**
 * Default interval of an idle channel: one with no DATA record either way
 * for {@link IDLE_AFTER_MS}. 60 s, not 30: a server holding many idle users
 * spends its CPU on their heartbeats (PROTOCOL.md section 4, "Why the idle
 * interval is 60 s"; issue 15).
 */
export const IDLE_HEARTBEAT_MS = 60_000;
/** Longest interval a HEARTBEAT may announce; a receiver clamps to it. */
export const MAX_ANNOUNCED_HEARTBEAT_MS = 60_000;
/** A channel with no DATA record sent or received for this long is idle. */
export const IDLE_AFTER_MS = 10_000;
/** A side is gone after this many of the slower side's heartbeat intervals without a valid record. */
export const HEARTBEATS_BEFORE_DEAD = 3;
/**
 * A silence verdict reached on a late timer run is looked at again this long
 * after (PROTOCOL.md section 4, "A stalled side reads before it judges").
 */
export const RECHECK_MS = 100;
/** Late runs in a row that put a verdict off; the next one gives it. */
export const MAX_RECHECKS = 2;

/** The heartbeat settings of a channel. */
export interface LivenessOptions {
  /** Send a heartbeat after this long without sending, while active; 0 turns heartbeats off. */
  heartbeatMs?: number;
  /**
   * The interval once idle (default {@link IDLE_HEARTBEAT_MS}, at most
   * {@link MAX_ANNOUNCED_HEARTBEAT_MS}); one not longer than `heartbeatMs`
   * means no idle mode.
   */
  idleHeartbeatMs?: number;
  /** Idle after this long with no DATA record either way (default {@link IDLE_AFTER_MS}). */
  idleAfterMs?: number;
  /**
   * Declare the peer gone after this long without a valid record. Default:
   * 3 x the slower of our active interval and the one the other side last
   * announced in a HEARTBEAT (assumed {@link MAX_HEARTBEAT_MS} until the
   * first one arrives).
   */
  deadAfterMs?: number;
}

/** What {@link Liveness} asks of its channel. */
export interface LivenessHooks {
  /** Send a HEARTBEAT announcing `intervalMs` now. */
  beat(intervalMs: number): void;
  /** The other side was silent too long (`silentMs`): end the channel. */
  dead(silentMs: number): void;
  /** The channel went idle (`true`) or active again (optional). */
  idle?(idle: boolean): void;
}

/**
 * The clocks and the rule of one channel's heartbeats. It is its own entry
 * in the scheduler ({@link Liveness.run}), not a closure around itself: a
 * server keeps one per connection, idle or not (issue 15, BENCHMARKS.md
 * "Idle connections").
 */
export class Liveness implements ScheduledTask {
  #scheduler: HeartbeatScheduler;
  #hooks: LivenessHooks;
  #heartbeatMs: number;
  #idleHeartbeatMs: number;
  #idleAfterMs: number;
  #fixedDeadAfterMs: number | undefined;
  /** The other side's announced interval, once it announced it. */
  #peerHeartbeatMs: number | undefined;
  #idle = false;
  #lastSent: number;
  #lastReceived: number;
  /** When a DATA record last went either way. */
  #lastData: number;
  /** Are we in the scheduler (heartbeats run)? */
  #scheduled = false;
  /** Silence verdicts put off by late runs in a row (reset by a record). */
  #rechecks = 0;
  /**
   * When a put-off verdict is looked at again: a run before it (one that
   * {@link data} brought forward, for a DATA record this side sent) gives no
   * verdict. A record that arrives resets it ({@link received}).
   */
  #recheckAt = -Infinity;

  /**
   * @param opts the intervals
   * @param scheduler the timer
   * @param hooks how to send a heartbeat and end the channel
   */
  constructor(
    opts: LivenessOptions,
    scheduler: HeartbeatScheduler,
    hooks: LivenessHooks,
  ) {
    this.#scheduler = scheduler;
    this.#hooks = hooks;
    this.#heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.#idleHeartbeatMs = Math.min(
      opts.idleHeartbeatMs ?? IDLE_HEARTBEAT_MS,
      MAX_ANNOUNCED_HEARTBEAT_MS,
    );
    this.#idleAfterMs = opts.idleAfterMs ?? IDLE_AFTER_MS;
    this.#fixedDeadAfterMs = opts.deadAfterMs;
    this.#lastSent = this.#lastReceived = this.#lastData = scheduler.now();
  }

  /**
   * Announce our interval at once (until the other side hears it, it must
   * assume the slowest one) and start the schedule; nothing when heartbeats
   * are off.
   */
  start(): void {
    if (this.#heartbeatMs <= 0 || this.#scheduled) return;
    this.#scheduled = true;
    this.#scheduler.schedule(this, this.#nextDue());
    // After scheduling: a heartbeat that fails at once ends the channel,
    // whose stop() then takes it out again.
    this.#hooks.beat(this.heartbeatMs);
  }

  /** Leave the scheduler for good. */
  stop(): void {
    if (this.#scheduled) this.#scheduler.cancel(this);
    this.#scheduled = false;
  }

  /**
   * How long the other side may stay silent before it is declared gone: 3 x
   * the longer of our active interval and the other side's announced one
   * (our own idle interval does not count: PROTOCOL.md section 4).
   */
  get deadAfterMs(): number {
    return this.#fixedDeadAfterMs ??
      HEARTBEATS_BEFORE_DEAD *
        Math.max(this.#heartbeatMs, this.#peerHeartbeatMs ?? MAX_HEARTBEAT_MS);
  }

  /** Is the channel idle, sending heartbeats at the idle interval? */
  get idle(): boolean {
    return this.#idle;
  }

  /** The interval we announce and keep now: the idle one while idle. */
  get heartbeatMs(): number {
    return this.#idle ? this.#idleHeartbeatMs : this.#heartbeatMs;
  }

  /** A record of ours was sealed and handed to the transport. */
  sent(): void {
    this.#lastSent = this.#scheduler.now();
  }

  /**
   * A valid record arrived.
   * @returns the time, for {@link data}
   */
  received(): number {
    this.#rechecks = 0;
    this.#recheckAt = -Infinity;
    return this.#lastReceived = this.#scheduler.now();
  }

  /**
   * A DATA record went one way or the other: an idle channel is active
   * again, and says so at once.
   * @param now when (default now)
   */
  data(now: number = this.#scheduler.now()): void {
    this.#lastData = now;
    if (!this.#idle || !this.#scheduled) return;
    this.#idle = false;
    this.#hooks.idle?.(false);
    this.#hooks.beat(this.#heartbeatMs);
    // A heartbeat that failed at once may have ended the channel (stop()).
    if (this.#scheduled) this.#scheduler.advance(this, this.#nextDue());
  }

  /**
   * The other side announced its interval in a HEARTBEAT.
   * @param ms the announced interval, clamped to 50..60000
   */
  announced(ms: number): void {
    const was = this.#peerHeartbeatMs ?? MAX_HEARTBEAT_MS;
    this.#peerHeartbeatMs = Math.min(
      Math.max(ms, MIN_HEARTBEAT_MS),
      MAX_ANNOUNCED_HEARTBEAT_MS,
    );
    // A shorter interval brings the deadline nearer than our entry.
    if (this.#scheduled && this.#peerHeartbeatMs < was) {
      this.#scheduler.advance(this, this.#nextDue());
    }
  }

  /** Can this channel go idle at all? */
  get #idles(): boolean {
    return this.#idleHeartbeatMs > this.#heartbeatMs;
  }

  /** When {@link run} has something to do next: a heartbeat, the deadline, or going idle. */
  #nextDue(): number {
    let due = Math.min(
      this.#lastSent + this.heartbeatMs,
      this.#lastReceived + this.deadAfterMs,
    );
    if (!this.#idle && this.#idles) {
      due = Math.min(due, this.#lastData + this.#idleAfterMs);
    }
    return due;
  }

  /**
   * The scheduler's call ({@link ScheduledTask}): the deadline, going idle,
   * a heartbeat; then when next. A deadline passed on a run that fired more
   * than {@link STALL_MS} late is looked at again {@link RECHECK_MS} later,
   * up to {@link MAX_RECHECKS} times in a row: the process stalled, and what
   * the peer sent meanwhile may wait unread (PROTOCOL.md section 4, "A
   * stalled side reads before it judges").
   * @param now the scheduler's clock
   * @param lateMs how late the timer of this run fired
   * @returns when to run next, or undefined once stopped or dead
   */
  run(now: number, lateMs = 0): number | undefined {
    if (!this.#scheduled) return undefined;
    let recheck = false;
    if (now - this.#lastReceived >= this.deadAfterMs) {
      if (now < this.#recheckAt) {
        recheck = true; // brought forward: the reads still get their time
      } else if (lateMs <= STALL_MS || this.#rechecks >= MAX_RECHECKS) {
        this.#scheduled = false;
        this.#hooks.dead(now - this.#lastReceived);
        return undefined;
      } else {
        this.#rechecks++;
        this.#recheckAt = now + RECHECK_MS;
        recheck = true;
      }
    }
    if (
      !this.#idle && this.#idles && now - this.#lastData >= this.#idleAfterMs
    ) {
      // Announce the longer interval before keeping to it (PROTOCOL.md
      // section 4): the other side's bound grows before our silence does.
      this.#idle = true;
      this.#hooks.idle?.(true);
      this.#hooks.beat(this.heartbeatMs);
    } else if (now - this.#lastSent >= this.heartbeatMs) {
      this.#hooks.beat(this.heartbeatMs);
    }
    // A heartbeat that failed at once may have ended the channel (stop()).
    if (!this.#scheduled) return undefined;
    // A recheck comes after turns that read, never at the next millisecond.
    return recheck
      ? Math.max(this.#nextDue(), this.#recheckAt)
      : this.#nextDue();
  }
}
