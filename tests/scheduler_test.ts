/**
 * The heartbeat scheduler (PROTOCOL.md section 4, "Heartbeats";
 * lib/record/scheduler.ts): one timer for every channel, deadlines coarsened
 * by at most an eighth of their distance (and ~1 s), never early, and no
 * timer left once nothing is scheduled (Deno's sanitizers check the last).
 */

import assert from "node:assert/strict";
import {
  HeartbeatScheduler,
  MAX_SLACK_MS,
  type ScheduledTask,
  slackMs,
} from "../lib/record/scheduler.ts";

/** A seeded generator (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("slackMs: a power of two no more than an eighth of the distance, at most MAX_SLACK_MS, none below 8 ms", () => {
  for (const d of [0, 1, 7, 8, 9, 50, 150, 300, 2000, 6000, 90_000, 1e9]) {
    const g = slackMs(d);
    assert.ok(g <= d / 8 && g <= MAX_SLACK_MS, `${d}: ${g}`);
    if (d >= 8) {
      assert.equal(Math.log2(g) % 1, 0, `${d}: ${g} is a power of two`);
      assert.ok(2 * g > Math.min(MAX_SLACK_MS, d / 8), `${d}: ${g} largest`);
    } else assert.equal(g, 0);
  }
});

Deno.test("tasks run in due order, never before their time and at most their slack after it, each as often as it asks", () => {
  let now = 1_000_000;
  const s = new HeartbeatScheduler({ now: () => now, timers: false });
  const random = rng(15);
  const runs: Array<{ id: number; at: number; asked: number }> = [];
  const asked = new Map<number, { at: number; from: number }>();
  const tasks: ScheduledTask[] = [];
  for (let id = 0; id < 500; id++) {
    const task: ScheduledTask = {
      run(t) {
        const a = asked.get(id)!;
        runs.push({ id, at: t, asked: a.at });
        assert.ok(t >= a.at, `task ${id} ran at ${t}, before ${a.at}`);
        assert.ok(
          t <= a.at + slackMs(a.at - a.from) + 1,
          `task ${id} ran at ${t}, asked for ${a.at} from ${a.from}`,
        );
        if (runs.filter((r) => r.id === id).length >= 5) return undefined;
        const next = t + 1 + Math.floor(random() * 40_000);
        asked.set(id, { at: next, from: t });
        return next;
      },
    };
    tasks.push(task);
    const at = now + Math.floor(random() * 40_000);
    asked.set(id, { at, from: now });
    s.schedule(task, at);
  }
  while (s.size > 0) {
    now += 1;
    s.runDue();
  }
  assert.equal(runs.length, 500 * 5);
  for (let i = 1; i < runs.length; i++) {
    assert.ok(runs[i]!.at >= runs[i - 1]!.at, "runs in time order");
  }
});

Deno.test("deadlines far ahead share instants: 10,000 tasks due within one second run in a few timer runs", () => {
  let now = 5_000_000;
  const s = new HeartbeatScheduler({ now: () => now, timers: false });
  const random = rng(7);
  const instants = new Set<number>();
  for (let i = 0; i < 10_000; i++) {
    s.schedule({
      run(t) {
        instants.add(t);
        return undefined;
      },
    }, now + 30_000 + Math.floor(random() * 1000));
  }
  while (s.size > 0) {
    now += 1;
    s.runDue();
  }
  // Rounded up to multiples of 1,024 ms: one or two instants, not 1,000.
  assert.ok(instants.size <= 2, `${instants.size} instants`);
});

Deno.test("schedule moves a task either way, advance only brings it nearer, cancel drops it; a random mix keeps the heap's order", () => {
  let now = 0;
  const s = new HeartbeatScheduler({ now: () => now, timers: false });
  const random = rng(99);
  const due = new Map<ScheduledTask, number>();
  const ran: ScheduledTask[] = [];
  const all: ScheduledTask[] = Array.from({ length: 300 }, () => ({
    run() {
      ran.push(this);
      return undefined;
    },
  }));
  for (let step = 0; step < 5_000; step++) {
    const t = all[Math.floor(random() * all.length)]!;
    const r = random();
    const at = 100 + Math.floor(random() * 7); // under 8 ms ahead: no rounding
    now = 100;
    if (r < 0.5) {
      s.schedule(t, at);
      due.set(t, at);
    } else if (r < 0.8) {
      s.advance(t, at);
      if (!due.has(t) || due.get(t)! > at) due.set(t, at);
    } else {
      s.cancel(t);
      due.delete(t);
    }
    assert.equal(s.size, due.size);
  }
  // Everything runs once, in the order of the due times.
  for (now = 100; now < 110; now++) s.runDue();
  assert.equal(ran.length, due.size);
  for (let i = 1; i < ran.length; i++) {
    assert.ok(due.get(ran[i]!)! >= due.get(ran[i - 1]!)!);
  }
  assert.equal(s.size, 0);
});

Deno.test("a task that throws is dropped and the others still run; a task that reschedules itself while running keeps that", () => {
  let now = 0;
  const s = new HeartbeatScheduler({ now: () => now, timers: false });
  const seen: string[] = [];
  s.schedule({
    run() {
      seen.push("thrower");
      throw new Error("boom");
    },
  }, 5);
  const self: ScheduledTask = {
    run(t) {
      seen.push(`self ${t}`);
      if (t >= 10) return undefined;
      s.schedule(self, 20);
      return 7; // ignored: it scheduled itself
    },
  };
  s.schedule(self, 5);
  for (now = 0; now <= 30; now++) s.runDue();
  assert.deepEqual(seen, ["thrower", "self 5", "self 20"]);
  assert.equal(s.size, 0);
});

Deno.test("with real timers: one timer while tasks are due, none once the last task is done or cancelled (no timer leaks)", async () => {
  const s = new HeartbeatScheduler();
  assert.equal(s.armed, false);
  const done = Promise.withResolvers<number[]>();
  const runs: number[] = [];
  const task: ScheduledTask = {
    run(t) {
      runs.push(t);
      if (runs.length === 3) {
        done.resolve(runs);
        return undefined;
      }
      return t + 10;
    },
  };
  s.schedule(task, s.now() + 10);
  const other: ScheduledTask = { run: () => undefined };
  s.schedule(other, s.now() + 60_000);
  assert.equal(s.armed, true);
  const r = await done.promise;
  assert.equal(r.length, 3);
  for (let i = 1; i < r.length; i++) assert.ok(r[i]! >= r[i - 1]! + 10);
  assert.equal(s.armed, true, "the other task still holds the timer");
  s.cancel(other);
  assert.equal(s.size, 0);
  assert.equal(s.armed, false);
});

Deno.test("a timer armed for a time already past is on time (no stall); a timer re-armed after it went overdue in a stall keeps the stall's lateness (PROTOCOL.md section 4, 'A stalled side reads before it judges')", async () => {
  const s = new HeartbeatScheduler();
  const late: number[] = [];
  const task = (): ScheduledTask => ({
    run(_now, lateMs) {
      late.push(lateMs);
      return undefined;
    },
  });
  // Due 5 s ago when it is armed: that is no stall of this process.
  s.schedule(task(), s.now() - 5000);
  while (s.size > 0) await new Promise((r) => setTimeout(r, 10));
  assert.equal(late.length, 1);
  assert.ok(late[0]! < 2000, `${late[0]} ms late, counted from the due time`);
  // Due in 20 ms, then the process stalls 400 ms; before its timer can
  // fire, a task due earlier still re-arms it. Both run late by the stall.
  late.length = 0;
  s.schedule(task(), s.now() + 20);
  const until = performance.now() + 400;
  while (performance.now() < until) { /* the process stalls */ }
  s.schedule(task(), s.now() - 1000);
  while (s.size > 0) await new Promise((r) => setTimeout(r, 10));
  assert.equal(late.length, 2);
  for (const l of late) assert.ok(l >= 300, `${l} ms late after the stall`);
  assert.equal(s.armed, false);
});

