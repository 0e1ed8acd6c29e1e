/**
 * One timer for the heartbeats of every channel of a process (PROTOCOL.md
 * section 4, "Heartbeats"; issue 15): a channel is a {@link ScheduledTask}
 * with a due time in a binary heap, and one `setTimeout` is armed for the
 * earliest. Where an interval per channel fired 10,000 times a second for
 * 10,000 idle clients, this fires about once a second.
 *
 * Due times are coarsened: a time `d` ms ahead is rounded up to a multiple of
 * the largest power of two no more than `min(1024, d / 8)` ms
 * ({@link slackMs}), so the deadlines of many channels fall on the same
 * instants and one run of the timer serves all of them, while no deadline
 * moves by more than an eighth of its distance (nor more than ~1 s). Nothing
 * ever runs early.
 *
 * Tasks are lazy: a channel does not move its entry when it sends or
 * receives; when its entry comes due it looks at its clocks, acts, and says
 * when it next wants to run. Only a change that brings a deadline nearer
 * (an idle channel turning active) moves the entry.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HeartbeatScheduler } from "./scheduler.ts";
 * let now = 0;
 * const s = new HeartbeatScheduler({ now: () => now, timers: false });
 * const runs: number[] = [];
 * s.schedule({ run: (t) => (runs.push(t), t < 3000 ? t + 1000 : undefined) }, 1000);
 * for (now = 0; now <= 5000; now++) s.runDue();
 * // 1 s ahead is rounded up to a multiple of 64 ms (an eighth, as a power of two)
 * assert.deepEqual(runs, [1024, 2048, 3072]);
 * assert.equal(s.size, 0);
 * ```
 * @module
 */

/** Largest rounding of a due time, ms (a power of two). */
export const MAX_SLACK_MS = 1024;

/**
 * A timer run later than this after its due time means the process stalled
 * (PROTOCOL.md section 4, "A stalled side reads before it judges"): records
 * may wait unread, so a task should not judge silence on that run.
 */
export const STALL_MS = 100;

/** Something the scheduler runs when it comes due. */
export interface ScheduledTask {
  /**
   * Do what is due.
   * @param now the scheduler's clock
   * @param lateMs how long after its due time the timer of this run fired
   *   (more than {@link STALL_MS}: the process stalled and may not have read
   *   what arrived meanwhile)
   * @returns when to run next (the scheduler's clock), or `undefined` to be dropped
   */
  run(now: number, lateMs: number): number | undefined;
}

/** Options of {@link HeartbeatScheduler}. */
export interface SchedulerOptions {
  /** The clock (default `Date.now`). */
  now?: () => number;
  /**
   * Arm a real timer (default true). A test of a bound turns it off, moves
   * its own clock and calls {@link HeartbeatScheduler.runDue}.
   */
  timers?: boolean;
}

/**
 * How far a due time `delayMs` ahead may be pushed back: the largest power of
 * two no more than `min(MAX_SLACK_MS, delayMs / 8)`, or 0 below 8 ms.
 * @param delayMs how far ahead the time is
 * @returns the rounding unit, ms
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { slackMs } from "./scheduler.ts";
 * assert.deepEqual([slackMs(5), slackMs(150), slackMs(6000), slackMs(90_000)], [0, 16, 512, 1024]);
 * ```
 */
export function slackMs(delayMs: number): number {
  const limit = Math.min(MAX_SLACK_MS, delayMs / 8);
  if (limit < 1) return 0;
  return 2 ** Math.floor(Math.log2(limit));
}

/** A task's place: its due time and its slot in that time's bucket (-1 while it is taken out to run). */
interface Entry {
  task: ScheduledTask;
  due: number;
  index: number;
}

/**
 * Runs {@link ScheduledTask}s at their due times with one timer; see the
 * module's text.
 *
 * Tasks wait in buckets, one per due time, and a binary heap orders the due
 * times alone: coarsened, they are few (a server's 10,000 idle channels fall
 * on a few dozen instants), so putting a task in, taking it out and running
 * it touch its bucket only, not a heap of every task (where each of the
 * ~13 levels of 10,000 entries is a cache miss on a server's large heap:
 * issue 15, BENCHMARKS.md "Heartbeats").
 */
export class HeartbeatScheduler {
  #now: () => number;
  #timers: boolean;
  /** The tasks due at each time. */
  #buckets = new Map<number, Entry[]>();
  /**
   * The due times with a bucket, as a min-heap; a time whose bucket emptied
   * stays until it comes to the top ({@link #firstDue} drops it).
   */
  #times: number[] = [];
  #count = 0;
  #entries = new Map<ScheduledTask, Entry>();
  /** The entries of one {@link runDue}, reused: a run every second or so on a busy server. */
  #due: Entry[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The due time the timer is armed for. */
  #armedFor = Infinity;
  /**
   * Where the armed timer's lateness counts from: its due time, or when it
   * was armed if that was later (a due time already past is no stall).
   */
  #lateFrom = Infinity;
  #running = false;

  /** @param opts the clock, and whether to arm real timers */
  constructor(opts: SchedulerOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#timers = opts.timers ?? true;
  }

  /** The scheduler's clock. */
  now(): number {
    return this.#now();
  }

  /** Tasks scheduled. */
  get size(): number {
    return this.#count;
  }

  /** The earliest due time (after rounding), `Infinity` when nothing is scheduled. */
  get nextDue(): number {
    return this.#firstDue();
  }

