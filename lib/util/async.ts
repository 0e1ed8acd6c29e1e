/**
 * Time and concurrency helpers, the one place where `im` races a promise
 * against a clock: {@link deadline} (a promise that must settle in time),
 * {@link within} (wait at most so long, then go on), {@link withinRunTime}
 * (the same, counting only the time this process ran), {@link sleep},
 * {@link Backoff} (reconnect delays with jitter),
 * {@link allSettledOrThrow} (work that must not outlive a failure) and
 * {@link Signal} with {@link waitUntil} (wait, bounded, for a condition).
 *
 * Every timer started here is cleared when the race is decided, so Deno's
 * op sanitizer never finds one left behind.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deadline, within } from "./async.ts";
 * assert.equal(await deadline(Promise.resolve(1), 1000, () => new Error("late")), 1);
 * assert.equal(await within(new Promise<number>(() => {}), 1, -1), -1);
 * ```
 * @module
 */

/**
 * Settle like `p`, unless `ms` pass first: then reject with `onTimeout()`.
 * A value `p` yields after the deadline is handed to `late` (to close a
 * connection that arrived too late, say), never lost silently.
 * @param p the work
 * @param ms how long it may take
 * @param onTimeout the error to reject with when it takes longer
 * @param late called with the value `p` resolves with after the deadline
 * @returns what `p` resolves with
 * @throws `onTimeout()`, or what `p` rejects with
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deadline } from "./async.ts";
 * await assert.rejects(deadline(new Promise(() => {}), 1, () => new Error("late")), /late/);
 * ```
 */
export function deadline<T>(
  p: Promise<T>,
  ms: number,
  onTimeout: () => Error,
  late?: (value: T) => void,
): Promise<T> {
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const clock = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(onTimeout());
    }, Math.max(0, ms));
  });
  p.then((v) => {
    if (timedOut) late?.(v);
  }, () => {});
  return Promise.race([p, clock]).finally(() => clearTimeout(timer));
}

/**
 * Wait for `p` at most `ms`; then resolve with `fallback` instead. Unlike
 * {@link deadline} running out is not an error: a goodbye that a peer does
 * not read, a connection attempt to give up on.
 * @param p the work; its rejection is passed on
 * @param ms how long to wait
 * @param fallback the value when time runs out
 * @param late called with the value `p` resolves with after time ran out
 * @returns what `p` resolves with, or `fallback`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { within } from "./async.ts";
 * assert.equal(await within(Promise.resolve("a"), 1000, "b"), "a");
 * ```
 */
export function within<T, F>(
  p: Promise<T>,
  ms: number,
  fallback: F,
  late?: (value: T) => void,
): Promise<T | F> {
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const clock = new Promise<F>((resolve) => {
    timer = setTimeout(() => {
      timedOut = true;
      resolve(fallback);
    }, Math.max(0, ms));
  });
  p.then((v) => {
    if (timedOut) late?.(v);
  }, () => {});
  return Promise.race([p, clock]).finally(() => clearTimeout(timer));
}

/** How often the clock of {@link withinRunTime} ticks. */
export const RUN_TIME_TICK_MS = 100;

/**
 * Like {@link within}, but the clock counts the time this process ran, not
 * the wall clock: it ticks every {@link RUN_TIME_TICK_MS}, each tick its own
 * turn of the event loop, and time is up after `ceil(ms / tick)` ticks. A
 * stall of the whole process (a loaded machine, a long collection) is one
 * late tick, not the whole allowance.
 *
 * For goodbyes. A write to a socket, dispatched before a stall, needs turns
 * of the event loop to finish; a wall clock that ran out during the stall
 * closed the socket with the goodbye unwritten, and a peer that did nothing
 * wrong saw its connection end untold (two test suites at once on two
 * cores: 27 of 937 evicted sockets). A peer that does not read is still cut
 * after `ms` of the process's own time.
 * @param p the work; its rejection is passed on
 * @param ms how much of the process's running time to wait
 * @param fallback the value when time runs out
 * @returns what `p` resolves with, or `fallback`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withinRunTime } from "./async.ts";
 * assert.equal(await withinRunTime(new Promise<number>(() => {}), 1, -1), -1);
 * ```
 */
