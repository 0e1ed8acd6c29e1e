/**
 * Fixtures of the benchmark: throwaway keys (generated in memory, never
 * written), the server subprocess ({@link ServerProcess}, driving
 * `bench/_server.ts`), and one measured login over real TCP
 * ({@link timedLogin}).
 *
 * Every benchmark user shares one key pair: the server's directory maps
 * `u0`, `u1`, ... to the same public key. The cost of a login does not
 * depend on which key signs, and 10,000 RSA key pairs would take minutes to
 * make.
 *
 * @example
 * ```ts ignore
 * import { makeKeys, ServerProcess, timedLogin } from "./_fixtures.ts";
 * const keys = await makeKeys(3072);
 * const server = await ServerProcess.spawn({ mode: "im", ...keys.pem, users: 100 });
 * const { ms, channel } = await timedLogin(keys, "u0", server.port);
 * ```
 * @module
 */

import type { SecureChannel } from "../lib/proto/mod.ts";
import { loginToServer } from "../lib/client/mod.ts";
import {
  generateRsaKeyPair,
  loadPrivateIdentity,
  loadPublicIdentity,
  type PrivateIdentity,
  type PublicIdentity,
} from "../lib/crypto/mod.ts";
import { cpuSeconds, mainThreadCpuSeconds } from "./_stats.ts";
import type { MemAnswer, ServerConfig } from "./_server.ts";

/** Keys of one benchmark deployment. */
export interface BenchKeys {
  bits: number;
  server: PrivateIdentity;
  /** The server key as clients pin it. */
  serverPinned: PublicIdentity;
  /** The key every benchmark user logs in with. */
  user: PrivateIdentity;
  userPublic: PublicIdentity;
  /** PEM text for the server subprocess. */
  pem: { serverPem: string; userPem: string };
}

/**
 * Make a server key pair and one user key pair of `bits` bits, in memory.
 * @param bits RSA modulus size
 * @returns the keys
 * @example
 * ```ts ignore
 * import { makeKeys } from "./_fixtures.ts";
 * const k = await makeKeys(2048);
 * ```
 */
export async function makeKeys(bits: number): Promise<BenchKeys> {
  const [s, u] = await Promise.all([
    generateRsaKeyPair(bits),
    generateRsaKeyPair(bits),
  ]);
  const [server, serverPinned, user, userPublic] = await Promise.all([
    loadPrivateIdentity(s.privatePem),
    loadPublicIdentity(s.publicPem),
    loadPrivateIdentity(u.privatePem),
    loadPublicIdentity(u.publicPem),
  ]);
  return {
    bits,
    server,
    serverPinned,
    user,
    userPublic,
    pem: { serverPem: s.privatePem, userPem: u.publicPem },
  };
}

/**
 * The benchmark's usernames: `u0` .. `u{n-1}`.
 * @param i index
 * @returns the name
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { userName } from "./_fixtures.ts";
 * assert.equal(userName(7), "u7");
 * ```
 */
export function userName(i: number): string {
  return `u${i}`;
}

/** A UI that shows nothing. */
export const silentUi = { print() {}, setPeer() {} };

/**
 * Log in over TCP and wait for the server's `welcome`: the time a user waits
 * from connecting to being told they are in.
 * @param keys the deployment
 * @param user the username
 * @param port the server's port on 127.0.0.1
 * @returns the time in ms and the logged-in channel (heartbeats off)
 * @throws whatever the login throws
 * @example
 * ```ts ignore
 * import { timedLogin } from "./_fixtures.ts";
 * const { ms, channel } = await timedLogin(keys, "u0", port);
 * await logout(channel);
 * ```
 */
