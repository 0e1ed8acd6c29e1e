/**
 * What a user waits for at the start (issue 15), measured from outside as
 * a user sees it: a fresh process each time, timed from its spawn to the
 * line it prints.
 *
 * - `im --version`: spawn to exit, beside the same run's floor, a bare
 *   `deno run` of an empty file (the runtime's own start);
 * - a login: `im chat --user A --json` spawned to its `Logged in` line,
 *   against an `im serve` in a process of its own (2048-bit keys made in
 *   a temporary key directory), beside `im --version` (what the process
 *   start costs before any login work).
 *
 * @example
 * ```ts ignore
 * import { benchStart } from "./start.ts";
 * await benchStart({ quick: true, report });
 * ```
 * @module
 */

import { join } from "node:path";
import { provision } from "../lib/keystore/mod.ts";
import { percentile, type Report } from "./_stats.ts";

/** Options of {@link benchStart}. */
export interface StartBenchOptions {
  quick: boolean;
  report: Report;
}

const SECTION = "start";
const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** Issue 15's targets. */
const TARGET = { versionMs: 100, loginMs: 10 };

/** Run a process to its end; its wall time in ms. */
async function timed(args: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  const ms = performance.now() - t0;
  if (!out.success) {
    throw new Error(`bench start: ${args.join(" ")} exited ${out.code}`);
  }
  return ms;
}

/**
 * The first line of `stream` that `re` matches; the stream is read to its
 * end all the same (in the background), so the process never writes into
 * a closed pipe.
 */
function lineOf(
  stream: ReadableStream<Uint8Array>,
  re: RegExp,
): { match: Promise<RegExpMatchArray>; done: Promise<void> } {
  const found = Promise.withResolvers<RegExpMatchArray>();
  const done = (async () => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const m = buf.slice(0, i).match(re);
        if (m) found.resolve(m);
        buf = buf.slice(i + 1);
      }
    }
    found.reject(new Error(`bench start: no line matching ${re}`));
  })();
  return { match: found.promise, done };
}

/**
 * The `start` section.
 * @param opts mode and report
 */
export async function benchStart(opts: StartBenchOptions): Promise<void> {
  const { report, quick } = opts;
  const n = quick ? 10 : 30;
  const dir = await Deno.makeTempDir({ prefix: "im-bench-start-" });
  try {
    const empty = join(dir, "empty.ts");
    await Deno.writeTextFile(empty, "");
    // Warm the module cache once: a user's second start, not the first.
    await timed(["run", empty]);
    await timed(["run", "--allow-read", "--allow-env", MAIN, "--version"]);
    const bare: number[] = [], version: number[] = [];
    for (let i = 0; i < n; i++) {
      bare.push(await timed(["run", empty]));
      version.push(
        await timed(["run", "--allow-read", "--allow-env", MAIN, "--version"]),
      );
    }
    const versionP50 = percentile(version, 50);
    report.add(SECTION, "`im --version` as a process p50", versionP50, "ms", {
      limit: percentile(bare, 50),
      limitSource: "a bare `deno run` of an empty file, this run",
      note: `${n} runs, spawn to exit; target < ${TARGET.versionMs} ms`,
    });
    report.judge({
      target:
        `program start: \`im --version\` as a process < ${TARGET.versionMs} ms`,
      figure: `${versionP50.toFixed(0)} ms`,
      met: versionP50 < TARGET.versionMs,
      why:
        "main.ts loads a subcommand only when it runs it (`import()`), so `--version` loads main.ts, deno.json and lib/util alone",
    });

    const logins = await loginFromOutside(dir, quick ? 5 : 15);
    const loginP50 = percentile(logins, 50);
    report.add(
      SECTION,
      "`im chat` spawned to its Logged in line p50 (2048-bit)",
      loginP50,
      "ms",
      {
        limit: versionP50,
        limitSource: "`im --version` as a process, this run",
        note: `${logins.length} runs against \`im serve\` in its own process; ${
          (loginP50 - versionP50).toFixed(0)
        } ms beyond the process start (issue 15's target: < ${TARGET.loginMs} ms from TCP connect to the Logged in line)`,
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** `runs` fresh `im chat` processes logging in to one `im serve`. */
async function loginFromOutside(dir: string, runs: number): Promise<number[]> {
  const keys = join(dir, "keys");
  await provision(keys, { users: ["A"], bits: 2048 });
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "serve", "--keys", keys, "--port", "0"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let serverLog: Promise<void> = Promise.resolve();
  try {
    const log = lineOf(server.stderr, / listening addr=([\d.]+:\d+)/);
    serverLog = log.done;
    const m = await log.match;
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const chat = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          MAIN,
          "chat",
          "--user",
          "A",
          "--server",
          m[1]!,
          "--keys",
          keys,
          "--json",
          "--no-reconnect",
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
        env: { NO_COLOR: "1" },
      }).spawn();
      const out = lineOf(chat.stdout, /Logged in as A/);
      await out.match;
      times.push(performance.now() - t0);
      await chat.stdin.close();
      await chat.status;
      await out.done;
    }
    return times;
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await serverLog;
  }
}
