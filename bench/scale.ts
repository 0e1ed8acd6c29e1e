/**
 * Scale: how many idle logged-in clients one server holds, the server's
 * memory per connection, the time to log them all in, and the `!list` round
 * trip with 1,000 clients online. The server runs in its own process
 * (`bench/_server.ts`) so its memory is its own; the clients are real
 * {@link ChatClient}s in this process, answering heartbeats.
 *
 * The floor for memory is the same count of plain TCP connections held by a
 * bare Deno server, one pending read each (`bench/_server.ts` in `bare`
 * mode), measured in the same run.
 *
 * @example
 * ```ts ignore
 * import { benchScale } from "./scale.ts";
 * await benchScale({ quick: true, report, limits, keys, clients: 1000 });
 * ```
 * @module
 */

import { ChatClient, type UiEvent } from "../lib/client/mod.ts";
import { READ_BUFFER_BYTES } from "../lib/wire/mod.ts";
import {
  DEFAULT_HEARTBEAT_MS,
  IDLE_AFTER_MS,
  IDLE_HEARTBEAT_MS,
} from "../lib/record/mod.ts";
import { sleep } from "../lib/util/mod.ts";
import { generateRsaKeyPair, loadPrivateIdentity } from "../lib/crypto/mod.ts";
import type { ClientsConfig, ClientsReport } from "./_clients.ts";
import {
  type BenchKeys,
  imV8Flags,
  ServerProcess,
  silentUi,
  userName,
} from "./_fixtures.ts";
import { percentile, type Report } from "./_stats.ts";
import type { Limits } from "./limits.ts";

/** Options of {@link benchScale}. */
export interface ScaleBenchOptions {
  quick: boolean;
  report: Report;
  limits: Limits;
  keys: BenchKeys;
  /** Idle clients to log in. */
  clients: number;
  /** Measure the `!list` round trip when this many are online. */
  listAt: number;
  /** Stop logging in after this long and report how many made it (ms). */
  budgetMs: number;
}

/** What the targets need from this section. */
export interface ScaleFigures {
  /** Clients asked for. */
  requested: number;
  /** Clients logged in and still online at the end. */
  online: number;
  /** Server memory per connection, KiB (RSS). */
  kibPerConn: number;
  /** Seconds to log them all in. */
  loginSecs: number;
  /** `!list` p50 at {@link ScaleBenchOptions.listAt}, ms. */
  listP50Ms: number;
}

const KIB = 1024;
/** Logins under way at once. */
const LOGINS_AT_ONCE = 16;
/** How long a bench client waits for its login (the default is 10 s). */
const LOGIN_WAIT_MS = 30_000;
/**
 * Clients past the `!list` mark run in processes of their own
 * (`bench/_clients.ts`), this many to a process: one process holding
 * 10,000 stalls for seconds in garbage collection and misses heartbeats.
 */
const CLIENTS_PER_PROCESS = 2500;

