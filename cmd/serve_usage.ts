/**
 * What `im serve` accepts: its help text ({@link SERVE_USAGE}) and its
 * flags ({@link SERVE_OPTIONS}), with the defaults and ranges the help
 * shows.
 * @module
 */

import { DEFAULT_RSA_BITS, defaultSignWorkers } from "../lib/crypto/mod.ts";
import { ROOM_MEMBERS_HARD_LIMIT } from "../lib/proto/mod.ts";
import { DEFAULT_USERS } from "../lib/keystore/mod.ts";
import { MAIL_DB_FILE, SERVER_DEFAULTS as D } from "../lib/server/mod.ts";

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

/** The flags of `im serve`, as `parseFlags` takes them. */
export const SERVE_OPTIONS = {
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

/** The flags of `im serve`, as `parseFlags` gives them. */
export type ServeFlagValues = {
  readonly [K in keyof typeof SERVE_OPTIONS]?: (typeof SERVE_OPTIONS)[K] extends
    { type: "boolean" } ? boolean | undefined
    : string | undefined;
};
