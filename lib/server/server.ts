/**
 * The `im` server: accepts TCP connections, runs the login handshake
 * (section 2), then serves each user over a {@link SecureChannel} as the key
 * distribution centre for peer sessions (section 4). This is the socket
 * edge; the bookkeeping is {@link Presence} in `server_state.ts`.
 *
 * One client can never stop the server or other clients: every connection
 * runs in its own task with its own errors, a login must finish within a
 * deadline (rule 1.2), unauthenticated connections are capped per address
 * and in total (the oldest is evicted, so a flood of idle sockets cannot
 * lock a real user out), and repeated failed logins from one address are
 * slowed down (rule 2.4).
 *
 * @example
 * ```ts ignore
 * const server = await ImServer.start({ identity, clients, port: 0 });
 * console.log(server.port);
 * await server.close();
 * ```
 * @module
 */

import {
  AuthError,
  isImError,
  type Logger,
  NetError,
  ProtocolError,
  randomBytes,
  within,
} from "../util/mod.ts";
import { DEFAULT_HEARTBEAT_MS, DEFAULT_WINDOW_MS } from "../record/mod.ts";
import {
  encodeErrorFrame,
  ErrorCode,
  errorFrameCode,
  LOGIN_TIMEOUT_MS,
  type LoginResult,
  MAX_TICKET_LIFETIME_MS,
  type Message,
  sealTicket,
  SecureChannel,
  ServerHandshake,
  TICKET_ID_BYTES,
} from "../proto/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_QUEUED_BYTES,
  type Farewell,
  FrameKind,
  type FrameListener,
  type FrameTransport,
  type Network,
  tcpNetwork,
} from "../wire/mod.ts";
import type { PrivateIdentity, PublicIdentity } from "../crypto/mod.ts";
import { FailurePenalty, LoginAdmission, Presence } from "./presence.ts";

/** Most users in one `!list` answer by default; the rest are counted (`more`), so the answer always fits a record. */
export const LIST_MAX = 1000;
/** Relayed bytes a partner may have waiting before more relays to it are refused (`relay-busy`). */
export const RELAY_QUEUE_BUDGET_BYTES = 1024 * 1024;

/** Settings of {@link ImServer}; every limit has a default. */
export interface ServerOptions {
  hostname?: string;
  port?: number;
  /** Where connections come from (default {@link tcpNetwork}; tests pass a `MemoryNetwork`). */
  network?: Network;
  identity: PrivateIdentity;
  /** The server's directory of client public keys. */
  clients: Map<string, PublicIdentity>;
  log?: Logger;
  /** Rule 1.2: a login must finish within this (default {@link LOGIN_TIMEOUT_MS}). */
  loginTimeoutMs?: number;
  /** Unauthenticated connections at once, in total (default 256). */
  maxUnauthenticated?: number;
  /** Unauthenticated connections at once from one address (default 64). */
  maxUnauthenticatedPerAddress?: number;
  /** Logged-in clients at once (default 10,000). */
  maxClients?: number;
  /** Most users in one `!list` answer (default {@link LIST_MAX}); the rest are counted. */
  listMax?: number;
  /** Rule 1.1 (default 64 KiB). */
  maxFrameBytes?: number;
  /** Heartbeat interval of client channels (default 2 s; dead after 3). */
  heartbeatMs?: number;
  /** Rule 3.5 freshness window (default 120 s). */
  windowMs?: number;
  /** Rule 4.2 ticket lifetime (default 30 s, at most 60 s). */
  ticketLifetimeMs?: number;
  /** Failed logins from one address within a minute before it is slowed down (default 5). */
  authFailureLimit?: number;
  /** First penalty after the limit, doubled on each further failure up to 5 min (default 5 s). */
  authPenaltyMs?: number;
  /**
   * Most bytes queued for one client that does not read; past it that
   * client is disconnected (default 4 MiB), so it cannot grow our memory.
   */
  maxQueuedBytes?: number;
}

