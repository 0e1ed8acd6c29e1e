/**
 * `im keygen`: flags -> {@link provision}, {@link provisionPublicOnly},
 * {@link enroll} or {@link pinServerKey}. Prints one line per key to stdout:
 * `created   users/A/private.pem  SHA256:...` (`replaced` where a key pair
 * was written over an existing one), and to stderr what must happen next
 * when a key that others rely on was replaced.
 *
 * Replacing keys is asked for by name: `--force` replaces the keys of the
 * users that `--user` or `--users` names, and nothing else; the server key
 * only with `--force-server`, since every user and a running server rely on
 * it (issue 11 item 2: `--force` alone used to replace every key at once).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runKeygen } from "./keygen.ts";
 * const out: string[] = [];
 * const code = await runKeygen(["--help"], { out: (l) => out.push(l), err: () => {} });
 * assert.equal(code, 0);
 * assert.match(out.join("\n"), /Usage: im keygen/);
 * ```
 * @module
 */

import { asUsageError, parseFlags } from "./flags.ts";
import { withCliHint } from "./hints.ts";
import { UsageError } from "../lib/util/mod.ts";
import {
  DEFAULT_RSA_BITS,
  MAX_RSA_BITS,
  MIN_RSA_BITS,
} from "../lib/crypto/mod.ts";
import {
  DEFAULT_USERS,
  defaultKeyDir,
  enroll,
  ensureClusterKey,
  KEY_LAYOUT,
  keyPath,
  pinServerKey,
  provision,
  type ProvisionEntry,
  provisionPublicOnly,
} from "../lib/keystore/mod.ts";

/** Help text of `im keygen`. */
export const KEYGEN_USAGE: string = `Usage: im keygen [options]

Create the key directory: the server key pair, the cluster key
(server/cluster.key, for "im serve --cluster": copy it to every node), a
key pair for each user, the server's directory of user public keys, and
each user's pinned copy of the server public key. Existing keys are kept;
adding a user leaves the others untouched.

Options:
  --dir DIR             key directory (default: $IM_KEYS, else "keys")
  --bits N              RSA size of new keys, ${MIN_RSA_BITS}..${MAX_RSA_BITS} (default ${DEFAULT_RSA_BITS})
  --users A,B,...       users to provision (default: ${
  DEFAULT_USERS.join(",")
});
                        --users "" makes only the server key
  --user NAME           provision one user
  --force               replace the key pairs of the users named by --user
                        or --users (needs one of them)
  --force-server        replace the server key pair; every local user is
                        re-pinned, and the running server must be restarted
  --public-only         with --user: only the user's key pair, on the
                        user's own machine
  --enroll NAME --public FILE
                        on the server: enroll NAME's public key FILE
  --pin FILE --user NAME
                        on the user's machine: pin the server public key FILE
  -h, --help            show this help

Two machines:
  user$    im keygen --public-only --user G     then send users/G/public.pem
  server$  im keygen --enroll G --public G.pem  then send server/public.pem
  user$    im keygen --pin server.pem --user G
Compare the printed fingerprints over a channel you trust.
`;

/** Where {@link runKeygen} writes: data lines to `out`, hints to `err`. */
export interface KeygenIo {
  /** One line of data (stdout). */
  out(line: string): void;
  /** One line of advice (stderr). */
  err(line: string): void;
}

const consoleIo: KeygenIo = {
  out: (l) => console.log(l),
  err: (l) => console.error(l),
};

const OPTIONS = {
  dir: { type: "string" },
  bits: { type: "string" },
  users: { type: "string" },
  user: { type: "string" },
  force: { type: "boolean" },
  "force-server": { type: "boolean" },
  "public-only": { type: "boolean" },
  enroll: { type: "string" },
  public: { type: "string" },
  pin: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const HELP_HINT = 'run "im keygen --help"';

function parseBits(text: string | undefined): number {
  if (text === undefined) return DEFAULT_RSA_BITS;
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= MIN_RSA_BITS && n <= MAX_RSA_BITS)) {
    throw new UsageError(
      "bad-bits",
      `Invalid --bits "${text}": expected an integer from ${MIN_RSA_BITS} to ${MAX_RSA_BITS}`,
    );
  }
  return n;
}

function forbid(
  mode: string,
  given: Record<string, unknown>,
  names: string[],
): void {
  for (const n of names) {
    if (given[n] !== undefined) {
      throw new UsageError(
        "bad-flag",
        `Flag "--${n}" cannot be used with "${mode}"`,
        HELP_HINT,
      );
    }
  }
}

function need(mode: string, value: string | undefined, flag: string): string {
  if (value === undefined) {
    throw new UsageError(
      "bad-flag",
      `"${mode}" needs "${flag}"`,
      HELP_HINT,
    );
  }
  return value;
}

function printEntries(io: KeygenIo, entries: readonly ProvisionEntry[]): void {
  const width = Math.max(0, ...entries.map((e) => e.path.length));
  for (const e of entries) {
    io.out(`${e.action.padEnd(9)}${e.path.padEnd(width + 2)}${e.fingerprint}`);
  }
}

/** The user whose key pair `path` is (`users/A/private.pem`), if it is one. */
function pairOwner(path: string): string | undefined {
  return /^users\/([^/]+)\/private\.pem$/.exec(path)?.[1];
}

/**
 * What the user must do after keys were replaced: a new server key reaches
 * a running server only when it restarts (SIGHUP re-reads the users' keys,
 * not its own), and every user whose keys live elsewhere must pin it; a
 * user's new key logs in once the server has its enrollment, and the old
 * one no longer does.
 * @param io where to write (stderr)
 * @param dir the key directory
 * @param entries what was done
 */
