/**
 * Issue 15's server capacity: logins per second one `im serve` process
 * sustains with a 3072-bit server key, the server alone in its own process
 * (`bench/_server.ts`) and the clients in this one, in three set-ups of the
 * same server:
 *
 * - `one core`: the server process pinned to CPU 0 (`taskset -c 0`), signing
 *   on its main thread (`signWorkers: 0`): the one-core run of the target;
 * - `2 cores, no pool`: unpinned, signing on its main thread;
 * - `2 cores, pool`: unpinned, a `SignPool` of 2 workers (one per core).
 *
 * Three loads, by 32 clients at once: SERVER_HELLOs alone (a client sends
 * CLIENT_HELLO, reads the signed SERVER_HELLO and hangs up: the server's
 * private-key work of a login, for a client that costs next to nothing; the
 * server is told not to penalise the abandoned logins), then full logins
 * (connect, the whole handshake, `welcome`, `bye`) with 3072-bit user keys
 * and with 2048-bit ones (a cheaper client leaves more of the 2 shared cores
 * to the server). The set-ups run in turn, each round in the same order, so
 * a change of the machine's other load touches all of them; every run prints
 * its rate and the cores used by the server (and its main thread), by the
 * clients and by other processes; each set-up's server CPU per unit of work
 * and its RSS after the 3072-bit logins are figures too.
 *
 * @example
 * ```ts ignore
 * import { benchCapacity } from "./capacity.ts";
 * await benchCapacity({ quick: true, report, keys });
 * ```
 * @module
 */

import { randomBytes } from "../lib/util/mod.ts";
import { generateEphemeral } from "../lib/crypto/mod.ts";
import {
  encodeClientHello,
  NONCE_BYTES,
  PROTOCOL_VERSION,
} from "../lib/proto/mod.ts";
import { FrameKind, tcpNetwork } from "../lib/wire/mod.ts";
import {
  type BenchKeys,
  logout,
  ServerProcess,
  timedLogin,
  userName,
} from "./_fixtures.ts";
import { median, procText, type Report, selfCpuSeconds } from "./_stats.ts";

/** Options of {@link benchCapacity}. */
export interface CapacityOptions {
  quick: boolean;
  report: Report;
  /** Keys by modulus size; 2048 and 3072 are used. */
  keys: Map<number, BenchKeys>;
}

/** One set-up of the server. */
interface Setup {
  name: string;
  /** `taskset -c` CPUs, or unpinned. */
  cpus?: string;
  signWorkers: number;
}

const SETUPS: readonly Setup[] = [
  { name: "one core", cpus: "0", signWorkers: 0 },
  { name: "2 cores, no pool", signWorkers: 0 },
  { name: "2 cores, pool of 2", signWorkers: 2 },
];

/** One load: what each client does in a loop. */
interface Load {
  name: string;
  /** Users' key size (the server's is 3072). */
  userBits: number;
  /** One unit of work against the server at `port`; resolves when done. */
  once: (keys: BenchKeys, lane: number, port: number) => Promise<void>;
}

/** What one run measured. */
interface Run {
  rate: number;
  failures: number;
  serverCores: number;
  /** Of which the server's JavaScript main thread. */
  mainCores: number;
  clientCores: number;
  otherCores: number;
  /** The server's RSS after the run, after GC, MiB. */
  rssMiB: number;
}

/** Busy CPU seconds of the whole machine, from `/proc/stat`. */
async function machineCpu(): Promise<number> {
  const stat = await procText("/proc/stat");
  if (stat === null) return NaN;
  const f = stat.split("\n")[0]!.trim().split(/\s+/).map(Number);
  return (f[1]! + f[2]! + f[3]! + f[6]! + f[7]! + f[8]!) / 100;
}

/** A full login and logout, as the login section's clients do. */
async function fullLogin(
  keys: BenchKeys,
  lane: number,
  port: number,
): Promise<void> {
  const { channel } = await timedLogin(keys, userName(lane), port);
  await logout(channel);
}

/**
 * CLIENT_HELLO, then the signed SERVER_HELLO, then hang up: the server
 * signs once (PROTOCOL.md 2.2) for a client that does no RSA work.
 */
function helloOnly(ephemeral: Uint8Array) {
  return async (_keys: BenchKeys, lane: number, port: number) => {
    const t = await tcpNetwork.connect("127.0.0.1", port);
    try {
      await t.send(encodeClientHello({
        version: PROTOCOL_VERSION,
        user: userName(lane),
        nonce: randomBytes(NONCE_BYTES),
        ephemeral,
      }));
      const reply = await t.recv();
      if (reply === null || reply[0] !== FrameKind.SERVER_HELLO) {
        throw new Error("no SERVER_HELLO");
      }
    } finally {
      t.close();
    }
  };
}

