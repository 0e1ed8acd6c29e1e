/**
 * {@link KeyHandOut}: handing out our sender chain on the client's side
 * (PROTOCOL.md section 10.2, 10.4): at each epoch, the other members'
 * mailbox keys in one `member-keys` (its answers may take several
 * records), our `ROOM_KEY` sealed to each in one mail, the mails stored in
 * as few `room-keys` requests as fit a record; one hand-out per room and
 * epoch at a time. The texts typed meanwhile go once the server stored
 * them all. A part of the rooms facade (rooms.ts).
 * @module
 */

import {
  encodeRoomKey,
  type RoomBundle,
  sealMail,
  type ServerToClient,
} from "../proto/mod.ts";
import { isImError, sleep } from "../util/mod.ts";
import type { Mailbox } from "./mailbox.ts";
import { ask } from "./mail_peers.ts";
import type { ClientContext } from "./options.ts";
import { dropQueued } from "./room_messages.ts";
import type { Room } from "./room_state.ts";
import type { RoomTable } from "./room_table.ts";
import type { ServerConnection } from "./server_link.ts";

/** How long the answers to one `member-keys` may take to all come. */
const BUNDLES_WAIT_MS = 10_000;
/** A `room-keys` request's JSON around its mails, with a long room name and request id. */
const ROOM_KEYS_JSON_BYTES = 160;

/** Our chain's hand-outs, one per room and epoch at a time. */
export class KeyHandOut {
  #ctx: ClientContext;
  #link: ServerConnection;
  #mail: Mailbox;
  #table: RoomTable;
  #pump: (room: Room) => void;
  /** Per room, the `room-bundles` of a `member-keys` in flight. */
  #bundleSink = new Map<string, RoomBundle[]>();
  /** Hand-outs under way, by room and epoch: one at a time each. */
  #handingOut = new Set<string>();

  /**
   * @param o the client's context, the server link, the mailbox (its
   *   peers' keys and our identity), the rooms we hold, and what sends a
   *   room's queued texts once our key is out
   */
  constructor(o: {
    ctx: ClientContext;
    link: ServerConnection;
    mail: Mailbox;
    table: RoomTable;
    pump: (room: Room) => void;
  }) {
    this.#ctx = o.ctx;
    this.#link = o.link;
    this.#mail = o.mail;
    this.#table = o.table;
    this.#pump = o.pump;
  }

  /**
   * The second and later answers to one `member-keys` (section 10.4: as
   * many as fit a record each).
   * @param room the room they are of
   * @param bundles its members' keys
   */
  onBundles(room: string, bundles: readonly RoomBundle[]): void {
    this.#bundleSink.get(room)?.push(...bundles);
  }

