import assert from "node:assert/strict";
import { guardTerminal, signalExitCode } from "../lib/ui/terminal_guard.ts";

function rig() {
  const listeners = new Map<Deno.Signal, () => void>();
  const exits: number[] = [];
  let closed = 0;
  const target = new EventTarget();
  const guard = guardTerminal({ close: () => closed++ }, {
    target,
    addSignalListener: (s, f) => listeners.set(s, f),
    removeSignalListener: (s, f) => {
      if (listeners.get(s) === f) listeners.delete(s);
    },
    exit: (code) => exits.push(code),
  });
  return { listeners, exits, closed: () => closed, target, guard };
}

Deno.test("guardTerminal() listens for SIGTERM, SIGHUP and SIGINT and dispose() stops listening", () => {
  const r = rig();
  assert.deepEqual([...r.listeners.keys()].sort(), [
    "SIGHUP",
    "SIGINT",
    "SIGTERM",
  ]);
  r.guard.dispose();
  assert.equal(r.listeners.size, 0);
});

Deno.test("guardTerminal() closes the terminal at the first signal and remembers it; a second signal exits at once", () => {
  const r = rig();
  r.listeners.get("SIGTERM")!();
  assert.equal(r.closed(), 1);
  assert.equal(r.guard.signal, "SIGTERM");
  assert.deepEqual(r.exits, []);
  r.listeners.get("SIGHUP")!();
  assert.deepEqual(r.exits, [129]);
  assert.equal(r.guard.signal, "SIGTERM");
  r.guard.dispose();
});

Deno.test("guardTerminal() turns an uncaught exception into a closed terminal and a rejected crashed, and stops the default exit", async () => {
  const r = rig();
  const ev = new ErrorEvent("error", {
    error: new Error("boom"),
    cancelable: true,
  });
  r.target.dispatchEvent(ev);
  assert.ok(ev.defaultPrevented);
  assert.equal(r.closed(), 1);
  await assert.rejects(r.guard.crashed, /boom/);
  r.guard.dispose();
});

Deno.test("guardTerminal() does the same for an unhandled rejection", async () => {
  const r = rig();
  const promise = Promise.reject(new Error("nobody caught me"));
  promise.catch(() => {});
  const ev = new PromiseRejectionEvent("unhandledrejection", {
    promise,
    reason: new Error("nobody caught me"),
    cancelable: true,
  });
  r.target.dispatchEvent(ev);
  assert.ok(ev.defaultPrevented);
  assert.equal(r.closed(), 1);
  await assert.rejects(r.guard.crashed, /nobody caught me/);
  r.guard.dispose();
});

Deno.test("guardTerminal() after dispose() leaves crashes alone", () => {
  const r = rig();
  r.guard.dispose();
  const ev = new ErrorEvent("error", {
    error: new Error("x"),
    cancelable: true,
  });
  r.target.dispatchEvent(ev);
  assert.ok(!ev.defaultPrevented);
  assert.equal(r.closed(), 0);
});

Deno.test("signalExitCode() is 128 plus the signal's number", () => {
  assert.equal(signalExitCode("SIGHUP"), 129);
  assert.equal(signalExitCode("SIGINT"), 130);
  assert.equal(signalExitCode("SIGTERM"), 143);
});
