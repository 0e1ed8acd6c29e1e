/**
 * The `im` server: the key distribution centre for peer sessions
 * (PROTOCOL.md sections 3, 5 and 6). {@link ImServer} is a facade over parts
 * with one job each:
 *
 * - edge.ts: accepts connections from a `Network` and runs the login,
 *   behind the caps and penalties of admission.ts (rules 1.2, 2.4);
 * - registry.ts: the connected users, the only writer of who is online;
 * - kdc.ts (rules in sessions.ts): hosting, grants and tickets;
 * - requests.ts: a logged-in client's messages, each handed to the part
 *   whose job it is after the rate limits of limits.ts (PROTOCOL.md 5.2);
 * - relay.ts: forwarding between peers that cannot meet directly;
 * - mailbox.ts (streaming in mailbox_stream.ts): mail to users online or
 *   not, kept in a {@link Store} with the keys in {@link Prekeys}
 *   (PROTOCOL.md section 9);
 * - rooms.ts (streaming in room_stream.ts): group conversations, each
 *   message kept once in a {@link RoomStore} (PROTOCOL.md section 10);
 * - seams.ts: {@link Presence}, {@link Delivery}, {@link Store},
 *   {@link Prekeys} and {@link RoomStore}, the interfaces through which the parts see other users
 *   and the disk (memory/ in one process, sqlite/ for the mailboxes);
 * - options.ts: the settings and their defaults.
 *
 * Here: the life of one logged-in connection (refusals, replacement,
 * revocation, its leave) and the shutdown. One client can never stop
 * the server or other clients: every connection runs in its own task with
 * its own errors.
 *
 * @example
 * ```ts ignore
 * const server = await ImServer.start({ identity, clients, port: 0 });
 * console.log(server.port);
 * await server.close();
 * ```
 * @module
 */

import { type Logger, wipe, withinRunTime } from "../util/mod.ts";
import {
  ClientLink,
  encodeErrorFrame,
  ErrorCode,
  LoginDecoys,
  type LoginResult,
} from "../proto/mod.ts";
import type { FrameListener, FrameTransport } from "../wire/mod.ts";
import {
  type PrivateIdentity,
  type PublicIdentity,
  SignPool,
} from "../crypto/mod.ts";
import { Edge, GOODBYE_TIMEOUT_MS } from "./edge.ts";
import { Kdc } from "./kdc.ts";
import {
  LocalDelivery,
  MemoryPrekeys,
  MemoryPresence,
  MemoryRoomStore,
  MemoryStore,
} from "./memory/mod.ts";
import { DAY_MS, Mailbox } from "./mailbox.ts";
import { Rooms } from "./rooms.ts";
import {
  type ServerOptions,
  type ServerSettings,
  serverSettings,
} from "./options.ts";
import { type ClientSession, Registry } from "./registry.ts";
import { Relay } from "./relay.ts";
import { ListCache, RequestLimits } from "./limits.ts";
import { Requests } from "./requests.ts";
import type { Delivery, Prekeys, Presence, RoomStore, Store } from "./seams.ts";

export { RELAY_QUEUE_BUDGET_BYTES } from "./relay.ts";

/** A running server. */
export class ImServer {
  #log: Logger;
  #identity: PrivateIdentity;
  #clients: Map<string, PublicIdentity>;
  /** Rule 2.4: unknown users are checked against keys of the enrolled sizes. */
  #decoys: LoginDecoys;
  #c: ServerSettings;
  #presence: Presence;
  #registry: Registry;
  #kdc: Kdc;
  #delivery: Delivery;
  #edge: Edge;
  /** Issue 15: the workers that sign SERVER_HELLO (none: this thread). */
  #signer: SignPool;
  #limits: RequestLimits;
  #listCache: ListCache;
  #mailbox: Mailbox;
  #rooms: Rooms;
  /** A logged-in connection's messages, handed to the parts above. */
  #requests: Requests;
  /** The stores and prekeys the server made itself, closed with it. */
  #owned: Array<Store | Prekeys | RoomStore> = [];
  #tasks = new Set<Promise<void>>();
  #closing = false;
  #unsubscribe: () => void;