/** `lanes` clients doing `load` for `ms` against a fresh server of `setup`. */
async function runOnce(
  setup: Setup,
  load: Load,
  keys: BenchKeys,
  lanes: number,
  ms: number,
): Promise<Run> {
  const server = await ServerProcess.spawn({
    mode: "im",
    ...keys.pem,
    users: lanes,
    signWorkers: setup.signWorkers,
    // The hello-only clients abandon every login: no penalty for them.
    authFailureLimit: 1_000_000_000,
  }, setup.cpus);
  try {
    // Warm up: the server's code paths and the pool's workers.
    await Promise.all(
      Array.from(
        { length: lanes },
        (_, l) => load.once(keys, l, server.port).catch(() => {}),
      ),
    );
    const [s0, t0, m0] = await Promise.all([
      server.cpu(),
      server.mainThreadCpu(),
      machineCpu(),
    ]);
    const c0 = selfCpuSeconds();
    const start = performance.now();
    const end = start + ms;
    let done = 0, failures = 0;
    await Promise.all(
      Array.from({ length: lanes }, async (_, l) => {
        while (performance.now() < end) {
          try {
            await load.once(keys, l, server.port);
            done++;
          } catch {
            failures++;
          }
        }
      }),
    );
    const secs = (performance.now() - start) / 1000;
    const c1 = selfCpuSeconds();
    const [s1, t1, m1] = await Promise.all([
      server.cpu(),
      server.mainThreadCpu(),
      machineCpu(),
    ]);
    const rssMiB = (await server.mem()).rss / 2 ** 20;
    const serverCores = (s1 - s0) / secs;
    const clientCores = (c1 - c0) / secs;
    return {
      rate: done / secs,
      failures,
      serverCores,
      mainCores: (t1 - t0) / secs,
      clientCores,
      otherCores: Math.max(0, (m1 - m0) / secs - serverCores - clientCores),
      rssMiB,
    };
  } finally {
    await server.quit();
  }
}

const r2 = (x: number) => Math.round(x * 100) / 100;

/**
 * Run the capacity section.
 * @param opts quick mode, report and keys
 * @example
 * ```ts ignore
 * import { benchCapacity } from "./capacity.ts";
 * await benchCapacity({ quick: true, report, keys });
 * ```
 */
export async function benchCapacity(opts: CapacityOptions): Promise<void> {
  const { report } = opts;
  const k3072 = opts.keys.get(3072)!;
  const k2048 = opts.keys.get(2048)!;
  // The server's key is 3072-bit in every run; the users' as the load says.
  const mixed: BenchKeys = {
    ...k3072,
    user: k2048.user,
    userPublic: k2048.userPublic,
    pem: { serverPem: k3072.pem.serverPem, userPem: k2048.pem.userPem },
  };
  const eph = await generateEphemeral();
  // The server's own work first: it needs the quietest machine to show.
  const loads: Load[] = [
    {
      name: "SERVER_HELLOs alone",
      userBits: 3072,
      once: helloOnly(eph.publicRaw),
    },
    { name: "full logins, 3072-bit users", userBits: 3072, once: fullLogin },
    { name: "full logins, 2048-bit users", userBits: 2048, once: fullLogin },
  ];
  // Odd, so the median is one run; about 3 minutes quick, 5 in full.
  const rounds = 3;
  const ms = opts.quick ? 5_000 : 10_000;
  const lanes = 32;
  for (const load of loads) {
    const keys = load.userBits === 3072 ? k3072 : mixed;
    const runs = new Map<string, Run[]>(SETUPS.map((s) => [s.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const setup of SETUPS) {
        const run = await runOnce(setup, load, keys, lanes, ms);
        runs.get(setup.name)!.push(run);
        report.line(
          `  ${load.name}, ${setup.name}, round ${r + 1}: ${
            Math.round(run.rate)
          }/s, ${run.failures} failed; server ${
            r2(run.serverCores)
          } cores (main thread ${r2(run.mainCores)}), clients ${
            r2(run.clientCores)
          }, others ${r2(run.otherCores)}`,
        );
      }
    }
    const unit = load.name.startsWith("SERVER_HELLO") ? "hellos/s" : "logins/s";
    const rate = (name: string) => median(runs.get(name)!.map((x) => x.rate));
    const base = rate("one core");
    for (const setup of SETUPS) {
      const rs = runs.get(setup.name)!;
      report.add(
        "capacity",
        `${load.name}, 3072-bit server, ${setup.name}`,
        rate(setup.name),
        unit,
        {
          note: `median of ${rounds} runs of ${
            ms / 1000
          } s, ${lanes} clients (${
            rs.map((x) => Math.round(x.rate)).join(", ")
          }); server ${
            r2(median(rs.map((x) => x.serverCores)))
          } cores (main thread ${
            r2(median(rs.map((x) => x.mainCores)))
          }), clients ${r2(median(rs.map((x) => x.clientCores)))}, others ${
            r2(median(rs.map((x) => x.otherCores)))
          }${setup.cpus ? `; server taskset -c ${setup.cpus}` : ""}`,
        },
      );
      // CPU per unit of work: what the cores are spent on, whatever the load.
      const per = (f: (x: Run) => number) =>
        median(rs.map((x) => x.rate > 0 ? f(x) / x.rate * 1000 : NaN));
      report.add(
        "capacity",
        `server cpu per ${
          unit.replace("/s", "").replace(/s$/, "")
        }, ${load.name}, ${setup.name}`,
        per((x) => x.serverCores),
        "ms",
        {
          note: `all threads; main JavaScript thread ${
            r2(per((x) => x.mainCores))
          } ms`,
        },
      );
      if (load === loads[1]) {
        report.add(
          "capacity",
          `server rss after the runs, ${setup.name}`,
          median(rs.map((x) => x.rssMiB)),
          "MiB",
          { note: `after GC, ${lanes} users, everyone logged out` },
        );
      }
    }
    for (const setup of SETUPS.slice(1)) {
      const ratio = rate(setup.name) / base;
      report.add(
        "capacity",
        `${load.name}: ${setup.name} / one core`,
        ratio,
        "x",
        {
          limit: 1.8,
          limitSource: "issue 15: >= 1.8x a one-core run",
          note: "medians of the runs above",
        },
      );
    }
  }
}
