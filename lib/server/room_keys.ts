/**
 * {@link RoomKeys}: the hand-out of sender keys on the server (PROTOCOL.md
 * 10.2, 10.4): `member-keys` gives a member the mailbox keys of the room's
 * other members, `room-keys` stores its sealed key mails in their
 * mailboxes (outside their quota) and the `keys` entry that gates the
 * room's stream until each recipient acknowledged its mail; at most one key
 * mail per sender and recipient at an epoch. A part of the rooms facade
 * (rooms.ts).
 * @module
 */

import { bucketOf, decodeMail, type RoomBundle } from "../proto/mod.ts";
import { utf8 } from "../util/mod.ts";
import { fromBase64 } from "./mail_keys.ts";
import { mailRecord } from "./mail_records.ts";
import { later, type RoomLocks } from "./room_lock.ts";
import {
  answerBytes,
  type Msg,
  type RoomCounts,
  type RoomReplies,
} from "./room_replies.ts";
import { keysEntryData } from "./room_stream.ts";
import type { RoomsOptions } from "./rooms.ts";
import type { ClientSession, Reply } from "./registry.ts";
import type { AppendEntry } from "./seams.ts";

/** What {@link RoomKeys} uses of the rooms' settings. */
type Options = Pick<
  RoomsOptions,
  | "store"
  | "prekeys"
  | "clients"
  | "mailStore"
  | "notifyMail"
  | "maxFrameBytes"
  | "now"
>;

/** `member-keys` and `room-keys`, and the key mails stored per epoch. */
export class RoomKeys {
  #o: Options;
  #replies: RoomReplies;
  #locks: RoomLocks;
  #counts: RoomCounts;

  /**
   * @param o the seams and limits it uses, of the rooms' settings
   * @param parts the refusals, the rooms' locks, and the counts
   */
  constructor(
    o: Options,
    parts: { replies: RoomReplies; locks: RoomLocks; counts: RoomCounts },
  ) {
    this.#o = o;
    this.#replies = parts.replies;
    this.#locks = parts.locks;
    this.#counts = parts.counts;
  }