function printNextSteps(
  io: KeygenIo,
  dir: string,
  entries: readonly ProvisionEntry[],
): void {
  const replaced = entries.filter((e) => e.action === "replaced");
  const server = replaced.find((e) => e.path === KEY_LAYOUT.serverPrivate);
  if (server) {
    io.err(
      `im: hint: the server key was replaced (now ${server.fingerprint}): restart "im serve" (a running server keeps the old key, and SIGHUP does not reload it); give "${
        keyPath(dir, KEY_LAYOUT.serverPublic)
      }" to every user whose keys are not in "${dir}", who runs "im keygen --pin FILE --user NAME --force" after comparing the fingerprint`,
    );
  }
  const users = replaced.map((e) => pairOwner(e.path)).filter((u) =>
    u !== undefined
  );
  if (users.length > 0) {
    const one = users.length === 1 ? users[0]! : undefined;
    const whose = one === undefined
      ? `the old keys of ${users.join(", ")} no longer log in: give each user`
      : `the old key of ${one} no longer logs in: give ${one}`;
    io.err(
      `im: hint: ${whose} the new "${
        keyPath(dir, KEY_LAYOUT.userDir(one ?? "NAME"))
      }" directory; a running server picks up the new enrollment by itself (with --no-watch: send it SIGHUP)`,
    );
  }
}

/**
 * Run `im keygen` with the arguments after the subcommand.
 * @param args command-line arguments, e.g. `["--user", "G", "--bits", "2048"]`
 * @param io where to print (default: stdout and stderr)
 * @returns the exit code, 0 on success
 * @throws {UsageError} `bad-flag`, `bad-bits`, `bad-username` for bad input
 * @throws {KeyError} unreadable, malformed or conflicting key files; unwritable directory
 *   (hints name the flag that fixes it; `cmd/hints.ts`)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runKeygen } from "./keygen.ts";
 * const err = await runKeygen(["--bits", "banana"]).catch((e) => e);
 * assert.equal(err.code, "bad-bits");
 * ```
 */
export async function runKeygen(
  args: string[],
  io: KeygenIo = consoleIo,
): Promise<number> {
  try {
    return await keygen(args, io);
  } catch (e) {
    // Every username and size here came from a flag.
    throw withCliHint(asUsageError(e), "--dir");
  }
}

async function keygen(args: string[], io: KeygenIo): Promise<number> {
  const v = parseFlags(args, OPTIONS, "im keygen");
  if (v.help) {
    io.out(KEYGEN_USAGE.trimEnd());
    return 0;
  }
  const bits = parseBits(v.bits);
  const dir = v.dir ?? defaultKeyDir();
  const force = v.force ?? false;

  if (v.enroll !== undefined) {
    forbid("--enroll", v, [
      "pin",
      "public-only",
      "users",
      "user",
      "force-server",
    ]);
    const file = need("--enroll", v.public, "--public FILE");
    const r = await enroll(dir, v.enroll, file, { force, bits });
    printEntries(io, r.entries);
    io.err(
      `im: hint: send "${r.serverPublicPath}" (${r.serverFingerprint}) to ${v.enroll}, who runs "im keygen --pin FILE --user ${v.enroll}"`,
    );
    return 0;
  }
  if (v.public !== undefined) {
    throw new UsageError(
      "bad-flag",
      `"--public" needs "--enroll NAME"`,
      HELP_HINT,
    );
  }
  if (v.pin !== undefined) {
    forbid("--pin", v, ["public-only", "users", "force-server"]);
    const user = need("--pin", v.user, "--user NAME");
    printEntries(io, [await pinServerKey(dir, user, v.pin, force)]);
    return 0;
  }
  if (v["public-only"]) {
    forbid("--public-only", v, ["users", "force-server"]);
    const user = need("--public-only", v.user, "--user NAME");
    const r = await provisionPublicOnly(dir, user, bits, force);
    printEntries(io, r.entries);
    if (r.entries.some((e) => e.action === "replaced")) {
      io.err(
        `im: hint: the old key of ${user} no longer logs in once the server has the new one`,
      );
    }
    io.err(
      `im: hint: send "${
        keyPath(dir, KEY_LAYOUT.userPublic(user))
      }" to the server operator, who runs "im keygen --enroll ${user} --public FILE"`,
    );
    return 0;
  }
  if (v.user !== undefined && v.users !== undefined) {
    throw new UsageError(
      "bad-flag",
      `Flags "--user" and "--users" cannot be used together`,
      HELP_HINT,
    );
  }
  const named = v.user !== undefined
    ? [v.user]
    : v.users !== undefined
    ? (v.users === "" ? [] : v.users.split(",").map((u) => u.trim()))
    : undefined;
  if (force && named === undefined) {
    throw new UsageError(
      "bad-flag",
      `"--force" needs "--user NAME" or "--users A,B": it replaces only the keys of the users it names`,
      "to replace the server key, use --force-server (every user must then pin the new one)",
    );
  }
  const r = await provision(dir, {
    users: named ?? DEFAULT_USERS,
    bits,
    force,
    forceServer: v["force-server"] ?? false,
  });
  // PROTOCOL.md 11.1: the cluster key goes with the server's keys (kept
  // when there, even with --force-server: every node holds the same one).
  const cluster = await ensureClusterKey(dir);
  const serverLines = r.entries.findIndex((e) =>
    e.path !== KEY_LAYOUT.serverPrivate && e.path !== KEY_LAYOUT.serverPublic
  );
  const at = serverLines < 0 ? r.entries.length : serverLines;
  printEntries(io, [
    ...r.entries.slice(0, at),
    cluster,
    ...r.entries.slice(at),
  ]);
  printNextSteps(io, dir, r.entries);
  return 0;
}
