/**
 * What the user is doing with peers, one mode at a time (PROTOCOL.md
 * section 6): idle, hosting, joining, or in a session. Moves between modes
 * on the user's commands and the server's messages; each mode's work is in
 * its own part (`hosting.ts`, `joining.ts`, `peer_session.ts`).
 *
 * Hosting lasts until the user stops it: a session that started from
 * hosting returns to hosting when it ends, whoever ended it, and the next
 * joiner is served without the host typing anything (issue 11 item 5).
 * `!disconnect` while hosting with no session, a new `!session <user>`, or
 * quitting stops it; a lost server link does not: the client hosts again
 * once it is logged in again.
 * @module
 */

import type { ServerToClient } from "../proto/mod.ts";
import { TicketReplayCache } from "../proto/mod.ts";
import { type Signal, sleep } from "../util/mod.ts";
import type { PeerSession, RelayTransport } from "./peer_session.ts";
import type { ClientContext } from "./options.ts";
import type { ServerConnection } from "./server_link.ts";
import { Hosting } from "./hosting.ts";
import { Joining } from "./joining.ts";
import { hostingWhere, localEndNote, showSession } from "./session_view.ts";

/** A running session, and what its end will be shown with. */
interface SessionMode {
  kind: "session";
  session: PeerSession;
  relay: RelayTransport | null;
  /** It started from hosting: hosting resumes when it ends. */
  hosted: boolean;
  /** Shows its events until it ends (its end included). */
  view: Promise<void>;
  /** Why it ended, when we know better than its channel. */
  note: string | undefined;
}

/** Attempts to listen again after a hosted session, and the pause between. */
const RELISTEN_TRIES = 5;
const RELISTEN_PAUSE_MS = 50;

type Mode =
  | { kind: "idle" }
  | { kind: "hosting"; hosting: Hosting }
  | { kind: "joining"; joining: Joining }
  | SessionMode;

/** The client's peer mode and its transitions. */
export class Activity {
  #ctx: ClientContext;
  #link: ServerConnection;
  #mode: Mode = { kind: "idle" };
  #replayCache = new TicketReplayCache();
  #stopped = false;
  /** We hosted when the server link dropped: host again once it is back. */
  #hostAfterReconnect = false;
  /** Notified when a session starts. */
  readonly changed: Signal;

  constructor(ctx: ClientContext, link: ServerConnection, changed: Signal) {
    this.#ctx = ctx;
    this.#link = link;
    this.changed = changed;
  }

  /** The mode's name. */
  get kind(): Mode["kind"] {
    return this.#mode.kind;
  }

  /** The session, when in one. */
  get session(): PeerSession | null {
    return this.#mode.kind === "session" ? this.#mode.session : null;
  }

  /** Waiters for a grant while hosting, for tests. */
  get grantWaiters(): number {
    return this.#mode.kind === "hosting" ? this.#mode.hosting.grantWaiters : 0;
  }

  /** The session, or the mode in words, for `!whoami`. */
  describe(): PeerSession | string {
    const m = this.#mode;
    return m.kind === "session"
      ? m.session
      : m.kind === "hosting"
      ? `hosting ${hostingWhere(m.hosting.addr)}`
      : m.kind === "joining"
      ? `joining ${m.joining.peer}`
      : "idle";
  }