Deno.test("a task moved back and forth between two times many times runs once, at the time it was last given; another task keeps its own; the scheduler then empties (its heap of due times is rebuilt on the way)", () => {
  let now = 0;
  const s = new HeartbeatScheduler({ now: () => now, timers: false });
  const runs: number[] = [];
  const task = { run: (t: number) => (runs.push(t), undefined) };
  const other = { run: (t: number) => (runs.push(-t), undefined) };
  s.schedule(other, 5000);
  for (let i = 0; i < 10_000; i++) s.schedule(task, i % 2 === 0 ? 1000 : 2000);
  s.schedule(task, 3000);
  assert.equal(s.size, 2);
  assert.equal(s.nextDue, 3072); // 3 s ahead: a multiple of 256 ms
  for (now = 0; now <= 6000; now += 8) s.runDue();
  assert.deepEqual(runs, [3072, -5120]);
  assert.equal(s.size, 0);
  assert.equal(s.nextDue, Infinity);
});

Deno.test("during a run: a task cancelled by another that ran first does not run and does not come back; one moved by another runs at its new time; one scheduled by another for a time already past runs at the next run, not this one", () => {
  let now = 0;
  const s = new HeartbeatScheduler({ now: () => now, timers: false });
  const ran: string[] = [];
  const victim = { run: () => (ran.push("victim"), 10_000) };
  const moved = { run: (t: number) => (ran.push(`moved@${t}`), undefined) };
  const late = { run: () => (ran.push("late"), undefined) };
  const killer = {
    run: (t: number) => {
      ran.push("killer");
      s.cancel(victim);
      s.schedule(moved, t + 1000);
      s.schedule(late, t - 5);
      return undefined;
    },
  };
  s.schedule(killer, 100);
  s.schedule(victim, 100);
  s.schedule(moved, 100);
  now = s.nextDue; // 100 ms ahead, rounded up to a multiple of 8
  const first = now;
  s.runDue();
  // All three were due; only the killer ran: the victim was cancelled and
  // `moved` given a later time before their turn.
  assert.deepEqual(ran, ["killer"]);
  assert.equal(s.size, 2, "`moved` and `late` are left");
  assert.equal(s.nextDue, first - 5);
  s.runDue();
  assert.deepEqual(ran, ["killer", "late"]);
  for (now = first; now <= first + 2000; now += 8) s.runDue();
  assert.equal(ran.length, 3);
  assert.match(ran[2]!, /^moved@/);
  assert.ok(Number(ran[2]!.slice(6)) >= first + 1000);
  assert.equal(s.size, 0);
});
