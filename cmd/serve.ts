/**
 * `im serve`: flags -> {@link ImServer}. Provisions default keys on a first
 * run, keeps the mailboxes and the rooms in a SQLite file under `--data`
 * (PROTOCOL.md 9.9, 10.4; with `--cluster` both in JetStream, shared by
 * every node, 11.6, and `--data` not used), logs to stderr (or JSON lines
 * to stdout), stops cleanly on Ctrl-C or SIGTERM, and re-reads the client
 * key directory (and the cluster key) on SIGHUP.
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { MAX_HEARTBEAT_MS, MIN_HEARTBEAT_MS } from "../lib/record/mod.ts";
import { intFlag, parseFlags } from "./flags.ts";
import {
  createLogger,
  ImError,
  KeyError,
  type Logger,
  UsageError,
} from "../lib/util/mod.ts";
import { DEFAULT_RSA_BITS, defaultSignWorkers } from "../lib/crypto/mod.ts";
import { isValidUsername, ROOM_MEMBERS_HARD_LIMIT } from "../lib/proto/mod.ts";
import {
  clusterKeyId,
  DEFAULT_USERS,
  defaultKeyDir,
  loadClientDirectory,
  loadClusterKey,
  loadNkeySeed,
  loadServerKeys,
  provision,
  serverKeysExist,
  watchClientDirectory,
} from "../lib/keystore/mod.ts";
import {
  ImServer,
  MAIL_DB_FILE,
  SERVER_DEFAULTS as D,
  type ServerOptions,
  SqliteMail,
} from "../lib/server/mod.ts";

/** `im serve --help`. */
export const SERVE_USAGE = `Usage: im serve [options]

Run the im server: users log in with their keys, and it brokers their
peer-to-peer sessions and keeps their end-to-end encrypted mail for users
who are offline (it never sees their messages).

Options:
  --host HOST             address to listen on (default 127.0.0.1)
  --port N                TCP port (default 9876; 0 picks a free one)
  --keys DIR              key directory (default $IM_KEYS or keys)
  --data DIR              where the mailboxes and rooms are kept, in
                          DIR/${MAIL_DB_FILE} (default data/ beside a key
                          directory named keys, else <name>-data/ beside
                          it); not used with --cluster: the mailboxes and
                          rooms are then in NATS JetStream, shared by every
                          node
  --log text|json         log format: text to stderr, or JSON lines to stdout
  --login-timeout S       seconds a login may take (default 10)
  --max-clients N         logged-in clients at once (default 10000)
  --max-unauth N          unauthenticated connections at once (default 256)
  --max-unauth-per-addr N the same, per address (default 64)
  --ipv6-prefix N         count IPv6 clients per /N for the per-address
                          limits, 1..128 (default 64); IPv4 is counted per
                          address, 127.0.0.1 and ::1 as one host
  --max-frame N           largest frame in bytes (default 65536)
  --heartbeat MS          heartbeat interval in ms, 50..2000 (default 2000)
  --window S              record timestamp window in seconds (default 120)
  --ticket-lifetime S     peer ticket lifetime in seconds (default 30, max 60)
  --auth-failures N       failed logins per address and minute before a penalty (default 5)
  --mail-rate N           mail requests a user may send a second after a burst
                          of 100; a mail is two, fetch and send (default ${D.mailRate})
  --mail-max-count N      mails one mailbox may hold; receipts do not count
                          (default ${D.mailMaxCount})
  --mail-max-bytes N      bytes one mailbox may hold (default ${D.mailMaxBytes})
  --mail-retention DAYS   days a mail (or a room message) waits unread before
                          it is deleted, 1..30 (default ${D.mailRetentionDays})
  --room-max-members N    members one room may have, 1..${ROOM_MEMBERS_HARD_LIMIT}
                          (default ${D.roomMaxMembers})
  --room-max-rooms N      rooms one user may be a member of, 1..10000
                          (default ${D.roomMaxRooms})
  --no-watch              re-read the client keys only on SIGHUP, not when they change
  --bits N                RSA size of keys provisioned on a first run (default ${DEFAULT_RSA_BITS})
  --sign-workers N        Web Workers that sign the logins with the server
                          key, 0..1024; 0 signs on the main thread (default
                          one per core: ${defaultSignWorkers()} here)
  --cluster URL[,URL]     join a cluster of im serve nodes on NATS
                          (nats://host:port or tls://host:port; every node
                          uses a copy of the same keys/, cluster.key included)
  --node NAME             this node's name, 1-32 of A-Z a-z 0-9 _ -
                          (default n- and 6 random hex digits)
  --nats-user U           NATS user name (with --nats-pass-file)
  --nats-pass-file F      file whose first line is the NATS password
  --nats-nkey-file F      file whose first line is a NATS user nkey seed
                          (SU...; 0600, as a private key), instead of a
                          user and password
  --cluster-replicas N    JetStream replicas, 1..5, of the streams and buckets
                          a node makes when they are not there (default 1;
                          3 on a NATS cluster of three servers)
  -h, --help              this help

On a first run with no server key in the key directory, it provisions the
server and the users ${
  DEFAULT_USERS.join(", ")
} (as "im keygen" does) and says so.
Signals: Ctrl-C or SIGTERM stops it (clients are told); SIGHUP re-reads
the client key directory (added users can log in, removed ones are cut off,
on every node of a cluster) and, with --cluster, server/cluster.key.
`;

const OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  keys: { type: "string" },
  data: { type: "string" },
  log: { type: "string" },
  "login-timeout": { type: "string" },
  "max-clients": { type: "string" },
  "max-unauth": { type: "string" },
  "max-unauth-per-addr": { type: "string" },
  "ipv6-prefix": { type: "string" },
  "max-frame": { type: "string" },
  heartbeat: { type: "string" },
  window: { type: "string" },
  "ticket-lifetime": { type: "string" },
  "auth-failures": { type: "string" },
  "mail-rate": { type: "string" },
  "mail-max-count": { type: "string" },
  "mail-max-bytes": { type: "string" },
  "mail-retention": { type: "string" },
  "room-max-members": { type: "string" },
  "room-max-rooms": { type: "string" },
  "no-watch": { type: "boolean" },
  bits: { type: "string" },
  "sign-workers": { type: "string" },
  cluster: { type: "string" },
  node: { type: "string" },
  "nats-user": { type: "string" },
  "nats-pass-file": { type: "string" },
  "nats-nkey-file": { type: "string" },
  "cluster-replicas": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** What `--cluster` and its flags say (PROTOCOL.md 11.1). */
export interface ClusterFlags {
  servers: string[];
  node: string;
  user?: string;
  passFile?: string;
  /** `--nats-nkey-file`: a NATS user nkey seed, instead of a user and password. */
  nkeyFile?: string;
  /** `--cluster-replicas`: JetStream replicas of what the node makes (1..5). */
  replicas: number;
}

/** Most URLs `--cluster` takes. */
const MAX_CLUSTER_URLS = 16;

/**
 * Read `--cluster`, `--node`, `--nats-user`, `--nats-pass-file`,
 * `--nats-nkey-file`, `--cluster-replicas`: each bad value is one usage line.
 * @param v the flags
 * @param random the default node name's hex digits (tests fix them)
 * @returns the cluster's settings, or undefined without `--cluster`
 * @throws {UsageError} `bad-flag`
 */
