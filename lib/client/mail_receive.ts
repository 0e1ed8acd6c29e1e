/**
 * Receiving mail (PROTOCOL.md sections 9.4 to 9.6, 9.8): after each
 * `welcome` the client asks for its log (`mailbox`), then handles what the
 * server pushes strictly in `seq` order, one record at a time: a `mail` goes
 * through the checks of 9.4 in order and is shown, or refused with its code
 * (the sender's name marked unverified), or dropped silently as a
 * duplicate; a `receipt` tells what became of a message we sent
 * (`mail_receipts.ts`). Every
 * record is acknowledged (`mail-ack`) once handled, a shown message with
 * its receipt proof, in batches: when half the window is handled, or 100 ms
 * after the oldest record not yet acknowledged.
 *
 * A dropped link ends a stream: what was not acknowledged is pushed again
 * on the next one, and the seen ids keep a message from being shown twice.
 * @module
 */

import {
  checkMailTime,
  type DecodedMail,
  decodeMail,
  type DeliveredProof,
  mailIdHex,
  type MailVault,
  openMail,
  receiptProof,
  type ServerToClient,
} from "../proto/mod.ts";
import { isImError, ProtocolError } from "../util/mod.ts";
import type { MailKeys } from "./mail_keys.ts";
import type { KnownSender, MailPeers } from "./mail_peers.ts";
import { expirePending, onReceipt, type ReceiptPush } from "./mail_receipts.ts";
import type { ClientContext } from "./options.ts";
import type { ServerConnection } from "./server_link.ts";

/** How many pushed records may await our `mail-ack` (section 9.8: `im` sends 256). */
export const MAIL_WINDOW = 256;
/** Acknowledge at the latest this long after the oldest record not yet acknowledged. */
export const ACK_DELAY_MS = 100;
/** JSON bytes per `delivered` entry of a `mail-ack`, at most: `{"seq":<16>,"proof":"<44>"},`. */
const PROOF_JSON_BYTES = 80;
/** JSON bytes of a `mail-ack` around its entries, at most. */
const ACK_JSON_BYTES = 80;

type MailPush = Extract<ServerToClient, { t: "mail" }>;
type SyncedPush = Extract<ServerToClient, { t: "synced" }>;

/** What the stream delivers, in order. */
export type InboxRecord = MailPush | ReceiptPush | SyncedPush;

/** The codes of section 9.4's refusals: the message is shown as refused and acknowledged. */
const REFUSALS: ReadonlySet<string> = new Set([
  "mail-malformed",
  "mail-stale",
  "mail-tampered",
  "peer-key-changed",
  "unknown-identity-key",
  "unknown-prekey",
  "misaddressed",
  // A room key the rooms part refused (PROTOCOL.md 10.2).
  "room-malformed",
  "room-unknown",
  "room-replayed",
  "not-a-member",
]);

/**
 * Why the sender's keys may be found wrong (section 9.4 step 2): the
 * message is then refused as `unknown-identity-key`. Any other failure of
 * the check is not the message's fault.
 */
const KEY_REFUSALS: ReadonlySet<string> = new Set([
  "bad-identity",
  "bad-bundle",
  "bad-cert",
  "prekey-rollback",
  "no-mailbox",
]);

/** Proofs kept for messages shown, so a duplicate is acknowledged with its proof. */
const MAX_KEPT_PROOFS = 10_000;

