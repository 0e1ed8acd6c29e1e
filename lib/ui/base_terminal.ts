/**
 * What both kinds of chat terminal share: the contract ({@link Terminal},
 * its {@link TerminalOptions} and the streams it reads and writes), and
 * {@link BaseTerminal}, which renders events, writes until the output
 * breaks, counts the lines that failed, and hands out the queue of lines.
 * The piped terminal (piped_terminal.ts) and the interactive one
 * (interactive_terminal.ts) add how input is read and where events go.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MAX_LINE_BYTES } from "./base_terminal.ts";
 * assert.equal(MAX_LINE_BYTES, 16384);
 * ```
 * @module
 */

import { eventToJson, formatEvent } from "./format.ts";
import { LineQueue } from "./line_queue.ts";
import type { UiEvent } from "../client/mod.ts";

/** Longest input line accepted by default, in UTF-8 bytes. */
export const MAX_LINE_BYTES = 16 * 1024;

/** A listener of a {@link TerminalInput} or {@link TerminalOutput}. */
// deno-lint-ignore no-explicit-any -- the shape of Node's EventEmitter
type Listener = (...args: any[]) => void;

/**
 * What the terminal reads: a Node readable (`process.stdin` of
 * `node:process`, a `PassThrough`) or `denoStdin()` of stdio.ts. It uses
 * `data`, `end` and `error`, and pauses a fast input.
 */
export interface TerminalInput {
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
  pause(): unknown;
  resume(): unknown;
  isPaused(): boolean;
}

/**
 * What the terminal writes to: a Node writable (`process.stdout`, a
 * `PassThrough`) or `denoStdout()` of stdio.ts. An `error` event (EPIPE)
 * or a throwing `write` stops the output.
 */
export interface TerminalOutput {
  write(text: string): unknown;
  /** Write out what `write` queued (`denoStdout()` queues; Node's streams do not need it). */
  flush?(): void;
  readonly destroyed: boolean;
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
}

/** Options of {@link createTerminal}. */
export interface TerminalOptions {
  /** Where lines come from: `process.stdin` from `node:process`, any Node readable, or `denoStdin()`. */
  input: TerminalInput;
  /** Where events go: `process.stdout`, any Node writable, or `denoStdout()`. */
  output: TerminalOutput;
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
  /** The rooms we are in, for Tab completion after `#` and `!room `; default none. */
  rooms?: () => string[];
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
   * Show the room plain lines go to in the prompt (`A#team> `, over the
   * peer), or none with null (the peer's prompt again). The peer set by
   * {@link Terminal.setPeer} is kept either way.
   */
  setRoom(room: string | null): void;
  /**
   * The user's lines, sanitized, without line endings. Ends at end of
   * input, Ctrl-D on an empty line, a second Ctrl-C on an empty line, or
   * {@link Terminal.close}. In scripting mode too long lines are skipped
   * and reported as an `error` event (`line-too-long`); interactively the
   * input stops growing at the limit, with that event once per line. One
   * consumer only: every call returns the same queue.
   */
  lines(): AsyncIterable<string>;
  /**
   * How many of the user's lines failed (issue 11 item 6): a line during
   * whose handling (from when {@link Terminal.lines} gave it out until the
   * next one was asked for) an `error` event was printed, a line skipped
   * as too long, and each message reported `undelivered`.
   */
  readonly failures: number;
  /** Stop reading, restore the terminal, end {@link Terminal.lines}; idempotent. */
  close(): void;
}

/** What a terminal does with its input's events. */
interface InputListeners {
  data(chunk: Uint8Array | string): void;
  end(): void;
  error(err: unknown): void;
}

export abstract class BaseTerminal implements Terminal {
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
      try {
        this.opts.output.write(s);
      } catch {
        // A terminal that went away (EIO after SIGHUP): stop writing.
        this.outputBroken = true;
      }
    }
  }

  #failures = 0;
  #handling = false; // a line was given out and the next not asked for yet
  #lineFailed = false;

  get failures(): number {
    return this.#failures;
  }

  /** Count what the event says failed; every print goes through here. */
  protected count(ev: UiEvent): void {
    if (ev.kind === "error" && this.#handling) this.#lineFailed = true;
    // A mail the server deleted unread was not delivered either.
    if (
      ev.kind === "receipt" &&
      (ev.status === "undelivered" || ev.status === "expired")
    ) this.#failures++;
  }

  /** The queue's lines, noting which line is being handled. */
  async *#tracked(src: AsyncGenerator<string>): AsyncGenerator<string> {
    for await (const line of src) {
      this.#lineFailed = false;
      this.#handling = true;
      try {
        yield line;
      } finally {
        this.#handling = false;
        if (this.#lineFailed) this.#failures++;
      }
    }
  }

  /** Queue the report of a skipped line, to be printed in input order. */
  protected tooLong(bytes: number): void {
    this.#failures++;
    this.report({
      kind: "error",
      code: "line-too-long",
      text:
        `Input line of ${bytes} bytes exceeds the limit of ${this.maxLineBytes} and was skipped`,
      at: this.now(),
    });
  }

  /** Queue an event of the input's own, to be printed in input order. */
  protected report(ev: UiEvent): void {
    this.queue.push(() => this.print(ev));
  }

  /** The time of an event the terminal makes itself. */
  protected now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Read the input: its `data`, `end` and `error` go to `on`. */
  protected listen(on: InputListeners): void {
    this.#input = on;
    this.opts.input.on("data", on.data);
    this.opts.input.on("end", on.end);
    this.opts.input.on("error", on.error);
  }

  /** Stop reading the input: the listeners of {@link listen} go. */
  protected unlisten(): void {
    const on = this.#input;
    if (on === null) return;
    this.#input = null;
    this.opts.input.off("data", on.data);
    this.opts.input.off("end", on.end);
    this.opts.input.off("error", on.error);
  }
  #input: InputListeners | null = null;

  abstract print(ev: UiEvent): void;
  abstract setPeer(peer: string | null): void;
  abstract setRoom(room: string | null): void;

  lines(): AsyncIterable<string> {
    return this.#iterable ??= this.#tracked(this.queue.iterate());
  }
  #iterable: AsyncGenerator<string> | null = null;

  close(): void {
    this.finish(true);
    // Input may have ended long before: what was printed since goes out now.
    this.opts.output.flush?.();
  }

  /**
   * Stop reading. At end of input (`discard` false) the consumer still gets
   * the lines already read; on close() they are dropped.
   */
  protected finish(discard: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    // Before the error listener goes: a failed last write is still noted.
    this.opts.output.flush?.();
    this.opts.output.off("error", this.#onOutputError);
    this.queue.end(discard);
  }

  protected abstract stop(): void;
}
