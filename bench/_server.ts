/**
 * The server side of the benchmark, run as its own process so its memory and
 * CPU time can be read apart from the clients':
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 --v8-flags=--expose-gc bench/_server.ts
 * ```
 *
 * It reads one JSON line from stdin ({@link ServerConfig}: the keys as PEM
 * text, so nothing touches the disk), starts an {@link ImServer} (or, in
 * `bare` mode, a plain TCP server that holds each connection with one
 * pending read into its own buffer: the floor for memory per connection) on a free loopback
 * port, and prints `{"port":P}`. Then each stdin line is a command: `mem`
 * answers with a garbage-collected `Deno.memoryUsage()`, how many users are
 * online and the server's log events by name; `snapshot <path>` writes a V8
 * heap snapshot there after GC (`im` mode with `dataDir`, which it may
 * write); `profile <ms>` answers with the functions that took the most
 * CPU (self time) over that long; `quit` closes the server and exits. Every answer is one JSON line on stdout.
 *
 * @example
 * ```ts ignore
 * // See spawnServer() in bench/scale.ts.
 * ```
 * @module
 */

import { loadPrivateIdentity, loadPublicIdentity } from "../lib/crypto/mod.ts";
import { ImServer, MAIL_DB_FILE, SqliteMail } from "../lib/server/mod.ts";

/** The first stdin line. */
export interface ServerConfig {
  /** `im`: the real server; `bare`: TCP connections held with one pending read. */
  mode: "im" | "bare";
  /** The server's private key (PKCS#8 PEM), `im` mode. */
  serverPem?: string;
  /** The one public key every benchmark user shares (SPKI PEM), `im` mode. */
  userPem?: string;
  /** Users in the directory: `<prefix>0` .. `<prefix>{users-1}`. */
  users?: number;
  /** Username prefix (default `u`). */
  prefix?: string;
  /** Size of each connection's read buffer in `bare` mode (default 1024). */
  readBufBytes?: number;
  /**
   * Join a cluster (`im` mode, PROTOCOL.md section 11): NATS URLs, this
   * node's name, the cluster key in base64 and the cluster's name. The
   * child then needs `--allow-env` (the NATS client reads it).
   */
  cluster?: { servers: string[]; node: string; key: string; name: string };
  /**
   * Keep the mailboxes, prekeys and rooms in a SQLite file in this folder,
   * as `im serve --data` does (`im` mode, not with `cluster`); without it
   * they are the in-memory stores of the tests. The child then needs
   * `--allow-read` and `--allow-write` for it ({@link ServerProcess.spawn}).
   */
  dataDir?: string;
  /** `ServerOptions.signWorkers` (issue 15; default 0: the main thread signs). */
  signWorkers?: number;
  /** `ServerOptions.authFailureLimit`: the capacity section's abandoned logins must not be slowed down. */
  authFailureLimit?: number;
}

/** The answer to `mem`. */
export interface MemAnswer {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** Users logged in (`im`) or connections open (`bare`). */
  online: number;
  /** Server log events seen so far, by name (`leave:<reason>` for leaves) (`im`). */
  events: Record<string, number>;
}

async function* lines(): AsyncGenerator<string> {
  let buf = "";
  for await (
    const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  ) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}

function answer(o: unknown): void {
  console.log(JSON.stringify(o));
}

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
}