export async function timedLogin(
  keys: BenchKeys,
  user: string,
  port: number,
): Promise<{ ms: number; channel: SecureChannel }> {
  const t0 = performance.now();
  const { channel } = await loginToServer({
    user,
    identity: keys.user,
    pinnedServer: keys.serverPinned,
    serverHost: "127.0.0.1",
    serverPort: port,
    ui: silentUi,
    heartbeatMs: 0,
  });
  const events = channel.events();
  const first = await events.next();
  const ms = performance.now() - t0;
  await events.return(undefined);
  if (first.done || first.value.kind !== "message") {
    channel.abort("bench");
    throw new Error(`Login of ${user} got no welcome`);
  }
  return { ms, channel };
}

/**
 * Say `bye` and close, as `!quit` does.
 * @param channel a logged-in channel
 * @returns when closed
 * @example
 * ```ts ignore
 * import { logout } from "./_fixtures.ts";
 * await logout(channel);
 * ```
 */
export async function logout(channel: SecureChannel): Promise<void> {
  await channel.send({ t: "bye" }).catch(() => {});
  await channel.close("logout");
}

/**
 * {@link jsonLines}, read at once into a queue: a child that writes more
 * than it is asked for (V8's `--trace-gc` through `IM_BENCH_V8_FLAGS`) never
 * blocks on a full pipe between two questions.
 * @param stream the child's stdout
 * @returns its answers, in order
 */
async function* drainedJsonLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<unknown> {
  const queue: ({ value: unknown } | { error: unknown } | { end: true })[] = [];
  let wake: (() => void) | undefined;
  const push = (item: typeof queue[number]) => {
    queue.push(item);
    wake?.();
  };
  const reading = (async () => {
    try {
      for await (const value of jsonLines(stream)) push({ value });
      push({ end: true });
    } catch (error) {
      push({ error });
    }
  })();
  try {
    for (;;) {
      while (queue.length === 0) {
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
      const item = queue.shift()!;
      if ("end" in item) return;
      if ("error" in item) throw item.error;
      yield item.value;
    }
  } finally {
    await reading;
  }
}

async function* jsonLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<unknown> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      // V8's own output (IM_BENCH_V8_FLAGS="... --trace-gc") is not an
      // answer, and may share the answer's line: it goes to stderr.
      const at = line.indexOf("{");
      if (at > 0) console.error(line.slice(0, at));
      else if (at < 0 && line.trim()) console.error(line);
      if (at >= 0) yield JSON.parse(line.slice(at));
    }
  }
}

/**
 * The V8 flags `im` runs with: the `--v8-flags=` of deno.json's `im` task
 * (README "Deploying"), so the bench runs its servers and `im` processes as
 * `deno task im` runs them. `IM_BENCH_V8_FLAGS` replaces them, separated by
 * spaces or commas; set it empty to measure V8's defaults.
 * @returns the flags, none when neither names any
 * @throws Error when deno.json has no `im` task
 */
export function imV8Flags(): string[] {
  const env = Deno.env.get("IM_BENCH_V8_FLAGS");
  if (env !== undefined) return env.split(/[\s,]+/).filter((f) => f !== "");
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
  ) as { tasks?: Record<string, string> };
  const task = config.tasks?.im;
  if (task === undefined) throw new Error("deno.json has no im task");
  const m = /--v8-flags=(\S+)/.exec(task);
  return m ? m[1]!.split(",") : [];
}

/**
 * `deno run`'s option for {@link imV8Flags}, to put before the script.
 * @param extra more V8 flags for this process (`--expose-gc`)
 * @returns `[--v8-flags=...]`, or nothing when there are no flags
 */
export function imV8Args(...extra: string[]): string[] {
  const flags = [...extra, ...imV8Flags()];
  return flags.length > 0 ? [`--v8-flags=${flags.join(",")}`] : [];
}

/**
 * Start `im serve` (main.ts) as `deno task im` runs it, on a free loopback
 * port, with the keys in `keys`; its log on piped stderr, without colour.
 * @param keys the key directory
 * @returns the child process
 */
