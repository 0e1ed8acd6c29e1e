/**
 * {@link MailDir}: the client's mail folder in the key directory
 * (PROTOCOL.md section 9.1 "At rest"): where each file of `mail/` lies, the
 * folders on the way to it and to `peers/`, the folder made on the first
 * write, and the one queue the vault's calls run in, in turn.
 * @module
 */

import { join } from "node:path";
import { ensureDir } from "./_files.ts";
import { KEY_LAYOUT as L, keyPath } from "./layout.ts";

/** The mail folder of one user, and the queue its writes run in. */
export class MailDir {
  /** The key directory. */
  readonly dir: string;
  /** The user whose mailbox it is. */
  readonly me: string;
  /** `<dir>/users/<me>/mail`. */
  readonly mail: string;
  #made = false;
  #queue: Promise<unknown> = Promise.resolve();

  /**
   * @param dir the key directory
   * @param me the user whose mailbox it is
   */
  constructor(dir: string, me: string) {
    this.dir = dir;
    this.me = me;
    this.mail = keyPath(dir, L.userMail(me));
  }

  /** A file of `mail/`. */
  path(name: string): string {
    return join(this.mail, name);
  }

  /** The folders from the key directory down to `mail/`. */
  mailDirs(): string[] {
    const me = this.me, d = this.dir;
    return [d, keyPath(d, L.usersDir), keyPath(d, L.userDir(me)), this.mail];
  }

  /** The folders from the key directory down to `peers/`. */
  peerDirs(): string[] {
    const outer = this.mailDirs().slice(0, -1); // all but mail/
    return [...outer, keyPath(this.dir, L.userPeers(this.me))];
  }

  /** `mail/` exists and was checked (at open). */
  markMade(): void {
    this.#made = true;
  }

  /** Make `mail/` and the folders on the way, once. */
  async make(): Promise<void> {
    if (this.#made) return;
    for (const d of this.mailDirs()) await ensureDir(d);
    this.#made = true;
  }

  /**
   * Run `f` after every call queued before it (whether that one failed).
   * @param f the work
   * @returns what `f` gives
   */
  serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f, f);
    this.#queue = run.catch(() => {});
    return run;
  }
}
