/**
 * The subprocess harness of the end-to-end tests: real `im serve` and
 * `im chat` processes (`deno run --allow-all main.ts ...`) on 127.0.0.1,
 * driven through their stdin and read through their `--json` stdout.
 *
 * - {@link sharedKeys}: one key directory per test file, a copy of one
 *   provisioned once per test process with `im keygen --bits 2048` (server
 *   and users A-F); {@link copyKeys} makes a variant without generating
 *   anything.
 * - {@link withProcs}: runs a test body with a {@link Procs} that starts
 *   servers and clients and afterwards, pass or fail, stops every one of
 *   them (end of stdin, SIGTERM, SIGKILL as a last resort), awaits its exit
 *   status and closes every stream, so the sanitizers stay green even when
 *   the test fails; a process that does not stop cleanly fails the test.
 * - {@link ChatProc.waitFor}: waits for a JSON event matching a predicate.
 *
 * @example
 * ```ts ignore
 * const keys = await sharedKeys();
 * await withProcs(keys, async (p) => {
 *   const server = await p.server();
 *   const a = await p.chat(server, "A");
 *   const list = await a.list();
 * });
 * ```
 * @module
 */

import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { sleep } from "../../lib/util/mod.ts";
import { EXIT_SOME_FAILED } from "../../cmd/chat.ts";

/** Root of the project (where main.ts lives). */
export const ROOT: string = fileURLToPath(new URL("../../", import.meta.url));
/** Path of main.ts. */
export const MAIN: string = join(ROOT, "main.ts");

/** Heartbeat of every client the harness starts: a silent peer is dead after 3 of them. */
export const HEARTBEAT_MS = 200;
/**
 * Heartbeat of the servers: longer than the clients', so that a client
 * process starved of CPU for half a second on a loaded test machine is not
 * logged out (killed clients are noticed at once anyway: their socket closes).
 */
export const SERVER_HEARTBEAT_MS = 1000;
/** Default time a {@link ChatProc.waitFor} or start may take. */
export const WAIT_MS = 5000;
/**
 * How long a server may take to say `listening`: it says so once it can log
 * users in, after making its login decoys' keys (seconds on a busy machine).
 */
export const SERVER_START_WAIT_MS = 30_000;
/** Default time {@link ImProc.wait} gives a process to exit before SIGKILL. */
export const EXIT_WAIT_MS = 30_000;

const encoder = new TextEncoder();

/** One `--json` line of `im chat` (see `eventToJson` in lib/ui/format.ts). */
export interface ChatEvent {
  type:
    | "message"
    | "mail"
    | "receipt"
    | "system"
    | "error"
    | "list"
    | "session"
    | "room"
    | "rooms"
    | "raw";
  direction?: "in" | "out";
  from?: string;
  to?: string;
  text?: string;
  id?: string | null;
  status?: "delivered" | "undelivered" | "stored" | "expired";
  /** A receipt's kind: `session`, `mail` or `room`. */
  via?: "session" | "mail" | "room";
  /** A room's name: on a room message, receipt or `room` event. */
  room?: string | null;
  /** A `room` event's change. */
  change?: "created" | "added" | "removed" | "left";
  /** A mail's written time (ISO 8601). */
  written?: string | null;
  peer?: string;
  code?: string;
  users?: Array<{ name: string; state: string }>;
  state?: "started" | "ended" | "waiting";
  sas?: string | null;
  transport?: "direct" | "relay" | null;
  reason?: string | null;
  time?: string | null;
}

/** How a process ended. */
export interface ExitStatus {
  code: number;
  signal: Deno.Signal | null;
}

/** Every line a stream gave, with waiting for a line that matches. */
class LineReader {
  readonly lines: string[] = [];
  readonly done: Promise<void>;
  #ended = false;
  #waiters = new Set<() => void>();

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#pump(stream);
  }

  get ended(): boolean {
    return this.#ended;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of stream) {
        buf += decoder.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf("\n")) !== -1) {
          this.#push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      }
    } catch {
      // The stream was cancelled or failed: what was read is kept.
    }
    buf += decoder.decode();
    if (buf !== "") this.#push(buf);
    this.#ended = true;
    this.#wake();
  }

  #push(line: string): void {
    this.lines.push(line);
    this.onLine(line);
    this.#wake();
  }

  /** Called for each line as it arrives. */
  onLine: (line: string) => void = () => {};

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /**
   * Wait until `check` returns a value other than undefined, re-checked on
   * every new line and at the end of the stream.
   */
  async until<T>(
    check: () => T | undefined,
    timeoutMs: number,
    what: () => string,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0 || this.#ended) {
        throw new Error(
          `${
            this.#ended ? "stream ended" : `timed out after ${timeoutMs} ms`
          }` +
            ` waiting for ${what()}`,
        );
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#waiters.add(done);
      });
    }
  }
}

