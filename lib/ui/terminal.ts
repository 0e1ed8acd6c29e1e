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

import { eventToJson, formatEvent, formatPrompt } from "./format.ts";
import { sanitizeInput, sanitizeText } from "./sanitize.ts";
import { completeLine } from "./completion.ts";
import { LineEditor } from "./line_editor.ts";
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
    const input = this.opts.input;
    input.off("data", this.#onData);
    input.off("end", this.#onEnd);
    input.off("error", this.#onError);
    this.queue.onDrain = () => {};
    input.pause();
  }
}

/** What `setRawMode` adds to a TTY input stream (Node's `tty.ReadStream`). */
interface TtyInput {
  isTTY?: boolean;
  setRawMode?: (on: boolean) => unknown;
}

/** What a TTY output stream tells (Node's `tty.WriteStream`). */
interface TtyOutput {
  columns?: number;
}

/**
 * Interactive mode: the {@link LineEditor} on a raw terminal. Each chunk
 * read is handed to the editor at once and drawn with one write, so a
 * paste costs one redraw, not one per character (issue 11 item 1).
 */
class InteractiveTerminal extends BaseTerminal {
  readonly #editor: LineEditor;
  readonly #decoder = new TextDecoder(); // fatal: false, invalid UTF-8 -> U+FFFD
  #raw = false;
  readonly #onData = (chunk: Uint8Array | string) => this.#take(chunk);
  readonly #onEnd = () => this.finish(false);
  readonly #onError = () => this.finish(false);
  readonly #onResize = () => {
    if (!this.closed) this.write(this.#editor.render(this.#cols()));
  };

  constructor(opts: TerminalOptions, maxLineBytes: number) {
    super(opts, maxLineBytes);
    this.#editor = new LineEditor({
      prompt: formatPrompt(opts.self, null, opts.color),
      maxBytes: maxLineBytes,
      historySize: opts.historySize ?? 1000,
      complete: (line: string) =>
        completeLine(
          line,
          opts.names().filter((n) => n !== opts.self),
          opts.rooms?.() ?? [],
        ),
    });
    const input = opts.input as TerminalInput & TtyInput;
    if (input.isTTY && typeof input.setRawMode === "function") {
      input.setRawMode(true);
      this.#raw = true;
    }
    input.on("data", this.#onData);
    input.on("end", this.#onEnd);
    input.on("error", this.#onError);
    // A listener alone does not restart a stream that was paused (by the
    // Username: question before, say).
    input.resume();
    opts.output.on("resize", this.#onResize);
    this.write(this.#editor.render(this.#cols()));
  }

  #cols(): number {
    const c = (this.opts.output as TerminalOutput & TtyOutput).columns;
    return typeof c === "number" && c > 0 ? c : 80;
  }

  /** A note of the terminal's own, as an event line. */
  #note(ev: UiEvent): string {
    return `\r\x1b[J${this.render(ev)}\n`;
  }

  /** One chunk of input: edit, then one write for all of it. */
  #take(chunk: Uint8Array | string): void {
    if (this.closed) return;
    const text = typeof chunk === "string"
      ? chunk
      : this.#decoder.decode(chunk, { stream: true });
    const cols = this.#cols();
    const at = (this.opts.now ?? Date.now)();
    let out = "";
    for (const a of this.#editor.feed(text)) {
      switch (a.kind) {
        case "submit":
          // The line stays in the scrollback as one row, as in a shell.
          out += `\r\x1b[J${sanitizeEcho(this.#editor.echo(a.line, cols))}\n`;
          this.queue.push(sanitizeInput(a.line));
          break;
        case "interrupt":
          out += this.#note({
            kind: "system",
            text: a.hadText
              ? "Line cleared; Ctrl-C again or Ctrl-D quits"
              : "Ctrl-C again or Ctrl-D quits",
            at,
          });
          break;
        case "capped":
          out += this.#note({
            kind: "error",
            code: "line-too-long",
            text:
              `Input is limited to ${a.maxBytes} bytes; the rest was not added`,
            at,
          });
          break;
        case "candidates":
          out += `\r\x1b[J${a.items.map(sanitizeText).join("  ")}\n`;
          break;
        case "clear-screen":
          // ECMA-48: CUP to the top left, ED 2 (erase the screen).
          out += "\x1b[H\x1b[2J";
          break;
        case "quit":
          this.write(`${out}\r\x1b[J`);
          this.finish(false);
          return;
      }
    }
    this.write(out + this.#editor.render(cols));
  }

  print(ev: UiEvent): void {
    this.count(ev);
    const text = this.render(ev);
    if (this.closed) {
      this.write(`${text}\n`);
      return;
    }
    // One write: erase the input row, the event, the input row again.
    this.write(`\r\x1b[J${text}\n${this.#editor.render(this.#cols())}`);
  }

  #peer: string | null = null;
  #room: string | null = null;

  setPeer(peer: string | null): void {
    this.#peer = peer;
    this.#prompt();
  }

  setRoom(room: string | null): void {
    this.#room = room;
    this.#prompt();
  }

  /** The prompt of the peer and room now, redrawn with the line. */
  #prompt(): void {
    this.#editor.setPrompt(
      formatPrompt(this.opts.self, this.#peer, this.opts.color, this.#room),
    );
    if (!this.closed) this.write(this.#editor.render(this.#cols()));
  }

  protected stop(): void {
    const input = this.opts.input as TerminalInput & TtyInput;
    input.off("data", this.#onData);
    input.off("end", this.#onEnd);
    input.off("error", this.#onError);
    this.opts.output.off("resize", this.#onResize);
    // CR, ED 0: the input row goes; what is printed next starts there.
    this.write("\r\x1b[J");
    if (this.#raw) {
      this.#raw = false;
      try {
        input.setRawMode?.(false);
      } catch {
        // The terminal is gone (SIGHUP): nothing left to restore.
      }
    }
    input.pause();
  }
}

/** The prompt is ours and the line was typed: only its controls go. */
function sanitizeEcho(row: string): string {
  // deno-lint-ignore no-control-regex -- keep SGR of the prompt, drop the rest
  return row.replace(/[\x00-\x1a\x1c-\x1f\x7f-\x9f]/g, "");
}