  #busy(): boolean {
    if (this.#mode.kind !== "session" && this.#mode.kind !== "joining") {
      return false;
    }
    this.#ctx.print({
      kind: "error",
      code: "busy",
      text: "You are in a session; !disconnect first",
    });
    return true;
  }

  /** `!session host`. @returns the server's answer, or null when nothing was asked */
  async host(): Promise<{ answer: Promise<unknown> } | null> {
    if (this.#busy()) return null;
    if (!this.#link.connected) {
      // Offline: host once the link is back (it is what the user asks for),
      // and say why nothing happens now.
      this.#hostAfterReconnect = true;
      this.#link.printOffline();
      return null;
    }
    this.#hostAfterReconnect = false;
    // The user's own `!session host`: joiners refused after failed guesses
    // may try again (PROTOCOL.md section 6, "The real bound").
    Hosting.forgive(this.#ctx);
    if (this.#mode.kind === "hosting") {
      this.#ctx.system(
        `Already hosting ${hostingWhere(this.#mode.hosting.addr)}`,
      );
      return null;
    }
    const hosting = this.#newHosting();
    if (!hosting) return null;
    const { sent, answer } = this.#link.request({
      t: "host",
      addr: hosting.addr,
    });
    if (!(await sent)) this.stopHosting();
    // Refused (rate-limited, cannot-host, bad-address): we do not host, so
    // the next !session host asks again instead of "Already hosting".
    answer.then((a) => {
      if (
        a?.t === "error" && this.#mode.kind === "hosting" &&
        this.#mode.hosting === hosting
      ) this.stopHosting();
    });
    return { answer };
  }

  /**
   * Listen for joiners, in HOSTING.
   * @param quiet do not show a failure to listen
   * @returns the hosting, or null when we cannot (an error was shown,
   *   unless `quiet`)
   */
  #newHosting(quiet = false): Hosting | null {
    const hosting: Hosting | null = Hosting.start(this.#ctx, this.#link, {
      started: (session, relay) => this.#startSession(session, relay, true),
      refused: () => {
        if (this.#mode.kind === "hosting" && this.#mode.hosting === hosting) {
          this.stopHosting();
        }
      },
    }, quiet);
    if (hosting) this.#mode = { kind: "hosting", hosting };
    return hosting;
  }

  /** Leave HOSTING (its pending grant is cancelled). */
  stopHosting(): void {
    if (this.#mode.kind !== "hosting") return;
    this.#mode.hosting.stop();
    this.#mode = { kind: "idle" };
  }

  /** `!session <peer>`: ask the server, and wait in JOINING for its answer. */
  async requestSession(peer: string): Promise<void> {
    if (this.#busy()) return;
    if (this.#mode.kind === "hosting") {
      this.stopHosting();
      // Before the request, in order: a refused request must not leave the
      // server listing us HOSTING at a listener we just closed.
      this.#link.sendQuietly({ t: "unhost" });
    }
    this.#hostAfterReconnect = false;
    const joining = new Joining(
      this.#ctx,
      this.#link,
      {
        started: (session, relay) => this.#startSession(session, relay, false),
        failed: async () => {
          if (this.#mode.kind === "joining" && this.#mode.joining === joining) {
            this.#mode = { kind: "idle" };
          }
          await this.#link.send({ t: "ended", peer });
        },
      },
      this.#replayCache,
      peer,
    );
    this.#mode = { kind: "joining", joining };
    const { sent } = this.#link.request({ t: "session", peer });
    if (!(await sent) && this.#mode.kind === "joining") {
      if (this.#mode.joining === joining) this.#mode = { kind: "idle" };
    }
  }

  /** Leave JOINING; the attempt's late results touch nothing. */
  abandonJoin(): void {
    if (this.#mode.kind !== "joining") return;
    this.#mode.joining.abandon();
    this.#mode = { kind: "idle" };
  }

  #startSession(
    session: PeerSession,
    relay: RelayTransport | null,
    hosted: boolean,
  ): void {
    const mode: SessionMode = {
      kind: "session",
      session,
      relay,
      hosted,
      view: Promise.resolve(),
      note: undefined,
    };
    this.#mode = mode;
    this.changed.notify();
    this.#ctx.o.ui.setPeer(session.peer);
    this.#ctx.print({
      kind: "session",
      state: "started",
      peer: session.peer,
      sas: session.sas,
      transport: session.transport,
    });
    mode.view = showSession(this.#ctx, session, async () => {
      if (this.#mode !== mode) return;
      mode.relay?.close();
      this.#mode = { kind: "idle" };
      this.#ctx.o.ui.setPeer(null);
      // Only the current session is the server's business. Without a server
      // connection there is nobody to tell: a server we reconnect to has
      // forgotten the session anyway.
      if (this.#stopped) return;
      if (!this.#link.connected) {
        // A host hosts on once the server is back.
        if (mode.hosted) this.#hostAfterReconnect = true;
        return;
      }
      const told = this.#link.send({ t: "ended", peer: session.peer });
      // A host hosts on (after `ended`, which makes it IDLE at the server).
      const hosting = mode.hosted ? await this.#listenAgain() : null;
      await told;
      if (hosting) await this.#hostAgain(hosting);
    }, () => mode.note);
    this.#ctx.track(mode.view);
  }

  /**
   * After a hosted session: listen again, unless the user moved on. The
   * listener closed when the session started; on a fixed port
   * (`listenPort`) its socket is released only once the event loop turned,
   * so the port may be taken for a moment: try a few times, quietly but
   * the last.
   * @returns the hosting, in HOSTING, or null
   */
  async #listenAgain(): Promise<Hosting | null> {
    for (let i = 0; i < RELISTEN_TRIES; i++) {
      await sleep(i === 0 ? 0 : RELISTEN_PAUSE_MS);
      if (this.#stopped || this.#mode.kind !== "idle") return null;
      const hosting = this.#newHosting(i < RELISTEN_TRIES - 1);
      if (hosting) return hosting;
    }
    return null;
  }

  /**
   * After a hosted session: tell the server we host again (after `ended`,
   * which made us IDLE there), and say so.
   */
  async #hostAgain(hosting: Hosting): Promise<void> {
    const current = () =>
      this.#mode.kind === "hosting" && this.#mode.hosting === hosting;
    // The user may have moved on while `ended` went out.
    if (!current()) return;
    // Its answer is not shown as a new "Hosting at" line: this one says it.
    const { sent, answer } = this.#link.request(
      { t: "host", addr: hosting.addr },
      true,
    );
    if (!(await sent)) return this.stopHosting();
    const reply = await answer;
    if (!current()) return;
    if (reply?.t !== "hosting") {
      // Refused (its error was shown) or unanswered: not hosting.
      this.stopHosting();
      return;
    }
    this.#ctx.system(
      `Still hosting ${
        hostingWhere(hosting.addr)
      }; others can type !session ${this.#ctx.o.user} (!disconnect stops hosting)`,
    );
    this.changed.notify();
  }

  async disconnect(): Promise<void> {
    const m = this.#mode;
    if (m.kind === "session") {
      await m.session.close("disconnect");
      return; // showSession reports the end and tells the server.
    }
    if (m.kind === "hosting") {
      this.stopHosting();
      await this.#link.send({ t: "unhost" });
      this.#ctx.system("Stopped hosting");
      return;
    }
    if (m.kind === "joining") {
      this.abandonJoin();
      await this.#link.send({ t: "ended", peer: m.joining.peer });
      this.#ctx.system(`Stopped joining ${m.joining.peer}`);
      return;
    }
    if (this.#hostAfterReconnect) {
      // Hosting waits for the server to come back: stop it there.
      this.#hostAfterReconnect = false;
      this.#ctx.system("Stopped hosting");
      return;
    }
    this.#ctx.print({
      kind: "error",
      code: "no-session",
      text: "Not in a session",
    });
  }

  onCancelled(m: Extract<ServerToClient, { t: "cancelled" }>): void {
    const mode = this.#mode;
    if (mode.kind === "joining" && mode.joining.peer === m.peer) {
      // A cancel that comes before this attempt's `join` is about the last
      // session with this peer (its `ended` crossed our new request).
      if (!mode.joining.answered) return;
      this.abandonJoin();
      this.#ctx.print({
        kind: "session",
        state: "ended",
        peer: m.peer,
        reason: m.message,
      });
    } else if (mode.kind === "hosting") {
      mode.hosting.onCancelled(m);
    } else if (mode.kind === "session" && mode.session.peer === m.peer) {
      if (mode.relay) {
        // The server, which carried this session, says the peer is gone
        // (and why: "A logged in again from another place"): end it now
        // rather than after the heartbeat timeout.
        mode.note ??= m.message;
        mode.relay.close();
      } else {
        // A direct session does not depend on the server and goes on: the
        // peer only lost its server connection, and the server set us IDLE.
        // Say we are still busy, so that !list tells the truth.
        this.#link.sendQuietly({ t: "busy", peer: m.peer });
      }
    }
  }

  /** A server push or answer that concerns the peer mode. */
  onServerMessage(m: ServerToClient): void {
    const mode = this.#mode;
    switch (m.t) {
      case "grant":
        if (mode.kind === "hosting") mode.hosting.onGrant(m);
        // We stopped hosting while the server granted: release the joiner
        // now rather than leave both BUSY until the ticket expires.
        else this.#link.sendQuietly({ t: "cancel", ticketId: m.ticketId });
        return;
      case "join":
        if (mode.kind === "joining") this.#ctx.track(mode.joining.run(m));
        return;
      case "refused":
        if (mode.kind === "joining" && mode.joining.peer === m.peer) {
          this.abandonJoin();
        }
        this.#ctx.print({
          kind: "error",
          code: `refused-${m.reason}`,
          text: `Session refused: ${m.message}`,
        });
        return;
      case "cancelled":
        return this.onCancelled(m);
      case "relayed":
        if (mode.kind === "session") {
          if (mode.relay?.remote === `relay:${m.peer}`) {
            mode.relay.deliver(m.data);
          }
        } else if (mode.kind === "joining") mode.joining.onRelayed(m);
        else if (mode.kind === "hosting") mode.hosting.onRelayed(m);
        return;
    }
  }

  /** The server link dropped: leave what needed it. */
  lost(): void {
    if (this.#mode.kind === "hosting") this.#hostAfterReconnect = true;
    this.stopHosting();
    this.abandonJoin();
    // A relayed session cannot outlive the server channel that carries it;
    // a direct one goes on (PROTOCOL.md section 6.1).
    if (this.#mode.kind === "session") this.#mode.relay?.close();
  }

  /**
   * Logged in again: a direct session that lived through the outage is
   * still going, so say so; a host that lost the server hosts again.
   */
  async reconnected(): Promise<void> {
    const m = this.#mode;
    if (m.kind === "session") {
      await this.#link.send({ t: "busy", peer: m.session.peer });
      return;
    }
    if (!this.#hostAfterReconnect || m.kind !== "idle") return;
    this.#hostAfterReconnect = false;
    const hosting = await this.#listenAgain();
    if (hosting) await this.#hostAgain(hosting);
  }

  /**
   * Quit: end the session (its end shown before this resolves), leave
   * hosting or joining.
   * @param reason the CLOSE reason the peer gets: `quit`, or why the server
   *   ended our login (`replaced`, `revoked`), which our end shows in words
   */
  async stop(reason = "quit"): Promise<void> {
    this.#stopped = true;
    const m = this.#mode;
    if (m.kind === "session") {
      m.note ??= localEndNote(reason, this.#ctx.o.user);
      await m.session.close(reason);
      await m.view;
    }
    this.abandonJoin();
    this.stopHosting();
    this.#mode = { kind: "idle" };
  }
}
