/**
 * `im serve`: flags -> {@link ImServer}. Provisions default keys on a first
 * run, keeps the mailboxes and the rooms in a SQLite file under `--data`
 * (PROTOCOL.md 9.9, 10.4; with `--cluster` both in JetStream, shared by
 * every node, 11.6, and `--data` not used), logs to stderr (or JSON lines
 * to stdout), stops cleanly on Ctrl-C or SIGTERM, and re-reads the client
 * key directory (and the cluster key) on SIGHUP.
 *
 * `runServe` puts the parts together:
 * - `serve_usage.ts`: the help text and the flags;
 * - `serve_options.ts`: the server's options from the flags;
 * - `serve_cluster.ts`: `--cluster`, joining it, the cluster key on SIGHUP;
 * - `serve_data.ts`: the data directory and the mailbox database;
 * - `serve_signals.ts`: Ctrl-C, SIGTERM and SIGHUP.
 * @module
 */

import { join } from "node:path";
import { parseFlags } from "./flags.ts";
import { createLogger, UsageError } from "../lib/util/mod.ts";
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
  type ServerOptions,
  type SqliteMail,
} from "../lib/server/mod.ts";
import {
  clusterFlags,
  dropReset,
  joinCluster,
  type KeyHolder,
  readPassFile,
  reloadClusterKey,
} from "./serve_cluster.ts";
import { defaultDataDir, openMail } from "./serve_data.ts";
import { serveLimits, serveOptions } from "./serve_options.ts";
import { ServeSignals } from "./serve_signals.ts";
import { SERVE_OPTIONS, SERVE_USAGE } from "./serve_usage.ts";

export {
  type ClusterFlags,
  clusterFlags,
  type KeyHolder,
  reloadClusterKey,
} from "./serve_cluster.ts";
export { defaultDataDir } from "./serve_data.ts";
export { SERVE_USAGE } from "./serve_usage.ts";

/**
 * Run `im serve`.
 * @param args arguments after `serve`
 * @returns exit code
 */
export async function runServe(args: string[]): Promise<number> {
  const v = parseFlags(args, SERVE_OPTIONS, "im serve");
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
  const limits = serveLimits(v);
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
    const report = await provision(dir, {
      users: DEFAULT_USERS,
      bits: limits.bits,
    });
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
  const signals = new ServeSignals(log, {
    ready: () => server !== null,
    reload: () => reload("SIGHUP"),
  });
  signals.listen();
  let watcher: { close(): void } = { close() {} };
  let mail: SqliteMail | undefined;
  let node: { close(): Promise<void> } | undefined;
  try {
    // Every flag is read before anything is opened or created: a bad command
    // line leaves no data directory behind.
    const options = serveOptions(v, limits, keys, log);
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
    const sig = await signals.stopped;
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
    signals.close();
  }
  return 0;
}
