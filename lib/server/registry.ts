/**
 * The users connected to this node, and the one place that says who is
 * online: the {@link Registry} holds each user's connection and is the only
 * writer of joins and leaves to {@link Presence}, so the two cannot
 * disagree (rule 2.10: `!list` never shows a user who has left).
 *
 * @example
 * ```ts ignore
 * const registry = new Registry(new MemoryPresence(), LOCAL_NODE);
 * const { older } = registry.add(session); // older: the login it replaces
 * registry.remove(session);                // its last presence entry
 * ```
 * @module
 */

import type { PublicIdentity } from "../crypto/mod.ts";
import {
  answerTo,
  type ClientLink,
  type ClientToServer,
  type LoginResult,
  type ServerToClient,
} from "../proto/mod.ts";
import type { Outbox, Presence, PresenceEntry } from "./seams.ts";

/** One logged-in connection. */
export interface ClientSession {
  readonly user: string;
  /** Where it connects from, for logs. */
  readonly remote: string;
  readonly channel: ClientLink;
  /** The key the user proved it holds at login. */
  readonly fingerprint: string;
  /** The user's ticket keys from its login (rule 4.2); never leave this process. */
  readonly ticketKeys: LoginResult["ticketKeys"];
}

/**
 * The answer to one client message: every direct answer of the server
 * goes through one, so it names its request (PROTOCOL.md section 5.1).
 */
export type Reply = (answer: ServerToClient) => Promise<void>;

/**
 * The reply function of one message.
 * @param s the connection it came on
 * @param request the message
 * @returns a function that sends an answer carrying the message's `req`
 */
export function replyTo(s: ClientSession, request: ClientToServer): Reply {
  return (answer) => s.channel.send(answerTo(request, answer));
}

/** The connected users of this node. */
export class Registry {
  #presence: Presence;
  #node: string;
  #sessions = new Map<string, ClientSession>();

  /**
   * @param presence where joins and leaves are written
   * @param node this node's id
   */
  constructor(presence: Presence, node: string) {
    this.#presence = presence;
    this.#node = node;
  }

  /** Connections held. */
  get size(): number {
    return this.#sessions.size;
  }

  /** @returns is the user connected here? */
  has(user: string): boolean {
    return this.#sessions.has(user);
  }

  /** @returns the user's connection here */
  get(user: string): ClientSession | undefined {
    return this.#sessions.get(user);
  }

  /** @returns every connection, as of now */
  all(): ClientSession[] {
    return [...this.#sessions.values()];
  }

  /**
   * A user finished login: it is online, IDLE. An older connection of the
   * same user is replaced (rule 2.10); the caller tells it and its partner.
   * @param s the new connection
   * @returns the replaced connection and its last presence entry, if any
   */
  add(s: ClientSession): { older?: ClientSession; left?: PresenceEntry } {
    const older = this.#sessions.get(s.user);
    this.#sessions.set(s.user, s);
    const left = older ? this.#presence.leave(s.user) : undefined;
    this.#presence.join(s.user, this.#node);
    return { ...(older && { older }), ...(left && { left }) };
  }

  /**
   * A connection ended. Nothing happens when it is no longer the user's
   * current one (a newer login replaced it).
   * @param s the connection
   * @returns the user's last presence entry when it went offline
   */
  remove(s: ClientSession): PresenceEntry | undefined {
    if (this.#sessions.get(s.user) !== s) return undefined;
    this.#sessions.delete(s.user);
    return this.#presence.leave(s.user) ??
      { name: s.user, node: this.#node, state: "IDLE" };
  }

  /**
   * The user's connection, as {@link LocalDelivery} reaches it.
   * @param user the user
   * @returns its outbox, or undefined when not connected here
   */
  outbox(user: string): Outbox | undefined {
    const s = this.#sessions.get(user);
    if (!s) return undefined;
    return {
      send: (msg) => s.channel.send(msg),
      get queuedBytes() {
        return s.channel.transport.queuedBytes;
      },
    };
  }

  /**
   * Connections whose key is no longer in the directory as it was at login.
   * @param directory the client directory now
   * @returns those to disconnect
   */
  revoked(directory: Map<string, PublicIdentity>): ClientSession[] {
    return this.all().filter((s) =>
      directory.get(s.user)?.fingerprint !== s.fingerprint
    );
  }
}
