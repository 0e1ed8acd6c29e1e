/**
 * Shared vocabulary of the benchmark: a measured {@link Figure} with its
 * limit, a {@link Target} with its verdict, the {@link Report} that prints
 * and collects them, and small statistics helpers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { percentile } from "./_stats.ts";
 * assert.equal(percentile([3, 1, 2], 50), 2);
 * ```
 * @module
 */

import process from "node:process";

/** One measured figure, with the machine's limit for it when there is one. */
export interface Figure {
  /** Section of the run: `machine`, `limits`, `cipher`, `login`, `messages`, `scale`. */
  section: string;
  /** What was measured, e.g. `mdcfb 65536 B`. */
  name: string;
  /** The figure. */
  value: number;
  /** Its unit, e.g. `MB/s`, `ms`, `us`, `ops/s`, `KiB`. */
  unit: string;
  /** The limit on this machine, in the same unit. */
  limit?: number;
  /** Where the limit comes from (`openssl sha256 16384 B / 4`). */
  limitSource?: string;
  /** `value / limit` (ours / limit): above 1 is slower for a time, faster for a rate. */
  ratio?: number;
  /** A short remark (sample count, what the figure includes). */
  note?: string;
}

/** A target from issue 5, with its verdict. */
export interface Target {
  /** The target as the issue states it. */
  target: string;
  /** The figure it is judged on. */
  figure: string;
  /** Was it met? */
  met: boolean;
  /** Why (what limits it, when missed). */
  why: string;
}

/** What a figure needs besides section, name, value and unit. */
export interface FigureExtras {
  limit?: number | undefined;
  limitSource?: string | undefined;
  note?: string | undefined;
}

/**
 * Collects figures and targets, and prints one human line per figure: to
 * stdout, or to stderr when stdout carries `--json`.
 */
export class Report {
  readonly figures: Figure[] = [];
  readonly targets: Target[] = [];
  readonly notes: string[] = [];
  #write: (line: string) => void;

  /** @param write where human lines go */
  constructor(write: (line: string) => void) {
    this.#write = write;
  }

  /**
   * Print a line that is not a figure (a heading, a note).
   * @param line the text
   */
  line(line: string): void {
    this.#write(line);
  }

  /**
   * Record a remark for BENCHMARKS.md and the JSON (a skipped step, a cap).
   * @param text the remark
   */
  note(text: string): void {
    this.notes.push(text);
    this.#write(`note: ${text}`);
  }

  /**
   * Record and print a figure: `name: value unit (limit L unit, ours/limit R)`.
   * @param section its section
   * @param name what was measured
   * @param value the figure
   * @param unit its unit
   * @param extras limit, its source and a note
   * @returns the figure as recorded (rounded)
   */
  add(
    section: string,
    name: string,
    value: number,
    unit: string,
    extras: FigureExtras = {},
  ): Figure {
    const f: Figure = { section, name, value: sig(value), unit };
    if (extras.limit !== undefined && Number.isFinite(extras.limit)) {
      f.limit = sig(extras.limit);
      if (extras.limitSource) f.limitSource = extras.limitSource;
      f.ratio = extras.limit === 0 ? 0 : sig(value / extras.limit);
    }
    if (extras.note) f.note = extras.note;
    this.figures.push(f);
    let text = `${name}: ${f.value} ${unit}`;
    if (f.limit !== undefined) {
      text += `  (limit ${f.limit} ${unit}, ${
        f.limitSource ?? ""
      }; ours/limit ${f.ratio})`;
    }
    if (f.note) text += `  [${f.note}]`;
    this.#write(text);
    return f;
  }

  /**
   * Judge a target and print the verdict.
   * @param t the target and its verdict
   */
  judge(t: Target): void {
    this.targets.push(t);
    this.#write(
      `target ${
        t.met ? "MET" : "MISSED"
      }: ${t.target} (${t.figure}) - ${t.why}`,
    );
  }

  /**
   * The figure recorded under `name`, if any.
   * @param name the figure's name
   * @returns the figure
   */
  get(name: string): Figure | undefined {
    return this.figures.find((f) => f.name === name);
  }
}

/**
 * Round to 3 significant digits (at least integer precision above 1000).
 * @param x a number
 * @returns the rounded number
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sig } from "./_stats.ts";
 * assert.equal(sig(72.9431), 72.9);
 * assert.equal(sig(1234567.8), 1234568);
 * ```
 */
export function sig(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x);
  const digits = 3 - Math.ceil(Math.log10(a));
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * The `p`-th percentile (nearest rank) of `xs`; `xs` is not modified.
 * @param xs samples
 * @param p 0..100
 * @returns the value, NaN for no samples
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { percentile } from "./_stats.ts";
 * assert.equal(percentile([5, 1, 4, 2, 3], 99), 5);
 * ```
 */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

/**
 * Run `fn` repeatedly for about `ms` milliseconds of this process's CPU time
 * after a warm-up, and count: operations per CPU second, the way `openssl
 * speed` divides by CPU time, so other work on the machine does not lower
 * the figure (it still costs cache and clock). Other threads of this
 * process (the garbage collector's helpers) count against us.
 * @param fn the operation
 * @param ms how long to measure
 * @returns operations per second of CPU time
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { opsPerSecond } from "./_stats.ts";
 * assert.ok(opsPerSecond(() => {}, 5) > 0);
 * ```
 */
