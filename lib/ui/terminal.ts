/**
 * The terminal of `im chat`: reads the user's lines and prints events. It
 * knows nothing of sockets or crypto; the client feeds it {@link UiEvent}s
 * and reads {@link Terminal.lines}.
 *
 * Interactive (stdin is a TTY): `node:readline` with a prompt (`A> `,
 * `A→B> `), history, Tab completion of commands and online names; events
 * are printed above the prompt and the half-typed line is redrawn.
 * Scripting (stdin is not a TTY): lines are read as bytes, without a
 * prompt; events go to the output one per line, as text or `--json`.
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

import type { Readable, Writable } from "node:stream";
import { createInterface, type Interface } from "node:readline";
import { eventToJson, formatEvent, formatPrompt } from "./format.ts";
import { sanitizeInput, sanitizeText } from "./sanitize.ts";
import { completeLine } from "./completion.ts";
import type { UiEvent } from "../client/mod.ts";

/** Longest input line accepted by default, in UTF-8 bytes. */
export const MAX_LINE_BYTES = 16 * 1024;

/** Options of {@link createTerminal}. */
export interface TerminalOptions {
  /** Where lines come from: `process.stdin` from `node:process`, or any Node readable. */
  input: Readable;
  /** Where events go: `process.stdout`, or any Node writable. */
  output: Writable;
  /** Prompt, line editing, history and completion (use when stdin is a TTY). */
  interactive: boolean;
  /** Print events as JSON lines ({@link eventToJson}) instead of text. */
  json: boolean;
  /** Colour the text output (see {@link shouldUseColor}). */
  color: boolean;
  /** Our username, shown in the prompt. */
  self: string;
  /** Usernames online now, for Tab completion after `!session `. */
  names: () => string[];
  /** Longer input lines are skipped with an `error` event; default {@link MAX_LINE_BYTES}. */
  maxLineBytes?: number;
  /** Lines kept in the history of interactive mode; default 1000. */
  historySize?: number;
  /** Clock for events the terminal makes itself; default `Date.now`. */
  now?: () => number;
}

/** A chat terminal made by {@link createTerminal}. */
export interface Terminal {
  /** Print an event; in interactive mode above the prompt, keeping the half-typed line. */
  print(ev: UiEvent): void;
  /** Show `peer` in the prompt (`A→B> `), or nobody with null (`A> `). */
  setPeer(peer: string | null): void;
  /**
   * The user's lines, sanitized, without line endings. Ends at end of
   * input, Ctrl-D on an empty line, Ctrl-C, or {@link Terminal.close}.
   * Too long lines are skipped and reported as an `error` event
   * (`line-too-long`). One consumer only: every call returns the same queue.
   */
  lines(): AsyncIterable<string>;
  /** Stop reading, restore the terminal, end {@link Terminal.lines}; idempotent. */
  close(): void;
}

/**
 * A queue of lines with one async consumer. A function in the queue is a
 * deferred report (a skipped line): it runs when the consumer reaches it,
 * so reports come out in input order.
 */
class LineQueue {
  #items: Array<string | (() => void)> = [];
  #ended = false;
  #wake: (() => void) | null = null;
  /** Called when the queue drains below the low mark (for back-pressure). */
  onDrain: () => void = () => {};

  get size(): number {
    return this.#items.length;
  }