  private constructor(listener: FrameListener, c: ServerSettings) {
    this.#log = c.log;
    this.#identity = c.identity;
    this.#clients = c.clients;
    this.#decoys = new LoginDecoys(c.clients.values());
    this.#c = c;
    this.#presence = c.presence ?? new MemoryPresence();
    this.#registry = new Registry(this.#presence, c.node);
    const local = (user: string) => this.#registry.outbox(user);
    const delivery = c.delivery?.(local) ?? new LocalDelivery(local);
    this.#delivery = delivery;
    this.#kdc = new Kdc({
      presence: this.#presence,
      delivery,
      identityOf: (name) => this.#clients.get(name)?.publicDer,
      ticketLifetimeMs: c.ticketLifetimeMs,
      now: c.now,
      log: this.#log,
    });
    const relay = new Relay(this.#presence, delivery);
    this.#limits = new RequestLimits(c.requestLimits);
    this.#listCache = new ListCache(this.#presence, c.listMax, c.partial);
    // PROTOCOL.md 11.3: a user of another node who leaves (its node died,
    // or it logged in here or elsewhere) frees its partner here, as a
    // leave on this node does; a cut told twice reaches the partner once.
    this.#unsubscribe = this.#presence.subscribe((change) => {
      if (change.kind !== "leave" || change.entry.node === c.node) return;
      this.#kdc.remoteLeft(
        change.entry,
        c.node,
        `${change.entry.name} went offline`,
      );
    });
    const store = c.store ?? this.#own(new MemoryStore());
    const prekeys = c.prekeys ?? this.#own(new MemoryPrekeys());
    this.#mailbox = new Mailbox({
      store,
      prekeys,
      clients: () => this.#clients,
      session: (user) => this.#registry.get(user),
      limits: this.#limits,
      maxCount: c.mailMaxCount,
      maxBytes: c.mailMaxBytes,
      retentionMs: c.mailRetentionDays * DAY_MS,
      maxFrameBytes: c.maxFrameBytes,
      now: c.now,
      log: this.#log,
      // PROTOCOL.md 10.4: a room's key gates wait on its members' mail.
      onAcked: (user) => this.#rooms.wake(user),
      // PROTOCOL.md 11.4: in a cluster, a user's stream may run on another node.
      ...(c.mailWake && {
        wakeElsewhere: c.mailWake(
          (user) => this.#mailbox.wakeLocal(user),
          () => this.#mailbox.wakeAll(),
        ),
      }),
    });
    this.#rooms = new Rooms({
      store: c.rooms ?? this.#own(new MemoryRoomStore()),
      prekeys,
      clients: () => this.#clients,
      session: (user) => this.#registry.get(user),
      // PROTOCOL.md 11.6 _Online_: presence covers every node of a cluster.
      online: (user) => this.#presence.get(user) !== undefined,
      limits: this.#limits,
      mailStore: store,
      notifyMail: (user) => this.#mailbox.wake(user),
      // PROTOCOL.md 11.4: in a cluster, a member's room stream may run on another node.
      ...(c.roomWake && {
        wakeElsewhere: c.roomWake(
          (room, users, made, receipts) =>
            this.#rooms.wakeLocal(room, users, made, receipts),
          () => this.#rooms.wakeAll(),
        ),
      }),
      maxMembers: c.roomMaxMembers,
      maxRooms: c.roomMaxRooms,
      retentionMs: c.mailRetentionDays * DAY_MS,
      maxFrameBytes: c.maxFrameBytes,
      now: c.now,
      log: this.#log,
    });
    this.#requests = new Requests({
      presence: this.#presence,
      delivery,
      registry: this.#registry,
      kdc: this.#kdc,
      relay,
      limits: this.#limits,
      listCache: this.#listCache,
      mailbox: this.#mailbox,
      rooms: this.#rooms,
      settings: c,
      log: this.#log,
      leave: (s, reason) => this.#leave(s, reason),
    });
    this.#signer = new SignPool(c.identity.sign, {
      workers: c.signWorkers,
      log: this.#log,
    });
    const signer = this.#signer;
    this.#edge = new Edge(listener, {
      identity: c.identity,
      ...(c.signWorkers > 0 && { sign: (data) => signer.sign(data) }),
      lookupUser: (name) => this.#clients.get(name),
      decoys: this.#decoys,
      loginTimeoutMs: c.loginTimeoutMs,
      windowMs: c.windowMs,
      admission: {
        maxTotal: c.maxUnauthenticated,
        maxPerAddress: c.maxUnauthenticatedPerAddress,
      },
      penalty: { limit: c.authFailureLimit, basePenaltyMs: c.authPenaltyMs },
      ipv6PrefixBits: c.ipv6PrefixBits,
      log: this.#log,
      onLogin: (login, t) => this.#serve(login, t),
    });
  }

  /**
   * Listen and start serving.
   * @param opts keys and limits
   * @returns the running server
   * @throws {NetError} `port-in-use` or `listen-failed`
   */
  static start(opts: ServerOptions): Promise<ImServer> {
    const c = serverSettings(opts);
    let listener: FrameListener;
    try {
      listener = c.network.listen(c.hostname, c.port, {
        maxFrameBytes: c.maxFrameBytes,
        maxQueuedBytes: c.maxQueuedBytes,
        // Rule 1.1: broken framing during login gets an error frame, then the close.
        farewell: (e) =>
          encodeErrorFrame({ code: ErrorCode.PROTOCOL, message: e.message }),
      });
    } catch (e) {
      return Promise.reject(e);
    }
    const server = new ImServer(listener, c);
    // The decoys exist before the first login, so no login waits for one;
    // PROTOCOL.md 9.8, 10.4: the retention sweeps run at start and every hour.
    // `listening` is said once all that is done: a client started on that
    // line logs in at once (making the decoys' keys took seconds on a busy
    // machine, and a login begun meanwhile waited for them).
    return Promise.all([
      server.#decoys.ready(),
      server.#mailbox.start(),
      server.#rooms.start(),
    ]).then(() => {
      server.#log("listening", {
        addr: `${c.hostname}:${server.port}`,
        fingerprint: c.identity.fingerprint,
        users: c.clients.size,
        signWorkers: c.signWorkers,
      });
      return server;
    }, async (e) => {
      await server.close();
      throw e;
    });
  }

  /** The port the server listens on. */
  get port(): number {
    return this.#edge.port;
  }

  /** @returns who is online, as `!list` shows it */
  list(): Array<{ name: string; state: string }> {
    return this.#presence.list().map((e) => ({ name: e.name, state: e.state }));
  }

  /** Unauthenticated connections open now. */
  get pendingCount(): number {
    return this.#edge.pendingCount;
  }

  #own<T extends Store | Prekeys | RoomStore>(x: T): T {
    this.#owned.push(x);
    return x;
  }

  #track(p: Promise<void>): void {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }

  /**
   * A logged-in connection, from its admission to its end; then its ticket
   * keys go. No frame waits here for the connection's life holding the
   * login (its transcript, the result object): issue 15.
   */
  #serve(login: LoginResult, t: FrameTransport): Promise<void> {
    const keys = login.ticketKeys;
    const gone = () => wipe(keys.enc, keys.mac);
    // `then` with both, not `finally`: fewer closures kept meanwhile.
    return this.#serveLogin(login, t).then(gone, (e) => {
      gone();
      throw e;
    });
  }

  async #serveLogin(login: LoginResult, t: FrameTransport): Promise<void> {
    const user = login.user;
    if (
      this.#registry.size >= this.#c.maxClients &&
      !this.#registry.has(user)
    ) {
      const ch = new ClientLink(t, login.sealer, login.opener, {
        heartbeatMs: 0,
      });
      await ch.send({
        t: "closing",
        reason: "full",
        message: "Server is full; try again later",
      }).catch(() => {});
      await ch.close("full");
      this.#log("refused", { user, reason: "server full" });
      return;
    }
    const channel = new ClientLink(t, login.sealer, login.opener, {
      heartbeatMs: this.#c.heartbeatMs,
      maxRecordBytes: this.#c.maxFrameBytes,
    });
    // The key the client proved it holds; checked against the directory as
    // it is now, since a reload may have revoked it during the login.
    const fingerprint = login.peerFingerprint;
    const session: ClientSession = {
      user,
      remote: t.remote,
      channel,
      fingerprint,
      ticketKeys: login.ticketKeys,
    };
    if (this.#clients.get(user)?.fingerprint !== fingerprint) {
      this.#log("revoked", { user, during: "login" });
      await channel.send({
        t: "closing",
        reason: "revoked",
        message: "Your key was revoked by the server operator",
      }).catch(() => {});
      await channel.close("revoked");
      return;
    }
    // Registered before any await: two logins of one user racing here must
    // not both stay online (rule 2.10).
    const { older, left } = this.#registry.add(session);
    if (older) {
      // Rule 2.10: the newer login wins; the older connection is told why.
      this.#log("replaced", { user, old: older.remote, new: t.remote });
      if (left) {
        this.#kdc.partnerLeft(
          left,
          `${user} logged in again from another place`,
        );
      }
      this.#track(
        this.#drop(
          older,
          "replaced",
          "You logged in from another place; this connection is closed",
        ),
      );
    }
    if (this.#closing) {
      // close() took its snapshot of the sessions before this one arrived.
      await this.#drop(session, "shutdown", "The server is shutting down");
      return;
    }
    this.#log("join", { user, addr: t.remote, fingerprint });
    await channel.send({
      t: "welcome",
      user,
      serverFingerprint: this.#identity.fingerprint,
      // Section 2: the client reads and seals records up to this.
      maxFrame: this.#c.maxFrameBytes,
      // Section 6: expiries are server times; the client reads them by this.
      now: this.#c.now(),
    }).catch(() => {});
    // Returned, not awaited: this frame and the login it holds end here.
    return this.#requests.serve(session);
  }

  #leave(s: ClientSession, reason: string): void {
    // The connection's mail stream ends with it, even when a newer login
    // replaced it (the records it pushed stay in the log).
    this.#mailbox.leave(s);
    this.#rooms.leave(s);
    const gone = this.#registry.remove(s);
    if (!gone) return;
    this.#limits.forget(s.user);
    this.#log("leave", { user: s.user, reason });
    this.#kdc.partnerLeft(gone, `${s.user} went offline`);
  }

  async #drop(
    s: ClientSession,
    reason: string,
    message: string,
  ): Promise<void> {
    this.#leave(s, reason);
    // A client that does not read must not stall a replacement, a
    // revocation or the shutdown: the goodbye gets a bounded time.
    await withinRunTime(
      s.channel.send({ t: "closing", reason, message }).catch(() => {})
        .then(() => s.channel.close(reason)),
      GOODBYE_TIMEOUT_MS,
      undefined,
    );
    s.channel.abort(reason);
  }

  /**
   * Close a user's connection on this node (PROTOCOL.md 11.3, 11.4): a
   * newer login of the user on another node (`replaced`, rule 2.10), or
   * its key revoked (`revoked`). Its partner is told, as for any leave.
   * @param user the user
   * @param reason why, told to the user
   * @param keep a key fingerprint: a connection that logged in with it is
   *   kept (another node revoked a key this one replaced)
   * @returns true when a connection here was closed
   */
  kick(user: string, reason: "replaced" | "revoked", keep?: string): boolean {
    const s = this.#registry.get(user);
    if (!s || (keep !== undefined && s.fingerprint === keep)) return false;
    // 11.4 Revocation: a key revoked elsewhere that this node's own
    // directory still holds can log in here again until it is reloaded.
    const held = reason === "revoked" &&
      this.#clients.get(user)?.fingerprint === s.fingerprint;
    this.#log(reason, { user, by: "cluster", ...(held && { keyHeld: true }) });
    this.#track(
      this.#drop(
        s,
        reason,
        reason === "replaced"
          ? "You logged in from another place; this connection is closed"
          : "Your key was revoked by the server operator",
      ),
    );
    return true;
  }

  /**
   * Replace the client directory (SIGHUP, enrollment). Users whose key was
   * removed or changed are disconnected with a clear reason.
   * @param clients the new directory
   */
  async reloadClients(clients: Map<string, PublicIdentity>): Promise<void> {
    const before = this.#clients;
    // Both in one turn: a login sees the directory and its decoys together.
    this.#decoys.update(clients.values());
    this.#clients = clients;
    await this.#decoys.ready();
    this.#log("reload", { users: clients.size });
    for (const s of this.#registry.revoked(clients)) {
      this.#log("revoked", { user: s.user });
      await this.#drop(
        s,
        "revoked",
        "Your key was revoked by the server operator",
      );
    }
    await this.#revokeElsewhere(before, clients);
  }

  /**
   * PROTOCOL.md 11.4 Revocation: each user of another node whose key this
   * reload removed or changed gets a `kick` (`revoked`) on that node; with
   * the new key's fingerprint in `keep` when it was changed.
   * @param before the directory before the reload
   * @param after the directory now
   */
  async #revokeElsewhere(
    before: Map<string, PublicIdentity>,
    after: Map<string, PublicIdentity>,
  ): Promise<void> {
    const delivery = this.#delivery;
    if (!delivery.kick) return;
    const revoked = this.#presence.list().filter((e) =>
      e.node !== this.#c.node && before.has(e.name) &&
      before.get(e.name)?.fingerprint !== after.get(e.name)?.fingerprint
    );
    await Promise.all(revoked.map(async (e) => {
      const keep = after.get(e.name)?.fingerprint;
      const r = await delivery.kick!(e.name, "revoked", keep);
      this.#log("revoke-sent", {
        user: e.name,
        node: e.node,
        result: typeof r === "string" ? r : r.code,
      });
    }));
  }

  /**
   * Stop: tell every client, close every connection, wait for all tasks.
   * @param reason told to clients
   */
  async close(reason = "shutdown"): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#edge.stop();
    await Promise.all(
      this.#registry.all().map((s) =>
        this.#drop(s, reason, "The server is shutting down")
      ),
    );
    await this.#edge.done();
    await Promise.all([...this.#tasks]);
    await this.#mailbox.close();
    await this.#rooms.close();
    for (const x of this.#owned) await x.close();
    await this.#signer.close();
    this.#listCache.close();
    this.#unsubscribe();
    this.#log("stopped", { reason });
  }
}
