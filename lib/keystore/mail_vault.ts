/**
 * The client's mailbox keys and state in the key directory (PROTOCOL.md
 * section 9.1 "At rest" and "The peer's keys", 9.5, 9.6): a {@link MailVault}
 * over files. Layout, under `<dir>/users/<me>/`:
 *
 * ```text
 * mail/                 0700, created on the first write
 * mail/identity.pem     the ik private key, PKCS#8 PEM (RFC 8410), 0600
 * mail/identity.cert    u8 1 || created u64 || ik[32] || IK_CERT, 0600
 * mail/spk-<id>.pem     a signed prekey's private key, 0600
 * mail/spk-<id>.cert    u8 1 || created u64 || expires u64 || spk[32] || SPK_CERT, 0600
 * mail/opk-<id>.pem     a one-time prekey's private key, 0600
 * mail/state            u8 1 || next spk_id u32 || next opk_id u32, 0600
 * mail/seen             records msg_id[16] || time u64 (24 bytes), appended, 0600
 * mail/pending          records msg_id[16] || rk[32] || time u64 (56 bytes), 0600
 * mail/pending.to       records msg_id[16] || bytes8(to): the recipients of `pending`, 0600
 * peers/<peer>.mail     u8 1 || u32 n || IK_CERT[n] || u32 m || SPK_CERT[m] (m = 0: none), 0600
 * peers/<peer>.verified the fingerprint the user verified (`!verify`), one line, 0600
 * ```
 *
 * Every write is durable when its promise resolves: a whole file goes
 * through a temporary file that is synced, then a rename and a sync of the
 * folder; a record of `seen`, `pending` or `pending.to` is written at the
 * end of the whole records and synced. A private key's public half is
 * stored in its certificate file and checked against the key when read
 * (`key-mismatch`), and it is given back non-extractable.
 *
 * At open: the folders on the way are checked (one that group or others can
 * write is refused, `key-dir-writable`); temporary files a crash left are
 * removed, and so is a signed prekey's private key without its certificate
 * (a save or a drop that a crash cut short); the id counters are raised
 * above every id held, so an id is never reused even if `state` is lost;
 * `seen` is rewritten without its records older than 32 days, and `seen`,
 * `pending` and `pending.to` without a torn last record (a crash during an
 * append).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openMailVault } from "./mail_vault.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const vault = await openMailVault(dir, "A");
 *   assert.equal(await vault.allocateIds("opk", 100), 1);
 *   const id = new Uint8Array(16).fill(7);
 *   await vault.addSeen(id, Date.now());
 *   await vault.sync(); // before the mail-ack that covers it
 *   assert.ok((await openMailVault(dir, "A")).hasSeen(id));
 *   assert.equal(await (await openMailVault(dir, "A")).allocateIds("opk", 1), 101);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 * @module
 */

import { dirname, join } from "node:path";
import {
  checkUsername,
  type MailIdentity,
  type MailVault,
  type OneTimePrekey,
  type PeerMailCerts,
  type PendingReceipt,
  type SignedPrekey,
} from "../proto/mod.ts";
import { concat, wipe } from "../util/mod.ts";
import { checkKeyDirs, ensureDir } from "./_files.ts";
import {
  exportPrivate,
  listDir,
  readMailFile,
  readPrivate,
  removeFile,
  syncDir,
  writeAt,
  writeFiles,
} from "./_mail_files.ts";
import {
  applyPendingTo,
  badValue,
  checkCert,
  checkFingerprint,
  checkId,
  checkLength,
  checkTime,
  crashLeftovers,
  encodeFingerprint,
  encodeIdentityCert,
  encodePeerCerts,
  encodePending,
  encodePendingFiles,
  encodePendingTo,
  encodeSeen,
  encodeSignedPrekeyCert,
  encodeState,
  MAIL_FILE,
  MAX_ID,
  MSG_ID_BYTES,
  parseFingerprint,
  parseIdentityCert,
  parsePeerCerts,
  parsePending,
  parseSeen,
  parseSignedPrekeyCert,
  parseState,
  type Pending,
  PENDING_RECORD,
  raiseNextIds,
  RK_BYTES,
  SEEN_RECORD,
  signedPrekeyIds,
} from "./_mail_records.ts";
import { KeyStoreError } from "./keystore_error.ts";
import { KEY_LAYOUT as L, keyPath } from "./layout.ts";

