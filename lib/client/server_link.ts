/**
 * The client's link to the server: log in (PROTOCOL.md section 3), keep a
 * table of requests in flight matched by id (section 5.1), hand every other
 * message to the facade, and log in again with backoff when the link drops.
 * A drop is one line and the return another; the attempts in between are
 * silent (their last failure is told when the user asks for the server),
 * except a failure that ends the client (another server key).
 *
 * Given several nodes of a cluster (`servers`, PROTOCOL.md 11.7), the first
 * login tries them in order, then again with backoff ({@link
 * FIRST_CONNECT_ROUNDS} rounds in all); a node that refuses the connection
 * or does not answer is passed over, a refused login or another server key
 * ends the client at once (every node has the same key and the same users).
 * A node that closes the link as `full` is passed over too when there are
 * several (a single full server ends the client).
 * A dropped link tries the next node after the one it lost, round the list,
 * with the backoff between whole rounds.
 *
 * @example
 * ```ts ignore
 * const link = await ServerConnection.open(ctx, handlers);
 * const { answer } = link.request({ t: "list" });
 * console.log(await answer); // { t: "users", users: [...], more: 0, req: 1 }
 * ```
 * @module
 */

import {
  DEFAULT_HEARTBEAT_MS,
  RECORD_HEADER_BYTES,
  RECORD_TAG_BYTES,
} from "../record/mod.ts";
import {
  ClientHandshake,
  type ClientToServer,
  LOGIN_TIMEOUT_MS,
  type LoginResult,
  MAX_REQUEST_ID,
  ServerLink,
  type ServerToClient,
} from "../proto/mod.ts";
import {
  AuthError,
  Backoff,
  type ImError,
  isImError,
  NetError,
  ProtocolError,
  sleep,
  wipe,
  within,
} from "../util/mod.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  type FrameTransport,
  tcpNetwork,
} from "../wire/mod.ts";
import {
  type ClientContext,
  type ClientOptions,
  REQUEST_TIMEOUT_MS,
  type ServerAddress,
} from "./options.ts";
import { traceStart } from "./start.ts";

/**
 * How many times the first login tries every node of a list before it
 * gives up, with the reconnect backoff between rounds. A single server is
 * tried once, as before clusters.
 */
export const FIRST_CONNECT_ROUNDS = 3;

/**
 * The nodes a client tries: `servers` when given, else the one server.
 * @param o client settings
 * @returns at least one address
 */
export function serverAddresses(o: ClientOptions): ServerAddress[] {
  return o.servers && o.servers.length > 0
    ? o.servers.map(({ host, port }) => ({ host, port }))
    : [{ host: o.serverHost, port: o.serverPort }];
}

/**
 * `host:port`, an IPv6 host in brackets, as `--server` takes it.
 * @param a the address
 * @returns its text
 */
