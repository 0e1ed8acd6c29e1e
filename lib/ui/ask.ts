/**
 * One question on the terminal, answered with the {@link LineEditor}: the
 * `Username:` that `im chat` asks when no `--user` was given (issue 11
 * item 11), with Tab completion of the possible answers. The terminal is
 * raw only while the question is open; `close()` (which a signal or crash
 * handler may call, see terminal_guard.ts) restores it and answers null.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PassThrough } from "node:stream";
 * import { ask } from "./ask.ts";
 * const input = new PassThrough(), output = new PassThrough();
 * output.resume();
 * const q = ask({ input, output, prompt: "Username: ", choices: () => ["carol", "bob"] });
 * input.write("ca\t\r");
 * assert.equal(await q.answer, "carol");
 * input.destroy();
 * ```
 * @module
 */

import type { Readable, Writable } from "node:stream";
import { LineEditor } from "./line_editor.ts";
import { sanitizeInput, sanitizeText } from "./sanitize.ts";

/** Options of {@link ask}. */
export interface AskOptions {
  /** The terminal's input (`process.stdin`). */
  input: Readable;
  /** Where the question goes. */
  output: Writable;
  /** The question, e.g. `Username: `. */
  prompt: string;
  /** Answers Tab completes to. */
  choices?: () => string[];
  /** The longest answer in UTF-8 bytes; default 256. */
  maxBytes?: number;
}

/** An open question made by {@link ask}. */
export interface Question {
  /** The line typed (sanitized), or null for Ctrl-C, Ctrl-D, end of input or `close()`. */
  readonly answer: Promise<string | null>;
  /** Stop asking, restore the terminal, answer null; idempotent. */
  close(): void;
}

interface Tty {
  isTTY?: boolean;
  setRawMode?: (on: boolean) => unknown;
  columns?: number;
}

/**
 * Ask one question.
 * @param o the streams, the prompt and what Tab completes to
 * @returns the open question
 */
export function ask(o: AskOptions): Question {
  const input = o.input as Readable & Tty;
  const cols = () => {
    const c = (o.output as Writable & Tty).columns;
    return typeof c === "number" && c > 0 ? c : 80;
  };
  const editor = new LineEditor({
    prompt: o.prompt,
    maxBytes: o.maxBytes ?? 256,
    historySize: 0,
    complete: (line) => [
      (o.choices?.() ?? []).filter((c) => c.startsWith(line)).sort(),
      line,
    ],
  });
  const result = Promise.withResolvers<string | null>();
  const decoder = new TextDecoder();
  const raw = input.isTTY === true && typeof input.setRawMode === "function";
  let open = true;
  const write = (s: string) => {
    try {
      o.output.write(s);
    } catch {
      // The terminal is gone; the answer is null anyway.
    }
  };
  const finish = (answer: string | null, tail: string) => {
    if (!open) return;
    open = false;
    input.off("data", onData);
    input.off("end", onEnd);
    input.off("error", onEnd);
    write(tail);
    if (raw) {
      try {
        input.setRawMode?.(false);
      } catch {
        // Nothing left to restore.
      }
    }
    input.pause();
    result.resolve(answer);
  };
  const onData = (chunk: Uint8Array | string) => {
    if (!open) return;
    const text = typeof chunk === "string"
      ? chunk
      : decoder.decode(chunk, { stream: true });
    let out = "";
    for (const a of editor.feed(text)) {
      switch (a.kind) {
        case "submit":
          return finish(
            sanitizeInput(a.line),
            `${out}\r\x1b[J${editor.echo(a.line, cols())}\n`,
          );
        case "quit":
          return finish(null, `${out}\r\x1b[J\n`);
        case "interrupt":
          // Ctrl-C at a question gives up at once.
          return finish(null, `${out}\r\x1b[J\n`);
        case "candidates":
          out += `\r\x1b[J${a.items.map(sanitizeText).join("  ")}\n`;
          break;
        case "capped":
        case "clear-screen":
          break;
      }
    }
    write(out + editor.render(cols()));
  };
  const onEnd = () => finish(null, "\r\x1b[J\n");
  if (raw) input.setRawMode?.(true);
  input.on("data", onData);
  input.on("end", onEnd);
  input.on("error", onEnd);
  input.resume();
  write(editor.render(cols()));
  return {
    answer: result.promise,
    close: () => finish(null, "\r\x1b[J"),
  };
}
