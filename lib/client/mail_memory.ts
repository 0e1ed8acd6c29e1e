/**
 * The mailbox vault of a client with no key directory (tests, `im demo`):
 * every key and id in memory, for the client's life (PROTOCOL.md section
 * 9.1, "At rest": such a client loses its mailbox with it). `im chat`
 * passes the key directory's vault instead (`openMailVault` of the
 * keystore).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryMailVault } from "./mail_memory.ts";
 * const v = new MemoryMailVault();
 * assert.equal(await v.allocateIds("opk", 100), 1);
 * assert.equal(await v.allocateIds("opk", 1), 101);
 * const id = new Uint8Array(16).fill(7);
 * assert.ok(!v.hasSeen(id));
 * await v.addSeen(id, Date.now());
 * assert.ok(v.hasSeen(id));
 * ```
 * @module
 */

import type {
  MailIdentity,
  MailVault,
  OneTimePrekey,
  PeerMailCerts,
  PendingReceipt,
  SignedPrekey,
} from "../proto/mod.ts";

/** A {@link MailVault} in memory: nothing survives the process. */
export class MemoryMailVault implements MailVault {
  #identity: MailIdentity | undefined;
  /** By id; ids grow, so insertion order is oldest first. */
  #signed = new Map<number, SignedPrekey>();
  #oneTime = new Map<number, OneTimePrekey>();
  #next = { spk: 1, opk: 1 };
  /** Hex msg_id -> its time. */
  #seen = new Map<string, number>();
  /** Hex msg_id -> entry. */
  #pending = new Map<string, PendingReceipt>();
  #peers = new Map<string, PeerMailCerts>();
  #verified = new Map<string, string>();

  identity(): Promise<MailIdentity | undefined> {
    return Promise.resolve(this.#identity);
  }

  saveIdentity(id: MailIdentity): Promise<void> {
    this.#identity = id;
    return Promise.resolve();
  }

  signedPrekeys(): Promise<SignedPrekey[]> {
    return Promise.resolve(
      [...this.#signed.values()].sort((a, b) => a.id - b.id),
    );
  }

  saveSignedPrekey(spk: SignedPrekey): Promise<void> {
    this.#signed.set(spk.id, spk);
    return Promise.resolve();
  }

  dropSignedPrekey(id: number): Promise<void> {
    this.#signed.delete(id);
    return Promise.resolve();
  }

  oneTimePrekey(id: number): Promise<OneTimePrekey | undefined> {
    return Promise.resolve(this.#oneTime.get(id));
  }

  saveOneTimePrekeys(opks: OneTimePrekey[]): Promise<void> {
    for (const k of opks) this.#oneTime.set(k.id, k);
    return Promise.resolve();
  }

  dropOneTimePrekey(id: number): Promise<void> {
    this.#oneTime.delete(id);
    return Promise.resolve();
  }

  /**
   * @throws {RangeError} a count that is not a positive integer
   */
  allocateIds(kind: "spk" | "opk", count: number): Promise<number> {
    if (!Number.isSafeInteger(count) || count < 1) {
      return Promise.reject(
        new RangeError(
          `Ids to allocate: expected a positive integer, got ${count}`,
        ),
      );
    }
    const first = this.#next[kind];
    this.#next[kind] = first + count;
    return Promise.resolve(first);
  }

  hasSeen(msgId: Uint8Array): boolean {
    return this.#seen.has(msgId.toHex());
  }

  addSeen(msgId: Uint8Array, time: number): Promise<void> {
    this.#seen.set(msgId.toHex(), time);
    return Promise.resolve();
  }
  sync(): Promise<void> {
    return Promise.resolve();
  }

  addPending(p: PendingReceipt): Promise<void> {
    this.#pending.set(p.msgId.toHex(), {
      ...p,
      msgId: p.msgId.slice(),
      rk: p.rk.slice(),
    });
    return Promise.resolve();
  }

  pending(msgId: Uint8Array): Promise<PendingReceipt | undefined> {
    return Promise.resolve(this.#pending.get(msgId.toHex()));
  }

  dropPending(msgId: Uint8Array): Promise<void> {
    const p = this.#pending.get(msgId.toHex());
    if (p) {
      p.rk.fill(0);
      this.#pending.delete(msgId.toHex());
    }
    return Promise.resolve();
  }

  expirePending(before: number): Promise<PendingReceipt[]> {
    const out: PendingReceipt[] = [];
    for (const [hex, p] of this.#pending) {
      if (p.time < before) {
        out.push(p);
        this.#pending.delete(hex);
      }
    }
    return Promise.resolve(out);
  }

  peerCerts(peer: string): Promise<PeerMailCerts | undefined> {
    return Promise.resolve(this.#peers.get(peer));
  }

  savePeerCerts(peer: string, certs: PeerMailCerts): Promise<void> {
    this.#peers.set(peer, certs);
    return Promise.resolve();
  }

  forgetPeer(peer: string): Promise<void> {
    this.#peers.delete(peer);
    this.#verified.delete(peer);
    return Promise.resolve();
  }

  verified(peer: string): Promise<string | undefined> {
    return Promise.resolve(this.#verified.get(peer));
  }

  setVerified(peer: string, fingerprint: string): Promise<void> {
    this.#verified.set(peer, fingerprint);
    return Promise.resolve();
  }
}