export function addressText(a: ServerAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * May a failed login be tried at another node? A connection refused or
 * lost, a timeout, a busy or closing node: yes, that was the address. Not
 * a refused login or another server key ({@link AuthError}: every node has
 * the same key and the same users), nor a failure that is not ours.
 */
function nodeFailure(e: unknown): boolean {
  return isImError(e) && !(e instanceof AuthError);
}

/** A failure's message, naming the node when it does not already. */
function failureAt(a: ServerAddress, e: unknown): string {
  const m = (e as Error)?.message ?? String(e);
  // loginToServer's own messages name it as `host:port`, unbracketed.
  return m.includes(`${a.host}:${a.port}`) ? m : `${addressText(a)}: ${m}`;
}

/**
 * Connect to the server and log in, all within the login deadline
 * (`loginTimeoutMs`, default {@link LOGIN_TIMEOUT_MS}): a server that does
 * not answer, or an address where packets vanish, fails with `login-timeout`
 * instead of hanging for the minutes a TCP connect can take.
 * @param o client settings
 * @param at the node to log in to (default `o.serverHost`:`o.serverPort`)
 * @returns the server channel and the login keys
 * @throws {NetError} server unreachable, or `login-timeout`; {@link AuthError} refused; {@link ProtocolError}
 * @example
 * ```ts ignore
 * const { channel, login } = await loginToServer(options);
 * ```
 */
export async function loginToServer(
  o: ClientOptions,
  at: ServerAddress = { host: o.serverHost, port: o.serverPort },
): Promise<{ channel: ServerLink; login: LoginResult }> {
  const where = `${at.host}:${at.port}`;
  const timeoutMs = o.loginTimeoutMs ?? LOGIN_TIMEOUT_MS;
  const timeoutError = () =>
    new NetError(
      "login-timeout",
      `Server at ${where} did not answer within ${timeoutMs / 1000} s`,
    );
  const network = o.network ?? tcpNetwork;
  const hs = new ClientHandshake({
    user: o.user,
    identity: o.identity,
    pinnedServer: o.pinnedServer,
    ...(o.windowMs === undefined ? {} : { windowMs: o.windowMs }),
  });
  // Our ephemeral key (the CLIENT_HELLO) is made while the connection is
  // set up (issue 15); its failure, if any, is thrown once connected.
  const clientHello = hs.start();
  clientHello.catch(() => {});
  let t: FrameTransport | undefined;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    t?.close(); // a login step waiting on the server ends now
  }, timeoutMs);
  try {
    // A connection that completes after the deadline is closed at once.
    traceStart("connect");
    t = await within(
      network.connect(at.host, at.port),
      timeoutMs,
      undefined,
      (late) => late.close(),
    );
    if (!t) throw timeoutError();
    traceStart("connected");
    const conn = t;
    const recv = async () => {
      const p = await conn.recv();
      if (p === null) {
        throw new NetError(
          "server-closed",
          `Server at ${where} closed the connection during login`,
        );
      }
      return p;
    };
    await conn.send(await clientHello);
    traceStart("client hello sent");
    const serverHello = await recv();
    traceStart("server hello received");
    await conn.send(await hs.onServerHello(serverHello));
    traceStart("client key sent");
    const serverKey = await recv();
    traceStart("server key received");
    await hs.onServerKey(serverKey);
    traceStart("session keys derived");
    const finished = await recv();
    traceStart("server finished received");
    await conn.send(await hs.onServerFinished(finished));
    traceStart("client finished sent");
    if (timedOut) throw timeoutError();
    const login = hs.result;
    const channel = new ServerLink(conn, login.sealer, login.opener, {
      heartbeatMs: o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    });
    return { channel, login };
  } catch (e) {
    t?.close();
    // The ephemeral key is not left in the making (a refused connection
    // fails before it is ready).
    await clientHello.catch(() => {});
    // Whatever broke once the deadline passed (a send on the closed socket,
    // say), the cause is the deadline.
    throw timedOut ? timeoutError() : e;
  } finally {
    clearTimeout(timer);
  }
}

/** The bounds of `im serve --max-frame`, which a client holds the announced limit to. */
export const MIN_FRAME_LIMIT = 1024;
export const MAX_FRAME_LIMIT = 16 * 1024 * 1024;

/** JSON around the base64 of a relayed frame: `{"t":"relayed","peer":"<32>","data":""}`. */
const RELAY_JSON_BYTES = 35 + 32;

/** A request in flight (PROTOCOL.md section 5.1). */
export interface PendingRequest {
  readonly req: number;
  readonly message: ClientToServer;
  /** Answered without being shown (Tab completion's `list`). */
  readonly quiet: boolean;
}

/** What the link hands to the facade. */
export interface LinkHandlers {
  /**
   * A message from the server, with the request it answers if it names one
   * still in flight.
   */
  message(m: ServerToClient, answers: PendingRequest | undefined): void;
  /** The link dropped (not for good): leave what needed it. */
  lost(): void;
  /** Logged in again after a drop. */
  reconnected(): Promise<void>;
  /** The link ended for good (replaced, revoked, full, another server key). */
  fatal(e: ImError): void;
}

interface InFlight extends PendingRequest {
  resolve(answer: ServerToClient | null): void;
  timer: ReturnType<typeof setTimeout>;
}

/** The client's side of the server link, across reconnects. */
export class ServerConnection {
  #ctx: ClientContext;
  #handlers: LinkHandlers;
  /** The nodes to try, in order (one without a cluster). */
  #nodes: ServerAddress[];
  /** Which of {@link #nodes} the link is (or was last) logged in to. */
  #node = 0;
  #channel: ServerLink | null = null;
  #login: LoginResult | undefined;
  #nextReq = 1;
  /** The server's frame limit, from its `welcome` (PROTOCOL.md section 2). */
  #maxFrame = DEFAULT_MAX_FRAME_BYTES;
  /** The server's clock minus ours, from its `welcome` (PROTOCOL.md section 6). */
  #clockOffset = 0;
  #inFlight = new Map<number, InFlight>();
  #welcomed = Promise.withResolvers<void>();
  #closing = false;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #wakeReconnect: (() => void) | undefined;
  /**
   * Why the last reconnect attempt failed, while reconnecting: not shown per
   * attempt (one line per try filled the screen), but with the answer to a
   * command that needs the server.
   */
  #lastFailure: string | undefined;

