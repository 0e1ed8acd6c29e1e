/**
 * The hints that name `im`'s flags and subcommands. `lib/` never names them
 * (it does not know it runs under this command line): its errors carry a
 * stable `code`, values as typed fields (a {@link KeyStoreError}'s `fix`),
 * and at most a hint in its own words. This table turns them into the
 * `im: hint: ...` line that says which flag does it.
 *
 * Precedence, for an error about to be printed:
 * 1. a {@link KeyStoreError} whose `fix` is done with a flag: this file's
 *    words for that fix;
 * 2. an error whose class and code are in {@link CODE_HINTS}: that hint;
 * 3. otherwise the error's own hint, if it has one.
 *
 * So a hint from this file replaces the lib's: the lib's says what to do,
 * this one says how to ask `im` for it. An error neither knows keeps its own.
 * It is applied at the edge: `main.ts` prints {@link cliHint} of what a
 * subcommand threw, and `runKeygen` (which tests call directly) throws
 * {@link withCliHint} of it. A hint names the flag of the subcommand that
 * ran: the key directory is `--keys` for `im serve` and `im chat` (the
 * default) and `--dir` for `im keygen`, which gives its errors their hint
 * itself; an error that already carries the CLI's hint keeps it.
 * The match is on class and code together, because one code can come from
 * two places: a `login-timeout` of the client's own clock is a
 * {@link NetError} (check the address), the server's ERROR frame of the same
 * name a `ProtocolError` (no advice).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NetError } from "../lib/util/mod.ts";
 * import { cliHint } from "./hints.ts";
 * const e = new NetError("port-in-use", "Cannot listen on 127.0.0.1:9876: the port is in use");
 * assert.equal(cliHint(e), "stop the other server or choose another --port");
 * ```
 * @module
 */

import {
  AuthError,
  type ImError,
  isImError,
  KeyError,
  NetError,
} from "../lib/util/mod.ts";
import { DEFAULT_RSA_BITS } from "../lib/crypto/mod.ts";
import { type KeyFix, KeyStoreError } from "../lib/keystore/mod.ts";

/** One row of {@link CODE_HINTS}. */
export interface CodeHint {
  /** The error's class (a subclass matches too). */
  readonly cls: typeof ImError;
  /** The error's stable code. */
  readonly code: string;
  /** The line printed after `im: hint: `. */
  readonly hint: string;
}

/** Hints by class and code, for errors whose advice needs no value. */
export const CODE_HINTS: readonly CodeHint[] = [
  {
    cls: NetError,
    code: "connect-failed",
    hint: "is the server running? start it with: im serve",
  },
  {
    cls: NetError,
    code: "login-timeout",
    hint: "is the server running and reachable? check --server",
  },
  {
    cls: NetError,
    code: "server-closed",
    hint: "is it an im server? check --server",
  },
  {
    cls: NetError,
    code: "port-in-use",
    hint: "stop the other server or choose another --port",
  },
  {
    cls: AuthError,
    code: "login-failed",
    hint:
      "check --user and that your private key is the one enrolled on the server",
  },
  {
    cls: AuthError,
    code: "server-key-mismatch",
    hint:
      "if the server key really changed, get its public key from the operator and pin it with im keygen --pin",
  },
  {
    cls: KeyError,
    code: "bad-key-size",
    hint: `generate a new key with "im keygen --bits ${DEFAULT_RSA_BITS}"`,
  },
  {
    cls: KeyError,
    code: "not-rsa",
    hint: 'generate an RSA key with "im keygen"',
  },
];

/**
 * When Deno itself refuses a permission (an error that is not an
 * {@link ImError}): how `im` is meant to be run.
 */
export const DENO_PERMISSION_HINT =
  'run through "deno task im", which grants the permissions im needs';

/**
 * The flag that names the key directory in the subcommand that ran:
 * `--keys` for `im serve` and `im chat`, `--dir` for `im keygen`.
 */
export type KeyDirFlag = "--keys" | "--dir";

/** Marks an error whose hint is already the CLI's ({@link withCliHint}). */
const CLI_HINTED: unique symbol = Symbol("im.cliHinted");

/**
 * The CLI's words for a keystore fix, or undefined when the lib's words
 * name no flag and stand as they are.
 * @param fix what fixes the error
 * @param keyDir the key directory flag of the subcommand that ran
 * @returns the hint, if the fix is done with a flag
 */
