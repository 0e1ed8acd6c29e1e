/**
 * Rooms on the client's side (PROTOCOL.md section 10): the facade the
 * client holds. It lets in only what verifies (a list signed by the
 * room's creator under its pinned key, a leave signed by the member), makes
 * and hands out our sender chain at each epoch (one sealed mail per other
 * member, section 10.2), reads the rooms' streams through each room's
 * {@link RoomReader} (section 10.3's checks), seals and sends our room
 * messages, and acknowledges what it handled once the chain positions that
 * read it are saved (section 10.6).
 *
 * Everything that changes a room runs in one queue, in arrival order: the
 * server's pushes, the room keys the mailbox hands over, and the commands.
 *
 * @example
 * ```ts ignore
 * const rooms = new Rooms(ctx, link, mailbox, vault);
 * rooms.onWelcome();                       // after every login
 * await rooms.command({ kind: "room-create", room: "team", members: ["B"] });
 * await rooms.say("team", "hello");        // #team hello
 * ```
 * @module
 */

import {
  type ClientToServer,
  decodeRoomKey,
  decodeRoomLeave,
  decodeRoomList,
  encodeRoomKey,
  makeRoomLeave,
  makeRoomList,
  MAX_ROOM_TEXT_BYTES,
  ROOM_ID_BYTES,
  type RoomBundle,
  type RoomKey,
  type RoomLeave,
  type RoomList,
  type RoomVault,
  type RoomVaultState,
  sealMail,
  sealRoomMessage,
  type ServerToClient,
  verifyRoomLeave,
  verifyRoomList,
} from "../proto/mod.ts";
import {
  isImError,
  ProtocolError,
  randomBytes,
  sleep,
  utf8,
} from "../util/mod.ts";
import type { Command } from "./commands.ts";
import type { Mailbox } from "./mailbox.ts";
import { ask } from "./mail_peers.ts";
import type { ClientContext } from "./options.ts";
import { Room } from "./room_state.ts";
import type { PendingRequest, ServerConnection } from "./server_link.ts";

/** Entries of one room that may await our `room-ack` (the server allows 1,024). */
export const ROOM_WINDOW = 256;
/** An acknowledgement waits at most this long for more entries to cover. */
const ACK_DELAY_MS = 20;
/** How long the answers to one `member-keys` may take to all come. */
const BUNDLES_WAIT_MS = 10_000;
/** A `room-keys` request's JSON around its mails, with a long room name and request id. */
const ROOM_KEYS_JSON_BYTES = 160;
/** Room keys kept for rooms whose list has not come yet. */
const MAX_PENDING_KEYS = 1000;
/** Of them, at most this many from one sender. */
const MAX_PENDING_KEYS_PER_SENDER = 100;

/** Requests whose answers the rooms part awaits itself. */
const ROOM_REQUESTS: ReadonlySet<ClientToServer["t"]> = new Set([
  "room-create",
  "room-update",
  "room-leave",
  "member-keys",
  "room-keys",
  "room-send",
  "my-rooms",
]);

/** A room key that came before its room's list (section 10.6). */
interface PendingKey {
  from: string;
  key: string;
}

type RoomPush = Extract<
  ServerToClient,
  { t: "room" | "room-left" | "room-msg" }
>;

/** The client's rooms. */
export class Rooms {
  #ctx: ClientContext;
  #link: ServerConnection;
  #mail: Mailbox;
  #vault: RoomVault;
  #rooms = new Map<string, Room>();
  #pending: PendingKey[] = [];
  #loaded: Promise<void> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** Per room, the highest seq handled on this link and not yet acknowledged. */
  #acks = new Map<string, number>();
  /** Rooms whose chains moved since they were saved: saved before the next `room-ack`. */
  #dirty = new Set<Room>();
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #linkEpoch = 0;
  #stopped = false;
  #target: string | undefined;
  #pumping = new Set<string>();
  #synced = Promise.withResolvers<void>();
  /** Per room, the `room-bundles` of a `member-keys` in flight. */
  #bundleSink = new Map<string, RoomBundle[]>();
  /** Hand-outs under way, by room and epoch: one at a time each. */
  #handingOut = new Set<string>();
  /**
   * Rooms we were removed from or left, by name: their `room_id` and the
   * epoch then. An older list of the same room is a rollback (10.1).
   */
  #gone = new Map<string, { roomId: Uint8Array; epoch: number }>();