  constructor(ctx: ClientContext, handlers: LinkHandlers) {
    this.#ctx = ctx;
    this.#handlers = handlers;
    this.#nodes = serverAddresses(ctx.o);
  }

  /**
   * Logged in to node `i`: remember it, and name it in the settings, which
   * `Logged in as` and `!whoami` read.
   */
  #at(i: number): void {
    this.#node = i;
    const { host, port } = this.#nodes[i]!;
    this.#ctx.o.serverHost = host;
    this.#ctx.o.serverPort = port;
  }

  /**
   * The first login: each node in order, then again with backoff, up to
   * {@link FIRST_CONNECT_ROUNDS} rounds (one try for a single server, whose
   * error is thrown as it is).
   * @throws the error of a login refused (not tried elsewhere); {@link NetError}
   *   `connect-failed` naming every node when none answered
   */
  async #firstLogin(): Promise<{ channel: ServerLink; login: LoginResult }> {
    const o = this.#ctx.o;
    const nodes = this.#nodes;
    if (nodes.length === 1) {
      const r = await loginToServer(o, nodes[0]);
      this.#at(0);
      return r;
    }
    const backoff = new Backoff(
      o.reconnectBaseMs ?? 1000,
      o.reconnectMaxMs ?? 30_000,
    );
    const failures: string[] = [];
    for (let round = 0; round < FIRST_CONNECT_ROUNDS; round++) {
      if (round > 0) await sleep(backoff.next());
      for (let i = 0; i < nodes.length; i++) {
        try {
          const r = await loginToServer(o, nodes[i]);
          this.#at(i);
          return r;
        } catch (e) {
          if (!nodeFailure(e)) throw e;
          failures[i] = failureAt(nodes[i]!, e);
        }
      }
    }
    throw new NetError(
      "connect-failed",
      `None of the ${nodes.length} servers answered (each tried ${FIRST_CONNECT_ROUNDS} times): ${
        failures.join("; ")
      }`,
    );
  }

  /**
   * Log in, and wait (bounded by the login deadline) for the server's
   * `welcome`, so "Logged in" comes before anything the user's first line
   * causes.
   * @throws typed errors from {@link loginToServer}
   */
  async open(): Promise<void> {
    const { channel, login } = await this.#firstLogin();
    this.#channel = channel;
    this.#login = login;
    this.#ctx.track(this.#loop(channel));
    await within(
      this.#welcomed.promise,
      this.#ctx.o.loginTimeoutMs ?? LOGIN_TIMEOUT_MS,
      undefined,
    );
  }

  /** The keys of the current login (its ticket keys open our peer tickets). */
  get login(): LoginResult {
    if (!this.#login) throw new NetError("offline", "Not logged in");
    return this.#login;
  }

  /** Is there a live channel to the server? */
  get connected(): boolean {
    return this.#channel !== null && !this.#channel.closed;
  }

  /** Requests sent and not yet answered, for tests. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Send a message that expects no answer. When not connected, say so.
   * @returns whether it was handed to the channel
   */
  async send(m: ClientToServer): Promise<boolean> {
    const channel = this.#channel;
    if (!channel || channel.closed) {
      this.printOffline();
      return false;
    }
    try {
      await channel.send(m);
      return true;
    } catch (e) {
      this.#ctx.error(e);
      return false;
    }
  }

  /**
   * Send, failing when not connected: for the relay, whose caller handles
   * the failure (PROTOCOL.md section 6.1).
   * @throws {NetError} `offline`; whatever the channel's send throws
   */
  async post(m: ClientToServer): Promise<void> {
    const channel = this.#channel;
    if (!channel || channel.closed) {
      throw new NetError("offline", "Not connected to the server");
    }
    await channel.send(m);
  }

  /**
   * Send if connected, without waiting and without a message when not: for
   * bookkeeping a new server session does not need. In order with all sends.
   */
  sendQuietly(m: ClientToServer): void {
    const channel = this.#channel;
    if (channel && !channel.closed) channel.send(m).catch(() => {});
  }

  /**
   * Send a request with the next id (section 5.1).
   * @param m the request
   * @param quiet its answer is not to be shown
   * @returns `sent`: whether it went out (an error was shown if not);
   *   `answer`: the answer, or null when the link ended first or it took
   *   longer than {@link REQUEST_TIMEOUT_MS}
   */
  request(
    m: ClientToServer,
    quiet = false,
  ): { sent: Promise<boolean>; answer: Promise<ServerToClient | null> } {
    const channel = this.#channel;
    if (!channel || channel.closed) {
      if (!quiet) this.printOffline();
      return { sent: Promise.resolve(false), answer: Promise.resolve(null) };
    }
    const req = this.#nextReq;
    this.#nextReq = req >= MAX_REQUEST_ID ? 1 : req + 1;
    const message = { ...m, req };
    const answer = new Promise<ServerToClient | null>((resolve) => {
      const timer = setTimeout(
        () => this.#settle(req, null),
        REQUEST_TIMEOUT_MS,
      );
      this.#inFlight.set(req, { req, message, quiet, resolve, timer });
    });
    const sent = channel.send(message).then(() => true, (e) => {
      this.#settle(req, null);
      if (!quiet) this.#ctx.error(e);
      return false;
    });
    return { sent, answer };
  }

  /** A command needs the server and there is none: say so, and why the last try failed. */
  printOffline(): void {
    const last = this.#lastFailure;
    this.#ctx.print({
      kind: "error",
      code: "offline",
      text: `Not connected to the server; reconnecting${
        last === undefined ? "" : ` (last try: ${last})`
      }`,
    });
  }

  #settle(req: number, answer: ServerToClient | null): InFlight | undefined {
    const r = this.#inFlight.get(req);
    if (!r) return undefined;
    this.#inFlight.delete(req);
    clearTimeout(r.timer);
    r.resolve(answer);
    return r;
  }

  /**
   * PROTOCOL.md section 2: read and seal up to the server's frame limit,
   * within what `im serve --max-frame` allows.
   */
  #keepFrameLimit(channel: ServerLink, maxFrame: number): void {
    const n = Math.min(
      Math.max(Math.floor(maxFrame), MIN_FRAME_LIMIT),
      MAX_FRAME_LIMIT,
    );
    this.#maxFrame = n;
    channel.transport.maxFrameBytes = n;
    channel.maxRecordBytes = n;
  }

  /**
   * Now by the server's clock, as far as its `welcome` told it: what ticket
   * and grant expiries are read by (PROTOCOL.md section 6).
   */
  serverNow(): number {
    return Date.now() + this.#clockOffset;
  }

  /**
   * The largest DATA record's plaintext the server takes and sends: its
   * frame limit (from `welcome`) less a record's own bytes. What a mail's
   * `send` and its `mail` push must fit (PROTOCOL.md section 9.8).
   */
  get recordRoom(): number {
    return this.#maxFrame - 1 - RECORD_HEADER_BYTES - RECORD_TAG_BYTES;
  }

  /**
   * Largest peer frame the relay can carry (PROTOCOL.md section 6.1): base64
   * inside a `relay` (and then `relayed`) message of at most 67 bytes of
   * JSON around it, inside one record under the server's frame limit.
   */
  get relayFrameLimit(): number {
    const room = this.#maxFrame - 1 - RECORD_HEADER_BYTES - RECORD_TAG_BYTES -
      RELAY_JSON_BYTES;
    return Math.max(0, Math.floor(room / 4) * 3);
  }

  /** The link's channel ended: no request in flight will be answered. */
  #settleAll(): void {
    for (const req of [...this.#inFlight.keys()]) this.#settle(req, null);
  }

  async #loop(channel: ServerLink): Promise<void> {
    let closing: Extract<ServerToClient, { t: "closing" }> | undefined;
    for await (const ev of channel.events()) {
      if (ev.kind === "message") {
        const m = ev.msg;
        if (m.t === "welcome") {
          traceStart("welcome received");
          this.#keepFrameLimit(channel, m.maxFrame);
          // PROTOCOL.md section 6: expiries are server times.
          this.#clockOffset = m.now - Date.now();
          this.#welcomed.resolve();
        }
        if (m.t === "closing") {
          closing = m;
          continue;
        }
        const answers = m.req === undefined
          ? undefined
          : this.#settle(m.req, m);
        this.#handlers.message(m, answers);
      } else if (ev.kind === "discarded") {
        this.#ctx.print({
          kind: "error",
          code: ev.error.code,
          text: `From the server: ${ev.error.message}`,
        });
      } else if (ev.kind === "lost") {
        this.#ctx.print({
          kind: "error",
          code: "lost",
          text: `${ev.count} message(s) from the server were lost`,
        });
      }
    }
    if (this.#channel === channel) this.#channel = null;
    this.#settleAll();
    this.#welcomed.resolve(); // nobody waits for a welcome that cannot come
    if (this.#closing) return;
    if (
      closing &&
      (closing.reason === "replaced" || closing.reason === "revoked" ||
        // A full node of several is a node failure: the next one is tried
        // (PROTOCOL.md 11.7); a single server that is full ends the client.
        (closing.reason === "full" && this.#nodes.length === 1))
    ) {
      this.#fatal(
        new ProtocolError(
          closing.reason,
          `Server closed the connection: ${closing.message}`,
        ),
      );
      return;
    }
    this.#handlers.lost();
    const why = closing ? closing.message : "connection lost";
    if (this.#ctx.o.reconnect === false) {
      this.#fatal(
        new NetError("server-gone", `Disconnected from the server: ${why}`),
      );
      return;
    }
    this.#ctx.print({
      kind: "error",
      code: "server-gone",
      text: `Disconnected from the server: ${why}; reconnecting`,
    });
    this.#ctx.track(this.#reconnect());
  }

  #fatal(e: ImError): void {
    this.#ctx.print({ kind: "error", code: e.code, text: e.message });
    this.#handlers.fatal(e);
  }

  /**
   * Log in again after a drop: the nodes after the one lost, in order, that
   * one last; the backoff before each round, not between its nodes.
   */
  async #reconnect(): Promise<void> {
    const o = this.#ctx.o;
    const nodes = this.#nodes;
    const lost = this.#node;
    const backoff = new Backoff(
      o.reconnectBaseMs ?? 1000,
      o.reconnectMaxMs ?? 30_000,
    );
    while (!this.#closing) {
      // Jittered, so clients of a restarted server do not all return at once.
      const wait = backoff.next();
      await new Promise<void>((resolve) => {
        this.#wakeReconnect = resolve;
        this.#reconnectTimer = setTimeout(resolve, wait);
      });
      this.#wakeReconnect = undefined;
      for (let k = 1; k <= nodes.length; k++) {
        if (this.#closing) return;
        const i = (lost + k) % nodes.length;
        const done = await this.#reconnectTo(i);
        if (done) return;
      }
    }
  }

  /**
   * One reconnect attempt, at node `i`.
   * @returns true when it ended the reconnecting: logged in, quit, or a
   *   failure that ends the client
   */
  async #reconnectTo(i: number): Promise<boolean> {
    const o = this.#ctx.o;
    const node = this.#nodes[i]!;
    try {
      const { channel, login } = await loginToServer(o, node);
      if (this.#closing) {
        // The user quit while this login was on its way: it is not kept.
        await channel.close("logout");
        return true;
      }
      this.#channel = channel;
      this.#at(i);
      // The old login's ticket keys open nothing the new link sends.
      if (this.#login) wipeTicketKeys(this.#login);
      this.#login = login;
      this.#lastFailure = undefined;
      this.#welcomed = Promise.withResolvers<void>();
      this.#ctx.track(this.#loop(channel));
      // Said once the server has us online again (its welcome), so that a
      // !list typed after this line shows us and everyone back before us.
      await within(
        this.#welcomed.promise,
        o.loginTimeoutMs ?? LOGIN_TIMEOUT_MS,
        undefined,
      );
      // A link that dropped before its welcome is not a reconnect: its
      // loop has started the next try, which will say so when it lands.
      if (this.#closing || this.#channel !== channel || channel.closed) {
        return true;
      }
      // With one server, as before clusters; with several, which one.
      this.#ctx.system(
        this.#nodes.length === 1
          ? "Reconnected to the server"
          : `Reconnected to ${addressText(node)}`,
      );
      await this.#handlers.reconnected();
      return true;
    } catch (e) {
      if (isImError(e) && e.code === "server-key-mismatch") {
        // Rule 2.2: a server with another key stops the client, on a
        // reconnect as at the first login; it is never talked to again,
        // nor another node (they all have the same key).
        this.#fatal(e);
        return true;
      }
      // Anything else before the server proved its key is not final: a
      // refusal arrives as a cleartext ERROR frame, which anyone on the
      // path could forge to stop us for good. Keep trying, quietly: the
      // drop was told, the return will be, and a command meanwhile says
      // why the last try failed (issue 11 item 9), and where.
      this.#lastFailure = this.#nodes.length === 1
        ? (e as Error).message
        : failureAt(node, e);
      return false;
    }
  }

  /** Log out: say `bye`, close the channel, stop reconnecting. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearTimeout(this.#reconnectTimer);
    this.#wakeReconnect?.();
    // The loop may clear #channel while we await: keep our own handle.
    const channel = this.#channel;
    if (channel && !channel.closed) {
      await channel.send({ t: "bye" }).catch(() => {});
      await channel.close("logout");
    }
    this.#settleAll();
    if (this.#login) wipeTicketKeys(this.#login);
  }
}

/** A login's ticket keys are raw bytes, kept while it lasts: wiped when it ends. */
function wipeTicketKeys(login: LoginResult): void {
  wipe(login.ticketKeys.enc, login.ticketKeys.mac);
}
