/**
 * `im`: a secure instant messenger for the terminal. This file only
 * dispatches a subcommand and turns every failure into one line:
 * `im: error: ...` and, where there is one, `im: hint: ...` (stderr); the
 * hint is the one that names the flag to use, where there is one
 * (`cmd/hints.ts`).
 * Every line it prints about an error goes through `sanitizeText`
 * (lib/ui/sanitize.ts): an error's message can carry text from the network
 * (a server's cleartext ERROR frame, before its key is checked), which must
 * not reach the terminal as escape sequences or start a line of its own.
 * Exit codes: 0 ok, 1 failure, 2 bad command line; `im chat` adds 3 (stdin
 * not a terminal: some line failed) and 128+N (ended by signal N).
 * @module
 */

import denoJson from "./deno.json" with { type: "json" };
import { isImError, UsageError } from "./lib/util/mod.ts";

/** The program's version, from deno.json. */
export const VERSION: string = denoJson.version;

const USAGE = `im ${VERSION}: a secure instant messenger for the terminal

Usage:
  im serve [--port 9876] [--keys keys]     run the server (provisions keys on first run)
  im chat --user A [--server host:port]     log in and chat
  im keygen [--users A,B] [--bits 3072]     make and enroll keys
  im demo                                   a scripted conversation on loopback

Run "im <command> --help" for the options of a command; "im --version".
`;

/** A subcommand: how to run it (it prints its own usage). */
interface Command {
  run: (args: string[]) => Promise<number>;
}

/**
 * The subcommands, each loaded when it is run: `im --version` and
 * `im --help` load none of them, and a command loads only its own code
 * (issue 15: program start). NATS is loaded later still, by `im serve`
 * with `--cluster` alone.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => {
    const m = await import("./cmd/serve.ts");
    return { run: m.runServe };
  },
  chat: async () => {
    const m = await import("./cmd/chat.ts");
    return { run: m.runChat };
  },
  keygen: async () => {
    const m = await import("./cmd/keygen.ts");
    return { run: m.runKeygen };
  },
  demo: async () => {
    const m = await import("./cmd/demo.ts");
    return { run: m.runDemo };
  },
};

/**
 * Print an error as the CLI's one line plus an optional hint, each made safe
 * for a terminal first: no control or escape sequence, no line break, so
 * neither can forge an `im: hint:` line of its own.
 * @param message the error's message (may hold text from the network)
 * @param hint what to do about it, if anything
 */
async function printError(message: string, hint?: string): Promise<void> {
  const { sanitizeText } = await import("./lib/ui/sanitize.ts");
  console.error(`im: error: ${sanitizeText(message)}`);
  if (hint) console.error(`im: hint: ${sanitizeText(hint)}`);
}

/**
 * Run the program.
 * @param args command-line arguments
 * @returns the exit code
 */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === "--help" || name === "-h" || name === "help") {
    console.log(USAGE.trimEnd());
    return 0;
  }
  if (name === "--version" || name === "-V") {
    console.log(`im ${VERSION}`);
    return 0;
  }
  try {
    const load = name === undefined ? undefined : COMMANDS[name];
    if (!load) {
      // `im --frob`: a flag where the command goes is an unknown flag, not
      // an unknown command (issue 11 item 10).
      const flag = name !== undefined && name.startsWith("-");
      throw new UsageError(
        flag ? "bad-flag" : "bad-command",
        name === undefined
          ? "Missing command"
          : flag
          ? `Unknown flag "${name.slice(0, 40)}"`
          : `Unknown command "${name.slice(0, 40)}"`,
        flag
          ? 'run "im --help"; before a command im takes only --help and --version'
          : 'run "im --help"; commands: serve, chat, keygen, demo',
      );
    }
    return await (await load()).run(rest);
  } catch (e) {
    // Loaded only on the way out with an error, as the commands are.
    const { cliHint, DENO_PERMISSION_HINT } = await import("./cmd/hints.ts");
    const { sanitizeText } = await import("./lib/ui/sanitize.ts");
    if (isImError(e)) {
      await printError(e.message, cliHint(e));
      return e instanceof UsageError ? 2 : 1;
    }
    if (
      e instanceof Deno.errors.NotCapable ||
      e instanceof Deno.errors.PermissionDenied
    ) {
      await printError((e as Error).message, DENO_PERMISSION_HINT);
      return 1;
    }
    await printError(`internal error: ${(e as Error)?.message ?? String(e)}`);
    if (Deno.env.get("IM_DEBUG")) {
      // The stack repeats the message: sanitised line by line too.
      const stack = (e as Error)?.stack ?? String(e);
      for (const line of stack.split("\n")) console.error(sanitizeText(line));
    }
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
