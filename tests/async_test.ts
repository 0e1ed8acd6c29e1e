import assert from "node:assert/strict";
import {
  allSettledOrThrow,
  Backoff,
  deadline,
  Signal,
  sleep,
  waitUntil,
  within,
  withinRunTime,
} from "../lib/util/mod.ts";

Deno.test("deadline() passes on the value or the rejection of work that settles in time", async () => {
  assert.equal(
    await deadline(Promise.resolve(7), 1000, () => new Error("x")),
    7,
  );
  await assert.rejects(
    deadline(Promise.reject(new Error("own")), 1000, () => new Error("x")),
    /own/,
  );
});

Deno.test("deadline() rejects with onTimeout() when time runs out, and hands a late value to late()", async () => {
  const { promise, resolve } = Promise.withResolvers<string>();
  const lateValues: string[] = [];
  await assert.rejects(
    deadline(
      promise,
      5,
      () => new Error("too slow"),
      (v) => lateValues.push(v),
    ),
    /too slow/,
  );
  resolve("arrived");
  await promise;
  await sleep(0);
  assert.deepEqual(lateValues, ["arrived"]);
});

Deno.test("within() gives the fallback when time runs out (not an error), and late() sees the late value", async () => {
  const { promise, resolve } = Promise.withResolvers<number>();
  const late: number[] = [];
  assert.equal(
    await within(promise, 5, "gave up", (v) => late.push(v)),
    "gave up",
  );
  resolve(3);
  await promise;
  await sleep(0);
  assert.deepEqual(late, [3]);
  assert.equal(
    await within(Promise.resolve(1), 1000, 0, () => late.push(99)),
    1,
  );
  assert.deepEqual(late, [3], "a value in time is not late");
});

/** Hold the thread for `ms`: no timer fires and no promise settles meanwhile. */
function stall(ms: number): void {
  const start = Date.now();
  while (Date.now() - start < ms) {
    // Busy, as a process the machine gives no CPU.
  }
}

Deno.test("withinRunTime() counts a stall of the process as one tick: work that finishes in the turns after a stall longer than the whole allowance still wins, where within() gives up", async () => {
  const work = Promise.withResolvers<string>();
  const runTime = withinRunTime(work.promise, 300, "gave up");
  const wallClock = within(work.promise, 300, "gave up");
  stall(900);
  // The work needs a few more turns of the event loop, as a socket write does.
  setTimeout(() => setTimeout(() => work.resolve("written"), 0), 0);
  assert.equal(await wallClock, "gave up");
  assert.equal(await runTime, "written");
});

Deno.test("withinRunTime() gives the fallback once its ticks ran, passes on a rejection, and leaves no timer behind", async () => {
  assert.equal(await withinRunTime(new Promise<number>(() => {}), 250, -1), -1);
  assert.equal(await withinRunTime(new Promise<number>(() => {}), 0, -1), -1);
  assert.equal(await withinRunTime(Promise.resolve(7), 1000, -1), 7);
  await assert.rejects(
    withinRunTime(Promise.reject(new Error("refused")), 1000, -1),
    /refused/,
  );
});

Deno.test("sleep() ends early when its signal aborts", async () => {
  const ac = new AbortController();
  const started = performance.now();
  const p = sleep(60_000, ac.signal);
  ac.abort();
  await p;
  assert.ok(performance.now() - started < 30_000);
  await sleep(0, AbortSignal.abort());
});

Deno.test("Backoff doubles up to its maximum, jitters to 50-100% and starts over on reset()", () => {
  const none = new Backoff(100, 1000, () => 1);
  assert.deepEqual(
    [none.next(), none.next(), none.next(), none.next(), none.next()],
    [100, 200, 400, 800, 1000],
  );
  none.reset();
  assert.equal(none.next(), 100);
  const most = new Backoff(100, 1000, () => 0);
  assert.deepEqual([most.next(), most.next()], [50, 100]);
  assert.equal(most.upcoming, 400);
});

Deno.test("allSettledOrThrow() waits for every promise before it throws the first error", async () => {
  let finished = false;
  const slow = sleep(10).then(() => (finished = true));
  await assert.rejects(
    allSettledOrThrow([Promise.reject(new Error("first")), slow]),
    /first/,
  );
  assert.ok(finished);
});

Deno.test("Signal: notify wakes every waiter at once, and a waiter whose time is up is removed", async () => {
  const s = new Signal();
  const woken: number[] = [];
  const a = s.wait(10_000).then(() => woken.push(1));
  const b = s.wait(10_000).then(() => woken.push(2));
  assert.equal(s.waiting, 2);
  s.notify();
  await Promise.all([a, b]);
  assert.deepEqual(woken.sort(), [1, 2]);
  assert.equal(s.waiting, 0);
  await s.wait(5); // nobody notifies: it times out
  assert.equal(s.waiting, 0);
});

Deno.test("waitUntil: true as soon as the condition holds after a notify; false when it never does", async () => {
  const s = new Signal();
  let n = 0;
  const t = setInterval(() => {
    n++;
    s.notify();
  }, 2);
  try {
    assert.equal(await waitUntil(() => n >= 3, s, 5000), true);
  } finally {
    clearInterval(t);
  }
  assert.equal(await waitUntil(() => false, s, 20, 5), false);
  assert.equal(s.waiting, 0);
});
