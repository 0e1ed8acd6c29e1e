/**
 * The chat client: logs in to the server (section 2), runs the user's
 * commands, and holds at most one peer session (section 4), direct or
 * relayed. This is the socket edge; the protocol steps live in
 * `handshake.ts` and `peer.ts`, the terminal in `ui.ts`.
 *
 * @example
 * ```ts ignore
 * const client = await ChatClient.start({ user: "A", identity, pinnedServer, serverHost: "127.0.0.1", serverPort: 9876, ui });
 * await client.handleLine("!list");
 * await client.quit();
 * ```
 * @module
 */

import { DEFAULT_HEARTBEAT_MS } from "../record/mod.ts";
import {
  ClientHandshake,
  LOGIN_TIMEOUT_MS,
  type LoginResult,
  type Message,
  SecureChannel,
  TicketReplayCache,
} from "../proto/mod.ts";
import {
  Backoff,
  type ImError,
  isImError,
  NetError,
  ProtocolError,
  within,
} from "../util/mod.ts";
import { FrameKind, type FrameTransport, TcpTransport } from "../wire/mod.ts";
import type { PrivateIdentity, PublicIdentity } from "../crypto/mod.ts";
import {
  hostPeer,
  joinPeer,
  type PeerSession,
  readPeerCommit,
  RelayTransport,
  SpentHandshakeError,
} from "./peer_session.ts";
import { HELP_TEXT, parseCommand } from "./commands.ts";
import type { UiEvent } from "./events.ts";

/** Where the client shows things; a {@link Terminal} fits. */
export interface ClientUi {
  print(ev: UiEvent): void;
  setPeer(peer: string | null): void;
}

/** Settings of a client. */
export interface ClientOptions {
  user: string;
  identity: PrivateIdentity;
  /** The server key keygen pinned for this user (rule 2.2). */
  pinnedServer: PublicIdentity;
  serverHost: string;
  serverPort: number;
  ui: ClientUi;
  /** Address to listen on when hosting (default 127.0.0.1). */
  listenHost?: string;
  /** Port to listen on when hosting (default 0: any free port). */
  listenPort?: number;
  /** Address to advertise instead of the listener's (e.g. behind NAT). */
  advertise?: string;
  /** Always run peer sessions through the server relay. */
  relay?: boolean;
  heartbeatMs?: number;
  windowMs?: number;
  /** Reconnect when the server goes away (default true). */
  reconnect?: boolean;
  /** First reconnect delay; doubles up to {@link reconnectMaxMs} (default 1 s). */
  reconnectBaseMs?: number;
  /** Longest reconnect delay (default 30 s). */
  reconnectMaxMs?: number;
  /**
   * Wait for the server's answer to each command before the next line
   * (`!list`, `!session host`, `!session <user>`), so a script's lines act in
   * order: `im chat` sets it when stdin is not a terminal.
   */
  waitForReplies?: boolean;
  /** Refresh the names offered by Tab completion this often, quietly (ms; 0 = never). */
  namesRefreshMs?: number;
  /** Login must finish within this (default {@link LOGIN_TIMEOUT_MS}). */
  loginTimeoutMs?: number;
  /** How long a joiner's connection waits for our grant to arrive (default {@link GRANT_WAIT_MS}). */
  grantWaitMs?: number;
}

/** A {@link UiEvent} whose time is filled in when printed. */
type NewEvent = UiEvent extends unknown
  ? (UiEvent extends infer E
    ? E extends UiEvent ? Omit<E, "at"> & { at?: number } : never
    : never)
  : never;

/**
 * Peer connections a host serves at once before their handshake finished.
 * A newcomer evicts the oldest one that has not sent a PEER_COMMIT yet (a
 * real joiner sends it as soon as it connects), else the oldest.
 */
export const MAX_PENDING_PEER_CONNECTIONS = 8;

/**
 * How long a joiner's connection waits for the host's grant: the server
 * sends the grant to the host and the address to the joiner at once, so a
 * fast joiner can arrive first.
 */
export const GRANT_WAIT_MS = 5000;

/** How long to wait for a direct connection to a host before relaying. */
export const DIRECT_CONNECT_TIMEOUT_MS = 3000;

/** Scripting mode: longest wait for the server's answer to a command. */
export const REPLY_WAIT_MS = 5000;
/** Scripting mode: longest wait for `!session <user>` to start or fail. */
export const SESSION_WAIT_MS = 20_000;

/**
 * Connect to the server and log in, all within the login deadline
 * (`loginTimeoutMs`, default {@link LOGIN_TIMEOUT_MS}): a server that does not answer, or an
 * address where packets vanish, fails with `login-timeout` instead of
 * hanging for the minutes a TCP connect can take.
 * @param o client settings
 * @returns the server channel and the login keys
 * @throws {NetError} server unreachable, or `login-timeout`; {@link AuthError} refused; {@link ProtocolError}
 * @example
 * ```ts ignore
 * const { channel, login } = await loginToServer(options);
 * ```
 */