async function main(): Promise<void> {
  const input = lines();
  const first = await input.next();
  if (first.done) return;
  const cfg = JSON.parse(first.value) as ServerConfig;
  const events: Record<string, number> = {};
  let online: () => number;
  let close: () => Promise<void>;
  let port: number;
  if (cfg.mode === "bare") {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    port = (listener.addr as Deno.NetAddr).port;
    const conns = new Set<Deno.TcpConn>();
    const loop = (async () => {
      for (;;) {
        let c: Deno.TcpConn;
        try {
          c = await listener.accept();
        } catch {
          return;
        }
        c.setNoDelay(true);
        conns.add(c);
        (async () => {
          const buf = new Uint8Array(cfg.readBufBytes ?? 1024);
          try {
            while ((await c.read(buf)) !== null) { /* discard */ }
          } catch {
            // Closed under us.
          }
          conns.delete(c);
          try {
            c.close();
          } catch {
            // Already closed.
          }
        })();
      }
    })();
    online = () => conns.size;
    close = async () => {
      listener.close();
      for (const c of conns) c.close();
      await loop;
    };
  } else {
    const identity = await loadPrivateIdentity(cfg.serverPem!, "server key");
    const user = await loadPublicIdentity(cfg.userPem!, "user key");
    const clients = new Map<string, typeof user>();
    const n = cfg.users ?? 100;
    for (let i = 0; i < n; i++) clients.set(`${cfg.prefix ?? "u"}${i}`, user);
    // NATS is loaded only for a node of a cluster, as in `im serve`.
    const node = cfg.cluster
      ? await (await import("../lib/server/nats/mod.ts")).ClusterNode.join({
        servers: cfg.cluster.servers,
        node: cfg.cluster.node,
        clusterKey: Uint8Array.fromBase64(cfg.cluster.key),
        cluster: cfg.cluster.name,
      })
      : undefined;
    const mail = cfg.dataDir && !cfg.cluster
      ? await SqliteMail.open(`${cfg.dataDir}/${MAIL_DB_FILE}`)
      : undefined;
    const server = await ImServer.start({
      ...node?.serverOptions(),
      ...(mail &&
        { store: mail.store, prekeys: mail.prekeys, rooms: mail.rooms }),
      identity,
      clients,
      hostname: "127.0.0.1",
      port: 0,
      maxClients: Math.max(10_000, n),
      ...(cfg.signWorkers !== undefined && { signWorkers: cfg.signWorkers }),
      ...(cfg.authFailureLimit !== undefined &&
        { authFailureLimit: cfg.authFailureLimit }),
      log: (event, fields) => {
        // Count leaves by reason: a heartbeat timeout reads `leave:timeout`.
        const key = event === "leave" || event === "connection-error"
          ? `${event}:${fields?.reason ?? fields?.error ?? ""}`
          : event;
        events[key] = (events[key] ?? 0) + 1;
      },
    });
    node?.attach(server);
    port = server.port;
    online = () => server.list().length;
    close = async () => {
      await server.close();
      await node?.close();
      await mail?.close();
    };
  }
  collect();
  answer({ port, pid: Deno.pid });
  for await (const line of input) {
    const cmd = line.trim();
    if (cmd === "mem") {
      collect();
      const m = Deno.memoryUsage();
      const a: MemAnswer = {
        rss: m.rss,
        heapUsed: m.heapUsed,
        heapTotal: m.heapTotal,
        external: m.external,
        online: online(),
        events,
      };
      answer(a);
    } else if (cmd.startsWith("snapshot ")) {
      // A V8 heap snapshot of the server, after GC, to a path in its data
      // folder (the only place it may write): the per-connection breakdown
      // of BENCHMARKS.md "Idle connections" is read from two of them.
      collect();
      const { writeHeapSnapshot } = await import("node:v8");
      answer({ path: writeHeapSnapshot(cmd.slice("snapshot ".length)) });
    } else if (cmd.startsWith("profile ")) {
      // A CPU profile of the server over that many ms, summed by function
      // (self time): where an idle server's CPU goes (IM_BENCH_PROFILE).
      answer(await profile(Number(cmd.slice("profile ".length))));
    } else if (cmd === "quit") {
      await close();
      answer({ bye: true });
      return;
    }
  }
  await close();
}

/** One row of a `profile` answer. */
export interface ProfileRow {
  /** `function file:line`. */
  fn: string;
  /** Self time, ms. */
  ms: number;
}

/**
 * Profile this process with V8's sampling profiler (through `node:inspector`)
 * for `ms`.
 * @param ms how long
 * @returns the 25 functions with the most self time, and the total sampled
 */
async function profile(
  ms: number,
): Promise<{ totalMs: number; top: ProfileRow[] }> {
  const { Session } = await import("node:inspector");
  const session = new Session();
  session.connect();
  const post = <T>(method: string): Promise<T> =>
    new Promise((resolve, reject) =>
      session.post(
        method,
        {},
        (e: Error | null, r: unknown) => e ? reject(e) : resolve(r as T),
      )
    );
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }
  try {
    await post("Profiler.enable");
    await post("Profiler.start");
    await new Promise((r) => setTimeout(r, ms));
    const { profile } = await post<{
      profile: { nodes: Node[]; samples: number[]; timeDeltas: number[] };
    }>("Profiler.stop");
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map<string, number>();
    let total = 0;
    profile.samples.forEach((id, i) => {
      const f = byId.get(id)!.callFrame;
      const key = `${f.functionName || "(anonymous)"} ${
        f.url.split("/").at(-1) ?? ""
      }:${f.lineNumber + 1}`;
      const us = profile.timeDeltas[i] ?? 0;
      total += us;
      self.set(key, (self.get(key) ?? 0) + us);
    });
    const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)
      .map(([fn, us]) => ({ fn, ms: us / 1000 }));
    return { totalMs: total / 1000, top };
  } finally {
    session.disconnect();
  }
}

if (import.meta.main) {
  await main();
}