  /**
   * Hand our chain of `epoch` to every other member (section 10.2): their
   * keys in one request, one sealed mail each, stored in one request. The
   * texts typed meanwhile go once the server stored them all.
   */
  async run(room: Room, epoch: number): Promise<void> {
    const key = `${room.name}\0${epoch}`;
    if (this.#handingOut.has(key)) return;
    this.#handingOut.add(key);
    try {
      await this.#handOutOnce(room, epoch);
    } finally {
      this.#handingOut.delete(key);
    }
  }

  async #handOutOnce(room: Room, epoch: number): Promise<void> {
    const own = room.own;
    if (!own || own.epoch !== epoch) return;
    const report = (code: string, why: string) => {
      // A room we left or an epoch that moved on meanwhile: nothing to say;
      // nor when the server says we are no member (our own leave or a
      // removal raced the hand-out: the change itself is shown when its
      // entry comes).
      if (this.#table.rooms.get(room.name) !== room || room.own !== own) return;
      if (code === "not-a-member" || code === "no-room") return;
      this.#ctx.print({
        kind: "error",
        code,
        text: `[#${room.name}] cannot hand out your key: ${why}`,
      });
    };
    // A hand-out that cannot finish: what waits for it is not sent.
    const fail = (code: string, why: string) => {
      report(code, why);
      dropQueued(this.#ctx, room, "your key could not be handed out");
    };
    const sink: RoomBundle[] = [];
    this.#bundleSink.set(room.name, sink);
    let a: ServerToClient | null;
    try {
      a = await ask(this.#link, { t: "member-keys", room: room.name });
      if (a?.t === "room-bundles" && a.room === room.name) {
        sink.unshift(...a.bundles);
        // The rest of the answers, if the room's keys took several records.
        const others = room.members.filter((m) => m !== this.#ctx.o.user);
        const deadline = Date.now() + BUNDLES_WAIT_MS;
        while (
          !others.every((m) => sink.some((b) => b.user === m)) &&
          Date.now() < deadline && this.#link.connected
        ) await sleep(5);
      }
    } finally {
      if (this.#bundleSink.get(room.name) === sink) {
        this.#bundleSink.delete(room.name);
      }
    }
    if (a === null) {
      // Again at the next login; what waits for it is not sent now.
      dropQueued(this.#ctx, room, "the server did not answer");
      return;
    }
    if (a.t === "error") return fail(a.code, a.message);
    if (a.t !== "room-bundles" || a.room !== room.name) {
      return fail("unexpected-message", `the server answered "${a.t}"`);
    }
    if (a.epoch !== epoch || room.own !== own) return; // a newer epoch began
    const identity = await this.#mail.keys.identity();
    const current = own.chain.current();
    const roomKey = encodeRoomKey({
      roomId: room.list.roomId,
      name: room.name,
      epoch,
      index: current.index,
      chainKey: current.chainKey,
      signingKey: own.signing.publicRaw,
    });
    const mails: string[] = [];
    for (const m of room.members) {
      if (m !== this.#ctx.o.user && !sink.some((b) => b.user === m)) {
        report("no-mailbox", `to ${m}: the server gave no keys for ${m}`);
      }
    }
    for (const b of sink) {
      if (!room.members.includes(b.user) || b.user === this.#ctx.o.user) {
        continue;
      }
      try {
        const peer = await this.#mail.peers.forSending({
          t: "bundle",
          ...b,
          oneTimePrekey: "",
        });
        const sealed = await sealMail({
          sender: this.#ctx.o.user,
          recipient: b.user,
          senderFingerprint: this.#ctx.o.identity.fingerprintBytes,
          recipientFingerprint: peer.owner.fingerprintBytes,
          senderIdentity: identity.pair,
          recipientIdentityKey: peer.identity.ik,
          signedPrekey: { id: peer.prekey.id, key: peer.prekey.spk },
          text: "",
          roomKey,
          time: this.#link.serverNow(),
        });
        sealed.rk.fill(0);
        mails.push(sealed.mail.toBase64());
      } catch (e) {
        // That member cannot read what we write at this epoch; the others can.
        report(
          isImError(e) ? e.code : "internal",
          `to ${b.user}: ${(e as Error).message}`,
        );
      }
    }
    roomKey.fill(0);
    // As many mails per request as fit a record (section 10.4).
    const space = this.#link.recordRoom - ROOM_KEYS_JSON_BYTES;
    for (let i = 0; i < mails.length || i === 0;) {
      const batch: string[] = [];
      let bytes = 0;
      while (i < mails.length && bytes + mails[i]!.length + 3 <= space) {
        bytes += mails[i]!.length + 3;
        batch.push(mails[i++]!);
      }
      if (batch.length === 0 && i < mails.length) {
        return fail("message-too-large", "a room key does not fit a record");
      }
      const k = await ask(this.#link, {
        t: "room-keys",
        room: room.name,
        epoch,
        mails: batch,
      });
      if (k === null) {
        dropQueued(this.#ctx, room, "the server did not answer");
        return;
      }
      if (k.t === "error") {
        // room-stale-epoch: a newer list is on its way, and its hand-out
        // sends what waits.
        if (k.code !== "room-stale-epoch") fail(k.code, k.message);
        return;
      }
      if (mails.length === 0) break;
    }
    await this.#table.serial(async () => {
      if (room.own !== own) return;
      own.keyed = true;
      await this.#table.save(room);
    });
    this.#pump(room);
  }
}