export function withinRunTime<T, F>(
  p: Promise<T>,
  ms: number,
  fallback: F,
): Promise<T | F> {
  const tickMs = Math.min(Math.max(0, ms), RUN_TIME_TICK_MS);
  let ticks = Math.max(1, Math.ceil(ms / RUN_TIME_TICK_MS));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const clock = new Promise<F>((resolve) => {
    const tick = () => {
      if (--ticks <= 0) resolve(fallback);
      else timer = setTimeout(tick, tickMs);
    };
    timer = setTimeout(tick, tickMs);
  });
  return Promise.race([p, clock]).finally(() => clearTimeout(timer));
}

/**
 * Resolve after `ms`, or at once when `signal` aborts.
 * @param ms how long
 * @param signal ends the wait early
 * @returns a promise
 * @example
 * ```ts
 * import { sleep } from "./async.ts";
 * await sleep(1);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Delays for retries: each {@link next} doubles the last, up to a maximum,
 * with 50-100% jitter so the clients of a restarted server do not all
 * return at once. {@link reset} starts over after a success.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Backoff } from "./async.ts";
 * const b = new Backoff(100, 1000, () => 1);
 * assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000]);
 * ```
 */
export class Backoff {
  #base: number;
  #max: number;
  #random: () => number;
  #delay: number;

  /**
   * @param baseMs the first delay
   * @param maxMs the longest delay
   * @param random source of jitter in [0, 1] (default `Math.random`); 1 means none
   */
  constructor(baseMs: number, maxMs: number, random = Math.random) {
    this.#base = baseMs;
    this.#max = Math.max(baseMs, maxMs);
    this.#random = random;
    this.#delay = baseMs;
  }

  /** @returns the next delay in ms, jittered to 50-100% of its nominal value */
  next(): number {
    const nominal = this.#delay;
    this.#delay = Math.min(this.#delay * 2, this.#max);
    return Math.round(nominal * (0.5 + this.#random() / 2));
  }

  /** @returns the nominal delay the next {@link next} call is based on */
  get upcoming(): number {
    return this.#delay;
  }

  /** Start again from the first delay. */
  reset(): void {
    this.#delay = this.#base;
  }
}

/**
 * Like `Promise.all`, but waits for every promise before throwing the first
 * error, so no work is left running (or writing) after a failure.
 * @param ps the promises
 * @returns their values, in order
 * @throws the first rejection, once all have settled
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { allSettledOrThrow } from "./async.ts";
 * assert.deepEqual(await allSettledOrThrow([Promise.resolve(1), Promise.resolve("a")]), [1, "a"]);
 * await assert.rejects(allSettledOrThrow([Promise.reject(new Error("x")), Promise.resolve(2)]));
 * ```
 */
export async function allSettledOrThrow<T extends readonly unknown[] | []>(
  ps: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === "rejected") throw r.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>;
  };
}

/**
 * Wakes whoever waits on it: a condition variable for one event loop. Each
 * waiter is removed when woken or when its time is up, so none is left
 * behind.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Signal, waitUntil } from "./async.ts";
 * const s = new Signal();
 * let ready = false;
 * setTimeout(() => { ready = true; s.notify(); }, 1);
 * assert.equal(await waitUntil(() => ready, s, 1000), true);
 * assert.equal(s.waiting, 0);
 * ```
 */
export class Signal {
  #waiters = new Set<() => void>();

  /**
   * Resolve at the next {@link notify}, or after `ms`.
   * @param ms longest wait
   */
  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(1, ms));
      this.#waiters.add(wake);
    });
  }

  /** Wake everyone waiting now. */
  notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** How many wait now. */
  get waiting(): number {
    return this.#waiters.size;
  }
}

/**
 * Wait until `done()` holds, checking it at each notify of `signal` and at
 * least every `pollMs`, for at most `ms`.
 * @param done the condition
 * @param signal woken when the condition may have changed
 * @param ms longest wait
 * @param pollMs longest time between two checks
 * @returns whether `done()` held
 */
export async function waitUntil(
  done: () => boolean,
  signal: Signal,
  ms: number,
  pollMs = ms,
): Promise<boolean> {
  const end = Date.now() + ms;
  while (!done()) {
    const left = end - Date.now();
    if (left <= 0) return false;
    await signal.wait(Math.min(left, pollMs));
  }
  return true;
}
