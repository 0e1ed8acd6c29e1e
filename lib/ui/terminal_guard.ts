/**
 * The terminal is given back on every way out (issue 11 item 4): a raw
 * terminal left behind by a killed `im chat` shows no typed text and
 * ignores Enter until `stty sane`. {@link guardTerminal} closes the
 * {@link Terminal} (which restores the terminal's modes) on SIGTERM,
 * SIGHUP and SIGINT, and on a crash: an uncaught exception or an unhandled
 * rejection anywhere in the process. The caller then logs out and exits;
 * a second signal exits at once.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { guardTerminal } from "./terminal_guard.ts";
 * let closed = 0;
 * const target = new EventTarget();
 * const guard = guardTerminal({ close: () => closed++ }, {
 *   target, addSignalListener() {}, removeSignalListener() {},
 * });
 * const crash = guard.crashed.catch((e) => e.message);
 * target.dispatchEvent(
 *   new ErrorEvent("error", { error: new Error("boom"), cancelable: true }),
 * );
 * assert.equal(await crash, "boom");
 * assert.equal(closed, 1);
 * guard.dispose();
 * ```
 * @module
 */

/** What the guard needs of a terminal: `close()` restores it (idempotent). */
export interface Closable {
  close(): void;
}

/** Where signals and crashes come from; Deno's by default (tests inject). */
export interface GuardOptions {
  /** Signals that end the terminal; default SIGTERM, SIGHUP, SIGINT. */
  signals?: readonly Deno.Signal[];
  /** Default `Deno.addSignalListener`. */
  addSignalListener?: (sig: Deno.Signal, f: () => void) => void;
  /** Default `Deno.removeSignalListener`. */
  removeSignalListener?: (sig: Deno.Signal, f: () => void) => void;
  /** Where `error` and `unhandledrejection` are dispatched; default `globalThis`. */
  target?: EventTarget;
  /** Exit at a second signal; default `Deno.exit`. */
  exit?: (code: number) => void;
}

/** A guard made by {@link guardTerminal}. */
export interface TerminalGuard {
  /** The first signal that came, or null. */
  readonly signal: Deno.Signal | null;
  /**
   * Rejects with the error of a crash, after the terminal was closed; never
   * resolves. Race the work against it.
   */
  readonly crashed: Promise<never>;
  /** Stop listening. */
  dispose(): void;
}

const SIGNAL_NUMBERS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGTERM: 15,
};

/**
 * The exit code of a process that ended because of `sig`: 128 plus its
 * number, as a shell reports it (SIGHUP 129, SIGINT 130, SIGTERM 143).
 * @param sig the signal
 * @returns the code
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signalExitCode } from "./terminal_guard.ts";
 * assert.equal(signalExitCode("SIGTERM"), 143);
 * ```
 */
export function signalExitCode(sig: Deno.Signal): number {
  return 128 + (SIGNAL_NUMBERS[sig] ?? 0);
}

/**
 * Close `terminal` on a signal or a crash; see the module doc.
 * @param terminal what to close (a {@link Terminal} of terminal.ts)
 * @param o signal and event sources, for tests
 * @returns the guard; `dispose()` it when done
 */
export function guardTerminal(
  terminal: Closable,
  o: GuardOptions = {},
): TerminalGuard {
  const signals = o.signals ?? ["SIGTERM", "SIGHUP", "SIGINT"];
  const add = o.addSignalListener ??
    ((s: Deno.Signal, f: () => void) => Deno.addSignalListener(s, f));
  const remove = o.removeSignalListener ??
    ((s: Deno.Signal, f: () => void) => Deno.removeSignalListener(s, f));
  const target = o.target ?? globalThis;
  const exit = o.exit ?? ((code: number) => Deno.exit(code));
  const crash = Promise.withResolvers<never>();
  crash.promise.catch(() => {}); // rejected on purpose; the caller races it
  let first: Deno.Signal | null = null;
  const handlers = signals.map((sig) => {
    const f = () => {
      terminal.close();
      if (first !== null) {
        exit(signalExitCode(sig)); // asked twice: now
        return;
      }
      first = sig;
    };
    add(sig, f);
    return [sig, f] as const;
  });
  const onError = (ev: Event) => {
    ev.preventDefault();
    terminal.close();
    const e = ev as ErrorEvent;
    crash.reject(e.error ?? new Error(e.message));
  };
  const onRejection = (ev: Event) => {
    ev.preventDefault();
    terminal.close();
    crash.reject((ev as PromiseRejectionEvent).reason);
  };
  target.addEventListener("error", onError);
  target.addEventListener("unhandledrejection", onRejection);
  return {
    get signal() {
      return first;
    },
    crashed: crash.promise,
    dispose() {
      for (const [sig, f] of handlers) remove(sig, f);
      target.removeEventListener("error", onError);
      target.removeEventListener("unhandledrejection", onRejection);
    },
  };
}