export function clusterFlags(
  v: {
    cluster?: string | undefined;
    node?: string | undefined;
    "nats-user"?: string | undefined;
    "nats-pass-file"?: string | undefined;
    "nats-nkey-file"?: string | undefined;
    "cluster-replicas"?: string | undefined;
  },
  random: () => string = () =>
    crypto.getRandomValues(new Uint8Array(3)).toHex(),
): ClusterFlags | undefined {
  if (v.cluster === undefined) {
    for (
      const f of [
        "node",
        "nats-user",
        "nats-pass-file",
        "nats-nkey-file",
        "cluster-replicas",
      ] as const
    ) {
      if (v[f] !== undefined) {
        throw new UsageError("bad-flag", `--${f} needs --cluster URL`);
      }
    }
    return undefined;
  }
  const urls = v.cluster.split(",").map((u) => u.trim());
  if (urls.length > MAX_CLUSTER_URLS) {
    throw new UsageError(
      "bad-flag",
      `Invalid --cluster: at most ${MAX_CLUSTER_URLS} URLs`,
    );
  }
  for (const u of urls) {
    const m = /^(nats|tls):\/\/([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/
      .exec(u);
    if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) {
      throw new UsageError(
        "bad-flag",
        `Invalid --cluster "${
          u.slice(0, 80)
        }": expected nats://host:port or tls://host:port, comma-separated`,
      );
    }
  }
  if (new Set(urls).size !== urls.length) {
    throw new UsageError("bad-flag", "Invalid --cluster: a URL given twice");
  }
  const node = v.node ?? `n-${random()}`;
  if (!isValidUsername(node)) {
    throw new UsageError(
      "bad-flag",
      `Invalid --node "${
        node.slice(0, 40)
      }": expected 1-32 characters of A-Z a-z 0-9 _ -`,
    );
  }
  const user = v["nats-user"], passFile = v["nats-pass-file"];
  if (user !== undefined && !/^[\x21-\x7e]{1,256}$/.test(user)) {
    throw new UsageError(
      "bad-flag",
      "Invalid --nats-user: expected 1-256 printable characters, no spaces",
    );
  }
  const nkeyFile = v["nats-nkey-file"];
  if (
    nkeyFile !== undefined &&
    (user !== undefined || passFile !== undefined)
  ) {
    throw new UsageError(
      "bad-flag",
      "--nats-nkey-file and --nats-user with --nats-pass-file do not go together: NATS takes one of them",
    );
  }
  if (nkeyFile === "") {
    throw new UsageError(
      "bad-flag",
      'Invalid --nats-nkey-file "": expected a file',
    );
  }
  if ((user === undefined) !== (passFile === undefined)) {
    throw new UsageError(
      "bad-flag",
      "--nats-user and --nats-pass-file go together",
    );
  }
  if (passFile === "") {
    throw new UsageError(
      "bad-flag",
      'Invalid --nats-pass-file "": expected a file',
    );
  }
  const r = v["cluster-replicas"] ?? "1";
  if (!/^[1-5]$/.test(r)) {
    throw new UsageError(
      "bad-flag",
      `Invalid --cluster-replicas "${
        r.slice(0, 40)
      }": expected an integer from 1 to 5`,
    );
  }
  return {
    servers: urls,
    node,
    replicas: Number(r),
    ...(user !== undefined && { user }),
    ...(passFile !== undefined && { passFile }),
    ...(nkeyFile !== undefined && { nkeyFile }),
  };
}

/**
 * The NATS password: the first line of `--nats-pass-file`.
 * @throws {UsageError} `bad-flag`: missing, unreadable or empty
 */
async function readPassFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.NotCapable ||
          e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (e as Error).message;
    throw new UsageError(
      "bad-flag",
      `Cannot read --nats-pass-file "${path}": ${why}`,
    );
  }
  const pass = text.split(/\r?\n/)[0] ?? "";
  if (pass === "") {
    throw new UsageError(
      "bad-flag",
      `Invalid --nats-pass-file "${path}": its first line is empty`,
    );
  }
  return pass;
}

/**
 * Run `im serve`.
 * @param args arguments after `serve`
 * @returns exit code
 */
