/**
 * The client's link to the server, a facade over its parts: log in
 * (PROTOCOL.md section 3, `server_login.ts`), keep a table of requests in
 * flight matched by id (section 5.1, `request_table.ts`), keep the terms of
 * the server's `welcome` (`server_welcome.ts`), hand every other message to
 * the client, and log in again with backoff when the link drops (section
 * 5.1.1, `server_reconnect.ts`). A drop is one line and the return another;
 * the attempts in between are silent (their last failure is told when the
 * user asks for the server), except a failure that ends the client
 * (another server key).
 *
 * Given several nodes of a cluster (`servers`, PROTOCOL.md 11.7,
 * `server_nodes.ts`), the first login tries them in order, then again with
 * backoff ({@link FIRST_CONNECT_ROUNDS} rounds in all); a node that refuses
 * the connection or does not answer is passed over, a refused login or
 * another server key ends the client at once (every node has the same key
 * and the same users). A node that closes the link as `full` is passed
 * over too when there are several (a single full server ends the client).
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
  type ClientToServer,
  LOGIN_TIMEOUT_MS,
  type LoginResult,
  type ServerLink,
  type ServerToClient,
} from "../proto/mod.ts";
import {
  type ImError,
  isImError,
  NetError,
  ProtocolError,
  within,
} from "../util/mod.ts";
import type { ClientContext, ServerAddress } from "./options.ts";
import { type PendingRequest, RequestTable } from "./request_table.ts";
import { loginToServer, wipeTicketKeys } from "./server_login.ts";
import {
  addressText,
  failureAt,
  FIRST_CONNECT_ROUNDS,
  serverAddresses,
} from "./server_nodes.ts";
import { firstLogin, Reconnector } from "./server_reconnect.ts";
import { ServerWelcome } from "./server_welcome.ts";
import { traceStart } from "./start.ts";

export { loginToServer } from "./server_login.ts";
export { addressText, FIRST_CONNECT_ROUNDS, serverAddresses };
export type { PendingRequest };
export { MAX_FRAME_LIMIT, MIN_FRAME_LIMIT } from "./server_welcome.ts";

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
  #requests = new RequestTable();
  #welcome = new ServerWelcome();
  #welcomed = Promise.withResolvers<void>();
  #closing = false;
  #reconnector = new Reconnector();
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

  /** The channel, while it is open. */
  get #live(): ServerLink | null {
    const channel = this.#channel;
    return channel && !channel.closed ? channel : null;
  }

  /**
   * Wait, bounded by the login deadline, for the server's `welcome` on the
   * channel just logged in.
   */
  async #untilWelcome(): Promise<void> {
    await within(
      this.#welcomed.promise,
      this.#ctx.o.loginTimeoutMs ?? LOGIN_TIMEOUT_MS,
      undefined,
    );
  }

  /**
   * Log in, and wait (bounded by the login deadline) for the server's
   * `welcome`, so "Logged in" comes before anything the user's first line
   * causes.
   * @throws typed errors from {@link loginToServer}
   */
  async open(): Promise<void> {
    const { channel, login, node } = await firstLogin(
      this.#ctx.o,
      this.#nodes,
    );
    this.#at(node);
    this.#channel = channel;
    this.#login = login;
    this.#ctx.track(this.#loop(channel));
    await this.#untilWelcome();
  }

  /** The keys of the current login (its ticket keys open our peer tickets). */
  get login(): LoginResult {
    if (!this.#login) throw new NetError("offline", "Not logged in");
    return this.#login;
  }

  /** Is there a live channel to the server? */
  get connected(): boolean {
    return this.#live !== null;
  }

  /** Requests sent and not yet answered, for tests. */
  get inFlight(): number {
    return this.#requests.size;
  }

  /**
   * Send a message that expects no answer. When not connected, say so.
   * @returns whether it was handed to the channel
   */
  async send(m: ClientToServer): Promise<boolean> {
    const channel = this.#live;
    if (!channel) {
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
    const channel = this.#live;
    if (!channel) throw new NetError("offline", "Not connected to the server");
    await channel.send(m);
  }

  /**
   * Send if connected, without waiting and without a message when not: for
   * bookkeeping a new server session does not need. In order with all sends.
   */
  sendQuietly(m: ClientToServer): void {
    this.#live?.send(m).catch(() => {});
  }

  /**
   * Send a request with the next id (section 5.1).
   * @param m the request
   * @param quiet its answer is not to be shown
   * @returns `sent`: whether it went out (an error was shown if not);
   *   `answer`: the answer, or null when the link ended first or it took
   *   longer than `REQUEST_TIMEOUT_MS`
   */
  request(
    m: ClientToServer,
    quiet = false,
  ): { sent: Promise<boolean>; answer: Promise<ServerToClient | null> } {
    const channel = this.#live;
    if (!channel) {
      if (!quiet) this.printOffline();
      return { sent: Promise.resolve(false), answer: Promise.resolve(null) };
    }
    const { req, message, answer } = this.#requests.add(m, quiet);
    const sent = channel.send(message).then(() => true, (e) => {
      this.#requests.drop(req);
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

  /**
   * Now by the server's clock, as far as its `welcome` told it: what ticket
   * and grant expiries are read by (PROTOCOL.md section 6).
   */
  serverNow(): number {
    return this.#welcome.serverNow();
  }

  /**
   * The largest DATA record's plaintext the server takes and sends: its
   * frame limit (from `welcome`) less a record's own bytes. What a mail's
   * `send` and its `mail` push must fit (PROTOCOL.md section 9.8).
   */
  get recordRoom(): number {
    return this.#welcome.recordRoom;
  }

  /**
   * Largest peer frame the relay can carry (PROTOCOL.md section 6.1): base64
   * inside a `relay` (and then `relayed`) message of at most 67 bytes of
   * JSON around it, inside one record under the server's frame limit.
   */
  get relayFrameLimit(): number {
    return this.#welcome.relayFrameLimit;
  }

  async #loop(channel: ServerLink): Promise<void> {
    let closing: Extract<ServerToClient, { t: "closing" }> | undefined;
    for await (const ev of channel.events()) {
      if (ev.kind === "message") {
        const m = ev.msg;
        if (m.t === "welcome") {
          traceStart("welcome received");
          this.#welcome.keep(channel, m);
          this.#welcomed.resolve();
        }
        if (m.t === "closing") {
          closing = m;
          continue;
        }
        this.#handlers.message(m, this.#requests.answer(m));
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
    this.#requests.dropAll();
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
    this.#ctx.track(
      this.#reconnector.run(
        this.#ctx.o,
        this.#nodes.length,
        this.#node,
        (i) => this.#reconnectTo(i),
      ),
    );
  }

  #fatal(e: ImError): void {
    this.#ctx.print({ kind: "error", code: e.code, text: e.message });
    this.#handlers.fatal(e);
  }

  /**
   * One reconnect attempt, at node `i`.
   * @returns true when it ended the reconnecting: logged in, quit, or a
   *   failure that ends the client
   */
  async #reconnectTo(i: number): Promise<boolean> {
    const node = this.#nodes[i]!;
    try {
      const { channel, login } = await loginToServer(this.#ctx.o, node);
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
      await this.#untilWelcome();
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
    this.#reconnector.stop();
    // The loop may clear #channel while we await: keep our own handle.
    const channel = this.#live;
    if (channel) {
      await channel.send({ t: "bye" }).catch(() => {});
      await channel.close("logout");
    }
    this.#requests.dropAll();
    if (this.#login) wipeTicketKeys(this.#login);
  }
}