/** SPKI DER as PEM text. */
function spkiPem(der: Uint8Array): string {
  const b64 = der.toBase64();
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN PUBLIC KEY-----\n${
    lines.join("\n")
  }\n-----END PUBLIC KEY-----\n`;
}

/** A `bench/_clients.ts` process logging in and holding its share of users. */
class ClientsProcess {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Resolves with its report once its logins are done. */
  readonly done: Promise<ClientsReport>;

  constructor(cfg: ClientsConfig) {
    this.#child = new Deno.Command("deno", {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        new URL("./_clients.ts", import.meta.url).href,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    const lines = this.#child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    this.done = (async () => {
      let buf = "";
      for (;;) {
        const i = buf.indexOf("\n");
        if (i >= 0) return JSON.parse(buf.slice(0, i)) as ClientsReport;
        const r = await lines.read();
        if (r.done) {
          return { online: 0, failed: cfg.count, firstError: "exited" };
        }
        buf += r.value;
      }
    })().finally(() => lines.cancel().catch(() => {}));
    this.#writer.write(new TextEncoder().encode(JSON.stringify(cfg) + "\n"));
  }

  /** Log its users out and wait for the process to end. */
  async quit(): Promise<void> {
    await this.done.catch(() => {});
    await this.#writer.write(new TextEncoder().encode("quit\n")).catch(
      () => {},
    );
    await this.#writer.close().catch(() => {});
    await this.#child.status;
  }
}

/** The floor: `n` plain TCP connections held by a bare Deno server, one pending read of `readBufBytes` each. */
async function bareFloor(n: number, readBufBytes: number): Promise<number> {
  const server = await ServerProcess.spawn({ mode: "bare", readBufBytes });
  try {
    const before = await server.mem();
    const conns: Deno.TcpConn[] = [];
    for (let i = 0; i < n; i++) {
      conns.push(
        await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      );
    }
    let after = await server.mem();
    for (let i = 0; i < 50 && after.online < n; i++) {
      await sleep(100);
      after = await server.mem();
    }
    for (const c of conns) c.close();
    return (after.rss - before.rss) / after.online;
  } finally {
    await server.quit();
  }
}

/** A client whose UI lets us wait for its next `!list` answer. */
interface Watched {
  client: ChatClient;
  /** Resolves with the number of users listed, or -1 on an error event. */
  nextList: () => Promise<number>;
  /** The text of the last error event, if any. */
  lastError: () => string;
}

async function startWatched(
  keys: BenchKeys,
  user: string,
  port: number,
): Promise<Watched> {
  let waiter: ((users: number) => void) | undefined;
  let lastError = "";
  const client = await ChatClient.start({
    user,
    identity: keys.user,
    pinnedServer: keys.serverPinned,
    serverHost: "127.0.0.1",
    serverPort: port,
    reconnect: false,
    loginTimeoutMs: LOGIN_WAIT_MS,
    ui: {
      print(ev: UiEvent) {
        if (ev.kind === "list") waiter?.(ev.users.length);
        if (ev.kind === "error") {
          lastError = `${ev.code}: ${ev.text}`;
          waiter?.(-1);
        }
      },
      setPeer() {},
    },
  });
  return {
    client,
    nextList: () => new Promise<number>((r) => (waiter = r)),
    lastError: () => lastError,
  };
}

/**
 * `!list`s one user may send at once: under the server's bucket of 10
 * (PROTOCOL.md 5.2, refilled at one a second), so no answer is
 * `rate-limited`.
 */
const LISTS_PER_USER = 8;

/**
 * Round trips of `!list`, typed line to printed list, from the watching
 * clients in turn ({@link LISTS_PER_USER} each at most).
 */
async function listRtts(
  watchers: Watched[],
  n: number,
): Promise<{ ms: number[]; users: number; error: string }> {
  const ms: number[] = [];
  let users = 0;
  n = Math.min(n, watchers.length * LISTS_PER_USER);
  for (let i = 0; i < n; i++) {
    const w = watchers[i % watchers.length]!;
    const answer = w.nextList();
    const t0 = performance.now();
    await w.client.handleLine("!list");
    users = await Promise.race([answer, sleep(5000).then(() => -2)]);
    if (users < 0) {
      return {
        ms,
        users,
        error: users === -1 ? w.lastError() : "no answer within 5 s",
      };
    }
    ms.push(performance.now() - t0);
  }
  return { ms, users, error: "" };
}

/**
 * Run the scale section.
 * @param opts quick mode, report, limits, keys and counts
 * @returns the figures the targets need
 * @example
 * ```ts ignore
 * import { benchScale } from "./scale.ts";
 * const f = await benchScale({ quick: true, report, limits, keys, clients: 1000, listAt: 1000, budgetMs: 30_000 });
 * ```
 */
export async function benchScale(
  opts: ScaleBenchOptions,
): Promise<ScaleFigures> {
  const { report, limits, keys, quick } = opts;
  const sec = "scale";
  const n = opts.clients;
  const ossl = limits.openssl;

  const floorBytes = await bareFloor(n, 1024);
  report.add(
    sec,
    "bare tcp server memory per connection",
    floorBytes / KIB,
    "KiB",
    {
      note: `${n} connections, one pending 1 KiB read each, RSS after GC`,
    },
  );
  const withBuf = await bareFloor(n, READ_BUFFER_BYTES);
  report.add(
    sec,
    `bare tcp server memory per connection, ${
      READ_BUFFER_BYTES / KIB
    } KiB reads`,
    withBuf / KIB,
    "KiB",
    { note: "the read buffer size of lib/wire/tcp.ts" },
  );

  // A user key of our own, so the client processes can be given it as PEM.
  const userPair = await generateRsaKeyPair(keys.bits);
  const userKey = await loadPrivateIdentity(userPair.privatePem, "user key");
  const ourKeys: BenchKeys = { ...keys, user: userKey };
  // The mailboxes, prekeys and rooms in SQLite, as `im serve --data` keeps
  // them: the in-memory stores of the tests hold each user's 100 one-time
  // prekeys in the server's heap (about 28 KiB a user, measured 2026-12-03).
  const dataDir = await Deno.makeTempDir({ prefix: "im-bench-scale-" });
  const server = await ServerProcess.spawn({
    mode: "im",
    ...keys.pem,
    userPem: userPair.publicPem,
    users: n,
    dataDir,
  });
  const processes: ClientsProcess[] = [];
  let elsewhere = 0;
  const clients: ChatClient[] = [];
  // Enough users watching for the longest run of `!list`s.
  const watchers: Watched[] = [];
  const watching = Math.min(n, Math.ceil((quick ? 30 : 200) / LISTS_PER_USER));
  let listP50Ms = NaN;
  let online = 0;
  let kibPerConn = NaN;
  let loginSecs = NaN;
  try {
    const before = await server.mem();
    const selfBefore = Deno.memoryUsage().rss;
    // Log in with 16 at a time: under the server's cap of 64 unauthenticated
    // connections per address (all our clients come from 127.0.0.1), and few
    // enough that a login does not wait 10 s behind the others on a busy
    // machine (the server's login deadline, rule 1.2); a client that gave up
    // would leave its connection counted until that deadline, and the cap
    // then refuses the next ones.
    let next = 0, failures = 0, firstError = "";
    const start = performance.now();
    const deadline = start + opts.budgetMs;
    const loginOne = async (i: number) => {
      try {
        if (i < watching) {
          const w = await startWatched(ourKeys, userName(i), server.port);
          watchers.push(w);
          clients.push(w.client);
          return;
        }
        clients.push(
          await ChatClient.start({
            user: userName(i),
            identity: userKey,
            pinnedServer: keys.serverPinned,
            serverHost: "127.0.0.1",
            serverPort: server.port,
            ui: silentUi,
            reconnect: false,
            loginTimeoutMs: LOGIN_WAIT_MS,
          }),
        );
      } catch (e) {
        failures++;
        firstError ||= (e as Error).message;
      }
    };
    const ramp = (target: number) =>
      Promise.all(Array.from({ length: LOGINS_AT_ONCE }, async () => {
        while (next < target && performance.now() < deadline) {
          await loginOne(next++);
        }
      }));
    // Ramp to the `!list` mark, measure there, then go on.
    await ramp(Math.min(opts.listAt, n));
    const rampSecs = (performance.now() - start) / 1000;
    let pausedMs = 0;
    if (watchers.length > 0) {
      const t = performance.now();
      await sleep(200); // let the last joins settle
      const atMark = (await server.mem()).online;
      const r = await listRtts(watchers, quick ? 30 : 200);
      if (r.error) report.note(`!list at the mark: ${r.error}`);
      listP50Ms = percentile(r.ms, 50);
      // Floor: a bare round trip plus the reply's MD-CFB encryption and
      // decryption at OpenSSL's SHA-256 speed. The reply's size, estimated
      // as its JSON: the users listed, each `{"name":...,"state":"IDLE"}`.
      const replyBytes = new TextEncoder().encode(JSON.stringify({
        t: "users",
        users: Array.from(
          { length: r.users },
          (_, i) => ({ name: userName(i), state: "IDLE" }),
        ),
      })).length;
      const cipherMs = ossl
        ? 2 * replyBytes / (ossl.sha256BytesPerSec / 4) * 1000
        : NaN;
      report.add(sec, `!list rtt p50, ${atMark} online`, listP50Ms, "ms", {
        limit: ossl ? limits.echoRttP50Ms + cipherMs : undefined,
        limitSource:
          `tcp echo rtt + MD-CFB both ways of the ${replyBytes} B reply at openssl speed`,
        note:
          `${r.ms.length} round trips, ${r.users} users listed, server in a subprocess`,
      });
      report.add(
        sec,
        `!list rtt p99, ${atMark} online`,
        percentile(r.ms, 99),
        "ms",
      );
      pausedMs = performance.now() - t;
    }
    // The rest in processes of their own, LOGINS_AT_ONCE at a time in all.
    const rest = n - next;
    const count = Math.ceil(rest / CLIENTS_PER_PROCESS);
    for (let p = 0, from = next; p < count; p++) {
      const share = Math.min(CLIENTS_PER_PROCESS, n - from);
      processes.push(
        new ClientsProcess({
          port: server.port,
          userPem: userPair.privatePem,
          serverPublicPem: spkiPem(keys.server.publicDer),
          from,
          count: share,
          atOnce: Math.max(1, Math.round(LOGINS_AT_ONCE / count)),
          loginTimeoutMs: LOGIN_WAIT_MS,
          budgetMs: Math.max(0, deadline - performance.now()),
        }),
      );
      from += share;
    }
    for (const r of await Promise.all(processes.map((p) => p.done))) {
      elsewhere += r.online;
      failures += r.failed;
      firstError ||= r.firstError;
    }
    const loggedIn = clients.length + elsewhere;
    loginSecs = n > opts.listAt
      ? (performance.now() - start - pausedMs) / 1000
      : rampSecs;
    // Every channel idle (PROTOCOL.md section 4, "Heartbeats": no DATA for
    // IDLE_AFTER_MS, then one heartbeat each way per IDLE_HEARTBEAT_MS),
    // then the server's CPU over one idle interval (a sixth of one in quick
    // mode): the login ramp's aftermath, its garbage still being collected;
    // then over the next two (a sixth in quick mode), nothing forced: holding
    // them, the collections they cause included; then its memory.
    await sleep(IDLE_AFTER_MS + 3000);
    const cpuSecs = quick ? IDLE_HEARTBEAT_MS / 6000 : IDLE_HEARTBEAT_MS / 1000;
    const steadySecs = quick ? cpuSecs : 2 * cpuSecs;
    const cpu0 = await server.cpu();
    await sleep(cpuSecs * 1000);
    const cpu1 = await server.cpu();
    const rampCpu = (cpu1 - cpu0) / cpuSecs;
    await sleep(steadySecs * 1000);
    const idleCpu = (await server.cpu() - cpu1) / steadySecs;
    const after = await server.mem();
    online = after.online;
    if (Deno.env.get("IM_BENCH_PROFILE")) {
      // Where the idle server's CPU goes, after the figures (a profiler costs
      // CPU of its own): the functions with the most self time.
      const cpu2 = await server.cpu();
      const p = await server.profile(cpuSecs * 1000).catch((e) => {
        throw new Error(`IM_BENCH_PROFILE: ${(e as Error).message}`);
      });
      const profiledCpu = await server.cpu() - cpu2;
      console.error(
        `idle server profile over ${cpuSecs} s (${
          p.totalMs.toFixed(0)
        } ms sampled; the process used ${
          (profiledCpu * 1000).toFixed(0)
        } ms of CPU, all threads, profiler included):\n${
          p.top.map((r) => `  ${r.ms.toFixed(1).padStart(8)} ms  ${r.fn}`)
            .join("\n")
        }`,
      );
    }
    const rss = after.rss - before.rss;
    kibPerConn = rss / online / KIB;
    if (loggedIn < n) {
      report.note(
        `only ${loggedIn} of ${n} clients logged in within ${
          Math.round(opts.budgetMs / 1000)
        } s (${failures} failed${firstError ? `: ${firstError}` : ""})`,
      );
    }
    const perLoginLimit = ossl
      ? (3 * 1000 / (ossl.rsaPrivatePerSec[keys.bits] ?? NaN) +
        3 * 1000 / (ossl.rsaPublicPerSec[keys.bits] ?? NaN)) /
        1000 /
        limits.cores
      : NaN;
    report.add(sec, "idle clients online", online, "clients", {
      note:
        `${keys.bits}-bit keys, ${failures} failed logins, heartbeats every ${
          DEFAULT_HEARTBEAT_MS / 1000
        } s active, ${IDLE_HEARTBEAT_MS / 1000} s idle`,
    });
    report.add(
      sec,
      `time to log in ${loggedIn} clients`,
      loginSecs,
      "s",
      {
        limit: ossl ? loggedIn * perLoginLimit : undefined,
        limitSource:
          "openssl: 3 private + 3 public ops per login over all cores",
        note: `${
          Math.round(loggedIn / loginSecs)
        } logins/s, ${LOGINS_AT_ONCE} at a time, ${clients.length} in this process and ${elsewhere} in ${processes.length} of their own`,
      },
    );
    report.add(
      sec,
      `server cpu right after the logins, ${online} idle clients`,
      rampCpu * 100,
      "% of a core",
      {
        note: `over ${cpuSecs} s from ${
          (IDLE_AFTER_MS + 3000) / 1000
        } s after the last login: the login ramp's garbage still being collected`,
      },
    );
    report.add(
      sec,
      `server cpu holding ${online} idle clients`,
      idleCpu * 100,
      "% of a core",
      {
        note:
          `over the next ${steadySecs} s, nothing forced: a heartbeat record every ${
            IDLE_HEARTBEAT_MS / 1000
          } s each way per client, and the collections they cause`,
      },
    );
    report.add(sec, "server memory per connection", kibPerConn, "KiB", {
      limit: floorBytes / KIB,
      limitSource: "bare tcp server, same count",
      note: `RSS ${Math.round(before.rss / 1048576)} -> ${
        Math.round(after.rss / 1048576)
      } MiB after GC${
        imV8Flags().length > 0
          ? `; server and bare server run with ${imV8Flags().join(" ")}`
          : ""
      }`,
    });
    report.add(
      sec,
      "server js heap per connection",
      ((after.heapUsed + after.external) -
        (before.heapUsed + before.external)) /
        online / KIB,
      "KiB",
      { note: "heapUsed + external, after GC" },
    );
    // The parts of the RSS above (BENCHMARKS.md "Idle connections"): the
    // buffers outside the heap (read buffers, keys), and the heap V8 holds
    // beyond what is live; the rest is the runtime's sockets and the
    // allocator's slack.
    report.add(
      sec,
      "server external memory per connection",
      (after.external - before.external) / online / KIB,
      "KiB",
      { note: "ArrayBuffer contents: read buffers, keyed states, keys" },
    );
    report.add(
      sec,
      "server heap headroom per connection",
      ((after.heapTotal - after.heapUsed) -
        (before.heapTotal - before.heapUsed)) / online / KIB,
      "KiB",
      { note: "heapTotal - heapUsed, after GC" },
    );
    report.add(
      sec,
      "client process memory per client",
      (Deno.memoryUsage().rss - selfBefore) / Math.max(1, clients.length) / KIB,
      "KiB",
      {
        note:
          `the ${clients.length} in this process: ChatClient, channel, socket buffers`,
      },
    );
    // A heartbeat that dropped a healthy idle client shows as leave:timeout.
    const leaves = Object.entries(after.events).filter(([k]) =>
      k.startsWith("leave")
    );
    if (leaves.length > 0) {
      report.note(
        `server saw clients leave: ${
          leaves.map(([k, v]) => `${v} ${k}`).join(", ")
        }`,
      );
    }

    // `!list` with everyone online.
    if (watchers.length > 0 && online > opts.listAt) {
      const r = await listRtts(watchers, quick ? 10 : 50);
      const watcher = watchers[0]!;
      if (r.ms.length > 0) {
        report.add(
          sec,
          `!list rtt p50, ${online} online`,
          percentile(r.ms, 50),
          "ms",
          {
            limit: 1,
            limitSource: "issue 15: < 1 ms with 10,000 online",
            note:
              `${r.users} users listed (a page, PROTOCOL.md 5.3), ${r.ms.length} round trips`,
          },
        );
      } else {
        const fatal = watcher.client.fatal;
        report.note(
          `!list with ${online} online got no list: ${
            r.error || "no answer within 5 s"
          }${fatal ? `; the client was disconnected (${fatal.code})` : ""}`,
        );
      }
    }
  } finally {
    // Log everyone out, 500 at a time.
    for (let i = 0; i < clients.length; i += 500) {
      // quit() can throw when the server dropped the client meanwhile.
      await Promise.all(
        clients.slice(i, i + 500).map((c) => c.quit().catch(() => {})),
      );
    }
    await Promise.all(processes.map((p) => p.quit()));
    await server.quit();
    await Deno.remove(dataDir, { recursive: true });
  }
  return { requested: n, online, kibPerConn, loginSecs, listP50Ms };
}