/** A running `im` subprocess with piped stdin, stdout and stderr. */
export class ImProc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly stdout: LineReader;
  readonly stderr: LineReader;
  readonly status: Promise<ExitStatus>;
  #writer: WritableStreamDefaultWriter<Uint8Array> | null;
  #exit: ExitStatus | null = null;

  /**
   * @param name for messages
   * @param args arguments after main.ts
   * @param env extra environment
   */
  constructor(name: string, args: string[], env: Record<string, string> = {}) {
    this.name = name;
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--quiet", MAIN, ...args],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...env },
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.stdout = new LineReader(this.child.stdout);
    this.stderr = new LineReader(this.child.stderr);
    this.status = this.child.status.then((s) => {
      this.#exit = { code: s.code, signal: s.signal };
      return this.#exit;
    });
  }

  /** The exit status, once the process has ended. */
  get exited(): ExitStatus | null {
    return this.#exit;
  }

  /** The pid, for signals. */
  get pid(): number {
    return this.child.pid;
  }

  /**
   * Write raw bytes (or text) to stdin; a broken pipe is ignored (the
   * process is gone, which the test will notice by other means).
   * @param data what to write
   */
  async write(data: string | Uint8Array): Promise<void> {
    if (!this.#writer) throw new Error(`${this.name}: stdin is closed`);
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    try {
      await this.#writer.write(bytes);
    } catch {
      // EPIPE: the process has exited.
    }
  }

  /**
   * Send lines to stdin, each ended with a newline, in one write.
   * @param lines the lines
   */
  send(...lines: string[]): Promise<void> {
    return this.write(lines.map((l) => `${l}\n`).join(""));
  }

  /** Close stdin (end of input); idempotent. */
  async closeStdin(): Promise<void> {
    const w = this.#writer;
    if (!w) return;
    this.#writer = null;
    try {
      await w.close();
    } catch {
      try {
        await w.abort();
      } catch {
        // Already errored: the resource is released either way.
      }
    }
  }

  /**
   * Send a signal; ignored when the process has already ended.
   * @param signal e.g. SIGTERM, SIGKILL, SIGHUP
   */
  signal(signal: Deno.Signal): void {
    if (this.#exit) return;
    try {
      this.child.kill(signal);
    } catch {
      // Exited meanwhile.
    }
  }

  /**
   * Wait for the process to exit and both output streams to end. The
   * default is generous: a script's whole life (start, login, its lines,
   * logout) runs inside it, and a loaded machine (two suites on two cores)
   * can take seconds just to start a process; a passing test never waits
   * for it.
   * @param timeoutMs then SIGKILL
   * @returns the exit status
   */
  async wait(timeoutMs = EXIT_WAIT_MS): Promise<ExitStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.signal("SIGKILL");
        resolve();
      }, timeoutMs);
    });
    const status = await Promise.race([
      this.status,
      killed.then(() => this.status),
    ]);
    clearTimeout(timer);
    await this.closeStdin();
    await Promise.all([this.stdout.done, this.stderr.done]);
    return status;
  }

  /**
   * SIGKILL and wait.
   * @returns the exit status
   */
  kill(): Promise<ExitStatus> {
    this.signal("SIGKILL");
    return this.wait();
  }

  /**
   * The last lines of stdout and stderr, for failure messages.
   * @returns the text
   */
  dump(): string {
    const tail = (l: string[]) =>
      l.slice(-15).map((x) => `    ${x}`).join("\n");
    return `--- ${this.name} stdout:\n${
      tail(this.stdout.lines)
    }\n--- ${this.name} stderr:\n${tail(this.stderr.lines)}`;
  }
}

/** A running `im serve`. */
export class ServerProc extends ImProc {
  port = 0;
  readonly keys: string;