/** A refusal of section 9.4: shown with its code, acknowledged without a proof. */
class Refused extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** The mail stream of one user, across links. */
export class MailInbox {
  #ctx: ClientContext;
  #link: ServerConnection;
  #keys: MailKeys;
  #peers: MailPeers;
  #vault: MailVault;
  /** Counts links: a record of an older one is not handled, nor its ack sent. */
  #epoch = 0;
  #queue: Promise<void> = Promise.resolve();
  /** Counts links (not stops): an acknowledgement goes out only on the link it belongs to. */
  #linkCount = 0;
  /** The acknowledgements in flight, in order: each waits for the sync before it. */
  #acks: Promise<void> = Promise.resolve();
  #stopped = false;
  /** A failure of ours stopped this link's stream: nothing more until the next welcome. */
  #stalled = false;
  // The acknowledgement being gathered (this link's).
  #upTo = 0;
  #proofs: DeliveredProof[] = [];
  #unacked = 0;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  /** Aborted when this link's stream ends: waits for the server stop. */
  #streamEnd = new AbortController();
  /** Senders whose keys were asked for on this link (`MailPeers.forReceiving`). */
  #asked = new Set<string>();
  /**
   * Where a room key goes (PROTOCOL.md 10.2): the rooms part; it resolves
   * once the key is saved. A refusal it throws (an ImError of
   * {@link REFUSALS}) is reported and acknowledged like the mail's own.
   */
  onRoomKey: (from: string, key: Uint8Array) => Promise<void> = () =>
    Promise.reject(
      new ProtocolError("room-unknown", "this client keeps no rooms"),
    );
  /** Proofs of the messages shown, by id (hex), the oldest dropped past {@link MAX_KEPT_PROOFS}. */
  #shownProofs = new Map<string, Uint8Array>();
  /** One-time prekeys of messages shown, deleted once their ids are durable. */
  #usedPrekeys: number[] = [];
  /** Mail shown on this link before its `synced`. */
  #backlogShown = 0;
  #synced = false;
  #syncedNow = Promise.withResolvers<void>();

  constructor(
    ctx: ClientContext,
    link: ServerConnection,
    keys: MailKeys,
    peers: MailPeers,
    vault: MailVault,
  ) {
    this.#ctx = ctx;
    this.#link = link;
    this.#keys = keys;
    this.#peers = peers;
    this.#vault = vault;
  }

  /**
   * After each `welcome`: tell the user of messages never delivered, and
   * ask for the log.
   */
  onWelcome(): void {
    this.#linkCount++;
    this.#syncedNow = Promise.withResolvers<void>();
    this.#reset();
    this.#stalled = false;
    this.#link.sendQuietly({ t: "mailbox", window: MAIL_WINDOW });
    this.#ctx.track(expirePending(this.#ctx, this.#link, this.#vault));
  }

  /**
   * @returns once this link's backlog has been handled (its `synced`, which
   *   comes after every record that waited at login, was reached in order),
   *   or the link dropped
   */
  whenSynced(): Promise<void> {
    return this.#syncedNow.promise;
  }

  /** The link dropped: this stream is over. */
  lost(): void {
    // Nobody waits for a backlog this link will never finish.
    this.#syncedNow.resolve();
    this.#linkCount++;
    this.#reset();
  }

  /** Quit: what was handled is acknowledged, nothing more is handled. */
  async stop(): Promise<void> {
    const last = this.#flush(); // what was handled is not pushed again
    this.#stopped = true;
    this.#reset();
    await last;
  }

