/**
 * One line typed into `im chat` to the peer's screen, measured from outside
 * (issue 15): two `im chat --json` processes in a direct peer session, the
 * stdin of A piped, the stdout of B read, the clock in this bench process.
 *
 * - latency: one line written to A's stdin, timed to the line of B's
 *   stdout that shows it; the next line only after it (p50, p99);
 * - burst: many lines written to A's stdin at once, timed from the first
 *   write to B's line showing the last: lines per second;
 * - CPU time of each process per line of the burst (Linux: /proc), what
 *   the rate would be on two idle cores;
 * - the floor beside each: the same path through two Deno processes that
 *   only pass the bytes on (stdin to TCP, TCP to stdout).
 *
 * The server runs in a process of its own and only introduces A and B;
 * the session's records go straight from A to B.
 *
 * @example
 * ```ts ignore
 * import { benchTyped } from "./typed.ts";
 * await benchTyped({ quick: true, report });
 * ```
 * @module
 */

import { join } from "node:path";
import { provision } from "../lib/keystore/mod.ts";
import { cpuSeconds, percentile, type Report } from "./_stats.ts";
import { imV8Args, spawnImServe } from "./_fixtures.ts";

/** Options of {@link benchTyped}. */
export interface TypedBenchOptions {
  quick: boolean;
  report: Report;
}

const SECTION = "typed";
const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** Issue 15's targets. */
export const TYPED_TARGET = { p50Ms: 0.3, linesPerSec: 20_000 };
/** Longest wait for any one thing the bench expects. */
const WAIT_MS = 60_000;

const encoder = new TextEncoder();