  /**
   * @param keys key directory
   * @param args extra flags
   */
  constructor(keys: string, args: string[]) {
    super("server", ["serve", "--keys", keys, ...args]);
    this.keys = keys;
  }

  /**
   * Wait for `listening addr=127.0.0.1:PORT` on stderr and note the port.
   * @param timeoutMs how long
   * @returns this server
   * @throws {Error} when the server exits or is not listening in time
   */
  async ready(timeoutMs = SERVER_START_WAIT_MS): Promise<this> {
    this.port = await this.stderr.until(
      () => {
        for (const l of this.stderr.lines) {
          const m = / listening addr=127\.0\.0\.1:(\d+)/.exec(l);
          if (m) return Number(m[1]);
        }
        return undefined;
      },
      timeoutMs,
      () => `the server's "listening" line\n${this.dump()}`,
    );
    return this;
  }

  /** `127.0.0.1:PORT`. */
  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  /**
   * Wait for a log line on stderr that matches.
   * @param re the pattern
   * @param timeoutMs how long
   * @returns the line
   */
  waitForLog(re: RegExp, timeoutMs = WAIT_MS): Promise<string> {
    return this.stderr.until(
      () => this.stderr.lines.find((l) => re.test(l)),
      timeoutMs,
      () => `server log ${re}\n${this.dump()}`,
    );
  }
}

/** A running `im chat --json`. */
export class ChatProc extends ImProc {
  readonly user: string;
  /** Every JSON event printed so far; lines that are not JSON are `raw`. */
  readonly events: ChatEvent[] = [];

  /**
   * @param user the username
   * @param args all flags after `chat`
   */
  constructor(user: string, args: string[]) {
    super(`chat ${user}`, ["chat", ...args]);
    this.user = user;
    this.stdout.onLine = (line) => {
      let ev: ChatEvent;
      try {
        ev = JSON.parse(line);
      } catch {
        ev = { type: "raw", text: line };
      }
      this.events.push(ev);
    };
  }

  /**
   * Wait for an event at index `since` or later that matches.
   * @param pred the match
   * @param timeoutMs how long
   * @param since index into {@link events} to start from (default 0)
   * @returns the event
   */
  waitFor(
    pred: (ev: ChatEvent) => boolean,
    timeoutMs = WAIT_MS,
    since = 0,
  ): Promise<ChatEvent> {
    return this.stdout.until(
      () => this.events.slice(since).find(pred),
      timeoutMs,
      () => `an event of ${this.name} matching ${pred}\n${this.dump()}`,
    );
  }

  /**
   * Wait until `n` events match, from `since` on.
   * @param pred the match
   * @param n how many
   * @param timeoutMs how long
   * @param since index into {@link events} to start from (default 0)
   * @returns the matching events
   */
  waitForCount(
    pred: (ev: ChatEvent) => boolean,
    n: number,
    timeoutMs = WAIT_MS,
    since = 0,
  ): Promise<ChatEvent[]> {
    return this.stdout.until(
      () => {
        const hits = this.events.slice(since).filter(pred);
        return hits.length >= n ? hits : undefined;
      },
      timeoutMs,
      () => `${n} events of ${this.name} matching ${pred}\n${this.dump()}`,
    );
  }

  /**
   * Wait for the `Logged in as` line.
   * @param timeoutMs how long
   * @returns this client
   * @throws {Error} when the client exits or is not logged in in time
   */
  async ready(timeoutMs = WAIT_MS): Promise<this> {
    await this.waitFor(
      (e) => e.type === "system" && /^Logged in as /.test(e.text ?? ""),
      timeoutMs,
    );
    return this;
  }

  /**
   * Send `!list` and return the next list.
   * @param timeoutMs how long
   * @returns name -> state
   */
  async list(timeoutMs = WAIT_MS): Promise<Record<string, string>> {
    const since = this.events.length;
    await this.send("!list");
    const ev = await this.waitFor((e) => e.type === "list", timeoutMs, since);
    return Object.fromEntries((ev.users ?? []).map((u) => [u.name, u.state]));
  }