const DAY_MS = 86_400_000;
/** `seen` records older than this are dropped at open (PROTOCOL.md 9.5: the 31-day window plus a day). */
export const SEEN_KEEP_MS: number = 32 * DAY_MS;

/** Options of {@link openMailVault}. */
export interface MailVaultOptions {
  /** The time `seen` is pruned against at open (ms since the epoch; default now). */
  readonly now?: number;
}

/**
 * Open the mailbox of `me` in the key directory `dir` (layout in the module
 * doc). Nothing is created until the first write.
 * @param dir the key directory
 * @param me the user whose mailbox it is
 * @param options the time to prune `seen` against
 * @returns the vault; its writes are durable when they resolve
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} `key-dir-writable`, `key-permissions`,
 *   `key-unreadable`, `mail-corrupt` (naming the file)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openMailVault } from "./mail_vault.ts";
 * const vault = await openMailVault("/nonexistent", "A");
 * assert.equal(await vault.identity(), undefined);
 * assert.equal(vault.hasSeen(new Uint8Array(16)), false);
 * ```
 */
export async function openMailVault(
  dir: string,
  me: string,
  options: MailVaultOptions = {},
): Promise<MailVault> {
  checkUsername(me);
  const vault = new FileMailVault(dir, me);
  await vault.load(options.now ?? Date.now());
  return vault;
}

class FileMailVault implements MailVault {
  readonly #dir: string;
  readonly #me: string;
  readonly #mail: string;
  #mailMade = false;
  /** Every call but {@link hasSeen} runs in turn. */
  #queue: Promise<unknown> = Promise.resolve();
  #next = { spk: 1, opk: 1 };
  #seen = new Set<string>();
  #seenSize = 0;
  #pending = new Map<string, Pending>();
  #pendingSize = 0;
  #toSize = 0;
  /** Records of `seen` added since the last sync(), not yet in the file. */
  #seenUnwritten: Uint8Array[] = [];
  /** Pending entries were dropped since `pending` was last written. */
  #pendingDirty = false;
  #identity: MailIdentity | undefined;
  #spks: SignedPrekey[] | undefined;

  constructor(dir: string, me: string) {
    this.#dir = dir;
    this.#me = me;
    this.#mail = keyPath(dir, L.userMail(me));
  }

  // ---- files and folders

  #path(name: string): string {
    return join(this.#mail, name);
  }

  #mailDirs(): string[] {
    const me = this.#me, d = this.#dir;
    return [d, keyPath(d, L.usersDir), keyPath(d, L.userDir(me)), this.#mail];
  }

  #peerDirs(): string[] {
    const outer = this.#mailDirs().slice(0, -1); // all but mail/
    return [...outer, keyPath(this.#dir, L.userPeers(this.#me))];
  }

  async #makeMailDir(): Promise<void> {
    if (this.#mailMade) return;
    for (const d of this.#mailDirs()) await ensureDir(d);
    this.#mailMade = true;
  }

  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f, f);
    this.#queue = run.catch(() => {});
    return run;
  }

  // ---- open

