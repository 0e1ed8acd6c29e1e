/**
 * The keystore's one error: a {@link KeyError} that names the file or folder
 * of the key directory it is about (layout in `layout.ts`) and, where a
 * simple action fixes it, that action as data ({@link KeyFix}).
 *
 * The lib words each fix in its own terms (its hint); a front end may phrase
 * it in its own, e.g. the CLI names the `im keygen` flag that does it
 * (`cmd/hints.ts`). The code stays the same either way.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KeyError } from "../util/mod.ts";
 * import { KeyStoreError } from "./keystore_error.ts";
 * const e = new KeyStoreError("key-missing", 'Cannot read private key "k/users/G/private.pem"', "k/users/G/private.pem", {
 *   kind: "provision-user",
 *   dir: "k",
 *   user: "G",
 * });
 * assert.ok(e instanceof KeyError && e.code === "key-missing");
 * assert.equal(e.hint, 'create the key pair of "G" in "k" first');
 * ```
 * @module
 */

import { KeyError } from "../util/mod.ts";

/** What fixes a {@link KeyStoreError}, with the values a hint needs. */
export type KeyFix =
  /** The server key pair of `dir` is missing: provision it. */
  | { readonly kind: "provision-server"; readonly dir: string }
  /** The key pair of `user` in `dir` is missing: provision it. */
  | {
    readonly kind: "provision-user";
    readonly dir: string;
    readonly user: string;
  }
  /** `user` has pinned no server key in `dir`: get it, compare it, pin it. */
  | { readonly kind: "pin-server"; readonly dir: string; readonly user: string }
  /**
   * A public key does not match its private key: delete it, or replace the
   * pair (`server`: the server's pair, which is replaced on its own terms).
   */
  | {
    readonly kind: "replace-pair";
    readonly publicPath: string;
    readonly server?: boolean;
  }
  /** A public key lost its private key: delete it, or make a new pair. */
  | {
    readonly kind: "remake-pair";
    readonly publicPath: string;
    readonly server?: boolean;
  }
  /** Another key is enrolled for `user`: replace it only on purpose. */
  | { readonly kind: "replace-enrolled"; readonly user: string }
  /** `user` pinned another server key than this directory's: re-pin on purpose. */
  | { readonly kind: "repin-current"; readonly user: string }
  /** Another server key is pinned than the one given: replace it on purpose. */
  | { readonly kind: "repin-given" }
  /** The key directory cannot be created there: choose another. */
  | { readonly kind: "other-dir" }
  /** A key file cannot be written: make the directory writable, or choose another. */
  | { readonly kind: "writable-dir" }
  /** The key directory cannot be listed or checked. */
  | { readonly kind: "dir-permissions" }
  /** The file handed in is not there or not a file: give a public key file. */
  | { readonly kind: "give-public-key" }
  /** A key file's mode is too open: narrow it to `mode`. */
  | { readonly kind: "chmod"; readonly path: string; readonly mode: number }
  /**
   * A directory of the key directory is writable by group or others: narrow
   * it to `mode`, then check its files (anyone could have added or
   * replaced one meanwhile).
   */
  | { readonly kind: "chmod-dir"; readonly path: string; readonly mode: number }
  /** Deno was not granted access to the path. */
  | { readonly kind: "grant-access" }
  /**
   * Another key is pinned for `peer` (PROTOCOL.md section 6, key
   * continuity): remove the pin at `path` only once `peer` confirmed its new
   * key out of band.
   */
  | {
    readonly kind: "remove-pin";
    readonly peer: string;
    readonly path: string;
  };

/**
 * The lib's own words for a fix: no command line, no flags.
 * @param fix what fixes the error
 * @returns one line for the user
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeFix } from "./keystore_error.ts";
 * assert.equal(describeFix({ kind: "chmod", path: "k/a.pem", mode: 0o600 }), 'run "chmod 600 k/a.pem"');
 * ```
 */
export function describeFix(fix: KeyFix): string {
  switch (fix.kind) {
    case "provision-server":
      return `create the server key pair in "${fix.dir}" first`;
    case "provision-user":
      return `create the key pair of "${fix.user}" in "${fix.dir}" first`;
    case "pin-server":
      return `get the server's public.pem from its operator, compare its fingerprint, and pin it for "${fix.user}" in "${fix.dir}"`;
    case "replace-pair":
      return `delete "${fix.publicPath}" to have it rewritten, or force a new key pair`;
    case "remake-pair":
      return `delete "${fix.publicPath}", or force a new key pair`;
    case "replace-enrolled":
      return `force the enrollment to replace the enrolled key of "${fix.user}"`;
    case "repin-current":
      return `force the pin to pin the current server key for "${fix.user}"`;
    case "repin-given":
      return "if the server key really changed, force the pin to pin the new one";
    case "other-dir":
      return "choose another key directory";
    case "writable-dir":
      return "check that the key directory is writable, or choose another";
    case "dir-permissions":
      return "check the key directory's permissions";
    case "give-public-key":
      return "give the path of a PUBLIC KEY PEM file";
    case "chmod":
      return `run "chmod ${fix.mode.toString(8)} ${fix.path}"`;
    case "chmod-dir":
      return `run "chmod ${
        fix.mode.toString(8)
      } ${fix.path}", then check that every key in it is one you put there`;
    case "grant-access":
      return 'grant Deno read and write access to the key directory (README, "Deploying")';
    case "remove-pin":
      return `if ${fix.peer} really has a new key, compare its fingerprint with ${fix.peer} out of band, then remove "${fix.path}"`;
  }
}

/** A key file or folder of the key directory cannot be used as it is. */
export class KeyStoreError extends KeyError {
  /** The file or folder the error is about. */
  readonly path: string;
  /** What fixes it, if a simple action does; the hint words it. */
  readonly fix: KeyFix | undefined;
  /**
   * The permission bits found, where they are the problem
   * (`key-permissions`, `key-dir-writable`).
   */
  readonly mode: number | undefined;
  /**
   * @param code stable kebab-case code (`key-missing`, `key-mismatch`, ...)
   * @param message sentence case, no full stop, the path quoted
   * @param path the file or folder
   * @param fix what fixes it, if a simple action does
   * @param mode the permission bits found, when they are the problem
   */
  constructor(
    code: string,
    message: string,
    path: string,
    fix?: KeyFix,
    mode?: number,
  ) {
    super(code, message, fix && describeFix(fix));
    this.path = path;
    this.fix = fix;
    this.mode = mode;
  }
}
