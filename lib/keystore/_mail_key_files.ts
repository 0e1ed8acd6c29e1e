/**
 * {@link MailKeyFiles}: the client's own mailbox keys at rest (PROTOCOL.md
 * section 9.1 "At rest"): the id counters in `state`, the identity key, the
 * signed prekeys and the one-time prekeys, each private key beside the
 * certificate that holds its public half (checked when read,
 * `key-mismatch`).
 * @module
 */

import type {
  MailIdentity,
  OneTimePrekey,
  SignedPrekey,
} from "../proto/mod.ts";
import { wipe } from "../util/mod.ts";
import type { MailDir } from "./_mail_dir.ts";
import {
  exportPrivate,
  listDir,
  readMailFile,
  readPrivate,
  removeFile,
  syncDir,
  writeFiles,
} from "./_mail_files.ts";
import {
  badValue,
  checkCert,
  checkId,
  checkTime,
  encodeIdentityCert,
  encodeSignedPrekeyCert,
  encodeState,
  MAIL_FILE,
  MAX_ID,
  parseIdentityCert,
  parseSignedPrekeyCert,
  parseState,
  raiseNextIds,
  signedPrekeyIds,
} from "./_mail_records.ts";
import { KeyStoreError } from "./keystore_error.ts";

/** The mailbox's own keys and their ids, in files of `mail/`. */
export class MailKeyFiles {
  readonly #d: MailDir;
  #next = { spk: 1, opk: 1 };
  #identity: MailIdentity | undefined;
  #spks: SignedPrekey[] | undefined;

  /** @param d the mail folder */
  constructor(d: MailDir) {
    this.#d = d;
  }

  /**
   * Read `state`, and raise the counters above every id a file holds (so an
   * id is never reused even if `state` is lost).
   * @param names the files of `mail/`
   */
  async loadState(names: Set<string>): Promise<void> {
    const path = this.#d.path("state");
    const bytes = await readMailFile(path, MAIL_FILE.state);
    if (bytes) this.#next = parseState(path, bytes);
    raiseNextIds(this.#next, names);
  }

  // ---- ids

  async allocateIds(kind: "spk" | "opk", count: number): Promise<number> {
    if (kind !== "spk" && kind !== "opk") {
      throw badValue(`kind: expected "spk" or "opk", got "${kind}"`);
    }
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_ID) {
      throw badValue(`count: expected 1 to ${MAX_ID}, got ${count}`);
    }
    return await this.#d.serial(async () => {
      const first = this.#next[kind];
      // The next id is written as a u32 too: it must stay at most MAX_ID.
      if (first + count > MAX_ID) {
        throw new KeyStoreError(
          "mail-ids-exhausted",
          `Cannot take ${count} ${kind} ids: the next is ${first} and ids end at ${MAX_ID}`,
          this.#d.path("state"),
        );
      }
      const next = { ...this.#next, [kind]: first + count };
      await this.#d.make();
      await writeFiles([{
        path: this.#d.path("state"),
        bytes: encodeState(next),
      }]);
      this.#next = next;
      return first;
    });
  }

  // ---- identity

  async identity(): Promise<MailIdentity | undefined> {
    return await this.#d.serial(async () => {
      if (this.#identity) return this.#identity;
      const certPath = this.#d.path("identity.cert");
      const bytes = await readMailFile(certPath, MAIL_FILE.identityCert);
      if (!bytes) return undefined;
      const { created, publicRaw, cert } = parseIdentityCert(certPath, bytes);
      const pair = await readPrivate(
        this.#d.path("identity.pem"),
        publicRaw,
        certPath,
      );
      this.#identity = { pair, cert, created };
      return this.#identity;
    });
  }

  async saveIdentity(id: MailIdentity): Promise<void> {
    checkTime("created", id.created);
    checkCert("cert", id.cert);
    return await this.#d.serial(async () => {
      const pem = await exportPrivate(id.pair);
      await this.#d.make();
      // The old certificate goes first: a crash in between leaves no
      // identity (made again), never a key beside another key's certificate.
      this.#identity = undefined;
      const certPath = this.#d.path("identity.cert");
      await removeFile(certPath);
      await writeFiles([{ path: this.#d.path("identity.pem"), bytes: pem }]);
      wipe(pem);
      await writeFiles([{ path: certPath, bytes: encodeIdentityCert(id) }]);
    });
  }

  // ---- signed prekeys

  async signedPrekeys(): Promise<SignedPrekey[]> {
    return await this.#d.serial(async () => {
      if (this.#spks) return [...this.#spks];
      const ids = signedPrekeyIds((await listDir(this.#d.mail)) ?? []);
      const spks: SignedPrekey[] = [];
      for (const id of ids) {
        const certPath = this.#d.path(`spk-${id}.cert`);
        const bytes = await readMailFile(certPath, MAIL_FILE.spkCert);
        if (!bytes) continue;
        const c = parseSignedPrekeyCert(certPath, bytes);
        const pair = await readPrivate(
          this.#d.path(`spk-${id}.pem`),
          c.publicRaw,
          certPath,
        );
        spks.push({
          id,
          pair,
          cert: c.cert,
          created: c.created,
          expires: c.expires,
        });
      }
      this.#spks = spks;
      return [...spks];
    });
  }

  async saveSignedPrekey(spk: SignedPrekey): Promise<void> {
    checkId(spk.id);
    checkTime("created", spk.created);
    checkTime("expires", spk.expires);
    checkCert("cert", spk.cert);
    return await this.#d.serial(async () => {
      const pem = await exportPrivate(spk.pair);
      await this.#d.make();
      this.#spks = undefined;
      // The key first: a certificate file is what makes a prekey held.
      await writeFiles([{
        path: this.#d.path(`spk-${spk.id}.pem`),
        bytes: pem,
      }]);
      wipe(pem);
      await writeFiles([{
        path: this.#d.path(`spk-${spk.id}.cert`),
        bytes: encodeSignedPrekeyCert(spk),
      }]);
    });
  }

  async dropSignedPrekey(id: number): Promise<void> {
    checkId(id);
    return await this.#d.serial(async () => {
      this.#spks = undefined;
      await removeFile(this.#d.path(`spk-${id}.cert`));
      await removeFile(this.#d.path(`spk-${id}.pem`));
      await syncDir(this.#d.mail);
    });
  }

  // ---- one-time prekeys

  async oneTimePrekey(id: number): Promise<OneTimePrekey | undefined> {
    checkId(id);
    return await this.#d.serial(async () => {
      const pair = await readPrivate(this.#d.path(`opk-${id}.pem`));
      return pair && { id, pair };
    });
  }

  async saveOneTimePrekeys(opks: OneTimePrekey[]): Promise<void> {
    for (const opk of opks) checkId(opk.id);
    return await this.#d.serial(async () => {
      const files: { path: string; bytes: Uint8Array }[] = [];
      try {
        for (const opk of opks) {
          files.push({
            path: this.#d.path(`opk-${opk.id}.pem`),
            bytes: await exportPrivate(opk.pair),
          });
        }
        await this.#d.make();
        await writeFiles(files);
      } finally {
        for (const f of files) wipe(f.bytes);
      }
    });
  }

  async dropOneTimePrekey(id: number): Promise<void> {
    checkId(id);
    return await this.#d.serial(async () => {
      await removeFile(this.#d.path(`opk-${id}.pem`));
      await syncDir(this.#d.mail);
    });
  }
}