  /**
   * `member-keys` (PROTOCOL.md 10.2, 10.4): the mailbox keys of the room's
   * other members, as `keys` gives them, to seal a sender key to each.
   * Answered by one `room-bundles` per as many bundles as fit a frame, all
   * naming the request, together one entry per other member (empty strings
   * for one whose keys are gone).
   * @param s the connection
   * @param m the message
   * @param reply its answers: `room-bundles`, or `error` `rate-limited`,
   *   `no-room`, `not-a-member`
   */
  async memberKeys(
    s: ClientSession,
    m: Msg<"member-keys">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#replies.take(s)) return this.#replies.rateLimited(reply);
    const row = await this.#replies.memberRoom(s, m.room, reply);
    if (!row) return;
    const bundles: RoomBundle[] = [];
    for (const user of row.members) {
      if (user === s.user) continue;
      const identity = this.#o.clients().get(user);
      const certs = identity && (await this.#o.prekeys.certs(user));
      bundles.push({
        user,
        identity: certs ? identity.publicDer.toBase64() : "",
        identityKey: certs?.identityCert.toBase64() ?? "",
        signedPrekey: certs?.signedPrekeyCert.toBase64() ?? "",
      });
    }
    const empty = answerBytes({
      t: "room-bundles",
      room: row.name,
      epoch: row.epoch,
      bundles: [],
    });
    for (const page of pages(bundles, empty, this.#o.maxFrameBytes)) {
      await reply({
        t: "room-bundles",
        room: row.name,
        epoch: row.epoch,
        bundles: page,
      });
    }
  }

  /**
   * `room-keys` (PROTOCOL.md 10.2, 10.4): the user's sender key, one
   * sealed mail per other member: `rate-limited`; a member
   * (`no-room`, `not-a-member`); the room's epoch (`room-stale-epoch`); at
   * most one mail per other member, each a `MAIL` from the user to another
   * member whose ciphertext is exactly as long as a padded `ROOM_KEY` of
   * this room ({@link roomKeyCiphertextBytes}), none twice (`bad-mail`),
   * each fitting a `mail` push (`mail-too-large`). A mail for a member
   * whose key mail from the user this epoch was stored already is not
   * stored again (a hand-out sent again after a crash), and is no error.
   * The other mails go to the recipients' logs in one transaction
   * (outside their quota), then a `keys` entry that holds the room's later
   * entries back from each recipient until it acknowledged its mail. The
   * pairs already stored are the store's (`RoomStore.keyed`), and the gate
   * and the new pairs are one transaction (`appendKeys`), so a repeat is not
   * stored again whichever node of a cluster takes it (PROTOCOL.md 11.6);
   * run alone among this node's changes of the room.
   * @param s the connection
   * @param m the message
   * @param reply its answer: `room-keyed` whose `count` is the mails stored
   *   now, or `error`
   */
  async roomKeys(
    s: ClientSession,
    m: Msg<"room-keys">,
    reply: Reply,
  ): Promise<void> {
    if (!this.#replies.take(s)) return this.#replies.rateLimited(reply);
    const answered = await this.#locks.run(m.room, async () => {
      const refuse = (code: string, message: string) =>
        later(this.#replies.refuse(reply, code, message));
      const row = await this.#o.store.room(m.room);
      if (!row) return later(this.#replies.noRoom(reply, m.room));
      if (!row.members.includes(s.user)) {
        return refuse("not-a-member", `You are not a member of room ${m.room}`);
      }
      if (m.epoch !== row.epoch) {
        return later(this.#replies.stale(reply, row, m.epoch));
      }
      const others = new Set(row.members.filter((u) => u !== s.user));
      if (m.mails.length > others.size) {
        return refuse(
          "bad-mail",
          `Keys refused: ${m.mails.length} mails for ${others.size} other members of room ${row.name}`,
        );
      }
      const keySize = roomKeyCiphertextBytes(row.name);
      const mails: { recipient: string; mail: Uint8Array }[] = [];
      for (const [i, text] of m.mails.entries()) {
        let mail: Uint8Array;
        let decoded;
        try {
          mail = fromBase64(text, "mail");
          decoded = decodeMail(mail);
        } catch (e) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${i + 1}: ${(e as Error).message}`,
          );
        }
        const { header } = decoded;
        if (header.sender !== s.user) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${i + 1} names another sender than you`,
          );
        }
        if (!others.has(header.recipient)) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${
              i + 1
            } is for ${header.recipient}, not another member of room ${row.name}`,
          );
        }
        if (decoded.ciphertext.length !== keySize) {
          return refuse(
            "bad-mail",
            `Keys refused: mail ${
              i + 1
            } has a ciphertext of ${decoded.ciphertext.length} bytes, not the ${keySize} of a room key of room ${row.name}`,
          );
        }
        if (mails.some((x) => x.recipient === header.recipient)) {
          return refuse(
            "bad-mail",
            `Keys refused: two mails for ${header.recipient}`,
          );
        }
        const pushBytes = answerBytes({
          t: "mail",
          seq: Number.MAX_SAFE_INTEGER,
          from: s.user,
          at: Number.MAX_SAFE_INTEGER,
          mail: mail.toBase64(),
        });
        if (pushBytes > this.#o.maxFrameBytes) {
          return refuse(
            "mail-too-large",
            `Keys refused: mail ${
              i + 1
            } would need a record of ${pushBytes} bytes, over the limit of ${this.#o.maxFrameBytes}`,
          );
        }
        mails.push({ recipient: header.recipient, mail });
      }
      // One key mail per sender and recipient at this epoch: a repeat is
      // not stored again, whichever node took the first (PROTOCOL.md 10.4,
      // 11.6: the pairs are the store's).
      const sent = new Set(
        await this.#o.store.keyed(row.name, row.epoch, s.user),
      );
      const fresh = mails.filter((x) => !sent.has(x.recipient));
      if (fresh.length > 0) {
        const entries: AppendEntry[] = fresh.map((x) => ({
          user: x.recipient,
          data: mailRecord(x.mail),
          counted: false,
        }));
        const seqs = await this.#o.mailStore.appendMany(entries);
        // Committed: the recipients' mail streams push them now.
        for (const x of fresh) this.#o.notifyMail(x.recipient);
        const waits = Object.fromEntries(
          fresh.map((x, i) => [x.recipient, seqs[i]!]),
        );
        // The gate and the pairs in one transaction, after the mails: a
        // request that failed before (store-failed) is taken whole when
        // sent again; the epoch moved meanwhile is room-stale-epoch.
        await this.#o.store.appendKeys(row.name, {
          kind: "keys",
          from: s.user,
          at: this.#o.now(),
          data: keysEntryData({ epoch: row.epoch, waits }),
        }, { epoch: row.epoch, recipients: fresh.map((x) => x.recipient) });
        this.#counts.keyed += fresh.length;
      }
      return later(reply({
        t: "room-keyed",
        room: row.name,
        epoch: row.epoch,
        count: fresh.length,
      }));
    });
    await answered.done;
  }
}

/**
 * The ciphertext length of a key mail for room `name` (PROTOCOL.md 10.2,
 * 10.4): its plaintext is `u8 0x02 || u32 len || ROOM_KEY` padded to its
 * bucket, `ROOM_KEY` being `1 + 16 + 1 + len(utf8(name)) + 4 + 4 + 32 + 32`
 * bytes, and MD-CFB keeps the length.
 * @param name the room's name
 * @returns the only length `room-keys` accepts for the room
 */
export function roomKeyCiphertextBytes(name: string): number {
  const roomKey = 1 + 16 + 1 + utf8(name).length + 4 + 4 + 32 + 32;
  return bucketOf(5 + roomKey);
}

/**
 * Split bundles into answers that each fit a record: `base` bytes for an
 * answer with none, plus each bundle's JSON and a comma. Always at least
 * one answer (an empty one for a room of one).
 */
function pages(
  bundles: readonly RoomBundle[],
  base: number,
  maxFrameBytes: number,
): RoomBundle[][] {
  const out: RoomBundle[][] = [[]];
  let bytes = base;
  for (const b of bundles) {
    const more = JSON.stringify(b).length + 1;
    if (out.at(-1)!.length > 0 && bytes + more > maxFrameBytes) {
      out.push([]);
      bytes = base;
    }
    out.at(-1)!.push(b);
    bytes += more;
  }
  return out;
}
