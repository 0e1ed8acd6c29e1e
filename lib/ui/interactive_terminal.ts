/**
 * The chat terminal in interactive mode (stdin is a TTY): the
 * {@link LineEditor} of line_editor.ts on a raw terminal, with a prompt
 * (`A> `, `A→B> `, `A#team> `), history, Tab completion of commands, online
 * names and room names; events are printed above the input row and the
 * half-typed line is redrawn. The terminal is restored by `close()`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PassThrough } from "node:stream";
 * import { InteractiveTerminal } from "./interactive_terminal.ts";
 * const input = new PassThrough();
 * const output = new PassThrough();
 * const term = new InteractiveTerminal({
 *   input, output, interactive: true, json: false, color: false,
 *   self: "A", names: () => [],
 * }, 16);
 * term.close();
 * input.destroy();
 * assert.ok(String(output.read()).includes("A> "));
 * ```
 * @module
 */

import { formatPrompt } from "./format.ts";
import { sanitizeInput, sanitizeText } from "./sanitize.ts";
import { completeLine } from "./completion.ts";
import { LineEditor } from "./line_editor.ts";
import {
  BaseTerminal,
  type TerminalInput,
  type TerminalOptions,
  type TerminalOutput,
} from "./base_terminal.ts";
import type { UiEvent } from "../client/mod.ts";

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
export class InteractiveTerminal extends BaseTerminal {
  readonly #editor: LineEditor;
  readonly #decoder = new TextDecoder(); // fatal: false, invalid UTF-8 -> U+FFFD
  #raw = false;
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
    this.listen({
      data: (chunk) => this.#take(chunk),
      end: () => this.finish(false),
      error: () => this.finish(false),
    });
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
    const at = this.now();
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
    this.unlisten();
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