  /** Check the folders, clean up after a crash, read `state`, `seen`, `pending`. */
  async load(now: number): Promise<void> {
    await checkKeyDirs(this.#mailDirs());
    const names = await listDir(this.#mail);
    if (names === undefined) return;
    this.#mailMade = true; // it exists and was checked
    await this.#loadState(names); // before the clean-up: its ids stay taken
    await this.#cleanUp(names);
    await this.#loadSeen(now);
    await this.#loadPending();
  }

  async #cleanUp(names: Set<string>): Promise<void> {
    const gone = crashLeftovers(names);
    for (const name of gone) {
      await removeFile(this.#path(name));
      names.delete(name);
    }
    if (gone.length > 0) await syncDir(this.#mail);
  }

  async #loadState(names: Set<string>): Promise<void> {
    const path = this.#path("state");
    const bytes = await readMailFile(path, MAIL_FILE.state);
    if (bytes) this.#next = parseState(path, bytes);
    raiseNextIds(this.#next, names);
  }

  async #loadSeen(now: number): Promise<void> {
    const path = this.#path("seen");
    const bytes = await readMailFile(path, MAIL_FILE.seen);
    if (!bytes) return;
    const { ids, records } = parseSeen(bytes, now - SEEN_KEEP_MS);
    for (const id of ids) this.#seen.add(id);
    this.#seenSize = records.length * SEEN_RECORD;
    if (this.#seenSize !== bytes.length) {
      await writeFiles([{ path, bytes: concat(...records) }]);
    }
  }

  async #loadPending(): Promise<void> {
    const path = this.#path("pending");
    const bytes = await readMailFile(path, MAIL_FILE.pending);
    if (!bytes) return;
    const { entries, whole } = parsePending(bytes);
    for (const p of entries) this.#pending.set(p.msgId.toHex(), p);
    wipe(bytes);
    const toPath = this.#path("pending.to");
    const to = await readMailFile(toPath, MAIL_FILE.pendingTo);
    const toClean = to ? applyPendingTo(to, this.#pending) : true;
    this.#pendingSize = whole;
    this.#toSize = to?.length ?? 0;
    if (whole !== bytes.length || !toClean) await this.#writePending();
  }

  // ---- ids

  async allocateIds(kind: "spk" | "opk", count: number): Promise<number> {
    if (kind !== "spk" && kind !== "opk") {
      throw badValue(`kind: expected "spk" or "opk", got "${kind}"`);
    }
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_ID) {
      throw badValue(`count: expected 1 to ${MAX_ID}, got ${count}`);
    }
    return await this.#serial(async () => {
      const first = this.#next[kind];
      // The next id is written as a u32 too: it must stay at most MAX_ID.
      if (first + count > MAX_ID) {
        throw new KeyStoreError(
          "mail-ids-exhausted",
          `Cannot take ${count} ${kind} ids: the next is ${first} and ids end at ${MAX_ID}`,
          this.#path("state"),
        );
      }
      const next = { ...this.#next, [kind]: first + count };
      await this.#makeMailDir();
      await writeFiles([{
        path: this.#path("state"),
        bytes: encodeState(next),
      }]);
      this.#next = next;
      return first;
    });
  }

  // ---- identity

