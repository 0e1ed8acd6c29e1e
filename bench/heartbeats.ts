/**
 * Heartbeats (issue 15): the CPU one heartbeat record costs, beside the
 * floor of the runtime, measured in the same run. An idle server's CPU is
 * its heartbeats (PROTOCOL.md section 4, "Heartbeats": one each way per
 * client per 60 s), so this is the idle-CPU figure of the scale section
 * taken apart, on fewer connections and at a higher rate so that it is
 * measured in seconds:
 *
 * - ours: connection pairs over loopback in one process
 *   (bench/_heartbeats.ts `im`), each side a RecordChannel sending
 *   heartbeats: per record one seal, one write, one read, one open, and
 *   the scheduler's run;
 * - the floor: the same pairs as bare `Deno.Conn`s writing the same 58-byte
 *   frames from one timer and reading them with one pending read each
 *   (`bare`): the system calls and promises alone.
 *
 * Each in a process of its own with `im`'s V8 flags (`imV8Args`), taken in
 * turn; the figure is the median of the runs, CPU of the process (user +
 * system) per record received.
 *
 * @example
 * ```ts ignore
 * import { benchHeartbeats } from "./heartbeats.ts";
 * await benchHeartbeats({ quick: true, report });
 * ```
 * @module
 */

import { percentile, type Report } from "./_stats.ts";
import { imV8Args } from "./_fixtures.ts";

/** Options of {@link benchHeartbeats}. */
export interface HeartbeatsBenchOptions {
  quick: boolean;
  report: Report;
}

const SECTION = "heartbeats";
const CHILD = new URL("./_heartbeats.ts", import.meta.url).pathname;

/** One child's answer. */
interface Run {
  records: number;
  cpuMs: number;
}

async function run(
  mode: "im" | "bare",
  pairs: number,
  intervalMs: number,
  seconds: number,
): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...imV8Args(),
      "--allow-net=127.0.0.1",
      CHILD,
      mode,
      String(pairs),
      String(intervalMs),
      String(seconds),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || !text.startsWith("{")) {
    throw new Error(
      `bench/_heartbeats.ts ${mode} failed (exit ${out.code}): ${
        new TextDecoder().decode(out.stderr).trim().slice(0, 500)
      }`,
    );
  }
  const r = JSON.parse(text) as Run;
  if (!(r.records > 0)) throw new Error(`${mode}: no records received`);
  return r;
}

/**
 * The `heartbeats` section.
 * @param opts mode and report
 */
export async function benchHeartbeats(
  opts: HeartbeatsBenchOptions,
): Promise<void> {
  const { report, quick } = opts;
  // 5,000 pairs are 10,000 connections in the process, as a server holding
  // 10,000 clients has; at a 1 s interval, 10,000 records a second.
  const pairs = quick ? 1000 : 5000;
  const intervalMs = quick ? 200 : 1000;
  const seconds = quick ? 4 : 10;
  const rounds = quick ? 1 : 3;
  const ours: number[] = [], floor: number[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const mode of ["im", "bare"] as const) {
      const r = await run(mode, pairs, intervalMs, seconds);
      (mode === "im" ? ours : floor).push(r.cpuMs * 1000 / r.records);
    }
  }
  const median = (xs: number[]) => percentile(xs, 50);
  const per = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(", ");
  report.add(
    SECTION,
    `cpu a heartbeat record, ${pairs * 2} connections`,
    median(ours),
    "us",
    {
      limit: median(floor),
      limitSource:
        "bare Deno.Conn pairs writing and reading the same 58-byte frames at the same rate, same run",
      note: `median of ${rounds} (${per(ours)}; floor ${
        per(floor)
      }); one seal, write, read and open a record; ${pairs} pairs in one process, each side every ${intervalMs} ms, ${seconds} s, im's V8 flags`,
    },
  );
}