export async function loginToServer(
  o: ClientOptions,
): Promise<{ channel: SecureChannel; login: LoginResult }> {
  const where = `${o.serverHost}:${o.serverPort}`;
  const timeoutMs = o.loginTimeoutMs ?? LOGIN_TIMEOUT_MS;
  const timeoutError = () =>
    new NetError(
      "login-timeout",
      `Server at ${where} did not answer within ${timeoutMs / 1000} s`,
      "is the server running and reachable? check --server",
    );
  let timedOut = false;
  let t: TcpTransport | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      t?.close();
      reject(timeoutError());
    }, timeoutMs);
  });
  deadline.catch(() => {}); // Reported through `timedOut` once connected.
  try {
    const connecting = TcpTransport.connect(o.serverHost, o.serverPort);
    try {
      t = await Promise.race([connecting, deadline]);
    } catch (e) {
      // A connection that completes after the deadline is closed at once.
      if (timedOut) connecting.then((late) => late.close(), () => {});
      throw e;
    }
    const conn = t;
    const hs = new ClientHandshake({
      user: o.user,
      identity: o.identity,
      pinnedServer: o.pinnedServer,
      ...(o.windowMs === undefined ? {} : { windowMs: o.windowMs }),
    });
    const recv = async () => {
      const p = await conn.recv();
      if (p === null) {
        throw new NetError(
          "server-closed",
          `Server at ${where} closed the connection during login`,
          "is it an im server? check --server",
        );
      }
      return p;
    };
    await conn.send(await hs.start());
    await conn.send(await hs.onServerHello(await recv()));
    await hs.onServerKey(await recv());
    await conn.send(await hs.onServerFinished(await recv()));
    if (timedOut) throw timeoutError();
    const login = hs.result;
    const heartbeatMs = o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    const channel = new SecureChannel(conn, login.sealer, login.opener, {
      heartbeatMs,
    });
    return { channel, login };
  } catch (e) {
    t?.close();
    // Whatever broke once the deadline passed (a send on the closed socket,
    // say), the cause is the deadline.
    throw timedOut ? timeoutError() : e;
  } finally {
    clearTimeout(timer);
  }
}

interface Grant {
  peer: string;
  key: Uint8Array;
  ticket: Uint8Array;
  ticketId: string;
  expiresAt: number;
  timer: ReturnType<typeof setTimeout>;
}

type Mode =
  | { kind: "idle" }
  | {
    kind: "hosting";
    listener: Deno.TcpListener | null;
    addr: string;
    grant: Grant | null;
    /** The joiner's relayed connection while its peer handshake runs (issue 6). */
    relay: RelayTransport | null;
  }
  | {
    kind: "joining";
    peer: string;
    /** The server's `join` for this attempt has been acted on. */
    started: boolean;
    /** The direct connection while its peer handshake runs. */
    direct: TcpTransport | null;
    relay: RelayTransport | null;
  }
  | { kind: "session"; session: PeerSession; relay: RelayTransport | null };

/** A logged-in chat client. */
export class ChatClient {
  #o: ClientOptions;
  #server: SecureChannel | null;
  #login: LoginResult;
  #mode: Mode = { kind: "idle" };
  #replayCache = new TicketReplayCache();
  #names: string[] = [];
  /** Server answers received (users, hosting, errors, refusals): what a waiting command watches. */
  #answers = 0;
  #answerWaiters: Array<() => void> = [];
  /** `!list` answers to swallow: the quiet refreshes of Tab completion's names. */
  #quietLists = 0;
  #welcomed = Promise.withResolvers<void>();
  #namesTimer: ReturnType<typeof setInterval> | undefined;
  #quitting = false;
  #fatal: ImError | undefined;
  #tasks = new Set<Promise<unknown>>();
  #onFatal: (e: ImError) => void = () => {};
  #grantWaiters = new Set<() => void>();
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #wakeReconnect: (() => void) | undefined;

  private constructor(
    o: ClientOptions,
    channel: SecureChannel,
    login: LoginResult,
  ) {
    this.#o = o;
    this.#server = channel;
    this.#login = login;
    this.#track(this.#serverLoop(channel));
  }

  /**
   * Log in and start listening to the server.
   * @param o settings
   * @returns the client
   * @throws typed errors from {@link loginToServer}
   */
  static async start(o: ClientOptions): Promise<ChatClient> {
    const { channel, login } = await loginToServer(o);
    const client = new ChatClient(o, channel, login);
    // "Logged in" comes first, before anything the user's first line causes.
    await within(
      client.#welcomed.promise,
      o.loginTimeoutMs ?? LOGIN_TIMEOUT_MS,
      undefined,
    );
    if (client.#fatal) {
      // Refused right after the login (server full, key revoked): one line, exit 1.
      await client.quit();
      throw client.#fatal;
    }
    const every = o.namesRefreshMs ?? 0;
    if (every > 0) {
      client.#namesTimer = setInterval(() => client.#refreshNames(), every);
    }
    return client;
  }

  /** Ask for the online names without showing the answer (Tab completion). */
  #refreshNames(): void {
    if (!this.#server || this.#server.closed) return;
    this.#quietLists++;
    this.#server.send({ t: "list" }).catch(() => this.#quietLists--);
  }

