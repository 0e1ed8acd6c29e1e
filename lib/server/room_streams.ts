/**
 * {@link RoomStreams}: the room streams of this node's connections
 * (PROTOCOL.md 10.4): `room-stream` starts one per connection (a
 * {@link RoomStream}, room_stream.ts), a change to a room wakes the
 * streams of its members here, acknowledged mail wakes a user's key gates,
 * and a connection that ends stops its stream. A part of the rooms facade
 * (rooms.ts).
 * @module
 */

import type { Msg, RoomCounts, RoomReplies } from "./room_replies.ts";
import { MAX_ROOM_WINDOW, RoomStream } from "./room_stream.ts";
import type { RoomsOptions } from "./rooms.ts";
import type { ClientSession, Reply } from "./registry.ts";

/** What {@link RoomStreams} uses of the rooms' settings. */
type Options = Pick<
  RoomsOptions,
  "store" | "mailStore" | "session" | "log" | "wakeElsewhere"
>;

/** What the rooms keep of one connection; it ends with it. */
/** The streams of the rooms on this node, one per connection at most. */
export class RoomStreams {
  #o: Options;
  #replies: RoomReplies;
  #counts: RoomCounts;
  /**
   * Each connection's stream, if it asked for one: the stream itself is the
   * value, and its push count one function for all (issue 15: an object and
   * a closure fewer per connection).
   */
  #conns = new WeakMap<ClientSession, RoomStream>();
  #streams = new Set<RoomStream>();
  #closed = false;
  #onPushed = (n: number): void => {
    this.#counts.pushed += n;
  };

  /**
   * @param o the seams it uses, of the rooms' settings
   * @param parts the refusals, and the counts (entries pushed)
   */
  constructor(
    o: Options,
    parts: { replies: RoomReplies; counts: RoomCounts },
  ) {
    this.#o = o;
    this.#replies = parts.replies;
    this.#counts = parts.counts;
  }

  /**
   * `room-stream`: start streaming the user's rooms on this connection
   * (PROTOCOL.md 10.4, room_stream.ts). A `window` that is not an integer
   * from 1 to {@link MAX_ROOM_WINDOW}, or a second `room-stream` on one
   * connection, is `bad-room-stream`.
   * @param s the connection
   * @param m the message
   * @param reply errors only; the stream is the answer
   */
  open(s: ClientSession, m: Msg<"room-stream">, reply: Reply): Promise<void> {
    if (
      !Number.isInteger(m.window) || m.window < 1 || m.window > MAX_ROOM_WINDOW
    ) {
      return this.#replies.refuse(
        reply,
        "bad-room-stream",
        `Room stream window ${m.window} refused: expected an integer from 1 to ${MAX_ROOM_WINDOW}`,
      );
    }
    if (this.#conns.has(s) || s.channel.closed || this.#closed) {
      return this.#replies.refuse(
        reply,
        "bad-room-stream",
        "Your rooms are already streaming on this connection",
      );
    }
    const stream = new RoomStream({
      user: s.user,
      store: this.#o.store,
      mailStore: this.#o.mailStore,
      channel: s.channel,
      window: m.window,
      log: this.#o.log,
      onPushed: this.#onPushed,
      onFailed: () => {
        if (this.#conns.get(s) === stream) this.#conns.delete(s);
        this.#streams.delete(stream);
        s.channel.send({
          t: "error",
          code: "room-stream-failed",
          message:
            "The server could not push your rooms; it keeps their messages until you log in again",
        }).catch(() => {});
      },
    });
    this.#conns.set(s, stream);
    this.#streams.add(stream);
    stream.wake();
    return Promise.resolve();
  }

  /**
   * The stream of a connection, if it started one.
   * @param s the connection
   * @returns its stream, if any
   */
  of(s: ClientSession): RoomStream | undefined {
    return this.#conns.get(s);
  }

  /**
   * The user acknowledged mail (PROTOCOL.md 10.4): its room stream on this
   * node looks again at the rooms stopped at a key gate.
   * @param user the user
   */
  wake(user: string): void {
    const s = this.#o.session(user);
    if (s) this.#conns.get(s)?.wakeGates();
  }

  /**
   * A connection ended: its stream stops (what it pushed and was not
   * acknowledged stays in the logs).
   * @param s the connection
   */
  leave(s: ClientSession): void {
    const stream = this.#conns.get(s);
    if (!stream) return;
    stream.close();
    this.#streams.delete(stream);
  }

  /**
   * The room changed for `users`: their streams on this node look again
   * (the author's too: it passes its own entry silently, room_stream.ts),
   * and, in a cluster, those on the other nodes (PROTOCOL.md 11.4).
   */
  notify(users: Iterable<string>, room: string): void {
    const all = [...new Set(users)];
    this.#notifyHere(all, room);
    this.#o.wakeElsewhere?.(room, all, false);
  }

  /**
   * A room was made under a name that may have been a deleted room's: no
   * stream remembers anything of that one under it any more, here or, in
   * a cluster, on the other nodes.
   * @param name the room's name
   */
  reset(name: string): void {
    this.#resetHere(name);
    this.#o.wakeElsewhere?.(name, [], true);
  }

  /**
   * A change to `room` committed on another node (PROTOCOL.md 11.4): the
   * streams of `users` here look again, after forgetting an earlier room
   * of the name when it was just `made`.
   */
  wakeLocal(room: string, users: readonly string[], made: boolean): void {
    if (made) this.#resetHere(room);
    this.#notifyHere(new Set(users), room);
  }

  /** NATS came back (11.4): every stream reads which rooms its user is in, and each. */
  wakeAll(): void {
    for (const stream of this.#streams) stream.wake();
  }

  #notifyHere(users: Iterable<string>, room: string): void {
    for (const u of users) {
      const s = this.#o.session(u);
      if (s) this.#conns.get(s)?.wake(room);
    }
  }

  #resetHere(name: string): void {
    for (const stream of this.#streams) stream.reset(name);
  }

  /** Stop every stream, and start no more; done when they are. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#streams) s.close();
    await Promise.all([...this.#streams].map((s) => s.done()));
    this.#streams.clear();
  }
}