  /** Is a real timer armed? (None while nothing is scheduled.) */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Run `task` at `at` (rounded up by {@link slackMs}), or move it there if it
   * is scheduled already.
   * @param task the task
   * @param at when, on the scheduler's clock
   */
  schedule(task: ScheduledTask, at: number): void {
    const due = this.#coarsen(at, this.#now());
    const e = this.#entries.get(task);
    if (e === undefined) {
      const n: Entry = { task, due, index: -1 };
      this.#entries.set(task, n);
      this.#put(n);
    } else if (e.index < 0 || e.due !== due) {
      // Moved, or taken out while it runs: into the bucket of its new time.
      if (e.index >= 0) this.#takeOut(e);
      e.due = due;
      this.#put(e);
    }
    this.#arm();
  }

  /** Put `e` in the bucket of `e.due`. */
  #put(e: Entry): void {
    let bucket = this.#buckets.get(e.due);
    if (bucket === undefined) {
      bucket = [];
      this.#buckets.set(e.due, bucket);
      if (this.#times.length > 2 * this.#buckets.size + 64) {
        // Times of emptied buckets (a task moved back and forth) are many:
        // the heap is made again from the buckets, the new one included.
        this.#times = [];
        for (const t of this.#buckets.keys()) this.#pushTime(t);
      } else this.#pushTime(e.due);
    }
    e.index = bucket.length;
    bucket.push(e);
    this.#count++;
  }

  /** Take `e` out of its bucket (it stays in {@link #entries}). */
  #takeOut(e: Entry): void {
    const bucket = this.#buckets.get(e.due)!;
    const last = bucket.pop()!;
    if (last !== e) {
      bucket[e.index] = last;
      last.index = e.index;
    }
    e.index = -1;
    this.#count--;
    if (bucket.length === 0) this.#buckets.delete(e.due);
  }

  /**
   * Bring `task` forward to `at` if it is due later than that (or not
   * scheduled); never pushes it back.
   * @param task the task
   * @param at the latest it may run
   */
  advance(task: ScheduledTask, at: number): void {
    const e = this.#entries.get(task);
    if (e && e.index >= 0 && e.due <= at) return;
    this.schedule(task, at);
  }

  /**
   * Drop `task`; the timer goes with the last task.
   * @param task the task
   */
  cancel(task: ScheduledTask): void {
    const e = this.#entries.get(task);
    if (!e) return;
    this.#entries.delete(task);
    if (e.index >= 0) this.#takeOut(e);
    this.#arm();
  }

  /**
   * Run every task due by now; each says when it runs next. What a task
   * schedules while it runs is kept. The timer calls this with how late it
   * fired; a test with its own clock calls it after moving the clock.
   * @param lateMs how long after the earliest due time this run is (tasks
   *   get it: more than {@link STALL_MS} means the process stalled)
   */
  runDue(lateMs = 0): void {
    if (this.#running) return;
    this.#running = true;
    try {
      const now = this.#now();
      const due = this.#due;
      for (let t = this.#firstDue(); t <= now; t = this.#firstDue()) {
        this.#popTime();
        const bucket = this.#buckets.get(t)!;
        this.#buckets.delete(t);
        this.#count -= bucket.length;
        // Taken out while they run (kept in #entries, so their entries are
        // reused): a task that cancels or reschedules itself, or another,
        // acts on that; what it returns puts it back below.
        for (let i = 0; i < bucket.length; i++) {
          const e = bucket[i]!;
          e.index = -1;
          due.push(e);
        }
      }
      for (let i = 0; i < due.length; i++) {
        const e = due[i]!;
        // Cancelled, or given a new time, by a task that ran before it: it
        // does not run now.
        if (this.#entries.get(e.task) !== e || e.index >= 0) continue;
        let next: number | undefined;
        try {
          next = e.task.run(now, lateMs);
        } catch {
          next = undefined; // A task that throws is dropped, the others run.
        }
        // A task that scheduled itself while running keeps that; otherwise
        // what it returned, never again in the same run.
        const entry = this.#entries.get(e.task);
        if (entry !== undefined && entry.index >= 0) continue;
        if (next !== undefined) this.schedule(e.task, Math.max(next, now + 1));
        else if (entry === e) this.#entries.delete(e.task);
      }
    } finally {
      this.#due.length = 0;
      this.#running = false;
      this.#arm();
    }
  }

  #coarsen(at: number, now: number): number {
    const g = slackMs(at - now);
    return g === 0 ? at : Math.ceil(at / g) * g;
  }

  /** Keep one timer, armed for the earliest due time, none when empty. */
  #arm(): void {
    if (!this.#timers || this.#running) return;
    const first = this.#firstDue();
    if (first === this.#armedFor) return;
    const now = this.#now();
    // A timer replaced after its own due time passed unfired (the process
    // stalled) hands its reference on: re-arming must not hide the stall.
    const overdue = this.#timer !== undefined && this.#armedFor <= now
      ? this.#lateFrom
      : Infinity;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = first;
    if (first === Infinity) return;
    this.#lateFrom = Math.min(Math.max(first, now), overdue);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#armedFor = Infinity;
      this.runDue(Math.max(0, this.#now() - this.#lateFrom));
    }, Math.max(0, first - now));
  }

  /** The earliest time with a bucket (dropping emptied ones), or Infinity. */
  #firstDue(): number {
    const h = this.#times;
    while (h.length > 0 && !this.#buckets.has(h[0]!)) this.#popTime();
    return h.length > 0 ? h[0]! : Infinity;
  }

  #pushTime(t: number): void {
    const h = this.#times;
    let i = h.length;
    h.push(t);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]! <= t) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = t;
  }

  #popTime(): void {
    const h = this.#times;
    const last = h.pop()!;
    const n = h.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = l;
      if (l >= n) break;
      if (r < n && h[r]! < h[l]!) m = r;
      if (h[m]! >= last) break;
      h[i] = h[m]!;
      i = m;
    }
    h[i] = last;
  }
}

/** The scheduler every channel of this process shares unless given its own. */
export const heartbeats: HeartbeatScheduler = new HeartbeatScheduler();