function fixHint(fix: KeyFix, keyDir: KeyDirFlag): string | undefined {
  switch (fix.kind) {
    case "provision-server":
      return `run "im keygen --dir ${fix.dir}" first`;
    case "provision-user":
      return `run "im keygen --dir ${fix.dir} --user ${fix.user}" first`;
    case "pin-server":
      return `get the server's public.pem from its operator, compare its fingerprint, and run "im keygen --dir ${fix.dir} --pin FILE --user ${fix.user}"`;
    case "replace-pair":
      return `delete "${fix.publicPath}" to have it rewritten, or use ${
        forceFlag(fix)
      } to replace the key pair`;
    case "remake-pair":
      return `delete "${fix.publicPath}", or use ${
        forceFlag(fix)
      } to make a new key pair`;
    case "replace-enrolled":
      return `use --force to replace the enrolled key of "${fix.user}"`;
    case "repin-current":
      return `use --force to pin the current server key for "${fix.user}"`;
    case "repin-given":
      return "if the server key really changed, use --force to pin the new one";
    case "other-dir":
      return `choose another directory with ${keyDir}`;
    case "writable-dir":
      return `check that the key directory is writable, or use ${keyDir}`;
    case "grant-access":
      return '"deno task im" may only use keys/ in the checkout: put the file there, or run main.ts with deno run --allow-net --allow-read=DIR --allow-write=DIR --allow-env=IM_KEYS,NO_COLOR,IM_DEBUG (README, "Deploying")';
    case "dir-permissions":
    case "give-public-key":
    case "chmod":
    case "chmod-dir":
      return undefined;
  }
}

/** `--force-server` for the server's key pair, else `--force`. */
function forceFlag(fix: { readonly server?: boolean }): string {
  return fix.server ? "--force-server" : "--force";
}

/**
 * The hint to print for an error, by the precedence of the module doc.
 * @param e an error of `im`
 * @param keyDir the key directory flag of the subcommand that ran
 *   (default `--keys`, that of `im serve` and `im chat`)
 * @returns the hint line's text, or undefined for none
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KeyStoreError } from "../lib/keystore/mod.ts";
 * import { cliHint } from "./hints.ts";
 * const e = new KeyStoreError("key-missing", "Cannot read", "k/server/private.pem", { kind: "provision-server", dir: "k" });
 * assert.equal(cliHint(e), 'run "im keygen --dir k" first');
 * ```
 */
export function cliHint(
  e: ImError,
  keyDir: KeyDirFlag = "--keys",
): string | undefined {
  if ((e as { [CLI_HINTED]?: boolean })[CLI_HINTED]) return e.hint;
  if (e instanceof KeyStoreError && e.fix !== undefined) {
    const hint = fixHint(e.fix, keyDir);
    if (hint !== undefined) return hint;
  }
  const row = CODE_HINTS.find((r) => e instanceof r.cls && e.code === r.code);
  return row?.hint ?? e.hint;
}

/**
 * An error as the CLI reports it: for an {@link ImError}, a copy whose
 * `hint` is {@link cliHint} (class, code, message and fields kept; the
 * original is not changed, in case something else holds it), marked so that
 * a later {@link cliHint} keeps that hint; anything else as it is.
 * @param e anything thrown
 * @param keyDir the key directory flag of the subcommand that ran
 * @returns `e`, or its copy with the CLI's hint
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AuthError } from "../lib/util/mod.ts";
 * import { withCliHint } from "./hints.ts";
 * const e = withCliHint(new AuthError("login-failed", "Server refused the login", "check the username"));
 * assert.ok(e instanceof AuthError);
 * assert.match(e.hint ?? "", /check --user/);
 * ```
 */
export function withCliHint<T>(e: T, keyDir: KeyDirFlag = "--keys"): T {
  if (!isImError(e)) return e;
  const hint = cliHint(e, keyDir);
  if (hint === e.hint) return e;
  return Object.create(Object.getPrototypeOf(e), {
    ...Object.getOwnPropertyDescriptors(e),
    // V8's `stack` is an accessor bound to the original: copy its value.
    stack: { value: e.stack, writable: true, configurable: true },
    hint: { value: hint, enumerable: true, writable: false },
    [CLI_HINTED]: { value: true },
  });
}