export async function runServe(args: string[]): Promise<number> {
  const v = parseFlags(args, OPTIONS, "im serve");
  if (v.help) {
    console.log(SERVE_USAGE.trimEnd());
    return 0;
  }
  const json = v.log === "json";
  if (v.log !== undefined && v.log !== "json" && v.log !== "text") {
    throw new UsageError(
      "bad-flag",
      `Invalid --log "${v.log}": expected text or json`,
    );
  }
  const ipv6PrefixBits = intFlag(
    "--ipv6-prefix",
    v["ipv6-prefix"],
    D.ipv6PrefixBits,
    1,
    128,
  );
  // Checked on every run, used only on a first run (issue 11 item 10).
  const bits = intFlag("--bits", v.bits, DEFAULT_RSA_BITS, 2048, 4096);
  // Issue 15 (BENCHMARKS.md, Capacity): one worker per core.
  const signWorkers = intFlag(
    "--sign-workers",
    v["sign-workers"],
    defaultSignWorkers(),
    0,
    1024,
  );
  const mailRate = intFlag(
    "--mail-rate",
    v["mail-rate"],
    D.mailRate,
    1,
    10_000,
  );
  const mailMaxCount = intFlag(
    "--mail-max-count",
    v["mail-max-count"],
    D.mailMaxCount,
    1,
    100_000_000,
  );
  const mailMaxBytes = intFlag(
    "--mail-max-bytes",
    v["mail-max-bytes"],
    D.mailMaxBytes,
    65_536,
    100 * 2 ** 30,
  );
  const mailRetentionDays = intFlag(
    "--mail-retention",
    v["mail-retention"],
    D.mailRetentionDays,
    1,
    30,
  );
  const roomMaxMembers = intFlag(
    "--room-max-members",
    v["room-max-members"],
    D.roomMaxMembers,
    1,
    ROOM_MEMBERS_HARD_LIMIT,
  );
  const roomMaxRooms = intFlag(
    "--room-max-rooms",
    v["room-max-rooms"],
    D.roomMaxRooms,
    1,
    10_000,
  );
  const cluster = clusterFlags(v);
  const natsPass = cluster?.passFile === undefined
    ? undefined
    : await readPassFile(cluster.passFile);
  // Checked as a private key is, before anything starts (PROTOCOL.md 11.1).
  const nkeySeed = cluster?.nkeyFile === undefined
    ? undefined
    : await loadNkeySeed(cluster.nkeyFile);
  if (v.data === "") {
    throw new UsageError("bad-flag", 'Invalid --data "": expected a directory');
  }
  const dir = v.keys ?? defaultKeyDir();
  const dataDir = v.data ?? defaultDataDir(dir);
  // A log line must never crash the server: the terminal it writes to may
  // be gone (closed, or the task runner in front of it exited).
  const log = createLogger(json, (line) => {
    try {
      (json ? console.log : console.error)(line);
    } catch {
      // Nowhere to log to; keep serving, and keep shutting down cleanly.
    }
  });
  if (!(await serverKeysExist(dir))) {
    const report = await provision(dir, { users: DEFAULT_USERS, bits });
    log("provisioned", {
      dir,
      users: DEFAULT_USERS.join(","),
      files: report.entries.length,
    });
    console.error(
      `im: no keys in ${dir}/; provisioned the server and users ${
        DEFAULT_USERS.join(", ")
      } (run "im keygen --help" to add more)`,
    );
  }
  const keys = await loadServerKeys(dir);
  // PROTOCOL.md 11.1: every node holds the same cluster key.
  const clusterKey = cluster ? await loadClusterKey(dir) : undefined;
  // The id of the cluster key in use, and the node that uses it (SIGHUP).
  let clusterKeyInUse = clusterKey ? clusterKeyId(clusterKey) : "";
  let keyHolder: KeyHolder | undefined;
  let keyReload = Promise.resolve();
  for (const p of keys.problems) log("key-skipped", { problem: p });
  const stopped = Promise.withResolvers<string>();
  let stopping: string | null = null;
  // The first SIGINT or SIGTERM stops the server; the listeners stay until
  // the clients were told and the server closed. `deno task` forwards the
  // SIGINT a terminal's Ctrl-C already sent to the whole process group,
  // and `npx` adds its own (README's first command runs under both): with
  // the listeners gone, such a second SIGINT killed the server before it
  // told anyone (issue 11 item 3). Repeats are logged and ignored. They are
  // in place before the server listens: a signal right after "listening"
  // stops it cleanly too.
  const onStop = (sig: string) => () => {
    if (stopping !== null) {
      log("signal-ignored", { signal: sig, why: "already stopping" });
      return;
    }
    stopping = sig;
    stopped.resolve(sig);
  };
  const sigint = onStop("SIGINT"), sigterm = onStop("SIGTERM");
  let server: ImServer | null = null;
  const reload = (why: string) => {
    log("reload-requested", { why });
    loadClientDirectory(dir)
      .then((d) => {
        for (const p of d.problems) log("key-skipped", { problem: p });
        // An unreadable directory (moved, chmod) must not revoke everyone.
        if (!d.complete) {
          return log("reload-failed", {
            error: "client directory unreadable; keeping the current keys",
          });
        }
        return server?.reloadClients(d.clients);
      })
      .catch((e) => log("reload-failed", { error: (e as Error).message }));
    // One after another: each compares with the key the one before left.
    const holder = keyHolder;
    if (holder) {
      keyReload = keyReload.then(async () => {
        clusterKeyInUse = await reloadClusterKey(
          dir,
          holder,
          clusterKeyInUse,
          log,
        );
      });
    }
  };
  // SIGHUP means "re-read the keys" (as for sshd). A terminal that closes
  // sends SIGHUP too; then the terminal is gone and writing to it fails, so
  // a server whose stderr was that terminal stops instead of lingering.
  const sighup = () => {
    if (stopping !== null || server === null) return;
    if (Deno.stderr.isTerminal()) {
      try {
        Deno.stderr.writeSync(
          new TextEncoder().encode(
            "im serve: SIGHUP: re-reading the keys\n",
          ),
        );
      } catch {
        stopping = "terminal closed";
        stopped.resolve("terminal closed");
        return;
      }
    }
    reload("SIGHUP");
  };
  Deno.addSignalListener("SIGINT", sigint);
  Deno.addSignalListener("SIGTERM", sigterm);
  Deno.addSignalListener("SIGHUP", sighup);
  let watcher: { close(): void } = { close() {} };
  let mail: SqliteMail | undefined;
  let node: { close(): Promise<void> } | undefined;
  try {
    // Every flag is read before anything is opened or created: a bad command
    // line leaves no data directory behind.
    const options = {
      hostname: v.host ?? D.hostname,
      port: intFlag("--port", v.port, D.port, 0, 65535),
      identity: keys.identity,
      clients: keys.clients,
      log,
      loginTimeoutMs: intFlag(
        "--login-timeout",
        v["login-timeout"],
        D.loginTimeoutMs / 1000,
        1,
        3600,
      ) * 1000,
      maxClients: intFlag(
        "--max-clients",
        v["max-clients"],
        D.maxClients,
        1,
        1_000_000,
      ),
      maxUnauthenticated: intFlag(
        "--max-unauth",
        v["max-unauth"],
        D.maxUnauthenticated,
        1,
        100_000,
      ),
      maxUnauthenticatedPerAddress: intFlag(
        "--max-unauth-per-addr",
        v["max-unauth-per-addr"],
        D.maxUnauthenticatedPerAddress,
        1,
        100_000,
      ),
      ipv6PrefixBits,
      maxFrameBytes: intFlag(
        "--max-frame",
        v["max-frame"],
        D.maxFrameBytes,
        1024,
        16 * 1024 * 1024,
      ),
      heartbeatMs: intFlag(
        "--heartbeat",
        v.heartbeat,
        D.heartbeatMs,
        MIN_HEARTBEAT_MS,
        MAX_HEARTBEAT_MS,
      ),
      windowMs: intFlag("--window", v.window, D.windowMs / 1000, 1, 86_400) *
        1000,
      ticketLifetimeMs: intFlag(
        "--ticket-lifetime",
        v["ticket-lifetime"],
        D.ticketLifetimeMs / 1000,
        1,
        60,
      ) * 1000,
      authFailureLimit: intFlag(
        "--auth-failures",
        v["auth-failures"],
        D.authFailureLimit,
        1,
        1_000_000,
      ),
      mailRate,
      mailMaxCount,
      mailMaxBytes,
      mailRetentionDays,
      roomMaxMembers,
      roomMaxRooms,
      signWorkers,
    } satisfies ServerOptions;
    // The cluster first: a NATS that cannot be reached leaves no data
    // directory behind.
    let clusterOptions: Partial<ServerOptions> = {};
    let joined: Awaited<ReturnType<typeof joinCluster>> | undefined;
    if (cluster && clusterKey) {
      joined = await joinCluster(cluster, clusterKey, {
        pass: natsPass,
        nkeySeed,
      }, log);
      node = joined;
      keyHolder = joined;
      clusterOptions = joined.serverOptions();
    }
    // PROTOCOL.md 11.6: in a cluster the mailboxes and the rooms are
    // JetStream's, shared by every node, and no file of its own is opened.
    if (!joined) mail = await openMail(dataDir);
    server = await ImServer.start({
      ...options,
      ...(mail && {
        store: mail.store,
        prekeys: mail.prekeys,
        rooms: mail.rooms,
      }),
      ...clusterOptions,
    });
    if (joined) {
      joined.attach(server);
      await joined.announce();
    }
    log(
      "mail-store",
      joined
        ? {
          mail: `JetStream IM_MAIL_${joined.cluster}`,
          rooms: `JetStream IM_ROOMS_${joined.cluster}`,
        }
        : { path: join(dataDir, MAIL_DB_FILE) },
    );
    // An enrollment (im keygen writes server/clients/<user>.pem) takes effect without a signal.
    if (!v["no-watch"]) {
      watcher = watchClientDirectory(
        dir,
        () => reload("client key directory changed"),
      );
    }
    const sig = await stopped.promise;
    watcher.close();
    log("signal", { signal: sig });
    await server.close("shutdown");
  } finally {
    watcher.close();
    // After the server: its users' leaves reach the snapshot; then the
    // node's key is deleted, so the others drop it at once.
    await node?.close().catch((e) =>
      log("cluster-close-failed", { error: (e as Error).message })
    );
    if (node) globalThis.removeEventListener("error", dropReset);
    // After the server: every stored mail was committed, none is half written.
    await mail?.close();
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
    Deno.removeSignalListener("SIGHUP", sighup);
  }
  return 0;
}