  constructor(
    ctx: ClientContext,
    link: ServerConnection,
    mail: Mailbox,
    vault: RoomVault,
  ) {
    this.#ctx = ctx;
    this.#link = link;
    this.#mail = mail;
    this.#vault = vault;
  }

  /** The rooms we are in, by name (Tab completion, `!rooms`). */
  get names(): string[] {
    return [...this.#rooms.keys()].sort();
  }

  /** The room plain lines go to (`!room <name>`), if any. */
  get target(): string | undefined {
    return this.#target;
  }

  /** @returns once the rooms' backlog at this login was handled */
  synced(): Promise<void> {
    return this.#synced.promise;
  }

  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(f, f);
    this.#queue = run.catch(() => {});
    return run;
  }

  #load(): Promise<void> {
    this.#loaded ??= this.#serial(async () => {
      const saved = await this.#vault.load();
      for (const [name, state] of saved.rooms) {
        const gone = state.gone as { roomId?: unknown; epoch?: unknown } | null;
        if (
          typeof gone === "object" && gone !== null &&
          typeof gone.roomId === "string" && typeof gone.epoch === "number"
        ) {
          try {
            this.#gone.set(name, {
              roomId: Uint8Array.fromBase64(gone.roomId),
              epoch: gone.epoch,
            });
          } catch { /* not base64: no floor kept */ }
          continue;
        }
        try {
          this.#rooms.set(name, await Room.fromJSON(state));
        } catch (e) {
          this.#ctx.error(e);
        }
      }
      this.#pending = saved.pendingKeys.flatMap((k) =>
        typeof k.from === "string" && typeof k.key === "string"
          ? [{ from: k.from, key: k.key }]
          : []
      );
    });
    return this.#loaded;
  }

  /**
   * After each `welcome`: once the mailbox's backlog was handled (the room
   * keys it held are ours then), the rooms we are in, then their streams.
   */
  onWelcome(): void {
    const epoch = ++this.#linkEpoch;
    this.#acks.clear();
    this.#ctx.track((async () => {
      await this.#load();
      await this.#mail.synced();
      // The keys that came in the backlog are acknowledged before the
      // rooms stream: the server's gate (section 10.4) then lets the
      // messages they open through at once, not after the next `mail-ack`.
      await this.#mail.acknowledged();
      if (epoch !== this.#linkEpoch || this.#stopped) return;
      const a = await ask(this.#link, { t: "my-rooms" });
      if (a?.t === "rooms") {
        for (const r of a.rooms) {
          try {
            await this.#serial(() => this.#onList(r.name, r.list));
            for (const l of r.leaves) {
              await this.#serial(() => this.#onLeave(r.name, l));
            }
            const room = this.#rooms.get(r.name);
            if (room) this.#pruneLeavers(room);
          } catch (e) {
            this.#refused(r.name, "membership change", e);
          }
        }
      }
      if (epoch !== this.#linkEpoch || this.#stopped) return;
      this.#link.sendQuietly({ t: "room-stream", window: ROOM_WINDOW });
      // A hand-out a dropped link or a crash cut short goes again.
      for (const room of this.#rooms.values()) {
        if (room.own && !room.own.keyed) {
          this.#ctx.track(this.#handOut(room, room.own.epoch));
        }
      }
    })());
  }

  /** The link dropped: what was not acknowledged is pushed again. */
  lost(): void {
    this.#synced.resolve(); // no backlog comes on this link any more
    this.#linkEpoch++;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#acks.clear();
  }

  /** Quit: acknowledge what was handled; nothing more is handled. */
  async stop(): Promise<void> {
    await this.#queue;
    await this.#flush();
    this.#stopped = true;
    this.#synced.resolve();
    for (const room of this.#rooms.values()) {
      this.#dropQueued(room, "you logged out before your key was handed out");
    }
  }

  /**
   * @param answers the request a server message answers, if any
   * @returns whether a rooms part awaits that answer
   */
  awaits(answers: PendingRequest | undefined): boolean {
    return answers !== undefined && ROOM_REQUESTS.has(answers.message.t);
  }

  /**
   * A server message of the rooms that answers nothing of ours.
   * @returns whether it was one
   */
  onServerMessage(m: ServerToClient): boolean {
    switch (m.t) {
      case "room":
      case "room-left":
      case "room-msg":
        this.#push(m);
        return true;
      case "room-synced":
        this.#ctx.track(this.#serial(() => {
          this.#synced.resolve();
          return Promise.resolve();
        }));
        return true;
      case "room-receipt":
        this.#ctx.print({
          kind: "receipt",
          id: String(m.seq),
          status: "delivered",
          peer: m.room,
          via: "room",
          delivered: m.delivered,
          members: m.members,
        });
        return true;
      case "room-bundles":
        // The second and later answers to one `member-keys` (section 10.4:
        // as many as fit a record each).
        this.#bundleSink.get(m.room)?.push(...m.bundles);
        return true;
      case "rooms":
      case "room-keyed":
        return true; // a late answer: its request gave up
      default:
        return false;
    }
  }

  #push(m: RoomPush): void {
    const epoch = this.#linkEpoch;
    this.#ctx.track(this.#serial(async () => {
      await this.#load();
      if (epoch !== this.#linkEpoch || this.#stopped) return;
      const held = this.#rooms.get(m.room);
      if (held && m.seq <= held.handled) {
        // Pushed again after a reconnect: handled before, its keys used up.
        this.#handled(m.room, m.seq);
        return;
      }
      try {
        if (m.t === "room") await this.#onList(m.room, m.list);
        else if (m.t === "room-left") await this.#onLeave(m.room, m.statement);
        else await this.#onMessage(m);
      } catch (e) {
        // Refused: shown, and acknowledged so the rest of the room flows.
        this.#refused(
          m.room,
          m.t === "room-msg"
            ? `message from ${m.from} (unverified)`
            : "membership change",
          e,
        );
      }
      const room = this.#rooms.get(m.room);
      if (room && m.seq > room.handled) {
        room.handled = m.seq;
        this.#dirty.add(room);
      }
      if (epoch === this.#linkEpoch) this.#handled(m.room, m.seq);
    }));
  }

  #refused(room: string, what: string, e: unknown): void {
    this.#ctx.print({
      kind: "error",
      code: isImError(e) ? e.code : "internal",
      text: `[#${room}] ${what} refused: ${(e as Error).message}`,
    });
  }

  // ---- lists and leaves (section 10.1)

  /** The pinned RSA key of `user` (pinned now on first use, as for mail). */
  #keyOf(user: string) {
    return this.#mail.peers.ownerOf(user);
  }

  async #onList(name: string, b64: string): Promise<void> {
    const list = decodeRoomList(fromB64(b64, "list"));
    if (list.name !== name) {
      throw new ProtocolError(
        "room-forged",
        `the list is for "${list.name}", pushed as "${name}"`,
      );
    }
    const room = this.#rooms.get(name);
    const gone = this.#gone.get(name);
    if (
      !room && gone && equal(gone.roomId, list.roomId) &&
      list.epoch <= gone.epoch
    ) {
      throw new ProtocolError(
        "room-rollback",
        `the list is of epoch ${list.epoch}; we left #${name} at epoch ${gone.epoch}`,
      );
    }
    if (room) {
      if (
        !equal(room.list.roomId, list.roomId) ||
        room.list.creator !== list.creator
      ) {
        throw new ProtocolError(
          "room-forged",
          `the list is of another room than the #${name} we hold (creator ${list.creator})`,
        );
      }
      if (list.epoch === room.epoch && equal(list.bytes, room.list.bytes)) {
        return;
      }
      if (list.epoch <= room.epoch) {
        throw new ProtocolError(
          "room-rollback",
          `the list is of epoch ${list.epoch}; we hold epoch ${room.epoch}`,
        );
      }
    }
    await verifyRoomList(list, await this.#keyOf(list.creator));
    const me = this.#ctx.o.user;
    const before = room ? room.members : [];
    if (!list.members.includes(me)) {
      if (!room) return; // not ours: nothing to keep
      await this.#forget(room, list.epoch, "you were removed from the room");
      this.#print(list, "removed", list.creator, [me], list.members);
      return;
    }
    let r = room;
    if (!r) {
      r = new Room(list);
      this.#rooms.set(name, r);
      this.#gone.delete(name);
    } else r.advance(list);
    await r.freshChain();
    await this.#adoptPending(r);
    await this.#save(r);
    const added = list.members.filter((m) => !before.includes(m));
    const removed = before.filter((m) => !list.members.includes(m));
    if (!room) {
      this.#print(list, "created", list.creator, [], list.members);
    } else {
      if (added.length > 0) {
        this.#print(list, "added", list.creator, added, list.members);
      }
      if (removed.length > 0) {
        this.#print(list, "removed", list.creator, removed, list.members);
      }
    }
    this.#ctx.track(this.#handOut(r, r.epoch));
  }

  async #onLeave(name: string, b64: string): Promise<void> {
    const leave = decodeRoomLeave(fromB64(b64, "statement"));
    const room = this.#rooms.get(name);
    if (!room) return; // a room we do not hold (or left)
    if (!equal(leave.roomId, room.list.roomId)) {
      throw new ProtocolError("room-forged", "the leave is of another room");
    }
    if (leave.epoch !== room.epoch) return; // of an epoch behind us
    if (
      room.leaves.some((l) => equal(l.bytes, leave.bytes)) ||
      !room.members.includes(leave.member)
    ) {
      this.#pruneLeavers(room); // a re-signing that failed goes again
      return;
    }
    await verifyRoomLeave(leave, await this.#keyOf(leave.member));
    const me = this.#ctx.o.user;
    if (leave.member === me) {
      await this.#forget(room, room.epoch, "you left the room");
      this.#print(
        room.list,
        "left",
        me,
        [me],
        room.members.filter((m) => m !== me),
      );
      return;
    }
    room.leaves.push(leave);
    await this.#save(room);
    this.#print(room.list, "left", leave.member, [leave.member], room.members);
    this.#pruneLeavers(room);
  }

  /**
   * Section 10.1: the creator's client signs the list without the members
   * who left, so every member hands out a fresh chain the leavers lack.
   * Tried again at each leave seen and at each login until it is done.
   */
  #pruneLeavers(room: Room): void {
    const me = this.#ctx.o.user;
    if (
      room.list.creator !== me || !room.members.includes(me) ||
      room.members.length >= room.list.members.length ||
      room.pruned >= room.epoch
    ) return;
    const epoch = room.epoch;
    room.pruned = epoch;
    this.#ctx.track(
      this.#update(room, room.members).then((ok) => {
        if (!ok && room.pruned === epoch) room.pruned = 0;
      }),
    );
  }

  /**
   * We are no longer in the room: its state goes, a floor stays (10.1), and
   * what we typed for it is not sent.
   */
  async #forget(room: Room, epoch: number, why: string): Promise<void> {
    this.#rooms.delete(room.name);
    this.#dirty.delete(room);
    this.#dropQueued(room, why);
    this.#gone.set(room.name, { roomId: room.list.roomId, epoch });
    await this.#vault.saveRoom(room.name, {
      v: 1,
      gone: { roomId: room.list.roomId.toBase64(), epoch },
    });
    if (this.#target === room.name) this.#setTarget(undefined);
  }

  /** The texts waiting for our key to go out are not sent: say so. */
  #dropQueued(room: Room, why: string): void {
    for (const q of room.outbox.splice(0)) {
      this.#ctx.print({
        kind: "error",
        code: "not-sent",
        text: `[#${room.name}] not sent (${why}): ${q.text.slice(0, 60)}`,
      });
      q.done();
    }
  }

  #print(
    list: RoomList,
    change: "created" | "added" | "removed" | "left",
    by: string,
    who: string[],
    members: readonly string[],
  ): void {
    this.#ctx.print({
      kind: "room",
      room: list.name,
      change,
      by,
      who,
      members: [...members],
    });
  }

  // ---- room keys (section 10.2)

  /**
   * A room key a member sealed to us (a mail of plaintext type 2): kept
   * with its room once saved, so the mail may be acknowledged.
   * @param from the mail's verified sender
   * @param bytes the `ROOM_KEY`
   */
  onRoomKey(from: string, bytes: Uint8Array): Promise<void> {
    return this.#serial(async () => {
      await this.#load();
      const key = decodeRoomKey(bytes);
      const room = this.#rooms.get(key.name);
      if (
        !room || !equal(room.list.roomId, key.roomId) || key.epoch > room.epoch
      ) {
        this.#pending.push({ from, key: bytes.toBase64() });
        // Junk from one sender cannot push out another's real keys.
        const mine = this.#pending.filter((p) => p.from === from);
        if (mine.length > MAX_PENDING_KEYS_PER_SENDER) {
          this.#pending.splice(this.#pending.indexOf(mine[0]!), 1);
        }
        if (this.#pending.length > MAX_PENDING_KEYS) this.#pending.shift();
        await this.#vault.savePendingKeys(
          this.#pending as unknown as RoomVaultState[],
        );
        return;
      }
      if (key.epoch < room.epoch) return; // an epoch we left behind
      this.#addChain(room, from, key);
      await this.#save(room);
    });
  }

  #addChain(room: Room, from: string, key: RoomKey): void {
    if (from === this.#ctx.o.user) return;
    if (!room.members.includes(from)) {
      throw new ProtocolError(
        "not-a-member",
        `a room key for #${room.name} from ${from}, who is not a member`,
      );
    }
    room.reader.addChain(from, key);
  }

  /** The keys that waited for this room's list, now that it came. */
  async #adoptPending(room: Room): Promise<void> {
    const keep: PendingKey[] = [];
    let changed = false;
    for (const p of this.#pending) {
      let key: RoomKey;
      try {
        key = decodeRoomKey(Uint8Array.fromBase64(p.key));
      } catch {
        changed = true;
        continue;
      }
      if (key.name !== room.name || !equal(key.roomId, room.list.roomId)) {
        keep.push(p);
        continue;
      }
      changed = true;
      if (key.epoch > room.epoch) keep.push(p);
      else if (key.epoch === room.epoch) {
        try {
          this.#addChain(room, p.from, key);
        } catch (e) {
          this.#ctx.error(e);
        }
      }
    }
    if (!changed) return;
    this.#pending = keep;
    await this.#vault.savePendingKeys(
      this.#pending as unknown as RoomVaultState[],
    );
  }

  /**
   * Hand our chain of `epoch` to every other member (section 10.2): their
   * keys in one request, one sealed mail each, stored in one request. The
   * texts typed meanwhile go once the server stored them all.
   */
  async #handOut(room: Room, epoch: number): Promise<void> {
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
      if (this.#rooms.get(room.name) !== room || room.own !== own) return;
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
      this.#dropQueued(room, "your key could not be handed out");
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
      this.#dropQueued(room, "the server did not answer");
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
        this.#dropQueued(room, "the server did not answer");
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
    await this.#serial(async () => {
      if (room.own !== own) return;
      own.keyed = true;
      await this.#save(room);
    });
    this.#pump(room);
  }

  // ---- messages (section 10.3)

  async #onMessage(
    m: Extract<ServerToClient, { t: "room-msg" }>,
  ): Promise<void> {
    const room = this.#rooms.get(m.room);
    if (!room) {
      throw new ProtocolError("room-unknown", `we hold no room #${m.room}`);
    }
    if (m.from === this.#ctx.o.user) return; // our own, as stored
    const opened = await room.reader.open(fromB64(m.msg, "msg"), {
      now: this.#link.serverNow(),
      isMember: (s, e) => room.isMember(s, e),
    });
    if (opened.header.sender !== m.from) {
      throw new ProtocolError(
        "room-tampered",
        `the server says it is from ${m.from}, the message names ${opened.header.sender}`,
      );
    }
    this.#dirty.add(room);
    this.#ctx.print({
      kind: "message",
      direction: "in",
      from: m.from,
      to: room.name,
      text: opened.text,
      id: String(m.seq),
      room: room.name,
    });
  }

  /** `#room text`: queued, then sealed and sent once our key is out. */
  say(name: string, text: string): Promise<void> {
    const room = this.#rooms.get(name);
    if (!room) {
      this.#ctx.print({
        kind: "error",
        code: "room-unknown",
        text: `You are not in a room #${name} (!rooms lists yours)`,
      });
      return Promise.resolve();
    }
    const size = utf8(text).length;
    if (size > MAX_ROOM_TEXT_BYTES) {
      this.#ctx.print({
        kind: "error",
        code: "message-too-large",
        text:
          `[#${name}] not sent: ${size} bytes of text; the limit is ${MAX_ROOM_TEXT_BYTES}`,
      });
      return Promise.resolve();
    }
    const sent = Promise.withResolvers<void>();
    room.outbox.push({ text, done: sent.resolve });
    // Our key not out yet, and no hand-out under way (one failed): try again.
    if (room.own && !room.own.keyed) {
      this.#ctx.track(this.#handOut(room, room.own.epoch));
    }
    this.#pump(room);
    return sent.promise;
  }

  /** Send the room's queued texts in order, while our chain is keyed. */
  #pump(room: Room): void {
    if (this.#pumping.has(room.name)) return;
    this.#pumping.add(room.name);
    this.#ctx.track((async () => {
      try {
        while (room.outbox.length > 0 && room.own?.keyed && !this.#stopped) {
          const next = room.outbox[0]!;
          let ok: "sent" | "retry";
          try {
            ok = await this.#sendOne(room, next.text);
          } catch (e) {
            // Our own failure (the disk would not take the chain's new
            // position): this text is not sent; the next ones may be.
            this.#ctx.print({
              kind: "error",
              code: isImError(e) ? e.code : "internal",
              text: `[#${room.name}] not sent: ${(e as Error).message}`,
            });
            ok = "sent";
          }
          // A new epoch: sent under its chain, now if it is handed out
          // already, else when its hand-out ends.
          if (ok === "retry") continue;
          if (room.outbox[0] === next) room.outbox.shift();
          next.done();
        }
      } finally {
        this.#pumping.delete(room.name);
      }
    })());
  }

  async #sendOne(room: Room, text: string): Promise<"sent" | "retry"> {
    const own = room.own!;
    // Our chain moves on disk before the message leaves: a crash never
    // reuses a message key (section 10.6).
    const { index, messageKey } = await this.#serial(async () => {
      const next = own.chain.next();
      await this.#save(room);
      return next;
    });
    const msg = await sealRoomMessage({
      roomId: room.list.roomId,
      name: room.name,
      sender: this.#ctx.o.user,
      epoch: own.epoch,
      index,
      time: this.#link.serverNow(),
      messageKey,
      signing: own.signing,
      text,
    });
    messageKey.fill(0);
    const a = await ask(this.#link, {
      t: "room-send",
      room: room.name,
      msg: msg.toBase64(),
    });
    if (a?.t === "room-receipt") {
      this.#ctx.print({
        kind: "message",
        direction: "out",
        from: this.#ctx.o.user,
        to: room.name,
        text,
        id: String(a.seq),
        room: room.name,
      });
      this.#ctx.print({
        kind: "receipt",
        id: String(a.seq),
        status: "stored",
        peer: room.name,
        via: "room",
        delivered: a.delivered,
        members: a.members,
      });
      return "sent";
    }
    if (
      a?.t === "error" && a.code === "room-stale-epoch" &&
      this.#rooms.get(room.name) === room
    ) {
      // The new list is on its way (or here): the text goes again under
      // its chain (section 10.3).
      if (room.own === own) own.keyed = false;
      return "retry";
    }
    this.#ctx.print({
      kind: "error",
      code: a === null
        ? "no-answer"
        : a.t === "error"
        ? a.code
        : "unexpected-message",
      text: `[#${room.name}] not sent: ${
        a === null
          ? "the server did not answer"
          : a.t === "error"
          ? a.message
          : `the server answered "${a.t}"`
      }`,
    });
    return "sent";
  }

  // ---- commands

  /**
   * A room command (README "Rooms").
   * @param cmd the parsed line
   */
  async command(cmd: Command): Promise<void> {
    await this.#load();
    const me = this.#ctx.o.user;
    const refuse = (code: string, text: string) =>
      this.#ctx.print({ kind: "error", code, text });
    switch (cmd.kind) {
      case "room-create": {
        if (this.#rooms.has(cmd.room)) {
          return refuse("room-exists", `You are already in #${cmd.room}`);
        }
        // Every member needs mailbox keys on the server, we too: a room
        // made right after our first login waits for our publish.
        await this.#mail.keys.idle();
        const list = await makeRoomList({
          roomId: randomBytes(ROOM_ID_BYTES),
          name: cmd.room,
          creator: this.#ctx.o.identity,
          creatorName: me,
          epoch: 1,
          created: this.#link.serverNow(),
          members: [me, ...cmd.members],
        });
        await this.#answerList(
          await ask(this.#link, {
            t: "room-create",
            list: list.bytes.toBase64(),
          }),
          cmd.room,
        );
        return;
      }
      case "room-add":
      case "room-remove": {
        const room = this.#rooms.get(cmd.room);
        if (!room) return refuse("room-unknown", `You are not in #${cmd.room}`);
        if (room.list.creator !== me) {
          return refuse(
            "not-creator",
            `Only ${room.list.creator}, who made #${cmd.room}, can change its members`,
          );
        }
        const members = room.members;
        if (cmd.kind === "room-add") {
          if (members.includes(cmd.user)) {
            return refuse(
              "bad-command",
              `${cmd.user} is already in #${cmd.room}`,
            );
          }
          await this.#update(room, [...members, cmd.user]);
          return;
        }
        if (cmd.user === me) {
          return refuse(
            "bad-command",
            `To leave #${cmd.room}, type !room leave ${cmd.room}`,
          );
        }
        if (!members.includes(cmd.user)) {
          return refuse("bad-command", `${cmd.user} is not in #${cmd.room}`);
        }
        await this.#update(room, members.filter((m) => m !== cmd.user));
        return;
      }
      case "room-leave": {
        const room = this.#rooms.get(cmd.room);
        if (!room) return refuse("room-unknown", `You are not in #${cmd.room}`);
        const leave: RoomLeave = await makeRoomLeave({
          roomId: room.list.roomId,
          member: me,
          identity: this.#ctx.o.identity,
          epoch: room.epoch,
        });
        const a = await ask(this.#link, {
          t: "room-leave",
          statement: leave.bytes.toBase64(),
        });
        if (a?.t === "room-left") {
          const m = a;
          await this.#serial(async () => {
            await this.#onLeave(m.room, m.statement);
          });
          return;
        }
        return this.#answerError(a, cmd.room);
      }
      case "room-target": {
        if (cmd.room !== undefined && !this.#rooms.has(cmd.room)) {
          return refuse(
            "room-unknown",
            `You are not in #${cmd.room} (!rooms lists yours)`,
          );
        }
        this.#setTarget(cmd.room);
        this.#ctx.system(
          cmd.room === undefined
            ? "Lines go to your peer again"
            : `Lines you type now go to #${cmd.room}; !room alone goes back`,
        );
        return;
      }
      case "room-say":
        return this.say(cmd.room, cmd.text);
      case "rooms": {
        const a = await ask(this.#link, { t: "my-rooms" });
        const online = new Map<string, string[]>();
        if (a?.t === "rooms") {
          for (const r of a.rooms) online.set(r.name, r.online);
        }
        this.#ctx.print({
          kind: "rooms",
          rooms: this.names.map((name) => {
            const room = this.#rooms.get(name)!;
            return {
              name,
              creator: room.list.creator,
              members: room.members,
              online: online.get(name) ?? [],
            };
          }),
        });
        return;
      }
    }
  }

  #setTarget(room: string | undefined): void {
    this.#target = room;
    this.#ctx.o.ui.setRoom?.(room ?? null);
  }

  /** @returns whether the server took the list */
  async #update(room: Room, members: string[]): Promise<boolean> {
    const list = await makeRoomList({
      roomId: room.list.roomId,
      name: room.name,
      creator: this.#ctx.o.identity,
      creatorName: this.#ctx.o.user,
      epoch: room.epoch + 1,
      created: room.list.created,
      members,
    });
    return this.#answerList(
      await ask(this.#link, { t: "room-update", list: list.bytes.toBase64() }),
      room.name,
    );
  }

  /** @returns whether the server took the list */
  async #answerList(
    a: ServerToClient | null,
    name: string,
  ): Promise<boolean> {
    if (a?.t === "room") {
      const m = a;
      await this.#serial(() => this.#onList(m.room, m.list)).catch((e) =>
        this.#ctx.error(e)
      );
      return true;
    }
    this.#answerError(a, name);
    return false;
  }

  #answerError(a: ServerToClient | null, name: string): void {
    this.#ctx.print({
      kind: "error",
      code: a === null
        ? "no-answer"
        : a.t === "error"
        ? a.code
        : "unexpected-message",
      text: `#${name}: ${
        a === null
          ? "the server did not answer"
          : a.t === "error"
          ? a.message
          : `the server answered "${a.t}"`
      }`,
    });
  }

  // ---- acknowledgements (section 10.4, 10.6)

  #handled(room: string, seq: number): void {
    this.#acks.set(room, Math.max(this.#acks.get(room) ?? 0, seq));
    this.#ackTimer ??= setTimeout(() => {
      this.#ackTimer = undefined;
      this.#ctx.track(this.#flush());
    }, ACK_DELAY_MS);
  }

  /** Every room's state is saved as it changes: acknowledge what was handled. */
  #flush(): Promise<void> {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const linkEpoch = this.#linkEpoch;
    return this.#serial(async () => {
      // Section 10.6: a message is acknowledged only once the chain
      // position that read it is saved.
      for (const room of this.#dirty) {
        if (this.#rooms.get(room.name) === room) await this.#save(room);
      }
      this.#dirty.clear();
      if (linkEpoch !== this.#linkEpoch) return;
      for (const [room, upTo] of this.#acks) {
        this.#link.sendQuietly({ t: "room-ack", room, upTo });
      }
      this.#acks.clear();
    });
  }

  async #save(room: Room): Promise<void> {
    await this.#vault.saveRoom(room.name, room.toJSON());
  }
}

function fromB64(s: string, what: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(s);
  } catch {
    throw new ProtocolError("room-malformed", `the ${what} is not base64`);
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
