/**
 * `im demo`: flags -> {@link runDemoScript}.
 * @module
 */

import { parseFlags } from "./flags.ts";
import { runDemoScript } from "./demo_script.ts";

/** `im demo --help`. */
export const DEMO_USAGE = `Usage: im demo

Make throwaway keys (in memory), start a server and two clients on
loopback, run a short scripted conversation (host, session, messages both
ways, list, disconnect), and print the transcript beside a hex sample of
the bytes that crossed the wire. Nothing is written to disk.
`;

/**
 * Run `im demo`.
 * @param args arguments after `demo`
 * @returns exit code
 */
export async function runDemo(args: string[]): Promise<number> {
  const v = parseFlags(
    args,
    { help: { type: "boolean", short: "h" } },
    "im demo",
  );
  if (v.help) {
    console.log(DEMO_USAGE.trimEnd());
    return 0;
  }
  return await runDemoScript((line) => console.log(line));
}
