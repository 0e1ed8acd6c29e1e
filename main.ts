/**
 * `im`: a secure instant messenger for the terminal. This file only
 * dispatches a subcommand and turns every failure into one line:
 * `im: error: ...` and, where there is one, `im: hint: ...` (stderr); the
 * hint is the one that names the flag to use, where there is one
 * (`cmd/hints.ts`).
 * Exit codes: 0 ok, 1 failure, 2 bad command line.
 * @module
 */

import denoJson from "./deno.json" with { type: "json" };
import { CHAT_USAGE, runChat } from "./cmd/chat.ts";
import { DEMO_USAGE, runDemo } from "./cmd/demo.ts";
import { KEYGEN_USAGE, runKeygen } from "./cmd/keygen.ts";
import { runServe, SERVE_USAGE } from "./cmd/serve.ts";
import { cliHint, DENO_PERMISSION_HINT } from "./cmd/hints.ts";
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

const COMMANDS: Record<
  string,
  { run: (args: string[]) => Promise<number>; usage: string }
> = {
  serve: { run: runServe, usage: SERVE_USAGE },
  chat: { run: runChat, usage: CHAT_USAGE },
  keygen: { run: runKeygen, usage: KEYGEN_USAGE },
  demo: { run: runDemo, usage: DEMO_USAGE },
};

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
    const cmd = name === undefined ? undefined : COMMANDS[name];
    if (!cmd) {
      throw new UsageError(
        "bad-command",
        name === undefined
          ? "Missing command"
          : `Unknown command "${name.slice(0, 40)}"`,
        'run "im --help"; commands: serve, chat, keygen, demo',
      );
    }
    return await cmd.run(rest);
  } catch (e) {
    if (isImError(e)) {
      console.error(`im: error: ${e.message}`);
      const hint = cliHint(e);
      if (hint) console.error(`im: hint: ${hint}`);
      return e instanceof UsageError ? 2 : 1;
    }
    if (
      e instanceof Deno.errors.NotCapable ||
      e instanceof Deno.errors.PermissionDenied
    ) {
      console.error(`im: error: ${(e as Error).message}`);
      console.error(`im: hint: ${DENO_PERMISSION_HINT}`);
      return 1;
    }
    console.error(
      `im: error: internal error: ${(e as Error)?.message ?? String(e)}`,
    );
    if (Deno.env.get("IM_DEBUG")) console.error(e);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
