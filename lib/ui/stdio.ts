/**
 * The process's stdin and stdout for the terminal of a script (stdin not a
 * TTY), on Deno's own handles rather than `node:process` (issue 15: the
 * Node streams cost `im chat` about 10 ms of start, and a system call and a
 * stream's bookkeeping per line). They do what
 * {@link PipedTerminal} of terminal.ts asks of `process.stdin` and
 * `process.stdout`, and no more:
 *
 * - {@link denoStdin}: `data` events of up to 64 KiB read at once, `end` at
 *   end of input, `error` when a read fails; `pause()` stops reading (a
 *   chunk read while paused waits for `resume()`), as a Node readable in
 *   flowing mode does. Unlike Node's, a chunk is read into one buffer kept
 *   for every read: a listener keeps a copy of what it needs beyond the
 *   call (the terminal does), and no 64 KiB array is made per read.
 * - {@link denoStdout}: `write()` queues; what was queued goes out whole
 *   (`writeSync` until every byte is out, as Node's stdout on a pipe or
 *   file does) in one system call at the end of the event loop's turn
 *   (`setImmediate`), at `flush()`, and when the process exits (`unload`):
 *   a burst of typed lines printed one system call per event spent 15% of
 *   each `im chat` process's CPU in `write` (issue 15, BENCHMARKS.md). A
 *   failed write (the reader went away) emits `error` once and marks the
 *   stream `destroyed`; later writes return false.
 *
 * @example
 * ```ts ignore
 * import { denoStdin, denoStdout } from "./stdio.ts";
 * const term = createTerminal({ input: denoStdin(), output: denoStdout(), interactive: false, json: true, color: false, self: "A", names: () => [] });
 * ```
 * @module
 */

/** A listener of {@link DenoInput} or {@link DenoOutput}. */
// deno-lint-ignore no-explicit-any -- the shape of Node's EventEmitter
type Listener = (...args: any[]) => void;

/** Bytes asked of stdin in one read. */
export const STDIN_READ_BYTES = 64 * 1024;

/** What {@link DenoInput} reads from: `Deno.stdin`, or a test's stand-in. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}

/** What {@link DenoOutput} writes to: `Deno.stdout`, or a test's stand-in. */
export interface ByteWriter {
  writeSync(p: Uint8Array): number;
}

/** A few listeners per event name, called in the order they were added. */
class Emitter {
  #on = new Map<string, Listener[]>();

  on(event: string, f: Listener): this {
    const list = this.#on.get(event);
    if (list) list.push(f);
    else this.#on.set(event, [f]);
    return this;
  }

  off(event: string, f: Listener): this {
    const list = this.#on.get(event);
    const i = list?.indexOf(f) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    return this;
  }

  protected emit(event: string, arg?: unknown): void {
    for (const f of [...(this.#on.get(event) ?? [])]) f(arg);
  }
}

/** stdin as the piped terminal reads it; see the module's comment. */
export class DenoInput extends Emitter {
  readonly #src: ByteReader;
  #paused = true;
  #reading = false;
  #ended = false;
  /** A chunk read after `pause()` (a copy), handed out by `resume()`. */
  #held: Uint8Array | null = null;
  /** Every read goes here; a `data` event's chunk is a view of it. */
  readonly #buf = new Uint8Array(STDIN_READ_BYTES);

  constructor(src: ByteReader) {
    super();
    this.#src = src;
  }

  /** Adding a `data` listener starts the flow, as on a Node readable. */
  override on(event: string, f: Listener): this {
    super.on(event, f);
    if (event === "data") this.resume();
    return this;
  }

  isPaused(): boolean {
    return this.#paused;
  }

  pause(): this {
    this.#paused = true;
    return this;
  }

  resume(): this {
    if (this.#ended) return this;
    this.#paused = false;
    const held = this.#held;
    if (held) {
      this.#held = null;
      this.emit("data", held);
    }
    if (!this.#paused && !this.#reading) void this.#pump();
    return this;
  }

  async #pump(): Promise<void> {
    this.#reading = true;
    try {
      while (!this.#paused && !this.#ended) {
        const n = await this.#src.read(this.#buf);
        if (n === null) {
          this.#ended = true;
          this.emit("end");
          return;
        }
        const chunk = this.#buf.subarray(0, n);
        if (this.#paused) {
          this.#held = chunk.slice();
          return;
        }
        this.emit("data", chunk);
      }
    } catch (e) {
      this.#ended = true;
      this.emit("error", e);
    } finally {
      this.#reading = false;
    }
  }
}

const encoder = new TextEncoder();

/** stdout as the piped terminal writes it; see the module's comment. */
export class DenoOutput extends Emitter {
  readonly #dst: ByteWriter;
  #destroyed = false;
  /** Written and not yet out. */
  #pending = "";
  #scheduled = false;
  readonly #flushLater = () => {
    this.#scheduled = false;
    this.flush();
  };

  constructor(dst: ByteWriter) {
    super();
    this.#dst = dst;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * Queue `s`, to go out whole by the end of this turn of the event loop.
   * @returns true, or false once the output failed
   */
  write(s: string): boolean {
    if (this.#destroyed) return false;
    this.#pending += s;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushLater);
    }
    return true;
  }

  /** Write what is queued now, whole; a failure is the `error` event. */
  flush(): void {
    if (this.#destroyed || this.#pending === "") return;
    const bytes = encoder.encode(this.#pending);
    this.#pending = "";
    try {
      for (let off = 0; off < bytes.length;) {
        off += this.#dst.writeSync(bytes.subarray(off));
      }
    } catch (e) {
      this.#destroyed = true;
      this.emit("error", e);
    }
  }
}

/**
 * The process's stdin, read with `Deno.stdin`.
 * @returns a new reader; make one per process
 */
export function denoStdin(): DenoInput {
  return new DenoInput(Deno.stdin);
}

/**
 * The process's stdout, written with `Deno.stdout`.
 * @returns a new writer
 */
export function denoStdout(): DenoOutput {
  const out = new DenoOutput(Deno.stdout);
  // Deno.exit() and the end of the program: what was queued still goes out.
  globalThis.addEventListener("unload", () => out.flush());
  return out;
}
