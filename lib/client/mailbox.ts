/**
 * Mailboxes on the client's side (PROTOCOL.md section 9), one part the
 * facade holds: our keys and their publishing (`mail_keys.ts`), the peers'
 * keys (`mail_peers.ts`), sending (`mail_send.ts`) and the stream of what
 * arrives (`mail_receive.ts`), over one {@link MailVault}: the key
 * directory's for `im chat`, else {@link MemoryMailVault}.
 *
 * @example
 * ```ts ignore
 * const mail = new Mailbox(ctx, link, vault);
 * mail.onWelcome();          // after every login
 * await mail.send("B", "hi"); // !msg B hi
 * ```
 * @module
 */

import type {
  ClientToServer,
  MailVault,
  ServerToClient,
} from "../proto/mod.ts";
import { within } from "../util/mod.ts";
import { MailKeys } from "./mail_keys.ts";
import { MemoryMailVault } from "./mail_memory.ts";
import { MailPeers } from "./mail_peers.ts";
import { MailInbox } from "./mail_receive.ts";
import { MailSender } from "./mail_send.ts";
import type { ClientContext } from "./options.ts";
import type { PendingRequest, ServerConnection } from "./server_link.ts";

/** At quit, the longest wait for a publish under way. */
const QUIT_PUBLISH_WAIT_MS = 5000;

/** Requests whose answers the mail parts await themselves. */
const MAIL_REQUESTS: ReadonlySet<ClientToServer["t"]> = new Set([
  "publish",
  "fetch",
  "keys",
  "send",
]);

/** The client's mailbox. */
export class Mailbox {
  #ctx: ClientContext;
  readonly keys: MailKeys;
  readonly peers: MailPeers;
  #sender: MailSender;
  #inbox: MailInbox;

  constructor(ctx: ClientContext, link: ServerConnection, vault?: MailVault) {
    this.#ctx = ctx;
    const v = vault ?? new MemoryMailVault();
    this.keys = new MailKeys(ctx, link, v);
    this.peers = new MailPeers(ctx, link, v);
    this.#sender = new MailSender(ctx, link, this.keys, this.peers, v);
    this.#inbox = new MailInbox(ctx, link, this.keys, this.peers, v);
  }

  /**
   * Where room keys go (PROTOCOL.md 10.2): set by the client to its rooms.
   * @param f keeps a key, resolving once it is saved
   */
  set onRoomKey(f: (from: string, key: Uint8Array) => Promise<void>) {
    this.#inbox.onRoomKey = f;
  }

  /** After each `welcome`: publish our keys, ask for the log. */
  onWelcome(): void {
    this.keys.onWelcome();
    this.#inbox.onWelcome();
  }

  /** @returns once the backlog waiting at this login was handled */
  synced(): Promise<void> {
    return this.#inbox.whenSynced();
  }

  /**
   * @returns once what the inbox handled so far is acknowledged to the
   *   server (the rooms' key gate opens at our `mail-ack`)
   */
  acknowledged(): Promise<void> {
    return this.#inbox.acknowledge();
  }

  /** The link dropped. */
  lost(): void {
    this.#inbox.lost();
  }

  /**
   * Quit: the publishing under way finishes (bounded), what was handled is
   * acknowledged, timers are cleared and nothing more is handled.
   */
  async stop(): Promise<void> {
    await this.#inbox.stop();
    await within(this.keys.idle(), QUIT_PUBLISH_WAIT_MS, undefined);
    this.keys.stop();
  }

  /**
   * @param answers the request a server message answers, if any
   * @returns whether a mail part awaits that answer (the facade shows nothing)
   */
  awaits(answers: PendingRequest | undefined): boolean {
    return answers !== undefined && MAIL_REQUESTS.has(answers.message.t);
  }

  /**
   * A server message of the mailbox that answers nothing of ours.
   * @param m the message
   * @returns whether it was one
   */
  onServerMessage(m: ServerToClient): boolean {
    switch (m.t) {
      case "mail":
      case "synced":
        this.#inbox.push(m);
        return true;
      case "receipt":
        if (m.seq !== 0) {
          this.#inbox.push(m);
        } else if (m.status === "stored") {
          // A `send`'s answer that came after we stopped waiting for it.
          this.#ctx.print({
            kind: "receipt",
            id: m.id,
            status: "stored",
            peer: m.to,
            via: "mail",
          });
        }
        return true;
      case "prekeys-low":
        this.keys.onPrekeysLow(m.left);
        return true;
      case "published":
      case "bundle":
        return true; // a late answer: its request gave up
      default:
        return false;
    }
  }

  /**
   * `!msg <user> <text>`, `@<user> <text>`.
   * @param to the recipient
   * @param text the text
   */
  send(to: string, text: string): Promise<void> {
    return this.#sender.send(to, text);
  }
}