/** What takes a new cluster key: a {@link ClusterNode}'s `replaceKey`. */
export interface KeyHolder {
  /** @returns false when it is the key in use */
  replaceKey(clusterKey: Uint8Array): boolean;
}

/**
 * Read `server/cluster.key` again (PROTOCOL.md 11.1, SIGHUP) and give a
 * changed key to the node: `cluster-key-replaced` with both ids. A file
 * that is missing, too open or not a key keeps the key in use and logs one
 * line, `cluster-key-failed`; it never throws.
 * @param dir the key directory
 * @param node the node that uses the key
 * @param inUse the id of the key in use ({@link clusterKeyId})
 * @param log where the outcome is logged
 * @returns the id of the key in use afterwards
 */
export async function reloadClusterKey(
  dir: string,
  node: KeyHolder,
  inUse: string,
  log: Logger,
): Promise<string> {
  let key: Uint8Array | undefined;
  try {
    key = await loadClusterKey(dir);
    const id = clusterKeyId(key);
    if (!node.replaceKey(key)) return inUse;
    log("cluster-key-replaced", { old: inUse, new: id });
    return id;
  } catch (e) {
    log("cluster-key-failed", {
      error: ((e as Error).message ?? String(e)).split("\n")[0]!,
      kept: inUse,
    });
    return inUse;
  } finally {
    key?.fill(0);
  }
}

