/**
 * A real `nats-server` for the cluster's tests (PROTOCOL.md 11.1): started
 * with JetStream on (`-js -sd <temp dir>`) on a free port of 127.0.0.1,
 * awaited until it greets a client, and stopped with its temp dir removed.
 * The binary is `$IM_NATS_SERVER`, else `nats-server` on the PATH; when it
 * cannot be started the error says how to install it. A test never skips
 * quietly for want of it: `.ci/run` installs it.
 *
 * - {@link withNats}: a server for the length of a function.
 * - {@link startNats}: a server to stop yourself, to kill (SIGKILL, a
 *   crash) and to restart on the same port with the same data.
 *
 * @example
 * ```ts ignore
 * import { withNats } from "./_nats.ts";
 * await withNats(async (nats) => {
 *   const nc = await connect({ servers: nats.url });
 *   await nc.close();
 * });
 * ```
 * @module
 */

import { dropReset } from "../cmd/serve_cluster.ts";

// What `im serve --cluster` drops (cmd/serve_cluster.ts dropReset): the NATS
// client's socket errors that reach nobody, such as a write after its socket
// ended while it reconnects to a killed and restarted nats-server. A test of
// ClusterNode runs without `im serve` around it, so it drops them the same way.
globalThis.addEventListener("error", dropReset);

/** A running `nats-server` of a test. */
export interface NatsServer {
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Its JetStream data directory (kept across {@link NatsServer.restart}). */
  readonly dir: string;
  /** Whether the process runs now. */
  readonly running: boolean;
  /** SIGTERM (SIGKILL after 2 s), then remove the data directory; idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash; the data directory stays for {@link NatsServer.restart}. */
  kill(): Promise<void>;
  /** Start it again (after {@link kill}, or stop it first): same port, same data. */
  restart(): Promise<void>;
}

/** How long a server may take to accept a client. */
const READY_MS = 10_000;
/** How long SIGTERM is given before SIGKILL. */
const TERM_MS = 2_000;

/** The binary the tests start. */
export function natsServerBinary(): string {
  return Deno.env.get("IM_NATS_SERVER") || "nats-server";
}

