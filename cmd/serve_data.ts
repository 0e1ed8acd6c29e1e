/**
 * Where `im serve` keeps the mailboxes and the rooms without `--cluster`
 * (PROTOCOL.md 9.9, 10.4): the data directory beside the key directory
 * ({@link defaultDataDir}) and the SQLite file in it ({@link openMail}).
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { ImError } from "../lib/util/mod.ts";
import { MAIL_DB_FILE, SqliteMail } from "../lib/server/mod.ts";

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
export async function openMail(dir: string): Promise<SqliteMail> {
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