/**
 * A NATS server that refuses the credentials resets the connection after
 * the NATS client gave up on it: the client's socket then reports
 * ECONNRESET with nobody listening, an uncaught error that would end the
 * process before its one error line. Such a reset is dropped while the
 * node runs, and for good once joining failed (the process is ending).
 */
function dropReset(ev: ErrorEvent): void {
  if ((ev.error as { code?: unknown } | null)?.code === "ECONNRESET") {
    ev.preventDefault();
  }
}

/**
 * Join the cluster (PROTOCOL.md 11.1): the NATS client and the cluster's
 * parts are loaded here, by a dynamic import, and only with `--cluster`.
 * @throws {ImError} `cluster-unreachable`: one line naming the URLs and why
 * @throws {KeyError} `bad-nkey-seed`: the seed's checksum or kind is wrong
 */
async function joinCluster(
  c: ClusterFlags,
  clusterKey: Uint8Array,
  creds: { pass?: string | undefined; nkeySeed?: Uint8Array | undefined },
  log: ReturnType<typeof createLogger>,
) {
  const { ClusterNode } = await import("../lib/server/nats/mod.ts");
  globalThis.addEventListener("error", dropReset);
  try {
    return await ClusterNode.join({
      servers: c.servers,
      node: c.node,
      clusterKey,
      ...(c.user !== undefined && { user: c.user }),
      ...(creds.pass !== undefined && { pass: creds.pass }),
      ...(creds.nkeySeed !== undefined && { nkeySeed: creds.nkeySeed }),
      replicas: c.replicas,
      log,
    });
  } catch (e) {
    if (e instanceof KeyError && e.code === "bad-nkey-seed") {
      throw new KeyError(
        "bad-nkey-seed",
        `Cannot use NATS nkey seed "${c.nkeyFile}": ${
          e.message.replace(/^NATS nkey seed: /, "")
        }`,
        "copy the seed file again from where it was made (nk -gen user), or make a new nkey user",
      );
    }
    const why = ((e as Error).message ?? String(e)).split("\n")[0];
    throw new ImError(
      "cluster-unreachable",
      `Cannot join the cluster at ${c.servers.join(",")}: ${why}`,
      "check --cluster, the NATS credentials, and that nats-server runs with JetStream (-js)",
    );
  } finally {
    clusterKey.fill(0);
    creds.nkeySeed?.fill(0);
  }
}

