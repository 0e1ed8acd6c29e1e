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
 * The vault is split by job; {@link openMailVault}'s vault composes the
 * parts, all run in one queue:
 * - `_mail_dir.ts`: the folder, its paths and the queue;
 * - `_mail_key_files.ts`: the ids, the identity key, the prekeys;
 * - `_mail_seen.ts`: `seen` (section 9.5);
 * - `_mail_pending.ts`: `pending` and `pending.to` (section 9.6);
 * - `_mail_peers.ts`: `peers/` (section 9.1 "The peer's keys");
 * - `_mail_records.ts` and `_mail_files.ts`: the records' codecs and the
 *   durable writes they all use.
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

import {
  checkUsername,
  type MailIdentity,
  type MailVault,
  type OneTimePrekey,
  type PeerMailCerts,
  type PendingReceipt,
  type SignedPrekey,
} from "../proto/mod.ts";
import { checkKeyDirs } from "./_files.ts";
import { MailDir } from "./_mail_dir.ts";
import { listDir, removeFile, syncDir } from "./_mail_files.ts";
import { MailKeyFiles } from "./_mail_key_files.ts";
import { MailPeerFiles } from "./_mail_peers.ts";
import { MailPending } from "./_mail_pending.ts";
import { crashLeftovers } from "./_mail_records.ts";
import { MailSeen } from "./_mail_seen.ts";

export { SEEN_KEEP_MS } from "./_mail_seen.ts";

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

/** The {@link MailVault} over files: the parts, one queue. */
class FileMailVault implements MailVault {
  readonly #d: MailDir;
  readonly #keys: MailKeyFiles;
  readonly #seen: MailSeen;
  readonly #pending: MailPending;
  readonly #peers: MailPeerFiles;

  constructor(dir: string, me: string) {
    this.#d = new MailDir(dir, me);
    this.#keys = new MailKeyFiles(this.#d);
    this.#seen = new MailSeen(this.#d);
    this.#pending = new MailPending(this.#d);
    this.#peers = new MailPeerFiles(this.#d);
  }

  // ---- open

  /** Check the folders, clean up after a crash, read `state`, `seen`, `pending`. */
  async load(now: number): Promise<void> {
    await checkKeyDirs(this.#d.mailDirs());
    const names = await listDir(this.#d.mail);
    if (names === undefined) return;
    this.#d.markMade(); // it exists and was checked
    await this.#keys.loadState(names); // before the clean-up: its ids stay taken
    await this.#cleanUp(names);
    await this.#seen.load(now);
    await this.#pending.load();
  }

  async #cleanUp(names: Set<string>): Promise<void> {
    const gone = crashLeftovers(names);
    for (const name of gone) {
      await removeFile(this.#d.path(name));
      names.delete(name);
    }
    if (gone.length > 0) await syncDir(this.#d.mail);
  }

  // ---- ids and own keys (PROTOCOL.md 9.1 "At rest")

  allocateIds(kind: "spk" | "opk", count: number): Promise<number> {
    return this.#keys.allocateIds(kind, count);
  }

  identity(): Promise<MailIdentity | undefined> {
    return this.#keys.identity();
  }

  saveIdentity(id: MailIdentity): Promise<void> {
    return this.#keys.saveIdentity(id);
  }

  signedPrekeys(): Promise<SignedPrekey[]> {
    return this.#keys.signedPrekeys();
  }

  saveSignedPrekey(spk: SignedPrekey): Promise<void> {
    return this.#keys.saveSignedPrekey(spk);
  }

  dropSignedPrekey(id: number): Promise<void> {
    return this.#keys.dropSignedPrekey(id);
  }

  oneTimePrekey(id: number): Promise<OneTimePrekey | undefined> {
    return this.#keys.oneTimePrekey(id);
  }

  saveOneTimePrekeys(opks: OneTimePrekey[]): Promise<void> {
    return this.#keys.saveOneTimePrekeys(opks);
  }

  dropOneTimePrekey(id: number): Promise<void> {
    return this.#keys.dropOneTimePrekey(id);
  }

  // ---- seen (PROTOCOL.md 9.5) and pending (9.6)

  hasSeen(msgId: Uint8Array): boolean {
    return this.#seen.has(msgId);
  }

  addSeen(msgId: Uint8Array, time: number): Promise<void> {
    return this.#seen.add(msgId, time);
  }

  async sync(): Promise<void> {
    return await this.#d.serial(async () => {
      await this.#pending.flush();
      await this.#seen.flush();
    });
  }

  addPending(p: PendingReceipt): Promise<void> {
    return this.#pending.add(p);
  }

  pending(msgId: Uint8Array): Promise<PendingReceipt | undefined> {
    return this.#pending.get(msgId);
  }

  dropPending(msgId: Uint8Array): Promise<void> {
    return this.#pending.drop(msgId);
  }

  expirePending(before: number): Promise<PendingReceipt[]> {
    return this.#pending.expire(before);
  }

  // ---- peers (PROTOCOL.md 9.1 "The peer's keys")

  peerCerts(peer: string): Promise<PeerMailCerts | undefined> {
    return this.#peers.peerCerts(peer);
  }

  savePeerCerts(peer: string, certs: PeerMailCerts): Promise<void> {
    return this.#peers.savePeerCerts(peer, certs);
  }

  forgetPeer(peer: string): Promise<void> {
    return this.#peers.forgetPeer(peer);
  }

  verified(peer: string): Promise<string | undefined> {
    return this.#peers.verified(peer);
  }

  setVerified(peer: string, fingerprint: string): Promise<void> {
    return this.#peers.setVerified(peer, fingerprint);
  }
}
