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
  exportX25519Private,
  importX25519Private,
  MAX_PEM_CHARS,
  pemDecode,
  pemEncode,
} from "../crypto/mod.ts";
import {
  checkUsername,
  isValidUsername,
  type MailIdentity,
  type MailKeyPair,
  type MailVault,
  type OneTimePrekey,
  type PeerMailCerts,
  type PendingReceipt,
  type SignedPrekey,
} from "../proto/mod.ts";
import {
  ByteReader,
  ByteWriter,
  concat,
  constantTimeEqual,
  fromUtf8,
  KeyError,
  ProtocolError,
  utf8,
  wipe,
} from "../util/mod.ts";
import { checkKeyDirs, ensureDir, fsFix, fsReason } from "./_files.ts";
import { KeyStoreError } from "./keystore_error.ts";
import { KEY_LAYOUT as L, keyPath, PRIVATE_KEY_MODE } from "./layout.ts";

const DAY_MS = 86_400_000;
/** `seen` records older than this are dropped at open (PROTOCOL.md 9.5: the 31-day window plus a day). */
export const SEEN_KEEP_MS: number = 32 * DAY_MS;

const MSG_ID_BYTES = 16;
const RK_BYTES = 32;
const KEY_BYTES = 32;
const SEEN_RECORD = MSG_ID_BYTES + 8;
const PENDING_RECORD = MSG_ID_BYTES + RK_BYTES + 8;
const MAX_ID = 0xffff_ffff;
/** Format byte of the files whose layout is this module's own. */
const FORMAT = 1;
/** Limit of a certificate, `state`, peer or verified file. */
const MAX_SMALL_FILE = 64 * 1024;
/** Limit of `seen`, `pending`, `pending.to` (32 days of mail at 24 bytes a message). */
const MAX_LOG_FILE = 256 * 1024 * 1024;
const MAX_FINGERPRINT_CHARS = 200;
const checksModes = Deno.build.os !== "windows";

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

