/**
 * The chat client, a facade: it runs the user's commands and holds the mode
 * (idle, hosting, joining, in a session) over its parts: the server link
 * (login, requests by id, reconnect: `server_link.ts`), hosting
 * (`hosting.ts`), joining with relay fallback (`joining.ts`) and the peer
 * session (`peer_session.ts`, shown by `session_view.ts`). PROTOCOL.md
 * sections 5 to 7.
 *
 * @example
 * ```ts ignore
 * const client = await ChatClient.start({ user: "A", identity, pinnedServer, serverHost: "127.0.0.1", serverPort: 9876, ui });
 * await client.handleLine("!list");
 * await client.quit();
 * ```
 * @module
 */

import type { ServerToClient } from "../proto/mod.ts";
import { type ImError, Signal, waitUntil, within } from "../util/mod.ts";
import { type Command, HELP_TEXT, parseCommand } from "./commands.ts";
import type { UiEvent } from "./events.ts";
import {
  type ClientContext,
  type ClientOptions,
  type NewEvent,
  REPLY_WAIT_MS,
  SESSION_WAIT_MS,
} from "./options.ts";
import { traceStart } from "./start.ts";
import { type PendingRequest, ServerConnection } from "./server_link.ts";
import { Activity } from "./activity.ts";
import { ListPages } from "./list_pages.ts";
import {
  closeReasonFor,
  errorEvent,
  hostingWhere,
  sendText,
  whoami,
} from "./session_view.ts";
import { describePin, hasChangedKey, trustChangedKey } from "./pinning.ts";
import { Mailbox } from "./mailbox.ts";
import { MemoryRoomVault } from "./room_memory.ts";
import { Rooms } from "./rooms.ts";

/** Longest wait of {@link ChatClient.mailSynced} by default: a 10,000-message backlog takes about 9 s here. */
export const MAIL_SYNC_WAIT_MS = 60_000;

/** A logged-in chat client. */
export class ChatClient {
  #o: ClientOptions;
  #ctx: ClientContext;
  #link: ServerConnection;
  #activity: Activity;
  #mail: Mailbox;
  #rooms: Rooms;
  #names: string[] = [];
  #listPages = new ListPages();
  /** The first welcome was shown. */
  #loggedIn = false;
  /** Notified by every server message and session start: what a waiting script line watches. */
  #changed = new Signal();
  #namesTimer: ReturnType<typeof setInterval> | undefined;
  #quitting = false;
  #fatal: ImError | undefined;
  /** The fatal error's consequences were shown (the peer session's end). */
  #fatalShown = false;
  #tasks = new Set<Promise<unknown>>();
  #onFatal: (e: ImError) => void = () => {};

