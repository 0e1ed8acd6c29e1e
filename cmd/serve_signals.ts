/**
 * {@link ServeSignals}: what signals do to `im serve`. The first SIGINT or
 * SIGTERM stops the server (repeats are logged and ignored); SIGHUP
 * re-reads the keys, unless the terminal it came from is gone, which stops
 * the server instead.
 * @module
 */

import type { Logger } from "../lib/util/mod.ts";

/** The signal listeners of one `im serve` run. */
export class ServeSignals {
  readonly #log: Logger;
  readonly #stopped = Promise.withResolvers<string>();
  #stopping: string | null = null;
  readonly #sigint: () => void;
  readonly #sigterm: () => void;
  readonly #sighup: () => void;

  /**
   * @param log where repeats are logged
   * @param hup `ready`: whether a reload can run now (the server started);
   *   `reload`: re-read the keys
   */
  constructor(
    log: Logger,
    hup: { ready: () => boolean; reload: () => void },
  ) {
    this.#log = log;
    // The first SIGINT or SIGTERM stops the server; the listeners stay until
    // the clients were told and the server closed. `deno task` forwards the
    // SIGINT a terminal's Ctrl-C already sent to the whole process group,
    // and `npx` adds its own (README's first command runs under both): with
    // the listeners gone, such a second SIGINT killed the server before it
    // told anyone (issue 11 item 3). Repeats are logged and ignored. They are
    // in place before the server listens: a signal right after "listening"
    // stops it cleanly too.
    const onStop = (sig: string) => () => {
      if (this.#stopping !== null) {
        this.#log("signal-ignored", { signal: sig, why: "already stopping" });
        return;
      }
      this.#stopping = sig;
      this.#stopped.resolve(sig);
    };
    this.#sigint = onStop("SIGINT");
    this.#sigterm = onStop("SIGTERM");
    // SIGHUP means "re-read the keys" (as for sshd). A terminal that closes
    // sends SIGHUP too; then the terminal is gone and writing to it fails, so
    // a server whose stderr was that terminal stops instead of lingering.
    this.#sighup = () => {
      if (this.#stopping !== null || !hup.ready()) return;
      if (Deno.stderr.isTerminal()) {
        try {
          Deno.stderr.writeSync(
            new TextEncoder().encode(
              "im serve: SIGHUP: re-reading the keys\n",
            ),
          );
        } catch {
          this.#stopping = "terminal closed";
          this.#stopped.resolve("terminal closed");
          return;
        }
      }
      hup.reload();
    };
  }

  /** The signal that stopped the server (or `terminal closed`). */
  get stopped(): Promise<string> {
    return this.#stopped.promise;
  }

  /** Add the listeners. */
  listen(): void {
    Deno.addSignalListener("SIGINT", this.#sigint);
    Deno.addSignalListener("SIGTERM", this.#sigterm);
    Deno.addSignalListener("SIGHUP", this.#sighup);
  }

  /** Remove the listeners (once the server closed). */
  close(): void {
    Deno.removeSignalListener("SIGINT", this.#sigint);
    Deno.removeSignalListener("SIGTERM", this.#sigterm);
    Deno.removeSignalListener("SIGHUP", this.#sighup);
  }
}