  push(line: string | (() => void)): void {
    if (this.#ended) return;
    this.#items.push(line);
    this.#poke();
  }

  /** No more items; with `discard`, also drop what was not consumed yet. */
  end(discard: boolean): void {
    if (discard) this.#items = [];
    this.#ended = true;
    this.#poke();
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async *iterate(): AsyncGenerator<string> {
    while (true) {
      const item = this.#items.shift();
      if (item !== undefined) {
        if (this.#items.length < LOW_MARK) this.onDrain();
        if (typeof item === "string") yield item;
        else item();
      } else if (this.#ended) {
        return;
      } else {
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
    }
  }
}

// Back-pressure of piped input: pause above HIGH_MARK queued lines,
// resume below LOW_MARK.
const HIGH_MARK = 256;
const LOW_MARK = 64;

const encoder = new TextEncoder();

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

abstract class BaseTerminal implements Terminal {
  protected readonly queue = new LineQueue();
  protected closed = false;
  protected readonly opts: TerminalOptions;
  protected readonly maxLineBytes: number;
  readonly #onOutputError = () => {
    // EPIPE and friends: the reader went away; stop writing, do not crash.
    this.outputBroken = true;
  };
  protected outputBroken = false;

  constructor(opts: TerminalOptions, maxLineBytes: number) {
    this.opts = opts;
    this.maxLineBytes = maxLineBytes;
    opts.output.on("error", this.#onOutputError);
  }

  protected render(ev: UiEvent): string {
    return this.opts.json
      ? eventToJson(ev)
      : formatEvent(ev, { color: this.opts.color, self: this.opts.self });
  }

  protected write(s: string): void {
    if (!this.outputBroken && !this.opts.output.destroyed) {
      this.opts.output.write(s);
    }
  }

  /** Queue the report of a skipped line, to be printed in input order. */
  protected tooLong(bytes: number): void {
    const ev: UiEvent = {
      kind: "error",
      code: "line-too-long",
      text:
        `Input line of ${bytes} bytes exceeds the limit of ${this.maxLineBytes} and was skipped`,
      at: (this.opts.now ?? Date.now)(),
    };
    this.queue.push(() => this.print(ev));
  }

  abstract print(ev: UiEvent): void;
  abstract setPeer(peer: string | null): void;

  lines(): AsyncIterable<string> {
    return this.#iterable ??= this.queue.iterate();
  }
  #iterable: AsyncGenerator<string> | null = null;

  close(): void {
    this.finish(true);
  }

  /**
   * Stop reading. At end of input (`discard` false) the consumer still gets
   * the lines already read; on close() they are dropped.
   */
  protected finish(discard: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    this.opts.output.off("error", this.#onOutputError);
    this.queue.end(discard);
  }

  protected abstract stop(): void;
}

/** Scripting mode: a byte-level line reader that never holds more than one over-long line's limit. */
class PipedTerminal extends BaseTerminal {
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #skipping = 0; // bytes of the over-long line being skipped, 0 if none
  readonly #decoder = new TextDecoder(); // fatal: false, invalid UTF-8 -> U+FFFD
  readonly #onData = (chunk: Uint8Array | string) => this.#take(chunk);
  readonly #onEnd = () => {
    this.#flush(false);
    this.finish(false);
  };
  readonly #onError = (err: unknown) => {
    const ev: UiEvent = {
      kind: "error",
      code: "input-error",
      text: `Cannot read input: ${
        sanitizeText(err instanceof Error ? err.message : String(err))
      }`,
      at: (this.opts.now ?? Date.now)(),
    };
    this.queue.push(() => this.print(ev));
    this.finish(false);
  };

  constructor(opts: TerminalOptions, maxLineBytes: number) {
    super(opts, maxLineBytes);
    this.queue.onDrain = () => {
      if (!this.closed && opts.input.isPaused()) opts.input.resume();
    };
    opts.input.on("data", this.#onData);
    opts.input.on("end", this.#onEnd);
    opts.input.on("error", this.#onError);
  }

  print(ev: UiEvent): void {
    this.write(`${this.render(ev)}\n`);
  }

  setPeer(_peer: string | null): void {
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
    const input = this.opts.input;
    input.off("data", this.#onData);
    input.off("end", this.#onEnd);
    input.off("error", this.#onError);
    this.queue.onDrain = () => {};
    input.pause();
  }
}

/** Interactive mode: node:readline with prompt, history and completion. */
class InteractiveTerminal extends BaseTerminal {
  readonly #rl: Interface;

  constructor(opts: TerminalOptions, maxLineBytes: number) {
    super(opts, maxLineBytes);
    this.#rl = createInterface({
      input: opts.input,
      output: opts.output,
      terminal: true,
      historySize: opts.historySize ?? 1000,
      removeHistoryDuplicates: true,
      prompt: formatPrompt(opts.self, null, opts.color),
      completer: (line: string) =>
        completeLine(line, opts.names().filter((n) => n !== opts.self)),
    });
    this.#rl.on("line", (line: string) => {
      const bytes = encoder.encode(line).length;
      if (bytes > this.maxLineBytes) this.tooLong(bytes);
      else this.queue.push(sanitizeInput(line));
      if (!this.closed) this.#rl.prompt();
    });
    // Ctrl-C ends the session like Ctrl-D (the client then logs out).
    this.#rl.on("SIGINT", () => this.close());
    this.#rl.on("close", () => this.finish(false));
    this.#rl.prompt();
  }

  print(ev: UiEvent): void {
    const text = this.render(ev);
    if (this.closed) {
      this.write(`${text}\n`);
      return;
    }
    // One write: erase prompt and input, then the event on its own line.
    this.write(`${this.#eraseInput()}${text}\n`);
    // readline remembers on which row of the input the cursor was and moves
    // up that many rows before redrawing; we already cleared the input and
    // are on a fresh line, so there is nothing to move over.
    (this.#rl as unknown as { prevRows: number }).prevRows = 0;
    this.#rl.prompt(true); // redraw prompt and half-typed line, keep the cursor
  }

  setPeer(peer: string | null): void {
    this.#rl.setPrompt(formatPrompt(this.opts.self, peer, this.opts.color));
    if (!this.closed) {
      this.write(this.#eraseInput());
      (this.#rl as unknown as { prevRows: number }).prevRows = 0;
      this.#rl.prompt(true);
    }
  }

  /** Control sequence: up to the first row of prompt + input, erase it and all below. */
  #eraseInput(): string {
    const rows = this.#rl.getCursorPos().rows;
    // ECMA-48: CUU (ESC [ n A) up n rows; CR to column 0; ED 0 (ESC [ J).
    return `${rows > 0 ? `\x1b[${rows}A` : ""}\r\x1b[J`;
  }

  protected stop(): void {
    this.write(this.#eraseInput());
    this.#rl.close();
  }
}
