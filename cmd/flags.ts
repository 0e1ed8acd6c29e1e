/**
 * Command-line helpers shared by the subcommands: strict flag parsing with
 * `node:util` parseArgs whose failures become one {@link UsageError}, and
 * checked numbers and addresses.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFlags } from "./flags.ts";
 * const v = parseFlags(["--port", "1"], { port: { type: "string" } }, "im serve");
 * assert.ok(v.port === "1");
 * ```
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { isImError, UsageError } from "../lib/util/mod.ts";

/**
 * Codes of lib errors that say a value breaks its rule (`bad-username`, rule
 * 2.9; `bad-bits`, an RSA size out of range). The lib throws them as the
 * domain's error; when the value came from a flag, they are usage errors.
 */
const FLAG_VALUE_CODES: ReadonlySet<string> = new Set([
  "bad-username",
  "bad-bits",
]);

/**
 * Parse flags strictly; no positionals. Every subcommand parses with it, so
 * on every one: an unknown flag is an error, a flag that takes one value
 * may be given once (`--user A --user B` is an error, not the last one
 * winning), and a value that looks like a negative number is the flag's
 * value (`--reconnect-base -5` reaches the flag's own range check instead
 * of reading as a missing value).
 * @param args the arguments after the subcommand
 * @param options parseArgs option table
 * @param command e.g. `im serve`, for the hint
 * @returns the values
 * @throws {UsageError} `bad-flag` naming the flag
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseFlags } from "./flags.ts";
 * assert.throws(() => parseFlags(["--nope"], {}, "im x"), { name: "UsageError" });
 * const opts = { port: { type: "string" } } as const;
 * assert.throws(() => parseFlags(["--port", "1", "--port", "2"], opts, "im x"), /more than once/);
 * assert.equal(parseFlags(["--port", "-5"], opts, "im x").port, "-5");
 * ```
 */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
  command: string,
) {
  const hint = `run "${command} --help"`;
  let parsed;
  try {
    parsed = parseArgs({
      args: negativeValuesJoined(args, options),
      options,
      strict: true,
      allowPositionals: false,
      tokens: true,
    });
  } catch (e) {
    throw parseFailure(e, hint);
  }
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== "option" || options[t.name]?.multiple) continue;
    if (seen.has(t.name)) {
      throw new UsageError(
        "bad-flag",
        `Flag "${t.rawName}" is given more than once`,
        hint,
      );
    }
    seen.add(t.name);
  }
  return parsed.values;
}

/** A value such as `-5` or `-1.5`: a negative number, never a flag. */
const NEGATIVE_NUMBER = /^-[0-9.]/;

/**
 * `--flag -5` as `--flag=-5` for a flag that takes a value, so parseArgs
 * does not take `-5` for a short flag and the value gets its own check.
 * Nothing after a `--` is touched.
 */
function negativeValuesJoined(
  args: readonly string[],
  options: NonNullable<ParseArgsConfig["options"]>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = args[i + 1];
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : "";
    if (
      name !== "" && Object.hasOwn(options, name) &&
      options[name]?.type === "string" &&
      next !== undefined && NEGATIVE_NUMBER.test(next)
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** A parseArgs failure as the one {@link UsageError} the CLI prints. */
function parseFailure(e: unknown, hint: string): UsageError {
  const code = (e as { code?: string }).code;
  const msg = e instanceof Error ? e.message : String(e);
  const flag = (/'([^']*)'/.exec(msg)?.[1] ?? "").replace(/ <value>$/, "");
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    return new UsageError("bad-flag", `Unknown flag "${flag}"`, hint);
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    return new UsageError("bad-flag", `Unexpected argument "${flag}"`, hint);
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const what = /does not take an argument/.test(msg)
      ? "takes no value"
      : "needs a value";
    return new UsageError("bad-flag", `Flag "${flag}" ${what}`, hint);
  }
  return new UsageError(
    "bad-flag",
    `Cannot parse the command line: ${msg}`,
    hint,
  );
}

/**
 * A whole number flag within bounds.
 * @param flag its name, e.g. `--port`
 * @param text the value given, or undefined
 * @param fallback value when not given
 * @param min smallest allowed
 * @param max largest allowed
 * @returns the number
 * @throws {UsageError} `bad-flag`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { intFlag } from "./flags.ts";
 * assert.ok(intFlag("--port", "80", 1, 0, 65535) === 80);
 * ```
 */
export function intFlag(
  flag: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const n = /^[0-9]{1,12}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) {
    throw new UsageError(
      "bad-flag",
      `Invalid ${flag} "${
        text.slice(0, 40)
      }": expected a whole number from ${min} to ${max}`,
    );
  }
  return n;
}

/**
 * Parse `host:port` (`[::1]:9876` for IPv6).
 * @param flag its name, for the message
 * @param text the value
 * @returns host and port
 * @throws {UsageError} `bad-flag`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostPort } from "./flags.ts";
 * assert.ok(hostPort("--server", "127.0.0.1:9876").port === 9876);
 * ```
 */
export function hostPort(
  flag: string,
  text: string,
): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new UsageError(
      "bad-flag",
      `Invalid ${flag} "${
        text.slice(0, 60)
      }": expected host:port, e.g. 127.0.0.1:9876`,
    );
  }
  return { host: (m[1] ?? m[2])!, port };
}

/**
 * A lib error about a value the user gave as a flag, as the
 * {@link UsageError} it is on the command line (exit code 2); anything else
 * as it is. Use it only where every such value came from a flag: a server's
 * refusal of a username is not a usage error.
 * @param e anything thrown
 * @returns a {@link UsageError} with the same code, message and hint, or `e`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AuthError, UsageError } from "../lib/util/mod.ts";
 * import { asUsageError } from "./flags.ts";
 * const e = asUsageError(new AuthError("bad-username", 'Invalid username "../x"'));
 * assert.ok(e instanceof UsageError && e.code === "bad-username");
 * assert.ok(!(asUsageError(new AuthError("login-failed", "x")) instanceof UsageError));
 * ```
 */
export function asUsageError(e: unknown): unknown {
  if (
    isImError(e) && !(e instanceof UsageError) && FLAG_VALUE_CODES.has(e.code)
  ) {
    return new UsageError(e.code, e.message, e.hint);
  }
  return e;
}

/**
 * Check a flag's value with a lib check; its failure is a usage error.
 * @param check e.g. `() => checkUsername(v.user)`
 * @returns what the check returns
 * @throws {UsageError} for a value that breaks its rule (see {@link asUsageError})
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkUsername } from "../lib/proto/mod.ts";
 * import { flagValue } from "./flags.ts";
 * assert.throws(() => flagValue(() => checkUsername("../etc")), { name: "UsageError" });
 * ```
 */
export function flagValue<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw asUsageError(e);
  }
}