function installHint(binary: string, why: string): Error {
  return new Error(
    `cannot start nats-server ("${binary}": ${why}); the cluster tests need it: ` +
      "install it with `apt-get install -y nats-server` (.ci/run does), " +
      "or set IM_NATS_SERVER to its path",
  );
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Does a server on `port` greet a client with its INFO line? */
async function greets(port: number): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const buf = new Uint8Array(4096);
    let got = "";
    const until = Date.now() + 1_000;
    while (!got.includes("\n") && Date.now() < until) {
      const n = await conn.read(buf);
      if (n === null) return false;
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    return got.startsWith("INFO ") && got.includes('"jetstream":true');
  } catch {
    return false;
  } finally {
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

async function readLog(path: string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trim().split("\n").slice(-5)
      .join(" | ");
  } catch {
    return "(no log)";
  }
}

/** Options of {@link startNats}. */
export interface NatsOptions {
  /** The binary (default {@link natsServerBinary}). */
  binary?: string;
  /**
   * A configuration file's text (e.g. an `authorization` block), written to
   * the server's temp dir and given with `-c`; the flags of the address,
   * port and JetStream directory still apply.
   */
  config?: string;
}

/**
 * Start a `nats-server` with JetStream on a free loopback port.
 * @param opts the binary, a configuration
 * @returns the running server
 * @throws {Error} saying how to install `nats-server` when it cannot be started
 */
export async function startNats(
  opts: NatsOptions = {},
): Promise<NatsServer> {
  const binary = opts.binary ?? natsServerBinary();
  const dir = await Deno.makeTempDir({ prefix: "im-nats-" });
  const logFile = `${dir}/server.log`;
  const config = opts.config === undefined ? [] : ["-c", `${dir}/nats.conf`];
  if (opts.config !== undefined) {
    await Deno.writeTextFile(`${dir}/nats.conf`, opts.config);
  }
  let port = 0;
  let child: Deno.ChildProcess | undefined;
  let exited: Promise<Deno.CommandStatus> | undefined;
  let removed = false;

  /** Start the process on `port` and wait until it greets; false when it exited first. */
  const launch = async (): Promise<boolean> => {
    try {
      child = new Deno.Command(binary, {
        args: [
          "-a",
          "127.0.0.1",
          "-p",
          String(port),
          "-js",
          "-sd",
          `${dir}/js`,
          "-l",
          logFile,
          ...config,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
    } catch (e) {
      throw installHint(binary, e instanceof Error ? e.message : String(e));
    }
    let done = false;
    exited = child.status.then((s) => {
      done = true;
      return s;
    });
    const until = Date.now() + READY_MS;
    while (!done && Date.now() < until) {
      if (await greets(port)) return true;
      await new Promise((r) => setTimeout(r, 30));
    }
    if (!done) {
      await signalAndWait();
      throw new Error(
        `nats-server did not accept clients on port ${port} within ${READY_MS} ms: ${await readLog(
          logFile,
        )}`,
      );
    }
    return false;
  };

  /** SIGTERM, SIGKILL after 2 s, and await the exit. */
  const signalAndWait = async (signal: Deno.Signal = "SIGTERM") => {
    const c = child, e = exited;
    if (!c || !e) return;
    child = undefined;
    exited = undefined;
    try {
      c.kill(signal);
    } catch { /* already exited */ }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => {
      timer = setTimeout(() => r("late"), TERM_MS);
    });
    if (await Promise.race([e, late]) === "late") {
      try {
        c.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }
    clearTimeout(timer);
    await e;
  };

  /** Launch, on a new port when `fresh` (one taken meanwhile is tried again). */
  const launchRetrying = async (fresh: boolean) => {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (fresh) port = freePort();
      if (await launch()) return;
      await exited;
      child = undefined;
      exited = undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw installHint(binary, `it exited at once: ${await readLog(logFile)}`);
  };

  try {
    await launchRetrying(true);
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }

  const server: NatsServer = {
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    dir,
    get running() {
      return child !== undefined;
    },
    async stop() {
      await signalAndWait();
      if (!removed) {
        removed = true;
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
    async kill() {
      await signalAndWait("SIGKILL");
    },
    async restart() {
      if (removed) throw new Error("nats-server: restart() after stop()");
      await signalAndWait();
      await launchRetrying(false);
    },
  };
  return server;
}

/**
 * Run `fn` with a fresh `nats-server`, stopped (and its data removed)
 * afterwards whatever `fn` does.
 * @param fn the test body
 * @param opts the binary, a configuration
 * @returns what `fn` returns
 */
export async function withNats<T>(
  fn: (nats: NatsServer) => Promise<T>,
  opts: NatsOptions = {},
): Promise<T> {
  const nats = await startNats(opts);
  try {
    return await fn(nats);
  } finally {
    await nats.stop();
  }
}

/** A cluster of `nats-server` processes of a test (routes between all, JetStream on each). */
export interface NatsCluster {
  /** Each process, as a {@link NatsServer} (kill and restart one to test a fault). */
  readonly servers: readonly NatsServer[];
  /** Every client URL, for a client that fails over. */
  readonly urls: string[];
  /** Stop every process and remove their data directories; idempotent. */
  stop(): Promise<void>;
}

/**
 * Start `n` `nats-server` processes as one NATS cluster (`--cluster_name
 * im-test`, each routed to every other, server names `n1`...), each with
 * JetStream (its own data directory) on free loopback ports. JetStream
 * elects its meta leader a moment after the processes greet: the first
 * JetStream call may have to be tried again.
 * @param n how many processes (3 for replicas 3)
 * @param opts the binary (default {@link natsServerBinary})
 * @returns the running cluster
 */
export async function startNatsCluster(
  n: number,
  opts: { binary?: string } = {},
): Promise<NatsCluster> {
  const binary = opts.binary ?? natsServerBinary();
  const ports = Array.from({ length: n }, () => freePort());
  const routes = Array.from({ length: n }, () => freePort());
  const servers: NatsServer[] = [];
  try {
    for (let i = 0; i < n; i++) {
      servers.push(
        await clusterNode(binary, i, ports, routes),
      );
    }
    await Promise.all(servers.map((s) => (s as ClusterNode).ready()));
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop()));
    throw e;
  }
  let stopped = false;
  return {
    servers,
    urls: servers.map((s) => s.url),
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

interface ClusterNode extends NatsServer {
  /** Wait until it greets a client (throws when it does not). */
  ready(): Promise<void>;
}

/** One process of {@link startNatsCluster}. */
async function clusterNode(
  binary: string,
  i: number,
  ports: number[],
  routes: number[],
): Promise<ClusterNode> {
  const dir = await Deno.makeTempDir({ prefix: `im-nats-n${i + 1}-` });
  const logFile = `${dir}/server.log`;
  const port = ports[i]!;
  let child: Deno.ChildProcess | undefined;
  let exited: Promise<Deno.CommandStatus> | undefined;
  let removed = false;
  const spawn = () => {
    try {
      child = new Deno.Command(binary, {
        args: [
          "-a",
          "127.0.0.1",
          "-p",
          String(port),
          "-n",
          `n${i + 1}`,
          "--cluster_name",
          "im-test",
          "--cluster",
          `nats://127.0.0.1:${routes[i]}`,
          "--routes",
          routes.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`)
            .join(","),
          "-js",
          "-sd",
          `${dir}/js`,
          "-l",
          logFile,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
    } catch (e) {
      throw installHint(binary, e instanceof Error ? e.message : String(e));
    }
    exited = child.status;
  };
  const ready = async () => {
    const until = Date.now() + READY_MS;
    let done = false;
    exited?.then(() => done = true);
    while (Date.now() < until && !done) {
      if (await greets(port)) return;
      await new Promise((r) => setTimeout(r, 30));
    }
    throw new Error(
      `nats-server n${
        i + 1
      } did not accept clients on port ${port}: ${await readLog(
        logFile,
      )}`,
    );
  };
  const end = async (signal: Deno.Signal) => {
    const c = child, e = exited;
    if (!c || !e) return;
    child = undefined;
    exited = undefined;
    try {
      c.kill(signal);
    } catch { /* exited */ }
    const t = setTimeout(() => {
      try {
        c.kill("SIGKILL");
      } catch { /* exited */ }
    }, TERM_MS);
    await e;
    clearTimeout(t);
  };
  spawn();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    dir,
    get running() {
      return child !== undefined;
    },
    ready,
    async stop() {
      await end("SIGTERM");
      if (!removed) {
        removed = true;
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
    async kill() {
      await end("SIGKILL");
    },
    async restart() {
      if (removed) throw new Error("nats-server: restart() after stop()");
      await end("SIGTERM");
      spawn();
      await ready();
    },
  };
}
