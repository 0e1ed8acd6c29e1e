/**
 * `im serve`: flags -> {@link ImServer}. Provisions default keys on a first
 * run, keeps the mailboxes and the rooms in a SQLite file under `--data`
 * (PROTOCOL.md 9.9, 10.4), logs to stderr (or JSON lines to stdout), stops cleanly on Ctrl-C or
 * SIGTERM, and re-reads the client key directory on SIGHUP.
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { MAX_HEARTBEAT_MS, MIN_HEARTBEAT_MS } from "../lib/record/mod.ts";
import { intFlag, parseFlags } from "./flags.ts";
import { createLogger, ImError, UsageError } from "../lib/util/mod.ts";
import { DEFAULT_RSA_BITS } from "../lib/crypto/mod.ts";
import { ROOM_MEMBERS_HARD_LIMIT } from "../lib/proto/mod.ts";
import {
  DEFAULT_USERS,
  defaultKeyDir,
  loadClientDirectory,
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
  --data DIR              where the mailboxes are kept, in DIR/${MAIL_DB_FILE}
                          (default data/ beside a key directory named
                          keys, else <name>-data/ beside it)
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
  -h, --help              this help

On a first run with no server key in the key directory, it provisions the
server and the users ${
  DEFAULT_USERS.join(", ")
} (as "im keygen" does) and says so.
Signals: Ctrl-C or SIGTERM stops it (clients are told); SIGHUP re-reads
the client key directory (added users can log in, removed ones are cut off).
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
  help: { type: "boolean", short: "h" },
} as const;

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
            "im serve: SIGHUP: re-reading the client keys\n",
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
    } satisfies ServerOptions;
    mail = await openMail(dataDir);
    server = await ImServer.start({
      ...options,
      store: mail.store,
      prekeys: mail.prekeys,
      rooms: mail.rooms,
    });
    log("mail-store", { path: join(dataDir, MAIL_DB_FILE) });
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
    // After the server: every stored mail was committed, none is half written.
    await mail?.close();
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
    Deno.removeSignalListener("SIGHUP", sighup);
  }
  return 0;
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