export function opsPerSecond(fn: () => void, ms: number): number {
  // Warm-up: let the JIT optimise before timing.
  const warmEnd = performance.now() + Math.min(ms / 2, 200);
  while (performance.now() < warmEnd) fn();
  let ops = 0;
  let batch = 1;
  const start = selfCpuSeconds();
  let spent = 0;
  while (spent * 1000 < ms) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    batch = Math.min(batch * 2, 1 << 16);
    spent = selfCpuSeconds() - start;
  }
  return ops / spent;
}

/**
 * Time an async operation awaited one at a time, `n` times after `warm`
 * warm-up calls.
 * @param fn the operation
 * @param n timed calls
 * @param warm untimed calls first
 * @returns the per-call times in ms
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timeAsync } from "./_stats.ts";
 * assert.equal((await timeAsync(() => Promise.resolve(), 3, 1)).length, 3);
 * ```
 */
export async function timeAsync(
  fn: () => Promise<unknown>,
  n: number,
  warm = 3,
): Promise<number[]> {
  for (let i = 0; i < warm; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/**
 * Median of per-call times.
 * @param xs samples
 * @returns the 50th percentile
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { median } from "./_stats.ts";
 * assert.equal(median([1, 9, 5]), 5);
 * ```
 */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/**
 * Text of a Linux `/proc` file. Deno refuses to read `/proc` without
 * `--allow-all`, so this runs `cat` (the bench's `--allow-run=cat`) instead.
 * @param path e.g. `/proc/cpuinfo`
 * @returns the text, or null when it cannot be read
 * @example
 * ```ts ignore
 * import { procText } from "./_stats.ts";
 * console.log(await procText("/proc/loadavg"));
 * ```
 */
export async function procText(path: string): Promise<string | null> {
  try {
    const out = await new Deno.Command("cat", {
      args: [path],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/** utime + stime of a `/proc/.../stat` text, in seconds (ticks of 1/100 s). */
function statCpu(stat: string | null): number {
  if (stat === null) return NaN;
  // Fields after the command name, which is in parentheses and may hold spaces.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

/**
 * CPU time (user + system) a process used so far, all threads, from
 * `/proc/<pid>/stat`.
 * @param pid a process id
 * @returns seconds, or NaN when `/proc` cannot be read
 * @example
 * ```ts ignore
 * import { cpuSeconds } from "./_stats.ts";
 * console.log(await cpuSeconds(1234));
 * ```
 */
export async function cpuSeconds(pid: number): Promise<number> {
  return statCpu(await procText(`/proc/${pid}/stat`));
}

/**
 * CPU time a process's main thread (the JavaScript thread of Deno) used so
 * far, from `/proc/<pid>/task/<pid>/stat`.
 * @param pid a process id
 * @returns seconds, or NaN when `/proc` cannot be read
 * @example
 * ```ts ignore
 * import { mainThreadCpuSeconds } from "./_stats.ts";
 * console.log(await mainThreadCpuSeconds(1234));
 * ```
 */
export async function mainThreadCpuSeconds(pid: number): Promise<number> {
  return statCpu(await procText(`/proc/${pid}/task/${pid}/stat`));
}

/** CPU seconds used on the whole machine and by this process and its finished children. */
export interface CpuSnapshot {
  /** Busy CPU seconds of the machine, all cores (`/proc/stat`). */
  machine: number;
  /** This process's CPU seconds plus those of its children that have exited. */
  ours: number;
  /** When, in ms (`performance.now()`). */
  at: number;
}

/**
 * Read how busy the machine and this benchmark have been so far; two
 * snapshots tell how much CPU other processes took in between.
 * @returns the snapshot (NaN fields when `/proc` cannot be read)
 * @example
 * ```ts ignore
 * import { cpuSnapshot, othersCores } from "./_stats.ts";
 * const a = await cpuSnapshot();
 * // ... measure ...
 * console.log(othersCores(a, await cpuSnapshot()));
 * ```
 */
export async function cpuSnapshot(): Promise<CpuSnapshot> {
  const [stat, self] = await Promise.all([
    procText("/proc/stat"),
    procText(`/proc/${Deno.pid}/stat`),
  ]);
  const at = performance.now();
  // cpu  user nice system idle iowait irq softirq steal ...
  const f = (stat ?? "").split("\n")[0]!.trim().split(/\s+/).map(Number);
  const machine = stat === null
    ? NaN
    : (f[1]! + f[2]! + f[3]! + f[6]! + f[7]! + f[8]!) / 100;
  // utime stime cutime cstime are fields 14-17.
  const rest = self === null
    ? []
    : self.slice(self.lastIndexOf(")") + 2).split(" ").map(Number);
  const ours = self === null
    ? NaN
    : (rest[11]! + rest[12]! + rest[13]! + rest[14]!) / 100;
  return { machine, ours, at };
}

/**
 * Cores' worth of CPU that other processes used between two snapshots.
 * @param a the earlier snapshot
 * @param b the later one
 * @returns cores (0 on a quiet machine)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { othersCores } from "./_stats.ts";
 * assert.equal(othersCores({ machine: 0, ours: 0, at: 0 }, { machine: 3, ours: 1, at: 2000 }), 1);
 * ```
 */
export function othersCores(a: CpuSnapshot, b: CpuSnapshot): number {
  const secs = (b.at - a.at) / 1000;
  return Math.max(0, (b.machine - a.machine) - (b.ours - a.ours)) / secs;
}

/**
 * CPU time (user + system) this process used so far (getrusage, no
 * permission needed).
 * @returns seconds
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { selfCpuSeconds } from "./_stats.ts";
 * assert.ok(selfCpuSeconds() > 0);
 * ```
 */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
