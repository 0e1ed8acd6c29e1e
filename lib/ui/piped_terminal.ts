/**
 * The chat terminal in scripting mode (stdin is not a TTY): lines read as
 * bytes, without a prompt, none held beyond one over-long line's limit; a
 * fast input paused while many lines wait; events to the output one per
 * line, as text or `--json`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PassThrough } from "node:stream";
 * import { PipedTerminal } from "./piped_terminal.ts";
 * const input = new PassThrough();
 * const term = new PipedTerminal({
 *   input, output: new PassThrough(), interactive: false, json: false,
 *   color: false, self: "A", names: () => [],
 * }, 16);
 * input.end("hi\r\n");
 * const got: string[] = [];
 * for await (const line of term.lines()) got.push(line);
 * term.close();
 * assert.deepEqual(got, ["hi"]);
 * ```
 * @module
 */

import { sanitizeInput, sanitizeText } from "./sanitize.ts";
import { BaseTerminal, type TerminalOptions } from "./base_terminal.ts";
import { HIGH_MARK } from "./line_queue.ts";
import type { UiEvent } from "../client/mod.ts";

const encoder = new TextEncoder();

/** Scripting mode: a byte-level line reader that never holds more than one over-long line's limit. */
export class PipedTerminal extends BaseTerminal {
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #skipping = 0; // bytes of the over-long line being skipped, 0 if none
  readonly #decoder = new TextDecoder(); // fatal: false, invalid UTF-8 -> U+FFFD

  constructor(opts: TerminalOptions, maxLineBytes: number) {
    super(opts, maxLineBytes);
    this.queue.onDrain = () => {
      if (!this.closed && opts.input.isPaused()) opts.input.resume();
    };
    this.listen({
      data: (chunk) => this.#take(chunk),
      end: () => {
        this.#flush(false);
        this.finish(false);
      },
      error: (err) => {
        this.report({
          kind: "error",
          code: "input-error",
          text: `Cannot read input: ${
            sanitizeText(err instanceof Error ? err.message : String(err))
          }`,
          at: this.now(),
        });
        this.finish(false);
      },
    });
  }

  print(ev: UiEvent): void {
    this.count(ev);
    this.write(`${this.render(ev)}\n`);
  }

  setPeer(_peer: string | null): void {
    // No prompt in scripting mode.
  }

  setRoom(_room: string | null): void {
    // No prompt in scripting mode.
  }

  #take(chunk: Uint8Array | string): void {
    if (this.closed) return;
    let bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
    while (bytes.length > 0) {
      const nl = bytes.indexOf(0x0a);
      const piece = nl === -1 ? bytes : bytes.subarray(0, nl);
      this.#append(piece);
      if (nl === -1) break;
      this.#flush(true);
      bytes = bytes.subarray(nl + 1);
    }
    if (this.queue.size >= HIGH_MARK) this.opts.input.pause();
  }

  #append(piece: Uint8Array): void {
    if (this.#skipping > 0) {
      this.#skipping += piece.length;
      return;
    }
    if (this.#partBytes + piece.length > this.maxLineBytes + 1) {
      // +1 leaves room for the CR of a CRLF line of exactly the limit.
      this.#skipping = this.#partBytes + piece.length;
      this.#parts = [];
      this.#partBytes = 0;
      return;
    }
    if (piece.length > 0) {
      // Copy: the stream may reuse its buffer.
      this.#parts.push(piece.slice());
      this.#partBytes += piece.length;
    }
  }

  /** A line ended (`newline`) or the input did; queue what was collected. */
  #flush(newline: boolean): void {
    if (this.#skipping > 0) {
      this.tooLong(this.#skipping);
      this.#skipping = 0;
      return;
    }
    if (!newline && this.#partBytes === 0) return;
    let line = new Uint8Array(this.#partBytes);
    let off = 0;
    for (const p of this.#parts) {
      line.set(p, off);
      off += p.length;
    }
    this.#parts = [];
    this.#partBytes = 0;
    if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
    if (line.length > this.maxLineBytes) {
      this.tooLong(line.length);
      return;
    }
    this.queue.push(sanitizeInput(this.#decoder.decode(line)));
  }

  protected stop(): void {
    this.unlisten();
    this.queue.onDrain = () => {};
    this.opts.input.pause();
  }
}
