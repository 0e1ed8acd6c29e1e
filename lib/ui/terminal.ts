/**
 * The terminal of `im chat`: reads the user's lines and prints events. It
 * knows nothing of sockets or crypto; the client feeds it {@link UiEvent}s
 * and reads {@link Terminal.lines}.
 *
 * Interactive (stdin is a TTY): the {@link LineEditor} of line_editor.ts
 * on a raw terminal, with a prompt (`A> `, `A→B> `, `A#team> `), history,
 * Tab completion of commands, online names and room names; events are printed above the
 * input row and the half-typed line is redrawn. The input is one row that
 * scrolls sideways; a chunk read (a paste) is drawn once. The terminal is
 * restored by {@link Terminal.close}, which a signal or crash handler may
 * call at any time.
 * Scripting (stdin is not a TTY): lines are read as bytes, without a
 * prompt; events go to the output one per line, as text or `--json`.
 *
 * {@link createTerminal} picks one of its parts, each with one job:
 * interactive_terminal.ts and piped_terminal.ts, over base_terminal.ts
 * (the contract and what both share) and line_queue.ts (the lines read,
 * waiting for their consumer).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTerminal } from "./terminal.ts";
 * import { PassThrough } from "node:stream";
 * const input = new PassThrough();
 * const output = new PassThrough();
 * const term = createTerminal({
 *   input, output, interactive: false, json: true, color: false,
 *   self: "A", names: () => [],
 * });
 * input.end("!list\n");
 * const got: string[] = [];
 * for await (const line of term.lines()) got.push(line);
 * term.close();
 * assert.ok(got.length === 1 && got[0] === "!list");
 * ```
 * @module
 */

import { InteractiveTerminal } from "./interactive_terminal.ts";
import { PipedTerminal } from "./piped_terminal.ts";
import {
  MAX_LINE_BYTES,
  type Terminal,
  type TerminalOptions,
} from "./base_terminal.ts";

export {
  MAX_LINE_BYTES,
  type Terminal,
  type TerminalInput,
  type TerminalOptions,
  type TerminalOutput,
} from "./base_terminal.ts";

/**
 * Make the chat terminal.
 * @param opts streams, mode and the names source
 * @returns a {@link Terminal}; call `close()` when done
 * @throws {RangeError} if `maxLineBytes` is not a positive integer
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTerminal } from "./terminal.ts";
 * import { PassThrough } from "node:stream";
 * const input = new PassThrough();
 * const output = new PassThrough();
 * const term = createTerminal({
 *   input, output, interactive: false, json: false, color: false,
 *   self: "A", names: () => [],
 * });
 * term.print({ kind: "system", text: "hello", at: 0 });
 * const printed = String(output.read());
 * term.close();
 * input.destroy();
 * assert.ok(printed.endsWith("-- hello\n"));
 * ```
 */
export function createTerminal(opts: TerminalOptions): Terminal {
  const maxLineBytes = opts.maxLineBytes ?? MAX_LINE_BYTES;
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) {
    throw new RangeError(
      `Invalid maxLineBytes "${maxLineBytes}": expected a positive integer`,
    );
  }
  return opts.interactive
    ? new InteractiveTerminal(opts, maxLineBytes)
    : new PipedTerminal(opts, maxLineBytes);
}