/** A process's stdout as lines, with a wait for the next line that matches. */
class Lines {
  #lines: string[] = [];
  #seen = 0;
  #wake: (() => void) | null = null;
  #ended = false;
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let buf = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          this.#lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
        this.#poke();
      }
      this.#ended = true;
      this.#poke();
    })();
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /**
   * The first line after those already matched that `test` accepts, and
   * the time (performance.now()) it was read.
   */
  async next(
    test: (line: string) => boolean,
    what: string,
  ): Promise<{ at: number; line: string }> {
    const deadline = performance.now() + WAIT_MS;
    for (;;) {
      while (this.#seen < this.#lines.length) {
        const line = this.#lines[this.#seen++]!;
        if (test(line)) return { at: performance.now(), line };
      }
      if (this.#ended) throw new Error(`bench typed: ended before ${what}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`bench typed: no ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }
}

/** One `im chat` process, its stdin and its stdout's lines. */
interface Chat {
  proc: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  out: Lines;
}

function startChat(server: string, keys: string, user: string): Chat {
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...imV8Args(),
      "-A",
      MAIN,
      "chat",
      "--user",
      user,
      "--server",
      server,
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
  return { proc, stdin: proc.stdin.getWriter(), out: new Lines(proc.stdout) };
}

const has = (...parts: string[]) => (line: string) =>
  parts.every((p) => line.includes(p));

/**
 * The `typed` section.
 * @param opts mode and report
 */
export async function benchTyped(opts: TypedBenchOptions): Promise<void> {
  const { report, quick } = opts;
  const n = quick ? 200 : 1000;
  const burst = quick ? 5000 : 20_000;
  const dir = await Deno.makeTempDir({ prefix: "im-bench-typed-" });
  const keys = join(dir, "keys");
  await provision(keys, { users: ["A", "B"], bits: 2048 });
  const server = spawnImServe(keys);
  const serverLog = new Lines(server.stderr);
  const chats: Chat[] = [];
  try {
    let addr = "";
    const listening = await serverLog.next(
      has(" listening addr="),
      "the server's listening line",
    );
    addr = listening.line.match(/ listening addr=([\d.]+:\d+)/)?.[1] ?? "";
    const a = startChat(addr, keys, "A");
    const b = startChat(addr, keys, "B");
    chats.push(a, b);
    await a.out.next(has("Logged in as A"), "A's login");
    await b.out.next(has("Logged in as B"), "B's login");
    await a.stdin.write(encoder.encode("!session host\n"));
    await a.out.next(has('"Hosting '), "A hosting");
    await b.stdin.write(encoder.encode("!session A\n"));
    const started = await b.out.next(
      has('"session"', '"started"'),
      "B's session",
    );
    await a.out.next(has('"session"', '"started"'), "A's session");
    const transport = started.line.match(/"transport":"(\w+)"/)?.[1] ?? "?";

    // One line at a time: A's stdin to B's stdout.
    const lat: number[] = [];
    for (let i = 0; i < n; i++) {
      const text = `typed-${i}`;
      const t0 = performance.now();
      await a.stdin.write(encoder.encode(`${text}\n`));
      const { at: t1 } = await b.out.next(
        has(`"text":"${text}"`, '"direction":"in"'),
        `line ${i} at B`,
      );
      lat.push(t1 - t0);
    }
    // A burst: every line written at once.
    const lines = Array.from({ length: burst }, (_, i) => `burst-${i}\n`);
    const [cpuA0, cpuB0] = await Promise.all(
      [a, b].map((c) => cpuSeconds(c.proc.pid)),
    );
    const t0 = performance.now();
    await a.stdin.write(encoder.encode(lines.join("")));
    const { at: t1 } = await b.out.next(
      has(`"text":"burst-${burst - 1}"`, '"direction":"in"'),
      "the burst's last line at B",
    );
    const rate = burst / ((t1 - t0) / 1000);
    // A's work for the burst ends with the receipt of its last line.
    await a.out.next(
      has('"type":"receipt"', `"id":"${n + burst}"`),
      "the receipt of the burst's last line at A",
    );
    const [cpuA1, cpuB1] = await Promise.all(
      [a, b].map((c) => cpuSeconds(c.proc.pid)),
    );
    const usPerLine = (s: number) => s * 1e6 / burst;
    const cpuA = usPerLine(cpuA1! - cpuA0!), cpuB = usPerLine(cpuB1! - cpuB0!);
    const floor = await relayFloor(dir, n, burst);

    const p50 = percentile(lat, 50), p99 = percentile(lat, 99);
    const note = `${n} lines one at a time, ${transport} session, \`--json\``;
    report.add(SECTION, "typed line A stdin -> B stdout p50", p50, "ms", {
      limit: floor.p50,
      limitSource:
        "two Deno processes passing the bytes on, stdin to TCP to stdout",
      note: `${note}; target < ${TYPED_TARGET.p50Ms} ms`,
    });
    report.add(SECTION, "typed line A stdin -> B stdout p99", p99, "ms", {
      limit: floor.p99,
      limitSource: "the same two relaying processes",
      note,
    });
    report.add(SECTION, "typed lines/s in a burst", rate, "lines/s", {
      limit: floor.rate,
      limitSource: "the same two relaying processes",
      note:
        `${burst} lines in one write to A's stdin, to B's last line; target > ${
          TYPED_TARGET.linesPerSec.toLocaleString("en-US")
        }`,
    });
    report.add(
      SECTION,
      "typed line: A's CPU per line of the burst",
      cpuA,
      "us",
      {
        note:
          "utime + stime of A's process (/proc, 10 ms ticks) over the burst and its receipts, / lines: reading, sealing, sending, echoing, the receipt",
      },
    );
    report.add(
      SECTION,
      "typed line: B's CPU per line of the burst",
      cpuB,
      "us",
      {
        note:
          `B's process likewise: reading, opening, printing, acknowledging; on two idle cores the burst could reach 1e6 / max(A, B) = ${
            (1e6 / Math.max(cpuA, cpuB)).toFixed(0)
          } lines/s`,
      },
    );
    report.judge({
      target:
        `one line typed into \`im chat\` to the peer's screen < ${TYPED_TARGET.p50Ms} ms p50`,
      figure: `${p50.toFixed(2)} ms`,
      met: p50 < TYPED_TARGET.p50Ms,
      why:
        "see BENCHMARKS.md, issue 15: each line is read, sealed, written, read, opened, acknowledged and printed by two processes",
    });
    report.judge({
      target: `a burst of typed lines > ${
        TYPED_TARGET.linesPerSec.toLocaleString("en-US")
      } lines/s`,
      figure: `${rate.toFixed(0)} lines/s`,
      met: rate > TYPED_TARGET.linesPerSec,
      why: "see BENCHMARKS.md, issue 15",
    });
  } finally {
    for (const c of chats) {
      await c.stdin.close().catch(() => {});
    }
    for (const c of chats) {
      const t = setTimeout(() => {
        try {
          c.proc.kill("SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      await c.proc.status;
      clearTimeout(t);
      await c.out.done;
    }
    server.kill("SIGTERM");
    await server.status;
    await serverLog.done;
    await Deno.remove(dir, { recursive: true });
  }
}

/** The floor's receiving end: TCP in, stdout out, chunk by chunk. */
const RELAY_OUT = `
const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(String(l.addr.port));
const c = await l.accept();
c.setNoDelay(true);
const buf = new Uint8Array(65536);
for (;;) {
  const n = await c.read(buf);
  if (n === null) break;
  for (let o = 0; o < n;) o += Deno.stdout.writeSync(buf.subarray(o, n));
}
`;

/** The floor's sending end: stdin in, TCP out, chunk by chunk. */
const RELAY_IN = `
const c = await Deno.connect({ hostname: "127.0.0.1", port: Number(Deno.args[0]) });
c.setNoDelay(true);
const buf = new Uint8Array(65536);
for (;;) {
  const n = await Deno.stdin.read(buf);
  if (n === null) break;
  await c.write(buf.slice(0, n));
}
c.close();
`;

/**
 * The same measurement with \`im chat\` left out: two Deno processes that
 * only pass bytes on (stdin to TCP, TCP to stdout), the floor of a typed
 * line through two processes on this runtime and machine.
 */
async function relayFloor(
  dir: string,
  n: number,
  burst: number,
): Promise<{ p50: number; p99: number; rate: number }> {
  const inPath = join(dir, "relay_in.ts"), outPath = join(dir, "relay_out.ts");
  await Deno.writeTextFile(inPath, RELAY_IN);
  await Deno.writeTextFile(outPath, RELAY_OUT);
  const spawn = (path: string, args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net=127.0.0.1", path, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  const outP = spawn(outPath, []);
  const out = new Lines(outP.stdout);
  let inP: Deno.ChildProcess | undefined;
  let stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;
  let inOut: Lines | undefined;
  try {
    const port = (await out.next((l) => /^\d+$/.test(l), "relay port")).line;
    inP = spawn(inPath, [port]);
    const w = stdin = inP.stdin.getWriter();
    inOut = new Lines(inP.stdout);
    const lat: number[] = [];
    for (let i = 0; i < n; i++) {
      const text = `typed-${i}`;
      const t0 = performance.now();
      await w.write(encoder.encode(`${text}\n`));
      const { at } = await out.next((l) => l === text, `relayed line ${i}`);
      lat.push(at - t0);
    }
    const lines = Array.from({ length: burst }, (_, i) => `burst-${i}\n`);
    const t0 = performance.now();
    await w.write(encoder.encode(lines.join("")));
    const { at } = await out.next(
      (l) => l === `burst-${burst - 1}`,
      "the relayed burst's last line",
    );
    return {
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      rate: burst / ((at - t0) / 1000),
    };
  } finally {
    // The sender ends at the end of its stdin, the receiver when the
    // sender's connection closes; either is killed if it does not.
    await stdin?.close().catch(() => {});
    await outP.stdin.close().catch(() => {});
    for (const p of [inP, outP]) {
      if (!p) continue;
      const t = setTimeout(() => {
        try {
          p.kill("SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      await p.status;
      clearTimeout(t);
    }
    await out.done;
    await inOut?.done;
  }
}
