/**
 * Typed errors of `im`. Every failure that can reach a user is one of these,
 * with a stable `code`; `main.ts` turns it into one line (`im: error: ...`)
 * plus an optional hint, never a stack trace.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProtocolError, isImError } from "./errors.ts";
 * const err = new ProtocolError("frame-too-large", "Frame length 70000 exceeds the limit of 65536");
 * assert.ok(isImError(err) && err.code === "frame-too-large");
 * ```
 * @module
 */

/** Base class: a failure with a stable machine-readable code and an optional hint for the user. */
export class ImError extends Error {
  /** Stable code, e.g. `frame-too-large`; tests and `--json` output match on it. */
  readonly code: string;
  /** A line telling the user what to do about it, if there is one. */
  readonly hint: string | undefined;
  /**
   * @param code stable kebab-case code
   * @param message sentence case, no full stop, values quoted
   * @param hint what the user can do
   */
  constructor(code: string, message: string, hint?: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.hint = hint;
  }
}

/** The peer broke the wire format or the protocol's order (rules 1.1, 3.x): the connection is closed. */
export class ProtocolError extends ImError {}

/** Authentication failed: bad signature, unknown user, server key mismatch (section 2). */
export class AuthError extends ImError {}

/** A record was discarded: verdict says why (rule 3.5). */
export class RecordError extends ImError {}

/** A key file is missing, unreadable or malformed. */
export class KeyError extends ImError {}

/** The command line was wrong; exit code 2. */
export class UsageError extends ImError {}

/** A ticket could not be opened or failed its checks (rules 4.2, 4.3). */
export class TicketError extends ImError {}

/** A network failure: connection refused, closed, timed out, port in use. */
export class NetError extends ImError {}

/**
 * Is `e` one of ours?
 * @param e anything thrown
 * @returns true when `e` is an {@link ImError}
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isImError, UsageError } from "./errors.ts";
 * assert.ok(isImError(new UsageError("bad-flag", "Unknown flag \"--x\"")));
 * assert.ok(!isImError(new Error("x")));
 * ```
 */
export function isImError(e: unknown): e is ImError {
  return e instanceof ImError;
}
