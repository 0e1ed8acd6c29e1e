/**
 * `im` on a real pseudo-terminal, for the tests of what a person at a
 * terminal sees and types (issue 11): a Python helper (`_pty.py`, standard
 * library only) gives the command a new session on a pty, types what the
 * test sends, sends signals and reads the pty's modes (as `stty -a` would)
 * after the command is gone.
 *
 * {@link requirePty} fails the test with a clear message when no Python 3
 * with `pty`, `termios` and `fcntl` is found: these tests are never
 * skipped silently. Every {@link PtyProc} must be closed (`close()`
 * kills what is left and awaits the helper), which {@link Procs.defer} of
 * harness.ts does at the end of a test.
 *
 * @example
 * ```ts ignore
 * await requirePty();
 * const t = PtyProc.start(["chat", "--user", "A", "--server", addr, "--keys", keys]);
 * p.defer(() => t.close());
 * await t.waitFor("A> ", "the prompt");
 * await t.type("!list\r");
 * ```
 * @module
 */

import { fileURLToPath } from "node:url";
import { MAIN, ROOT, WAIT_MS } from "./harness.ts";

const HELPER = fileURLToPath(new URL("./_pty.py", import.meta.url));
const PYTHON = Deno.env.get("IM_TEST_PYTHON") ?? "python3";

let checked: Promise<void> | undefined;

/**
 * Fail (never skip) when the pty helper cannot run here.
 * @throws {Error} naming what is missing and how to get it
 */
export function requirePty(): Promise<void> {
  checked ??= (async () => {
    let why: string;
    try {
      const out = await new Deno.Command(PYTHON, {
        args: ["-c", "import pty, termios, fcntl, select, base64, json"],
        stdout: "null",
        stderr: "piped",
      }).output();
      if (out.success) return;
      why = new TextDecoder().decode(out.stderr).trim();
    } catch (e) {
      why = (e as Error).message;
    }
    throw new Error(
      `The pty tests need ${PYTHON} (Python 3 with the pty, termios and fcntl modules; ` +
        `set IM_TEST_PYTHON to use another) and could not run it: ${why}`,
    );
  })();
  return checked;
}

/** What the pty's modes say (booleans of `stty -a`). */
export interface PtyModes {
  icanon: boolean;
  echo: boolean;
  isig: boolean;
  icrnl: boolean;
  opost: boolean;
}

/** How the command on the pty ended. */
export interface PtyExit {
  code: number | null;
  signal: string | null;
}

const encoder = new TextEncoder();

// CSI, OSC and other escape sequences, for text() (ECMA-48 5.4, 5.6).
const ESCAPES =
  // deno-lint-ignore no-control-regex -- stripping controls is the point
  /\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[\x20-\x2f]*[\x30-\x7e]/g;

/** `im ARGS` on a pty. */
export class PtyProc {
  readonly name: string;
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pump: Promise<void>;
  readonly #stderr: Promise<string>;
  #raw = "";
  #decoder = new TextDecoder();
  #exit: PtyExit | null = null;
  #modes: Array<(m: PtyModes) => void> = [];
  #waiters = new Set<() => void>();
  #ended = false;
  #closed: Promise<void> | null = null;
  /** The pid of the command (not of the helper), once started. */
  pid = 0;

