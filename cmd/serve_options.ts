/**
 * The {@link ServerOptions} of `im serve`'s flags, each checked against its
 * range (one usage line when it is out of it), in two steps as `runServe`
 * reads them: the limits first, before anything is opened or made
 * ({@link serveLimits}), then the rest, once the keys are loaded
 * ({@link serveOptions}).
 * @module
 */

import { MAX_HEARTBEAT_MS, MIN_HEARTBEAT_MS } from "../lib/record/mod.ts";
import type { Logger } from "../lib/util/mod.ts";
import { DEFAULT_RSA_BITS, defaultSignWorkers } from "../lib/crypto/mod.ts";
import { ROOM_MEMBERS_HARD_LIMIT } from "../lib/proto/mod.ts";
import { SERVER_DEFAULTS as D, type ServerOptions } from "../lib/server/mod.ts";
import { intFlag } from "./flags.ts";
import type { ServeFlagValues } from "./serve_usage.ts";

/** The flags `im serve` checks before it opens or makes anything. */
export interface ServeLimits {
  ipv6PrefixBits: number;
  /** RSA size of keys provisioned on a first run. */
  bits: number;
  signWorkers: number;
  mailRate: number;
  mailMaxCount: number;
  mailMaxBytes: number;
  mailRetentionDays: number;
  roomMaxMembers: number;
  roomMaxRooms: number;
}

/**
 * Read the limits: `--ipv6-prefix`, `--bits`, `--sign-workers`, the mail
 * and the room flags.
 * @param v the flags
 * @returns the values, defaults where a flag is absent
 * @throws {UsageError} `bad-flag` for a value out of its range
 */
export function serveLimits(v: ServeFlagValues): ServeLimits {
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
  return {
    ipv6PrefixBits,
    bits,
    signWorkers,
    mailRate,
    mailMaxCount,
    mailMaxBytes,
    mailRetentionDays,
    roomMaxMembers,
    roomMaxRooms,
  };
}

/**
 * The server's options from the rest of the flags, the limits, the keys and
 * the logger.
 * @param v the flags
 * @param limits what {@link serveLimits} read
 * @param keys the server's identity and the clients' keys
 * @param log where the server logs
 * @returns the options (without a store or a cluster)
 * @throws {UsageError} `bad-flag` for a value out of its range
 */
export function serveOptions(
  v: ServeFlagValues,
  limits: ServeLimits,
  keys: Pick<ServerOptions, "identity" | "clients">,
  log: Logger,
): ServerOptions {
  // --bits is for the keys provisioned on a first run, not the server's.
  const { bits: _bits, ...limitOptions } = limits;
  return {
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
    ...limitOptions,
  } satisfies ServerOptions;
}