/**
 * Where the mailboxes are kept without `--data`: `data` beside a key
 * directory named `keys` (README's layout), else `<name>-data` beside it, so
 * two key directories in one folder (two deployments) never share a
 * mailbox database.
 * @param keyDir the key directory
 * @returns the data directory
 */
export function defaultDataDir(keyDir: string): string {
  const name = basename(resolve(keyDir));
  return join(
    dirname(resolve(keyDir)),
    name === "keys" ? "data" : `${name}-data`,
  );
}

/**
 * Open the mailbox database in `dir` (created 0700, the file 0600).
 * @param dir the data directory
 * @returns the store and the prekeys
 * @throws {ImError} `data-unavailable`: one line naming the file and why
 */
async function openMail(dir: string): Promise<SqliteMail> {
  const path = join(dir, MAIL_DB_FILE);
  try {
    return await SqliteMail.open(path);
  } catch (e) {
    const why = (e as Error).message;
    const denied = e instanceof Deno.errors.NotCapable;
    throw new ImError(
      "data-unavailable",
      `Cannot open the mailbox database ${path}: ${why}`,
      denied
        ? `grant read and write access to ${dir} (deno run --allow-read=${dir} --allow-write=${dir}), or run "deno task im serve" with the default --data`
        : "choose another directory with --data",
    );
  }
}