/** How long the server waits for a goodbye message to be written before it closes the socket anyway. */
const GOODBYE_TIMEOUT_MS = 1000;

interface ClientSession {
  user: string;
  remote: string;
  channel: SecureChannel;
  fingerprint: string;
  /** The user's ticket keys from its login (rule 4.2); never leave this process. */
  ticketKeys: LoginResult["ticketKeys"];
}

/** A transport as the server's listener hands it out. */
type Conn = FrameTransport & Farewell;

interface Pending {
  address: string;
  transport: Conn;
}

/** A running server. */
export class ImServer {
  #listener: FrameListener;
  #o: Required<Omit<ServerOptions, "hostname" | "port" | "log" | "network">>;
  #log: Logger;
  #clients: Map<string, PublicIdentity>;
  #presence: Presence;
  #sessions = new Map<string, ClientSession>();
  #pending: LoginAdmission<Pending>;
  #failures: FailurePenalty;
  #tasks = new Set<Promise<void>>();
  #closing = false;
  #acceptLoop: Promise<void>;

  private constructor(listener: FrameListener, opts: ServerOptions) {
    this.#listener = listener;
    this.#log = opts.log ?? (() => {});
    this.#clients = opts.clients;
    this.#presence = new Presence((name) => this.#clients.has(name));
    this.#o = {
      identity: opts.identity,
      clients: opts.clients,
      loginTimeoutMs: opts.loginTimeoutMs ?? LOGIN_TIMEOUT_MS,
      maxUnauthenticated: opts.maxUnauthenticated ?? 256,
      maxUnauthenticatedPerAddress: opts.maxUnauthenticatedPerAddress ?? 64,
      maxClients: opts.maxClients ?? 10_000,
      maxFrameBytes: opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      listMax: Math.max(1, opts.listMax ?? LIST_MAX),
      heartbeatMs: opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      windowMs: opts.windowMs ?? DEFAULT_WINDOW_MS,
      ticketLifetimeMs: Math.min(
        opts.ticketLifetimeMs ?? 30_000,
        MAX_TICKET_LIFETIME_MS,
      ),
      authFailureLimit: opts.authFailureLimit ?? 5,
      authPenaltyMs: opts.authPenaltyMs ?? 5_000,
      maxQueuedBytes: opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    };
    this.#pending = new LoginAdmission({
      maxTotal: this.#o.maxUnauthenticated,
      maxPerAddress: this.#o.maxUnauthenticatedPerAddress,
    });
    this.#failures = new FailurePenalty({
      limit: this.#o.authFailureLimit,
      basePenaltyMs: this.#o.authPenaltyMs,
    });
    this.#acceptLoop = this.#accept();
  }

  /**
   * Listen and start serving.
   * @param opts keys and limits
   * @returns the running server
   * @throws {NetError} `port-in-use` or `listen-failed`
   */
  static start(opts: ServerOptions): Promise<ImServer> {
    const hostname = opts.hostname ?? "127.0.0.1";
    const port = opts.port ?? 9876;
    let listener: FrameListener;
    try {
      listener = (opts.network ?? tcpNetwork).listen(hostname, port, {
        maxFrameBytes: opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
        maxQueuedBytes: opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
        // Rule 1.1: broken framing during login gets an error frame, then the close.
        farewell: (e) =>
          encodeErrorFrame({ code: ErrorCode.PROTOCOL, message: e.message }),
      });
    } catch (e) {
      return Promise.reject(e);
    }
    const server = new ImServer(listener, opts);
    server.#log("listening", {
      addr: `${hostname}:${server.port}`,
      fingerprint: opts.identity.fingerprint,
      users: opts.clients.size,
    });
    return Promise.resolve(server);
  }

  /** The port the server listens on. */
  get port(): number {
    return this.#listener.port;
  }

  /** @returns who is online, as `!list` shows it */
  list(): Array<{ name: string; state: string }> {
    return this.#presence.list();
  }

  /** Unauthenticated connections open now. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  #track(p: Promise<void>): void {
    this.#tasks.add(p);
    p.finally(() => this.#tasks.delete(p));
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Conn;
      try {
        conn = await this.#listener.accept();
      } catch (e) {
        if (this.#closing || (isImError(e) && e.code === "closed")) return;
        // EMFILE and friends: log, breathe, keep serving everyone else.
        this.#log("accept-error", { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      this.#track(
        this.#handle(conn).catch((e) => {
          this.#log("connection-error", {
            error: (e as Error)?.message ?? String(e),
          });
        }),
      );
    }
  }

  #recordFailure(address: string, now: number): void {
    const penaltyMs = this.#failures.recordFailure(address, now);
    if (penaltyMs > 0) {
      this.#log("penalty", {
        addr: address,
        seconds: Math.round(penaltyMs / 1000),
      });
    }
  }

  /** Admit a new unauthenticated connection, evicting the oldest ones over the caps (rule 1.2). */
  #admit(p: Pending): void {
    for (const q of this.#pending.admit(p.address, p)) {
      this.#log("evicted", {
        addr: q.transport.remote,
        reason: "too many unauthenticated connections",
      });
      this.#refuse(
        q.transport,
        ErrorCode.TOO_MANY,
        "Too many connections are logging in; try again",
      );
    }
  }

  #refuse(t: FrameTransport, code: number, message: string): void {
    if (t.closed) return;
    within(
      t.send(encodeErrorFrame({ code, message })).catch(() => {}),
      GOODBYE_TIMEOUT_MS,
      undefined,
    ).finally(() => t.close());
  }

  async #handle(t: Conn): Promise<void> {
    const address = t.remoteHost;
    const now = Date.now();
    const wait = this.#failures.penalty(address, now);
    if (wait > 0) {
      this.#refuse(
        t,
        ErrorCode.RATE_LIMITED,
        `Too many failed logins from your address; try again in ${
          Math.ceil(wait / 1000)
        } s`,
      );
      return;
    }
    if (this.#closing) {
      this.#refuse(t, ErrorCode.SHUTDOWN, "Server is shutting down");
      return;
    }
    const pending: Pending = { address, transport: t };
    this.#admit(pending);
    const deadline = setTimeout(() => {
      this.#log("login-timeout", { addr: t.remote });
      this.#refuse(
        t,
        ErrorCode.TIMEOUT,
        `Login not finished within ${this.#o.loginTimeoutMs / 1000} s`,
      );
    }, this.#o.loginTimeoutMs);
    let login: LoginResult;
    // Each SERVER_HELLO costs an RSA signature: a login abandoned after one
    // counts as a failure, so one address cannot make the server sign for
    // it in a loop (rule 1.2, rule 2.4).
    let signed = false;
    let failureCounted = false;
    try {
      const hs = new ServerHandshake({
        identity: this.#o.identity,
        lookupUser: (name) => this.#clients.get(name),
        decoy: this.#o.identity.publicIdentity,
        windowMs: this.#o.windowMs,
      });
      const hello = await this.#recvLogin(t);
      const serverHello = await hs.onClientHello(hello);
      signed = true;
      await t.send(serverHello);
      const auth = await this.#recvLogin(t);
      let replies: Uint8Array[];
      try {
        replies = await hs.onClientAuth(auth);
      } catch (e) {
        if (e instanceof AuthError) {
          failureCounted = true;
          this.#recordFailure(address, Date.now());
          this.#log("login-failed", {
            addr: t.remote,
            user: hs.claimedUser,
            reason: "unknown user or bad signature",
          });
          this.#refuse(t, ErrorCode.AUTH_FAILED, "unknown user or wrong key");
          return;
        }
        throw e;
      }
      for (const r of replies) await t.send(r);
      await hs.onClientFinished(await this.#recvLogin(t));
      login = hs.result;
    } catch (e) {
      if (signed && !failureCounted) this.#recordFailure(address, Date.now());
      // Broken framing closed the transport already (after its ERROR
      // farewell); it is still worth a line in the log.
      const framing = e instanceof ProtocolError && t.closed;
      if (!t.closed || framing) {
        this.#log("login-error", {
          addr: t.remote,
          error: isImError(e) ? e.code : "internal",
          detail: (e as Error).message,
        });
      }
      if (!t.closed) {
        this.#refuse(
          t,
          errorFrameCode(e),
          isImError(e) ? e.message : "Internal error",
        );
      }
      return;
    } finally {
      clearTimeout(deadline);
      this.#pending.remove(address, pending);
    }
    // Rule 3.6: nothing in clear after login, not even an error frame.
    t.farewell = undefined;
    if (this.#closing) {
      t.close();
      return;
    }
    await this.#serve(login, t);
  }

  async #recvLogin(t: FrameTransport): Promise<Uint8Array> {
    const p = await t.recv();
    if (p === null) {
      throw new NetError("closed", "Connection closed during login");
    }
    if (p[0] === FrameKind.ERROR) {
      throw new ProtocolError(
        "peer-error",
        "Client sent an error during login",
      );
    }
    return p;
  }

  async #serve(login: LoginResult, t: FrameTransport): Promise<void> {
    const user = login.user;
    // The key the client proved it holds; checked against the directory as
    // it is now, since a reload may have revoked it during the login.
    const fingerprint = login.peerFingerprint;
    if (
      this.#sessions.size >= this.#o.maxClients && !this.#sessions.has(user)
    ) {
      const ch = new SecureChannel(t, login.sealer, login.opener, {
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
    const channel = new SecureChannel(t, login.sealer, login.opener, {
      heartbeatMs: this.#o.heartbeatMs,
      maxRecordBytes: this.#o.maxFrameBytes,
    });
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
    const older = this.#sessions.get(user);
    // Registered before any await: two logins of one user racing here must
    // not both stay online (rule 2.10).
    this.#sessions.set(user, session);
    if (older) {
      // Rule 2.10: the newer login wins; the older connection is told why.
      this.#log("replaced", { user, old: older.remote, new: t.remote });
      const partner = this.#presence.leave(user);
      if (partner) {
        this.#sendTo(partner, {
          t: "cancelled",
          peer: user,
          message: `${user} logged in again from another place`,
        });
      }
      this.#track(
        this.#dropSession(
          older,
          "replaced",
          "You logged in from another place; this connection is closed",
        ),
      );
    }
    this.#presence.join(user);
    if (this.#closing) {
      // close() took its snapshot of the sessions before this one arrived.
      await this.#dropSession(
        session,
        "shutdown",
        "The server is shutting down",
      );
      return;
    }
    this.#log("join", { user, addr: t.remote, fingerprint });
    await channel.send({
      t: "welcome",
      user,
      serverFingerprint: this.#o.identity.fingerprint,
    }).catch(() => {});
    let lastError = "";
    for await (const ev of channel.events()) {
      if (ev.kind === "message") {
        try {
          await this.#onMessage(session, ev.msg);
        } catch (e) {
          if (!isImError(e)) {
            this.#log("internal-error", { user, error: (e as Error).message });
          } else if (!channel.closed) {
            await channel.send({ t: "error", code: e.code, message: e.message })
              .catch(() => {});
          }
        }
      } else if (ev.kind === "discarded") {
        this.#log("record-discarded", { user, reason: ev.error.code });
        await channel.send({
          t: "error",
          code: ev.error.code,
          message: ev.error.message,
        }).catch(() => {});
      } else if (ev.kind === "lost") {
        this.#log("records-lost", { user, count: Number(ev.count) });
        // Rule 3.5: a jump is reported, so the user knows a command vanished.
        await channel.send({
          t: "error",
          code: "lost",
          message:
            `${ev.count} of your messages to the server were lost on the way`,
        }).catch(() => {});
      } else if (ev.kind === "closed") {
        lastError = ev.error?.code ?? ev.reason;
      }
    }
    this.#leave(session, lastError);
  }

  #leave(session: ClientSession, reason: string): void {
    if (this.#sessions.get(session.user) !== session) return;
    this.#sessions.delete(session.user);
    const partner = this.#presence.leave(session.user);
    this.#log("leave", { user: session.user, reason });
    if (partner) {
      this.#sendTo(partner, {
        t: "cancelled",
        peer: session.user,
        message: `${session.user} went offline`,
      });
    }
  }

  async #dropSession(
    s: ClientSession,
    reason: string,
    message: string,
  ): Promise<void> {
    this.#leave(s, reason);
    // A client that does not read must not stall a replacement, a
    // revocation or the shutdown: the goodbye gets a bounded time.
    await within(
      s.channel.send({ t: "closing", reason, message }).catch(() => {})
        .then(() => s.channel.close(reason)),
      GOODBYE_TIMEOUT_MS,
      undefined,
    );
    s.channel.abort(reason);
  }

  #sendTo(user: string, msg: Message): void {
    this.#sessions.get(user)?.channel.send(msg).catch(() => {});
  }

  async #onMessage(s: ClientSession, m: Message): Promise<void> {
    const user = s.user;
    switch (m.t) {
      case "list": {
        const all = this.#presence.list();
        // One record must hold the answer: 1,000 names of 32 characters fit 64 KiB.
        return s.channel.send({
          t: "users",
          users: all.slice(0, this.#o.listMax),
          more: Math.max(0, all.length - this.#o.listMax),
        });
      }
      case "host": {
        if (!/^[A-Za-z0-9.:\[\]_-]{1,80}:\d{1,5}$/.test(m.addr)) {
          return s.channel.send({
            t: "error",
            code: "bad-address",
            message: `Cannot host at "${m.addr.slice(0, 80)}": not host:port`,
          });
        }
        const why = this.#presence.host(user, m.addr);
        if (why) {
          return s.channel.send({
            t: "error",
            code: "cannot-host",
            message: `Cannot host: ${why}`,
          });
        }
        this.#log("hosting", { user, addr: m.addr });
        return s.channel.send({ t: "hosting", addr: m.addr });
      }
      case "unhost":
        this.#presence.unhost(user);
        return;
      case "session":
        return this.#grant(s, m.peer);
      case "ended":
        this.#presence.ended(user, m.peer);
        this.#log("session-ended", { user, peer: m.peer });
        return;
      case "busy":
        this.#presence.resumeBusy(user, m.peer);
        this.#log("session-resumed", { user, peer: m.peer });
        return;
      case "cancel": {
        const joiner = this.#presence.cancel(user, m.ticketId);
        if (joiner) {
          this.#log("session-cancelled", {
            host: user,
            joiner,
            reason: "ticket expired",
          });
          this.#sendTo(joiner, {
            t: "cancelled",
            peer: user,
            message: `${user} gave up waiting for you`,
          });
        }
        return;
      }
      case "relay": {
        // Issue 6: forward the peers' sealed frames between their server channels.
        const me = this.#presence.get(user);
        if (
          me?.partner !== m.peer || this.#presence.get(m.peer)?.partner !== user
        ) {
          return s.channel.send({
            t: "error",
            code: "no-session",
            message: `No session with ${m.peer.slice(0, 40)} to relay to`,
          });
        }
        // Not awaited: a partner that does not read must not stall this
        // client. A frame too large to forward, or one more for a partner
        // whose queue is already long, is refused to its sender; neither may
        // end the partner's connection.
        const partner = this.#sessions.get(m.peer);
        const queued = partner?.channel.transport.queuedBytes ?? 0;
        if (queued > RELAY_QUEUE_BUDGET_BYTES) {
          return s.channel.send({
            t: "error",
            code: "relay-busy",
            message:
              `${m.peer} is not keeping up; relayed message not delivered`,
          });
        }
        partner?.channel.send({
          t: "relayed",
          peer: user,
          data: m.data,
        }).catch((e) => {
          if (isImError(e) && e.code === "message-too-large") {
            s.channel.send({
              t: "error",
              code: "relay-too-large",
              message:
                `Cannot relay ${m.data.length} bytes to ${m.peer}: ${e.message}`,
            }).catch(() => {});
          }
        });
        return;
      }
      case "bye":
        this.#leave(s, "logout");
        await s.channel.close("logout");
        return;
      default:
        return s.channel.send({
          t: "error",
          code: "unexpected-message",
          message: `Message "${m.t}" is not for the server`,
        });
    }
  }

  async #grant(s: ClientSession, hostName: string): Promise<void> {
    const d = this.#presence.requestSession(
      s.user,
      hostName,
      Date.now(),
      this.#o.ticketLifetimeMs,
    );
    if (!d.ok) {
      this.#log("session-refused", {
        joiner: s.user,
        host: hostName.slice(0, 40),
        reason: d.reason,
      });
      return s.channel.send({
        t: "refused",
        peer: hostName.slice(0, 40),
        reason: d.reason,
        message: d.message,
      });
    }
    const host = this.#sessions.get(d.host);
    if (!host) {
      // Presence and sessions disagree (the host is leaving right now): undo.
      this.#presence.ended(d.host, d.joiner);
      this.#presence.ended(d.joiner, d.host);
      return s.channel.send({
        t: "refused",
        peer: d.host,
        reason: "offline",
        message: `${d.host} is not online`,
      });
    }
    const peerKey = randomBytes(32);
    const id = randomBytes(TICKET_ID_BYTES);
    const ticket = sealTicket(s.ticketKeys, {
      id,
      host: d.host,
      joiner: d.joiner,
      expiresAt: d.expiresAt,
      peerKey,
    });
    const ticketId = id.toHex();
    this.#presence.setTicket(d.host, ticketId);
    this.#log("session-granted", {
      host: d.host,
      joiner: d.joiner,
      ticket: ticketId.slice(0, 8),
    });
    // Seed section 3: the host gets the key for itself and the ticket for the joiner.
    await host.channel.send({
      t: "grant",
      peer: d.joiner,
      key: peerKey.toBase64(),
      ticket: ticket.toBase64(),
      ticketId,
      expiresAt: d.expiresAt,
    }).catch(() => {});
    peerKey.fill(0);
    await s.channel.send({
      t: "join",
      peer: d.host,
      addr: d.addr,
      ticketId,
      expiresAt: d.expiresAt,
    });
  }

  /**
   * Replace the client directory (SIGHUP, enrollment). Users whose key was
   * removed or changed are disconnected with a clear reason.
   * @param clients the new directory
   */
  async reloadClients(clients: Map<string, PublicIdentity>): Promise<void> {
    this.#clients = clients;
    this.#log("reload", { users: clients.size });
    for (const s of [...this.#sessions.values()]) {
      const now = clients.get(s.user);
      if (!now || now.fingerprint !== s.fingerprint) {
        this.#log("revoked", { user: s.user });
        await this.#dropSession(
          s,
          "revoked",
          "Your key was revoked by the server operator",
        );
      }
    }
  }

  /**
   * Stop: tell every client, close every connection, wait for all tasks.
   * @param reason told to clients
   */
  async close(reason = "shutdown"): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const p of this.#pending.all()) p.transport.close();
    await Promise.all(
      [...this.#sessions.values()].map((s) =>
        this.#dropSession(s, reason, "The server is shutting down")
      ),
    );
    await this.#acceptLoop;
    await Promise.all([...this.#tasks]);
    this.#log("stopped", { reason });
  }
}