  private constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#pump = this.#read(child.stdout);
    this.#stderr = new Response(child.stderr).text().catch(() => "");
  }

  /**
   * Start `deno run --allow-all main.ts ARGS` on a new pty.
   * @param args arguments after main.ts
   * @param o terminal size, extra environment, another module than main.ts
   * @returns the running command
   */
  static start(
    args: string[],
    o: {
      cols?: number;
      rows?: number;
      env?: Record<string, string>;
      module?: string;
    } = {},
  ): PtyProc {
    const child = new Deno.Command(PYTHON, {
      args: [
        HELPER,
        String(o.cols ?? 80),
        String(o.rows ?? 24),
        "--",
        Deno.execPath(),
        "run",
        "--allow-all",
        "--quiet",
        o.module ?? MAIN,
        ...args,
      ],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", TERM: "xterm-256color", ...o.env },
    }).spawn();
    return new PtyProc(`pty ${args.slice(0, 3).join(" ")}`, child);
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    const lines = stream.pipeThrough(new TextDecoderStream());
    let buf = "";
    try {
      for await (const chunk of lines) {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf("\n")) !== -1) {
          this.#message(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
      }
    } catch {
      // The helper went away; what was read is kept.
    }
    this.#ended = true;
    this.#wake();
  }

  #message(m: Record<string, unknown>): void {
    if (typeof m.out === "string") {
      this.#raw += this.#decoder.decode(Uint8Array.fromBase64(m.out), {
        stream: true,
      });
    } else if (m.exit !== undefined) {
      this.#exit = m.exit as PtyExit;
    } else if (m.termios !== undefined) {
      this.#modes.shift()?.(m.termios as PtyModes);
    } else if (typeof m.started === "number") {
      this.pid = m.started;
    } else if (typeof m.error === "string") {
      this.#raw += `\n[pty helper: ${m.error}]\n`;
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Everything written to the terminal, escape sequences included. */
  get raw(): string {
    return this.#raw;
  }

  /** Everything written to the terminal, escape sequences removed. */
  get text(): string {
    return this.#raw.replace(ESCAPES, "");
  }

  /** How the command ended, once it has. */
  get exited(): PtyExit | null {
    return this.#exit;
  }

  async #send(m: Record<string, unknown>): Promise<void> {
    await this.#writer.write(encoder.encode(`${JSON.stringify(m)}\n`));
  }

  /**
   * Type (or paste: one write) text into the terminal.
   * @param s the keys, e.g. `"hello\r"`, `"\x03"` for Ctrl-C
   */
  type(s: string): Promise<void> {
    return this.#send({ write: encoder.encode(s).toBase64() });
  }

  /**
   * Send a signal to the command.
   * @param sig e.g. `SIGTERM`
   */
  signal(sig: Deno.Signal): Promise<void> {
    return this.#send({ signal: sig });
  }

  /**
   * The pty's modes now.
   * @returns icanon, echo, ...
   */
  async modes(): Promise<PtyModes> {
    let got: PtyModes | undefined;
    this.#modes.push((m) => got = m);
    await this.#send({ termios: true });
    return await this.#until(() => got, "the pty's modes");
  }

  async #until<T>(
    check: () => T | undefined,
    what: string,
    timeoutMs = WAIT_MS,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0 || this.#ended) {
        throw new Error(
          `${this.name}: ${
            this.#ended
              ? "the pty helper ended"
              : `timed out after ${timeoutMs} ms`
          } waiting for ${what}\n${this.dump()}`,
        );
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 200));
        this.#waiters.add(done);
      });
    }
  }

  /**
   * Wait until the terminal's text (escapes removed), from offset `since`,
   * contains `want` or matches it.
   * @param want text or pattern
   * @param what for the failure message
   * @param since offset into {@link text} to look from
   * @param timeoutMs how long
   * @returns the text from `since`
   */
  waitFor(
    want: string | RegExp,
    what: string,
    since = 0,
    timeoutMs = WAIT_MS,
  ): Promise<string> {
    return this.#until(
      () => {
        const t = this.text.slice(since);
        const ok = typeof want === "string" ? t.includes(want) : want.test(t);
        return ok ? t : undefined;
      },
      what,
      timeoutMs,
    );
  }

  /**
   * Wait for the command to end.
   * @param timeoutMs how long
   * @returns its exit
   */
  waitExit(timeoutMs = WAIT_MS): Promise<PtyExit> {
    return this.#until(
      () => this.#exit ?? undefined,
      "the command to exit",
      timeoutMs,
    );
  }

  /** The last of the terminal's text, for failure messages. */
  dump(): string {
    const tail = this.text.split("\n").slice(-25).map((l) => `    ${l}`);
    return `--- ${this.name} terminal:\n${tail.join("\n")}`;
  }

  /**
   * Kill the command if it still runs, end the helper, close every stream;
   * idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await this.#send({ close: true });
        await this.#writer.close();
      } catch {
        // The helper is gone already.
      }
      const timer = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // Exited meanwhile.
        }
      }, 5000);
      await this.#child.status;
      clearTimeout(timer);
      await this.#pump;
      await this.#stderr;
    })();
    return this.#closed;
  }
}