  /**
   * Send `!list` until `pred` holds for the answer (states change a few
   * milliseconds after the events the test waits for).
   * @param pred what the list must satisfy
   * @param timeoutMs how long
   * @returns the list that matched
   */
  async listUntil(
    pred: (users: Record<string, string>) => boolean,
    timeoutMs = WAIT_MS,
  ): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string> = {};
    while (Date.now() < deadline) {
      last = await this.list(Math.max(1, deadline - Date.now()));
      if (pred(last)) return last;
      await sleep(50);
    }
    throw new Error(
      `${this.name}: !list never matched ${pred}; last ${
        JSON.stringify(last)
      }\n${this.dump()}`,
    );
  }

  /**
   * Events of one type.
   * @param type the type
   * @param since index into {@link events} to start from (default 0)
   * @returns those events
   */
  ofType(type: ChatEvent["type"], since = 0): ChatEvent[] {
    return this.events.slice(since).filter((e) => e.type === type);
  }
}

/**
 * Run `im ARGS` to the end (stdin closed at once) and collect its output.
 * @param args arguments after main.ts
 * @param timeoutMs then SIGKILL
 * @returns exit code and lines
 */
export async function runIm(
  args: string[],
  timeoutMs = 60_000,
): Promise<
  {
    code: number;
    signal: Deno.Signal | null;
    stdout: string[];
    stderr: string[];
  }
> {
  const p = new ImProc(`im ${args[0] ?? ""}`, args);
  await p.closeStdin();
  const s = await p.wait(timeoutMs);
  return {
    code: s.code,
    signal: s.signal,
    stdout: p.stdout.lines,
    stderr: p.stderr.lines,
  };
}

let shared: Promise<string> | undefined;

/**
 * The key directory of this test file: a copy of {@link processKeys}, so
 * what one file's processes write there (pins, mailboxes, rooms) never
 * meets another file's; removed when the test process ends.
 * @returns its path
 */
export function sharedKeys(): Promise<string> {
  shared ??= (async () => {
    const dir = await copyKeys(await processKeys());
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dirname(dir), { recursive: true });
      } catch {
        // Already gone.
      }
    });
    return dir;
  })();
  return shared;
}

/** Longest a test file waits for another to provision {@link processKeys}. */
const PROVISION_WAIT_MS = 180_000;

/**
 * `im keygen --bits 2048` for the server and users A-F, run once per test
 * process, not once per file: `deno test --parallel` runs every file in
 * one process (one `Deno.pid`), and seven 2048-bit keys cost about 1.6 s
 * of CPU each time. The first file to make `<tmp>/im-e2e-keys-<pid>`
 * provisions `keys` in it (written aside, then renamed into place); the
 * others wait for it. Each file registers itself in `users/` and the last
 * to leave removes the directory; a file that comes after that provisions
 * again.
 * @returns the path of the provisioned directory (never written to)
 */