  private constructor(o: ClientOptions) {
    this.#o = o;
    this.#ctx = {
      o,
      print: (ev) => this.#print(ev),
      system: (text) => this.#print({ kind: "system", text }),
      error: (e) => this.#print(errorEvent(e)),
      track: (p) => this.#track(p),
    };
    this.#link = new ServerConnection(this.#ctx, {
      message: (m, answers) => this.#onServerMessage(m, answers),
      lost: () => {
        this.#mail.lost();
        this.#rooms.lost();
        this.#activity.lost();
      },
      reconnected: () => this.#activity.reconnected(),
      fatal: (e) => {
        this.#fatal = e;
        const reason = closeReasonFor(e.code);
        if (reason === "quit") {
          // The server went away (--no-reconnect): a direct session may go
          // on; whoever listens decides.
          this.#fatalShown = true;
          this.#onFatal(e);
          return;
        }
        // The server ended this login for good (a newer login of ours
        // replaced it, our key was revoked): the peer session ends first,
        // telling the peer why, and its end is shown here before whoever
        // listens ends the program (issue 11 item 7).
        this.#track(
          this.#activity.stop(reason).finally(() => {
            this.#fatalShown = true;
            this.#onFatal(e);
          }),
        );
      },
    });
    this.#activity = new Activity(this.#ctx, this.#link, this.#changed);
    this.#mail = new Mailbox(this.#ctx, this.#link, o.mailVault);
    this.#rooms = new Rooms(
      this.#ctx,
      this.#link,
      this.#mail,
      o.roomVault ?? new MemoryRoomVault(),
    );
    this.#mail.onRoomKey = (from, key) => this.#rooms.onRoomKey(from, key);
  }

  /**
   * Log in and start listening to the server.
   * @param o settings
   * @returns the client
   * @throws typed errors from {@link loginToServer}
   */
  static async start(o: ClientOptions): Promise<ChatClient> {
    const client = new ChatClient(o);
    await client.#link.open();
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

  /**
   * Resolves once the work a login starts on its own is done: publishing
   * the mailbox keys (PROTOCOL.md 9.1), then, once the mail backlog is
   * read, asking for our rooms and their stream (10.4): records the user
   * did not type. A test that alters the next record on the wire, or a
   * bench that times a link, waits for it first.
   */
  async settled(): Promise<void> {
    await this.#mail.keys.idle();
    await this.#rooms.welcomed();
  }

  /**
   * Resolves once the mail that waited at login has been shown (the
   * server's `synced` was reached, PROTOCOL.md 9.8), or after `ms`: a
   * script whose input ends at once still reads its mail before it logs
   * out.
   * @param ms the longest wait
   */
  async mailSynced(ms = MAIL_SYNC_WAIT_MS): Promise<void> {
    await within(
      Promise.all([this.#mail.synced(), this.#rooms.synced()]),
      ms,
      undefined,
    );
  }

  /** The rooms we are in (Tab completion after `#`, `!room`). */
  get roomNames(): string[] {
    return this.#rooms.names;
  }

  /** The room plain lines go to (`!room <name>`), if any. */
  get room(): string | undefined {
    return this.#rooms.target;
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
  get mode(): "idle" | "hosting" | "joining" | "session" {
    return this.#activity.kind;
  }

  /** Waiters for a grant while hosting, for tests. */
  get grantWaiters(): number {
    return this.#activity.grantWaiters;
  }

  /** Requests to the server not yet answered, for tests (PROTOCOL.md section 5.1). */
  get requestsInFlight(): number {
    return this.#link.inFlight;
  }

  /**
   * @param f called once when the server ends us for good, after the peer
   *   session (if any) has ended and its end was shown
   */
  set onFatal(f: (e: ImError) => void) {
    this.#onFatal = f;
    // It happened before anyone listened.
    if (this.#fatal && this.#fatalShown) f(this.#fatal);
  }

  /** Ask for the online names without showing the answer (Tab completion). */
  #refreshNames(): void {
    if (this.#link.connected) this.#link.request({ t: "list" }, true);
  }

  /** In scripting mode, wait (bounded) until `done()` holds. */
  async #settle(done: () => boolean, ms: number): Promise<void> {
    if (!this.#o.waitForReplies) return;
    await waitUntil(() => done() || this.#quitting, this.#changed, ms, 100);
  }

  /** In scripting mode, wait (bounded) for a request's answer. */
  async #settleOn(answer: Promise<unknown>, ms: number): Promise<void> {
    let answered = false;
    answer.then(() => (answered = true));
    await this.#settle(() => answered, ms);
  }

  #track<T>(p: Promise<T>): void {
    const q = p.catch((e) => this.#print(errorEvent(e)));
    this.#tasks.add(q);
    q.finally(() => this.#tasks.delete(q));
  }

  #print(ev: NewEvent): void {
    this.#o.ui.print({ ...ev, at: ev.at ?? Date.now() } as UiEvent);
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
        this.#ctx.system(HELP_TEXT);
        return true;
      case "unknown":
        this.#print({ kind: "error", code: "bad-command", text: cmd.hint });
        return true;
      case "keys":
        this.#ctx.system(
          (await describePin(this.#ctx, cmd.peer)) +
            (await this.#mail.peers.verifiedClause(cmd.peer).catch(() => "")),
        );
        return true;
      case "trust":
        try {
          if (hasChangedKey(this.#ctx, cmd.peer)) {
            this.#ctx.system(await trustChangedKey(this.#ctx, cmd.peer));
            await this.#mail.peers.forget(cmd.peer);
          } else {
            // No refused key waits: the server's current key for the user.
            this.#ctx.system(await this.#mail.peers.trustFetched(cmd.peer));
          }
        } catch (e) {
          this.#print(errorEvent(e));
        }
        return true;
      case "verify":
        try {
          this.#ctx.system(await this.#mail.peers.verify(cmd.peer));
        } catch (e) {
          this.#print(errorEvent(e));
        }
        return true;
      case "whoami":
        this.#ctx.system(
          `${whoami(this.#o, this.#activity.describe())}; ${await this.#mail
            .keys.describe()}`,
        );
        return true;
      case "mail": {
        const done = this.#mail.send(cmd.to, cmd.text);
        // A script's lines act in order: the next waits for `stored`.
        if (this.#o.waitForReplies) await done;
        else this.#track(done);
        return true;
      }
      case "list": {
        // PROTOCOL.md 5.3: a page; `!list +` the one after the last shown.
        const ask = this.#listPages.request(cmd);
        if (!ask) {
          this.#ctx.system("Nothing more to list: !list starts again");
          return true;
        }
        const { sent, answer } = this.#link.request(ask);
        if (await sent) await this.#settleOn(answer, REPLY_WAIT_MS);
        return true;
      }
      case "host": {
        const asked = await this.#activity.host();
        if (asked) await this.#settleOn(asked.answer, REPLY_WAIT_MS);
        return true;
      }
      case "session":
        await this.#activity.requestSession(cmd.peer);
        // A script's next line is usually a message for this session.
        await this.#settle(
          () => this.#activity.kind !== "joining",
          SESSION_WAIT_MS,
        );
        return true;
      case "disconnect":
        await this.#activity.disconnect();
        return true;
      case "message":
        if (this.#rooms.target !== undefined) {
          await this.#roomCommand({
            kind: "room-say",
            room: this.#rooms.target,
            text: cmd.text,
          });
          return true;
        }
        await sendText(this.#ctx, this.#activity.session, cmd.text);
        return true;
      case "room-create":
      case "room-add":
      case "room-remove":
      case "room-leave":
      case "room-target":
      case "room-say":
      case "rooms":
        await this.#roomCommand(cmd);
        return true;
    }
  }

  /** The room commands (PROTOCOL.md section 10), through the rooms part. */
  async #roomCommand(cmd: Command): Promise<void> {
    const done = this.#rooms.command(cmd);
    // A script's lines act in order: the next waits for the server's answer.
    if (this.#o.waitForReplies || cmd.kind !== "room-say") await done;
    else this.#track(done);
  }

  /** Every message from the server, with the request it answers if any. */
  #onServerMessage(m: ServerToClient, answers: PendingRequest | undefined) {
    const o = this.#o;
    if (
      this.#mail.awaits(answers) || this.#mail.onServerMessage(m) ||
      this.#rooms.awaits(answers) || this.#rooms.onServerMessage(m)
    ) {
      this.#changed.notify();
      return;
    }
    switch (m.t) {
      case "welcome":
        // Once: after a reconnect the link says "Reconnected" instead.
        if (!this.#loggedIn) {
          this.#loggedIn = true;
          this.#ctx.system(
            `Logged in as ${m.user} to ${o.serverHost}:${o.serverPort} (server key ${m.serverFingerprint})`,
          );
          traceStart("logged in printed");
        }
        if (o.namesRefreshMs) this.#refreshNames();
        this.#mail.onWelcome();
        this.#rooms.onWelcome();
        break;
      case "users": {
        if (answers?.quiet) {
          this.#names = m.users.map((u) => u.name);
          break;
        }
        // A page shown adds its names to Tab completion's (the quiet list
        // replaces them all).
        this.#names = [
          ...new Set([...this.#names, ...m.users.map((u) => u.name)]),
        ];
        const asked = answers?.message.t === "list"
          ? answers.message
          : undefined;
        this.#print({
          kind: "list",
          users: m.users,
          ...(asked?.prefix !== undefined && { prefix: asked.prefix }),
        });
        // PROTOCOL.md 5.3: the server says how many it left for later pages.
        const more = this.#listPages.shown(answers?.message, m);
        if (more) this.#ctx.system(more);
        // PROTOCOL.md 11.5: a node that cannot reach the rest of its cluster.
        if (m.partial) {
          this.#ctx.system("(partial: the cluster cannot be reached)");
        }
        break;
      }
      case "hosting":
        // A host that hosts again after a session says so itself.
        if (answers?.quiet) break;
        this.#ctx.system(
          `Hosting ${
            hostingWhere(m.addr)
          }; others can now type !session ${o.user}`,
        );
        break;
      case "error":
        this.#print({ kind: "error", code: m.code, text: m.message });
        break;
      case "grant":
      case "join":
      case "refused":
      case "cancelled":
      case "relayed":
        this.#activity.onServerMessage(m);
        break;
      default:
        this.#print({
          kind: "error",
          code: "unexpected-message",
          text: `Server sent an unexpected "${m.t}" message`,
        });
    }
    this.#changed.notify();
  }

  /**
   * Log out: end the peer session, tell the server, close everything, and
   * wait for every task of this client.
   */
  async quit(): Promise<void> {
    if (this.#quitting) return;
    this.#quitting = true;
    clearInterval(this.#namesTimer);
    await this.#rooms.stop();
    await this.#mail.stop();
    await this.#activity.stop();
    this.#changed.notify();
    await this.#link.close();
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }
}
