/**
 * `im keygen`: flags -> {@link provision}, {@link provisionPublicOnly},
 * {@link enroll} or {@link pinServerKey}. Prints one line per key to stdout:
 * `created   users/A/private.pem  SHA256:...`.
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
  KEY_LAYOUT,
  keyPath,
  pinServerKey,
  provision,
  type ProvisionEntry,
  provisionPublicOnly,
} from "../lib/keystore/mod.ts";

/** Help text of `im keygen`. */
export const KEYGEN_USAGE: string = `Usage: im keygen [options]

Create the key directory: the server key pair, a key pair for each user,
the server's directory of user public keys, and each user's pinned copy of
the server public key. Existing keys are kept; adding a user leaves the
others untouched.

Options:
  --dir DIR             key directory (default: $IM_KEYS, else "keys")
  --bits N              RSA size of new keys, ${MIN_RSA_BITS}..${MAX_RSA_BITS} (default ${DEFAULT_RSA_BITS})
  --users A,B,...       users to provision (default: ${
  DEFAULT_USERS.join(",")
});
                        --users "" makes only the server key
  --user NAME           provision one user
  --force               replace the listed users' existing keys; without
                        --user or --users, replace the server key as well
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
    forbid("--enroll", v, ["pin", "public-only", "users", "user"]);
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
    forbid("--pin", v, ["public-only", "users"]);
    const user = need("--pin", v.user, "--user NAME");
    printEntries(io, [await pinServerKey(dir, user, v.pin, force)]);
    return 0;
  }
  if (v["public-only"]) {
    forbid("--public-only", v, ["users"]);
    const user = need("--public-only", v.user, "--user NAME");
    const r = await provisionPublicOnly(dir, user, bits, force);
    printEntries(io, r.entries);
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
  const r = await provision(dir, {
    users: named ?? DEFAULT_USERS,
    bits,
    force,
    forceServer: force && named === undefined,
  });
  printEntries(io, r.entries);
  return 0;
}