async function processKeys(): Promise<string> {
  const base = join(
    Deno.env.get("TMPDIR") ?? "/tmp",
    `im-e2e-keys-${Deno.pid}`,
  );
  const keys = join(base, "keys");
  const me = join(base, "users", crypto.randomUUID());
  const deadline = Date.now() + PROVISION_WAIT_MS;
  for (;;) {
    let mine = false;
    try {
      await Deno.mkdir(base, { mode: 0o700 });
      mine = true;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    try {
      await Deno.mkdir(join(base, "users"), { recursive: true });
      await Deno.writeTextFile(me, "");
    } catch {
      continue; // removed by the last leaver meanwhile: start over
    }
    globalThis.addEventListener("unload", () => leaveProcessKeys(base, me));
    if (mine) {
      const aside = join(base, "keys.new");
      const r = await runIm(
        ["keygen", "--bits", "2048", "--dir", aside],
        120_000,
      );
      if (r.code !== 0) {
        await Deno.writeTextFile(join(base, "failed"), r.stderr.join("\n"));
        throw new Error(
          `keygen failed (exit ${r.code}, signal ${r.signal}): ${
            r.stderr.join("\n")
          }`,
        );
      }
      await Deno.rename(aside, keys);
      return keys;
    }
    while (Date.now() < deadline) {
      if (await exists(keys)) return keys;
      if (await exists(join(base, "failed"))) {
        throw new Error(
          `keygen failed in another test file: ${await Deno.readTextFile(
            join(base, "failed"),
          )}`,
        );
      }
      await sleep(50);
    }
    throw new Error(
      `no keys in ${keys} after ${PROVISION_WAIT_MS} ms: the test file provisioning them is stuck`,
    );
  }
}

/** Unregister `me`; the last file to leave removes `base`. */
function leaveProcessKeys(base: string, me: string): void {
  try {
    Deno.removeSync(me);
    if ([...Deno.readDirSync(join(base, "users"))].length === 0) {
      Deno.removeSync(base, { recursive: true });
    }
  } catch {
    // Already gone.
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Copy a key directory, modes included, into a fresh temporary directory.
 * Prefer {@link Procs.copyKeys}, which also removes it at the end.
 * @param src a provisioned directory
 * @returns the copy's path
 */
export async function copyKeys(src: string): Promise<string> {
  // `<tmp>/keys`, so the server's default data directory is `<tmp>/data`
  // and goes with the copy.
  const base = await Deno.makeTempDir({ prefix: "im-e2e-keys-" });
  const dst = join(base, "keys");
  await Deno.mkdir(dst, { mode: 0o700 });
  await copyTree(src, dst);
  await Deno.chmod(dst, (await Deno.stat(src)).mode! & 0o777);
  return dst;
}

async function copyTree(src: string, dst: string): Promise<void> {
  for await (const e of Deno.readDir(src)) {
    const s = join(src, e.name), d = join(dst, e.name);
    const info = await Deno.stat(s);
    if (e.isDirectory) {
      await Deno.mkdir(d, { mode: 0o700 });
      await Deno.chmod(d, info.mode! & 0o777);
      await copyTree(s, d);
    } else if (e.isFile) {
      await Deno.copyFile(s, d);
      await Deno.chmod(d, info.mode! & 0o777);
    }
  }
}

/** Options of {@link Procs.server}. */
export interface ServerStart {
  /** Port (default 0). */
  port?: number;
  /** Key directory (default the one given to {@link withProcs}). */
  keys?: string;
  /** More flags. */
  args?: string[];
}

/** Options of {@link Procs.chat}. */
export interface ChatStart {
  /** Key directory (default the one given to {@link withProcs}). */
  keys?: string;
  /** More flags (e.g. `--relay`). */
  args?: string[];
  /** Wait for the login line (default true). */
  ready?: boolean;
  /** Server address instead of the server's own (e.g. a proxy). */
  server?: string;
}

/**
 * Default flags, then `args`; a default whose flag `args` gives too is left
 * out, since a flag given twice is an error (issue 11 item 10).
 * @param defaults each flag with its value, if it takes one
 * @param args the test's own flags
 * @returns the command line
 */
function withDefaults(defaults: string[][], args: string[]): string[] {
  const given = new Set(args.map((a) => a.replace(/=.*$/, "")));
  return [...defaults.filter(([flag]) => !given.has(flag!)).flat(), ...args];
}

/** Starts processes and stops them all at the end of a test. */
export class Procs {
  readonly keys: string;
  readonly all: ImProc[] = [];
  readonly #cleanups: Array<() => Promise<void> | void> = [];

  /** @param keys the key directory every process uses unless told otherwise */
  constructor(keys: string) {
    this.keys = keys;
  }

  /**
   * Start `im serve --port 0 --heartbeat 1000` and wait until it listens.
   * @param o port, keys, more flags
   * @returns the server
   */
  async server(o: ServerStart = {}): Promise<ServerProc> {
    const s = new ServerProc(
      o.keys ?? this.keys,
      withDefaults([
        ["--port", String(o.port ?? 0)],
        ["--heartbeat", String(SERVER_HEARTBEAT_MS)],
        // Tests log in with wrong keys on purpose, all from 127.0.0.1; the
        // rate limit (rule 2.4) would slow the other logins of the file down.
        ["--auth-failures", "1000"],
      ], o.args ?? []),
    );
    this.all.push(s);
    return await s.ready();
  }

  /**
   * Start `im chat --user USER --json --heartbeat 200` against a server.
   * @param server the server (or use `o.server`)
   * @param user the username
   * @param o keys, flags, whether to wait for login
   * @returns the client
   */
  async chat(
    server: ServerProc | null,
    user: string,
    o: ChatStart = {},
  ): Promise<ChatProc> {
    const addr = o.server ?? server?.addr;
    if (addr === undefined) throw new Error("chat(): no server address");
    const c = new ChatProc(
      user,
      withDefaults([
        ["--user", user],
        ["--server", addr],
        ["--keys", o.keys ?? this.keys],
        ["--json"],
        ["--heartbeat", String(HEARTBEAT_MS)],
      ], o.args ?? []),
    );
    this.all.push(c);
    if (o.ready === false) return c;
    return await c.ready();
  }

  /**
   * Start several clients at once.
   * @param server the server
   * @param users their names
   * @param o keys, flags, whether to wait for login (for all of them)
   * @returns them, in order
   */
  chats(
    server: ServerProc,
    users: string[],
    o: ChatStart = {},
  ): Promise<ChatProc[]> {
    return Promise.all(users.map((u) => this.chat(server, u, o)));
  }

  /**
   * A copy of the test file's key directory, removed at the end of the test.
   * @returns its path
   */
  async copyKeys(): Promise<string> {
    const dir = await copyKeys(this.keys);
    this.#removals.push(dirname(dir)); // the keys and the data beside them
    return dir;
  }
  readonly #removals: string[] = [];

  /**
   * Run something at the end of the test (before processes are stopped).
   * @param f the cleanup
   */
  defer(f: () => Promise<void> | void): void {
    this.#cleanups.push(f);
  }

  /**
   * Stop everything: clients first (end of stdin), then servers (SIGTERM);
   * whatever does not exit within {@link STOP_MS} is killed.
   * @returns one line per process that did not stop cleanly: a client that
   *   needed SIGKILL or exited with another code than 0 or
   *   {@link EXIT_SOME_FAILED} after end of stdin, a server that
   *   needed SIGKILL or exited non-zero after SIGTERM
   */
  async stopAll(): Promise<string[]> {
    for (const f of this.#cleanups.reverse()) {
      try {
        await f();
      } catch {
        // Keep cleaning up.
      }
    }
    const problems: string[] = [];
    const stop = async (p: ImProc, how: () => Promise<void> | void) => {
      if (p.exited) {
        await p.wait(); // already ended: just close its streams
        return;
      }
      await how();
      const st = await p.wait(STOP_MS);
      // A script in which some line failed ends with EXIT_SOME_FAILED
      // (cmd/chat.ts): that is a clean stop too.
      const clean = st.code === 0 ||
        (!(p instanceof ServerProc) && st.code === EXIT_SOME_FAILED);
      if (st.signal !== null || !clean) {
        problems.push(
          `${p.name} did not stop cleanly: exit ${st.code}, signal ${st.signal}`,
        );
      }
    };
    const clients = this.all.filter((p) => !(p instanceof ServerProc));
    const servers = this.all.filter((p) => p instanceof ServerProc);
    await Promise.all(clients.map((c) => stop(c, () => c.closeStdin())));
    await Promise.all(servers.map((s) => stop(s, () => s.signal("SIGTERM"))));
    for (const d of this.#removals) {
      await Deno.remove(d, { recursive: true }).catch(() => {});
    }
    return problems;
  }
}

/** How long a process may take to exit at the end of a test. */
export const STOP_MS = 10_000;

/**
 * Run a test body with a {@link Procs}; every process is stopped and
 * awaited afterwards, whether the body passed or threw.
 * @param keys the key directory
 * @param body the test
 */
export async function withProcs(
  keys: string,
  body: (p: Procs) => Promise<void>,
): Promise<void> {
  const p = new Procs(keys);
  let failure: unknown;
  try {
    await body(p);
  } catch (e) {
    failure = e;
    // Attach the processes' output to the failure.
    if (e instanceof Error) {
      e.message += `\n${p.all.map((x) => x.dump()).join("\n")}`;
    }
  }
  // Every process is stopped and awaited, pass or fail; one that does not
  // stop cleanly fails a test that otherwise passed.
  const problems = await p.stopAll();
  if (failure !== undefined) throw failure;
  if (problems.length > 0) {
    throw new Error(
      `${problems.join("\n")}\n${p.all.map((x) => x.dump()).join("\n")}`,
    );
  }
}

/**
 * Does `hay` contain `needle`?
 * @param hay bytes to search
 * @param needle bytes to find
 * @returns true when found
 */
export function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return true;
  const first = needle[0];
  outer: for (
    let i = hay.indexOf(first!);
    i !== -1 && i + needle.length <= hay.length;
    i = hay.indexOf(first!, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}