  async identity(): Promise<MailIdentity | undefined> {
    return await this.#serial(async () => {
      if (this.#identity) return this.#identity;
      const certPath = this.#path("identity.cert");
      const bytes = await readMailFile(certPath, MAIL_FILE.identityCert);
      if (!bytes) return undefined;
      const { created, publicRaw, cert } = parseIdentityCert(certPath, bytes);
      const pair = await readPrivate(
        this.#path("identity.pem"),
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
    return await this.#serial(async () => {
      const pem = await exportPrivate(id.pair);
      await this.#makeMailDir();
      // The old certificate goes first: a crash in between leaves no
      // identity (made again), never a key beside another key's certificate.
      this.#identity = undefined;
      const certPath = this.#path("identity.cert");
      await removeFile(certPath);
      await writeFiles([{ path: this.#path("identity.pem"), bytes: pem }]);
      wipe(pem);
      await writeFiles([{ path: certPath, bytes: encodeIdentityCert(id) }]);
    });
  }

  // ---- signed prekeys

  async signedPrekeys(): Promise<SignedPrekey[]> {
    return await this.#serial(async () => {
      if (this.#spks) return [...this.#spks];
      const ids = signedPrekeyIds((await listDir(this.#mail)) ?? []);
      const spks: SignedPrekey[] = [];
      for (const id of ids) {
        const certPath = this.#path(`spk-${id}.cert`);
        const bytes = await readMailFile(certPath, MAIL_FILE.spkCert);
        if (!bytes) continue;
        const c = parseSignedPrekeyCert(certPath, bytes);
        const pair = await readPrivate(
          this.#path(`spk-${id}.pem`),
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
    return await this.#serial(async () => {
      const pem = await exportPrivate(spk.pair);
      await this.#makeMailDir();
      this.#spks = undefined;
      // The key first: a certificate file is what makes a prekey held.
      await writeFiles([{ path: this.#path(`spk-${spk.id}.pem`), bytes: pem }]);
      wipe(pem);
      await writeFiles([{
        path: this.#path(`spk-${spk.id}.cert`),
        bytes: encodeSignedPrekeyCert(spk),
      }]);
    });
  }

  async dropSignedPrekey(id: number): Promise<void> {
    checkId(id);
    return await this.#serial(async () => {
      this.#spks = undefined;
      await removeFile(this.#path(`spk-${id}.cert`));
      await removeFile(this.#path(`spk-${id}.pem`));
      await syncDir(this.#mail);
    });
  }

  // ---- one-time prekeys

  async oneTimePrekey(id: number): Promise<OneTimePrekey | undefined> {
    checkId(id);
    return await this.#serial(async () => {
      const pair = await readPrivate(this.#path(`opk-${id}.pem`));
      return pair && { id, pair };
    });
  }

  async saveOneTimePrekeys(opks: OneTimePrekey[]): Promise<void> {
    for (const opk of opks) checkId(opk.id);
    return await this.#serial(async () => {
      const files: { path: string; bytes: Uint8Array }[] = [];
      try {
        for (const opk of opks) {
          files.push({
            path: this.#path(`opk-${opk.id}.pem`),
            bytes: await exportPrivate(opk.pair),
          });
        }
        await this.#makeMailDir();
        await writeFiles(files);
      } finally {
        for (const f of files) wipe(f.bytes);
      }
    });
  }

  async dropOneTimePrekey(id: number): Promise<void> {
    checkId(id);
    return await this.#serial(async () => {
      await removeFile(this.#path(`opk-${id}.pem`));
      await syncDir(this.#mail);
    });
  }

  // ---- seen (PROTOCOL.md 9.5)

  hasSeen(msgId: Uint8Array): boolean {
    return this.#seen.has(msgId.toHex());
  }

  async addSeen(msgId: Uint8Array, time: number): Promise<void> {
    checkLength("msgId", msgId, MSG_ID_BYTES);
    checkTime("time", time);
    const record = encodeSeen(msgId, time);
    return await this.#serial(() => {
      const key = msgId.toHex();
      if (!this.#seen.has(key)) {
        this.#seen.add(key);
        // Written and synced by sync(): one write and one sync per
        // mail-ack, not one per message (PROTOCOL.md 9.4).
        this.#seenUnwritten.push(record);
      }
      return Promise.resolve();
    });
  }

  async sync(): Promise<void> {
    return await this.#serial(async () => {
      if (this.#pendingDirty) {
        await this.#writePending();
        this.#pendingDirty = false;
      }
      if (this.#seenUnwritten.length === 0) return;
      const bytes = concat(...this.#seenUnwritten);
      await this.#makeMailDir();
      await writeAt(this.#path("seen"), this.#seenSize, bytes);
      this.#seenSize += bytes.length;
      this.#seenUnwritten = [];
    });
  }

  // ---- pending (PROTOCOL.md 9.6)

  async addPending(p: PendingReceipt): Promise<void> {
    checkLength("msgId", p.msgId, MSG_ID_BYTES);
    checkLength("rk", p.rk, RK_BYTES);
    checkTime("time", p.time);
    if (p.to !== undefined) checkUsername(p.to);
    const entry: Pending = {
      msgId: p.msgId.slice(),
      rk: p.rk.slice(),
      time: p.time,
    };
    if (p.to !== undefined) entry.to = p.to;
    return await this.#serial(async () => {
      await this.#makeMailDir();
      if (entry.to !== undefined) {
        const rec = encodePendingTo(entry.msgId, entry.to);
        await writeAt(this.#path("pending.to"), this.#toSize, rec);
        this.#toSize += rec.length;
      }
      const rec = encodePending(entry);
      try {
        await writeAt(this.#path("pending"), this.#pendingSize, rec);
      } finally {
        wipe(rec);
      }
      this.#pendingSize += PENDING_RECORD;
      this.#pending.set(entry.msgId.toHex(), entry);
    });
  }

  async pending(msgId: Uint8Array): Promise<PendingReceipt | undefined> {
    return await this.#serial(() => {
      const p = this.#pending.get(msgId.toHex());
      return Promise.resolve(p && copyPending(p));
    });
  }

  async dropPending(msgId: Uint8Array): Promise<void> {
    return await this.#serial(() => {
      const key = msgId.toHex();
      const p = this.#pending.get(key);
      if (!p) return Promise.resolve();
      this.#pending.delete(key);
      // Rewritten by the next sync(): one rewrite per mail-ack, not one per
      // receipt (each rewrite is the whole file).
      this.#pendingDirty = true;
      wipe(p.rk);
      return Promise.resolve();
    });
  }

  async expirePending(before: number): Promise<PendingReceipt[]> {
    return await this.#serial(async () => {
      const old = [...this.#pending.values()].filter((p) => p.time < before)
        .sort((a, b) => a.time - b.time);
      if (old.length === 0) return [];
      for (const p of old) this.#pending.delete(p.msgId.toHex());
      await this.#writePending();
      this.#pendingDirty = false;
      const out = old.map(copyPending);
      for (const p of old) wipe(p.rk);
      return out;
    });
  }

  /** Rewrite `pending` and `pending.to` from memory (the secrets first). */
  async #writePending(): Promise<void> {
    const { bytes, toBytes } = encodePendingFiles(this.#pending.values());
    try {
      await writeFiles([{ path: this.#path("pending"), bytes }]);
      this.#pendingSize = bytes.length;
      await writeFiles([{ path: this.#path("pending.to"), bytes: toBytes }]);
      this.#toSize = toBytes.length;
    } finally {
      wipe(bytes);
    }
  }

  // ---- peers (PROTOCOL.md 9.1 "The peer's keys")

  #peerFile(peer: string, kind: "mail" | "verified"): string {
    checkUsername(peer);
    return keyPath(
      this.#dir,
      kind === "mail"
        ? L.userPeerMail(this.#me, peer)
        : L.userPeerVerified(this.#me, peer),
    );
  }

  async peerCerts(peer: string): Promise<PeerMailCerts | undefined> {
    const path = this.#peerFile(peer, "mail");
    await checkKeyDirs(this.#peerDirs());
    const bytes = await readMailFile(path, MAIL_FILE.peerCerts);
    if (!bytes) return undefined;
    return parsePeerCerts(path, bytes);
  }

  async savePeerCerts(peer: string, certs: PeerMailCerts): Promise<void> {
    const path = this.#peerFile(peer, "mail");
    checkCert("identityCert", certs.identityCert);
    const spk = certs.signedPrekeyCert;
    if (spk !== undefined) checkCert("signedPrekeyCert", spk);
    for (const d of this.#peerDirs()) await ensureDir(d);
    await writeFiles([{ path, bytes: encodePeerCerts(certs) }]);
  }

  async forgetPeer(peer: string): Promise<void> {
    const mail = this.#peerFile(peer, "mail");
    const verified = this.#peerFile(peer, "verified");
    await removeFile(mail);
    await removeFile(verified);
    await syncDir(dirname(mail));
  }

  async verified(peer: string): Promise<string | undefined> {
    const path = this.#peerFile(peer, "verified");
    await checkKeyDirs(this.#peerDirs());
    const bytes = await readMailFile(path, MAIL_FILE.verified);
    if (!bytes) return undefined;
    return parseFingerprint(path, bytes);
  }

  async setVerified(peer: string, fingerprint: string): Promise<void> {
    const path = this.#peerFile(peer, "verified");
    checkFingerprint(fingerprint);
    for (const d of this.#peerDirs()) await ensureDir(d);
    await writeFiles([{ path, bytes: encodeFingerprint(fingerprint) }]);
  }
}

/** A copy of a pending entry, for a caller that may keep it after it is wiped. */
function copyPending(p: Pending): PendingReceipt {
  const out = { msgId: p.msgId.slice(), rk: p.rk.slice(), time: p.time };
  return p.to === undefined ? out : { ...out, to: p.to };
}