  /**
   * A record of the stream, handled after every earlier one.
   * @param m the push
   */
  push(m: InboxRecord): void {
    const epoch = this.#epoch;
    const run = this.#queue.then(() =>
      this.#stopped || this.#stalled || epoch !== this.#epoch
        ? undefined
        : this.#handle(m)
    );
    this.#queue = run.catch(() => {});
    this.#ctx.track(run);
  }

  #reset(): void {
    this.#epoch++;
    this.#streamEnd.abort();
    this.#streamEnd = new AbortController();
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#upTo = 0;
    this.#proofs = [];
    this.#unacked = 0;
    this.#asked.clear();
    this.#backlogShown = 0;
    this.#synced = false;
  }

  async #handle(m: InboxRecord): Promise<void> {
    const epoch = this.#epoch;
    if (m.t === "synced") {
      this.#synced = true;
      this.#syncedNow.resolve();
      const n = this.#backlogShown;
      if (n > 0) {
        this.#ctx.system(
          `${n} mail message${n === 1 ? "" : "s"} arrived while you were away`,
        );
      }
      return;
    }
    let proof: Uint8Array | undefined;
    try {
      proof = m.t === "mail"
        ? await this.#onMail(m, epoch)
        : await onReceipt(this.#ctx, this.#vault, m);
    } catch (e) {
      if (epoch !== this.#epoch) return; // the link dropped under it: pushed again
      const code = e instanceof Refused || isImError(e)
        ? (e as { code: string }).code
        : "internal";
      if (m.t === "mail" && REFUSALS.has(code)) {
        this.#ctx.print({
          kind: "error",
          code,
          text: `Mail from ${m.from} (unverified) refused: ${
            (e as Error).message.replace(/^Mail refused: /, "")
          }`,
        });
      } else if (m.t === "receipt" && code === "bad-receipt") {
        this.#ctx.error(e);
      } else {
        // Our own failure (the vault cannot be read or written): nothing
        // more is acknowledged on this link, so nothing is lost; the server
        // pushes it all again at the next login.
        this.#ctx.print({
          kind: "error",
          code,
          text: `Cannot handle the mailbox: ${
            (e as Error).message
          }; what is waiting stays on the server until the next login`,
        });
        this.#reset();
        this.#stalled = true;
        this.#syncedNow.resolve(); // no backlog comes on this link any more
        return;
      }
    }
    if (epoch === this.#epoch) this.#handled(m.seq, proof);
  }

  /**
   * Section 9.4, steps 1 to 6.
   * @returns the receipt proof to acknowledge with, when there is one
   * @throws {Refused} or an ImError with the refusal's code
   */
  async #onMail(m: MailPush, epoch: number): Promise<Uint8Array | undefined> {
    // Step 1: decode, time, and the sender the server authenticated.
    let mail: DecodedMail;
    try {
      mail = decodeMail(Uint8Array.fromBase64(m.mail));
    } catch (e) {
      if (isImError(e)) throw e;
      throw new Refused("mail-malformed", "Cannot read mail: not base64");
    }
    const h = mail.header;
    checkMailTime(h, this.#link.serverNow());
    if (h.sender !== m.from) {
      throw new Refused(
        "mail-tampered",
        `the server says it is from ${m.from}, the message names ${h.sender}`,
      );
    }
    // Step 2: the sender's keys, then ours.
    let sender: KnownSender;
    try {
      sender = await this.#peers.forReceiving(
        h.sender,
        h.ik,
        this.#asked,
        this.#streamEnd.signal,
      );
    } catch (e) {
      if (epoch !== this.#epoch) throw e;
      if (isImError(e) && e.code === "peer-key-changed") {
        throw new Refused(
          e.code,
          `${e.message}; after !trust ${h.sender}, ${h.sender} must send it again`,
        );
      }
      // Only keys that were checked and found wrong refuse the message. A
      // failure to check (our disk, the server's store, a rate limit, the
      // link) is ours: the stream stops and the message stays on the server.
      if (!isImError(e) || !KEY_REFUSALS.has(e.code)) throw e;
      throw new Refused(
        "unknown-identity-key",
        `${h.sender}'s identity key could not be checked: ${
          (e as Error).message
        }`,
      );
    }
    if (!equal(sender.ik, h.ik)) {
      throw new Refused(
        "unknown-identity-key",
        `it is sealed with an identity key that is not ${h.sender}'s`,
      );
    }
    const identity = await this.#keys.identity();
    const spk = (await this.#vault.signedPrekeys()).find((k) =>
      k.id === h.spkId
    );
    const opk = h.opkId === 0
      ? undefined
      : await this.#vault.oneTimePrekey(h.opkId);
    if (!spk || (h.opkId !== 0 && !opk)) {
      // A duplicate whose keys are used up: acknowledged with the proof kept
      // when it was shown (section 9.4 step 4), so a `delivered` a lost
      // acknowledgement kept from the sender is sent now.
      if (this.#vault.hasSeen(h.msgId)) {
        return this.#shownProofs.get(mailIdHex(h.msgId));
      }
      throw new Refused(
        "unknown-prekey",
        `it names a ${
          spk ? `one-time prekey (#${h.opkId})` : `signed prekey (#${h.spkId})`
        } this client does not hold`,
      );
    }
    // Step 3 (and 5): the MAC, then the plaintext.
    const opened = await openMail({
      mail,
      senderFingerprint: sender.owner.fingerprintBytes,
      recipientFingerprint: this.#ctx.o.identity.fingerprintBytes,
      identity: identity.pair,
      signedPrekey: spk.pair,
      oneTimePrekey: opk?.pair,
    });
    const proof = await receiptProof(opened.rk, h.msgId);
    opened.rk.fill(0);
    // Step 4: the addressee, and not shown before.
    if (h.recipient !== this.#ctx.o.user) {
      throw new Refused(
        "misaddressed",
        `it is addressed to ${h.recipient}, not to ${this.#ctx.o.user}`,
      );
    }
    if (this.#vault.hasSeen(h.msgId)) return opened.roomKey ? undefined : proof;
    // Step 6: show, remember, use up the one-time prekey, acknowledge.
    if (epoch !== this.#epoch) return undefined;
    if (opened.roomKey) {
      // A member's room key (plaintext type 2, PROTOCOL.md 10.2): kept by
      // the rooms, durably, before the mail is acknowledged; no receipt
      // (the sender keeps no pending entry for it).
      try {
        await this.onRoomKey(h.sender, opened.roomKey);
      } finally {
        opened.roomKey.fill(0);
      }
      await this.#vault.addSeen(h.msgId, h.time);
      if (opk) this.#usedPrekeys.push(opk.id);
      return undefined;
    }
    this.#ctx.print({
      kind: "mail",
      direction: "in",
      from: h.sender,
      to: h.recipient,
      text: opened.text,
      id: mailIdHex(h.msgId),
      written: h.time,
    });
    if (!this.#synced) this.#backlogShown++;
    await this.#vault.addSeen(h.msgId, h.time);
    this.#keepProof(mailIdHex(h.msgId), proof);
    // Deleted once the id is durable (#flush): a crash before that shows
    // the message again, as section 9.4 says, instead of refusing it.
    if (opk) this.#usedPrekeys.push(opk.id);
    return proof;
  }

  #keepProof(id: string, proof: Uint8Array): void {
    this.#shownProofs.set(id, proof);
    if (this.#shownProofs.size > MAX_KEPT_PROOFS) {
      this.#shownProofs.delete(this.#shownProofs.keys().next().value!);
    }
  }

  /**
   * Acknowledge now what was handled (the rooms' key gate, PROTOCOL.md
   * 10.4, opens at our `mail-ack`: the room stream starts after it).
   * @returns when the acknowledgement was sent (or dropped with its link)
   */
  acknowledge(): Promise<void> {
    return this.#queue.then(() => this.#flush());
  }

  /** A record was handled: acknowledge it now or soon (section 9.8). */
  #handled(seq: number, proof: Uint8Array | undefined): void {
    this.#upTo = Math.max(this.#upTo, seq);
    if (proof) this.#proofs.push({ seq, proof: proof.toBase64() });
    this.#unacked++;
    const room = Math.max(
      1,
      Math.floor((this.#link.recordRoom - ACK_JSON_BYTES) / PROOF_JSON_BYTES),
    );
    if (this.#unacked >= MAIL_WINDOW / 2 || this.#proofs.length >= room) {
      this.#flush();
    } else if (this.#ackTimer === undefined) {
      this.#ackTimer = setTimeout(() => this.#flush(), ACK_DELAY_MS);
    }
  }

  /**
   * Send the acknowledgement gathered so far, once the ids of what it
   * covers are durable (section 9.4, "Order across a restart"): one sync of
   * `seen` per `mail-ack`. An acknowledgement is sent only on the link
   * whose records it covers.
   * @returns when it was sent (or dropped with its link)
   */
  #flush(): Promise<void> {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    if (this.#unacked === 0 || this.#stopped) return Promise.resolve();
    const ack = {
      t: "mail-ack",
      upTo: this.#upTo,
      delivered: this.#proofs,
    } as const;
    this.#proofs = [];
    this.#unacked = 0;
    const used = this.#usedPrekeys;
    this.#usedPrekeys = [];
    const link = this.#linkCount;
    const sent = this.#acks.then(async () => {
      await this.#vault.sync();
      // The ids are durable: the one-time private keys of what was shown
      // go now (section 9.1), before the server may delete the messages.
      for (const id of used) await this.#vault.dropOneTimePrekey(id);
    }).then(
      () => {
        if (link === this.#linkCount) this.#link.sendQuietly(ack);
      },
      (e) => {
        if (link !== this.#linkCount) return;
        // The ids are not durable: acknowledging could lose a message to a
        // crash, so nothing more is acknowledged on this link.
        this.#ctx.print({
          kind: "error",
          code: isImError(e) ? e.code : "internal",
          text: `Cannot handle the mailbox: ${
            (e as Error).message
          }; what is waiting stays on the server until the next login`,
        });
        this.#reset();
        this.#stalled = true;
        this.#syncedNow.resolve(); // no backlog comes on this link any more
      },
    );
    this.#acks = sent;
    this.#ctx.track(sent);
    return sent;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