/** A pending entry as stored. */
interface Pending {
  msgId: Uint8Array<ArrayBuffer>;
  rk: Uint8Array<ArrayBuffer>;
  time: number;
  to?: string;
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
  /** `seen` has records written since its last sync. */
  #seenDirty = false;
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
    const me = this.#me, d = this.#dir;
    return [
      d,
      keyPath(d, L.usersDir),
      keyPath(d, L.userDir(me)),
      keyPath(d, L.userPeers(me)),
    ];
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
    const gone: string[] = [];
    for (const name of names) {
      const spk = /^spk-(\d+)\.pem$/.exec(name);
      if (
        name.endsWith(".tmp") || (spk && !names.has(`spk-${spk[1]}.cert`))
      ) {
        gone.push(name);
      }
    }
    for (const name of gone) {
      await removeFile(this.#path(name));
      names.delete(name);
    }
    if (gone.length > 0) await syncDir(this.#mail);
  }

  async #loadState(names: Set<string>): Promise<void> {
    const path = this.#path("state");
    const bytes = await readMailFile(path, "state", false, MAX_SMALL_FILE);
    if (bytes) {
      this.#next = parse(path, bytes, (r) => {
        format(r, path);
        return { spk: r.u32(), opk: r.u32() };
      });
    }
    for (const name of names) {
      const m = /^(spk|opk)-(\d+)\.(pem|cert)$/.exec(name);
      if (!m) continue;
      const kind = m[1] as "spk" | "opk", id = Number(m[2]);
      if (id >= this.#next[kind]) this.#next[kind] = id + 1;
    }
  }

  async #loadSeen(now: number): Promise<void> {
    const path = this.#path("seen");
    const bytes = await readMailFile(path, "seen file", false, MAX_LOG_FILE);
    if (!bytes) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const whole = bytes.length - bytes.length % SEEN_RECORD;
    const kept: Uint8Array[] = [];
    for (let at = 0; at < whole; at += SEEN_RECORD) {
      const time = Number(view.getBigUint64(at + MSG_ID_BYTES));
      if (time < now - SEEN_KEEP_MS) continue;
      kept.push(bytes.subarray(at, at + SEEN_RECORD));
      this.#seen.add(bytes.subarray(at, at + MSG_ID_BYTES).toHex());
    }
    this.#seenSize = kept.length * SEEN_RECORD;
    if (this.#seenSize !== bytes.length) {
      await writeFiles([{ path, bytes: concat(...kept) }]);
    }
  }

  async #loadPending(): Promise<void> {
    const path = this.#path("pending");
    const bytes = await readMailFile(
      path,
      "pending file",
      true,
      MAX_LOG_FILE,
    );
    if (!bytes) return;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const whole = bytes.length - bytes.length % PENDING_RECORD;
    for (let at = 0; at < whole; at += PENDING_RECORD) {
      const msgId = bytes.slice(at, at + MSG_ID_BYTES);
      const rk = bytes.slice(at + MSG_ID_BYTES, at + MSG_ID_BYTES + RK_BYTES);
      const time = Number(view.getBigUint64(at + MSG_ID_BYTES + RK_BYTES));
      this.#pending.set(msgId.toHex(), { msgId, rk, time });
    }
    wipe(bytes);
    const toPath = this.#path("pending.to");
    const to = await readMailFile(
      toPath,
      "pending file",
      false,
      MAX_LOG_FILE,
    );
    let toClean = true;
    for (let at = 0; to && at < to.length;) {
      const len = to[at + MSG_ID_BYTES];
      const end = at + MSG_ID_BYTES + 1 + (len ?? 0);
      if (len === undefined || end > to.length) {
        toClean = false; // a torn last record
        break;
      }
      const p = this.#pending.get(to.subarray(at, at + MSG_ID_BYTES).toHex());
      const name = new TextDecoder().decode(to.subarray(end - len, end));
      if (p && isValidUsername(name)) p.to = name;
      else toClean = false; // an entry dropped since, or not a name
      at = end;
    }
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
      if (first + count - 1 > MAX_ID) {
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
        bytes: new ByteWriter().u8(FORMAT).u32(next.spk).u32(next.opk)
          .finish(),
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
      const bytes = await readMailFile(
        certPath,
        "mail identity certificate",
        false,
        MAX_SMALL_FILE,
      );
      if (!bytes) return undefined;
      const { created, publicRaw, cert } = parse(certPath, bytes, (r) => {
        format(r, certPath);
        const created = Number(r.u64());
        const publicRaw = r.bytes(KEY_BYTES);
        return { created, publicRaw, cert: nonEmpty(r.rest(), certPath) };
      });
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
      await writeFiles([{
        path: certPath,
        bytes: new ByteWriter().u8(FORMAT).u64(BigInt(id.created))
          .bytes(id.pair.publicRaw).bytes(id.cert).finish(),
      }]);
    });
  }

  // ---- signed prekeys

  async signedPrekeys(): Promise<SignedPrekey[]> {
    return await this.#serial(async () => {
      if (this.#spks) return [...this.#spks];
      const ids = [...(await listDir(this.#mail)) ?? []]
        .map((n) => /^spk-(\d+)\.cert$/.exec(n)?.[1])
        .filter((m) => m !== undefined)
        .map(Number)
        .sort((a, b) => a - b);
      const spks: SignedPrekey[] = [];
      for (const id of ids) {
        const certPath = this.#path(`spk-${id}.cert`);
        const bytes = await readMailFile(
          certPath,
          "signed prekey certificate",
          false,
          MAX_SMALL_FILE,
        );
        if (!bytes) continue;
        const c = parse(certPath, bytes, (r) => {
          format(r, certPath);
          const created = Number(r.u64()), expires = Number(r.u64());
          const publicRaw = r.bytes(KEY_BYTES);
          return {
            created,
            expires,
            publicRaw,
            cert: nonEmpty(r.rest(), certPath),
          };
        });
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
        bytes: new ByteWriter().u8(FORMAT).u64(BigInt(spk.created))
          .u64(BigInt(spk.expires)).bytes(spk.pair.publicRaw).bytes(spk.cert)
          .finish(),
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
    const record = new ByteWriter().bytes(msgId).u64(BigInt(time)).finish();
    return await this.#serial(async () => {
      const key = msgId.toHex();
      if (this.#seen.has(key)) return;
      await this.#makeMailDir();
      // Written now, synced by syncSeen(): one sync per mail-ack.
      await writeAt(this.#path("seen"), this.#seenSize, record, false);
      this.#seenSize += SEEN_RECORD;
      this.#seen.add(key);
      this.#seenDirty = true;
    });
  }

  async sync(): Promise<void> {
    return await this.#serial(async () => {
      if (this.#pendingDirty) {
        await this.#writePending();
        this.#pendingDirty = false;
      }
      if (!this.#seenDirty) return;
      const path = this.#path("seen");
      let f: Deno.FsFile;
      try {
        f = await Deno.open(path, { write: true });
      } catch (e) {
        throw writeFailed(path, e);
      }
      try {
        await f.syncData();
      } catch (e) {
        throw writeFailed(path, e);
      } finally {
        f.close();
      }
      this.#seenDirty = false;
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
        const rec = new ByteWriter().bytes(entry.msgId).bytes8(utf8(entry.to))
          .finish();
        await writeAt(this.#path("pending.to"), this.#toSize, rec);
        this.#toSize += rec.length;
      }
      const rec = new ByteWriter().bytes(entry.msgId).bytes(entry.rk)
        .u64(BigInt(entry.time)).finish();
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
    const all = [...this.#pending.values()];
    const w = new ByteWriter(), to = new ByteWriter();
    for (const p of all) {
      w.bytes(p.msgId).bytes(p.rk).u64(BigInt(p.time));
      if (p.to !== undefined) to.bytes(p.msgId).bytes8(utf8(p.to));
    }
    const bytes = w.finish(), toBytes = to.finish();
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
    const bytes = await readMailFile(
      path,
      "peer mail certificates",
      false,
      MAX_SMALL_FILE,
    );
    if (!bytes) return undefined;
    return parse(path, bytes, (r) => {
      format(r, path);
      const identityCert = nonEmpty(r.bytes(r.u32()), path);
      const spk = r.bytes(r.u32());
      r.end();
      return spk.length > 0
        ? { identityCert, signedPrekeyCert: spk }
        : { identityCert };
    });
  }

  async savePeerCerts(peer: string, certs: PeerMailCerts): Promise<void> {
    const path = this.#peerFile(peer, "mail");
    checkCert("identityCert", certs.identityCert);
    const spk = certs.signedPrekeyCert;
    if (spk !== undefined) checkCert("signedPrekeyCert", spk);
    for (const d of this.#peerDirs()) await ensureDir(d);
    await writeFiles([{
      path,
      bytes: new ByteWriter().u8(FORMAT).u32(certs.identityCert.length)
        .bytes(certs.identityCert).u32(spk?.length ?? 0)
        .bytes(spk ?? new Uint8Array()).finish(),
    }]);
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
    const bytes = await readMailFile(
      path,
      "verified fingerprint",
      false,
      MAX_SMALL_FILE,
    );
    if (!bytes) return undefined;
    let text: string;
    try {
      text = fromUtf8(bytes, `verified fingerprint "${path}"`);
    } catch (e) {
      throw corrupt(path, e);
    }
    const fp = text.endsWith("\n") ? text.slice(0, -1) : text;
    if (!isFingerprintText(fp)) {
      throw corrupt(path, "not one line of a fingerprint");
    }
    return fp;
  }

  async setVerified(peer: string, fingerprint: string): Promise<void> {
    const path = this.#peerFile(peer, "verified");
    if (!isFingerprintText(fingerprint)) {
      throw badValue(
        `fingerprint: expected one line of at most ${MAX_FINGERPRINT_CHARS} printable characters`,
      );
    }
    for (const d of this.#peerDirs()) await ensureDir(d);
    await writeFiles([{ path, bytes: utf8(`${fingerprint}\n`) }]);
  }
}

// ---- values

function badValue(message: string): KeyError {
  return new KeyError("bad-mail-value", message);
}

function checkId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 1 || id > MAX_ID) {
    throw badValue(`id: expected 1 to ${MAX_ID}, got ${id}`);
  }
}

function checkTime(name: string, t: number): void {
  if (!Number.isSafeInteger(t) || t < 0) {
    throw badValue(`${name}: expected ms since the epoch, got ${t}`);
  }
}

function checkLength(name: string, b: Uint8Array, n: number): void {
  if (!(b instanceof Uint8Array) || b.length !== n) {
    throw badValue(`${name}: expected ${n} bytes, got ${b?.length}`);
  }
}

function checkCert(name: string, b: Uint8Array): void {
  if (!(b instanceof Uint8Array) || b.length === 0 || b.length > 0xffff) {
    throw badValue(`${name}: expected 1 to 65535 bytes, got ${b?.length}`);
  }
}

function isFingerprintText(s: string): boolean {
  return typeof s === "string" && s.length > 0 &&
    s.length <= MAX_FINGERPRINT_CHARS && /^[\x21-\x7e]+$/.test(s);
}

function copyPending(p: Pending): PendingReceipt {
  const out = { msgId: p.msgId.slice(), rk: p.rk.slice(), time: p.time };
  return p.to === undefined ? out : { ...out, to: p.to };
}

// ---- parsing

function corrupt(path: string, why: unknown): KeyStoreError {
  const text = typeof why === "string"
    ? why
    : why instanceof Error
    ? why.message
    : String(why);
  return new KeyStoreError(
    "mail-corrupt",
    `Cannot read mailbox file "${path}": ${text}`,
    path,
  );
}

function parse<T>(
  path: string,
  bytes: Uint8Array,
  read: (r: ByteReader) => T,
): T {
  try {
    return read(new ByteReader(bytes, "it"));
  } catch (e) {
    if (e instanceof ProtocolError) throw corrupt(path, e.message);
    throw e;
  }
}

function format(r: ByteReader, path: string): void {
  const v = r.u8();
  if (v !== FORMAT) throw corrupt(path, `unknown format ${v}`);
}

function nonEmpty(
  b: Uint8Array<ArrayBuffer>,
  path: string,
): Uint8Array<ArrayBuffer> {
  if (b.length === 0) throw corrupt(path, "no certificate");
  return b;
}

// ---- private keys

/**
 * A pair's private key as PKCS#8 PEM bytes, once its public half is checked.
 * @throws {KeyError} `wrong-key` (not an extractable X25519 private key),
 *   `key-mismatch`, `bad-mail-value`
 */
async function exportPrivate(pair: MailKeyPair): Promise<Uint8Array> {
  checkLength("publicRaw", pair.publicRaw, KEY_BYTES);
  const der = await exportX25519Private(pair.privateKey);
  try {
    const back = await importX25519Private(der);
    if (!constantTimeEqual(back.publicRaw, pair.publicRaw)) {
      throw new KeyError(
        "key-mismatch",
        "Cannot store a mailbox key: its public key is not its private key's",
      );
    }
    return utf8(pemEncode("PRIVATE KEY", der));
  } finally {
    wipe(der);
  }
}

/**
 * Read a private key file back, non-extractable, checked against the
 * public key its certificate file names.
 * @returns the pair, or undefined when the file is missing and nothing names it
 */
async function readPrivate(
  path: string,
  publicRaw: Uint8Array,
  certPath: string,
): Promise<MailKeyPair>;
async function readPrivate(path: string): Promise<MailKeyPair | undefined>;
async function readPrivate(
  path: string,
  publicRaw?: Uint8Array,
  certPath?: string,
): Promise<MailKeyPair | undefined> {
  const bytes = await readMailFile(
    path,
    "mailbox private key",
    true,
    MAX_PEM_CHARS,
  );
  if (!bytes) {
    if (certPath === undefined) return undefined;
    throw new KeyStoreError(
      "key-missing",
      `Cannot read mailbox private key "${path}": no such file, though "${certPath}" names it`,
      path,
    );
  }
  const text = new TextDecoder().decode(bytes);
  wipe(bytes);
  const der = pemDecode(text, "PRIVATE KEY", `mailbox private key "${path}"`);
  let pair: MailKeyPair;
  try {
    pair = await importX25519Private(der);
  } catch (e) {
    throw new KeyStoreError(
      "bad-key",
      `Cannot read mailbox private key "${path}": ${
        e instanceof Error ? e.message : String(e)
      }`,
      path,
    );
  } finally {
    wipe(der);
  }
  if (publicRaw && !constantTimeEqual(pair.publicRaw, publicRaw)) {
    throw new KeyStoreError(
      "key-mismatch",
      `Mailbox private key "${path}" does not match the public key in "${certPath}"`,
      path,
    );
  }
  return pair;
}

// ---- file system

async function listDir(path: string): Promise<Set<string> | undefined> {
  const names = new Set<string>();
  try {
    for await (const e of Deno.readDir(path)) names.add(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new KeyStoreError(
      "key-unreadable",
      `Cannot list mailbox folder "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, { kind: "dir-permissions" }),
    );
  }
  return names;
}

/**
 * Read a file of the mailbox, checking type, size and mode: `secret` ones
 * (private keys, receipt keys) must not be readable by group or others, the
 * others not writable by them.
 * @returns its bytes, or undefined when it is missing
 */
async function readMailFile(
  path: string,
  what: string,
  secret: boolean,
  max: number,
): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const unreadable = (why: string, e?: unknown) =>
    new KeyStoreError(
      "key-unreadable",
      `Cannot read ${what} "${path}": ${why}`,
      path,
      fsFix(e, { kind: "dir-permissions" }),
    );
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw unreadable(fsReason(e), e);
  }
  if (!info.isFile) throw unreadable("not a regular file");
  if (info.size > max) {
    throw corrupt(path, `${info.size} bytes exceeds the limit of ${max}`);
  }
  const mode = info.mode;
  if (checksModes && mode !== null) {
    const bits = secret ? 0o077 : 0o022;
    if ((mode & bits) !== 0) {
      throw new KeyStoreError(
        "key-permissions",
        `Refusing to use ${what} "${path}": mode ${
          (mode & 0o777).toString(8).padStart(4, "0")
        } lets group or others ${secret ? "read" : "change"} it`,
        path,
        { kind: "chmod", path, mode: PRIVATE_KEY_MODE },
        mode & 0o7777,
      );
    }
  }
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw unreadable(fsReason(e), e);
  }
}

function writeFailed(path: string, e: unknown): KeyStoreError {
  return new KeyStoreError(
    "key-write-failed",
    `Cannot write "${path}": ${fsReason(e)}`,
    path,
    fsFix(e, { kind: "writable-dir" }),
  );
}

async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    off += await f.write(bytes.subarray(off));
  }
}

/** Make a folder's entries (a rename, a new or removed file) durable; best effort where a folder cannot be opened (Windows). */
async function syncDir(path: string): Promise<void> {
  let d: Deno.FsFile;
  try {
    d = await Deno.open(path, { read: true });
  } catch {
    return;
  }
  try {
    await d.sync();
  } catch {
    // Not every platform syncs a folder.
  } finally {
    d.close();
  }
}

/**
 * Write whole files (0600), each through a synced temporary file, then the
 * renames, then one sync of each folder.
 */
async function writeFiles(
  files: readonly { path: string; bytes: Uint8Array }[],
): Promise<void> {
  const tmps: { tmp: string; path: string }[] = [];
  let current = files[0]?.path ?? "";
  try {
    for (const { path, bytes } of files) {
      current = path;
      const tmp = `${path}.${
        crypto.getRandomValues(new Uint8Array(6)).toHex()
      }.tmp`;
      const f = await Deno.open(tmp, {
        write: true,
        createNew: true,
        mode: PRIVATE_KEY_MODE,
      });
      tmps.push({ tmp, path });
      try {
        if (checksModes) await Deno.chmod(tmp, PRIVATE_KEY_MODE);
        await writeAll(f, bytes);
        await f.sync();
      } finally {
        f.close();
      }
    }
    for (const { tmp, path } of tmps) {
      current = path;
      await Deno.rename(tmp, path);
    }
  } catch (e) {
    for (const { tmp } of tmps) await Deno.remove(tmp).catch(() => {});
    throw writeFailed(current, e);
  }
  for (const d of new Set(files.map((f) => dirname(f.path)))) {
    await syncDir(d);
  }
}

/**
 * Write a record at `offset` (the end of the whole records, so a torn
 * record a failed write left is overwritten) and sync it.
 */
async function writeAt(
  path: string,
  offset: number,
  record: Uint8Array,
  sync = true,
): Promise<void> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, {
      write: true,
      create: true,
      mode: PRIVATE_KEY_MODE,
    });
  } catch (e) {
    throw writeFailed(path, e);
  }
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    await writeAll(f, record);
    if (sync) await f.syncData();
  } catch (e) {
    throw writeFailed(path, e);
  } finally {
    f.close();
  }
  if (offset === 0) await syncDir(dirname(path));
}

/** Remove a file; one already gone is fine. */
async function removeFile(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new KeyStoreError(
      "key-write-failed",
      `Cannot remove "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, { kind: "writable-dir" }),
    );
  }
}