  #answered(): void {
    this.#answers++;
    for (const w of this.#answerWaiters.splice(0)) w();
  }

  /** In scripting mode, wait (bounded) until `done()` holds. */
  async #settle(done: () => boolean, ms: number): Promise<void> {
    if (!this.#o.waitForReplies) return;
    const deadline = Date.now() + ms;
    while (!done() && !this.#quitting && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(
          resolve,
          Math.max(1, Math.min(100, deadline - Date.now())),
        );
        this.#answerWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Online usernames from the last `!list`, for Tab completion. */
  get names(): string[] {
    return this.#names;
  }

  /** The fatal error that ended the client, if any (replaced, revoked). */
  get fatal(): ImError | undefined {
    return this.#fatal;
  }

  /** Current mode, for tests and `!whoami`. */
  get mode(): Mode["kind"] {
    return this.#mode.kind;
  }

  /** @param f called once when the server ends us for good */
  set onFatal(f: (e: ImError) => void) {
    this.#onFatal = f;
    if (this.#fatal) f(this.#fatal); // it happened before anyone listened
  }

  #track<T>(p: Promise<T>): void {
    const q = p.catch((e) => this.#error(e));
    this.#tasks.add(q);
    q.finally(() => this.#tasks.delete(q));
  }

  #print(ev: NewEvent): void {
    this.#o.ui.print({ ...ev, at: ev.at ?? Date.now() } as UiEvent);
  }

  #system(text: string): void {
    this.#print({ kind: "system", text });
  }

  #error(e: unknown): void {
    if (isImError(e)) {
      this.#print({ kind: "error", code: e.code, text: e.message });
    } else {this.#print({
        kind: "error",
        code: "internal",
        text: `Internal error: ${(e as Error)?.message ?? e}`,
      });}
  }

  async #toServer(m: Message): Promise<boolean> {
    if (!this.#server || this.#server.closed) {
      this.#print({
        kind: "error",
        code: "offline",
        text: "Not connected to the server; reconnecting",
      });
      return false;
    }
    try {
      await this.#server.send(m);
      return true;
    } catch (e) {
      this.#error(e);
      return false;
    }
  }

  /**
   * Act on one line the user typed.
   * @param line the line
   * @returns false when the user asked to quit
   */
  async handleLine(line: string): Promise<boolean> {
    const cmd = parseCommand(line);
    switch (cmd.kind) {
      case "empty":
        return true;
      case "quit":
        return false;
      case "help":
        this.#system(HELP_TEXT);
        return true;
      case "unknown":
        this.#print({ kind: "error", code: "bad-command", text: cmd.hint });
        return true;
      case "whoami":
        this.#whoami();
        return true;
      case "list": {
        const before = this.#answers;
        if (await this.#toServer({ t: "list" })) {
          await this.#settle(() => this.#answers > before, REPLY_WAIT_MS);
        }
        return true;
      }
      case "host": {
        const before = this.#answers;
        await this.#host();
        await this.#settle(
          () => this.#answers > before || this.#mode.kind !== "hosting",
          REPLY_WAIT_MS,
        );
        return true;
      }
      case "session":
        await this.#requestSession(cmd.peer);
        // A script's next line is usually a message for this session.
        await this.#settle(
          () => this.#mode.kind !== "joining",
          SESSION_WAIT_MS,
        );
        return true;
      case "disconnect":
        await this.#disconnect();
        return true;
      case "message":
        await this.#sendText(cmd.text);
        return true;
    }
  }

  #whoami(): void {
    const m = this.#mode;
    const where = m.kind === "session"
      ? `in a ${m.session.transport} session with ${m.session.peer} (code ${m.session.sas})`
      : m.kind === "hosting"
      ? `hosting at ${m.addr}`
      : m.kind === "joining"
      ? `joining ${m.peer}`
      : "idle";
    this.#system(
      `You are ${this.#o.user} (${this.#o.identity.fingerprint}); server ${this.#o.serverHost}:${this.#o.serverPort} (${this.#o.pinnedServer.fingerprint}); ${where}`,
    );
  }

  async #sendText(text: string): Promise<void> {
    const m = this.#mode;
    if (m.kind !== "session") {
      this.#print({
        kind: "error",
        code: "no-session",
        text:
          "Not sent: you are not in a session; use !session <user> or !session host",
      });
      return;
    }
    try {
      const id = await m.session.sendText(text);
      this.#print({
        kind: "message",
        from: this.#o.user,
        to: m.session.peer,
        text,
        id,
        direction: "out",
      });
    } catch (e) {
      this.#print({
        kind: "error",
        code: isImError(e) && e.code === "message-too-large"
          ? e.code
          : "not-delivered",
        text: `Not delivered: ${(e as Error).message}`,
      });
    }
  }

  async #host(): Promise<void> {
    if (this.#mode.kind === "session" || this.#mode.kind === "joining") {
      this.#print({
        kind: "error",
        code: "busy",
        text: "You are in a session; !disconnect first",
      });
      return;
    }
    if (this.#mode.kind === "hosting") {
      this.#system(`Already hosting at ${this.#mode.addr}`);
      return;
    }
    let listener: Deno.TcpListener | null = null;
    let addr: string;
    if (this.#o.relay) {
      addr = "relay:0";
    } else {
      try {
        listener = Deno.listen({
          hostname: this.#o.listenHost ?? "127.0.0.1",
          port: this.#o.listenPort ?? 0,
        });
      } catch (e) {
        this.#print({
          kind: "error",
          code: "listen-failed",
          text: `Cannot listen for peers: ${(e as Error).message}`,
        });
        return;
      }
      const la = listener.addr as Deno.NetAddr;
      addr = this.#o.advertise ?? `${la.hostname}:${la.port}`;
    }
    this.#mode = { kind: "hosting", listener, addr, grant: null, relay: null };
    if (listener) this.#track(this.#acceptPeers(listener));
    if (!(await this.#toServer({ t: "host", addr }))) this.#stopHosting();
  }

  /**
   * Leave HOSTING. A grant still pending is cancelled, so the server does
   * not keep us (and the joiner) BUSY until the ticket expires; connections
   * still waiting for their handshake are closed.
   */
  #stopHosting(): void {
    const m = this.#mode;
    if (m.kind !== "hosting") return;
    if (m.grant) {
      clearTimeout(m.grant.timer);
      m.grant.key.fill(0);
      this.#sendQuietly({ t: "cancel", ticketId: m.grant.ticketId });
    }
    m.relay?.close();
    try {
      m.listener?.close();
    } catch {
      // Already closed.
    }
    for (const p of this.#pendingPeers.splice(0)) p.transport.close();
    this.#mode = { kind: "idle" };
    this.#wakeGrantWaiters();
  }

  /**
   * Send to the server if connected, without waiting and without a message
   * when it is not: for bookkeeping a new server session does not need.
   * Sent in order with everything sent after it.
   */
  #sendQuietly(m: Message): void {
    if (this.#server && !this.#server.closed) {
      this.#server.send(m).catch(() => {});
    }
  }

  #wakeGrantWaiters(): void {
    for (const w of [...this.#grantWaiters]) w();
  }

  /** Waiters for a grant, for tests: each probe's waiter is gone once it gave up. */
  get grantWaiters(): number {
    return this.#grantWaiters.size;
  }

  async #waitForGrant(ms: number): Promise<Grant | null> {
    const deadline = Date.now() + ms;
    const hosting = this.#mode;
    while (Date.now() < deadline) {
      const m = this.#mode;
      if (m !== hosting || m.kind !== "hosting") return null;
      if (m.grant) return m.grant;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.#grantWaiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.max(1, deadline - Date.now()));
        this.#grantWaiters.add(done);
      });
    }
    const m = this.#mode;
    return m === hosting && m.kind === "hosting" ? m.grant : null;
  }

  async #acceptPeers(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return; // Listener closed: hosting ended.
      }
      // Strangers may connect to a host's port too (rule 4.3); each costs a
      // socket until its handshake fails. Only a few are served at once. A
      // real joiner sends its PEER_COMMIT as soon as it is connected, so
      // those that have not are evicted first: idle strangers cannot keep
      // it out, whether they came before it or after.
      if (this.#pendingPeers.length >= MAX_PENDING_PEER_CONNECTIONS) {
        const i = this.#pendingPeers.findIndex((p) => !p.committed);
        this.#pendingPeers.splice(Math.max(i, 0), 1)[0]?.transport.close();
      }
      const pending = { transport: TcpTransport.wrap(conn), committed: false };
      this.#pendingPeers.push(pending);
      this.#track(
        this.#hostOne(pending.transport, "direct", pending).finally(() => {
          const i = this.#pendingPeers.indexOf(pending);
          if (i >= 0) this.#pendingPeers.splice(i, 1);
        }),
      );
    }
  }

  #pendingPeers: Array<{ transport: TcpTransport; committed: boolean }> = [];

  /**
   * A joiner connected (or its relayed PEER_COMMIT arrived): read its
   * commitment, wait for our grant (the seed's race), then run the handshake.
   */
  async #hostOne(
    t: FrameTransport,
    via: "direct" | "relay",
    pending?: { committed: boolean },
  ): Promise<void> {
    const hosting = this.#mode;
    let commit: Uint8Array;
    try {
      commit = await readPeerCommit(t);
    } catch (e) {
      t.close();
      this.#refused(t, e);
      return;
    }
    if (pending) pending.committed = true;
    // The server sends the grant to us and the address to the joiner at the
    // same time; a fast joiner can arrive before our grant. Wait for it.
    const grant = await this.#waitForGrant(
      this.#o.grantWaitMs ?? GRANT_WAIT_MS,
    );
    if (!grant || this.#mode !== hosting) {
      t.close();
      return;
    }
    let session: PeerSession;
    try {
      session = await hostPeer(
        t,
        {
          self: this.#o.user,
          joiner: grant.peer,
          peerKey: grant.key,
          ticket: grant.ticket,
          ticketId: Uint8Array.fromHex(grant.ticketId),
          ...(this.#o.windowMs === undefined
            ? {}
            : { windowMs: this.#o.windowMs }),
        },
        { heartbeatMs: this.#o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS },
        via,
        commit,
      );
    } catch (e) {
      t.close();
      const now = this.#mode;
      if (now.kind === "hosting" && now.relay === t) now.relay = null;
      if (e instanceof SpentHandshakeError) {
        // One guess per session (rule 4.4): this grant is not offered again.
        this.#print({
          kind: "error",
          code: e.code,
          text: `Session with ${grant.peer}: ${e.message}`,
        });
        this.#dropGrant(
          grant,
          `${grant.peer}'s session was cancelled; still hosting`,
        );
        return;
      }
      this.#refused(t, e);
      return;
    }
    const still = this.#mode;
    if (
      still !== hosting || still.kind !== "hosting" || still.grant !== grant
    ) {
      await session.close("cancelled");
      return;
    }
    clearTimeout(grant.timer);
    grant.key.fill(0);
    try {
      still.listener?.close();
    } catch {
      // Already closed.
    }
    for (const p of this.#pendingPeers.splice(0)) {
      if (p.transport !== t) p.transport.close();
    }
    this.#startSession(session, via === "relay" ? (t as RelayTransport) : null);
  }

  /** Rule 4.3: anyone else who connects gets nothing usable; we keep waiting until the expiry. */
  #refused(t: FrameTransport, e: unknown): void {
    const m = this.#mode;
    if (m.kind !== "hosting" || !m.grant) return;
    this.#system(
      `Refused a connection from ${t.remote}: ${
        (e as Error).message
      }; still waiting for ${m.grant.peer}`,
    );
  }

  #startSession(session: PeerSession, relay: RelayTransport | null): void {
    for (const w of this.#answerWaiters.splice(0)) w();
    this.#mode = { kind: "session", session, relay };
    this.#o.ui.setPeer(session.peer);
    this.#print({
      kind: "session",
      state: "started",
      peer: session.peer,
      sas: session.sas,
      transport: session.transport,
    });
    this.#track(this.#peerLoop(session));
  }

  async #peerLoop(session: PeerSession): Promise<void> {
    for await (const ev of session.events()) {
      switch (ev.kind) {
        case "text":
          this.#print({
            kind: "message",
            from: session.peer,
            to: this.#o.user,
            text: ev.text,
            id: ev.id,
            direction: "in",
          });
          break;
        case "delivered":
          this.#print({
            kind: "receipt",
            id: ev.id,
            status: "delivered",
            peer: session.peer,
          });
          break;
        case "problem":
          this.#print({ kind: "error", code: ev.code, text: ev.message });
          break;
        case "ended": {
          for (const u of ev.undelivered) {
            this.#print({
              kind: "receipt",
              id: u.id,
              status: "undelivered",
              peer: session.peer,
            });
          }
          const why = ev.reason === "disconnect"
            ? `${session.peer} ended the session`
            : ev.reason === "peer-silent" || ev.reason === "timeout"
            ? `${session.peer} stopped answering`
            : ev.reason === "connection-lost" || ev.reason === "protocol-error"
            ? `the connection to ${session.peer} was lost`
            : ev.reason === "local"
            ? "you ended the session"
            : `${session.peer} left (${ev.reason})`;
          this.#print({
            kind: "session",
            state: "ended",
            peer: session.peer,
            reason: why,
            transport: session.transport,
          });
          const mode = this.#mode;
          const current = mode.kind === "session" && mode.session === session;
          if (current) {
            mode.relay?.close();
            this.#mode = { kind: "idle" };
            this.#o.ui.setPeer(null);
          }
          // Only the current session is the server's business. Without a
          // server connection there is nobody to tell: a server we
          // reconnect to has forgotten the session anyway.
          if (
            current && !this.#quitting && this.#server && !this.#server.closed
          ) {
            await this.#toServer({ t: "ended", peer: session.peer });
          }
          break;
        }
      }
    }
  }

  async #requestSession(peer: string): Promise<void> {
    if (this.#mode.kind === "session" || this.#mode.kind === "joining") {
      this.#print({
        kind: "error",
        code: "busy",
        text: "You are in a session; !disconnect first",
      });
      return;
    }
    this.#stopHosting();
    const mode: Mode = {
      kind: "joining",
      peer,
      started: false,
      direct: null,
      relay: null,
    };
    this.#mode = mode;
    if (!(await this.#toServer({ t: "session", peer }))) {
      if (this.#mode === mode) this.#mode = { kind: "idle" };
    }
  }

  /** Leave a joining attempt: close its connections, so its task ends soon. */
  #abandonJoin(): void {
    const m = this.#mode;
    if (m.kind !== "joining") return;
    m.direct?.close();
    m.relay?.close();
    this.#mode = { kind: "idle" };
  }

  /**
   * The server said where the host is. The attempt is this very mode
   * object: once the user or the server moved on (`!disconnect`,
   * `cancelled`, a new `!session`), a late result of this attempt touches
   * nothing and tells the server nothing.
   */
  async #join(m: Extract<Message, { t: "join" }>): Promise<void> {
    const mode = this.#mode;
    if (mode.kind !== "joining" || mode.peer !== m.peer || mode.started) {
      return;
    }
    mode.started = true;
    const current = () => this.#mode === mode;
    this.#print({ kind: "session", state: "waiting", peer: m.peer });
    // A direct attempt that failed may already have used the ticket; its
    // retry over the relay carries the same one, which this attempt (and
    // only it) may use once more.
    let retryTicket: string | null = null;
    const replayCache = this.#replayCache;
    const opts = {
      self: this.#o.user,
      expectedHost: m.peer,
      ticketKeys: this.#login.ticketKeys,
      replayCache: {
        use(id: Uint8Array, expiresAt: number, now?: number) {
          if (retryTicket !== null && id.toHex() === retryTicket) {
            retryTicket = null;
            try {
              replayCache.use(id, expiresAt, now);
            } catch {
              // Used by the direct attempt of this very join.
            }
            return;
          }
          replayCache.use(id, expiresAt, now);
        },
      },
      ...(this.#o.windowMs === undefined ? {} : { windowMs: this.#o.windowMs }),
    };
    const channelOpts = {
      heartbeatMs: this.#o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    };
    const wantRelay = this.#o.relay || m.addr.startsWith("relay:");
    let session: PeerSession | undefined;
    let failure: unknown;
    if (!wantRelay) {
      const direct = await this.#connectDirect(m.addr);
      if (!current()) {
        direct?.close();
        return;
      }
      if (direct) {
        mode.direct = direct;
        try {
          session = await joinPeer(direct, opts, channelOpts, "direct");
        } catch (e) {
          direct.close();
          if (!current()) return;
          if (isNetworkFailure(e) && !(e instanceof SpentHandshakeError)) {
            // Closed, reset or silent (an eviction, a middlebox): try the
            // relay once. A ticket or authentication failure is final.
            retryTicket = m.ticketId.toLowerCase();
            this.#system(
              `Direct connection to ${m.peer} failed (${
                (e as Error).message
              }); using the server relay`,
            );
          } else {
            failure = e;
          }
        }
        mode.direct = null;
      } else {
        this.#system(
          `Cannot reach ${m.peer} at ${m.addr} directly; using the server relay`,
        );
      }
    }
    let relay: RelayTransport | null = null;
    if (!session && failure === undefined) {
      relay = this.#newRelay(m.peer);
      mode.relay = relay;
      try {
        // Our relayed PEER_COMMIT is what starts the host's handshake.
        session = await joinPeer(relay, opts, channelOpts, "relay");
      } catch (e) {
        relay.close();
        failure = e;
      }
    }
    if (!current()) {
      await session?.close("cancelled");
      return;
    }
    if (!session) {
      this.#print({
        kind: "error",
        code: isImError(failure) ? failure.code : "peer-failed",
        text: `Session with ${m.peer} failed: ${(failure as Error).message}`,
      });
      this.#mode = { kind: "idle" };
      await this.#toServer({ t: "ended", peer: m.peer });
      return;
    }
    this.#startSession(session, relay);
  }

  #newRelay(peer: string): RelayTransport {
    return new RelayTransport(peer, async (data) => {
      if (!this.#server || this.#server.closed) {
        throw new NetError("offline", "Not connected to the server");
      }
      await this.#server.send({ t: "relay", peer, data });
    });
  }

  async #connectDirect(addr: string): Promise<TcpTransport | null> {
    const i = addr.lastIndexOf(":");
    const host = addr.slice(0, i).replace(/^\[|\]$/g, "");
    const port = Number(addr.slice(i + 1));
    if (!host || !Number.isInteger(port) || port <= 0 || port > 65535) {
      return null;
    }
    try {
      // A connection that completes after we gave up is closed at once.
      return await within(
        TcpTransport.connect(host, port),
        DIRECT_CONNECT_TIMEOUT_MS,
        null,
        (late) => late.close(),
      );
    } catch {
      return null;
    }
  }

  async #disconnect(): Promise<void> {
    const m = this.#mode;
    if (m.kind === "session") {
      await m.session.close("disconnect");
      return; // #peerLoop reports the end and tells the server.
    }
    if (m.kind === "hosting") {
      this.#stopHosting();
      await this.#toServer({ t: "unhost" });
      this.#system("Stopped hosting");
      return;
    }
    if (m.kind === "joining") {
      this.#abandonJoin();
      await this.#toServer({ t: "ended", peer: m.peer });
      this.#system(`Stopped joining ${m.peer}`);
      return;
    }
    this.#print({
      kind: "error",
      code: "no-session",
      text: "Not in a session",
    });
  }

  #onGrant(g: Extract<Message, { t: "grant" }>): void {
    const m = this.#mode;
    if (m.kind !== "hosting") {
      // We stopped hosting while the server granted: release the joiner now
      // rather than leave both BUSY until the ticket expires.
      this.#sendQuietly({ t: "cancel", ticketId: g.ticketId });
      return;
    }
    let key: Uint8Array, ticket: Uint8Array;
    try {
      key = Uint8Array.fromBase64(g.key);
      ticket = Uint8Array.fromBase64(g.ticket);
      Uint8Array.fromHex(g.ticketId);
    } catch {
      this.#print({
        kind: "error",
        code: "bad-grant",
        text: "Server sent a malformed session grant",
      });
      return;
    }
    const lifetime = Math.max(0, Math.min(g.expiresAt - Date.now(), 60_000));
    const grant: Grant = {
      peer: g.peer,
      key,
      ticket,
      ticketId: g.ticketId,
      expiresAt: g.expiresAt,
      timer: setTimeout(() => this.#grantExpired(grant), lifetime),
    };
    if (m.grant) clearTimeout(m.grant.timer);
    m.grant = grant;
    this.#system(
      `${g.peer} asked for a session; waiting for ${g.peer} to connect`,
    );
    this.#wakeGrantWaiters();
  }

  #grantExpired(grant: Grant): void {
    this.#dropGrant(
      grant,
      `${grant.peer} did not connect in time; still hosting`,
    );
  }

  /** Give up a grant: tell the server (both IDLE), then host again. */
  #dropGrant(grant: Grant, why: string): void {
    const m = this.#mode;
    if (m.kind !== "hosting" || m.grant !== grant) return;
    clearTimeout(grant.timer);
    grant.key.fill(0);
    m.grant = null;
    m.relay?.close();
    m.relay = null;
    this.#system(why);
    this.#track(
      this.#toServer({ t: "cancel", ticketId: grant.ticketId }).then(() =>
        this.#toServer({ t: "host", addr: m.addr })
      ),
    );
  }

  #onRelayed(m: Extract<Message, { t: "relayed" }>): void {
    const mode = this.#mode;
    if (
      (mode.kind === "session" || mode.kind === "joining") && mode.relay &&
      mode.relay.remote === `relay:${m.peer}`
    ) {
      mode.relay.deliver(m.data);
      return;
    }
    if (mode.kind === "hosting" && mode.grant?.peer === m.peer) {
      let payload: Uint8Array;
      try {
        payload = Uint8Array.fromBase64(m.data);
      } catch {
        return;
      }
      if (payload[0] === FrameKind.PEER_COMMIT) {
        // A (new) relayed connection from the joiner: the handshake starts over.
        mode.relay?.close();
        const relay = this.#newRelay(m.peer);
        mode.relay = relay;
        relay.deliver(m.data);
        this.#track(this.#hostOne(relay, "relay"));
      } else if (mode.relay) {
        // The joiner's part of the peer handshake, before the session starts.
        mode.relay.deliver(m.data);
      }
    }
  }

  async #serverLoop(channel: SecureChannel): Promise<void> {
    let closing: Extract<Message, { t: "closing" }> | undefined;
    for await (const ev of channel.events()) {
      if (ev.kind === "message") {
        const m = ev.msg;
        switch (m.t) {
          case "welcome":
            this.#system(
              `Logged in as ${m.user} to ${this.#o.serverHost}:${this.#o.serverPort} (server key ${m.serverFingerprint})`,
            );
            this.#welcomed.resolve();
            if (this.#o.namesRefreshMs) this.#refreshNames();
            break;
          case "users": {
            this.#names = m.users.map((u) => u.name);
            if (this.#quietLists > 0) {
              this.#quietLists--;
              break;
            }
            this.#answered();
            this.#print({ kind: "list", users: m.users });
            // The server cuts a long list to fit one record and says how
            // many it left out.
            const more = (m as { more?: number }).more ?? 0;
            if (more > 0) this.#system(`... and ${more} more online`);
            break;
          }
          case "hosting":
            this.#system(
              `Hosting at ${m.addr}; others can now type !session ${this.#o.user}`,
            );
            this.#answered();
            break;
          case "grant":
            this.#onGrant(m);
            break;
          case "join":
            this.#track(this.#join(m));
            break;
          case "refused":
            if (this.#mode.kind === "joining" && this.#mode.peer === m.peer) {
              this.#abandonJoin();
            }
            this.#print({
              kind: "error",
              code: `refused-${m.reason}`,
              text: `Session refused: ${m.message}`,
            });
            this.#answered();
            break;
          case "cancelled":
            this.#onCancelled(m);
            break;
          case "error":
            if (m.code === "lost") this.#quietLists = 0; // a request may be among them
            this.#print({ kind: "error", code: m.code, text: m.message });
            this.#answered();
            break;
          case "closing":
            closing = m;
            break;
          case "relayed":
            this.#onRelayed(m);
            break;
          default:
            this.#print({
              kind: "error",
              code: "unexpected-message",
              text: `Server sent an unexpected "${m.t}" message`,
            });
        }
      } else if (ev.kind === "discarded") {
        // An answer may be what was discarded: never swallow a later one.
        this.#quietLists = 0;
        this.#print({
          kind: "error",
          code: ev.error.code,
          text: `From the server: ${ev.error.message}`,
        });
      } else if (ev.kind === "lost") {
        this.#print({
          kind: "error",
          code: "lost",
          text: `${ev.count} message(s) from the server were lost`,
        });
      }
    }
    if (this.#server === channel) this.#server = null;
    this.#welcomed.resolve(); // nobody waits for a welcome that cannot come
    if (this.#quitting) return;
    if (
      closing &&
      (closing.reason === "replaced" || closing.reason === "revoked" ||
        closing.reason === "full")
    ) {
      const e = new ProtocolError(
        closing.reason,
        `Server closed the connection: ${closing.message}`,
      );
      this.#fatal = e;
      this.#print({ kind: "error", code: e.code, text: e.message });
      this.#onFatal(e);
      return;
    }
    this.#stopHosting();
    this.#abandonJoin();
    // A relayed session cannot outlive the server channel that carries it;
    // a direct one goes on (issue 6 item 3).
    if (this.#mode.kind === "session") this.#mode.relay?.close();
    const why = closing ? closing.message : "connection lost";
    if (this.#o.reconnect === false) {
      const e = new NetError(
        "server-gone",
        `Disconnected from the server: ${why}`,
      );
      this.#fatal = e;
      this.#print({ kind: "error", code: e.code, text: e.message });
      this.#onFatal(e);
      return;
    }
    this.#print({
      kind: "error",
      code: "server-gone",
      text: `Disconnected from the server: ${why}; reconnecting`,
    });
    this.#track(this.#reconnect());
  }

  #onCancelled(m: Extract<Message, { t: "cancelled" }>): void {
    const mode = this.#mode;
    if (mode.kind === "joining" && mode.peer === m.peer) {
      this.#abandonJoin();
      this.#print({
        kind: "session",
        state: "ended",
        peer: m.peer,
        reason: m.message,
      });
    } else if (mode.kind === "hosting" && mode.grant?.peer === m.peer) {
      clearTimeout(mode.grant.timer);
      mode.grant.key.fill(0);
      mode.grant = null;
      mode.relay?.close();
      mode.relay = null;
      this.#system(`${m.message}; still hosting`);
      this.#track(this.#toServer({ t: "host", addr: mode.addr }));
    } else if (mode.kind === "session" && mode.session.peer === m.peer) {
      if (mode.relay) {
        // The server, which carried this session, says the peer is gone:
        // end it now rather than after the heartbeat timeout.
        mode.relay.close();
      } else {
        // A direct session does not depend on the server and goes on: the
        // peer only lost its server connection, and the server set us IDLE.
        // Say we are still busy, so that !list tells the truth.
        this.#sendQuietly({ t: "busy", peer: m.peer });
      }
    }
  }

  async #reconnect(): Promise<void> {
    const base = this.#o.reconnectBaseMs ?? 1000;
    const max = this.#o.reconnectMaxMs ?? 30_000;
    const backoff = new Backoff(base, max);
    while (!this.#quitting) {
      // Jittered, so clients of a restarted server do not all return at once.
      const wait = backoff.next();
      await new Promise<void>((resolve) => {
        this.#wakeReconnect = resolve;
        this.#reconnectTimer = setTimeout(resolve, wait);
      });
      this.#wakeReconnect = undefined;
      if (this.#quitting) return;
      try {
        const { channel, login } = await loginToServer(this.#o);
        this.#server = channel;
        this.#login = login;
        this.#system("Reconnected to the server");
        // Quiet list requests to the old server will never be answered.
        this.#quietLists = 0;
        this.#track(this.#serverLoop(channel));
        // The new server session starts IDLE; a direct session that lived
        // through the outage is still going, so say so.
        const m = this.#mode;
        if (m.kind === "session") {
          await this.#toServer({ t: "busy", peer: m.session.peer });
        }
        return;
      } catch (e) {
        if (isImError(e) && e.code === "server-key-mismatch") {
          // Rule 2.2: a server with another key stops the client, on a
          // reconnect as at the first login; it is never talked to again.
          this.#fatal = e;
          this.#error(e);
          this.#onFatal(e);
          return;
        }
        // Anything else before the server proved its key is not final: a
        // refusal arrives as a cleartext ERROR frame, which anyone on the
        // path could forge to stop us for good. Keep trying, and say why.
        this.#print({
          kind: "error",
          code: "reconnect-failed",
          text: `Reconnect failed: ${(e as Error).message}; next try in about ${
            Math.round(backoff.upcoming / 1000)
          } s`,
        });
      }
    }
  }

  /**
   * Log out: end the peer session, tell the server, close everything, and
   * wait for every task of this client.
   */
  async quit(): Promise<void> {
    if (this.#quitting) return;
    this.#quitting = true;
    clearInterval(this.#namesTimer);
    clearTimeout(this.#reconnectTimer);
    this.#wakeReconnect?.();
    const m = this.#mode;
    if (m.kind === "session") await m.session.close("quit");
    this.#abandonJoin();
    this.#stopHosting();
    this.#mode = { kind: "idle" };
    this.#wakeGrantWaiters();
    // The server loop may clear #server while we await: keep our own handle.
    const server = this.#server;
    if (server && !server.closed) {
      await server.send({ t: "bye" }).catch(() => {});
      await server.close("logout");
    }
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }
}

/** A failure of the connection itself, not of the ticket or authentication. */
function isNetworkFailure(e: unknown): boolean {
  return e instanceof NetError ||
    (e instanceof ProtocolError && e.code === "truncated-frame");
}