export function spawnImServe(keys: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...imV8Args(),
      "-A",
      new URL("../main.ts", import.meta.url).pathname,
      "serve",
      "--keys",
      keys,
      "--port",
      "0",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
}

/** `bench/_server.ts` running as a child process. */
export class ServerProcess {
  readonly port: number;
  readonly pid: number;
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #answers: AsyncGenerator<unknown>;

  private constructor(
    child: Deno.ChildProcess,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    answers: AsyncGenerator<unknown>,
    port: number,
  ) {
    this.#child = child;
    this.#writer = writer;
    this.#answers = answers;
    this.port = port;
    this.pid = child.pid;
  }

  /**
   * Start `deno run --allow-net=127.0.0.1 bench/_server.ts` and configure it.
   * @param cfg what to serve
   * @param cpus run it on these CPUs only (`taskset -c`, e.g. `"0"`)
   * @returns the running server
   * @throws Error when the child does not answer with its port
   */
  static async spawn(cfg: ServerConfig, cpus?: string): Promise<ServerProcess> {
    const deno = [
      "deno",
      "run",
      "--allow-net=127.0.0.1",
      ...(cfg.cluster ? ["--allow-env"] : []),
      // The profiler (`profile`, IM_BENCH_PROFILE) connects to the inspector.
      ...(Deno.env.get("IM_BENCH_PROFILE") ? ["--allow-sys"] : []),
      ...(cfg.dataDir
        ? [`--allow-read=${cfg.dataDir}`, `--allow-write=${cfg.dataDir}`]
        : []),
      // The flags `im serve` runs with (deno.json's `im` task: the young
      // generation's cap, BENCHMARKS.md "Push mode and V8's young
      // generation"), and gc() for the memory figures.
      ...imV8Args("--expose-gc"),
      new URL("./_server.ts", import.meta.url).href,
    ];
    const argv = cpus === undefined ? deno : ["taskset", "-c", cpus, ...deno];
    const child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const writer = child.stdin.getWriter();
    const answers = drainedJsonLines(child.stdout);
    await writer.write(new TextEncoder().encode(JSON.stringify(cfg) + "\n"));
    const first = await answers.next();
    const port = (first.value as { port?: number } | undefined)?.port;
    if (first.done || typeof port !== "number") {
      throw new Error("bench/_server.ts did not start");
    }
    return new ServerProcess(child, writer, answers, port);
  }

  async #ask(cmd: string): Promise<unknown> {
    await this.#writer.write(new TextEncoder().encode(cmd + "\n"));
    const a = await this.#answers.next();
    if (a.done) throw new Error("bench/_server.ts exited");
    return a.value;
  }

  /**
   * Garbage-collect the server and read its memory.
   * @returns `Deno.memoryUsage()` of the server, its online count and log events
   */
  async mem(): Promise<MemAnswer> {
    return await this.#ask("mem") as MemAnswer;
  }

  /**
   * Profile the server's JavaScript for `ms`.
   * @param ms how long
   * @returns the functions that took the most CPU, self time
   */
  async profile(
    ms: number,
  ): Promise<{ totalMs: number; top: { fn: string; ms: number }[] }> {
    return await this.#ask(`profile ${ms}`) as {
      totalMs: number;
      top: { fn: string; ms: number }[];
    };
  }

  /** @returns CPU seconds the server used so far, all threads */
  cpu(): Promise<number> {
    return cpuSeconds(this.pid);
  }

  /** @returns CPU seconds the server's main (JavaScript) thread used so far */
  mainThreadCpu(): Promise<number> {
    return mainThreadCpuSeconds(this.pid);
  }

  /** Close the server and wait for the process to end. */
  async quit(): Promise<void> {
    try {
      await this.#ask("quit");
    } catch {
      // Exited already.
    }
    await this.#writer.close().catch(() => {});
    // Drain stdout so the child's pipe is released.
    for await (const _ of this.#answers) { /* nothing more */ }
    await this.#child.status;
  }
}
